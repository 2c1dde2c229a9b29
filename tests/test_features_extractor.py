"""Named layers (the paper's / Caffe's names) and the feature extractor."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from torch import nn

import vggnets
from vggnets.core.configs import MODELS, TABLE_1, channels, parse
from vggnets.features.extractor import HEAD_NAMES, FeatureExtractor, layer_names, named_layers

WIDTH = 0.125


def small(name: str = "vgg16", seed: int = 0) -> vggnets.VGG:
    torch.manual_seed(seed)
    return vggnets.build(name, width=WIDTH, num_classes=10).eval()


def test_vgg16_names_match_torchvision_indices():
    names = layer_names(small())
    assert {n: names.index(n) for n in ("relu1_2", "relu2_2", "relu3_3", "relu4_3", "relu5_3", "pool5")} == {
        "relu1_2": 3,
        "relu2_2": 8,
        "relu3_3": 15,
        "relu4_3": 22,
        "relu5_3": 29,
        "pool5": 30,
    }
    assert names[31:] == list(HEAD_NAMES) == ["fc6", "relu6", "drop6", "fc7", "relu7", "drop7", "fc8"]


def test_vgg11_full_list_and_special_layers():
    assert " ".join(layer_names(small("vgg11"))) == (
        "conv1_1 relu1_1 pool1 conv2_1 relu2_1 pool2 conv3_1 relu3_1 conv3_2 relu3_2 pool3 "
        "conv4_1 relu4_1 conv4_2 relu4_2 pool4 conv5_1 relu5_1 conv5_2 relu5_2 pool5 "
        "fc6 relu6 drop6 fc7 relu7 drop7 fc8"
    )
    assert layer_names(small("vgg11_lrn"))[:4] == ["conv1_1", "relu1_1", "norm1", "pool1"]
    assert isinstance(named_layers(small("vgg11_lrn"))["norm1"], nn.LocalResponseNorm)
    assert layer_names(small("vgg13_bn"))[:7] == [
        "conv1_1",
        "bn1_1",
        "relu1_1",
        "conv1_2",
        "bn1_2",
        "relu1_2",
        "pool1",
    ]
    conv = named_layers(small("vgg16_1x1"))
    assert [conv[f"conv{s}_3"].kernel_size for s in (3, 4, 5)] == [(1, 1)] * 3
    assert "conv5_4" in layer_names(small("vgg19")) and "relu5_4" in layer_names(small("vgg19"))


@pytest.mark.parametrize("name", list(MODELS))
def test_named_layers_are_the_models_modules_in_order(name):
    model = small(name)
    layers = named_layers(model)
    assert list(layers) == layer_names(model)
    assert list(layers.values()) == [*model.features, *model.classifier]  # the same objects, nothing skipped
    kinds = {
        "conv": nn.Conv2d,
        "bn": nn.BatchNorm2d,
        "relu": nn.ReLU,
        "pool": nn.MaxPool2d,
        "norm": nn.LocalResponseNorm,
    }
    kinds |= {"fc": nn.Linear, "drop": nn.Dropout}
    for layer, module in layers.items():
        assert isinstance(module, kinds[layer.rstrip("0123456789_")]), layer
    assert sum(n.startswith("conv") for n in layers) == MODELS[name].depth - 3
    assert sum(n.startswith("bn") for n in layers) == (MODELS[name].depth - 3) * MODELS[name].batch_norm


def expected_shapes(name: str, height: int, width: int) -> dict[str, tuple[int, ...]]:
    """Every layer's output shape for one image, derived from the paper's table (independently of features.py)."""
    spec, shapes, stage, j, out, scale = MODELS[name], {}, 1, 0, 0, 1
    for layer in parse(TABLE_1[spec.config]):
        size = (height // scale, width // scale)
        if layer.kind == "conv":
            j, out = j + 1, channels(WIDTH, layer.out_channels)
            for kind in ("conv", "bn", "relu") if spec.batch_norm else ("conv", "relu"):
                shapes[f"{kind}{stage}_{j}"] = (1, out, *size)
        elif layer.kind == "lrn":
            shapes[f"norm{stage}"] = (1, out, *size)
        else:
            scale *= 2
            shapes[f"pool{stage}"] = (1, out, height // scale, width // scale)
            stage, j = stage + 1, 0
    hidden = channels(WIDTH, 4096)
    shapes |= {n: (1, hidden) for n in HEAD_NAMES[:-1]} | {"fc8": (1, 10)}
    return shapes


@pytest.mark.parametrize("name", list(MODELS))
def test_shapes_of_every_layer_non_square_input(name):
    model = small(name)
    height, width = 64, 32
    out = FeatureExtractor(model, layer_names(model))(torch.randn(1, 3, height, width))
    assert {k: tuple(v.shape) for k, v in out.items()} == expected_shapes(name, height, width)
    assert list(out) == layer_names(model)


def test_full_size_shapes_on_meta_device():
    with torch.device("meta"):
        model = vggnets.VGG(vggnets.make_features(parse(TABLE_1["E"])))
        out = FeatureExtractor(model, ["fc8", "relu5_4", "pool5", "relu1_1", "fc7"])(
            torch.empty(2, 3, 224, 224)
        )
    assert {k: tuple(v.shape) for k, v in out.items()} == {
        "fc8": (2, 1000),
        "relu5_4": (2, 512, 14, 14),
        "pool5": (2, 512, 7, 7),
        "relu1_1": (2, 64, 224, 224),
        "fc7": (2, 4096),
    }
    assert list(out) == ["fc8", "relu5_4", "pool5", "relu1_1", "fc7"]  # ordered as requested


@pytest.mark.parametrize("name", ["vgg16", "vgg16_bn", "vgg11_lrn"])
def test_outputs_equal_a_manual_forward(name):
    model = small(name)
    names = layer_names(model)
    x = torch.randn(2, 3, 40, 56, generator=torch.Generator().manual_seed(1))
    wanted = [n for n in names if not n.startswith("drop")]  # every conv, bn, relu, pool and fc layer at once
    out = FeatureExtractor(model, wanted)(x)
    with torch.no_grad():
        for layer in wanted:
            index = names.index(layer)
            if index < len(model.features):
                manual = model.features[: index + 1](x.clone())
            else:
                head = torch.flatten(model.avgpool(model.features(x.clone())), 1)
                manual = model.classifier[: index - len(model.features) + 1](head)
            torch.testing.assert_close(out[layer], manual, rtol=0, atol=0, msg=layer)
        torch.testing.assert_close(out["fc8"], model(x), rtol=0, atol=0)


def test_conv_output_is_the_pre_activation_despite_in_place_relu():
    model = small()
    assert model.features[1].inplace
    x = torch.randn(1, 3, 32, 32, generator=torch.Generator().manual_seed(2))
    out = FeatureExtractor(model, ["conv1_1", "relu1_1", "conv1_2"])(x)
    conv = model.features[0]
    expected = F.conv2d(x, conv.weight, conv.bias, padding=1)
    assert (out["conv1_1"] < 0).any()
    torch.testing.assert_close(out["conv1_1"], expected)
    torch.testing.assert_close(out["relu1_1"], expected.clamp(min=0))
    assert (out["conv1_2"] < 0).any()
    # the same for a BN model: bn1_1 is followed by an in-place ReLU
    bn_model = small("vgg16_bn")
    bn = FeatureExtractor(bn_model, ["bn1_1", "relu1_2"])(x)
    assert (bn["bn1_1"] < 0).any()
    with torch.no_grad():
        torch.testing.assert_close(bn["bn1_1"], bn_model.features[:2](x))


def test_computes_nothing_after_the_last_requested_layer():
    model = small()
    calls: list[str] = []
    for layer, module in [*named_layers(model).items(), ("avgpool", model.avgpool)]:
        module.register_forward_hook(lambda *_, layer=layer: calls.append(layer))
    FeatureExtractor(model, ["relu2_2", "conv1_2"])(torch.randn(1, 3, 32, 32))
    assert calls == layer_names(model)[:9]

    class Boom(nn.Module):
        def forward(self, x):
            raise AssertionError("ran a layer after the last requested one")

    extractor = FeatureExtractor(model, ["relu2_2"])
    model.features[9] = model.classifier[0] = Boom()  # pool2 and fc6
    assert extractor(torch.randn(1, 3, 32, 32))["relu2_2"].shape == (1, 16, 16, 16)


def test_head_layers_go_through_avgpool_and_every_feature_layer():
    model = small()
    calls: list[str] = []
    for layer, module in [*named_layers(model).items(), ("avgpool", model.avgpool)]:
        module.register_forward_hook(lambda *_, layer=layer: calls.append(layer))
    FeatureExtractor(model, ["fc6"])(torch.randn(1, 3, 32, 32))
    assert calls == [*layer_names(model)[:31], "avgpool", "fc6"]


def test_gradients_reach_the_input_and_the_shared_parameters():
    model = small()
    extractor = FeatureExtractor(model, ["relu3_3", "fc7"])
    assert all(a is b for a, b in zip(extractor.parameters(), model.parameters()))  # shared, not copied
    x = torch.randn(2, 3, 48, 32, requires_grad=True)
    out = extractor(x)
    assert out["relu3_3"].requires_grad
    (out["relu3_3"].square().mean() + out["fc7"].sum()).backward()
    assert x.grad is not None and torch.isfinite(x.grad).all() and x.grad.abs().sum() > 0
    assert model.features[0].weight.grad is not None
    assert model.classifier[3].weight.grad is not None
    assert model.features[17].weight.grad is not None  # conv4_1 feeds fc7


def test_detach_returns_outputs_without_graph():
    model = small()
    x = torch.randn(1, 3, 32, 32, requires_grad=True)
    out = FeatureExtractor(model, ["relu1_2", "fc8"], detach=True)(x)
    assert not any(t.requires_grad for t in out.values())
    torch.testing.assert_close(out["fc8"], model(x).detach())


def test_layer_selection_errors_and_conveniences():
    model = small()
    with pytest.raises(
        ValueError, match=r"unknown layer 'rleu2_2' for vgg16\. Did you mean relu2_2.*Valid layers: conv1_1"
    ):
        FeatureExtractor(model, ["relu1_1", "rleu2_2"])
    with pytest.raises(ValueError, match="conv5_4"):  # vgg16 stops at conv5_3: the message lists what exists
        FeatureExtractor(model, ["conv5_4"])
    with pytest.raises(ValueError, match="no layers requested"):
        FeatureExtractor(model, [])
    extractor = FeatureExtractor(model, "relu1_2")  # one name, not its characters
    assert extractor.layers == ("relu1_2",)
    assert FeatureExtractor(model, ["pool1", "relu1_1", "pool1"]).layers == ("pool1", "relu1_1")
    assert "layers=['relu1_2']" in repr(extractor)
    with pytest.raises(TypeError, match="VGG"):
        layer_names(nn.Sequential(nn.Conv2d(3, 3, 3)))


def test_input_sizes():
    model = small()
    early = FeatureExtractor(model, ["relu2_2"])
    assert early.min_size == 2
    assert early(torch.randn(1, 3, 9, 13))["relu2_2"].shape == (
        1,
        16,
        4,
        6,
    )  # shallow layers take small images
    late = FeatureExtractor(model, ["fc6"])
    assert late.min_size == 32
    assert late(torch.randn(1, 3, 33, 100))["fc6"].shape == (1, 512)
    with pytest.raises(ValueError, match="at least 32x32"):
        late(torch.randn(1, 3, 31, 64))
    with pytest.raises(ValueError, match=r"\(N, C, H, W\)"):
        late(torch.randn(3, 64, 64))

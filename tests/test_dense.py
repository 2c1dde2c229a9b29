"""The fully-convolutional view: shared parameters, equality with the ordinary model, sliding-window semantics."""

from __future__ import annotations

import pytest
import torch
from torch import nn

import vggnets
from vggnets.models.dense import MIN_DENSE_SIZE, FullyConvolutionalVGG, fully_convolutional, score_map_size


def small_model(
    name: str = "vgg11", *, width: float = 0.125, num_classes: int = 10, seed: int = 0
) -> vggnets.VGG:
    """A width-reduced model with random weights whose logits spread (FC layers Kaiming-initialised), in eval mode."""
    torch.manual_seed(seed)
    model = vggnets.build(name, width=width, num_classes=num_classes)
    for i in (0, 3, 6):
        nn.init.kaiming_normal_(model.classifier[i].weight, nonlinearity="relu")
        nn.init.normal_(model.classifier[i].bias, 0.0, 0.1)
    return model.eval()


@pytest.fixture(scope="module")
def model() -> vggnets.VGG:
    return small_model()


def test_parameters_are_the_models_own(model: vggnets.VGG) -> None:
    fcn = fully_convolutional(model)
    assert isinstance(fcn, FullyConvolutionalVGG)
    assert fcn.model is model
    mine, theirs = list(fcn.parameters()), list(model.parameters())
    assert len(mine) == len(theirs)
    assert all(a is b for a, b in zip(mine, theirs))
    assert list(fcn.state_dict()) == [f"model.{k}" for k in model.state_dict()]
    for (weight, bias), i in zip(fcn.conv_weights(), (0, 3, 6)):
        fc = model.classifier[i]
        assert weight.data_ptr() == fc.weight.data_ptr()  # a view: no copy
        assert (
            weight._base is fc.weight
            or weight.untyped_storage().data_ptr() == fc.weight.untyped_storage().data_ptr()
        )
        assert bias is fc.bias
    c = model.classifier[0].in_features // 49
    assert fcn.in_channels == c == model.features[-3].out_channels  # last conv (before ReLU and pool)
    assert [tuple(w.shape) for w, _ in fcn.conv_weights()] == [
        (512, c, 7, 7),
        (512, 512, 1, 1),
        (10, 512, 1, 1),
    ]


@pytest.mark.parametrize("name", ["vgg11", "vgg16_bn", "vgg16_1x1"])
def test_at_224_it_is_the_model(name: str) -> None:
    model = small_model(name, width=1 / 16)
    fcn = fully_convolutional(model).eval()
    torch.manual_seed(1)
    x = torch.randn(3, 3, 224, 224)
    with torch.no_grad():
        out, ref = fcn(x), model(x)
    assert out.shape == (3, 10, 1, 1)
    assert ref.std() > 0.1  # the logits differ, so the comparison means something
    torch.testing.assert_close(out.flatten(1), ref, atol=1e-5, rtol=1e-5)


def test_a_larger_input_slides_the_classifier_over_every_7x7_window(model: vggnets.VGG) -> None:
    torch.manual_seed(2)
    x = torch.randn(2, 3, 288, 320)
    with torch.no_grad():
        out = fully_convolutional(model)(x)
        feats = model.features(x)  # (2, C, 9, 10)
        assert feats.shape[-2:] == (9, 10)
        ref = torch.empty(2, 10, 3, 4)
        for i in range(3):
            for j in range(4):
                window = feats[:, :, i : i + 7, j : j + 7]
                ref[:, :, i, j] = model.classifier(torch.flatten(window, 1))
        pooled = model(x)  # the ordinary model resamples the 9x10 map to 7x7 with the adaptive pool
    assert out.shape == (2, 10, 3, 4)
    torch.testing.assert_close(out, ref, atol=1e-5, rtol=1e-5)
    assert ref.std(dim=(2, 3)).mean() > 1e-2  # the windows do score differently
    assert not torch.allclose(out.mean(dim=(2, 3)), pooled, atol=1e-3)  # and it is not the adaptive pool


@pytest.mark.parametrize(
    ("size", "expected"),
    [
        ((256, 256), (2, 2)),
        ((384, 384), (6, 6)),
        ((512, 512), (10, 10)),
        ((224, 511), (1, 9)),
        ((255, 287), (1, 2)),
    ],
)
def test_score_map_sizes(size: tuple[int, int], expected: tuple[int, int]) -> None:
    model = small_model(width=1 / 16)
    with torch.no_grad():
        out = fully_convolutional(model)(torch.zeros(1, 3, *size))
    assert out.shape == (1, 10, *expected)
    assert score_map_size(*size) == expected


def test_weight_updates_are_seen() -> None:
    model = small_model(seed=3)
    fcn = fully_convolutional(model)
    torch.manual_seed(3)
    x = torch.randn(1, 3, 256, 256)
    with torch.no_grad():
        before = fcn(x)
        model.classifier[6].bias += 1.0  # in place
        torch.testing.assert_close(fcn(x), before + 1.0)
        model.classifier[0].weight.mul_(2.0)  # in place, fc6
        changed = fcn(x)
        assert not torch.allclose(changed, before + 1.0, atol=1e-3)
        model.classifier[3].weight = nn.Parameter(torch.zeros_like(model.classifier[3].weight))  # replaced
        zeroed = fcn(x)  # fc7 outputs relu(bias) everywhere: every position scores the same
        torch.testing.assert_close(zeroed, zeroed[..., :1, :1].expand_as(zeroed))
        y = torch.randn(1, 3, 224, 224)
        torch.testing.assert_close(fcn(y).flatten(1), model(y), atol=1e-5, rtol=1e-5)


def test_to_and_train_eval_propagate_to_the_model() -> None:
    model = small_model(width=1 / 16)
    fcn = fully_convolutional(model)
    fcn.train()
    assert model.training and model.classifier[2].training
    fcn.eval()
    assert not model.training and not model.classifier[2].training
    fcn.to(torch.float64)
    assert model.classifier[0].weight.dtype == torch.float64
    x = torch.randn(1, 3, 224, 224, dtype=torch.float64)
    with torch.no_grad():
        torch.testing.assert_close(fcn(x).flatten(1), model(x))


def test_dropout_follows_the_models_modules() -> None:
    model = small_model(width=1 / 16)
    fcn = fully_convolutional(model)
    x = torch.randn(1, 3, 256, 256)
    with torch.no_grad():
        model.eval()  # on the model itself, not the wrapper
        assert torch.equal(fcn(x), fcn(x))
        model.train()
        torch.manual_seed(0)
        a = fcn(x)
        b = fcn(x)
        assert not torch.allclose(a, b)  # dropout is active in training mode
        model.classifier[2].p = model.classifier[5].p = 0.0
        model.eval()
        ref = fcn(x)
        model.train()
        torch.testing.assert_close(fcn(x), ref)  # the model's own p is used


def test_gradients_reach_the_model() -> None:
    model = small_model(width=1 / 16)
    fully_convolutional(model)(torch.randn(1, 3, 256, 224)).sum().backward()
    assert all(p.grad is not None for p in model.classifier.parameters())
    assert model.features[0].weight.grad is not None


def test_bad_inputs_are_refused_clearly(model: vggnets.VGG) -> None:
    fcn = fully_convolutional(model)
    with pytest.raises(ValueError, match=r"\(N, C, H, W\).*unsqueeze"):
        fcn(torch.zeros(3, 224, 224))
    with pytest.raises(ValueError, match=r"at least 224x224.*7x7 feature map.*got 223x300"):
        fcn(torch.zeros(1, 3, 223, 300))
    with pytest.raises(ValueError, match="got 300x200"):
        fcn(torch.zeros(1, 3, 300, 200))
    assert MIN_DENSE_SIZE == 224
    with pytest.raises(TypeError, match="needs a VGG model"):
        fully_convolutional(nn.Linear(3, 3))


def test_until_stops_at_each_head_layer_and_matches_the_model_at_224():
    torch.manual_seed(0)
    model = vggnets.vgg11(width=0.125, num_classes=10).eval()
    fcn = fully_convolutional(model)
    x = torch.randn(2, 3, 224, 224)
    with torch.no_grad():
        flat = torch.flatten(model.avgpool(model.features(x)), 1)
        fc6 = model.classifier[0](flat)
        fc7 = model.classifier[3](torch.relu(fc6))
        expected = {
            "fc6": fc6,
            "relu6": torch.relu(fc6),
            "fc7": fc7,
            "relu7": torch.relu(fc7),
            "fc8": model(x),
        }
        for name, value in expected.items():
            out = fcn(x, until=name)
            assert out.shape[-2:] == (1, 1) and torch.allclose(out.flatten(1), value, atol=1e-5), name
    with pytest.raises(ValueError, match="until must be one of"):
        fcn(x, until="pool5")

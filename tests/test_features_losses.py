"""PerceptualLoss (content and Gram-matrix style terms) and gram_matrix."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

import vggnets
from vggnets.core.transforms import CAFFE_MEAN, IMAGENET_MEAN, IMAGENET_STD
from vggnets.features.losses import PerceptualLoss, gram_matrix
from vggnets.models.weights import VGG16_Weights

STYLE = ("relu1_2", "relu2_2", "relu3_3")


def small(name: str = "vgg16", seed: int = 0) -> vggnets.VGG:
    torch.manual_seed(seed)
    return vggnets.build(name, width=0.125)


def images(*shape: int, seed: int = 0) -> torch.Tensor:
    return torch.rand(*shape, generator=torch.Generator().manual_seed(seed))


def make_loss(model: str | vggnets.VGG | None = None, **kwargs) -> PerceptualLoss:
    kwargs.setdefault("weights", None)
    return PerceptualLoss(small() if model is None else model, **kwargs)


def test_gram_matrix_by_hand():
    f = torch.tensor([[1.0, 2.0], [3.0, 4.0]]).view(1, 2, 1, 2)  # C=2, H=1, W=2
    torch.testing.assert_close(gram_matrix(f), torch.tensor([[[5.0, 11.0], [11.0, 25.0]]]) / 4)
    g = torch.randn(3, 5, 4, 6, generator=torch.Generator().manual_seed(0))
    shuffled = g.flatten(2)[:, :, torch.randperm(24)].view(3, 5, 4, 6)
    torch.testing.assert_close(gram_matrix(shuffled), gram_matrix(g))  # positions do not matter
    torch.testing.assert_close(gram_matrix(g)[1], g[1].reshape(5, -1) @ g[1].reshape(5, -1).T / 120)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        assert gram_matrix(g.bfloat16()).dtype == torch.float32


@pytest.mark.parametrize("model", ["vgg16", "vgg16_bn"])
def test_zero_for_identical_inputs_positive_for_different(model):
    loss = make_loss(small(model), layers=("relu2_2", "conv3_1"), style_layers=STYLE)
    x, y = images(2, 3, 32, 48), images(2, 3, 32, 48, seed=1)
    value = loss(x, x.clone())
    assert value.shape == () and value.dtype == torch.float32
    assert value.item() == pytest.approx(0.0, abs=1e-12)
    assert loss(x, y).item() > 0
    assert make_loss(layers=(), style_layers=STYLE)(x, y).item() > 0  # the style term alone


def test_differentiable_for_the_input_not_the_network():
    loss = make_loss(layers=("relu2_2",), style_layers=STYLE)
    x = images(2, 3, 40, 32).requires_grad_()
    loss(x, images(2, 3, 40, 32, seed=1)).backward()
    assert x.grad is not None and torch.isfinite(x.grad).all() and x.grad.abs().sum() > 0
    params = list(loss.model.parameters())
    assert params and all(not p.requires_grad and p.grad is None for p in params)
    assert list(loss.parameters()) == params  # the loss adds no parameters of its own


def test_terms_and_weights_combine_linearly():
    x, y = images(1, 3, 32, 32), images(1, 3, 32, 32, seed=1)
    model = small()
    a = make_loss(model, layers=("relu1_2",))(x, y)
    b = make_loss(model, layers=("relu3_3",))(x, y)
    s = make_loss(model, layers=(), style_layers=("relu2_2",))(x, y)
    both = make_loss(
        model,
        layers=("relu1_2", "relu3_3"),
        layer_weights=(2.0, 0.5),
        content_weight=3.0,
        style_layers=("relu2_2",),
        style_weight=10.0,
    )(x, y)
    torch.testing.assert_close(both, 3.0 * (2.0 * a + 0.5 * b) + 10.0 * s)
    single = make_loss(model, layers=("relu3_3",))
    with torch.no_grad():
        fx, fy = (single.extractor(single.normalize(t))["relu3_3"] for t in (x, y))
    torch.testing.assert_close(b, (fx - fy).square().mean())  # plain MSE of the feature maps


def test_input_range_is_mapped_to_the_same_features():
    model = small()
    x, y = images(2, 3, 32, 32), images(2, 3, 32, 32, seed=1)
    unit = make_loss(model, style_layers=STYLE)
    signed = make_loss(model, style_layers=STYLE, input_range=(-1, 1))
    bytes_ = make_loss(model, style_layers=STYLE, input_range=(0, 255))
    torch.testing.assert_close(signed.normalize(x * 2 - 1), unit.normalize(x))
    torch.testing.assert_close(bytes_.normalize(x * 255), unit.normalize(x))
    torch.testing.assert_close(signed(x * 2 - 1, y * 2 - 1), unit(x, y))
    mean, std = torch.tensor(IMAGENET_MEAN).view(3, 1, 1), torch.tensor(IMAGENET_STD).view(3, 1, 1)
    torch.testing.assert_close(unit.normalize(x), (x - mean) / std)


def test_caffe_style_normalisation_for_the_features_weights():
    x = images(2, 3, 32, 32)
    expected = x * 255 - torch.tensor(CAFFE_MEAN).view(3, 1, 1) * 255
    for weights in (
        VGG16_Weights.IMAGENET1K_FEATURES,
        "IMAGENET1K_FEATURES",
        "VGG16_Weights.IMAGENET1K_FEATURES",
    ):
        loss = make_loss(weights=weights)  # a model instance: weights only choose the normalisation
        torch.testing.assert_close(loss.normalize(x), expected, rtol=1e-5, atol=1e-4)
    signed = make_loss(weights=VGG16_Weights.IMAGENET1K_FEATURES, input_range=(-1, 1))
    torch.testing.assert_close(signed.normalize(x * 2 - 1), expected, rtol=1e-5, atol=1e-4)
    custom = make_loss(mean=(0.5, 0.5, 0.5), std=(0.25, 0.25, 0.25))
    torch.testing.assert_close(custom.normalize(x), (x - 0.5) / 0.25)
    # DEFAULT is torchvision's ImageNet weights, also for a configuration without published weights
    default = make_loss(small("vgg16_1x1"), weights="DEFAULT")
    torch.testing.assert_close(default.mean.flatten(), torch.tensor(IMAGENET_MEAN))


def test_model_by_name_from_a_checkpoint_file(tmp_path: Path):
    reference = small()
    path = tmp_path / "vgg16_small.pth"
    torch.save(reference.state_dict(), path)
    loss = PerceptualLoss("vgg16", weights=path, layers=("relu2_2",))
    assert loss.model.name == "vgg16" and loss.model.features[0].out_channels == 8
    torch.testing.assert_close(loss.model.features[0].weight, reference.features[0].weight)
    assert not any(p.requires_grad for p in loss.parameters())
    torch.testing.assert_close(
        loss.mean.flatten(), torch.tensor(IMAGENET_MEAN)
    )  # a file gets ImageNet statistics
    x, y = images(1, 3, 32, 32), images(1, 3, 32, 32, seed=1)
    torch.testing.assert_close(loss(x, y), make_loss(reference)(x, y))


def test_train_keeps_the_network_in_eval_mode():
    model = small("vgg16_bn").train()
    loss = make_loss(model, layers=("relu5_3",))
    assert not model.training
    loss.train()
    assert loss.training
    assert not any(m.training for m in model.modules())
    stats = model.features[1].running_mean.clone()
    x, y = images(2, 3, 32, 32), images(2, 3, 32, 32, seed=1)
    first = loss(x, y)
    torch.testing.assert_close(model.features[1].running_mean, stats)  # BN statistics are not updated
    torch.testing.assert_close(loss(x, y), first)
    loss.eval().train(True)
    assert not model.training


def test_autocast_bfloat16_is_close_to_float32():
    loss = make_loss(layers=("relu2_2", "relu3_3"), style_layers=STYLE, style_weight=1e3)
    x, y = images(2, 3, 32, 32), images(2, 3, 32, 32, seed=1)
    reference = loss(x, y)
    x.requires_grad_()
    with torch.autocast("cpu", dtype=torch.bfloat16):
        value = loss(x, y)
    assert value.dtype == torch.float32
    value.backward()
    assert x.grad is not None and torch.isfinite(x.grad).all()
    torch.testing.assert_close(value.detach(), reference, rtol=0.05, atol=0)


def test_style_target_may_be_one_image_of_another_size():
    loss = make_loss(layers=(), style_layers=STYLE)
    x = images(3, 3, 32, 32)
    style = images(1, 3, 48, 40, seed=1)
    batched = loss(x, style)
    torch.testing.assert_close(batched, loss(x, style.expand(3, -1, -1, -1).contiguous()))
    single = torch.stack([loss(x[i : i + 1], style) for i in range(3)]).mean()
    torch.testing.assert_close(batched, single)


def test_argument_errors():
    with pytest.raises(ValueError, match="at least one layer"):
        make_loss(layers=())
    with pytest.raises(ValueError, match="layer_weights has 1 values for 2 layers"):
        make_loss(layers=("relu1_2", "relu2_2"), layer_weights=(1.0,))
    with pytest.raises(ValueError, match="input_range"):
        make_loss(input_range=(1, 0))
    with pytest.raises(ValueError, match="unknown layer 'relu2_3'"):
        make_loss(style_layers=("relu2_3",))
    with pytest.raises(TypeError, match="model must be"):
        PerceptualLoss(16, weights=None)
    loss = make_loss()
    with pytest.raises(ValueError, match="RGB"):
        loss(images(1, 1, 32, 32), images(1, 1, 32, 32))
    with pytest.raises(ValueError, match="same shape"):
        loss(images(2, 3, 32, 32), images(1, 3, 32, 32))

"""Tests for vggnets.explain.cam: equality with pytorch-grad-cam (GradCAM and its variants) and captum's LayerGradCam
on width-1/8 VGG16s, random and briefly trained, at 64x64; named layers on every configuration; targets; errors."""

from __future__ import annotations

import copy

import numpy as np
import pytest
import torch
from torch import nn

import vggnets
from vggnets.core import configs
from vggnets.explain import METHODS, cam, cam_layers, default_layer, explain

SIZE = 64


def pearson(a, b) -> float:
    a, b = np.asarray(a, dtype=np.float64).ravel(), np.asarray(b, dtype=np.float64).ravel()
    return float(np.corrcoef(a, b)[0, 1])


def batch(n: int = 4, seed: int = 0) -> torch.Tensor:
    return torch.randn(n, 3, SIZE, SIZE, generator=torch.Generator().manual_seed(seed))


@pytest.fixture(scope="module")
def random_model() -> nn.Module:
    torch.manual_seed(0)
    return vggnets.vgg16(width=0.125, num_classes=10).eval()


@pytest.fixture(scope="module")
def random_case(random_model) -> tuple[nn.Module, torch.Tensor]:
    return random_model, batch()


def squares(n: int, g: torch.Generator, size: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Class k (0-3): a bright square of a quarter of the side somewhere in quadrant k of a noisy image."""
    labels = torch.randint(0, 4, (n,), generator=g)
    x = torch.randn(n, 3, size, size, generator=g) * 0.5
    half, side = size // 2, size // 4
    for i, k in enumerate(labels.tolist()):
        top = (k // 2) * half + int(torch.randint(0, side, (1,), generator=g))
        left = (k % 2) * half + int(torch.randint(0, side, (1,), generator=g))
        x[i, :, top : top + side, left : left + side] += 2.0
    return x, labels


@pytest.fixture(scope="module")
def trained_case() -> tuple[nn.Module, torch.Tensor]:
    """A width-1/8 VGG16 after 20 Adam steps on the squares task at 32x32 (its loss falls: the weights are
    trained), and a batch of new squares at 64x64."""
    torch.manual_seed(1)
    g = torch.Generator().manual_seed(1)
    model = vggnets.vgg16(width=0.125, num_classes=4, dropout=0.0)
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-3)
    losses = []
    for _ in range(20):
        x, y = squares(32, g, 32)
        loss = nn.functional.cross_entropy(model(x), y)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        losses.append(loss.item())
    assert np.mean(losses[-4:]) < 0.9 * np.mean(losses[:4])
    return model.eval(), squares(4, g, SIZE)[0]


def reference_cam(
    name: str, model: nn.Module, module: nn.Module, x: torch.Tensor, targets=None
) -> np.ndarray:
    gradcam = pytest.importorskip("pytorch_grad_cam")
    from pytorch_grad_cam.utils.model_targets import ClassifierOutputTarget

    classes = {
        "gradcam": gradcam.GradCAM,
        "gradcam++": gradcam.GradCAMPlusPlus,
        "xgradcam": gradcam.XGradCAM,
        "layercam": gradcam.LayerCAM,
        "hirescam": gradcam.HiResCAM,
    }
    wanted = None if targets is None else [ClassifierOutputTarget(int(t)) for t in targets]
    with classes[name](model=model, target_layers=[module]) as method:
        return method(input_tensor=x, targets=wanted)


# --- equality with pytorch-grad-cam ---


@pytest.mark.parametrize("layer", ["relu5_3", "pool5"])
@pytest.mark.parametrize("which", ["random", "trained"])
def test_gradcam_equals_pytorch_grad_cam(which, layer, request):
    model, x = request.getfixturevalue(f"{which}_case")
    ours = cam(model, x, layer)
    expected = reference_cam("gradcam", model, vggnets.features.named_layers(model)[layer], x)
    assert ours.shape == (len(x), SIZE, SIZE)
    for i in range(len(x)):
        assert ours[i].std() > 0.05  # a real map, not a constant
        assert pearson(ours[i], expected[i]) >= 0.999
    assert np.abs(ours.numpy() - expected).max() < 0.01  # interpolation differs only in rounding


@pytest.mark.parametrize("method", [m for m in METHODS if m != "gradcam"])
def test_variants_equal_pytorch_grad_cam(method, random_model):
    x = batch(3, seed=1)
    targets = [3, 7, 0]
    ours = cam(random_model, x, "relu4_3", target=targets, method=method)
    expected = reference_cam(method, random_model, random_model.features[22], x, targets)
    for i in range(len(x)):
        assert pearson(ours[i], expected[i]) >= 0.999


def test_convolution_layers_are_not_overwritten_by_in_place_relus(random_model):
    """conv5_3 is followed by an in-place ReLU: hooks on it (pytorch-grad-cam) read the ReLU's output instead; ours
    equals pytorch-grad-cam on a copy of the model whose ReLUs are not in place."""
    x = batch(4, seed=2)
    safe = copy.deepcopy(random_model)
    for module in safe.modules():
        if isinstance(module, nn.ReLU):
            module.inplace = False
    ours = cam(random_model, x, "conv5_3")
    truth = reference_cam("gradcam", safe, safe.features[28], x)
    hooked = reference_cam("gradcam", random_model, random_model.features[28], x)
    assert min(pearson(ours[i], truth[i]) for i in range(4)) >= 0.999
    assert min(pearson(hooked[i], truth[i]) for i in range(4)) < 0.99  # the hazard is real
    assert not torch.equal(ours, cam(random_model, x, "relu5_3"))


def test_raw_map_equals_captum_layer_gradcam(trained_case):
    attr = pytest.importorskip("captum.attr")
    trained_model, x = trained_case
    result = explain(trained_model, x, "relu5_3")
    expected = attr.LayerGradCam(trained_model, trained_model.features[29]).attribute(
        x, target=result.targets, relu_attributions=True
    )
    torch.testing.assert_close(result.raw, expected[:, 0].detach(), atol=1e-6, rtol=1e-4)


# --- named layers on every configuration ---

LAST_RELU = {
    "A": "relu5_2",
    "A-LRN": "relu5_2",
    "B": "relu5_2",
    "C": "relu5_3",
    "D": "relu5_3",
    "E": "relu5_4",
}


@pytest.mark.parametrize("name", list(configs.MODELS))
def test_named_layers_select_the_layer_on_every_configuration(name):
    torch.manual_seed(2)
    model = vggnets.get_model(name, width=0.125, num_classes=5).eval()
    spec = configs.MODELS[name]
    assert default_layer(model) == LAST_RELU[spec.config]
    layers = cam_layers(model)
    assert layers[0] == "conv1_1" and layers[-1] == "pool5" and "fc6" not in layers
    chosen = [default_layer(model), "pool5", "conv4_1", "pool2"]
    if spec.batch_norm:
        chosen.append("bn5_1")
    if spec.config == "A-LRN":
        chosen.append("norm1")
    x = torch.randn(2, 3, 32, 48)
    for layer in chosen:
        result = explain(model, x, layer)
        assert result.layer == layer and result.maps.shape == (2, 32, 48)
        assert result.maps.min() >= 0 and result.maps.max() <= 1
        index = layers.index(layer)
        with torch.no_grad():
            expected = model.features[: index + 1](x)
        assert result.raw.shape == (2, *expected.shape[-2:])


def test_torchvision_model_is_accepted():
    tv = pytest.importorskip("torchvision")
    with torch.device("meta"):
        model = tv.models.vgg11(num_classes=3)
    model.to_empty(device="cpu")
    vggnets.models.initialize(model)
    assert default_layer(model) == "relu5_2"
    assert cam(model.eval(), torch.randn(1, 3, 32, 32)).shape == (1, 32, 32)


# --- maps, targets, model state ---


def test_maps_span_zero_to_one_and_targets_follow_the_request(random_model):
    x = batch(3, seed=3)
    with torch.no_grad():
        logits = random_model(x)
    result = explain(random_model, x)
    assert result.layer == "relu5_3" and result.method == "gradcam"
    assert torch.equal(result.targets, logits.argmax(1))
    torch.testing.assert_close(result.logits, logits)
    assert torch.allclose(result.maps.amax((1, 2)), torch.ones(3), atol=1e-5)
    assert torch.allclose(result.maps.amin((1, 2)), torch.zeros(3))
    assert torch.equal(
        explain(random_model, x, target="top2").targets, logits.argsort(1, descending=True)[:, 1]
    )
    assert explain(random_model, x, target=4).targets.tolist() == [4, 4, 4]
    assert explain(random_model, x, target=[1, 2, 3]).targets.tolist() == [1, 2, 3]
    assert explain(random_model, x, target=torch.tensor([9])).targets.tolist() == [9, 9, 9]
    single = cam(random_model, x[0], target=5)
    torch.testing.assert_close(single, cam(random_model, x[:1], target=5)[0])
    different = cam(random_model, x[:1], target=int(logits[0].argmin()))[0]
    assert not torch.allclose(single, different)


def test_model_is_left_as_it_was(random_model):
    model = copy.deepcopy(random_model).train()
    model.zero_grad(set_to_none=True)  # the reference package leaves gradients on the shared model
    before = {k: v.clone() for k, v in model.state_dict().items()}
    x = batch(2, seed=4)
    with torch.no_grad():  # cam needs gradients and turns them on itself
        first = cam(model, x)
    assert model.training  # mode restored
    assert all(p.grad is None for p in model.parameters())
    assert all(torch.equal(before[k], v) for k, v in model.state_dict().items())
    torch.testing.assert_close(cam(model, x), first)  # evaluation mode inside: no dropout


def test_bad_requests_get_clear_errors(random_model):
    x = batch(2, seed=5)
    with pytest.raises(ValueError, match="classifier, which has no spatial map"):
        cam(random_model, x, "fc7")
    with pytest.raises(ValueError, match="no layer 'relu5_4'.*conv1_1"):
        cam(random_model, x, "relu5_4")
    with pytest.raises(ValueError, match="unknown CAM method"):
        cam(random_model, x, method="scorecam")
    with pytest.raises(ValueError, match="out of range: the model has 10 classes"):
        cam(random_model, x, target=10)
    with pytest.raises(ValueError, match="2 images"):
        cam(random_model, x, target=[1, 2, 3])
    with pytest.raises(ValueError, match="top1"):
        cam(random_model, x, target="best")
    with pytest.raises(ValueError, match="32x32"):
        cam(random_model, x[..., :16, :16])
    with pytest.raises(ValueError, match=r"\(N, 3, H, W\)"):
        cam(random_model, x[:, :1])
    with torch.inference_mode(), pytest.raises(RuntimeError, match="inference_mode"):
        cam(random_model, x)
    assert cam(random_model, x, method="GradCAM-PP").shape == (2, SIZE, SIZE)  # spelling variants

"""The paper's evaluation protocols: each against a reference built by hand, batching, costs, names and errors."""

from __future__ import annotations

import copy
import math
from pathlib import Path

import numpy as np
import pytest
import torch
from torch import nn
from torchvision.transforms import functional as TF

import vggnets
from vggnets.core import configs
from vggnets.core.transforms import IMAGENET_MEAN, IMAGENET_STD
from vggnets.core.vgg import VGG, make_features
from vggnets.evaluation.protocols import (
    PROTOCOLS,
    Average,
    Center,
    Dense,
    MultiCrop,
    MultiScale,
    Protocol,
    make_protocol,
    paper_scales,
)
from vggnets.io.images import read_image
from vggnets.models.dense import fully_convolutional
from vggnets.models.weights import VGG16_Weights

IMAGES = Path(__file__).resolve().parents[1] / "examples" / "images"
NORM = {"mean": IMAGENET_MEAN, "std": IMAGENET_STD}
#: Float rounding differs with batch composition; every "differs" check below is at least 50x larger.
TOL = {"atol": 2e-5, "rtol": 1e-4}


def small_model(name: str = "vgg11", *, width: float = 1 / 16, num_classes: int = 10, seed: int = 0) -> VGG:
    """A width-reduced model with random weights whose posteriors depend on the image (FC layers Kaiming-initialised)."""
    torch.manual_seed(seed)
    model = vggnets.build(name, width=width, num_classes=num_classes)
    for i in (0, 3, 6):
        nn.init.kaiming_normal_(model.classifier[i].weight, nonlinearity="relu")
    with torch.no_grad():
        model.classifier[6].weight.mul_(3.0)
    return model.eval()


def reference_posteriors(model: VGG, x: torch.Tensor) -> torch.Tensor:
    with torch.no_grad():
        return model(x).softmax(dim=1)


def normalise(img: torch.Tensor, mean=IMAGENET_MEAN, std=IMAGENET_STD) -> torch.Tensor:
    """uint8 (..., 3, H, W) -> (x / 255 - mean) / std, written out by hand."""
    m = torch.tensor(mean).view(3, 1, 1)
    s = torch.tensor(std).view(3, 1, 1)
    return (img.float() / 255 - m) / s


@pytest.fixture(scope="module")
def model() -> VGG:
    return small_model()


@pytest.fixture(scope="module")
def photos() -> list[torch.Tensor]:
    """The five example photos: 512x512 (x2), 300x451, 400x600, 427x640."""
    return [read_image(p) for p in sorted(IMAGES.iterdir()) if p.suffix in (".jpg", ".png")]


@pytest.fixture(scope="module")
def small_photos(photos: list[torch.Tensor]) -> list[torch.Tensor]:
    """Small non-square crops of the photos, of different sizes (two of the same size), portrait and landscape."""
    return [
        photos[0][:, 100:340, 80:380].contiguous(),  # 240x300
        photos[2][:, :300, 100:330].contiguous(),  # 300x230 (portrait)
        photos[3][:, 50:290, 200:500].contiguous(),  # 240x300 again
        photos[4][:, 100:330, 100:330].contiguous(),  # 230x230
    ]


# ------------------------------------------------------------------------------------------------------------
# Center


@pytest.mark.parametrize("tag", ["IMAGENET1K_V1", "IMAGENET1K_FEATURES"])
def test_center_is_the_weights_preset_then_the_model(
    model: VGG, photos: list[torch.Tensor], tag: str
) -> None:
    preset = VGG16_Weights[tag].transforms()
    if (
        tag == "IMAGENET1K_FEATURES"
    ):  # Caffe-style input is 255x larger: scale conv1_1 so posteriors do not saturate
        model = copy.deepcopy(model)
        with torch.no_grad():
            model.features[0].weight /= 255
    ref = reference_posteriors(model, torch.stack([preset(img) for img in photos]))
    got = Center(model, mean=preset.mean, std=preset.std, batch_size=2)(photos)
    assert got.dtype == torch.float32 and got.shape == (5, 10)
    torch.testing.assert_close(got, ref, **TOL)
    # The comparison can tell preprocessings apart: the posteriors depend on the image and on the resize.
    assert (ref - ref.mean(0)).abs().max() > 1e-2
    other = Center(model, mean=preset.mean, std=preset.std, resize_size=288)(photos)
    assert (other - ref).abs().max() > 1e-3


# ------------------------------------------------------------------------------------------------------------
# Dense and multi-scale


def test_dense_at_224_on_a_square_image_is_the_model_on_the_resized_image(
    model: VGG, photos: list[torch.Tensor]
) -> None:
    img = photos[0][:, 50:350, 100:400]  # 300x300
    resized = TF.resize(img, [224], antialias=True)
    ref = reference_posteriors(model, normalise(resized)[None])
    got = Dense(model, scale=224, **NORM)([img])
    torch.testing.assert_close(got, ref, **TOL)
    torch.testing.assert_close(Center(model, resize_size=224, **NORM)([img]), ref, **TOL)


def test_dense_averages_the_logit_map_then_applies_softmax(model: VGG, photos: list[torch.Tensor]) -> None:
    img = photos[4]  # 427x640 -> 384x575 at Q=384: a 6x11 score map
    x = normalise(TF.resize(img, [384], antialias=True))[None]
    with torch.no_grad():
        scores = fully_convolutional(model)(x)
    assert scores.shape == (1, 10, 6, 11)
    ref = scores.mean(dim=(2, 3)).softmax(dim=1)
    got = Dense(model, scale=384, **NORM)([img])
    torch.testing.assert_close(got, ref, **TOL)
    mean_of_softmax = scores.softmax(dim=1).mean(dim=(2, 3))
    assert (got - mean_of_softmax).abs().max() > 1e-3  # the other reading of "sum-pool" differs


def test_dense_flip_averages_the_posteriors_of_the_image_and_its_mirror(
    model: VGG, photos: list[torch.Tensor]
) -> None:
    # Sides already at the scale: no resize, so the mirror of the resized image is exactly the resized mirror.
    images = [photos[4][:, :256, :320].contiguous(), photos[3][:, 100:420, 200:456].contiguous()]
    plain = Dense(model, scale=256, **NORM)
    for img in images:
        ref = (plain([img]) + plain([torch.flip(img, dims=[-1])])) / 2
        got = Dense(model, scale=256, flip=True, **NORM)([img])
        torch.testing.assert_close(got, ref, **TOL)
        assert (got - plain([img])).abs().max() > 1e-3  # the mirror image did count
    # Resized photos: equal up to the one-grey-level rounding of resizing a mirrored image.
    flipped = Dense(model, scale=384, flip=True, **NORM)(photos)
    plain = Dense(model, scale=384, **NORM)
    ref = (plain(photos) + plain([img.flip(-1) for img in photos])) / 2
    torch.testing.assert_close(flipped, ref, atol=1e-4, rtol=0)
    assert (flipped - plain(photos)).abs().max() > 1e-2


def test_multiscale_is_the_mean_of_dense_over_scales(model: VGG, small_photos: list[torch.Tensor]) -> None:
    scales = (224, 256, 320)
    got = MultiScale(model, scales=scales, flip=True, **NORM)(small_photos)
    each = [Dense(model, scale=q, flip=True, **NORM)(small_photos) for q in scales]
    torch.testing.assert_close(got, torch.stack(each).mean(0), **TOL)
    assert (each[0] - each[2]).abs().max() > 1e-3


def test_dense_groups_images_by_resized_size(model: VGG, small_photos: list[torch.Tensor]) -> None:
    shapes: list[tuple[int, ...]] = []
    handle = model.features.register_forward_hook(lambda m, args, out: shapes.append(tuple(args[0].shape)))
    try:
        Dense(model, scale=224, flip=True, batch_size=3, **NORM)(small_photos)
    finally:
        handle.remove()
    # 240x300 (x2) -> 224x280: 4 inputs with the mirrors -> batches of 3 and 1; 300x230 -> 292x224; 230x230 -> 224x224.
    assert sorted(shapes) == sorted([(3, 3, 224, 280), (1, 3, 224, 280), (2, 3, 292, 224), (2, 3, 224, 224)])


# ------------------------------------------------------------------------------------------------------------
# Multi-crop


def test_multicrop_runs_50_crops_per_scale(model: VGG, small_photos: list[torch.Tensor]) -> None:
    calls: list[tuple[int, ...]] = []
    handle = model.register_forward_hook(lambda m, args, out: calls.append(tuple(args[0].shape)))
    try:
        out = MultiCrop(model, batch_size=64, **NORM)(small_photos[:1])
        assert out.shape == (1, 10)
        assert sum(s[0] for s in calls) == 150 and all(s[1:] == (3, 224, 224) for s in calls)
        assert len(calls) == 3  # 64 + 64 + 22
        calls.clear()
        MultiCrop(model, scales=(256,), batch_size=16, **NORM)(small_photos[:2])
        assert sum(s[0] for s in calls) == 100 and len(calls) == math.ceil(100 / 16)
        calls.clear()
        MultiCrop(model, scales=(256, 288), flip=False, grid=3, **NORM)(small_photos[:1])
        assert sum(s[0] for s in calls) == 18
    finally:
        handle.remove()
    assert MultiCrop(model, **NORM).describe()["crops"] == 150


def test_multicrop_equals_a_hand_built_reference(model: VGG, small_photos: list[torch.Tensor]) -> None:
    img = small_photos[1]  # 300x230
    scales, grid = (224, 256), 3
    crops = []
    for q in scales:
        r = TF.resize(img, [q], antialias=True)
        h, w = r.shape[1:]
        tops = np.round(np.linspace(0, h - 224, grid)).astype(int)
        lefts = np.round(np.linspace(0, w - 224, grid)).astype(int)
        for t in tops:
            for left in lefts:
                c = r[:, t : t + 224, left : left + 224]
                crops += [c, c.flip(-1)]
    assert len(crops) == 2 * grid * grid * len(scales)
    ref = reference_posteriors(model, normalise(torch.stack(crops))).mean(0, keepdim=True)
    got = MultiCrop(model, scales=scales, grid=grid, batch_size=5, **NORM)([img])
    torch.testing.assert_close(got, ref, **TOL)


def test_multicrop_with_one_crop_is_center(model: VGG, photos: list[torch.Tensor]) -> None:
    got = MultiCrop(model, scales=(256,), grid=1, flip=False, **NORM)(photos)
    torch.testing.assert_close(got, Center(model, **NORM)(photos), **TOL)


# ------------------------------------------------------------------------------------------------------------
# All protocols


def test_average_is_the_mean_of_its_parts(model: VGG, small_photos: list[torch.Tensor]) -> None:
    other = small_model(seed=1)
    parts = [Center(model, **NORM), Dense(other, scale=256, flip=True, **NORM)]
    got = Average(parts, name="ensemble")(small_photos)
    torch.testing.assert_close(got, (parts[0](small_photos) + parts[1](small_photos)) / 2)
    desc = Average(parts, name="ensemble").describe()
    assert desc["protocol"] == "ensemble" and desc["scales"] == [256] and desc["flip"] is False
    assert [p["protocol"] for p in desc["parts"]] == ["center", "dense"]
    with pytest.raises(ValueError, match="different shapes"):
        Average([Center(model, **NORM), Center(small_model(num_classes=7), **NORM)])(small_photos)
    with pytest.raises(ValueError, match="at least one"):
        Average([])


@pytest.mark.parametrize("name", ["center", "dense", "multiscale", "multicrop"])
def test_mixed_sizes_in_one_call_equal_one_by_one(
    model: VGG, small_photos: list[torch.Tensor], name: str
) -> None:
    scales = {"dense": (224,), "center": None, "multicrop": (224,)}.get(name, (224, 256))
    protocol = make_protocol(name, model, scales=scales, flip=True, batch_size=3, **NORM)
    together = protocol(small_photos)
    alone = torch.cat([protocol([img]) for img in small_photos])
    torch.testing.assert_close(together, alone, **TOL)
    assert (
        together - together.mean(0)
    ).abs().max() > 1e-3  # the rows differ: the order was kept, not just the mean


@pytest.mark.parametrize("name", PROTOCOLS)
def test_posteriors(model: VGG, small_photos: list[torch.Tensor], name: str) -> None:
    scales = (224,) if name in ("multicrop", "dense+multicrop") else None
    model.train()
    try:
        out = make_protocol(name, model, scales=scales, **NORM)(small_photos[:2])
        assert model.training and model.classifier[2].training  # the caller's mode is restored
    finally:
        model.eval()
    assert out.shape == (2, 10) and out.dtype == torch.float32 and out.device.type == "cpu"
    assert not out.is_inference() and not out.requires_grad
    assert (out >= 0).all()
    torch.testing.assert_close(out.sum(1), torch.ones(2))
    torch.testing.assert_close(
        out, make_protocol(name, model, scales=scales, **NORM)(small_photos[:2])
    )  # eval mode
    assert make_protocol(name, model, **NORM)([]).shape == (0, 10)


def test_eval_mode_keeps_batch_norm_statistics() -> None:
    model = small_model("vgg11_bn", width=1 / 16).train()
    before = {k: v.clone() for k, v in model.state_dict().items()}
    img = torch.randint(0, 256, (3, 240, 260), dtype=torch.uint8)
    a = Dense(model, scale=224, **NORM)([img])
    b = Dense(model, scale=224, **NORM)([img])
    torch.testing.assert_close(a, b)  # no dropout
    assert all(torch.equal(before[k], v) for k, v in model.state_dict().items())
    assert model.training


def test_a_double_precision_model_still_gives_float32(small_photos: list[torch.Tensor]) -> None:
    model = small_model(width=1 / 16).double()
    out = Dense(model, scale=224, **NORM)(small_photos[:1])
    assert out.dtype == torch.float32
    torch.testing.assert_close(out.sum(), torch.tensor(1.0))


def test_make_protocol_names_and_defaults(model: VGG) -> None:
    assert PROTOCOLS == ("center", "dense", "multiscale", "multicrop", "dense+multicrop")
    made = {name: make_protocol(name, model, **NORM) for name in PROTOCOLS}
    assert {name: type(p) for name, p in made.items()} == {
        "center": Center,
        "dense": Dense,
        "multiscale": MultiScale,
        "multicrop": MultiCrop,
        "dense+multicrop": Average,
    }
    assert all(isinstance(p, Protocol) and p.name == name for name, p in made.items())
    assert made["dense"].describe() == {
        "protocol": "dense",
        "scales": [384],
        "flip": False,
        "crops": 0,
        "passes": 1,
    }
    assert made["multiscale"].describe()["scales"] == [256, 384, 512]
    assert made["multicrop"].describe()["flip"] is True
    assert (
        make_protocol("multicrop", model, flip=False, **NORM).describe()["crops"] == 150
    )  # always both flips
    center = make_protocol("center", model, scales=(256, 384, 512), flip=True, **NORM).describe()
    assert center == {
        "protocol": "center",
        "scales": [256],
        "flip": False,
        "crops": 1,
        "passes": 1,
        "resize_size": 256,
        "crop_size": 224,
    }
    both = make_protocol("dense+multicrop", model, scales=(256, 384), flip=True, **NORM)
    assert [type(p) for p in both.protocols] == [MultiScale, MultiCrop]
    assert both.describe()["scales"] == [256, 384] and both.describe()["flip"] is True
    assert both.describe()["crops"] == 100 and both.describe()["passes"] == 104
    assert make_protocol("dense", model, scales=[256], flip=True, **NORM).describe()["passes"] == 2
    with pytest.raises(ValueError, match="one scale.*multiscale"):
        make_protocol("dense", model, scales=(256, 384), **NORM)
    with pytest.raises(ValueError, match="center, dense, multiscale, multicrop, dense\\+multicrop"):
        make_protocol("tencrop", model, **NORM)


def test_arguments_are_checked(model: VGG) -> None:
    with pytest.raises(ValueError, match="scale must be at least 224.*7x7"):
        Dense(model, scale=200, **NORM)
    with pytest.raises(ValueError, match="use MultiScale"):
        Dense(model, scale=(256, 384), **NORM)
    with pytest.raises(ValueError, match="every scale must be at least 224"):
        MultiScale(model, scales=(256, 192), **NORM)
    with pytest.raises(ValueError, match="at least one scale"):
        MultiScale(model, scales=(), **NORM)
    with pytest.raises(ValueError, match="crops must fit"):
        MultiCrop(model, scales=(200,), **NORM)
    with pytest.raises(ValueError, match="grid must be at least 1"):
        MultiCrop(model, grid=0, **NORM)
    with pytest.raises(ValueError, match="batch_size must be at least 1"):
        Center(model, batch_size=0, **NORM)
    with pytest.raises(ValueError, match="must be an integer"):
        Dense(model, scale=300.5, **NORM)
    with pytest.raises(ValueError, match="mean must have 3 values"):
        Center(model, mean=(0.5, 0.5), std=IMAGENET_STD)
    with pytest.raises(ValueError, match="zeros"):
        Center(model, mean=IMAGENET_MEAN, std=(0.2, 0.0, 0.2))
    with pytest.raises(ValueError, match="center crop of 224 must fit"):
        Center(model, resize_size=200, **NORM)
    with pytest.raises(TypeError, match="VGG"):
        Center(nn.Linear(2, 2), **NORM)
    protocol = Dense(model, scale=224, **NORM)
    with pytest.raises(ValueError, match="dtype torch.float32; expected uint8"):
        protocol([torch.zeros(3, 240, 240)])
    with pytest.raises(ValueError, match=r"image 1 has shape \(240, 240\)"):
        protocol([torch.zeros(3, 240, 240, dtype=torch.uint8), torch.zeros(240, 240, dtype=torch.uint8)])
    with pytest.raises(TypeError, match="read_image"):
        protocol(["cat.jpg"])


def test_paper_scales() -> None:
    assert paper_scales() == (256, 384, 512)
    assert paper_scales(256) == (224, 256, 288)
    assert paper_scales(384) == (352, 384, 416)
    with pytest.raises(ValueError, match="at least 256"):
        paper_scales(224)


# ------------------------------------------------------------------------------------------------------------
# Cost


@pytest.fixture(scope="module")
def meta_vgg16() -> VGG:
    """The full-size vgg16 on the meta device: its layers' shapes, no memory."""
    with torch.device("meta"):
        return VGG(make_features(configs.MODELS["vgg16"].layers), init_weights="pytorch")


def test_gmacs_per_image_dense_versus_multicrop(meta_vgg16: VGG) -> None:
    assert Dense(meta_vgg16, scale=224, **NORM).gmacs_per_image(224, 224) == pytest.approx(15.47, abs=0.005)
    assert Dense(meta_vgg16, scale=224, **NORM).gmacs_per_image(224, 224) == pytest.approx(
        configs.gmacs("vgg16")
    )
    for q, expected in [(256, 20.5), (384, 49.6), (512, 92.5)]:
        assert Dense(meta_vgg16, scale=q, **NORM).gmacs_per_image(q, q) == pytest.approx(expected, abs=0.06)
    assert Dense(meta_vgg16, scale=256, flip=True, **NORM).gmacs_per_image(500, 500) == pytest.approx(
        41.08, abs=0.01
    )
    dense = MultiScale(meta_vgg16, flip=True, **NORM)
    crops = MultiCrop(meta_vgg16, **NORM)
    assert dense.gmacs_per_image(256, 256) == pytest.approx(325, abs=0.5)
    assert dense.gmacs_per_image(480, 640) == pytest.approx(440, abs=0.5)  # 4:3
    assert crops.gmacs_per_image(256, 256) == pytest.approx(2321, abs=1)
    assert crops.gmacs_per_image(480, 640) == crops.gmacs_per_image(256, 256)
    assert 7.0 < crops.gmacs_per_image(256, 256) / dense.gmacs_per_image(256, 256) < 7.2  # square
    assert 5.0 < crops.gmacs_per_image(480, 640) / dense.gmacs_per_image(480, 640) < 5.5  # 4:3
    both = make_protocol("dense+multicrop", meta_vgg16, flip=True, **NORM)
    assert both.gmacs_per_image(256, 256) == pytest.approx(
        dense.gmacs_per_image(256, 256) + crops.gmacs_per_image(256, 256)
    )
    assert Center(meta_vgg16, **NORM).gmacs_per_image(1000, 300) == pytest.approx(configs.gmacs("vgg16"))

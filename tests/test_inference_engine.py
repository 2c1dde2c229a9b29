"""``optimize`` and the Predictor: eager paths agree with fp32, any torchvision VGG works, batch buckets, bad arguments.

Also the helpers the other engine tests share (tests/test_inference_*.py, tests/test_cli_engine.py): narrow models
(width 1/16) and 64x64 crops of the bundled photos, so that the compiled paths build in seconds.
"""

from __future__ import annotations

import functools

import pytest
import torch
import torchvision

import vggnets
from vggnets.core.transforms import IMAGENET_MEAN as MEAN
from vggnets.core.transforms import IMAGENET_STD as STD
from vggnets.errors import VggnetsError
from vggnets.inference import plan
from vggnets.inference.calibration import load_calibration_images
from vggnets.inference.engine import Predictor, optimize
from vggnets.inference.graph import CropUint8

SIZE = 64


def randomize_batchnorm(model: torch.nn.Module, seed: int = 0) -> torch.nn.Module:
    """Non-trivial running statistics and affine parameters, so that folding them is really tested."""
    gen = torch.Generator().manual_seed(seed)
    for m in model.modules():
        if isinstance(m, torch.nn.BatchNorm2d):
            n = m.num_features
            m.running_mean.copy_(torch.rand(n, generator=gen) * 2 - 1)
            m.running_var.copy_(torch.rand(n, generator=gen) * 1.5 + 0.5)
            m.weight.data.copy_(torch.rand(n, generator=gen) * 1.5 + 0.5)
            m.bias.data.copy_(torch.rand(n, generator=gen) - 0.5)
    return model.eval()


@functools.cache
def tiny_bn() -> torch.nn.Module:
    """A width-1/16 vgg11_bn with 10 classes and non-trivial batch norm (built once; never modified by the tests)."""
    torch.manual_seed(0)
    return randomize_batchnorm(vggnets.vgg11_bn(width=1 / 16, num_classes=10))


@functools.cache
def tiny() -> torch.nn.Module:
    """A width-1/16 vgg11 with 10 classes (built once; never modified by the tests)."""
    torch.manual_seed(1)
    return vggnets.vgg11(width=1 / 16, num_classes=10).eval()


@functools.cache
def photos() -> torch.Tensor:
    """uint8 64x64 crops of the bundled photos (real images: int8 calibration and agreement)."""
    return load_calibration_images(None, CropUint8(73, SIZE))


def reference(model: torch.nn.Module, images: torch.Tensor) -> torch.Tensor:
    """fp32 eager logits with the float preprocessing a plain PyTorch user writes."""
    x = (images.float() / 255 - torch.tensor(MEAN).view(1, 3, 1, 1)) / torch.tensor(STD).view(1, 3, 1, 1)
    with torch.no_grad():
        return model(x)


def cosine(a: torch.Tensor, b: torch.Tensor) -> float:
    return torch.nn.functional.cosine_similarity(a.float(), b.float(), dim=1).min().item()


def build(model, precision="fp32", **kw) -> Predictor:
    kw.setdefault("image_size", SIZE)
    kw.setdefault("batch_size", 4)
    return optimize(model, precision, **kw)


def test_eager_predictor_equals_fp32_reference():
    predictor = build(tiny_bn(), compile=False)
    assert predictor.info.precision == "fp32" and predictor.info.compile == "none"
    torch.testing.assert_close(predictor(photos()), reference(tiny_bn(), photos()), atol=1e-4, rtol=1e-4)
    # a list of crops works too, and the result is a plain float32 CPU tensor
    out = predictor(list(photos()))
    assert out.dtype == torch.float32 and out.device.type == "cpu" and out.shape == (len(photos()), 10)


def test_predictor_takes_a_torchvision_module_and_folds_its_batchnorm():
    torch.manual_seed(3)
    model = randomize_batchnorm(torchvision.models.vgg11_bn(num_classes=7))
    predictor = build(model, compile=False, batch_size=2)
    assert predictor.num_classes == 7
    assert not any(isinstance(m, torch.nn.BatchNorm2d) for m in predictor._runner.modules())
    torch.testing.assert_close(predictor(photos()), reference(model, photos()), atol=1e-4, rtol=1e-4)


def test_predictor_rejects_float_input():
    predictor = build(tiny(), compile=False, warmup=False)
    with pytest.raises(VggnetsError, match="uint8"):
        predictor(torch.rand(2, 3, SIZE, SIZE))


def test_batch_buckets_pad_the_last_batch_and_match_one_by_one():
    seen = []
    predictor = build(tiny(), compile=False, batch_size=4, buckets=(1, 4), warmup=False)
    runner = predictor._runner
    predictor._runner = lambda x: (seen.append(len(x)), runner(x))[1]
    images = torch.cat([photos(), photos()[:2]])  # 7 images: 4 + 3 (padded to 4)
    together = predictor(images)
    assert seen == [4, 4]  # only bucket sizes reach the model: nothing would recompile
    one_by_one = torch.cat([predictor(images[i : i + 1]) for i in range(len(images))])
    assert seen[2:] == [1] * len(images)
    torch.testing.assert_close(together, one_by_one, atol=1e-5, rtol=1e-5)
    assert predictor.bucket_for(3) == 4 and predictor.bucket_for(1) == 1


def test_bad_arguments_are_clear():
    with pytest.raises(VggnetsError, match="precision"):
        build(tiny(), "fp8", compile=False)
    with pytest.raises(VggnetsError, match="compile mode"):
        build(tiny(), compile="fast")
    with pytest.raises(VggnetsError, match="batch_size"):
        build(tiny(), compile=False, batch_size=0)


def test_preprocessing_follows_the_weights_unless_given():
    weights = vggnets.VGG16_Weights.IMAGENET1K_V1  # its preset: resize 256, crop 224, ImageNet statistics
    predictor = optimize(tiny(), compile=False, weights=weights, batch_size=1, warmup=False)
    assert (predictor.preprocess.resize_size, predictor.preprocess.crop_size) == ([256], [224])
    given = optimize(tiny(), compile=False, weights=weights, image_size=SIZE, batch_size=1, warmup=False)
    assert (given.preprocess.resize_size, given.preprocess.crop_size) == ([256], [SIZE])


@pytest.fixture
def bf16_hardware(monkeypatch):
    """Pretend this CPU has AVX-512 BF16 so the bf16 path runs (emulated, but numerically the same)."""
    monkeypatch.setattr(plan, "cpu_precision_support", lambda: {"bf16": True, "int8": True, "amx": False})


def test_bf16_path_agrees_with_fp32(bf16_hardware):
    predictor = build(tiny_bn(), "bf16", compile=False)
    assert predictor.info.precision == "bf16" and not predictor.info.warnings
    assert next(predictor._runner.parameters()).dtype == torch.bfloat16
    assert cosine(predictor(photos()), reference(tiny_bn(), photos())) > 0.99


def test_importable_from_the_package_and_the_engine_module():
    from vggnets.inference import engine

    assert vggnets.optimize is engine.optimize and vggnets.Predictor is engine.Predictor
    assert issubclass(engine.EngineWarning, UserWarning)

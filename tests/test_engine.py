"""The fast inference engine: every path agrees with fp32 eager, BN folding is exact, uint8 input with in-graph
normalisation equals the float pipeline, batch buckets, the artefact cache, and each fallback.

Models are narrow (width 1/16) and images 64x64 so that the compiled paths build in seconds.
"""

from __future__ import annotations

import warnings
from pathlib import Path

import pytest
import torch
import torchvision

import vggnets
from vggnets.errors import VggnetsError
from vggnets.inference import engine
from vggnets.inference.engine import (
    CropUint8,
    EngineWarning,
    NormalizedInput,
    fold_batchnorm,
    load_calibration_images,
    optimize,
)

SIZE = 64
MEAN, STD = (0.485, 0.456, 0.406), (0.229, 0.224, 0.225)
HAS_TORCHAO = engine.torchao_available()


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


@pytest.fixture(scope="module")
def tiny_bn() -> torch.nn.Module:
    torch.manual_seed(0)
    return randomize_batchnorm(vggnets.vgg11_bn(width=1 / 16, num_classes=10))


@pytest.fixture(scope="module")
def tiny() -> torch.nn.Module:
    torch.manual_seed(1)
    return vggnets.vgg11(width=1 / 16, num_classes=10).eval()


@pytest.fixture(scope="module")
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


def build(model, precision="fp32", **kw):
    kw.setdefault("image_size", SIZE)
    kw.setdefault("batch_size", 4)
    return optimize(model, precision, **kw)


# ------------------------------------------------------------------------------------------------- building blocks


def test_fold_batchnorm_is_exact_and_leaves_the_model_alone(tiny_bn):
    folded = fold_batchnorm(tiny_bn)
    assert not any(isinstance(m, torch.nn.BatchNorm2d) for m in folded.modules())
    assert any(isinstance(m, torch.nn.BatchNorm2d) for m in tiny_bn.modules())  # the original is untouched
    x = torch.randn(3, 3, SIZE, SIZE)
    with torch.no_grad():
        torch.testing.assert_close(folded(x), tiny_bn(x), atol=1e-5, rtol=1e-4)
    # indices are kept (BN -> Identity), so feature-layer names still line up
    assert len(folded.features) == len(tiny_bn.features)


def test_uint8_input_with_in_graph_normalisation_equals_the_float_pipeline(tiny, photos):
    wrapped = NormalizedInput(tiny, MEAN, STD).eval()
    with torch.no_grad():
        torch.testing.assert_close(wrapped(photos), reference(tiny, photos), atol=1e-5, rtol=1e-5)


def test_uint8_crop_matches_the_weights_preset_within_one_grey_level():
    from vggnets.core.transforms import ImageClassification
    from vggnets.io.images import read_image

    image = read_image(engine.sample_images_dir() / "chelsea_cat.png")
    crop = CropUint8(256, 224)(image)
    assert crop.dtype == torch.uint8 and crop.shape == (3, 224, 224)
    preset = ImageClassification(crop_size=224, resize_size=256)(image)
    ours = (crop.float() / 255 - torch.tensor(MEAN).view(3, 1, 1)) / torch.tensor(STD).view(3, 1, 1)
    assert (ours - preset).abs().max().item() <= 1.01 / 255 / min(STD)


# ------------------------------------------------------------------------------------------------- eager predictor


def test_eager_predictor_equals_fp32_reference(tiny_bn, photos):
    predictor = build(tiny_bn, compile=False)
    assert predictor.info.precision == "fp32" and predictor.info.compile == "none"
    torch.testing.assert_close(predictor(photos), reference(tiny_bn, photos), atol=1e-4, rtol=1e-4)
    # a list of crops works too, and the result is a plain float32 CPU tensor
    out = predictor(list(photos))
    assert out.dtype == torch.float32 and out.device.type == "cpu" and out.shape == (len(photos), 10)


def test_predictor_takes_a_torchvision_module_and_folds_its_batchnorm(photos):
    torch.manual_seed(3)
    model = randomize_batchnorm(torchvision.models.vgg11_bn(num_classes=7))
    predictor = build(model, compile=False, batch_size=2)
    assert predictor.num_classes == 7
    assert not any(isinstance(m, torch.nn.BatchNorm2d) for m in predictor._runner.modules())
    torch.testing.assert_close(predictor(photos), reference(model, photos), atol=1e-4, rtol=1e-4)


def test_predictor_rejects_float_input(tiny):
    predictor = build(tiny, compile=False, warmup=False)
    with pytest.raises(VggnetsError, match="uint8"):
        predictor(torch.rand(2, 3, SIZE, SIZE))


def test_batch_buckets_pad_the_last_batch_and_match_one_by_one(tiny, photos):
    seen = []
    predictor = build(tiny, compile=False, batch_size=4, buckets=(1, 4), warmup=False)
    runner = predictor._runner
    predictor._runner = lambda x: (seen.append(len(x)), runner(x))[1]
    images = torch.cat([photos, photos[:2]])  # 7 images: 4 + 3 (padded to 4)
    together = predictor(images)
    assert seen == [4, 4]  # only bucket sizes reach the model: nothing would recompile
    one_by_one = torch.cat([predictor(images[i : i + 1]) for i in range(len(images))])
    assert seen[2:] == [1] * len(images)
    torch.testing.assert_close(together, one_by_one, atol=1e-5, rtol=1e-5)
    assert predictor.bucket_for(3) == 4 and predictor.bucket_for(1) == 1


def test_default_buckets():
    assert engine._default_buckets(16, "jit") == (1, 16)
    assert engine._default_buckets(16, "aot") == (1, 2, 4, 8, 16)
    assert engine._default_buckets(12, "aot") == (1, 2, 4, 8, 12)


def test_bad_arguments_are_clear(tiny):
    with pytest.raises(VggnetsError, match="precision"):
        build(tiny, "fp8", compile=False)
    with pytest.raises(VggnetsError, match="compile mode"):
        build(tiny, compile="fast")
    with pytest.raises(VggnetsError, match="batch_size"):
        build(tiny, compile=False, batch_size=0)


# ------------------------------------------------------------------------------------------------- precisions


@pytest.fixture
def bf16_hardware(monkeypatch):
    """Pretend this CPU has AVX-512 BF16 so the bf16 path runs (emulated, but numerically the same)."""
    monkeypatch.setattr(engine, "cpu_precision_support", lambda: {"bf16": True, "int8": True, "amx": False})


def test_bf16_path_agrees_with_fp32(tiny_bn, photos, bf16_hardware):
    predictor = build(tiny_bn, "bf16", compile=False)
    assert predictor.info.precision == "bf16" and not predictor.info.warnings
    assert next(predictor._runner.parameters()).dtype == torch.bfloat16
    assert cosine(predictor(photos), reference(tiny_bn, photos)) > 0.99


@pytest.mark.skipif(not HAS_TORCHAO, reason="torchao is not installed")
def test_int8_eager_agrees_with_fp32_on_real_photos(tiny_bn, photos):
    predictor = build(tiny_bn, "int8", compile=False, calibration=photos)
    assert predictor.info.precision == "int8"
    assert isinstance(predictor._runner, torch.fx.GraphModule)  # the PT2E-converted graph
    logits = predictor(photos)
    assert cosine(logits, reference(tiny_bn, photos)) > 0.99


@pytest.mark.skipif(not HAS_TORCHAO, reason="torchao is not installed")
def test_int8_calibration_directory(tiny, tmp_path):
    import shutil

    for name in ("chelsea_cat.png", "coffee_cup.jpg"):
        shutil.copy(engine.sample_images_dir() / name, tmp_path / name)
    (tmp_path / "notes.txt").write_text("not an image")
    crops = load_calibration_images(tmp_path, CropUint8(73, SIZE))
    assert crops.shape == (2, 3, SIZE, SIZE) and crops.dtype == torch.uint8


def test_calibration_errors(tmp_path):
    with pytest.raises(VggnetsError, match="does not exist"):
        load_calibration_images(tmp_path / "missing", CropUint8(73, SIZE))
    (tmp_path / "broken.jpg").write_bytes(b"not a jpeg")
    with pytest.raises(VggnetsError, match="no readable images"):
        load_calibration_images(tmp_path, CropUint8(73, SIZE))
    with pytest.raises(VggnetsError, match="uint8"):
        load_calibration_images(torch.rand(2, 3, SIZE, SIZE), CropUint8(73, SIZE))


# ------------------------------------------------------------------------------------------------- compiled paths


def test_aot_fp32_matches_eager_and_is_cached(tiny_bn, photos, tmp_path, monkeypatch):
    monkeypatch.setenv("VGGNETS_ENGINE_CACHE", str(tmp_path / "engine"))
    first = build(tiny_bn, compile="aot")
    assert (first.info.compile, first.info.cache) == ("aot", "miss") and not first.info.warnings
    expected = reference(tiny_bn, photos)
    torch.testing.assert_close(first(photos), expected, atol=1e-4, rtol=1e-4)
    artefacts = list((tmp_path / "engine").glob("*.pt2"))
    assert len(artefacts) == 1 and not list((tmp_path / "engine").glob(".tmp-*"))

    second = build(tiny_bn, compile="aot")  # a second command: loads the package, compiles nothing
    assert second.info.cache == "hit" and second.info.build_seconds < first.info.build_seconds
    torch.testing.assert_close(second(photos), expected, atol=1e-4, rtol=1e-4)

    good = artefacts[0].read_bytes()
    artefacts[0].write_bytes(b"truncated")  # a damaged artefact is rebuilt, with a warning
    rebuilt = []

    def fake_build(module, example, path):  # stands in for the compiler: the test checks the control flow
        rebuilt.append(path)
        path.write_bytes(good)
        return path

    monkeypatch.setattr(engine, "build_package", fake_build)
    with pytest.warns(EngineWarning, match="rebuilding"):
        third = build(tiny_bn, compile="aot")
    assert third.info.cache == "miss" and rebuilt == [artefacts[0]]
    torch.testing.assert_close(third(photos), expected, atol=1e-4, rtol=1e-4)


def test_jit_fp32_matches_eager(tiny, photos):
    predictor = build(tiny, compile="jit", buckets=(4,))  # one bucket: one compilation
    assert predictor.info.compile == "jit" and predictor.info.buckets == (4,)
    torch.testing.assert_close(predictor(photos), reference(tiny, photos), atol=1e-4, rtol=1e-4)


@pytest.mark.skipif(not HAS_TORCHAO, reason="torchao is not installed")
def test_aot_int8_matches_eager_int8(tiny_bn, photos, tmp_path, monkeypatch):
    monkeypatch.setenv("VGGNETS_ENGINE_CACHE", str(tmp_path / "engine"))
    compiled = build(tiny_bn, "int8", compile="aot", calibration=photos)
    assert (compiled.info.precision, compiled.info.compile) == ("int8", "aot")
    eager = build(tiny_bn, "int8", compile=False, calibration=photos)
    logits = compiled(photos)
    assert cosine(logits, eager(photos)) > 0.995
    assert cosine(logits, reference(tiny_bn, photos)) > 0.99

    def no_quantization(*args, **kwargs):
        raise AssertionError(
            "a cached int8 engine must load without quantising (and importing torchao) again"
        )

    monkeypatch.setattr(engine, "quantize_int8", no_quantization)
    again = build(tiny_bn, "int8", compile="aot", calibration=photos)  # the next command: a cache hit
    assert (again.info.precision, again.info.cache) == ("int8", "hit") and not again.info.warnings
    torch.testing.assert_close(again(photos), logits)


@pytest.mark.skipif(not HAS_TORCHAO, reason="torchao is not installed")
def test_torchao_presence_is_checked_without_importing_it():
    import subprocess
    import sys

    code = "import sys, vggnets.inference.engine as e; assert e.torchao_available(); assert 'torchao' not in sys.modules"
    subprocess.run([sys.executable, "-c", code], check=True, timeout=120)


# ------------------------------------------------------------------------------------------------- fallbacks


def test_bf16_without_hardware_falls_back_to_fp32(tiny, monkeypatch):
    monkeypatch.setattr(engine, "cpu_precision_support", lambda: {"bf16": False, "int8": False, "amx": False})
    with pytest.warns(EngineWarning, match="no bf16 hardware"):
        predictor = build(tiny, "bf16", compile=False)
    assert predictor.info.precision == "fp32" and predictor.info.requested_precision == "bf16"


def test_int8_without_torchao_falls_back(tiny, monkeypatch):
    monkeypatch.setattr(engine, "torchao_available", lambda: False)
    monkeypatch.setattr(engine, "cpu_precision_support", lambda: {"bf16": False, "int8": False, "amx": False})
    with pytest.warns(EngineWarning, match="needs torchao"):
        predictor = build(tiny, "int8", compile=False)
    assert predictor.info.precision == "fp32"


def test_compile_failures_fall_back_to_eager(tiny, photos, monkeypatch):
    def broken(*args, **kwargs):
        raise RuntimeError("inductor exploded")

    monkeypatch.setattr(engine, "_aot_runner", broken)
    monkeypatch.setattr(engine, "_jit_runner", broken)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        predictor = build(tiny, compile=True)
    messages = [str(w.message) for w in caught if issubclass(w.category, EngineWarning)]
    assert any("AOTInductor compilation failed" in m for m in messages)
    assert any("torch.compile failed" in m for m in messages)
    assert predictor.info.compile == "none"
    torch.testing.assert_close(predictor(photos), reference(tiny, photos), atol=1e-4, rtol=1e-4)


def test_a_compiled_model_that_fails_on_first_run_falls_back(tiny, photos, monkeypatch):
    def runner_that_fails(*args, **kwargs):
        def run(x):
            raise RuntimeError("bad kernel")

        return run

    monkeypatch.setattr(engine, "_jit_runner", runner_that_fails)
    with pytest.warns(EngineWarning, match="failed on its first run"):
        predictor = build(tiny, compile="jit")
    assert predictor.info.compile == "none"
    torch.testing.assert_close(predictor(photos), reference(tiny, photos), atol=1e-4, rtol=1e-4)


def test_unavailable_devices_fall_back_to_cpu(tiny, monkeypatch):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    with pytest.warns(EngineWarning, match="no CUDA device"):
        predictor = build(tiny, device="cuda", compile=False)
    assert predictor.device.type == "cpu"
    with pytest.warns(EngineWarning, match="not supported"):
        build(tiny, device="meta", compile=False)


def test_int8_on_a_gpu_becomes_bf16():
    notes: list[str] = []
    assert engine._resolve_precision("int8", torch.device("cuda"), notes) == "bf16"
    assert "CPU path" in notes[0]


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_cuda_bf16_compiled_agrees(tiny_bn, photos):
    predictor = build(tiny_bn, "bf16", device="cuda")
    assert predictor.info.device.startswith("cuda")
    assert cosine(predictor(photos), reference(tiny_bn, photos)) > 0.99


def test_sample_images_ship_with_the_package():
    folder = engine.sample_images_dir()
    assert len([p for p in folder.iterdir() if p.suffix in (".jpg", ".png")]) == 5
    assert Path("examples/images").resolve() == folder.resolve() or not Path("examples/images").exists()

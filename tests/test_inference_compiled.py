"""Compiled runners: the AOT package matches eager and is cached (and rebuilt when damaged), torch.compile matches
eager, int8 compiles and loads from the cache without quantising again, and compile failures fall back to eager."""

from __future__ import annotations

import warnings

import pytest
import torch
from test_inference_engine import build, cosine, photos, reference, tiny, tiny_bn

from vggnets.inference import calibration, compiled
from vggnets.inference.engine import EngineWarning
from vggnets.inference.plan import torchao_available

HAS_TORCHAO = torchao_available()


def test_aot_fp32_matches_eager_and_is_cached(tmp_path, monkeypatch):
    monkeypatch.setenv("VGGNETS_ENGINE_CACHE", str(tmp_path / "engine"))
    first = build(tiny_bn(), compile="aot")
    assert (first.info.compile, first.info.cache) == ("aot", "miss") and not first.info.warnings
    expected = reference(tiny_bn(), photos())
    torch.testing.assert_close(first(photos()), expected, atol=1e-4, rtol=1e-4)
    artefacts = list((tmp_path / "engine").glob("*.pt2"))
    assert len(artefacts) == 1 and first.info.artifact == str(artefacts[0])
    assert [p.name for p in (tmp_path / "engine").iterdir()] == [artefacts[0].name]  # no temporary file left

    second = build(tiny_bn(), compile="aot")  # a second command: loads the package, compiles nothing
    assert second.info.cache == "hit" and second.info.build_seconds < first.info.build_seconds
    torch.testing.assert_close(second(photos()), expected, atol=1e-4, rtol=1e-4)

    good = artefacts[0].read_bytes()
    artefacts[0].write_bytes(b"truncated")  # a damaged artefact is rebuilt, with a warning
    rebuilt = []

    def fake_build(module, example, path):  # stands in for the compiler: the test checks the control flow
        rebuilt.append(path)
        path.write_bytes(good)
        return path

    monkeypatch.setattr(compiled, "build_package", fake_build)
    with pytest.warns(EngineWarning, match="rebuilding"):
        third = build(tiny_bn(), compile="aot")
    assert third.info.cache == "miss" and rebuilt == [artefacts[0]]
    torch.testing.assert_close(third(photos()), expected, atol=1e-4, rtol=1e-4)


def test_artifact_key_changes_with_the_weights_and_precision():
    wrapped = torch.nn.Linear(2, 2)
    example = torch.zeros(4, 3, 8, 8, dtype=torch.uint8)
    path = compiled.artifact_path(wrapped, "fp32", example, None)
    assert path == compiled.artifact_path(wrapped, "fp32", torch.zeros(1, 3, 8, 8, dtype=torch.uint8), None)
    assert path.parent == compiled.engine_cache_dir() and path.name.startswith("fp32-")
    assert compiled.artifact_path(wrapped, "bf16", example, None) != path
    assert compiled.artifact_path(wrapped, "fp32", example, example) != path
    with torch.no_grad():
        wrapped.bias.add_(1)
    assert compiled.artifact_path(wrapped, "fp32", example, None) != path


def test_jit_fp32_matches_eager():
    predictor = build(tiny(), compile="jit", buckets=(4,))  # one bucket: one compilation
    assert predictor.info.compile == "jit" and predictor.info.buckets == (4,)
    torch.testing.assert_close(predictor(photos()), reference(tiny(), photos()), atol=1e-4, rtol=1e-4)


@pytest.mark.skipif(not HAS_TORCHAO, reason="torchao is not installed")
def test_aot_int8_matches_eager_int8(tmp_path, monkeypatch):
    monkeypatch.setenv("VGGNETS_ENGINE_CACHE", str(tmp_path / "engine"))
    model = tiny_bn()
    compiled_int8 = build(model, "int8", compile="aot", calibration=photos())
    assert (compiled_int8.info.precision, compiled_int8.info.compile) == ("int8", "aot")
    eager = build(model, "int8", compile=False, calibration=photos())
    logits = compiled_int8(photos())
    assert cosine(logits, eager(photos())) > 0.995
    assert cosine(logits, reference(model, photos())) > 0.99

    def no_quantization(*args, **kwargs):
        raise AssertionError(
            "a cached int8 engine must load without quantising (and importing torchao) again"
        )

    monkeypatch.setattr(calibration, "quantize_int8", no_quantization)
    again = build(model, "int8", compile="aot", calibration=photos())  # the next command: a cache hit
    assert (again.info.precision, again.info.cache) == ("int8", "hit") and not again.info.warnings
    torch.testing.assert_close(again(photos()), logits)


def test_compile_failures_fall_back_to_eager(monkeypatch):
    def broken(*args, **kwargs):
        raise RuntimeError("inductor exploded")

    monkeypatch.setattr(compiled, "aot_runner", broken)
    monkeypatch.setattr(compiled, "jit_runner", broken)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        predictor = build(tiny(), compile=True)
    messages = [str(w.message) for w in caught if issubclass(w.category, EngineWarning)]
    assert any("AOTInductor compilation failed" in m for m in messages)
    assert any("torch.compile failed" in m for m in messages)
    assert predictor.info.compile == "none"
    torch.testing.assert_close(predictor(photos()), reference(tiny(), photos()), atol=1e-4, rtol=1e-4)


def test_a_compiled_model_that_fails_on_first_run_falls_back(monkeypatch):
    def runner_that_fails(*args, **kwargs):
        def run(x):
            raise RuntimeError("bad kernel")

        return run

    monkeypatch.setattr(compiled, "jit_runner", runner_that_fails)
    with pytest.warns(EngineWarning, match="failed on its first run"):
        predictor = build(tiny(), compile="jit")
    assert predictor.info.compile == "none" and predictor.info.precision == "fp32"
    torch.testing.assert_close(predictor(photos()), reference(tiny(), photos()), atol=1e-4, rtol=1e-4)


@pytest.mark.cuda
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_cuda_bf16_compiled_agrees():
    predictor = build(tiny_bn(), "bf16", device="cuda")
    assert predictor.info.device.startswith("cuda")
    assert cosine(predictor(photos()), reference(tiny_bn(), photos())) > 0.99

"""Peer backends: ONNX Runtime and OpenVINO behind the Predictor agree with the torch path; choice and fallbacks.

A width-1/8 vgg11 at 64x64 crops of the bundled photos, so that the export, quantisation and runtimes build in
seconds. Peers that are not installed are skipped.
"""

from __future__ import annotations

import contextlib
import functools
import importlib.util
from pathlib import Path

import pytest
import torch
from test_inference_engine import MEAN, SIZE, STD, build, cosine, photos, reference

import vggnets
from vggnets.bench import peaks, peers, ratios
from vggnets.errors import MissingDependencyError, VggnetsError
from vggnets.inference import backends, onnx_models
from vggnets.inference.graph import prepare
from vggnets.inference.plan import EngineInfo, EngineWarning

HAS = {name: importlib.util.find_spec(name) is not None for name in ("onnxruntime", "openvino", "onnxscript")}
needs_ort = pytest.mark.skipif(
    not (HAS["onnxruntime"] and HAS["onnxscript"]), reason="onnxruntime not installed"
)
needs_ov = pytest.mark.skipif(not (HAS["openvino"] and HAS["onnxscript"]), reason="openvino not installed")


@pytest.fixture(scope="module", autouse=True)
def shared_engine_cache(tmp_path_factory: pytest.TempPathFactory):
    """One engine cache for this module: the peers share the fp32 export (each test still gets its own TORCH_HOME)."""
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("VGGNETS_ENGINE_CACHE", str(tmp_path_factory.mktemp("engine-cache")))
        yield


@functools.cache
def narrow() -> torch.nn.Module:
    """A width-1/8 vgg11 with 10 classes (built once; never modified by the tests)."""
    torch.manual_seed(2)
    return vggnets.vgg11(width=0.125, num_classes=10).eval()


@needs_ort
def test_onnxruntime_fp32_agrees_with_torch_and_is_a_predictor():
    torch_path = build(narrow(), compile=False)
    peer = build(narrow(), backend="onnxruntime")
    info = peer.info
    assert (info.backend, info.compile, info.precision, info.cache) == (
        "onnxruntime",
        "onnxruntime",
        "fp32",
        "miss",
    )
    assert Path(info.artifact).suffix == ".onnx" and not info.warnings
    # the same Predictor: same preprocessing, buckets, uint8 checks, outputs as float32 (N, K) on the CPU
    assert type(peer) is type(torch_path) and peer.buckets == (1, 2, 4)  # shape-generic, as an AOT package
    assert peer.preprocess.crop_size == torch_path.preprocess.crop_size and peer.num_classes == 10
    out = peer(photos())
    assert out.dtype == torch.float32 and out.shape == (len(photos()), 10)
    torch.testing.assert_close(out, torch_path(photos()), atol=1e-4, rtol=1e-4)
    torch.testing.assert_close(out, reference(narrow(), photos()), atol=1e-4, rtol=1e-4)
    torch.testing.assert_close(peer(list(photos()[:3])), out[:3])  # a list, a partial bucket
    with pytest.raises(VggnetsError, match="uint8"):
        peer(torch.rand(1, 3, SIZE, SIZE))
    # a second predictor loads the cached export
    assert build(narrow(), backend="onnxruntime", warmup=False).info.cache == "hit"


@needs_ort
def test_onnxruntime_int8_qdq_is_calibrated_and_close():
    peer = build(narrow(), "int8", backend="onnxruntime")
    assert (peer.info.backend, peer.info.precision) == ("onnxruntime", "int8")
    assert "onnx-int8-" in Path(peer.info.artifact).name
    assert cosine(peer(photos()), reference(narrow(), photos())) > 0.99


@needs_ov
@pytest.mark.parametrize(("precision", "tolerance"), [("fp32", 1e-4), ("bf16", None), ("int8", None)])
def test_openvino_agrees_with_torch(precision, tolerance):
    peer = build(narrow(), precision, backend="openvino")
    assert (peer.info.backend, peer.info.precision) == ("openvino", precision)
    out, ref = peer(photos()), reference(narrow(), photos())
    if tolerance is not None:
        torch.testing.assert_close(out, ref, atol=tolerance, rtol=tolerance)
    assert cosine(out, ref) > 0.99


def test_backend_choice_and_fallbacks(monkeypatch):
    cpu, notes = torch.device("cpu"), []
    with pytest.raises(VggnetsError, match="unknown backend"):
        backends.resolve_backend("tvm", "fp32", cpu, notes)
    assert backends.resolve_backend("torch", "int8", cpu, notes) == "torch" and not notes
    if HAS["onnxruntime"] and HAS["onnxscript"]:
        assert backends.resolve_backend("onnxruntime", "bf16", cpu, notes) == "torch"
        assert "no bf16" in notes[-1]
        assert backends.resolve_backend("onnxruntime", "fp32", torch.device("cuda"), notes) == "torch"
        assert "CPU only" in notes[-1]
    # auto: a peer only where it was measured faster on this CPU kind, and only when installed
    monkeypatch.setattr(backends, "describe_cpu", lambda: {"kind": "test-kind"})
    monkeypatch.setitem(backends.AUTO_CHOICES, ("test-kind", "fp32"), "onnxruntime")
    assert backends.resolve_backend("auto", "int8", cpu, notes) == "torch"
    assert backends.resolve_backend("auto", "fp32", torch.device("cuda"), notes) == "torch"
    expected = "onnxruntime" if HAS["onnxruntime"] else "torch"
    assert backends.resolve_backend("auto", "fp32", cpu, notes) == expected
    # a peer that is not installed: one error naming the extra (auto quietly keeps torch)
    monkeypatch.setattr(onnx_models.importlib.util, "find_spec", lambda name: None)
    with pytest.raises(MissingDependencyError, match=r"vggnets\[peers\]"):
        backends.resolve_backend("openvino", "fp32", cpu, notes)
    assert backends.resolve_backend("auto", "fp32", cpu, notes) == "torch"


@needs_ort
def test_a_peer_that_fails_to_build_falls_back_to_torch(monkeypatch):
    def broken(*args, **kwargs):
        raise RuntimeError("no kernels today")

    monkeypatch.setattr("vggnets.inference.engine.peer_runner", broken)
    with pytest.warns(EngineWarning, match="no kernels today"):
        predictor = build(narrow(), compile=False, backend="onnxruntime")
    assert predictor.info.backend == "torch" and predictor.info.compile == "none"
    torch.testing.assert_close(predictor(photos()), reference(narrow(), photos()), atol=1e-4, rtol=1e-4)


@needs_ort
def test_quantizer_merges_batches_as_one_run(tmp_path):
    """The per-batch calibration gives the same QDQ model as onnxruntime's own single pass over all batches."""
    import onnx

    wrapped = prepare(narrow(), MEAN, STD, torch.float32, torch.device("cpu"))
    images = torch.cat([photos()] * 4)  # > CALIBRATION_BATCH images: several batches
    with onnx_models.onnx_file(wrapped, "fp32", images[:2]) as (
        source,
        _,
    ):  # the export the other tests cached
        onnx_models.quantize_qdq(source, tmp_path / "a.onnx", images)
        with pytest.MonkeyPatch.context() as patch:
            patch.setattr(onnx_models, "_one_batch_at_a_time", contextlib.nullcontext)
            onnx_models.quantize_qdq(source, tmp_path / "b.onnx", images)

    def tensors(path: Path) -> dict:
        return {t.name: onnx.numpy_helper.to_array(t) for t in onnx.load(str(path)).graph.initializer}

    a, b = tensors(tmp_path / "a.onnx"), tensors(tmp_path / "b.onnx")
    assert a.keys() == b.keys() and all((a[k] == b[k]).all() for k in a)


def test_parse_peers_and_skips(monkeypatch):
    assert peers.parse_peers(None) == [] and peers.parse_peers("all") == list(peers.PEERS)
    assert peers.parse_peers("openvino, onnxruntime") == ["onnxruntime", "openvino"]
    with pytest.raises(VggnetsError, match="unknown peer"):
        peers.parse_peers("onnxruntime,tensorrt")
    assert peers.peer_paths(["onnxruntime", "openvino"], ["bf16", "int8"]) == [
        ("onnxruntime", "int8"),
        ("openvino", "bf16"),
        ("openvino", "int8"),
    ]
    monkeypatch.setattr(backends, "installed", lambda name: name != "openvino")
    monkeypatch.setattr(peers, "installed", backends.installed)
    line = peers.unavailable("openvino")
    assert line.startswith("openvino: skipped") and "vggnets[peers]" in line


def test_peer_ratios_compare_with_the_best_peer_at_each_precision():
    rows = [
        {"path": "baseline", "compile": "none", "precision": "fp32", "images_per_s": 4.0},
        {"path": "ours fp32", "compile": "aot", "precision": "fp32", "images_per_s": 6.0},
        {"path": "ours bf16", "compile": "aot", "precision": "bf16", "images_per_s": 12.0},
        {"path": "ours int8", "compile": "aot", "precision": "int8", "images_per_s": 27.0},
        {"path": "onnxruntime fp32", "compile": "onnxruntime", "precision": "fp32", "images_per_s": 7.5},
        {"path": "openvino fp32", "compile": "openvino", "precision": "fp32", "images_per_s": 3.0},
        {"path": "openvino int8", "compile": "openvino", "precision": "int8", "images_per_s": 13.5},
    ]
    by_path = {r["path"]: r for r in ratios.peer_ratios(rows)}
    assert by_path["ours fp32"]["best_peer"] == "onnxruntime fp32" and by_path["ours fp32"]["ratio"] == 0.8
    assert by_path["ours int8"]["ratio"] == 2.0 and by_path["ours bf16"]["best_peer"] is None
    text = "\n".join(
        ratios.format_peers({"peer_ratios": list(by_path.values()), "peers_skipped": ["x: skipped"]})
    )
    assert (
        "| ours fp32 (fp32) | 6.00 | onnxruntime fp32 | 7.50 | **0.80x** |" in text and "- x: skipped" in text
    )


def test_peak_reference_is_the_best_primitive(monkeypatch):
    matmul = {"fp32_gflops": 178.0, "bf16_gflops": 429.0, "int8_gops": None}
    conv = {"fp32_gflops": 221.0, "bf16_gflops": 400.0, "int8_gops": 880.0}
    conv["sources"] = dict.fromkeys(peaks.KEYS.values(), "oneDNN conv")
    best = peaks.best_peaks(matmul, conv)
    assert best["fp32_gflops"] == 221.0 and best["sources"]["fp32_gflops"] == "oneDNN conv"
    assert best["bf16_gflops"] == 429.0 and best["sources"]["bf16_gflops"] == "matmul"
    assert best["int8_gops"] == 880.0
    line = peaks.format_peaks({**best, "matmul": matmul})
    assert "fp32 221 GFLOP/s (oneDNN conv; matmul 178)" in line and "bf16 429 GFLOP/s (matmul)" in line
    # the probes run (tiny shapes here) and give a positive rate for every dtype with a primitive
    monkeypatch.setattr(peaks, "CONV_SHAPES", ((16, 16, 8),))
    measured = peaks.conv_peaks(batch=1, repeats=1)
    assert measured["fp32_gflops"] > 0 and set(measured["sources"]) <= set(peaks.KEYS.values())


def test_engine_info_records_the_backend():
    info = EngineInfo("fp32", "fp32", "aot", "True", "cpu", (1, 4))
    assert info.backend == "torch" and info.to_dict()["backend"] == "torch"

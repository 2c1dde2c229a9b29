"""Peer runtimes from the command line: `vggnets benchmark --peers` and `--backend` on classify."""

from __future__ import annotations

import importlib.util
import json

import pytest
from test_cli_engine import IMAGES, classify, cli, tiny_file, top1  # noqa: F401 - tiny_file is a fixture

from vggnets.bench.report import ROW_KEYS
from vggnets.inference import backends

HAS_ORT = all(importlib.util.find_spec(m) for m in ("onnxruntime", "onnx", "onnxscript"))
needs_ort = pytest.mark.skipif(not HAS_ORT, reason="onnxruntime, onnx or onnxscript not installed")


@pytest.fixture(autouse=True)
def shared_engine_cache(tmp_path_factory, monkeypatch):
    monkeypatch.setenv("VGGNETS_ENGINE_CACHE", str(tmp_path_factory.getbasetemp() / "peers-engine-cache"))


@needs_ort
def test_benchmark_with_peers_reports_their_rows_and_the_ratio(capsys, tmp_path, monkeypatch):
    real = backends.installed
    monkeypatch.setattr("vggnets.bench.peers.installed", lambda name: name != "openvino" and real(name))
    output = tmp_path / "bench.json"
    argv = ["benchmark", "--model", "vgg11", "--width", "0.0625", "--image-size", "32", "-b", "4"]
    argv += ["--precision", "fp32", "--compile", "none", "--iterations", "1", "--latency-iterations", "2"]
    argv += ["--peers", "onnxruntime,openvino", "--no-peaks", "--quiet", "--output", output]
    code, out, err = cli(capsys, *argv)
    assert code == 0, err
    report = json.loads(output.read_text())
    assert [r["path"] for r in report["rows"]] == ["baseline", "ours fp32", "onnxruntime fp32"]
    peer = report["rows"][2]
    assert set(peer) == set(ROW_KEYS) and peer["compile"] == "onnxruntime" and peer["cosine_min"] > 0.999
    (ratio,) = report["peer_ratios"]
    assert ratio["best_peer"] == "onnxruntime fp32" and ratio["ratio"] > 0
    assert report["peers_skipped"] == [
        "openvino: skipped, openvino not installed (pip install 'vggnets[peers]')"
    ]
    assert "| onnxruntime fp32 | fp32, onnxruntime |" in out and "best peer at that precision" in out
    assert "- openvino: skipped" in out


def test_benchmark_refuses_an_unknown_peer(capsys):
    code, _, err = cli(capsys, "benchmark", "--peers", "onnxruntime,tensorrt")
    assert code == 2 and "unknown peer tensorrt" in err


@needs_ort
def test_classify_through_onnxruntime_matches_the_torch_engine(capsys, tiny_file):  # noqa: F811
    code, torch_doc, err = classify(capsys, tiny_file, "--precision", "fp32", "--compile", "none")
    assert code == 0, err
    code, peer_doc, err = classify(capsys, tiny_file, "--backend", "onnxruntime")
    assert code == 0, err
    assert top1(peer_doc) == top1(torch_doc)
    for a, b in zip(torch_doc["results"], peer_doc["results"]):
        assert a["predictions"][0]["probability"] == pytest.approx(
            b["predictions"][0]["probability"], abs=1e-4
        )


def test_classify_backend_is_checked(capsys, tiny_file):  # noqa: F811
    code, _, err = cli(capsys, "classify", IMAGES, "--backend", "tvm")
    assert code == 2 and "--backend" in err

"""The engine from the command line: `vggnets classify --precision`, `vggnets benchmark`, and the bench helpers."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

import vggnets
from vggnets.bench import measure
from vggnets.bench.report import ROW_KEYS
from vggnets.cli import main
from vggnets.inference import plan
from vggnets.inference.calibration import sample_images_dir

HAS_TORCHAO = plan.torchao_available()
IMAGES = sample_images_dir()


def cli(capsys: pytest.CaptureFixture[str], *argv: object) -> tuple[int, str, str]:
    code = main([str(a) for a in argv])
    out, err = capsys.readouterr()
    assert "Traceback" not in err
    return code, out, err


@pytest.fixture(scope="module")
def tiny_file(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A width-1/16 vgg11_bn with 1000 classes (ImageNet labels apply), non-trivial BN statistics."""
    from test_inference_engine import randomize_batchnorm

    path = tmp_path_factory.mktemp("engine") / "tiny_vgg11_bn.pth"
    torch.manual_seed(5)
    torch.save(randomize_batchnorm(vggnets.vgg11_bn(width=1 / 16)).state_dict(), path)
    return path


def top1(doc: dict) -> dict[str, int]:
    return {Path(r["file"]).name: r["predictions"][0]["index"] for r in doc["results"]}


def classify(capsys, tiny_file, *extra) -> tuple[int, dict, str]:
    code, out, err = cli(
        capsys, "classify", IMAGES, "--model", "vgg11_bn", "--weights", tiny_file, "--format", "json", *extra
    )
    return code, (json.loads(out) if out else {}), err


def test_classify_with_the_engine_matches_the_plain_model(capsys, tiny_file):
    code, plain, _ = classify(capsys, tiny_file)
    assert code == 0
    code, fast, err = classify(capsys, tiny_file, "--precision", "fp32", "--compile", "none")
    assert code == 0, err
    assert len(fast["results"]) == 5
    # same labels; probabilities equal up to the uint8 resize's one-grey-level rounding
    assert top1(fast) == top1(plain)
    for a, b in zip(plain["results"], fast["results"]):
        assert a["predictions"][0]["probability"] == pytest.approx(
            b["predictions"][0]["probability"], abs=0.02
        )


@pytest.mark.skipif(not HAS_TORCHAO, reason="torchao is not installed")
def test_classify_int8_eager_runs_and_mostly_agrees(capsys, tiny_file):
    code, plain, _ = classify(capsys, tiny_file)
    code, fast, err = classify(capsys, tiny_file, "--precision", "int8", "--compile", "none", "-b", "4")
    assert code == 0, err
    assert len(fast["results"]) == 5 and all(r["error"] is None for r in fast["results"])
    same = sum(top1(fast)[k] == v for k, v in top1(plain).items())
    assert same >= 3  # random weights give small margins; the benchmark reports real agreement


def test_classify_engine_warnings_and_errors(capsys, tiny_file, tmp_path, monkeypatch):
    monkeypatch.setattr(plan, "cpu_precision_support", lambda: {"bf16": False, "int8": False, "amx": False})
    code, doc, err = classify(capsys, tiny_file, "--precision", "bf16", "--compile", "none")
    assert code == 0 and "warning: this CPU has no bf16 hardware" in err
    code, _, err = classify(
        capsys, tiny_file, "--precision", "int8", "--compile", "none", "--calibration", tmp_path / "nope"
    )
    assert code == 2 and "calibration directory" in err and "does not exist" in err


def test_classify_help_documents_the_engine(capsys):
    code, out, _ = cli(capsys, "classify", "--help")
    assert code == 0
    for option in ("--precision", "--compile", "--calibration", "fast inference engine"):
        assert option in out


def test_benchmark_smoke_writes_json_and_plot(capsys, tmp_path):
    output, plot = tmp_path / "bench.json", tmp_path / "bench.png"
    precisions = "fp32,int8" if HAS_TORCHAO else "fp32"
    argv = ["benchmark", "--model", "vgg11_bn", "--width", "0.0625", "--image-size", "32", "-b", "4"]
    argv += ["--precision", precisions, "--compile", "none", "--iterations", "1", "--latency-iterations", "2"]
    argv += ["--images", IMAGES, "--output", output, "--plot", plot, "--no-peaks", "--quiet"]
    code, out, err = cli(capsys, *argv)
    assert code == 0, err
    assert "CPU kind:" in out and "| baseline |" in out and "end to end" in out
    report = json.loads(output.read_text())
    assert [r["path"] for r in report["rows"]] == ["baseline"] + [f"ours {p}" for p in precisions.split(",")]
    for row in report["rows"]:
        assert set(row) == set(ROW_KEYS)
        assert row["images_per_s"] > 0 and row["latency_p50_ms"] <= row["latency_p99_ms"]
        assert row["cosine_min"] > 0.9
    assert report["rows"][0]["speedup"] == pytest.approx(1.0)
    assert report["cpu"]["kind"] and "amx_tile" in report["cpu"]["flags"]
    assert report["end_to_end"]["images"] == 5 and report["end_to_end"]["failed"] == 0
    assert plot.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"

    # the files exist now: a second run refuses to overwrite them before doing any work
    code, _, err = cli(capsys, *argv)
    assert code == 2 and "already exists" in err and "--force" in err


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--precision", "fp8"], "unknown precision"),
        (["--batch-size", "0"], "--batch-size must be at least 1"),
        (["--width", "2"], "--width must be in"),
        (["--images", "/nonexistent/dir"], "not a directory"),
        (["--device", "auto"], "must be named"),
    ],
)
def test_benchmark_bad_options(capsys, args, message):
    code, _, err = cli(capsys, "benchmark", *args)
    assert code == 2 and message in err


def test_bench_helpers():
    assert measure.percentile([1, 2, 3, 4], 50) == pytest.approx(2.5)
    assert measure.percentile([5.0], 99) == 5.0
    ref = torch.tensor([[1.0, 2.0, 3.0], [3.0, 2.0, 1.0]])
    same = measure.agreement(ref, ref)
    assert same["top1_agreement"] == 1 and same["max_abs_logit_diff"] == 0
    flipped = measure.agreement(ref.flip(0), ref)
    assert flipped["top1_agreement"] == 0 and flipped["cosine_min"] < 0.8
    # FlopCounterMode on vgg16 at 224 gives the paper-derived 15.5 GMACs (x2 for FLOPs)
    from vggnets.core.configs import gmacs

    flops = measure.flops_per_image(vggnets.vgg11(width=1 / 16), 224)
    assert flops > 0
    with torch.device("meta"):
        big = vggnets.vgg16()
    assert measure.flops_per_image(big, 224) / 2e9 == pytest.approx(gmacs("vgg16"), rel=0.01)

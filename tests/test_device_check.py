"""benchmarks/device_check.sh (the GPU check) on a machine without CUDA: it skips cleanly, and its summary logic
turns benchmark reports and test results into the Markdown table."""

from __future__ import annotations

import importlib.util
import json
import subprocess
from pathlib import Path

import pytest
import torch

ROOT = Path(__file__).resolve().parents[1]
SCRIPT = ROOT / "benchmarks" / "device_check.sh"


def load_summary():
    spec = importlib.util.spec_from_file_location("device_summary", ROOT / "benchmarks" / "device_summary.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_script_is_valid_bash():
    subprocess.run(["bash", "-n", str(SCRIPT)], check=True)


@pytest.mark.skipif(torch.cuda.is_available(), reason="needs a machine without CUDA")
def test_without_cuda_the_check_skips_cleanly(tmp_path):
    done = subprocess.run(["bash", str(SCRIPT), str(tmp_path / "results")], capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    assert "no CUDA device" in done.stdout and "Traceback" not in done.stderr
    assert (tmp_path / "results" / "summary.md").read_text().startswith("GPU check skipped: no CUDA device")
    assert sorted(p.name for p in (tmp_path / "results").iterdir()) == ["summary.md"]


def row(path: str, ips: float, gflops: float) -> dict:
    return {"path": path, "images_per_s": ips, "speedup": ips / 1000, "latency_p50_ms": 1.5, "gflops": gflops}


def test_summary_tables_every_report_with_the_fraction_of_peak(tmp_path):
    summary = load_summary()
    (tmp_path / "gpu.csv").write_text(
        "name, memory.total [MiB], driver_version\nNVIDIA H200, 143771 MiB, 570.1\n"
    )
    (tmp_path / "tests.xml").write_text(
        '<testsuites><testsuite tests="9" failures="1" errors="0" skipped="2"></testsuite></testsuites>'
    )
    for batch in (256, 1):
        report = {
            "batch_size": batch,
            "rows": [row("torchvision fp32 eager", 1000, 31_000), row("ours bf16", 14_000, 433_000)],
        }
        if batch == 256:
            report["end_to_end"] = {
                "images": 512,
                "ours_images_per_s": 12_000,
                "ours_precision": "bf16",
                "speedup": 9.5,
                "fraction_of_model_only": 0.857,
            }
        (tmp_path / f"bench-b{batch}.json").write_text(json.dumps(report))
    text = summary.summary(tmp_path)
    lines = text.splitlines()
    assert lines[0] == "GPU: NVIDIA H200, 143771 MiB, 570.1; CUDA tests: 6 passed, 1 failed, 2 skipped"
    table = [line for line in lines if line.startswith("| 1 ") or line.startswith("| 256 ")]
    assert [line.split("|")[1].strip() for line in table] == ["1", "1", "256", "256"]  # batches in order
    assert "| ours bf16 | 14000 | 14.00x | 1.50 | 433.0 | 44% |" in text  # 433 of 989 TFLOP/s
    assert (
        "End to end from 512 JPEG files at batch 256: 12000 img/s (bf16)" in text
        and "86% of model-only" in text
    )


def test_unknown_gpu_has_no_peak_fraction_and_images_are_made(tmp_path):
    summary = load_summary()
    assert (
        summary.bf16_peak("Some Future GPU") is None and summary.bf16_peak("NVIDIA H100 80GB HBM3") == 989.0
    )
    summary.make_images(tmp_path / "jpegs", 7)
    files = sorted((tmp_path / "jpegs").iterdir())
    assert len(files) == 7 and all(f.suffix == ".jpg" and f.stat().st_size > 1000 for f in files)

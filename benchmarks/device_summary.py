"""The GPU check's Markdown summary (benchmarks/device_check.sh): one table from the benchmark JSON files, the test
counts, and the fraction of the device's dense bf16 peak; also makes the JPEG folder of the end-to-end run."""

from __future__ import annotations

import argparse
import json
import shutil
import xml.etree.ElementTree as ET
from pathlib import Path

EXAMPLES = Path(__file__).resolve().parents[1] / "examples" / "images"
#: Dense bf16 tensor-core peaks (TFLOP/s) published by NVIDIA, by the name nvidia-smi prints.
DENSE_BF16_TFLOPS = {
    "H100 80GB HBM3": 989.0,
    "H100 SXM": 989.0,
    "H200": 989.0,
    "H100 PCIe": 756.0,
    "A100": 312.0,
}


def make_images(folder: Path, count: int) -> None:
    """``count`` JPEG files (copies of the bundled JPEG photos) for the end-to-end run."""
    photos = sorted(EXAMPLES.glob("*.jpg"))
    folder.mkdir(parents=True, exist_ok=True)
    for i in range(count):
        source = photos[i % len(photos)]
        shutil.copyfile(source, folder / f"{i:05d}_{source.name}")


def bf16_peak(gpu_name: str) -> float | None:
    """The device's dense bf16 peak in TFLOP/s, matched on the GPU's name."""
    for key, tflops in DENSE_BF16_TFLOPS.items():
        if key.lower() in gpu_name.lower():
            return tflops
    return None


def test_counts(results: Path) -> str:
    """'N passed, N failed, N skipped' from the junit XML of the CUDA tests."""
    path = results / "tests.xml"
    if not path.exists():
        return "not run"
    suite = ET.parse(path).getroot()
    suite = suite if suite.tag == "testsuite" else suite.find("testsuite")
    total, failed = int(suite.get("tests", 0)), int(suite.get("failures", 0)) + int(suite.get("errors", 0))
    skipped = int(suite.get("skipped", 0))
    return f"{total - failed - skipped} passed, {failed} failed, {skipped} skipped"


def summary(results: Path) -> str:
    """The Markdown table of every bench-b*.json in ``results``."""
    gpu = (
        (results / "gpu.csv").read_text().splitlines()[-1]
        if (results / "gpu.csv").exists()
        else "unknown GPU"
    )
    peak = bf16_peak(gpu)
    lines = [
        f"GPU: {gpu}; CUDA tests: {test_counts(results)}",
        "",
        "| batch | path | img/s | vs torchvision fp32 eager | latency p50 (ms) | TFLOP/s | of dense bf16 peak |",
        "|---|---|---|---|---|---|---|",
    ]
    end_to_end = []
    reports = sorted(results.glob("bench-b*.json"), key=lambda p: int(p.stem.split("-b")[1]))
    for path in reports:
        report = json.loads(path.read_text())
        for row in report["rows"]:
            tflops = (row.get("gflops") or 0) / 1000
            fraction = f"{100 * tflops / peak:.0f}%" if peak and tflops else "–"
            lines.append(
                f"| {report['batch_size']} | {row['path']} | {row['images_per_s']:.0f} | {row['speedup']:.2f}x | "
                f"{row['latency_p50_ms']:.2f} | {tflops:.1f} | {fraction} |"
            )
        if "end_to_end" in report:
            end_to_end.append((report["batch_size"], report["end_to_end"]))
    for batch, e2e in end_to_end:
        fraction = e2e.get("fraction_of_model_only")
        lines += [
            "",
            f"End to end from {e2e['images']} JPEG files at batch {batch}: {e2e['ours_images_per_s']:.0f} img/s "
            f"({e2e['ours_precision']}), {e2e['speedup']:.2f}x the Hub page's script"
            + (f", {100 * fraction:.0f}% of model-only" if fraction else ""),
        ]
    if not reports:
        lines.append("| – | no benchmark report was written | | | | | |")
    return "\n".join(lines) + "\n"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("results", type=Path)
    parser.add_argument("count", type=int, nargs="?", default=512)
    parser.add_argument("--skipped", metavar="WHY", help="write a summary saying the check was skipped")
    parser.add_argument(
        "--make-images", action="store_true", help="make the JPEG folder RESULTS with COUNT files"
    )
    args = parser.parse_args()
    if args.make_images:
        make_images(args.results, args.count)
        return
    args.results.mkdir(parents=True, exist_ok=True)
    text = f"GPU check skipped: {args.skipped}.\n" if args.skipped else summary(args.results)
    (args.results / "summary.md").write_text(text, encoding="utf-8")
    print(text, end="")


if __name__ == "__main__":
    main()

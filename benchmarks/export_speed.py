"""Export sizes per format, and onnxruntime vs PyTorch eager CPU speed, for a full-size VGG16.

    python benchmarks/export_speed.py                   # about 3-5 minutes on 2 cores
    python benchmarks/export_speed.py --repeats 5 --batches 1,8,16 --json export_speed.json

A full-size ``vggnets.vgg16()`` with seeded random weights is exported with :func:`vggnets.export.export_model` to
ONNX (fp32 and fp16, 224x224, dynamic batch), TorchScript, a torch.export program and safetensors (fp32 and fp16),
each verified against PyTorch as the CLI does; the first table gives file size, export time (verification included)
and the max abs difference with PyTorch. Then the fp32 ONNX file runs in onnxruntime (CPUExecutionProvider, as many
intra-op threads as PyTorch uses) against PyTorch eager (fp32, ``torch.inference_mode``) on the same seeded
224x224 batches: one untimed warm-up each, then ``--repeats`` timed calls, PyTorch and onnxruntime alternating so that
load from other processes hits both alike; the table gives the median and best images/s. The fp16 ONNX file is
timed too with ``--fp16-speed`` (slow on CPUs without fp16 arithmetic).

This is a benchmark, not a test: nothing here asserts, and the numbers depend on the machine (printed first).
"""

from __future__ import annotations

import argparse
import json
import platform
import statistics
import sys
import tempfile
import time
from importlib.metadata import version
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _machine import describe_cpu, format_cpu  # noqa: E402

#: (label, format, precision, file name) of the exports whose sizes are reported.
EXPORTS = (
    ("ONNX fp32", "onnx", "fp32", "vgg16.onnx"),
    ("ONNX fp16", "onnx", "fp16", "vgg16_fp16.onnx"),
    ("TorchScript fp32", "torchscript", "fp32", "vgg16.pt"),
    ("torch.export fp32", "exported", "fp32", "vgg16.pt2"),
    ("safetensors fp32", "safetensors", "fp32", "vgg16.safetensors"),
    ("safetensors fp16", "safetensors", "fp16", "vgg16_fp16.safetensors"),
)
MB = 1e6


def loadavg() -> str:
    try:
        return " ".join(Path("/proc/loadavg").read_text().split()[:3])
    except OSError:
        return "unknown"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--repeats", type=int, default=3, help="timed calls per runtime and batch (default 3)"
    )
    parser.add_argument("--batches", default="1,8", help="comma-separated batch sizes (default 1,8)")
    parser.add_argument(
        "--fp16-speed", action="store_true", help="also time the fp16 ONNX file in onnxruntime"
    )
    parser.add_argument("--keep", type=Path, default=None, help="write the exports here and keep them")
    parser.add_argument("--json", type=Path, default=None, help="also write the results as JSON")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    batches = [int(b) for b in args.batches.split(",")]

    cpu = describe_cpu()
    print(format_cpu(cpu))
    import onnxruntime as ort
    import torch

    import vggnets
    from vggnets.export import export_model

    threads = torch.get_num_threads()
    print(
        f"torch {torch.__version__}, onnx {version('onnx')}, onnxscript {version('onnxscript')}, onnxruntime "
        f"{ort.__version__}, Python {platform.python_version()}; {threads} intra-op threads for both runtimes; "
        f"load average {loadavg()}"
    )
    print(f"Model: vggnets.vgg16() with random weights (seed {args.seed}), eval; inputs 224x224, seeded.\n")
    sys.stdout.flush()

    torch.manual_seed(args.seed)
    model = vggnets.vgg16().eval()
    workdir = tempfile.TemporaryDirectory(prefix="vggnets-export-") if args.keep is None else None
    folder = Path(workdir.name) if workdir else args.keep
    folder.mkdir(parents=True, exist_ok=True)

    exports: list[dict[str, Any]] = []
    for label, fmt, precision, name in EXPORTS:
        print(f"  exporting {label} ...", file=sys.stderr, flush=True)
        report = export_model(model, folder / name, format=fmt, precision=precision, overwrite=True)
        exports.append({"label": label, **report.as_dict()})
    print("| export | file size | export + verify | max abs diff vs PyTorch fp32 | exporter |")
    print("|---|---|---|---|---|")
    for e in exports:
        print(
            f"| {e['label']} | {e['bytes'] / MB:.1f} MB | {e['seconds']:.1f} s | {e['max_abs_diff']:.3g} | "
            f"{e['exporter']} |"
        )
    print()

    options = ort.SessionOptions()
    options.intra_op_num_threads = threads
    sessions = {
        "onnxruntime fp32": ort.InferenceSession(
            str(folder / "vgg16.onnx"), options, ["CPUExecutionProvider"]
        )
    }
    if args.fp16_speed:
        sessions["onnxruntime fp16"] = ort.InferenceSession(
            str(folder / "vgg16_fp16.onnx"), options, ["CPUExecutionProvider"]
        )

    def pytorch(x: torch.Tensor) -> torch.Tensor:
        with torch.inference_mode():
            return model(x)

    def onnxruntime(session: Any, half: bool):
        def run(x: torch.Tensor) -> torch.Tensor:
            feed = (x.half() if half else x).numpy()
            return torch.from_numpy(session.run(None, {"images": feed})[0]).float()

        return run

    runners = {"PyTorch eager fp32": pytorch}
    runners.update({k: onnxruntime(s, "fp16" in k) for k, s in sessions.items()})
    speed: list[dict[str, Any]] = []
    for batch in batches:
        x = torch.randn(batch, 3, 224, 224, generator=torch.Generator().manual_seed(args.seed + batch))
        print(f"  timing batch {batch} ...", file=sys.stderr, flush=True)
        outputs = {name: run(x) for name, run in runners.items()}  # warm-up, untimed
        times: dict[str, list[float]] = {name: [] for name in runners}
        for _ in range(args.repeats):
            for name, run in runners.items():
                start = time.perf_counter()
                run(x)
                times[name].append(time.perf_counter() - start)
        reference = outputs["PyTorch eager fp32"]
        for name in runners:
            ts = times[name]
            speed.append(
                {
                    "runtime": name,
                    "batch": batch,
                    "times_s": ts,
                    "median_images_per_s": batch / statistics.median(ts),
                    "best_images_per_s": batch / min(ts),
                    "max_abs_diff": float((outputs[name] - reference).abs().max()),
                }
            )
    print("| runtime | batch | images/s (median) | images/s (best) | vs PyTorch (median) | max abs diff |")
    print("|---|---|---|---|---|---|")
    for row in speed:
        base = next(r for r in speed if r["batch"] == row["batch"] and r["runtime"] == "PyTorch eager fp32")
        ratio = row["median_images_per_s"] / base["median_images_per_s"]
        print(
            f"| {row['runtime']} | {row['batch']} | {row['median_images_per_s']:.2f} | "
            f"{row['best_images_per_s']:.2f} | {ratio:.2f}x | {row['max_abs_diff']:.2g} |"
        )
    print(f"\nload average after: {loadavg()}")
    if args.json:
        args.json.write_text(json.dumps({"cpu": cpu, "exports": exports, "speed": speed}, indent=2))
    if workdir:
        workdir.cleanup()


if __name__ == "__main__":
    main()

"""Ours and the peer runtimes side by side, timed in interleaved rounds: the README's "Fast inference" table.

    python benchmarks/peers_table.py [--model vgg16] [--batch-size 16] [--rounds 7] [--jpegs 240] [--output t.json]
                                     [--threads 1 --clock cpu]

Builds, in one process, torchvision's fp32 eager model (the Hub page's code, the baseline), our engine at fp32, bf16
and int8 (``backend="torch"``) and the peers on our own ONNX export (``backend="onnxruntime"``: fp32 and int8 QDQ;
``"openvino"``: fp32, bf16 hint and int8 QDQ; a peer that is not installed is skipped), then times one batch of
every path per round, the paths in a rotating order, for ``--rounds`` rounds. On a shared 2-core machine the load
changes from minute to minute; interleaving gives every path the same conditions, and the best round of each path is
its figure on a quiet machine (the median is printed too). The baseline runs with glibc malloc's usual steady state
(mmap threshold 32 MiB), ours and the peers with the freed memory kept as the engine sets it (the peers have their
own arenas). Then end to end: `classify_files` with the int8 engine on a folder of generated JPEGs, interleaved with
model-only int8 batches (the fraction is of the model-only rate measured next to it). The CPU model and kind, the
peak reference and the load average before and after are printed with the table. Weights are random (seeded).

On a machine that others load, ``--threads 1 --clock cpu`` gives every runtime one thread and times each batch by the
CPU time of the process (``time.process_time``): what one core does per second of its own time, whatever else runs.
"""

from __future__ import annotations

import argparse
import ctypes
import json
import os
import statistics
import sys
import tempfile
import time
import warnings
from pathlib import Path

import torch

#: (label, backend, precision) of every path after the baseline.
PATHS = [
    ("ours fp32", "torch", "fp32"),
    ("ours bf16", "torch", "bf16"),
    ("ours int8", "torch", "int8"),
    ("onnxruntime fp32", "onnxruntime", "fp32"),
    ("onnxruntime int8", "onnxruntime", "int8"),
    ("openvino fp32", "openvino", "fp32"),
    ("openvino bf16", "openvino", "bf16"),
    ("openvino int8", "openvino", "int8"),
]


def malloc_default_steady_state() -> None:
    """glibc's malloc as a long-running default process ends up: mmap threshold 32 MiB, trim threshold 64 MiB."""
    libc = ctypes.CDLL("libc.so.6")
    libc.mallopt(-4, 65536)  # M_MMAP_MAX: the default
    libc.mallopt(-3, 32 << 20)  # M_MMAP_THRESHOLD
    libc.mallopt(-1, 64 << 20)  # M_TRIM_THRESHOLD
    libc.malloc_trim(0)


def malloc_kept() -> None:
    """The engine's setting (vggnets.inference.memory): no mmap for large blocks, no trimming."""
    libc = ctypes.CDLL("libc.so.6")
    libc.mallopt(-4, 0)
    libc.mallopt(-1, 2**31 - 1)


def build_paths(model, name: str, batch: int, say) -> dict[str, object]:
    """The baseline and every path that builds here, as callables on a uint8 batch."""
    import torchvision

    from vggnets.inference.backends import installed
    from vggnets.inference.engine import optimize

    tv = getattr(torchvision.models, name)()
    tv.load_state_dict(model.state_dict())
    tv.eval()
    mean = torch.tensor([0.485, 0.456, 0.406]).view(1, 3, 1, 1)
    std = torch.tensor([0.229, 0.224, 0.225]).view(1, 3, 1, 1)

    def baseline(x: torch.Tensor) -> torch.Tensor:
        with torch.no_grad():
            return tv((x.float() / 255 - mean) / std)

    paths: dict[str, object] = {"torchvision fp32 eager": baseline}
    for label, backend, precision in PATHS:
        if not installed(backend):
            say(f"{label}: skipped, {backend} is not installed (pip install 'vggnets[peers]')")
            continue
        start = time.perf_counter()
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            predictor = optimize(model, precision, batch_size=batch, backend=backend)
        if predictor.info.backend != backend or predictor.info.precision != precision:
            say(f"{label}: skipped, runs as {predictor.info.backend} {predictor.info.precision} here")
            continue
        paths[label] = predictor
        say(f"{label}: built in {time.perf_counter() - start:.0f} s ({predictor.info.compile})")
    return paths


CLOCK = time.perf_counter


def interleaved(paths: dict[str, object], x: torch.Tensor, rounds: int, say) -> dict[str, list[float]]:
    """Seconds of one batch per path per round (one untimed call first), paths in a rotating order."""
    names = list(paths)
    seconds: dict[str, list[float]] = {name: [] for name in names}
    for r in range(rounds):
        order = names[r % len(names) :] + names[: r % len(names)]
        for name in order:
            (malloc_default_steady_state if name.startswith("torchvision") else malloc_kept)()
            paths[name](x)
            start = CLOCK()
            paths[name](x)
            seconds[name].append(CLOCK() - start)
        say(f"round {r + 1}/{rounds}: " + ", ".join(f"{n} {len(x) / seconds[n][-1]:.2f}" for n in names))
    return seconds


def end_to_end(predictor, folder: Path, x: torch.Tensor, rounds: int) -> dict[str, float]:
    """classify_files with the int8 engine against model-only batches timed around it, best of ``rounds``."""
    from vggnets.inference.classify import classify_files
    from vggnets.io.images import collect_images

    malloc_kept()
    files, _ = collect_images([str(folder)], recursive=True)
    labels = [str(i) for i in range(predictor.num_classes)]
    best_e2e, best_model = 0.0, 0.0
    for _ in range(rounds):
        start = time.perf_counter()
        done = list(classify_files(predictor, files, transform=predictor.preprocess, labels=labels,
                                   batch_size=len(x), workers=1))  # fmt: skip
        best_e2e = max(best_e2e, len(done) / (time.perf_counter() - start))
        for _ in range(2):
            start = time.perf_counter()
            predictor(x)
            best_model = max(best_model, len(x) / (time.perf_counter() - start))
    return {"images": len(files), "e2e_images_per_s": best_e2e, "model_only_images_per_s": best_model,
            "fraction": best_e2e / best_model}  # fmt: skip


def table(report: dict) -> str:
    """The Markdown table: img/s (best and median round), against torchvision, GFLOP/s, of peak, against the peers."""
    rows, flop, peaks = report["paths"], report["gflop_per_image"], report["peaks"]
    base = rows["torchvision fp32 eager"]["best"]
    key = {"fp32": "fp32_gflops", "bf16": "bf16_gflops", "int8": "int8_gops"}
    lines = [
        "| path | img/s (best round) | median | vs torchvision fp32 eager | GFLOP/s | of peak | cosine vs fp32 "
        "| best peer at that precision | ours / peer |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for name, row in rows.items():
        precision = name.split()[-1] if not name.startswith("torchvision") else "fp32"
        peers = {
            n: r["best"]
            for n, r in rows.items()
            if not n.startswith(("ours", "torch")) and n.endswith(precision)
        }
        best_peer = max(peers, key=peers.get) if peers and name.startswith("ours") else None
        gflops = row["best"] * flop
        peak = peaks.get(key[precision])
        lines.append(
            f"| {name} | {row['best']:.2f} | {row['median']:.2f} | {row['best'] / base:.2f}x | {gflops:.0f} | "
            + (f"{100 * gflops / peak:.0f}% | " if peak else "– | ")
            + f"{row['cosine']:.5f} | "
            + (
                f"{best_peer}: {peers[best_peer]:.2f} | **{row['best'] / peers[best_peer]:.2f}x** |"
                if best_peer
                else "– | – |"
            )  # fmt: skip
        )
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--model", default="vgg16")
    parser.add_argument("--batch-size", type=int, default=16)
    parser.add_argument("--rounds", type=int, default=7)
    parser.add_argument("--jpegs", type=int, default=240, help="JPEGs for the end-to-end run (0: skip it)")
    parser.add_argument("--output", type=Path, default=None)
    parser.add_argument(
        "--threads", type=int, default=None, help="threads for torch and the peers (default: all)"
    )
    parser.add_argument(
        "--clock", choices=("wall", "cpu"), default="wall", help="cpu: the process's CPU time"
    )
    args = parser.parse_args()
    global CLOCK
    CLOCK = time.process_time if args.clock == "cpu" else time.perf_counter
    if args.threads:
        torch.set_num_threads(args.threads)
    say = lambda msg: print(f"[peers_table] {msg}", file=sys.stderr, flush=True)  # noqa: E731
    sys.path.insert(0, str(Path(__file__).resolve().parent))
    from engine_speed import make_jpeg_folder

    import vggnets
    from vggnets.bench.measure import agreement, device_peaks, flops_per_image
    from vggnets.bench.peaks import format_peaks, machine_peaks
    from vggnets.inference.calibration import load_calibration_images
    from vggnets.inference.graph import CropUint8
    from vggnets.inference.machine import describe_cpu, format_cpu

    load_before = os.getloadavg()
    with tempfile.TemporaryDirectory(prefix="vggnets-peers-") as tmp:
        os.environ.setdefault("VGGNETS_ENGINE_CACHE", str(Path(tmp) / "engine"))
        torch.manual_seed(0)
        model = vggnets.build(args.model).eval()
        say("measuring the peaks")
        peaks = machine_peaks(torch.device("cpu"), device_peaks(torch.device("cpu")))
        paths = build_paths(model, args.model, args.batch_size, say)
        crops = load_calibration_images(None, CropUint8(256, 224))
        x = crops.repeat((args.batch_size + len(crops) - 1) // len(crops), 1, 1, 1)[
            : args.batch_size
        ].contiguous()
        reference = paths["torchvision fp32 eager"](crops)
        seconds = interleaved(paths, x, args.rounds, say)
        report = {
            "model": args.model, "batch_size": args.batch_size, "rounds": args.rounds, "cpu": describe_cpu(),
            "threads": torch.get_num_threads(), "clock": args.clock, "torch": torch.__version__, "peaks": peaks,
            "gflop_per_image": flops_per_image(model, 224) / 1e9, "paths": {},
        }  # fmt: skip
        for name, times in seconds.items():
            report["paths"][name] = {
                "best": args.batch_size / min(times), "median": args.batch_size / statistics.median(times),
                "cosine": agreement(paths[name](crops), reference)["cosine_min"],
            }  # fmt: skip
        if args.jpegs and "ours int8" in paths:
            say("end to end")
            folder = make_jpeg_folder(Path(tmp) / "jpegs", args.jpegs)
            report["end_to_end"] = end_to_end(paths["ours int8"], folder, x, max(2, args.rounds // 2))
    report["load_average"] = {"before": load_before, "after": os.getloadavg()}
    cpu = dict(report["cpu"], measured_peaks=peaks["matmul"])
    print(format_cpu(cpu))
    print(format_peaks(peaks))
    print(f"{args.model}, batch {args.batch_size}, {report['threads']} threads, torch {torch.__version__}, "
          f"best of {args.rounds} interleaved rounds, {args.clock} clock\n")  # fmt: skip
    print(table(report))
    e2e = report.get("end_to_end")
    if e2e:
        print(f"\nend to end, {e2e['images']} JPEGs -> top-5 labels with the int8 engine: {e2e['e2e_images_per_s']:.2f} "
              f"img/s = {100 * e2e['fraction']:.0f}% of the model-only {e2e['model_only_images_per_s']:.2f} img/s")  # fmt: skip
    load = report["load_average"]
    print("load average (1, 5, 15 min): before " + ", ".join(f"{v:.2f}" for v in load["before"])
          + "; after " + ", ".join(f"{v:.2f}" for v in load["after"]))  # fmt: skip
    if args.output:
        args.output.write_text(json.dumps(report, indent=2) + "\n")


if __name__ == "__main__":
    main()

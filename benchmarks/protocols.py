"""Throughput of the paper's evaluation protocols for VGG16: images/s, GMACs per image, and dense vs multi-crop cost.

The paper (arXiv 1409.1556, section 3.2) argues for dense evaluation because multi-crop costs far more network passes
for the same scales. This benchmark measures that with :func:`vggnets.protocols.make_protocol` on a full-size VGG16
(``vggnets.vgg16()``: seeded random weights, no download), eval mode, fp32, ImageNet mean/std, on the CPU by default.

Protocols (``--protocols``, all by default):

- ``center``: torchvision's preset (resize 256, center crop 224), one pass per image.
- ``dense``: dense evaluation at Q=384 (the fully-convolutional network on the whole resized image).
- ``dense-flip``: the same plus the mirror image.
- ``multiscale-flip``: dense at Q in {256, 384, 512}, each with its mirror image (paper Table 4).
- ``multicrop``: 5x5 crops of 224 and their mirror images at Q in {256, 384, 512}: 150 crops (paper Table 5).
- ``dense+multicrop``: the mean of the two previous ones (paper Table 5, "both"). It is not run: its time is the sum of
  the measured times of ``multiscale-flip`` and ``multicrop`` (which are measured even when not asked for), since
  :class:`~vggnets.protocols.Average` just calls both and averages.

Images are the bundled photos in examples/images, decoded with :func:`vggnets.io.images.read_image`; they have different
sizes, as real data does, so dense evaluation (which needs equal sizes within a batch) runs each size in its own batch.
``--images N`` takes N of them, cycling through the sizes first (one photo of each size, then the next of each size),
so that even N=2 has two sizes. Every protocol gets all N images in one call, with ``--batch-size`` network inputs per
forward pass (default 16). GMACs per image are each protocol's ``gmacs_per_image`` for each image's own size, averaged;
achieved GFLOP/s is 2 x GMACs / s. Before timing, one untimed center-crop call initialises the CPU kernels (on this
code path the first call at a new input size was measured to cost no more than later ones).

Cost: multi-crop is about 2,300 GMACs per image (REFERENCE.md 3.8), i.e. tens of seconds per image on two cores in
eager fp32, so the default (2 images, 1 repeat) takes about 2-4 minutes on the 2-core machines. This is a benchmark,
not a test: nothing here asserts, and the numbers depend on the machine (printed first) and on whatever else runs on
it (the load average is printed before and after).
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import platform
import statistics
import sys
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _machine import describe_cpu, format_cpu  # noqa: E402

REPO = Path(__file__).resolve().parent.parent
IMAGE_DIR = REPO / "examples" / "images"
IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".webp", ".bmp", ".gif", ".tif", ".tiff")

#: Benchmark key -> (make_protocol name, scales, flip, label). Scales None: the protocol's default.
SPECS: dict[str, tuple[str, tuple[int, ...] | None, bool, str]] = {
    "center": ("center", None, False, "center crop 224 (resize 256)"),
    "dense": ("dense", (384,), False, "dense Q=384"),
    "dense-flip": ("dense", (384,), True, "dense Q=384 + flip"),
    "multiscale-flip": ("multiscale", (256, 384, 512), True, "multi-scale dense Q={256,384,512} + flip"),
    "multicrop": ("multicrop", (256, 384, 512), True, "multi-crop Q={256,384,512}, 5x5 crops + flips"),
    "dense+multicrop": ("dense+multicrop", (256, 384, 512), True, "dense+multicrop (mean of the two above)"),
}
#: Protocols whose time is derived from measured parts instead of being run.
DERIVED: dict[str, tuple[str, ...]] = {"dense+multicrop": ("multiscale-flip", "multicrop")}


def load_images(directory: Path, count: int) -> list[tuple[str, Any]]:
    """``count`` decoded photos (name, uint8 (3, H, W)), one of each size first, then cycling."""
    from vggnets.io.images import read_image

    paths = sorted(p for p in directory.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES)
    if not paths:
        sys.exit(f"no images in {directory}")
    by_size: dict[tuple[int, int], list[tuple[str, Any]]] = {}
    for p in paths:
        img = read_image(p)
        by_size.setdefault((img.shape[1], img.shape[2]), []).append((p.name, img))
    order: list[tuple[str, Any]] = []
    depth = max(len(v) for v in by_size.values())
    for k in range(depth):  # round-robin over sizes (in order of first appearance by file name)
        order.extend(group[k] for group in by_size.values() if k < len(group))
    return [order[i % len(order)] for i in range(count)]


def loadavg() -> str:
    try:
        return " ".join(Path("/proc/loadavg").read_text().split()[:3])
    except OSError:
        return "unknown"


def sync(device: Any) -> None:
    import torch

    if device.type == "cuda":
        torch.cuda.synchronize(device)


def measure(
    protocol: Any, images: list[Any], repeats: int, device: Any
) -> tuple[list[float], list[float], Any]:
    """Wall-clock and process CPU seconds of ``repeats`` calls of ``protocol`` on all images, and the last posteriors.

    CPU / wall near the thread count means the process had the cores; well below it, something else was running.
    """
    times, cpu_times = [], []
    out = None
    for _ in range(repeats):
        sync(device)
        start, cpu_start = time.perf_counter(), time.process_time()
        out = protocol(images)
        sync(device)
        times.append(time.perf_counter() - start)
        cpu_times.append(time.process_time() - cpu_start)
    return times, cpu_times, out


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--images", type=int, default=2, help="images per protocol, cycling the photos (default 2)"
    )
    parser.add_argument(
        "--image-dir", type=Path, default=IMAGE_DIR, help="photos to use (default examples/images)"
    )
    parser.add_argument(
        "--protocols",
        default=",".join(SPECS),
        help=f"comma-separated subset of: {', '.join(SPECS)} (default all)",
    )
    parser.add_argument(
        "--batch-size", type=int, default=16, help="network inputs per forward pass (default 16)"
    )
    parser.add_argument(
        "--repeats", type=int, default=1, help="timed calls per protocol; the best is reported (1)"
    )
    parser.add_argument("--device", default="cpu", help="cpu (default) or cuda[:i]")
    parser.add_argument("--threads", type=int, help="torch.set_num_threads (default: torch's own choice)")
    parser.add_argument("--seed", type=int, default=0, help="seed of the random weights (default 0)")
    parser.add_argument("--json", type=Path, help="write all numbers here")
    args = parser.parse_args(argv)
    if args.images < 1 or args.batch_size < 1 or args.repeats < 1:
        parser.error("--images, --batch-size and --repeats must be at least 1")
    wanted = [k.strip() for k in args.protocols.split(",") if k.strip()]
    unknown = [k for k in wanted if k not in SPECS]
    if unknown or not wanted:
        parser.error(f"unknown protocol(s) {', '.join(unknown) or '(none)'}; choose from: {', '.join(SPECS)}")
    # What gets run: the wanted measured protocols, plus the parts of derived ones; always center (the reference row).
    run_keys = [k for k in SPECS if (k in wanted or k == "center") and k not in DERIVED]
    for k in wanted:
        for part in DERIVED.get(k, ()):
            if part not in run_keys:
                run_keys.append(part)
    run_keys.sort(key=list(SPECS).index)
    show_keys = [k for k in SPECS if k in wanted or k in run_keys]

    wall_start = time.perf_counter()
    cpu = describe_cpu()
    date = datetime.datetime.now().astimezone().isoformat(timespec="seconds")
    print("# VGG16 evaluation protocols: images/s and cost, dense vs multi-crop")
    print(f"Date: {date}")
    print(format_cpu(cpu))
    load_before = loadavg()
    print(f"Load average before (1, 5, 15 min): {load_before}")
    sys.stdout.flush()

    import torch

    import vggnets
    from vggnets.core.transforms import IMAGENET_MEAN, IMAGENET_STD
    from vggnets.evaluation.protocols import make_protocol

    if args.threads:
        torch.set_num_threads(args.threads)
    device = torch.device(args.device)
    torch.manual_seed(args.seed)
    model = vggnets.vgg16().eval().to(device)
    gpu = torch.cuda.get_device_name(device) if device.type == "cuda" else None
    from importlib.metadata import version

    print(
        f"torch {torch.__version__}, torchvision {version('torchvision')}, Python {platform.python_version()}, "
        f"{torch.get_num_threads()} intra-op threads, device {device}{f' ({gpu})' if gpu else ''}"
    )
    images = load_images(args.image_dir, args.images)
    tensors = [img for _, img in images]
    print(
        f"Model: vggnets.vgg16() with random weights (seed {args.seed}), eval, fp32, NCHW, eager; ImageNet mean/std; "
        f"batch size {args.batch_size} network inputs; {args.repeats} timed call(s) per protocol, best reported."
    )
    print(
        f"Images ({len(images)}, from {args.image_dir.relative_to(REPO) if args.image_dir.is_relative_to(REPO) else args.image_dir}): "
        + ", ".join(f"{name} {img.shape[2]}x{img.shape[1]}" for name, img in images)
        + " (W x H)"
    )
    sys.stdout.flush()

    protocols = {}
    for key in show_keys:
        name, scales, flip, _ = SPECS[key]
        protocols[key] = make_protocol(
            name,
            model,
            mean=IMAGENET_MEAN,
            std=IMAGENET_STD,
            scales=scales,
            flip=flip,
            batch_size=args.batch_size,
        )

    protocols["center"](tensors[:1])  # warm-up, untimed
    results: dict[str, dict[str, Any]] = {}
    for key in show_keys:
        protocol = protocols[key]
        each = [protocol.gmacs_per_image(img.shape[1], img.shape[2]) for img in tensors]
        gmacs = statistics.fmean(each)
        entry: dict[str, Any] = {
            "label": SPECS[key][3],
            "protocol": protocol.describe(),
            "gmacs_per_image_each": each,
            "gmacs_per_image": gmacs,
        }
        if key in DERIVED:
            parts = DERIVED[key]
            seconds = sum(results[p]["seconds"] for p in parts)
            entry.update(measured=False, derived_from=list(parts), times_s=None)
        else:
            print(f"  running {key} ...", file=sys.stderr, flush=True)
            times, cpu_times, out = measure(protocol, tensors, args.repeats, device)
            seconds = min(times)
            cpu_use = cpu_times[times.index(seconds)] / seconds
            rows_ok = bool(torch.allclose(out.sum(1), torch.ones(len(tensors)), atol=1e-4))
            entry.update(
                measured=True,
                times_s=times,
                cpu_times_s=cpu_times,
                cpu_use=cpu_use,
                posteriors_shape=list(out.shape),
                rows_sum_to_one=rows_ok,
            )
            print(f"  {key}: {seconds:.2f} s for {len(tensors)} image(s)", file=sys.stderr, flush=True)
        n = len(tensors)
        entry.update(
            seconds=seconds,
            seconds_per_image=seconds / n,
            images_per_s=n / seconds,
            gflops_achieved=2 * gmacs * n / seconds,
        )
        results[key] = entry

    center = results["center"]
    for entry in results.values():
        entry["time_vs_center"] = entry["seconds"] / center["seconds"]
        entry["gmacs_vs_center"] = entry["gmacs_per_image"] / center["gmacs_per_image"]
    peaks = cpu.get("reference_peaks") if device.type == "cpu" else None
    ratios: dict[str, float] = {}
    if "multicrop" in results and "multiscale-flip" in results:
        mc, ms = results["multicrop"], results["multiscale-flip"]
        ratios["multicrop_over_multiscale_dense_time"] = mc["seconds"] / ms["seconds"]
        ratios["multicrop_over_multiscale_dense_gmacs"] = mc["gmacs_per_image"] / ms["gmacs_per_image"]
    load_after = loadavg()
    wall = time.perf_counter() - wall_start

    print()
    header = "| protocol | inputs/image | GMACs/image | s/image | images/s | GFLOP/s achieved |"
    rule = "|---|---:|---:|---:|---:|---:|"
    if peaks:
        header += " % of fp32 matmul peak |"
        rule += "---:|"
    header += " time vs center | GMACs vs center |"
    rule += "---:|---:|"
    print(header)
    print(rule)
    for e in results.values():
        passes = e["protocol"]["passes"]
        mark = "" if e["measured"] else " *"
        row = (
            f"| {e['label']}{mark} | {passes} | {e['gmacs_per_image']:,.1f} | {e['seconds_per_image']:.2f} | "
            f"{e['images_per_s']:.3f} | {e['gflops_achieved']:.0f} |"
        )
        if peaks:
            row += f" {e['gflops_achieved'] / peaks['fp32_gflops']:.0%} |"
        row += f" {e['time_vs_center']:.1f}x | {e['gmacs_vs_center']:.1f}x |"
        print(row)
    print()
    if any(not e["measured"] for e in results.values()):
        print(
            "* not run: dense+multicrop averages the posteriors of multi-scale dense (+ flip) and multi-crop, so its time "
            "is the sum of those two measured rows and its GMACs the sum of theirs."
        )
    dense_sizes = sorted({tuple(int(v) for v in img.shape[1:]) for img in tensors})
    print(
        f"inputs/image: network passes per image (a mirror image or a crop counts as one). Dense passes are whole "
        f"resized images ({len(dense_sizes)} distinct image size(s) here; each size runs in its own batches); center "
        "and multi-crop passes are 224x224 crops, batched across images."
    )
    if ratios:
        print(
            f"Multi-crop vs multi-scale dense at the same scales {{256, 384, 512}}, both with flips: "
            f"{ratios['multicrop_over_multiscale_dense_time']:.1f}x the measured time, "
            f"{ratios['multicrop_over_multiscale_dense_gmacs']:.1f}x the GMACs."
        )
    if peaks:
        print(
            f"Peak: REFERENCE.md 7.1's fp32 matmul 2048^3 for this CPU kind ({peaks['fp32_gflops']:g} GFLOP/s, "
            "measured there, not here)."
        )
    print(
        f"CPU use (process CPU time / wall time, of {torch.get_num_threads()} threads): "
        + ", ".join(f"{k} {e['cpu_use']:.2f}" for k, e in results.items() if e["measured"])
        + f". Load average after (1, 5, 15 min): {load_after}. Whole run: {wall:.0f} s."
    )

    if args.json:
        payload = {
            "date": date,
            "cpu": cpu,
            "gpu": gpu,
            "device": str(device),
            "torch": torch.__version__,
            "torchvision": version("torchvision"),
            "python": platform.python_version(),
            "threads": torch.get_num_threads(),
            "seed": args.seed,
            "batch_size": args.batch_size,
            "repeats": args.repeats,
            "images": [{"name": name, "height": img.shape[1], "width": img.shape[2]} for name, img in images],
            "loadavg_before": load_before,
            "loadavg_after": load_after,
            "results": results,
            "ratios": ratios,
            "wall_s": wall,
            "omp_num_threads_env": os.environ.get("OMP_NUM_THREADS"),
        }
        args.json.write_text(json.dumps(payload, indent=2) + "\n", encoding="utf-8")
        print(f"Wrote {args.json}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

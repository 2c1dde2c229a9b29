"""``vggnets lpips``: LPIPS perceptual distances between two images, or between two folders paired by file name."""

from __future__ import annotations

import argparse
import csv
import io
import json
import math
import sys
from pathlib import Path

from .common import (
    FORMATS,
    add_quiet_option,
    add_subcommand,
    provenance,
    require_at_least,
    resolve_device,
    show_progress,
)

HELP = "LPIPS perceptual distance between two images or two folders (pairs by file name)"
DESCRIPTION = """\
Measure the LPIPS distance (Zhang et al. 2018, VGG16, linear layers v0.1) between image A and image B, or
between every pair of images in folders A and B: a file in A is paired with the file in B that has the same
name without its extension (a/0001.png with b/0001.jpg), in subfolders too with --recursive. Values are those
of `lpips.LPIPS(net="vgg")`: 0 for identical images, larger for more different ones (typically 0 to 1).

Images are read as RGB (grey, palette and alpha images converted), scaled to [-1, 1] and compared at their own
size; no image is resized unless you ask. A pair whose sizes differ is reported and skipped, or, with
--match-size, B is resized to A's size (bilinear, antialiased). Files without a partner, unreadable images and
images smaller than 16 x 16 are reported, and every other pair is still measured. Pairs of the same size run
in batches. The report gives each pair's distance, the mean and the standard deviation (over the pairs
measured; population formula). Exit code: 0 all pairs measured, 1 some inputs failed or had no partner,
2 nothing was run (bad options, missing weights, no pairs)."""
EPILOG = """\
examples:
  vggnets lpips generated.png reference.png
  vggnets lpips samples/ references/ --format csv -o lpips.csv         one row per pair
  vggnets lpips samples/ references/ -r --match-size --format json
  vggnets lpips a.png b.png --device cuda --precision bf16             faster, about 3 digits

The backbone is torchvision's ImageNet VGG16 (the file lpips itself uses, downloaded once into
$TORCH_HOME/hub/checkpoints); the linear layers are read from the installed lpips package when it is there,
else downloaded and checked against their SHA-256 (set VGGNETS_WEIGHTS_MIRROR offline, or pass
--linear-weights /path/to/vgg.pth)."""

PRECISIONS = ("fp32", "bf16", "fp16")


def add_parser(sub: argparse._SubParsersAction) -> None:
    """Register the subcommand."""
    p = add_subcommand(sub, "lpips", help=HELP, description=DESCRIPTION, epilog=EPILOG)
    p.add_argument("a", metavar="A", help="an image, or a folder of images")
    p.add_argument("b", metavar="B", help="an image, or a folder of images (the same kind as A)")
    p.add_argument("-r", "--recursive", action="store_true", help="pair images in subfolders too")
    p.add_argument(
        "--match-size",
        action="store_true",
        help="resize B to A's size when they differ (bilinear, antialiased) instead of skipping the pair",
    )
    p.add_argument("--format", choices=FORMATS, default="table", help="table (default), json or csv")
    p.add_argument(
        "-o", "--output", default=None, metavar="FILE", help="write the report to FILE, not stdout"
    )
    p.add_argument("--force", action="store_true", help="overwrite an existing --output file")
    p.add_argument(
        "--weights",
        default="DEFAULT",
        metavar="W",
        help="VGG16 backbone: DEFAULT (torchvision's ImageNet weights, as lpips) or a state_dict path",
    )
    p.add_argument(
        "--linear-weights",
        default=None,
        metavar="FILE",
        help="LPIPS linear layers (default: the published v0.1 vgg.pth, from the lpips package or the cache)",
    )
    p.add_argument("-b", "--batch-size", type=int, default=8, help="pairs per forward pass (default: 8)")
    p.add_argument("--device", default="auto", help="auto (default), cpu, cuda, cuda:N or mps")
    p.add_argument(
        "--precision",
        choices=PRECISIONS,
        default="fp32",
        help="fp32 (default, exact), bf16 (autocast; GPU or a CPU with AVX-512 BF16/AMX) or fp16 (CUDA)",
    )
    add_quiet_option(p)
    p.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    """Pair the inputs, measure every pair, report; return 0, or 1 if any input failed."""
    from ..errors import VggnetsError
    from ..io.output import check_output

    require_at_least(args.batch_size, 1, "--batch-size")
    device = resolve_device(args.device)
    if args.precision == "fp16" and device.type != "cuda":
        raise VggnetsError(
            f"--precision fp16 needs a CUDA device, but the model runs on '{device}'; use bf16 or fp32."
        )
    if args.output is not None:
        check_output(args.output, overwrite=args.force)
    pairs, problems = pair_inputs(Path(args.a), Path(args.b), recursive=args.recursive)
    if not pairs:
        details = "; ".join(p["error"] for p in problems[:3])
        raise VggnetsError(
            f"no image pairs to compare between {args.a} and {args.b}" + (f": {details}." if details else ".")
        )
    from ..features.lpips import LPIPS

    metric = LPIPS(weights=args.weights, linear_weights=args.linear_weights, progress=show_progress(args)).to(
        device
    )
    rows = measure(metric, pairs, args, device) + problems
    values = [r["lpips"] for r in rows if r["lpips"] is not None]
    mean = sum(values) / len(values) if values else None
    std = math.sqrt(sum((v - mean) ** 2 for v in values) / len(values)) if values else None
    report = {
        "produced_by": provenance(args),
        "metric": "lpips",
        "version": metric.version,
        "backbone": f"vgg16 ({args.weights})",
        "linear_weights": args.linear_weights or f"published v{metric.version}",
        "resize": "B resized to A's size (bilinear, antialiased)"
        if args.match_size
        else "none (pairs of different sizes are skipped)",
        "precision": args.precision,
        "pairs": rows,
        "summary": {"count": len(values), "mean": mean, "std": std, "failed": len(rows) - len(values)},
    }
    text = {"table": format_table, "json": format_json, "csv": format_csv}[args.format](report)
    if args.output is None:
        sys.stdout.write(text)
    else:
        from ..io.output import write_text

        write_text(args.output, text, overwrite=args.force)
    failed = [r for r in rows if r["error"]]
    if args.format != "table" or args.output is not None:
        for r in failed:
            print(f"vggnets lpips: error: {r['error']}", file=sys.stderr)
    if args.format == "csv" and values:
        print(f"vggnets lpips: mean {mean:.6f}, std {std:.6f} over {len(values)} pairs", file=sys.stderr)
    if failed:
        print(f"vggnets lpips: {len(failed)} of {len(rows)} inputs failed or had no partner", file=sys.stderr)
    return 1 if failed else 0


def pair_inputs(a: Path, b: Path, *, recursive: bool) -> tuple[list[tuple[Path, Path]], list[dict]]:
    """(pairs in A's order, a row for every input that cannot be paired)."""
    from ..errors import VggnetsError
    from ..io.images import collect_images

    for side, path in (("A", a), ("B", b)):
        if not path.exists():
            raise VggnetsError(
                f"{side} ({path}) does not exist; give two image files or two folders of images."
            )
    if a.is_file() and b.is_file():
        return [(a, b)], []
    if a.is_dir() != b.is_dir():
        folder, file = (a, b) if a.is_dir() else (b, a)
        raise VggnetsError(
            f"{folder} is a folder but {file} is a file; give two image files, or two folders whose images are "
            "paired by file name."
        )
    sides = []
    problems: list[dict] = []
    for root in (a, b):
        files, missing = collect_images([str(root)], recursive=recursive)
        problems += [_problem(str(p), None, msg) for p, msg in missing]
        keyed: dict[str, list[Path]] = {}
        for f in files:
            keyed.setdefault(f.relative_to(root).with_suffix("").as_posix(), []).append(f)
        sides.append(keyed)
    first, second = sides
    pairs = []
    for key, found in first.items():
        partners = second.get(key, [])
        if len(found) > 1 or len(partners) > 1:
            names = ", ".join(str(p) for p in found + partners)
            problems.append(
                _problem(
                    str(found[0]),
                    None,
                    f"{names}: more than one image is named {key!r}; rename one so the pairs are unambiguous",
                )
            )
        elif not partners:
            problems.append(_problem(str(found[0]), None, f"{found[0]} has no partner named {key}.* in {b}"))
        else:
            pairs.append((found[0], partners[0]))
    for key, partners in second.items():
        if key not in first:
            problems.append(
                _problem(None, str(partners[0]), f"{partners[0]} has no partner named {key}.* in {a}")
            )
    return pairs, problems


def measure(metric, pairs: list[tuple[Path, Path]], args: argparse.Namespace, device) -> list[dict]:
    """One row per pair, in order; pairs of the same size run together in batches of --batch-size."""
    import contextlib

    import torch
    import torch.nn.functional as F

    from ..errors import ImageError
    from ..io.images import read_image

    rows: list[dict] = []
    batch: list[tuple[dict, torch.Tensor, torch.Tensor]] = []
    dtype = {"bf16": torch.bfloat16, "fp16": torch.float16}.get(args.precision)
    autocast = torch.autocast(device.type, dtype=dtype) if dtype is not None else contextlib.nullcontext()
    bar = None
    if show_progress(args):
        from tqdm import tqdm

        bar = tqdm(total=len(pairs), desc="lpips", unit="pair", file=sys.stderr)

    def flush() -> None:
        if not batch:
            return
        a = torch.stack([x for _, x, _ in batch]).to(device)
        b = torch.stack([y for _, _, y in batch]).to(device)
        with torch.inference_mode(), autocast:
            values = metric(a, b, normalize=True).flatten().float().cpu().tolist()
        for (row, _, _), value in zip(batch, values):
            row["lpips"] = value
        if bar is not None:
            bar.update(len(batch))
        batch.clear()

    try:
        for pa, pb in pairs:
            row = _problem(str(pa), str(pb), None)
            rows.append(row)
            try:
                x = read_image(pa).float() / 255
                y = read_image(pb).float() / 255
            except ImageError as exc:
                row["error"] = str(exc)
                if bar is not None:
                    bar.update(1)
                continue
            if x.shape != y.shape:
                if not args.match_size:
                    row["error"] = (
                        f"{pa} is {x.shape[2]}x{x.shape[1]} but {pb} is {y.shape[2]}x{y.shape[1]} pixels; LPIPS "
                        "compares images of the same size (pass --match-size to resize B to A's size)"
                    )
                    if bar is not None:
                        bar.update(1)
                    continue
                y = F.interpolate(
                    y[None], size=x.shape[1:], mode="bilinear", antialias=True, align_corners=False
                )[0]
                y = y.clamp(0, 1)
            row["size"] = f"{x.shape[2]}x{x.shape[1]}"
            if min(x.shape[1:]) < 16:
                row["error"] = f"{pa} is {row['size']} pixels; LPIPS needs at least 16x16"
                if bar is not None:
                    bar.update(1)
                continue
            if batch and batch[0][1].shape != x.shape:
                flush()
            batch.append((row, x, y))
            if len(batch) == args.batch_size:
                flush()
        flush()
    finally:
        if bar is not None:
            bar.close()
    return rows


def _problem(a: str | None, b: str | None, error: str | None) -> dict:
    return {"a": a, "b": b, "size": None, "lpips": None, "error": error}


def format_table(report: dict) -> str:
    """Per pair: A, B and the distance (or the error); then the mean and standard deviation."""
    out = io.StringIO()
    s = report["summary"]
    print(f"LPIPS v{report['version']}, {report['backbone']}; resize: {report['resize']}", file=out)
    rows = report["pairs"]
    width_a = max([len(r["a"] or "-") for r in rows] + [1])
    width_b = max([len(r["b"] or "-") for r in rows] + [1])
    for r in rows:
        value = f"{r['lpips']:.6f}" if r["lpips"] is not None else "error"
        print(f"{r['a'] or '-':<{width_a}}  {r['b'] or '-':<{width_b}}  {value}", file=out)
        if r["error"]:
            print(f"  {r['error']}", file=out)
    if s["count"]:
        print(f"mean {s['mean']:.6f}  std {s['std']:.6f}  over {s['count']} pairs", end="", file=out)
        print(f" ({s['failed']} failed)" if s["failed"] else "", file=out)
    else:
        print(f"no pair could be measured ({s['failed']} failed)", file=out)
    return out.getvalue()


def format_json(report: dict) -> str:
    """The whole report as one JSON document."""
    return json.dumps(report, indent=2) + "\n"


CSV_COLUMNS = ("a", "b", "size", "lpips", "error")


def format_csv(report: dict) -> str:
    """One row per pair (the summary goes to stderr)."""
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\n")
    writer.writerow(CSV_COLUMNS)
    for r in report["pairs"]:
        writer.writerow(
            [
                r["a"] or "",
                r["b"] or "",
                r["size"] or "",
                "" if r["lpips"] is None else f"{r['lpips']:.6f}",
                r["error"] or "",
            ]
        )
    return out.getvalue()

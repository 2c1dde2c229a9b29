"""``vggnets lpips``: LPIPS perceptual distances between two images, or between two folders paired by file name."""

from __future__ import annotations

import argparse
import csv
import io
import json
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
    from ..features.lpips_pairs import measure_pairs, pair_inputs

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
    measured = measure_pairs(
        metric,
        pairs,
        batch_size=args.batch_size,
        match_size=args.match_size,
        precision=args.precision,
        device=device,
        progress=show_progress(args),
    )
    report = build_report(args, metric, measured + problems)
    text = {"table": format_table, "json": format_json, "csv": format_csv}[args.format](report)
    if args.output is None:
        sys.stdout.write(text)
    else:
        from ..io.output import write_text

        write_text(args.output, text, overwrite=args.force)
    return print_outcome(args, report)


def build_report(args: argparse.Namespace, metric, rows: list[dict]) -> dict:
    """The report: what produced it, the metric's settings, a row per input, and the summary over the pairs."""
    from ..features.lpips_pairs import summarize

    return {
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
        "summary": summarize(rows),
    }


def print_outcome(args: argparse.Namespace, report: dict) -> int:
    """The errors (unless the table on stdout showed them), the summary with csv, and the count of failures on stderr;
    0, or 1 if any input failed."""
    rows, s = report["pairs"], report["summary"]
    failed = [r for r in rows if r["error"]]
    if args.format != "table" or args.output is not None:
        for r in failed:
            print(f"vggnets lpips: error: {r['error']}", file=sys.stderr)
    if args.format == "csv" and s["count"]:
        print(
            f"vggnets lpips: mean {s['mean']:.6f}, std {s['std']:.6f} over {s['count']} pairs",
            file=sys.stderr,
        )
    if failed:
        print(f"vggnets lpips: {len(failed)} of {len(rows)} inputs failed or had no partner", file=sys.stderr)
    return 1 if failed else 0


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

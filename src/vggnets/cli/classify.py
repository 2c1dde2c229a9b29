"""``vggnets classify``: top-k ImageNet labels for image files, directories and globs."""

from __future__ import annotations

import argparse
import csv
import json
import sys
from pathlib import Path

from .common import (
    FORMATS,
    add_engine_options,
    add_model_options,
    add_quiet_option,
    add_runtime_options,
    add_subcommand,
    check_runtime_options,
    collect_inputs,
    load_classifier,
    make_predictor,
    require_at_least,
    show_progress,
    uses_engine,
)

HELP = "top-k labels for images (files, directories, globs)"
DESCRIPTION = """\
Classify images with a pretrained VGG and print the top-k classes with their probabilities.

PATH can be image files, directories (add --recursive for subfolders) or glob patterns (quote them).
JPEG, PNG, WEBP, GIF, BMP and TIFF are read; grayscale, palette, RGBA, CMYK and 16-bit images are converted
to RGB and EXIF orientation is applied. A file that cannot be read is reported and the others are still
classified. Results are printed in the order of the inputs (a directory's or pattern's files sorted by path).
Exit code: 0 all classified, 1 some files failed, 2 nothing was run (bad options or weights)."""
EPILOG = """\
examples:
  vggnets classify examples/images/                 top-5 labels of every image in a folder (VGG16)
  vggnets classify photos/ --recursive -k 3 --format csv > labels.csv
  vggnets classify 'shots/*.jpg' --model vgg19_bn --format json
  vggnets classify cat.jpg --model vgg11 --weights my_finetuned.pth --device cpu
  vggnets classify photos/ --precision int8 -b 16   fast CPU engine (first run compiles, later runs reuse it)

Weights are downloaded once into $TORCH_HOME/hub/checkpoints; offline, set VGGNETS_WEIGHTS_MIRROR to a
directory or URL that holds the files (see `vggnets download --help`), or pass --weights /path/to/file.pth."""


def add_parser(sub: argparse._SubParsersAction) -> None:
    """Register the subcommand."""
    p = add_subcommand(sub, "classify", help=HELP, description=DESCRIPTION, epilog=EPILOG)
    p.add_argument("paths", nargs="+", metavar="PATH", help="image files, directories or glob patterns")
    add_model_options(p)
    p.add_argument("-k", "--topk", type=int, default=5, help="how many classes per image (default: 5)")
    p.add_argument("-r", "--recursive", action="store_true", help="also read images in subdirectories")
    add_runtime_options(p, batch_size=8, workers=None, batch_help="images per forward pass")
    p.add_argument(
        "--format", choices=FORMATS, default="table", help="table (default), json or csv on stdout"
    )
    p.add_argument(
        "--max-pixels",
        type=int,
        default=None,
        help="refuse images with more pixels than this (decompression-bomb guard; default: Pillow's 89,478,485)",
    )
    p.add_argument(
        "--decode",
        choices=("auto", "cpu", "gpu"),
        default="auto",
        help="where JPEGs are decoded: gpu = a batch per call on the CUDA device (nvJPEG), resized and cropped there "
        "too; cpu = by the loader (--workers); auto (default) = gpu when the model runs on CUDA. Other formats, and "
        "JPEGs the GPU decoder refuses, are always decoded on the CPU",
    )
    add_engine_options(p)
    add_quiet_option(p)
    p.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    """Classify every input; print results; return 0, or 1 if any file failed."""
    from ..errors import VggnetsError
    from ..inference.classify import Prediction, class_names, classify_files
    from ..io.images import DEFAULT_MAX_PIXELS

    require_at_least(args.topk, 1, "--topk")
    require_at_least(args.max_pixels, 1, "--max-pixels")
    device = check_runtime_options(args)
    if args.decode == "gpu" and device.type != "cuda":
        raise VggnetsError(
            f"--decode gpu decodes JPEGs with nvJPEG on a CUDA device, but the model runs on '{device}'; "
            "use --device cuda, or --decode cpu."
        )
    decode_on_gpu = args.decode == "gpu" or (args.decode == "auto" and device.type == "cuda")
    entries = collect_inputs(args.paths, recursive=args.recursive)
    files = [e for e in entries if isinstance(e, Path)]
    if not entries:
        raise VggnetsError("no input images were given.")
    predicted: list[Prediction] = []
    weights = args.weights
    if files:
        loaded = load_classifier(args.model, args.weights, device, progress=show_progress(args))
        weights = loaded.weights
        model, transform, workers = loaded.model, loaded.transform, args.workers
        if uses_engine(args):
            model = make_predictor(loaded.model, loaded.transform, args, device)
            transform = model.preprocess
            if workers is None:  # decode in a worker process, overlapped with the engine
                workers = 1 if len(files) > args.batch_size else 0
        predicted = list(  # to the end, so that the progress bar and the loader are closed
            classify_files(
                model,
                files,
                transform=transform,
                labels=class_names(loaded.categories, loaded.model.num_classes),
                topk=args.topk,
                batch_size=args.batch_size,
                device=device,
                workers=workers or 0,
                max_pixels=DEFAULT_MAX_PIXELS if args.max_pixels is None else args.max_pixels,
                progress=show_progress(args),
                decode_device=device if decode_on_gpu else None,
            )
        )
    # One result per entry, in input order: problems with an input where that input was given.
    ranked = iter(predicted)
    results = [next(ranked) if isinstance(e, Path) else Prediction(e[0], error=e[1]) for e in entries]
    write = {"table": write_table, "json": write_json, "csv": write_csv}[args.format]
    write(results, model=args.model, weights=str(weights))
    failed = [r for r in results if r.error]
    if args.format != "table":  # the table shows errors in place; machine-readable stdout gets them on stderr
        for r in failed:
            print(f"vggnets classify: error: {r.error}", file=sys.stderr)
    if failed:
        print(f"vggnets classify: {len(failed)} of {len(results)} inputs failed", file=sys.stderr)
    return 1 if failed else 0


def write_table(results: list, *, model: str, weights: str) -> None:
    """Human-readable: each file, then its ranked labels with probabilities, or its error."""
    out = sys.stdout
    for r in results:
        if r.error:
            print(f"{r.file}\n  error: {r.error}\n", file=out)
            continue
        print(r.file, file=out)
        width = max(len(lab) for lab in r.labels)
        for rank, (lab, p) in enumerate(zip(r.labels, r.probabilities), 1):
            print(f"  {rank}. {lab:<{width}}  {100 * p:6.2f}%", file=out)
        print(file=out)


def write_json(results: list, *, model: str, weights: str) -> None:
    """One JSON document: model, weights and a record per file (see Prediction.to_dict)."""
    doc = {"model": model, "weights": weights, "results": [r.to_dict() for r in results]}
    json.dump(doc, sys.stdout, indent=2)
    sys.stdout.write("\n")


CSV_COLUMNS = ("file", "rank", "index", "label", "probability", "error")


def write_csv(results: list, *, model: str, weights: str) -> None:
    """One row per (file, rank); a failed file is one row with an empty rank and the error."""
    writer = csv.writer(sys.stdout, lineterminator="\n")
    writer.writerow(CSV_COLUMNS)
    for r in results:
        if r.error:
            writer.writerow([r.file, "", "", "", "", r.error])
        for rank, (i, lab, p) in enumerate(zip(r.indices, r.labels, r.probabilities), 1):
            writer.writerow([r.file, rank, i, lab, f"{p:.6f}", ""])

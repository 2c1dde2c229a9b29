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
    add_scale_options,
    add_subcommand,
    check_runtime_options,
    collect_inputs,
    load_classifier,
    make_predictor,
    require_at_least,
    run_fingerprint,
    show_progress,
    uses_engine,
    weights_identity,
)

HELP = "top-k labels for images (files, directories, globs)"
DESCRIPTION = """\
Classify images with a pretrained VGG and print the top-k classes with their probabilities.

PATH can be image files, directories (add --recursive for subfolders) or glob patterns (quote them).
JPEG, PNG, WEBP, GIF, BMP and TIFF are read; grayscale, palette, RGBA, CMYK and 16-bit images are converted
to RGB and EXIF orientation is applied. A file that cannot be read is reported and the others are still
classified. Results are printed in the order of the inputs (a directory's or pattern's files sorted by path).

Under `torchrun --nproc-per-node=K -m vggnets classify ...` each process classifies its share of the
units (its own GPU, or its share of the CPU cores); with --output every finished unit is committed to
OUTPUT.parts, a rerun skips what is done, and rank 0 merges the parts into OUTPUT: the same bytes as
one process writes. Without --output rank 0 prints the results in input order.
Exit code: 0 all classified, 1 some files failed, 2 nothing was run (bad options or weights); under
torchrun 0 once the results are written (torchrun takes any other code for a crash and restarts)."""
EPILOG = """\
examples:
  vggnets classify examples/images/                 top-5 labels of every image in a folder (VGG16)
  vggnets classify photos/ --recursive -k 3 --format csv > labels.csv
  vggnets classify 'shots/*.jpg' --model vgg19_bn --format json
  vggnets classify cat.jpg --model vgg11 --weights my_finetuned.pth --device cpu
  vggnets classify photos/ --precision int8 -b 16   fast CPU engine (first run compiles, later runs reuse it)
  torchrun --nproc-per-node=4 -m vggnets classify photos/ -r --format csv -o labels.csv   4 processes, resumable

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
        "--format",
        choices=(*FORMATS, "jsonl"),
        default="table",
        help="table (default), csv or jsonl (one JSON object per image per line) are written as each batch "
        "finishes; json is one document written at the end",
    )
    p.add_argument(
        "-o",
        "--output",
        metavar="FILE",
        help="write the results to FILE instead of stdout (streamed formats: valid up to the last finished batch)",
    )
    p.add_argument("--force", action="store_true", help="replace an existing --output file")
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
    add_scale_options(p)
    add_quiet_option(p)
    p.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    """Classify every input, writing each batch's results as soon as it is done; 0, or 1 if any file failed."""
    from ..errors import VggnetsError
    from ..io.output import check_output

    require_at_least(args.topk, 1, "--topk")
    require_at_least(args.max_pixels, 1, "--max-pixels")
    device = check_runtime_options(args)
    if args.decode == "gpu" and device.type != "cuda":
        raise VggnetsError(
            f"--decode gpu decodes JPEGs with nvJPEG on a CUDA device, but the model runs on '{device}'; "
            "use --device cuda, or --decode cpu."
        )
    if args.output is not None:
        check_output(args.output, overwrite=args.force)
    require_at_least(args.unit_size, 1, "--unit-size")
    entries = collect_inputs(args.paths, recursive=args.recursive)
    if not entries:
        raise VggnetsError("no input images were given.")
    from ..scale.ranks import launched_by_torchrun

    if launched_by_torchrun():
        return _run_on_ranks(args, device, entries)
    weights = str(args.weights)
    predictions = iter(())
    if any(isinstance(e, Path) for e in entries):
        weights, predictions = _predict(args, device, [e for e in entries if isinstance(e, Path)])
    stream = ResultStream(
        args.format, args.output, args.force, model=args.model, weights=weights, options=args
    )
    return _write_all(stream, entries, predictions, exit_code=True)


def _write_all(stream: ResultStream, entries: list, predictions, *, exit_code: bool) -> int:
    """Write one result per entry in input order; 1 if any failed (0 when not ``exit_code``)."""
    failed = total = 0
    try:
        for result in _in_input_order(entries, predictions):
            stream.write(result)
            total += 1
            failed += bool(result.error)
    finally:
        stream.close()  # what is done stays written, also on Ctrl-C (exit 130)
    if failed:
        print(f"vggnets classify: {failed} of {total} inputs failed", file=sys.stderr)
    return 1 if failed and exit_code else 0


def _predict(args: argparse.Namespace, device, files: list[Path]):
    """(weights name, iterator of predictions for ``files`` in order, one batch at a time)."""
    loaded, predict = _classifier(args, device)
    return str(loaded.weights), predict(files, show_progress(args))


def _classifier(args: argparse.Namespace, device):
    """The loaded classifier and ``predict(files, progress)``: an iterator of predictions for ``files`` in order, one
    batch at a time (the engine, when asked for, is built on the first call)."""
    from ..io.images import DEFAULT_MAX_PIXELS

    decode_on_gpu = args.decode == "gpu" or (args.decode == "auto" and device.type == "cuda")
    loaded = load_classifier(args.model, args.weights, device, progress=show_progress(args))
    built: list = []

    def predict(files: list[Path], progress: bool):
        from ..inference.classify import class_names, classify_files

        model, transform, workers = loaded.model, loaded.transform, args.workers
        if uses_engine(args):
            if not built:
                built.append(make_predictor(loaded.model, loaded.transform, args, device))
            model = built[0]
            transform = model.preprocess
            if workers is None:  # decode in a worker process, overlapped with the engine
                workers = 1 if len(files) > args.batch_size else 0
        return classify_files(
            model,
            files,
            transform=transform,
            labels=class_names(loaded.categories, loaded.model.num_classes),
            topk=args.topk,
            batch_size=args.batch_size,
            device=device,
            workers=workers or 0,
            max_pixels=DEFAULT_MAX_PIXELS if args.max_pixels is None else args.max_pixels,
            progress=progress,
            decode_device=device if decode_on_gpu else None,
        )

    return loaded, predict


def _run_on_ranks(args: argparse.Namespace, device, entries: list) -> int:
    """Under torchrun: every process classifies its share of the units; rank 0 writes the results in input order
    (merged from the parts beside --output, or gathered round by round for stdout)."""
    from ..scale.jobs import Progress, open_parts, run_units
    from ..scale.parts import describe_files, parts_folder
    from ..scale.ranks import join
    from ..scale.records import PREDICTIONS
    from ..scale.shards import by_unit, make_units, unit_size

    with join(device) as ranks:
        files = [e for e in entries if isinstance(e, Path)]
        size = unit_size(args.unit_size, args.batch_size)
        loaded, predict = _classifier(args, ranks.device)
        parts = None
        if args.output is not None:
            fingerprint = run_fingerprint(
                args, describe_files(files), ranks.device, size, **{"--model": args.model,
                "--weights": weights_identity(loaded.weights), "--topk": args.topk, "--max-pixels": args.max_pixels,
                "--decode": args.decode},
            )  # fmt: skip
            parts = open_parts(
                ranks, parts_folder(args.output), fingerprint, marker=".jsonl", restart=args.force
            )

        def work(units):
            mine = [f for unit in units for f in unit.take(files)]
            return by_unit(units, predict(mine, show_progress(args) and ranks.is_main) if mine else iter(()))

        progress = Progress()
        done = run_units(ranks, make_units(len(files), size), work, parts=parts, codec=PREDICTIONS,
                         progress=progress)  # fmt: skip
        if not ranks.is_main:
            for _ in done:  # the other ranks take part in the collectives and yield nothing
                pass
            return 0
        return _merge(args, ranks, entries, done, parts, progress, str(loaded.weights))


def _merge(args: argparse.Namespace, ranks, entries: list, done, parts, progress, weights: str) -> int:
    """Rank 0: the results of every unit in input order through one ResultStream; with --output, into a file in the
    parts folder, published as --output (atomically) once complete, then the parts removed unless --keep-parts."""
    import os

    from ..io.output import atomic_write

    results = iter(done)
    first = next(results, None)  # with parts: every unit is committed once this returns
    if progress.resumed:
        ranks.say(
            f"vggnets classify: resumed: {len(progress.resumed)} of {progress.units} units were done before"
        )
    merged = None if parts is None else parts.folder / f"merged{Path(args.output).suffix}"
    stream = ResultStream(
        args.format, None if merged is None else str(merged), True, model=args.model, weights=weights,
        options=args,
    )  # fmt: skip
    predictions = (p for _, unit in _chain(first, results) for p in unit)
    code = _write_all(stream, entries, predictions, exit_code=False)
    if parts is not None:
        atomic_write(args.output, lambda tmp: os.replace(merged, tmp), overwrite=args.force)
        if not args.keep_parts:
            parts.remove()
    return code


def _chain(first, rest):
    """``first`` (when not None), then ``rest``."""
    if first is not None:
        yield first
    yield from rest


def _in_input_order(entries: list, predictions):
    """One result per entry, in input order: problems with an input where that input was given."""
    from ..inference.classify import Prediction

    for entry in entries:
        yield next(predictions) if isinstance(entry, Path) else Prediction(entry[0], error=entry[1])


CSV_COLUMNS = ("file", "rank", "index", "label", "probability", "error")


class ResultStream:
    """Writes results to stdout or ``--output`` as they arrive (flushed per result): table blocks, csv rows, jsonl
    lines; ``json`` is one document, written when the run ends (atomically, for a file)."""

    def __init__(
        self, fmt: str, output: str | None, force: bool, *, model: str, weights: str, options
    ) -> None:
        from ..io.output import open_stream

        self.fmt, self.output, self.force = fmt, output, force
        self.header = {"model": model, "weights": weights}
        self.documented: list[dict] = []
        self.to_file = output is not None and fmt != "json"
        self.out = open_stream(output, overwrite=force) if self.to_file else sys.stdout
        if output is not None:
            self.header["produced_by"] = _provenance(options)
        if fmt == "csv":
            self.csv = csv.writer(self.out, lineterminator="\n")
            self.csv.writerow(CSV_COLUMNS)

    def write(self, r) -> None:
        """Write one result and flush."""
        if self.fmt == "json":
            self.documented.append(r.to_dict())
        elif self.fmt == "jsonl":
            self.out.write(json.dumps({**r.to_dict(), **self.header}) + "\n")
        elif self.fmt == "csv":
            if r.error:
                self.csv.writerow([r.file, "", "", "", "", r.error])
            for rank, (i, lab, p) in enumerate(zip(r.indices, r.labels, r.probabilities), 1):
                self.csv.writerow([r.file, rank, i, lab, f"{p:.6f}", ""])
        else:
            self.out.write(_table_block(r))
        self.out.flush()
        if r.error and self.fmt != "table":  # the table shows errors in place; others get them on stderr
            print(f"vggnets classify: error: {r.error}", file=sys.stderr)

    def close(self) -> None:
        """Finish the output: the json document, or close the streamed file."""
        if self.fmt == "json":
            text = json.dumps({**self.header, "results": self.documented}, indent=2) + "\n"
            if self.output is None:
                sys.stdout.write(text)
            else:
                from ..io.output import write_text

                write_text(self.output, text, overwrite=self.force)
        elif self.to_file:
            self.out.close()


def _table_block(r) -> str:
    """Human-readable: the file, then its ranked labels with probabilities, or its error."""
    if r.error:
        return f"{r.file}\n  error: {r.error}\n\n"
    width = max(len(lab) for lab in r.labels)
    rows = [
        f"  {rank}. {lab:<{width}}  {100 * p:6.2f}%"
        for rank, (lab, p) in enumerate(zip(r.labels, r.probabilities), 1)
    ]
    return "\n".join([r.file, *rows]) + "\n\n"


def _provenance(args: argparse.Namespace) -> dict:
    """What produced a written file: the vggnets version and the command's options."""
    from ..version import __version__

    options = {
        k: (v if isinstance(v, (int, float, str, bool, type(None), list)) else str(v))
        for k, v in vars(args).items()
        if k != "run"
    }
    return {"vggnets": __version__, "command": "classify", "options": options}

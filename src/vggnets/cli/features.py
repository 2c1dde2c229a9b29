"""``vggnets features``: image descriptors from a named layer, saved with their file names and labels."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from .common import (
    add_engine_options,
    add_model_options,
    add_quiet_option,
    add_runtime_options,
    add_scale_options,
    add_subcommand,
    check_runtime_options,
    collect_inputs,
    make_predictor,
    parse_scales,
    provenance,
    require_at_least,
    resolve_weights_option,
    run_fingerprint,
    show_progress,
    uses_engine,
    weights_identity,
)

HELP = "descriptors from a named layer (fc7, pool5 ...) for transfer learning, saved as .npy/.pt/.parquet"
DESCRIPTION = """\
Compute one descriptor per image from a named layer (conv1_1 ... pool5, fc6, relu6, fc7, relu7, fc8;
`python -c "import vggnets; print(vggnets.features.layer_names(vggnets.vgg16()))"` lists them).
Convolutional layers are averaged over positions. By default each image is the weights' center crop;
--multiscale follows the paper's Appendix B instead: the whole image at scales 256, 384 and 512 through
the fully-convolutional net, averaged over positions and scales (add --flip for mirror images too),
and --l2norm normalises each descriptor. The default layer, relu7, is the paper's 4096-d descriptor.

The output keeps the file list and a label per image (the name of its folder, as in an ImageFolder
tree): .npy writes the array plus FILE.csv (index,file,label); .pt a dict with features, files,
labels and the settings; .parquet a table (file, label, features), the settings in its metadata, and
needs pyarrow. The settings say what produced the file (model, weights, layer, vggnets version,
options). The output and its sidecar are checked before any work, written atomically, and an existing
one (the .csv beside a .npy included) is never replaced without --force.

Images are decoded in worker processes and embedded in units of --unit-size images, each committed to
OUTPUT.parts as it finishes, then merged on disk (memory stays flat in the number of images): an
interrupted run resumes where it stopped when the same command is run again. Under
`torchrun --nproc-per-node=K -m vggnets features ...` each process embeds its share of the units
(its own GPU, or its share of the CPU cores) and rank 0 merges them: the same file as one process.
Exit code: 0 all images, 1 some images could not be read, 2 nothing was written (under torchrun: 0
once the output is written, as torchrun takes any other code for a crash)."""
EPILOG = """\
examples:
  vggnets features photos/ --recursive --output feats.npy
  vggnets features photos/ --recursive --multiscale --flip --l2norm --output feats.parquet
  vggnets features a.jpg b.jpg --layer pool5 --model vgg19 --output pool5.pt
  vggnets features photos/ -r --precision bf16 --output feats.parquet      fast engine, single scale
  torchrun --nproc-per-node=4 -m vggnets features photos/ -r --output feats.npy"""

SUFFIXES = (".npy", ".pt", ".parquet")


def add_parser(sub: argparse._SubParsersAction) -> None:
    """Register the subcommand."""
    p = add_subcommand(sub, "features", help=HELP, description=DESCRIPTION, epilog=EPILOG)
    p.add_argument("paths", nargs="+", metavar="IMAGES", help="image files, directories or glob patterns")
    add_model_options(p)
    p.add_argument(
        "--layer", default="relu7", help="named layer (default: relu7, the paper's fc7 descriptor)"
    )
    p.add_argument(
        "--multiscale", action="store_true", help="the paper's Appendix B: dense, scales 256,384,512"
    )
    p.add_argument("--scales", default=None, help="scales for --multiscale (default: 256,384,512)")
    p.add_argument("--flip", action="store_true", help="also average the horizontally flipped image")
    p.add_argument("--l2norm", action="store_true", help="L2-normalise each descriptor")
    p.add_argument("-r", "--recursive", action="store_true", help="also read images in subdirectories")
    p.add_argument("-o", "--output", required=True, help="output file: .npy, .pt or .parquet")
    p.add_argument(
        "--force",
        action="store_true",
        help="replace an existing output file (and its .csv sidecar); discard the parts of another run",
    )
    add_runtime_options(
        p,
        batch_size=16,
        workers=None,
        batch_help="images per forward pass (single scale)",
        workers_help="decoding worker processes (default: 1 when there is more than one batch, so decoding "
        "overlaps the model; 0 = in-process)",
    )
    add_scale_options(p, always=True)
    add_engine_options(p)
    add_quiet_option(p)
    p.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    """Embed the images unit by unit (committed to OUTPUT.parts), merge the parts into the output, report unreadable
    images (left out of the output)."""
    from ..scale.ranks import join

    output = _check_output(args)
    device = check_runtime_options(args)
    require_at_least(args.unit_size, 1, "--unit-size")
    scales = parse_scales(args.scales) if args.multiscale else None
    entries = collect_inputs(args.paths, recursive=args.recursive)
    with join(device) as ranks:
        return _run(args, ranks, output, scales, entries)


def _run(args: argparse.Namespace, ranks, output: Path, scales, entries: list) -> int:
    """The run in this process (rank 0 merges and writes)."""
    from ..features.embeddings import normalization
    from ..scale.jobs import Progress, open_parts, run_units
    from ..scale.parts import describe_files, parts_folder
    from ..scale.records import EMBEDDINGS
    from ..scale.shards import make_units, unit_size

    model, weights = _load_model(args, ranks.device)
    mean, std = normalization(weights)
    paths = [e for e in entries if isinstance(e, Path)]
    size = unit_size(args.unit_size, args.batch_size)
    fingerprint = run_fingerprint(
        args, describe_files(paths), ranks.device, size, **{"--model": args.model,
        "--weights": weights_identity(weights), "--layer": args.layer, "--scales": list(scales) if scales else None,
        "--flip": args.flip, "--l2norm": args.l2norm},
    )  # fmt: skip
    parts = open_parts(ranks, parts_folder(output), fingerprint, marker=".json", restart=args.force)
    settings = {"layer": args.layer, "mean": mean, "std": std, "scales": scales, "flip": args.flip,
                "l2norm": args.l2norm}  # fmt: skip
    work = _work(args, ranks, model, paths, settings)
    progress = Progress()
    try:
        merged = [part for _, part in run_units(ranks, make_units(len(paths), size), work, parts=parts,
                                                codec=EMBEDDINGS, progress=progress)]  # fmt: skip
    except KeyboardInterrupt:
        ranks.say(
            f"vggnets features: the finished units are kept in {parts.folder}; rerun the command to resume."
        )
        raise
    if not ranks.is_main:
        return 0
    if progress.resumed:
        ranks.say(
            f"vggnets features: resumed: {len(progress.resumed)} of {progress.units} units were done before"
        )
    meta = {"model": args.model, "weights": str(weights), "layer": args.layer, "multiscale": args.multiscale,
            "scales": list(scales) if scales else None, "flip": args.flip, "l2norm": args.l2norm,
            "produced_by": provenance(args)}  # fmt: skip
    return _merge(args, ranks, output, merged, parts, entries, meta)


def _work(args: argparse.Namespace, ranks, model, paths: list[Path], settings: dict):
    """``work(units)`` for :func:`vggnets.scale.jobs.run_units`: the units' files through one loader, cut back into
    one list of :class:`Embedding` per unit."""
    from ..features.embeddings import embed_files
    from ..scale.shards import by_unit

    predictor = _engine(args, model, settings, ranks.device)

    def work(units):
        files = [p for unit in units for p in unit.take(paths)]
        workers = args.workers if args.workers is not None else (1 if len(files) > args.batch_size else 0)
        rows = embed_files(model, files, batch_size=args.batch_size, progress=show_progress(args) and ranks.is_main,
                           workers=workers, predictor=predictor, **settings)  # fmt: skip
        return by_unit(units, rows)

    return work


def _engine(args: argparse.Namespace, model, settings: dict, device):
    """The engine Predictor of the layer's single-scale descriptor with --precision/--compile (None without them, and
    with --multiscale, whose input sizes vary per image: a note says so)."""
    from ..core.transforms import ImageClassification
    from ..features.embeddings import LayerDescriptor

    if not uses_engine(args):
        return None
    if args.multiscale:
        print(
            "vggnets features: note: --precision/--compile apply to single-scale descriptors; --multiscale runs "
            "the eager fp32 model (its input sizes vary per image).",
            file=sys.stderr,
        )
        return None
    crop = ImageClassification(crop_size=224, mean=settings["mean"], std=settings["std"])
    return make_predictor(LayerDescriptor(model, args.layer).eval(), crop, args, device)


def _merge(
    args: argparse.Namespace, ranks, output: Path, merged: list, parts, entries: list, meta: dict
) -> int:
    """Rank 0: the parts written to the output in input order, then removed (unless --keep-parts)."""
    from ..errors import VggnetsError
    from ..scale.merge import write_merged_features

    failures = [e for e in entries if not isinstance(e, Path)]
    failures += [(file, error) for part in merged for file, _, error in part.rows if error is not None]
    if not any(part.shape[0] for part in merged):
        for _, message in failures:
            print(f"vggnets features: error: {message}", file=sys.stderr)
        if not args.keep_parts:
            parts.remove()
        raise VggnetsError("no image could be read, so nothing was written.")
    shape = write_merged_features(output, merged, meta, scratch=parts.folder, overwrite=args.force)
    if not args.keep_parts:
        parts.remove()
    for item, message in failures:
        print(f"vggnets features: skipped {item}: {message}", file=sys.stderr)
    print(f"wrote {shape[0]} x {shape[1]} {args.layer} features to {output}")
    if ranks.launched:  # torchrun would take exit code 1 for a crash (and restart the job)
        return 0
    return 1 if failures else 0


def _check_output(args: argparse.Namespace) -> Path:
    """The output path, refused before any work when its suffix is unknown, it or its sidecar exists without
    --force, its folder cannot take it, or it needs a missing pyarrow."""
    from ..errors import VggnetsError
    from ..io.output import check_output
    from ..scale.merge import sidecars

    output = Path(args.output).expanduser()
    if output.suffix not in SUFFIXES:
        raise VggnetsError(f"--output must end in {', '.join(SUFFIXES)}, got {output.name!r}.")
    if output.suffix == ".parquet":
        _require_pyarrow()
    return check_output(output, overwrite=args.force, sidecars=sidecars(output))


def _load_model(args: argparse.Namespace, device):
    """The model on ``device`` in eval mode and its resolved weights; the layer is checked against its names."""
    from ..errors import VggnetsError
    from ..features.extractor import layer_names
    from ..models.builders import build

    weights = resolve_weights_option(args.model, args.weights)
    model = build(args.model, weights=weights, progress=show_progress(args)).to(device).eval()
    names = layer_names(model)
    if args.layer not in names:
        raise VggnetsError(f"{args.model} has no layer {args.layer!r}; choose from {', '.join(names)}.")
    return model, weights


def _require_pyarrow() -> None:
    """Parquet output needs pyarrow: a clear message naming the extra."""
    from ..errors import MissingDependencyError

    try:
        import pyarrow  # noqa: F401
    except ImportError as exc:
        raise MissingDependencyError(
            "writing .parquet needs pyarrow, which is not installed: pip install 'vggnets[parquet]' "
            "(or choose --output FILE.npy / FILE.pt)."
        ) from exc

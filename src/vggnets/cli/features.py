"""``vggnets features``: image descriptors from a named layer, saved with their file names and labels."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from .common import (
    add_model_options,
    add_quiet_option,
    add_runtime_options,
    add_subcommand,
    check_runtime_options,
    collect_inputs,
    parse_scales,
    provenance,
    resolve_weights_option,
    show_progress,
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
Exit code: 0 all images, 1 some images could not be read, 2 nothing was written."""
EPILOG = """\
examples:
  vggnets features photos/ --recursive --output feats.npy
  vggnets features photos/ --recursive --multiscale --flip --l2norm --output feats.parquet
  vggnets features a.jpg b.jpg --layer pool5 --model vgg19 --output pool5.pt"""

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
        "--force", action="store_true", help="replace an existing output file (and its .csv sidecar)"
    )
    add_runtime_options(p, batch_size=16, workers=0, batch_help="images per forward pass (single scale)")
    add_quiet_option(p)
    p.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    """Embed the images through the library, write the output, report unreadable images (left out of the output)."""
    import torch

    from ..errors import VggnetsError
    from ..features.embeddings import embed_files, normalization

    output = _check_output(args)
    device = check_runtime_options(args)
    scales = parse_scales(args.scales) if args.multiscale else None
    entries = collect_inputs(args.paths, recursive=args.recursive)
    model, weights = _load_model(args, device)
    mean, std = normalization(weights)
    paths = [e for e in entries if isinstance(e, Path)]
    failures = [e for e in entries if not isinstance(e, Path)]
    rows = list(
        embed_files(model, paths, layer=args.layer, mean=mean, std=std, scales=scales, flip=args.flip,
                    l2norm=args.l2norm, batch_size=args.batch_size, progress=show_progress(args))
    )  # fmt: skip
    failures += [(row.file, row.error) for row in rows if row.error is not None]
    read = [row for row in rows if row.error is None]
    if not read:
        for _, message in failures:
            print(f"vggnets features: error: {message}", file=sys.stderr)
        raise VggnetsError("no image could be read, so nothing was written.")
    features = torch.stack([row.features for row in read])
    meta = {"model": args.model, "weights": str(weights), "layer": args.layer, "multiscale": args.multiscale,
            "scales": list(scales) if scales else None, "flip": args.flip, "l2norm": args.l2norm,
            "produced_by": provenance(args)}  # fmt: skip
    write_features(output, features, [row.file for row in read], [row.label for row in read], meta,
                   overwrite=args.force)  # fmt: skip
    for item, message in failures:
        print(f"vggnets features: skipped {item}: {message}", file=sys.stderr)
    print(f"wrote {features.shape[0]} x {features.shape[1]} {args.layer} features to {output}")
    return 1 if failures else 0


def _check_output(args: argparse.Namespace) -> Path:
    """The output path, refused before any work when its suffix is unknown, it or its sidecar exists without
    --force, its folder cannot take it, or it needs a missing pyarrow."""
    from ..errors import VggnetsError
    from ..io.output import check_output

    output = Path(args.output).expanduser()
    if output.suffix not in SUFFIXES:
        raise VggnetsError(f"--output must end in {', '.join(SUFFIXES)}, got {output.name!r}.")
    if output.suffix == ".parquet":
        _require_pyarrow()
    return check_output(output, overwrite=args.force, sidecars=sidecars(output))


def sidecars(output: Path) -> list[Path]:
    """The files written beside ``output``: the .csv of file names and labels for a .npy."""
    return [output.with_suffix(".csv")] if output.suffix == ".npy" else []


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


def write_features(
    output: Path, features, files: list[str], labels: list[str], meta: dict, *, overwrite: bool = False
) -> None:
    """Write through the atomic writer in the format the suffix names; a .npy's FILE.csv sidecar first, removed
    again if the array cannot be written (an existing sidecar is replaced only with ``overwrite``)."""
    from ..io.output import atomic_write

    writer = {".npy": _write_npy, ".pt": _write_pt, ".parquet": _write_parquet}[output.suffix]
    for sidecar in sidecars(output):
        atomic_write(sidecar, lambda tmp: _write_csv(tmp, files, labels), overwrite=overwrite)
    try:
        atomic_write(output, lambda tmp: writer(tmp, features, files, labels, meta), overwrite=overwrite)
    except BaseException:
        for sidecar in sidecars(output):
            sidecar.unlink(missing_ok=True)
        raise


def _write_npy(path: Path, features, files: list[str], labels: list[str], meta: dict) -> None:
    """The array alone (files and labels go to the CSV sidecar)."""
    import numpy as np

    with open(path, "wb") as f:
        np.save(f, features.numpy())


def _write_pt(path: Path, features, files: list[str], labels: list[str], meta: dict) -> None:
    """A dict with features, files, labels and the settings."""
    import torch

    torch.save({"features": features, "files": files, "labels": labels, **meta}, path)


def _write_csv(path: Path, files: list[str], labels: list[str]) -> None:
    """The .npy sidecar: index,file,label, one row per descriptor."""
    import csv

    with open(path, "w", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(["index", "file", "label"])
        writer.writerows([i, file, label] for i, (file, label) in enumerate(zip(files, labels, strict=True)))


def _write_parquet(path: Path, features, files: list[str], labels: list[str], meta: dict) -> None:
    """A table (file, label, features), the settings (what produced it) as JSON in the schema's ``vggnets``
    metadata."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    table = pa.table(
        {
            "file": files,
            "label": labels,
            "features": pa.array(list(features.numpy()), pa.list_(pa.float32())),
        },
        metadata={"vggnets": json.dumps(meta)},
    )
    pq.write_table(table, path)

"""``vggnets features``: image descriptors from a named layer, saved with their file names and labels."""

from __future__ import annotations

import argparse
import json
import os
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
labels; .parquet a table (file, label, features) and needs pyarrow. An existing output is never
overwritten without --force. Exit code: 0 all images, 1 some images could not be read, 2 nothing run."""
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
    p.add_argument("--force", action="store_true", help="overwrite an existing output file")
    add_runtime_options(p, batch_size=16, workers=0, batch_help="images per forward pass (single scale)")
    add_quiet_option(p)
    p.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    """Decode, embed, write; unreadable images are reported and left out of the output."""
    import torch

    from ..core.transforms import IMAGENET_MEAN, IMAGENET_STD
    from ..errors import ImageError, VggnetsError
    from ..features.embeddings import embed
    from ..features.extractor import layer_names
    from ..io.images import read_image
    from ..models.builders import build
    from ..models.weights import WeightsEnum, resolve_weights

    output = Path(args.output)
    if output.suffix not in SUFFIXES:
        raise VggnetsError(f"--output must end in {', '.join(SUFFIXES)}, got {output.name!r}.")
    if output.exists() and not args.force:
        raise VggnetsError(f"{output} already exists; pass --force to overwrite it.")
    if output.suffix == ".parquet":
        _require_pyarrow()
    device = check_runtime_options(args)
    scales = parse_scales(args.scales) if args.multiscale else None
    entries = collect_inputs(args.paths, recursive=args.recursive)
    weights = resolve_weights(args.model, args.weights)
    model = build(args.model, weights=weights, progress=show_progress(args)).to(device).eval()
    names = layer_names(model)
    if args.layer not in names:
        raise VggnetsError(f"{args.model} has no layer {args.layer!r}; choose from {', '.join(names)}.")
    preset = weights.transforms() if isinstance(weights, WeightsEnum) else None
    mean, std = (preset.mean, preset.std) if preset is not None else (IMAGENET_MEAN, IMAGENET_STD)

    paths = [e for e in entries if isinstance(e, Path)]
    failures = [e for e in entries if not isinstance(e, Path)]
    files, chunks = [], []
    bar = None
    if show_progress(args):
        from tqdm import tqdm

        bar = tqdm(total=len(paths), unit="img", desc="features")
    for start in range(0, len(paths), args.batch_size):  # decode one batch at a time: memory stays flat
        images = []
        for path in paths[start : start + args.batch_size]:
            try:
                images.append(read_image(path))
                files.append(path)
            except ImageError as exc:
                failures.append((str(path), str(exc)))
        if images:
            chunks.append(
                embed(model, images, layer=args.layer, mean=mean, std=std, scales=scales, flip=args.flip,
                      l2norm=args.l2norm)
            )  # fmt: skip
        if bar is not None:
            bar.update(len(paths[start : start + args.batch_size]))
    if bar is not None:
        bar.close()
    if not files:
        for _, message in failures:
            print(f"vggnets features: error: {message}", file=sys.stderr)
        raise VggnetsError("no image could be read, so nothing was written.")
    features = torch.cat(chunks)
    labels = [p.parent.name for p in files]
    meta = {"model": args.model, "weights": str(weights), "layer": args.layer, "multiscale": args.multiscale,
            "scales": list(scales) if scales else None, "flip": args.flip, "l2norm": args.l2norm}  # fmt: skip
    write_features(output, features, [str(p) for p in files], labels, meta)
    for item, message in failures:
        print(f"vggnets features: skipped {item}: {message}", file=sys.stderr)
    print(f"wrote {features.shape[0]} x {features.shape[1]} {args.layer} features to {output}")
    return 1 if failures else 0


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


def write_features(output: Path, features, files: list[str], labels: list[str], meta: dict) -> None:
    """Write atomically (temporary file + rename) in the format the suffix names."""
    import csv

    import numpy as np
    import torch

    tmp = output.with_name(f".{output.name}.tmp{output.suffix}")
    if output.suffix == ".npy":
        np.save(tmp, features.numpy())
        sidecar = output.with_suffix(".csv")
        sidecar_tmp = sidecar.with_name(f".{sidecar.name}.tmp")
        with open(sidecar_tmp, "w", newline="") as f:
            writer = csv.writer(f)
            writer.writerow(["index", "file", "label"])
            writer.writerows(
                [i, file, label] for i, (file, label) in enumerate(zip(files, labels, strict=True))
            )
        os.replace(sidecar_tmp, sidecar)
    elif output.suffix == ".pt":
        torch.save({"features": features, "files": files, "labels": labels, **meta}, tmp)
    else:
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
        pq.write_table(table, tmp)
    os.replace(tmp, output)

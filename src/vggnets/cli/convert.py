"""``vggnets convert``: turn timm and Keras VGG weights into ours (and back), and say what input they expect."""

from __future__ import annotations

import argparse
import json

from .common import add_subcommand, provenance

HELP = "convert timm or Keras VGG weights to vggnets' layout (or back)"
DESCRIPTION = """\
Convert a VGG checkpoint and write it atomically. SRC is a .pth/.pt/.safetensors file in vggnets' (torchvision's)
or timm's layout, or a Keras Applications VGG16/VGG19 file (.h5 as keras.applications downloads it, Keras 3
.weights.h5, or .keras; needs h5py: pip install 'vggnets[keras]'). DST is written in vggnets' layout
(.safetensors, .pth or .pt), in timm's with --to timm, or as a legacy Keras .h5 (model.load_weights reads it).

Keras' ImageNet VGG weights expect BGR images in [0, 255] minus the mean pixel (Caffe-style). By default conv1_1
is flipped so the converted model takes RGB: preprocess with RGB in [0, 255] minus (123.68, 116.779, 103.939),
i.e. vggnets.convert.keras_transforms(). --bgr keeps the source's channel order instead.
The converted file loads with vggnets.vgg16(weights="out.safetensors") (timm and Keras files also load directly).
DST is checked before SRC is read and is never replaced without --force; a .safetensors DST records what produced
it (vggnets version, model, source file and layout, options) in its metadata.
Exit code: 0 written, 2 nothing was written."""
EPILOG = """\
examples:
  vggnets convert vgg16_weights_tf_dim_ordering_tf_kernels.h5 vgg16_keras.safetensors
  vggnets convert timm_vgg16.pth vgg16.safetensors
  vggnets convert vgg16.safetensors vgg16_timm.pth --to timm
  vggnets convert vgg16.safetensors vgg16.h5 --force --json"""


def add_parser(sub: argparse._SubParsersAction) -> None:
    """Register the subcommand."""
    from ..core.configs import MODELS

    p = add_subcommand(sub, "convert", help=HELP, description=DESCRIPTION, epilog=EPILOG)
    p.add_argument("src", metavar="SRC", help="the checkpoint to convert")
    p.add_argument("dst", metavar="DST", help="the file to write (.safetensors, .pth, .pt, or .h5 for Keras)")
    p.add_argument(
        "--model",
        default=None,
        choices=list(MODELS),
        metavar="NAME",
        help="check the weights against this model (default: recognised from the tensor shapes)",
    )
    p.add_argument(
        "--to",
        choices=("torchvision", "timm", "keras"),
        default=None,
        help="layout to write (default: keras for .h5 names, else torchvision, which is vggnets' own)",
    )
    p.add_argument(
        "--bgr",
        action="store_true",
        help="keep the source's input channel order (a converted Keras model then takes BGR, as in Keras)",
    )
    p.add_argument("-f", "--force", action="store_true", help="replace DST if it exists")
    p.add_argument("--json", action="store_true", help="print the conversion report as JSON")
    p.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    """Check DST, convert, then print what was done and the preprocessing the weights expect."""
    from ..convert.files import check_destination, convert_file, describe

    check_destination(args.dst, to=args.to, overwrite=args.force)
    report = convert_file(
        args.src,
        args.dst,
        model=args.model,
        rgb=not args.bgr,
        to=args.to,
        overwrite=args.force,
        metadata={"produced_by": json.dumps(provenance(args))},
    )
    print(json.dumps(report.to_dict(), indent=2) if args.json else describe(report))
    return 0

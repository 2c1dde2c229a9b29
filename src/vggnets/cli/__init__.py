"""The ``vggnets`` command: one small module per subcommand, errors as one paragraph without a traceback.

Exit codes: 0 success; 1 the command ran but some inputs failed (e.g. unreadable images); 2 nothing was done because
of a usage, weights or model problem; 130 interrupted.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence

from ..errors import VggnetsError
from . import (
    benchmark,
    classify,
    convert,
    download,
    evaluate,
    explain,
    export,
    features,
    lpips,
    models,
    stylize,
    train,
)
from .common import settle_model

SUBCOMMANDS = (
    classify,
    evaluate,
    features,
    models,
    download,
    export,
    convert,
    train,
    benchmark,
    lpips,
    explain,
    stylize,
)

EPILOG = """\
examples:
  vggnets classify examples/images/            top-5 ImageNet labels with pretrained VGG16
  vggnets classify cat.jpg --model vgg19_bn --format json
  vggnets models                               every configuration, its size and accuracy
  vggnets download vgg16 vgg19 --verify        prefetch weights for offline use

Weights are cached in $TORCH_HOME/hub/checkpoints (shared with torchvision). Offline sites set
VGGNETS_WEIGHTS_MIRROR to a directory or URL holding the files, or pass --weights /path/to/file.pth.
"""


def build_parser() -> argparse.ArgumentParser:
    """The top-level parser with every subcommand registered."""
    from ..version import __version__

    parser = argparse.ArgumentParser(
        prog="vggnets",
        description="The VGG networks of Simonyan & Zisserman (arXiv 1409.1556): classify, inspect and fetch weights.",
        epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--version", action="version", version=f"vggnets {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    for module in SUBCOMMANDS:
        module.add_parser(sub)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Run the command line; returns the exit code (also for --help, --version and usage errors)."""
    parser = build_parser()
    try:
        args = parser.parse_args(argv)
    except SystemExit as exc:  # argparse exits on --help, --version and usage errors: return its code instead
        return exc.code if isinstance(exc.code, int) else (0 if exc.code is None else 2)
    try:
        settle_model(args)
        return args.run(args)
    except VggnetsError as exc:
        print(f"vggnets {args.command}: error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("vggnets: interrupted", file=sys.stderr)
        return 130
    except BrokenPipeError:
        return 0


def entry_point() -> None:
    """Console-script entry: exit with main()'s code."""
    sys.exit(main())

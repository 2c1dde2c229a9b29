"""``vggnets download``: fetch weights into the cache ahead of time, and verify cached files."""

from __future__ import annotations

import argparse
import json
import sys

from .common import add_quiet_option, add_subcommand, show_progress

HELP = "download (and verify) pretrained weights into the cache"
DESCRIPTION = """\
Download weights into $TORCH_HOME/hub/checkpoints (shared with torchvision), so later runs work offline.

NAME is a model (vgg16: its DEFAULT weights) or a weights name (VGG16_Weights.IMAGENET1K_FEATURES).
--verify re-hashes cached files (a cache hit is otherwise trusted) and prints each full SHA-256, so a site
can pin it. Set VGGNETS_WEIGHTS_MIRROR to a directory or URL to fetch from an internal mirror.
Exit code: 0 all present and valid, 1 a file failed verification, 2 a download failed."""
EPILOG = """\
examples:
  vggnets download vgg16                          VGG16's DEFAULT weights (IMAGENET1K_V1)
  vggnets download vgg16 vgg19_bn --verify        fetch two, re-hash them, print their SHA-256
  vggnets download VGG16_Weights.IMAGENET1K_FEATURES
  VGGNETS_WEIGHTS_MIRROR=/mnt/models vggnets download --all --json"""


def add_parser(sub: argparse._SubParsersAction) -> None:
    """Register the subcommand."""
    p = add_subcommand(sub, "download", help=HELP, description=DESCRIPTION, epilog=EPILOG)
    p.add_argument("names", nargs="*", metavar="NAME", help="models or weights names")
    p.add_argument("--all", action="store_true", help="every published weights file (about 4.7 GB)")
    p.add_argument(
        "--verify", action="store_true", help="re-hash each file and compare with the published digest"
    )
    p.add_argument("--json", action="store_true", help="print a JSON record per file")
    add_quiet_option(p)
    p.set_defaults(run=run)


def selected(args: argparse.Namespace) -> list:
    """The enum members named on the command line (or all of them)."""
    from ..errors import VggnetsError
    from ..models.weights import WEIGHTS, get_weight, resolve_weights

    if args.all:
        return [m for enum_cls in WEIGHTS.values() for m in enum_cls]
    if not args.names:
        raise VggnetsError(
            "name at least one model or weights (e.g. `vggnets download vgg16`), or pass --all."
        )
    try:
        members = [get_weight(n) if "." in n else resolve_weights(n, "DEFAULT") for n in args.names]
    except ValueError as exc:
        raise VggnetsError(str(exc)) from exc
    return list(dict.fromkeys(members))  # each file once, even when named twice (vgg16 and its IMAGENET1K_V1)


def run(args: argparse.Namespace) -> int:
    """Download what is missing, optionally verify, print where each file is."""
    from ..errors import ChecksumError
    from ..io import download
    from ..models.weights import published_digest

    status = 0
    for member in selected(args):
        path = member.download(progress=show_progress(args), quiet=args.quiet)
        record = {"weights": str(member), "path": str(path), "sha256": None, "verified": None}
        if args.verify:
            digest = download.sha256_file(path)
            record["sha256"] = digest
            try:
                # a legacy file name (vgg11-bbd30ac9.pth) carries its own digest
                download.check_digest(digest, published_digest(path.name), what=str(path))
                record["verified"] = True
            except ChecksumError as exc:
                record["verified"] = False
                status = 1
                print(f"vggnets download: error: {exc}", file=sys.stderr)
        if args.json:
            print(json.dumps(record))
        else:
            extra = ""
            if args.verify:
                extra = f"  sha256 {record['sha256']}  {'OK' if record['verified'] else 'MISMATCH'}"
            print(f"{member}  {path}{extra}")
    return status

"""``vggnets download``: fetch weights into the cache ahead of time, and verify cached files."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import TYPE_CHECKING

from .common import add_quiet_option, add_subcommand, show_progress

if TYPE_CHECKING:
    from ..models.weights import WeightsEnum

HELP = "download (and verify) pretrained weights into the cache"
DESCRIPTION = """\
Download weights into $TORCH_HOME/hub/checkpoints (shared with torchvision), so later runs work offline.

NAME is a model (vgg16: its DEFAULT weights), a weights name (VGG16_Weights.IMAGENET1K_FEATURES), or lpips
(the LPIPS v0.1 linear layers that `vggnets lpips` needs beside vgg16; lpips-v0.1 names the version).
--verify re-hashes cached files (a cache hit is otherwise trusted) and prints each full SHA-256, so a site
can pin it; --force downloads again and replaces a cached file once the new one verifies (a bad one, say).
An interrupted download is resumed by the next one where the server allows it; two processes downloading
the same file take turns. Set VGGNETS_WEIGHTS_MIRROR to a directory, an http(s):// or a file:// URL to
fetch from an internal mirror.
Exit code: 0 all present and valid, 1 a file failed verification, 2 a download failed."""
EPILOG = """\
examples:
  vggnets download vgg16                          VGG16's DEFAULT weights (IMAGENET1K_V1)
  vggnets download vgg16 vgg19_bn --verify        fetch two, re-hash them, print their SHA-256
  vggnets download VGG16_Weights.IMAGENET1K_FEATURES
  vggnets download vgg16 lpips                    everything `vggnets lpips` needs offline
  vggnets download vgg16 --force --verify         replace a cached file that failed --verify
  VGGNETS_WEIGHTS_MIRROR=/mnt/models vggnets download --all --json"""


def add_parser(sub: argparse._SubParsersAction) -> None:
    """Register the subcommand."""
    p = add_subcommand(sub, "download", help=HELP, description=DESCRIPTION, epilog=EPILOG)
    p.add_argument("names", nargs="*", metavar="NAME", help="models or weights names")
    p.add_argument(
        "--all", action="store_true", help="every published weights file, LPIPS's included (about 4.7 GB)"
    )
    p.add_argument(
        "--verify", action="store_true", help="re-hash each file and compare with the published digest"
    )
    p.add_argument(
        "--force",
        action="store_true",
        help="download again even if cached; the cached file is replaced only once the new one verifies",
    )
    p.add_argument("--json", action="store_true", help="print a JSON record per file")
    add_quiet_option(p)
    p.set_defaults(run=run)


def selected(args: argparse.Namespace) -> list:
    """The weights enum members and LPIPS files named on the command line (or all of them)."""
    from ..errors import VggnetsError
    from ..features.lpips import LINEAR_WEIGHTS
    from ..models.weights import WEIGHTS

    if args.all:
        return [m for enum_cls in WEIGHTS.values() for m in enum_cls] + list(LINEAR_WEIGHTS.values())
    if not args.names:
        raise VggnetsError(
            "name at least one model or weights (e.g. `vggnets download vgg16`), or pass --all."
        )
    try:
        members = [_named(name) for name in args.names]
    except ValueError as exc:
        raise VggnetsError(f"{exc} (or lpips for the LPIPS linear layers)") from exc
    return list(dict.fromkeys(members))  # each file once, even when named twice (vgg16 and its IMAGENET1K_V1)


def _named(name: str):
    """One NAME: lpips or lpips-vX.Y, a weights member (it has a dot), else a model's DEFAULT weights."""
    from ..features.lpips import LINEAR_WEIGHTS
    from ..models.weights import get_weight, resolve_weights

    lpips = {"lpips": LINEAR_WEIGHTS["0.1"], **{w.name: w for w in LINEAR_WEIGHTS.values()}}
    if name.lower() in lpips:
        return lpips[name.lower()]
    return get_weight(name) if "." in name else resolve_weights(name, "DEFAULT")


def run(args: argparse.Namespace) -> int:
    """Download what is missing, optionally verify, print where each file is."""
    from ..errors import ChecksumError
    from ..io import download
    from ..models.weights import published_digest

    status = 0
    for member in selected(args):
        # --force: fetched and verified beside the cached file, which stays if this fails
        path = member.download(progress=show_progress(args), quiet=args.quiet, force=args.force)
        record = {"weights": str(member), "path": str(path), "sha256": None, "verified": None}
        if args.verify:
            digest = download.sha256_file(path)
            record["sha256"] = digest
            try:
                # a legacy file name (vgg11-bbd30ac9.pth) carries its own digest
                expected = member.sha256 if path.name == member.file_name else published_digest(path.name)
                download.check_digest(digest, expected, what=str(path))
                record["verified"] = True
            except ChecksumError as exc:
                record["verified"] = False
                status = 1
                print(f"vggnets download: error: {exc} {_what_to_do(member, path)}", file=sys.stderr)
        if args.json:
            print(json.dumps(record))
        else:
            extra = ""
            if args.verify:
                extra = f"  sha256 {record['sha256']}  {'OK' if record['verified'] else 'MISMATCH'}"
            print(f"{member}  {path}{extra}")
    return status


def _what_to_do(member: WeightsEnum, path: Path) -> str:
    """The way out of a failed --verify: delete the file, or download it again with --force."""
    official = member.file_name
    if path.name == official:
        return (
            f"Delete {path} (it is downloaded again when next needed), or run `vggnets download {member} --force` "
            "to download it again now (the cached file is replaced only once the new download verifies)."
        )
    return (
        f"Delete {path} (an older name of these weights; {official} is downloaded when next needed), or run "
        f"`vggnets download {member} --force` to download {official} now, which is then used in its place."
    )

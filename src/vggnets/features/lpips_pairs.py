"""LPIPS over image files: two files or two folders paired by file name, each pair read and measured in batches.

A row per input is a dict ``{"a", "b", "size", "lpips", "error"}``: the two paths (None for a side without a file), the
compared size as ``WxH``, the distance, or why the pair was not measured. Images are read as RGB in [0, 1] and compared
at their own size (``match_size``: B resized to A's size, bilinear and antialiased); pairs of the same size run
together. torchvision (for reading) and tqdm are imported when the files are read.
"""

from __future__ import annotations

import contextlib
import math
import sys
from collections.abc import Sequence
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from ..core.vgg import device_of
from ..errors import ImageError, VggnetsError

__all__ = ["AUTOCAST_DTYPES", "measure_pairs", "pair_inputs", "summarize"]

#: The precisions :func:`measure_pairs` runs the network in: None is float32 without autocast.
AUTOCAST_DTYPES = {"fp32": None, "bf16": torch.bfloat16, "fp16": torch.float16}


def pair_inputs(a: Path, b: Path, *, recursive: bool) -> tuple[list[tuple[Path, Path]], list[dict]]:
    """(pairs in A's order, a row for every input that cannot be paired).

    Two files are one pair; in two folders a file of A is paired with the file of B that has the same path without
    its extension (subfolders too with ``recursive``). Raises VggnetsError when a side is missing, or one is a file
    and the other a folder.
    """
    from ..io.images import collect_images

    for side, path in (("A", a), ("B", b)):
        if not path.exists():
            raise VggnetsError(
                f"{side} ({path}) does not exist; give two image files or two folders of images."
            )
    if a.is_file() and b.is_file():
        return [(a, b)], []
    if a.is_dir() != b.is_dir():
        folder, file = (a, b) if a.is_dir() else (b, a)
        raise VggnetsError(
            f"{folder} is a folder but {file} is a file; give two image files, or two folders whose images are "
            "paired by file name."
        )
    sides = []
    problems: list[dict] = []
    for root in (a, b):
        files, missing = collect_images([str(root)], recursive=recursive)
        problems += [_row(str(p), None, msg) for p, msg in missing]
        keyed: dict[str, list[Path]] = {}
        for f in files:
            keyed.setdefault(f.relative_to(root).with_suffix("").as_posix(), []).append(f)
        sides.append(keyed)
    first, second = sides
    pairs = []
    for key, found in first.items():
        partners = second.get(key, [])
        if len(found) > 1 or len(partners) > 1:
            names = ", ".join(str(p) for p in found + partners)
            problems.append(
                _row(
                    str(found[0]),
                    None,
                    f"{names}: more than one image is named {key!r}; rename one so the pairs are unambiguous",
                )
            )
        elif not partners:
            problems.append(_row(str(found[0]), None, f"{found[0]} has no partner named {key}.* in {b}"))
        else:
            pairs.append((found[0], partners[0]))
    for key, partners in second.items():
        if key not in first:
            problems.append(
                _row(None, str(partners[0]), f"{partners[0]} has no partner named {key}.* in {a}")
            )
    return pairs, problems


def measure_pairs(
    metric: nn.Module,
    pairs: Sequence[tuple[Path, Path]],
    *,
    batch_size: int = 8,
    match_size: bool = False,
    precision: str = "fp32",
    device: torch.device | str | None = None,
    progress: bool = False,
) -> list[dict]:
    """One row per pair, in order; pairs of the same size run together in batches of ``batch_size``.

    ``metric``: an :class:`vggnets.features.lpips.LPIPS` (any module called as ``metric(a, b, normalize=True)``).
    ``precision``: a key of :data:`AUTOCAST_DTYPES` (bf16 and fp16 run under ``torch.autocast``). ``device``: where
    the images go (default: the metric's). A pair that cannot be read, whose sizes differ without ``match_size``, or
    smaller than 16x16 gets its error and the others are still measured.
    """
    from tqdm import tqdm

    if precision not in AUTOCAST_DTYPES:
        raise ValueError(f"unknown precision {precision!r}; choose one of: {', '.join(AUTOCAST_DTYPES)}")
    device = device_of(metric) if device is None else torch.device(device)
    dtype = AUTOCAST_DTYPES[precision]
    autocast = torch.autocast(device.type, dtype=dtype) if dtype is not None else contextlib.nullcontext()
    rows: list[dict] = []
    batch: list[tuple[dict, Tensor, Tensor]] = []
    with tqdm(total=len(pairs), desc="lpips", unit="pair", file=sys.stderr, disable=not progress) as bar:

        def flush() -> None:
            if batch:
                a = torch.stack([x for _, x, _ in batch]).to(device)
                b = torch.stack([y for _, _, y in batch]).to(device)
                with torch.inference_mode(), autocast:
                    values = metric(a, b, normalize=True).flatten().float().cpu().tolist()
                for (row, _, _), value in zip(batch, values):
                    row["lpips"] = value
                bar.update(len(batch))
                batch.clear()

        for pa, pb in pairs:
            row = _row(str(pa), str(pb), None)
            rows.append(row)
            images = _read_pair(row, pa, pb, match_size=match_size)
            if images is None:
                bar.update(1)
                continue
            if batch and batch[0][1].shape != images[0].shape:
                flush()
            batch.append((row, *images))
            if len(batch) == batch_size:
                flush()
        flush()
    return rows


def summarize(rows: Sequence[dict]) -> dict:
    """Count, mean and standard deviation (population formula) of the distances measured, and how many rows failed."""
    values = [r["lpips"] for r in rows if r["lpips"] is not None]
    mean = sum(values) / len(values) if values else None
    std = math.sqrt(sum((v - mean) ** 2 for v in values) / len(values)) if values else None
    return {"count": len(values), "mean": mean, "std": std, "failed": len(rows) - len(values)}


def _read_pair(row: dict, pa: Path, pb: Path, *, match_size: bool) -> tuple[Tensor, Tensor] | None:
    """The two images in [0, 1] at A's size, with ``row["size"]`` set; None with ``row["error"]`` set when the pair
    cannot be measured."""
    from ..io.images import read_image

    try:
        x = read_image(pa).float() / 255
        y = read_image(pb).float() / 255
    except ImageError as exc:
        row["error"] = str(exc)
        return None
    if x.shape != y.shape:
        if not match_size:
            row["error"] = (
                f"{pa} is {x.shape[2]}x{x.shape[1]} but {pb} is {y.shape[2]}x{y.shape[1]} pixels; LPIPS "
                "compares images of the same size (pass --match-size to resize B to A's size)"
            )
            return None
        y = F.interpolate(y[None], size=x.shape[1:], mode="bilinear", antialias=True, align_corners=False)[0]
        y = y.clamp(0, 1)
    row["size"] = f"{x.shape[2]}x{x.shape[1]}"
    if min(x.shape[1:]) < 16:
        row["error"] = f"{pa} is {row['size']} pixels; LPIPS needs at least 16x16"
        return None
    return x, y


def _row(a: str | None, b: str | None, error: str | None) -> dict:
    return {"a": a, "b": b, "size": None, "lpips": None, "error": error}

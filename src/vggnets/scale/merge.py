"""One feature file from the parts of every unit, written on disk without the matrix passing through memory.

``.npy``: the header, then each part's memory-mapped rows appended in unit order, one unit mapped at a time (the file
is the one ``np.save`` writes); its ``.csv`` sidecar (``index,file,label``) is streamed first.
``.parquet``: one row group per unit, through one ``ParquetWriter`` (columns ``file``, ``label``, ``features``
list<float>; the settings in the schema's ``vggnets`` metadata). ``.pt``: one tensor, memory-mapped from a merged
``.npy`` in the parts folder while ``torch.save`` writes it (its pages are read once, from the file). Every file goes through the one atomic writer.
"""

from __future__ import annotations

import csv
import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from ..io.output import atomic_write
from .records import FeaturePart

__all__ = ["feature_rows", "sidecars", "write_merged_features"]


def sidecars(output: Path) -> list[Path]:
    """The files written beside ``output``: the .csv of file names and labels for a .npy."""
    return [output.with_suffix(".csv")] if output.suffix == ".npy" else []


def feature_rows(parts: Sequence[FeaturePart]) -> tuple[int, int]:
    """(rows, dimension) of the merged matrix: the readable images of every part."""
    rows = sum(part.shape[0] for part in parts)
    dims = {part.shape[1] for part in parts if part.shape[0]}
    if len(dims) > 1:
        raise ValueError(f"the parts have descriptors of different sizes {sorted(dims)}")
    return rows, (dims.pop() if dims else 0)


def write_merged_features(
    output: Path,
    parts: Sequence[FeaturePart],
    meta: dict[str, Any],
    *,
    scratch: Path,
    overwrite: bool = False,
) -> tuple[int, int]:
    """Write the readable rows of ``parts`` (in order) to ``output`` (.npy with its .csv, .pt or .parquet) and return
    the matrix's shape; ``scratch`` is a folder for the .pt's merged array. A .npy's sidecar is removed again if the
    array cannot be written."""
    shape = feature_rows(parts)
    if output.suffix == ".parquet":
        atomic_write(output, lambda tmp: _write_parquet(tmp, parts, shape[1], meta), overwrite=overwrite)
    elif output.suffix == ".pt":
        merged = scratch / "merged.npy"
        _concatenate(merged, parts, shape)
        atomic_write(output, lambda tmp: _write_pt(tmp, merged, parts, meta), overwrite=overwrite)
        merged.unlink()
    else:
        for sidecar in sidecars(output):
            atomic_write(sidecar, lambda tmp: _write_csv(tmp, parts), overwrite=overwrite)
        try:
            atomic_write(output, lambda tmp: _concatenate(tmp, parts, shape), overwrite=overwrite)
        except BaseException:
            for sidecar in sidecars(output):
                sidecar.unlink(missing_ok=True)
            raise
    return shape


def _good(part: FeaturePart) -> list[tuple[str, str]]:
    return [(file, label) for file, label, error in part.rows if error is None]


def _concatenate(path: Path, parts: Sequence[FeaturePart], shape: tuple[int, int]) -> None:
    """The parts' rows in order, as one float32 .npy (the bytes ``np.save`` writes): the header, then each part's
    memory-mapped rows appended in turn, so that at most one unit's rows are mapped at a time."""
    header = {"descr": np.dtype(np.float32).str, "fortran_order": False, "shape": shape}
    with open(path, "wb") as f:
        np.lib.format.write_array_header_1_0(f, header)
        for part in parts:
            if part.shape[0]:
                rows = part.load()
                f.write(memoryview(np.ascontiguousarray(rows, dtype=np.float32)).cast("B"))
                del rows


def _write_csv(path: Path, parts: Sequence[FeaturePart]) -> None:
    """The .npy sidecar: index,file,label, one row per descriptor."""
    with open(path, "w", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(["index", "file", "label"])
        index = 0
        for part in parts:
            for file, label in _good(part):
                writer.writerow([index, file, label])
                index += 1


def _write_pt(path: Path, merged: Path, parts: Sequence[FeaturePart], meta: dict[str, Any]) -> None:
    """A dict with features (one tensor), files, labels and the settings."""
    import torch

    good = [row for part in parts for row in _good(part)]
    features = torch.from_numpy(np.load(merged, mmap_mode="c"))  # copy-on-write: writable, nothing copied
    torch.save(
        {"features": features, "files": [f for f, _ in good], "labels": [lab for _, lab in good], **meta},
        path,
    )


def _write_parquet(path: Path, parts: Sequence[FeaturePart], dimension: int, meta: dict[str, Any]) -> None:
    """A table (file, label, features) written one row group per unit."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    schema = pa.schema(
        [("file", pa.string()), ("label", pa.string()), ("features", pa.list_(pa.float32()))],
        metadata={"vggnets": json.dumps(meta)},
    )
    with pq.ParquetWriter(path, schema) as writer:
        for part in parts:
            if not part.shape[0]:
                continue
            good = _good(part)
            values = np.ascontiguousarray(part.load()).reshape(-1)
            offsets = np.arange(0, values.size + 1, dimension, dtype=np.int32)
            features = pa.ListArray.from_arrays(pa.array(offsets), pa.array(values, pa.float32()))
            table = pa.table(
                {"file": [f for f, _ in good], "label": [lab for _, lab in good], "features": features},
                schema=schema,
            )
            writer.write_table(table)

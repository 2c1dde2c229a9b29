"""Ray Data batches in and out: the image column and its paths read, typed Arrow result columns written.

A batch comes in any of Ray Data's batch formats (a dict of numpy arrays, the default; a pandas DataFrame; a pyarrow
Table). Every column but the image column is passed through unchanged (``path``, ids, ground truth ...), and the
results are appended with fixed Arrow types, so that every block of a dataset has the same schema and parquet files
written by Ray concatenate: ``labels`` list<string>, ``indices`` list<int64>, ``probabilities`` list<float>,
``features`` list<float> (as in ``vggnets features --output x.parquet``) and ``error`` string. A row whose image could
not be read has its message in ``error`` and nulls in the result columns; the other rows have a null ``error``.
"""

from __future__ import annotations

import importlib
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch

from ..errors import MissingDependencyError, VggnetsError
from ..inference.classify import Prediction
from .images import is_encoded

__all__ = [
    "IMAGE_COLUMNS",
    "Batch",
    "classification_columns",
    "embedding_columns",
    "read_batch",
    "require",
    "with_results",
]

#: The image columns looked for when none is named: Ray Data's ``read_binary_files`` and ``read_images`` columns.
IMAGE_COLUMNS = ("bytes", "image")


def require(module: str) -> Any:
    """Import an optional dependency of the Ray adapter, or say which extra installs it."""
    try:
        return importlib.import_module(module)
    except ImportError as exc:
        raise MissingDependencyError(
            f"the Ray Data adapter needs {module.split('.')[0]}, which is not installed: "
            "pip install 'vggnets[ray]'."
        ) from exc


@dataclass
class Batch:
    """The image column's values, a name per row (its path, or a placeholder) and the other columns (Arrow)."""

    values: list[Any]
    names: list[str]
    rest: Any  # pyarrow.Table of the passed-through columns, with the batch's number of rows

    def __len__(self) -> int:
        return len(self.values)

    def chunks(self, size: int) -> Iterator[tuple[list[Any], list[str]]]:
        """(values, names) ``size`` rows at a time, so that only one chunk's images are decoded at once."""
        for start in range(0, len(self.values), size):
            yield self.values[start : start + size], self.names[start : start + size]


def read_batch(batch: Any, column: str | None = None, path_column: str | None = "path") -> Batch:
    """The image column (``column``, or the first of :data:`IMAGE_COLUMNS` present) of a batch in any Ray Data
    format, names from ``path_column`` when the batch has it, and every other column as an Arrow table."""
    pa = require("pyarrow")
    columns = _column_names(batch)
    name = column or next((c for c in IMAGE_COLUMNS if c in columns), None)
    if name is None or name not in columns:
        wanted = repr(column) if column else " or ".join(repr(c) for c in IMAGE_COLUMNS)
        raise VggnetsError(
            f"the batch has no image column {wanted} (columns: {', '.join(map(str, columns)) or 'none'}); read "
            "the images with ray.data.read_binary_files (column 'bytes') or ray.data.read_images (column 'image'), "
            "or pass column=NAME."
        )
    values = _values(batch, name)
    if path_column and path_column in columns:
        names = [str(p) for p in _values(batch, path_column)]
    else:
        names = ["<bytes>" if is_encoded(v) else "<image>" for v in values]
    kept = [c for c in columns if c != name]
    if isinstance(batch, pa.Table):
        rest = batch.select(kept)
    elif _is_pandas(batch):
        rest = pa.Table.from_pandas(batch[kept], preserve_index=False)
    else:
        rest = pa.table({c: _arrow(batch[c]) for c in kept}) if kept else pa.table({})
    return Batch(values, names, rest)


def with_results(batch: Batch, results: dict[str, Any]) -> Any:
    """The passed-through columns followed by ``results`` (Arrow arrays), as one pyarrow Table."""
    pa = require("pyarrow")
    clash = sorted(set(results) & set(batch.rest.column_names))
    if clash:
        raise VggnetsError(
            f"the batch already has column(s) {', '.join(clash)}, which the results would replace; rename them "
            "first (e.g. ds.rename_columns({...}))."
        )
    if not batch.rest.column_names:
        return pa.table(results)
    table = batch.rest
    for name, array in results.items():
        table = table.append_column(name, array)
    return table


def classification_columns(predictions: Sequence[Prediction]) -> dict[str, Any]:
    """``labels``, ``indices``, ``probabilities`` (nulls on error rows) and ``error``."""
    pa = require("pyarrow")

    def ranked(attribute: str) -> list[Any]:
        return [None if p.error else getattr(p, attribute) for p in predictions]

    return {
        "labels": pa.array(ranked("labels"), pa.list_(pa.string())),
        "indices": pa.array(ranked("indices"), pa.list_(pa.int64())),
        "probabilities": pa.array(ranked("probabilities"), pa.list_(pa.float32())),
        "error": pa.array([p.error for p in predictions], pa.string()),
    }


def embedding_columns(vectors: Sequence[torch.Tensor | None], errors: Sequence[str | None]) -> dict[str, Any]:
    """``features`` (list<float>, null on error rows) and ``error``."""
    pa = require("pyarrow")
    features = [None if v is None else v.numpy().astype(np.float32, copy=False) for v in vectors]
    return {
        "features": pa.array(features, pa.list_(pa.float32())),
        "error": pa.array(list(errors), pa.string()),
    }


def _column_names(batch: Any) -> list[str]:
    if hasattr(batch, "column_names"):  # pyarrow.Table
        return list(batch.column_names)
    if _is_pandas(batch):
        return [str(c) for c in batch.columns]
    if isinstance(batch, dict) or hasattr(batch, "keys"):
        return list(batch.keys())
    raise VggnetsError(
        f"a batch must be a dict of arrays, a pandas DataFrame or a pyarrow Table, got {type(batch).__name__}."
    )


def _values(batch: Any, name: str) -> list[Any]:
    """A column as a list of per-row values (numpy arrays for tensor columns, bytes for binary ones)."""
    if hasattr(batch, "column_names"):
        column = batch.column(name)
        if column.num_chunks and hasattr(column.chunk(0), "to_numpy") and _is_tensor_type(column.type):
            return [
                row for chunk in column.chunks for row in chunk.to_numpy()
            ]  # Ray's tensor extension arrays
        return column.to_pylist()
    if _is_pandas(batch):
        return list(batch[name].to_numpy())
    return list(batch[name])


def _arrow(values: Any) -> Any:
    """A passed-through numpy column as an Arrow array; tensors (N-D or ragged) as Ray's tensor extension arrays."""
    pa = require("pyarrow")
    if isinstance(values, np.ndarray) and values.ndim > 1:
        return require("ray.data.extensions").ArrowTensorArray.from_numpy(values)
    try:
        return pa.array(list(values) if isinstance(values, np.ndarray) and values.dtype == object else values)
    except (pa.ArrowInvalid, pa.ArrowTypeError):
        return require("ray.data.extensions").ArrowTensorArray.from_numpy(values)


def _is_tensor_type(arrow_type: Any) -> bool:
    return "tensor" in type(arrow_type).__name__.lower()


def _is_pandas(batch: Any) -> bool:
    return type(batch).__module__.split(".")[0] == "pandas"

"""What a unit's part files hold, and how they are read back: predictions, descriptors, evaluation counts.

- predictions (``vggnets classify``): one JSON line per input, :meth:`Prediction.to_dict`'s layout; floats are written
  with Python's shortest round-tripping repr, so the merged output is the one a single process writes, byte for byte;
- descriptors (``vggnets features``): ``.npy`` with the float32 rows of the readable images, then ``.json`` (the
  commit marker) with every input's file, label and error and the array's shape; read back lazily, so the merge can
  memory-map the arrays instead of loading them;
- evaluation counts (``vggnets evaluate``): ``.pt`` (tensors, numbers and strings only, read with
  ``weights_only=True``) with each row's metric counts, compute seconds and the unit's unreadable images.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from ..features.embeddings import Embedding
from ..inference.classify import Prediction
from .jobs import Codec
from .parts import Parts
from .shards import Unit

__all__ = [
    "EMBEDDINGS",
    "EVALUATION",
    "PREDICTIONS",
    "FeaturePart",
    "prediction_from_dict",
]


def prediction_from_dict(record: dict[str, Any]) -> Prediction:
    """The :class:`Prediction` of a :meth:`Prediction.to_dict` record."""
    ranked = record.get("predictions") or []
    return Prediction(
        record["file"],
        [r["index"] for r in ranked],
        [r["label"] for r in ranked],
        [r["probability"] for r in ranked],
        record.get("error"),
    )


def _write_predictions(parts: Parts, unit: Unit, predictions: Sequence[Prediction]) -> None:
    text = "".join(json.dumps(p.to_dict()) + "\n" for p in predictions)
    parts.commit(unit, [(".jsonl", lambda tmp: tmp.write_text(text, encoding="utf-8"))])


def _read_predictions(parts: Parts, unit: Unit) -> list[Prediction]:
    lines = parts.path(unit, ".jsonl").read_text(encoding="utf-8").splitlines()
    return [prediction_from_dict(json.loads(line)) for line in lines if line]


PREDICTIONS = Codec(_write_predictions, _read_predictions)


@dataclass
class FeaturePart:
    """A unit's descriptors on disk: every input's (file, label, error) and the ``.npy`` of the readable ones' rows."""

    rows: list[tuple[str, str, str | None]]
    array: Path
    shape: tuple[int, int]

    def load(self, mmap: bool = True) -> np.ndarray:
        """The (n, D) float32 rows, memory-mapped by default."""
        return np.load(self.array, mmap_mode="r" if mmap else None)

    def embeddings(self) -> list[Embedding]:
        """The unit as :class:`Embedding` rows (features loaded)."""
        matrix = iter(torch.from_numpy(np.array(self.load(mmap=False))))
        return [Embedding(f, label, None if err else next(matrix), err) for f, label, err in self.rows]


def _write_embeddings(parts: Parts, unit: Unit, rows: Sequence[Embedding]) -> None:
    vectors = [row.features for row in rows if row.error is None]
    matrix = (
        torch.stack(vectors).numpy().astype(np.float32, copy=False)
        if vectors
        else np.zeros((0, 0), np.float32)
    )
    index = {"rows": [[r.file, r.label, r.error] for r in rows], "shape": list(matrix.shape)}

    def save(tmp: Path) -> None:
        with open(tmp, "wb") as f:
            np.save(f, matrix)

    parts.commit(
        unit, [(".npy", save), (".json", lambda tmp: tmp.write_text(json.dumps(index), encoding="utf-8"))]
    )


def _read_embeddings(parts: Parts, unit: Unit) -> FeaturePart:
    index = json.loads(parts.path(unit, ".json").read_text(encoding="utf-8"))
    rows = [(f, label, err) for f, label, err in index["rows"]]
    return FeaturePart(rows, parts.path(unit, ".npy"), tuple(index["shape"]))


EMBEDDINGS = Codec(_write_embeddings, _read_embeddings)


def _write_evaluation(parts: Parts, unit: Unit, state: dict[str, Any]) -> None:
    parts.commit(unit, [(".pt", lambda tmp: torch.save(state, tmp))])


def _read_evaluation(parts: Parts, unit: Unit) -> dict[str, Any]:
    return torch.load(parts.path(unit, ".pt"), weights_only=True)


EVALUATION = Codec(_write_evaluation, _read_evaluation)

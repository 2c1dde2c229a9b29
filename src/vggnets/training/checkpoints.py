"""Checkpoint files of a training run: atomic save, safe load, state_dict comparison and the RNG states."""

from __future__ import annotations

import random
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np
import torch

from ..errors import CheckpointError
from ..io.output import atomic_write
from ..version import __version__


def save_checkpoint(path: str | Path, state: Any) -> Path:
    """``torch.save`` to a temporary file in the same folder, then rename over ``path``: readers see the old file or
    the complete new one, never a partial file. The temporary file is removed if saving fails.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)

    def write(tmp: Path) -> None:
        with open(tmp, "wb") as f:
            torch.save(state, f)

    return atomic_write(path, write, overwrite=True)


def model_record(
    model: torch.nn.Module, recipe: Any, extra: Mapping[str, Any] | None = None
) -> dict[str, Any]:
    """What a trained model's checkpoint records about itself (see :mod:`vggnets.io.record`): its architecture, width,
    classes and the preprocessing it was trained with, so that it classifies without being told any of it."""
    extra = extra or {}
    convs = [m for m in model.modules() if isinstance(m, torch.nn.Conv2d)]
    classes = extra.get("classes")
    return {
        "architecture": extra.get("model") or getattr(model, "name", None),
        "width": convs[0].out_channels / 64 if convs else 1.0,
        "num_classes": getattr(model, "num_classes", None),
        "classes": list(classes) if classes else None,
        "preprocessing": {
            "resize": recipe.resize,
            "crop": recipe.crop,
            "mean": list(recipe.mean),
            "std": list(recipe.std),
        },
        "produced_by": f"vggnets {__version__} train",
    }


def load_checkpoint(path: str | Path, map_location: Any = "cpu") -> dict[str, Any]:
    """Read a checkpoint written by :func:`save_checkpoint` (tensors and plain Python data only: weights_only)."""
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"no checkpoint at {path}")
    try:
        return torch.load(path, map_location=map_location, weights_only=True)
    except Exception as exc:  # noqa: BLE001 - any unreadable file is reported the same way
        raise CheckpointError(f"cannot read checkpoint {path}: {exc}") from exc


def state_dict_mismatch(own: Mapping[str, torch.Tensor], other: Mapping[str, torch.Tensor]) -> str:
    """A one-line description of how two state_dicts differ in keys and shapes ("" when they fit)."""
    problems = [f"missing {k}" for k in own if k not in other]
    problems += [f"unexpected {k}" for k in other if k not in own]
    problems += [
        f"{k} {tuple(other[k].shape)} in the checkpoint, {tuple(v.shape)} here"
        for k, v in own.items()
        if k in other and other[k].shape != v.shape
    ]
    more = f" and {len(problems) - 3} more" if len(problems) > 3 else ""
    return "; ".join(problems[:3]) + more


def rng_state() -> dict[str, Any]:
    """RNG states of torch (CPU and CUDA), numpy and Python's random, as tensors and plain data (weights_only safe)."""
    kind, keys, pos, has_gauss, cached = np.random.get_state()
    version, internal, gauss = random.getstate()
    return {
        "torch": torch.get_rng_state(),
        "cuda": torch.cuda.get_rng_state_all() if torch.cuda.is_available() else [],
        "numpy": [kind, torch.from_numpy(keys.astype(np.int64)), pos, has_gauss, cached],
        "python": [version, list(internal), gauss],
    }


def set_rng_state(state: Mapping[str, Any]) -> None:
    """Restore what :func:`rng_state` returned."""
    torch.set_rng_state(state["torch"])
    if state.get("cuda") and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])
    kind, keys, pos, has_gauss, cached = state["numpy"]
    np.random.set_state((kind, keys.numpy().astype(np.uint32), pos, has_gauss, cached))
    version, internal, gauss = state["python"]
    random.setstate((version, tuple(internal), gauss))

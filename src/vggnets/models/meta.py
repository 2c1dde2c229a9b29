"""What weights expect and name: preprocessing, class names and architecture of published weights and records.

Published weights carry them in their enum's metadata; checkpoint files written by ``vggnets train`` in their
record (:mod:`vggnets.io.record`).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from ..core.transforms import ImageClassification
from ..io.record import read_record
from .weights import IMAGENET_CATEGORIES, WeightsEnum


def file_record(weights: Any) -> dict[str, Any]:
    """The record of a checkpoint file (empty for published weights, None, or a file without one)."""
    return (
        (read_record(weights) or {}) if isinstance(weights, (str, Path)) and Path(weights).is_file() else {}
    )


def weights_architecture(weights: Any) -> str | None:
    """The model a checkpoint file was trained as (``vgg11_bn`` ...), from its record; None when it does not say."""
    if isinstance(weights, WeightsEnum):
        return weights.model_name
    architecture = file_record(weights).get("architecture")
    return architecture if isinstance(architecture, str) else None


def default_model(model: str | None, weights: Any) -> str:
    """``model``, or when None (a command line's ``--model`` left out): the architecture a checkpoint file given as
    ``weights`` records, else vgg16."""
    if model is not None:
        return model
    path = Path(str(weights)).expanduser() if weights is not None else None
    return (weights_architecture(path) if path is not None and path.is_file() else None) or "vgg16"


def weights_preprocessing(weights: Any) -> ImageClassification:
    """The preprocessing to classify with: the published preset, the one a vggnets run was trained with (from the
    file's record), else ImageNet's 256/224 with ImageNet's mean and std."""
    if isinstance(weights, WeightsEnum):
        return weights.transforms()
    spec = file_record(weights).get("preprocessing") or {}
    try:
        return ImageClassification(
            crop_size=int(spec["crop"]),
            resize_size=int(spec["resize"]),
            mean=[float(m) for m in spec["mean"]],
            std=[float(s) for s in spec["std"]],
        )
    except (KeyError, TypeError, ValueError):
        return ImageClassification(crop_size=224)


def weights_categories(weights: Any, num_classes: int) -> list[str] | None:
    """Class names for a model's outputs: the published categories, the classes a run was trained on (the file's
    record, or the ``classes.txt`` a run wrote beside it), ImageNet's for 1000 outputs, else None."""
    if isinstance(weights, WeightsEnum):
        return weights.meta.get("categories")
    classes = file_record(weights).get("classes")
    if not classes and isinstance(weights, (str, Path)):
        beside = Path(weights).with_name("classes.txt")
        if beside.is_file():
            classes = [line for line in beside.read_text(encoding="utf-8").splitlines() if line]
    if classes and len(classes) == num_classes:
        return [str(c) for c in classes]
    return list(IMAGENET_CATEGORIES) if num_classes == len(IMAGENET_CATEGORIES) else None

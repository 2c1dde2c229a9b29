"""The model a worker builds once, then runs on decoded images: top-k classes, or descriptors from a named layer.

:func:`classifier_runner` builds what ``vggnets classify`` builds (the eager model with its weights' float
preprocessing, or the fast engine when ``precision`` or ``compile`` is given) and :func:`embedder_runner` what
``vggnets features`` builds (the eager model, the layer checked, the weights' normalisation), so that the same images
give the same labels, probabilities and descriptors. Images arrive decoded (uint8 (3, H, W), see :mod:`.images`);
an image that could not be decoded or preprocessed keeps its message and gets no result.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from ..errors import ImageError, VggnetsError
from ..inference.classify import Prediction, class_names

__all__ = ["ClassifyRunner", "EmbedRunner", "classifier_runner", "embedder_runner", "model_name"]

_COMPILE = {None: True, "auto": True, "none": False}


@dataclass
class ClassifyRunner:
    """Top-k classification of decoded images. ``model`` is an eager module taking ``transform``'s float crops, or an
    engine Predictor taking its uint8 crops; ``engine`` says what the predictor runs as (None for the eager model)."""

    model: Callable[[torch.Tensor], torch.Tensor]
    transform: Callable[[torch.Tensor], torch.Tensor]
    labels: list[str]
    topk: int = 5
    batch_size: int = 16
    device: torch.device = field(default_factory=lambda: torch.device("cpu"))
    max_pixels: int | None = None  # None: the default limit (io.images.DEFAULT_MAX_PIXELS)
    engine: dict | None = None

    @torch.inference_mode()
    def __call__(
        self, images: Sequence[torch.Tensor | None], errors: Sequence[str | None], names: Sequence[str]
    ) -> list[Prediction]:
        """One :class:`~vggnets.inference.classify.Prediction` per image (``file`` = its name), in order; an image
        given as None keeps its error."""
        from ..io.images import check_resized_size

        rows = [Prediction(name, error=err) for name, err in zip(names, errors, strict=True)]
        resize = getattr(self.transform, "resize_size", None)
        ready: list[tuple[int, torch.Tensor]] = []
        for i, image in enumerate(images):
            if image is None:
                continue
            try:
                if resize:  # the check classify_files makes: refuse extreme aspect ratios before upsampling
                    check_resized_size(image, resize[0], self.max_pixels)
                ready.append((i, self.transform(image)))
            except ImageError as exc:  # the message classify_files gives (it names the size, not the file)
                rows[i].error = str(exc)
        k = min(self.topk, len(self.labels))
        for start in range(0, len(ready), self.batch_size):
            chunk = ready[start : start + self.batch_size]
            x = torch.stack([t for _, t in chunk]).to(self.device)
            top_p, top_i = self.model(x).float().softmax(dim=1).topk(k, dim=1)
            for (i, _), p_row, i_row in zip(chunk, top_p.tolist(), top_i.tolist(), strict=True):
                rows[i].indices, rows[i].probabilities = i_row, p_row
                rows[i].labels = [self.labels[j] for j in i_row]
        return rows


@dataclass
class EmbedRunner:
    """Descriptors of decoded images: :func:`vggnets.features.embeddings.embed` with ``settings`` (layer, mean, std,
    scales, flip, l2norm)."""

    model: torch.nn.Module
    settings: dict[str, Any]
    batch_size: int = 16

    @property
    def layer(self) -> str:
        return self.settings["layer"]

    def __call__(self, images: Sequence[torch.Tensor | None]) -> list[torch.Tensor | None]:
        """One float32 (D,) descriptor per image, None where the image is None."""
        from ..features.embeddings import embed

        good = [image for image in images if image is not None]
        vectors = iter(embed(self.model, good, batch_size=self.batch_size, **self.settings) if good else ())
        return [None if image is None else next(vectors) for image in images]


def model_name(model: str | None, weights: Any) -> str:
    """``model``, or the architecture the checkpoint ``weights`` records, else vgg16 (see
    :func:`vggnets.models.meta.default_model`)."""
    from ..models.meta import default_model

    return default_model(model, weights)


def classifier_runner(
    model: str | None = None,
    weights: Any = "DEFAULT",
    *,
    device: str | torch.device = "cpu",
    topk: int = 5,
    batch_size: int = 16,
    precision: str | None = None,
    compile: bool | str | None = None,
    calibration: str | Path | None = None,
    max_pixels: int | None = None,
) -> ClassifyRunner:
    """What ``vggnets classify --model MODEL --weights WEIGHTS`` runs: weights with a trained classifier, their
    preprocessing and class names (a published preset; what a ``vggnets train`` checkpoint records, or its
    ``classes.txt``; else ImageNet's, with ``class <i>`` names unless it has 1000 outputs); the fast engine
    (:func:`vggnets.inference.engine.optimize`) only when ``precision`` or ``compile`` is given, as with the
    command's ``--precision``/``--compile`` (``compile``: "auto", "aot", "jit", "none", True or False). ``model``
    None: see :func:`model_name`."""
    from ..models.builders import build
    from ..models.meta import weights_categories, weights_preprocessing
    from ..models.weights import WeightsEnum, resolve_weights

    _check_at_least(topk, "topk")
    _check_at_least(batch_size, "batch_size")
    device = torch.device(device)
    model = model_name(model, weights)
    resolved = resolve_weights(model, weights)
    if isinstance(resolved, WeightsEnum) and resolved.meta.get("categories") is None:
        raise VggnetsError(
            f"{resolved} has no trained classifier (only its convolutional features are valid), so it cannot "
            "classify images; use DEFAULT or IMAGENET1K_V1, or the Embedder for descriptors."
        )
    net = build(model, weights=resolved, progress=False).to(device).eval()
    transform = weights_preprocessing(resolved)  # the preset, a `vggnets train` record's, or ImageNet's
    labels = class_names(weights_categories(resolved, net.num_classes), net.num_classes)
    runner = ClassifyRunner(net, transform, labels, topk=topk, batch_size=batch_size, device=device,
                            max_pixels=max_pixels)  # fmt: skip
    if precision is not None or compile is not None:
        _use_engine(runner, precision or "fp32", _COMPILE.get(compile, compile), calibration)
    return runner


def _use_engine(runner: ClassifyRunner, precision: str, compile: bool | str, calibration: Any) -> None:
    """Swap the eager model for an engine Predictor built as the command line builds it."""
    from ..inference.engine import optimize

    t = runner.transform
    predictor = optimize(
        runner.model, precision, device=runner.device, compile=compile, batch_size=runner.batch_size,
        image_size=t.crop_size[0], resize_size=t.resize_size[0], mean=t.mean, std=t.std, calibration=calibration,
    )  # fmt: skip
    info = predictor.info
    runner.model, runner.transform = predictor, predictor.preprocess
    runner.engine = {"precision": info.precision, "compile": info.compile, "device": info.device}


def embedder_runner(
    model: str | None = None,
    weights: Any = "DEFAULT",
    *,
    device: str | torch.device = "cpu",
    layer: str = "relu7",
    multiscale: bool = False,
    scales: Sequence[int] | None = None,
    flip: bool = False,
    l2norm: bool = False,
    batch_size: int = 16,
) -> EmbedRunner:
    """What ``vggnets features --model MODEL --weights WEIGHTS --layer LAYER [--multiscale [--scales ...]] [--flip]
    [--l2norm]`` runs; ``scales`` (each at least 224) default to the paper's 256, 384, 512 with ``multiscale``."""
    from ..features.embeddings import APPENDIX_B_SCALES, normalization
    from ..features.extractor import layer_names
    from ..models.builders import build
    from ..models.weights import resolve_weights

    _check_at_least(batch_size, "batch_size")
    if scales is not None and not multiscale:
        raise VggnetsError("scales are the scales of multiscale=True; pass multiscale=True with them.")
    if multiscale:
        scales = tuple(APPENDIX_B_SCALES if scales is None else (int(s) for s in scales))
        if not scales or min(scales) < 224:
            raise VggnetsError(
                f"every scale must be at least 224 pixels (the crop size), got {list(scales)}."
            )
    model = model_name(model, weights)
    resolved = resolve_weights(model, weights)
    net = build(model, weights=resolved, progress=False).to(torch.device(device)).eval()
    names = layer_names(net)
    if layer not in names:
        raise VggnetsError(f"{model} has no layer {layer!r}; choose from {', '.join(names)}.")
    mean, std = normalization(resolved)
    settings = {"layer": layer, "mean": mean, "std": std, "scales": scales, "flip": flip, "l2norm": l2norm}
    return EmbedRunner(net, settings, batch_size)


def _check_at_least(value: int, name: str, minimum: int = 1) -> None:
    if not isinstance(value, int) or value < minimum:
        raise VggnetsError(f"{name} must be an integer of at least {minimum}, got {value!r}.")

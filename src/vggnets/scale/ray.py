"""Callable classes for ``ray.data.Dataset.map_batches``: top-k classes (Classifier) or descriptors (Embedder).

Each actor builds its model once, in ``__init__`` (on the GPU Ray gave it, else the CPU), then classifies or embeds
every batch it is handed: image bytes from ``ray.data.read_binary_files`` (column ``bytes``; ``path`` too with
``include_paths=True``), decoded exactly as ``vggnets classify``/``vggnets features`` decode files, or decoded uint8
HWC arrays from ``ray.data.read_images`` (column ``image``). The result is a pyarrow Table: the batch's other columns
unchanged, then typed result columns (see :mod:`.columns`). An image that cannot be read gives a row with ``error``
set, never a failed actor. Ray itself is imported only to find the actor's GPU (``device="auto"``).

Example::

    import ray
    from vggnets.ray import Classifier

    ds = ray.data.read_binary_files("photos/", include_paths=True)
    ds = ds.map_batches(Classifier, fn_constructor_kwargs={"model": "vgg16", "topk": 5}, concurrency=2,
                        batch_size=64)
    ds.write_parquet("labels/")
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import torch

from .columns import classification_columns, embedding_columns, read_batch, require, with_results
from .images import decode_values
from .runners import classifier_runner, embedder_runner

__all__ = ["Classifier", "Embedder", "actor_device"]


def actor_device(device: str | torch.device = "auto") -> torch.device:
    """``"auto"``: ``cuda`` when Ray gave this actor a GPU (``ray.get_gpu_ids()`` is not empty; Ray then makes it
    the only visible one), else ``cpu`` (also outside a Ray worker). Any other value is used as given."""
    if str(device) != "auto":
        return torch.device(device)
    ray = require("ray")
    if ray.is_initialized() and ray.get_gpu_ids() and torch.cuda.is_available():
        return torch.device("cuda")
    return torch.device("cpu")


class Classifier:
    """The top-k ImageNet classes (or a checkpoint's classes) of every image of a batch, as ``vggnets classify``.

    Constructor keywords (``fn_constructor_kwargs``): ``model`` and ``weights`` as ``--model``/``--weights`` (a name
    such as ``"DEFAULT"``, or the path of a .pth/.safetensors file every worker can read; without ``model``, the
    architecture such a file records, else vgg16); ``topk``; ``batch_size``
    (images per forward pass; the engine's largest bucket); ``precision`` (fp32, bf16, int8), ``compile`` (auto, aot,
    jit, none) and ``calibration`` as the command's engine options (without them the eager model runs with the
    weights' exact float preprocessing, as the command does); ``device`` (``"auto"``: see :func:`actor_device`);
    ``max_pixels`` (the decompression-bomb guard for bytes, and the limit on resized images; None: Pillow's
    89,478,485 pixels, as the command); ``column`` (default ``bytes``, else ``image``) and
    ``path_column`` (names rows in error messages).

    Returns the batch's other columns, then ``labels`` (list<string>), ``indices`` (list<int64>), ``probabilities``
    (list<float>, descending) and ``error`` (string: null, or why the image could not be read, the result columns
    then null).
    """

    def __init__(
        self,
        model: str | None = None,
        weights: Any = "DEFAULT",
        *,
        topk: int = 5,
        batch_size: int = 16,
        precision: str | None = None,
        compile: bool | str | None = None,
        calibration: str | Path | None = None,
        device: str | torch.device = "auto",
        max_pixels: int | None = None,
        column: str | None = None,
        path_column: str | None = "path",
    ) -> None:
        self.runner = classifier_runner(
            model, weights, device=actor_device(device), topk=topk, batch_size=batch_size, precision=precision,
            compile=compile, calibration=calibration, max_pixels=max_pixels,
        )  # fmt: skip
        self.column, self.path_column = column, path_column

    def __call__(self, batch: Any) -> Any:
        rows = read_batch(batch, self.column, self.path_column)
        predictions = []
        for values, names in rows.chunks(self.runner.batch_size):
            images, errors = decode_values(values, names, max_pixels=self.runner.max_pixels)
            predictions += self.runner(images, errors, names)
        return with_results(rows, classification_columns(predictions))

    def __repr__(self) -> str:
        r = self.runner
        return f"Classifier(labels={len(r.labels)}, topk={r.topk}, device={r.device}, engine={r.engine})"


class Embedder:
    """One descriptor per image of a batch from a named layer, as ``vggnets features``.

    Constructor keywords (``fn_constructor_kwargs``): ``model`` and ``weights`` as ``--model``/``--weights``;
    ``layer`` (default ``relu7``, the paper's 4096-d descriptor; convolutional layers are averaged over positions),
    ``multiscale`` and ``scales`` (the paper's Appendix B: the whole image at 256, 384, 512), ``flip``, ``l2norm``
    and ``batch_size`` as the command's options; ``device``, ``max_pixels``, ``column`` and ``path_column`` as for
    :class:`Classifier`.

    Returns the batch's other columns, then ``features`` (list<float>, the column type of ``vggnets features --output
    x.parquet``; ``np.stack`` gives the matrix) and ``error`` (string: null, or why the image could not be read, the
    features then null).
    """

    def __init__(
        self,
        model: str | None = None,
        weights: Any = "DEFAULT",
        *,
        layer: str = "relu7",
        multiscale: bool = False,
        scales: Sequence[int] | None = None,
        flip: bool = False,
        l2norm: bool = False,
        batch_size: int = 16,
        device: str | torch.device = "auto",
        max_pixels: int | None = None,
        column: str | None = None,
        path_column: str | None = "path",
    ) -> None:
        self.runner = embedder_runner(
            model, weights, device=actor_device(device), layer=layer, multiscale=multiscale, scales=scales,
            flip=flip, l2norm=l2norm, batch_size=batch_size,
        )  # fmt: skip
        self.max_pixels, self.column, self.path_column = max_pixels, column, path_column

    def __call__(self, batch: Any) -> Any:
        rows = read_batch(batch, self.column, self.path_column)
        vectors, failures = [], []
        for values, names in rows.chunks(self.runner.batch_size):
            images, errors = decode_values(values, names, max_pixels=self.max_pixels)
            vectors += self.runner(images)
            failures += errors
        return with_results(rows, embedding_columns(vectors, failures))

    def __repr__(self) -> str:
        return f"Embedder(layer={self.runner.layer}, settings={sorted(self.runner.settings)})"

"""Image descriptors from any named layer, as in the paper's Appendix B (arXiv 1409.1556).

Single scale: the weights' center crop (resize 256, crop 224) through :class:`~vggnets.features.FeatureExtractor`.
Multi-scale (Appendix B): the whole image at each scale Q through the fully-convolutional view, the layer's map averaged
over positions, then over flips and scales; L2 normalisation last. Convolutional layers (``pool5`` ...) are averaged
over positions in both modes, so every descriptor is a vector. :func:`embed_files` does it for image files, a batch
at a time, with each file's label (its folder's name) and the reason for any file that could not be read.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor

from ..core.transforms import ImageClassification
from ..core.vgg import VGG, device_of
from ..errors import ImageError
from ..models.dense import HEAD_LAYERS, fully_convolutional
from ..models.meta import weights_preprocessing
from .extractor import FeatureExtractor

#: The paper's Appendix B descriptor: the 4096-d penultimate activations, after ReLU.
DEFAULT_LAYER = "relu7"
#: The scales of Appendix B.
APPENDIX_B_SCALES = (256, 384, 512)


def _pooled(x: Tensor) -> Tensor:
    """(N, C, H, W) maps -> (N, C) by spatial mean; (N, D) vectors unchanged."""
    return x.mean(dim=(-2, -1)) if x.dim() == 4 else x


@torch.inference_mode()
def embed(
    model: VGG,
    images: Sequence[Tensor],
    *,
    layer: str = DEFAULT_LAYER,
    mean: Sequence[float],
    std: Sequence[float],
    scales: Sequence[int] | None = None,
    flip: bool = False,
    l2norm: bool = False,
    batch_size: int = 16,
) -> Tensor:
    """Descriptors (N, D) of uint8 (3, H, W) images from ``layer``; ``scales=None`` is the single center crop."""
    model.eval()
    device = device_of(model)
    if scales is None:
        preprocess = ImageClassification(crop_size=224, mean=mean, std=std)
        extractor = FeatureExtractor(model, [layer])
        chunks = []
        for start in range(0, len(images), batch_size):
            x = torch.stack([preprocess(img) for img in images[start : start + batch_size]]).to(device)
            chunks.append(_mean_over_views(lambda v: extractor(v)[layer], x, flip))
        out = torch.cat(chunks) if chunks else torch.empty(0)
    else:
        if layer in HEAD_LAYERS:  # the head as convolutions over the whole image
            dense = fully_convolutional(model)
            layer_map = lambda v: dense(v, until=layer)  # noqa: E731
        else:
            extractor = FeatureExtractor(model, [layer])
            layer_map = lambda v: extractor(v)[layer]  # noqa: E731
        out = torch.stack([_multiscale(layer_map, img, mean, std, scales, flip, device) for img in images])
    out = out.float().cpu()
    return F.normalize(out, dim=1) if l2norm else out


@dataclass
class Embedding:
    """The descriptor of one image file, or the reason it could not be read."""

    file: str
    label: str  # the name of the file's folder, as in an ImageFolder tree
    features: Tensor | None = None  # (D,), None when ``error`` is set
    error: str | None = None


def embed_files(
    model: VGG,
    files: Sequence[str | Path],
    *,
    batch_size: int = 16,
    progress: bool = False,
    **settings: Any,
) -> Iterator[Embedding]:
    """Yield one :class:`Embedding` per file, in order: :func:`embed` of the images with its keyword ``settings``
    (``layer``, ``mean``, ``std``, ``scales``, ``flip``, ``l2norm``), decoded one batch at a time so that memory stays
    flat; a file that cannot be read yields an Embedding with ``error`` set."""
    bar = None
    if progress:
        from tqdm import tqdm

        bar = tqdm(total=len(files), unit="img", desc="features")
    try:
        for start in range(0, len(files), batch_size):
            batch = files[start : start + batch_size]
            rows, images = _read_batch(batch)
            if images:
                vectors = embed(model, images, batch_size=batch_size, **settings)
                for row, vector in zip([r for r in rows if r.error is None], vectors, strict=True):
                    row.features = vector
            yield from rows
            if bar is not None:
                bar.update(len(batch))
    finally:
        if bar is not None:
            bar.close()


def _read_batch(files: Sequence[str | Path]) -> tuple[list[Embedding], list[Tensor]]:
    """An Embedding per file (``error`` set for those that cannot be read) and the decoded images of the others."""
    from ..io.images import read_image  # torchvision.io: not imported by `import vggnets`

    rows, images = [], []
    for file in files:
        row = Embedding(str(file), Path(file).parent.name)
        try:
            images.append(read_image(file))
        except ImageError as exc:
            row.error = str(exc)
        rows.append(row)
    return rows, images


def normalization(weights: object) -> tuple[Sequence[float], Sequence[float]]:
    """Mean and std of the preprocessing ``weights`` expect: their preset's for published weights (Caffe-style for
    ``IMAGENET1K_FEATURES``), what a ``vggnets train`` checkpoint records, ImageNet's for anything else."""
    preset = weights_preprocessing(weights)
    return preset.mean, preset.std


def _mean_over_views(layer_map, x: Tensor, flip: bool) -> Tensor:
    """Pooled descriptors of a batch, averaged with those of its mirror image when ``flip``."""
    views = [x, x.flip(-1)] if flip else [x]
    return torch.stack([_pooled(layer_map(v)) for v in views]).mean(0)


def _multiscale(
    layer_map, image: Tensor, mean, std, scales: Sequence[int], flip: bool, device: torch.device
) -> Tensor:
    """One image's descriptor averaged over positions, flips and scales."""
    from torchvision.transforms import functional as TF

    per_scale = []
    for q in scales:
        x = TF.convert_image_dtype(TF.resize(image, [q], antialias=True), torch.float32)
        x = TF.normalize(x, mean=list(mean), std=list(std)).unsqueeze(0).to(device)
        per_scale.append(_mean_over_views(layer_map, x, flip)[0])
    return torch.stack(per_scale).mean(0)

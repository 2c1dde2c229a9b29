"""Image descriptors from any named layer, as in the paper's Appendix B (arXiv 1409.1556).

Single scale: the weights' center crop (resize 256, crop 224) through :class:`~vggnets.features.FeatureExtractor`.
Multi-scale (Appendix B): the whole image at each scale Q through the fully-convolutional view, the layer's map averaged
over positions, then over flips and scales; L2 normalisation last. Convolutional layers (``pool5`` ...) are averaged
over positions in both modes, so every descriptor is a vector. :func:`embed_files` does it for image files, a batch
at a time, with each file's label (its folder's name) and the reason for any file that could not be read.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torch.utils.data import DataLoader, Dataset

from ..core.transforms import ImageClassification
from ..core.vgg import VGG, device_of
from ..errors import ImageError
from ..models.dense import HEAD_LAYERS, fully_convolutional
from ..models.meta import weights_preprocessing
from .extractor import FeatureExtractor, layer_names

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
    prepare, describe = describer(
        model, layer=layer, mean=mean, std=std, scales=scales, flip=flip, l2norm=l2norm
    )
    chunks = [
        describe([prepare(image) for image in images[start : start + batch_size]])
        for start in range(0, len(images), batch_size)
    ]
    return torch.cat(chunks) if chunks else torch.empty(0)


def describer(
    model: VGG,
    *,
    layer: str = DEFAULT_LAYER,
    mean: Sequence[float],
    std: Sequence[float],
    scales: Sequence[int] | None = None,
    flip: bool = False,
    l2norm: bool = False,
    predictor: Callable[[Tensor], Tensor] | None = None,
) -> tuple[Callable[[Tensor], Tensor], Callable[[Sequence[Tensor]], Tensor]]:
    """``(prepare, describe)``: ``prepare`` turns one decoded uint8 image into what ``describe`` takes (the center
    crop, normalised, for a single scale; the image itself for several scales), and may run in a loader's worker;
    ``describe`` turns a list of prepared images into float32 (N, D) descriptors on the CPU.

    ``predictor``: an engine :class:`~vggnets.inference.engine.Predictor` built on :class:`LayerDescriptor` (single
    scale only), whose ``preprocess`` gives uint8 crops that it normalises inside its graph.
    """
    device = device_of(model)
    if predictor is not None:
        if scales is not None:
            raise ValueError(
                "the engine runs the single center crop; multi-scale descriptors run the eager model"
            )
        prepare = predictor.preprocess

        def run(x: Tensor) -> Tensor:
            return _mean_over_views(predictor, x, flip)
    elif scales is None:
        prepare = ImageClassification(crop_size=224, mean=mean, std=std)
        extractor = FeatureExtractor(model, [layer])

        def run(x: Tensor) -> Tensor:
            return _mean_over_views(lambda v: extractor(v)[layer], x.to(device), flip)
    else:
        if layer in HEAD_LAYERS:  # the head as convolutions over the whole image
            dense = fully_convolutional(model)
            layer_map = lambda v: dense(v, until=layer)  # noqa: E731
        else:
            extractor = FeatureExtractor(model, [layer])
            layer_map = lambda v: extractor(v)[layer]  # noqa: E731
        prepare = _unchanged

    @torch.inference_mode()
    def describe(images: Sequence[Tensor]) -> Tensor:
        if scales is None:
            out = run(torch.stack(list(images)))
        else:
            out = torch.stack(
                [_multiscale(layer_map, img, mean, std, scales, flip, device) for img in images]
            )
        out = out.float().cpu()
        return F.normalize(out, dim=1) if l2norm else out

    return prepare, describe


def _unchanged(image: Tensor) -> Tensor:
    return image


class LayerDescriptor(nn.Module):
    """A VGG cut after ``layer``, returning its output averaged over positions (a convolutional layer) or as it is (a
    head layer): the single-scale descriptor as one module, for the fast engine (which compiles and caches it)."""

    def __init__(self, model: VGG, layer: str) -> None:
        super().__init__()
        names = layer_names(model)
        if layer not in names:
            raise ValueError(f"unknown layer {layer!r}; choose from {', '.join(names)}")
        index, convolutional = names.index(layer), len(model.features)
        self.features = model.features[: index + 1] if index < convolutional else model.features
        self.avgpool = model.avgpool
        self.head = model.classifier[: index - convolutional + 1] if index >= convolutional else None
        # which layer: part of the state_dict, so the engine's cache keys of fc7 and relu7 (same weights) differ
        self.register_buffer("layer_index", torch.tensor([index]))

    def forward(self, x: Tensor) -> Tensor:
        x = self.features(x)
        if self.head is None:
            return x.mean(dim=(-2, -1))
        return self.head(torch.flatten(self.avgpool(x), 1))


@dataclass
class Embedding:
    """The descriptor of one image file, or the reason it could not be read."""

    file: str
    label: str  # the name of the file's folder, as in an ImageFolder tree
    features: Tensor | None = None  # (D,), None when ``error`` is set
    error: str | None = None


class DecodedFiles(Dataset):
    """Files -> (position, prepared image or None, error or None): decoded (and cropped) in a loader's workers."""

    def __init__(self, files: Sequence[str | Path], prepare: Callable[[Tensor], Tensor]) -> None:
        self.files, self.prepare = list(files), prepare

    def __len__(self) -> int:
        return len(self.files)

    def __getitem__(self, i: int) -> tuple[int, Tensor | None, str | None]:
        from ..io.images import read_image  # torchvision.io: not imported by `import vggnets`

        try:
            return i, self.prepare(read_image(self.files[i])), None
        except ImageError as exc:
            return i, None, str(exc)


def embed_files(
    model: VGG,
    files: Sequence[str | Path],
    *,
    batch_size: int = 16,
    progress: bool = False,
    workers: int = 0,
    predictor: Callable[[Tensor], Tensor] | None = None,
    **settings: Any,
) -> Iterator[Embedding]:
    """Yield one :class:`Embedding` per file, in order: :func:`embed` of the images with its keyword ``settings``
    (``layer``, ``mean``, ``std``, ``scales``, ``flip``, ``l2norm``), one batch at a time so that memory stays flat;
    a file that cannot be read yields an Embedding with ``error`` set. ``workers`` decoding processes (0: in this
    one) decode and crop ahead of the model; ``predictor``: see :func:`describer`."""
    model.eval()
    prepare, describe = describer(model, predictor=predictor, **settings)
    loader = DataLoader(
        DecodedFiles(files, prepare),
        batch_size=batch_size,
        num_workers=workers,
        collate_fn=_as_list,
        worker_init_fn=_one_thread if workers else None,
    )
    bar = None
    if progress:
        from tqdm import tqdm

        bar = tqdm(total=len(files), unit="img", desc="features")
    try:
        for batch in loader:
            rows = [Embedding(str(files[i]), Path(files[i]).parent.name, error=err) for i, _, err in batch]
            good = [(row, x) for row, (_, x, _) in zip(rows, batch, strict=True) if x is not None]
            if good:
                for (row, _), vector in zip(good, describe([x for _, x in good]), strict=True):
                    row.features = vector
            yield from rows
            if bar is not None:
                bar.update(len(batch))
    finally:
        if bar is not None:
            bar.close()


def _as_list(items: list) -> list:
    return items


def _one_thread(_worker_id: int) -> None:
    # a worker decodes one image at a time: intra-op threads would only compete with the model's
    torch.set_num_threads(1)


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

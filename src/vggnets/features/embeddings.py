"""Image descriptors from any named layer, as in the paper's Appendix B (arXiv 1409.1556).

Single scale: the weights' center crop (resize 256, crop 224) through :class:`~vggnets.features.FeatureExtractor`.
Multi-scale (Appendix B): the whole image at each scale Q through the fully-convolutional view, the layer's map averaged
over positions, then over flips and scales; L2 normalisation last. Convolutional layers (``pool5`` ...) are averaged
over positions in both modes, so every descriptor is a vector.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import Tensor

from ..core.transforms import ImageClassification
from ..core.vgg import VGG
from ..models.dense import HEAD_LAYERS, fully_convolutional
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
    device = next(model.parameters()).device
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

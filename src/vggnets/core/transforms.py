"""Preprocessing presets of the published weights, and the one home of the ImageNet and Caffe mean and std.

The steps call ``torchvision.transforms.functional``, the same functions torchvision's own presets call: a PIL image is
resized by Pillow and a tensor by torch in float with rounding back to uint8, so outputs equal torchvision's bit for bit.
(The v2 uint8 resize kernel is faster but rounds differently by one grey level on some pixels, which would make "the
exact preprocessing" untrue.) torchvision is imported when the first preset is built, not with this module, so
``import vggnets`` stays light; the presets are scriptable (``torch.jit.script(weights.transforms())``) as
torchvision's are.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch
from torch import nn

#: ImageNet normalisation of torchvision's (and timm's) weights (RGB in [0, 1]).
IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
#: Caffe-style normalisation of IMAGENET1K_FEATURES: RGB in [0, 255] minus the mean pixel, no scaling.
CAFFE_MEAN = (0.48235, 0.45882, 0.40784)
CAFFE_STD = (1.0 / 255.0, 1.0 / 255.0, 1.0 / 255.0)


#: ``torchvision.transforms.functional``, bound by :func:`load_functional` when the first preset is built. It is a module
#: global because TorchScript resolves the names ``ImageClassification.forward`` uses from this module's globals.
F: Any = None


def load_functional() -> Any:
    """Import ``torchvision.transforms.functional`` (once) into this module's global ``F`` and return it."""
    global F
    if F is None:
        from torchvision.transforms import functional

        F = functional
    return F


class ImageClassification(nn.Module):
    """Resize the smaller side to ``resize_size`` (bilinear, antialiased), center-crop ``crop_size``, scale to [0, 1]
    floats and normalise with ``mean``/``std``. Accepts a PIL image, or a uint8/float tensor of shape (..., C, H, W).
    """

    def __init__(
        self,
        *,
        crop_size: int,
        resize_size: int = 256,
        mean: Sequence[float] = IMAGENET_MEAN,
        std: Sequence[float] = IMAGENET_STD,
        interpolation: Any = None,
        antialias: bool = True,
    ) -> None:
        super().__init__()
        load_functional()
        from torchvision.transforms import InterpolationMode

        self.crop_size = [crop_size]
        self.resize_size = [resize_size]
        self.mean = list(mean)
        self.std = list(std)
        self.interpolation = interpolation if interpolation is not None else InterpolationMode.BILINEAR
        self.antialias = antialias

    def forward(self, img: torch.Tensor) -> torch.Tensor:
        """Preprocess one image (a PIL image too, in eager mode) or a batch tensor into a normalised float tensor."""
        img = F.resize(img, self.resize_size, interpolation=self.interpolation, antialias=self.antialias)
        img = F.center_crop(img, self.crop_size)
        if not isinstance(img, torch.Tensor):
            img = F.pil_to_tensor(img)
        img = F.convert_image_dtype(img, torch.float32)
        return F.normalize(img, mean=self.mean, std=self.std)

    def extra_repr(self) -> str:
        return (
            f"crop_size={self.crop_size}, resize_size={self.resize_size}, mean={self.mean}, std={self.std}, "
            f"interpolation={self.interpolation}, antialias={self.antialias}"
        )

"""The engine's graph: batch norm folded, uint8 input normalised inside it, channels-last, and its torch.export capture.

:func:`prepare` turns a VGG into the module every engine path starts from: a copy with batch norm folded into the
convolutions, cast to the path's dtype, channels-last, wrapped in :class:`NormalizedInput` so that it takes uint8 crops
(:class:`CropUint8` makes them). :func:`export_batched` captures it with a dynamic batch dimension for quantisation and
AOTInductor.
"""

from __future__ import annotations

import contextlib
import copy
import logging
import warnings
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import Any

import torch
from torch import nn

from ..core.transforms import IMAGENET_MEAN, IMAGENET_STD

#: The largest batch an exported graph accepts (a dynamic dimension needs an upper bound).
MAX_BATCH = 1024


def fold_batchnorm(model: nn.Module) -> nn.Module:
    """A copy of ``model`` (in eval mode) with every BatchNorm2d that follows a Conv2d folded into that convolution.

    The folded BN becomes ``nn.Identity``, so module names and indices are unchanged. Exact up to float rounding.
    """
    from torch.nn.utils.fusion import fuse_conv_bn_eval

    model = copy.deepcopy(model).eval()
    for module in model.modules():
        if not isinstance(module, nn.Sequential):
            continue
        children = list(module.named_children())
        for (_, first), (name, second) in zip(children, children[1:]):
            if isinstance(first, nn.Conv2d) and isinstance(second, nn.BatchNorm2d):
                fused = fuse_conv_bn_eval(first, second)
                first.weight, first.bias = fused.weight, fused.bias
                setattr(module, name, nn.Identity())
    return model


class NormalizedInput(nn.Module):
    """uint8 images (N, 3, H, W) in -> float32 logits out: scaling, mean/std normalisation and the cast to the model's
    dtype happen inside the module, so a compiled graph fuses them into the first convolution's input pass."""

    def __init__(
        self,
        model: nn.Module,
        mean: Sequence[float],
        std: Sequence[float],
        dtype: torch.dtype = torch.float32,
    ) -> None:
        super().__init__()
        self.model = model
        self.dtype = dtype
        scale = torch.tensor(std, dtype=torch.float32) * 255.0
        self.register_buffer("shift", (torch.tensor(mean, dtype=torch.float32) * 255.0).view(1, -1, 1, 1))
        self.register_buffer("scale", (1.0 / scale).view(1, -1, 1, 1))

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        x = (images.to(torch.float32) - self.shift) * self.scale
        x = x.to(self.dtype).contiguous(memory_format=torch.channels_last)
        return self.model(x).float()


def prepare(
    model: nn.Module, mean: Sequence[float], std: Sequence[float], dtype: torch.dtype, device: torch.device
) -> NormalizedInput:
    """The module every engine path starts from: ``model`` with batch norm folded, in ``dtype`` and channels-last on
    ``device``, taking uint8 images (:class:`NormalizedInput`). ``model`` itself is not modified."""
    core = fold_batchnorm(model).to(device=device, dtype=dtype, memory_format=torch.channels_last)
    return NormalizedInput(core, mean, std, dtype).to(device).eval()


def num_classes(model: nn.Module) -> int:
    """The number of outputs of a VGG: those of its last linear or convolutional layer."""
    last = [m for m in model.modules() if isinstance(m, nn.Linear | nn.Conv2d)][-1]
    return last.out_features if isinstance(last, nn.Linear) else last.out_channels


class CropUint8(nn.Module):
    """Resize the smaller side to ``resize_size`` and center-crop ``crop_size``, staying in uint8 (the predictor
    normalises inside its graph). Antialiased bilinear, as the weights' presets; rounding may differ from the float
    preset by one grey level on some pixels."""

    def __init__(self, resize_size: int = 256, crop_size: int = 224) -> None:
        super().__init__()
        self.resize_size = [resize_size]
        self.crop_size = [crop_size]

    def forward(self, image: torch.Tensor) -> torch.Tensor:
        from torchvision.transforms.v2 import functional as F

        image = F.resize(image, self.resize_size, antialias=True)
        return F.center_crop(image, self.crop_size)

    def extra_repr(self) -> str:
        return f"resize_size={self.resize_size[0]}, crop_size={self.crop_size[0]}"


@dataclass(frozen=True)
class InputSpec:
    """The crop, resize and normalisation a model's input gets."""

    image_size: int
    resize_size: int
    mean: tuple[float, ...]
    std: tuple[float, ...]


def input_spec(
    weights: Any = None,
    *,
    image_size: int | None = None,
    resize_size: int | None = None,
    mean: Sequence[float] | None = None,
    std: Sequence[float] | None = None,
) -> InputSpec:
    """What is given, else the preset of ``weights`` (``weights.transforms()``, where it has one), else ImageNet's
    statistics, a 224 crop and a resize to 256/224 of the crop."""
    preset = weights.transforms() if weights is not None and hasattr(weights, "transforms") else None
    if preset is not None:
        image_size = preset.crop_size[0] if image_size is None else image_size
        resize_size = preset.resize_size[0] if resize_size is None else resize_size
        mean = preset.mean if mean is None else mean
        std = preset.std if std is None else std
    image_size = 224 if image_size is None else image_size
    return InputSpec(
        image_size=image_size,
        resize_size=round(image_size * 256 / 224) if resize_size is None else resize_size,
        mean=tuple(IMAGENET_MEAN if mean is None else mean),
        std=tuple(IMAGENET_STD if std is None else std),
    )


@contextlib.contextmanager
def quiet_compile_logs() -> Iterator[None]:
    """Silence the compile stack's chatter that says nothing to a user (deprecation notes from torchao's import, the
    CUDA-runtime probe of a CUDA build of torch on a CPU machine, inductor's internal UserWarnings)."""
    names = ("torch.utils._pytree", "torch.utils.cpp_extension")
    loggers = [logging.getLogger(name) for name in names]
    levels = [logger.level for logger in loggers]
    try:
        for logger in loggers:
            logger.setLevel(logging.ERROR)
        with warnings.catch_warnings():
            warnings.filterwarnings("ignore", category=UserWarning, module=r"torch\._inductor")
            warnings.filterwarnings("ignore", category=FutureWarning, module=r"torchao")
            yield
    finally:
        for logger, level in zip(loggers, levels, strict=True):
            logger.setLevel(level)


def export_batched(module: nn.Module, example: torch.Tensor) -> torch.export.ExportedProgram:
    """torch.export with a dynamic batch dimension (1..MAX_BATCH)."""
    batch = torch.export.Dim("batch", min=1, max=MAX_BATCH)
    return torch.export.export(module, (example,), dynamic_shapes=({0: batch},))

"""Cost accounting of the protocols: multiply-accumulates of one forward pass of a VGG module at any input size."""

from __future__ import annotations

import math
from typing import Any

from torch import nn

from ..models.dense import MIN_DENSE_SIZE

__all__ = ["network_gmacs"]


def network_gmacs(model: nn.Module, height: int, width: int, *, dense: bool = False) -> float:
    """Multiply-accumulates (billions) of one forward pass over a ``height`` x ``width`` input.

    Counted like :func:`vggnets.core.configs.gmacs` (convolutions and fully-connected layers; ReLU, pooling, normalisation
    and softmax are free), from the model's own layers, so a model built on the meta device costs nothing to ask.
    ``dense=False``: the ordinary model (the classifier runs once, after the adaptive pool). ``dense=True``: the
    fully-convolutional view, whose classifier runs at every position of the score map.
    """
    macs, fh, fw = _feature_geometry(model, height, width)
    fc = sum(model.classifier[i].in_features * model.classifier[i].out_features for i in (0, 3, 6))
    if dense:
        if fh < 7 or fw < 7:
            raise ValueError(
                f"dense evaluation needs inputs of at least {MIN_DENSE_SIZE} pixels, got {height}x{width}"
            )
        positions = (fh - 6) * (fw - 6)
    else:
        positions = 1
    return (macs + positions * fc) / 1e9


def _feature_geometry(model: nn.Module, height: int, width: int) -> tuple[float, int, int]:
    """(MACs of model.features, output height, output width) for one height x width input, from the layers' shapes."""
    macs = 0.0
    h, w = height, width
    for m in model.features.modules():
        if isinstance(m, nn.Conv2d):
            (kh, kw), (sh, sw), (ph, pw), (dh, dw) = m.kernel_size, m.stride, m.padding, m.dilation
            if isinstance(m.padding, str):
                raise ValueError(f"cannot compute the cost of a convolution with padding={m.padding!r}")
            h = (h + 2 * ph - dh * (kh - 1) - 1) // sh + 1
            w = (w + 2 * pw - dw * (kw - 1) - 1) // sw + 1
            macs += kh * kw * (m.in_channels // m.groups) * m.out_channels * h * w
        elif isinstance(m, nn.MaxPool2d):
            k = _pair(m.kernel_size)
            s = _pair(m.stride if m.stride is not None else m.kernel_size)
            p = _pair(m.padding)
            rnd = math.ceil if m.ceil_mode else math.floor
            h = int(rnd((h + 2 * p[0] - k[0]) / s[0])) + 1
            w = int(rnd((w + 2 * p[1] - k[1]) / s[1])) + 1
    return macs, h, w


def _pair(v: Any) -> tuple[int, int]:
    return (v, v) if isinstance(v, int) else (v[0], v[1])

"""Perceptual losses on the features of a frozen VGG network (Johnson et al. 2016; Gatys et al. 2016).

:class:`PerceptualLoss` compares two batches of images through a pretrained VGG: a feature reconstruction ("content")
term, the mean squared error between the feature maps of chosen layers, and a style term, the mean squared error
between their Gram matrices ``G = F F^T / (C H W)`` (REFERENCE 5.1). It takes images in a plain value range (``[0, 1]``
by default) and applies the normalisation the chosen weights expect itself: ImageNet mean/std for the torchvision
weights, "x 255 minus the mean pixel" for the Caffe-style ``VGG16_Weights.IMAGENET1K_FEATURES``.
"""

from __future__ import annotations

import contextlib
from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from ..core.transforms import IMAGENET_MEAN, IMAGENET_STD
from ..core.vgg import VGG
from ..models.builders import WeightsArg, build
from ..models.weights import resolve_weights
from .embeddings import normalization
from .extractor import FeatureExtractor

__all__ = ["PerceptualLoss", "gram_matrix"]


def _full_precision(device: torch.device) -> contextlib.AbstractContextManager:
    """A context where autocast is off for ``device`` (so float32 math stays float32)."""
    if torch.amp.is_autocast_available(device.type):
        return torch.autocast(device.type, enabled=False)
    return contextlib.nullcontext()


def gram_matrix(features: Tensor) -> Tensor:
    """Gram matrices ``F F^T / (C H W)`` of feature maps (N, C, H, W) -> (N, C, C), computed in float32.

    Autocast is disabled inside, so the result is float32 even under ``torch.autocast`` (a low-precision Gram matrix sums
    H x W products per entry and loses most of its digits).
    """
    if features.dim() != 4:
        raise ValueError(f"gram_matrix expects feature maps shaped (N, C, H, W), got {tuple(features.shape)}")
    n, c, h, w = features.shape
    with _full_precision(features.device):
        flat = features.float().reshape(n, c, h * w)
        return torch.bmm(flat, flat.transpose(1, 2)) / (c * h * w)


def _normalization(
    model: str, weights: WeightsArg, *, loaded: bool
) -> tuple[Sequence[float], Sequence[float]]:
    """Mean and std of the preprocessing that ``weights`` expect (ImageNet's unless they are Caffe-style)."""
    if isinstance(weights, str):
        if not loaded and weights in ("DEFAULT", "IMAGENET1K_V1"):
            # always torchvision's weights; the model may have none published
            return IMAGENET_MEAN, IMAGENET_STD
        weights = resolve_weights(model, weights)
    return normalization(weights)


class PerceptualLoss(nn.Module):
    """Feature reconstruction and Gram-matrix style loss through a frozen VGG network.

    ``loss(input, target)`` is a float32 scalar::

        content_weight * sum_l layer_weights[l] * mse(phi_l(input), phi_l(target))           for l in layers
      + style_weight * sum_l style_layer_weights[l] * mse(G(phi_l(input)), G(phi_l(target)))  for l in style_layers

    where ``phi_l`` is the output of layer ``l`` (names as in :mod:`vggnets.features`: ``relu2_2`` ...) and ``G`` is
    :func:`gram_matrix`. Johnson et al. use ``layers=("relu2_2",)`` and ``style_layers=("relu1_2", "relu2_2",
    "relu3_3", "relu4_3")``. The target may have a batch of 1 for the style term (one style image for the whole batch),
    and a different size from the input when ``layers`` is empty.

    ``model``: a model name, built with ``vggnets.build(model, weights=weights)``, or a :class:`~vggnets.models.VGG`
    instance, used as it is (shared, and frozen in place); then ``weights`` only chooses the normalisation, so pass
    the member it was loaded with (e.g. ``VGG16_Weights.IMAGENET1K_FEATURES``).

    ``weights``: as for :func:`vggnets.build` (enum member, ``"DEFAULT"``, a tag, a file path, or None for random
    weights). Inputs in ``input_range`` are mapped to [0, 1], then normalised as these weights expect:
    ``(x - mean) / std`` with the mean and std of ``weights.transforms()``, i.e. ImageNet's for the torchvision weights,
    and ``x * 255 - mean_pixel`` for the Caffe-style ``IMAGENET1K_FEATURES``. A file path or None gives ImageNet's;
    ``mean`` and ``std`` (on the [0, 1] scale) override either.

    The network is frozen: evaluation mode (no dropout, BN running statistics) and ``requires_grad_(False)``; this
    module's ``.train()`` leaves it in evaluation mode. The loss is differentiable with respect to both images, only the
    layers up to the last one used are run, and it works under ``torch.autocast`` (Gram matrices and the squared errors
    are computed in float32).
    """

    def __init__(
        self,
        model: str | VGG = "vgg16",
        *,
        layers: Sequence[str] = ("relu2_2",),
        weights: WeightsArg = "DEFAULT",
        layer_weights: Sequence[float] | None = None,
        style_layers: Sequence[str] = (),
        style_layer_weights: Sequence[float] | None = None,
        content_weight: float = 1.0,
        style_weight: float = 1.0,
        input_range: tuple[float, float] = (0.0, 1.0),
        mean: Sequence[float] | None = None,
        std: Sequence[float] | None = None,
    ) -> None:
        super().__init__()
        layers = (layers,) if isinstance(layers, str) else tuple(layers)
        style_layers = (style_layers,) if isinstance(style_layers, str) else tuple(style_layers)
        if not layers and not style_layers:
            raise ValueError("PerceptualLoss needs at least one layer in layers or style_layers")
        self.layer_weights = self._per_layer(layer_weights, layers, "layer_weights")
        self.style_layer_weights = self._per_layer(style_layer_weights, style_layers, "style_layer_weights")
        low, high = (float(v) for v in input_range)
        if not high > low:
            raise ValueError(f"input_range must be (low, high) with high > low, got {tuple(input_range)}")

        if isinstance(model, str):
            default_mean, default_std = _normalization(model, weights, loaded=True)
            model = build(model, weights=weights)
        elif isinstance(model, nn.Module):
            default_mean, default_std = _normalization(getattr(model, "name", ""), weights, loaded=False)
        else:
            raise TypeError(f"model must be a model name or a VGG module, not {type(model).__name__}")
        mean = default_mean if mean is None else mean
        std = default_std if std is None else std
        if len(mean) != 3 or len(std) != 3 or any(s <= 0 for s in std):
            raise ValueError(f"mean and std need 3 values each (std > 0), got {tuple(mean)} and {tuple(std)}")

        model.eval().requires_grad_(False)
        self.extractor = FeatureExtractor(model, [*layers, *style_layers])
        self.layers = layers
        self.style_layers = style_layers
        self.content_weight = float(content_weight)
        self.style_weight = float(style_weight)
        self.input_range = (low, high)
        self.register_buffer(
            "mean", torch.tensor(mean, dtype=torch.float32).view(1, 3, 1, 1), persistent=False
        )
        self.register_buffer("std", torch.tensor(std, dtype=torch.float32).view(1, 3, 1, 1), persistent=False)

    @staticmethod
    def _per_layer(values: Sequence[float] | None, layers: tuple[str, ...], what: str) -> tuple[float, ...]:
        if values is None:
            return (1.0,) * len(layers)
        values = tuple(float(v) for v in values)
        if len(values) != len(layers):
            raise ValueError(f"{what} has {len(values)} values for {len(layers)} layers")
        return values

    @property
    def model(self) -> VGG:
        """The frozen VGG network."""
        return self.extractor.model

    def train(self, mode: bool = True) -> PerceptualLoss:
        """Set this module's flag; the VGG network stays in evaluation mode."""
        super().train(mode)
        self.extractor.eval()
        return self

    def normalize(self, x: Tensor) -> Tensor:
        """Map images from ``input_range`` to [0, 1], then to what the weights expect: ``(x - mean) / std``.

        The result keeps the dtype of a floating-point ``x`` (integer images give float32).
        """
        low, high = self.input_range
        if (low, high) != (0.0, 1.0):
            x = (x - low) / (high - low)
        out = (x - self.mean) / self.std
        return out.to(x.dtype) if x.is_floating_point() else out

    def forward(self, input: Tensor, target: Tensor) -> Tensor:
        """The weighted sum of the content and style terms (a float32 scalar) for image batches (N, 3, H, W)."""
        for name, images in (("input", input), ("target", target)):
            if images.dim() != 4 or images.shape[1] != 3:
                raise ValueError(
                    f"{name} must be a batch of RGB images shaped (N, 3, H, W), got {tuple(images.shape)}"
                )
        if self.layers and input.shape != target.shape:
            raise ValueError(
                f"input and target must have the same shape for the content term, got {tuple(input.shape)} and "
                f"{tuple(target.shape)}"
            )
        if target.shape[0] not in (1, input.shape[0]):
            raise ValueError(f"target must have a batch of 1 or of {input.shape[0]}, got {target.shape[0]}")
        ours = self.extractor(self.normalize(input))
        theirs = self.extractor(self.normalize(target))
        with _full_precision(input.device):
            loss = torch.zeros((), device=input.device)
            for name, weight in zip(self.layers, self.layer_weights):
                loss = loss + self.content_weight * weight * F.mse_loss(
                    ours[name].float(), theirs[name].float()
                )
            for name, weight in zip(self.style_layers, self.style_layer_weights):
                mine, other = gram_matrix(ours[name]), gram_matrix(theirs[name])
                loss = loss + self.style_weight * weight * F.mse_loss(mine, other.expand_as(mine))
        return loss

    def extra_repr(self) -> str:
        parts = [f"layers={list(self.layers)}"]
        if self.style_layers:
            parts.append(f"style_layers={list(self.style_layers)}, style_weight={self.style_weight}")
        return ", ".join([*parts, f"input_range={self.input_range}"])

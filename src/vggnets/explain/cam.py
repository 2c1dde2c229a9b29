"""Class activation maps (Grad-CAM and its variants) on any named layer of a VGG, in one forward pass per batch.

For each image and its target class ``c`` (REFERENCE 9.3): the activations ``A`` (C x h x w) of the chosen layer and
the gradients ``G = d y_c / d A`` of the class score (the logit, before the softmax) give one map at the layer's
resolution,

- ``gradcam``   (Selvaraju et al. 2017): ``relu(sum_k w_k A_k)`` with ``w_k`` the spatial mean of ``G_k``;
- ``gradcam++`` (Chattopadhay et al. 2018): weights ``sum_ij relu(G) * a_ij`` with
  ``a_ij = G^2 / (2 G^2 + sum_ij(A) G^3 + 1e-6)`` (0 where ``G`` is 0);
- ``xgradcam``  (Fu et al. 2020): weights ``sum_ij G * A / (sum_ij(A) + 1e-7)``;
- ``layercam``  (Jiang et al. 2021): ``relu(sum_k relu(G_k) * A_k)`` without spatial averaging;
- ``hirescam``  (Draelos & Carin 2020): ``relu(sum_k G_k * A_k)``;

which is then resized to the input (bilinear, half-pixel centres, as OpenCV's ``INTER_LINEAR``) and scaled per image to
span [0, 1] (minus its minimum, divided by its maximum): the formulas and scaling of pytorch-grad-cam, except that it
divides by the maximum + 1e-7, so its maps of small activations stop short of 1.

How it runs: the layers up to the chosen one run without autograd; the rest of the network (to ``fc8``) runs with it
from a copy of the layer's output, and the gradient is taken with respect to that copy only. So no hooks are needed, an
in-place ReLU after the chosen layer cannot overwrite the activations (``conv5_3`` is the convolution's true output),
the model's parameters get no ``.grad``, and the backward pass covers only the layers after the chosen one.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from ..features.extractor import HEAD_NAMES, layer_names

__all__ = ["METHODS", "CamResult", "cam", "cam_layers", "default_layer", "explain"]

#: The methods :func:`cam` computes, by their pytorch-grad-cam names (lower case).
METHODS = ("gradcam", "gradcam++", "xgradcam", "layercam", "hirescam")

TargetArg = int | str | Sequence[int] | Tensor | None


@dataclass
class CamResult:
    """What :func:`explain` computed for a batch."""

    maps: Tensor  # (N, H, W) float32 in [0, 1], at the input resolution
    raw: Tensor  # (N, h, w) float32: the map at the layer's resolution, after the ReLU, before resizing and scaling
    logits: Tensor  # (N, num_classes) the model's output for the batch
    targets: Tensor  # (N,) int64: the class each map explains
    layer: str
    method: str

    def probabilities(self) -> Tensor:
        """Softmax of the logits, (N, num_classes)."""
        return self.logits.float().softmax(1)


def cam_layers(model: nn.Module) -> list[str]:
    """Names of the layers a class activation map can be computed on: every layer of ``features`` (spatial maps)."""
    return [name for name in layer_names(model) if name not in HEAD_NAMES]


def default_layer(model: nn.Module) -> str:
    """The last ReLU of the convolutional part: relu5_3 on VGG16, relu5_2 on VGG11/13, relu5_4 on VGG19."""
    return next(name for name in reversed(cam_layers(model)) if name.startswith("relu"))


def cam(
    model: nn.Module,
    images: Tensor,
    layer: str | None = None,
    target: TargetArg = None,
    method: str = "gradcam",
) -> Tensor:
    """Class activation maps of ``images`` for ``target``, in [0, 1] at the input resolution.

    ``images``: a normalised batch (N, 3, H, W) as the model expects it (a single image (3, H, W) gives one map (H, W)).
    ``layer``: a named layer of the convolutional part (``relu5_3``, ``pool5``, ``conv4_3``, ``bn5_3`` ...; see
    :func:`cam_layers`); None is :func:`default_layer`, relu5_3 on VGG16. ``target``: None or ``"top1"`` for each
    image's top class, ``"topK"`` for its K-th class, a class index for every image, or one index per image.
    ``method``: one of :data:`METHODS`. See :func:`explain` for the predictions too.
    """
    single = images.dim() == 3
    result = explain(model, images.unsqueeze(0) if single else images, layer, target, method)
    return result.maps[0] if single else result.maps


def explain(
    model: nn.Module,
    images: Tensor,
    layer: str | None = None,
    target: TargetArg = None,
    method: str = "gradcam",
) -> CamResult:
    """Maps, raw maps, logits and targets of a batch (arguments as :func:`cam`).

    The model runs in evaluation mode (dropout off, BatchNorm's running statistics) and is put back in its mode
    afterwards; its parameters are not changed and get no gradients.
    """
    method = _check_method(method)
    if images.dim() != 4 or images.shape[1] != 3:
        raise ValueError(
            f"cam expects a batch of normalised RGB images shaped (N, 3, H, W), got {tuple(images.shape)}"
        )
    if min(images.shape[-2:]) < 32:
        raise ValueError(
            f"cam needs images of at least 32x32 pixels (five 2x2 poolings before the classifier), got "
            f"{images.shape[-2]}x{images.shape[-1]}"
        )
    if torch.is_inference_mode_enabled():
        raise RuntimeError(
            "cam needs gradients, but it was called under torch.inference_mode(); call it outside that block"
        )
    names = cam_layers(model)
    layer = default_layer(model) if layer is None else layer
    if layer not in names:
        raise ValueError(_layer_message(layer, names, model))
    index = names.index(layer)
    was_training = model.training
    model.eval()
    try:
        activations, logits = _run(model, images, index)
        targets = _targets(target, logits.detach())
        with torch.enable_grad():
            score = logits.gather(1, targets[:, None].to(logits.device)).sum()
            (grads,) = torch.autograd.grad(score, activations)
    finally:
        model.train(was_training)
    raw = _combine(method, activations.detach().float(), grads.float())
    maps = _scale(
        F.interpolate(raw[:, None], size=images.shape[-2:], mode="bilinear", align_corners=False)[:, 0]
    )
    return CamResult(maps, raw, logits.detach(), targets, layer, method)


def _run(model: nn.Module, images: Tensor, index: int) -> tuple[Tensor, Tensor]:
    """(the layer's output as a leaf that requires grad, the logits computed from it)."""
    features = model.features
    with torch.no_grad():  # channels-last: the same values, faster convolutions
        x = features[: index + 1](images.contiguous(memory_format=torch.channels_last))
    # the backward pass runs in the default layout (channels-last input gradients through VGG's convolutions measured
    # up to 1% off on CPU; see vggnets.features.lpips)
    activations = x.detach().contiguous().requires_grad_(True)
    with torch.enable_grad():
        x = activations
        for i, module in enumerate(features[index + 1 :]):
            if i == 0 and getattr(module, "inplace", False):
                x = x.clone()  # an in-place module must not overwrite the leaf
            x = module(x)
        logits = model.classifier(torch.flatten(model.avgpool(x), 1))
    return activations, logits


def _combine(method: str, a: Tensor, g: Tensor) -> Tensor:
    """The method's map (N, h, w) from activations and gradients (N, C, h, w), after the ReLU."""
    if method == "gradcam":
        weights = g.mean((2, 3), keepdim=True)
        out = (weights * a).sum(1)
    elif method == "gradcam++":
        g2 = g * g
        alpha = g2 / (2 * g2 + a.sum((2, 3), keepdim=True) * g2 * g + 1e-6)
        alpha = torch.where(g != 0, alpha, torch.zeros_like(alpha))
        weights = (g.clamp(min=0) * alpha).sum((2, 3), keepdim=True)
        out = (weights * a).sum(1)
    elif method == "xgradcam":
        weights = (g * a / (a.sum((2, 3), keepdim=True) + 1e-7)).sum((2, 3), keepdim=True)
        out = (weights * a).sum(1)
    elif method == "layercam":
        out = (g.clamp(min=0) * a).sum(1)
    else:  # hirescam
        out = (g * a).sum(1)
    return out.clamp(min=0)


def _scale(maps: Tensor) -> Tensor:
    """Per map: minus its minimum, divided by its maximum, so it spans [0, 1] (a map below 1e-12 stays near 0)."""
    flat = maps.flatten(1)
    flat = flat - flat.min(1, keepdim=True).values
    flat = flat / flat.max(1, keepdim=True).values.clamp(min=1e-12)
    return flat.view_as(maps)


def _targets(target: TargetArg, logits: Tensor) -> Tensor:
    """One class index per image, checked against the number of classes."""
    n, classes = logits.shape
    if target is None:
        target = "top1"
    if isinstance(target, str):
        rank = target.lower().removeprefix("top")
        if not target.lower().startswith("top") or not rank.isdigit() or not 1 <= int(rank) <= classes:
            raise ValueError(
                f"target {target!r} is not understood; use a class index (0 to {classes - 1}), 'top1' for each "
                f"image's top class, or 'topK' (K from 1 to {classes}) for its K-th class"
            )
        return logits.argsort(1, descending=True)[:, int(rank) - 1].cpu()
    if isinstance(target, Tensor):
        targets = target.detach().to("cpu", torch.int64).flatten()
    elif isinstance(target, int):
        targets = torch.full((n,), target, dtype=torch.int64)
    else:
        targets = torch.tensor([int(t) for t in target], dtype=torch.int64)
    if targets.numel() == 1 and n > 1:
        targets = targets.expand(n)
    if targets.numel() != n:
        raise ValueError(f"got {targets.numel()} targets for {n} images; give one per image, or one for all")
    bad = targets[(targets < 0) | (targets >= classes)]
    if bad.numel():
        raise ValueError(
            f"target class {int(bad[0])} is out of range: the model has {classes} classes (0 to {classes - 1})"
        )
    return targets.clone()


def _check_method(method: str) -> str:
    key = method.lower().replace("-", "").replace("_", "").replace("pp", "++")
    if key not in METHODS:
        raise ValueError(f"unknown CAM method {method!r}; choose one of: {', '.join(METHODS)}")
    return key


def _layer_message(layer: str, names: list[str], model: nn.Module) -> str:
    model_name = getattr(model, "name", None) or type(model).__name__
    if layer in HEAD_NAMES:
        why = f"{layer} is a layer of the classifier, which has no spatial map"
    else:
        why = f"{model_name} has no layer {layer!r}"
    return f"{why}; a class activation map needs a layer of the convolutional part: {', '.join(names)}"

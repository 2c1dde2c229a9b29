"""Neural style transfer (Gatys, Ecker, Bethge 2016): optimise an image so its VGG features match a content and styles.

The recipe is the paper's and the PyTorch tutorial's ("Neural Transfer Using PyTorch"): a frozen VGG19, images in
[0, 1] normalised as the weights expect (ImageNet mean/std for torchvision's weights), a content term (mean squared
error of the feature maps at ``conv4_2``), a style term (mean squared error of the Gram matrices ``F F^T / (C H W)`` at
``conv1_1 ... conv5_1``, equal layer weights), an optional total-variation term, and L-BFGS (or Adam) on the pixels,
clamped to [0, 1] after every step. Layer names are :mod:`vggnets.features`' (``conv*`` is the pre-activation,
``relu*`` the rectified map), so Gatys' Caffe blobs, which held the rectified maps, are ``relu1_1 ... relu5_1``.

The features come from :class:`~vggnets.features.FeatureExtractor` and the normalisation and Gram matrices from
:class:`~vggnets.features.losses.PerceptualLoss` and :func:`~vggnets.features.losses.gram_matrix`: one implementation
of each in the package. Several styles are blended by matching the weighted mean of their Gram matrices, which has the
same gradient as the weighted sum of the per-style losses (the two differ by a constant) at the cost of one.
"""

from __future__ import annotations

import contextlib
import copy
import math
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from ..core.vgg import VGG
from ..errors import VggnetsError
from ..models.builders import WeightsArg, build
from ..models.weights import resolve_weights
from .losses import PerceptualLoss, gram_matrix

__all__ = [
    "DEFAULT_CONTENT_LAYERS",
    "DEFAULT_STYLE_LAYERS",
    "OPTIMIZERS",
    "StyleResult",
    "StyleStep",
    "StyleTransfer",
    "luminance_transfer",
    "stylize",
    "total_variation",
]

#: Gatys et al.'s content layer.
DEFAULT_CONTENT_LAYERS = ("conv4_2",)
#: Gatys et al.'s style layers, the first convolution of each stage.
DEFAULT_STYLE_LAYERS = ("conv1_1", "conv2_1", "conv3_1", "conv4_1", "conv5_1")
#: Optimisers on the pixels and their default learning rates (L-BFGS: the tutorial's; Adam: on the [0, 1] scale).
OPTIMIZERS = {"lbfgs": 1.0, "adam": 0.02}
INITS = ("content", "noise")
POOLS = ("max", "avg")
PRECISIONS = ("auto", "fp32", "bf16")

ImageInput = Tensor | str | Path

# RGB -> (Y, Cb, Cr) of ITU-R BT.601, without offsets (the chroma of grey is 0).
_YCBCR = torch.tensor(
    [[0.299, 0.587, 0.114], [-0.168736, -0.331264, 0.5], [0.5, -0.418688, -0.081312]], dtype=torch.float64
)


@dataclass
class StyleStep:
    """The losses measured by one optimisation step (one forward and backward pass), weighted as they are summed.

    ``total = content + style + tv``; each term already includes its weight (``content_weight * content loss`` ...).
    The losses are those of the image the step started from.
    """

    step: int
    total: float
    content: float
    style: float
    tv: float
    seconds: float = 0.0  #: wall time since the optimisation started, at the end of this step

    def to_dict(self) -> dict[str, float | int]:
        """A plain dict (for JSON)."""
        return asdict(self)


@dataclass
class StyleResult:
    """The stylised image, float32 (3, H, W) in [0, 1] on the CPU, and the loss of every step."""

    image: Tensor
    history: list[StyleStep] = field(default_factory=list)

    def to_uint8(self) -> Tensor:
        """The image as uint8 (3, H, W), rounded."""
        return to_uint8(self.image)


def to_uint8(image: Tensor) -> Tensor:
    """Float images in [0, 1] -> uint8, rounded to the nearest level."""
    return image.detach().clamp(0, 1).mul(255).round().to(torch.uint8).cpu()


def total_variation(x: Tensor) -> Tensor:
    """Mean squared difference of vertically and horizontally neighbouring pixels, summed: a float32 scalar."""
    x = x.float()
    return (x[..., 1:, :] - x[..., :-1, :]).pow(2).mean() + (x[..., :, 1:] - x[..., :, :-1]).pow(2).mean()


def luminance_transfer(stylized: Tensor, content: Tensor) -> Tensor:
    """The stylised image's luminance with the content image's chroma (YCbCr, BT.601), clamped to [0, 1].

    Gatys et al.'s "luminance-only transfer" (Preserving Color in Neural Artistic Style Transfer, 2016) applied to the
    result: the colours stay the content's, the texture and shading are the style's. Both images (..., 3, H, W) in
    [0, 1], of the same size.
    """
    if stylized.shape != content.shape:
        raise ValueError(
            f"luminance_transfer needs images of one shape, got {tuple(stylized.shape)} and {tuple(content.shape)}"
        )
    forward = _YCBCR.to(device=stylized.device, dtype=torch.float32)
    inverse = torch.linalg.inv(_YCBCR).to(device=stylized.device, dtype=torch.float32)
    luma = torch.einsum("ij,...jhw->...ihw", forward[:1], stylized.float())
    chroma = torch.einsum("ij,...jhw->...ihw", forward[1:], content.float())
    return torch.einsum("ij,...jhw->...ihw", inverse, torch.cat([luma, chroma], dim=-3)).clamp(0, 1)


def _with_average_pooling(model: VGG) -> VGG:
    """A shallow copy of ``model`` whose max-poolings are 2x2 average poolings; parameters shared, ``model`` untouched."""
    shell = copy.copy(model)
    shell._modules = dict(model._modules)  # a new module table: the original keeps its features
    shell.features = nn.Sequential(
        *(nn.AvgPool2d(kernel_size=2, stride=2) if isinstance(m, nn.MaxPool2d) else m for m in model.features)
    )
    return shell


def _as_image(image: ImageInput, what: str) -> Tensor:
    """A path or tensor -> float32 (3, H, W) in [0, 1] on the CPU."""
    if isinstance(image, (str, Path)):
        from ..io.images import read_image  # torchvision is loaded only when files are read

        image = read_image(image)
    if not isinstance(image, Tensor):
        raise TypeError(f"{what} must be an image tensor or a file path, not {type(image).__name__}")
    if image.dim() == 4 and image.shape[0] == 1:
        image = image[0]
    if image.dim() != 3 or image.shape[0] != 3:
        raise ValueError(f"{what} must be an RGB image shaped (3, H, W), got {tuple(image.shape)}")
    if image.dtype == torch.uint8:
        return image.detach().cpu().float().div(255)
    if not image.is_floating_point():
        raise ValueError(f"{what} must be uint8 or floating point in [0, 1], got {image.dtype}")
    image = image.detach().cpu().float()
    if not torch.isfinite(image).all():
        raise ValueError(f"{what} contains NaN or infinite values")
    return image.clamp(0, 1)


def _resize_long_side(image: Tensor, size: int | None) -> Tensor:
    """Resize (3, H, W) so that its longer side is ``size`` (bilinear, antialiased when shrinking); None keeps it."""
    if size is None:
        return image
    h, w = image.shape[-2:]
    if max(h, w) == size:
        return image
    scale = size / max(h, w)
    shape = (max(1, round(h * scale)), max(1, round(w * scale)))
    out = F.interpolate(image[None], size=shape, mode="bilinear", align_corners=False, antialias=scale < 1)
    return out[0].clamp(0, 1)


def _check_weight(value: float, what: str) -> float:
    value = float(value)
    if not (math.isfinite(value) and value >= 0):
        raise ValueError(f"{what} must be a finite number >= 0, got {value}")
    return value


def _blend_weights(blend: Sequence[float] | None, count: int) -> list[float]:
    if blend is None:
        return [1.0 / count] * count
    values = [_check_weight(v, "every style_blend weight") for v in blend]
    if len(values) != count:
        raise ValueError(
            f"style_blend has {len(values)} weights for {count} style images; give one per style"
        )
    total = sum(values)
    if total <= 0:
        raise ValueError("style_blend weights must not all be 0")
    return [v / total for v in values]


def _checked_lr(
    steps: int, optimizer: str, init: str, size: int | None, style_size: int | None, lr: float | None
) -> float:
    """The learning rate to use (``lr``, else the optimizer's default); ValueError for any of the optimisation's
    settings out of range."""
    if not isinstance(steps, int) or steps < 1:
        raise ValueError(f"steps must be an integer >= 1, got {steps!r}")
    if optimizer not in OPTIMIZERS:
        raise ValueError(f"optimizer must be one of {', '.join(OPTIMIZERS)}, got {optimizer!r}")
    if init not in INITS:
        raise ValueError(f"init must be one of {', '.join(INITS)}, got {init!r}")
    for value, what in ((size, "size"), (style_size, "style_size")):
        if value is not None and (not isinstance(value, int) or value < 1):
            raise ValueError(f"{what} must be a positive number of pixels (the long side), got {value!r}")
    lr = OPTIMIZERS[optimizer] if lr is None else float(lr)
    if not (math.isfinite(lr) and lr > 0):
        raise ValueError(f"lr must be a finite number > 0, got {lr}")
    return lr


def _start_image(content: Tensor, init: str, seed: int | None) -> Tensor:
    """The image the optimisation starts from, on the content's device: the content, or uniform noise seeded by
    ``seed`` (drawn on the CPU, so a seed gives the same start on every device)."""
    if init == "content":
        return content.clone()
    generator = torch.Generator()
    if seed is None:
        generator.seed()
    else:
        generator.manual_seed(seed)
    return torch.rand(content.shape, generator=generator).to(content.device)


def _pixel_optimizer(x: Tensor, optimizer: str, lr: float) -> torch.optim.Optimizer:
    """L-BFGS or Adam on the pixels ``x``."""
    if optimizer == "lbfgs":
        # One evaluation per step() call (max_iter=1); the curvature history persists between calls.
        return torch.optim.LBFGS([x], lr=lr, max_iter=1, history_size=100)
    return torch.optim.Adam([x], lr=lr)


def _optimise(
    x: Tensor,
    optim: torch.optim.Optimizer,
    losses: Callable[[], tuple[Tensor, Tensor, Tensor]],
    steps: int,
    after_step: Callable[[StyleStep], None],
) -> list[StyleStep]:
    """``steps`` steps of ``optim`` on the pixels ``x`` (clamped to [0, 1] after each) minimising the sum of
    ``losses()``; ``after_step(record)`` after each. VggnetsError when the loss stops being finite."""
    history: list[StyleStep] = []
    measured: list[tuple[float, float, float]] = []

    def closure() -> Tensor:
        optim.zero_grad(set_to_none=True)
        c, s, t = losses()
        total = c + s + t
        total.backward()
        measured.append((c.item(), s.item(), t.item()))
        return total

    began = time.perf_counter()
    for step in range(1, steps + 1):
        if isinstance(optim, torch.optim.LBFGS):
            optim.step(closure)
        else:
            closure()
            optim.step()
        with torch.no_grad():
            x.clamp_(0, 1)
        record = _step_record(step, *measured[-1], time.perf_counter() - began)
        history.append(record)
        after_step(record)
    return history


def _step_record(step: int, c: float, s: float, t: float, seconds: float) -> StyleStep:
    """The record of one step; VggnetsError if its loss is not finite (the weights or loss weights overflow)."""
    record = StyleStep(step, c + s + t, c, s, t, seconds)
    if not math.isfinite(record.total):
        raise VggnetsError(
            f"the loss became {record.total} at step {step} (content {c}, style {s}, tv {t}); the weights "
            "file or the loss weights give values out of range. Lower the style, content or tv weight, or "
            "the learning rate."
        )
    return record


class StyleTransfer(nn.Module):
    """A frozen VGG set up for style transfer; :meth:`run` stylises images (the model is built once for many runs).

    ``model``: a model name (default ``vgg19``), built with ``vggnets.build(model, weights=weights)``, or a
    :class:`~vggnets.models.VGG` instance, used as it is (shared and frozen in place; then ``weights`` only chooses the
    normalisation, as for :class:`~vggnets.features.losses.PerceptualLoss`). ``weights``: ``"DEFAULT"`` (the pretrained
    ImageNet weights), any tag or member, or the path of any weights file. ``pool="avg"`` replaces the max-poolings by
    average poolings (the paper's choice; the network is not retrained or rescaled), without changing ``model``.

    ``device``: where to run (default: the model's device, the CPU for a name). ``precision``: ``"auto"`` (bfloat16
    autocast on CUDA, float32 elsewhere), ``"fp32"`` or ``"bf16"`` (autocast; Gram matrices and losses stay float32).
    Only the layers up to the last one used run, and only the convolutional part is moved to ``device``.
    """

    def __init__(
        self,
        model: str | VGG = "vgg19",
        *,
        weights: WeightsArg = "DEFAULT",
        content_layers: Sequence[str] = DEFAULT_CONTENT_LAYERS,
        style_layers: Sequence[str] = DEFAULT_STYLE_LAYERS,
        style_layer_weights: Sequence[float] | None = None,
        pool: str = "max",
        device: str | torch.device | None = None,
        precision: str = "auto",
        progress: bool = False,
    ) -> None:
        super().__init__()
        if pool not in POOLS:
            raise ValueError(f"pool must be one of {', '.join(POOLS)}, got {pool!r}")
        if precision not in PRECISIONS:
            raise ValueError(f"precision must be one of {', '.join(PRECISIONS)}, got {precision!r}")
        content_layers = (content_layers,) if isinstance(content_layers, str) else tuple(content_layers)
        style_layers = (style_layers,) if isinstance(style_layers, str) else tuple(style_layers)
        if not style_layers:
            raise ValueError("style transfer needs at least one style layer")
        if isinstance(model, str):
            weights = resolve_weights(model, weights)
            model = build(model, weights=weights, progress=progress)
        elif not isinstance(model, nn.Module):
            raise TypeError(f"model must be a model name or a VGG module, not {type(model).__name__}")
        if device is None:
            device = next(model.parameters()).device
        device = torch.device(device)
        if pool == "avg":
            model = _with_average_pooling(model)
        # PerceptualLoss freezes the model and owns the normalisation and the extractor; its loss is not used here
        # (the targets are computed once, not at every step).
        self.perceptual = PerceptualLoss(
            model,
            layers=content_layers,
            style_layers=style_layers,
            style_layer_weights=style_layer_weights,
            weights=weights,
        )
        model.features.to(device)
        self.perceptual.mean = self.perceptual.mean.to(device)
        self.perceptual.std = self.perceptual.std.to(device)
        self.content_layers = content_layers
        self.style_layers = style_layers
        self.style_layer_weights = self.perceptual.style_layer_weights
        self.device = device
        self.pool = pool
        if precision == "auto":
            precision = "bf16" if device.type == "cuda" else "fp32"
        if precision == "bf16" and not torch.amp.is_autocast_available(device.type):
            raise ValueError(f"bf16 autocast is not available on {device.type}; use precision='fp32'")
        self.precision = precision

    @property
    def extractor(self):
        """The :class:`~vggnets.features.FeatureExtractor` (content layers, then style layers)."""
        return self.perceptual.extractor

    @property
    def min_size(self) -> int:
        """The smallest image side the layers accept (16 for ``conv5_1``)."""
        return self.extractor.min_size

    def _autocast(self) -> contextlib.AbstractContextManager:
        if self.precision == "bf16":
            return torch.autocast(self.device.type, dtype=torch.bfloat16)
        return contextlib.nullcontext()

    def features(self, image: Tensor) -> dict[str, Tensor]:
        """The used layers' outputs for images (N, 3, H, W) in [0, 1] (autocast as configured)."""
        with self._autocast():
            return self.extractor(self.perceptual.normalize(image))

    def targets(
        self, content: Tensor, styles: Sequence[Tensor], blend: Sequence[float]
    ) -> tuple[dict[str, Tensor], dict[str, Tensor]]:
        """Content feature maps and the blended style Gram matrices (float32, no graph) for images on the device."""
        with torch.no_grad():
            content_maps = {
                name: t.float()
                for name, t in self.features(content[None]).items()
                if name in self.content_layers
            }
            grams: dict[str, Tensor] = {}
            for style, weight in zip(styles, blend):
                maps = self.features(style[None])
                for name in self.style_layers:
                    g = gram_matrix(maps[name]) * weight
                    grams[name] = g if name not in grams else grams[name] + g
        return content_maps, grams

    def losses(
        self,
        image: Tensor,
        content_maps: dict[str, Tensor],
        grams: dict[str, Tensor],
        *,
        content_weight: float,
        style_weight: float,
        tv_weight: float,
    ) -> tuple[Tensor, Tensor, Tensor]:
        """The weighted content, style and TV terms (float32 scalars, differentiable) for an image (1, 3, H, W)."""
        maps = self.features(image)
        zero = torch.zeros((), device=image.device)
        content = zero
        for name, weight in zip(self.content_layers, self.perceptual.layer_weights):
            content = content + weight * F.mse_loss(maps[name].float(), content_maps[name])
        style = zero
        for name, weight in zip(self.style_layers, self.style_layer_weights):
            style = style + weight * F.mse_loss(gram_matrix(maps[name]), grams[name])
        tv = total_variation(image) if tv_weight else zero
        return content_weight * content, style_weight * style, tv_weight * tv

    def run(
        self,
        content: ImageInput,
        style: ImageInput | Sequence[ImageInput],
        *,
        size: int | None = 512,
        style_size: int | None = None,
        steps: int = 300,
        optimizer: str = "lbfgs",
        lr: float | None = None,
        content_weight: float = 1.0,
        style_weight: float = 1e6,
        tv_weight: float = 0.0,
        style_blend: Sequence[float] | None = None,
        init: str = "content",
        preserve_color: bool = False,
        seed: int | None = None,
        callback: Callable[[StyleStep, Tensor], None] | None = None,
    ) -> StyleResult:
        """Stylise ``content`` with one style image or several (blended by ``style_blend``); see :func:`stylize`."""
        lr = _checked_lr(steps, optimizer, init, size, style_size, lr)
        content_weight = _check_weight(content_weight, "content_weight")
        style_weight = _check_weight(style_weight, "style_weight")
        tv_weight = _check_weight(tv_weight, "tv_weight")
        styles = [style] if isinstance(style, (Tensor, str, Path)) else list(style)
        if not styles:
            raise ValueError("at least one style image is needed")
        blend = _blend_weights(style_blend, len(styles))
        content_image, style_images = self._images(content, styles, size, style_size)

        content_image = content_image.to(self.device)
        content_maps, grams = self.targets(content_image, [s.to(self.device) for s in style_images], blend)
        x = _start_image(content_image, init, seed)[None].requires_grad_(True)

        def output(image: Tensor) -> Tensor:
            image = image.detach()[0].clamp(0, 1)
            return luminance_transfer(image, content_image) if preserve_color else image

        def losses() -> tuple[Tensor, Tensor, Tensor]:
            return self.losses(
                x,
                content_maps,
                grams,
                content_weight=content_weight,
                style_weight=style_weight,
                tv_weight=tv_weight,
            )

        def after_step(record: StyleStep) -> None:
            if callback is not None:
                callback(record, output(x))

        history = _optimise(x, _pixel_optimizer(x, optimizer, lr), losses, steps, after_step)
        return StyleResult(output(x).float().cpu(), history)

    def _images(
        self, content: ImageInput, styles: list[ImageInput], size: int | None, style_size: int | None
    ) -> tuple[Tensor, list[Tensor]]:
        """The content image resized to ``size`` and the style images to ``style_size`` (default: the content's long
        side), on the CPU; ValueError for one too small for the layers after resizing."""
        content_image = _resize_long_side(_as_image(content, "the content image"), size)
        long_side = max(content_image.shape[-2:])
        style_images = [
            _resize_long_side(_as_image(s, f"style image {i + 1}"), style_size or long_side)
            for i, s in enumerate(styles)
        ]
        for what, img in [("the content image", content_image)] + [
            (f"style image {i + 1}", s) for i, s in enumerate(style_images)
        ]:
            if min(img.shape[-2:]) < self.min_size:
                raise ValueError(
                    f"{what} is {img.shape[-1]}x{img.shape[-2]} pixels after resizing; layers up to "
                    f"{self.extractor.layers[-1]} need at least {self.min_size} pixels on the short side (use a "
                    "larger size, or an image that is less elongated)"
                )
        return content_image, style_images

    def extra_repr(self) -> str:
        return (
            f"content_layers={list(self.content_layers)}, style_layers={list(self.style_layers)}, "
            f"pool={self.pool!r}, device={self.device}, precision={self.precision!r}"
        )


def stylize(
    content: ImageInput,
    style: ImageInput | Sequence[ImageInput],
    *,
    model: str | VGG = "vgg19",
    weights: WeightsArg = "DEFAULT",
    size: int | None = 512,
    style_size: int | None = None,
    steps: int = 300,
    optimizer: str = "lbfgs",
    lr: float | None = None,
    content_layers: Sequence[str] = DEFAULT_CONTENT_LAYERS,
    style_layers: Sequence[str] = DEFAULT_STYLE_LAYERS,
    style_layer_weights: Sequence[float] | None = None,
    content_weight: float = 1.0,
    style_weight: float = 1e6,
    tv_weight: float = 0.0,
    style_blend: Sequence[float] | None = None,
    init: str = "content",
    preserve_color: bool = False,
    pool: str = "max",
    device: str | torch.device | None = None,
    precision: str = "auto",
    seed: int | None = None,
    callback: Callable[[StyleStep, Tensor], None] | None = None,
    progress: bool = False,
) -> StyleResult:
    """Neural style transfer (Gatys et al. 2016): the ``content`` image painted in the ``style`` image's manner.

    ``content`` and ``style`` (one image or a list) are file paths or RGB tensors (3, H, W) / (1, 3, H, W), uint8 or
    float in [0, 1]. The content image is resized so its long side is ``size`` (None keeps it), each style image so its
    long side is ``style_size`` (default: the content's). Several styles are blended with ``style_blend`` weights
    (default equal; normalised to sum to 1).

    The image, initialised from the content (``init="content"``) or from uniform noise (``"noise"``, seeded by
    ``seed``), is optimised for ``steps`` steps of ``optimizer`` (``"lbfgs"``, one function evaluation per step, lr 1;
    or ``"adam"``, lr 0.02) to minimise::

        content_weight * sum_l mse(F_l(x), F_l(content))            l in content_layers (conv4_2)
      + style_weight * sum_l w_l * mse(G(F_l(x)), sum_k b_k G(F_l(style_k)))   l in style_layers (conv1_1 ... conv5_1)
      + tv_weight * total_variation(x)

    with ``G`` :func:`~vggnets.features.losses.gram_matrix` (``F F^T / (C H W)``), ``w_l`` ``style_layer_weights``
    (default 1 each) and ``b_k`` the blend weights; the defaults are the PyTorch tutorial's weights (content 1, style
    1e6, no TV term). Pixels are clamped to [0, 1] after every step. ``preserve_color`` keeps the content's colours
    (:func:`luminance_transfer`). ``callback(step, image)`` is called after every step with the losses and the current
    image (3, H, W) on the device. Model, weights, pooling, device and precision: see :class:`StyleTransfer`.

    Returns a :class:`StyleResult`: the image (float32 (3, H, W) in [0, 1], CPU) and the loss history.

    Long only for its signature, docstring and the two calls that pass every keyword on: the keywords are spelled
    out so that ``help()``, IDEs and type checkers see them (the steps are :meth:`StyleTransfer.run`'s).
    """
    transfer = StyleTransfer(
        model,
        weights=weights,
        content_layers=content_layers,
        style_layers=style_layers,
        style_layer_weights=style_layer_weights,
        pool=pool,
        device=device,
        precision=precision,
        progress=progress,
    )
    return transfer.run(
        content,
        style,
        size=size,
        style_size=style_size,
        steps=steps,
        optimizer=optimizer,
        lr=lr,
        content_weight=content_weight,
        style_weight=style_weight,
        tv_weight=tv_weight,
        style_blend=style_blend,
        init=init,
        preserve_color=preserve_color,
        seed=seed,
        callback=callback,
    )

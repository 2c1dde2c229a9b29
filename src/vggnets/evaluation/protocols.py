"""The paper's evaluation protocols (arXiv 1409.1556, sections 3.2 and 4), as callables over decoded images.

Every protocol maps a list of uint8 RGB images of shape (3, H, W), of any sizes (as :func:`vggnets.data.read_image`
returns them), to float32 class posteriors (softmax probabilities) of shape (N, K) on the CPU:

- :class:`Center`: torchvision's protocol (resize the smaller side to 256, center crop 224), the one the published
  accuracies use. Exactly ``weights.transforms()`` followed by the model and a softmax.
- :class:`Dense`: the whole image at one scale Q through the fully-convolutional network
  (:class:`~vggnets.dense.FullyConvolutionalVGG`); the class score map is averaged spatially, then soft-maxed.
- :class:`MultiScale`: the mean of the dense posteriors at several scales (paper Table 4).
- :class:`MultiCrop`: a regular grid of 224x224 crops and their mirror images at several scales (paper Table 5).
- :class:`Average`: the mean of several protocols' posteriors: dense + multi-crop (Table 5), or an ensemble of models,
  each with its own protocol (Table 6).

Choices where the paper is ambiguous (they are the ones listed in the project's reference, section 3.7):

- Resizing: the smaller side to Q, bilinear with antialiasing, on the uint8 image, rounded back to uint8, by
  ``torchvision.transforms.functional.resize``, exactly as the center-crop preset does; the other side is
  ``int(Q * long / short)`` as torchvision computes it. Normalisation is the weights' own (``mean``/``std`` in [0, 1]
  scale; the Caffe-style FEATURES weights have ``std = 1/255``).
- Dense: the score map (logits) is averaged over positions, then soft-maxed; flips and scales are averaged as
  posteriors. The flipped view is the mirror image of the *resized* image (one resize per scale); it can differ from
  resizing the flipped original by one grey level on a few pixels (resizing does not commute exactly with flipping).
- Multi-crop: crop offsets ``round(linspace(0, side - crop, grid))`` along each axis (round half to even, computed
  exactly), the 25 crops and their 25 mirror images (the mirror of a crop is the crop of the mirrored image at the
  mirrored position), posteriors averaged uniformly over crops, flips and scales. A 1x1 grid is the centre crop.
- Batching: ``batch_size`` counts network inputs per forward pass (a mirror image counts as one input). Dense
  evaluation of whole images needs equal sizes within a batch, so images are grouped by their size after resizing and
  each group runs in batches of ``batch_size``; images of other sizes never share a batch (no padding, which would
  change the scores). Results do not depend on how a call's images are grouped, up to float rounding.

Protocols run the model on its own device (that of its first parameter) and in its own dtype, in eval mode and under
``torch.inference_mode()``; the model's training flags are restored afterwards. Preprocessing (decoding is the caller's)
resizes on the CPU and sends uint8 pixels to the device, except :class:`Center`, which calls the preset as is. The
resize and crop geometry is :mod:`vggnets.evaluation.geometry`'s, the cost estimates (``gmacs_per_image``) count
multiply-accumulates with :func:`vggnets.evaluation.cost.network_gmacs`.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from typing import TYPE_CHECKING, Any

import torch
from torch import Tensor, nn

from ..models.dense import MIN_DENSE_SIZE, FullyConvolutionalVGG
from .checks import int_arg, scales_arg
from .cost import network_gmacs
from .geometry import CROP_SIZE, crop_grid, resize_smaller_side, resized_size

if TYPE_CHECKING:
    from ..core.vgg import VGG

__all__ = [
    "PAPER_SCALES",
    "PROTOCOLS",
    "Average",
    "Center",
    "Dense",
    "MultiCrop",
    "MultiScale",
    "Protocol",
    "make_protocol",
    "paper_scales",
]

#: Protocol names accepted by :func:`make_protocol` (and ``vggnets evaluate --protocol``).
PROTOCOLS: tuple[str, ...] = ("center", "dense", "multiscale", "multicrop", "dense+multicrop")
#: Test scales Q of the paper's scale-jittered models (S in [256, 512]), paper section 4.2.
PAPER_SCALES: tuple[int, ...] = (256, 384, 512)
#: The single scale of dense evaluation by default: the middle of PAPER_SCALES (paper Table 3, jittered models).
DEFAULT_DENSE_SCALE = 384


def paper_scales(train_scale: int | None = None) -> tuple[int, ...]:
    """Test scales Q for multi-scale evaluation (paper section 4.2).

    ``None`` (a scale-jittered model, S in [256, 512], or unknown training scale): (256, 384, 512). A model trained at
    a fixed scale S: (S - 32, S, S + 32).
    """
    if train_scale is None:
        return PAPER_SCALES
    s = int_arg(
        train_scale, "train_scale", MIN_DENSE_SIZE + 32, " (the smallest test scale S - 32 must be >= 224)"
    )
    return (s - 32, s, s + 32)


# ------------------------------------------------------------------------------------------------------------
# Protocols


class Protocol:
    """Base of the protocols: ``protocol(images) -> (N, K) float32 posteriors on the CPU``."""

    #: "center", "dense", "multiscale", "multicrop", "dense+multicrop" or "ensemble".
    name: str = ""

    def __call__(self, images: Sequence[Tensor]) -> Tensor:
        """Class posteriors (softmax probabilities, rows sum to 1) for uint8 RGB images (3, H, W) of any sizes."""
        raise NotImplementedError

    def describe(self) -> dict[str, Any]:
        """JSON-ready description: protocol, scales, flip, crops (224x224 crops per image), passes (network inputs
        per image), and the protocol's own settings."""
        raise NotImplementedError

    def gmacs_per_image(self, height: int, width: int) -> float:
        """Estimated GMACs this protocol spends on one image of ``height`` x ``width`` pixels (before resizing)."""
        raise NotImplementedError

    def __repr__(self) -> str:
        settings = ", ".join(
            f"{k}={v!r}" for k, v in self.describe().items() if k not in ("protocol", "parts")
        )
        return f"{type(self).__name__}({settings})"


def _check_images(images: Sequence[Tensor]) -> list[Tensor]:
    if isinstance(images, Tensor):
        if images.dim() == 4:
            images = list(images)
        else:
            raise ValueError(
                f"pass a list of (3, H, W) uint8 images (or one (N, 3, H, W) batch), got a tensor of shape "
                f"{tuple(images.shape)}"
            )
    images = list(images)
    for i, img in enumerate(images):
        if not isinstance(img, Tensor):
            raise TypeError(
                f"image {i} is a {type(img).__name__}, not a tensor; decode it with vggnets.data.read_image"
            )
        if img.dim() != 3 or img.shape[0] != 3:
            raise ValueError(
                f"image {i} has shape {tuple(img.shape)}; expected an RGB image shaped (3, H, W)"
            )
        if img.dtype != torch.uint8:
            raise ValueError(
                f"image {i} has dtype {img.dtype}; expected uint8 pixels (as vggnets.data.read_image gives)"
            )
        if img.shape[1] < 1 or img.shape[2] < 1:
            raise ValueError(f"image {i} is empty ({img.shape[1]}x{img.shape[2]} pixels)")
    return images


@contextmanager
def _eval_mode(model: nn.Module) -> Iterator[None]:
    """Put every module of ``model`` in eval mode, then restore each module's own training flag."""
    modes = [(m, m.training) for m in model.modules()]
    model.eval()
    try:
        yield
    finally:
        for m, training in modes:
            m.training = training


def _chunks(items: list, size: int) -> Iterator[list]:
    for start in range(0, len(items), size):
        yield items[start : start + size]


class _ModelProtocol(Protocol):
    """A protocol that runs one model: normalisation, device, eval mode, inference mode."""

    def __init__(
        self, model: VGG, *, mean: Sequence[float], std: Sequence[float], batch_size: int = 16
    ) -> None:
        if (
            not isinstance(model, nn.Module)
            or not hasattr(model, "features")
            or not hasattr(model, "classifier")
        ):
            raise TypeError(f"model must be a VGG module, got {type(model).__name__}")
        self.model = model
        self.mean = _stats(mean, "mean")
        self.std = _stats(std, "std")
        if any(s == 0 for s in self.std):
            raise ValueError(f"std must not contain zeros, got {self.std}")
        self.batch_size = int_arg(batch_size, "batch_size", 1)

    @property
    def num_classes(self) -> int:
        return self.model.classifier[6].out_features

    def __call__(self, images: Sequence[Tensor]) -> Tensor:
        images = _check_images(images)
        if not images:
            return torch.empty(0, self.num_classes)
        with _eval_mode(self.model), torch.inference_mode():
            probs = self._run(images)
        return probs.float().cpu().clone()  # a normal tensor (not an inference tensor), usable anywhere

    def _run(self, images: list[Tensor]) -> Tensor:
        """Posteriors (N, K) of checked images; called in eval and inference mode."""
        raise NotImplementedError

    def _param(self) -> Tensor:
        return next(self.model.parameters())

    def _normalize(self, batch: Tensor) -> Tensor:
        """uint8 (N, 3, H, W) on any device -> normalised float input in the model's dtype (the preset's arithmetic)."""
        from torchvision.transforms import functional as TF

        x = TF.normalize(TF.convert_image_dtype(batch, torch.float32), mean=self.mean, std=self.std)
        return x.to(self._param().dtype)

    @staticmethod
    def _posteriors(logits: Tensor) -> Tensor:
        return logits.float().softmax(dim=1).cpu()

    def _base_description(
        self, name: str, scales: Sequence[int], flip: bool, crops: int, passes: int
    ) -> dict:
        return {"protocol": name, "scales": list(scales), "flip": flip, "crops": crops, "passes": passes}


def _stats(values: Sequence[float], what: str) -> list[float]:
    try:
        out = [float(v) for v in values]
    except TypeError:
        raise ValueError(f"{what} must be a sequence of 3 (or 1) numbers, got {values!r}") from None
    if len(out) not in (1, 3):
        raise ValueError(f"{what} must have 3 values (one per RGB channel) or 1, got {len(out)}")
    return out


class Center(_ModelProtocol):
    """torchvision's protocol: resize the smaller side to ``resize_size``, center-crop ``crop_size``, softmax.

    The preprocessing is :class:`vggnets.core.transforms.ImageClassification`, i.e. exactly ``weights.transforms()`` for the
    same sizes and normalisation; images are then stacked in batches of ``batch_size``.
    """

    name = "center"

    def __init__(
        self,
        model: VGG,
        *,
        mean: Sequence[float],
        std: Sequence[float],
        resize_size: int = 256,
        crop_size: int = CROP_SIZE,
        batch_size: int = 16,
    ) -> None:
        super().__init__(model, mean=mean, std=std, batch_size=batch_size)
        self.crop_size = int_arg(crop_size, "crop_size", 32, " (five 2x2 poolings)")
        self.resize_size = int_arg(
            resize_size, "resize_size", self.crop_size, f" (the center crop of {self.crop_size} must fit)"
        )
        from ..core.transforms import ImageClassification

        self.transform = ImageClassification(
            crop_size=self.crop_size, resize_size=self.resize_size, mean=self.mean, std=self.std
        )

    def _run(self, images: list[Tensor]) -> Tensor:
        param = self._param()
        out = []
        for chunk in _chunks(images, self.batch_size):
            x = torch.stack([self.transform(img) for img in chunk]).to(param.device, param.dtype)
            out.append(self._posteriors(self.model(x)))
        return torch.cat(out)

    def describe(self) -> dict[str, Any]:
        return {
            **self._base_description(self.name, [self.resize_size], False, 1, 1),
            "resize_size": self.resize_size,
            "crop_size": self.crop_size,
        }

    def gmacs_per_image(self, height: int, width: int) -> float:
        return network_gmacs(self.model, self.crop_size, self.crop_size)


class EngineCenter(Protocol):
    """The center protocol run by the fast inference engine (:class:`vggnets.inference.engine.Predictor`): the same resize and
    crop, done on uint8, normalised inside the predictor's graph, at the predictor's precision."""

    name = "center"

    def __init__(self, predictor: Any, model: VGG) -> None:
        self.predictor = predictor
        self.model = model  # for the cost estimate only

    @property
    def num_classes(self) -> int:
        return self.predictor.num_classes

    def __call__(self, images: Sequence[Tensor]) -> Tensor:
        images = _check_images(images)
        if not images:
            return torch.empty(0, self.num_classes)
        crops = torch.stack([self.predictor.preprocess(img) for img in images])
        return self.predictor(crops).softmax(dim=1)

    def describe(self) -> dict[str, Any]:
        size = self.predictor.image_size
        info = self.predictor.info
        return {
            **{"protocol": self.name, "scales": [self.predictor.preprocess.resize_size[0]], "flip": False},
            **{
                "crops": 1,
                "passes": 1,
                "crop_size": size,
                "precision": info.precision,
                "compile": info.compile,
            },
        }

    def gmacs_per_image(self, height: int, width: int) -> float:
        size = self.predictor.image_size
        return network_gmacs(self.model, size, size)


class Dense(_ModelProtocol):
    """Dense evaluation at one scale (paper section 3.2): the whole image through the fully-convolutional network.

    Each image is resized so that its smaller side is ``scale`` (Q), normalised and run uncropped through
    :class:`~vggnets.dense.FullyConvolutionalVGG`; the class score map (logits, one per 7x7 window of the last feature
    map) is averaged over positions and soft-maxed. With ``flip=True`` the mirror image of the resized image is run too
    and the two posteriors are averaged.

    Batching: images whose resized (H, W) are equal are grouped, and each group runs in batches of ``batch_size``
    network inputs (an image and its mirror image are two inputs); images of different sizes never share a batch.
    """

    name = "dense"

    def __init__(
        self,
        model: VGG,
        *,
        mean: Sequence[float],
        std: Sequence[float],
        scale: int = DEFAULT_DENSE_SCALE,
        flip: bool = False,
        batch_size: int = 16,
    ) -> None:
        super().__init__(model, mean=mean, std=std, batch_size=batch_size)
        if isinstance(scale, (list, tuple)):
            raise ValueError("Dense runs one scale; use MultiScale (protocol 'multiscale') for several")
        self.scale = int_arg(
            scale, "scale", MIN_DENSE_SIZE, " (fc6 as a 7x7 convolution needs a 7x7 feature map)"
        )
        self.flip = bool(flip)
        self.fcn = FullyConvolutionalVGG(model)

    def _run(self, images: list[Tensor]) -> Tensor:
        param = self._param()
        resized = [resize_smaller_side(img, self.scale) for img in images]
        views = [False, True] if self.flip else [False]
        groups: dict[tuple[int, int], list[tuple[int, bool]]] = {}
        for i, r in enumerate(resized):
            groups.setdefault((r.shape[1], r.shape[2]), []).extend((i, f) for f in views)
        parts: list[list[Tensor]] = [[] for _ in images]
        for items in groups.values():
            for chunk in _chunks(items, self.batch_size):
                batch = torch.stack([resized[i].flip(-1) if f else resized[i] for i, f in chunk])
                x = self._normalize(batch.to(param.device, non_blocking=True))
                probs = self._posteriors(self.fcn(x).mean(dim=(2, 3)))
                for (i, _), p in zip(chunk, probs):
                    parts[i].append(p)
        return torch.stack([torch.stack(p).mean(0) for p in parts])

    def describe(self) -> dict[str, Any]:
        views = 2 if self.flip else 1
        return self._base_description(self.name, [self.scale], self.flip, 0, views)

    def gmacs_per_image(self, height: int, width: int) -> float:
        h, w = resized_size(height, width, self.scale)
        return (2 if self.flip else 1) * network_gmacs(self.model, h, w, dense=True)


class MultiScale(_ModelProtocol):
    """Multi-scale dense evaluation (paper section 4.2, Table 4): the mean of :class:`Dense` posteriors over scales."""

    name = "multiscale"

    def __init__(
        self,
        model: VGG,
        *,
        mean: Sequence[float],
        std: Sequence[float],
        scales: Sequence[int] = PAPER_SCALES,
        flip: bool = False,
        batch_size: int = 16,
    ) -> None:
        super().__init__(model, mean=mean, std=std, batch_size=batch_size)
        self.scales = scales_arg(
            scales, MIN_DENSE_SIZE, " (fc6 as a 7x7 convolution needs a 7x7 feature map)"
        )
        self.flip = bool(flip)
        self.dense = [
            Dense(model, mean=mean, std=std, scale=q, flip=flip, batch_size=batch_size) for q in self.scales
        ]

    def _run(self, images: list[Tensor]) -> Tensor:
        return torch.stack([d._run(images) for d in self.dense]).mean(0)

    def describe(self) -> dict[str, Any]:
        views = 2 if self.flip else 1
        return self._base_description(self.name, self.scales, self.flip, 0, views * len(self.scales))

    def gmacs_per_image(self, height: int, width: int) -> float:
        return sum(d.gmacs_per_image(height, width) for d in self.dense)


class MultiCrop(_ModelProtocol):
    """Multi-crop evaluation (paper section 3.2, Table 5): ``grid`` x ``grid`` crops and their mirror images per scale.

    At each scale Q the image is resized so that its smaller side is Q, then cropped at the positions of
    :func:`crop_grid` (5x5 by default); with ``flip=True`` (the paper's protocol) every crop is also mirrored: 50 crops
    per scale, 150 over the three scales. All crops of all images run through the ordinary model (whose adaptive pool
    is the identity at 224) in batches of ``batch_size`` crops; the posteriors are averaged over crops, flips and scales.
    """

    name = "multicrop"

    def __init__(
        self,
        model: VGG,
        *,
        mean: Sequence[float],
        std: Sequence[float],
        scales: Sequence[int] = PAPER_SCALES,
        grid: int = 5,
        flip: bool = True,
        crop_size: int = CROP_SIZE,
        batch_size: int = 16,
    ) -> None:
        super().__init__(model, mean=mean, std=std, batch_size=batch_size)
        self.crop_size = int_arg(crop_size, "crop_size", 32, " (five 2x2 poolings)")
        self.scales = scales_arg(
            scales, self.crop_size, f" (the {self.crop_size}x{self.crop_size} crops must fit)"
        )
        self.grid = int_arg(grid, "grid", 1)
        self.flip = bool(flip)

    @property
    def crops_per_image(self) -> int:
        return self.grid * self.grid * (2 if self.flip else 1) * len(self.scales)

    def _crops(self, images: list[Tensor], device: torch.device) -> Iterator[tuple[int, Tensor]]:
        """(image index, uint8 crop on the device), image by image, scale by scale, each crop then its mirror."""
        c = self.crop_size
        for i, img in enumerate(images):
            for q in self.scales:
                r = resize_smaller_side(img, q).to(device, non_blocking=True)
                for top, left in crop_grid(r.shape[1], r.shape[2], c, self.grid):
                    crop = r[:, top : top + c, left : left + c]
                    yield i, crop
                    if self.flip:
                        yield i, crop.flip(-1)

    def _run(self, images: list[Tensor]) -> Tensor:
        parts: list[list[Tensor]] = [[] for _ in images]
        buffer: list[tuple[int, Tensor]] = []

        def flush() -> None:
            x = self._normalize(torch.stack([crop for _, crop in buffer]))
            for (i, _), p in zip(buffer, self._posteriors(self.model(x))):
                parts[i].append(p)
            buffer.clear()

        for item in self._crops(images, self._param().device):
            buffer.append(item)
            if len(buffer) == self.batch_size:
                flush()
        if buffer:
            flush()
        return torch.stack([torch.stack(p).mean(0) for p in parts])

    def describe(self) -> dict[str, Any]:
        crops = self.crops_per_image
        return {
            **self._base_description(self.name, self.scales, self.flip, crops, crops),
            "grid": self.grid,
            "crop_size": self.crop_size,
        }

    def gmacs_per_image(self, height: int, width: int) -> float:
        return self.crops_per_image * network_gmacs(self.model, self.crop_size, self.crop_size)


class Average(Protocol):
    """The mean of several protocols' posteriors.

    ``name="dense+multicrop"``: multi-scale dense and multi-crop of one model (paper Table 5). ``name="ensemble"``:
    several models, each with its own protocol (paper Table 6). The parts must give the same number of classes.
    """

    def __init__(self, protocols: Sequence[Protocol], name: str = "ensemble") -> None:
        self.protocols = list(protocols)
        if not self.protocols:
            raise ValueError("Average needs at least one protocol")
        for p in self.protocols:
            if not isinstance(p, Protocol):
                raise TypeError(f"Average averages Protocol objects, got {type(p).__name__}")
        if not isinstance(name, str) or not name:
            raise ValueError(f"name must be a non-empty string, got {name!r}")
        self.name = name

    def __call__(self, images: Sequence[Tensor]) -> Tensor:
        images = _check_images(images)
        outputs = [p(images) for p in self.protocols]
        shapes = {tuple(o.shape) for o in outputs}
        if len(shapes) > 1:
            raise ValueError(
                f"the averaged protocols give posteriors of different shapes {sorted(shapes)}: the models must have "
                "the same classes"
            )
        return torch.stack(outputs).mean(0)

    def describe(self) -> dict[str, Any]:
        """Scales: the union of the parts'; flip: True when every part flips; crops and passes: the parts' sums."""
        parts = [p.describe() for p in self.protocols]
        return {
            "protocol": self.name,
            "scales": sorted({q for d in parts for q in d.get("scales") or []}),
            "flip": all(d.get("flip", False) for d in parts),
            "crops": sum(d.get("crops") or 0 for d in parts),
            "passes": sum(d.get("passes") or 0 for d in parts),
            "parts": parts,
        }

    def gmacs_per_image(self, height: int, width: int) -> float:
        return sum(p.gmacs_per_image(height, width) for p in self.protocols)


def make_protocol(
    name: str,
    model: VGG,
    *,
    mean: Sequence[float],
    std: Sequence[float],
    scales: Sequence[int] | None = None,
    flip: bool = False,
    batch_size: int = 16,
) -> Protocol:
    """A protocol by name (one of :data:`PROTOCOLS`).

    ``scales`` default: (384,) for "dense", (256, 384, 512) for the others. "dense" takes exactly one scale (use
    "multiscale" for several). ``flip`` applies to the dense protocols (and the dense part of "dense+multicrop");
    "multicrop" always uses both flips, as the paper does. "center" is torchvision's fixed preset (resize 256, center
    crop 224) and ignores ``scales`` and ``flip``.
    """
    if name not in PROTOCOLS:
        raise ValueError(f"unknown protocol {name!r}; choose one of: {', '.join(PROTOCOLS)}")
    common = {"mean": mean, "std": std, "batch_size": batch_size}
    if name == "center":
        return Center(model, **common)
    if scales is not None:
        scales = scales_arg(scales, 1, "")
    if name == "dense":
        scales = scales or (DEFAULT_DENSE_SCALE,)
        if len(scales) != 1:
            raise ValueError(
                f"the dense protocol runs one scale, got {len(scales)} ({', '.join(map(str, scales))}); use "
                "'multiscale' to average dense evaluation over several scales"
            )
        return Dense(model, scale=scales[0], flip=flip, **common)
    scales = scales or PAPER_SCALES
    if name == "multiscale":
        return MultiScale(model, scales=scales, flip=flip, **common)
    if name == "multicrop":
        return MultiCrop(model, scales=scales, flip=True, **common)
    return Average(
        [
            MultiScale(model, scales=scales, flip=flip, **common),
            MultiCrop(model, scales=scales, flip=True, **common),
        ],
        name="dense+multicrop",
    )

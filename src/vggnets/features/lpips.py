"""LPIPS, the learned perceptual image distance of Zhang et al. (2018) on VGG16, equal to ``lpips.LPIPS(net="vgg")``.

The distance between two images ``a`` and ``b`` in [-1, 1] (REFERENCE 9.1): both go through lpips' fixed scaling
``(x - shift) / scale`` and VGG16's convolutional layers; at ``relu1_2, relu2_2, relu3_3, relu4_3, relu5_3`` each
feature vector is divided by its norm over the channels (plus 1e-10), the squared difference of the two images' vectors
is weighted per channel by a learned 1x1 convolution without bias (the "linear layers"), averaged over space, and the
five layers are summed. ``spatial=True`` gives the map instead: each layer's weighted difference upsampled to the input
size (bilinear) and summed.

The linear-layer weights are a published file (the lpips repository's ``weights/v0.1/vgg.pth``, BSD-2-Clause),
registered in :data:`LINEAR_WEIGHTS` with its URL and SHA-256 like the networks' weights: read from the installed
``lpips`` package when it is there (the same file, checked against the digest), else from the torch.hub cache, else
downloaded (or copied from ``$VGGNETS_WEIGHTS_MIRROR``) and verified. Every file is read with ``weights_only=True``.
"""

from __future__ import annotations

import contextlib
import importlib.util
import warnings
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from ..core.vgg import VGG, device_of, initialize
from ..errors import ArchitectureMismatchError, ChecksumError, WeightsError
from ..io.checkpoint import load_state_dict_file
from ..io.download import cached_path, check_digest, download, ensure_file, sha256_file
from ..models.builders import WeightsArg, build
from .extractor import layer_names

__all__ = [
    "LINEAR_WEIGHTS",
    "LPIPS",
    "LPIPS_LAYERS",
    "SCALE",
    "SHIFT",
    "LinearWeights",
    "convert_lpips_state_dict",
]

#: The layers LPIPS compares, as the ``lpips`` package slices VGG16 (``features[0:4]`` ... ``features[23:30]``).
LPIPS_LAYERS = ("relu1_2", "relu2_2", "relu3_3", "relu4_3", "relu5_3")
#: lpips' ScalingLayer: inputs in [-1, 1] become ``(x - SHIFT) / SCALE`` per RGB channel.
SHIFT = (-0.030, -0.088, -0.188)
SCALE = (0.458, 0.448, 0.450)
#: Added to each feature vector's norm before dividing by it (lpips' ``normalize_tensor``).
EPS = 1e-10


#: How a failed download tells the user to pass a copy of the linear layers instead.
LOCAL_OPTION = "--linear-weights FILE (linear_weights=FILE in Python)"


@dataclass(frozen=True)
class LinearWeights:
    """One published file of LPIPS linear-layer weights: where it lives, its digest, and its copy in the lpips wheel."""

    version: str
    url: str
    file_name: str  # name in the torch.hub cache and in a mirror
    sha256: str
    size: int  # bytes
    package_file: str  # path inside the installed ``lpips`` package
    license: str

    @property
    def name(self) -> str:
        """The name ``vggnets download`` knows it by (``lpips-v0.1``)."""
        return f"lpips-v{self.version}"

    def __str__(self) -> str:
        return self.name

    def installed_path(self) -> Path | None:
        """The copy inside the installed ``lpips`` package when it is there and has the published digest, else None.

        The package is located without being imported. A copy whose digest differs is ignored with a warning.
        """
        try:
            spec = importlib.util.find_spec("lpips")
        except (ImportError, ValueError):
            return None
        locations = list(spec.submodule_search_locations or ()) if spec is not None else []
        for folder in locations:
            path = Path(folder) / self.package_file
            if not path.is_file():
                continue
            try:
                check_digest(sha256_file(path), self.sha256, what=str(path))
            except (ChecksumError, OSError) as exc:
                warnings.warn(
                    f"ignoring the LPIPS weights in the installed lpips package: {exc}", stacklevel=3
                )
                continue
            return path
        return None

    def cached_path(self) -> Path | None:
        """The file in the torch.hub cache, or None if it has not been downloaded."""
        return cached_path(self.file_name)

    def download(self, *, progress: bool = True, quiet: bool = False, force: bool = False) -> Path:
        """The cached file, downloading it (or copying it from the mirror) and verifying its SHA-256 first if needed;
        ``force`` downloads it again and replaces the cached file only once the new one verifies."""
        fetch = download if force else ensure_file
        return fetch(
            self.url, self.file_name, self.sha256, progress=progress, quiet=quiet, local_option=LOCAL_OPTION
        )

    def locate(self, *, progress: bool = True, quiet: bool = False) -> Path:
        """The file to read: the installed lpips package's copy, else the cache, else a verified download."""
        return self.installed_path() or self.download(progress=progress, quiet=quiet)

    def get_state_dict(self, *, progress: bool = True, quiet: bool = False) -> dict[str, Tensor]:
        """The linear layers' tensors in this module's layout (``lins.0.weight`` ...), read safely."""
        path = self.locate(progress=progress, quiet=quiet)
        return convert_lpips_state_dict(
            load_state_dict_file(path, what=f"LPIPS v{self.version} linear weights"), source=str(path)
        )


#: Published linear-layer weights by LPIPS version. v0.0 (the first arXiv version) had a normalisation bug and is
#: not offered, as the lpips package advises.
LINEAR_WEIGHTS: dict[str, LinearWeights] = {
    "0.1": LinearWeights(
        version="0.1",
        url="https://raw.githubusercontent.com/richzhang/PerceptualSimilarity/master/lpips/weights/v0.1/vgg.pth",
        file_name="lpips_vgg_v0.1-a78928a0.pth",
        sha256="a78928a0af1e5f0fcb1f3b9e8f8c3a2a5a3de244d830ad5c1feddc79b8432868",
        size=7289,
        package_file="weights/v0.1/vgg.pth",
        license="BSD-2-Clause (lpips, Richard Zhang)",
    ),
}


def convert_lpips_state_dict(state: Mapping[str, Tensor], *, source: str = "state_dict") -> dict[str, Tensor]:
    """Tensors of an lpips ``LPIPS(net="vgg")`` state dict (or of its ``vgg.pth``) in this module's layout.

    ``lin{k}.model.1.weight`` (or ``lin{k}.model.0.weight`` without dropout, or the alias ``lins.{k}.model.1.weight``)
    becomes ``lins.{k}.weight``;
    ``net.slice{s}.{i}.*`` becomes ``features.{i}.*`` (lpips keeps torchvision's index inside each slice); keys already in
    this layout are kept; the scaling layer's constants are dropped. Raises WeightsError for anything else.
    """
    out: dict[str, Tensor] = {}
    unknown: list[str] = []
    for key, tensor in state.items():
        parts = key.split(".")
        if parts[0] == "features" or (parts[0] == "lins" and len(parts) == 3):
            out[key] = tensor
        elif parts[0] == "lins" and parts[1].isdigit() and parts[-1] == "weight":  # lpips' ModuleList alias
            out[f"lins.{int(parts[1])}.weight"] = tensor
        elif parts[0].startswith("lin") and parts[0][3:].isdigit() and parts[-1] == "weight":
            out[f"lins.{int(parts[0][3:])}.weight"] = tensor
        elif len(parts) == 4 and parts[0] == "net" and parts[1].startswith("slice"):
            out[f"features.{parts[2]}.{parts[3]}"] = tensor
        elif parts[0] == "scaling_layer":
            continue
        else:
            unknown.append(key)
    if unknown or not out:
        shown = ", ".join(unknown[:5]) + (" ..." if len(unknown) > 5 else "")
        raise WeightsError(
            f"{source} is not an LPIPS (VGG) state dict: "
            + (f"unexpected keys {shown}. " if unknown else "it holds no tensors. ")
            + "Expected lpips' keys (lin0.model.1.weight ... lin4.model.1.weight, optionally net.slice1.0.weight ...) "
            "or this module's (lins.0.weight ..., features.0.weight ...)."
        )
    return out


def _backbone(
    model: VGG | str | None, weights: WeightsArg, progress: bool
) -> tuple[nn.Sequential, list[int]]:
    """The convolutional layers up to relu5_3 and the indices of the five compared layers in them."""
    if model is None:
        model = "vgg16"
    if isinstance(model, str):
        if weights is None:  # random backbone: built on the meta device, only the kept layers materialised
            with torch.device("meta"):
                model = build(model)
            names = layer_names(model)
            taps = _tap_indices(names, model)
            features = model.features[: taps[-1] + 1]
            features.to_empty(device="cpu")
            initialize(features)
            return features, taps
        model = build(model, weights=weights, progress=progress)
    names = layer_names(model)
    taps = _tap_indices(names, model)
    return model.features[: taps[-1] + 1], taps


def _tap_indices(names: Sequence[str], model: nn.Module) -> list[int]:
    missing = [name for name in LPIPS_LAYERS if name not in names]
    if missing:
        raise ValueError(
            f"LPIPS compares {', '.join(LPIPS_LAYERS)}, but {getattr(model, 'name', type(model).__name__)} has no "
            f"{', '.join(missing)}; use VGG16 (the network the linear layers were learned on)."
        )
    return [names.index(name) for name in LPIPS_LAYERS]


class LPIPS(nn.Module):
    """The LPIPS distance on VGG16, computing exactly what ``lpips.LPIPS(net="vgg", version="0.1")`` computes.

    ``LPIPS()(a, b)`` takes two batches of RGB images in [-1, 1] (``normalize=True``: in [0, 1]) of the same size,
    shaped (N, 3, H, W) with H, W >= 16 (a batch of 1 is compared with every image of the other), and returns the
    distances shaped (N, 1, 1, 1) as lpips does (``.flatten()`` for a vector); with ``spatial=True`` the distance map
    (N, 1, H, W), whose layers are upsampled bilinearly to the input size and summed. It is differentiable with
    respect to both images (a loss), and works under ``torch.autocast``: the network runs in low precision, the
    normalisation and distances in float32. When no gradient flows through the network it runs channels-last (the
    same values, about 1.3x faster on CPU).

    ``model``: None or ``"vgg16"`` builds VGG16 with ``weights`` (default: torchvision's ImageNet weights, the ones
    lpips uses; None for a random backbone); a VGG instance is used as it is (its layers are shared, and frozen in
    place). Only the layers up to relu5_3 are kept, so ``.to(device)`` moves 14.7 M parameters, not 138 M.

    ``linear_weights``: None for the published file of ``version`` (:data:`LINEAR_WEIGHTS`), a path to a copy of it
    (or to a state dict saved from an lpips ``LPIPS`` module), or a state dict in either layout
    (:func:`convert_lpips_state_dict`). The whole module is frozen (``requires_grad=False``) and stays in evaluation
    mode under ``.train()``; its state dict holds ``features.*`` (torchvision's indices) and ``lins.{0..4}.weight``.
    """

    def __init__(
        self,
        model: VGG | str | None = None,
        version: str = "0.1",
        spatial: bool = False,
        *,
        weights: WeightsArg = "DEFAULT",
        linear_weights: str | Path | Mapping[str, Tensor] | None = None,
        normalize: bool = False,
        progress: bool = True,
    ) -> None:
        super().__init__()
        version = str(version).removeprefix("v")
        if version not in LINEAR_WEIGHTS:
            raise ValueError(
                f"LPIPS version {version!r} is not available; use '0.1' (v0.0 had a normalisation bug, and the "
                "lpips package recommends v0.1)."
            )
        self.version = version
        self.spatial = bool(spatial)
        self.normalize = bool(normalize)
        self.features, taps = _backbone(model, weights, progress)
        self._taps = tuple(taps)
        self._next_inplace = tuple(
            i + 1 < len(self.features) and getattr(self.features[i + 1], "inplace", False) for i in taps
        )
        channels = [_out_channels(self.features, i) for i in taps]
        self.lins = nn.ModuleList(nn.Conv2d(c, 1, kernel_size=1, bias=False) for c in channels)
        self.register_buffer("shift", torch.tensor(SHIFT).view(1, 3, 1, 1), persistent=False)
        self.register_buffer("scale", torch.tensor(SCALE).view(1, 3, 1, 1), persistent=False)
        self._load_linear(linear_weights, progress)
        self.to(device_of(self.features))
        self.requires_grad_(False)
        self.eval()

    @classmethod
    def from_lpips_state_dict(
        cls, state: Mapping[str, Tensor], *, spatial: bool = False, normalize: bool = False
    ) -> LPIPS:
        """An LPIPS whose backbone and linear layers are those of an lpips ``LPIPS(net="vgg")`` state dict."""
        converted = convert_lpips_state_dict(state)
        backbone = {k: v for k, v in converted.items() if k.startswith("features.")}
        lins = {k: v for k, v in converted.items() if k.startswith("lins.")}
        metric = cls(None, spatial=spatial, weights=None, linear_weights=lins, normalize=normalize)
        metric.load_backbone_state_dict(backbone)
        return metric

    def load_backbone_state_dict(self, state: Mapping[str, Tensor]) -> None:
        """Copy backbone tensors (``features.{i}.*`` keys, or lpips' ``net.slice{s}.{i}.*``) into the network."""
        converted = {k.removeprefix("features."): v for k, v in convert_lpips_state_dict(state).items()}
        own = self.features.state_dict()
        missing = sorted(set(own) - set(converted), key=_index_order)
        unexpected = sorted(set(converted) - set(own), key=_index_order)
        wrong = [k for k in own if k in converted and converted[k].shape != own[k].shape]
        if missing or unexpected or wrong:
            raise ArchitectureMismatchError(
                "the backbone tensors do not fit LPIPS' VGG16 layers up to relu5_3: "
                f"missing {missing[:4]}, unexpected {unexpected[:4]}, mis-shaped {wrong[:4]}."
            )
        self.features.load_state_dict(converted)

    def _load_linear(self, source: str | Path | Mapping[str, Tensor] | None, progress: bool) -> None:
        if source is None:
            state = LINEAR_WEIGHTS[self.version].get_state_dict(progress=progress)
            what = f"the published LPIPS v{self.version} linear weights"
        elif isinstance(source, (str, Path)):
            state = convert_lpips_state_dict(
                load_state_dict_file(source, what="LPIPS linear weights"), source=str(source)
            )
            what = str(source)
        else:
            state = convert_lpips_state_dict(source)
            what = "the given linear weights"
        lins = {k.removeprefix("lins."): v for k, v in state.items() if k.startswith("lins.")}
        expected = {f"{k}.weight": lin.weight.shape for k, lin in enumerate(self.lins)}
        got = {k: tuple(v.shape) for k, v in lins.items()}
        if set(got) != set(expected) or any(tuple(expected[k]) != got[k] for k in expected):
            want = ", ".join(str(s[1]) for s in expected.values())
            have = ", ".join(
                f"{k.split('.')[0]}: {got[k][1] if len(got[k]) > 1 else '?'}" for k in sorted(got)
            )
            raise ArchitectureMismatchError(
                f"{what} do not fit this backbone: its layers {', '.join(LPIPS_LAYERS)} have {want} channels, the "
                f"linear layers have {have or 'none'}. The published weights fit full-width VGG16 only."
            )
        self.lins.load_state_dict({k: v.float() for k, v in lins.items()})

    def train(self, mode: bool = True) -> LPIPS:
        """Set this module's flag; the network and the linear layers stay in evaluation mode (lpips' dropout off)."""
        super().train(mode)
        self.features.eval()
        self.lins.eval()
        return self

    def forward(
        self, a: Tensor, b: Tensor, *, normalize: bool | None = None, per_layer: bool = False
    ) -> Tensor | tuple[Tensor, list[Tensor]]:
        """The distances between ``a`` and ``b`` (see the class); ``per_layer=True`` also returns each layer's term."""
        normalize = self.normalize if normalize is None else normalize
        self._check(a, b)
        if normalize:
            a, b = 2 * a - 1, 2 * b - 1
        if a.shape == b.shape:  # one pass over both batches
            both = self._features((torch.cat([a, b]) - self.shift) / self.scale)
            pairs = [(f[: len(a)], f[len(a) :]) for f in both]
        else:  # a batch of 1 against N: broadcast the distance, not the network
            pairs = list(
                zip(
                    self._features((a - self.shift) / self.scale),
                    self._features((b - self.shift) / self.scale),
                )
            )
        size = a.shape[-2:]
        terms = []
        for lin, (fa, fb) in zip(self.lins, pairs):
            with _full_precision(fa.device):
                fa, fb = fa.float(), fb.float()
                fa = fa / (torch.sqrt(torch.sum(fa**2, dim=1, keepdim=True)) + EPS)
                fb = fb / (torch.sqrt(torch.sum(fb**2, dim=1, keepdim=True)) + EPS)
                weighted = lin((fa - fb) ** 2)
                if self.spatial:
                    terms.append(F.interpolate(weighted, size=size, mode="bilinear", align_corners=False))
                else:
                    terms.append(weighted.mean([2, 3], keepdim=True))
        total = terms[0]
        for term in terms[1:]:
            total = total + term
        return (total, terms) if per_layer else total

    def _features(self, x: Tensor) -> list[Tensor]:
        """The outputs of the five compared layers.

        Without autograd through the network (inference, or a loss whose input needs no gradient) it runs
        channels-last: the same values to ~1e-6, about 1.3x faster on CPU. With gradients it stays in the default
        layout, since channels-last input gradients through the VGG16 stack measured up to 1% of their largest value
        away from float64 on CPU (the default layout: 3e-6).
        """
        if not torch.is_grad_enabled() or not (
            x.requires_grad or any(p.requires_grad for p in self.features.parameters())
        ):
            x = x.contiguous(memory_format=torch.channels_last)
        found = []
        tap = 0
        for i, module in enumerate(self.features):
            x = module(x)
            if i == self._taps[tap]:
                found.append(x)
                if self._next_inplace[tap]:  # the next module must not overwrite a returned tensor
                    x = x.clone()
                tap += 1
        return found

    def _check(self, a: Tensor, b: Tensor) -> None:
        for name, x in (("first", a), ("second", b)):
            if x.dim() != 4 or x.shape[1] != 3:
                raise ValueError(
                    f"LPIPS expects batches of RGB images shaped (N, 3, H, W); the {name} input is shaped "
                    f"{tuple(x.shape)}"
                    + ("; add a batch dimension with x.unsqueeze(0)" if x.dim() == 3 else "")
                )
        if a.shape[-2:] != b.shape[-2:]:
            raise ValueError(
                f"LPIPS compares images of the same size, got {a.shape[-2]}x{a.shape[-1]} and "
                f"{b.shape[-2]}x{b.shape[-1]}; resize one to the other's size first."
            )
        if len(a) != len(b) and 1 not in (len(a), len(b)):
            raise ValueError(
                f"LPIPS compares batches of the same length (or one image with a batch), got {len(a)} and {len(b)}"
            )
        if min(a.shape[-2:]) < 16:
            raise ValueError(
                f"LPIPS needs images of at least 16x16 pixels (relu5_3 follows four poolings), got "
                f"{a.shape[-2]}x{a.shape[-1]}"
            )

    def extra_repr(self) -> str:
        return f"version={self.version!r}, spatial={self.spatial}, normalize={self.normalize}"


def _out_channels(features: nn.Sequential, index: int) -> int:
    """Channels of the output of ``features[index]``: those of the last convolution up to it."""
    convs = [m for m in list(features)[: index + 1] if isinstance(m, nn.Conv2d)]
    return convs[-1].out_channels


def _index_order(key: str) -> tuple[int, str]:
    head, _, rest = key.partition(".")
    return (int(head), rest) if head.isdigit() else (1 << 30, key)


def _full_precision(device: torch.device):
    """A context where autocast is off for ``device`` (the distances are computed in float32)."""
    if torch.amp.is_autocast_available(device.type):
        return torch.autocast(device.type, enabled=False)
    return contextlib.nullcontext()

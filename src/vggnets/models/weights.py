"""Weight enums with their metadata, the ImageNet categories, and resolution of every accepted ``weights=`` value.

The enums mirror torchvision's (``VGG16_Weights.IMAGENET1K_V1``, ``.DEFAULT``, ``VGG16_Weights.IMAGENET1K_FEATURES``)
and point at the same files, so a file torchvision already downloaded is reused from the shared torch.hub cache.
"""

from __future__ import annotations

import enum
import fnmatch
import importlib.resources
import math
import warnings
from collections.abc import Iterable
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path
from typing import Any

import torch

from ..convert.files import read_weights
from ..core import configs
from ..core.transforms import CAFFE_MEAN, CAFFE_STD, IMAGENET_MEAN, IMAGENET_STD, ImageClassification
from ..errors import UnknownModelError, UnknownWeightsError, WeightsError
from ..io.download import cached_path, download, ensure_file

BASE_URL = "https://download.pytorch.org/models/"
RECIPE_TORCHVISION = "https://github.com/pytorch/vision/tree/main/references/classification#alexnet-and-vgg"
RECIPE_FEATURES = "https://github.com/amdegroot/ssd.pytorch#training-ssd"

#: SHA-256 of each published file: the full digest where it is known, else the 8-hex prefix in the file name.
#: ``vggnets download --verify`` prints the full digest of a downloaded file so a site can pin it here.
FILE_SHA256: dict[str, str] = {
    "vgg16-397923af.pth": "397923af8e79cdbb6a7127f12361acd7a2f83e06b05044ddf496e83de57a5bf0",
}


def published_digest(file_name: str) -> str:
    """The full SHA-256 pinned in FILE_SHA256, else the 8-hex prefix torchvision puts in its file names."""
    return FILE_SHA256.get(file_name) or file_name.rsplit("-", 1)[-1].split(".")[0]


#: Older names of the same models (before 2021), accepted when they are already in the cache.
LEGACY_FILES: dict[str, tuple[str, ...]] = {
    "vgg11-8a719046.pth": ("vgg11-bbd30ac9.pth",),
    "vgg13-19584684.pth": ("vgg13-c768596a.pth",),
}

#: Published weights [torchvision 0.29 metadata]: model, enum tag, file, acc@1, acc@5 (single 224 crop), file MiB.
_TABLE: tuple[tuple[str, str, str, float, float, float], ...] = (
    ("vgg11", "IMAGENET1K_V1", "vgg11-8a719046.pth", 69.020, 88.628, 506.840),
    ("vgg11_bn", "IMAGENET1K_V1", "vgg11_bn-6002323d.pth", 70.370, 89.810, 506.881),
    ("vgg13", "IMAGENET1K_V1", "vgg13-19584684.pth", 69.928, 89.246, 507.545),
    ("vgg13_bn", "IMAGENET1K_V1", "vgg13_bn-abd245e5.pth", 71.586, 90.374, 507.590),
    ("vgg16", "IMAGENET1K_V1", "vgg16-397923af.pth", 71.592, 90.382, 527.796),
    (
        "vgg16",
        "IMAGENET1K_FEATURES",
        "vgg16_features-amdegroot-88682ab5.pth",
        float("nan"),
        float("nan"),
        527.802,
    ),
    ("vgg16_bn", "IMAGENET1K_V1", "vgg16_bn-6c64b313.pth", 73.360, 91.516, 527.866),
    ("vgg19", "IMAGENET1K_V1", "vgg19-dcbb9e9d.pth", 72.376, 90.876, 548.051),
    ("vgg19_bn", "IMAGENET1K_V1", "vgg19_bn-c79401a0.pth", 74.218, 91.842, 548.143),
)


def _read_asset(name: str) -> list[str]:
    """Lines of a text file shipped in vggnets/assets."""
    text = importlib.resources.files("vggnets").joinpath("assets", name).read_text(encoding="utf-8")
    return [line for line in text.splitlines() if line]


#: The 1000 ImageNet-1k class names, in the order of the models' outputs (index 0 is "tench").
IMAGENET_CATEGORIES: list[str] = _read_asset("imagenet_categories.txt")
#: The 1000 WordNet ids in the same order (sorted; index 0 is "n01440764"), as ImageNet's folder names.
IMAGENET_WNIDS: list[str] = _read_asset("imagenet_synsets.txt")


@dataclass(frozen=True, eq=False)
class Weights:
    """One published checkpoint: where it lives, how to preprocess for it, and what it scored.

    Two values are equal when their url, meta and transforms are, as torchvision's ``Weights``: a ``partial``
    transforms compares by its function, arguments and keywords (a copied partial is a new object), and NaN metrics
    equal NaN (``IMAGENET1K_FEATURES`` has NaN accuracies). An enum member is rebuilt from its value when it is
    unpickled or copied, so this equality is what makes members survive ``pickle`` and ``copy.deepcopy``. The values
    are unhashable, as torchvision's, which makes the enum find a member by equality.
    """

    url: str
    transforms: Any
    meta: dict[str, Any] = field(default_factory=dict)

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, Weights):
            return NotImplemented
        return (
            self.url == other.url
            and same_value(self.meta, other.meta)
            and same_transforms(self.transforms, other.transforms)
        )

    __hash__ = None  # type: ignore[assignment]


def same_value(a: Any, b: Any) -> bool:
    """``a == b`` through dicts, lists and tuples, with NaN equal to NaN."""
    if isinstance(a, float) and isinstance(b, float) and math.isnan(a) and math.isnan(b):
        return True
    if isinstance(a, dict) and isinstance(b, dict):
        return a.keys() == b.keys() and all(same_value(a[k], b[k]) for k in a)
    if isinstance(a, (list, tuple)) and isinstance(b, (list, tuple)):
        return type(a) is type(b) and len(a) == len(b) and all(same_value(x, y) for x, y in zip(a, b))
    return a == b


def same_transforms(a: Any, b: Any) -> bool:
    """Equality of two transforms factories; partials compare by function, arguments and keywords."""
    if isinstance(a, partial) and isinstance(b, partial):
        return a.func == b.func and same_value(a.args, b.args) and same_value(a.keywords, b.keywords)
    return a == b


class WeightsEnum(enum.Enum):
    """Base of the per-model enums (``VGG16_Weights`` ...): the value is a :class:`Weights`."""

    def __str__(self) -> str:
        return f"{type(self).__name__}.{self.name}"

    def __repr__(self) -> str:
        return f"<{self}>"

    @property
    def url(self) -> str:
        """Official download URL."""
        return self.value.url

    @property
    def meta(self) -> dict[str, Any]:
        """Categories, accuracies, parameter count, GMACs, file size, recipe, license ..."""
        return self.value.meta

    @property
    def file_name(self) -> str:
        """File name in the torch.hub cache (the same name torchvision uses)."""
        return self.url.rsplit("/", 1)[-1]

    @property
    def sha256(self) -> str:
        """Published SHA-256: full digest where known, else the 8-hex prefix."""
        return published_digest(self.file_name)

    @property
    def model_name(self) -> str:
        """The builder these weights belong to (``vgg16`` ...)."""
        return self.meta["model"]

    def transforms(self, **kwargs: Any) -> Any:
        """The exact preprocessing these weights were evaluated with (a callable torch module)."""
        return self.value.transforms(**kwargs)

    def cached_path(self) -> Path | None:
        """Path of the file in the cache (official or legacy name), or None if it has not been downloaded."""
        return cached_path(self.file_name, LEGACY_FILES.get(self.file_name, ()))

    def download(self, *, progress: bool = True, quiet: bool = False, force: bool = False) -> Path:
        """Return the cached file, downloading (and verifying) it first if needed; ``force`` downloads it again and
        replaces the cached file only once the new one verifies."""
        if force:
            return download(self.url, self.file_name, self.sha256, progress=progress, quiet=quiet)
        return ensure_file(
            self.url,
            self.file_name,
            self.sha256,
            legacy_names=LEGACY_FILES.get(self.file_name, ()),
            progress=progress,
            quiet=quiet,
        )

    def get_state_dict(self, *, progress: bool = True, quiet: bool = False) -> dict[str, torch.Tensor]:
        """Download if needed, then read the checkpoint safely (weights only, memory-mapped)."""
        return read_weights(self.download(progress=progress, quiet=quiet), what=str(self))


def _weights_entry(model: str, tag: str, file: str, acc1: float, acc5: float, mib: float) -> Weights:
    """The Weights value of one table row."""
    features = tag == "IMAGENET1K_FEATURES"
    meta: dict[str, Any] = {
        "model": model,
        "categories": None if features else IMAGENET_CATEGORIES,
        "min_size": (32, 32),
        "num_params": configs.num_params(model),
        "recipe": RECIPE_FEATURES if features else RECIPE_TORCHVISION,
        "license": "BSD-3-Clause (torchvision)" if not features else "MIT (ssd.pytorch port)",
        "_metrics": {"ImageNet-1K": {"acc@1": acc1, "acc@5": acc5}},
        "_ops": round(configs.gmacs(model), 3),
        "_file_size": mib,
        "_docs": (
            "Only `features` holds trained values (ported from the SSD300 backbone); the classifier is NaN. Expects "
            "Caffe-style input: RGB in [0, 255] minus the mean pixel, as the paper's preprocessing."
            if features
            else "Trained from scratch by torchvision with a simplified recipe; accuracies are one 224 center crop."
        ),
    }
    mean, std = (CAFFE_MEAN, CAFFE_STD) if features else (IMAGENET_MEAN, IMAGENET_STD)
    return Weights(
        BASE_URL + file,
        partial(ImageClassification, crop_size=224, resize_size=256, mean=mean, std=std),
        meta,
    )


def _enum_name(model: str) -> str:
    """``vgg16_bn`` -> ``VGG16_BN_Weights``."""
    return model.upper() + "_Weights"


def _make_enums() -> dict[str, type[WeightsEnum]]:
    """One enum per model that has published weights, each with ``DEFAULT`` aliasing ``IMAGENET1K_V1``."""
    rows: dict[str, list[tuple[str, Weights]]] = {}
    for model, tag, *rest in _TABLE:
        rows.setdefault(model, []).append((tag, _weights_entry(model, tag, *rest)))
    enums = {}
    for model, members in rows.items():
        default = dict(members)["IMAGENET1K_V1"]
        name = _enum_name(model)
        enums[model] = WeightsEnum(name, [*members, ("DEFAULT", default)], module=__name__, qualname=name)
    return enums


#: Model name -> its weights enum.
WEIGHTS: dict[str, type[WeightsEnum]] = _make_enums()

VGG11_Weights = WEIGHTS["vgg11"]
VGG11_BN_Weights = WEIGHTS["vgg11_bn"]
VGG13_Weights = WEIGHTS["vgg13"]
VGG13_BN_Weights = WEIGHTS["vgg13_bn"]
VGG16_Weights = WEIGHTS["vgg16"]
VGG16_BN_Weights = WEIGHTS["vgg16_bn"]
VGG19_Weights = WEIGHTS["vgg19"]
VGG19_BN_Weights = WEIGHTS["vgg19_bn"]


def list_models(
    include: str | Iterable[str] | None = None, exclude: str | Iterable[str] | None = None
) -> list[str]:
    """Sorted model names filtered by fnmatch patterns, exactly as ``torchvision.models.list_models``.

    ``include``: a pattern or an iterable of patterns; the result is every name matching any of them, and no filter at
    all (None, or an empty list/tuple/set/dict/string) keeps every model. ``exclude`` (applied after ``include``)
    removes the names matching any of its patterns; an empty one removes nothing.
    """
    names = set(configs.MODELS)
    if include:
        patterns = [include] if isinstance(include, str) else list(include)
        names = {n for n in names if any(fnmatch.fnmatch(n, p) for p in patterns)}
    if exclude:
        patterns = [exclude] if isinstance(exclude, str) else list(exclude)
        names = {n for n in names if not any(fnmatch.fnmatch(n, p) for p in patterns)}
    return sorted(names)


def get_model_weights(name: str) -> type[WeightsEnum]:
    """The weights enum of a model (``"vgg16"`` -> ``VGG16_Weights``)."""
    if name in WEIGHTS:
        return WEIGHTS[name]
    if name in configs.MODELS:
        raise WeightsError(
            f"No pretrained weights are published for {name} (a configuration of the paper that no one released "
            f"weights for). Build it with weights=None to train it, or pass weights='/path/to/checkpoint.pth'. "
            f"Models with published weights: {', '.join(WEIGHTS)}."
        )
    raise UnknownModelError(f"unknown model {name!r}; choose one of: {', '.join(configs.MODELS)}")


def get_weight(name: str) -> WeightsEnum:
    """A member from its full name, e.g. ``"VGG16_Weights.IMAGENET1K_V1"``."""
    enum_name, _, tag = name.partition(".")
    for weights in WEIGHTS.values():
        if weights.__name__ == enum_name:
            try:
                return weights[tag]
            except KeyError:
                raise UnknownWeightsError(
                    f"{enum_name} has no member {tag!r}; choose one of: {', '.join(weights.__members__)}"
                ) from None
    raise UnknownWeightsError(
        f"unknown weights {name!r}; use e.g. 'VGG16_Weights.IMAGENET1K_V1' or 'DEFAULT'"
    )


def resolve_weights(model: str, weights: Any, pretrained: bool | None = None) -> WeightsEnum | Path | None:
    """Turn any accepted ``weights=`` value (and the legacy ``pretrained=``) into an enum member, a path, or None."""
    if pretrained is not None:
        warnings.warn(
            f"'pretrained' is deprecated; use weights='DEFAULT' (or weights={_enum_name(model)}.DEFAULT) for "
            "pretrained weights and weights=None for random ones.",
            FutureWarning,
            stacklevel=4,
        )
        if weights is not None:
            raise ValueError("pass either weights= or the deprecated pretrained=, not both")
        weights = "DEFAULT" if pretrained else None
    if weights is None:
        return None
    if isinstance(weights, WeightsEnum):
        member = weights
    elif isinstance(weights, Path) or (isinstance(weights, str) and _looks_like_path(weights)):
        path = Path(weights).expanduser()
        if not path.is_file():
            raise WeightsError(
                f"The weights file {path} does not exist (or is not a file). Pass the path of a .pth, .pt, "
                f".safetensors or Keras .h5 state_dict, or a weights name such as 'DEFAULT' or '{_enum_name(model)}.IMAGENET1K_V1'."
            )
        return path
    elif isinstance(weights, str):
        member = get_weight(weights) if "." in weights else _member_by_tag(model, weights)
    else:
        raise TypeError(
            f"weights must be None, a weights enum, a name or a path, not {type(weights).__name__}"
        )
    if member.model_name != model:
        raise UnknownWeightsError(
            f"{member} are weights for {member.model_name}, not {model}; use {_enum_name(model)} "
            f"or build {member.model_name}."
        )
    return member


#: File suffixes that make a ``weights=`` string a path (Keras .h5 files are converted on load).
CHECKPOINT_SUFFIXES = (".pth", ".pt", ".bin", ".safetensors", ".ckpt", ".h5", ".hdf5", ".keras")


def _looks_like_path(text: str) -> bool:
    """True for strings that name a file rather than an enum member."""
    return any(sep in text for sep in ("/", "\\")) or text.lower().endswith(CHECKPOINT_SUFFIXES)


def _member_by_tag(model: str, tag: str) -> WeightsEnum:
    """``"DEFAULT"`` / ``"IMAGENET1K_V1"`` -> the member of this model's enum."""
    enum_cls = get_model_weights(model)
    try:
        return enum_cls[tag]
    except KeyError:
        raise UnknownWeightsError(
            f"{enum_cls.__name__} has no member {tag!r}; choose one of: {', '.join(enum_cls.__members__)}, "
            "or pass a file path"
        ) from None

"""vggnets: the VGG networks of Simonyan & Zisserman (arXiv 1409.1556) for PyTorch.

Every configuration of the paper, torchvision-compatible weights that load safely and fast, and the tools around them.
``import vggnets`` does not import torchvision; the image and preprocessing modules load it when they are used.
"""

from __future__ import annotations

from . import features, losses  # named layers, extractor, perceptual loss (no torchvision import)
from .configs import MODELS, TABLE_1
from .engine import (  # the fast inference engine (torchao and inductor load only when used)
    Predictor,
    optimize,
)
from .errors import (
    ArchitectureMismatchError,
    CheckpointError,
    ChecksumError,
    DownloadError,
    ImageError,
    MissingDependencyError,
    UnknownWeightsError,
    VggnetsError,
    WeightsError,
)
from .models import (
    VGG,
    build,
    make_features,
    vgg11,
    vgg11_bn,
    vgg11_lrn,
    vgg13,
    vgg13_bn,
    vgg16,
    vgg16_1x1,
    vgg16_1x1_bn,
    vgg16_bn,
    vgg19,
    vgg19_bn,
)
from .weights import (
    IMAGENET_CATEGORIES,
    IMAGENET_WNIDS,
    VGG11_BN_Weights,
    VGG11_Weights,
    VGG13_BN_Weights,
    VGG13_Weights,
    VGG16_BN_Weights,
    VGG16_Weights,
    VGG19_BN_Weights,
    VGG19_Weights,
    WeightsEnum,
    get_model_weights,
    get_weight,
    list_models,
)

__version__ = "0.1.0"


def get_model(name: str, **kwargs) -> VGG:
    """Build a model by name, e.g. ``get_model("vgg16", weights="DEFAULT")`` (as ``torchvision.models.get_model``)."""
    return build(name.lower(), **kwargs)


__all__ = [
    "MODELS",
    "TABLE_1",
    "VGG",
    "ArchitectureMismatchError",
    "CheckpointError",
    "ChecksumError",
    "DownloadError",
    "IMAGENET_CATEGORIES",
    "IMAGENET_WNIDS",
    "ImageError",
    "MissingDependencyError",
    "Predictor",
    "VGG11_BN_Weights",
    "VGG11_Weights",
    "VGG13_BN_Weights",
    "VGG13_Weights",
    "VGG16_BN_Weights",
    "VGG16_Weights",
    "VGG19_BN_Weights",
    "VGG19_Weights",
    "UnknownWeightsError",
    "VggnetsError",
    "WeightsEnum",
    "WeightsError",
    "build",
    "get_model",
    "get_model_weights",
    "get_weight",
    "features",
    "list_models",
    "losses",
    "make_features",
    "optimize",
    "vgg11",
    "vgg11_bn",
    "vgg11_lrn",
    "vgg13",
    "vgg13_bn",
    "vgg16",
    "vgg16_1x1",
    "vgg16_1x1_bn",
    "vgg16_bn",
    "vgg19",
    "vgg19_bn",
]

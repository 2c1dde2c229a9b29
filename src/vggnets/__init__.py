"""vggnets: the VGG networks of Simonyan & Zisserman (arXiv 1409.1556) for PyTorch.

Every configuration of the paper, torchvision-compatible weights that load safely and fast, and the tools around them.
``import vggnets`` does not import torchvision; the image and preprocessing modules load it when they are used.
"""

from __future__ import annotations

# named layers, extractor, perceptual loss; class activation maps (Grad-CAM) and their overlays (no torchvision import)
from . import explain, features, losses
from .core.configs import MODELS, TABLE_1
from .core.vgg import VGG, make_features
from .errors import (
    ArchitectureMismatchError,
    CheckpointError,
    ChecksumError,
    DownloadError,
    ImageError,
    MissingDependencyError,
    UnknownModelError,
    UnknownWeightsError,
    VggnetsError,
    WeightsError,
)
from .features.lpips import LPIPS  # the LPIPS perceptual distance on VGG16
from .features.style import stylize as stylize  # neural style transfer (Gatys et al.)
from .inference.engine import (  # the fast inference engine (torchao and inductor load only when used)
    Predictor,
    optimize,
)
from .models.builders import (
    build,
    get_model,
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
from .models.weights import (
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
from .version import __version__

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
    "LPIPS",
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
    "UnknownModelError",
    "UnknownWeightsError",
    "VggnetsError",
    "WeightsEnum",
    "WeightsError",
    "build",
    "get_model",
    "get_model_weights",
    "get_weight",
    "explain",
    "features",
    "list_models",
    "__version__",
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

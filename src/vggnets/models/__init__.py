"""Ready-to-use models: published weights and the builders that load them.

weights.py   weights enums with their metadata, the ImageNet categories, resolution of every ``weights=`` value
builders.py  ``build``, ``load_weights``, the named builders (``vgg16`` ...), ``get_model``
dense.py     the fully-convolutional view of a model (the paper's dense evaluation)
"""

from ..core.layout import expected_shapes, guess_architecture
from ..core.vgg import MIN_SIZE, VGG, initialize, make_features
from .builders import (
    WeightsArg,
    build,
    get_model,
    load_weights,
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
from .weights import WeightsEnum, get_model_weights, get_weight, list_models

__all__ = [
    "MIN_SIZE",
    "VGG",
    "WeightsArg",
    "WeightsEnum",
    "build",
    "expected_shapes",
    "get_model",
    "get_model_weights",
    "get_weight",
    "guess_architecture",
    "initialize",
    "list_models",
    "load_weights",
    "make_features",
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

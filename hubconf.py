"""torch.hub entry points: ``torch.hub.load("<owner>/vggnets", "vgg16", pretrained=True)`` or ``weights="DEFAULT"``.

Every configuration is exposed; ``torch.hub.list`` shows them and ``torch.hub.help`` prints their docstrings.
"""

import os
import sys

dependencies = ["torch", "torchvision", "safetensors", "tqdm"]

_SRC = os.path.join(os.path.dirname(os.path.abspath(__file__)), "src")
if _SRC not in sys.path:
    sys.path.insert(0, _SRC)

from vggnets.models import (  # noqa: E402
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
from vggnets.weights import get_model_weights, get_weight  # noqa: E402

__all__ = [
    "get_model_weights",
    "get_weight",
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

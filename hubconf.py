"""torch.hub entry points: ``torch.hub.load("<owner>/vggnets", "vgg16", pretrained=True)`` or ``weights="DEFAULT"``.

Every configuration of the table is exposed under its model name; ``torch.hub.list`` shows them and
``torch.hub.help`` prints their docstrings.
"""

import os
import sys

dependencies = ["torch", "torchvision", "safetensors", "tqdm"]

_SRC = os.path.join(os.path.dirname(os.path.abspath(__file__)), "src")
if _SRC not in sys.path:
    sys.path.insert(0, _SRC)

from vggnets.core.configs import MODELS as _MODELS  # noqa: E402
from vggnets.models import builders as _models  # noqa: E402
from vggnets.models.weights import get_model_weights, get_weight  # noqa: E402

globals().update({_name: getattr(_models, _name) for _name in _MODELS})

__all__ = ["get_model_weights", "get_weight", *_MODELS]

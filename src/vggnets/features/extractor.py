"""The layers of a VGG network by the paper's (Caffe's) names, and a feature extractor that returns them.

Names, in forward order (REFERENCE 1.5): stage ``s`` is delimited by the pooling layers and ``j`` counts the
convolutions within a stage, so every configuration reads ``conv1_1, relu1_1, ..., pool1, conv2_1, ...,
pool5, fc6, relu6, drop6, fc7, relu7, drop7, fc8``:

- ``conv{s}_{j}`` a convolution (the 1x1 convolutions of configuration C are ordinary ``conv{s}_{j}`` in order, e.g.
  ``conv3_3`` of ``vgg16_1x1``); ``bn{s}_{j}`` its batch normalisation (``*_bn`` models); ``relu{s}_{j}`` its ReLU;
- ``norm1`` the local response normalisation of configuration A-LRN (``vgg11_lrn``), Caffe's name for it;
- ``pool{s}`` the max-pooling that ends stage ``s``;
- ``fc6 relu6 drop6 fc7 relu7 drop7 fc8`` the classifier (``classifier.0`` ... ``classifier.6``).

For vgg16 ``relu1_2`` is ``features.3``, ``relu2_2`` ``features.8``, ``relu3_3`` ``features.15``, ``relu4_3``
``features.22``, ``relu5_3`` ``features.29`` and ``pool5`` ``features.30``. The adaptive average pool between ``pool5``
and ``fc6`` has no name: it is not a layer of the paper (it is the identity at 224x224) and is applied, followed by the
flattening, on the way to ``fc6`` exactly as the model's own forward does.
"""

from __future__ import annotations

import contextlib
import difflib
from collections.abc import Sequence
from typing import TYPE_CHECKING

import torch
from torch import Tensor, nn

if TYPE_CHECKING:
    from ..core.vgg import VGG

__all__ = ["HEAD_NAMES", "FeatureExtractor", "layer_names", "named_layers"]

#: Names of the classifier's modules ``classifier.0`` ... ``classifier.6``.
HEAD_NAMES = ("fc6", "relu6", "drop6", "fc7", "relu7", "drop7", "fc8")
_HEAD_TYPES = (nn.Linear, nn.ReLU, nn.Dropout, nn.Linear, nn.ReLU, nn.Dropout, nn.Linear)


def _model_name(model: nn.Module) -> str:
    return getattr(model, "name", None) or type(model).__name__


def _feature_names(model: nn.Module) -> list[str]:
    """Names of ``model.features[0]``, ``model.features[1]`` ... in order."""
    features = getattr(model, "features", None)
    if not isinstance(features, nn.Sequential):
        raise TypeError(f"expected a VGG model with an nn.Sequential `features`, got {type(model).__name__}")
    names: list[str] = []
    stage, conv = 1, 0
    for index, module in enumerate(features):
        if isinstance(module, nn.Conv2d):
            conv += 1
            names.append(f"conv{stage}_{conv}")
        elif isinstance(module, (nn.BatchNorm2d, nn.ReLU)) and conv:
            names.append(f"{'bn' if isinstance(module, nn.BatchNorm2d) else 'relu'}{stage}_{conv}")
        elif isinstance(module, nn.LocalResponseNorm):
            names.append(f"norm{stage}")
        elif isinstance(module, (nn.MaxPool2d, nn.AvgPool2d)):  # AvgPool2d: Gatys et al.'s variant
            names.append(f"pool{stage}")
            stage, conv = stage + 1, 0
        else:
            raise TypeError(
                f"features.{index} ({type(module).__name__}) has no VGG layer name: features must be convolutions, "
                "each optionally followed by BatchNorm2d and ReLU, LocalResponseNorm and 2x2 poolings"
            )
    if len(set(names)) != len(names):
        raise TypeError(
            f"the features of {_model_name(model)} do not follow the VGG layout (repeated layer names)"
        )
    return names


def _check_head(model: nn.Module) -> nn.Sequential:
    classifier = getattr(model, "classifier", None)
    if (
        not isinstance(classifier, nn.Sequential)
        or len(classifier) != len(HEAD_NAMES)
        or not all(isinstance(m, t) for m, t in zip(classifier, _HEAD_TYPES))
    ):
        raise TypeError(
            "expected a VGG model whose classifier is Linear, ReLU, Dropout, Linear, ReLU, Dropout, Linear, got "
            f"{type(model).__name__}"
        )
    return classifier


def layer_names(model: VGG) -> list[str]:
    """Every named layer of ``model`` in forward order: the features' names, then ``fc6`` ... ``fc8``."""
    _check_head(model)
    return [*_feature_names(model), *HEAD_NAMES]


def named_layers(model: VGG) -> dict[str, nn.Module]:
    """Layer name -> the model's own module (``conv1_1`` -> ``model.features[0]``, ``fc6`` -> ``model.classifier[0]``).

    Includes the dropouts ``drop6`` and ``drop7``; the adaptive average pool is not a named layer (module docstring).
    """
    classifier = _check_head(model)
    return {
        **dict(zip(_feature_names(model), model.features)),
        **dict(zip(HEAD_NAMES, classifier)),
    }


def _unknown_layer(name: object, valid: list[str], model: nn.Module) -> ValueError:
    close = difflib.get_close_matches(str(name), valid, n=3)
    hint = (
        f" Did you mean {', '.join(close[:-1])}{' or ' if len(close) > 1 else ''}{close[-1]}?"
        if close
        else ""
    )
    return ValueError(
        f"unknown layer {name!r} for {_model_name(model)}.{hint} Valid layers: {', '.join(valid)}"
    )


class FeatureExtractor(nn.Module):
    """Run a VGG model up to the last requested layer and return the requested layers' outputs by name.

    ``FeatureExtractor(model, ["relu1_2", "relu2_2"])(x)`` is ``{"relu1_2": ..., "relu2_2": ...}``, ordered as
    requested. The extractor runs its own forward over the model's modules (no hooks), so it:

    - shares the model's parameters (the model is the submodule ``model``; ``.to()``, ``.eval()`` act on it);
    - computes nothing after the last requested layer;
    - returns each layer's true output even where the model uses in-place ReLUs (a requested ``conv1_1`` is the
      pre-activation: the in-place ReLU that follows works on a copy);
    - keeps the autograd graph (for losses), unless ``detach=True``, which runs without it and returns detached outputs;
    - accepts any input of at least ``2 ** (poolings before the last requested layer)`` pixels a side (32 for ``pool5``
      and the head layers, which go through the adaptive average pool and flattening as in the model).
    """

    def __init__(self, model: VGG, layers: Sequence[str], *, detach: bool = False) -> None:
        super().__init__()
        if isinstance(layers, str):
            layers = [layers]
        names = layer_names(model)
        position = {name: i for i, name in enumerate(names)}
        requested: list[str] = []
        for name in layers:
            if name not in position:
                raise _unknown_layer(name, names, model)
            if name not in requested:
                requested.append(name)
        if not requested:
            raise ValueError(f"no layers requested; choose from: {', '.join(names)}")
        self.model = model
        self.layers: tuple[str, ...] = tuple(requested)
        self.detach = detach
        stop = max(position[name] for name in requested) + 1
        self._num_features = len(model.features)
        #: Names of the layers to run, in order (up to the last requested one).
        self._plan: tuple[str, ...] = tuple(names[:stop])
        self._wanted = frozenset(requested)
        pools = sum(name.startswith("pool") for name in self._plan)
        #: Smallest input side that survives the poolings on the way.
        self.min_size: int = 2**pools

    def forward(self, x: Tensor) -> dict[str, Tensor]:
        """The requested layers' outputs for a batch of normalised images ``x`` of shape (N, C, H, W)."""
        if x.dim() != 4:
            raise ValueError(
                f"FeatureExtractor expects a batch of images shaped (N, C, H, W), got {tuple(x.shape)}; add a batch "
                "dimension with x.unsqueeze(0)"
            )
        if min(x.shape[-2:]) < self.min_size:
            raise ValueError(
                f"layers {', '.join(self.layers)} need images of at least {self.min_size}x{self.min_size} pixels "
                f"(one pixel left after the poolings on the way), got {x.shape[-2]}x{x.shape[-1]}"
            )
        with torch.no_grad() if self.detach else contextlib.nullcontext():
            return self._run(x)

    def _run(self, x: Tensor) -> dict[str, Tensor]:
        found: dict[str, Tensor] = {}
        kept = False  # whether x is a returned tensor, which an in-place module must not overwrite
        modules = iter(self.model.features)
        for step, name in enumerate(self._plan):
            if step == self._num_features:
                x = torch.flatten(self.model.avgpool(x), 1)
                modules = iter(self.model.classifier)
                kept = False
            module = next(modules)
            if kept and getattr(module, "inplace", False):
                x = x.clone()
            x = module(x)
            kept = name in self._wanted
            if kept:
                found[name] = x
        return {name: found[name] for name in self.layers}

    def extra_repr(self) -> str:
        return f"layers={list(self.layers)}" + (", detach=True" if self.detach else "")

"""The VGG module: convolutional features from a Table 1 row, the adaptive pool, the three FC layers, initialisation.

The module tree and state_dict keys are exactly torchvision's (``features.N``, ``avgpool``, ``classifier.0/3/6``), so
checkpoints move between the two libraries unchanged.
"""

from __future__ import annotations

from typing import Literal

import torch
from torch import nn

from .configs import HIDDEN_FEATURES, LRN_PARAMS, POOL_SIZE, Layer, ModelSpec, channels

InitScheme = Literal["torchvision", "paper", "glorot", "pytorch"]

#: Smallest input side: the five max-pools halve it down to 1 pixel.
MIN_SIZE = 32

#: Keys of the last classifier layer (fc8), whose shape depends on num_classes.
HEAD_KEYS = ("classifier.6.weight", "classifier.6.bias")


def make_features(
    layers: tuple[Layer, ...], *, batch_norm: bool = False, width: float = 1.0, in_channels: int = 3
) -> nn.Sequential:
    """Build the convolutional part from parsed configuration layers, in torchvision's module order."""
    modules: list[nn.Module] = []
    for layer in layers:
        if layer.kind == "pool":
            modules.append(nn.MaxPool2d(kernel_size=2, stride=2))
        elif layer.kind == "lrn":
            modules.append(nn.LocalResponseNorm(**LRN_PARAMS))
        else:
            out = channels(width, layer.out_channels)
            modules.append(nn.Conv2d(in_channels, out, layer.kernel_size, padding=layer.kernel_size // 2))
            if batch_norm:
                modules.append(nn.BatchNorm2d(out))
            modules.append(nn.ReLU(inplace=True))
            in_channels = out
    return nn.Sequential(*modules)


class VGG(nn.Module):
    """A VGG network: ``features`` (convolutions) -> ``avgpool`` (adaptive, 7x7) -> ``classifier`` (three FC layers).

    Accepts any input of at least 32x32 pixels; at 224x224 the adaptive pool is the identity. Dropout follows the ReLUs
    of fc6 and fc7, as in the paper's Caffe definition and torchvision.
    """

    def __init__(
        self,
        features: nn.Sequential,
        num_classes: int = 1000,
        dropout: float = 0.5,
        init_weights: InitScheme | bool = "torchvision",
        hidden_features: int = HIDDEN_FEATURES,
    ) -> None:
        super().__init__()
        convs = [m for m in features.modules() if isinstance(m, nn.Conv2d)]
        if not convs:
            raise ValueError("features must contain at least one Conv2d")
        flat = convs[-1].out_channels * POOL_SIZE * POOL_SIZE
        self.features = features
        self.avgpool = nn.AdaptiveAvgPool2d((POOL_SIZE, POOL_SIZE))
        self.classifier = nn.Sequential(
            nn.Linear(flat, hidden_features),
            nn.ReLU(inplace=True),
            nn.Dropout(p=dropout),
            nn.Linear(hidden_features, hidden_features),
            nn.ReLU(inplace=True),
            nn.Dropout(p=dropout),
            nn.Linear(hidden_features, num_classes),
        )
        initialize(self, init_weights)

    @property
    def num_classes(self) -> int:
        """Number of outputs of the last layer (fc8)."""
        return self.classifier[6].out_features

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Class logits for a batch of normalised images of shape (N, 3, H, W), H and W >= 32.

        The input check (:func:`check_input`) runs in eager mode and under ``torch.compile``/``torch.export``, which
        evaluate it on the traced shapes (a compiled model raises the same ValueError; with ``fullgraph=True`` dynamo
        reports it inside its own error). TorchScript, ``torch.jit.trace`` and FX symbolic tracing skip it, so their
        graphs are exactly torchvision's: features -> avgpool -> flatten -> classifier.
        """
        # TorchScript compiles only the taken branch of an `if` whose whole condition is `torch.jit.is_scripting()`
        # (or its negation); in a combined condition it would compile the check and the Proxy test. Keep two ifs.
        if not torch.jit.is_scripting():  # noqa: SIM102
            if not (torch.jit.is_tracing() or isinstance(x, torch.fx.Proxy)):
                check_input(x)
        x = self.features(x)
        x = self.avgpool(x)
        x = torch.flatten(x, 1)
        return self.classifier(x)


def check_input(x: torch.Tensor) -> None:
    """ValueError unless ``x`` is a batch (N, C, H, W) with H and W of at least :data:`MIN_SIZE` pixels."""
    if x.dim() != 4 or x.shape[-1] < MIN_SIZE or x.shape[-2] < MIN_SIZE:
        raise ValueError(
            f"VGG expects a batch of images shaped (N, C, H, W) with H and W >= {MIN_SIZE} (five 2x2 poolings), "
            f"got {tuple(x.shape)}; add a batch dimension with x.unsqueeze(0) or resize the images"
        )


def initialize(module: nn.Module, scheme: InitScheme | bool = "torchvision") -> None:
    """(Re)initialise every parameter and BN buffer of ``module`` in place.

    ``"torchvision"`` (default, also ``True``): conv Kaiming-normal (fan_out, ReLU), FC N(0, 0.01), biases 0.
    ``"paper"``: every conv and FC weight N(0, 0.01) and biases 0 [paper 3.1 says "variance 1e-2", which many read as
    std 0.01; we follow torchvision's and Caffe's common reading of std 0.01]. ``"glorot"``: Xavier-uniform weights,
    biases 0 (the paper notes this trains without pre-training). ``"pytorch"`` (also ``False``): PyTorch's layer defaults.
    BatchNorm always starts at weight 1, bias 0, fresh running statistics.
    """
    if scheme is True:
        scheme = "torchvision"
    elif scheme is False:
        scheme = "pytorch"
    if scheme not in ("torchvision", "paper", "glorot", "pytorch"):
        raise ValueError(
            f"init_weights must be 'torchvision', 'paper', 'glorot', 'pytorch', True or False, not {scheme!r}"
        )
    for m in module.modules():
        if isinstance(m, nn.BatchNorm2d):
            m.reset_running_stats()
            nn.init.ones_(m.weight)
            nn.init.zeros_(m.bias)
        elif isinstance(m, (nn.Conv2d, nn.Linear)):
            if scheme == "pytorch":
                m.reset_parameters()
                continue
            if scheme == "glorot":
                nn.init.xavier_uniform_(m.weight)
            elif scheme == "torchvision" and isinstance(m, nn.Conv2d):
                nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")
            else:
                nn.init.normal_(m.weight, 0.0, 0.01)
            nn.init.zeros_(m.bias)


def construct(
    spec: ModelSpec, num_classes: int, dropout: float, width: float, init: InitScheme | bool
) -> VGG:
    """Instantiate the module for a spec (on whatever device is current), named after it."""
    features = make_features(spec.layers, batch_norm=spec.batch_norm, width=width)
    model = VGG(features, num_classes, dropout, init, hidden_features=channels(width, HIDDEN_FEATURES))
    model.name = spec.name  # type: ignore[assignment]
    return model


def device_of(module: nn.Module) -> torch.device:
    """The device of a module's first parameter (CPU for a module without parameters)."""
    param = next(module.parameters(), None)
    return param.device if param is not None else torch.device("cpu")

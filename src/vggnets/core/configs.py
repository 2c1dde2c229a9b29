"""The paper's Table 1 as data: every VGG configuration, and the model names built from them.

A configuration is written exactly as the paper's table reads, left to right:

- ``64``      a 3x3 convolution (stride 1, padding 1) with 64 output channels, followed by ReLU;
- ``1x1-256`` a 1x1 convolution (padding 0) with 256 output channels, followed by ReLU (configuration C);
- ``LRN``     local response normalisation (configuration A-LRN);
- ``M``       2x2 max-pooling with stride 2.

Every configuration shares the same head: FC-4096, FC-4096, FC-num_classes.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

#: The paper's Table 1 (arXiv 1409.1556), one row per configuration.
TABLE_1: dict[str, str] = {
    "A": "64 M 128 M 256 256 M 512 512 M 512 512 M",
    "A-LRN": "64 LRN M 128 M 256 256 M 512 512 M 512 512 M",
    "B": "64 64 M 128 128 M 256 256 M 512 512 M 512 512 M",
    "C": "64 64 M 128 128 M 256 256 1x1-256 M 512 512 1x1-512 M 512 512 1x1-512 M",
    "D": "64 64 M 128 128 M 256 256 256 M 512 512 512 M 512 512 512 M",
    "E": "64 64 M 128 128 M 256 256 256 256 M 512 512 512 512 M 512 512 512 512 M",
}

#: Width of the two hidden fully-connected layers (fc6, fc7).
HIDDEN_FEATURES = 4096

#: Spatial size of the feature map the classifier expects (224 / 32).
POOL_SIZE = 7

#: Local response normalisation of A-LRN [paper 2.1 -> Krizhevsky et al. 2012]: k=2, n=5, alpha=1e-4, beta=0.75.
#: torch.nn.LocalResponseNorm divides alpha by ``size`` exactly as Caffe does, and the authors trained with a Caffe fork,
#: so ``alpha=1e-4`` reproduces what their code ran (AlexNet's formula, without the division, would be alpha=5e-4).
LRN_PARAMS: dict[str, float] = {"size": 5, "alpha": 1e-4, "beta": 0.75, "k": 2.0}


@dataclass(frozen=True)
class Layer:
    """One token of a configuration row."""

    kind: Literal["conv", "lrn", "pool"]
    out_channels: int = 0
    kernel_size: int = 3


def parse(row: str) -> tuple[Layer, ...]:
    """Turn a Table 1 row such as ``"64 LRN M 1x1-256"`` into layers."""
    layers = []
    for token in row.split():
        if token == "M":
            layers.append(Layer("pool"))
        elif token == "LRN":
            layers.append(Layer("lrn"))
        elif token.startswith("1x1-"):
            layers.append(Layer("conv", int(token[4:]), kernel_size=1))
        elif token.isdigit():
            layers.append(Layer("conv", int(token)))
        else:
            raise ValueError(f"unknown token {token!r} in configuration row {row!r}")
    return tuple(layers)


@dataclass(frozen=True)
class ModelSpec:
    """A named model: a Table 1 configuration, with or without batch normalisation."""

    name: str
    config: str
    batch_norm: bool

    @property
    def layers(self) -> tuple[Layer, ...]:
        """The parsed configuration row."""
        return parse(TABLE_1[self.config])

    @property
    def depth(self) -> int:
        """Weight layers, as the paper counts them (convolutions + 3 fully-connected)."""
        return sum(layer.kind == "conv" for layer in self.layers) + 3


#: Model name -> (configuration, batch norm). The first eight are the variants torchvision ships weights for.
MODELS: dict[str, ModelSpec] = {
    spec.name: spec
    for spec in (
        ModelSpec("vgg11", "A", False),
        ModelSpec("vgg11_bn", "A", True),
        ModelSpec("vgg13", "B", False),
        ModelSpec("vgg13_bn", "B", True),
        ModelSpec("vgg16", "D", False),
        ModelSpec("vgg16_bn", "D", True),
        ModelSpec("vgg19", "E", False),
        ModelSpec("vgg19_bn", "E", True),
        ModelSpec("vgg11_lrn", "A-LRN", False),
        ModelSpec("vgg16_1x1", "C", False),
        ModelSpec("vgg16_1x1_bn", "C", True),
    )
}


def channels(width: float, base: int) -> int:
    """Channel count of a layer after applying a width multiplier (at least 1)."""
    return max(1, round(base * width))


def num_params(name: str, *, num_classes: int = 1000, width: float = 1.0) -> int:
    """Exact parameter count (weights + biases, BN affine included) of a model, derived from the table."""
    spec = MODELS[name]
    total, in_ch = 0, 3
    for layer in spec.layers:
        if layer.kind == "conv":
            out = channels(width, layer.out_channels)
            total += layer.kernel_size**2 * in_ch * out + out + (2 * out if spec.batch_norm else 0)
            in_ch = out
    hidden = channels(width, HIDDEN_FEATURES)
    flat = in_ch * POOL_SIZE * POOL_SIZE
    return total + flat * hidden + hidden + hidden * hidden + hidden + hidden * num_classes + num_classes


def gmacs(name: str, *, image_size: int = 224, num_classes: int = 1000) -> float:
    """Multiply-accumulates (in billions) of the convolutions and FC layers for one square image."""
    spec = MODELS[name]
    macs, in_ch, size = 0, 3, image_size
    for layer in spec.layers:
        if layer.kind == "conv":
            macs += layer.kernel_size**2 * in_ch * layer.out_channels * size * size
            in_ch = layer.out_channels
        elif layer.kind == "pool":
            size //= 2
    macs += (
        in_ch * POOL_SIZE * POOL_SIZE * HIDDEN_FEATURES + HIDDEN_FEATURES**2 + HIDDEN_FEATURES * num_classes
    )
    return macs / 1e9

"""The VGG module and its builders, all generated from the configuration table in :mod:`vggnets.configs`.

The module tree and state_dict keys are exactly torchvision's (``features.N``, ``avgpool``, ``classifier.0/3/6``), so
checkpoints move between the two libraries unchanged. Pretrained models are built on the meta device and filled from a
memory-mapped checkpoint with ``load_state_dict(assign=True)``: no memory is allocated or initialised for weights that
are about to be replaced.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Literal

import torch
from torch import nn

from . import configs, hub
from .configs import HIDDEN_FEATURES, LRN_PARAMS, MODELS, POOL_SIZE, Layer, ModelSpec, channels
from .errors import ArchitectureMismatchError
from .weights import WeightsEnum, resolve_weights

InitScheme = Literal["torchvision", "paper", "glorot", "pytorch"]
WeightsArg = WeightsEnum | str | Path | None

#: Smallest input side: the five max-pools halve it down to 1 pixel.
MIN_SIZE = 32

#: Index of the last classifier layer (fc8), whose shape depends on num_classes.
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
        """Class logits for a batch of normalised images of shape (N, 3, H, W), H and W >= 32."""
        if x.dim() != 4 or x.shape[-1] < MIN_SIZE or x.shape[-2] < MIN_SIZE:
            raise ValueError(
                f"VGG expects a batch of images shaped (N, C, H, W) with H and W >= {MIN_SIZE} (five 2x2 poolings), "
                f"got {tuple(x.shape)}; add a batch dimension with x.unsqueeze(0) or resize the images"
            )
        x = self.features(x)
        x = self.avgpool(x)
        x = torch.flatten(x, 1)
        return self.classifier(x)


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


def _construct(
    spec: ModelSpec, num_classes: int, dropout: float, width: float, init: InitScheme | bool
) -> VGG:
    """Instantiate the module for a spec (on whatever device is current)."""
    features = make_features(spec.layers, batch_norm=spec.batch_norm, width=width)
    model = VGG(features, num_classes, dropout, init, hidden_features=channels(width, HIDDEN_FEATURES))
    model.name = spec.name  # type: ignore[assignment]
    return model


def expected_shapes(name: str, *, num_classes: int = 1000, width: float = 1.0) -> dict[str, torch.Size]:
    """state_dict key -> tensor shape of a model, computed on the meta device (no memory)."""
    with torch.device("meta"):
        model = _construct(MODELS[name], num_classes, 0.5, width, "pytorch")
    return {k: v.shape for k, v in model.state_dict().items()}


def guess_architecture(state_dict: dict[str, torch.Tensor]) -> list[str]:
    """Names of the models whose layout matches a state_dict (ignoring fc8's size and BN step counters)."""

    def layout(shapes: dict[str, torch.Size]) -> set[tuple[str, tuple[int, ...]]]:
        return {
            (k, tuple(s))
            for k, s in shapes.items()
            if k not in HEAD_KEYS and not k.endswith("num_batches_tracked")
        }

    found = layout({k: v.shape for k, v in state_dict.items()})
    width = _file_width(state_dict)
    return [name for name in MODELS if layout(expected_shapes(name, width=width)) == found]


def _file_width(state_dict: dict[str, torch.Tensor]) -> float:
    """Width multiplier of a checkpoint, read from conv1_1 (every configuration starts with 64 channels)."""
    conv1 = state_dict.get("features.0.weight")
    return conv1.shape[0] / 64 if conv1 is not None and conv1.dim() == 4 else 1.0


def _natural(key: str) -> list:
    """Sort key that orders ``features.2`` before ``features.10``."""
    return [int(part) if part.isdigit() else part for part in key.split(".")]


def _check_layout(
    model: nn.Module, state_dict: dict[str, torch.Tensor], name: str, source: str, *, skip_head: bool
) -> None:
    """Raise ArchitectureMismatchError listing missing, unexpected and wrongly shaped tensors."""
    want = {k: v.shape for k, v in model.state_dict().items()}
    optional = {k for k in want if k.endswith("num_batches_tracked")} | (
        set(HEAD_KEYS) if skip_head else set()
    )
    missing = sorted(set(want) - set(state_dict) - optional, key=_natural)
    unexpected = sorted(set(state_dict) - set(want), key=_natural)
    wrong = [
        f"{k} (file {tuple(state_dict[k].shape)}, model {tuple(want[k])})"
        for k in sorted(set(want) & set(state_dict), key=_natural)
        if k not in optional and state_dict[k].shape != want[k]
    ]
    if not (missing or unexpected or wrong):
        return

    def show(label: str, items: list[str]) -> str:
        more = f" ... and {len(items) - 8} more" if len(items) > 8 else ""
        return f" {label} ({len(items)}): {', '.join(items[:8])}{more}." if items else ""

    guesses = guess_architecture(state_dict)
    hint = (
        f" The file looks like a checkpoint for {' or '.join(guesses)}: build that model instead."
        if guesses
        else " It does not match any VGG configuration; check that it is a VGG state_dict."
    )
    raise ArchitectureMismatchError(
        f"The checkpoint {source} does not fit the {name} architecture."
        + show("Missing tensors", missing)
        + show("Unexpected tensors", unexpected)
        + show("Wrong shapes", wrong)
        + hint
    )


def _fill_from_state_dict(
    model: VGG, state_dict: dict[str, torch.Tensor], source: str, init: InitScheme | bool
) -> VGG:
    """Move a state_dict into a meta-device model without copying; a new head is initialised if fc8's size differs."""
    state_dict = dict(state_dict)
    head = state_dict.get(HEAD_KEYS[0])
    new_head = head is not None and head.shape[0] != model.num_classes
    _check_layout(model, state_dict, model.name, source, skip_head=new_head)
    if new_head:
        for key in HEAD_KEYS:
            state_dict.pop(key, None)
    for key in model.state_dict():
        if key.endswith("num_batches_tracked") and key not in state_dict:
            state_dict[key] = torch.tensor(0, dtype=torch.long)  # 2017 BN files predate this buffer
    for key, tensor in state_dict.items():
        if tensor.is_floating_point() and tensor.dtype != torch.float32:
            state_dict[key] = tensor.float()
    model.load_state_dict(state_dict, strict=not new_head, assign=True)
    if new_head:
        fc8 = model.classifier[6]
        fc8.to_empty(device="cpu")
        initialize(fc8, init)
    return model


def build(
    name: str,
    *,
    weights: WeightsArg = None,
    progress: bool = True,
    num_classes: int | None = None,
    dropout: float = 0.5,
    init_weights: InitScheme | bool = "torchvision",
    width: float | None = None,
    pretrained: bool | None = None,
) -> VGG:
    """Build any model of :data:`vggnets.configs.MODELS` by name; the named builders (``vgg16`` ...) call this.

    ``weights``: None (random init), a weights enum member, ``"DEFAULT"``, ``"IMAGENET1K_V1"``,
    ``"VGG16_Weights.IMAGENET1K_V1"``, or the path of a ``.pth``/``.pt``/``.safetensors`` state_dict (torchvision's
    checkpoints included). With weights, ``num_classes`` defaults to the checkpoint's; a different value keeps every
    pretrained layer and gives a freshly initialised fc8 (fine-tuning). ``pretrained=True`` is the deprecated spelling of
    ``weights="DEFAULT"``. ``width`` scales every layer's channels (default 1.0, the paper's networks); with a checkpoint
    file it defaults to the file's own width (read from conv1_1), so width-reduced models load without saying so.
    """
    if name not in MODELS:
        raise ValueError(f"unknown model {name!r}; choose one of: {', '.join(MODELS)}")
    spec = MODELS[name]
    if width is not None and not width > 0:
        raise ValueError(f"width must be positive, got {width}")
    if not 0.0 <= dropout <= 1.0:
        raise ValueError(f"dropout must be in [0, 1], got {dropout}")
    resolved = resolve_weights(name, weights, pretrained)
    if resolved is None:
        with torch.device("meta"):
            model = _construct(spec, num_classes or 1000, dropout, width or 1.0, "pytorch")
        model.to_empty(device="cpu")
        initialize(model, init_weights)
        return model

    if isinstance(resolved, WeightsEnum):
        state_dict = resolved.get_state_dict(progress=progress)
        source = f"{resolved} ({resolved.cached_path() or resolved.url})"
    else:
        state_dict = hub.load_state_dict_file(resolved, what=f"{name} weights")
        source = str(resolved)
    head = state_dict.get(HEAD_KEYS[0])
    file_classes = head.shape[0] if head is not None and head.dim() == 2 else 1000
    if width is None:
        width = _file_width(state_dict)
    with torch.device("meta"):
        model = _construct(spec, num_classes or file_classes, dropout, width, "pytorch")
    return _fill_from_state_dict(model, state_dict, source, init_weights)


def _builder(name: str) -> Callable[..., VGG]:
    """A named builder (``vgg16`` ...) with a docstring generated from the table."""
    spec = MODELS[name]

    def builder(**kwargs) -> VGG:
        return build(name, **kwargs)

    bn = " with batch normalisation after every convolution" if spec.batch_norm else ""
    builder.__name__ = builder.__qualname__ = name
    builder.__doc__ = (
        f"VGG configuration {spec.config} of the paper (arXiv 1409.1556, Table 1){bn}: {spec.depth} weight layers, "
        f"{configs.num_params(name):,} parameters, {configs.gmacs(name):.3f} GMACs at 224x224.\n\n"
        "Keyword arguments: weights, progress, num_classes, dropout, init_weights, width, pretrained (deprecated); "
        "see :func:`vggnets.models.build`."
    )
    builder.__module__ = __name__
    return builder


vgg11 = _builder("vgg11")
vgg11_bn = _builder("vgg11_bn")
vgg11_lrn = _builder("vgg11_lrn")
vgg13 = _builder("vgg13")
vgg13_bn = _builder("vgg13_bn")
vgg16 = _builder("vgg16")
vgg16_bn = _builder("vgg16_bn")
vgg16_1x1 = _builder("vgg16_1x1")
vgg16_1x1_bn = _builder("vgg16_1x1_bn")
vgg19 = _builder("vgg19")
vgg19_bn = _builder("vgg19_bn")

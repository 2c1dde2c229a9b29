"""Model builders: ``build`` by name, ``load_weights`` into a meta-device model, the named builders, get_model.

Pretrained models are built on the meta device and filled from a memory-mapped checkpoint with
``load_state_dict(assign=True)``: no memory is allocated or initialised for weights that are about to be replaced.
Random models are built on the CPU the way torchvision builds them, so the same seed gives the same parameters.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import torch

from ..convert.files import read_weights
from ..core import configs
from ..core.configs import MODELS
from ..core.layout import check_layout, file_num_classes, file_width
from ..core.vgg import HEAD_KEYS, VGG, InitScheme, construct, initialize
from ..errors import UnknownModelError
from .meta import weights_architecture
from .weights import WeightsEnum, resolve_weights

WeightsArg = WeightsEnum | str | Path | None


def check_model_name(name: str) -> str:
    """The name itself if it is a model of :data:`vggnets.core.configs.MODELS`, else UnknownModelError."""
    if name not in MODELS:
        raise UnknownModelError(f"unknown model {name!r}; choose one of: {', '.join(MODELS)}")
    return name


def load_weights(
    model: VGG, state_dict: dict[str, torch.Tensor], source: str, init: InitScheme | bool = "torchvision"
) -> VGG:
    """Move a state_dict into a (meta-device) model without copying; a new fc8 is initialised if its size differs.

    The state_dict must be in torchvision's layout (:func:`vggnets.convert.files.read_weights` converts timm and Keras
    files); a checkpoint that does not fit raises ArchitectureMismatchError listing what differs.
    """
    state_dict = dict(state_dict)
    head = state_dict.get(HEAD_KEYS[0])
    new_head = head is not None and head.shape[0] != model.num_classes
    check_layout(model, state_dict, model.name, source, skip_head=new_head)
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
    """Build any model of :data:`vggnets.core.configs.MODELS` by name; the named builders (``vgg16`` ...) call this.

    ``weights``: None (random init), a weights enum member, ``"DEFAULT"``, ``"IMAGENET1K_V1"``,
    ``"VGG16_Weights.IMAGENET1K_V1"``, or the path of a ``.pth``/``.pt``/``.safetensors`` state_dict (torchvision's
    checkpoints included). With weights, ``num_classes`` defaults to the checkpoint's; a different value keeps every
    pretrained layer and gives a freshly initialised fc8 (fine-tuning). ``pretrained=True`` is the deprecated spelling of
    ``weights="DEFAULT"``. ``width`` scales every layer's channels (default 1.0, the paper's networks); with a checkpoint
    file it defaults to the file's own width (read from conv1_1), so width-reduced models load without saying so.
    """
    spec = MODELS[check_model_name(name)]
    if width is not None and not width > 0:
        raise ValueError(f"width must be positive, got {width}")
    if not 0.0 <= dropout <= 1.0:
        raise ValueError(f"dropout must be in [0, 1], got {dropout}")
    resolved = resolve_weights(name, weights, pretrained)
    if resolved is None:
        # Built on the CPU, layer by layer, exactly as torchvision builds its VGG: under the same seed the default
        # initialisation draws the same random numbers and gives bit-identical parameters.
        return construct(spec, num_classes or 1000, dropout, width or 1.0, init_weights)

    if isinstance(resolved, WeightsEnum):
        state_dict = resolved.get_state_dict(progress=progress)
        source = f"{resolved} ({resolved.cached_path() or resolved.url})"
    else:
        state_dict = read_weights(resolved, what=f"{name} weights")
        source = str(resolved)
    if width is None:
        width = file_width(state_dict)
    with torch.device("meta"):
        model = construct(spec, num_classes or file_num_classes(state_dict), dropout, width, "pytorch")
    return load_weights(model, state_dict, source, init_weights)


def get_model(name: str | None = None, **kwargs) -> VGG:
    """Build a model by name, e.g. ``get_model("vgg16", weights="DEFAULT")`` (as ``torchvision.models.get_model``).

    Without a name, the weights say which model they are: ``get_model(weights="runs/x/best.pth")`` builds the
    architecture a ``vggnets train`` checkpoint records (and published weights their own model)."""
    if name is None:
        name = weights_architecture(kwargs.get("weights"))
        if name is None:
            raise UnknownModelError(
                "get_model needs a model name unless the weights say which model they are (published weights, or "
                f"a checkpoint written by vggnets train); these do not: {kwargs.get('weights')!r}."
            )
    return build(name.lower(), **kwargs)


def _arguments(scope: dict) -> dict:
    """The keyword arguments a named builder received, passed on to :func:`build`."""
    return {key: scope[key] for key in _BUILD_OPTIONS}


_BUILD_OPTIONS = ("weights", "progress", "num_classes", "dropout", "init_weights", "width", "pretrained")


def _documented(builder: Callable[..., VGG]) -> Callable[..., VGG]:
    """Give a named builder its docstring, generated from Table 1 and the parameter count."""
    spec = MODELS[builder.__name__]
    bn = " with batch normalisation after every convolution" if spec.batch_norm else ""
    builder.__doc__ = (
        f"VGG configuration {spec.config} of the paper (arXiv 1409.1556, Table 1){bn}: {spec.depth} weight layers, "
        f"{configs.num_params(spec.name):,} parameters, {configs.gmacs(spec.name):.3f} GMACs at 224x224.\n\n"
        "Arguments as :func:`vggnets.models.builders.build` (``pretrained`` is the deprecated spelling of "
        '``weights="DEFAULT"``).'
    )
    return builder


@_documented
def vgg11(
    *,
    weights: WeightsArg = None,
    progress: bool = True,
    num_classes: int | None = None,
    dropout: float = 0.5,
    init_weights: InitScheme | bool = "torchvision",
    width: float | None = None,
    pretrained: bool | None = None,
) -> VGG:
    return build("vgg11", **_arguments(locals()))


@_documented
def vgg11_bn(
    *,
    weights: WeightsArg = None,
    progress: bool = True,
    num_classes: int | None = None,
    dropout: float = 0.5,
    init_weights: InitScheme | bool = "torchvision",
    width: float | None = None,
    pretrained: bool | None = None,
) -> VGG:
    return build("vgg11_bn", **_arguments(locals()))


@_documented
def vgg11_lrn(
    *,
    weights: WeightsArg = None,
    progress: bool = True,
    num_classes: int | None = None,
    dropout: float = 0.5,
    init_weights: InitScheme | bool = "torchvision",
    width: float | None = None,
    pretrained: bool | None = None,
) -> VGG:
    return build("vgg11_lrn", **_arguments(locals()))


@_documented
def vgg13(
    *,
    weights: WeightsArg = None,
    progress: bool = True,
    num_classes: int | None = None,
    dropout: float = 0.5,
    init_weights: InitScheme | bool = "torchvision",
    width: float | None = None,
    pretrained: bool | None = None,
) -> VGG:
    return build("vgg13", **_arguments(locals()))


@_documented
def vgg13_bn(
    *,
    weights: WeightsArg = None,
    progress: bool = True,
    num_classes: int | None = None,
    dropout: float = 0.5,
    init_weights: InitScheme | bool = "torchvision",
    width: float | None = None,
    pretrained: bool | None = None,
) -> VGG:
    return build("vgg13_bn", **_arguments(locals()))


@_documented
def vgg16(
    *,
    weights: WeightsArg = None,
    progress: bool = True,
    num_classes: int | None = None,
    dropout: float = 0.5,
    init_weights: InitScheme | bool = "torchvision",
    width: float | None = None,
    pretrained: bool | None = None,
) -> VGG:
    return build("vgg16", **_arguments(locals()))


@_documented
def vgg16_bn(
    *,
    weights: WeightsArg = None,
    progress: bool = True,
    num_classes: int | None = None,
    dropout: float = 0.5,
    init_weights: InitScheme | bool = "torchvision",
    width: float | None = None,
    pretrained: bool | None = None,
) -> VGG:
    return build("vgg16_bn", **_arguments(locals()))


@_documented
def vgg16_1x1(
    *,
    weights: WeightsArg = None,
    progress: bool = True,
    num_classes: int | None = None,
    dropout: float = 0.5,
    init_weights: InitScheme | bool = "torchvision",
    width: float | None = None,
    pretrained: bool | None = None,
) -> VGG:
    return build("vgg16_1x1", **_arguments(locals()))


@_documented
def vgg16_1x1_bn(
    *,
    weights: WeightsArg = None,
    progress: bool = True,
    num_classes: int | None = None,
    dropout: float = 0.5,
    init_weights: InitScheme | bool = "torchvision",
    width: float | None = None,
    pretrained: bool | None = None,
) -> VGG:
    return build("vgg16_1x1_bn", **_arguments(locals()))


@_documented
def vgg19(
    *,
    weights: WeightsArg = None,
    progress: bool = True,
    num_classes: int | None = None,
    dropout: float = 0.5,
    init_weights: InitScheme | bool = "torchvision",
    width: float | None = None,
    pretrained: bool | None = None,
) -> VGG:
    return build("vgg19", **_arguments(locals()))


@_documented
def vgg19_bn(
    *,
    weights: WeightsArg = None,
    progress: bool = True,
    num_classes: int | None = None,
    dropout: float = 0.5,
    init_weights: InitScheme | bool = "torchvision",
    width: float | None = None,
    pretrained: bool | None = None,
) -> VGG:
    return build("vgg19_bn", **_arguments(locals()))

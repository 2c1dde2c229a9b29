"""Pure remaps of VGG state dicts between torchvision's layout (ours), timm's and Keras Applications'.

Layouts (:func:`detect_layout`):

``torchvision``
    Ours: ``features.N.*`` and ``classifier.0/3/6.*``, fc6 a Linear of ``C*7*7`` inputs in (C, H, W) order.
``timm``
    ``features.N.*`` identical; fc6 and fc7 are convolutions (``pre_logits.fc1.weight`` [4096, 512, 7, 7],
    ``pre_logits.fc2.weight`` [4096, 4096, 1, 1]), fc8 is ``head.fc``. :func:`from_timm` and :func:`to_timm` reshape
    and rename, exactly and both ways (no values change).
``keras``
    Keras Applications VGG16/VGG19 (and the same scheme for configurations A and B): layers ``block{s}_conv{j}``,
    ``fc1``, ``fc2``, ``predictions`` with keys ``<layer>/kernel`` and ``<layer>/bias``; conv kernels are
    (kh, kw, in, out), dense kernels (in, out), and fc1's inputs are in channels-last (H, W, C) order.
    :func:`read_keras_h5` reads the legacy ``.h5`` files (the files ``keras.applications`` downloads, Keras 2's
    ``save_weights``/``save``, Keras 3's ``model.save("x.h5")``), Keras 3 ``.weights.h5`` files and ``.keras``
    archives with h5py (``pip install 'vggnets[keras]'``); :func:`write_keras_h5` writes the legacy layout, which
    Keras 2 and 3 load with ``model.load_weights("x.h5")``.

Preprocessing. The Keras Applications ImageNet weights are the original Caffe weights: they expect **BGR** images in
[0, 255] minus the mean pixel (103.939, 116.779, 123.68), with no scaling by a standard deviation
(``keras.applications.vgg16.preprocess_input``). By default (``rgb=True``) the conversion reverses the input-channel
axis of conv1_1, so the converted model takes **RGB** like every other vggnets model; it then expects RGB in [0, 255]
minus (123.68, 116.779, 103.939): :func:`keras_transforms` is that preprocessing (:data:`KERAS_MEAN` and
:data:`KERAS_STD` on the [0, 1] scale our transforms use). With ``rgb=False`` conv1_1 is left alone and the model
takes BGR input, as in Keras. timm's and torchvision's VGG weights take RGB in [0, 1] normalised with the ImageNet
mean and std, and the timm conversion changes nothing about that.

A Keras file saved with ``include_top=False`` has no classifier: its fc6-fc8 are filled with NaN (as
``VGG16_Weights.IMAGENET1K_FEATURES``), so it serves as a feature extractor, or builds with ``num_classes=N`` after
which fc8 is fresh and fc6-fc7 stay NaN. The same holds for fc8 of a timm model saved with ``num_classes=0``.

:func:`convert_file` turns any supported file into a ``.pth``/``.pt``/``.safetensors`` file in our layout (or timm's,
or a Keras ``.h5``), written atomically; ``vggnets convert SRC DST`` is its command line. ``vggnets.vgg16(weights=...)``
converts timm and Keras files on the fly (see :func:`vggnets.convert.files.read_weights`).
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any, Literal

import torch
from torch import Tensor

from ..core.configs import MODELS, channels
from ..core.layout import (
    check_layout,
    expected_shapes,
    file_num_classes,
    file_width,
    guess_architecture,
    natural_key,
)
from ..core.vgg import construct
from ..errors import ArchitectureMismatchError, CheckpointError, UnknownModelError

Layout = Literal["torchvision", "timm", "keras", "unknown"]
Target = Literal["torchvision", "timm", "keras"]

#: timm key prefix -> ours.
_TIMM_PREFIXES = (
    ("pre_logits.fc1.", "classifier.0."),
    ("pre_logits.fc2.", "classifier.3."),
    ("head.fc.", "classifier.6."),
)
_CLASSIFIER = ("classifier.0", "classifier.3", "classifier.6")
_KERAS_TOP = ("fc1", "fc2", "predictions")
_POOL = 7


def detect_layout(state: Mapping[str, Any]) -> Layout:
    """Which library's key scheme a state dict follows: ``"torchvision"`` (ours), ``"timm"``, ``"keras"`` or
    ``"unknown"`` (empty, or keys of another network)."""
    keys = [k for k in state if isinstance(k, str)]
    if not keys or len(keys) != len(state):
        return "unknown"
    if all(re.fullmatch(r".+/(kernel|bias)(:\d+)?", k) for k in keys):
        return "keras"
    if not any(k.startswith("features.") for k in keys):
        return "unknown"
    if all(k.startswith(("features.", "classifier.")) for k in keys):
        return "torchvision"
    if all(k.startswith(("features.", "pre_logits.", "head.fc.")) for k in keys):
        return "timm"
    return "unknown"


def require_layout(state: Mapping[str, Any], layout: Layout, what: str) -> None:
    found = detect_layout(state)
    if found != layout:
        raise CheckpointError(
            f"{what} expects a state dict in {layout}'s layout, but this one is {describe_layout(found, state)}."
        )


def describe_layout(layout: Layout, state: Mapping[str, Any]) -> str:
    if layout != "unknown":
        return f"in {layout}'s layout"
    keys = list(state)[:4]
    sample = ", ".join(repr(k) for k in keys) + (" ..." if len(state) > 4 else "")
    return (
        f"not a VGG state dict of vggnets/torchvision, timm or Keras (keys: {sample or 'none'}); "
        "it may be the weights of another network"
    )


def from_timm(state: Mapping[str, Tensor]) -> dict[str, Tensor]:
    """timm's VGG keys -> ours: ``pre_logits.fc1`` (a 7x7 conv) becomes the Linear ``classifier.0`` (reshaped to
    [out, C*49], the same (C, H, W) order), ``pre_logits.fc2`` (1x1 conv) ``classifier.3``, ``head.fc``
    ``classifier.6``; ``features.*`` unchanged. Reshapes are views: nothing is copied."""
    require_layout(state, "timm", "from_timm")
    out: dict[str, Tensor] = {}
    for key, value in state.items():
        for old, new in _TIMM_PREFIXES:
            if key.startswith(old):
                key = new + key[len(old) :]
                break
        if key in ("classifier.0.weight", "classifier.3.weight") and value.dim() == 4:
            value = value.reshape(value.shape[0], -1)
        out[key] = value
    return out


def to_timm(state: Mapping[str, Tensor]) -> dict[str, Tensor]:
    """Our keys -> timm's (the inverse of :func:`from_timm`): loads into ``timm.create_model("vgg16")`` strictly."""
    require_layout(state, "torchvision", "to_timm")
    back = {new: old for old, new in _TIMM_PREFIXES}
    out: dict[str, Tensor] = {}
    for key, value in state.items():
        if key == "classifier.0.weight" and value.dim() == 2:
            if value.shape[1] % (_POOL * _POOL):
                raise CheckpointError(
                    f"classifier.0.weight has {value.shape[1]} inputs, not a multiple of {_POOL}x{_POOL}: "
                    "it is not fc6 of a VGG and cannot become timm's 7x7 convolution."
                )
            value = value.reshape(value.shape[0], -1, _POOL, _POOL)
        elif key == "classifier.3.weight" and value.dim() == 2:
            value = value.reshape(*value.shape, 1, 1)
        for new, old in back.items():
            if key.startswith(new):
                key = old + key[len(new) :]
                break
        out[key] = value
    return out


def from_keras(
    state: Mapping[str, Tensor], *, rgb: bool = True, channels_last: bool = True, model: str | None = None
) -> dict[str, Tensor]:
    """Keras Applications VGG tensors (``<layer>/kernel``, ``<layer>/bias``, in model order) -> our state dict.

    Conv kernels (kh, kw, in, out) become (out, in, kh, kw); dense kernels are transposed; fc1's inputs are reordered
    from channels-last (H, W, C) to our (C, H, W) flatten order (``channels_last=False`` for a model built with
    ``data_format="channels_first"``). ``rgb=True`` reverses conv1_1's input channels so the model takes RGB instead
    of Keras' BGR (see the module docstring for the preprocessing). The configuration is recognised from the
    convolutions (13: vgg16, 16: vgg19; 8 and 10: vgg11, vgg13), or checked against ``model``. Without a top
    (``include_top=False``) only ``features.*`` is returned; :func:`complete` fills the classifier with NaN.
    """
    require_layout(state, "keras", "from_keras")
    layers = keras_layers(state)
    convs = [(name, w) for name, w in layers if w["kernel"].dim() == 4]
    denses = [(name, w) for name, w in layers if w["kernel"].dim() == 2]
    odd = [name for name, w in layers if w["kernel"].dim() not in (2, 4)]
    if odd or len(denses) not in (0, 3):
        raise CheckpointError(
            f"These Keras weights are not a Keras Applications VGG: it has {len(convs)} convolutions and "
            f"{len(denses)} dense layers{' and other layers (' + ', '.join(odd) + ')' if odd else ''}; a VGG has 8 to "
            "16 convolutions followed by 3 dense layers (fc1, fc2, predictions) or none (include_top=False)."
        )
    if not convs:
        raise CheckpointError("These Keras weights hold no convolution: they are not the weights of a VGG.")
    out: dict[str, Tensor] = {}
    conv_weights = [w["kernel"].permute(3, 2, 0, 1) for _, w in convs]
    if rgb and conv_weights[0].shape[1] == 3:
        conv_weights[0] = conv_weights[0].flip(1)
    name, conv_keys = _match_convs([tuple(w.shape) for w in conv_weights], model, [n for n, _ in convs])
    for key, weight, (_, w) in zip(conv_keys, conv_weights, convs):
        out[f"{key}.weight"] = weight.contiguous()
        out[f"{key}.bias"] = w["bias"]
    if denses:
        channels = conv_weights[-1].shape[0]
        kernel = denses[0][1]["kernel"]
        if kernel.shape[0] != channels * _POOL * _POOL:
            side = int(round((kernel.shape[0] / channels) ** 0.5 * 32))
            raise ArchitectureMismatchError(
                f"The Keras {name} was built for {side}x{side} inputs: its fc1 takes {kernel.shape[0]} inputs, not "
                f"{_POOL}x{_POOL}x{channels} = {channels * _POOL * _POOL}. Only models built with include_top=True "
                "at 224x224 (the Keras default) or include_top=False convert."
            )
        fc1 = kernel.t()
        if channels_last:
            fc1 = fc1.reshape(fc1.shape[0], _POOL, _POOL, channels).permute(0, 3, 1, 2)
        out["classifier.0.weight"] = fc1.reshape(fc1.shape[0], -1).contiguous()
        out["classifier.3.weight"] = denses[1][1]["kernel"].t().contiguous()
        out["classifier.6.weight"] = denses[2][1]["kernel"].t().contiguous()
        for key, (_, w) in zip(_CLASSIFIER, denses):
            out[f"{key}.bias"] = w["bias"]
    return out


def to_keras(state: Mapping[str, Tensor], *, rgb: bool = True, model: str | None = None) -> dict[str, Tensor]:
    """Our state dict -> Keras Applications names and shapes (the inverse of :func:`from_keras`, ``rgb`` alike:
    ``rgb=True`` turns conv1_1 back to BGR input). Batch-norm models have no Keras Applications counterpart."""
    require_layout(state, "torchvision", "to_keras")
    probe = dict(state)
    complete(probe, device="meta")  # a features-only state (include_top=False) is recognised too
    name = pick_model(model, guess_architecture(probe), probe)
    out: dict[str, Tensor] = {}
    for layer, key in _keras_conv_names(name):
        weight = state[f"{key}.weight"]
        if layer == "block1_conv1" and rgb and weight.shape[1] == 3:
            weight = weight.flip(1)
        out[f"{layer}/kernel"] = weight.permute(2, 3, 1, 0).contiguous()
        out[f"{layer}/bias"] = state[f"{key}.bias"]
    if "classifier.0.weight" in state:
        fc1 = state["classifier.0.weight"]
        fc1 = fc1.reshape(fc1.shape[0], -1, _POOL, _POOL).permute(2, 3, 1, 0)
        out["fc1/kernel"] = fc1.reshape(-1, fc1.shape[-1]).contiguous()
        out["fc1/bias"] = state["classifier.0.bias"]
        for layer, key in zip(_KERAS_TOP[1:], _CLASSIFIER[1:]):
            out[f"{layer}/kernel"] = state[f"{key}.weight"].t().contiguous()
            out[f"{layer}/bias"] = state[f"{key}.bias"]
    return out


def keras_layers(state: Mapping[str, Tensor]) -> list[tuple[str, dict[str, Tensor]]]:
    """Group ``<layer>/kernel``, ``<layer>/bias`` keys by layer, in order of first appearance."""
    layers: dict[str, dict[str, Tensor]] = {}
    for key, value in state.items():
        layer, _, kind = key.rpartition("/")
        layers.setdefault(layer, {})[kind.split(":")[0]] = value
    for layer, weights in layers.items():
        if set(weights) != {"kernel", "bias"}:
            raise CheckpointError(
                f"Keras layer {layer} has {', '.join(sorted(weights))} but not both a kernel and a bias: it is not a "
                "layer of a Keras Applications VGG."
            )
    return list(layers.items())


def _conv_keys(name: str, width: float) -> list[tuple[str, tuple[int, ...]]]:
    """(``features.N``, weight shape) of every convolution of a model, in order."""
    shapes = expected_shapes(name, width=width)
    keys = sorted((k for k in shapes if k.startswith("features.") and len(shapes[k]) == 4), key=natural_key)
    return [(k.rsplit(".", 1)[0], tuple(shapes[k])) for k in keys]


def _match_convs(shapes: list[tuple[int, ...]], model: str | None, names: list[str]) -> tuple[str, list[str]]:
    """The model whose convolutions have exactly these shapes, and their ``features.N`` prefixes."""
    width = shapes[0][0] / 64
    candidates = [model] if model else [n for n, spec in MODELS.items() if not spec.batch_norm]
    for name in candidates:
        if name not in MODELS:
            raise UnknownModelError(f"unknown model {name!r}; choose one of: {', '.join(MODELS)}")
        if MODELS[name].batch_norm:
            raise ArchitectureMismatchError(
                f"Keras Applications' VGGs have no batch normalisation: their weights cannot fill {name}; build "
                f"{name.removesuffix('_bn')} instead."
            )
        expected = _conv_keys(name, width)
        if [s for _, s in expected] == shapes:
            return name, [k for k, _ in expected]
    summary = ", ".join(f"{n} {s[1]}->{s[0]} {s[2]}x{s[3]}" for n, s in zip(names[:6], shapes[:6]))
    more = " ..." if len(shapes) > 6 else ""
    target = (
        f"the {model} architecture"
        if model
        else "any VGG configuration (Keras Applications has VGG16 and VGG19)"
    )
    raise ArchitectureMismatchError(
        f"The Keras weights do not fit {target}: {len(shapes)} convolutions ({summary}{more}). "
        "Check that the file holds the weights of keras.applications.VGG16 or VGG19."
    )


def pick_model(model: str | None, guesses: list[str], state: Mapping[str, Tensor]) -> str:
    if model is not None:
        if model not in MODELS:
            raise UnknownModelError(f"unknown model {model!r}; choose one of: {', '.join(MODELS)}")
        if model not in guesses:
            with torch.device("meta"):
                target = construct(MODELS[model], file_num_classes(state), 0.5, file_width(state), "pytorch")
            check_layout(target, dict(state), model, "being converted", skip_head=False)
        return model
    if not guesses:
        raise ArchitectureMismatchError(
            "The weights do not fit any VGG configuration of vggnets (compare `vggnets models`); check that they are "
            "the weights of a VGG."
        )
    return guesses[0]


def _keras_conv_names(name: str) -> list[tuple[str, str]]:
    """(``block{s}_conv{j}``, ``features.N``) of a model's convolutions, blocks separated by its max-pools."""
    if MODELS[name].batch_norm:
        raise CheckpointError(
            f"{name} has batch normalisation, which Keras Applications' VGG16/VGG19 do not have: it cannot be "
            "written in their layout."
        )
    pairs = []
    index, block, conv = 0, 1, 0
    for layer in MODELS[name].layers:
        if layer.kind == "pool":
            block, conv = block + 1, 0
            index += 1
        elif layer.kind == "lrn":
            index += 1
        else:
            conv += 1
            pairs.append((f"block{block}_conv{conv}", f"features.{index}"))
            index += 2
    return pairs


def complete(state: dict[str, Tensor], *, device: str = "cpu") -> list[str]:
    """Fill missing classifier tensors (Keras ``include_top=False``, timm ``num_classes=0``) with NaN, in place, as
    ``VGG16_Weights.IMAGENET1K_FEATURES`` does; returns the keys filled. Needs a torchvision-layout state.
    (``device="meta"`` adds shapes only, for recognising the architecture.)"""
    convs = sorted(
        (k for k, v in state.items() if k.startswith("features.") and v.dim() == 4), key=natural_key
    )
    if not convs:
        return []
    last = state[convs[-1]].shape[0]
    hidden = state["classifier.0.weight"].shape[0] if "classifier.0.weight" in state else None
    hidden = hidden or channels(file_width(state), 4096)
    shapes = {
        "classifier.0": (hidden, last * _POOL * _POOL),
        "classifier.3": (hidden, hidden),
        "classifier.6": (1000, hidden),
    }
    filled = []
    for prefix, shape in shapes.items():
        if f"{prefix}.weight" in state:
            continue
        state[f"{prefix}.weight"] = torch.full(shape, float("nan"), device=device)
        state[f"{prefix}.bias"] = torch.full(shape[:1], float("nan"), device=device)
        filled += [f"{prefix}.weight", f"{prefix}.bias"]
    return filled


def as_torchvision(state: dict[str, Tensor], *, rgb: bool = True) -> dict[str, Tensor]:
    """A loaded state dict in our layout: timm and Keras-named ones are converted (with :func:`complete`), ours and
    unknown ones are returned unchanged (the model's own checks then report what does not fit)."""
    layout = detect_layout(state)
    if layout == "timm":
        state = from_timm(state)
    elif layout == "keras":
        state = from_keras(state, rgb=rgb)
    else:
        return state
    complete(state)
    return state

"""Convert VGG weights between vggnets (torchvision's layout), timm and Keras Applications.

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
converts timm and Keras files on the fly (see :func:`vggnets.hub.load_state_dict_file`).
"""

from __future__ import annotations

import contextlib
import io
import os
import re
import tempfile
import zipfile
from collections.abc import Iterator, Mapping
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Literal

import torch
from torch import Tensor

from .errors import ArchitectureMismatchError, CheckpointError, MissingDependencyError, VggnetsError

Layout = Literal["torchvision", "timm", "keras", "unknown"]
Target = Literal["torchvision", "timm", "keras"]

#: The Caffe mean pixel of the Keras Applications (and original Caffe) VGG weights, BGR order, [0, 255] scale.
KERAS_MEAN_BGR = (103.939, 116.779, 123.68)
#: The same in RGB order.
KERAS_MEAN_RGB = (123.68, 116.779, 103.939)
#: Normalisation of a converted Keras model (RGB input) on the [0, 1] scale of vggnets' transforms:
#: ``(x - mean) / std`` with these values is ``255 * x - KERAS_MEAN_RGB``.
KERAS_MEAN = tuple(m / 255.0 for m in KERAS_MEAN_RGB)
KERAS_STD = (1.0 / 255.0, 1.0 / 255.0, 1.0 / 255.0)
#: ImageNet normalisation of torchvision's and timm's VGG weights (RGB in [0, 1]).
IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)

KERAS_SUFFIXES = (".h5", ".hdf5", ".keras")
TORCH_SUFFIXES = (".pth", ".pt", ".bin", ".ckpt")
HDF5_SIGNATURE = b"\x89HDF\r\n\x1a\n"
KERAS_EXTRA = "pip install 'vggnets[keras]'"

#: timm key prefix -> ours.
_TIMM_PREFIXES = (
    ("pre_logits.fc1.", "classifier.0."),
    ("pre_logits.fc2.", "classifier.3."),
    ("head.fc.", "classifier.6."),
)
_CLASSIFIER = ("classifier.0", "classifier.3", "classifier.6")
_KERAS_TOP = ("fc1", "fc2", "predictions")
_POOL = 7


# --- layouts ---


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


def _require(state: Mapping[str, Any], layout: Layout, what: str) -> None:
    found = detect_layout(state)
    if found != layout:
        raise CheckpointError(
            f"{what} expects a state dict in {layout}'s layout, but this one is {_describe_layout(found, state)}."
        )


def _describe_layout(layout: Layout, state: Mapping[str, Any]) -> str:
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
    _require(state, "timm", "from_timm")
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
    _require(state, "torchvision", "to_timm")
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
    _require(state, "keras", "from_keras")
    layers = _keras_layers(state)
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
    _require(state, "torchvision", "to_keras")
    from .models import guess_architecture

    probe = dict(state)
    complete(probe, device="meta")  # a features-only state (include_top=False) is recognised too
    name = _pick_model(model, guess_architecture(probe), probe)
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


def _keras_layers(state: Mapping[str, Tensor]) -> list[tuple[str, dict[str, Tensor]]]:
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
    from .models import _natural, expected_shapes

    shapes = expected_shapes(name, width=width)
    keys = sorted((k for k in shapes if k.startswith("features.") and len(shapes[k]) == 4), key=_natural)
    return [(k.rsplit(".", 1)[0], tuple(shapes[k])) for k in keys]


def _match_convs(shapes: list[tuple[int, ...]], model: str | None, names: list[str]) -> tuple[str, list[str]]:
    """The model whose convolutions have exactly these shapes, and their ``features.N`` prefixes."""
    from .configs import MODELS

    width = shapes[0][0] / 64
    candidates = [model] if model else [n for n, spec in MODELS.items() if not spec.batch_norm]
    for name in candidates:
        if name not in MODELS:
            raise VggnetsError(f"unknown model {name!r}; choose one of: {', '.join(MODELS)}")
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


def _pick_model(model: str | None, guesses: list[str], state: Mapping[str, Tensor]) -> str:
    from .configs import MODELS

    if model is not None:
        if model not in MODELS:
            raise VggnetsError(f"unknown model {model!r}; choose one of: {', '.join(MODELS)}")
        if model not in guesses:
            from .models import _check_layout, _construct

            with torch.device("meta"):
                target = _construct(MODELS[model], _num_classes(state), 0.5, _width(state), "pytorch")
            _check_layout(target, dict(state), model, "being converted", skip_head=False)
        return model
    if not guesses:
        raise ArchitectureMismatchError(
            "The weights do not fit any VGG configuration of vggnets (compare `vggnets models`); check that they are "
            "the weights of a VGG."
        )
    return guesses[0]


def _keras_conv_names(name: str) -> list[tuple[str, str]]:
    """(``block{s}_conv{j}``, ``features.N``) of a model's convolutions, blocks separated by its max-pools."""
    from .configs import MODELS

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


def _width(state: Mapping[str, Tensor]) -> float:
    conv1 = state.get("features.0.weight")
    return conv1.shape[0] / 64 if conv1 is not None else 1.0


def _num_classes(state: Mapping[str, Tensor]) -> int:
    head = state.get("classifier.6.weight")
    return head.shape[0] if head is not None else 1000


def complete(state: dict[str, Tensor], *, device: str = "cpu") -> list[str]:
    """Fill missing classifier tensors (Keras ``include_top=False``, timm ``num_classes=0``) with NaN, in place, as
    ``VGG16_Weights.IMAGENET1K_FEATURES`` does; returns the keys filled. Needs a torchvision-layout state.
    (``device="meta"`` adds shapes only, for recognising the architecture.)"""
    from .configs import channels
    from .models import _natural

    convs = sorted((k for k, v in state.items() if k.startswith("features.") and v.dim() == 4), key=_natural)
    if not convs:
        return []
    last = state[convs[-1]].shape[0]
    hidden = state["classifier.0.weight"].shape[0] if "classifier.0.weight" in state else None
    hidden = hidden or channels(_width(state), 4096)
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


# --- Keras files ---


def _h5py() -> Any:
    try:
        import h5py
    except ImportError as exc:
        raise MissingDependencyError(
            f"Reading or writing Keras .h5 weights needs h5py, which is not installed: {KERAS_EXTRA} "
            "(or pip install h5py)."
        ) from exc
    return h5py


def is_keras_file(path: str | Path) -> bool:
    """True for ``.h5``/``.hdf5``/``.keras`` names and for any file that starts with the HDF5 signature."""
    path = Path(path)
    if path.suffix.lower() in KERAS_SUFFIXES:
        return True
    try:
        with open(path, "rb") as f:
            return f.read(len(HDF5_SIGNATURE)) == HDF5_SIGNATURE
    except OSError:
        return False


def read_keras_raw(path: str | Path) -> tuple[dict[str, Tensor], bool]:
    """The ``<layer>/kernel``/``<layer>/bias`` tensors of a Keras file, in model order, and whether the model is
    channels-last (from its saved configuration; weights-only files are assumed to be, as Keras' default)."""
    path = Path(path)
    h5py = _h5py()
    try:
        with _open_keras(path, h5py) as (f, config):
            if "layer_names" in f.attrs or "layer_names0" in f.attrs:
                layers = list(_legacy_layers(f))
            elif "model_weights" in f:
                config = config or _attr_text(f.attrs.get("model_config"))
                layers = list(_legacy_layers(f["model_weights"]))
            elif "layers" in f or "_layer_checkpoint_dependencies" in f:
                layers = list(_keras3_layers(f))
            else:
                raise CheckpointError(
                    f"Cannot read {path} as Keras weights: it is an HDF5 file without Keras' 'layer_names', "
                    "'model_weights' or 'layers' entries."
                )
    except (OSError, KeyError, ValueError, zipfile.BadZipFile) as exc:
        raise CheckpointError(
            f"Cannot read {path} as Keras weights: {type(exc).__name__}: {exc}. Save the model again with "
            "model.save_weights('x.weights.h5') or model.save('x.h5')."
        ) from exc
    state: dict[str, Tensor] = {}
    for layer, arrays in layers:
        if len(arrays) != 2 or sorted(a.ndim for a in arrays)[0] != 1:
            shapes = ", ".join(str(tuple(a.shape)) for a in arrays)
            raise CheckpointError(
                f"{path} is not the weights file of a Keras Applications VGG: its layer {layer} holds {len(arrays)} "
                f"arrays ({shapes}), where a VGG's convolution and dense layers hold a kernel and a bias."
            )
        kernel, bias = sorted(arrays, key=lambda a: -a.ndim)
        state[f"{layer}/kernel"] = torch.from_numpy(kernel)
        state[f"{layer}/bias"] = torch.from_numpy(bias)
    if not state:
        raise CheckpointError(f"{path} holds no Keras layer weights.")
    return state, '"channels_first"' not in (config or "")


def read_keras_h5(path: str | Path, *, rgb: bool = True, model: str | None = None) -> dict[str, Tensor]:
    """Our state dict from a Keras VGG16/VGG19 weights file (legacy ``.h5``, Keras 3 ``.weights.h5``, ``.keras``).

    Needs h5py (``pip install 'vggnets[keras]'``). ``rgb=True`` makes the model take RGB input (see the module
    docstring: preprocess with :func:`keras_transforms`); a file without a top gets a NaN classifier."""
    raw, channels_last = read_keras_raw(path)
    try:
        state = from_keras(raw, rgb=rgb, channels_last=channels_last, model=model)
    except CheckpointError as exc:
        raise type(exc)(f"{path}: {exc}") from exc
    complete(state)
    return state


@contextlib.contextmanager
def _open_keras(path: Path, h5py: Any) -> Iterator[tuple[Any, str | None]]:
    """The HDF5 file (for a ``.keras`` archive: its ``model.weights.h5``) and the saved model config, if any."""
    if zipfile.is_zipfile(path):
        with zipfile.ZipFile(path) as archive:
            names = archive.namelist()
            if "model.weights.h5" not in names:
                raise CheckpointError(
                    f"{path} is a zip archive without model.weights.h5: it is not a Keras 3 .keras file."
                )
            config = archive.read("config.json").decode("utf-8") if "config.json" in names else None
            data = io.BytesIO(archive.read("model.weights.h5"))
        with h5py.File(data, "r") as f:
            yield f, config
        return
    with h5py.File(path, "r") as f:
        yield f, None


def _attr_text(value: Any) -> str | None:
    if value is None:
        return None
    return value.decode("utf-8") if hasattr(value, "decode") else str(value)


def _attr_list(group: Any, name: str) -> list[str]:
    """A list attribute, also when Keras split it into ``name0``, ``name1`` ... (HDF5's 64 KiB header limit)."""
    if name in group.attrs:
        values = list(group.attrs[name])
    else:
        values, chunk = [], 0
        while f"{name}{chunk}" in group.attrs:
            values += list(group.attrs[f"{name}{chunk}"])
            chunk += 1
    return [_attr_text(v) or "" for v in values]


def _legacy_layers(group: Any) -> Iterator[tuple[str, list[Any]]]:
    """Layers with weights of a Keras 1/2 (or Keras 3 legacy) HDF5 group, in model order; nested models flattened."""
    for name in _attr_list(group, "layer_names"):
        layer = group[name]
        weight_names = _attr_list(layer, "weight_names")
        if not weight_names:
            continue
        by_layer: dict[str, list[Any]] = {}
        for weight_name in weight_names:
            # a nested model stores "inner_layer/kernel:0" paths under its own group
            owner = weight_name.rsplit("/", 1)[0] if "/" in weight_name else name
            by_layer.setdefault(owner, []).append(layer[weight_name][()])
        yield from by_layer.items()


def _keras3_layers(f: Any) -> Iterator[tuple[str, list[Any]]]:
    """Layers with weights of a Keras 3 ``.weights.h5`` (``layers/<conv2d_N>/vars/<i>``), in model order."""
    root = f["layers"] if "layers" in f else f["_layer_checkpoint_dependencies"]

    def order(name: str) -> tuple[str, int]:
        base, _, number = name.rpartition("_")
        return (base, int(number)) if number.isdigit() else (name, 0)

    for group_name in sorted(root, key=order):
        group = root[group_name]
        variables = group.get("vars")
        if variables is not None and len(variables):
            layer = _attr_text(variables.attrs.get("name")) or group_name
            yield layer, [variables[str(i)][()] for i in range(len(variables))]
        if "layers" in group:  # a nested model
            yield from _keras3_layers(group)


def write_keras_h5(state: Mapping[str, Tensor], path: str | Path) -> None:
    """Write Keras-layout tensors (from :func:`to_keras`) as a legacy Keras weights file, the layout of the files
    ``keras.applications`` downloads; ``model.load_weights(path)`` reads it in Keras 2 and 3 (path not ending in
    ``.weights.h5``, which Keras 3 reads as its own format)."""
    h5py = _h5py()
    import numpy as np

    layers = _keras_layers(state)
    with h5py.File(path, "w") as f:
        f.attrs["layer_names"] = np.array([name.encode("utf-8") for name, _ in layers])
        f.attrs["backend"] = b"tensorflow"
        f.attrs["keras_version"] = b"2.15.0"
        for name, weights in layers:
            group = f.create_group(name)
            names = [f"{name}/kernel:0", f"{name}/bias:0"]
            group.attrs["weight_names"] = np.array([n.encode("utf-8") for n in names])
            for weight_name, kind in zip(names, ("kernel", "bias")):
                group.create_dataset(weight_name, data=weights[kind].detach().cpu().float().numpy())


# --- preprocessing ---


def keras_transforms(*, crop_size: int = 224, resize_size: int = 256) -> Any:
    """The preprocessing of a converted Keras Applications model (``rgb=True``): resize, center-crop, then RGB in
    [0, 255] minus (123.68, 116.779, 103.939), no division: Keras' ``preprocess_input`` without the channel swap."""
    from .transforms import ImageClassification

    return ImageClassification(crop_size=crop_size, resize_size=resize_size, mean=KERAS_MEAN, std=KERAS_STD)


@dataclass(frozen=True)
class Preprocessing:
    """The input a converted model expects: channel order, value range, and mean/std on the [0, 1] scale of
    :class:`vggnets.transforms.ImageClassification` (``None`` where the source does not say)."""

    channels: str
    description: str
    mean: tuple[float, ...] | None = None
    std: tuple[float, ...] | None = None


def _preprocessing(layout: Layout, rgb: bool, target: Target) -> Preprocessing:
    if layout == "keras":
        if rgb and target != "keras":
            return Preprocessing(
                "RGB",
                "Caffe-style: RGB in [0, 255] minus the mean pixel (123.68, 116.779, 103.939), no std "
                "(conv1_1 was flipped from Keras' BGR); vggnets.convert.keras_transforms() does it",
                KERAS_MEAN,
                KERAS_STD,
            )
        return Preprocessing(
            "BGR",
            "Caffe-style, as in Keras: BGR in [0, 255] minus the mean pixel (103.939, 116.779, 123.68), no std "
            "(keras.applications.vgg16.preprocess_input)",
            tuple(m / 255.0 for m in KERAS_MEAN_BGR),
            KERAS_STD,
        )
    if target == "keras" and rgb:
        return Preprocessing(
            "BGR",
            "unchanged apart from the channel order: conv1_1 was flipped to take BGR, as Keras' Caffe-style "
            "preprocess_input gives (right for weights that came from Keras; pass rgb=False / --bgr to keep RGB)",
        )
    return Preprocessing(
        "RGB",
        "unchanged: what the source weights expect (torchvision's and timm's ImageNet VGG weights: RGB in [0, 1] "
        "normalised with mean (0.485, 0.456, 0.406) and std (0.229, 0.224, 0.225))",
        IMAGENET_MEAN if layout == "timm" else None,
        IMAGENET_STD if layout == "timm" else None,
    )


# --- files ---


@dataclass
class ConversionReport:
    """What :func:`convert_file` did."""

    source: str
    destination: str
    source_layout: Layout
    target_layout: Target
    model: str
    candidates: list[str]
    num_classes: int
    tensors: int
    parameters: int
    channel_flip: bool
    preprocessing: Preprocessing
    nan_filled: list[str] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready dict."""
        return asdict(self)


def _target_for(dst: Path, to: Target | None) -> Target:
    name = dst.name.lower()
    if to is None:
        return "keras" if name.endswith(KERAS_SUFFIXES) else "torchvision"
    if to not in ("torchvision", "timm", "keras"):
        raise VggnetsError(f"to must be 'torchvision', 'timm' or 'keras', not {to!r}.")
    if (to == "keras") != name.endswith(KERAS_SUFFIXES):
        wanted = "a .h5 name" if to == "keras" else "a .pth, .pt or .safetensors name"
        raise VggnetsError(f"Writing {to}'s layout needs {wanted}, got {dst.name}.")
    return to


def _check_destination(dst: Path, target: Target) -> None:
    name = dst.name.lower()
    if target == "keras":
        if name.endswith(".weights.h5") or name.endswith(".keras"):
            raise VggnetsError(
                f"Cannot write {dst.name}: vggnets writes the legacy Keras .h5 layout, and Keras 3 reads names ending "
                "in .weights.h5 or .keras as its own formats. Name the file e.g. vgg16.h5; load it with "
                "model.load_weights('vgg16.h5')."
            )
    elif not name.endswith((".safetensors", *TORCH_SUFFIXES)):
        raise VggnetsError(
            f"Cannot tell which format to write from the name {dst.name}: use .safetensors (recommended), .pth or "
            ".pt, or .h5 for Keras."
        )


def convert_file(
    src: str | Path,
    dst: str | Path,
    *,
    model: str | None = None,
    rgb: bool = True,
    to: Target | None = None,
    overwrite: bool = False,
) -> ConversionReport:
    """Convert a VGG checkpoint between layouts and write it atomically.

    ``src``: a ``.pth``/``.pt``/``.safetensors`` file in our (torchvision's) or timm's layout, or a Keras ``.h5``,
    ``.weights.h5`` or ``.keras`` file. ``dst``: ``.safetensors`` or ``.pth``/``.pt`` in our layout (``to="timm"``
    for timm's), or ``.h5`` for Keras' legacy layout. ``model`` checks the weights against a configuration (default:
    recognised from the shapes). ``rgb``: flip conv1_1 between Keras' BGR and our RGB (default; ``False`` keeps the
    source's channel order). An existing ``dst`` is replaced only with ``overwrite=True``.
    """
    from . import hub
    from .models import guess_architecture

    src, dst = Path(src).expanduser(), Path(dst).expanduser()
    target = _target_for(dst, to)
    _check_destination(dst, target)
    if dst.exists() and not overwrite:
        raise VggnetsError(
            f"{dst} already exists; pass overwrite=True (--force on the command line) to replace it."
        )
    if dst.is_dir():
        raise VggnetsError(f"{dst} is a directory; give the path of the file to write.")
    if not dst.parent.is_dir():
        raise VggnetsError(f"Cannot write {dst}: the folder {dst.parent} does not exist.")

    if is_keras_file(src) and src.exists():
        layout: Layout = "keras"
        state = read_keras_h5(src, rgb=rgb, model=model)
    else:
        state = hub.load_state_dict_file(src, what="the weights to convert", convert_layout=False)
        layout = detect_layout(state)
        if layout == "unknown":
            raise CheckpointError(f"{src} is {_describe_layout(layout, state)}: there is nothing to convert.")
        state = as_torchvision(state) if layout != "torchvision" else dict(state)
    nan_filled = [k for k in state if k.startswith("classifier.") and _all_nan(state[k])]
    candidates = guess_architecture(state)
    name = _pick_model(model, candidates, state)
    if target == "timm":
        out = to_timm(state)
    elif target == "keras":
        out = to_keras({k: v for k, v in state.items() if k not in nan_filled}, rgb=rgb, model=name)
    else:
        out = state
    _write_atomically(out, dst, target)
    flipped = rgb and (layout == "keras") != (target == "keras")
    return ConversionReport(
        source=str(src),
        destination=str(dst),
        source_layout=layout,
        target_layout=target,
        model=name,
        candidates=candidates,
        num_classes=_num_classes(state),
        tensors=len(out),
        parameters=sum(v.numel() for v in out.values()),
        channel_flip=flipped,
        preprocessing=_preprocessing(layout, rgb, target),
        nan_filled=nan_filled,
    )


def _all_nan(tensor: Tensor) -> bool:
    """True for a tensor of NaN (looking at the first value first: real weights fail fast)."""
    flat = tensor.reshape(-1)
    return bool(flat.numel()) and bool(torch.isnan(flat[:1]).all()) and bool(torch.isnan(flat).all())


def _write_atomically(state: Mapping[str, Tensor], dst: Path, target: Target) -> None:
    """Write into a temporary file next to dst, then rename it over dst: no half-written file under the name."""
    fd, tmp = tempfile.mkstemp(prefix=f".{dst.name}.", suffix=".partial", dir=dst.parent)
    os.close(fd)
    try:
        if target == "keras":
            write_keras_h5(state, tmp)
        elif dst.suffix.lower() == ".safetensors":
            from safetensors.torch import save_file

            save_file({k: v.contiguous() for k, v in state.items()}, tmp, metadata={"format": "pt"})
        else:
            torch.save({k: v.contiguous() for k, v in state.items()}, tmp)
        os.replace(tmp, dst)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise


def describe(report: ConversionReport) -> str:
    """A few lines for people: layouts, model, tensors, and the preprocessing the weights expect."""
    extra = [c for c in report.candidates if c != report.model]
    fits = report.model + (f" (also fits {', '.join(extra)})" if extra else "")
    lines = [
        f"source:        {report.source} ({report.source_layout} layout)",
        f"written:       {report.destination} ({report.target_layout} layout)",
        f"model:         {fits}, {report.num_classes} classes",
        f"tensors:       {report.tensors} ({report.parameters:,} parameters)",
        f"channel flip:  {'yes (conv1_1 input channels reversed)' if report.channel_flip else 'no'}",
        f"preprocessing: {report.preprocessing.channels} input; {report.preprocessing.description}",
    ]
    if report.preprocessing.mean is not None:
        mean = ", ".join(f"{m:.6g}" for m in report.preprocessing.mean)
        std = ", ".join(f"{s:.6g}" for s in report.preprocessing.std or ())
        lines.append(f"               ImageClassification(crop_size=224, mean=({mean}), std=({std}))")
    if report.nan_filled:
        lines.append(
            "note:          the source has no classifier "
            f"({', '.join(sorted({k.rsplit('.', 1)[0] for k in report.nan_filled}))} filled with NaN): use it as a "
            "feature extractor, or build with num_classes=N for a fresh fc8"
        )
    return "\n".join(lines)

"""Keras HDF5 I/O: read the tensors of legacy .h5, Keras 3 .weights.h5 and .keras files; write the legacy layout.

Needs h5py (``pip install 'vggnets[keras]'``).
"""

from __future__ import annotations

import contextlib
import io
import zipfile
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

import torch
from torch import Tensor

from ..errors import CheckpointError, MissingDependencyError
from .layouts import complete, from_keras, keras_layers

KERAS_SUFFIXES = (".h5", ".hdf5", ".keras")
HDF5_SIGNATURE = b"\x89HDF\r\n\x1a\n"
KERAS_EXTRA = "pip install 'vggnets[keras]'"


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

    layers = keras_layers(state)
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

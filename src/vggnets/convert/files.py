"""Reading any supported weights file into our layout, and ``convert_file`` (``vggnets convert``) with its report."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import Tensor

from ..core.layout import file_num_classes, guess_architecture
from ..errors import CheckpointError, VggnetsError
from ..io.checkpoint import check_file, load_state_dict_file
from ..io.output import atomic_write, check_output
from ..version import __version__
from .keras_h5 import KERAS_SUFFIXES, is_keras_file, read_keras_h5, write_keras_h5
from .layouts import (
    Layout,
    Target,
    as_torchvision,
    describe_layout,
    detect_layout,
    pick_model,
    to_keras,
    to_timm,
)
from .preprocessing import Preprocessing, preprocessing_for

TORCH_SUFFIXES = (".pth", ".pt", ".bin", ".ckpt")


def read_weights(path: str | Path, *, what: str | None = None) -> dict[str, Tensor]:
    """A checkpoint file's tensors in our (torchvision's) layout: timm-layout files and Keras ``.h5``/``.keras`` files
    are converted (Keras: RGB input, Caffe-style preprocessing); others are read safely by :mod:`vggnets.io.checkpoint`.
    """
    path = Path(path)
    check_file(path, f"{what} ({path})" if what else str(path))
    if is_keras_file(path):
        return read_keras_h5(path)
    return as_torchvision(load_state_dict_file(path, what=what))


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


def check_destination(dst: str | Path, *, to: Target | None = None, overwrite: bool = False) -> Target:
    """Before reading anything: the layout to write for ``dst`` (and ``to``), a name that says its format, and a
    folder that takes the file (created if missing; :func:`vggnets.io.output.check_output`), free unless
    ``overwrite``."""
    dst = Path(dst).expanduser()
    target = _target_for(dst, to)
    _check_destination(dst, target)
    check_output(dst, overwrite=overwrite)
    return target


def convert_file(
    src: str | Path,
    dst: str | Path,
    *,
    model: str | None = None,
    rgb: bool = True,
    to: Target | None = None,
    overwrite: bool = False,
    metadata: Mapping[str, str] | None = None,
) -> ConversionReport:
    """Convert a VGG checkpoint between layouts and write it atomically.

    ``src``: a ``.pth``/``.pt``/``.safetensors`` file in our (torchvision's) or timm's layout, or a Keras ``.h5``,
    ``.weights.h5`` or ``.keras`` file. ``dst``: ``.safetensors`` or ``.pth``/``.pt`` in our layout (``to="timm"``
    for timm's), or ``.h5`` for Keras' legacy layout. ``model`` checks the weights against a configuration (default:
    recognised from the shapes). ``rgb``: flip conv1_1 between Keras' BGR and our RGB (default; ``False`` keeps the
    source's channel order). ``dst``'s folder is created if missing; an existing ``dst`` is replaced only with
    ``overwrite=True``. A ``.safetensors`` file
    records what produced it in its metadata: vggnets' version, the model, the source file and its layout, and
    ``metadata`` (str -> str).
    """
    src, dst = Path(src).expanduser(), Path(dst).expanduser()
    target = check_destination(dst, to=to, overwrite=overwrite)
    layout, state = _read_source(src, rgb=rgb, model=model)
    nan_filled = [k for k in state if k.startswith("classifier.") and _all_nan(state[k])]
    candidates = guess_architecture(state)
    name = pick_model(model, candidates, state)
    out = _to_target(state, target, rgb=rgb, model=name, leave_out=nan_filled)
    flipped = rgb and (layout == "keras") != (target == "keras")
    about = {
        "library": f"vggnets {__version__}",
        "model": name,
        "source": src.name,
        "source_layout": layout,
        "target_layout": target,
        "channel_flip": str(flipped).lower(),
        **{str(k): str(v) for k, v in (metadata or {}).items()},
    }
    _write(out, dst, target, overwrite, about)
    return ConversionReport(
        source=str(src),
        destination=str(dst),
        source_layout=layout,
        target_layout=target,
        model=name,
        candidates=candidates,
        num_classes=file_num_classes(state),
        tensors=len(out),
        parameters=sum(v.numel() for v in out.values()),
        channel_flip=flipped,
        preprocessing=preprocessing_for(layout, rgb, target),
        nan_filled=nan_filled,
    )


def _read_source(src: Path, *, rgb: bool, model: str | None) -> tuple[Layout, dict[str, Tensor]]:
    """The source's layout and its tensors in our layout (a Keras file read as ``rgb``, checked against ``model``);
    CheckpointError for a file in no layout we know."""
    if is_keras_file(src) and src.exists():
        return "keras", read_keras_h5(src, rgb=rgb, model=model)
    state = load_state_dict_file(src, what="the weights to convert")
    layout = detect_layout(state)
    if layout == "unknown":
        raise CheckpointError(f"{src} is {describe_layout(layout, state)}: there is nothing to convert.")
    return layout, (as_torchvision(state) if layout != "torchvision" else dict(state))


def _to_target(
    state: dict[str, Tensor], target: Target, *, rgb: bool, model: str, leave_out: list[str]
) -> dict[str, Tensor]:
    """Our tensors in the target layout (Keras without the NaN-filled ``leave_out``, which it has no place for)."""
    if target == "timm":
        return to_timm(state)
    if target == "keras":
        return to_keras({k: v for k, v in state.items() if k not in leave_out}, rgb=rgb, model=model)
    return state


def _all_nan(tensor: Tensor) -> bool:
    """True for a tensor of NaN (looking at the first value first: real weights fail fast)."""
    flat = tensor.reshape(-1)
    return bool(flat.numel()) and bool(torch.isnan(flat[:1]).all()) and bool(torch.isnan(flat).all())


def _write(
    state: dict[str, Tensor], dst: Path, target: Target, overwrite: bool, about: dict[str, str]
) -> None:
    """Write the converted tensors through the one atomic writer (``about`` in a safetensors file's metadata)."""

    def save(tmp: Path) -> None:
        if target == "keras":
            write_keras_h5(state, tmp)
        elif dst.suffix.lower() == ".safetensors":
            from safetensors.torch import save_file

            save_file({k: v.contiguous() for k, v in state.items()}, tmp, metadata={**about, "format": "pt"})
        else:
            torch.save({k: v.contiguous() for k, v in state.items()}, tmp)

    atomic_write(dst, save, overwrite=overwrite)


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

"""TorchScript (``torch.jit.trace``) and ``torch.export`` programs, each checked by loading it back with torch.

A traced graph runs at any size (batch and H/W). A ``torch.export`` program has a dynamic batch, and dynamic H/W for
``input_size="dynamic"`` (exported with torch's ``backed_size_oblivious`` setting, so that sizes giving a 1-pixel map
are not specialised away).
"""

from __future__ import annotations

import contextlib
import json
from collections.abc import Callable, Mapping
from pathlib import Path

import torch
from torch import nn

from ..core.vgg import VGG, device_of
from ..errors import ExportError
from ..io.checkpoint import first_line
from .common import DTYPES, dynamic_shapes, example_input, export_module, quiet
from .verify import compare

#: The file inside TorchScript and torch.export archives that holds the export's metadata (JSON).
METADATA_FILE = "vggnets.json"


def export_torchscript(
    model: VGG,
    tmp: Path,
    size: int | None,
    dense: bool,
    precision: str,
    verify: bool,
    opset: int | None,
    *,
    metadata: Mapping[str, str] | None = None,
) -> tuple[str, float | None, str]:
    """Trace at the example size and save (``metadata`` as ``vggnets.json`` in the archive); reload with
    ``torch.jit.load`` to check it (``opset`` does not apply)."""
    extra = {METADATA_FILE: json.dumps(dict(metadata or {}))}

    def save(module: nn.Module, x: torch.Tensor) -> None:
        with quiet(), torch.no_grad():
            torch.jit.save(torch.jit.trace(module, (x,), check_trace=False), str(tmp), _extra_files=extra)

    def load() -> nn.Module:
        return torch.jit.load(str(tmp), map_location=device_of(model))

    return _export_and_check(
        model,
        size,
        dense,
        precision,
        verify,
        save,
        load,
        "torch.jit.trace",
        "torch.jit.load",
        "TorchScript export",
    )


def export_program(
    model: VGG,
    tmp: Path,
    size: int | None,
    dense: bool,
    precision: str,
    verify: bool,
    opset: int | None,
    *,
    metadata: Mapping[str, str] | None = None,
) -> tuple[str, float | None, str]:
    """``torch.export.export`` and ``torch.export.save`` (``metadata`` as ``vggnets.json`` in the archive); reload
    with ``torch.export.load`` to check it."""
    extra = {METADATA_FILE: json.dumps(dict(metadata or {}))}

    def save(module: nn.Module, x: torch.Tensor) -> None:
        with quiet(), _size_oblivious(size is None):
            program = torch.export.export(module, (x,), dynamic_shapes=dynamic_shapes(size, dense))
            torch.export.save(program, str(tmp), extra_files=extra)

    def load() -> nn.Module:
        return torch.export.load(str(tmp)).module()

    runtime = "torch.export.load(...).module()"
    return _export_and_check(
        model, size, dense, precision, verify, save, load, "torch.export", runtime, "torch.export"
    )


def _export_and_check(
    model: VGG,
    size: int | None,
    dense: bool,
    precision: str,
    verify: bool,
    save: Callable[[nn.Module, torch.Tensor], None],
    load: Callable[[], nn.Module],
    exporter: str,
    runtime: str,
    what: str,
) -> tuple[str, float | None, str]:
    """``save(module, example)`` (ExportError naming ``what`` if it fails), then, with ``verify``, compare ``load()``
    with the eager model."""
    module = export_module(model, dense, precision)
    x = example_input(size, device_of(module), DTYPES[precision])
    try:
        save(module, x)
    except OSError:
        raise  # about the file being written: the writer reports it as such
    except Exception as exc:
        raise ExportError(f"{what} failed: {type(exc).__name__}: {first_line(exc)}.") from exc
    del module
    if not verify:
        return exporter, None, "not verified (verify=False)"
    with quiet():
        loaded = load()
    diff, check = compare(model, dense, precision, size, loaded, runtime)
    return exporter, diff, check


def _size_oblivious(enabled: bool):
    """torch.export without 0/1 specialisation of sizes (``backed_size_oblivious``), where this torch has it.

    Without it, a dynamic height/width gets guards from contiguity checks on size-1 dimensions: the dense view's
    score map must not be 1 wide (sides 224-255 rejected) and the plain model's last feature map must not be 1x1
    (sides 32-63). With it, the program accepts every size from the minimum (checked at two sizes on export).
    """
    config = None
    if enabled:
        with contextlib.suppress(ImportError):
            from torch.fx.experimental import _config as config
    if config is None or not hasattr(config, "backed_size_oblivious"):
        return contextlib.nullcontext()
    return config.patch(backed_size_oblivious=True)

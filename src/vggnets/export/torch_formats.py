"""TorchScript (``torch.jit.trace``) and ``torch.export`` programs, each checked by loading it back with torch.

A traced graph runs at any size (batch and H/W). A ``torch.export`` program has a dynamic batch, and dynamic H/W for
``input_size="dynamic"`` (exported with torch's ``backed_size_oblivious`` setting, so that sizes giving a 1-pixel map
are not specialised away).
"""

from __future__ import annotations

import contextlib
import json
from collections.abc import Callable
from pathlib import Path

import torch
from torch import nn

from ..core.vgg import device_of
from ..errors import ExportError
from ..io.checkpoint import first_line
from .common import NOT_VERIFIED, ExportJob, ExportResult, dynamic_shapes, export_inputs, quiet
from .verify import compare

#: The file inside TorchScript and torch.export archives that holds the export's metadata (JSON).
METADATA_FILE = "vggnets.json"


def export_torchscript(job: ExportJob, tmp: Path) -> ExportResult:
    """Trace at the example size and save (the metadata as ``vggnets.json`` in the archive); reload with
    ``torch.jit.load`` to check it (``opset`` does not apply)."""
    extra = _archive_files(job)

    def save(module: nn.Module, x: torch.Tensor) -> None:
        with quiet(), torch.no_grad():
            torch.jit.save(torch.jit.trace(module, (x,), check_trace=False), str(tmp), _extra_files=extra)

    def load() -> nn.Module:
        return torch.jit.load(str(tmp), map_location=device_of(job.model))

    return _export_and_check(job, save, load, "torch.jit.trace", "torch.jit.load", "TorchScript export")


def export_program(job: ExportJob, tmp: Path) -> ExportResult:
    """``torch.export.export`` and ``torch.export.save`` (the metadata as ``vggnets.json`` in the archive); reload
    with ``torch.export.load`` to check it."""
    extra = _archive_files(job)

    def save(module: nn.Module, x: torch.Tensor) -> None:
        with quiet(), _size_oblivious(job.size is None):
            program = torch.export.export(module, (x,), dynamic_shapes=dynamic_shapes(job.size, job.dense))
            torch.export.save(program, str(tmp), extra_files=extra)

    def load() -> nn.Module:
        return torch.export.load(str(tmp)).module()

    runtime = "torch.export.load(...).module()"
    return _export_and_check(job, save, load, "torch.export", runtime, "torch.export")


def _archive_files(job: ExportJob) -> dict[str, str]:
    """The extra files of a TorchScript or torch.export archive: the job's metadata as JSON."""
    return {METADATA_FILE: json.dumps(dict(job.metadata))}


def _export_and_check(
    job: ExportJob,
    save: Callable[[nn.Module, torch.Tensor], None],
    load: Callable[[], nn.Module],
    exporter: str,
    runtime: str,
    what: str,
) -> ExportResult:
    """``save(module, example)`` (ExportError naming ``what`` if it fails), then, with ``verify``, compare ``load()``
    with the eager model."""
    module, x = export_inputs(job)
    try:
        save(module, x)
    except OSError:
        raise  # about the file being written: the writer reports it as such
    except Exception as exc:
        raise ExportError(f"{what} failed: {type(exc).__name__}: {first_line(exc)}.") from exc
    del module
    if not job.verify:
        return exporter, None, NOT_VERIFIED
    with quiet():
        loaded = load()
    diff, check = compare(job.model, job.dense, job.precision, job.size, loaded, runtime)
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

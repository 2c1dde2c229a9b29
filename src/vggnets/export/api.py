"""``export_model``: check the request, run the format's exporter on a temporary file, publish it, report."""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from ..core.vgg import VGG
from ..io.output import atomic_write
from .arguments import check_output, check_request
from .common import ExportJob, ExportResult, file_metadata
from .onnx_format import export_onnx
from .safetensors_format import export_safetensors
from .torch_formats import export_program, export_torchscript

#: The exporter of each format: (job, tmp) -> (exporter, diff, check); see :class:`~vggnets.export.common.ExportJob`.
EXPORTERS = {
    "onnx": export_onnx,
    "torchscript": export_torchscript,
    "exported": export_program,
    "safetensors": export_safetensors,
}


@dataclass
class ExportReport:
    """What :func:`export_model` wrote and how it was checked."""

    path: Path
    format: str
    input_size: int | None  # None: dynamic H/W (or, for safetensors, any size)
    dense: bool
    precision: str
    bytes: int
    max_abs_diff: float | None  # None when not verified
    check: str  # what was compared (or why nothing was)
    seconds: float
    exporter: str = ""  # which exporter produced the file

    def as_dict(self) -> dict[str, Any]:
        """JSON-ready dict (path as a string)."""
        data = asdict(self)
        data["path"] = str(self.path)
        return data

    def summary(self) -> str:
        """One line: format, size, input size, difference with PyTorch, time."""
        size = "dynamic H/W" if self.input_size is None else f"{self.input_size}x{self.input_size}"
        if self.format == "safetensors":
            size = "weights only"
        view = ", dense (fully convolutional)" if self.dense else ""
        if self.max_abs_diff is None:
            diff = f"not verified ({self.check})"
        else:
            diff = f"max abs diff vs PyTorch {self.max_abs_diff:.3g} ({self.check})"
        return (
            f"{self.path}: {self.format} [{self.exporter}], {self.bytes / 1e6:.1f} MB, {size}{view}, "
            f"{self.precision}; {diff}; {self.seconds:.1f} s"
        )


def export_model(
    model: VGG,
    output: str | Path,
    *,
    format: str,
    input_size: int | str = 224,
    dense: bool = False,
    precision: str = "fp32",
    verify: bool = True,
    opset: int | None = None,
    overwrite: bool = False,
    metadata: Mapping[str, str] | None = None,
) -> ExportReport:
    """Export ``model`` (a :class:`~vggnets.models.VGG`) to ``output`` and, with ``verify``, check it against PyTorch.

    Args:
        model: the model; it is exported in eval mode (its training flag is restored afterwards) and never modified.
        output: the file to write. It appears only once complete and verified (atomic rename).
        format: one of :data:`FORMATS`.
        input_size: side of the square example input (>= 32, or >= 224 with ``dense``), or ``"dynamic"`` for
            dynamic height and width (verified at 224x224 and 256x320). The batch is always dynamic.
        dense: export the fully-convolutional view (fc6 as a 7x7 convolution): output (N, K, h, w) class score maps.
        precision: ``"fp32"``, ``"fp16"`` or ``"bf16"``.
        verify: reload the file and compare it with the eager model; raise ExportError above the tolerance.
        opset: ONNX opset (default: the exporter's).
        overwrite: replace an existing ``output``.
        metadata: what produced the file (str -> str), added to the vggnets version and the model name that every
            file carries: safetensors metadata, ONNX ``metadata_props``, ``vggnets.json`` in the archive of a
            TorchScript or ``torch.export`` file.

    Raises:
        ExportError: bad arguments, an existing output, an export that fails, or a verification over tolerance.
        MissingDependencyError: ONNX export without onnx/onnxscript/onnxruntime (``pip install 'vggnets[onnx]'``).
    """
    start = time.perf_counter()
    size = check_request(model, format, input_size, dense, precision, verify)
    output = Path(output).expanduser()
    check_output(output, format, overwrite)
    job = ExportJob(model, size, dense, precision, verify, opset, file_metadata(model, precision, metadata))
    (exporter, diff, check), written = _publish(job, EXPORTERS[format], output, overwrite)
    return ExportReport(
        path=output,
        format=format,
        input_size=size,
        dense=dense,
        precision=precision,
        bytes=written,
        max_abs_diff=diff,
        check=check,
        seconds=time.perf_counter() - start,
        exporter=exporter,
    )


def _publish(
    job: ExportJob, exporter: Callable[[ExportJob, Path], ExportResult], output: Path, overwrite: bool
) -> tuple[ExportResult, int]:
    """Run ``exporter`` on a temporary file with the model in eval mode (its training flag restored afterwards),
    then move the file into place; the exporter's result and the file's size in bytes."""
    done: dict[str, Any] = {}

    def write(tmp: Path) -> None:
        done["result"] = exporter(job, tmp)
        done["bytes"] = tmp.stat().st_size

    was_training = job.model.training
    job.model.eval()
    try:
        atomic_write(output, write, overwrite=overwrite)
    finally:
        job.model.train(was_training)
    return done["result"], done["bytes"]

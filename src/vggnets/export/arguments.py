"""The checks of an export request before anything is written: format, precision, input size, view and output path."""

from __future__ import annotations

from pathlib import Path

from ..core.vgg import MIN_SIZE, VGG
from ..errors import ExportError, VggnetsError
from ..io.output import check_output as writable
from ..models.dense import MIN_DENSE_SIZE
from .common import FORMATS, PRECISIONS, SUFFIXES
from .onnx_format import require_onnx


def check_request(
    model: VGG, format: str, input_size: int | str, dense: bool, precision: str, verify: bool
) -> int | None:
    """The export size (None: dynamic H/W, or weights only for safetensors); ExportError for a request that cannot
    work, MissingDependencyError for ONNX without its packages."""
    size = check_options(format, input_size, dense, precision, verify)
    if not isinstance(model, VGG):
        raise ExportError(f"export_model needs a vggnets VGG model, got {type(model).__name__}.")
    return size


def check_options(
    format: str, input_size: int | str, dense: bool, precision: str, verify: bool
) -> int | None:
    """:func:`check_request` without the model, so that a command can check its options before loading one."""
    if format not in FORMATS:
        raise ExportError(f"unknown format {format!r}; choose one of: {', '.join(FORMATS)}.")
    if precision not in PRECISIONS:
        raise ExportError(f"unknown precision {precision!r}; choose one of: {', '.join(PRECISIONS)}.")
    size = parse_input_size(input_size, dense, format)
    if format == "safetensors":
        if dense:
            raise ExportError(
                "--dense does not apply to safetensors: the file holds the weights, which are the same for the "
                "fully-convolutional view (load them and wrap the model with vggnets.dense.fully_convolutional)."
            )
        return None
    if format == "onnx":
        _check_onnx(size, dense, precision, verify)
    return size


def _check_onnx(size: int | None, dense: bool, precision: str, verify: bool) -> None:
    """ONNX's own refusals: missing packages, an unverifiable bf16 file, dynamic H/W without the dense view."""
    require_onnx(verify)
    if precision == "bf16" and verify:
        raise ExportError(
            "a bf16 ONNX file cannot be verified here: onnxruntime's CPU provider has no bfloat16 convolution. "
            "Use --precision fp16 (runs in onnxruntime on CPU), or pass --no-verify (verify=False) to write it "
            "unchecked for a runtime with bf16 kernels (TensorRT, onnxruntime on a GPU)."
        )
    if size is None and not dense:
        raise ExportError(
            "ONNX export with dynamic height and width needs --dense: the exporter writes the plain model's "
            "adaptive average pool with a kernel fixed by the example size, so the file would fail (or be wrong) "
            "at any other size. Use --dense (fully convolutional, any size >= 224, class score maps), or a "
            "fixed --input-size such as 224 or 384 (the batch stays dynamic)."
        )


def parse_input_size(input_size: int | str, dense: bool, fmt: str) -> int | None:
    """An int side, or None for "dynamic"; checked against the smallest usable size."""
    if isinstance(input_size, str):
        text = input_size.strip().lower()
        if text == "dynamic":
            return None
        try:
            input_size = int(text)
        except ValueError:
            raise ExportError(
                f"input size must be a number of pixels (e.g. 224 or 384) or 'dynamic', got {input_size!r}."
            ) from None
    if isinstance(input_size, bool) or not isinstance(input_size, int):
        raise ExportError(f"input size must be an int or 'dynamic', got {input_size!r}.")
    minimum = MIN_DENSE_SIZE if dense else MIN_SIZE
    if fmt != "safetensors" and input_size < minimum:
        why = (
            "with --dense: fc6, as a 7x7 convolution, needs a 7x7 feature map"
            if dense
            else "five 2x2 poolings halve it to 1 pixel"
        )
        raise ExportError(f"input size must be at least {minimum} ({why}), got {input_size}.")
    return input_size


def check_output(output: Path, fmt: str, overwrite: bool) -> None:
    """A file path, free unless ``overwrite``, with the extension safetensors needs, in a folder that takes a new
    file (created if missing): checked by :func:`vggnets.io.output.check_output`."""
    if output.is_dir():
        raise ExportError(
            f"--output {output} is a directory; give a file name such as {output / ('model' + SUFFIXES[fmt])}."
        )
    if output.exists() and not overwrite:
        raise ExportError(
            f"{output} already exists; nothing was written. Choose another --output, or pass --force to replace "
            "it (overwrite=True in Python)."
        )
    if fmt == "safetensors" and output.suffix.lower() != ".safetensors":
        raise ExportError(
            f"a safetensors file must end in .safetensors (vggnets chooses the reader by the extension, so "
            f"--weights {output.name} would not load): use {output.with_suffix('.safetensors')}."
        )
    try:
        writable(output, overwrite=overwrite)
    except VggnetsError as exc:
        raise ExportError(str(exc)) from None

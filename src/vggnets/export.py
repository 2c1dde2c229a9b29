"""Export a VGG model to ONNX, TorchScript, a ``torch.export`` program or safetensors, and check the result.

Every export is verified by default: the written file is loaded back with the runtime that will use it and run on a
seeded random input, and its output is compared with the PyTorch model in eager mode (fp32). The largest absolute
difference is reported; an export whose difference exceeds the tolerance of its precision raises
:class:`ExportError` and leaves no file behind.

Formats (suggested extensions in brackets):

``onnx`` (.onnx)
    ``torch.onnx.export(..., dynamo=True)`` (needs onnxscript), falling back to the TorchScript-based exporter
    (``dynamo=False``) if it fails. Input ``images`` (N, 3, H, W); output ``logits`` (N, K), or ``scores``
    (N, K, h, w) for the fully-convolutional view (``dense=True``). The batch dimension is always dynamic;
    ``input_size="dynamic"`` also makes H and W dynamic, which is supported for the dense view only: the exporter
    writes the plain model's adaptive average pool as an ``AveragePool`` whose kernel is fixed by the example size, so
    the file would fail at any other size. At a *fixed* size the dynamo exporter handles the adaptive pool at any
    size (e.g. 384, where the 12x12 map is not a multiple of 7, the case that breaks the TorchScript exporter,
    pytorch/pytorch#42653), so the model is exported unchanged; only the fallback exporter is limited to sizes whose
    last feature map is a multiple of 7 (224, 448, ...). Verified in onnxruntime's CPUExecutionProvider. The file
    is a single .onnx with the weights inside (VGG is far below ONNX's 2 GB limit).
``torchscript`` (.pt)
    ``torch.jit.trace`` at the example size; the traced graph runs at any size (batch and H/W), and a dynamic
    export is verified at two sizes. Reload with ``torch.jit.load``.
``exported`` (.pt2)
    ``torch.export.export`` with a dynamic batch (and dynamic H/W for ``"dynamic"``: any H, W >= 224 for the dense
    view, >= 32 for the plain model, whose adaptive pool exports correctly here), saved with ``torch.export.save``.
    Reload with ``torch.export.load(path).module()``. Dynamic exports use torch's ``backed_size_oblivious`` setting
    so that sizes giving a 1-pixel map are not specialised away.
``safetensors`` (.safetensors)
    The state_dict (floating tensors cast to the precision) with metadata (model, precision, vggnets version), for
    ``vggnets.build(name, weights=path)``. Verified by loading it exactly that way and comparing every tensor. Input
    size and the dense view do not apply (weights work at any size, and the dense view uses the same weights).

Precision: ``fp32`` (default) must match PyTorch within 1e-4 (absolute, on the logits). ``fp16`` and ``bf16`` export a
half-precision copy of the model (the caller's model is never modified); its output is compared with the fp32 eager
model, within 1e-2 (fp16) or 6e-2 (bf16) times max(1, largest |logit|), because the rounding of 16 layers is part
of the difference. An fp16 ONNX file takes and returns float16 tensors; onnxruntime's CPU provider runs it.
onnxruntime's CPU provider has no bfloat16 convolution, so a bf16 ONNX export cannot be verified here: it is
refused unless ``verify=False`` (for runtimes with bf16 kernels, such as TensorRT or onnxruntime on a GPU).

Files are written to a temporary file next to the output, verified, and only then moved into place (atomically);
an existing output is never replaced unless ``overwrite=True``.
"""

from __future__ import annotations

import contextlib
import copy
import importlib
import io
import os
import time
import uuid
import warnings
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import torch
from torch import nn

from .dense import MIN_DENSE_SIZE, FullyConvolutionalVGG
from .errors import ExportError, MissingDependencyError
from .models import MIN_SIZE, VGG

__all__ = [
    "DTYPES",
    "FORMATS",
    "PRECISIONS",
    "SUFFIXES",
    "ExportError",
    "ExportReport",
    "export_model",
    "tolerance",
]

FORMATS = ("onnx", "torchscript", "exported", "safetensors")
PRECISIONS = ("fp32", "fp16", "bf16")
DTYPES = {"fp32": torch.float32, "fp16": torch.float16, "bf16": torch.bfloat16}
#: The usual extension of each format (only safetensors requires its own: vggnets picks the reader by extension).
SUFFIXES = {"onnx": ".onnx", "torchscript": ".pt", "exported": ".pt2", "safetensors": ".safetensors"}

#: Absolute tolerance on the logits for fp32, and the relative ones (times max(1, largest |logit|)) for 16 bits.
FP32_TOLERANCE = 1e-4
HALF_TOLERANCE = {"fp16": 1e-2, "bf16": 6e-2}

#: Example batch for tracing/exporting (2, not 1, so that a dynamic batch is not specialised to 1).
EXAMPLE_BATCH = 2
#: Size of the example input for ``input_size="dynamic"``, and the second (non-square) size it is verified at.
DYNAMIC_EXAMPLE = (224, 224)
DYNAMIC_SECOND = (256, 320)
#: Seed of the verification inputs.
SEED = 0

_ONNX_EXTRA = "pip install 'vggnets[onnx]'"


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


def tolerance(precision: str, reference: torch.Tensor) -> float:
    """Largest accepted max abs difference from the fp32 eager output ``reference`` for a precision."""
    if precision == "fp32":
        return FP32_TOLERANCE
    scale = max(1.0, float(reference.detach().abs().max())) if reference.numel() else 1.0
    return HALF_TOLERANCE[precision] * scale


# --------------------------------------------------------------------------------------------------------------
# arguments


def _parse_input_size(input_size: int | str, dense: bool, fmt: str) -> int | None:
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


def _require_onnx(verify: bool) -> None:
    """MissingDependencyError naming the extra unless onnx, onnxscript (and onnxruntime to verify) import."""
    needed = ["onnx", "onnxscript"] + (["onnxruntime"] if verify else [])
    missing = []
    for name in needed:
        try:
            importlib.import_module(name)
        except ImportError:
            missing.append(name)
    if missing:
        raise MissingDependencyError(
            f"exporting to ONNX needs onnx and onnxscript (and onnxruntime to verify the file), but "
            f"{', '.join(missing)} {'is' if len(missing) == 1 else 'are'} not installed: {_ONNX_EXTRA} "
            f"(or pip install {' '.join(missing)})."
        )


def _model_name(model: VGG) -> str | None:
    """The configuration name of a model: its ``name`` (set by the builders), else a unique layout match."""
    name = getattr(model, "name", None)
    if isinstance(name, str):
        return name
    from .models import guess_architecture

    guesses = guess_architecture(model.state_dict())
    return guesses[0] if len(guesses) == 1 else None


# --------------------------------------------------------------------------------------------------------------
# files


@contextlib.contextmanager
def _staged(output: Path, overwrite: bool):
    """Yield a temporary path next to ``output``; on success move it into place, else delete it."""
    # not mkstemp: the exporters create the file themselves, with the usual permissions (mkstemp's are 0600)
    tmp = output.parent / f".{output.stem}.{os.getpid()}.{uuid.uuid4().hex[:8]}.partial{output.suffix}"
    try:
        yield tmp
        _publish(tmp, output, overwrite)
    finally:
        with contextlib.suppress(OSError):
            tmp.unlink()


def _publish(tmp: Path, output: Path, overwrite: bool) -> None:
    """Atomically move ``tmp`` to ``output``; without ``overwrite``, never replace a file that appeared meanwhile."""
    _usual_permissions(tmp)
    if overwrite:
        os.replace(tmp, output)
        return
    try:
        os.link(tmp, output)  # fails if output exists: no window in which another file could be replaced
    except FileExistsError:
        raise _exists_error(output) from None
    except OSError:  # no hard links on this file system
        if output.exists():
            raise _exists_error(output) from None
        os.replace(tmp, output)


def _usual_permissions(path: Path) -> None:
    """rw for everyone minus the umask, as open() gives (some writers, e.g. safetensors, create files 0600)."""
    umask = os.umask(0)
    os.umask(umask)
    with contextlib.suppress(OSError):
        os.chmod(path, 0o666 & ~umask)


def _exists_error(output: Path) -> ExportError:
    return ExportError(
        f"{output} already exists; nothing was written. Choose another --output, or pass --force "
        "(overwrite=True) to replace it."
    )


def _check_output(output: Path, fmt: str, overwrite: bool) -> None:
    if output.is_dir():
        raise ExportError(
            f"--output {output} is a directory; give a file name such as {output / ('model' + SUFFIXES[fmt])}."
        )
    if output.exists() and not overwrite:
        raise _exists_error(output)
    if fmt == "safetensors" and output.suffix.lower() != ".safetensors":
        raise ExportError(
            f"a safetensors file must end in .safetensors (vggnets chooses the reader by the extension, so "
            f"weights={output.name!r} would not load): use {output.with_suffix('.safetensors')}."
        )
    try:
        output.parent.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise ExportError(f"cannot create the directory {output.parent} ({exc.strerror or exc}).") from exc


# --------------------------------------------------------------------------------------------------------------
# the export


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

    Raises:
        ExportError: bad arguments, an existing output, an export that fails, or a verification over tolerance.
        MissingDependencyError: ONNX export without onnx/onnxscript/onnxruntime (``pip install 'vggnets[onnx]'``).
    """
    start = time.perf_counter()
    if format not in FORMATS:
        raise ExportError(f"unknown format {format!r}; choose one of: {', '.join(FORMATS)}.")
    if precision not in PRECISIONS:
        raise ExportError(f"unknown precision {precision!r}; choose one of: {', '.join(PRECISIONS)}.")
    if not isinstance(model, VGG):
        raise ExportError(f"export_model needs a vggnets VGG model, got {type(model).__name__}.")
    size = _parse_input_size(input_size, dense, format)
    output = Path(output).expanduser()
    if format == "safetensors":
        if dense:
            raise ExportError(
                "--dense does not apply to safetensors: the file holds the weights, which are the same for the "
                "fully-convolutional view (load them and wrap the model with vggnets.dense.fully_convolutional)."
            )
        size = None
    elif format == "onnx":
        _require_onnx(verify)
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
    _check_output(output, format, overwrite)

    was_training = model.training
    model.eval()
    try:
        with _staged(output, overwrite) as tmp:
            exporter, diff, check = _EXPORTERS[format](model, tmp, size, dense, precision, verify, opset)
            nbytes = tmp.stat().st_size
    finally:
        model.train(was_training)
    return ExportReport(
        path=output,
        format=format,
        input_size=size,
        dense=dense,
        precision=precision,
        bytes=nbytes,
        max_abs_diff=diff,
        check=check,
        seconds=time.perf_counter() - start,
        exporter=exporter,
    )


def _module(model: VGG, dense: bool, precision: str) -> nn.Module:
    """The module to export, in eval mode: the model or its dense view, cast to the precision (a copy if cast)."""
    if precision != "fp32":
        model = copy.deepcopy(model).to(DTYPES[precision])
    module = FullyConvolutionalVGG(model) if dense else model
    return module.eval()


def _sizes(size: int | None) -> list[tuple[int, int, int]]:
    """(batch, height, width) of the verification inputs: the export size, plus a second size when dynamic."""
    if size is not None:
        return [(EXAMPLE_BATCH, size, size)]
    return [(EXAMPLE_BATCH, *DYNAMIC_EXAMPLE), (1, *DYNAMIC_SECOND)]


def _example(size: int | None, device: torch.device, dtype: torch.dtype) -> torch.Tensor:
    h, w = (size, size) if size is not None else DYNAMIC_EXAMPLE
    return _random((EXAMPLE_BATCH, 3, h, w), SEED).to(device=device, dtype=dtype)


def _random(shape: tuple[int, ...], seed: int) -> torch.Tensor:
    generator = torch.Generator().manual_seed(seed)
    return torch.randn(shape, generator=generator)


def _device_of(model: nn.Module) -> torch.device:
    param = next(model.parameters(), None)
    return param.device if param is not None else torch.device("cpu")


def _compare(
    model: VGG, dense: bool, precision: str, size: int | None, run, runtime: str
) -> tuple[float, str]:
    """Run ``run(x)`` (the reloaded export, returns a tensor) against the fp32 eager model at each verification size."""
    reference_module = FullyConvolutionalVGG(model).eval() if dense else model
    device = _device_of(model)
    dtype = DTYPES[precision]
    worst = 0.0
    shown = []
    for i, (n, h, w) in enumerate(_sizes(size)):
        x = _random((n, 3, h, w), SEED + i).to(device)
        with torch.no_grad():
            reference = reference_module(x).float().cpu()
            got = torch.as_tensor(run(x.to(dtype))).float().cpu()
        if got.shape != reference.shape:
            raise ExportError(
                f"the exported model returned shape {tuple(got.shape)} for input {(n, 3, h, w)}, PyTorch "
                f"{tuple(reference.shape)}; the file was not written."
            )
        diff = float((got - reference).abs().max()) if got.numel() else 0.0
        limit = tolerance(precision, reference)
        if not diff <= limit:  # also catches NaN
            raise ExportError(
                f"the exported model differs from PyTorch by up to {diff:.3g} (max abs diff, {precision}) on a "
                f"{n}x3x{h}x{w} input in {runtime}, more than the tolerance {limit:.3g}; the file was not "
                "written. Pass --no-verify (verify=False) to write it anyway."
            )
        worst = max(worst, diff)
        shown.append(f"{n}x3x{h}x{w}")
    vs = "fp32 eager PyTorch" + (" (tolerance relative to the logits)" if precision != "fp32" else "")
    return worst, f"{runtime} vs {vs} on seeded inputs {', '.join(shown)}"


@contextlib.contextmanager
def _quiet():
    """Silence the exporters' warnings and progress prints (TracerWarnings, deprecations, "[torch.onnx] ...")."""
    with warnings.catch_warnings(), contextlib.redirect_stdout(io.StringIO()):
        warnings.simplefilter("ignore")
        yield


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


def _dynamic_shapes(size: int | None, dense: bool) -> tuple[dict[int, Any]]:
    dims: dict[int, Any] = {0: torch.export.Dim("batch", min=1)}
    if size is None:
        low = MIN_DENSE_SIZE if dense else MIN_SIZE
        dims[2] = torch.export.Dim("height", min=low)
        dims[3] = torch.export.Dim("width", min=low)
    return (dims,)


# --- ONNX ---


def _export_onnx(
    model: VGG, tmp: Path, size: int | None, dense: bool, precision: str, verify: bool, opset: int | None
) -> tuple[str, float | None, str]:
    module = _module(model, dense, precision)
    x = _example(size, _device_of(module), DTYPES[precision])
    output_name = "scores" if dense else "logits"
    errors = []
    exporter = ""
    try:
        with _quiet():
            program = torch.onnx.export(
                module,
                (x,),
                dynamo=True,
                input_names=["images"],
                output_names=[output_name],
                dynamic_shapes=_dynamic_shapes(size, dense),
                opset_version=opset,
                verbose=False,
            )
            program.save(tmp, external_data=False)
            del program
        exporter = "torch.onnx dynamo"
    except Exception as exc:  # any failure of the new exporter: try the TorchScript one
        errors.append(f"dynamo exporter: {type(exc).__name__}: {_first_line(exc)}")
    if not exporter:
        axes = {0: "batch"}
        if size is None:
            axes.update({2: "height", 3: "width"})
        out_axes = {0: "batch", 2: "score_height", 3: "score_width"} if size is None else {0: "batch"}
        try:
            with _quiet():
                torch.onnx.export(
                    module,
                    (x,),
                    str(tmp),
                    dynamo=False,
                    input_names=["images"],
                    output_names=[output_name],
                    dynamic_axes={"images": axes, output_name: out_axes},
                    opset_version=opset or 17,
                )
            exporter = "torch.onnx TorchScript (fallback)"
        except Exception as exc:
            errors.append(f"TorchScript exporter: {type(exc).__name__}: {_first_line(exc)}")
            hint = ""
            if not dense and size is not None and (size // 32) % 7:
                hint = (
                    f" At {size}x{size} the last feature map ({size // 32}x{size // 32}) is not a multiple of 7, "
                    "which the TorchScript exporter cannot pool (pytorch/pytorch#42653): use --dense or 224/448."
                )
            raise ExportError(f"ONNX export failed. {'; '.join(errors)}.{hint}") from exc
    del module
    if not verify:
        return exporter, None, "not verified (verify=False)"
    import onnxruntime as ort

    session = ort.InferenceSession(str(tmp), providers=["CPUExecutionProvider"])
    input_name = session.get_inputs()[0].name

    def run(batch: torch.Tensor) -> torch.Tensor:
        return torch.from_numpy(session.run(None, {input_name: batch.cpu().numpy()})[0])

    diff, check = _compare(model, dense, precision, size, run, "onnxruntime CPUExecutionProvider")
    return exporter, diff, check


# --- TorchScript ---


def _export_torchscript(
    model: VGG, tmp: Path, size: int | None, dense: bool, precision: str, verify: bool, opset: int | None
) -> tuple[str, float | None, str]:
    module = _module(model, dense, precision)
    x = _example(size, _device_of(module), DTYPES[precision])
    try:
        with _quiet(), torch.no_grad():
            traced = torch.jit.trace(module, (x,), check_trace=False)
            torch.jit.save(traced, str(tmp))
    except Exception as exc:
        raise ExportError(f"TorchScript export failed: {type(exc).__name__}: {_first_line(exc)}.") from exc
    del module, traced
    if not verify:
        return "torch.jit.trace", None, "not verified (verify=False)"
    with _quiet():
        loaded = torch.jit.load(str(tmp), map_location=_device_of(model))
    diff, check = _compare(model, dense, precision, size, loaded, "torch.jit.load")
    return "torch.jit.trace", diff, check


# --- torch.export ---


def _export_program(
    model: VGG, tmp: Path, size: int | None, dense: bool, precision: str, verify: bool, opset: int | None
) -> tuple[str, float | None, str]:
    module = _module(model, dense, precision)
    x = _example(size, _device_of(module), DTYPES[precision])
    try:
        with _quiet(), _size_oblivious(size is None):
            program = torch.export.export(module, (x,), dynamic_shapes=_dynamic_shapes(size, dense))
            torch.export.save(program, str(tmp))
    except Exception as exc:
        raise ExportError(f"torch.export failed: {type(exc).__name__}: {_first_line(exc)}.") from exc
    del module, program
    if not verify:
        return "torch.export", None, "not verified (verify=False)"
    with _quiet():
        loaded = torch.export.load(str(tmp)).module()
    diff, check = _compare(model, dense, precision, size, loaded, "torch.export.load(...).module()")
    return "torch.export", diff, check


# --- safetensors ---


def _export_safetensors(
    model: VGG, tmp: Path, size: int | None, dense: bool, precision: str, verify: bool, opset: int | None
) -> tuple[str, float | None, str]:
    from safetensors.torch import save_file

    from .version import __version__

    dtype = DTYPES[precision]
    state = {
        key: (
            value.detach().to("cpu", dtype) if value.is_floating_point() else value.detach().cpu()
        ).contiguous()
        for key, value in model.state_dict().items()
    }
    name = _model_name(model)
    metadata = {"format": "pt", "precision": precision, "library": f"vggnets {__version__}"}
    if name:
        metadata["model"] = name
    save_file(state, str(tmp), metadata=metadata)
    if not verify:
        return "safetensors", None, "not verified (verify=False)"
    if name is None:
        raise ExportError(
            "cannot verify the safetensors file: the model has no configuration name (build it with "
            "vggnets.build or a named builder), so it cannot be rebuilt from the file; pass verify=False."
        )
    from .models import build

    rebuilt = build(name, weights=tmp).state_dict()
    original = model.state_dict()
    if rebuilt.keys() != original.keys():
        raise ExportError(
            f"the safetensors file reloads with other tensors than {name}'s; the file was not written."
        )
    worst = 0.0
    for key, value in original.items():
        expected = state[key].to(value.dtype) if value.is_floating_point() else state[key]
        got = rebuilt[key]
        if got.shape != value.shape or not _same(got, expected):
            raise ExportError(
                f"tensor {key} of the safetensors file does not reload as saved (vggnets.build({name!r}, "
                "weights=path)); the file was not written."
            )
        if value.is_floating_point() and value.numel():
            gap = (got - value.detach().cpu().float()).abs()
            worst = max(
                worst, float(gap.nan_to_num(0.0).max())
            )  # NaN weights (features-only files) reload as NaN
    rounding = "" if precision == "fp32" else f" (the difference is {precision} rounding of the weights)"
    check = (
        f"reloaded with vggnets.build({name!r}, weights=path): all {len(original)} tensors as saved; max abs diff of "
        f"the weights vs the model{rounding}"
    )
    return "safetensors", worst, check


def _same(a: torch.Tensor, b: torch.Tensor) -> bool:
    """Equal values, NaN equal to NaN."""
    if not a.is_floating_point():
        return torch.equal(a, b)
    return bool(((a == b) | (a.isnan() & b.isnan())).all())


_EXPORTERS = {
    "onnx": _export_onnx,
    "torchscript": _export_torchscript,
    "exported": _export_program,
    "safetensors": _export_safetensors,
}


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip()
    return text.splitlines()[0][:300] if text else type(exc).__name__

"""ONNX export: the dynamo exporter, the TorchScript-based one as a fallback, and the check in onnxruntime.

Input ``images`` (N, 3, H, W); output ``logits`` (N, K), or ``scores`` (N, K, h, w) for the fully-convolutional view.
The file is a single .onnx with the weights inside (VGG is far below ONNX's 2 GB limit).
"""

from __future__ import annotations

import importlib
from pathlib import Path

import torch
from torch import nn

from ..errors import ExportError, MissingDependencyError
from ..io.checkpoint import first_line
from .common import NOT_VERIFIED, ExportJob, ExportResult, dynamic_shapes, export_inputs, quiet
from .verify import compare

ONNX_EXTRA = "pip install 'vggnets[onnx]'"


def require_onnx(verify: bool) -> None:
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
            f"{', '.join(missing)} {'is' if len(missing) == 1 else 'are'} not installed: {ONNX_EXTRA} "
            f"(or pip install {' '.join(missing)})."
        )


def export_onnx(job: ExportJob, tmp: Path) -> ExportResult:
    """Write ``tmp`` with the dynamo exporter, else the TorchScript one (the metadata in the model's
    ``metadata_props``); check it in onnxruntime with ``verify``. An OSError (the file cannot be written) is not
    an exporter's failure: it propagates as it is, for the writer to report."""
    module, x = export_inputs(job)
    size, dense, opset, metadata = job.size, job.dense, job.opset, dict(job.metadata)
    try:
        _onnx_export(module, x, tmp, size, dense, opset, metadata, dynamo=True)
        exporter = "torch.onnx dynamo"
    except OSError:
        raise
    except Exception as exc:  # any other failure of the new exporter: try the TorchScript one
        dynamo_error = f"dynamo exporter: {type(exc).__name__}: {first_line(exc)}"
        try:
            _onnx_export(module, x, tmp, size, dense, opset, metadata, dynamo=False)
        except OSError:
            raise
        except Exception as exc:
            errors = f"{dynamo_error}; TorchScript exporter: {type(exc).__name__}: {first_line(exc)}"
            raise ExportError(f"ONNX export failed. {errors}.{_fallback_hint(size, dense)}") from exc
        exporter = "torch.onnx TorchScript (fallback)"
    del module
    if not job.verify:
        return exporter, None, NOT_VERIFIED
    diff, check = _check_in_onnxruntime(job, tmp)
    return exporter, diff, check


def _onnx_export(
    module: nn.Module,
    x: torch.Tensor,
    tmp: Path,
    size: int | None,
    dense: bool,
    opset: int | None,
    metadata: dict[str, str],
    *,
    dynamo: bool,
) -> None:
    """``torch.onnx.export`` with the dynamo exporter (saved with the weights inside) or the TorchScript-based one;
    ``metadata`` goes into the model's ``metadata_props``."""
    output_name = "scores" if dense else "logits"
    names = {"input_names": ["images"], "output_names": [output_name]}
    with quiet():
        if dynamo:
            program = torch.onnx.export(
                module, (x,), dynamo=True, dynamic_shapes=dynamic_shapes(size, dense), opset_version=opset,
                verbose=False, **names,
            )  # fmt: skip
            program.model.metadata_props.update(metadata)
            program.save(tmp, external_data=False)
            return
        axes = {0: "batch"} if size is not None else {0: "batch", 2: "height", 3: "width"}
        out_axes = {0: "batch"} if size is not None else {0: "batch", 2: "score_height", 3: "score_width"}
        torch.onnx.export(
            module, (x,), str(tmp), dynamo=False, dynamic_axes={"images": axes, output_name: out_axes},
            opset_version=opset or 17, **names,
        )  # fmt: skip
    if not dynamo and metadata:
        _add_metadata(tmp, metadata)


def _add_metadata(path: Path, metadata: dict[str, str]) -> None:
    """Add ``metadata`` to the ``metadata_props`` of the ONNX file at ``path`` (rewritten in place)."""
    import onnx

    proto = onnx.load(str(path))
    onnx.helper.set_model_props(proto, {**{p.key: p.value for p in proto.metadata_props}, **metadata})
    onnx.save(proto, str(path))


def _fallback_hint(size: int | None, dense: bool) -> str:
    """Why the TorchScript-based exporter fails at this size, and the way out (empty when that is not the reason)."""
    if dense or size is None or not (size // 32) % 7:
        return ""
    return (
        f" At {size}x{size} the last feature map ({size // 32}x{size // 32}) is not a multiple of 7, "
        "which the TorchScript exporter cannot pool (pytorch/pytorch#42653): use --dense or 224/448."
    )


def _check_in_onnxruntime(job: ExportJob, tmp: Path) -> tuple[float, str]:
    """The written file in onnxruntime's CPU provider against the eager model."""
    import onnxruntime as ort

    session = ort.InferenceSession(str(tmp), providers=["CPUExecutionProvider"])
    input_name = session.get_inputs()[0].name

    def run(batch: torch.Tensor) -> torch.Tensor:
        return torch.from_numpy(session.run(None, {input_name: batch.cpu().numpy()})[0])

    return compare(job.model, job.dense, job.precision, job.size, run, "onnxruntime CPUExecutionProvider")

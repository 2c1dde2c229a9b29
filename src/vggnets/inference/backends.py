"""Peer runtimes behind the Predictor: ONNX Runtime and OpenVINO running our ONNX export of the engine's graph.

``optimize(..., backend=...)`` picks who runs the graph: ``torch`` (the engine's own AOTInductor/oneDNN path),
``onnxruntime`` (fp32; int8 as a QDQ model from onnxruntime's static quantizer), ``openvino`` (fp32, bf16 through its
inference-precision hint, int8 from the same QDQ model) or ``auto`` (the fastest installed one for the precision on
this CPU kind, from :data:`AUTO_CHOICES`). A peer runner takes the same uint8 batches and returns the same float32
logits as the torch one, so the :class:`~vggnets.inference.engine.Predictor` around it is unchanged (same
``preprocess``, buckets and outputs). What a peer cannot do here (a precision it has no kernels for, a GPU) gives one
note and the torch backend; a peer asked for by name that is not installed raises MissingDependencyError naming the
``peers`` extra (``auto`` just skips it).
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch

from ..errors import VggnetsError
from .machine import describe_cpu
from .onnx_models import PEERS_EXTRA, missing_modules, require_modules

BACKENDS: tuple[str, ...] = ("torch", "onnxruntime", "openvino")
BACKEND_CHOICES: tuple[str, ...] = ("auto", *BACKENDS)
#: The Python module each peer runtime is imported as.
MODULES = {"onnxruntime": "onnxruntime", "openvino": "openvino"}
#: The precisions each backend runs (the peers on the CPU only).
PRECISIONS_OF = {
    "torch": ("fp32", "bf16", "int8"),
    "onnxruntime": ("fp32", "int8"),
    "openvino": ("fp32", "bf16", "int8"),
}
#: ``backend="auto"``: the backend to use per (CPU kind, precision) where a peer measured faster than the torch path
#: in the same process (benchmarks/peers_table.py); everything else runs on torch. Empty: on amd-zen4 (one thread per
#: runtime, CPU time) torch was 1.44x the best peer at fp32, 1.06x at bf16 and level with OpenVINO at int8 (1.00x);
#: the other kinds have not been measured against the peers.
AUTO_CHOICES: dict[tuple[str, str], str] = {}


def installed(backend: str) -> bool:
    """True when ``backend`` can be imported here (torch always can)."""
    return backend == "torch" or not missing_modules([MODULES[backend]])


def auto_backend(precision: str, device: torch.device) -> str:
    """The backend ``auto`` means for ``precision`` on ``device``: a peer where it is faster here and installed."""
    if device.type != "cpu":
        return "torch"
    choice = AUTO_CHOICES.get((describe_cpu()["kind"], precision), "torch")
    return choice if installed(choice) else "torch"


def resolve_backend(backend: str, precision: str, device: torch.device, notes: list[str]) -> str:
    """The backend that will run ``precision`` on ``device``: the one asked for where it can, else torch (with a
    note). A peer that is not installed raises MissingDependencyError naming the ``peers`` extra."""
    if backend not in BACKEND_CHOICES:
        raise VggnetsError(f"unknown backend {backend!r}; choose one of {', '.join(BACKEND_CHOICES)}.")
    if backend == "auto":
        return auto_backend(precision, device)
    if backend == "torch":
        return backend
    require_modules([MODULES[backend], "onnx", "onnxscript"], f"backend={backend!r}")
    if device.type != "cpu":
        notes.append(f"the {backend} backend runs on the CPU only; using the torch backend on {device}.")
        return "torch"
    if precision not in PRECISIONS_OF[backend]:
        notes.append(f"{backend} has no {precision} CPU kernels; using the torch backend for {precision}.")
        return "torch"
    return backend


def threads() -> int:
    """Threads a peer runtime gets: as many as torch uses (so that both are measured on the same cores)."""
    return max(1, torch.get_num_threads())


class OnnxRuntimeRunner:
    """uint8 (N, 3, S, S) -> float32 logits through an onnxruntime CPU session of an ONNX file."""

    def __init__(self, path: Path) -> None:
        import onnxruntime as ort

        options = ort.SessionOptions()
        options.intra_op_num_threads = threads()
        options.inter_op_num_threads = 1
        options.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
        options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        options.log_severity_level = 3
        self.session = ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
        self.input = self.session.get_inputs()[0].name

    def __call__(self, images: torch.Tensor) -> torch.Tensor:
        out = self.session.run(None, {self.input: images.cpu().contiguous().numpy()})[0]
        return torch.from_numpy(out)


#: OpenVINO's inference-precision hint per precision; int8 keeps the runtime's own choice for the layers the QDQ model
#: leaves in float (bf16 on CPUs with bf16 hardware).
OPENVINO_HINTS = {"fp32": "f32", "bf16": "bf16", "int8": None}


class OpenVinoRunner:
    """uint8 (N, 3, S, S) -> float32 logits through an OpenVINO CPU model compiled from an ONNX file (latency hint:
    one request on all of torch's threads)."""

    def __init__(self, path: Path, precision: str, cache_dir: Path | None) -> None:
        import openvino as ov

        core = ov.Core()
        if cache_dir is not None:
            core.set_property({"CACHE_DIR": str(cache_dir)})
        config: dict[str, Any] = {"PERFORMANCE_HINT": "LATENCY", "INFERENCE_NUM_THREADS": threads()}
        if OPENVINO_HINTS[precision] is not None:
            config["INFERENCE_PRECISION_HINT"] = OPENVINO_HINTS[precision]
        self.model = core.compile_model(str(path), "CPU", config)
        self.request = self.model.create_infer_request()

    def __call__(self, images: torch.Tensor) -> torch.Tensor:
        self.request.infer({0: images.cpu().contiguous().numpy()})
        return torch.from_numpy(self.request.get_output_tensor(0).data.copy())


def peer_runner(
    backend: str,
    module: torch.nn.Module,
    precision: str,
    example: torch.Tensor,
    *,
    calibration: torch.Tensor | None,
    cache: bool,
) -> tuple[Callable[[torch.Tensor], torch.Tensor], str, bool]:
    """A runner of the prepared fp32 ``module`` in ``backend`` at ``precision``, built from our ONNX export (cached
    with the engine's artefacts); returns it with the ONNX file it was built from and whether that was a cache hit."""
    from .compiled import engine_cache_dir
    from .onnx_models import onnx_file

    with onnx_file(module, precision, example, calibration=calibration, cache=cache) as (path, hit):
        if backend == "onnxruntime":
            return OnnxRuntimeRunner(path), str(path), hit
        cache_dir = engine_cache_dir() / "openvino" if cache else None
        return OpenVinoRunner(path, precision, cache_dir), str(path), hit


__all__ = [
    "AUTO_CHOICES",
    "BACKENDS",
    "BACKEND_CHOICES",
    "PEERS_EXTRA",
    "OnnxRuntimeRunner",
    "OpenVinoRunner",
    "auto_backend",
    "installed",
    "peer_runner",
    "resolve_backend",
]

"""What the engine will run here: precision, compile mode, device and batch buckets, checked against this machine.

:func:`plan` resolves a request before anything is built (bf16 without bf16 hardware becomes fp32, int8 without torchao
or on a GPU becomes bf16 or fp32, a missing CUDA device becomes the CPU), each change with a note; :func:`plan_engine`
adds the batch buckets and starts the :class:`EngineInfo` that records what a predictor actually runs.
"""

from __future__ import annotations

import importlib.util
import warnings
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

import torch

from ..errors import VggnetsError
from .graph import MAX_BATCH
from .machine import describe_cpu

Precision = Literal["fp32", "bf16", "int8"]
PRECISIONS: tuple[str, ...] = ("fp32", "bf16", "int8")
COMPILE_MODES: tuple[str, ...] = ("aot", "jit", "none")


class EngineWarning(UserWarning):
    """A requested feature is unavailable here; the predictor uses a slower path that works."""


@dataclass
class EngineInfo:
    """What a predictor actually runs, and what it cost to build."""

    precision: str
    requested_precision: str
    compile: str
    requested_compile: str
    device: str
    buckets: tuple[int, ...]
    cache: str | None = None  # "hit", "miss" or None (no artefact cache used)
    artifact: str | None = None
    build_seconds: float = 0.0
    warmup_seconds: float = 0.0
    warnings: list[str] = field(default_factory=list)
    backend: str = "torch"  # who runs the graph: torch, onnxruntime or openvino (see inference.backends)
    winograd: int = (
        0  # convolutions computed as Winograd F(2x2, 3x3) (fp32 on the CPU; see inference.winograd)
    )

    def to_dict(self) -> dict[str, Any]:
        return {k: (list(v) if isinstance(v, tuple) else v) for k, v in self.__dict__.items()}


def warn(info: EngineInfo, message: str) -> None:
    """Record ``message`` in ``info`` and issue it once as an :class:`EngineWarning`."""
    info.warnings.append(message)
    warnings.warn(message, EngineWarning, stacklevel=3)


def cpu_precision_support() -> dict[str, bool]:
    """Whether this CPU has hardware for bf16 (AVX-512 BF16 or AMX) and fast int8 (AVX-512 VNNI, AVX-VNNI or AMX)."""
    flags = {name for name, present in describe_cpu()["flags"].items() if present}
    return {
        "bf16": bool(flags & {"avx512_bf16", "amx_bf16"}),
        "int8": bool(flags & {"avx512_vnni", "amx_int8", "avx_vnni"}),
        "amx": "amx_tile" in flags,
    }


def torchao_available() -> bool:
    """True when torchao is installed. Checked without importing it (the import takes seconds): a cached int8 engine
    loads without torchao; only building one imports it, and a torchao that then fails to import is reported there."""
    return importlib.util.find_spec("torchao") is not None


def resolve_device(device: str | torch.device | None, notes: list[str]) -> torch.device:
    """The device to run on: the one asked for where the engine can use it, else the CPU (with a note)."""
    if device is None:
        return torch.device("cpu")
    device = torch.device(device)
    if device.type == "cuda" and not torch.cuda.is_available():
        notes.append("CUDA was requested but no CUDA device is available; running on the CPU instead.")
        return torch.device("cpu")
    if device.type not in ("cpu", "cuda"):
        notes.append(
            f"device {device.type!r} is not supported by the fast engine; running on the CPU instead."
        )
        return torch.device("cpu")
    return device


def resolve_precision(precision: str, device: torch.device, notes: list[str]) -> str:
    """The precision to run at on ``device``: the one asked for where it has hardware and software, else the next
    best (with a note)."""
    if precision not in PRECISIONS:
        raise VggnetsError(f"unknown precision {precision!r}; choose one of {', '.join(PRECISIONS)}.")
    if device.type == "cuda":
        if precision == "int8":
            notes.append("int8 is a CPU path (x86 oneDNN kernels); using bf16 on the GPU instead.")
            return "bf16"
        return precision
    support = cpu_precision_support()
    if precision == "bf16" and not support["bf16"]:
        notes.append(
            "this CPU has no bf16 hardware (no AVX-512 BF16 or AMX), so bf16 would be emulated and slower than fp32; "
            "using fp32 instead."
        )
        return "fp32"
    if precision == "int8" and not torchao_available():
        fallback = "bf16" if support["bf16"] else "fp32"
        notes.append(
            f"int8 needs torchao (pip install 'vggnets[fast]' or pip install torchao); using {fallback} instead."
        )
        return fallback
    return precision


def resolve_compile(compile: bool | str | None, device: torch.device) -> str:
    """``aot``, ``jit`` or ``none``: True means AOT on the CPU and JIT on a GPU; False or None means none."""
    if compile is True:
        return "jit" if device.type == "cuda" else "aot"
    if compile is False or compile is None:
        return "none"
    if compile not in COMPILE_MODES:
        raise VggnetsError(
            f"unknown compile mode {compile!r}; choose one of {', '.join(COMPILE_MODES)} (or True/False)."
        )
    return compile


def plan(
    precision: str, device: str | torch.device | None = None, compile: bool | str = True
) -> tuple[str, str, torch.device, list[str]]:
    """What :func:`~vggnets.inference.engine.optimize` will run here, before building anything: (precision, compile
    mode, device, notes on every change from the request)."""
    notes: list[str] = []
    dev = resolve_device(device, notes)
    return resolve_precision(precision, dev, notes), resolve_compile(compile, dev), dev, notes


def default_buckets(batch_size: int, compile_mode: str) -> tuple[int, ...]:
    """Batch 1 for latency and ``batch_size`` for throughput; AOT graphs are shape-generic, so they get every power of
    two in between at no compile cost (less padding)."""
    if compile_mode == "aot":
        sizes = {1, batch_size} | {2**k for k in range(batch_size.bit_length()) if 2**k < batch_size}
    else:
        sizes = {1, batch_size}
    return tuple(sorted(sizes))


def choose_buckets(batch_size: int, buckets: Sequence[int] | None, compile_mode: str) -> tuple[int, ...]:
    """The batch sizes the runner sees: ``buckets`` (or :func:`default_buckets`) cut to 1..batch_size, with
    ``batch_size`` itself always one of them."""
    sizes = tuple(sorted(set(buckets))) if buckets else default_buckets(batch_size, compile_mode)
    if sizes[-1] != batch_size or sizes[0] < 1:
        sizes = tuple(sorted({s for s in sizes if 1 <= s <= batch_size} | {batch_size}))
    return sizes


def plan_engine(
    precision: str,
    device: str | torch.device | None,
    compile: bool | str,
    batch_size: int,
    buckets: Sequence[int] | None = None,
) -> EngineInfo:
    """The plan of one predictor as the :class:`EngineInfo` it starts from; each change from the request is issued
    as an :class:`EngineWarning` (and kept in ``info.warnings``)."""
    if batch_size < 1 or batch_size > MAX_BATCH:
        raise VggnetsError(f"batch_size must be between 1 and {MAX_BATCH}, got {batch_size}.")
    used_precision, mode, dev, notes = plan(precision, device, compile)
    info = EngineInfo(
        precision=used_precision,
        requested_precision=precision,
        compile=mode,
        requested_compile=str(compile),
        device=str(dev),
        buckets=choose_buckets(batch_size, buckets, mode),
    )
    for message in notes:
        warn(info, message)
    return info

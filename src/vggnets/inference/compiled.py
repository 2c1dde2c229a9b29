"""Compiled runners: AOTInductor packages cached on disk under a key of everything they depend on, torch.compile, warm-up.

An AOT package is built once per model, precision, input size, calibration set, torch version and CPU feature set, and
every later process loads it (:func:`aot_runner`; processes that start together, such as torchrun's ranks, wait on a
file lock while the first one builds it: :func:`cache_lock`); ``torch.compile`` (:func:`jit_runner`) compiles in each
process, on the warm-up run of each batch bucket (:func:`warm_up`).
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import time
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import Any

import torch
from torch import nn

from ..io.output import atomic_write
from .graph import export_batched, quiet_compile_logs
from .plan import EngineInfo, cpu_precision_support, warn

#: Part of every cached artefact's key: bump it when the way packages are built changes, so stale ones are not reused.
ENGINE_FORMAT = 2


def engine_cache_dir() -> Path:
    """Where compiled artefacts live: $VGGNETS_ENGINE_CACHE, else torch.hub.get_dir()/vggnets-engine."""
    override = os.environ.get("VGGNETS_ENGINE_CACHE")
    return Path(override) if override else Path(torch.hub.get_dir()) / "vggnets-engine"


def fingerprint(module: nn.Module, *extra: Any) -> str:
    """SHA-256 over every parameter and buffer (names, shapes, dtypes, bytes) plus ``extra``: the artefact cache key."""
    digest = hashlib.sha256()
    for name, tensor in module.state_dict().items():
        digest.update(f"{name}|{tuple(tensor.shape)}|{tensor.dtype}|".encode())
        digest.update(_bytes_of(tensor))
    for item in extra:
        if isinstance(item, torch.Tensor):
            digest.update(_bytes_of(item))
        else:
            digest.update(repr(item).encode())
    return digest.hexdigest()


def _bytes_of(tensor: torch.Tensor) -> memoryview:
    """The raw bytes of a tensor without a copy where it is already contiguous on the CPU."""
    flat = tensor.detach().cpu().contiguous().reshape(-1)
    return memoryview(flat.view(torch.uint8).numpy())


def artifact_path(
    module: nn.Module, precision: str, example: torch.Tensor, calibration: torch.Tensor | None
) -> Path:
    """The cached package of ``module`` at ``precision`` for inputs shaped like ``example``, calibrated on
    ``calibration`` (int8), built by this torch version for this CPU's features."""
    key = fingerprint(
        module,
        precision,
        tuple(example.shape[1:]),
        torch.__version__,
        ENGINE_FORMAT,
        sorted(k for k, v in cpu_precision_support().items() if v),
        *(calibration,) if calibration is not None else (),
    )
    return engine_cache_dir() / f"{precision}-{key[:24]}.pt2"


def aot_runner(
    module: nn.Module,
    example: torch.Tensor,
    info: EngineInfo,
    *,
    cache: bool,
    calibration: torch.Tensor | None = None,
    lower: Callable[[], nn.Module] | None = None,
) -> Any:
    """Load the cached AOTInductor package for this module/precision/shape, or build (and cache) it.

    The package is built from ``lower()`` (for int8: the quantised ``module``, so that quantisation and the torchao
    import happen only on a cache miss), else from ``module``. ``info`` records the artefact and whether it was a hit.
    """
    import torch._inductor

    path = artifact_path(module, info.precision, example, calibration)
    info.artifact = str(path)
    runner = _load_cached(path, info) if cache else None
    if runner is not None:
        return runner
    with cache_lock(path) if cache else contextlib.nullcontext():
        # another process (a torchrun rank) may have built it while this one waited for the lock
        runner = _load_cached(path, info, warned=True) if cache else None
        if runner is not None:
            return runner
        info.cache = "miss" if cache else None
        build_package(lower() if lower is not None else module, example, path)
    with quiet_compile_logs():
        return torch._inductor.aoti_load_package(str(path))


def _load_cached(path: Path, info: EngineInfo, *, warned: bool = False) -> Any:
    """The cached package at ``path`` loaded (``info.cache = "hit"``), or None when there is none or it cannot be
    loaded (a stale or truncated artefact: one warning, unless ``warned``, and the caller rebuilds it)."""
    import torch._inductor

    if not path.is_file():
        return None
    try:
        with quiet_compile_logs():
            runner = torch._inductor.aoti_load_package(str(path))
    except Exception as exc:
        if not warned:
            warn(info, f"cached engine {path} could not be loaded ({type(exc).__name__}); rebuilding it.")
        return None
    info.cache = "hit"
    return runner


def lock_path(path: Path) -> Path:
    """The lock file of the cache entry ``path``: in this machine's temporary folder, named by a digest of the
    entry's absolute path."""
    import tempfile

    name = hashlib.sha256(str(Path(path).absolute()).encode()).hexdigest()[:32]
    return Path(tempfile.gettempdir()) / "vggnets-engine-locks" / f"{name}.lock"


@contextlib.contextmanager
def cache_lock(path: Path) -> Iterator[None]:
    """Hold an exclusive lock on the cache entry ``path`` while it is built: processes of one machine that want the
    same package (the ranks of a torchrun job) build it once, the others wait and load it.

    The lock is ``flock`` on a file of this machine's temporary folder named after the entry (:func:`lock_path`), so
    the cache folder holds only packages, and a cache on a shared file system is built once per machine at most.
    Where ``fcntl`` is missing (Windows) nothing is locked."""
    try:
        import fcntl
    except ImportError:
        yield
        return
    lock_file = lock_path(path)
    lock_file.parent.mkdir(parents=True, exist_ok=True)
    with open(lock_file, "a") as lock:
        fcntl.flock(lock.fileno(), fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(lock.fileno(), fcntl.LOCK_UN)


def build_package(module: nn.Module, example: torch.Tensor, path: Path) -> Path:
    """Export ``module`` (dynamic batch) and compile it with AOTInductor, weights frozen, into the package ``path``.

    Written with :func:`~vggnets.io.output.atomic_write`, so that a killed build never leaves a half-written package
    behind.
    """
    import torch._inductor

    path.parent.mkdir(parents=True, exist_ok=True)
    # with grad enabled the kernels are ~2.5x slower (no inference-only fusions)
    with torch.no_grad(), quiet_compile_logs():
        program = export_batched(module, example)

        def write(tmp: Path) -> None:
            with open(tmp, "w+b") as f:  # a buffer: AOTInductor takes a path only when it ends in .pt2
                torch._inductor.aoti_compile_and_package(
                    program, package_path=f, inductor_configs={"freezing": True}
                )

        return atomic_write(path, write, overwrite=True)


def jit_runner(wrapped: nn.Module, device: torch.device, sizes: Sequence[int]) -> Any:
    """torch.compile with inductor freezing (weights constant-folded and pre-packed); CUDA graphs at small batches."""
    import torch._inductor.config as inductor_config

    inductor_config.freezing = True
    if device.type == "cuda":
        mode = "reduce-overhead" if max(sizes) <= 64 else "max-autotune-no-cudagraphs"
        return torch.compile(wrapped, mode=mode, dynamic=False)
    return torch.compile(wrapped, dynamic=False)


def warm_up(
    predict: Callable[[torch.Tensor], Any], info: EngineInfo, image_size: int, device: torch.device
) -> bool:
    """Run every bucket of a JIT graph once (compiling it now, not on the first real batch), or batch 1 of a
    shape-generic AOT package or eager model (a check that it runs); ``info.warmup_seconds`` records the time.

    False, after one warning, when a compiled model fails (the caller then runs eagerly); an eager model's error is
    raised.
    """
    start = time.perf_counter()
    sizes = info.buckets if info.compile == "jit" else info.buckets[:1]
    try:
        with quiet_compile_logs():  # a JIT graph compiles here
            for n in sizes:
                predict(torch.zeros(n, 3, image_size, image_size, dtype=torch.uint8))
        if device.type == "cuda":
            torch.cuda.synchronize(device)
        return True
    except Exception as exc:
        if info.compile == "none":
            raise
        warn(
            info,
            f"the compiled model failed on its first run ({type(exc).__name__}: {str(exc).strip()[:300]}); "
            "running it eagerly instead.",
        )
        return False
    finally:
        info.warmup_seconds = time.perf_counter() - start

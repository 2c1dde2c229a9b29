"""The benchmark's instruments: wall-clock timing, peak memory, percentiles, agreement of logits, FLOPs, matmul peaks.

:class:`Timings` holds what they measured for one path; :func:`fresh_compile_caches` points the compile caches at an
empty folder for a true cold start.
"""

from __future__ import annotations

import contextlib
import copy
import ctypes
import gc
import os
import tempfile
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch import nn


class PeakMemory:
    """Peak memory while a block runs: CUDA allocator peak on a GPU, else resident set size sampled every 5 ms
    (the increase over the RSS when the block started, after returning freed memory to the OS)."""

    def __init__(self, device: torch.device) -> None:
        self.device = device
        self.peak_mib = 0.0

    def __enter__(self) -> PeakMemory:
        gc.collect()
        if self.device.type == "cuda":
            torch.cuda.synchronize(self.device)
            torch.cuda.reset_peak_memory_stats(self.device)
            self._start = torch.cuda.memory_allocated(self.device)
            return self
        _release_free_memory()
        self._start = self._peak = _rss_bytes()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._sample, daemon=True)
        self._thread.start()
        return self

    def _sample(self) -> None:
        while not self._stop.wait(0.005):
            self._peak = max(self._peak, _rss_bytes())

    def __exit__(self, *exc: Any) -> None:
        if self.device.type == "cuda":
            torch.cuda.synchronize(self.device)
            self.peak_mib = (torch.cuda.max_memory_allocated(self.device) - self._start) / 2**20
            return
        self._stop.set()
        self._thread.join()
        self._peak = max(self._peak, _rss_bytes())
        self.peak_mib = (self._peak - self._start) / 2**20


@dataclass
class Timings:
    """What was measured for one path: seconds per timed batch and per batch-1 call, peak memory in MiB, and seconds
    to the first prediction with empty compile caches (cold) and with the caches the cold run filled (warm)."""

    throughput: list[float]
    latency: list[float]
    peak_mib: float
    cold: float
    warm: float


def _rss_bytes() -> int:
    try:
        with open("/proc/self/statm") as f:
            return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")
    except (OSError, ValueError):
        import resource

        return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024


def _release_free_memory() -> None:
    with contextlib.suppress(OSError, AttributeError):
        ctypes.CDLL("libc.so.6").malloc_trim(0)


def sync(device: torch.device) -> None:
    """Wait for the device's queued work (a no-op on the CPU), so that a clock read after it is honest."""
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def time_calls(fn: Callable[[], Any], iterations: int, device: torch.device) -> list[float]:
    """Wall-clock seconds of ``iterations`` calls of ``fn`` (after one untimed call)."""
    fn()
    sync(device)
    times = []
    for _ in range(iterations):
        start = time.perf_counter()
        fn()
        sync(device)
        times.append(time.perf_counter() - start)
    return times


def percentile(values: Sequence[float], q: float) -> float:
    """The q-th percentile (0-100) by linear interpolation."""
    ordered = sorted(values)
    if len(ordered) == 1:
        return ordered[0]
    pos = (len(ordered) - 1) * q / 100
    low = int(pos)
    high = min(low + 1, len(ordered) - 1)
    return ordered[low] + (ordered[high] - ordered[low]) * (pos - low)


def agreement(logits: torch.Tensor, reference: torch.Tensor) -> dict[str, float]:
    """Top-1 agreement, max abs logit difference and cosine similarity (min, mean) of logits against the reference."""
    logits, reference = logits.float(), reference.float()
    cos = torch.nn.functional.cosine_similarity(logits, reference, dim=1)
    return {
        "top1_agreement": (logits.argmax(1) == reference.argmax(1)).float().mean().item(),
        "max_abs_logit_diff": (logits - reference).abs().max().item(),
        "cosine_min": cos.min().item(),
        "cosine_mean": cos.mean().item(),
    }


def flops_per_image(model: nn.Module, image_size: int) -> float:
    """FLOPs (2 x multiply-accumulates) of one forward pass at ``image_size``, counted by torch's FlopCounterMode."""
    from torch.utils.flop_counter import FlopCounterMode

    probe = torch.zeros(1, 3, image_size, image_size, device="meta")
    meta_model = copy.deepcopy(model).eval().to("meta")
    with FlopCounterMode(display=False) as counter, torch.no_grad():
        meta_model(probe)
    return float(counter.get_total_flops())


def device_peaks(device: torch.device) -> dict[str, float | None]:
    """This device's measured matmul peaks: fp32/bf16 GFLOP/s and int8 GOP/s (None where there is no fast path)."""
    if device.type == "cuda":
        return _cuda_peaks(device)
    from ..inference.machine import matmul_peaks

    return matmul_peaks()


def _cuda_peaks(device: torch.device, n: int = 8192) -> dict[str, float | None]:
    out: dict[str, float | None] = {}
    for key, dtype in (("fp32_gflops", torch.float32), ("bf16_gflops", torch.bfloat16)):
        a = torch.randn(n, n, device=device, dtype=dtype)
        b = torch.randn(n, n, device=device, dtype=dtype)
        times = time_calls(lambda a=a, b=b: a @ b, 10, device)
        out[key] = 2 * n**3 / min(times) / 1e9
    out["int8_gops"] = None
    return out


@contextlib.contextmanager
def fresh_compile_caches() -> Iterator[Path]:
    """Point inductor's and the engine's caches at an empty temporary folder (a true cold start), then restore."""
    saved = {k: os.environ.get(k) for k in ("TORCHINDUCTOR_CACHE_DIR", "VGGNETS_ENGINE_CACHE")}
    with tempfile.TemporaryDirectory(prefix="vggnets-bench-") as folder:
        os.environ["TORCHINDUCTOR_CACHE_DIR"] = str(Path(folder) / "inductor")
        os.environ["VGGNETS_ENGINE_CACHE"] = str(Path(folder) / "engine")
        try:
            yield Path(folder)
        finally:
            for key, value in saved.items():
                if value is None:
                    os.environ.pop(key, None)
                else:
                    os.environ[key] = value

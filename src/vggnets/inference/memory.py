"""Freed memory kept for reuse on the CPU: activations are not page-faulted in again on every call.

glibc's malloc serves every block above its mmap threshold (at most 32 MiB) with a fresh ``mmap`` and gives it back to
the system on ``free``. A VGG16 batch allocates a few hundred MiB of activations per call (205 MiB for conv1's output
alone at batch 16), so every call page-faults and zeroes them again: about 10% of fp32 time on a 2-core AMD Zen 4
(measured in one process, same package, 3.3 -> 3.6 img/s per core), more than the kernels themselves differ from
ONNX Runtime's, whose arena allocator keeps its buffers. :func:`keep_freed_memory` asks glibc to do the same
(``M_MMAP_MAX=0``: large blocks come from the heap; ``M_TRIM_THRESHOLD`` high: the heap is not trimmed on free), so
after the first call the buffers are reused. The process then keeps its peak memory until it exits, as with an arena.
Set ``VGGNETS_KEEP_FREED_MEMORY=0`` to leave malloc alone. A no-op where the C library is not glibc.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import os

#: mallopt parameters (glibc's malloc.h).
M_TRIM_THRESHOLD = -1
M_MMAP_MAX = -4
#: Keep up to this much free memory at the top of the heap.
TRIM_THRESHOLD = 2**31 - 1  # a C int

_state: dict[str, bool] = {}


def keep_freed_memory() -> bool:
    """Make glibc keep freed blocks for reuse (once per process); True when this process's malloc now does."""
    if "applied" in _state:
        return _state["applied"]
    applied = False
    if os.environ.get("VGGNETS_KEEP_FREED_MEMORY", "1") != "0":
        try:
            libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
            mallopt = libc.mallopt
        except (OSError, AttributeError):  # not glibc (musl, macOS, Windows): nothing to tune
            mallopt = None
        if mallopt is not None:
            applied = bool(mallopt(M_MMAP_MAX, 0)) and bool(mallopt(M_TRIM_THRESHOLD, TRIM_THRESHOLD))
    _state["applied"] = applied
    return applied

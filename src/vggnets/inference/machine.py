"""What machine a benchmark ran on: CPU kind, the ISA flags that matter for PyTorch on CPU, core count, versions.

Development and CI machines have 2 cores but not always the same CPU, and the same code gives very different ratios
on them, so every benchmark prints :func:`describe_cpu` first. Standard library only at import time;
:func:`matmul_peaks` imports torch lazily. The inference engine reads :func:`describe_cpu` to decide whether bf16 and
int8 have hardware support here, and `vggnets benchmark` prints it with every table.

    python -m vggnets.inference.machine [--peaks] [--json]
"""

from __future__ import annotations

import os
import platform
import subprocess
import time
from typing import Any

#: Flags that decide which CPU fast paths PyTorch/oneDNN can use.
FLAGS_OF_INTEREST = (
    "avx2",
    "avx512f",
    "avx512_vnni",
    "avx512_bf16",
    "amx_tile",
    "amx_bf16",
    "amx_int8",
)

#: Peaks measured on the two kinds of CPU the project was benchmarked on: fp32 / bf16 matmul 2048^3 in GFLOP/s,
#: int8 ``torch._int_mm`` 2048^3 in GOP/s.
KNOWN_PEAKS: dict[str, dict[str, float]] = {
    "intel-amx": {"fp32_gflops": 435.0, "bf16_gflops": 2490.0, "int8_gops": 3620.0},
    "amd-zen4": {"fp32_gflops": 158.0, "bf16_gflops": 429.0, "int8_gops": 631.0},
}

_KIND_LABELS = {
    "intel-amx": "Intel Xeon with AMX (Sapphire Rapids class)",
    "amd-zen4": "AMD EPYC with AVX-512 BF16/VNNI, no AMX (Zen 4 class)",
    "amd-avx2": "AMD EPYC without AVX-512 (Zen 3 class or older): no reference peaks for this kind",
    "intel-avx512": "Intel with AVX-512, no AMX: no reference peaks for this kind",
    "other": "no reference peaks for this kind",
}


def _cpuinfo() -> dict[str, str]:
    """The first processor block of /proc/cpuinfo as a dict (empty where it cannot be read)."""
    info: dict[str, str] = {}
    try:
        with open("/proc/cpuinfo", encoding="utf-8", errors="replace") as f:
            for line in f:
                if not line.strip():
                    if info:
                        break
                    continue
                key, _, value = line.partition(":")
                info.setdefault(key.strip(), value.strip())
    except OSError:
        pass
    return info


def _lscpu_model_name() -> str | None:
    try:
        out = subprocess.run(["lscpu"], capture_output=True, text=True, timeout=10, check=False).stdout
    except (OSError, subprocess.SubprocessError):
        return None
    for line in out.splitlines():
        key, _, value = line.partition(":")
        if key.strip() == "Model name":
            return value.strip()
    return None


def _classify(vendor: str, flags: set[str]) -> str:
    if "amx_bf16" in flags or "amx_tile" in flags:
        return "intel-amx"
    if "AMD" in vendor:
        return "amd-zen4" if "avx512_bf16" in flags else "amd-avx2"
    if "Intel" in vendor and "avx512f" in flags:
        return "intel-avx512"
    return "other"


def describe_cpu() -> dict[str, Any]:
    """CPU model, vendor, family/model, the flags of :data:`FLAGS_OF_INTEREST`, core counts and the CPU kind.

    ``kind`` is one of ``intel-amx``, ``amd-zen4`` (the two kinds with reference peaks), ``amd-avx2``,
    ``intel-avx512`` or ``other``; ``reference_peaks`` holds :data:`KNOWN_PEAKS` for the first two, else None.
    """
    info = _cpuinfo()
    flags = set(info.get("flags", "").split())
    vendor = info.get("vendor_id", "unknown")
    kind = _classify(vendor, flags)
    try:
        usable = len(os.sched_getaffinity(0))
    except (AttributeError, OSError):
        usable = os.cpu_count() or 0
    return {
        "model_name": info.get("model name") or _lscpu_model_name() or platform.processor() or "unknown",
        "vendor": vendor,
        "family": info.get("cpu family"),
        "model": info.get("model"),
        "kind": kind,
        "kind_label": _KIND_LABELS[kind],
        "flags": {flag: flag in flags for flag in FLAGS_OF_INTEREST},
        "logical_cpus": os.cpu_count(),
        "usable_cpus": usable,
        "hypervisor": "hypervisor" in flags,
        "reference_peaks": KNOWN_PEAKS.get(kind),
    }


def format_cpu(cpu: dict[str, Any]) -> str:
    """Human-readable lines for :func:`describe_cpu`'s result."""
    flags = ", ".join(f"{name} {'yes' if present else 'no'}" for name, present in cpu["flags"].items())
    lines = [
        f"CPU: {cpu['model_name']} (vendor {cpu['vendor']}, family {cpu['family']}, model {cpu['model']}"
        f"{', virtualised' if cpu['hypervisor'] else ''})",
        f"CPU kind: {cpu['kind']} = {cpu['kind_label']}",
        f"Flags: {flags}",
        f"Cores: {cpu['usable_cpus']} usable of {cpu['logical_cpus']} logical",
    ]
    peaks = cpu.get("reference_peaks")
    if peaks:
        lines.append(
            "Reference peaks for this kind (measured on a CPU of this kind): "
            f"fp32 matmul {peaks['fp32_gflops']:g} GFLOP/s, bf16 {peaks['bf16_gflops']:g} GFLOP/s, "
            f"int8 _int_mm {peaks['int8_gops']:g} GOP/s"
        )
    measured = cpu.get("measured_peaks")
    if measured:
        lines.append(
            "Measured peaks here (matmul 2048^3): "
            + ", ".join(_format_peak(k, v, cpu["flags"]) for k, v in measured.items())
        )
    return "\n".join(lines)


_PROBE = 512


#: The CPU flags (and their names for people) that give a dtype a fast matmul path (fp32 always has one).
FAST_PATH_FLAGS = {
    "bf16": {"avx512_bf16": "AVX-512 BF16", "amx_bf16": "AMX"},
    "int8": {"avx512_vnni": "AVX-512 VNNI", "amx_int8": "AMX"},
}


def _format_peak(key: str, value: float | None, flags: dict[str, bool]) -> str:
    """One measured peak, or why it was not measured: the CPU lacks the dtype's instructions (then say so), else
    the estimate from a small probe was over the time budget, which on a CPU that has them means a busy machine."""
    kind, unit = key.split("_")
    unit = unit.replace("gflops", "GFLOP/s").replace("gops", "GOP/s")
    if value is not None:
        return f"{kind} {value:.0f} {unit}"
    needed = FAST_PATH_FLAGS.get(kind, {})
    if needed and not any(flags.get(flag) for flag in needed):
        names = " or ".join(needed.values())
        return f"{kind} not measured (this CPU has no {names}, so {kind} is emulated: too slow to time)"
    return f"{kind} not measured (a 2048^3 product would take over 2 s here: the machine may be busy)"


def matmul_peaks(n: int = 2048, repeats: int = 5, budget_s: float = 2.0) -> dict[str, float | None]:
    """Best-of-``repeats`` fp32 and bf16 matmul GFLOP/s and int8 ``torch._int_mm`` GOP/s at n^3 (imports torch).

    A dtype whose n^3 product would take more than ``budget_s`` (estimated from a 512^3 probe) is reported as None:
    without AVX-512 BF16/VNNI or AMX, bf16 and int8 fall back to emulation that is ~100x slower than fp32.
    """
    import torch

    def best(fn, small) -> float | None:
        small()  # warm-up (oneDNN primitive creation)
        probe = []
        for _ in range(3):
            start = time.perf_counter()
            small()
            probe.append(time.perf_counter() - start)
        if min(probe) * (n / _PROBE) ** 3 > budget_s:
            return None
        fn()
        times = []
        for _ in range(repeats):
            start = time.perf_counter()
            fn()
            times.append(time.perf_counter() - start)
        return 2 * n**3 / min(times) / 1e9

    gen = torch.Generator().manual_seed(0)
    out: dict[str, float | None] = {}
    for label, make, mm in (
        ("fp32_gflops", lambda k: torch.randn(k, k, generator=gen), torch.mm),
        ("bf16_gflops", lambda k: torch.randn(k, k, generator=gen).bfloat16(), torch.mm),
        (
            "int8_gops",
            lambda k: torch.randint(-128, 127, (k, k), dtype=torch.int8, generator=gen),
            getattr(torch, "_int_mm", None),
        ),
    ):
        if mm is None:
            out[label] = None
            continue
        a, b, sa, sb = make(n), make(n), make(_PROBE), make(_PROBE)
        try:
            out[label] = best(lambda a=a, b=b, mm=mm: mm(a, b), lambda sa=sa, sb=sb, mm=mm: mm(sa, sb))
        except RuntimeError:
            out[label] = None
    return out


if __name__ == "__main__":
    import json
    import sys

    cpu = describe_cpu()
    if "--peaks" in sys.argv:
        cpu["measured_peaks"] = matmul_peaks()
    print(json.dumps(cpu) if "--json" in sys.argv else format_cpu(cpu))

"""``vggnets benchmark --peers``: ONNX Runtime and OpenVINO on our own ONNX export, timed beside our paths.

Each peer runs the graph every engine path starts from (batch norm folded, uint8 input normalised inside it), exported
to ONNX by us, through ``vggnets.optimize(..., backend=peer)``: the same inputs, batch, buckets and photos as our
rows, in the same process, measured the same way (cold and warm first prediction, images/s, batch-1 latency, peak
memory, agreement with the fp32 baseline). The paths: ONNX Runtime fp32 and int8 (QDQ from its static quantizer,
calibrated on the images our int8 path is calibrated on), OpenVINO fp32, bf16 (its inference-precision hint) and int8
(the same QDQ model). A peer that is not installed is skipped with one line. :mod:`.ratios` compares each of our precisions
with the best peer at that precision.
"""

from __future__ import annotations

import gc
import time
import warnings
from collections.abc import Callable, Sequence
from typing import Any

from torch import nn

from ..errors import VggnetsError
from ..inference.backends import PRECISIONS_OF, installed
from ..inference.onnx_models import PEERS_EXTRA, missing_modules
from .measure import PeakMemory, Timings, agreement, fresh_compile_caches, time_calls
from .report import make_row

#: The peers ``--peers`` accepts, in the order they run.
PEERS: tuple[str, ...] = ("onnxruntime", "openvino")


def parse_peers(text: str | None) -> list[str]:
    """'onnxruntime,openvino' -> ['onnxruntime', 'openvino'] ('all' for every peer; None or '' for none)."""
    if not text:
        return []
    names = [p.strip().lower() for p in text.split(",") if p.strip()]
    if names == ["all"]:
        return list(PEERS)
    unknown = [p for p in names if p not in PEERS]
    if unknown:
        raise VggnetsError(f"unknown peer {', '.join(unknown)}; choose from {', '.join(PEERS)} (or all).")
    return [p for p in PEERS if p in names]


def unavailable(peer: str) -> str | None:
    """Why ``peer`` cannot run here (one line), or None when it can."""
    missing = [] if installed(peer) else [peer]
    missing += missing_modules(["onnx", "onnxscript"])
    if not missing:
        return None
    return f"{peer}: skipped, {' and '.join(missing)} not installed ({PEERS_EXTRA})"


def peer_paths(peers: Sequence[str], precisions: Sequence[str]) -> list[tuple[str, str]]:
    """(peer, precision) for every requested precision that each peer runs."""
    return [(peer, p) for peer in peers for p in precisions if p in PRECISIONS_OF[peer]]


def measure_peers(
    model: nn.Module,
    peers: Sequence[str],
    precisions: Sequence[str],
    s: Any,
    reference: Any,
    say: Callable[[str], None],
) -> tuple[list[dict[str, Any]], list[str]]:
    """Rows (the benchmark's keys) of every available peer at each precision, and one line per skipped peer.
    ``s`` is the benchmark's Setup (inputs, batch, spec, device), ``reference`` the baseline's logits on the photos."""
    from ..inference.plan import plan

    rows: list[dict[str, Any]] = []
    skipped = [line for line in map(unavailable, peers) if line]
    if s.device.type != "cpu":
        return rows, [f"{peer}: skipped, the peer runtimes are measured on the CPU only" for peer in peers]
    runnable = [p for p in peers if unavailable(p) is None]
    for peer, precision in peer_paths(runnable, precisions):
        planned = plan(precision, s.device, True)[0]
        if planned != precision:
            skipped.append(f"{peer} {precision}: skipped, {precision} runs as {planned} on this CPU")
            continue
        try:
            rows.append(measure_peer(model, peer, precision, s, reference, say))
        except Exception as exc:  # a runtime that fails here is reported, the benchmark goes on
            skipped.append(f"{peer} {precision}: failed ({type(exc).__name__}: {str(exc).strip()[:200]})")
        gc.collect()
    for line in skipped:
        say(line)
    return rows, skipped


def build_peer(model: nn.Module, peer: str, precision: str, s: Any, *, warmup: bool = True) -> Any:
    """``vggnets.optimize`` with ``backend=peer`` at this benchmark's batch, input size and normalisation."""
    from ..inference.engine import optimize

    return optimize(
        model,
        precision,
        device=s.device,
        batch_size=s.batch_size,
        image_size=s.spec.image_size,
        resize_size=s.spec.resize_size,
        mean=s.spec.mean,
        std=s.spec.std,
        warmup=warmup,
        backend=peer,
    )


def measure_peer(
    model: nn.Module, peer: str, precision: str, s: Any, reference: Any, say: Callable[[str], None]
) -> dict[str, Any]:
    """Build ``peer`` at ``precision`` from empty caches (export, quantisation, the runtime's compilation: cold),
    time it, then build it again from the cached files (warm); its row."""
    say(f"{peer} {precision}: exporting and building (cold caches)")
    with warnings.catch_warnings(), fresh_compile_caches():
        warnings.simplefilter("ignore")  # the predictor keeps its warnings in info.warnings
        with PeakMemory(s.device) as mem:
            start = time.perf_counter()
            predictor = build_peer(model, peer, precision, s)
            predictor(s.batch_u8[:1])
            cold = time.perf_counter() - start
            if predictor.info.backend != peer:
                raise VggnetsError("; ".join(predictor.info.warnings) or f"{peer} did not build")
            say(f"{peer} {precision}: timing")
            throughput = time_calls(lambda: predictor(s.batch_u8), s.iterations, s.device)
            latency = time_calls(lambda: predictor(s.batch_u8[:1]), s.latency_iterations, s.device)
            logits = predictor(s.crops)
        start = time.perf_counter()
        build_peer(model, peer, precision, s, warmup=False)(s.batch_u8[:1])
        warm = time.perf_counter() - start
    info = predictor.info
    timings = Timings(throughput, latency, mem.peak_mib, cold=cold, warm=warm)
    row = make_row(f"{peer} {precision}", info.precision, peer, timings, s.batch_size, s.flops, s.peaks)
    row.update(agreement(logits, reference), warnings=list(info.warnings))
    return row

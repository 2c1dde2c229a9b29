"""The machine's limit per dtype: the best of the convolution and matmul primitives at VGG16's shapes.

A 2048^3 matmul alone is not a ceiling for a convolutional network: on an AMD Zen 4 the best fp32 convolution kernels
(ONNX Runtime's NCHWc ones) ran above it, so "of peak" read over 100%. :func:`conv_peaks` times the convolution
primitives the compiled paths call, with pre-packed weights on channels-last inputs, at VGG16's conv3 and conv4 shapes
(3x3, stride 1, padding 1, ReLU fused): fp32 and bf16 through ``mkldnn._convolution_pointwise``, int8 (uint8
activations, int8 per-channel weights) through ``onednn.qconv2d_pointwise``, and, where onnxruntime is installed, its
fp32 convolution (MLAS) too; :func:`best_peaks` takes the best of those and the matmul peaks per dtype and says which
won.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

import torch

#: VGG16's conv3 and conv4 layers: (input channels, output channels, feature map side).
CONV_SHAPES: tuple[tuple[int, int, int], ...] = ((256, 256, 56), (512, 512, 28))
#: The peak keys of each dtype (as in the matmul peaks of ``vggnets.inference.machine``).
KEYS = {"fp32": "fp32_gflops", "bf16": "bf16_gflops", "int8": "int8_gops"}


def _best_seconds(fn: Callable[[], Any], repeats: int, budget_s: float) -> float | None:
    """The fastest of ``repeats`` calls after a warm-up; None when one call takes over ``budget_s`` (emulated)."""
    start = time.perf_counter()
    fn()  # oneDNN primitive creation
    if time.perf_counter() - start > 4 * budget_s:
        return None
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    best = min(times)
    return None if best > budget_s else best


def _fp_conv(dtype: torch.dtype, cin: int, cout: int, side: int, batch: int) -> Callable[[], Any]:
    gen = torch.Generator().manual_seed(0)
    x = (
        torch.randn(batch, cin, side, side, generator=gen)
        .to(dtype)
        .contiguous(memory_format=torch.channels_last)
    )
    w = (torch.randn(cout, cin, 3, 3, generator=gen) * 0.05).to(dtype)
    b = torch.zeros(cout, dtype=dtype)
    packed = torch.ops.mkldnn._reorder_convolution_weight(w, [1, 1], [1, 1], [1, 1], 1, list(x.shape))
    return lambda: torch.ops.mkldnn._convolution_pointwise(
        x, packed, b, [1, 1], [1, 1], [1, 1], 1, "relu", [], ""
    )


def _int8_conv(cin: int, cout: int, side: int, batch: int) -> Callable[[], Any]:
    gen = torch.Generator().manual_seed(0)
    x = torch.randint(0, 255, (batch, cin, side, side), dtype=torch.uint8, generator=gen)
    x = x.contiguous(memory_format=torch.channels_last)
    w = torch.randint(-127, 127, (cout, cin, 3, 3), dtype=torch.int8, generator=gen)
    scales, zeros = torch.full((cout,), 0.01), torch.zeros(cout, dtype=torch.int64)
    packed = torch.ops.onednn.qconv_prepack(w, scales, 0.02, 0, [1, 1], [1, 1], [1, 1], 1, list(x.shape))
    return lambda: torch.ops.onednn.qconv2d_pointwise(
        x, 0.02, 0, packed, scales, zeros, None, [1, 1], [1, 1], [1, 1], 1, 0.5, 0, None, "relu", [], ""
    )


def _onnxruntime_conv(cin: int, cout: int, side: int, batch: int) -> Callable[[], Any]:
    """The same fp32 convolution + ReLU as a one-node ONNX model in onnxruntime (its MLAS NCHWc kernels)."""
    import numpy as np
    import onnxruntime as ort
    from onnx import TensorProto, helper, numpy_helper

    rng = np.random.default_rng(0)
    w = (rng.standard_normal((cout, cin, 3, 3)) * 0.05).astype(np.float32)
    x = rng.standard_normal((batch, cin, side, side)).astype(np.float32)
    graph = helper.make_graph(
        [
            helper.make_node("Conv", ["x", "w"], ["y"], pads=[1, 1, 1, 1]),
            helper.make_node("Relu", ["y"], ["z"]),
        ],
        "conv",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, list(x.shape))],
        [helper.make_tensor_value_info("z", TensorProto.FLOAT, [batch, cout, side, side])],
        [numpy_helper.from_array(w, "w")],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    options = ort.SessionOptions()
    options.intra_op_num_threads = max(1, torch.get_num_threads())
    options.log_severity_level = 3
    session = ort.InferenceSession(model.SerializeToString(), options, providers=["CPUExecutionProvider"])
    return lambda: session.run(None, {"x": x})


Maker = Callable[[int, int, int], Callable[[], Any]]


def _conv_makers(batch: int) -> dict[str, list[tuple[str, Maker]]]:
    """The convolution primitives timed for each dtype: oneDNN's, and onnxruntime's fp32 one where it is installed."""
    import importlib.util

    fp32: list[tuple[str, Maker]] = [("oneDNN conv", lambda c, k, s: _fp_conv(torch.float32, c, k, s, batch))]
    if all(importlib.util.find_spec(name) for name in ("onnxruntime", "onnx")):
        fp32.append(("onnxruntime conv", lambda c, k, s: _onnxruntime_conv(c, k, s, batch)))
    return {
        "fp32": fp32,
        "bf16": [("oneDNN conv", lambda c, k, s: _fp_conv(torch.bfloat16, c, k, s, batch))],
        "int8": [("oneDNN conv", lambda c, k, s: _int8_conv(c, k, s, batch))],
    }


def conv_peaks(batch: int = 4, repeats: int = 5, budget_s: float = 1.0) -> dict[str, Any]:
    """Best GFLOP/s (GOP/s for int8) of the convolution primitives at :data:`CONV_SHAPES` per dtype (oneDNN's, and
    onnxruntime's fp32 kernels where installed), with ``sources`` naming the primitive; None where a primitive is
    missing or emulated (too slow to be a peak)."""
    out: dict[str, Any] = {"sources": {}}
    with torch.no_grad():
        for dtype, makers in _conv_makers(batch).items():
            key = KEYS[dtype]
            out[key] = None
            for (name, make), (cin, cout, side) in ((m, shape) for m in makers for shape in CONV_SHAPES):
                try:
                    seconds = _best_seconds(make(cin, cout, side), repeats, budget_s)
                except (RuntimeError, AttributeError):
                    seconds = None
                rate = None if seconds is None else 2 * batch * cout * cin * 9 * side * side / seconds / 1e9
                if rate is not None and (out[key] is None or rate > out[key]):
                    out[key], out["sources"][key] = rate, name
    return out


def best_peaks(matmul: dict[str, float | None], conv: dict[str, Any] | None) -> dict[str, Any]:
    """Per dtype the higher of the matmul and convolution peaks, with ``sources`` saying which primitive gave it."""
    conv = conv or {"sources": {}}
    out: dict[str, Any] = {"sources": {}}
    for key in KEYS.values():
        candidates = {"matmul": matmul.get(key), conv["sources"].get(key, "conv"): conv.get(key)}
        present = {name: value for name, value in candidates.items() if value is not None}
        if not present:
            out[key] = None
            continue
        source = max(present, key=present.__getitem__)
        out[key], out["sources"][key] = present[source], source
    return out


def machine_peaks(device: torch.device, matmul: dict[str, float | None] | None) -> dict[str, Any]:
    """The peak reference of a benchmark: on the CPU the best of the convolution and matmul primitives per dtype
    (with both sets kept under ``conv`` and ``matmul``), on a GPU the matmul peaks."""
    matmul = dict(matmul or {})
    conv = conv_peaks() if device.type == "cpu" else None
    return {**best_peaks(matmul, conv), "matmul": matmul, "conv": conv}


def format_peaks(peaks: dict[str, Any] | None) -> str | None:
    """One line for the text report: the peak each "of peak" figure is measured against, and where it came from."""
    if not peaks:
        return None
    parts = []
    for dtype, key in KEYS.items():
        unit = "GOP/s" if dtype == "int8" else "GFLOP/s"
        value = peaks.get(key)
        if value is None:
            parts.append(f"{dtype} –")
            continue
        source = peaks["sources"].get(key, "")
        matmul = (peaks.get("matmul") or {}).get(key)
        detail = f"{source}; matmul {matmul:.0f}" if source != "matmul" and matmul else source
        parts.append(f"{dtype} {value:.0f} {unit} ({detail})")
    return (
        'Peak reference ("of peak"): the best of the convolution primitives at VGG16\'s conv3/conv4 shapes and of '
        "matmul: " + ", ".join(parts)
    )

"""The check of a reloaded export: its output against the fp32 eager model, within its precision's tolerance.

``fp32`` must match PyTorch within 1e-4 (absolute, on the logits); ``fp16`` and ``bf16`` within 1e-2 and 6e-2 times
max(1, largest |logit|), because the rounding of 16 layers is part of the difference.
"""

from __future__ import annotations

from collections.abc import Callable

import torch

from ..core.vgg import VGG, device_of
from ..errors import ExportError
from ..models.dense import FullyConvolutionalVGG
from .common import DTYPES, SEED, check_sizes, random_input

#: Absolute tolerance on the logits for fp32, and the relative ones (times max(1, largest |logit|)) for 16 bits.
FP32_TOLERANCE = 1e-4
HALF_TOLERANCE = {"fp16": 1e-2, "bf16": 6e-2}


def tolerance(precision: str, reference: torch.Tensor) -> float:
    """Largest accepted max abs difference from the fp32 eager output ``reference`` for a precision."""
    if precision == "fp32":
        return FP32_TOLERANCE
    scale = max(1.0, float(reference.detach().abs().max())) if reference.numel() else 1.0
    return HALF_TOLERANCE[precision] * scale


def compare(
    model: VGG,
    dense: bool,
    precision: str,
    size: int | None,
    run: Callable[[torch.Tensor], torch.Tensor],
    runtime: str,
) -> tuple[float, str]:
    """Run ``run(x)`` (the reloaded export, returns a tensor) against the fp32 eager model at each verification size.

    Returns the largest difference and a sentence saying what was compared; raises ExportError over the tolerance.
    """
    reference_module = FullyConvolutionalVGG(model).eval() if dense else model
    device = device_of(model)
    worst = 0.0
    shown = []
    for i, (n, h, w) in enumerate(check_sizes(size)):
        x = random_input((n, 3, h, w), SEED + i).to(device)
        with torch.no_grad():
            reference = reference_module(x).float().cpu()
            got = torch.as_tensor(run(x.to(DTYPES[precision]))).float().cpu()
        worst = max(worst, _difference(got, reference, (n, 3, h, w), precision, runtime))
        shown.append(f"{n}x3x{h}x{w}")
    vs = "fp32 eager PyTorch" + (" (tolerance relative to the logits)" if precision != "fp32" else "")
    return worst, f"{runtime} vs {vs} on seeded inputs {', '.join(shown)}"


def _difference(
    got: torch.Tensor, reference: torch.Tensor, shape: tuple[int, ...], precision: str, runtime: str
) -> float:
    """The max abs difference of the output for an input of ``shape`` from the reference; ExportError for another
    output shape or over the tolerance."""
    if got.shape != reference.shape:
        raise ExportError(
            f"the exported model returned shape {tuple(got.shape)} for input {shape}, PyTorch "
            f"{tuple(reference.shape)}; the file was not written."
        )
    diff = float((got - reference).abs().max()) if got.numel() else 0.0
    limit = tolerance(precision, reference)
    if not diff <= limit:  # also catches NaN
        raise ExportError(
            f"the exported model differs from PyTorch by up to {diff:.3g} (max abs diff, {precision}) on a "
            f"{'x'.join(map(str, shape))} input in {runtime}, more than the tolerance {limit:.3g}; the file was not "
            "written. Pass --no-verify (verify=False) to write it anyway."
        )
    return diff

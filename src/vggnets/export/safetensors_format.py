"""safetensors export: the state_dict at the precision, with metadata, checked by rebuilding the model from the file.

The file is for ``vggnets.build(name, weights=path)``; input size and the dense view do not apply (weights work at any
size, and the dense view uses the same weights).
"""

from __future__ import annotations

from pathlib import Path

import torch

from ..core.vgg import VGG
from ..errors import ExportError
from ..models.builders import build
from .common import DTYPES, NOT_VERIFIED, ExportJob, ExportResult, model_name


def export_safetensors(job: ExportJob, tmp: Path) -> ExportResult:
    """Write the floating tensors cast to the precision, with the metadata in the file's header; with ``verify``,
    rebuild the model from the file and compare."""
    from safetensors.torch import save_file

    model, precision = job.model, job.precision
    dtype = DTYPES[precision]
    state = {
        key: (
            value.detach().to("cpu", dtype) if value.is_floating_point() else value.detach().cpu()
        ).contiguous()
        for key, value in model.state_dict().items()
    }
    save_file(state, str(tmp), metadata={**job.metadata, "format": "pt"})
    if not job.verify:
        return "safetensors", None, NOT_VERIFIED
    name = model_name(model)
    if name is None:
        raise ExportError(
            "cannot verify the safetensors file: the model has no configuration name (build it with "
            "vggnets.build or a named builder), so it cannot be rebuilt from the file; pass verify=False."
        )
    worst = _check_rebuilt(model, name, tmp, state)
    rounding = "" if precision == "fp32" else f" (the difference is {precision} rounding of the weights)"
    check = (
        f"reloaded with vggnets.build({name!r}, weights=path): all {len(state)} tensors as saved; max abs diff of "
        f"the weights vs the model{rounding}"
    )
    return "safetensors", worst, check


def _check_rebuilt(model: VGG, name: str, tmp: Path, state: dict[str, torch.Tensor]) -> float:
    """Rebuild ``name`` from the file: every tensor as saved (ExportError otherwise); the max abs difference of the
    weights from the model's."""
    rebuilt = build(name, weights=tmp).state_dict()
    original = model.state_dict()
    if rebuilt.keys() != original.keys():
        raise ExportError(
            f"the safetensors file reloads with other tensors than {name}'s; the file was not written."
        )
    worst = 0.0
    for key, value in original.items():
        expected = state[key].to(value.dtype) if value.is_floating_point() else state[key]
        got = rebuilt[key]
        if got.shape != value.shape or not _same(got, expected):
            raise ExportError(
                f"tensor {key} of the safetensors file does not reload as saved (vggnets.build({name!r}, "
                "weights=path)); the file was not written."
            )
        if value.is_floating_point() and value.numel():
            gap = (got - value.detach().cpu().float()).abs()
            worst = max(
                worst, float(gap.nan_to_num(0.0).max())
            )  # NaN weights (features-only files) reload as NaN
    return worst


def _same(a: torch.Tensor, b: torch.Tensor) -> bool:
    """Equal values, NaN equal to NaN."""
    if not a.is_floating_point():
        return torch.equal(a, b)
    return bool(((a == b) | (a.isnan() & b.isnan())).all())

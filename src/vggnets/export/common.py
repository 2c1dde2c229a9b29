"""What every exporter shares: the formats and precisions, the job, the module to export, its example and check inputs.

Also the metadata every file carries, the dynamic shapes of ``torch.export`` (used by the ONNX dynamo exporter too)
and a context that silences the exporters' warnings and progress prints.
"""

from __future__ import annotations

import contextlib
import copy
import io
import warnings
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import torch
from torch import nn

from ..core.layout import guess_architecture
from ..core.vgg import MIN_SIZE, VGG, device_of
from ..models.dense import MIN_DENSE_SIZE, FullyConvolutionalVGG
from ..version import __version__

FORMATS = ("onnx", "torchscript", "exported", "safetensors")
PRECISIONS = ("fp32", "fp16", "bf16")
DTYPES = {"fp32": torch.float32, "fp16": torch.float16, "bf16": torch.bfloat16}
#: The usual extension of each format (only safetensors requires its own: vggnets picks the reader by extension).
SUFFIXES = {"onnx": ".onnx", "torchscript": ".pt", "exported": ".pt2", "safetensors": ".safetensors"}

#: Example batch for tracing/exporting (2, not 1, so that a dynamic batch is not specialised to 1).
EXAMPLE_BATCH = 2
#: Size of the example input for ``input_size="dynamic"``, and the second (non-square) size it is verified at.
DYNAMIC_EXAMPLE = (224, 224)
DYNAMIC_SECOND = (256, 320)
#: Seed of the verification inputs.
SEED = 0
#: What an exporter returns: the exporter that wrote the file, the max abs difference (None: not verified), the check.
ExportResult = tuple[str, float | None, str]
#: The check of an export written with ``verify=False``.
NOT_VERIFIED = "not verified (verify=False)"


@dataclass(frozen=True)
class ExportJob:
    """One checked export request, as every exporter takes it (with the temporary file to write).

    ``size``: the example side (None: dynamic H/W, or weights only for safetensors); ``opset`` applies to ONNX only;
    ``metadata`` (str -> str) goes where the format keeps metadata (see :func:`file_metadata`).
    """

    model: VGG
    size: int | None
    dense: bool
    precision: str
    verify: bool
    opset: int | None
    metadata: Mapping[str, str]


def model_name(model: VGG) -> str | None:
    """The configuration name of a model: its ``name`` (set by the builders), else a unique layout match."""
    name = getattr(model, "name", None)
    if isinstance(name, str):
        return name
    guesses = guess_architecture(model.state_dict())
    return guesses[0] if len(guesses) == 1 else None


def file_metadata(model: VGG, precision: str, extra: Mapping[str, str] | None) -> dict[str, str]:
    """What every exported file says about itself: vggnets' version, the model's name, the precision, and ``extra``."""
    about = {"library": f"vggnets {__version__}", "precision": precision}
    name = model_name(model)
    if name:
        about["model"] = name
    about.update({str(k): str(v) for k, v in (extra or {}).items()})
    return about


def export_module(model: VGG, dense: bool, precision: str) -> nn.Module:
    """The module to export, in eval mode: the model or its dense view, cast to the precision (a copy if cast)."""
    if precision != "fp32":
        model = copy.deepcopy(model).to(DTYPES[precision])
    module = FullyConvolutionalVGG(model) if dense else model
    return module.eval()


def export_inputs(job: ExportJob) -> tuple[nn.Module, torch.Tensor]:
    """The module to export (:func:`export_module`) and the example input it is traced or exported with, on its
    device and at its precision."""
    module = export_module(job.model, job.dense, job.precision)
    x = example_input(job.size, device_of(module), DTYPES[job.precision])
    return module, x


def check_sizes(size: int | None) -> list[tuple[int, int, int]]:
    """(batch, height, width) of the verification inputs: the export size, plus a second size when dynamic."""
    if size is not None:
        return [(EXAMPLE_BATCH, size, size)]
    return [(EXAMPLE_BATCH, *DYNAMIC_EXAMPLE), (1, *DYNAMIC_SECOND)]


def example_input(size: int | None, device: torch.device, dtype: torch.dtype) -> torch.Tensor:
    """The seeded input an export is traced or exported with."""
    h, w = (size, size) if size is not None else DYNAMIC_EXAMPLE
    return random_input((EXAMPLE_BATCH, 3, h, w), SEED).to(device=device, dtype=dtype)


def random_input(shape: tuple[int, ...], seed: int) -> torch.Tensor:
    """A standard normal tensor from its own seeded generator (the global RNG is left alone)."""
    generator = torch.Generator().manual_seed(seed)
    return torch.randn(shape, generator=generator)


def dynamic_shapes(size: int | None, dense: bool) -> tuple[dict[int, Any]]:
    """``torch.export`` dynamic shapes of the input: the batch always, height and width for ``size=None``."""
    dims: dict[int, Any] = {0: torch.export.Dim("batch", min=1)}
    if size is None:
        low = MIN_DENSE_SIZE if dense else MIN_SIZE
        dims[2] = torch.export.Dim("height", min=low)
        dims[3] = torch.export.Dim("width", min=low)
    return (dims,)


@contextlib.contextmanager
def quiet():
    """Silence the exporters' warnings and progress prints (TracerWarnings, deprecations, "[torch.onnx] ...")."""
    with warnings.catch_warnings(), contextlib.redirect_stdout(io.StringIO()):
        warnings.simplefilter("ignore")
        yield

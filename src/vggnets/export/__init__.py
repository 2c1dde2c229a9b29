"""Export a VGG model to ONNX, TorchScript, a ``torch.export`` program or safetensors, and check the result.

Every export is verified by default: the written file is loaded back with the runtime that will use it and run on a
seeded random input, and its output is compared with the PyTorch model in eager mode (fp32). The largest absolute
difference is reported; an export whose difference exceeds the tolerance of its precision raises
:class:`ExportError` and leaves no file behind.

Formats (suggested extensions in brackets):

``onnx`` (.onnx)
    ``torch.onnx.export(..., dynamo=True)`` (needs onnxscript), falling back to the TorchScript-based exporter
    (``dynamo=False``) if it fails. Input ``images`` (N, 3, H, W); output ``logits`` (N, K), or ``scores``
    (N, K, h, w) for the fully-convolutional view (``dense=True``). The batch dimension is always dynamic;
    ``input_size="dynamic"`` also makes H and W dynamic, which is supported for the dense view only: the exporter
    writes the plain model's adaptive average pool as an ``AveragePool`` whose kernel is fixed by the example size, so
    the file would fail at any other size. At a *fixed* size the dynamo exporter handles the adaptive pool at any
    size (e.g. 384, where the 12x12 map is not a multiple of 7, the case that breaks the TorchScript exporter,
    pytorch/pytorch#42653), so the model is exported unchanged; only the fallback exporter is limited to sizes whose
    last feature map is a multiple of 7 (224, 448, ...). Verified in onnxruntime's CPUExecutionProvider. The file
    is a single .onnx with the weights inside (VGG is far below ONNX's 2 GB limit).
``torchscript`` (.pt)
    ``torch.jit.trace`` at the example size; the traced graph runs at any size (batch and H/W), and a dynamic
    export is verified at two sizes. Reload with ``torch.jit.load``.
``exported`` (.pt2)
    ``torch.export.export`` with a dynamic batch (and dynamic H/W for ``"dynamic"``: any H, W >= 224 for the dense
    view, >= 32 for the plain model, whose adaptive pool exports correctly here), saved with ``torch.export.save``.
    Reload with ``torch.export.load(path).module()``. Dynamic exports use torch's ``backed_size_oblivious`` setting
    so that sizes giving a 1-pixel map are not specialised away.
``safetensors`` (.safetensors)
    The state_dict (floating tensors cast to the precision) with metadata (model, precision, vggnets version), for
    ``vggnets.build(name, weights=path)``. Verified by loading it exactly that way and comparing every tensor. Input
    size and the dense view do not apply (weights work at any size, and the dense view uses the same weights).

Precision: ``fp32`` (default) must match PyTorch within 1e-4 (absolute, on the logits). ``fp16`` and ``bf16`` export a
half-precision copy of the model (the caller's model is never modified); its output is compared with the fp32 eager
model, within 1e-2 (fp16) or 6e-2 (bf16) times max(1, largest |logit|), because the rounding of 16 layers is part
of the difference. An fp16 ONNX file takes and returns float16 tensors; onnxruntime's CPU provider runs it.
onnxruntime's CPU provider has no bfloat16 convolution, so a bf16 ONNX export cannot be verified here: it is
refused unless ``verify=False`` (for runtimes with bf16 kernels, such as TensorRT or onnxruntime on a GPU).

Files are written to a temporary file next to the output, verified, and only then moved into place (atomically,
through :func:`vggnets.io.output.atomic_write`); an existing output is never replaced unless ``overwrite=True``.

api.py                 ``export_model`` and its report
arguments.py           the checks of a request before anything is written
common.py              formats, precisions, the job every exporter takes, file metadata, the module to export,
                       example inputs
verify.py              the comparison of a reloaded export with the eager model, and the tolerances
onnx_format.py         ONNX (dynamo exporter, TorchScript-based fallback), checked in onnxruntime
torch_formats.py       TorchScript and torch.export programs
safetensors_format.py  the weights as safetensors, checked by rebuilding the model from the file
"""

from ..errors import ExportError
from .api import ExportReport, export_model
from .common import DTYPES, FORMATS, PRECISIONS, SUFFIXES
from .verify import tolerance

__all__ = [
    "DTYPES",
    "FORMATS",
    "PRECISIONS",
    "SUFFIXES",
    "ExportError",
    "ExportReport",
    "export_model",
    "tolerance",
]

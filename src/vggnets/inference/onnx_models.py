"""ONNX files of the engine's graph for the peer runtimes: our export, onnxruntime's int8 QDQ, cached on disk.

The graph is the one every engine path starts from (:func:`~vggnets.inference.graph.prepare`: batch norm folded,
uint8 input normalised inside it), exported by ``torch.onnx`` (the dynamo exporter, else the TorchScript one, as
``vggnets export --format onnx``) with a dynamic batch: input ``images`` (N, 3, S, S) uint8, output ``logits``
(N, K) float32. int8 is onnxruntime's static quantizer (``quantize_static``: QDQ, per-channel int8 weights, uint8
activations, min/max calibration) run on the same calibration batches as the engine's own int8 path. Files are cached
beside the AOT packages under a key of the weights, shape, calibration images and versions, so that a later process
loads them without exporting again.
"""

from __future__ import annotations

import contextlib
import importlib.util
import tempfile
from collections.abc import Iterator, Sequence
from pathlib import Path

import torch
from torch import nn

from ..errors import MissingDependencyError
from ..io.output import atomic_write
from .compiled import engine_cache_dir, fingerprint
from .graph import MAX_BATCH, quiet_compile_logs

#: The pip extra that installs every peer runtime.
PEERS_EXTRA = "pip install 'vggnets[peers]'"
#: Bump when the way the files are made changes, so that stale cached files are not reused.
ONNX_FORMAT = 1
#: Images per calibration run of onnxruntime's quantizer (it keeps every intermediate tensor of a run in memory).
CALIBRATION_BATCH = 8


def missing_modules(names: Sequence[str]) -> list[str]:
    """The modules of ``names`` that are not installed (checked without importing them)."""
    return [name for name in names if importlib.util.find_spec(name) is None]


def require_modules(names: Sequence[str], what: str) -> None:
    """MissingDependencyError naming the ``peers`` extra unless every module of ``names`` is installed."""
    missing = missing_modules(names)
    if missing:
        raise MissingDependencyError(
            f"{what} needs {' and '.join(missing)}, which {'is' if len(missing) == 1 else 'are'} not installed: "
            f"{PEERS_EXTRA} (or pip install {' '.join(missing)})."
        )


def _versions() -> tuple[str, ...]:
    from importlib.metadata import PackageNotFoundError, version

    out = [torch.__version__]
    for name in ("onnx", "onnxruntime", "onnxscript"):
        try:
            out.append(f"{name} {version(name)}")
        except PackageNotFoundError:
            out.append(f"{name} missing")
    return tuple(out)


def onnx_path(
    module: nn.Module, precision: str, example: torch.Tensor, calibration: torch.Tensor | None, folder: Path
) -> Path:
    """Where the ONNX file of ``module`` at ``precision`` (``fp32`` or ``int8``) lives in ``folder``."""
    key = fingerprint(
        module,
        "onnx",
        precision,
        tuple(example.shape[1:]),
        ONNX_FORMAT,
        _versions(),
        *(calibration,) if precision == "int8" and calibration is not None else (),
    )
    return folder / f"onnx-{precision}-{key[:24]}.onnx"


@contextlib.contextmanager
def onnx_file(
    module: nn.Module,
    precision: str,
    example: torch.Tensor,
    *,
    calibration: torch.Tensor | None = None,
    cache: bool = True,
) -> Iterator[tuple[Path, bool]]:
    """Yield (path, cache hit) of the ONNX file of the prepared ``module`` at ``precision``: from the engine cache,
    else exported now (and, for ``int8``, quantised with onnxruntime on ``calibration``). Without ``cache`` the files
    live in a temporary folder that is removed on exit (the runtimes have loaded them by then)."""
    require_modules(["onnx", "onnxscript"], "running a peer runtime on our ONNX export")
    if precision == "int8":
        require_modules(["onnxruntime"], "int8 quantisation with onnxruntime's static quantizer")
    with contextlib.ExitStack() as stack:
        folder = engine_cache_dir() if cache else Path(stack.enter_context(tempfile.TemporaryDirectory()))
        folder.mkdir(parents=True, exist_ok=True)
        fp32 = onnx_path(module, "fp32", example, None, folder)
        hit = fp32.is_file()
        if not hit:
            atomic_write(fp32, lambda tmp: write_onnx(module, example, tmp), overwrite=True)
        if precision != "int8":
            yield fp32, hit
            return
        if calibration is None:
            raise ValueError("int8 needs calibration images")
        int8 = onnx_path(module, "int8", example, calibration, folder)
        hit = int8.is_file()
        if not hit:
            atomic_write(int8, lambda tmp: quantize_qdq(fp32, tmp, calibration), overwrite=True)
        yield int8, hit


def write_onnx(module: nn.Module, example: torch.Tensor, path: Path, opset: int | None = None) -> str:
    """Export ``module`` (uint8 images in, logits out) to ``path`` with a dynamic batch, the weights inside: the
    dynamo exporter, else the TorchScript one. Returns the exporter used."""
    names = {"input_names": ["images"], "output_names": ["logits"]}
    example = example[:2] if len(example) > 1 else example.expand(2, -1, -1, -1).contiguous()
    with torch.no_grad(), quiet_compile_logs(), _quiet():
        try:
            batch = torch.export.Dim("batch", min=1, max=MAX_BATCH)
            program = torch.onnx.export(
                module, (example,), dynamo=True, dynamic_shapes=({0: batch},), opset_version=opset,
                verbose=False, **names,
            )  # fmt: skip
            program.save(path, external_data=False)
            return "torch.onnx dynamo"
        except OSError:
            raise
        except Exception:  # any failure of the new exporter: the TorchScript one, as vggnets export does
            torch.onnx.export(
                module, (example,), str(path), dynamo=False, opset_version=opset or 17,
                dynamic_axes={"images": {0: "batch"}, "logits": {0: "batch"}}, **names,
            )  # fmt: skip
            return "torch.onnx TorchScript (fallback)"


@contextlib.contextmanager
def _quiet() -> Iterator[None]:
    """The exporters' warnings and progress prints, silenced (as vggnets export does)."""
    from ..export.common import quiet

    with quiet():
        yield


class _Batches:
    """onnxruntime's CalibrationDataReader over uint8 crops, :data:`CALIBRATION_BATCH` images at a time."""

    def __init__(self, images: torch.Tensor) -> None:
        self._batches = iter(images.split(CALIBRATION_BATCH))

    def get_next(self) -> dict | None:
        batch = next(self._batches, None)
        return None if batch is None else {"images": batch.contiguous().numpy()}


def quantize_qdq(source: Path, target: Path, calibration: torch.Tensor) -> None:
    """int8 QDQ model of the fp32 ONNX file ``source`` by onnxruntime's ``quantize_static`` (per-channel symmetric
    int8 weights, uint8 activations, min/max over ``calibration``), written to ``target``."""
    import inspect
    import logging

    from onnxruntime.quantization import CalibrationDataReader, QuantFormat, QuantType, quantize_static

    reader = type("CalibrationBatches", (_Batches, CalibrationDataReader), {})(calibration)
    options = {
        "quant_format": QuantFormat.QDQ,
        "per_channel": True,
        "activation_type": QuantType.QUInt8,
        "weight_type": QuantType.QInt8,
    }
    if "calibration_providers" in inspect.signature(quantize_static).parameters:
        options["calibration_providers"] = ["CPUExecutionProvider"]
    root = logging.getLogger()
    level = root.level
    root.setLevel(logging.ERROR)  # the quantizer logs "consider pre-processing" on the root logger
    try:
        with _one_batch_at_a_time():
            quantize_static(str(source), str(target), reader, **options)
    finally:
        root.setLevel(level)


@contextlib.contextmanager
def _one_batch_at_a_time() -> Iterator[None]:
    """Make onnxruntime's min/max calibrator merge the ranges of each calibration batch as it goes.

    It keeps every intermediate tensor of every batch until the end (about 110 MB per vgg16 image), and its
    ``CalibMaxIntermediateOutputs`` option drops the collected batches without merging them (onnxruntime 1.32), so
    each batch is given to its ``collect_data`` on its own: that call merges the batch's ranges into the ones before.
    """
    from onnxruntime.quantization.calibrate import MinMaxCalibrater

    original = MinMaxCalibrater.collect_data

    class _One:
        def __init__(self, batch: dict) -> None:
            self.batch: dict | None = batch

        def get_next(self) -> dict | None:
            batch, self.batch = self.batch, None
            return batch

    def collect_data(self, data_reader) -> None:  # noqa: ANN001 - onnxruntime's signature
        while (batch := data_reader.get_next()) is not None:
            original(self, _One(batch))

    MinMaxCalibrater.collect_data = collect_data
    try:
        yield
    finally:
        MinMaxCalibrater.collect_data = original

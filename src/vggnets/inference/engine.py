"""Fast inference: turn any VGG (ours or torchvision's) into a predictor that takes uint8 images and returns logits.

``optimize(model, precision=..., device=..., compile=...)`` returns a :class:`Predictor` that has

- eval mode and batch norm folded into the convolutions (exact up to float rounding; ``_bn`` models cost as plain ones);
- normalisation inside the graph: it takes uint8 (N, 3, H, W) crops, so there is no separate float pass;
- channels-last memory format and the chosen precision: ``fp32``, ``bf16`` (weights in bf16) or ``int8`` (torchao PT2E
  static quantisation with the x86 inductor quantizer, per-channel weights, calibrated on real photos);
- compilation: on CPU an AOTInductor package with frozen, pre-packed weights, cached on disk so that only the first
  process pays for it (``compile="aot"``); or ``torch.compile`` with inductor freezing (``compile="jit"``; CUDA graphs
  on GPU for small batches);
- fixed batch buckets for compiled graphs: a partial batch is padded to the next bucket, so nothing recompiles in
  steady state; a warm-up runs every JIT bucket once (an AOT package is shape-generic: one batch-1 run checks it).

Everything degrades instead of failing: bf16 without hardware support, int8 without torchao or on a GPU, a compile
error, or a missing CUDA device each give one warning and a slower path that works. :attr:`Predictor.info` says what
was actually used. The steps live in :mod:`.plan` (what runs here), :mod:`.graph` (the rewritten module),
:mod:`.calibration` (int8) and :mod:`.compiled` (AOT cache, torch.compile, warm-up); this module puts them together.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import torch
from torch import nn

from ..errors import VggnetsError
from . import calibration as calib
from . import compiled
from .backends import peer_runner, resolve_backend
from .graph import CropUint8, input_spec, num_classes, prepare
from .memory import keep_freed_memory
from .plan import EngineInfo, EngineWarning, Precision, plan_engine, warn
from .winograd import use_winograd

__all__ = ["EngineInfo", "EngineWarning", "Predictor", "optimize"]


class Predictor:
    """uint8 images in, float32 logits out, as fast as this machine allows. Build it with :func:`optimize`.

    ``predictor(images)`` takes a uint8 tensor (N, 3, H, W) of crops (``predictor.preprocess`` makes one from a decoded
    image) or a list of (3, H, W) crops, runs it in bucket-sized chunks and returns logits (N, num_classes) on the CPU.
    """

    def __init__(
        self,
        runner: Any,
        info: EngineInfo,
        *,
        preprocess: CropUint8,
        num_classes: int,
        device: torch.device,
    ) -> None:
        self._runner = runner
        self.info = info
        self.preprocess = preprocess
        self.num_classes = num_classes
        self.device = device

    @property
    def buckets(self) -> tuple[int, ...]:
        return self.info.buckets

    @property
    def batch_size(self) -> int:
        return max(self.info.buckets)

    @property
    def image_size(self) -> int:
        return self.preprocess.crop_size[0]

    def bucket_for(self, n: int) -> int:
        """The smallest bucket that holds ``n`` images (``n`` <= batch_size)."""
        return next(b for b in self.info.buckets if b >= n)

    def run_eagerly(self, module: nn.Module, precision: str) -> None:
        """Replace the runner by the eager ``module`` (which runs at ``precision``): the fallback for a compiled model
        that fails on its first run."""
        self._runner = module
        self.info.compile = "none"
        self.info.precision = precision

    @torch.inference_mode()
    def __call__(self, images: torch.Tensor | Sequence[torch.Tensor]) -> torch.Tensor:
        if not isinstance(images, torch.Tensor):
            images = torch.stack(list(images))
        if images.dtype != torch.uint8 or images.dim() != 4 or images.shape[1] != 3:
            raise VggnetsError(
                f"the predictor takes uint8 images of shape (N, 3, H, W), got {images.dtype} {tuple(images.shape)}; "
                "use predictor.preprocess(image) on each decoded image (vggnets.data.read_image gives uint8)."
            )
        outputs = []
        for chunk in images.split(self.batch_size):
            n = len(chunk)
            size = self.bucket_for(n)
            if size > n:  # pad with copies of the last image: a fixed shape never recompiles
                chunk = torch.cat([chunk, chunk[-1:].expand(size - n, -1, -1, -1)])
            chunk = chunk.to(self.device, non_blocking=True)
            outputs.append(self._runner(chunk)[:n].float().cpu())
        if not outputs:
            return torch.empty(0, self.num_classes)
        return torch.cat(outputs)

    def __repr__(self) -> str:
        i = self.info
        return (
            f"Predictor(precision={i.precision}, backend={i.backend}, compile={i.compile}, device={i.device}, "
            f"buckets={list(i.buckets)}, "
            f"image_size={self.image_size})"
        )


def optimize(
    model: nn.Module,
    precision: Precision = "fp32",
    *,
    device: str | torch.device | None = None,
    compile: bool | str = True,
    batch_size: int = 16,
    buckets: Sequence[int] | None = None,
    image_size: int | None = None,
    resize_size: int | None = None,
    mean: Sequence[float] | None = None,
    std: Sequence[float] | None = None,
    weights: Any = None,
    calibration: str | Path | torch.Tensor | None = None,
    cache: bool = True,
    warmup: bool = True,
    backend: str = "auto",
    winograd: bool | None = None,
) -> Predictor:
    """Build an inference-ready :class:`Predictor` for a VGG (ours or a torchvision module with the same layout).

    ``precision``: ``fp32``, ``bf16`` or ``int8`` (CPU; calibrated on ``calibration``: the bundled photos by default,
    or a directory, or a uint8 tensor of crops). ``compile``: True (AOTInductor package cached on disk on CPU,
    ``torch.compile`` with CUDA graphs for small batches on GPU), ``"aot"``, ``"jit"`` (``torch.compile`` with inductor
    freezing), or False (eager). ``mean``/``std``/``image_size``/``resize_size`` default to ``weights.transforms()``
    when ``weights`` is given, else ImageNet's statistics, 224 and 256. ``backend``: ``"torch"`` (the engine's own
    path), ``"onnxruntime"`` or ``"openvino"`` (our ONNX export of the same graph run by that runtime on the CPU; see
    :mod:`.backends`), or ``"auto"`` (the default: the fastest installed one for the precision on this CPU kind,
    measured in the same process; see ``backends.AUTO_CHOICES``). ``winograd``:
    compute the wide 3x3 convolutions as Winograd F(2x2, 3x3) (:mod:`.winograd`; None: on for compiled fp32 and bf16
    on the CPU, where it is 1.35-1.4x and 1.065x faster and differs from the direct convolution by rounding). The model
    itself is not modified.
    """
    start = time.perf_counter()
    info = plan_engine(precision, device, compile, batch_size, buckets)
    dev = torch.device(info.device)
    notes: list[str] = []
    chosen = resolve_backend(backend, info.precision, dev, notes)
    for message in notes:
        warn(info, message)
    spec = input_spec(weights, image_size=image_size, resize_size=resize_size, mean=mean, std=std)
    preprocess = CropUint8(spec.resize_size, spec.image_size)
    dtype = torch.bfloat16 if info.precision == "bf16" and chosen == "torch" else torch.float32
    wrapped = prepare(model, spec.mean, spec.std, dtype, dev)
    images = calib.load_calibration_images(calibration, preprocess) if info.precision == "int8" else None
    example = torch.zeros(batch_size, 3, spec.image_size, spec.image_size, dtype=torch.uint8, device=dev)
    runner = None if chosen == "torch" else _peer(chosen, wrapped, example, info, images, cache)
    if runner is None:
        if dtype != torch.bfloat16 and info.precision == "bf16":  # a peer failed: the torch path in bf16
            wrapped = prepare(model, spec.mean, spec.std, torch.bfloat16, dev)
        runner, eager, eager_precision = _torch_runner(wrapped, example, info, images, cache, winograd)
    else:
        eager, eager_precision = wrapped, "fp32"
    info.build_seconds = time.perf_counter() - start

    predictor = Predictor(runner, info, preprocess=preprocess, num_classes=num_classes(model), device=dev)
    if warmup and not compiled.warm_up(predictor, info, spec.image_size, dev):
        predictor.run_eagerly(eager, eager_precision)
    return predictor


def _build_runner(
    wrapped: nn.Module, example: torch.Tensor, info: EngineInfo, images: torch.Tensor | None, cache: bool
) -> tuple[Any, nn.Module, str]:
    """The fastest runner that builds here, trying the AOT package, int8 quantisation and torch.compile in turn as
    ``info`` plans them and recording every fallback in ``info``; returns it with the eager module (and its precision)
    that a compiled runner falls back to."""
    int8 = info.precision == "int8"
    eager_precision = "bf16" if info.precision == "bf16" else "fp32"

    def quantized() -> torch.fx.GraphModule:
        return calib.quantize_int8(wrapped, calib.calibration_batches(images, info.buckets))

    runner = None
    if info.compile == "aot":
        runner = _try(
            info,
            "AOTInductor compilation",
            lambda: compiled.aot_runner(
                wrapped, example, info, cache=cache, calibration=images, lower=quantized if int8 else None
            ),
        )
        if runner is None:
            info.compile = "jit"
    if int8 and runner is None:
        graph = _try(info, "int8 quantisation", quantized)
        if graph is None:
            info.precision = "fp32"
        else:
            wrapped, eager_precision = graph, "int8"
    if runner is None and info.compile == "jit":
        device = torch.device(info.device)
        runner = _try(info, "torch.compile", lambda: compiled.jit_runner(wrapped, device, info.buckets))
        if runner is None:
            info.compile = "none"
    return (wrapped if runner is None else runner), wrapped, eager_precision


def _torch_runner(
    wrapped: nn.Module,
    example: torch.Tensor,
    info: EngineInfo,
    images: torch.Tensor | None,
    cache: bool,
    winograd: bool | None,
) -> tuple[Any, nn.Module, str]:
    """The torch backend: freed memory kept for reuse on the CPU (:mod:`.memory`), Winograd convolutions where they
    pay (:mod:`.winograd`), then :func:`_build_runner`."""
    if info.device == "cpu":
        keep_freed_memory()
    if _winograd_here(winograd, info):
        info.winograd = use_winograd(wrapped)
    return _build_runner(wrapped, example, info, images, cache)


def _winograd_here(requested: bool | None, info: EngineInfo) -> bool:
    """Whether this predictor's convolutions run as Winograd: as asked, else on for compiled fp32 and bf16 on the
    CPU."""
    if info.precision not in ("fp32", "bf16") or info.device != "cpu":
        return False
    return requested if requested is not None else info.compile in ("aot", "jit")


def _peer(
    backend: str,
    wrapped: nn.Module,
    example: torch.Tensor,
    info: EngineInfo,
    images: torch.Tensor | None,
    cache: bool,
) -> Any:
    """The runner of ``backend`` for the fp32 graph ``wrapped`` at ``info.precision``, recorded in ``info``; None
    (after one warning) when it cannot be built, so that the torch backend runs instead."""
    built = _try(
        info,
        f"the {backend} backend",
        lambda: peer_runner(backend, wrapped, info.precision, example, calibration=images, cache=cache),
    )
    if built is None:
        return None
    runner, info.artifact, hit = built
    info.backend, info.compile = backend, backend
    info.cache = ("hit" if hit else "miss") if cache else None
    return runner


def _try(info: EngineInfo, what: str, build: Callable[[], Any]) -> Any:
    """Run a build step; on failure warn once and return None so the caller takes the slower path."""
    try:
        return build()
    except Exception as exc:  # compile stacks raise many types; the fallback must always work
        first = str(exc).strip().splitlines()[0][:300] if str(exc).strip() else type(exc).__name__
        warn(info, f"{what} failed ({type(exc).__name__}: {first}); using a slower path instead.")
        return None

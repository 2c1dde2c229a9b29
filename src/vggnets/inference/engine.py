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
was actually used.
"""

from __future__ import annotations

import contextlib
import copy
import hashlib
import importlib.util
import logging
import os
import time
import warnings
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import torch
from torch import nn

Precision = Literal["fp32", "bf16", "int8"]
PRECISIONS: tuple[str, ...] = ("fp32", "bf16", "int8")
COMPILE_MODES: tuple[str, ...] = ("aot", "jit", "none")

#: Part of every cached artefact's key: bump it when the way packages are built changes, so stale ones are not reused.
ENGINE_FORMAT = 2

#: The largest batch an exported graph accepts (a dynamic dimension needs an upper bound).
MAX_BATCH = 1024


class EngineWarning(UserWarning):
    """A requested feature is unavailable here; the predictor uses a slower path that works."""


# ------------------------------------------------------------------------------------------------- building blocks


def fold_batchnorm(model: nn.Module) -> nn.Module:
    """A copy of ``model`` (in eval mode) with every BatchNorm2d that follows a Conv2d folded into that convolution.

    The folded BN becomes ``nn.Identity``, so module names and indices are unchanged. Exact up to float rounding.
    """
    from torch.nn.utils.fusion import fuse_conv_bn_eval

    model = copy.deepcopy(model).eval()
    for module in model.modules():
        if not isinstance(module, nn.Sequential):
            continue
        children = list(module.named_children())
        for (_, first), (name, second) in zip(children, children[1:]):
            if isinstance(first, nn.Conv2d) and isinstance(second, nn.BatchNorm2d):
                fused = fuse_conv_bn_eval(first, second)
                first.weight, first.bias = fused.weight, fused.bias
                setattr(module, name, nn.Identity())
    return model


class NormalizedInput(nn.Module):
    """uint8 images (N, 3, H, W) in -> float32 logits out: scaling, mean/std normalisation and the cast to the model's
    dtype happen inside the module, so a compiled graph fuses them into the first convolution's input pass."""

    def __init__(
        self,
        model: nn.Module,
        mean: Sequence[float],
        std: Sequence[float],
        dtype: torch.dtype = torch.float32,
    ) -> None:
        super().__init__()
        self.model = model
        self.dtype = dtype
        scale = torch.tensor(std, dtype=torch.float32) * 255.0
        self.register_buffer("shift", (torch.tensor(mean, dtype=torch.float32) * 255.0).view(1, -1, 1, 1))
        self.register_buffer("scale", (1.0 / scale).view(1, -1, 1, 1))

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        x = (images.to(torch.float32) - self.shift) * self.scale
        x = x.to(self.dtype).contiguous(memory_format=torch.channels_last)
        return self.model(x).float()


def cpu_precision_support() -> dict[str, bool]:
    """Whether this CPU has hardware for bf16 (AVX-512 BF16 or AMX) and fast int8 (AVX-512 VNNI, AVX-VNNI or AMX)."""
    from .machine import describe_cpu

    flags = {name for name, present in describe_cpu()["flags"].items() if present}
    return {
        "bf16": bool(flags & {"avx512_bf16", "amx_bf16"}),
        "int8": bool(flags & {"avx512_vnni", "amx_int8", "avx_vnni"}),
        "amx": "amx_tile" in flags,
    }


def torchao_available() -> bool:
    """True when torchao is installed. Checked without importing it (the import takes seconds): a cached int8 engine
    loads without torchao; only building one imports it, and a torchao that then fails to import is reported there."""
    return importlib.util.find_spec("torchao") is not None


@contextlib.contextmanager
def quiet_compile_logs() -> Iterator[None]:
    """Silence the compile stack's chatter that says nothing to a user (deprecation notes from torchao's import, the
    CUDA-runtime probe of a CUDA build of torch on a CPU machine, inductor's internal UserWarnings)."""
    names = ("torch.utils._pytree", "torch.utils.cpp_extension")
    loggers = [logging.getLogger(name) for name in names]
    levels = [logger.level for logger in loggers]
    try:
        for logger in loggers:
            logger.setLevel(logging.ERROR)
        with warnings.catch_warnings():
            warnings.filterwarnings("ignore", category=UserWarning, module=r"torch\._inductor")
            warnings.filterwarnings("ignore", category=FutureWarning, module=r"torchao")
            yield
    finally:
        for logger, level in zip(loggers, levels, strict=True):
            logger.setLevel(level)


def _export(module: nn.Module, example: torch.Tensor) -> torch.export.ExportedProgram:
    """torch.export with a dynamic batch dimension (1..MAX_BATCH)."""
    batch = torch.export.Dim("batch", min=1, max=MAX_BATCH)
    return torch.export.export(module, (example,), dynamic_shapes=({0: batch},))


def quantize_int8(module: nn.Module, calibration: Iterable[torch.Tensor]) -> torch.fx.GraphModule:
    """Post-training static int8 quantisation of a uint8-input module with torchao's PT2E flow.

    Captures ``module`` with torch.export, inserts observers chosen by ``X86InductorQuantizer`` (per-channel
    symmetric weights, per-tensor activations), runs the ``calibration`` batches through it and converts. The result
    runs anywhere in eager mode (slowly, simulated) and becomes real int8 oneDNN kernels under inductor.
    """
    with quiet_compile_logs():
        from torchao.quantization.pt2e.quantize_pt2e import convert_pt2e, prepare_pt2e
        from torchao.quantization.pt2e.quantizer.x86_inductor_quantizer import (
            X86InductorQuantizer,
            get_default_x86_inductor_quantization_config,
        )

    batches = list(calibration)
    if not batches:
        raise ValueError("int8 calibration needs at least one batch of images")
    quantizer = X86InductorQuantizer()
    quantizer.set_global(get_default_x86_inductor_quantization_config())
    with torch.no_grad(), quiet_compile_logs():
        captured = _export(module, batches[0]).module()
        prepared = prepare_pt2e(captured, quantizer)
        for batch in batches:
            prepared(batch)
        return convert_pt2e(prepared)


# ------------------------------------------------------------------------------------------------- calibration


def sample_images_dir() -> Path:
    """The photos shipped in the package (the same as examples/images): the default int8 calibration set."""
    return Path(__file__).resolve().parents[1] / "assets" / "images"


def load_calibration_images(
    source: str | Path | torch.Tensor | None,
    preprocess: nn.Module,
    limit: int = 64,
) -> torch.Tensor:
    """uint8 crops (N, 3, S, S) for int8 calibration: the bundled photos (``None``), a directory of images, or a ready
    uint8 tensor. Unreadable files are skipped; at most ``limit`` images are used."""
    from ..errors import VggnetsError
    from ..io.images import collect_images, read_image

    if isinstance(source, torch.Tensor):
        if source.dtype != torch.uint8 or source.dim() != 4:
            raise VggnetsError(
                f"calibration images must be a uint8 tensor of shape (N, 3, H, W), got {source.dtype} "
                f"{tuple(source.shape)}."
            )
        return source[:limit]
    folder = Path(source) if source is not None else sample_images_dir()
    if not folder.is_dir():
        raise VggnetsError(f"calibration directory {folder} does not exist or is not a directory.")
    files, _problems = collect_images([str(folder)], recursive=True)
    crops = []
    for path in files[:limit]:
        try:
            crops.append(preprocess(read_image(path)))
        except VggnetsError:
            continue
    if not crops:
        raise VggnetsError(
            f"no readable images in {folder} for int8 calibration; give a directory of JPEG/PNG photos similar to "
            "the ones you will classify."
        )
    return torch.stack(crops)


# ------------------------------------------------------------------------------------------------- preprocessing


class CropUint8(nn.Module):
    """Resize the smaller side to ``resize_size`` and center-crop ``crop_size``, staying in uint8 (the predictor
    normalises inside its graph). Antialiased bilinear, as the weights' presets; rounding may differ from the float
    preset by one grey level on some pixels."""

    def __init__(self, resize_size: int = 256, crop_size: int = 224) -> None:
        super().__init__()
        self.resize_size = [resize_size]
        self.crop_size = [crop_size]

    def forward(self, image: torch.Tensor) -> torch.Tensor:
        from torchvision.transforms.v2 import functional as F

        image = F.resize(image, self.resize_size, antialias=True)
        return F.center_crop(image, self.crop_size)

    def extra_repr(self) -> str:
        return f"resize_size={self.resize_size[0]}, crop_size={self.crop_size[0]}"


# ------------------------------------------------------------------------------------------------- predictor


@dataclass
class EngineInfo:
    """What a predictor actually runs, and what it cost to build."""

    precision: str
    requested_precision: str
    compile: str
    requested_compile: str
    device: str
    buckets: tuple[int, ...]
    cache: str | None = None  # "hit", "miss" or None (no artefact cache used)
    artifact: str | None = None
    build_seconds: float = 0.0
    warmup_seconds: float = 0.0
    warnings: list[str] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        return {k: (list(v) if isinstance(v, tuple) else v) for k, v in self.__dict__.items()}


def _warn(info: EngineInfo, message: str) -> None:
    info.warnings.append(message)
    warnings.warn(message, EngineWarning, stacklevel=3)


def engine_cache_dir() -> Path:
    """Where compiled artefacts live: $VGGNETS_ENGINE_CACHE, else torch.hub.get_dir()/vggnets-engine."""
    override = os.environ.get("VGGNETS_ENGINE_CACHE")
    return Path(override) if override else Path(torch.hub.get_dir()) / "vggnets-engine"


def _fingerprint(module: nn.Module, *extra: Any) -> str:
    """SHA-256 over every parameter and buffer (names, shapes, dtypes, bytes) plus ``extra``: the artefact cache key."""
    digest = hashlib.sha256()
    for name, tensor in module.state_dict().items():
        digest.update(f"{name}|{tuple(tensor.shape)}|{tensor.dtype}|".encode())
        digest.update(_bytes_of(tensor))
    for item in extra:
        if isinstance(item, torch.Tensor):
            digest.update(_bytes_of(item))
        else:
            digest.update(repr(item).encode())
    return digest.hexdigest()


def _bytes_of(tensor: torch.Tensor) -> memoryview:
    """The raw bytes of a tensor without a copy where it is already contiguous on the CPU."""
    flat = tensor.detach().cpu().contiguous().reshape(-1)
    return memoryview(flat.view(torch.uint8).numpy())


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

    @torch.inference_mode()
    def __call__(self, images: torch.Tensor | Sequence[torch.Tensor]) -> torch.Tensor:
        from ..errors import VggnetsError

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
            f"Predictor(precision={i.precision}, compile={i.compile}, device={i.device}, buckets={list(i.buckets)}, "
            f"image_size={self.image_size})"
        )


def _resolve_device(device: str | torch.device | None, info_warnings: list[str]) -> torch.device:
    if device is None:
        return torch.device("cpu")
    device = torch.device(device)
    if device.type == "cuda" and not torch.cuda.is_available():
        info_warnings.append(
            "CUDA was requested but no CUDA device is available; running on the CPU instead."
        )
        return torch.device("cpu")
    if device.type not in ("cpu", "cuda"):
        info_warnings.append(
            f"device {device.type!r} is not supported by the fast engine; running on the CPU instead."
        )
        return torch.device("cpu")
    return device


def _resolve_precision(precision: str, device: torch.device, warn: list[str]) -> str:
    if precision not in PRECISIONS:
        from ..errors import VggnetsError

        raise VggnetsError(f"unknown precision {precision!r}; choose one of {', '.join(PRECISIONS)}.")
    if device.type == "cuda":
        if precision == "int8":
            warn.append("int8 is a CPU path (x86 oneDNN kernels); using bf16 on the GPU instead.")
            return "bf16"
        return precision
    support = cpu_precision_support()
    if precision == "bf16" and not support["bf16"]:
        warn.append(
            "this CPU has no bf16 hardware (no AVX-512 BF16 or AMX), so bf16 would be emulated and slower than fp32; "
            "using fp32 instead."
        )
        return "fp32"
    if precision == "int8" and not torchao_available():
        fallback = "bf16" if support["bf16"] else "fp32"
        warn.append(
            f"int8 needs torchao (pip install 'vggnets[fast]' or pip install torchao); using {fallback} instead."
        )
        return fallback
    return precision


def _resolve_compile(compile: bool | str, device: torch.device) -> str:
    if compile is True:
        return "jit" if device.type == "cuda" else "aot"
    if compile is False or compile is None:
        return "none"
    if compile not in COMPILE_MODES:
        from ..errors import VggnetsError

        raise VggnetsError(
            f"unknown compile mode {compile!r}; choose one of {', '.join(COMPILE_MODES)} (or True/False)."
        )
    return compile


def plan(
    precision: str, device: str | torch.device | None = None, compile: bool | str = True
) -> tuple[str, str, torch.device, list[str]]:
    """What :func:`optimize` will run here, before building anything: (precision, compile mode, device, warnings)."""
    notes: list[str] = []
    dev = _resolve_device(device, notes)
    return _resolve_precision(precision, dev, notes), _resolve_compile(compile, dev), dev, notes


def _default_buckets(batch_size: int, compile_mode: str) -> tuple[int, ...]:
    """Batch 1 for latency and ``batch_size`` for throughput; AOT graphs are shape-generic, so they get every power of
    two in between at no compile cost (less padding)."""
    if compile_mode == "aot":
        sizes = {1, batch_size} | {2**k for k in range(batch_size.bit_length()) if 2**k < batch_size}
    else:
        sizes = {1, batch_size}
    return tuple(sorted(sizes))


def optimize(
    model: nn.Module,
    precision: Precision = "fp32",
    *,
    device: str | torch.device | None = None,
    compile: bool | str = True,
    batch_size: int = 16,
    buckets: Sequence[int] | None = None,
    image_size: int = 224,
    resize_size: int | None = None,
    mean: Sequence[float] | None = None,
    std: Sequence[float] | None = None,
    weights: Any = None,
    calibration: str | Path | torch.Tensor | None = None,
    cache: bool = True,
    warmup: bool = True,
) -> Predictor:
    """Build an inference-ready :class:`Predictor` for a VGG (ours or a torchvision module with the same layout).

    ``precision``: ``fp32``, ``bf16`` or ``int8`` (CPU; calibrated on ``calibration``: the bundled photos by default,
    or a directory, or a uint8 tensor of crops). ``compile``: True (AOTInductor package cached on disk on CPU,
    ``torch.compile`` with CUDA graphs for small batches on GPU), ``"aot"``, ``"jit"`` (``torch.compile`` with inductor
    freezing), or False (eager). ``mean``/``std``/``image_size``/``resize_size`` default to ``weights.transforms()``
    when ``weights`` is given, else ImageNet's statistics, 224 and 256. The model itself is not modified.
    """
    from ..errors import VggnetsError

    start = time.perf_counter()
    if batch_size < 1 or batch_size > MAX_BATCH:
        raise VggnetsError(f"batch_size must be between 1 and {MAX_BATCH}, got {batch_size}.")
    if weights is not None:
        preset = weights.transforms()
        mean = preset.mean if mean is None else mean
        std = preset.std if std is None else std
        image_size = preset.crop_size[0]
        resize_size = preset.resize_size[0] if resize_size is None else resize_size
    mean = (0.485, 0.456, 0.406) if mean is None else tuple(mean)
    std = (0.229, 0.224, 0.225) if std is None else tuple(std)
    resize_size = round(image_size * 256 / 224) if resize_size is None else resize_size

    used_precision, mode, dev, pending = plan(precision, device, compile)
    sizes = tuple(sorted(set(buckets))) if buckets else _default_buckets(batch_size, mode)
    if sizes[-1] != batch_size or sizes[0] < 1:
        sizes = tuple(sorted({s for s in sizes if 1 <= s <= batch_size} | {batch_size}))
    info = EngineInfo(
        precision=used_precision,
        requested_precision=precision,
        compile=mode,
        requested_compile=str(compile),
        device=str(dev),
        buckets=sizes,
    )
    for message in pending:
        _warn(info, message)

    preprocess = CropUint8(resize_size, image_size)
    num_classes = _num_classes(model)
    dtype = torch.bfloat16 if used_precision == "bf16" else torch.float32
    core = fold_batchnorm(model).to(device=dev, dtype=dtype, memory_format=torch.channels_last)
    wrapped = NormalizedInput(core, mean, std, dtype).to(dev).eval()
    example = torch.zeros(batch_size, 3, image_size, image_size, dtype=torch.uint8, device=dev)

    calib = None
    if used_precision == "int8":
        calib = load_calibration_images(calibration, preprocess)

    runner = None
    if mode == "aot":
        runner = _try(
            info, "AOTInductor compilation", lambda: _aot_runner(wrapped, example, calib, info, cache)
        )
        if runner is None:
            info.compile = mode = "jit"
    if used_precision == "int8" and runner is None:
        graph = _try(
            info, "int8 quantisation", lambda: quantize_int8(wrapped, _calibration_batches(calib, sizes))
        )
        if graph is None:
            info.precision = "fp32"
        else:
            wrapped = graph
    if runner is None and mode == "jit":
        runner = _try(info, "torch.compile", lambda: _jit_runner(wrapped, dev, sizes))
        if runner is None:
            info.compile = mode = "none"
    if runner is None:
        runner = wrapped
    info.build_seconds = time.perf_counter() - start

    predictor = Predictor(runner, info, preprocess=preprocess, num_classes=num_classes, device=dev)
    if warmup:
        eager_precision = (
            used_precision if isinstance(wrapped, torch.fx.GraphModule) or dtype != torch.float32 else "fp32"
        )
        _warm_up(predictor, wrapped, eager_precision)
    return predictor


def _num_classes(model: nn.Module) -> int:
    last = [m for m in model.modules() if isinstance(m, nn.Linear | nn.Conv2d)][-1]
    return last.out_features if isinstance(last, nn.Linear) else last.out_channels


def _try(info: EngineInfo, what: str, build: Any) -> Any:
    """Run a build step; on failure warn once and return None so the caller takes the slower path."""
    try:
        return build()
    except Exception as exc:  # compile stacks raise many types; the fallback must always work
        first = str(exc).strip().splitlines()[0][:300] if str(exc).strip() else type(exc).__name__
        _warn(info, f"{what} failed ({type(exc).__name__}: {first}); using a slower path instead.")
        return None


def _calibration_batches(images: torch.Tensor, sizes: Sequence[int]) -> list[torch.Tensor]:
    """Calibration images cut into batches of the largest bucket (the last one filled by repeating images)."""
    size = max(sizes)
    if len(images) < size:
        images = images.repeat((size + len(images) - 1) // len(images), 1, 1, 1)[:size]
    return list(images.split(size))


def _aot_runner(
    wrapped: nn.Module, example: torch.Tensor, calib: torch.Tensor | None, info: EngineInfo, cache: bool
) -> Any:
    """Load the cached AOTInductor package for this model/precision/shape, or build (and cache) it."""
    import torch._inductor

    key = _fingerprint(
        wrapped,
        info.precision,
        tuple(example.shape[1:]),
        torch.__version__,
        ENGINE_FORMAT,
        sorted(k for k, v in cpu_precision_support().items() if v),
        *(calib,) if calib is not None else (),
    )
    path = engine_cache_dir() / f"{info.precision}-{key[:24]}.pt2"
    info.artifact = str(path)
    if cache and path.is_file():
        try:
            with quiet_compile_logs():
                runner = torch._inductor.aoti_load_package(str(path))
            info.cache = "hit"
            return runner
        except Exception as exc:  # a stale or truncated artefact: rebuild it
            _warn(info, f"cached engine {path} could not be loaded ({type(exc).__name__}); rebuilding it.")
    info.cache = "miss" if cache else None
    module = wrapped
    if info.precision == "int8":
        module = quantize_int8(wrapped, _calibration_batches(calib, info.buckets))
    build_package(module, example, path)
    with quiet_compile_logs():
        return torch._inductor.aoti_load_package(str(path))


def build_package(module: nn.Module, example: torch.Tensor, path: Path) -> Path:
    """Export ``module`` (dynamic batch) and compile it with AOTInductor, weights frozen, into the package ``path``.

    Written to a temporary name and renamed, so that a killed build never leaves a half-written package behind.
    """
    import torch._inductor

    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".tmp-{os.getpid()}-{path.name}")  # AOTInductor wants the .pt2 suffix
    try:
        # with grad enabled the kernels are ~2.5x slower (no inference-only fusions)
        with torch.no_grad(), quiet_compile_logs():
            program = _export(module, example)
            torch._inductor.aoti_compile_and_package(
                program, package_path=str(tmp), inductor_configs={"freezing": True}
            )
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)
    return path


def _jit_runner(wrapped: nn.Module, device: torch.device, sizes: Sequence[int]) -> Any:
    """torch.compile with inductor freezing (weights constant-folded and pre-packed); CUDA graphs at small batches."""
    import torch._inductor.config as inductor_config

    inductor_config.freezing = True
    if device.type == "cuda":
        mode = "reduce-overhead" if max(sizes) <= 64 else "max-autotune-no-cudagraphs"
        return torch.compile(wrapped, mode=mode, dynamic=False)
    return torch.compile(wrapped, dynamic=False)


def _warm_up(predictor: Predictor, eager: nn.Module, eager_precision: str) -> None:
    """Run every bucket of a JIT graph once (compiling it now, not on the first real batch), or batch 1 of a
    shape-generic AOT package or eager model (a check that it runs); a failure falls back to eager."""
    start = time.perf_counter()
    size = predictor.image_size
    sizes = predictor.buckets if predictor.info.compile == "jit" else predictor.buckets[:1]
    try:
        with quiet_compile_logs():  # a JIT graph compiles here
            for n in sizes:
                predictor(torch.zeros(n, 3, size, size, dtype=torch.uint8))
        if predictor.device.type == "cuda":
            torch.cuda.synchronize(predictor.device)
    except Exception as exc:
        if predictor.info.compile == "none":
            raise
        _warn(
            predictor.info,
            f"the compiled model failed on its first run ({type(exc).__name__}: {str(exc).strip()[:300]}); "
            "running it eagerly instead.",
        )
        predictor._runner = eager
        predictor.info.compile = "none"
        predictor.info.precision = eager_precision
    predictor.info.warmup_seconds = time.perf_counter() - start

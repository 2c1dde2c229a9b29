"""int8 calibration: the calibration photos (bundled or the user's), their batches, and PT2E static quantisation.

torchao is imported only by :func:`quantize_int8`, so that a cached int8 engine loads without it.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from pathlib import Path

import torch
from torch import nn

from ..errors import VggnetsError
from .graph import export_batched, quiet_compile_logs


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


def calibration_batches(images: torch.Tensor, sizes: Sequence[int]) -> list[torch.Tensor]:
    """Calibration images cut into batches of the largest bucket (the last one filled by repeating images)."""
    size = max(sizes)
    if len(images) < size:
        images = fill_batch(images, size)
    return list(images.split(size))


def fill_batch(images: torch.Tensor, size: int) -> torch.Tensor:
    """``size`` images from ``images``, repeating them as needed."""
    reps = (size + len(images) - 1) // len(images)
    return images.repeat(reps, 1, 1, 1)[:size].contiguous()


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
        captured = export_batched(module, batches[0]).module()
        prepared = prepare_pt2e(captured, quantizer)
        for batch in batches:
            prepared(batch)
        return convert_pt2e(prepared)

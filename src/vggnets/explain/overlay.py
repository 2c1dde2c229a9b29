"""Pictures of class activation maps: colouring with a matplotlib colormap, overlays, captioned grids, PNG files.

Images here are uint8 RGB tensors shaped (3, H, W), as :func:`vggnets.io.images.read_image` returns them; maps are
float tensors (H, W) in [0, 1], as :func:`vggnets.explain.cam` returns them. The colormaps come from matplotlib
(``pip install 'vggnets[explain]'``); everything else uses torch and Pillow.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from pathlib import Path

import torch
from torch import Tensor

from ..errors import MissingDependencyError
from ..io.output import atomic_write

__all__ = ["DEFAULT_COLORMAP", "colorize", "colormap_table", "grid", "overlay", "save_png"]

#: The colormap of pytorch-grad-cam's overlays (OpenCV's COLORMAP_JET); any matplotlib name works.
DEFAULT_COLORMAP = "jet"


def colormap_table(name: str = DEFAULT_COLORMAP) -> Tensor:
    """A matplotlib colormap as a (256, 3) uint8 lookup table (raises MissingDependencyError without matplotlib)."""
    try:
        import matplotlib
    except ImportError:
        raise MissingDependencyError(
            "Heat-map overlays are coloured with matplotlib's colormaps, and matplotlib is not installed. Install "
            "it with: pip install 'vggnets[explain]' (or pip install matplotlib). The maps themselves "
            "(vggnets.explain.cam) need nothing more than torch."
        ) from None
    try:
        cmap = matplotlib.colormaps[name]
    except KeyError:
        close = [c for c in sorted(matplotlib.colormaps) if c.lower().startswith(name.lower()[:3])][:6]
        raise ValueError(
            f"unknown colormap {name!r}; use a matplotlib colormap name such as jet, turbo, inferno or viridis"
            + (f" (close: {', '.join(close)})" if close else "")
        ) from None
    rgba = cmap(torch.linspace(0, 1, 256).numpy())
    return torch.from_numpy((rgba[:, :3] * 255).round()).to(torch.uint8)


def colorize(heat: Tensor, colormap: str = DEFAULT_COLORMAP) -> Tensor:
    """A map (H, W) with values in [0, 1] as a uint8 RGB image (3, H, W) through the colormap."""
    if heat.dim() != 2:
        raise ValueError(f"colorize expects one map shaped (H, W), got {tuple(heat.shape)}")
    table = colormap_table(colormap)
    index = (heat.detach().float().cpu().clamp(0, 1) * 255).round().long()
    return table[index].permute(2, 0, 1).contiguous()


def overlay(image: Tensor, heat: Tensor, *, alpha: float = 0.5, colormap: str = DEFAULT_COLORMAP) -> Tensor:
    """The image with the coloured map blended over it: ``(1 - alpha) * image + alpha * colour``, uint8 (3, H, W)."""
    if image.dim() != 3 or image.shape[0] != 3 or image.dtype != torch.uint8:
        raise ValueError(
            f"overlay expects a uint8 RGB image shaped (3, H, W), got {image.dtype} {tuple(image.shape)}"
        )
    if heat.shape != image.shape[1:]:
        raise ValueError(
            f"the map is {tuple(heat.shape)} but the image is {tuple(image.shape[1:])}; compute the map on this "
            "image (cam returns maps at the input resolution)"
        )
    if not 0.0 <= alpha <= 1.0:
        raise ValueError(f"alpha must be in [0, 1], got {alpha}")
    blended = (1 - alpha) * image.cpu().float() + alpha * colorize(heat, colormap).float()
    return blended.round().clamp(0, 255).to(torch.uint8)


def grid(
    tiles: Sequence[Tensor],
    captions: Sequence[str] | None = None,
    *,
    columns: int | None = None,
    pad: int = 4,
    background: int = 255,
) -> Tensor:
    """Images (3, H, W) uint8 in rows of ``columns`` (default: about square), each with its caption underneath.

    Tiles of different sizes are placed top-left in cells of the largest size.
    """
    if not tiles:
        raise ValueError("grid needs at least one image")
    if captions is not None and len(captions) != len(tiles):
        raise ValueError(f"got {len(captions)} captions for {len(tiles)} images")
    from PIL import Image, ImageDraw, ImageFont

    columns = columns or math.ceil(math.sqrt(len(tiles)))
    rows = math.ceil(len(tiles) / columns)
    cell_h = max(t.shape[1] for t in tiles)
    cell_w = max(t.shape[2] for t in tiles)
    font = ImageFont.load_default(size=max(10, min(16, cell_w // 16)))
    text_h = 0
    if captions:
        text_h = max(_text_height(font, c) for c in captions) + pad
    canvas = Image.new(
        "RGB",
        (columns * cell_w + (columns + 1) * pad, rows * (cell_h + text_h) + (rows + 1) * pad),
        (background,) * 3,
    )
    draw = ImageDraw.Draw(canvas)
    for i, tile in enumerate(tiles):
        row, col = divmod(i, columns)
        x = pad + col * (cell_w + pad)
        y = pad + row * (cell_h + text_h + pad)
        canvas.paste(Image.fromarray(tile.permute(1, 2, 0).cpu().numpy()), (x, y))
        if captions:
            draw.text(
                (x, y + tile.shape[1] + pad // 2),
                _fit(draw, font, captions[i], cell_w),
                fill=(0, 0, 0),
                font=font,
            )
    return torch.from_numpy(_to_array(canvas)).permute(2, 0, 1).contiguous()


def save_png(
    image: Tensor, path: str | Path, *, overwrite: bool = False, metadata: dict | None = None
) -> Path:
    """Write a uint8 RGB image (3, H, W) as a PNG, atomically; an existing file is replaced only with ``overwrite``.

    ``metadata`` (what produced the picture) is stored as JSON in a ``vggnets`` text chunk.
    """
    import json

    from PIL import Image, PngImagePlugin

    array = image.detach().cpu().permute(1, 2, 0).contiguous().numpy()
    info = None
    if metadata is not None:
        info = PngImagePlugin.PngInfo()
        info.add_text("vggnets", json.dumps(metadata))
    return atomic_write(
        path, lambda tmp: Image.fromarray(array).save(tmp, format="PNG", pnginfo=info), overwrite=overwrite
    )


def _text_height(font, text: str) -> int:
    left, top, right, bottom = font.getbbox(text or " ")
    return bottom


def _fit(draw, font, text: str, width: int) -> str:
    """The caption, shortened with an ellipsis to fit the cell."""
    if draw.textlength(text, font=font) <= width:
        return text
    while text and draw.textlength(text + "...", font=font) > width:
        text = text[:-1]
    return text + "..."


def _to_array(image):
    import numpy as np

    return np.asarray(image, dtype=np.uint8).copy()

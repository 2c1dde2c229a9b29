"""Resize and crop geometry of the paper's protocols: sizes after resizing, the resize itself, grids of crops."""

from __future__ import annotations

from fractions import Fraction

from torch import Tensor

from .checks import int_arg

__all__ = ["CROP_SIZE", "crop_grid", "resize_smaller_side", "resized_size"]

#: Crop size of the networks' training (and of the center and multi-crop protocols).
CROP_SIZE = 224


def resized_size(height: int, width: int, size: int) -> tuple[int, int]:
    """(height, width) after resizing the smaller side to ``size``, exactly as ``torchvision`` computes it."""
    short, long = (width, height) if width <= height else (height, width)
    new_short, new_long = size, int(size * long / short)
    return (new_long, new_short) if width <= height else (new_short, new_long)


def resize_smaller_side(image: Tensor, size: int) -> Tensor:
    """Smaller side to ``size``: bilinear, antialiased, on the uint8 tensor (the center-crop preset's resize)."""
    from torchvision.transforms import InterpolationMode
    from torchvision.transforms import functional as TF

    return TF.resize(image, [size], interpolation=InterpolationMode.BILINEAR, antialias=True)


def crop_grid(height: int, width: int, crop: int = CROP_SIZE, grid: int = 5) -> list[tuple[int, int]]:
    """(top, left) of the ``grid`` x ``grid`` crops of a regular grid over an image, row-major (paper section 3.2).

    Offsets along each axis are ``round(linspace(0, side - crop, grid))`` (round half to even, computed exactly), so the
    first and last crops touch the borders; when a side equals ``crop`` its offsets are all 0 (the list still has
    ``grid * grid`` entries). A 1x1 grid gives the centre crop, at torchvision's ``center_crop`` position.
    """
    height = int_arg(height, "height", 1)
    width = int_arg(width, "width", 1)
    crop = int_arg(crop, "crop", 1)
    grid = int_arg(grid, "grid", 1)
    if height < crop or width < crop:
        raise ValueError(f"a {height}x{width} image is smaller than the {crop}x{crop} crops")

    def offsets(side: int) -> list[int]:
        span = side - crop
        if grid == 1:
            return [round(Fraction(span, 2))]
        return [round(Fraction(k * span, grid - 1)) for k in range(grid)]

    return [(top, left) for top in offsets(height) for left in offsets(width)]

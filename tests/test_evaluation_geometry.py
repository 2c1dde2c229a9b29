"""The protocols' geometry: sizes after resizing as torchvision computes them, and the multi-crop grid."""

from __future__ import annotations

import pytest
import torch
from torchvision.transforms import functional as TF

from vggnets.evaluation.geometry import crop_grid, resize_smaller_side, resized_size


def test_crop_grid_positions() -> None:
    assert crop_grid(256, 256) == [(t, left) for t in (0, 8, 16, 24, 32) for left in (0, 8, 16, 24, 32)]
    # 341 - 224 = 117: linspace 0, 29.25, 58.5, 87.75, 117, rounded half to even.
    grid = crop_grid(256, 341)
    assert len(grid) == 25
    assert sorted({left for _, left in grid}) == [0, 29, 58, 88, 117]
    assert grid[:5] == [(0, 0), (0, 29), (0, 58), (0, 88), (0, 117)]  # row-major
    assert crop_grid(224, 300) == [(0, left) for _ in range(5) for left in (0, 19, 38, 57, 76)]
    assert crop_grid(224, 224) == [(0, 0)] * 25
    assert crop_grid(300, 400, crop=100, grid=3) == [
        (t, left) for t in (0, 100, 200) for left in (0, 150, 300)
    ]
    for h, w in [(256, 256), (257, 300), (224, 225), (384, 575)]:  # 1x1: torchvision's center_crop position
        assert crop_grid(h, w, grid=1) == [(int(round((h - 224) / 2.0)), int(round((w - 224) / 2.0)))]
    with pytest.raises(ValueError, match="smaller than the 224x224 crops"):
        crop_grid(223, 400)
    with pytest.raises(ValueError, match="grid must be at least 1"):
        crop_grid(256, 256, grid=0)


def test_resized_size_is_torchvisions() -> None:
    for h, w, q in [
        (427, 640, 384),
        (640, 427, 256),
        (300, 451, 512),
        (375, 500, 384),
        (512, 512, 256),
        (3, 1000, 224),
    ]:
        assert resized_size(h, w, q) == tuple(
            TF.resize(torch.zeros(1, h, w, dtype=torch.uint8), [q]).shape[1:]
        )


def test_resize_smaller_side_gives_the_computed_size() -> None:
    image = torch.arange(3 * 30 * 45, dtype=torch.int64).remainder(256).to(torch.uint8).reshape(3, 30, 45)
    out = resize_smaller_side(image, 20)
    assert out.dtype == torch.uint8 and tuple(out.shape[1:]) == resized_size(30, 45, 20) == (20, 30)

"""Tests for vggnets.explain.overlay: matplotlib colormaps, blending, grids, PNG files, the missing-extra message."""

from __future__ import annotations

import sys

import numpy as np
import pytest
import torch
from PIL import Image

from vggnets.errors import MissingDependencyError, VggnetsError
from vggnets.explain import colorize, colormap_table, grid, overlay, save_png

matplotlib = pytest.importorskip("matplotlib")


def test_colormap_table_is_matplotlibs():
    table = colormap_table("viridis")
    assert table.shape == (256, 3) and table.dtype == torch.uint8
    expected = (matplotlib.colormaps["viridis"](np.linspace(0, 1, 256))[:, :3] * 255).round()
    assert np.array_equal(table.numpy(), expected.astype(np.uint8))


def test_colorize_maps_zero_and_one_to_the_ends_of_the_colormap():
    heat = torch.tensor([[0.0, 1.0], [0.5, 2.0]])  # values beyond 1 are clipped
    rgb = colorize(heat, "jet")
    table = colormap_table("jet")
    assert rgb.shape == (3, 2, 2) and rgb.dtype == torch.uint8
    assert torch.equal(rgb[:, 0, 0], table[0]) and torch.equal(rgb[:, 0, 1], table[255])
    assert torch.equal(rgb[:, 1, 1], table[255]) and torch.equal(rgb[:, 1, 0], table[128])


def test_overlay_blends_image_and_colour():
    image = torch.full((3, 4, 5), 200, dtype=torch.uint8)
    heat = torch.zeros(4, 5)
    blue = colormap_table("jet")[0].float()
    out = overlay(image, heat, alpha=0.25)
    expected = (0.75 * 200 + 0.25 * blue).round().to(torch.uint8)
    assert out.shape == (3, 4, 5) and torch.equal(out[:, 2, 3], expected)
    assert torch.equal(overlay(image, heat, alpha=0.0), image)


def test_overlay_refuses_mismatched_inputs():
    image = torch.zeros(3, 4, 5, dtype=torch.uint8)
    with pytest.raises(ValueError, match="at the input resolution"):
        overlay(image, torch.zeros(5, 4))
    with pytest.raises(ValueError, match="uint8 RGB"):
        overlay(image.float(), torch.zeros(4, 5))
    with pytest.raises(ValueError, match="alpha"):
        overlay(image, torch.zeros(4, 5), alpha=1.5)
    with pytest.raises(ValueError, match="unknown colormap 'jett'.*jet"):
        colorize(torch.zeros(4, 5), "jett")


def test_grid_places_tiles_with_captions():
    red = torch.zeros(3, 20, 30, dtype=torch.uint8)
    red[0] = 255
    tiles = [red, red, red]
    picture = grid(tiles, ["a", "b", "a caption far too long for a thirty pixel cell"], columns=2, pad=4)
    assert picture.dtype == torch.uint8 and picture.shape[0] == 3
    assert picture.shape[2] == 2 * 30 + 3 * 4  # two columns
    assert torch.equal(
        picture[:, 4, 4], torch.tensor([255, 0, 0], dtype=torch.uint8)
    )  # first tile at (pad, pad)
    bare = grid(tiles, columns=3, pad=0)
    assert bare.shape == (3, 20, 90)
    with pytest.raises(ValueError, match="captions"):
        grid(tiles, ["only one"])


def test_save_png_writes_atomically_and_never_replaces_without_overwrite(tmp_path):
    image = torch.randint(0, 256, (3, 6, 7), dtype=torch.uint8)
    path = save_png(image, tmp_path / "x.png")
    assert np.array_equal(np.asarray(Image.open(path)), image.permute(1, 2, 0).numpy())
    with pytest.raises(VggnetsError, match="--force"):
        save_png(torch.zeros_like(image), path)
    assert np.array_equal(np.asarray(Image.open(path)), image.permute(1, 2, 0).numpy())
    save_png(torch.zeros_like(image), path, overwrite=True)
    assert np.asarray(Image.open(path)).max() == 0
    assert [p.name for p in tmp_path.iterdir()] == ["x.png"]  # no temporary file left behind


def test_missing_matplotlib_names_the_extra(monkeypatch):
    monkeypatch.setitem(sys.modules, "matplotlib", None)  # import matplotlib now raises ImportError
    with pytest.raises(MissingDependencyError, match=r"pip install 'vggnets\[explain\]'"):
        colorize(torch.zeros(2, 2))

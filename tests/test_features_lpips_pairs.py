"""vggnets.features.lpips_pairs: pairing by file name, batching by size, rows in order, the summary, the progress bar."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

import vggnets
from vggnets.errors import VggnetsError
from vggnets.features.lpips import LPIPS
from vggnets.features.lpips_pairs import measure_pairs, pair_inputs, summarize
from vggnets.io.images import read_image

SMALL_CHANNELS = (8, 16, 32, 64, 64)


class Counting(torch.nn.Module):
    """Wraps a metric and records the batch shapes it is called with."""

    def __init__(self, metric: LPIPS) -> None:
        super().__init__()
        self.metric = metric
        self.calls: list[tuple[int, ...]] = []

    def forward(self, a, b, *, normalize=False):
        self.calls.append(tuple(a.shape))
        return self.metric(a, b, normalize=normalize)


@pytest.fixture(scope="module")
def metric() -> LPIPS:
    torch.manual_seed(7)
    g = torch.Generator().manual_seed(7)
    lins = {
        f"lins.{k}.weight": torch.rand(1, c, 1, 1, generator=g) * 0.1 for k, c in enumerate(SMALL_CHANNELS)
    }
    return LPIPS(vggnets.vgg16(width=0.125), linear_weights=lins)


def save(path: Path, height: int, width: int, seed: int) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(np.random.default_rng(seed).integers(0, 256, (height, width, 3), dtype=np.uint8)).save(
        path
    )
    return path


def test_pairs_by_name_without_extension_and_reports_the_rest(tmp_path):
    a, b = tmp_path / "A", tmp_path / "B"
    for i, (side, name) in enumerate(
        [(a, "1.png"), (b, "1.jpg"), (a, "sub/2.png"), (b, "sub/2.png"), (a, "only_a.png"), (b, "only_b.png")]
    ):
        save(side / name, 20, 20, i)
    pairs, problems = pair_inputs(a, b, recursive=True)
    assert [(p.relative_to(a).as_posix(), q.relative_to(b).as_posix()) for p, q in pairs] == [
        ("1.png", "1.jpg"),
        ("sub/2.png", "sub/2.png"),
    ]
    assert [(r["a"] is None, r["b"] is None) for r in problems] == [(False, True), (True, False)]
    assert "has no partner named only_a.*" in problems[0]["error"]
    assert pair_inputs(a, b, recursive=False)[0] == pairs[:1]
    with pytest.raises(VggnetsError, match="is a folder but"):
        pair_inputs(a, b / "1.jpg", recursive=False)


def test_measures_in_order_batching_pairs_of_one_size(tmp_path, metric, capsys):
    files = [
        (save(tmp_path / f"a{i}.png", h, w, i), save(tmp_path / f"b{i}.png", h2, w2, 10 + i))
        for i, (h, w, h2, w2) in enumerate(
            [
                (32, 40, 32, 40),
                (32, 40, 32, 40),
                (32, 40, 32, 40),
                (24, 24, 24, 24),
                (24, 24, 30, 30),
                (8, 8, 8, 8),
            ]
        )
    ]
    counting = Counting(metric)
    rows = measure_pairs(counting, files, batch_size=2, progress=True)
    assert counting.calls == [(2, 3, 32, 40), (1, 3, 32, 40), (1, 3, 24, 24)]
    assert "lpips" in capsys.readouterr().err  # the bar, on stderr
    assert [r["a"] for r in rows] == [str(a) for a, _ in files]
    assert [r["size"] for r in rows] == ["40x32"] * 3 + ["24x24", None, "8x8"]
    assert "pass --match-size" in rows[4]["error"] and "at least 16x16" in rows[5]["error"]
    for (a, b), row in zip(files[:4], rows):
        x, y = read_image(a).float() / 255, read_image(b).float() / 255
        with torch.no_grad():
            assert row["lpips"] == pytest.approx(float(metric(x[None], y[None], normalize=True)), abs=1e-6)
    resized = measure_pairs(metric, files[4:5], match_size=True, device="cpu")
    assert resized[0]["error"] is None and resized[0]["size"] == "24x24" and resized[0]["lpips"] > 0
    summary = summarize(rows)
    values = [r["lpips"] for r in rows[:4]]
    mean = sum(values) / 4
    assert summary == {
        "count": 4,
        "mean": pytest.approx(mean),
        "std": pytest.approx(math.sqrt(sum((v - mean) ** 2 for v in values) / 4)),
        "failed": 2,
    }
    with pytest.raises(ValueError, match="unknown precision"):
        measure_pairs(metric, files, precision="fp64")


def test_summary_of_nothing_measured():
    row = {"a": "x", "b": None, "size": None, "lpips": None, "error": "no partner"}
    assert summarize([row]) == {"count": 0, "mean": None, "std": None, "failed": 1}

"""vggnets.explain.files: image files explained in batches, records by position, files written, captions."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

import vggnets
from vggnets.core.transforms import ImageClassification
from vggnets.explain import explain, explain_files
from vggnets.io.images import read_image

pytest.importorskip("matplotlib")


@pytest.fixture(scope="module")
def model() -> torch.nn.Module:
    torch.manual_seed(3)
    return vggnets.vgg16(width=0.125, num_classes=10).eval()


def save(path: Path, seed: int) -> Path:
    Image.fromarray(np.random.default_rng(seed).integers(0, 256, (50, 70, 3), dtype=np.uint8)).save(path)
    return path


def test_explains_in_batches_and_records_by_position(tmp_path, model, capsys):
    transform = ImageClassification(crop_size=48, resize_size=56)
    broken = tmp_path / "broken.png"
    broken.write_bytes(b"not an image")
    files = [save(tmp_path / "a.png", 0), broken, save(tmp_path / "b.png", 1), save(tmp_path / "c.png", 2)]
    outputs = [
        {
            "overlay": tmp_path / f"{f.stem}.cam.png",
            **({"map": tmp_path / f"{f.stem}.cam.npy"} if i == 0 else {}),
        }
        for i, f in enumerate(files)
    ]
    labels = [f"class {i}" for i in range(10)]
    records, overlays = explain_files(
        model,
        transform,
        files,
        outputs,
        labels,
        layer="relu5_3",
        target="top2",
        topk=3,
        batch_size=2,
        keep_overlays=True,
        metadata={"test": 1},
        progress=True,
    )
    assert "explain" in capsys.readouterr().err  # the bar, on stderr
    assert sorted(records) == [0, 1, 2, 3] and records[1]["error"] and "map" not in records[1]
    good = [0, 2, 3]
    expected = explain(model, torch.stack([transform(read_image(files[i])) for i in good]), "relu5_3", "top2")
    for j, i in enumerate(good):
        r = records[i]
        t = int(expected.targets[j])
        assert r["error"] is None and r["target"]["index"] == t and r["target"]["label"] == labels[t]
        assert [p["rank"] for p in r["predictions"]] == [1, 2, 3] and r["predictions"][1]["index"] == t
        assert r["overlay"] == str(outputs[i]["overlay"]) and Path(r["overlay"]).is_file()
        with Image.open(r["overlay"]) as png:
            assert png.size == (48, 48) and png.text["vggnets"] == '{"test": 1}'
    assert records[0]["map"] == str(outputs[0]["map"]) and records[2]["map"] is None
    np.testing.assert_allclose(np.load(outputs[0]["map"]), expected.maps[0].numpy(), atol=1e-5)
    assert [c.split("  ")[-1] for _, c in overlays] == ["a.png", "b.png", "c.png"]
    assert all(o.shape == (3, 48, 48) and o.dtype == torch.uint8 for o, _ in overlays)
    assert not explain_files(model, transform, files[:1], outputs[:1], labels, layer="pool5", overwrite=True)[
        1
    ]

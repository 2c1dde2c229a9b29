"""int8 calibration: the bundled photos, a user's folder, clear errors, and PT2E int8 agreeing with fp32."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest
import torch
from test_inference_engine import SIZE, build, cosine, photos, reference, tiny_bn

from vggnets.errors import VggnetsError
from vggnets.inference.calibration import calibration_batches, load_calibration_images, sample_images_dir
from vggnets.inference.graph import CropUint8
from vggnets.inference.plan import torchao_available

HAS_TORCHAO = torchao_available()


@pytest.mark.skipif(not HAS_TORCHAO, reason="torchao is not installed")
def test_int8_eager_agrees_with_fp32_on_real_photos():
    predictor = build(tiny_bn(), "int8", compile=False, calibration=photos())
    assert predictor.info.precision == "int8"
    assert isinstance(predictor._runner, torch.fx.GraphModule)  # the PT2E-converted graph
    logits = predictor(photos())
    assert cosine(logits, reference(tiny_bn(), photos())) > 0.99


@pytest.mark.skipif(not HAS_TORCHAO, reason="torchao is not installed")
def test_int8_calibration_directory(tmp_path):
    for name in ("chelsea_cat.png", "coffee_cup.jpg"):
        shutil.copy(sample_images_dir() / name, tmp_path / name)
    (tmp_path / "notes.txt").write_text("not an image")
    crops = load_calibration_images(tmp_path, CropUint8(73, SIZE))
    assert crops.shape == (2, 3, SIZE, SIZE) and crops.dtype == torch.uint8


def test_calibration_errors(tmp_path):
    with pytest.raises(VggnetsError, match="does not exist"):
        load_calibration_images(tmp_path / "missing", CropUint8(73, SIZE))
    (tmp_path / "broken.jpg").write_bytes(b"not a jpeg")
    with pytest.raises(VggnetsError, match="no readable images"):
        load_calibration_images(tmp_path, CropUint8(73, SIZE))
    with pytest.raises(VggnetsError, match="uint8"):
        load_calibration_images(torch.rand(2, 3, SIZE, SIZE), CropUint8(73, SIZE))


def test_calibration_batches_have_the_largest_bucket_size():
    images = torch.arange(3, dtype=torch.uint8).view(3, 1, 1, 1).expand(3, 3, 2, 2)
    batches = calibration_batches(images, (1, 4))
    assert [len(b) for b in batches] == [4]
    assert batches[0][:, 0, 0, 0].tolist() == [0, 1, 2, 0]  # filled by repeating the images
    assert [len(b) for b in calibration_batches(images, (1, 2))] == [2, 1]


def test_sample_images_ship_with_the_package():
    folder = sample_images_dir()
    assert len([p for p in folder.iterdir() if p.suffix in (".jpg", ".png")]) == 5
    assert Path("examples/images").resolve() == folder.resolve() or not Path("examples/images").exists()

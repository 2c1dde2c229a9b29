"""vggnets.models.meta: preprocessing, class names and architecture from published weights and from records."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

import vggnets
from vggnets.errors import UnknownModelError
from vggnets.io.record import attach_record
from vggnets.models.meta import weights_architecture, weights_categories, weights_preprocessing

RECORD = {
    "architecture": "vgg13_bn",
    "width": 0.125,
    "num_classes": 3,
    "classes": ["ant", "bee", "cow"],
    "preprocessing": {"resize": 36, "crop": 32, "mean": [0.5, 0.5, 0.5], "std": [0.25, 0.25, 0.25]},
}


@pytest.fixture
def trained(tmp_path: Path) -> Path:
    path = tmp_path / "run" / "best.pth"
    path.parent.mkdir()
    torch.save(attach_record(vggnets.vgg13_bn(width=0.125, num_classes=3).state_dict(), RECORD), path)
    return path


def test_a_recorded_checkpoint_says_what_it_is(trained: Path):
    assert weights_architecture(trained) == "vgg13_bn"
    model = vggnets.get_model(weights=trained)
    assert model.name == "vgg13_bn" and model.num_classes == 3 and model.features[0].out_channels == 8
    preset = weights_preprocessing(trained)
    assert (preset.crop_size, preset.resize_size, preset.mean, preset.std) == (
        [32],
        [36],
        [0.5] * 3,
        [0.25] * 3,
    )
    assert weights_categories(trained, 3) == ["ant", "bee", "cow"]
    assert weights_categories(trained, 5) is None  # names that do not fit the head are not used


def test_published_weights_and_plain_files(tmp_path: Path):
    weights = vggnets.VGG16_Weights.DEFAULT
    assert weights_architecture(weights) == "vgg16" and weights_categories(weights, 1000)[0] == "tench"
    plain = tmp_path / "plain.pth"
    torch.save(vggnets.vgg11(width=0.125, num_classes=2).state_dict(), plain)
    assert weights_architecture(plain) is None
    assert weights_preprocessing(plain).crop_size == [224]
    assert weights_categories(plain, 2) is None and len(weights_categories(plain, 1000)) == 1000
    (tmp_path / "classes.txt").write_text("left\nright\n")
    assert weights_categories(plain, 2) == ["left", "right"]  # a run's classes.txt beside the file
    with pytest.raises(UnknownModelError, match="say which model"):
        vggnets.get_model(weights=plain)

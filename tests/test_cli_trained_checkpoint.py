"""A checkpoint written by ``vggnets train`` is first-class weights on the command line: no --model, its own class
names and its own preprocessing, in classify, evaluate and features."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch

import vggnets
from vggnets.cli import main
from vggnets.core.transforms import ImageClassification
from vggnets.io.images import read_image
from vggnets.io.record import attach_record

EXAMPLES = Path(__file__).resolve().parents[1] / "examples" / "images"
PHOTOS = [EXAMPLES / "chelsea_cat.png", EXAMPLES / "coffee_cup.jpg"]
CLASSES = ["ant", "bee", "cow"]
PREPROCESSING = {"resize": 40, "crop": 32, "mean": [0.5, 0.4, 0.3], "std": [0.2, 0.25, 0.3]}


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory) -> Path:
    """What vggnets train leaves: best.pth with its record (a vgg13_bn at width 1/8 on 32-pixel crops)."""
    folder = tmp_path_factory.mktemp("runs") / "x"
    folder.mkdir()
    torch.manual_seed(3)
    model = vggnets.vgg13_bn(width=0.125, num_classes=3)
    for fc in (model.classifier[0], model.classifier[3], model.classifier[6]):
        torch.nn.init.kaiming_normal_(fc.weight)  # image-dependent outputs
    record = {
        "architecture": "vgg13_bn",
        "width": 0.125,
        "num_classes": 3,
        "classes": CLASSES,
        "preprocessing": PREPROCESSING,
    }
    torch.save(attach_record(model.state_dict(), record), folder / "best.pth")
    return folder


def expected_probabilities(best: Path) -> torch.Tensor:
    model = vggnets.vgg13_bn(weights=best).eval()
    preset = ImageClassification(
        crop_size=32, resize_size=40, mean=PREPROCESSING["mean"], std=PREPROCESSING["std"]
    )
    with torch.inference_mode():
        return model(torch.stack([preset(read_image(p)) for p in PHOTOS])).softmax(1)


def test_classify_needs_no_model_and_uses_the_recorded_classes_and_preprocessing(run_dir, capsys):
    best = run_dir / "best.pth"
    code = main(["classify", *map(str, PHOTOS), "--weights", str(best), "--format", "json", "-k", "3", "-q"])
    out, err = capsys.readouterr()
    assert code == 0, err
    doc = json.loads(out)
    assert doc["model"] == "vgg13_bn"
    expected = expected_probabilities(best)
    for result, probs in zip(doc["results"], expected):
        top = [p["label"] for p in result["predictions"]]
        assert set(top) == set(CLASSES)  # the run's names, not "class 0"
        assert result["predictions"][0]["label"] == CLASSES[int(probs.argmax())]
        assert result["predictions"][0]["probability"] == pytest.approx(float(probs.max()), abs=1e-5)


def test_an_explicit_model_still_wins_and_mismatches_are_reported(run_dir, capsys):
    code = main(
        ["classify", str(PHOTOS[0]), "--weights", str(run_dir / "best.pth"), "--model", "vgg11", "-q"]
    )
    err = capsys.readouterr().err
    assert code == 2 and "vgg13_bn" in err and "Traceback" not in err


def test_evaluate_and_features_take_the_checkpoint_without_model(run_dir, tmp_path, capsys):
    data = tmp_path / "val"
    for name, photo in zip(CLASSES, [*PHOTOS, EXAMPLES / "rocket_launch.jpg"]):  # one folder per class
        (data / name).mkdir(parents=True)
        shutil.copy(photo, data / name / photo.name)
    best = run_dir / "best.pth"
    code = main(
        [
            "evaluate",
            str(data),
            "--weights",
            str(best),
            "--workers",
            "0",
            "-q",
            "--output",
            str(tmp_path / "r.json"),
        ]
    )
    out, err = capsys.readouterr()
    assert code == 0, err
    row = json.loads((tmp_path / "r.json").read_text())["rows"][0]
    assert row["model"] == "vgg13_bn" and row["images"] == 3

    target = tmp_path / "f.npy"
    code = main(
        ["features", *map(str, PHOTOS), "--weights", str(best), "--layer", "relu7", "-o", str(target), "-q"]
    )
    assert code == 0, capsys.readouterr().err
    assert np.load(target).shape == (2, 512)  # relu7 of the width-1/8 vgg13_bn

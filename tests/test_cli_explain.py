"""End-to-end tests of ``vggnets explain`` (in-process, a width-1/8 VGG16 checkpoint with 10 classes "class 0" ...)."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

import vggnets
from vggnets.cli import main
from vggnets.core.transforms import ImageClassification
from vggnets.explain import METHODS, explain
from vggnets.io.images import read_image

pytest.importorskip("matplotlib")

EXAMPLES = Path(__file__).resolve().parents[1] / "examples" / "images"
CAT, CUP = EXAMPLES / "chelsea_cat.png", EXAMPLES / "coffee_cup.jpg"


def cli(capsys, *argv: object) -> tuple[int, str, str]:
    code = main(["explain", *map(str, argv)])
    out, err = capsys.readouterr()
    assert "Traceback" not in err
    return code, out, err


@pytest.fixture(scope="module")
def weights(tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("explain") / "small_vgg16.pth"
    torch.manual_seed(3)
    torch.save(vggnets.vgg16(width=0.125, num_classes=10).state_dict(), path)
    return path


@pytest.fixture(scope="module")
def grey(tmp_path_factory) -> Path:
    """A small greyscale PNG (converted to RGB on reading)."""
    path = tmp_path_factory.mktemp("images") / "grey.png"
    Image.fromarray(np.random.default_rng(0).integers(0, 255, (40, 60), dtype=np.uint8)).save(path)
    return path


def run_json(capsys, *argv) -> tuple[int, dict, str]:
    code, out, err = cli(capsys, *argv, "--format", "json", "--device", "cpu")
    return code, json.loads(out), err


def test_writes_overlays_maps_grid_and_json(capsys, tmp_path, weights, grey):
    out = tmp_path / "cams"
    code, doc, _ = run_json(
        capsys, CAT, CUP, grey, "-o", out, "--weights", weights, "--save-maps", "--grid", "-k", 3
    )
    assert code == 0
    assert doc["layer"] == "relu5_3" and doc["method"] == "gradcam" and doc["target"] == "top1"
    assert doc["produced_by"]["command"] == "explain" and doc["produced_by"]["weights"] == str(weights)
    assert json.loads((out / "explain.json").read_text()) == doc
    assert sorted(p.name for p in out.iterdir()) == sorted(
        ["explain.json", "grid.png"]
        + [f"{n}.cam.{s}" for n in ("chelsea_cat", "coffee_cup", "grey") for s in ("png", "npy")]
    )
    model = vggnets.vgg16(weights=weights).eval()
    transform = ImageClassification(crop_size=224)
    images = torch.stack([transform(read_image(p)) for p in (CAT, CUP, grey)])
    expected = explain(model, images)
    for i, record in enumerate(doc["results"]):
        assert record["error"] is None and len(record["predictions"]) == 3
        assert (
            record["target"]["index"] == int(expected.logits[i].argmax()) == record["predictions"][0]["index"]
        )
        assert record["target"]["label"] == f"class {record['target']['index']}"
        heat = np.load(record["map"])
        assert heat.shape == (224, 224) and heat.dtype == np.float32 and heat.max() == pytest.approx(1.0)
        np.testing.assert_allclose(heat, expected.maps[i].numpy(), atol=1e-5)
        with Image.open(record["overlay"]) as overlay:
            assert overlay.size == (224, 224) and overlay.mode == "RGB"
            assert json.loads(overlay.text["vggnets"])["options"]["method"] == "gradcam"
    with Image.open(out / "grid.png") as picture:
        assert picture.size[0] > 2 * 224 and picture.size[1] > 2 * 224  # 2 x 2 cells with captions


def test_nothing_is_overwritten_without_force(capsys, tmp_path, weights):
    out = tmp_path / "cams"
    assert cli(capsys, CAT, "-o", out, "--weights", weights, "--device", "cpu")[0] == 0
    before = {p.name: p.read_bytes() for p in out.iterdir()}
    code, _, err = cli(capsys, CAT, "-o", out, "--weights", weights, "--target", "top10", "--device", "cpu")
    assert code == 2 and "already exist" in err and "--force" in err
    assert {p.name: p.read_bytes() for p in out.iterdir()} == before
    code, _, _ = cli(
        capsys, CAT, "-o", out, "--weights", weights, "--target", "top10", "--force", "--device", "cpu"
    )
    assert code == 0 and (out / "chelsea_cat.cam.png").read_bytes() != before["chelsea_cat.cam.png"]


def test_a_bad_image_is_reported_and_the_others_are_explained(capsys, tmp_path, weights):
    broken = tmp_path / "broken.jpg"
    broken.write_bytes(b"\xff\xd8\xff\xe0 not really a jpeg")
    out = tmp_path / "cams"
    code, doc, err = run_json(capsys, broken, CAT, tmp_path / "missing.png", "-o", out, "--weights", weights)
    assert code == 1 and "2 of 3 inputs failed" in err
    records = {Path(r["file"]).name: r for r in doc["results"]}
    assert records["broken.jpg"]["error"] and records["missing.png"]["error"]
    assert records["chelsea_cat.png"]["error"] is None and (out / "chelsea_cat.cam.png").is_file()
    assert not (out / "broken.cam.png").exists()


def test_same_names_in_two_folders_get_distinct_files(capsys, tmp_path, weights):
    for folder in ("a", "b"):
        (tmp_path / folder).mkdir()
        Image.open(CAT).save(tmp_path / folder / "x.png")
    code, doc, _ = run_json(
        capsys, tmp_path / "a", tmp_path / "b", "-o", tmp_path / "cams", "--weights", weights
    )
    assert code == 0
    assert [Path(r["overlay"]).name for r in doc["results"]] == ["x.cam.png", "x-2.cam.png"]


@pytest.mark.parametrize(
    ("target", "expected"), [("3", [3]), ("class 7", [7]), ("CLASS 7", [7]), ("top2", None)]
)
def test_target_choices(capsys, tmp_path, weights, target, expected):
    code, doc, _ = run_json(capsys, CAT, "-o", tmp_path, "--weights", weights, "--target", target)
    assert code == 0
    record = doc["results"][0]
    if expected is None:
        assert record["target"]["index"] == record["predictions"][1]["index"]
    else:
        assert [record["target"]["index"]] == expected


@pytest.mark.parametrize(
    ("options", "message"),
    [
        (["--target", "10"], "out of range: the model has 10 classes"),
        (["--target", "top11"], "K must be between 1 and 10"),
        (["--target", "clas 7"], "Close names: class 7"),
        (["--layer", "relu5_4"], "Did you mean relu5_3"),
        (["--layer", "fc7"], "convolutional part"),
        (["--alpha", "2"], "--alpha"),
        (["--colormap", "nope"], "unknown colormap"),
        (["-k", "0"], "--topk must be at least 1"),
    ],
)
def test_bad_options_are_refused_before_writing(capsys, tmp_path, weights, options, message):
    out = tmp_path / "cams"
    code, _, err = cli(capsys, CAT, "-o", out, "--weights", weights, "--device", "cpu", *options)
    assert code == 2 and message in err
    assert not out.exists() or not any(out.glob("*.png"))


def test_layer_and_method_options(capsys, tmp_path, weights):
    code, doc, _ = run_json(
        capsys, CAT, "-o", tmp_path, "--weights", weights, "--layer", "pool4", "--method", "layercam"
    )
    assert code == 0 and doc["layer"] == "pool4" and doc["method"] == "layercam"


def test_output_must_be_a_writable_folder(capsys, tmp_path, weights):
    file = tmp_path / "a_file"
    file.write_text("x")
    code, _, err = cli(capsys, CAT, "-o", file, "--weights", weights)
    assert code == 2 and "is a file" in err
    code, _, err = cli(capsys, CAT, "-o", file / "sub", "--weights", weights)
    assert code == 2 and "cannot write" in err


def test_missing_matplotlib_is_reported_before_any_work(capsys, tmp_path, weights, monkeypatch):
    monkeypatch.setitem(sys.modules, "matplotlib", None)
    code, _, err = cli(capsys, CAT, "-o", tmp_path / "cams", "--weights", weights)
    assert code == 2 and "pip install 'vggnets[explain]'" in err
    assert not (tmp_path / "cams").exists()


def test_help_has_examples_and_methods(capsys):
    code, out, _ = cli(capsys, "--help")
    assert code == 0
    assert "examples:" in out and "vggnets explain examples/images/ -o cams/" in out
    assert all(m in out for m in METHODS)

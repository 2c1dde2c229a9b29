"""``vggnets evaluate`` end to end: real photos in class folders, generated checkpoints, every protocol."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
import torch

import vggnets
from vggnets.cli import main
from vggnets.core.transforms import IMAGENET_MEAN, IMAGENET_STD
from vggnets.evaluation.protocols import make_protocol
from vggnets.io.images import read_image
from vggnets.models.weights import IMAGENET_WNIDS

EXAMPLES = Path(__file__).resolve().parents[1] / "examples" / "images"
PHOTOS = ["chelsea_cat.png", "coffee_cup.jpg", "rocket_launch.jpg"]


def _tiny(name: str, path: Path, seed: int) -> Path:
    """A width-1/8 model with 1000 classes whose posteriors depend on the image (stronger fc layers)."""
    torch.manual_seed(seed)
    model = vggnets.build(name, width=0.125)
    for fc in (model.classifier[0], model.classifier[3], model.classifier[6]):
        torch.nn.init.kaiming_normal_(fc.weight)
    torch.save(model.state_dict(), path)
    return path


@pytest.fixture(scope="session")
def tiny_vgg11(tmp_path_factory) -> Path:
    return _tiny("vgg11", tmp_path_factory.mktemp("eval") / "tiny_vgg11.pth", 1)


@pytest.fixture(scope="session")
def tiny_vgg13(tmp_path_factory) -> Path:
    return _tiny("vgg13", tmp_path_factory.mktemp("eval") / "tiny_vgg13.pth", 2)


def predicted_class(weights: Path, photo: str, protocol: str = "center") -> int:
    model = vggnets.vgg11(weights=weights).eval()
    proto = make_protocol(protocol, model, mean=IMAGENET_MEAN, std=IMAGENET_STD)
    return int(proto([read_image(EXAMPLES / photo)]).argmax(1))


@pytest.fixture
def tree(tmp_path, tiny_vgg11) -> Path:
    """ImageNet-style class folders: the cat where the model predicts it (right), the others elsewhere (wrong)."""
    root = tmp_path / "val"
    cat_class = predicted_class(tiny_vgg11, PHOTOS[0])
    taken = {cat_class, predicted_class(tiny_vgg11, PHOTOS[1])}
    wrong = [i for i in range(1000) if i not in taken][:2]
    for photo, cls in zip(PHOTOS[:2], [cat_class, wrong[0]], strict=True):
        folder = root / IMAGENET_WNIDS[cls]
        folder.mkdir(parents=True, exist_ok=True)
        shutil.copy(EXAMPLES / photo, folder / photo)
    return root


def run_json(capsys, tmp_path, *args) -> tuple[int, dict | None, str, str]:
    out_file = tmp_path / "results.json"
    # one results.json per test, rewritten by each call: --force (evaluate never replaces a file without it)
    code = main(
        ["evaluate", *map(str, args), "--output", str(out_file), "--force", "--workers", "0", "--quiet"]
    )
    captured = capsys.readouterr()
    doc = json.loads(out_file.read_text()) if out_file.exists() else None
    return code, doc, captured.out, captured.err


def test_center_accuracy_counts_right_and_wrong_images(tree, tiny_vgg11, tmp_path, capsys):
    code, doc, out, err = run_json(capsys, tmp_path, tree, "--model", "vgg11", "--weights", tiny_vgg11)
    assert code == 0 and "Traceback" not in err
    (row,) = doc["rows"]
    assert row["protocol"] == "center" and row["images"] == 2 and row["failed"] == 0
    assert row["top1_acc"] == 50.0 and row["top1_err"] == 50.0
    assert "| model | protocol | scales | top-1 err (%) | top-5 err (%)" in out
    assert "| vgg11 | center | 256 | 50.00 |" in out
    assert doc["dataset"]["source"].startswith("ImageFolder tree with WordNet-id folders")
    per_class = doc["per_class_accuracy"][0]
    assert len(per_class) == 1000 and sorted(v for v in per_class if v is not None) == [0.0, 100.0]
    (mistake,) = doc["top_confusions"][0]  # the coffee cup, filed under a class the model does not predict
    assert (
        mistake["count"] == 1
        and mistake["true"]
        == vggnets.IMAGENET_CATEGORIES[IMAGENET_WNIDS.index(next(tree.rglob(PHOTOS[1])).parent.name)]
    )


def test_every_protocol_in_one_pass_matches_the_python_api(tree, tiny_vgg11, tmp_path, capsys):
    bad = tree / IMAGENET_WNIDS[0]
    bad.mkdir(exist_ok=True)
    (bad / "broken.jpg").write_bytes(b"not a jpeg")
    code, doc, out, err = run_json(
        capsys, tmp_path, tree, "--model", "vgg11", "--weights", tiny_vgg11, "--protocol", "all", "--flip"
    )
    assert code == 1  # one image could not be read: skipped and counted
    assert "skipped" in err and "broken.jpg" in err and "Traceback" not in err
    rows = {r["protocol"]: r for r in doc["rows"]}
    assert list(rows) == ["center", "dense", "multiscale", "multicrop", "dense+multicrop"]
    assert rows["dense"]["scales"] == [384] and rows["multiscale"]["scales"] == [256, 384, 512]
    assert rows["multicrop"]["crops"] == 150 and rows["dense"]["flip"] is True
    assert all(r["images"] == 2 and r["failed"] == 1 for r in rows.values())
    assert doc["failures"][0]["file"].endswith("broken.jpg")
    model = vggnets.vgg11(weights=tiny_vgg11).eval()
    photos = sorted(p for p in tree.rglob("*.*") if p.name != "broken.jpg")
    images = [read_image(p) for p in photos]
    labels = [IMAGENET_WNIDS.index(p.parent.name) for p in photos]
    for name, row in rows.items():
        kw = {"scales": (384,)} if name == "dense" else {}
        proto = make_protocol(name, model, mean=IMAGENET_MEAN, std=IMAGENET_STD, flip=True, **kw)
        expected = [int(p.argmax()) == t for p, t in zip(proto(images), labels, strict=True)]
        assert row["top1_acc"] == pytest.approx(100 * sum(expected) / len(expected)), name


def test_flat_directory_with_caffe_val_txt_and_csv(tree, tiny_vgg11, tmp_path, capsys):
    flat = tmp_path / "flat"
    flat.mkdir()
    lines, rows = [], ["file,label"]
    for photo in sorted(tree.rglob("*.*")):
        shutil.copy(photo, flat / photo.name)
        lines.append(f"{photo.name} {IMAGENET_WNIDS.index(photo.parent.name)}")
        rows.append(f"{photo.name},{photo.parent.name}")
    (tmp_path / "val.txt").write_text("\n".join(lines) + "\n")
    (tmp_path / "labels.csv").write_text("\n".join(rows) + "\n")
    for labels in ("val.txt", "labels.csv"):
        code, doc, _, err = run_json(
            capsys, tmp_path, flat, "--labels", tmp_path / labels, "--model", "vgg11", "--weights", tiny_vgg11
        )
        assert code == 0, err
        assert doc["rows"][0]["top1_acc"] == 50.0 and doc["rows"][0]["images"] == 2


def test_devkit_ground_truth_without_meta_is_explained(tree, tiny_vgg11, tmp_path, capsys):
    flat = tmp_path / "flat"
    flat.mkdir()
    for photo in tree.rglob("*.*"):
        shutil.copy(photo, flat / photo.name)
    (tmp_path / "gt.txt").write_text("490\n361\n")
    code, doc, _, err = run_json(
        capsys, tmp_path, flat, "--labels", tmp_path / "gt.txt", "--model", "vgg11", "--weights", tiny_vgg11
    )
    assert code == 2 and doc is None
    assert "--devkit-meta" in err and "Traceback" not in err


def test_ensemble_rows_average_the_members(tree, tiny_vgg11, tiny_vgg13, tmp_path, capsys):
    code, doc, out, _ = run_json(
        capsys,
        tmp_path,
        tree,
        "--ensemble",
        f"vgg11={tiny_vgg11},vgg13={tiny_vgg13}",
        "--protocol",
        "center,dense",
    )
    assert code == 0
    models = [(r["model"], r["protocol"]) for r in doc["rows"]]
    assert models == [
        ("vgg11", "center"), ("vgg11", "dense"), ("vgg13", "center"), ("vgg13", "dense"),
        ("vgg11+vgg13", "center"), ("vgg11+vgg13", "dense"),
    ]  # fmt: skip
    a = vggnets.vgg11(weights=tiny_vgg11).eval()
    b = vggnets.vgg13(weights=tiny_vgg13).eval()
    images = [read_image(p) for p in sorted(tree.rglob("*.*"))]
    labels = [IMAGENET_WNIDS.index(p.parent.name) for p in sorted(tree.rglob("*.*"))]
    mean = sum(make_protocol("center", m, mean=IMAGENET_MEAN, std=IMAGENET_STD)(images) for m in (a, b)) / 2
    expected = 100 * sum(int(p.argmax()) == t for p, t in zip(mean, labels, strict=True)) / len(labels)
    assert doc["rows"][4]["top1_acc"] == pytest.approx(expected)
    assert "| vgg11+vgg13 | center |" in out


def test_limit_and_scales(tree, tiny_vgg11, tmp_path, capsys):
    code, doc, _, _ = run_json(
        capsys, tmp_path, tree, "--model", "vgg11", "--weights", tiny_vgg11,
        "--protocol", "dense,multiscale", "--scales", "224,256,288", "--limit", "1",
    )  # fmt: skip
    assert code == 0
    rows = {r["protocol"]: r for r in doc["rows"]}
    assert rows["dense"]["scales"] == [256] and rows["multiscale"]["scales"] == [224, 256, 288]
    assert rows["dense"]["images"] == 1 and "--limit" in doc["dataset"]["source"]


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--protocol", "tencrop"], "unknown protocol"),
        (["--scales", "128,256"], "at least 224"),
        (["--scales", "big"], "comma-separated integers"),
        (["--ensemble", "vgg11,resnet50"], "unknown model 'resnet50'"),
        (["--limit", "0"], "--limit must be at least 1"),
    ],
)
def test_bad_options_exit_2_without_traceback(tree, tiny_vgg11, tmp_path, capsys, args, message):
    code = main(["evaluate", str(tree), "--model", "vgg11", "--weights", str(tiny_vgg11), *args])
    err = capsys.readouterr().err
    assert code == 2 and message in err and "Traceback" not in err


def test_bad_data_exit_2(tmp_path, tiny_vgg11, capsys):
    assert (
        main(["evaluate", str(tmp_path / "nowhere"), "--model", "vgg11", "--weights", str(tiny_vgg11)]) == 2
    )
    assert "Traceback" not in capsys.readouterr().err
    odd = tmp_path / "odd"
    (odd / "cats").mkdir(parents=True)
    shutil.copy(EXAMPLES / PHOTOS[0], odd / "cats" / PHOTOS[0])
    (odd / "n99999999").mkdir()
    shutil.copy(EXAMPLES / PHOTOS[1], odd / "n99999999" / PHOTOS[1])
    assert main(["evaluate", str(odd), "--model", "vgg11", "--weights", str(tiny_vgg11)]) == 2
    err = capsys.readouterr().err
    assert "Traceback" not in err and "n99999999" in err


def test_center_protocol_through_the_engine_gives_the_same_accuracy(tree, tiny_vgg11, tmp_path, capsys):
    args = (tree, "--model", "vgg11", "--weights", tiny_vgg11, "--protocol", "center,dense")
    code, doc, _, err = run_json(capsys, tmp_path, *args, "--precision", "fp32", "--compile", "none")
    assert code == 0 and "Traceback" not in err
    assert "apply to the center protocol" in err  # dense runs eagerly, and the user is told
    center, dense = doc["rows"]
    assert center["protocol"] == "center" and center["top1_acc"] == 50.0
    assert dense["protocol"] == "dense"

"""End-to-end tests of the ``vggnets`` command line: classify, models, download, help and exit codes.

Most tests call ``vggnets.cli.main`` in-process (it returns the exit code) with a width-1/8 vgg11 checkpoint
(10 classes, labels "class 0" .. "class 9"); a few run the default vgg16 (a generated file placed in the isolated
cache) and two run the real console script in a subprocess. Nothing touches the network or the user's cache.
"""

from __future__ import annotations

import csv
import hashlib
import io
import json
import os
import shutil
import socket
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
import torchvision
from PIL import Image

import vggnets
from vggnets.cli import main
from vggnets.core import configs
from vggnets.io.images import read_image
from vggnets.models import weights as vweights

EXAMPLES = Path(__file__).resolve().parents[1] / "examples" / "images"
#: The bundled photos in the order a directory expands to (sorted by path).
PHOTOS = sorted(p for p in EXAMPLES.iterdir() if p.suffix in (".jpg", ".png"))
SMALL_LABELS = [f"class {i}" for i in range(10)]
VGG11_FILE = "vgg11-8a719046.pth"  # the official cache name of vgg11's DEFAULT weights
JSON_KEYS = {"model", "weights", "results"}
RESULT_KEYS = {"file", "predictions", "error"}
PREDICTION_KEYS = {"rank", "index", "label", "probability"}
CSV_COLUMNS = ["file", "rank", "index", "label", "probability", "error"]
MODEL_KEYS = {
    "model",
    "config",
    "batch_norm",
    "weight_layers",
    "params",
    "gmacs",
    "acc@1",
    "acc@5",
    "weights",
    "cached",
}


# ------------------------------------------------------------------------------------------------------------
# helpers


def cli(capsys: pytest.CaptureFixture[str], *argv: object) -> tuple[int, str, str]:
    """Run ``vggnets ARGV`` in-process: (exit code, stdout, stderr)."""
    code = main([str(a) for a in argv])
    out, err = capsys.readouterr()
    assert "Traceback" not in err
    return code, out, err


def classify_json(capsys: pytest.CaptureFixture[str], *argv: object) -> tuple[int, dict, str]:
    """``vggnets classify ARGV --format json``: (exit code, parsed document, stderr)."""
    code, out, err = cli(capsys, "classify", *argv, "--format", "json")
    return code, json.loads(out), err


def by_file(doc: dict) -> dict[str, dict]:
    return {r["file"]: r for r in doc["results"]}


def check_document(doc: dict, *, k: int, labels: list[str]) -> None:
    """The JSON layout is exact, ranks count from 1, probabilities are ranked and labels match indices."""
    assert set(doc) == JSON_KEYS
    for r in doc["results"]:
        assert set(r) == RESULT_KEYS
        if r["error"] is not None:
            assert r["predictions"] == []
            continue
        preds = r["predictions"]
        assert len(preds) == k
        assert all(set(p) == PREDICTION_KEYS for p in preds)
        assert [p["rank"] for p in preds] == list(range(1, k + 1))
        assert [p["label"] for p in preds] == [labels[p["index"]] for p in preds]
        probs = [p["probability"] for p in preds]
        assert probs == sorted(probs, reverse=True)
        assert all(0.0 < p < 1.0 for p in probs) and sum(probs) <= 1.0 + 1e-6
        assert len({p["index"] for p in preds}) == k


def closed_port() -> int:
    """A local TCP port with nothing listening on it."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def console_script() -> str:
    """The installed ``vggnets`` executable (next to this interpreter, else on PATH)."""
    search = os.pathsep.join([str(Path(sys.executable).parent), os.environ.get("PATH", "")])
    found = shutil.which("vggnets", path=search)
    assert found, "the vggnets console script is not installed (pip install -e .)"
    return found


@pytest.fixture
def small(small_vgg11_file: Path) -> list[str]:
    """Options that classify with the small vgg11 checkpoint."""
    return ["--model", "vgg11", "--weights", str(small_vgg11_file)]


def _pattern(h: int = 48, w: int = 64, seed: int = 0) -> np.ndarray:
    """A smooth colour picture with some noise: not symmetric, so rotations change it."""
    rng = np.random.default_rng(seed)
    y, x = np.mgrid[0:h, 0:w]
    rgb = np.stack([255 * x / w, 255 * y / h, 128 + 100 * np.sin(x / 5.0)], axis=-1)
    return np.clip(rgb + rng.normal(0, 20, rgb.shape), 0, 255).astype(np.uint8)


@pytest.fixture(scope="module")
def wild(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """Images as found in the wild, generated with Pillow: every format and pixel mode classify must take."""
    folder = tmp_path_factory.mktemp("wild")
    rgb = Image.fromarray(_pattern())
    files: dict[str, Path] = {}

    def save(name: str, img: Image.Image, **kw: object) -> None:
        files[name] = folder / name
        img.save(files[name], **kw)

    save("rgb.jpg", rgb, quality=90)
    save("rgb.png", rgb)
    save("rgb.webp", rgb, lossless=True)
    save("palette.gif", rgb.convert("P"))
    save("rgb.bmp", rgb)
    save("rgb.tiff", rgb)
    save("gray.png", rgb.convert("L"))
    save("gray.jpg", rgb.convert("L"))
    save("rgba.png", rgb.convert("RGBA"))
    palette = rgb.convert("P")
    save("palette_transparent.png", palette, transparency=0)
    save("cmyk.jpg", rgb.convert("CMYK"))
    save("cmyk.tiff", rgb.convert("CMYK"))
    save("gray16.png", Image.fromarray(_pattern()[..., 0].astype(np.uint16) * 257))
    frames = [Image.fromarray(_pattern(seed=s)).convert("P") for s in range(3)]
    save("animated.gif", frames[0], save_all=True, append_images=frames[1:], duration=50, loop=0)
    exif = Image.Exif()
    exif[0x0112] = 6  # "rotate 90 degrees clockwise to display"
    save("exif_rotated.jpg", rgb, exif=exif, quality=90)
    save("exif_rotated.png", rgb, exif=exif)
    save("upright.png", rgb.transpose(Image.Transpose.ROTATE_270))  # what exif_rotated.png displays as
    return files


@pytest.fixture(scope="module")
def broken(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """Files that must each fail with a clear message of their own."""
    folder = tmp_path_factory.mktemp("broken")
    jpeg = io.BytesIO()
    Image.fromarray(_pattern()).save(jpeg, "JPEG")
    bomb = io.BytesIO()
    Image.new("1", (10_000, 10_000)).save(bomb, "PNG")  # 100,000,000 pixels in about 12 KB
    contents = {
        "empty.jpg": b"",
        "notes.jpg": b"these are my holiday notes, not a photo\n",
        "corrupt.png": b"\x89PNG\r\n\x1a\n" + bytes(range(256)) * 4,
        "truncated.jpg": jpeg.getvalue()[: len(jpeg.getvalue()) // 2],
        "bomb.png": bomb.getvalue(),
    }
    files = {}
    for name, data in contents.items():
        files[name] = folder / name
        files[name].write_bytes(data)
    return files


# ------------------------------------------------------------------------------------------------------------
# classify: correctness against an independent torchvision computation


def test_default_vgg16_json_top5_equals_torchvision(cached_vgg16: Path, capsys):
    code, doc, err = classify_json(capsys, EXAMPLES)
    assert code == 0, err
    assert doc["model"] == "vgg16"
    assert doc["weights"] == "VGG16_Weights.IMAGENET1K_V1"  # DEFAULT
    assert [r["file"] for r in doc["results"]] == [str(p) for p in PHOTOS]
    tv_weights = torchvision.models.VGG16_Weights.IMAGENET1K_V1
    categories = tv_weights.meta["categories"]
    check_document(doc, k=5, labels=categories)  # --topk defaults to 5

    # Independent: read_image -> torchvision's preset -> torchvision's vgg16 with the same file -> softmax -> topk.
    with torch.device("meta"):
        model = torchvision.models.vgg16()
    model.load_state_dict(torch.load(cached_vgg16, weights_only=True, mmap=True), assign=True)
    model.eval()
    preset = tv_weights.transforms()
    with torch.inference_mode():
        probs = model(torch.stack([preset(read_image(p)) for p in PHOTOS])).softmax(dim=1)
    top_p, top_i = probs.topk(5, dim=1)
    for r, p_row, i_row in zip(doc["results"], top_p.tolist(), top_i.tolist()):
        assert r["error"] is None
        assert [p["index"] for p in r["predictions"]] == i_row, r["file"]
        assert [p["label"] for p in r["predictions"]] == [categories[i] for i in i_row]
        assert [p["probability"] for p in r["predictions"]] == pytest.approx(p_row, abs=1e-5)


def test_default_vgg16_table(cached_vgg16: Path, capsys):
    photo = EXAMPLES / "coffee_cup.jpg"
    code, doc, _ = classify_json(capsys, photo, "--topk", "3", "--device", "cpu")
    assert code == 0
    code, out, err = cli(capsys, "classify", photo, "--topk", "3", "--device", "cpu")
    assert code == 0 and err == ""
    lines = out.splitlines()
    assert lines[0] == str(photo)
    preds = doc["results"][0]["predictions"]
    for rank, (line, pred) in enumerate(zip(lines[1:4], preds), 1):
        assert line.strip().startswith(f"{rank}. {pred['label']}")
        assert line.endswith(f"{100 * pred['probability']:6.2f}%")
    assert pred["label"] in vggnets.IMAGENET_CATEGORIES
    assert lines[4:] == [""]  # exactly top-3, then a blank separator


def test_batch_size_and_workers_do_not_change_results(small, wild, capsys):
    inputs = [*PHOTOS, wild["rgb.png"], wild["cmyk.jpg"]]
    code, one, _ = classify_json(capsys, *inputs, *small, "--batch-size", "1")
    assert code == 0
    code, three, _ = classify_json(capsys, *inputs, *small, "--batch-size", "3", "--workers", "1")
    assert code == 0
    assert [r["file"] for r in one["results"]] == [str(p) for p in inputs]
    assert [r["file"] for r in three["results"]] == [str(p) for p in inputs]
    for a, b in zip(one["results"], three["results"]):
        assert [p["index"] for p in a["predictions"]] == [p["index"] for p in b["predictions"]]
        assert [p["probability"] for p in a["predictions"]] == pytest.approx(
            [p["probability"] for p in b["predictions"]], abs=1e-6
        )
    # Different images get different answers (the comparison above is not vacuous).
    assert len({tuple(p["probability"] for p in r["predictions"]) for r in one["results"]}) == len(inputs)


# ------------------------------------------------------------------------------------------------------------
# classify: inputs and options


def test_results_follow_input_order_including_failures(small, tmp_path, capsys):
    cup, cat = EXAMPLES / "coffee_cup.jpg", EXAMPLES / "chelsea_cat.png"
    missing = tmp_path / "missing.jpg"
    code, doc, err = classify_json(capsys, cup, missing, cat, cup, *small)
    assert code == 1  # one input failed
    assert [r["file"] for r in doc["results"]] == [str(cup), str(missing), str(cat)]  # cup only once
    assert doc["results"][1]["error"] == f"no such file or directory: {missing}"
    assert f"no such file or directory: {missing}" in err
    assert "1 of 3 inputs failed" in err


def test_directory_recursive_and_glob(small, tmp_path, capsys):
    top = tmp_path / "photos"
    (top / "sub").mkdir(parents=True)
    shutil.copy(EXAMPLES / "coffee_cup.jpg", top / "b.jpg")
    shutil.copy(EXAMPLES / "chelsea_cat.png", top / "a.png")
    shutil.copy(EXAMPLES / "rocket_launch.jpg", top / "sub" / "c.jpg")
    (top / "readme.txt").write_text("not an image")
    (top / ".hidden.jpg").write_bytes(b"")

    code, doc, _ = classify_json(capsys, top, *small)
    assert code == 0
    assert [r["file"] for r in doc["results"]] == [str(top / "a.png"), str(top / "b.jpg")]

    code, doc, _ = classify_json(capsys, top, "--recursive", *small)
    assert code == 0
    assert [r["file"] for r in doc["results"]] == [str(top / n) for n in ("a.png", "b.jpg", "sub/c.jpg")]

    code, doc, _ = classify_json(capsys, top / "*.jpg", *small)
    assert code == 0
    assert [r["file"] for r in doc["results"]] == [str(top / "b.jpg")]

    code, doc, _ = classify_json(capsys, top / "**" / "*.jpg", "-r", *small)
    assert code == 0
    assert [r["file"] for r in doc["results"]] == [str(top / "b.jpg"), str(top / "sub" / "c.jpg")]
    check_document(doc, k=5, labels=SMALL_LABELS)


def test_missing_paths_empty_dirs_and_unmatched_globs_reported_per_input(small, tmp_path, capsys):
    empty = tmp_path / "empty"
    empty.mkdir()
    nested = tmp_path / "nested"
    (nested / "deeper").mkdir(parents=True)
    shutil.copy(EXAMPLES / "coffee_cup.jpg", nested / "deeper" / "cup.jpg")
    missing = tmp_path / "nope.png"
    pattern = tmp_path / "*.gif"
    photo = EXAMPLES / "chelsea_cat.png"
    code, doc, err = classify_json(capsys, empty, missing, photo, nested, pattern, *small)
    assert code == 1
    results = doc["results"]
    assert [r["file"] for r in results] == [str(empty), str(missing), str(photo), str(nested), str(pattern)]
    assert results[0]["error"] == f"no images found in directory {empty}"
    assert results[1]["error"] == f"no such file or directory: {missing}"
    assert results[2]["error"] is None and len(results[2]["predictions"]) == 5
    assert "use --recursive" in results[3]["error"]
    assert results[4]["error"] == f"pattern matched no files: {pattern}"
    assert "4 of 5 inputs failed" in err


def test_only_missing_inputs_exit_1_without_loading_weights(tmp_path, capsys):
    # Default vgg16 weights are not cached and there is no network: nothing to classify, so nothing is fetched.
    code, out, err = cli(capsys, "classify", tmp_path / "a.jpg", tmp_path / "b.jpg")
    assert code == 1
    assert f"{tmp_path / 'a.jpg'}\n  error: no such file or directory" in out
    assert "2 of 2 inputs failed" in err


def test_table_format(small, capsys):
    photos = PHOTOS[:2]
    code, doc, _ = classify_json(capsys, *photos, *small, "-k", "4")
    code, out, err = cli(capsys, "classify", *photos, *small, "-k", "4", "--format", "table")
    assert code == 0 and err == ""
    blocks = out.strip("\n").split("\n\n")
    assert len(blocks) == 2
    for block, photo, result in zip(blocks, photos, doc["results"]):
        lines = block.splitlines()
        assert lines[0] == str(photo)
        assert len(lines) == 5
        for rank, (line, pred) in enumerate(zip(lines[1:], result["predictions"]), 1):
            assert line.split() == [f"{rank}.", *pred["label"].split(), f"{100 * pred['probability']:.2f}%"]


def test_json_format_is_stable(small, small_vgg11_file, capsys):
    code, doc, err = classify_json(capsys, EXAMPLES / "coffee_cup.jpg", *small, "--topk", "3")
    assert code == 0 and err == ""
    assert doc["model"] == "vgg11"
    assert doc["weights"] == str(small_vgg11_file)
    check_document(doc, k=3, labels=SMALL_LABELS)
    assert doc["results"][0]["file"] == str(EXAMPLES / "coffee_cup.jpg")


def test_topk_larger_than_classes_gives_every_class(small, capsys):
    code, doc, _ = classify_json(capsys, EXAMPLES / "coffee_cup.jpg", *small, "--topk", "50")
    assert code == 0
    preds = doc["results"][0]["predictions"]
    assert sorted(p["label"] for p in preds) == sorted(SMALL_LABELS)
    assert sum(p["probability"] for p in preds) == pytest.approx(1.0, abs=1e-5)


def test_csv_format(small, broken, capsys):
    photos = PHOTOS[:2]
    code, doc, _ = classify_json(capsys, *photos, broken["notes.jpg"], *small, "-k", "2")
    code, out, err = cli(
        capsys, "classify", *photos, broken["notes.jpg"], *small, "-k", "2", "--format", "csv"
    )
    assert code == 1
    rows = list(csv.reader(io.StringIO(out)))
    assert rows[0] == CSV_COLUMNS
    body = rows[1:]
    assert len(body) == 2 * 2 + 1
    expected = [
        [r["file"], str(p["rank"]), str(p["index"]), p["label"], f"{p['probability']:.6f}", ""]
        for r in doc["results"][:2]
        for p in r["predictions"]
    ]
    assert body[:4] == expected
    file, rank, index, label, probability, error = body[4]
    assert (file, rank, index, label, probability) == (str(broken["notes.jpg"]), "", "", "", "")
    assert "not an image file" in error
    assert f"vggnets classify: error: {error}" in err  # stdout stays machine-readable; errors on stderr too


def test_images_in_the_wild_are_all_classified(small, wild, capsys):
    code, doc, err = classify_json(capsys, *wild.values(), *small)
    assert code == 0, err
    assert err == ""
    assert [r["file"] for r in doc["results"]] == [str(p) for p in wild.values()]
    check_document(doc, k=5, labels=SMALL_LABELS)
    assert all(r["error"] is None for r in doc["results"])


def test_exif_orientation_is_applied(small, wild, capsys):
    names = ("exif_rotated.png", "upright.png", "rgb.png", "exif_rotated.jpg")
    code, doc, _ = classify_json(capsys, *(wild[n] for n in names), *small, "-k", "10")
    assert code == 0
    rotated, upright, unrotated, _ = (r["predictions"] for r in doc["results"])
    # The model saw the picture the way a viewer shows it, not the stored pixel grid.
    assert [p["index"] for p in rotated] == [p["index"] for p in upright]
    assert [p["probability"] for p in rotated] == pytest.approx([p["probability"] for p in upright], abs=1e-7)
    assert [p["probability"] for p in rotated] != pytest.approx(
        [p["probability"] for p in unrotated], abs=1e-6
    )


def test_bad_files_fail_one_by_one_and_the_rest_are_classified(small, broken, wild, tmp_path, capsys):
    big = wild["rgb.png"]  # 64x48 = 3,072 pixels
    small_ok = EXAMPLES / "coffee_cup.jpg"
    inputs = [small_ok, *broken.values(), wild["rgb.jpg"]]
    code, doc, err = classify_json(capsys, *inputs, *small)
    assert code == 1
    results = by_file(doc)
    assert list(results) == [str(p) for p in inputs]
    expected = {
        "empty.jpg": "file is empty",
        "notes.jpg": "not an image file",
        "corrupt.png": "truncated or corrupt",
        "truncated.jpg": "truncated or corrupt",
        "bomb.png": "image is 10000x10000 = 100,000,000 pixels, above the limit of 89,478,485",
    }
    for name, phrase in expected.items():
        error = results[str(broken[name])]["error"]
        assert error.startswith(f"{broken[name]}: ") and phrase in error, error
        assert results[str(broken[name])]["predictions"] == []
        assert error in err
    for good in (small_ok, wild["rgb.jpg"]):
        assert results[str(good)]["error"] is None and len(results[str(good)]["predictions"]) == 5
    assert f"{len(expected)} of {len(inputs)} inputs failed" in err

    # --max-pixels: the limit is the user's; the image over it fails, the one under it is classified.
    tiny = tmp_path / "tiny.png"
    Image.fromarray(_pattern(32, 32)).save(tiny)  # 1,024 pixels
    code, doc, err = classify_json(capsys, big, tiny, *small, "--max-pixels", "3000")
    assert code == 1
    results = by_file(doc)
    assert "image is 64x48 = 3,072 pixels, above the limit of 3,000" in results[str(big)]["error"]
    assert "raise --max-pixels" in results[str(big)]["error"]
    assert results[str(tiny)]["error"] is None and len(results[str(tiny)]["predictions"]) == 5
    code, doc, _ = classify_json(capsys, big, *small, "--max-pixels", "3072")
    assert code == 0  # exactly at the limit is allowed


def test_bad_files_in_table_format(small, broken, capsys):
    code, out, err = cli(capsys, "classify", EXAMPLES / "coffee_cup.jpg", broken["empty.jpg"], *small)
    assert code == 1
    assert f"{broken['empty.jpg']}\n  error: {broken['empty.jpg']}: file is empty" in out
    assert "1. class" in out
    assert "1 of 2 inputs failed" in err


def test_no_failures_exit_0_and_quiet_stderr(small, capsys):
    code, out, err = cli(capsys, "classify", EXAMPLES / "coffee_cup.jpg", *small, "--quiet")
    assert code == 0 and err == "" and out


# ------------------------------------------------------------------------------------------------------------
# classify: problems that stop the run (exit 2, one clear message, no traceback)


def test_weights_file_that_does_not_exist(tmp_path, capsys):
    missing = tmp_path / "nothere.pth"
    code, out, err = cli(capsys, "classify", EXAMPLES / "coffee_cup.jpg", "--weights", missing)
    assert code == 2 and out == ""
    assert err.startswith("vggnets classify: error: ")
    assert f"The weights file {missing} does not exist" in err


def test_checkpoint_of_another_architecture(small_vgg11_file, capsys):
    code, out, err = cli(
        capsys, "classify", EXAMPLES / "coffee_cup.jpg", "--model", "vgg13", "--weights", small_vgg11_file
    )
    assert code == 2 and out == ""
    assert "does not fit the vgg13 architecture" in err
    assert "Missing tensors" in err and "features." in err
    assert "looks like a checkpoint for vgg11" in err


def test_corrupt_checkpoint(tmp_path, capsys):
    bad = tmp_path / "model.pth"
    bad.write_bytes(b"PK\x03\x04" + os.urandom(2000))
    code, out, err = cli(
        capsys, "classify", EXAMPLES / "coffee_cup.jpg", "--model", "vgg11", "--weights", bad
    )
    assert code == 2 and out == ""
    assert f"Cannot load vgg11 weights ({bad})" in err
    assert "truncated or corrupt" in err


def test_features_weights_have_no_classifier(capsys):
    code, out, err = cli(
        capsys, "classify", EXAMPLES / "coffee_cup.jpg", "--weights", "VGG16_Weights.IMAGENET1K_FEATURES"
    )
    assert code == 2 and out == ""
    assert "VGG16_Weights.IMAGENET1K_FEATURES has no trained classifier" in err


def test_weights_of_another_model(capsys):
    code, _, err = cli(capsys, "classify", EXAMPLES / "coffee_cup.jpg", "--weights", "VGG19_Weights.DEFAULT")
    assert code == 2
    assert "weights for vgg19, not vgg16" in err


def test_gpu_decoding_without_a_gpu(capsys):
    code, out, err = cli(
        capsys, "classify", EXAMPLES / "coffee_cup.jpg", "--device", "cpu", "--decode", "gpu"
    )
    assert code == 2 and out == ""
    assert "--decode gpu decodes JPEGs with nvJPEG on a CUDA device" in err and "--decode cpu" in err


def test_model_without_published_weights(capsys):
    code, out, err = cli(capsys, "classify", EXAMPLES / "coffee_cup.jpg", "--model", "vgg16_1x1")
    assert code == 2 and out == ""
    assert "No pretrained weights are published for vgg16_1x1" in err


def test_offline_with_nothing_cached(isolated_torch_home, monkeypatch, capsys):
    port = closed_port()
    monkeypatch.setenv("VGGNETS_WEIGHTS_MIRROR", f"http://127.0.0.1:{port}")
    code, out, err = cli(capsys, "classify", EXAMPLES / "coffee_cup.jpg")
    assert code == 2 and out == ""
    assert f"http://127.0.0.1:{port}/vgg16-397923af.pth" in err
    assert "refused" in err
    cache = isolated_torch_home / "hub" / "checkpoints"
    assert str(cache / "vgg16-397923af.pth") in err  # where to put the file by hand
    assert not any(cache.iterdir())  # no partial file left behind


@pytest.mark.parametrize(
    ("option", "phrase"),
    [
        (["--topk", "0"], "--topk must be at least 1, got 0"),
        (["--batch-size", "0"], "--batch-size must be at least 1"),
        (["--workers", "-1"], "--workers must be at least 0"),
        (["--max-pixels", "0"], "--max-pixels must be at least 1"),
        (["--device", "meta"], "--device meta"),
        (["--device", "tpu9"], "'tpu9' is not a device name"),
    ],
)
def test_bad_options(small, option, phrase, capsys):
    code, out, err = cli(capsys, "classify", EXAMPLES / "coffee_cup.jpg", *small, *option)
    assert code == 2 and out == ""
    assert phrase in err


@pytest.mark.skipif(torch.cuda.is_available(), reason="needs a machine without CUDA")
def test_device_cuda_without_cuda(small, capsys):
    code, out, err = cli(capsys, "classify", EXAMPLES / "coffee_cup.jpg", *small, "--device", "cuda")
    assert code == 2 and out == ""
    assert "no CUDA GPU is available here; use --device cpu" in err


@pytest.mark.skipif(torch.backends.mps.is_available(), reason="needs a machine without MPS")
def test_device_mps_without_mps(small, capsys):
    code, out, err = cli(capsys, "classify", EXAMPLES / "coffee_cup.jpg", *small, "--device", "mps")
    assert code == 2 and out == ""
    assert "MPS is not available here" in err


@pytest.mark.parametrize(
    ("argv", "phrase"),
    [
        (["classify", "x.jpg", "--model", "resnet50"], "invalid choice: 'resnet50'"),
        (["classify", "x.jpg", "--format", "xml"], "invalid choice: 'xml'"),
        (["classify", "x.jpg", "--topk", "five"], "invalid int value: 'five'"),
        (["classify"], "the following arguments are required: PATH"),
        ([], "the following arguments are required: COMMAND"),
    ],
)
def test_usage_errors_exit_2(argv, phrase, capsys):
    code, out, err = cli(capsys, *argv)
    assert code == 2 and out == ""
    assert err.startswith("usage: vggnets")
    assert phrase in err


# ------------------------------------------------------------------------------------------------------------
# models


def _tv_meta(name: str) -> dict | None:
    return torchvision.models.get_model_weights(name).DEFAULT.meta if name in vweights.WEIGHTS else None


def test_models_json_lists_every_model(capsys):
    code, out, err = cli(capsys, "models", "--format", "json")
    assert code == 0 and err == ""
    data = json.loads(out)
    assert [r["model"] for r in data] == list(configs.MODELS)
    assert len(data) == 11
    for r in data:
        assert set(r) == MODEL_KEYS
        assert r["cached"] == []
        meta = _tv_meta(r["model"])
        if meta is None:  # the paper's configurations without published weights
            assert r["model"] in ("vgg11_lrn", "vgg16_1x1", "vgg16_1x1_bn")
            assert r["weights"] == [] and r["acc@1"] is None and r["acc@5"] is None
            continue
        assert r["params"] == meta["num_params"]  # independent: torchvision's metadata
        assert r["gmacs"] == pytest.approx(meta["_ops"], abs=1e-3)
        assert r["acc@1"] == meta["_metrics"]["ImageNet-1K"]["acc@1"]
        assert r["acc@5"] == meta["_metrics"]["ImageNet-1K"]["acc@5"]
        assert f"{r['model'].upper()}_Weights.IMAGENET1K_V1" in r["weights"]
    vgg16 = data[[r["model"] for r in data].index("vgg16")]
    assert vgg16["weights"] == ["VGG16_Weights.IMAGENET1K_V1", "VGG16_Weights.IMAGENET1K_FEATURES"]
    assert (vgg16["config"], vgg16["batch_norm"], vgg16["weight_layers"]) == ("D", False, 16)


def test_models_table(capsys):
    code, out, err = cli(capsys, "models")
    assert code == 0 and err == ""
    lines = {line.split()[0]: line for line in out.splitlines()[1:] if line.strip()}
    assert set(configs.MODELS) <= set(lines)
    assert out.splitlines()[0].split() == [
        "model",
        "config",
        "layers",
        "params",
        "GMACs",
        "acc@1",
        "acc@5",
        "weights",
    ]
    assert lines["vgg16"].split() == [
        "vgg16",
        "D",
        "16",
        "138,357,544",
        "15.470",
        "71.592",
        "90.382",
        "not",
        "cached",
    ]
    assert lines["vgg19_bn"].split()[:4] == ["vgg19_bn", "E", "+BN", "19"]
    assert lines["vgg11_lrn"].split()[-4:] == ["-", "-", "none", "published"]
    for name in configs.MODELS:
        assert f"{configs.num_params(name):,}" in lines[name]


def test_models_cached_flag_flips(
    cached_vgg16, small_vgg11_file, isolated_torch_home, place_in_cache, capsys
):
    code, out, _ = cli(capsys, "models", "--format", "json")
    cached = {r["model"]: r["cached"] for r in json.loads(out)}
    assert cached["vgg16"] == ["VGG16_Weights.IMAGENET1K_V1"]
    assert all(v == [] for k, v in cached.items() if k != "vgg16")
    code, out, _ = cli(capsys, "models")
    assert "  cached" in next(line for line in out.splitlines() if line.startswith("vgg16 "))
    assert "not cached" in next(line for line in out.splitlines() if line.startswith("vgg19 "))

    place_in_cache(small_vgg11_file, isolated_torch_home, VGG11_FILE)
    code, out, _ = cli(capsys, "models", "--format", "json")
    cached = {r["model"]: r["cached"] for r in json.loads(out)}
    assert cached["vgg11"] == ["VGG11_Weights.IMAGENET1K_V1"]


# ------------------------------------------------------------------------------------------------------------
# download


@pytest.fixture
def mirror(tmp_path, small_vgg11_file, monkeypatch) -> Path:
    """A mirror directory holding the small vgg11 under vgg11's official name, with that file's digest pinned."""
    folder = tmp_path / "mirror"
    folder.mkdir()
    shutil.copyfile(small_vgg11_file, folder / VGG11_FILE)
    monkeypatch.setenv("VGGNETS_WEIGHTS_MIRROR", str(folder))
    monkeypatch.setitem(vweights.FILE_SHA256, VGG11_FILE, sha256(small_vgg11_file))
    return folder


def test_download_through_mirror_then_classify_offline(
    mirror, small_vgg11_file, isolated_torch_home, monkeypatch, capsys
):
    target = isolated_torch_home / "hub" / "checkpoints" / VGG11_FILE
    code, out, err = cli(capsys, "download", "vgg11", "--verify")
    assert code == 0, err
    digest = sha256(small_vgg11_file)
    assert out == f"VGG11_Weights.IMAGENET1K_V1  {target}  sha256 {digest}  OK\n"
    assert target.read_bytes() == small_vgg11_file.read_bytes()

    # Now the default weights of vgg11 are cached: classify needs neither the mirror nor --weights.
    monkeypatch.delenv("VGGNETS_WEIGHTS_MIRROR")
    code, doc, _ = classify_json(capsys, EXAMPLES / "coffee_cup.jpg", "--model", "vgg11")
    assert code == 0
    assert doc["weights"] == "VGG11_Weights.IMAGENET1K_V1"
    check_document(doc, k=5, labels=SMALL_LABELS)  # 10 outputs: not the ImageNet names


def test_download_json_records_and_duplicates(mirror, isolated_torch_home, capsys):
    code, out, _ = cli(capsys, "download", "vgg11", "VGG11_Weights.IMAGENET1K_V1", "--json")
    assert code == 0
    records = [json.loads(line) for line in out.splitlines()]
    path = str(isolated_torch_home / "hub" / "checkpoints" / VGG11_FILE)
    assert records == [
        {"weights": "VGG11_Weights.IMAGENET1K_V1", "path": path, "sha256": None, "verified": None}
    ]

    code, out, _ = cli(capsys, "download", "vgg11", "--json", "--verify")
    assert code == 0
    assert json.loads(out) == {
        "weights": "VGG11_Weights.IMAGENET1K_V1",
        "path": path,
        "sha256": vweights.FILE_SHA256[VGG11_FILE],
        "verified": True,
    }


def test_download_rejects_a_mirror_file_with_the_wrong_digest(
    mirror, isolated_torch_home, monkeypatch, capsys
):
    monkeypatch.delitem(vweights.FILE_SHA256, VGG11_FILE)  # back to the published prefix 8a719046
    code, out, err = cli(capsys, "download", "vgg11")
    assert code == 2 and out == ""
    assert "Checksum mismatch" in err and "8a719046" in err
    assert not (isolated_torch_home / "hub" / "checkpoints" / VGG11_FILE).exists()


def test_download_from_a_mirror_without_the_file(tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("VGGNETS_WEIGHTS_MIRROR", str(tmp_path))
    code, _, err = cli(capsys, "download", "vgg19")
    assert code == 2
    assert f"vgg19-dcbb9e9d.pth is not in the weights mirror: {tmp_path / 'vgg19-dcbb9e9d.pth'}" in err


def test_verify_cached_file_against_the_published_digest(cached_vgg16, capsys):
    code, out, err = cli(capsys, "download", "vgg16", "--verify")
    assert code == 1
    digest = sha256(cached_vgg16)
    assert out == f"VGG16_Weights.IMAGENET1K_V1  {cached_vgg16}  sha256 {digest}  MISMATCH\n"
    assert (
        vweights.FILE_SHA256["vgg16-397923af.pth"] in err
    )  # the expected digest is shown next to the file's
    assert "Checksum mismatch" in err


def test_verify_cached_file_that_matches(
    small_vgg11_file, isolated_torch_home, place_in_cache, monkeypatch, capsys
):
    target = place_in_cache(small_vgg11_file, isolated_torch_home, VGG11_FILE)
    digest = sha256(small_vgg11_file)
    monkeypatch.setitem(vweights.FILE_SHA256, VGG11_FILE, digest)
    code, out, err = cli(capsys, "download", "vgg11", "--verify")
    assert (code, err) == (0, "")
    assert out == f"VGG11_Weights.IMAGENET1K_V1  {target}  sha256 {digest}  OK\n"
    # Without a pinned digest the 8-hex prefix of the official name decides: this file is not it.
    monkeypatch.delitem(vweights.FILE_SHA256, VGG11_FILE)
    code, out, err = cli(capsys, "download", "vgg11", "--verify")
    assert code == 1 and out.endswith("MISMATCH\n") and digest in out


def test_verify_legacy_cached_file_against_its_own_digest(
    small_vgg11_file, isolated_torch_home, place_in_cache, monkeypatch, capsys
):
    # Before 2021 torchvision saved vgg11 as vgg11-bbd30ac9.pth; a cache holding it is used, and verified as itself.
    legacy = place_in_cache(small_vgg11_file, isolated_torch_home, "vgg11-bbd30ac9.pth")
    digest = sha256(small_vgg11_file)
    monkeypatch.setitem(vweights.FILE_SHA256, legacy.name, digest)
    code, out, err = cli(capsys, "download", "vgg11", "--verify")
    assert (code, err) == (0, "")
    assert out == f"VGG11_Weights.IMAGENET1K_V1  {legacy}  sha256 {digest}  OK\n"
    monkeypatch.delitem(vweights.FILE_SHA256, legacy.name)
    code, out, err = cli(capsys, "download", "vgg11", "--verify")
    assert code == 1 and out.endswith("MISMATCH\n")
    assert "expected SHA-256 prefix (8 hex digits) is bbd30ac9" in err  # the legacy file's own prefix


@pytest.mark.parametrize(
    ("names", "phrase"),
    [
        (["resnet50"], "unknown model 'resnet50'"),
        (["vgg16", "alexnet"], "unknown model 'alexnet'"),
        (["vgg11_lrn"], "No pretrained weights are published for vgg11_lrn"),
        (["VGG16_Weights.IMAGENET1K_V9"], "VGG16_Weights has no member 'IMAGENET1K_V9'"),
        (["VGG16"], "unknown model 'VGG16'"),
        ([], "name at least one model or weights"),
    ],
)
def test_download_bad_names(names, phrase, capsys):
    code, out, err = cli(capsys, "download", *names)
    assert code == 2 and out == ""  # nothing is downloaded before the names are all checked
    assert err.startswith("vggnets download: error: ")
    assert phrase in err


# ------------------------------------------------------------------------------------------------------------
# help and version


def test_help_teaches(capsys):
    code, out, _ = cli(capsys, "--help")
    assert code == 0
    for phrase in ("classify", "models", "download", "examples:", "VGGNETS_WEIGHTS_MIRROR", "TORCH_HOME"):
        assert phrase in out

    code, out, _ = cli(capsys, "classify", "--help")
    assert code == 0
    for phrase in (
        "examples:",
        "Exit code: 0",
        "--recursive",
        "--topk",
        "--batch-size",
        "--device",
        "--format",
    ):
        assert phrase in out
    assert "--max-pixels" in out and "VGGNETS_WEIGHTS_MIRROR" in out and "CMYK" in out

    code, out, _ = cli(capsys, "download", "--help")
    assert code == 0
    for phrase in ("examples:", "Exit code: 0", "--verify", "--all", "VGGNETS_WEIGHTS_MIRROR", "SHA-256"):
        assert phrase in out

    code, out, _ = cli(capsys, "models", "--help")
    assert code == 0
    for phrase in ("examples:", "--format", "GMACs", "cached"):
        assert phrase in out


def test_version_in_process(capsys):
    code, out, _ = cli(capsys, "--version")
    assert (code, out) == (0, f"vggnets {vggnets.__version__}\n")


# ------------------------------------------------------------------------------------------------------------
# the real executables


def test_console_script_help_and_module_version():
    done = subprocess.run([console_script(), "--help"], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0 and "Traceback" not in done.stderr
    assert done.stdout.startswith("usage: vggnets")
    assert "vggnets classify examples/images/" in done.stdout

    done = subprocess.run(
        [sys.executable, "-m", "vggnets", "--version"], capture_output=True, text=True, timeout=120
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout == f"vggnets {vggnets.__version__}\n"


def test_console_script_classifies_the_examples_offline(cached_vgg16, tmp_path):
    # TORCH_HOME (set by the isolated_torch_home fixture) is inherited: the generated vgg16 is the cached DEFAULT.
    missing = tmp_path / "missing.jpg"
    done = subprocess.run(
        [console_script(), "classify", str(EXAMPLES), str(missing), "--topk", "2"],
        capture_output=True,
        text=True,
        timeout=300,
        env={**os.environ, "VGGNETS_WEIGHTS_MIRROR": f"http://127.0.0.1:{closed_port()}"},
    )
    assert done.returncode == 1  # the missing file; the photos were classified from the cache
    assert "Traceback" not in done.stderr
    assert "1 of 6 inputs failed" in done.stderr
    blocks = done.stdout.strip("\n").split("\n\n")
    assert [b.splitlines()[0] for b in blocks] == [*map(str, PHOTOS), str(missing)]
    for block in blocks[:-1]:
        ranked = block.splitlines()[1:]
        assert [line.split()[0] for line in ranked] == ["1.", "2."]
        for line in ranked:
            label, percent = line.strip()[3:].rsplit(None, 1)
            assert label.strip() in vggnets.IMAGENET_CATEGORIES
            assert percent.endswith("%") and 0 < float(percent[:-1]) < 100
    assert blocks[-1] == f"{missing}\n  error: no such file or directory: {missing}"


def test_extreme_aspect_ratio_is_a_per_file_error(tmp_path, small_vgg11_file, capsys):
    from PIL import Image

    Image.new("RGB", (4000, 1), "red").save(tmp_path / "strip.png")
    Image.new("RGB", (64, 48), "blue").save(tmp_path / "ok.png")
    code = main(
        [
            "classify",
            str(tmp_path),
            "--model",
            "vgg11",
            "--weights",
            str(small_vgg11_file),
            "--format",
            "json",
        ]
    )
    out = json.loads(capsys.readouterr().out)
    assert code == 1
    errors = {Path(r["file"]).name: r["error"] for r in out["results"]}
    assert errors["ok.png"] is None and "aspect ratio too extreme" in errors["strip.png"]

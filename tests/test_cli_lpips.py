"""End-to-end tests of ``vggnets lpips`` (in-process; a width-1/8 VGG16 backbone with matching linear weights)."""

from __future__ import annotations

import csv
import io
import json
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from PIL import Image

import vggnets
from vggnets.cli import main
from vggnets.features.lpips import LPIPS
from vggnets.io.images import read_image

SMALL_CHANNELS = (8, 16, 32, 64, 64)


def cli(capsys, *argv: object) -> tuple[int, str, str]:
    code = main(["lpips", *map(str, argv)])
    out, err = capsys.readouterr()
    assert "Traceback" not in err
    return code, out, err


@pytest.fixture(scope="module")
def small_files(tmp_path_factory) -> tuple[Path, Path]:
    """(backbone state_dict of a width-1/8 VGG16, linear weights fitting it in lpips' layout)."""
    folder = tmp_path_factory.mktemp("lpips")
    torch.manual_seed(5)
    torch.save(vggnets.vgg16(width=0.125).state_dict(), folder / "backbone.pth")
    g = torch.Generator().manual_seed(5)
    lins = {
        f"lin{k}.model.1.weight": torch.rand(1, c, 1, 1, generator=g) * 0.1
        for k, c in enumerate(SMALL_CHANNELS)
    }
    torch.save(lins, folder / "lins.pth")
    return folder / "backbone.pth", folder / "lins.pth"


@pytest.fixture(scope="module")
def metric(small_files) -> LPIPS:
    backbone, lins = small_files
    return LPIPS(vggnets.vgg16(weights=backbone), linear_weights=lins)


def expected(metric: LPIPS, a: Path, b: Path, *, resize: bool = False) -> float:
    x, y = read_image(a).float() / 255, read_image(b).float() / 255
    if resize:
        y = F.interpolate(y[None], size=x.shape[1:], mode="bilinear", antialias=True, align_corners=False)[
            0
        ].clamp(0, 1)
    with torch.no_grad():
        return float(metric(x[None], y[None], normalize=True))


def save(path: Path, array: np.ndarray) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(array).save(path)
    return path


@pytest.fixture
def folders(tmp_path) -> tuple[Path, Path]:
    """A: 1.png 2.png 3.png 4.png only_a.png; B: 1.jpg 2.png 3.png 4.png (4 is 64x48 in A) only_b.png."""
    rng = np.random.default_rng(0)
    a, b = tmp_path / "A", tmp_path / "B"
    for name in ("1", "2", "3"):
        x = rng.integers(0, 256, (40, 56, 3), dtype=np.uint8)
        noisy = np.clip(x.astype(int) + rng.integers(-40, 40, x.shape), 0, 255).astype(np.uint8)
        save(a / f"{name}.png", x)
        save(b / (f"{name}.jpg" if name == "1" else f"{name}.png"), noisy)
    save(a / "4.png", rng.integers(0, 256, (48, 64, 3), dtype=np.uint8))
    save(b / "4.png", rng.integers(0, 256, (64, 64, 3), dtype=np.uint8))
    save(a / "only_a.png", rng.integers(0, 256, (40, 56, 3), dtype=np.uint8))
    save(b / "only_b.png", rng.integers(0, 256, (40, 56, 3), dtype=np.uint8))
    return a, b


def run_json(capsys, small_files, *argv) -> tuple[int, dict, str]:
    backbone, lins = small_files
    code, out, err = cli(
        capsys, *argv, "--weights", backbone, "--linear-weights", lins, "--format", "json", "--device", "cpu"
    )
    return code, json.loads(out), err


def test_two_images_give_the_library_value(capsys, small_files, metric, folders):
    a, b = folders
    code, doc, _ = run_json(capsys, small_files, a / "1.png", b / "1.jpg")
    assert code == 0 and len(doc["pairs"]) == 1
    assert doc["pairs"][0]["lpips"] == pytest.approx(expected(metric, a / "1.png", b / "1.jpg"), abs=1e-6)
    assert doc["summary"] == {"count": 1, "mean": doc["pairs"][0]["lpips"], "std": 0.0, "failed": 0}
    assert doc["version"] == "0.1" and doc["precision"] == "fp32" and "none" in doc["resize"]
    assert doc["produced_by"]["command"] == "lpips" and doc["produced_by"]["options"]["batch_size"] == 8


def test_folders_are_paired_by_name_and_problems_are_listed(capsys, small_files, metric, folders):
    a, b = folders
    code, doc, err = run_json(capsys, small_files, a, b)
    assert code == 1 and "3 of 6 inputs failed or had no partner" in err
    rows = {
        (Path(r["a"]).name if r["a"] else None, Path(r["b"]).name if r["b"] else None): r
        for r in doc["pairs"]
    }
    measured = {k: r["lpips"] for k, r in rows.items() if r["lpips"] is not None}
    assert sorted(measured) == [("1.png", "1.jpg"), ("2.png", "2.png"), ("3.png", "3.png")]
    for (x, y), value in measured.items():
        assert value == pytest.approx(expected(metric, a / x, b / y), abs=1e-6)
    assert (
        "64x48" in rows[("4.png", "4.png")]["error"] and "--match-size" in rows[("4.png", "4.png")]["error"]
    )
    assert "no partner" in rows[("only_a.png", None)]["error"]
    assert "no partner" in rows[(None, "only_b.png")]["error"]
    values = list(measured.values())
    assert doc["summary"]["mean"] == pytest.approx(np.mean(values))
    assert doc["summary"]["std"] == pytest.approx(np.std(values))
    assert doc["summary"]["count"] == 3 and doc["summary"]["failed"] == 3


def test_match_size_resizes_b_to_a(capsys, small_files, metric, folders):
    a, b = folders
    code, doc, _ = run_json(capsys, small_files, a / "4.png", b / "4.png", "--match-size")
    assert code == 0 and doc["pairs"][0]["size"] == "64x48"
    assert doc["pairs"][0]["lpips"] == pytest.approx(
        expected(metric, a / "4.png", b / "4.png", resize=True), abs=1e-6
    )


def test_batches_do_not_change_the_values(capsys, small_files, folders):
    a, b = folders
    one = run_json(capsys, small_files, a, b, "-b", 1)[1]
    many = run_json(capsys, small_files, a, b, "-b", 8)[1]
    assert [r["lpips"] for r in one["pairs"]] == pytest.approx([r["lpips"] for r in many["pairs"]], abs=1e-6)


def test_table_and_csv(capsys, small_files, folders):
    a, b = folders
    backbone, lins = small_files
    code, out, _ = cli(capsys, a, b, "--weights", backbone, "--linear-weights", lins, "--device", "cpu")
    assert code == 1
    assert (
        out.startswith("LPIPS v0.1") and "mean " in out and "std " in out and "over 3 pairs (3 failed)" in out
    )
    code, out, err = cli(capsys, a, b, "--weights", backbone, "--linear-weights", lins, "--format", "csv")
    rows = list(csv.DictReader(io.StringIO(out)))
    assert list(rows[0]) == ["a", "b", "size", "lpips", "error"] and len(rows) == 6
    assert sum(bool(r["lpips"]) for r in rows) == 3 and "mean" in err


def test_report_file_is_never_replaced_without_force(capsys, tmp_path, small_files, folders):
    a, b = folders
    backbone, lins = small_files
    report = tmp_path / "out" / "lpips.json"
    args = [
        a / "1.png",
        b / "1.jpg",
        "--weights",
        backbone,
        "--linear-weights",
        lins,
        "--format",
        "json",
        "-o",
        report,
    ]
    code, out, _ = cli(capsys, *args)
    assert code == 0 and out == "" and json.loads(report.read_text())["summary"]["count"] == 1
    report.write_text("keep me")
    code, _, err = cli(capsys, *args)
    assert code == 2 and "--force" in err and report.read_text() == "keep me"
    assert cli(capsys, *args, "--force")[0] == 0 and json.loads(report.read_text())["metric"] == "lpips"


def test_unreadable_images_are_reported_per_pair(capsys, small_files, folders):
    a, b = folders
    (b / "2.png").write_bytes(b"\x89PNG\r\n\x1a\n truncated")
    code, doc, _ = run_json(capsys, small_files, a, b)
    row = next(r for r in doc["pairs"] if r["b"] and r["b"].endswith("2.png"))
    assert code == 1 and row["lpips"] is None and "2.png" in row["error"]


@pytest.mark.parametrize(
    ("make", "message"),
    [
        (lambda a, b: (a / "nope.png", b / "1.jpg"), "does not exist"),
        (lambda a, b: (a, b / "1.jpg"), "is a folder but"),
        (lambda a, b: (a / "only_a.png", b), "is a folder but"),
    ],
)
def test_bad_inputs_stop_with_one_paragraph(capsys, small_files, folders, make, message):
    x, y = make(*folders)
    backbone, lins = small_files
    code, _, err = cli(capsys, x, y, "--weights", backbone, "--linear-weights", lins)
    assert code == 2 and message in err


def test_no_pairs_and_bad_options(capsys, tmp_path, small_files, folders):
    backbone, lins = small_files
    (tmp_path / "empty1").mkdir()
    (tmp_path / "empty2").mkdir()
    code, _, err = cli(
        capsys, tmp_path / "empty1", tmp_path / "empty2", "--weights", backbone, "--linear-weights", lins
    )
    assert code == 2 and "no image pairs" in err
    a, b = folders
    code, _, err = cli(capsys, a / "1.png", b / "1.jpg", "--device", "cpu", "--precision", "fp16")
    assert code == 2 and "CUDA" in err
    code, _, err = cli(
        capsys, a / "1.png", b / "1.jpg", "--weights", backbone, "--linear-weights", tmp_path / "x.pth"
    )
    assert code == 2 and "does not exist" in err
    code, _, err = cli(
        capsys, a / "1.png", b / "1.jpg", "--weights", backbone
    )  # the published file: full width only
    assert code == 2 and "full-width VGG16" in err


def test_bf16_is_close_to_fp32(capsys, small_files, folders):
    a, b = folders
    exact = run_json(capsys, small_files, a / "2.png", b / "2.png")[1]["pairs"][0]["lpips"]
    low = run_json(capsys, small_files, a / "2.png", b / "2.png", "--precision", "bf16")[1]["pairs"][0][
        "lpips"
    ]
    assert low == pytest.approx(exact, rel=0.05)


def test_help_states_the_pairing_and_resize_policy(capsys):
    code, out, _ = cli(capsys, "--help")
    assert code == 0 and "examples:" in out and "vggnets lpips generated.png reference.png" in out
    assert "same" in out and "--match-size" in out and "no image is resized unless you ask" in out

"""``vggnets evaluate`` under torchrun: each process evaluates its units and rank 0 merges the streaming counts, so
every protocol, ensemble row and failed-image count equals one process's; resumable with --output."""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

import pytest
import torch

import vggnets
from vggnets.cli import main
from vggnets.scale import records
from vggnets.scale.jobs import Codec
from vggnets.scale.parts import parts_folder

EXAMPLES = Path(__file__).resolve().parents[1] / "examples" / "images"
PHOTOS = sorted(p for p in EXAMPLES.iterdir() if p.suffix in (".jpg", ".png"))
TIMINGS = ("seconds", "images_per_second")


@pytest.fixture(scope="module")
def vgg13_file(tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("eval") / "vgg13_small.pth"
    torch.manual_seed(13)
    torch.save(vggnets.vgg13(width=0.125, num_classes=10).state_dict(), path)
    return path


def make_tree(root: Path, images: int) -> Path:
    """``images`` photos in class folders 0, 1, 2 (by index) and one unreadable file."""
    for i in range(images):
        photo = PHOTOS[i % len(PHOTOS)]
        (root / str(i % 3)).mkdir(parents=True, exist_ok=True)
        shutil.copy(photo, root / str(i % 3) / f"img{i:02d}{photo.suffix}")
    (root / "1" / "broken.jpg").write_bytes(b"not an image")
    return root


def comparable(path: Path) -> dict:
    """The results document without what depends on time (compute seconds, images/s, wall time) or the command."""
    doc = json.loads(path.read_text())
    doc.pop("produced_by"), doc.pop("wall_seconds")
    doc["rows"] = [{k: v for k, v in row.items() if k not in TIMINGS} for row in doc["rows"]]
    return doc


def evaluate_args(data: Path, output: Path, *extra: object) -> list[str]:
    return ["evaluate", str(data), "-b", "2", "--unit-size", "2", "--workers", "0", "--device", "cpu", "-q",
            "-o", str(output), *map(str, extra)]  # fmt: skip


def test_every_protocol_and_an_ensemble_merge_to_the_counts_of_one_process(
    small_vgg11_file, vgg13_file, tmp_path, capsys, monkeypatch
):
    data = make_tree(tmp_path / "val", 3)
    ensemble = ("--ensemble", f"vgg11={small_vgg11_file},vgg13={vgg13_file}")
    extra = (*ensemble, "--protocol", "all", "--scales", "224,256")
    assert main(evaluate_args(data, tmp_path / "one.json", *extra)) == 1
    expected = comparable(tmp_path / "one.json")
    assert len(expected["rows"]) == 15 and expected["rows"][0]["failed"] == 1
    for name, value in {"RANK": "0", "WORLD_SIZE": "1", "LOCAL_RANK": "0"}.items():  # torchrun's one process
        monkeypatch.setenv(name, value)
    real, written = records.EVALUATION, []

    def interrupted(parts, unit, payload):
        if len(written) == 1:
            raise KeyboardInterrupt
        real.write(parts, unit, payload)
        written.append(unit.index)

    monkeypatch.setattr(records, "EVALUATION", Codec(interrupted, real.read))
    assert main(evaluate_args(data, tmp_path / "units.json", *extra)) == 130
    monkeypatch.setattr(records, "EVALUATION", real)
    capsys.readouterr()
    assert main(evaluate_args(data, tmp_path / "units.json", *extra, "--scales", "224,288")) == 2
    assert "--scales: [224, 256] then, [224, 288] now" in capsys.readouterr().err
    assert main(evaluate_args(data, tmp_path / "units.json", *extra)) == 0
    assert "resumed: 1 of 2 units" in capsys.readouterr().err
    assert comparable(tmp_path / "units.json") == expected
    assert not parts_folder(tmp_path / "units.json").exists()


@pytest.mark.parametrize(
    "protocols",
    ["center,dense", pytest.param("all --flip", marks=pytest.mark.slow)],
    ids=["center-dense", "all"],
)
def test_two_processes_give_the_metrics_of_one_process(
    torchrun, protocols, small_vgg11_file, vgg13_file, tmp_path, capsys
):
    data = make_tree(tmp_path / "val", 7)
    extra = ("--ensemble", f"vgg11={small_vgg11_file},vgg13={vgg13_file}", "--scales", "224,256", "--protocol",
             *protocols.split())  # fmt: skip
    assert main(evaluate_args(data, tmp_path / "one.json", *extra)) == 1
    table = capsys.readouterr().out
    done = torchrun(tmp_path, *evaluate_args(Path("val"), Path("two.json"), *extra))
    assert done.returncode == 0, done.stderr
    expected = comparable(tmp_path / "one.json")
    expected["failures"] = [{**f, "file": os.path.relpath(f["file"], tmp_path)} for f in expected["failures"]]
    expected["dataset"]["source"] = comparable(tmp_path / "two.json")["dataset"]["source"]  # names the folder
    assert comparable(tmp_path / "two.json") == expected
    rows = [line.split("|")[1:8] for line in table.splitlines()[2:]]
    assert [line.split("|")[1:8] for line in done.stdout.splitlines()[2:]] == rows  # printed once, by rank 0
    assert done.stderr.count("skipped val/1/broken.jpg") == 1

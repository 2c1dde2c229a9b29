"""``vggnets classify`` output policy: results streamed per batch (table, csv, jsonl), ``--output`` files that are
valid up to the last finished batch, Ctrl-C keeping what is done (exit 130), and no silent overwrite."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from vggnets.cli import main
from vggnets.inference import classify as classify_lib

EXAMPLES = Path(__file__).resolve().parents[1] / "examples" / "images"
PHOTOS = sorted(p for p in EXAMPLES.iterdir() if p.suffix in (".jpg", ".png"))


@pytest.fixture
def small(small_vgg11_file: Path) -> list[str]:
    return ["--model", "vgg11", "--weights", str(small_vgg11_file), "--device", "cpu", "-q", "-b", "2"]


def run(capsys, *argv: object) -> tuple[int, str, str]:
    code = main([str(a) for a in argv])
    out, err = capsys.readouterr()
    assert "Traceback" not in err
    return code, out, err


def test_jsonl_is_one_object_per_image_in_input_order(small, capsys, tmp_path):
    missing = tmp_path / "missing.jpg"
    code, out, err = run(
        capsys, "classify", PHOTOS[0], missing, PHOTOS[1], *small, "--format", "jsonl", "-k", "2"
    )
    assert code == 1
    records = [json.loads(line) for line in out.splitlines()]
    assert [r["file"] for r in records] == [str(PHOTOS[0]), str(missing), str(PHOTOS[1])]
    assert records[1]["error"] and not records[1]["predictions"]
    assert [p["rank"] for p in records[0]["predictions"]] == [1, 2] and records[0]["model"] == "vgg11"


def test_output_file_has_the_same_rows_as_stdout_and_says_what_made_it(small, capsys, tmp_path):
    _, on_stdout, _ = run(capsys, "classify", *PHOTOS, *small, "--format", "csv")
    target = tmp_path / "labels.csv"
    code, out, _ = run(capsys, "classify", *PHOTOS, *small, "--format", "csv", "-o", target)
    assert code == 0 and out == "" and target.read_text() == on_stdout
    doc_path = tmp_path / "labels.json"
    assert run(capsys, "classify", *PHOTOS[:2], *small, "--format", "json", "-o", doc_path)[0] == 0
    doc = json.loads(doc_path.read_text())
    assert doc["produced_by"]["command"] == "classify" and doc["produced_by"]["options"]["topk"] == 5
    assert "vggnets" in doc["produced_by"] and len(doc["results"]) == 2


@pytest.mark.parametrize("fmt", ["csv", "json", "jsonl", "table"])
def test_existing_output_is_kept_without_force(small, capsys, tmp_path, fmt):
    target = tmp_path / "mine.txt"
    target.write_text("precious\n")
    code, _, err = run(capsys, "classify", PHOTOS[0], *small, "--format", fmt, "-o", target)
    assert code == 2 and "--force" in err and "overwrite=True" not in err.split("(")[0]
    assert target.read_text() == "precious\n"
    assert run(capsys, "classify", PHOTOS[0], *small, "--format", fmt, "-o", target, "--force")[0] == 0
    assert target.read_text() != "precious\n"


def test_unwritable_output_fails_before_any_work(small, capsys, tmp_path, monkeypatch):
    blocker = tmp_path / "a-file"
    blocker.write_text("x")

    def must_not_run(*args, **kwargs):
        raise AssertionError("the model was loaded before the output was checked")

    monkeypatch.setattr(classify_lib, "classify_files", must_not_run)
    code, out, err = run(capsys, "classify", PHOTOS[0], *small, "-o", blocker / "out.csv", "--format", "csv")
    assert code == 2 and out == "" and "cannot write" in err and len(err.strip().splitlines()) == 1


def test_ctrl_c_keeps_the_finished_batches_and_exits_130(small, capsys, tmp_path, monkeypatch):
    real = classify_lib.classify_files

    def interrupted_after_two(*args, **kwargs):
        for n, prediction in enumerate(real(*args, **kwargs)):
            if n == 2:
                raise KeyboardInterrupt
            yield prediction

    monkeypatch.setattr(classify_lib, "classify_files", interrupted_after_two)
    target = tmp_path / "partial.jsonl"
    code, _, err = run(capsys, "classify", *PHOTOS, *small, "--format", "jsonl", "-o", target)
    assert code == 130 and "interrupted" in err
    records = [json.loads(line) for line in target.read_text().splitlines()]
    assert [r["file"] for r in records] == [str(p) for p in PHOTOS[:2]]

    code, out, _ = run(capsys, "classify", *PHOTOS, *small, "--format", "csv")
    assert code == 130 and out.splitlines()[0].startswith("file,rank")
    assert {line.split(",")[0] for line in out.splitlines()[1:]} == {str(p) for p in PHOTOS[:2]}


def test_unreadable_image_directory_says_permission_denied(small, capsys, tmp_path, monkeypatch):
    import os

    folder = tmp_path / "locked"
    folder.mkdir()
    (folder / "a.jpg").write_bytes((EXAMPLES / "coffee_cup.jpg").read_bytes())
    real_scandir = os.scandir

    def scandir(path="."):
        if Path(path) == folder:
            raise PermissionError(13, "Permission denied", str(path))
        return real_scandir(path)

    monkeypatch.setattr(os, "scandir", scandir)
    code, out, err = run(capsys, "classify", folder, *small)
    assert code == 1 and "permission denied reading directory" in out and "no images found" not in out + err

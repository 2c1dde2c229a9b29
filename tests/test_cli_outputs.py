"""The output policy of every command that writes files (export, features, convert, evaluate, benchmark, train):
outputs checked before any work, no silent replacement (sidecars included) without --force, one-line errors with
exit 2 for unwritable outputs and full disks (work that cannot be redone printed first), what produced a file
recorded in it; plus evaluate's progress in network inputs, the `**` hint, true benchmark notes and --weights FILE."""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

import pytest
import torch

import vggnets
import vggnets.bench.runner
import vggnets.convert.files
import vggnets.export
import vggnets.models.builders
import vggnets.training
from vggnets.cli import main
from vggnets.version import __version__

EXAMPLES = Path(__file__).resolve().parents[1] / "examples" / "images"
CAT, CUP = EXAMPLES / "chelsea_cat.png", EXAMPLES / "coffee_cup.jpg"
FULL = OSError(28, "No space left on device")


def run(capsys, *argv: object) -> tuple[int, str, str]:
    code = main([str(a) for a in argv])
    out, err = capsys.readouterr()
    assert "Traceback" not in err
    return code, out, err


def leftovers(folder: Path) -> list[str]:
    """Temporary files of the writer left behind."""
    return sorted(p.name for p in folder.rglob(".*partial*"))


@pytest.fixture
def weights(small_vgg11_file: Path) -> list[str]:
    return ["--model", "vgg11", "--weights", str(small_vgg11_file)]


@pytest.fixture
def tree(tmp_path: Path) -> Path:
    """A labelled tree for the 10-class model (class folders by index), also an ImageFolder with train/ and val/."""
    root = tmp_path / "data"
    for split in ("train", "val"):
        for cls, photo in (("3", CAT), ("7", CUP)):
            (root / split / cls).mkdir(parents=True)
            shutil.copy(photo, root / split / cls / photo.name)
    return root


TRAIN = ["--width", "0.0625", "--batch-size", "2", "--workers", "0", "--epochs", "1", "--quiet"]
TRAIN += ["--set", "crop=32", "resize=32", "scale=32", "hflip=false", "pca_std=0"]
BENCH = ["benchmark", "--model", "vgg11", "--width", "0.0625", "--image-size", "32", "-b", "2"]
BENCH += ["--precision", "fp32", "--compile", "none", "--iterations", "1", "--latency-iterations", "1"]


def command(name: str, out: Path, weights: list[str], tree: Path, small: Path) -> list[object]:
    """The command line of ``name`` writing ``out`` (a file, or train's run folder)."""
    return {
        "export-safetensors": ["export", *weights, "--format", "safetensors", "-o", out / "m.safetensors"],
        "export-torchscript": ["export", *weights, "--format", "torchscript", "-o", out / "m.pt"],
        "export-exported": ["export", *weights, "--format", "exported", "-o", out / "m.pt2"],
        "export-onnx": ["export", *weights, "--format", "onnx", "-o", out / "m.onnx"],
        "features": ["features", CAT, *weights, "--device", "cpu", "-q", "-o", out / "f.npy"],
        "convert": ["convert", small, out / "c.safetensors"],
        "evaluate": ["evaluate", tree / "val", *weights, "--workers", "0", "-q", "--output", out / "r.json"],
        "benchmark": [*BENCH, "--no-peaks", "--quiet", "--output", out / "b.json"],
        "train": ["train", tree, "--model", "vgg11", *TRAIN, "--output", out / "run"],
    }[name]


COMMANDS = [
    "export-safetensors",
    "export-torchscript",
    "export-exported",
    "export-onnx",
    "features",
    "convert",
]
COMMANDS += ["evaluate", "benchmark", "train"]


@pytest.fixture
def no_work(monkeypatch):
    """Every way a command starts its work (loading a model, reading weights or data) fails the test."""

    def must_not_run(*args, **kwargs):
        raise AssertionError("work started before the outputs were checked")

    # (the modules are imported at the top: a module imported while these are patched would keep the patch)
    monkeypatch.setattr(vggnets.models.builders, "build", must_not_run)
    monkeypatch.setattr(vggnets.convert.files, "load_state_dict_file", must_not_run)
    monkeypatch.setattr(vggnets.bench.runner, "run_benchmark", must_not_run)
    monkeypatch.setattr(vggnets.training, "make_loaders", must_not_run)


@pytest.mark.parametrize("name", COMMANDS)
def test_an_output_under_a_file_fails_in_one_line_before_any_work(
    name, weights, tree, small_vgg11_file, tmp_path, capsys, no_work
):
    if name == "export-onnx":
        pytest.importorskip("onnxscript")
        pytest.importorskip("onnxruntime")
    blocker = tmp_path / "a-file"
    blocker.write_text("x")
    code, out, err = run(capsys, *command(name, blocker, weights, tree, small_vgg11_file))
    assert code == 2 and out == ""
    assert (
        len(err.strip().splitlines()) == 1
        and "cannot write" in err
        and "a-file is a file, not a folder" in err
    )


@pytest.mark.parametrize("name", ["export-torchscript", "features", "evaluate", "train"])
def test_a_folder_without_write_permission_says_permission_denied(
    name, weights, tree, small_vgg11_file, unwritable_folder, capsys, no_work
):
    code, out, err = run(capsys, *command(name, unwritable_folder, weights, tree, small_vgg11_file))
    assert code == 2 and out == "" and len(err.strip().splitlines()) == 1
    assert "permission denied" in err and "choose a folder you can write to" in err


def test_onnx_export_reports_an_unwritable_file_as_such(weights, tmp_path, capsys, monkeypatch):
    pytest.importorskip("onnxscript")
    pytest.importorskip("onnxruntime")

    def denied(module, args, f=None, **kwargs):
        raise PermissionError(
            13, "Permission denied", str(f) if f else str(tmp_path / ".m.onnx.partial.onnx")
        )

    monkeypatch.setattr(torch.onnx, "export", denied)
    code, out, err = run(capsys, "export", *weights, "--format", "onnx", "-o", tmp_path / "m.onnx")
    assert code == 2 and out == "" and len(err.strip().splitlines()) == 1
    assert "ONNX export failed" not in err and "PermissionError" not in err
    assert f"cannot write {tmp_path / 'm.onnx'}: permission denied" in err
    assert not (tmp_path / "m.onnx").exists() and leftovers(tmp_path) == []


@pytest.fixture
def full_disk(monkeypatch):
    """The disk fills up while the results are written: the writer's fsync fails (after the pre-flight checks)."""

    def no_space(fd):
        raise FULL

    monkeypatch.setattr(os, "fsync", no_space)


@pytest.mark.parametrize("name", ["export-safetensors", "features", "convert", "evaluate", "train"])
def test_a_full_disk_at_the_end_is_one_line_and_leaves_nothing_half_written(
    name, weights, tree, small_vgg11_file, tmp_path, capsys, full_disk
):
    out_dir = tmp_path / "out"
    code, out, err = run(capsys, *command(name, out_dir, weights, tree, small_vgg11_file))
    assert code == 2, err
    last = err.strip().splitlines()[-1]
    assert "cannot write" in last and "no space left on device" in last and "free some space" in last
    written = [p for p in out_dir.rglob("*") if p.is_file()]
    assert written == [] and leftovers(out_dir) == []
    if name == "evaluate":  # the metrics, which took the time, are printed before the file is written
        assert "| vgg11 | center | 256 |" in out


def test_benchmark_prints_its_table_before_a_full_disk_and_records_what_produced_it(
    tmp_path, capsys, monkeypatch
):
    import vggnets.inference.machine as machine

    real_cpu = machine.describe_cpu()
    no_bf16 = {**real_cpu, "flags": {**real_cpu["flags"], "avx512_bf16": False, "amx_bf16": False}}
    monkeypatch.setattr(machine, "describe_cpu", lambda: no_bf16)
    # a busy machine: even fp32 is too slow to time within the budget; bf16 has no instructions here
    monkeypatch.setattr(
        machine, "matmul_peaks", lambda: {"fp32_gflops": None, "bf16_gflops": None, "int8_gops": 9.0}
    )
    report = tmp_path / "bench.json"
    code, out, err = run(capsys, *BENCH, "--quiet", "--output", report)
    assert code == 0, err
    assert "fp32 not measured (a 2048^3 product would take over 2 s here: the machine may be busy)" in out
    assert "bf16 not measured (this CPU has no AVX-512 BF16 or AMX" in out
    assert "no hardware support" not in out + err and "REFERENCE" not in out + err
    produced_by = json.loads(report.read_text())["produced_by"]
    assert produced_by["vggnets"] == __version__ and produced_by["command"] == "benchmark"
    assert produced_by["options"]["width"] == 0.0625

    def no_space(fd):
        raise FULL

    monkeypatch.setattr(os, "fsync", no_space)
    code, out, err = run(capsys, *BENCH, "--quiet", "--no-peaks", "--output", report, "--force")
    assert code == 2 and "| baseline |" in out and "| ours fp32 |" in out
    assert len(err.strip().splitlines()) == 1 and "no space left on device" in err
    assert (
        json.loads(report.read_text())["produced_by"]["options"]["no_peaks"] is False
    )  # the old file, whole
    assert leftovers(tmp_path) == []


def test_features_never_replaces_the_csv_beside_a_npy_without_force(weights, tmp_path, capsys):
    target, sidecar = tmp_path / "feats.npy", tmp_path / "feats.csv"
    sidecar.write_text("mine\n")
    argv = ["features", CAT, *weights, "--device", "cpu", "-q", "-o", target]
    code, out, err = run(capsys, *argv)
    assert code == 2 and f"{sidecar} already exists; pass --force" in err
    assert sidecar.read_text() == "mine\n" and not target.exists()
    assert run(capsys, *argv, "--force")[0] == 0
    assert sidecar.read_text().startswith("index,file,label") and target.exists()


def test_evaluate_keeps_an_existing_output_without_force_and_records_what_produced_it(
    weights, tree, small_vgg11_file, tmp_path, capsys
):
    target = tmp_path / "results.json"
    target.write_text("precious\n")
    argv = ["evaluate", tree / "val", *weights, "--workers", "0", "-q", "--output", target]
    code, out, err = run(capsys, *argv)
    assert code == 2 and out == "" and "--force" in err and "overwrite=True" not in err.split("(")[0]
    assert target.read_text() == "precious\n"
    assert run(capsys, *argv, "--force")[0] == 0
    doc = json.loads(target.read_text())
    assert doc["produced_by"]["vggnets"] == __version__ and doc["produced_by"]["command"] == "evaluate"
    assert doc["produced_by"]["options"]["protocol"] == "center"
    assert doc["models"] == [{"model": "vgg11", "weights": str(small_vgg11_file)}]


def test_features_files_record_what_produced_them(weights, small_vgg11_file, tmp_path, capsys):
    pq = pytest.importorskip("pyarrow.parquet")
    for suffix in (".pt", ".parquet"):
        out = tmp_path / f"feats{suffix}"
        assert run(capsys, "features", CAT, CUP, *weights, "--device", "cpu", "-q", "-o", out)[0] == 0
        if suffix == ".pt":
            meta = torch.load(out, weights_only=True)
        else:
            meta = json.loads(pq.read_schema(out).metadata[b"vggnets"])
        assert meta["weights"] == str(small_vgg11_file) and meta["layer"] == "relu7"
        assert meta["produced_by"]["vggnets"] == __version__ and meta["produced_by"]["command"] == "features"


def test_exported_and_converted_files_record_what_produced_them(weights, small_vgg11_file, tmp_path, capsys):
    from safetensors import safe_open

    exported = tmp_path / "m.safetensors"
    assert run(capsys, "export", *weights, "--format", "safetensors", "-o", exported)[0] == 0
    converted = tmp_path / "c.safetensors"
    assert run(capsys, "convert", small_vgg11_file, converted)[0] == 0
    for path, command_name in ((exported, "export"), (converted, "convert")):
        with safe_open(str(path), "pt") as f:
            meta = f.metadata()
        assert meta["library"] == f"vggnets {__version__}" and meta["model"] == "vgg11"
        assert json.loads(meta["produced_by"])["command"] == command_name
        assert vggnets.vgg11(weights=path).num_classes == 10  # still an ordinary weights file
    with safe_open(str(exported), "pt") as f:
        assert f.metadata()["weights"] == str(small_vgg11_file)
    with safe_open(str(converted), "pt") as f:
        assert f.metadata()["source"] == small_vgg11_file.name

    scripted = tmp_path / "m.pt"
    assert run(capsys, "export", *weights, "--format", "torchscript", "--no-verify", "-o", scripted)[0] == 0
    extra = {"vggnets.json": ""}
    torch.jit.load(str(scripted), _extra_files=extra)
    meta = json.loads(extra["vggnets.json"])
    assert meta["model"] == "vgg11" and json.loads(meta["produced_by"])["options"]["format"] == "torchscript"


def test_onnx_files_record_what_produced_them(weights, tmp_path, capsys):
    onnx = pytest.importorskip("onnx")
    pytest.importorskip("onnxscript")
    out = tmp_path / "m.onnx"
    assert run(capsys, "export", *weights, "--format", "onnx", "--no-verify", "-o", out)[0] == 0
    props = {p.key: p.value for p in onnx.load(str(out), load_external_data=False).metadata_props}
    assert props["library"] == f"vggnets {__version__}" and props["model"] == "vgg11"
    assert json.loads(props["produced_by"])["command"] == "export"


def test_train_force_replaces_leftovers_but_never_checkpoints(tree, tmp_path, capsys):
    out = tmp_path / "run"
    out.mkdir()
    (out / "classes.txt").write_text("old\n")
    argv = ["train", tree, "--model", "vgg11", *TRAIN, "--output", out]
    code, _, err = run(capsys, *argv)
    assert (
        code == 2
        and "classes.txt" in err
        and "--force" in err
        and (out / "classes.txt").read_text() == "old\n"
    )
    code, _, err = run(capsys, *argv, "--force")
    assert code == 0, err
    assert (out / "classes.txt").read_text() == "3\n7\n"
    last = torch.load(out / "last.pth", weights_only=True)
    assert last["extra"]["produced_by"]["vggnets"] == __version__
    assert last["extra"]["produced_by"]["command"] == "train"

    before = {p.name: p.read_bytes() for p in out.iterdir() if p.is_file()}
    code, _, err = run(capsys, *argv, "--force")
    assert code == 2 and "already holds a training run" in err and "--resume" in err
    assert {p.name: p.read_bytes() for p in out.iterdir() if p.is_file()} == before
    code, _, err = run(
        capsys, *argv[:-4], "--epochs", "2", "--output", out, "--resume"
    )  # --resume still continues
    assert code == 0, err
    assert torch.load(out / "last.pth", weights_only=True)["epoch"] == 2


def test_multicrop_progress_counts_network_inputs_as_they_run(weights, tree, capsys, monkeypatch):
    import tqdm

    import vggnets.cli.evaluate as cli_evaluate

    steps: list[float] = []
    real_update = tqdm.tqdm.update

    def update(self, n=1):
        steps.append(n)
        return real_update(self, n)

    monkeypatch.setattr(tqdm.tqdm, "update", update)
    monkeypatch.setattr(cli_evaluate, "show_progress", lambda args: True)
    argv = ["evaluate", tree / "val", *weights, "--protocol", "multicrop", "--scales", "224", "-b", "16"]
    code, out, err = run(capsys, *argv, "--workers", "0")
    assert code == 0, err
    # 2 images x 25 crops x 2 flips at one scale = 100 network inputs, counted batch by batch (at most 16 at once)
    assert "100/100" in err and "input/s" in err and "2/2 images" in err
    assert sum(steps) == 100 and max(steps) <= 16


def test_a_double_star_pattern_without_recursive_says_it_needs_it(weights, tmp_path, capsys):
    deep = tmp_path / "photos" / "2024" / "june"
    deep.mkdir(parents=True)
    shutil.copy(CAT, deep / "cat.png")
    pattern = f"{tmp_path}/photos/**/*.png"
    code, out, err = run(capsys, "classify", pattern, *weights, "--device", "cpu", "-q")
    assert code == 1 and "`**` needs -r/--recursive" in out
    code, out, err = run(capsys, "classify", pattern, "-r", *weights, "--device", "cpu", "-q")
    assert code == 0 and "cat.png" in out


@pytest.mark.parametrize("cmd", ["export", "features", "classify"])
def test_a_model_without_published_weights_is_told_to_pass_weights_file(cmd, tmp_path, capsys):
    argv = {
        "export": ["export", "--format", "safetensors", "-o", tmp_path / "x.safetensors"],
        "features": ["features", CAT, "-o", tmp_path / "x.npy"],
        "classify": ["classify", CAT],
    }[cmd]
    code, out, err = run(capsys, *argv, "--model", "vgg11_lrn")
    assert code == 2 and "--weights FILE" in err and "weights='" not in err and "weights=None" not in err


def test_a_streamed_output_that_fills_the_disk_keeps_the_finished_results(
    weights, tmp_path, capsys, monkeypatch
):
    target = tmp_path / "labels.jsonl"
    real_open = open

    class FillsAfterOneLine:
        def __init__(self, file) -> None:
            self.file, self.lines = file, 0

        def write(self, text: str) -> int:
            if self.lines:
                raise FULL
            self.lines += text.count("\n")
            return self.file.write(text)

        def flush(self) -> None:
            self.file.flush()

        def close(self) -> None:
            self.file.close()

        @property
        def closed(self) -> bool:
            return self.file.closed

    def opening(file, *args, **kwargs):
        opened = real_open(file, *args, **kwargs)
        return FillsAfterOneLine(opened) if str(file) == str(target) else opened

    monkeypatch.setattr("builtins.open", opening)
    argv = [
        "classify",
        CAT,
        CUP,
        *weights,
        "--device",
        "cpu",
        "-q",
        "-b",
        "1",
        "--format",
        "jsonl",
        "-o",
        target,
    ]
    code, out, err = run(capsys, *argv)
    assert code == 2 and len(err.strip().splitlines()) == 1
    assert "no space left on device" in err and "keeps the results written before" in err
    (line,) = target.read_text().splitlines()
    assert json.loads(line)["file"] == str(CAT)

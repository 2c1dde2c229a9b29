"""Units, parts and resumable runs in one process (vggnets.scale: shards, parts, jobs; ``vggnets features``)."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch

from vggnets.cli import main
from vggnets.errors import VggnetsError
from vggnets.scale import records
from vggnets.scale.jobs import Codec
from vggnets.scale.parts import Parts, describe_files, parts_folder
from vggnets.scale.shards import by_unit, make_units, shard, unit_size

REAL = records.EMBEDDINGS


def features(folder: Path, weights: Path, output: Path, *extra: object) -> list[str]:
    return ["features", str(folder), "-r", "--model", "vgg11", "--weights", str(weights), "--device", "cpu",
            "-q", "-b", "2", "--unit-size", "4", "-o", str(output), *map(str, extra)]  # fmt: skip


def test_units_are_multiples_of_the_batch_and_shared_round_robin():
    assert unit_size(None, 16) == 256 and unit_size(5, 2) == 6 and unit_size(4, 4) == 4
    units = make_units(14, 4)
    assert [(u.start, u.stop) for u in units] == [(0, 4), (4, 8), (8, 12), (12, 14)]
    assert units[1].name == "unit-000001-of-000004" and make_units(0, 4) == []
    assert [u.index for u in shard(units, 0, 3)] == [0, 3] and [u.index for u in shard(units, 2, 3)] == [2]
    assert list(by_unit(units[:2], range(8))) == [[0, 1, 2, 3], [4, 5, 6, 7]]
    with pytest.raises(ValueError):
        list(by_unit(units[:2], range(6)))


def test_parts_refuse_another_run_and_say_why(tmp_path):
    folder = parts_folder(tmp_path / "out.npy")
    assert folder.name == "out.npy.parts"
    first = {"command": "features", "--layer": "relu7", "inputs": describe_files([])}
    parts = Parts.open(folder, first, marker=".json")
    unit = make_units(3, 2)[0]
    parts.commit(unit, [(".json", lambda tmp: tmp.write_text("{}"))])
    assert parts.committed(make_units(3, 2)) == [unit]
    assert Parts.open(folder, first, marker=".json").committed([unit]) == [unit]  # same run: kept
    with pytest.raises(VggnetsError, match=r"--layer: \"relu7\" then, \"pool5\" now.*--force"):
        Parts.open(folder, {**first, "--layer": "pool5"}, marker=".json")
    restarted = Parts.open(folder, {**first, "--layer": "pool5"}, marker=".json", restart=True)
    assert restarted.committed([unit]) == []
    with pytest.raises(ValueError):
        parts.commit(unit, [(".npy", lambda tmp: None)])  # the marker must come last


def interrupted_after(count: int, counter: list[int]) -> Codec:
    """The features codec, interrupted (Ctrl-C) after ``count`` committed units; ``counter`` counts the writes."""

    def write(parts, unit, payload):
        if len(counter) == count:
            raise KeyboardInterrupt
        REAL.write(parts, unit, payload)
        counter.append(unit.index)

    return Codec(write, REAL.read)


def test_features_resume_after_ctrl_c_with_the_same_output(
    folder, small_vgg11_file, tmp_path, capsys, monkeypatch
):
    reference = tmp_path / "ref.npy"
    assert main(features(folder, small_vgg11_file, reference)) == 1
    assert not parts_folder(reference).exists()  # removed after the merge
    target = tmp_path / "out.npy"
    first: list[int] = []
    monkeypatch.setattr(records, "EMBEDDINGS", interrupted_after(2, first))
    assert main(features(folder, small_vgg11_file, target)) == 130
    assert not target.exists() and len(list(parts_folder(target).glob("*.json"))) == 3  # two units + manifest
    assert "rerun the command to resume" in capsys.readouterr().err
    again: list[int] = []
    monkeypatch.setattr(records, "EMBEDDINGS", interrupted_after(99, again))
    assert main(features(folder, small_vgg11_file, target, "--keep-parts")) == 1
    err = capsys.readouterr().err
    assert (
        "resumed: 2 of 4 units" in err
        and sorted(first + again) == [0, 1, 2, 3]
        and not set(first) & set(again)
    )
    assert np.array_equal(np.load(target), np.load(reference))
    assert target.with_suffix(".csv").read_text() == reference.with_suffix(".csv").read_text()
    assert parts_folder(target).is_dir()  # --keep-parts


def test_features_rerun_with_other_options_is_refused(
    folder, small_vgg11_file, tmp_path, capsys, monkeypatch
):
    target = tmp_path / "out.parquet"
    monkeypatch.setattr(records, "EMBEDDINGS", interrupted_after(1, []))
    assert main(features(folder, small_vgg11_file, target)) == 130
    monkeypatch.undo()
    capsys.readouterr()
    assert main(features(folder, small_vgg11_file, target, "--layer", "pool5")) == 2
    err = capsys.readouterr().err
    assert '--layer: "relu7" then, "pool5" now' in err and "--force" in err and not target.exists()
    assert main(features(folder, small_vgg11_file, target, "--layer", "pool5", "--force")) == 1
    pq = pytest.importorskip("pyarrow.parquet")
    table = pq.read_table(target)
    assert table.num_rows == 13 and pq.ParquetFile(target).num_row_groups == 4  # one row group per unit
    meta = json.loads(table.schema.metadata[b"vggnets"])
    assert meta["layer"] == "pool5" and meta["produced_by"]["options"]["unit_size"] == 4


def test_features_engine_option_runs_the_layer_descriptor(folder, small_vgg11_file, tmp_path, capsys):
    eager, engine = tmp_path / "eager.pt", tmp_path / "engine.pt"
    assert main(features(folder, small_vgg11_file, eager, "--layer", "pool5")) == 1
    assert main(features(folder, small_vgg11_file, engine, "--layer", "pool5", "--precision", "fp32",
                         "--compile", "none")) == 1  # fmt: skip
    a, b = (torch.load(p, weights_only=True) for p in (eager, engine))
    assert a["files"] == b["files"] and b["features"].shape == (13, 64)
    assert torch.allclose(
        a["features"], b["features"], atol=0.02
    )  # uint8 crops: one grey level apart at most


@pytest.fixture
def as_torchrun(monkeypatch):
    """This process as the only process torchrun started (the distributed path, without a process group)."""
    for name, value in {"RANK": "0", "WORLD_SIZE": "1", "LOCAL_RANK": "0", "LOCAL_WORLD_SIZE": "1"}.items():
        monkeypatch.setenv(name, value)


def classify(folder: Path, weights: Path, *extra: object) -> list[str]:
    return ["classify", str(folder), "-r", "--model", "vgg11", "--weights", str(weights), "--device", "cpu",
            "-q", "-b", "2", "--unit-size", "4", "-k", "3", *map(str, extra)]  # fmt: skip


@pytest.mark.parametrize("fmt", ["table", "jsonl", "json"])  # csv: the next test
def test_classify_through_units_writes_what_one_process_writes(
    fmt, folder, small_vgg11_file, tmp_path, capsys, monkeypatch
):
    target = tmp_path / f"out.{fmt}"
    assert main(classify(folder, small_vgg11_file, "--format", fmt, "-o", target)) == 1
    expected = target.read_bytes()
    _, err = capsys.readouterr()
    target.unlink()
    for name, value in {"RANK": "0", "WORLD_SIZE": "1", "LOCAL_RANK": "0"}.items():
        monkeypatch.setenv(name, value)
    assert main(classify(folder, small_vgg11_file, "--format", fmt, "-o", target)) == 0  # torchrun: 0
    assert target.read_bytes() == expected and not parts_folder(target).exists()
    assert capsys.readouterr().err == err and "1 of 14 inputs failed" in err
    assert main(classify(folder, small_vgg11_file, "--format", fmt)) == 0
    on_stdout = capsys.readouterr().out
    monkeypatch.delenv("RANK")
    main(classify(folder, small_vgg11_file, "--format", fmt))
    assert on_stdout == capsys.readouterr().out


def test_classify_resumes_committed_units_and_refuses_another_run(
    folder, small_vgg11_file, tmp_path, capsys, monkeypatch, as_torchrun
):
    real, written = records.PREDICTIONS, []

    def write(parts, unit, payload):
        if len(written) == 2:
            raise KeyboardInterrupt
        real.write(parts, unit, payload)
        written.append(unit.index)

    target = tmp_path / "out.csv"
    monkeypatch.setattr(records, "PREDICTIONS", Codec(write, real.read))
    assert main(classify(folder, small_vgg11_file, "--format", "csv", "-o", target)) == 130
    assert not target.exists() and len(list(parts_folder(target).glob("unit-*.jsonl"))) == 2
    monkeypatch.setattr(records, "PREDICTIONS", real)
    capsys.readouterr()
    assert main(classify(folder, small_vgg11_file, "--format", "csv", "-o", target, "-k", "2")) == 2
    assert "--topk: 3 then, 2 now" in capsys.readouterr().err and not target.exists()
    assert main(classify(folder, small_vgg11_file, "--format", "csv", "-o", target, "--keep-parts")) == 0
    assert "resumed: 2 of 4 units" in capsys.readouterr().err
    merged = target.read_text()
    monkeypatch.delenv("RANK")
    assert main(classify(folder, small_vgg11_file, "--format", "csv")) == 1
    assert capsys.readouterr().out == merged and parts_folder(target).is_dir()


def test_metric_states_round_trip_and_add_up():
    from vggnets.evaluation.metrics import ClassificationMetrics

    torch.manual_seed(0)
    scores, targets = torch.randn(12, 7), torch.randint(0, 7, (12,))
    whole, halves = ClassificationMetrics(7), [ClassificationMetrics(7), ClassificationMetrics(7)]
    whole.update(scores, targets)
    whole.add_failed(3)
    halves[0].update(scores[:5], targets[:5])
    halves[1].update(scores[5:], targets[5:])
    halves[1].add_failed(3)
    merged = ClassificationMetrics.from_state(halves[0].state())
    merged.merge(ClassificationMetrics.from_state(halves[1].state()))
    assert merged.summary() == whole.summary() and torch.equal(merged.confusion(), whole.confusion())
    with pytest.raises(ValueError):
        ClassificationMetrics.from_state({**whole.state(), "num_classes": 5})


def test_the_engine_cache_entry_is_built_once_by_processes_that_start_together(tmp_path, monkeypatch):
    import threading
    import time

    import torch._inductor

    from vggnets.inference import compiled
    from vggnets.inference.plan import EngineInfo

    monkeypatch.setenv("VGGNETS_ENGINE_CACHE", str(tmp_path / "engine"))
    both_looked = threading.Barrier(2)
    real_path, built = compiled.artifact_path, []

    def artifact_path(*args, **kwargs):
        path = real_path(*args, **kwargs)
        both_looked.wait(timeout=60)  # neither has built anything yet: both would build without the lock
        return path

    def build_package(module, example, path):
        built.append(path)
        time.sleep(0.5)  # a long build: the other process arrives meanwhile
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(b"package")
        return path

    monkeypatch.setattr(compiled, "artifact_path", artifact_path)
    monkeypatch.setattr(compiled, "build_package", build_package)
    monkeypatch.setattr(torch._inductor, "aoti_load_package", lambda path: f"runner of {Path(path).name}")
    module, example = torch.nn.Linear(2, 2), torch.zeros(1, 2)
    infos = [EngineInfo("fp32", "fp32", "aot", "aot", "cpu", (1,)) for _ in range(2)]
    runners: list = []
    threads = [
        threading.Thread(
            target=lambda i=i: runners.append(compiled.aot_runner(module, example, infos[i], cache=True))
        )
        for i in range(2)
    ]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert len(built) == 1 and len(runners) == 2 and len(set(runners)) == 1
    assert sorted(info.cache for info in infos) == ["hit", "miss"]
    assert (
        compiled.lock_path(built[0]).exists() and list(built[0].parent.iterdir()) == built
    )  # only the package

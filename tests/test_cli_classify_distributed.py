"""``torchrun --nproc-per-node 2 -m vggnets classify``: 2 gloo processes on the CPU give the bytes one process writes;
a rank killed with SIGKILL loses at most its unit, and a rerun (or torchrun's restart) completes the same output."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from vggnets.cli import main
from vggnets.scale.parts import parts_folder

#: Run by torchrun instead of ``-m vggnets``: rank 1 is killed with SIGKILL while it computes its third unit (in the
#: first attempt only, so that torchrun --max-restarts brings the group back).
KILLER = """\
import os, signal, sys
from vggnets.scale import records
from vggnets.scale.jobs import Codec

real, seen = records.PREDICTIONS, []

def write(parts, unit, payload):
    seen.append(unit.index)
    if os.environ["RANK"] == "1" and len(seen) == 3 and os.environ.get("TORCHELASTIC_RESTART_COUNT", "0") == "0":
        os.kill(os.getpid(), signal.SIGKILL)
    real.write(parts, unit, payload)

records.PREDICTIONS = Codec(write, real.read)
from vggnets.cli import main
sys.exit(main(sys.argv[1:]))
"""


def options(weights: Path, *extra: object) -> list[str]:
    return ["imgs", "-r", "--model", "vgg11", "--weights", str(weights), "--device", "cpu", "-q", "-b", "2",
            "--unit-size", "2", "-k", "3", *map(str, extra)]  # fmt: skip


def single(tmp_path: Path, weights: Path, *extra: object) -> int:
    """One process, in this one (paths relative to ``tmp_path``, as torchrun's)."""
    here = os.getcwd()
    os.chdir(tmp_path)
    try:
        return main(["classify", *options(weights, *extra)])
    finally:
        os.chdir(here)


def test_two_processes_write_the_csv_of_one_process(torchrun, folder, small_vgg11_file, tmp_path, capsys):
    assert single(tmp_path, small_vgg11_file, "--format", "csv", "-o", "one.csv") == 1
    done = torchrun(tmp_path, "classify", *options(small_vgg11_file, "--format", "csv", "-o", "two.csv"))
    assert done.returncode == 0, done.stderr
    assert (tmp_path / "two.csv").read_bytes() == (tmp_path / "one.csv").read_bytes()
    assert done.stderr.count("broken.jpg: not an image file") == 1  # rank 0 reports, once
    assert "1 of 14 inputs failed" in done.stderr and done.stdout == ""
    assert not parts_folder(tmp_path / "two.csv").exists()


@pytest.mark.slow
@pytest.mark.parametrize("fmt", ["table", "jsonl", "json"])
def test_every_format_and_stdout_equal_one_process(torchrun, fmt, folder, small_vgg11_file, tmp_path, capsys):
    target = tmp_path / f"out.{fmt}"
    assert single(tmp_path, small_vgg11_file, "--format", fmt, "-o", target.name) == 1
    expected = target.read_bytes()
    assert single(tmp_path, small_vgg11_file, "--format", fmt) == 1
    on_stdout = capsys.readouterr().out
    target.unlink()  # the same path again: jsonl and json record the command's options, --output included
    done = torchrun(tmp_path, "classify", *options(small_vgg11_file, "--format", fmt, "-o", target.name))
    assert done.returncode == 0, done.stderr
    assert target.read_bytes() == expected
    printed = torchrun(tmp_path, "classify", *options(small_vgg11_file, "--format", fmt))
    assert printed.returncode == 0 and printed.stdout == on_stdout


def committed(target: Path) -> dict[str, int]:
    return {p.name: p.stat().st_mtime_ns for p in parts_folder(target).glob("unit-*.jsonl")}


@pytest.mark.slow
def test_a_killed_rank_loses_at_most_its_unit_and_a_rerun_completes(
    torchrun, folder, small_vgg11_file, tmp_path
):
    assert single(tmp_path, small_vgg11_file, "--format", "json", "-o", "out.json", "--keep-parts") == 1
    expected = (tmp_path / "out.json").read_bytes()  # json records the options: the same ones
    (tmp_path / "out.json").unlink()
    script = tmp_path / "killer.py"
    script.write_text(KILLER)
    argv = ["classify", *options(small_vgg11_file, "--format", "json", "-o", "out.json", "--keep-parts")]
    killed = torchrun(tmp_path, *argv, script=script)
    assert killed.returncode != 0 and not (tmp_path / "out.json").exists()
    before = committed(tmp_path / "out.json")
    assert {"unit-000001-of-000007.jsonl", "unit-000003-of-000007.jsonl"} <= set(before)  # rank 1's first two
    assert "unit-000005-of-000007.jsonl" not in before  # the unit it was computing is lost, nothing more
    rerun = torchrun(tmp_path, *argv)
    assert rerun.returncode == 0, rerun.stderr
    assert f"resumed: {len(before)} of 7 units" in rerun.stderr
    assert (tmp_path / "out.json").read_bytes() == expected
    after = committed(tmp_path / "out.json")
    assert len(after) == 7 and all(after[name] == mtime for name, mtime in before.items())  # not redone


@pytest.mark.slow
def test_torchrun_max_restarts_brings_the_group_back(torchrun, folder, small_vgg11_file, tmp_path):
    assert single(tmp_path, small_vgg11_file, "--format", "csv", "-o", "out.csv") == 1
    expected = (tmp_path / "out.csv").read_bytes()
    (tmp_path / "out.csv").unlink()
    script = tmp_path / "killer.py"
    script.write_text(KILLER)
    argv = ["classify", *options(small_vgg11_file, "--format", "csv", "-o", "out.csv")]
    done = torchrun(tmp_path, *argv, script=script, restarts=1)
    assert done.returncode == 0, done.stderr
    assert "resumed: " in done.stderr and (tmp_path / "out.csv").read_bytes() == expected


@pytest.mark.slow
def test_the_engine_is_built_once_and_gives_the_output_of_one_process(
    torchrun, folder, small_vgg11_file, tmp_path, monkeypatch
):
    monkeypatch.setenv("VGGNETS_ENGINE_CACHE", str(tmp_path / "engine"))
    engine = ("--precision", "fp32", "--compile", "aot", "--format", "csv")
    done = torchrun(tmp_path, "classify", *options(small_vgg11_file, *engine, "-o", "two.csv"))
    assert done.returncode == 0, done.stderr
    assert [p.suffix for p in (tmp_path / "engine").iterdir()] == [".pt2"]  # one package, built by one rank
    assert single(tmp_path, small_vgg11_file, *engine, "-o", "one.csv") == 1  # loads it
    assert (tmp_path / "two.csv").read_bytes() == (tmp_path / "one.csv").read_bytes()

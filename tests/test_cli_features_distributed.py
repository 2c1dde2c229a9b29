"""``torchrun --nproc-per-node 2 -m vggnets features``: 2 gloo processes on the CPU write the rows one process writes
(same files and labels in the same order, the same matrix), merged from the parts on disk; a killed rank resumes."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pytest
import torch

from vggnets.cli import main
from vggnets.scale.parts import parts_folder

#: Rank 1 is killed with SIGKILL while it computes its second unit.
KILLER = """\
import os, signal, sys
from vggnets.scale import records
from vggnets.scale.jobs import Codec

real, seen = records.EMBEDDINGS, []

def write(parts, unit, payload):
    seen.append(unit.index)
    if os.environ["RANK"] == "1" and len(seen) == 2:
        os.kill(os.getpid(), signal.SIGKILL)
    real.write(parts, unit, payload)

records.EMBEDDINGS = Codec(write, real.read)
from vggnets.cli import main
sys.exit(main(sys.argv[1:]))
"""


def options(weights: Path, output: str, *extra: object) -> list[str]:
    return ["features", "imgs", "-r", "--model", "vgg11", "--weights", str(weights), "--device", "cpu", "-q",
            "-b", "2", "--unit-size", "2", "-o", output, *map(str, extra)]  # fmt: skip


def single(tmp_path: Path, argv: list[str]) -> int:
    here = os.getcwd()
    os.chdir(tmp_path)
    try:
        return main(argv)
    finally:
        os.chdir(here)


def test_two_processes_write_the_npy_of_one_process(torchrun, folder, small_vgg11_file, tmp_path):
    assert single(tmp_path, options(small_vgg11_file, "one.npy")) == 1
    done = torchrun(tmp_path, *options(small_vgg11_file, "two.npy"))
    assert done.returncode == 0, done.stderr
    one, two = np.load(tmp_path / "one.npy"), np.load(tmp_path / "two.npy")
    assert two.shape == (13, 512) and np.allclose(one, two, atol=1e-6, rtol=0)
    assert (tmp_path / "two.csv").read_text() == (
        tmp_path / "one.csv"
    ).read_text()  # files and labels, in order
    assert done.stderr.count("skipped imgs/c1/broken.jpg") == 1 and "wrote 13 x 512" in done.stdout
    assert not parts_folder(tmp_path / "two.npy").exists()


@pytest.mark.slow
def test_parquet_and_pt_equal_one_process(torchrun, folder, small_vgg11_file, tmp_path):
    pq = pytest.importorskip("pyarrow.parquet")
    extra = ("--layer", "pool5", "--l2norm")
    assert single(tmp_path, options(small_vgg11_file, "one.parquet", *extra)) == 1
    assert single(tmp_path, options(small_vgg11_file, "one.pt", *extra)) == 1
    for name in ("two.parquet", "two.pt"):
        done = torchrun(tmp_path, *options(small_vgg11_file, name, *extra))
        assert done.returncode == 0, done.stderr
    one, two = pq.read_table(tmp_path / "one.parquet"), pq.read_table(tmp_path / "two.parquet")
    assert one["file"].to_pylist() == two["file"].to_pylist() and one["label"] == two["label"]
    matrix = np.stack(two["features"].to_numpy(zero_copy_only=False))
    assert np.allclose(np.stack(one["features"].to_numpy(zero_copy_only=False)), matrix, atol=1e-6)
    assert pq.ParquetFile(tmp_path / "two.parquet").num_row_groups == 7  # one per unit
    a, b = (torch.load(tmp_path / n, weights_only=True) for n in ("one.pt", "two.pt"))
    assert (
        a["files"] == b["files"]
        and a["labels"] == b["labels"]
        and torch.allclose(a["features"], b["features"])
    )
    assert np.allclose(b["features"].numpy(), matrix, atol=1e-6)


@pytest.mark.slow
def test_a_killed_rank_then_a_rerun_gives_the_same_matrix(torchrun, folder, small_vgg11_file, tmp_path):
    assert single(tmp_path, options(small_vgg11_file, "one.npy")) == 1
    script = tmp_path / "killer.py"
    script.write_text(KILLER)
    killed = torchrun(tmp_path, *options(small_vgg11_file, "two.npy"), script=script)
    assert killed.returncode != 0 and not (tmp_path / "two.npy").exists()
    markers = {p.name for p in parts_folder(tmp_path / "two.npy").glob("unit-*.json")}
    assert "unit-000001-of-000007.json" in markers and "unit-000003-of-000007.json" not in markers
    rerun = torchrun(tmp_path, *options(small_vgg11_file, "two.npy"))
    assert rerun.returncode == 0, rerun.stderr
    assert f"resumed: {len(markers)} of 7 units" in rerun.stderr
    assert np.allclose(np.load(tmp_path / "one.npy"), np.load(tmp_path / "two.npy"), atol=1e-6, rtol=0)
    assert (tmp_path / "two.csv").read_text() == (tmp_path / "one.csv").read_text()

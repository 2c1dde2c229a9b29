"""vggnets.training.checkpoints: atomic saves, missing files, RNG states, state_dict comparison."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

import vggnets
import vggnets.training as T


def test_save_checkpoint_is_atomic(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    path = tmp_path / "last.pth"
    T.save_checkpoint(path, {"v": torch.ones(3)})

    def broken_save(obj, f, *args, **kwargs):
        f.write(b"partial")
        raise OSError("disk full")

    monkeypatch.setattr(torch, "save", broken_save)
    with pytest.raises(OSError, match="disk full"):
        T.save_checkpoint(path, {"v": torch.zeros(3)})
    with pytest.raises(OSError):
        T.save_checkpoint(tmp_path / "new.pth", {"v": torch.zeros(3)})
    monkeypatch.undo()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["last.pth"]
    assert torch.equal(T.load_checkpoint(path)["v"], torch.ones(3))


def test_rng_state_roundtrip() -> None:
    import random

    import numpy as np

    state = T.rng_state()
    first = (torch.rand(3), np.random.rand(3), random.random())
    T.set_rng_state(state)
    second = (torch.rand(3), np.random.rand(3), random.random())
    assert torch.equal(first[0], second[0]) and np.array_equal(first[1], second[1]) and first[2] == second[2]


def test_missing_checkpoint(tmp_path: Path) -> None:
    with pytest.raises(vggnets.errors.CheckpointError):
        T.load_checkpoint(tmp_path / "nope.pth")

"""vggnets.io.record: the metadata record inside a checkpoint, invisible to torchvision's load_state_dict."""

from __future__ import annotations

import json
from pathlib import Path

import torch
from safetensors.torch import save_file

import vggnets
from vggnets.io.record import RECORD_KEY, attach_record, parse_record, read_record, record_of

RECORD = {"architecture": "vgg11", "width": 0.125, "classes": ["cat", "dog"]}


def small_state() -> dict[str, torch.Tensor]:
    return vggnets.vgg11(width=0.125, num_classes=2).state_dict()


def test_a_recorded_state_dict_is_still_a_plain_state_dict(tmp_path: Path):
    path = tmp_path / "best.pth"
    torch.save(attach_record(small_state(), RECORD), path)
    loaded = torch.load(path, weights_only=True)
    assert all(isinstance(v, torch.Tensor) for v in loaded.values())
    vggnets.vgg11(width=0.125, num_classes=2).load_state_dict(loaded)  # strict: nothing extra in the keys
    record = read_record(path)
    assert {k: record[k] for k in RECORD} == RECORD and record["record_version"] == 1


def test_record_inside_a_training_checkpoint_and_safetensors(tmp_path: Path):
    torch.save({"model": attach_record(small_state(), RECORD), "epoch": 3}, tmp_path / "last.pth")
    assert read_record(tmp_path / "last.pth")["classes"] == ["cat", "dog"]
    save_file(small_state(), tmp_path / "w.safetensors", metadata={RECORD_KEY: json.dumps(RECORD)})
    assert read_record(tmp_path / "w.safetensors")["architecture"] == "vgg11"


def test_files_without_a_readable_record(tmp_path: Path):
    plain = tmp_path / "plain.pth"
    torch.save(small_state(), plain)
    assert read_record(plain) is None
    broken = tmp_path / "broken.pth"
    broken.write_bytes(b"PK\x03\x04 not really a zip")
    assert read_record(broken) is None and read_record(tmp_path / "missing.pth") is None
    assert parse_record("not json") is None and parse_record(json.dumps({"record_version": 99})) is None
    assert record_of([1, 2]) is None

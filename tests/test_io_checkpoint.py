"""Tests for vggnets.io.checkpoint: safe reading of .pth/.safetensors files and its error messages."""

from __future__ import annotations

import collections
import hashlib
import io
import os
import pickle
import warnings
from pathlib import Path

import pytest
import torch
from safetensors.torch import save_file

from vggnets.errors import CheckpointError
from vggnets.io import checkpoint
from vggnets.io import download as hub

SRC = Path(__file__).resolve().parents[1] / "src"
NAME = "tiny-0123abcd.pth"


def _state_dict() -> dict[str, torch.Tensor]:
    g = torch.Generator().manual_seed(0)
    return {
        "features.0.weight": torch.randn(64, 3, 3, 3, generator=g),
        "features.0.bias": torch.randn(64, generator=g),
        "classifier.0.weight": torch.randn(256, 256, generator=g),
        "classifier.0.bias": torch.randn(256, generator=g),
    }


def _saved_bytes(obj: object, **kwargs: object) -> bytes:
    buf = io.BytesIO()
    torch.save(obj, buf, **kwargs)
    return buf.getvalue()


PAYLOAD = _saved_bytes(_state_dict())  # about 270 KB
SHA = hashlib.sha256(PAYLOAD).hexdigest()


def _assert_same_tensors(a: dict[str, torch.Tensor], b: dict[str, torch.Tensor]) -> None:
    assert sorted(a) == sorted(b)  # safetensors stores keys sorted
    for key in a:
        assert torch.equal(a[key], b[key]), key


@pytest.fixture(autouse=True)
def isolated_cache(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """Point torch.hub (and so vggnets) at an empty cache under tmp_path."""
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch"))
    monkeypatch.setattr(torch.hub, "_hub_dir", None)
    return hub.cache_dir()


# --- load_state_dict_file ---


@pytest.fixture
def load_calls(monkeypatch: pytest.MonkeyPatch) -> list[dict[str, object]]:
    """Record the keyword arguments vggnets passes to torch.load."""
    calls: list[dict[str, object]] = []
    real_load = torch.load

    def spy(*args: object, **kwargs: object) -> object:
        calls.append(kwargs)
        return real_load(*args, **kwargs)

    monkeypatch.setattr(torch, "load", spy)
    return calls


def test_load_zip_checkpoint_is_memory_mapped(tmp_path: Path, load_calls) -> None:
    path = tmp_path / "w.pth"
    path.write_bytes(PAYLOAD)
    state = checkpoint.load_state_dict_file(path)
    _assert_same_tensors(state, _state_dict())
    assert type(state) is dict
    assert load_calls == [{"map_location": "cpu", "weights_only": True, "mmap": True}]


def test_load_legacy_non_zip_checkpoint(tmp_path: Path, load_calls) -> None:
    path = tmp_path / "legacy.pth"
    torch.save(_state_dict(), path, _use_new_zipfile_serialization=False)
    _assert_same_tensors(checkpoint.load_state_dict_file(path), _state_dict())
    assert load_calls[-1]["mmap"] is False and load_calls[-1]["weights_only"] is True


def test_load_safetensors(tmp_path: Path) -> None:
    path = tmp_path / "w.safetensors"
    save_file(_state_dict(), str(path))
    _assert_same_tensors(checkpoint.load_state_dict_file(path), _state_dict())


@pytest.mark.parametrize(
    "wrap",
    [
        lambda sd: {"state_dict": sd, "epoch": 3},
        lambda sd: {"model": sd, "optimizer": {"lr": 0.01}, "args": [1, 2]},
        lambda sd: {"model_state_dict": sd},
        lambda sd: {f"module.{k}": v for k, v in sd.items()},
        lambda sd: {f"_orig_mod.{k}": v for k, v in sd.items()},
        lambda sd: {"state_dict": {f"module._orig_mod.{k}": v for k, v in sd.items()}},
    ],
    ids=["state_dict", "model", "model_state_dict", "ddp", "compiled", "wrapped-ddp-compiled"],
)
def test_load_unwraps_containers_and_prefixes(tmp_path: Path, wrap) -> None:
    path = tmp_path / "wrapped.pt"
    torch.save(wrap(_state_dict()), path)
    _assert_same_tensors(checkpoint.load_state_dict_file(path), _state_dict())


def test_load_keeps_prefix_not_shared_by_all_keys(tmp_path: Path) -> None:
    sd = {"module.a": torch.zeros(1), "b": torch.ones(1)}
    path = tmp_path / "mixed.pth"
    torch.save(sd, path)
    assert list(checkpoint.load_state_dict_file(path)) == ["module.a", "b"]


def test_load_missing_path(tmp_path: Path) -> None:
    path = tmp_path / "nope.pth"
    with pytest.raises(CheckpointError, match="does not exist") as info:
        checkpoint.load_state_dict_file(path, what="vgg16 weights VGG16_Weights.IMAGENET1K_V1")
    assert str(path) in str(info.value) and "VGG16_Weights.IMAGENET1K_V1" in str(info.value)


def test_load_empty_file(tmp_path: Path) -> None:
    path = tmp_path / "empty.pth"
    path.touch()
    with pytest.raises(CheckpointError, match="empty"):
        checkpoint.load_state_dict_file(path)


def test_load_truncated_checkpoint(tmp_path: Path) -> None:
    path = tmp_path / "half.pth"
    path.write_bytes(PAYLOAD[: len(PAYLOAD) // 2])
    with pytest.raises(CheckpointError, match="truncated") as info:
        checkpoint.load_state_dict_file(path)
    assert str(path) in str(info.value)


def test_load_truncated_legacy_checkpoint(tmp_path: Path) -> None:
    data = _saved_bytes(_state_dict(), _use_new_zipfile_serialization=False)
    path = tmp_path / "half-legacy.pth"
    path.write_bytes(data[: len(data) // 2])
    with pytest.raises(CheckpointError, match="truncated"):
        checkpoint.load_state_dict_file(path)


def test_load_truncated_safetensors(tmp_path: Path) -> None:
    path = tmp_path / "w.safetensors"
    save_file(_state_dict(), str(path))
    path.write_bytes(path.read_bytes()[:1000])
    with pytest.raises(CheckpointError, match="safetensors"):
        checkpoint.load_state_dict_file(path)


@pytest.mark.parametrize(
    ("content", "kind"),
    [
        (b"\xff\xd8\xff\xe0\x00\x10JFIF\x00" + bytes(range(256)) * 4, "JPEG"),
        (b"these are not the weights you are looking for\n", "text file"),
        (b"<!DOCTYPE html><html><body>Please log in</body></html>", "HTML page"),
    ],
    ids=["jpeg", "text", "html"],
)
def test_load_file_that_is_not_a_checkpoint(tmp_path: Path, content: bytes, kind: str) -> None:
    path = tmp_path / "weights.pth"
    path.write_bytes(content)
    with pytest.raises(CheckpointError) as info:
        checkpoint.load_state_dict_file(path)
    assert kind in str(info.value) and str(path) in str(info.value)


class Unsafe:
    """A custom class: unpickling it needs a global that weights_only=True refuses."""


def test_load_refuses_unsafe_pickle(tmp_path: Path) -> None:
    path = tmp_path / "unsafe.pth"
    torch.save({"weight": torch.zeros(2), "config": Unsafe()}, path)
    with pytest.raises(CheckpointError) as info:
        checkpoint.load_state_dict_file(path)
    message = str(info.value)
    assert "Unsafe" in message and "weights_only=True" in message and "arbitrary" in message
    assert "save_file" in message and str(path.with_suffix(".safetensors")) in message
    assert "refuses to run code from a checkpoint" in message


class RunsCode:
    """Unpickling this runs a shell command (the attack weights_only guards against)."""

    def __reduce__(self):
        return (os.system, ("echo vggnets-test-pwned",))


@pytest.mark.parametrize("form", ["zip", "legacy", "plain-pickle"])
def test_checkpoint_that_carries_code_is_refused_as_such(tmp_path: Path, form: str, capfd) -> None:
    path = tmp_path / "evil.pth"
    payload = {"features.0.weight": torch.zeros(1), "x": RunsCode()}
    if form == "plain-pickle":
        path.write_bytes(pickle.dumps(payload, protocol=4))
    else:
        torch.save(payload, path, _use_new_zipfile_serialization=form == "zip")
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # no torch warning may reach the user
        with pytest.raises(CheckpointError) as info:
            checkpoint.load_state_dict_file(path)
    message = str(info.value)
    assert "refuses to run code from a checkpoint" in message and f"{os.system.__module__}.system" in message
    assert "corrupt" not in message and "truncated" not in message
    assert "pwned" not in capfd.readouterr().out


@pytest.mark.parametrize(
    "torch_message",
    [
        "Weights only load failed. Unsupported global: GLOBAL torch.load was not an allowed global",  # torch < 2.6
        "Weights only load failed. Trying to load unsupported GLOBAL torch.load whose module torch is blocked.",
    ],
)
def test_refusal_does_not_depend_on_torch_message_text(tmp_path, monkeypatch, torch_message) -> None:
    """A global our scan lets through but torch refuses is still named, whatever torch's wording."""
    path = tmp_path / "w.pth"
    torch.save(_state_dict(), path)

    def refuse(*args, **kwargs):
        raise pickle.UnpicklingError(torch_message)

    monkeypatch.setattr(torch, "load", refuse)
    with pytest.raises(CheckpointError, match="references torch.load"):
        checkpoint.load_state_dict_file(path)


def test_pickle_scan_names_globals_without_unpickling() -> None:
    data = pickle.dumps({"a": RunsCode(), "b": collections.OrderedDict()}, protocol=4)
    found = checkpoint.pickle_globals(data)
    assert "collections.OrderedDict" in found
    assert checkpoint.code_references(found) == [f"{os.system.__module__}.system"]
    assert checkpoint.code_references(["torch._utils._rebuild_tensor_v2", "torch.FloatStorage"]) == []


def test_torchscript_archive_is_named_with_the_way_to_load_it(tmp_path: Path) -> None:
    path = tmp_path / "scripted.pt"
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.jit.save(torch.jit.script(torch.nn.Linear(2, 2)), path)
    with pytest.raises(CheckpointError) as info:
        checkpoint.load_state_dict_file(path)
    assert "TorchScript archive" in str(info.value) and "torch.jit.load" in str(info.value)
    assert checkpoint.file_kind(path) == "torchscript"


def test_unreadable_file_says_permission_denied(tmp_path: Path, monkeypatch) -> None:
    path = tmp_path / "w.pth"
    torch.save(_state_dict(), path)
    real_open = open

    def guarded(file, *args, **kwargs):
        if Path(file) == path:
            raise PermissionError(13, "Permission denied", str(file))
        return real_open(file, *args, **kwargs)

    monkeypatch.setattr("builtins.open", guarded)
    with pytest.raises(CheckpointError, match="permission denied") as info:
        checkpoint.load_state_dict_file(path)
    assert "corrupt" not in str(info.value)


def test_unsafe_pickle_conversion_command_works(tmp_path: Path) -> None:
    path = tmp_path / "unsafe.pth"
    torch.save({"model": _state_dict(), "config": Unsafe()}, path)
    with pytest.raises(CheckpointError) as info:
        checkpoint.load_state_dict_file(path)
    command = str(info.value).split('python -c "', 1)[1].split('"', 1)[0]
    exec(command, {"__name__": "convert"})  # what a user who trusts the file would run
    _assert_same_tensors(checkpoint.load_state_dict_file(path.with_suffix(".safetensors")), _state_dict())


@pytest.mark.parametrize(
    ("obj", "expected"),
    [
        ([torch.zeros(1)], "list"),
        (torch.zeros(3), "Tensor"),
        ({"weight": torch.zeros(1), "lr": 0.1}, "'lr'"),
        ({1: torch.zeros(1)}, "1"),
        ({}, "empty"),
    ],
    ids=["list", "tensor", "non-tensor-value", "non-str-key", "empty"],
)
def test_load_rejects_non_state_dict(tmp_path: Path, obj: object, expected: str) -> None:
    path = tmp_path / "odd.pth"
    torch.save(obj, path)
    with pytest.raises(CheckpointError, match="Cannot load") as info:
        checkpoint.load_state_dict_file(path)
    assert expected in str(info.value)


def test_corrupt_cached_file_says_delete_to_redownload(isolated_cache: Path, tmp_path: Path) -> None:
    isolated_cache.mkdir(parents=True)
    cached = isolated_cache / NAME
    cached.write_bytes(PAYLOAD[:1000])
    with pytest.raises(CheckpointError) as info:
        checkpoint.load_state_dict_file(cached, what="tiny weights")
    message = str(info.value)
    assert f"Delete {cached}" in message and "downloaded again" in message and "tiny weights" in message

    elsewhere = tmp_path / NAME
    elsewhere.write_bytes(PAYLOAD[:1000])
    with pytest.raises(CheckpointError) as info:
        checkpoint.load_state_dict_file(elsewhere)
    assert "Delete" not in str(info.value)

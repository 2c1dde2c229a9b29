"""Shared fixtures: an isolated torch.hub cache for every test, and checkpoints generated once per session."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import pytest
import torch
import torchvision

import vggnets

VGG16_FILE = "vgg16-397923af.pth"


@pytest.fixture(autouse=True)
def isolated_torch_home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """Every test gets an empty $TORCH_HOME and no mirror: nothing reads or writes the user's real cache."""
    home = tmp_path / "torch_home"
    monkeypatch.setenv("TORCH_HOME", str(home))
    monkeypatch.delenv("VGGNETS_WEIGHTS_MIRROR", raising=False)
    monkeypatch.setattr(torch.hub, "_hub_dir", None)
    return home


@pytest.fixture(scope="session")
def vgg16_file(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A full-size torchvision vgg16 with seeded random weights, saved under the official file name."""
    path = tmp_path_factory.mktemp("generated") / VGG16_FILE
    torch.manual_seed(16)
    torch.save(torchvision.models.vgg16(weights=None).state_dict(), path)
    return path


def place_in_cache(file: Path, home: Path, name: str | None = None) -> Path:
    """Put a file into $TORCH_HOME/hub/checkpoints as torchvision would have (hard link when possible)."""
    folder = home / "hub" / "checkpoints"
    folder.mkdir(parents=True, exist_ok=True)
    target = folder / (name or file.name)
    try:
        os.link(file, target)
    except OSError:
        shutil.copyfile(file, target)
    return target


@pytest.fixture(name="place_in_cache")
def place_in_cache_fixture():
    """The :func:`place_in_cache` helper, for tests that stage their own files."""
    return place_in_cache


@pytest.fixture
def cached_vgg16(vgg16_file: Path, isolated_torch_home: Path) -> Path:
    """The generated vgg16 file, present in the (isolated) torch.hub cache as if torchvision had downloaded it."""
    return place_in_cache(vgg16_file, isolated_torch_home)


@pytest.fixture(scope="session")
def small_vgg11_file(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A width-1/8 vgg11 with 10 classes (a few MB): fast to write, load and run."""
    path = tmp_path_factory.mktemp("small") / "vgg11_small.pth"
    torch.manual_seed(11)
    torch.save(vggnets.vgg11(width=0.125, num_classes=10).state_dict(), path)
    return path

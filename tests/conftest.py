"""Shared fixtures: an isolated torch.hub cache for every test, checkpoints generated once per session, a folder of
photos with one unreadable file, a folder nothing can be written to, and a 2-process torchrun runner."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

import pytest
import torch
import torchvision

import vggnets

VGG16_FILE = "vgg16-397923af.pth"
EXAMPLES = Path(__file__).resolve().parents[1] / "examples" / "images"
PHOTOS = sorted(p for p in EXAMPLES.iterdir() if p.suffix in (".jpg", ".png"))


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


@pytest.fixture
def folder(tmp_path: Path) -> Path:
    """13 example photos in three class folders and one unreadable file (c1/broken.jpg): 14 inputs."""
    root = tmp_path / "imgs"
    for i in range(13):
        photo = PHOTOS[i % len(PHOTOS)]
        (root / f"c{i % 3}").mkdir(parents=True, exist_ok=True)
        shutil.copy(photo, root / f"c{i % 3}" / f"img{i:02d}{photo.suffix}")
    (root / "c1" / "broken.jpg").write_bytes(b"not an image")
    return root


def run_torchrun(
    cwd: Path, *argv: object, script: Path | None = None, restarts: int = 0
) -> subprocess.CompletedProcess[str]:
    """``torchrun --standalone --nproc-per-node 2 [--max-restarts N] -m vggnets ARGV`` (or SCRIPT ARGV) in ``cwd``,
    one CPU thread per process."""
    command = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc-per-node", "2"]
    command += ["--max-restarts", str(restarts)] if restarts else []
    command += [str(script)] if script else ["-m", "vggnets"]
    env = {**os.environ, "OMP_NUM_THREADS": "1", "VGGNETS_THREADS": "1"}
    return subprocess.run(
        [*command, *map(str, argv)], cwd=cwd, env=env, capture_output=True, text=True, timeout=600
    )


@pytest.fixture(name="torchrun")
def torchrun_fixture():
    """:func:`run_torchrun`, for tests."""
    return run_torchrun


@pytest.fixture
def unwritable_folder(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A folder in which creating a file fails with "Permission denied". As root, chmod cannot take the permission
    away, so the writer's temporary file (``tempfile.mkstemp`` there) is refused instead."""
    closed = tmp_path / "closed"
    closed.mkdir()
    real = tempfile.mkstemp

    def refuse(*args, dir=None, **kwargs):
        if dir is not None and Path(dir).is_relative_to(closed):
            raise PermissionError(13, "Permission denied", str(dir))
        return real(*args, dir=dir, **kwargs)

    monkeypatch.setattr(tempfile, "mkstemp", refuse)
    return closed

"""vggnets.training.loop: fit learns, resumes exactly, writes its files; the digits data it is measured on."""

from __future__ import annotations

import csv
import dataclasses
import importlib.util
import time
from pathlib import Path

import pytest
import torch

import vggnets
import vggnets.training as T
from vggnets.io.images import read_image
from vggnets.io.record import read_record
from vggnets.models.meta import weights_preprocessing

pytest.importorskip("sklearn")


ROOT = Path(__file__).resolve().parents[1]


def _load_make_digits():
    spec = importlib.util.spec_from_file_location("make_digits", ROOT / "scripts" / "make_digits.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


make_digits = _load_make_digits()

#: Digits are not mirror-symmetric: no flip; small scale jitter; [-1, 1] inputs for a BN net.
DIGITS_RECIPE = dataclasses.replace(
    T.RECIPES["paper"],
    crop=32,
    scale=(32, 36),
    resize=32,
    hflip=False,
    mean=(0.5, 0.5, 0.5),
    std=(0.5, 0.5, 0.5),
    batch_size=32,
)


@pytest.fixture(scope="module")
def small_digits(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("digits_small")
    counts = make_digits.write_digits(root, size=32, seed=0, limit=300)
    assert counts == {"train": 240, "val": 60}
    return root


def _read_csv(path: Path) -> list[dict[str, str]]:
    with open(path, newline="") as f:
        return list(csv.DictReader(f))


def _tiny(seed: int = 0, name: str = "vgg11_bn") -> torch.nn.Module:
    torch.manual_seed(seed)
    return vggnets.build(name, width=0.125, num_classes=10)


def test_write_digits_layout(small_digits: Path) -> None:
    for split in ("train", "val"):
        assert sorted(p.name for p in (small_digits / split).iterdir()) == [str(c) for c in range(10)]
    img = read_image(next((small_digits / "train" / "3").glob("*.png")))
    assert tuple(img.shape) == (3, 32, 32)
    train = {p.name for p in (small_digits / "train").rglob("*.png")}
    val = {p.name for p in (small_digits / "val").rglob("*.png")}
    assert not train & val


def test_tiny_run_learns(small_digits: Path, tmp_path: Path) -> None:
    train_loader, val_loader = T.make_loaders(small_digits, DIGITS_RECIPE)
    history = T.fit(
        _tiny(), train_loader, val_loader, DIGITS_RECIPE, epochs=6, lr=0.02, output_dir=tmp_path, log=None
    )
    assert len(history) == 6
    assert history[-1]["train_loss"] < history[0]["train_loss"]
    assert max(row["val_acc"] for row in history) > 0.3  # chance is 0.1
    rows = _read_csv(tmp_path / "metrics.csv")
    assert [int(r["epoch"]) for r in rows] == [1, 2, 3, 4, 5, 6]
    best = vggnets.vgg11_bn(weights=tmp_path / "best.pth")
    assert best.num_classes == 10 and best.features[0].out_channels == 8
    # the checkpoints say what they are: no model name, width or preprocessing needs to be given again
    assert vggnets.get_model(weights=tmp_path / "best.pth").features[0].out_channels == 8
    preset = weights_preprocessing(tmp_path / "best.pth")
    assert (preset.crop_size, preset.resize_size) == ([DIGITS_RECIPE.crop], [DIGITS_RECIPE.resize])
    assert (
        preset.mean == list(DIGITS_RECIPE.mean)
        and read_record(tmp_path / "last.pth")["architecture"] == "vgg11_bn"
    )


def test_resume_is_exact(small_digits: Path, tmp_path: Path) -> None:
    recipe = dataclasses.replace(DIGITS_RECIPE, pca_std=0.1, batch_size=64)

    def run(out: Path, epochs: int, resume: bool, seed: int) -> torch.nn.Module:
        torch.manual_seed(seed)
        loaders = T.make_loaders(small_digits, recipe)
        model = _tiny(seed, "vgg11")  # dropout: its RNG must be restored too
        T.fit(model, *loaders, recipe, epochs=epochs, lr=0.02, output_dir=out, resume=resume, log=None)
        return model

    straight = run(tmp_path / "a", 2, False, 0)
    run(tmp_path / "b", 1, False, 0)
    resumed = run(tmp_path / "b", 2, True, 123)  # different seed: everything must come from last.pth
    for (k, a), b in zip(straight.state_dict().items(), resumed.state_dict().values(), strict=True):
        assert torch.equal(a, b), k
    state = T.load_checkpoint(tmp_path / "b" / "last.pth")
    assert state["epoch"] == 2 and state["step"] == 2 * 4  # 240 images / 64 -> 4 steps per epoch
    assert len(_read_csv(tmp_path / "b" / "metrics.csv")) == 2


@pytest.mark.slow
def test_full_digits_reaches_97_percent(tmp_path: Path) -> None:
    """The issue's acceptance run: width-1/8 vgg11_bn on all 1,797 digits, >= 97% val accuracy within 5 minutes."""
    root = tmp_path / "digits"
    make_digits.write_digits(root, size=32, seed=0)
    torch.manual_seed(0)
    start = time.perf_counter()
    loaders = T.make_loaders(root, DIGITS_RECIPE)
    model = vggnets.build("vgg11_bn", width=0.125, num_classes=10)
    history = T.fit(model, *loaders, DIGITS_RECIPE, epochs=15, output_dir=tmp_path / "run")
    elapsed = time.perf_counter() - start
    best = max(row["val_acc"] for row in history)
    print(f"digits: best val acc {best:.4f} in {elapsed:.0f} s")
    assert best >= 0.97
    assert elapsed <= 300


def test_val_split_bf16_and_channels_last(small_digits: Path, tmp_path: Path) -> None:
    loaders = T.make_loaders(small_digits / "train", DIGITS_RECIPE, val_split=0.25, batch_size=64)
    assert len(loaders[0].dataset) == 180 and len(loaders[1].dataset) == 60
    assert not set(loaders[0].dataset.indices) & set(loaders[1].dataset.indices)
    history = T.fit(
        _tiny(),
        *loaders,
        DIGITS_RECIPE,
        epochs=1,
        amp="bf16",
        channels_last=True,
        output_dir=tmp_path,
        log=None,
    )
    assert len(history) == 1 and history[0]["train_loss"] == history[0]["train_loss"]  # finite, not NaN
    with pytest.raises(ValueError, match="amp"):
        T.train_one_epoch(_tiny(), loaders[0], T.make_optimizer(_tiny(), "paper"), amp="fp8")

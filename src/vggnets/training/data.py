"""Training data: ImageFolder trees with unreadable images skipped, the train/val split, samplers and loaders.

Unreadable images (corrupt, truncated, not images) are skipped, each named once on stderr, rather than stopping a long
run; a batch whose images are all unreadable is skipped. Missing folders and empty class folders are errors. The
training order is a ``DistributedSampler``'s even with one process, so K processes with batch B/K take the same
global batches as one process with batch B.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch

from ..errors import DatasetError
from .augmentation import eval_transforms, train_transforms
from .recipes import Recipe, get_recipe


class SkipUnreadable(torch.utils.data.Dataset):
    """A dataset of ``(image, label)`` samples whose unreadable images give ``None`` instead of raising; each such file
    is reported once per process on stderr. Batch with :func:`collate_readable`, which leaves them out.
    """

    def __init__(self, dataset: Any) -> None:
        self.dataset = dataset
        self.classes = dataset.classes
        self.skipped: set[str] = set()

    def __len__(self) -> int:
        return len(self.dataset)

    def __getitem__(self, index: int) -> Any:
        try:
            return self.dataset[index]
        except (OSError, ValueError, SyntaxError) as exc:  # PIL: UnidentifiedImageError, truncated files, ...
            path = str(self.dataset.samples[index][0])
            if path not in self.skipped:
                self.skipped.add(path)
                reason = type(exc).__name__ if path in str(exc) else str(exc)
                print(
                    f"vggnets: warning: skipping unreadable image {path} ({reason})",
                    file=sys.stderr,
                    flush=True,
                )
            return None


def collate_readable(batch: list[Any]) -> Any:
    """``default_collate`` of the readable samples of a batch; None when none of them could be read."""
    batch = [sample for sample in batch if sample is not None]
    return torch.utils.data.default_collate(batch) if batch else None


class StridedSampler(torch.utils.data.Sampler):
    """Indices ``rank, rank + world_size, ...``: every sample exactly once over all processes (no padding), for
    validation whose counts are then summed over processes."""

    def __init__(self, length: int, rank: int = 0, world_size: int = 1) -> None:
        self.indices = range(rank, length, world_size)

    def __iter__(self):
        return iter(self.indices)

    def __len__(self) -> int:
        return len(self.indices)


def image_folder(root: str | Path, transform: Callable | None = None) -> SkipUnreadable:
    """A torchvision ImageFolder over ``root`` (one folder per class) with unreadable images skipped; a missing
    folder, a tree without class folders or a class folder without images is a :class:`DatasetError`."""
    from torchvision.datasets import ImageFolder
    from torchvision.datasets.folder import IMG_EXTENSIONS

    root = Path(root)
    if not root.is_dir():
        raise DatasetError(f"the dataset folder {root} does not exist (or is not a folder).")
    classes = sorted(d.name for d in os.scandir(root) if d.is_dir())
    if not classes:
        raise DatasetError(
            f"{root} has no class folders: an ImageFolder tree holds one folder of images per class "
            "(root/CLASS/image.png), and training needs root/train/ and root/val/ such trees, or --val-split."
        )
    empty = [c for c in classes if not any(_is_image(f, IMG_EXTENSIONS) for f in (root / c).rglob("*"))]
    if empty:
        raise DatasetError(
            f"the class folder(s) {', '.join(empty)} of {root} hold no images ({', '.join(IMG_EXTENSIONS)}); "
            "add images or remove the folder(s)."
        )
    return SkipUnreadable(ImageFolder(str(root), transform=transform))


def _is_image(path: Path, suffixes: tuple[str, ...]) -> bool:
    return path.suffix.lower() in suffixes and path.is_file()


def make_loaders(
    root: str | Path,
    recipe: Recipe | str,
    *,
    batch_size: int | None = None,
    workers: int = 0,
    val_split: float | None = None,
    seed: int = 0,
    train_transform: Callable | None = None,
    val_transform: Callable | None = None,
    rank: int = 0,
    world_size: int = 1,
) -> tuple[torch.utils.data.DataLoader, torch.utils.data.DataLoader]:
    """Train and validation loaders over an ImageFolder tree: ``root/train`` and ``root/val``, or, with ``val_split``,
    one tree (``root/train`` when it exists, else ``root``) split at random (seeded) into ``1 - val_split`` /
    ``val_split``.

    ``batch_size`` (default: the recipe's) is the global batch: with ``world_size`` processes each loads
    ``batch_size // world_size``. The training order is a ``DistributedSampler``'s (seeded by ``seed`` and the epoch,
    also with one process), so K processes see, step by step, the same global batches as one process. Validation is
    split over the processes without padding. Unreadable images are skipped with a warning (see
    :class:`SkipUnreadable`).
    """
    from torch.utils.data.distributed import DistributedSampler

    recipe = get_recipe(recipe)
    root = Path(root)
    train_tf = train_transform or train_transforms(recipe)
    val_tf = val_transform or eval_transforms(recipe)
    if not root.is_dir():
        raise DatasetError(f"the dataset folder {root} does not exist (or is not a folder).")
    if val_split is None:
        train_set, val_set, classes = _train_and_val_folders(root, train_tf, val_tf)
    else:
        train_set, val_set, classes = _random_split(root, val_split, seed, train_tf, val_tf)
    bs = batch_size or recipe.batch_size
    if bs % world_size:
        raise ValueError(f"the batch size {bs} is not divisible by the {world_size} processes")
    common = {
        "batch_size": bs // world_size,
        "num_workers": workers,
        "persistent_workers": workers > 0,
        "collate_fn": collate_readable,
    }
    sampler = DistributedSampler(train_set, num_replicas=world_size, rank=rank, shuffle=True, seed=seed)
    train_loader = torch.utils.data.DataLoader(train_set, sampler=sampler, **common)
    val_loader = torch.utils.data.DataLoader(
        val_set, sampler=StridedSampler(len(val_set), rank, world_size), **common
    )
    train_loader.classes = val_loader.classes = classes  # type: ignore[attr-defined]
    return train_loader, val_loader


def _train_and_val_folders(
    root: Path, train_tf: Callable, val_tf: Callable
) -> tuple[SkipUnreadable, SkipUnreadable, list[str]]:
    """``root/train`` and ``root/val``, which must hold the same class folders."""
    if not (root / "train").is_dir() or not (root / "val").is_dir():
        raise DatasetError(
            f"{root} needs train/ and val/ subfolders (each with one folder of images per class), or pass "
            "a validation fraction (--val-split 0.1) to split one ImageFolder tree."
        )
    train_set = image_folder(root / "train", train_tf)
    val_set = image_folder(root / "val", val_tf)
    if train_set.classes != val_set.classes:
        only_train = sorted(set(train_set.classes) - set(val_set.classes))
        only_val = sorted(set(val_set.classes) - set(train_set.classes))
        raise DatasetError(
            f"train/ and val/ of {root} have different class folders (only in train/: "
            f"{', '.join(only_train) or 'none'}; only in val/: {', '.join(only_val) or 'none'}); "
            "both need the same classes."
        )
    return train_set, val_set, train_set.classes


def _random_split(
    root: Path, val_split: float, seed: int, train_tf: Callable, val_tf: Callable
) -> tuple[torch.utils.data.Subset, torch.utils.data.Subset, list[str]]:
    """One tree (``root/train`` when it exists, else ``root``) split at random (seeded) into train and validation."""
    if not 0 < val_split < 1:
        raise ValueError(f"val_split must be in (0, 1), got {val_split}")
    source = root / "train" if (root / "train").is_dir() else root
    full_train = image_folder(source, train_tf)
    full_val = image_folder(source, val_tf)
    order = torch.randperm(len(full_train), generator=torch.Generator().manual_seed(seed)).tolist()
    n_val = max(1, int(round(len(order) * val_split)))
    train_set = torch.utils.data.Subset(full_train, order[n_val:])
    val_set = torch.utils.data.Subset(full_val, order[:n_val])
    return train_set, val_set, full_train.classes

"""Labelled image datasets for evaluation: ImageFolder trees and labelled directories, indexed, decoded, loaded.

:func:`open_dataset` indexes a dataset (it reads no pixels) and returns a :class:`LabeledImages`, whose items
are decoded lazily, in DataLoader worker processes when :func:`make_loader` is given workers. Accepted layouts:

* an **ImageFolder tree**: one folder per class, named by WordNet id (``n01440764``: the 1000 ImageNet
  classes), by class index (``0`` .. ``K-1``), or, when the model has one class per folder, by any names
  (sorted folder names = class indices, as ``torchvision.datasets.ImageFolder``); images are found
  recursively inside each class folder;
* a **flat directory** plus a labels file, whose format is detected: Caffe's ``val.txt`` (``file index``),
  a CSV with a ``file,label`` header, or one label per line in sorted file order (the ILSVRC2012 devkit's
  ``ILSVRC2012_validation_ground_truth.txt``, whose ILSVRC2012_IDs are mapped through the devkit's
  ``data/meta.mat``); reading label files is :mod:`vggnets.evaluation.labels`'s job.

Anything that makes a dataset unusable is a :class:`~vggnets.errors.DatasetError` whose message says what
is wrong and how to fix it; recoverable oddities (empty class folders, labels for absent files, images
without a label) are listed in :attr:`LabeledImages.problems`. An image that cannot be decoded is not an
error here: its item carries ``None`` and the reason, so that evaluation can count it.
"""

from __future__ import annotations

import os
from collections import Counter
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch.utils.data import DataLoader, Dataset

from ..errors import DatasetError, ImageError
from ..io.images import DEFAULT_MAX_PIXELS, IMAGE_SUFFIXES, collect_images, read_image
from ..models.weights import IMAGENET_CATEGORIES
from .labels import (
    CATEGORY_INDEX,
    INDEX,
    WNID,
    WNID_INDEX,
    default_classes,
    first_few,
    label_images,
    read_labels_text,
)

__all__ = [
    "FORMATS",
    "LabeledImages",
    "Sample",
    "collate_samples",
    "make_loader",
    "open_dataset",
]

#: One item of :class:`LabeledImages`: (index, uint8 image (3, H, W) or None, target, error or None).
Item = tuple[int, "torch.Tensor | None", int, "str | None"]

#: The layouts and label-file formats :func:`open_dataset` detects (the keys are what ``LabeledImages.format`` holds).
FORMATS: dict[str, str] = {
    "imagefolder": "ImageFolder tree (one folder per class)",
    "valtxt": "Caffe val.txt: 'file index' per line (0-based class index)",
    "csv": "CSV with a header 'file,label' (label = class index, WordNet id or category name)",
    "lines": "one label per line in sorted file order (ILSVRC2012 devkit ground truth with --devkit-meta)",
}


@dataclass(frozen=True)
class Sample:
    """One labelled image: its file and its class index."""

    path: Path
    target: int


class LabeledImages(Dataset):
    """Labelled images for evaluation. Item i -> (i, image uint8 (3,H,W) or None, target int, error str or None).

    Images are decoded by :func:`vggnets.data.read_image` inside ``__getitem__`` (so in DataLoader workers),
    then passed through ``transform`` if one is given. A file that cannot be read or decoded (an
    :class:`~vggnets.errors.ImageError`, from decoding or from the transform) never raises: the item's image
    is ``None`` and its error is the reason, without the file name (which is ``samples[i].path``).

    Attributes:
        samples: the labelled files, in evaluation order.
        classes: the name of each class index (the ImageNet category names when the labels are ImageNet's).
        source: a human description of the layout and label format that was detected.
        problems: dataset-level warnings found while indexing (empty class folders, labels for files that
            do not exist, images without a label that were skipped, ...).
        format: the detected layout or label format, a key of :data:`FORMATS` ("" when built directly).
    """

    def __init__(
        self,
        samples: Iterable[Sample | tuple[str | Path, int]],
        classes: Sequence[str],
        *,
        source: str,
        problems: Iterable[str] = (),
        max_pixels: int | None = DEFAULT_MAX_PIXELS,
        transform: Callable[[torch.Tensor], Any] | None = None,
        format: str = "",
    ) -> None:
        self.samples: list[Sample] = [
            s if isinstance(s, Sample) else Sample(Path(s[0]), int(s[1])) for s in samples
        ]
        self.classes: list[str] = list(classes)
        self.source = source
        self.problems: list[str] = list(problems)
        self.max_pixels = max_pixels
        self.transform = transform
        self.format = format
        bad = [s for s in self.samples if not 0 <= s.target < len(self.classes)]
        if bad:
            raise ValueError(
                f"{len(bad)} sample(s) have a target outside 0..{len(self.classes) - 1}, "
                f"e.g. {bad[0].path} -> {bad[0].target}"
            )

    def __len__(self) -> int:
        return len(self.samples)

    def __getitem__(self, i: int) -> Item:
        sample = self.samples[i]
        try:
            image = read_image(sample.path, max_pixels=self.max_pixels)
            if self.transform is not None:
                image = self.transform(image)
        except ImageError as e:
            return i, None, sample.target, _reason(e, sample.path)
        return i, image, sample.target, None

    @property
    def targets(self) -> list[int]:
        """The class index of every sample, in order."""
        return [s.target for s in self.samples]

    def __repr__(self) -> str:
        return (
            f"LabeledImages({len(self.samples)} images, {len(self.classes)} classes, source={self.source!r})"
        )


def _reason(error: ImageError, path: Path) -> str:
    """An ImageError's message without the leading 'PATH: ' (the caller knows the path)."""
    text = str(error)
    prefix = f"{path}: "
    return text[len(prefix) :] if text.startswith(prefix) else text


# ------------------------------------------------------------------------------------------------------------
# Loading


def collate_samples(batch: list[Item]) -> list[Item]:
    """DataLoader ``collate_fn`` that keeps the items as they are (images have different sizes)."""
    return batch


def _worker_init(_worker_id: int) -> None:
    # Each worker decodes one image at a time: intra-op threads would only compete with the main process.
    torch.set_num_threads(1)


def make_loader(
    dataset: LabeledImages, batch_size: int, workers: int, *, prefetch_factor: int = 2
) -> DataLoader:
    """A DataLoader over ``dataset`` in order, yielding lists of items (see :func:`collate_samples`).

    With ``workers > 0`` decoding runs in that many worker processes, each keeping ``prefetch_factor``
    batches ready, so decoding overlaps the model's compute; batches still arrive in dataset order. Workers
    are not persistent: evaluation makes one pass, and persistent workers would only outlive it. With
    ``workers == 0`` images are decoded in the calling process, between batches.
    """
    if batch_size < 1:
        raise ValueError(f"batch_size must be at least 1, got {batch_size}")
    if workers < 0:
        raise ValueError(f"workers must be 0 or more, got {workers}")
    options: dict[str, Any] = {}
    if workers > 0:
        options = {
            "prefetch_factor": prefetch_factor,
            "worker_init_fn": _worker_init,
            "persistent_workers": False,
        }
    return DataLoader(
        dataset,
        batch_size=batch_size,
        shuffle=False,
        num_workers=workers,
        collate_fn=collate_samples,
        pin_memory=False,
        drop_last=False,
        **options,
    )


# ------------------------------------------------------------------------------------------------------------
# Indexing


def open_dataset(
    root: str | Path,
    *,
    labels: str | Path | None = None,
    devkit_meta: str | Path | None = None,
    num_classes: int = 1000,
    limit: int | None = None,
    max_pixels: int | None = DEFAULT_MAX_PIXELS,
    transform: Callable[[torch.Tensor], Any] | None = None,
) -> LabeledImages:
    """Index a labelled dataset for a model with ``num_classes`` classes (reads no pixels).

    Without ``labels``, ``root`` must be an ImageFolder tree; with ``labels``, the images under ``root`` (a
    flat directory, or any tree: CSV and val.txt name files by path relative to ``root`` or by file name)
    are labelled by that file, whose format is detected (see :data:`FORMATS`; ``source`` says which).
    ``devkit_meta`` is the ILSVRC2012 devkit's ``data/meta.mat``, needed for its one-per-line ground truth.
    ``limit`` keeps the first N samples in sorted order (for an ImageFolder tree: the first classes).

    Raises:
        DatasetError: the directory or labels cannot be used (message says why and what to do).
        MissingDependencyError: ``devkit_meta`` is given and scipy is not installed.
    """
    if num_classes < 1:
        raise ValueError(f"num_classes must be at least 1, got {num_classes}")
    if limit is not None and limit < 1:
        raise ValueError(f"limit must be at least 1, got {limit}")
    path = Path(root)
    if not path.exists():
        raise DatasetError(
            f"{root}: no such directory. DATA must be an ImageFolder tree (one folder of images per class) "
            "or a flat directory of images with a ground-truth file given by --labels."
        )
    if not path.is_dir():
        raise DatasetError(
            f"{root}: not a directory. DATA must be an ImageFolder tree (one folder of images per class) "
            "or a flat directory of images with --labels; to classify single images use `vggnets classify`."
        )
    problems: list[str] = []
    if labels is None:
        samples, classes, source = _index_tree(path, num_classes, problems)
        fmt = "imagefolder"
        if devkit_meta is not None:
            problems.append(
                "--devkit-meta is ignored: it only maps the ILSVRC2012 devkit's one-label-per-line ground truth "
                "given with --labels."
            )
    else:
        samples, classes, source, fmt = _index_flat(path, Path(labels), devkit_meta, num_classes, problems)
    if limit is not None and len(samples) > limit:
        source += f"; the first {limit} of {len(samples)} images (--limit)"
        samples = samples[:limit]
    return LabeledImages(
        samples,
        classes,
        source=source,
        problems=problems,
        max_pixels=max_pixels,
        transform=transform,
        format=fmt,
    )


# ImageFolder trees ------------------------------------------------------------------------------------------


def _subdirectories(root: Path) -> list[Path]:
    """Non-hidden subdirectories (symlinks to directories included), sorted by name like torchvision."""
    try:
        entries = list(os.scandir(root))
    except OSError as e:
        raise DatasetError(f"{root}: cannot list the directory ({e.strerror or e}).") from None
    dirs = []
    for entry in entries:
        try:
            if not entry.name.startswith(".") and entry.is_dir():
                dirs.append(root / entry.name)
        except OSError:
            continue
    return sorted(dirs, key=lambda p: p.name)


def _index_tree(root: Path, num_classes: int, problems: list[str]) -> tuple[list[Sample], list[str], str]:
    folders = _subdirectories(root)
    files = {d.name: collect_images([d], recursive=True)[0] for d in folders}
    loose = collect_images([root])[0]
    if not any(files.values()):
        if loose:
            raise DatasetError(
                f"{root} holds {len(loose)} images but no class folders, so nothing says which class each image "
                "is. Pass a ground-truth file with --labels (Caffe's val.txt 'file index', a CSV 'file,label', "
                "or the ILSVRC2012 devkit's one-label-per-line file with --devkit-meta), or put the images in "
                "one folder per class named by WordNet id (n01440764) or class index."
            )
        raise _no_images(root)
    names = [d.name for d in folders]
    mapping, classes, source = _class_folders(root, names, num_classes)
    samples = [Sample(f, mapping[name]) for name in names for f in files[name]]
    empty = [name for name in names if not files[name]]
    if empty:
        problems.append(f"{len(empty)} class folder(s) in {root} contain no images: {first_few(empty)}.")
    if loose:
        problems.append(
            f"{len(loose)} image(s) directly in {root} are outside any class folder and are skipped "
            f"(first few: {first_few([p.name for p in loose])})."
        )
    return samples, classes, source


def _no_images(root: Path) -> DatasetError:
    suffixes = " ".join(sorted(IMAGE_SUFFIXES))
    return DatasetError(
        f"{root}: no images found (looked for files ending in {suffixes}, also in subfolders)."
    )


def _class_folders(root: Path, names: list[str], num_classes: int) -> tuple[dict[str, int], list[str], str]:
    """Map class-folder names to class indices: WordNet ids, class indices, category names or custom names."""
    wnids = [n for n in names if WNID.fullmatch(n)]
    indices = [n for n in names if INDEX.fullmatch(n)]
    others = [n for n in names if not WNID.fullmatch(n) and not INDEX.fullmatch(n)]
    if len(wnids) == len(names):
        return _wnid_folders(root, names, num_classes)
    if len(indices) == len(names):
        return _index_folders(root, names, num_classes)
    if others and not wnids and not indices:
        return _named_folders(root, names, num_classes)
    kinds = [
        f"{len(group)} {what} ({first_few(group, 3)})"
        for group, what in (
            (wnids, "are WordNet ids"),
            (indices, "are class indices"),
            (others, "are neither"),
        )
        if group
    ]
    raise DatasetError(
        f"{root}: the class folders mix naming schemes: {'; '.join(kinds)}. {_accepted_names(num_classes)}, all "
        "the same way; move other folders out of the tree."
    )


def _accepted_names(num_classes: int) -> str:
    return (
        f"Class folders must be named by WordNet id (n01440764, n01443537, ...: the 1000 ImageNet classes) "
        f"or by class index (0 .. {num_classes - 1})"
    )


def _wnid_folders(root: Path, names: list[str], num_classes: int) -> tuple[dict[str, int], list[str], str]:
    """Folders named by WordNet id: the 1000 ImageNet classes."""
    if num_classes != 1000:
        raise DatasetError(
            f"{root}: the class folders are WordNet ids, which name the 1000 ImageNet classes, but the model "
            f"has {num_classes} classes. Name the folders by class index (0 .. {num_classes - 1}) instead."
        )
    unknown = [n for n in names if n not in WNID_INDEX]
    if unknown:
        raise DatasetError(
            f"{root}: {len(unknown)} unknown class folder(s): {first_few(unknown)} are WordNet ids but not among "
            "the 1000 ImageNet-1k (ILSVRC2012) classes the model predicts. Move them out of the tree "
            "(or evaluate only the known classes)."
        )
    return (
        {n: WNID_INDEX[n] for n in names},
        list(IMAGENET_CATEGORIES),
        f"ImageFolder tree with WordNet-id folders ({len(names)} of the 1000 ImageNet classes)",
    )


def _index_folders(root: Path, names: list[str], num_classes: int) -> tuple[dict[str, int], list[str], str]:
    """Folders named by class index, each index once."""
    values = {n: int(n) for n in names}
    outside = [n for n in names if values[n] >= num_classes]
    if outside:
        raise DatasetError(
            f"{root}: class-index folder(s) {first_few(outside)} are outside 0 .. {num_classes - 1} "
            f"(the model has {num_classes} classes)."
        )
    same = [n for n in names if Counter(values.values())[values[n]] > 1]
    if same:
        raise DatasetError(
            f"{root}: folders {first_few(same)} name the same class index; keep one folder per class."
        )
    return (
        values,
        default_classes(num_classes),
        f"ImageFolder tree with class-index folders ({len(names)} of {num_classes} classes)",
    )


def _named_folders(root: Path, names: list[str], num_classes: int) -> tuple[dict[str, int], list[str], str]:
    """Folders named by ImageNet category, or, one folder per class, by any names (sorted: the class indices)."""
    if num_classes == 1000 and all(n in CATEGORY_INDEX for n in names):
        ambiguous = [n for n in names if len(CATEGORY_INDEX[n]) > 1]
        if ambiguous:
            raise DatasetError(
                f"{root}: folder name(s) {first_few(ambiguous)} are the name of more than one ImageNet category; "
                "name the folders by WordNet id or class index instead."
            )
        return (
            {n: CATEGORY_INDEX[n][0] for n in names},
            list(IMAGENET_CATEGORIES),
            f"ImageFolder tree with ImageNet category-name folders ({len(names)} of the 1000 classes)",
        )
    if len(names) == num_classes:
        ordered = sorted(names)
        return (
            {n: i for i, n in enumerate(ordered)},
            ordered,
            f"ImageFolder tree with custom class folders (the {num_classes} sorted folder names are the class "
            "indices, as in torchvision.datasets.ImageFolder)",
        )
    raise DatasetError(
        f"{root}: cannot tell which class each folder is ({len(names)} folders such as {first_few(names, 3)}). "
        f"{_accepted_names(num_classes)}. Folders with other names are accepted only for a model with one class "
        f"per folder ({len(names)} folders here, the model has {num_classes} classes): the sorted folder names "
        "are then the class indices, as in torchvision.datasets.ImageFolder."
    )


# Flat directories with a labels file ------------------------------------------------------------------------


def _index_flat(
    root: Path, labels: Path, devkit_meta: str | Path | None, num_classes: int, problems: list[str]
) -> tuple[list[Sample], list[str], str, str]:
    """The images under ``root`` labelled by the file ``labels`` (see :func:`vggnets.evaluation.labels.label_images`)."""
    text = read_labels_text(labels)
    images = collect_images([root], recursive=True)[0]
    if not images:
        raise _no_images(root)
    pairs, source, fmt = label_images(root, labels, text, images, devkit_meta, num_classes, problems)
    return [Sample(p, t) for p, t in pairs], default_classes(num_classes), source, fmt

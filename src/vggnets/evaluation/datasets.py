"""Labelled image datasets for evaluation: ImageFolder trees, and flat directories with a ground-truth file.

:func:`open_dataset` indexes a dataset (it reads no pixels) and returns a :class:`LabeledImages`, whose items
are decoded lazily, in DataLoader worker processes when :func:`make_loader` is given workers. Accepted layouts:

* an **ImageFolder tree**: one folder per class, named by WordNet id (``n01440764``: the 1000 ImageNet
  classes), by class index (``0`` .. ``K-1``), or, when the model has one class per folder, by any names
  (sorted folder names = class indices, as ``torchvision.datasets.ImageFolder``); images are found
  recursively inside each class folder;
* a **flat directory** plus a labels file, whose format is detected: Caffe's ``val.txt`` (``file index``),
  a CSV with a ``file,label`` header, or one label per line in sorted file order (the ILSVRC2012 devkit's
  ``ILSVRC2012_validation_ground_truth.txt``, whose ILSVRC2012_IDs are mapped through the devkit's
  ``data/meta.mat``).

Anything that makes a dataset unusable is a :class:`~vggnets.errors.DatasetError` whose message says what
is wrong and how to fix it; recoverable oddities (empty class folders, labels for absent files, images
without a label) are listed in :attr:`LabeledImages.problems`. An image that cannot be decoded is not an
error here: its item carries ``None`` and the reason, so that evaluation can count it.
"""

from __future__ import annotations

import csv
import io
import os
import re
from collections import Counter, defaultdict
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch.utils.data import DataLoader, Dataset

from ..errors import DatasetError, ImageError, MissingDependencyError
from ..io.images import DEFAULT_MAX_PIXELS, IMAGE_SUFFIXES, collect_images, read_image
from ..models.weights import IMAGENET_CATEGORIES, IMAGENET_WNIDS

__all__ = [
    "FORMATS",
    "LabeledImages",
    "Sample",
    "collate_samples",
    "load_devkit_meta",
    "make_loader",
    "open_dataset",
]

#: One item of :class:`LabeledImages`: (index, uint8 image (3, H, W) or None, target, error or None).
Item = tuple[int, "torch.Tensor | None", int, "str | None"]

#: The label-file formats :func:`open_dataset` detects (the keys are what ``LabeledImages.format`` holds).
FORMATS: dict[str, str] = {
    "imagefolder": "ImageFolder tree (one folder per class)",
    "valtxt": "Caffe val.txt: 'file index' per line (0-based class index)",
    "csv": "CSV with a header 'file,label' (label = class index, WordNet id or category name)",
    "lines": "one label per line in sorted file order (ILSVRC2012 devkit ground truth with --devkit-meta)",
}

_WNID = re.compile(r"n\d{8}", re.ASCII)
_INDEX = re.compile(r"\d+", re.ASCII)
_WNID_INDEX: dict[str, int] = {w: i for i, w in enumerate(IMAGENET_WNIDS)}
_CATEGORY_INDEX: dict[str, list[int]] = defaultdict(list)
for _i, _name in enumerate(IMAGENET_CATEGORIES):
    _CATEGORY_INDEX[_name].append(_i)
_CSV_FILE_COLUMNS = ("file", "filename", "file_name", "path", "image", "imageid", "image_id")
_CSV_LABEL_COLUMNS = ("label", "class", "target", "class_index", "predictionstring")
_FIRST_FEW = 5
_DEVKIT_HINT = (
    "the ILSVRC2012 devkit's data/meta.mat (in ILSVRC2012_devkit_t12.tar.gz) maps them to WordNet ids: "
    "pass it with --devkit-meta data/meta.mat"
)


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


def _few(items: Sequence[Any], n: int = _FIRST_FEW) -> str:
    shown = ", ".join(str(x) for x in items[:n])
    return f"{shown}, ... ({len(items)} in all)" if len(items) > n else shown


def _default_classes(num_classes: int) -> list[str]:
    return list(IMAGENET_CATEGORIES) if num_classes == 1000 else [f"class {i}" for i in range(num_classes)]


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
        suffixes = " ".join(sorted(IMAGE_SUFFIXES))
        raise DatasetError(
            f"{root}: no images found (looked for files ending in {suffixes}, also in subfolders)."
        )
    names = [d.name for d in folders]
    mapping, classes, source = _class_folders(root, names, num_classes)
    samples = [Sample(f, mapping[name]) for name in names for f in files[name]]
    empty = [name for name in names if not files[name]]
    if empty:
        problems.append(f"{len(empty)} class folder(s) in {root} contain no images: {_few(empty)}.")
    if loose:
        problems.append(
            f"{len(loose)} image(s) directly in {root} are outside any class folder and are skipped "
            f"(first few: {_few([p.name for p in loose])})."
        )
    return samples, classes, source


def _class_folders(root: Path, names: list[str], num_classes: int) -> tuple[dict[str, int], list[str], str]:
    """Map class-folder names to class indices: WordNet ids, class indices, category names or custom names."""
    wnids = [n for n in names if _WNID.fullmatch(n)]
    indices = [n for n in names if _INDEX.fullmatch(n)]
    others = [n for n in names if not _WNID.fullmatch(n) and not _INDEX.fullmatch(n)]
    accepted = (
        f"Class folders must be named by WordNet id (n01440764, n01443537, ...: the 1000 ImageNet classes) "
        f"or by class index (0 .. {num_classes - 1})"
    )
    if len(wnids) == len(names):
        if num_classes != 1000:
            raise DatasetError(
                f"{root}: the class folders are WordNet ids, which name the 1000 ImageNet classes, but the model "
                f"has {num_classes} classes. Name the folders by class index (0 .. {num_classes - 1}) instead."
            )
        unknown = [n for n in names if n not in _WNID_INDEX]
        if unknown:
            raise DatasetError(
                f"{root}: {len(unknown)} unknown class folder(s): {_few(unknown)} are WordNet ids but not among "
                "the 1000 ImageNet-1k (ILSVRC2012) classes the model predicts. Move them out of the tree "
                "(or evaluate only the known classes)."
            )
        return (
            {n: _WNID_INDEX[n] for n in names},
            list(IMAGENET_CATEGORIES),
            f"ImageFolder tree with WordNet-id folders ({len(names)} of the 1000 ImageNet classes)",
        )
    if len(indices) == len(names):
        values = {n: int(n) for n in names}
        outside = [n for n in names if values[n] >= num_classes]
        if outside:
            raise DatasetError(
                f"{root}: class-index folder(s) {_few(outside)} are outside 0 .. {num_classes - 1} "
                f"(the model has {num_classes} classes)."
            )
        same = [n for n in names if Counter(values.values())[values[n]] > 1]
        if same:
            raise DatasetError(
                f"{root}: folders {_few(same)} name the same class index; keep one folder per class."
            )
        return (
            values,
            _default_classes(num_classes),
            f"ImageFolder tree with class-index folders ({len(names)} of {num_classes} classes)",
        )
    if others and not wnids and not indices:
        if num_classes == 1000 and all(n in _CATEGORY_INDEX for n in names):
            ambiguous = [n for n in names if len(_CATEGORY_INDEX[n]) > 1]
            if ambiguous:
                raise DatasetError(
                    f"{root}: folder name(s) {_few(ambiguous)} are the name of more than one ImageNet category; "
                    "name the folders by WordNet id or class index instead."
                )
            return (
                {n: _CATEGORY_INDEX[n][0] for n in names},
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
            f"{root}: cannot tell which class each folder is ({len(names)} folders such as {_few(names, 3)}). "
            f"{accepted}. Folders with other names are accepted only for a model with one class per folder "
            f"({len(names)} folders here, the model has {num_classes} classes): the sorted folder names are then "
            "the class indices, as in torchvision.datasets.ImageFolder."
        )
    kinds = [
        f"{len(group)} {what} ({_few(group, 3)})"
        for group, what in (
            (wnids, "are WordNet ids"),
            (indices, "are class indices"),
            (others, "are neither"),
        )
        if group
    ]
    raise DatasetError(
        f"{root}: the class folders mix naming schemes: {'; '.join(kinds)}. {accepted}, all the same way; "
        "move other folders out of the tree."
    )


# Flat directories with a labels file ------------------------------------------------------------------------


@dataclass
class _Entry:
    line: int
    name: str
    target: int


def _index_flat(
    root: Path, labels: Path, devkit_meta: str | Path | None, num_classes: int, problems: list[str]
) -> tuple[list[Sample], list[str], str, str]:
    text = _read_labels_text(labels)
    images = collect_images([root], recursive=True)[0]
    if not images:
        suffixes = " ".join(sorted(IMAGE_SUFFIXES))
        raise DatasetError(
            f"{root}: no images found (looked for files ending in {suffixes}, also in subfolders)."
        )
    lines = [(n, s.strip()) for n, s in enumerate(text.splitlines(), 1)]
    content = [(n, s) for n, s in lines if s]
    if not content:
        raise DatasetError(f"labels file {labels} is empty.")
    fmt = _detect_format(labels, content)
    if fmt == "lines":
        samples, source = _one_per_line(root, labels, images, content, devkit_meta, num_classes)
        return samples, _default_classes(num_classes), source, fmt
    if devkit_meta is not None:
        problems.append(
            f"--devkit-meta is ignored: {labels} is a {'CSV' if fmt == 'csv' else 'val.txt'} file, whose labels "
            "are class indices already (the devkit's meta.mat only maps its one-label-per-line ground truth)."
        )
    if fmt == "csv":
        entries, kinds = _parse_csv(labels, text, num_classes)
        source = f"flat directory + CSV labels ({labels.name}: file,label with {' and '.join(kinds)})"
    else:
        entries, kinds = _parse_valtxt(labels, content, num_classes)
        what = "0-based class index" if kinds == ["class indices"] else " and ".join(kinds)
        source = f"flat directory + Caffe val.txt labels ({labels.name}: file name and {what} per line)"
    samples = _match(root, labels, images, entries, problems)
    return samples, _default_classes(num_classes), source, fmt


def _read_labels_text(labels: Path) -> str:
    if not labels.exists():
        raise DatasetError(f"labels file {labels}: no such file.")
    if labels.is_dir():
        raise DatasetError(
            f"labels file {labels} is a directory; --labels expects a val.txt, CSV or ground-truth file."
        )
    try:
        data = labels.read_bytes()
    except OSError as e:
        raise DatasetError(f"labels file {labels}: cannot be read ({e.strerror or e}).") from None
    try:
        return data.decode("utf-8-sig")
    except UnicodeDecodeError:
        raise DatasetError(
            f"labels file {labels} is not UTF-8 text; --labels expects Caffe's val.txt ('file index' per line), "
            "a CSV 'file,label', or one label per line."
        ) from None


def _detect_format(labels: Path, content: list[tuple[int, str]]) -> str:
    if labels.suffix.lower() == ".csv" or "," in content[0][1]:
        return "csv"
    widths = [(n, len(s.split())) for n, s in content]
    if all(w == 1 for _, w in widths):
        return "lines"
    first_single = next((n for n, w in widths if w == 1), None)
    if first_single is None:
        return "valtxt"
    raise DatasetError(
        f"labels file {labels} mixes formats: some lines hold a file name and a label (Caffe's val.txt) but line "
        f"{first_single} holds one value only (one-label-per-line format). Use one format throughout."
    )


def _parse_label(text: str, num_classes: int) -> tuple[int | None, str]:
    """(class index, kind) for a class index, WordNet id or ImageNet category name; (None, reason) if invalid."""
    value = text.strip()
    if _INDEX.fullmatch(value):
        index = int(value)
        if index >= num_classes:
            return None, f"class index {index} is outside 0 .. {num_classes - 1}"
        return index, "class indices"
    if _WNID.fullmatch(value):
        if num_classes != 1000:
            return None, f"WordNet id {value} names an ImageNet class but the model has {num_classes} classes"
        if value not in _WNID_INDEX:
            return None, f"WordNet id {value} is not one of the 1000 ImageNet classes"
        return _WNID_INDEX[value], "WordNet ids"
    if num_classes == 1000 and value in _CATEGORY_INDEX:
        found = _CATEGORY_INDEX[value]
        if len(found) > 1:
            return None, f"category name {value!r} is ambiguous (classes {', '.join(map(str, found))})"
        return found[0], "category names"
    if num_classes == 1000:
        return None, f"{value!r} is not a class index (0 .. 999), a WordNet id or an ImageNet category name"
    return None, f"{value!r} is not a class index (0 .. {num_classes - 1})"


def _raise_bad_labels(labels: Path, bad: list[str], total: int) -> None:
    if bad:
        raise DatasetError(
            f"labels file {labels}: {len(bad)} of {total} label(s) cannot be used: {'; '.join(bad[:3])}"
            f"{'; ...' if len(bad) > 3 else ''}."
        )


def _parse_csv(labels: Path, text: str, num_classes: int) -> tuple[list[_Entry], list[str]]:
    reader = csv.reader(io.StringIO(text))
    rows = [(reader.line_num, row) for row in reader if any(cell.strip() for cell in row)]
    if not rows:
        raise DatasetError(f"labels file {labels} holds no labels.")
    header = [cell.strip().lower() for cell in rows[0][1]]
    file_col = next((header.index(c) for c in _CSV_FILE_COLUMNS if c in header), None)
    label_col = next((header.index(c) for c in _CSV_LABEL_COLUMNS if c in header), None)
    if file_col is not None and label_col is not None:
        rows = rows[1:]
        # Kaggle's LOC_val_solution.csv (ImageId,PredictionString): the label is the first token, "n01751748 x y ..."
        first_token = header[label_col] == "predictionstring"
    elif len(header) == 2 and Path(header[0]).suffix in IMAGE_SUFFIXES:
        file_col, label_col, first_token = 0, 1, False  # no header: the first row is already data
    else:
        raise DatasetError(
            f"labels file {labels} looks like a CSV but its first line {','.join(rows[0][1])!r} is not a header "
            "naming the columns; expected 'file,label' (label: class index, WordNet id or ImageNet category name)."
        )
    entries: list[_Entry] = []
    kinds: list[str] = []
    bad: list[str] = []
    width = max(file_col, label_col) + 1
    for line, row in rows:
        if len(row) < width or not row[file_col].strip():
            bad.append(f"line {line} has no file and label")
            continue
        value = row[label_col].split()[0] if first_token and row[label_col].split() else row[label_col]
        target, kind = _parse_label(value, num_classes)
        if target is None:
            bad.append(f"line {line}: {kind}")
            continue
        if kind not in kinds:
            kinds.append(kind)
        entries.append(_Entry(line, row[file_col].strip(), target))
    _raise_bad_labels(labels, bad, len(rows))
    if not entries:
        raise DatasetError(f"labels file {labels} has a header but no labels.")
    return entries, kinds


def _parse_valtxt(
    labels: Path, content: list[tuple[int, str]], num_classes: int
) -> tuple[list[_Entry], list[str]]:
    first = content[0][1].lower().split()
    if len(first) == 2 and first[0] in _CSV_FILE_COLUMNS and first[1] in _CSV_LABEL_COLUMNS:
        content = content[1:]  # a header line such as "file label"
    entries: list[_Entry] = []
    kinds: list[str] = []
    bad: list[str] = []
    for line, text in content:
        name, value = text.rsplit(None, 1)
        target, kind = _parse_label(value, num_classes)
        if target is None or kind == "category names":
            bad.append(f"line {line}: {kind if target is None else f'{value!r} is not a class index'}")
            continue
        if kind not in kinds:
            kinds.append(kind)
        entries.append(_Entry(line, name.strip(), target))
    _raise_bad_labels(labels, bad, len(content))
    if not entries:
        raise DatasetError(f"labels file {labels} has a header but no labels.")
    return entries, kinds


def _match(
    root: Path, labels: Path, images: list[Path], entries: list[_Entry], problems: list[str]
) -> list[Sample]:
    """Label the images named by ``entries``: by path relative to ``root``, else by unique file name or stem."""
    by_path = {p.relative_to(root).as_posix(): p for p in images}
    by_name: dict[str, list[Path]] = defaultdict(list)
    by_stem: dict[str, list[Path]] = defaultdict(list)
    for p in images:
        by_name[p.name].append(p)
        by_stem[p.stem].append(p)
    assigned: dict[Path, _Entry] = {}
    missing: list[str] = []
    ambiguous: list[str] = []
    for entry in entries:
        key = entry.name.replace("\\", "/")
        while key.startswith("./"):
            key = key[2:]
        path = by_path.get(key)
        if path is None:
            base = key.rsplit("/", 1)[-1]
            found = by_name.get(base) or (
                by_stem.get(base, []) if Path(base).suffix.lower() not in IMAGE_SUFFIXES else []
            )
            if len(found) > 1:
                ambiguous.append(entry.name)
                continue
            if not found:
                missing.append(entry.name)
                continue
            path = found[0]
        previous = assigned.get(path)
        if previous is not None:
            if previous.target != entry.target:
                raise DatasetError(
                    f"labels file {labels} labels {path} twice, with different classes (line {previous.line}: "
                    f"{previous.target}, line {entry.line}: {entry.target})."
                )
            continue
        assigned[path] = entry
    if not assigned:
        raise DatasetError(
            f"none of the {len(entries)} files named in {labels} is in {root} (the first is {entries[0].name!r}; "
            f"{root} holds {len(images)} images such as {images[0].relative_to(root).as_posix()!r}). "
            "Is DATA the directory these labels belong to?"
        )
    if missing:
        problems.append(
            f"{len(missing)} label(s) in {labels} name files that are not in {root}; they are ignored "
            f"(first few: {_few(missing)})."
        )
    if ambiguous:
        problems.append(
            f"{len(ambiguous)} label(s) in {labels} name a file that exists in several subfolders of {root}; "
            f"they are ignored (give the path relative to {root}; first few: {_few(ambiguous)})."
        )
    unlabelled = [p.relative_to(root).as_posix() for p in images if p not in assigned]
    if unlabelled:
        problems.append(
            f"{len(unlabelled)} image(s) in {root} have no label in {labels} and are skipped "
            f"(first few: {_few(unlabelled)})."
        )
    return [Sample(p, assigned[p].target) for p in images if p in assigned]


def _one_per_line(
    root: Path,
    labels: Path,
    images: list[Path],
    content: list[tuple[int, str]],
    devkit_meta: str | Path | None,
    num_classes: int,
) -> tuple[list[Sample], str]:
    """One label per line, the n-th line for the n-th image in sorted file order (the devkit's ground truth)."""
    nested = [p.relative_to(root).as_posix() for p in images if p.parent != root]
    if nested:
        raise DatasetError(
            f"labels file {labels} has one label per line, for the images of a flat directory in sorted file "
            f"order, but {root} has images in subfolders ({_few(nested, 3)}), so the order is ambiguous. Put the "
            "images in one directory, or use a labels file that names the files (val.txt or CSV 'file,label')."
        )
    gap = next((a + 1 for (a, _), (b, _) in zip(content, content[1:]) if b != a + 1), None)
    if gap is not None:
        raise DatasetError(
            f"labels file {labels}: line {gap} is empty; a one-label-per-line file must hold exactly one label "
            "on every line, the n-th for the n-th image in sorted file order."
        )
    if len(content) != len(images):
        raise DatasetError(
            f"labels file {labels} has {len(content)} labels (one per line) but {root} holds {len(images)} "
            "images. This format (the ILSVRC2012 devkit's ground truth) labels every image in sorted file "
            "order, so the counts must match: add the missing images, or use a labels file that names the "
            "files (val.txt or CSV 'file,label')."
        )
    values = [s for _, s in content]
    name = labels.name
    if all(_WNID.fullmatch(v) for v in values):
        targets, bad = [], []
        for line, v in content:
            target, reason = _parse_label(v, num_classes)
            if target is None:
                bad.append(f"line {line}: {reason}")
            targets.append(target)
        _raise_bad_labels(labels, bad, len(values))
        source = f"flat directory + one WordNet id per line in sorted file order ({name})"
        return [Sample(p, t) for p, t in zip(images, targets)], source
    not_int = next(((line, v) for line, v in content if not _INDEX.fullmatch(v)), None)
    if not_int is not None:
        raise DatasetError(
            f"labels file {labels}: line {not_int[0]} is {not_int[1]!r}; a one-label-per-line file must hold a "
            "class index (or the devkit's ILSVRC2012_ID, or a WordNet id) on every line."
        )
    ids = [int(v) for v in values]
    if devkit_meta is not None:
        if num_classes != 1000:
            raise DatasetError(
                f"--devkit-meta maps the ILSVRC2012 devkit's ids to the 1000 ImageNet classes, but the model has "
                f"{num_classes} classes."
            )
        meta = load_devkit_meta(devkit_meta)
        unknown = sorted({i for i in ids if i not in meta})
        if unknown:
            raise DatasetError(
                f"labels file {labels} holds ILSVRC2012_ID(s) {_few(unknown)} that {devkit_meta} does not define "
                "(the devkit's 1000 classes are ids 1 .. 1000). Is it the devkit's ground truth, and the matching "
                "meta.mat?"
            )
        source = (
            f"flat directory + ILSVRC2012 devkit ground truth ({name}: one ILSVRC2012_ID per line in sorted file "
            f"order, mapped to class indices through {Path(devkit_meta).name})"
        )
        return [Sample(p, _WNID_INDEX[meta[i]]) for p, i in zip(images, ids)], source
    if 0 not in ids:
        if num_classes == 1000 and max(ids) <= 1000:
            raise DatasetError(
                f"labels file {labels} has one label per line with values in 1 .. {max(ids)}: this looks like the ILSVRC2012 "
                f"devkit's ground truth, whose ILSVRC2012_IDs (1 .. 1000) are NOT the model's class indices; "
                f"{_DEVKIT_HINT} (or convert it to Caffe's val.txt, 'file index' per line). One-label-per-line "
                "files are taken as 0-based class indices only when they contain 0."
            )
        raise DatasetError(
            f"labels file {labels} has one label per line but no label 0, so it is unclear whether its values are "
            f"0-based class indices (0 .. {num_classes - 1}); write it as a val.txt ('file index' per line) or a "
            "CSV 'file,label' instead."
        )
    outside = [(line, i) for (line, _), i in zip(content, ids) if i >= num_classes]
    if outside:
        raise DatasetError(
            f"labels file {labels}: {len(outside)} label(s) are outside 0 .. {num_classes - 1} "
            f"(line {outside[0][0]}: {outside[0][1]}); the model has {num_classes} classes."
        )
    source = f"flat directory + one label per line in sorted file order ({name}: 0-based class indices)"
    return [Sample(p, i) for p, i in zip(images, ids)], source


def load_devkit_meta(path: str | Path) -> dict[int, str]:
    """ILSVRC2012_ID -> WordNet id for the 1000 leaf classes (ids 1 .. 1000) of the devkit's ``data/meta.mat``.

    Raises:
        MissingDependencyError: scipy is not installed.
        DatasetError: the file is missing, unreadable, or not the devkit's meta.mat.
    """
    try:
        import scipy.io
    except ImportError:
        raise MissingDependencyError(
            "reading the ILSVRC2012 devkit's meta.mat (--devkit-meta) needs scipy, which is not installed: "
            "pip install 'vggnets[devkit]' (or pip install scipy)"
        ) from None
    import numpy as np

    file = Path(path)
    if not file.is_file():
        raise DatasetError(f"devkit meta file {path}: no such file (expected the devkit's data/meta.mat).")
    try:
        mat = scipy.io.loadmat(str(file), squeeze_me=True)
    except NotImplementedError:
        raise DatasetError(
            f"{path} is a MATLAB v7.3 (HDF5) file, which scipy cannot read; the ILSVRC2012 devkit's data/meta.mat "
            "is an older MATLAB file: use that one."
        ) from None
    except Exception as e:
        raise DatasetError(
            f"{path} is not a readable MATLAB .mat file ({type(e).__name__}: {e}); --devkit-meta expects "
            "data/meta.mat from the ILSVRC2012 devkit (ILSVRC2012_devkit_t12.tar.gz)."
        ) from None
    synsets = mat.get("synsets")
    names = getattr(getattr(synsets, "dtype", None), "names", None) or ()
    if "ILSVRC2012_ID" not in names or "WNID" not in names:
        raise DatasetError(
            f"{path} has no 'synsets' struct with ILSVRC2012_ID and WNID fields; --devkit-meta expects data/meta.mat "
            "from the ILSVRC2012 devkit."
        )
    synsets = np.atleast_1d(np.asarray(synsets)).ravel()
    mapping: dict[int, str] = {}
    for record in synsets:
        try:
            ident = int(np.asarray(record["ILSVRC2012_ID"]).ravel()[0])
            wnid = str(np.asarray(record["WNID"]).ravel()[0]).strip()
        except (IndexError, TypeError, ValueError):
            continue
        if 1 <= ident <= 1000:  # ids above 1000 are the inner nodes of the WordNet hierarchy
            mapping[ident] = wnid
    foreign = sorted(f"{i} -> {w}" for i, w in mapping.items() if w not in _WNID_INDEX)
    if foreign or not mapping:
        detail = (
            f"maps {_few(foreign, 3)}, not ImageNet-1k WordNet ids" if foreign else "defines no ids 1 .. 1000"
        )
        raise DatasetError(f"{path} {detail}; is it the ILSVRC2012 devkit's data/meta.mat?")
    return mapping

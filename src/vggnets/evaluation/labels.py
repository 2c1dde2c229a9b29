"""Ground-truth labels: class names and ids, label files (val.txt, CSV, one per line), the ILSVRC2012 devkit's meta.mat.

A label names a class by index (``0`` .. ``K-1``), by WordNet id (``n01440764``: the 1000 ImageNet classes) or by
ImageNet category name. :func:`label_images` reads a labels file for the images of a directory: its format is detected
(Caffe's ``val.txt``, a CSV with a ``file,label`` header, or one label per line in sorted file order, such as the
devkit's ``ILSVRC2012_validation_ground_truth.txt``, whose ILSVRC2012_IDs are mapped through :func:`load_devkit_meta`),
and its entries are matched to the files by relative path, else by unique file name or stem. Anything that makes the
labels unusable is a :class:`~vggnets.errors.DatasetError` that says what is wrong and how to fix it; labels for absent
files and images without a label are listed as problems instead.
"""

from __future__ import annotations

import csv
import io
import re
from collections import defaultdict
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ..errors import DatasetError, MissingDependencyError
from ..io.images import IMAGE_SUFFIXES
from ..models.weights import IMAGENET_CATEGORIES, IMAGENET_WNIDS

__all__ = ["label_images", "load_devkit_meta", "read_labels_text"]

#: A WordNet id, such as n01440764.
WNID = re.compile(r"n\d{8}", re.ASCII)
#: A class index (or the devkit's ILSVRC2012_ID): decimal digits.
INDEX = re.compile(r"\d+", re.ASCII)
#: WordNet id -> ImageNet class index.
WNID_INDEX: dict[str, int] = {w: i for i, w in enumerate(IMAGENET_WNIDS)}
#: ImageNet category name -> the class indices of that name (a few names are shared by two classes).
CATEGORY_INDEX: dict[str, list[int]] = defaultdict(list)
for _i, _name in enumerate(IMAGENET_CATEGORIES):
    CATEGORY_INDEX[_name].append(_i)

_CSV_FILE_COLUMNS = ("file", "filename", "file_name", "path", "image", "imageid", "image_id")
_CSV_LABEL_COLUMNS = ("label", "class", "target", "class_index", "predictionstring")
_FIRST_FEW = 5
_DEVKIT_HINT = (
    "the ILSVRC2012 devkit's data/meta.mat (in ILSVRC2012_devkit_t12.tar.gz) maps them to WordNet ids: "
    "pass it with --devkit-meta data/meta.mat"
)

#: Labelled files: (image path, class index).
Pairs = list[tuple[Path, int]]


def first_few(items: Sequence[Any], n: int = _FIRST_FEW) -> str:
    """The first ``n`` items, comma-separated, and how many there are in all when that is more (for messages)."""
    shown = ", ".join(str(x) for x in items[:n])
    return f"{shown}, ... ({len(items)} in all)" if len(items) > n else shown


def default_classes(num_classes: int) -> list[str]:
    """Class names of a model with ``num_classes`` outputs: ImageNet's categories for 1000, else 'class i'."""
    return list(IMAGENET_CATEGORIES) if num_classes == 1000 else [f"class {i}" for i in range(num_classes)]


@dataclass
class _Entry:
    line: int
    name: str
    target: int


# ------------------------------------------------------------------------------------------------------------
# Reading and detecting


def read_labels_text(labels: Path) -> str:
    """The text of a labels file (UTF-8, a byte-order mark allowed), or a DatasetError that says why not."""
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


def label_images(
    root: Path,
    labels: Path,
    text: str,
    images: list[Path],
    devkit_meta: str | Path | None,
    num_classes: int,
    problems: list[str],
) -> tuple[Pairs, str, str]:
    """Label ``images`` (the files under ``root``, sorted) by the labels file ``labels`` whose text is ``text``.

    Returns the labelled (path, class index) pairs in the order of ``images``, a description of the format found and
    its key (``"valtxt"``, ``"csv"`` or ``"lines"``). Recoverable oddities are appended to ``problems``.
    """
    lines = [(n, s.strip()) for n, s in enumerate(text.splitlines(), 1)]
    content = [(n, s) for n, s in lines if s]
    if not content:
        raise DatasetError(f"labels file {labels} is empty.")
    fmt = _detect_format(labels, content)
    if fmt == "lines":
        pairs, source = _one_per_line(root, labels, images, content, devkit_meta, num_classes)
        return pairs, source, fmt
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
    return _match(root, labels, images, entries, problems), source, fmt


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


# ------------------------------------------------------------------------------------------------------------
# Files that name their images: val.txt and CSV


def parse_label(text: str, num_classes: int) -> tuple[int | None, str]:
    """(class index, kind) for a class index, WordNet id or ImageNet category name; (None, reason) if invalid."""
    value = text.strip()
    if INDEX.fullmatch(value):
        index = int(value)
        if index >= num_classes:
            return None, f"class index {index} is outside 0 .. {num_classes - 1}"
        return index, "class indices"
    if WNID.fullmatch(value):
        if num_classes != 1000:
            return None, f"WordNet id {value} names an ImageNet class but the model has {num_classes} classes"
        if value not in WNID_INDEX:
            return None, f"WordNet id {value} is not one of the 1000 ImageNet classes"
        return WNID_INDEX[value], "WordNet ids"
    if num_classes == 1000 and value in CATEGORY_INDEX:
        found = CATEGORY_INDEX[value]
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
    width = max(file_col, label_col) + 1
    named = []
    for line, row in rows:
        if len(row) < width:
            named.append((line, "", ""))
            continue
        value = row[label_col].split()[0] if first_token and row[label_col].split() else row[label_col]
        named.append((line, row[file_col].strip(), value))
    return _entries(labels, named, num_classes, indices_only=False)


def _parse_valtxt(
    labels: Path, content: list[tuple[int, str]], num_classes: int
) -> tuple[list[_Entry], list[str]]:
    first = content[0][1].lower().split()
    if len(first) == 2 and first[0] in _CSV_FILE_COLUMNS and first[1] in _CSV_LABEL_COLUMNS:
        content = content[1:]  # a header line such as "file label"
    named = []
    for line, text in content:
        name, value = text.rsplit(None, 1)
        named.append((line, name.strip(), value))
    return _entries(labels, named, num_classes, indices_only=True)


def _entries(
    labels: Path, named: list[tuple[int, str, str]], num_classes: int, *, indices_only: bool
) -> tuple[list[_Entry], list[str]]:
    """Entries of (line, file name, label) rows, and the kinds of label seen, in order; any bad row is an error.

    ``indices_only``: category names are refused (val.txt holds class indices).
    """
    entries: list[_Entry] = []
    kinds: list[str] = []
    bad: list[str] = []
    for line, name, value in named:
        if not name:
            bad.append(f"line {line} has no file and label")
            continue
        target, kind = parse_label(value, num_classes)
        if target is None or (indices_only and kind == "category names"):
            bad.append(f"line {line}: {kind if target is None else f'{value!r} is not a class index'}")
            continue
        if kind not in kinds:
            kinds.append(kind)
        entries.append(_Entry(line, name, target))
    _raise_bad_labels(labels, bad, len(named))
    if not entries:
        raise DatasetError(f"labels file {labels} has a header but no labels.")
    return entries, kinds


def _finder(root: Path, images: list[Path]) -> Callable[[str], list[Path]]:
    """A function: a labels file's name for a file -> the images it can mean (one when it is found and unique)."""
    by_path = {p.relative_to(root).as_posix(): p for p in images}
    by_name: dict[str, list[Path]] = defaultdict(list)
    by_stem: dict[str, list[Path]] = defaultdict(list)
    for p in images:
        by_name[p.name].append(p)
        by_stem[p.stem].append(p)

    def find(name: str) -> list[Path]:
        key = name.replace("\\", "/")
        while key.startswith("./"):
            key = key[2:]
        if key in by_path:
            return [by_path[key]]
        base = key.rsplit("/", 1)[-1]
        by_stem_too = Path(base).suffix.lower() not in IMAGE_SUFFIXES
        return by_name.get(base) or (by_stem.get(base, []) if by_stem_too else [])

    return find


def _match(root: Path, labels: Path, images: list[Path], entries: list[_Entry], problems: list[str]) -> Pairs:
    """Label the images named by ``entries``: by path relative to ``root``, else by unique file name or stem."""
    find = _finder(root, images)
    assigned: dict[Path, _Entry] = {}
    missing: list[str] = []
    ambiguous: list[str] = []
    for entry in entries:
        found = find(entry.name)
        if len(found) != 1:
            (ambiguous if found else missing).append(entry.name)
            continue
        path = found[0]
        previous = assigned.get(path)
        if previous is None:
            assigned[path] = entry
        elif previous.target != entry.target:
            raise DatasetError(
                f"labels file {labels} labels {path} twice, with different classes (line {previous.line}: "
                f"{previous.target}, line {entry.line}: {entry.target})."
            )
    if not assigned:
        raise DatasetError(
            f"none of the {len(entries)} files named in {labels} is in {root} (the first is {entries[0].name!r}; "
            f"{root} holds {len(images)} images such as {images[0].relative_to(root).as_posix()!r}). "
            "Is DATA the directory these labels belong to?"
        )
    unlabelled = [p.relative_to(root).as_posix() for p in images if p not in assigned]
    _report_unmatched(root, labels, missing, ambiguous, unlabelled, problems)
    return [(p, assigned[p].target) for p in images if p in assigned]


def _report_unmatched(
    root: Path,
    labels: Path,
    missing: list[str],
    ambiguous: list[str],
    unlabelled: list[str],
    problems: list[str],
) -> None:
    """Problems for labels of absent files, labels of files found in several places, and images without a label."""
    if missing:
        problems.append(
            f"{len(missing)} label(s) in {labels} name files that are not in {root}; they are ignored "
            f"(first few: {first_few(missing)})."
        )
    if ambiguous:
        problems.append(
            f"{len(ambiguous)} label(s) in {labels} name a file that exists in several subfolders of {root}; "
            f"they are ignored (give the path relative to {root}; first few: {first_few(ambiguous)})."
        )
    if unlabelled:
        problems.append(
            f"{len(unlabelled)} image(s) in {root} have no label in {labels} and are skipped "
            f"(first few: {first_few(unlabelled)})."
        )


# ------------------------------------------------------------------------------------------------------------
# One label per line, in sorted file order (the ILSVRC2012 devkit's ground truth)


def _one_per_line(
    root: Path,
    labels: Path,
    images: list[Path],
    content: list[tuple[int, str]],
    devkit_meta: str | Path | None,
    num_classes: int,
) -> tuple[Pairs, str]:
    """One label per line, the n-th line for the n-th image in sorted file order (the devkit's ground truth)."""
    _check_one_per_line(root, labels, images, content)
    if all(WNID.fullmatch(v) for _, v in content):
        return _wnid_lines(labels, images, content, num_classes)
    not_int = next(((line, v) for line, v in content if not INDEX.fullmatch(v)), None)
    if not_int is not None:
        raise DatasetError(
            f"labels file {labels}: line {not_int[0]} is {not_int[1]!r}; a one-label-per-line file must hold a "
            "class index (or the devkit's ILSVRC2012_ID, or a WordNet id) on every line."
        )
    if devkit_meta is not None:
        return _devkit_lines(labels, images, content, devkit_meta, num_classes)
    return _index_lines(labels, images, content, num_classes)


def _check_one_per_line(root: Path, labels: Path, images: list[Path], content: list[tuple[int, str]]) -> None:
    """A one-label-per-line file needs a flat directory, no empty line, and one label for every image."""
    nested = [p.relative_to(root).as_posix() for p in images if p.parent != root]
    if nested:
        raise DatasetError(
            f"labels file {labels} has one label per line, for the images of a flat directory in sorted file "
            f"order, but {root} has images in subfolders ({first_few(nested, 3)}), so the order is ambiguous. Put "
            "the images in one directory, or use a labels file that names the files (val.txt or CSV 'file,label')."
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


def _wnid_lines(
    labels: Path, images: list[Path], content: list[tuple[int, str]], num_classes: int
) -> tuple[Pairs, str]:
    """One WordNet id per line."""
    targets, bad = [], []
    for line, v in content:
        target, reason = parse_label(v, num_classes)
        if target is None:
            bad.append(f"line {line}: {reason}")
        targets.append(target)
    _raise_bad_labels(labels, bad, len(content))
    source = f"flat directory + one WordNet id per line in sorted file order ({labels.name})"
    return list(zip(images, targets)), source


def _devkit_lines(
    labels: Path,
    images: list[Path],
    content: list[tuple[int, str]],
    devkit_meta: str | Path,
    num_classes: int,
) -> tuple[Pairs, str]:
    """One ILSVRC2012_ID per line, mapped to class indices through the devkit's meta.mat."""
    if num_classes != 1000:
        raise DatasetError(
            f"--devkit-meta maps the ILSVRC2012 devkit's ids to the 1000 ImageNet classes, but the model has "
            f"{num_classes} classes."
        )
    ids = [int(v) for _, v in content]
    meta = load_devkit_meta(devkit_meta)
    unknown = sorted({i for i in ids if i not in meta})
    if unknown:
        raise DatasetError(
            f"labels file {labels} holds ILSVRC2012_ID(s) {first_few(unknown)} that {devkit_meta} does not define "
            "(the devkit's 1000 classes are ids 1 .. 1000). Is it the devkit's ground truth, and the matching "
            "meta.mat?"
        )
    source = (
        f"flat directory + ILSVRC2012 devkit ground truth ({labels.name}: one ILSVRC2012_ID per line in sorted "
        f"file order, mapped to class indices through {Path(devkit_meta).name})"
    )
    return [(p, WNID_INDEX[meta[i]]) for p, i in zip(images, ids)], source


def _index_lines(
    labels: Path, images: list[Path], content: list[tuple[int, str]], num_classes: int
) -> tuple[Pairs, str]:
    """One 0-based class index per line; values without a 0 are refused (they may be the devkit's 1-based ids)."""
    ids = [int(v) for _, v in content]
    if 0 not in ids:
        if num_classes == 1000 and max(ids) <= 1000:
            raise DatasetError(
                f"labels file {labels} has one label per line with values in 1 .. {max(ids)}: this looks like the "
                f"ILSVRC2012 devkit's ground truth, whose ILSVRC2012_IDs (1 .. 1000) are NOT the model's class "
                f"indices; {_DEVKIT_HINT} (or convert it to Caffe's val.txt, 'file index' per line). "
                "One-label-per-line files are taken as 0-based class indices only when they contain 0."
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
    source = (
        f"flat directory + one label per line in sorted file order ({labels.name}: 0-based class indices)"
    )
    return list(zip(images, ids)), source


# ------------------------------------------------------------------------------------------------------------
# The devkit's meta.mat


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
    mapping = _synset_ids(path, mat.get("synsets"))
    foreign = sorted(f"{i} -> {w}" for i, w in mapping.items() if w not in WNID_INDEX)
    if foreign or not mapping:
        detail = (
            f"maps {first_few(foreign, 3)}, not ImageNet-1k WordNet ids"
            if foreign
            else "defines no ids 1 .. 1000"
        )
        raise DatasetError(f"{path} {detail}; is it the ILSVRC2012 devkit's data/meta.mat?")
    return mapping


def _synset_ids(path: str | Path, synsets: Any) -> dict[int, str]:
    """ILSVRC2012_ID -> WNID of the leaf classes (ids 1 .. 1000) of meta.mat's ``synsets`` struct array."""
    import numpy as np

    names = getattr(getattr(synsets, "dtype", None), "names", None) or ()
    if "ILSVRC2012_ID" not in names or "WNID" not in names:
        raise DatasetError(
            f"{path} has no 'synsets' struct with ILSVRC2012_ID and WNID fields; --devkit-meta expects data/meta.mat "
            "from the ILSVRC2012 devkit."
        )
    mapping: dict[int, str] = {}
    for record in np.atleast_1d(np.asarray(synsets)).ravel():
        try:
            ident = int(np.asarray(record["ILSVRC2012_ID"]).ravel()[0])
            wnid = str(np.asarray(record["WNID"]).ravel()[0]).strip()
        except (IndexError, TypeError, ValueError):
            continue
        if 1 <= ident <= 1000:  # ids above 1000 are the inner nodes of the WordNet hierarchy
            mapping[ident] = wnid
    return mapping

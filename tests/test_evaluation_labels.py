"""Tests for vggnets.evaluation.labels: val.txt, CSV and one-label-per-line files, the ILSVRC2012 devkit's meta.mat."""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import pytest
from test_evaluation_datasets import flat, image, targets, write

from vggnets.errors import DatasetError, MissingDependencyError
from vggnets.evaluation.datasets import open_dataset
from vggnets.evaluation.labels import label_images, load_devkit_meta
from vggnets.models.weights import IMAGENET_CATEGORIES, IMAGENET_WNIDS


def meta_mat(path: Path, pairs: list[tuple[int, str]]) -> Path:
    """A tiny ILSVRC2012-devkit-like meta.mat: a struct array `synsets` (ILSVRC2012_ID, WNID, words, ...)."""
    scipy_io = pytest.importorskip("scipy.io")
    dtype = [("ILSVRC2012_ID", "O"), ("WNID", "O"), ("words", "O"), ("num_children", "O")]
    synsets = np.zeros((len(pairs), 1), dtype=dtype)
    for row, (ident, wnid) in enumerate(pairs):
        children = 0 if ident <= 1000 else 3
        synsets[row, 0] = (np.array([[ident]], dtype=np.uint16), np.array([wnid]), np.array(["x"]), children)
    scipy_io.savemat(path, {"synsets": synsets})
    return path


# ----------------------------------------------------------------------------------------------------
# Flat directory + val.txt / CSV


def test_caffe_val_txt(tmp_path: Path):
    root = flat(tmp_path, ["ILSVRC2012_val_00000001.JPEG", "ILSVRC2012_val_00000002.JPEG", "extra.png"])
    gt = write(
        tmp_path / "val.txt",
        "ILSVRC2012_val_00000001.JPEG 65\nILSVRC2012_val_00000002.JPEG 970\n\nILSVRC2012_val_00000003.JPEG 1\n",
    )
    ds = open_dataset(root, labels=gt)
    assert targets(ds) == {"ILSVRC2012_val_00000001.JPEG": 65, "ILSVRC2012_val_00000002.JPEG": 970}
    assert ds.format == "valtxt"
    assert "Caffe val.txt" in ds.source and "0-based class index" in ds.source
    assert any("1 label(s)" in p and "ILSVRC2012_val_00000003.JPEG" in p for p in ds.problems)
    assert any("extra.png" in p and "skipped" in p for p in ds.problems)


def test_val_txt_errors(tmp_path: Path):
    root = flat(tmp_path, ["a.png", "b.png"])
    with pytest.raises(DatasetError, match=r"line 2: class index 1000 is outside 0 \.\. 999"):
        open_dataset(root, labels=write(tmp_path / "v1.txt", "a.png 1\nb.png 1000\n"))
    with pytest.raises(DatasetError, match=r"labels .*a\.png twice.*line 1: 1, line 2: 2"):
        open_dataset(root, labels=write(tmp_path / "v2.txt", "a.png 1\na.png 2\n"))
    with pytest.raises(DatasetError, match=r"none of the 2 files named in .* is in"):
        open_dataset(root, labels=write(tmp_path / "v3.txt", "x.png 1\ny.png 2\n"))
    with pytest.raises(DatasetError, match="mixes formats"):
        open_dataset(root, labels=write(tmp_path / "v4.txt", "a.png 1\n2\n"))
    with pytest.raises(DatasetError, match="no such file"):
        open_dataset(root, labels=tmp_path / "absent.txt")
    with pytest.raises(DatasetError, match="is empty"):
        open_dataset(root, labels=write(tmp_path / "v5.txt", "\n\n"))
    (tmp_path / "binary.txt").write_bytes(b"\xff\xfe\x00bad")
    with pytest.raises(DatasetError, match="not UTF-8"):
        open_dataset(root, labels=tmp_path / "binary.txt")


def test_val_txt_names_files_in_a_tree_by_path_or_unique_name(tmp_path: Path):
    root = tmp_path / "tree"
    image(root / IMAGENET_WNIDS[3] / "a.png")
    image(root / IMAGENET_WNIDS[4] / "b.png")
    gt = write(tmp_path / "val.txt", f"a.png 3\n{IMAGENET_WNIDS[4]}/b.png {IMAGENET_WNIDS[4]}\n")
    ds = open_dataset(root, labels=gt)  # labels win over the folder names
    assert targets(ds) == {"a.png": 3, "b.png": 4}
    assert "WordNet ids" in ds.source


def test_csv_labels(tmp_path: Path):
    root = flat(tmp_path, ["a.png", "b.png", "c.jpg", "d.png"])
    gt = write(
        tmp_path / "labels.csv",
        f'file,label\na.png,7\nb.png,{IMAGENET_WNIDS[12]}\n"c.jpg","{IMAGENET_CATEGORIES[300]}"\nmissing.png,1\n',
    )
    ds = open_dataset(root, labels=gt)
    assert targets(ds) == {"a.png": 7, "b.png": 12, "c.jpg": 300}
    assert ds.format == "csv"
    assert "CSV" in ds.source and "class indices and WordNet ids and category names" in ds.source
    assert any("missing.png" in p for p in ds.problems)
    assert any("d.png" in p and "no label" in p for p in ds.problems)
    # no header, and a header with the columns swapped
    assert targets(open_dataset(root, labels=write(tmp_path / "n.csv", "a.png,1\nb.png,2\n"))) == {
        "a.png": 1,
        "b.png": 2,
    }
    swapped = write(tmp_path / "s.csv", "Label, File\n5,a.png\n")
    assert targets(open_dataset(root, labels=swapped)) == {"a.png": 5}


def test_kaggle_style_csv(tmp_path: Path):
    root = flat(tmp_path, ["ILSVRC2012_val_00000001.JPEG", "ILSVRC2012_val_00000002.JPEG"])
    gt = write(
        tmp_path / "LOC_val_solution.csv",
        f"ImageId,PredictionString\nILSVRC2012_val_00000001,{IMAGENET_WNIDS[9]} 1 2 3 4\n"
        f"ILSVRC2012_val_00000002,{IMAGENET_WNIDS[8]} 1 2 3 4 {IMAGENET_WNIDS[8]} 5 6 7 8\n",
    )
    assert open_dataset(root, labels=gt).targets == [9, 8]


def test_csv_errors(tmp_path: Path):
    root = flat(tmp_path, ["a.png", "b.png"])
    with pytest.raises(DatasetError, match="not a header naming the columns; expected 'file,label'"):
        open_dataset(root, labels=write(tmp_path / "h.csv", "name,kind\na.png,1\n"))
    with pytest.raises(
        DatasetError, match=r"2 of 2 label\(s\) cannot be used: line 2: 'kitten' is not"
    ) as info:
        open_dataset(root, labels=write(tmp_path / "b.csv", "file,label\na.png,kitten\nb.png,n99999999\n"))
    assert "line 3: WordNet id n99999999 is not one of the 1000" in str(info.value)
    with pytest.raises(DatasetError, match=r"line 2: class index 4 is outside 0 \.\. 2"):
        open_dataset(root, labels=write(tmp_path / "r.csv", "file,label\na.png,4\n"), num_classes=3)
    with pytest.raises(DatasetError, match="header but no labels"):
        open_dataset(root, labels=write(tmp_path / "e.csv", "file,label\n"))


# ----------------------------------------------------------------------------------------------------
# One label per line (the ILSVRC2012 devkit's ground truth)


def test_one_label_per_line_zero_based(tmp_path: Path):
    root = flat(tmp_path, ["v2.png", "v1.png", "v3.png"])
    ds = open_dataset(root, labels=write(tmp_path / "gt.txt", "0\n5\n999\n"))
    assert [(s.path.name, s.target) for s in ds.samples] == [("v1.png", 0), ("v2.png", 5), ("v3.png", 999)]
    assert ds.format == "lines"
    assert "0-based class indices" in ds.source
    wnids = write(tmp_path / "w.txt", f"{IMAGENET_WNIDS[2]}\n{IMAGENET_WNIDS[1]}\n{IMAGENET_WNIDS[0]}\n")
    ds = open_dataset(root, labels=wnids)
    assert ds.targets == [2, 1, 0] and "WordNet id" in ds.source


def test_devkit_ids_need_meta(tmp_path: Path):
    root = flat(tmp_path, ["v1.png", "v2.png"])
    gt = write(tmp_path / "ILSVRC2012_validation_ground_truth.txt", "490\n361\n")
    with pytest.raises(DatasetError, match="--devkit-meta data/meta.mat") as info:
        open_dataset(root, labels=gt)
    assert "NOT the model's class indices" in str(info.value) and "val.txt" in str(info.value)
    with pytest.raises(DatasetError, match="no label 0"):
        open_dataset(root, labels=gt, num_classes=500)


def test_devkit_meta_maps_ids_to_class_indices(tmp_path: Path):
    root = flat(tmp_path, ["ILSVRC2012_val_00000001.JPEG", "ILSVRC2012_val_00000002.JPEG", "x.png"])
    # A reversed mapping, as the devkit's ids are not the sorted-wnid order; plus an inner node (id > 1000).
    pairs = [(i + 1, IMAGENET_WNIDS[999 - i]) for i in range(1000)] + [(1001, "n00001740")]
    meta = meta_mat(tmp_path / "meta.mat", pairs)
    assert load_devkit_meta(meta)[1] == IMAGENET_WNIDS[999] and 1001 not in load_devkit_meta(meta)
    gt = write(tmp_path / "ILSVRC2012_validation_ground_truth.txt", "1\n1000\n3\n")
    ds = open_dataset(root, labels=gt, devkit_meta=meta)
    assert ds.targets == [999, 0, 997]
    assert "ILSVRC2012 devkit ground truth" in ds.source and "meta.mat" in ds.source
    assert not ds.problems
    # ids the meta file does not define
    small = meta_mat(tmp_path / "small.mat", [(1, IMAGENET_WNIDS[0])])
    with pytest.raises(DatasetError, match=r"ILSVRC2012_ID\(s\) 3, 1000 that .* does not define"):
        open_dataset(root, labels=gt, devkit_meta=small)
    # --devkit-meta given with a format it does not apply to: a warning, not an error
    val = write(tmp_path / "val.txt", "x.png 3\n")
    assert any(
        "--devkit-meta is ignored" in p for p in open_dataset(root, labels=val, devkit_meta=meta).problems
    )


def test_devkit_meta_errors(tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    pytest.importorskip("scipy.io")
    with pytest.raises(DatasetError, match="no such file"):
        load_devkit_meta(tmp_path / "absent.mat")
    with pytest.raises(DatasetError, match="not a readable MATLAB"):
        load_devkit_meta(write(tmp_path / "junk.mat", "not a mat file at all" * 10))
    import scipy.io

    scipy.io.savemat(tmp_path / "other.mat", {"x": np.arange(3)})
    with pytest.raises(DatasetError, match="no 'synsets' struct"):
        load_devkit_meta(tmp_path / "other.mat")
    with pytest.raises(DatasetError, match="not ImageNet-1k WordNet ids"):
        load_devkit_meta(meta_mat(tmp_path / "foreign.mat", [(1, "n99999999")]))
    monkeypatch.setitem(sys.modules, "scipy.io", None)
    with pytest.raises(MissingDependencyError, match="pip install scipy"):
        load_devkit_meta(tmp_path / "absent.mat")


def test_one_label_per_line_errors(tmp_path: Path):
    root = flat(tmp_path, ["v1.png", "v2.png", "v3.png"])
    with pytest.raises(DatasetError, match="has 2 labels .* but .* holds 3 images"):
        open_dataset(root, labels=write(tmp_path / "a.txt", "0\n1\n"))
    with pytest.raises(DatasetError, match="line 2 is empty"):
        open_dataset(root, labels=write(tmp_path / "b.txt", "0\n\n1\n2\n"))
    with pytest.raises(DatasetError, match="line 3 is 'x'"):
        open_dataset(root, labels=write(tmp_path / "c.txt", "0\n1\nx\n"))
    with pytest.raises(DatasetError, match=r"outside 0 \.\. 9 \(line 3: 10\)"):
        open_dataset(root, labels=write(tmp_path / "d.txt", "0\n1\n10\n"), num_classes=10)
    image(root / "sub" / "v4.png")
    with pytest.raises(DatasetError, match="order is ambiguous"):
        open_dataset(root, labels=write(tmp_path / "e.txt", "0\n1\n2\n3\n"))


def test_label_images_gives_pairs_in_file_order_and_problems(tmp_path: Path):
    root = flat(tmp_path, ["b.png", "a.png", "c.png"])
    images = sorted(root.iterdir())
    problems: list[str] = []
    pairs, source, fmt = label_images(
        root, tmp_path / "val.txt", "c.png 2\na.png 0\n", images, None, 10, problems
    )
    assert [(p.name, t) for p, t in pairs] == [("a.png", 0), ("c.png", 2)]
    assert fmt == "valtxt" and "val.txt" in source
    assert len(problems) == 1 and "b.png" in problems[0] and "no label" in problems[0]

"""Tests for vggnets.evaluation.datasets: ImageFolder trees, indexing options, items, the loader."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest
import torch
from PIL import Image

from vggnets.errors import DatasetError, ImageError, VggnetsError
from vggnets.evaluation.datasets import (
    LabeledImages,
    Sample,
    collate_samples,
    make_loader,
    open_dataset,
)
from vggnets.models.weights import IMAGENET_CATEGORIES, IMAGENET_WNIDS

EXAMPLES = Path(__file__).resolve().parents[1] / "examples" / "images"
PHOTOS = sorted(p for p in EXAMPLES.iterdir() if p.suffix in {".jpg", ".png"})


# ----------------------------------------------------------------------------------------------------
# helpers


def image(path: Path, size: tuple[int, int] = (8, 6), value: int = 0) -> Path:
    """A small generated image (format from the suffix), parents created."""
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.new("RGB", size, (value, 255 - value, 7)).save(path)
    return path


def flat(tmp_path: Path, names: list[str]) -> Path:
    root = tmp_path / "flat"
    for i, name in enumerate(names):
        image(root / name, value=i)
    return root


def write(path: Path, text: str) -> Path:
    path.write_text(text)
    return path


def targets(ds: LabeledImages) -> dict[str, int]:
    return {s.path.name: s.target for s in ds.samples}


# ----------------------------------------------------------------------------------------------------
# ImageFolder trees


def test_wordnet_id_tree(tmp_path: Path):
    root = tmp_path / "val"
    image(root / IMAGENET_WNIDS[0] / "a.jpg")
    image(root / IMAGENET_WNIDS[0] / "b.png")
    image(root / IMAGENET_WNIDS[999] / "deeper" / "c.png")  # found recursively
    (root / IMAGENET_WNIDS[5]).mkdir()  # empty class folder
    (root / IMAGENET_WNIDS[0] / "notes.txt").write_text("not an image")
    (root / ".hidden").mkdir()
    image(root / ".hidden" / "x.png")
    image(root / "loose.png")  # outside any class folder
    ds = open_dataset(root)
    assert [s.path.relative_to(root).as_posix() for s in ds.samples] == [
        f"{IMAGENET_WNIDS[0]}/a.jpg",
        f"{IMAGENET_WNIDS[0]}/b.png",
        f"{IMAGENET_WNIDS[999]}/deeper/c.png",
    ]
    assert ds.targets == [0, 0, 999]
    assert ds.classes == IMAGENET_CATEGORIES
    assert ds.format == "imagefolder"
    assert "WordNet-id" in ds.source
    assert any("contain no images" in p and IMAGENET_WNIDS[5] in p for p in ds.problems)
    assert any("loose.png" in p and "skipped" in p for p in ds.problems)


def test_unknown_wordnet_folders_are_an_error(tmp_path: Path):
    root = tmp_path / "val"
    image(root / IMAGENET_WNIDS[1] / "a.png")
    image(root / "n99999999" / "b.png")
    image(root / "n00000001" / "c.png")
    with pytest.raises(DatasetError, match=r"2 unknown class folder\(s\): n00000001, n99999999"):
        open_dataset(root)
    with pytest.raises(DatasetError, match="model has 10 classes"):
        open_dataset(root, num_classes=10)


def test_class_index_tree(tmp_path: Path):
    root = tmp_path / "tree"
    image(root / "0" / "a.png")
    image(root / "3" / "b.png")
    image(root / "10" / "c.png")
    ds = open_dataset(root, num_classes=11)
    assert targets(ds) == {"a.png": 0, "c.png": 10, "b.png": 3}
    assert ds.classes == [f"class {i}" for i in range(11)]
    assert "class-index" in ds.source
    assert open_dataset(root).classes == IMAGENET_CATEGORIES
    with pytest.raises(DatasetError, match=r"10 are outside 0 \.\. 9"):
        open_dataset(root, num_classes=10)
    image(root / "03" / "d.png")
    with pytest.raises(DatasetError, match="same class index"):
        open_dataset(root, num_classes=11)


def test_custom_class_names(tmp_path: Path):
    root = tmp_path / "pets"
    image(root / "dog" / "a.png")
    image(root / "cat" / "b.png")
    ds = open_dataset(root, num_classes=2)
    assert ds.classes == ["cat", "dog"]  # sorted, as torchvision's ImageFolder
    assert targets(ds) == {"b.png": 0, "a.png": 1}
    assert "custom class folders" in ds.source
    with pytest.raises(DatasetError, match="WordNet id") as info:
        open_dataset(root)
    assert "class index" in str(info.value) and "2 folders here, the model has 1000" in str(info.value)


def test_category_name_folders(tmp_path: Path):
    root = tmp_path / "named"
    image(root / IMAGENET_CATEGORIES[1] / "a.png")
    image(root / IMAGENET_CATEGORIES[0] / "b.png")
    ds = open_dataset(root)
    assert targets(ds) == {"b.png": 0, "a.png": 1}
    assert "category-name" in ds.source


def test_mixed_folder_names(tmp_path: Path):
    root = tmp_path / "mixed"
    image(root / IMAGENET_WNIDS[0] / "a.png")
    image(root / "7" / "b.png")
    image(root / "misc" / "c.png")
    with pytest.raises(DatasetError, match="mix naming schemes") as info:
        open_dataset(root)
    message = str(info.value)
    assert "1 are WordNet ids" in message and "1 are class indices (7)" in message and "(misc)" in message


def test_unusable_roots(tmp_path: Path):
    with pytest.raises(DatasetError, match="no such directory"):
        open_dataset(tmp_path / "absent")
    with pytest.raises(DatasetError, match="not a directory"):
        open_dataset(image(tmp_path / "one.png"))
    (tmp_path / "empty").mkdir()
    with pytest.raises(DatasetError, match="no images found"):
        open_dataset(tmp_path / "empty")
    root = flat(tmp_path, ["a.png", "b.png"])
    with pytest.raises(DatasetError, match="--labels") as info:
        open_dataset(root)
    assert "no class folders" in str(info.value)
    assert issubclass(DatasetError, VggnetsError)


def test_limit_keeps_the_first_samples_in_sorted_order(tmp_path: Path):
    root = flat(tmp_path, [f"img{i}.png" for i in range(5)])
    gt = write(tmp_path / "val.txt", "".join(f"img{i}.png {i}\n" for i in (4, 2, 0, 1, 3)))
    ds = open_dataset(root, labels=gt, limit=2)
    assert [s.path.name for s in ds.samples] == ["img0.png", "img1.png"]
    assert "first 2 of 5" in ds.source
    assert len(open_dataset(root, labels=gt, limit=10)) == 5
    with pytest.raises(ValueError):
        open_dataset(root, labels=gt, limit=0)


# ----------------------------------------------------------------------------------------------------
# Items and loading


def test_items_decode_real_photos_and_report_bad_images(tmp_path: Path):
    bad = tmp_path / "broken.jpg"
    bad.write_bytes(b"\xff\xd8\xff" + b"\x00" * 20)
    samples = [Sample(p, i) for i, p in enumerate(PHOTOS)] + [
        Sample(bad, 0),
        Sample(tmp_path / "gone.png", 1),
    ]
    ds = LabeledImages(samples, IMAGENET_CATEGORIES, source="test")
    for i, photo in enumerate(PHOTOS):
        index, img, target, error = ds[i]
        assert (index, target, error) == (i, i, None)
        assert img.dtype == torch.uint8 and img.shape[0] == 3
        with Image.open(photo) as im:
            assert tuple(img.shape[1:]) == (im.height, im.width)
    index, img, target, error = ds[len(PHOTOS)]
    assert img is None and target == 0 and "corrupt" in error and str(bad) not in error
    assert ds[len(PHOTOS) + 1][3] == "no such file"
    small = LabeledImages(samples[:1], IMAGENET_CATEGORIES, source="test", max_pixels=100)
    assert "above the limit" in small[0][3]


def test_transform_runs_on_items(tmp_path: Path):
    photo = PHOTOS[0]

    def half(img: torch.Tensor) -> torch.Tensor:
        return img[:, ::2, ::2]

    def refuse(img: torch.Tensor) -> torch.Tensor:
        raise ImageError(f"{photo}: too small for the protocol")

    ds = open_dataset(
        EXAMPLES.parent, labels=write(tmp_path / "l.csv", f"file,label\nimages/{photo.name},3\n")
    )
    assert ds.targets == [3]
    full = ds[0][1]
    ds.transform = half
    assert ds[0][1].shape[1] == (full.shape[1] + 1) // 2
    ds.transform = refuse
    assert ds[0][1] is None and ds[0][3] == "too small for the protocol"


def test_targets_are_validated():
    with pytest.raises(ValueError, match="outside 0..1"):
        LabeledImages([("a.png", 2)], ["x", "y"], source="test")


@pytest.mark.parametrize("workers", [0, 2])
def test_loader_keeps_order_and_items(tmp_path: Path, workers: int):
    root = tmp_path / "photos"
    for height in (10, 11, 12):
        image(root / "0" / f"h{height}.png", size=(20, height))
    (root / "1").mkdir()
    (root / "1" / "bad.png").write_bytes(b"not a png")
    ds = open_dataset(root, num_classes=2)
    loader = make_loader(ds, batch_size=2, workers=workers)
    batches = list(loader)
    assert [len(b) for b in batches] == [2, 2]
    items = [item for batch in batches for item in batch]
    assert [i for i, *_ in items] == list(range(4))
    assert [t for _, _, t, _ in items] == [0, 0, 0, 1]
    assert [tuple(img.shape) for _, img, _, _ in items[:3]] == [(3, 10, 20), (3, 11, 20), (3, 12, 20)]
    assert items[3][1] is None and "not an image" in items[3][3]
    assert collate_samples(batches[0]) is batches[0]
    if workers:
        assert loader.num_workers == 2 and loader.prefetch_factor == 2


def test_loader_argument_checks(tmp_path: Path):
    ds = LabeledImages([], ["a"], source="empty")
    with pytest.raises(ValueError):
        make_loader(ds, 0, 0)
    with pytest.raises(ValueError):
        make_loader(ds, 1, -1)
    assert list(make_loader(ds, 4, 0)) == []


def test_symlinked_class_folders_are_followed(tmp_path: Path):
    store = tmp_path / "store"
    image(store / "a.png")
    root = tmp_path / "val"
    root.mkdir()
    try:
        (root / IMAGENET_WNIDS[7]).symlink_to(store, target_is_directory=True)
    except OSError:
        pytest.skip("symlinks not supported")
    assert open_dataset(root).targets == [7]
    shutil.rmtree(root)

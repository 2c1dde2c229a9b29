"""The Ray Data adapter (vggnets.ray: Classifier, Embedder): the callables on batches without Ray, equal to
``vggnets classify --format json`` and ``vggnets features``; then the same through a local Ray instance."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from vggnets.cli import main
from vggnets.errors import MissingDependencyError, VggnetsError
from vggnets.ray import Classifier, Embedder, actor_device
from vggnets.scale import columns as columns_module

pa = pytest.importorskip("pyarrow")

EXAMPLES = Path(__file__).resolve().parents[1] / "examples" / "images"
PHOTOS = sorted(p for p in EXAMPLES.iterdir() if p.suffix in (".jpg", ".png"))
RAY_WARNINGS = pytest.mark.filterwarnings("ignore::DeprecationWarning")  # Ray's own, about its settings
CORRUPT = b"\x89PNG\r\n\x1a\n" + b"\x00" * 40  # a PNG signature, then nothing readable


@pytest.fixture(scope="module")
def folder(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The bundled photos and one corrupt 'image', in a folder of their own (absolute paths, as Ray gives them)."""
    root = tmp_path_factory.mktemp("photos")
    for photo in PHOTOS:
        shutil.copyfile(photo, root / photo.name)
    (root / "zz_corrupt.png").write_bytes(CORRUPT)
    return root


@pytest.fixture(scope="module")
def files(folder: Path) -> list[str]:
    return sorted(str(p) for p in folder.iterdir())


def small(weights: Path) -> dict:
    return {"model": "vgg11", "weights": str(weights), "device": "cpu"}


def cli_json(capsys, files: list[str], weights: Path, *extra: str) -> dict[str, dict]:
    """``vggnets classify --format json`` on the files: file -> its result."""
    code = main(["classify", *files, "--model", "vgg11", "--weights", str(weights), "--device", "cpu", "-q",
                 "--format", "json", "-k", "3", *extra])  # fmt: skip
    out, _ = capsys.readouterr()
    assert code in (0, 1)
    return {r["file"]: r for r in json.loads(out)["results"]}


def cli_features(files: list[str], weights: Path, output: Path, *extra: str) -> dict[str, np.ndarray]:
    """``vggnets features`` on the files (unreadable ones skipped): file -> descriptor."""
    code = main(["features", *files, "--model", "vgg11", "--weights", str(weights), "--device", "cpu", "-q",
                 "--output", str(output), *extra])  # fmt: skip
    assert code in (0, 1)
    matrix = np.load(output)
    names = [line.split(",")[1] for line in output.with_suffix(".csv").read_text().splitlines()[1:]]
    return dict(zip(names, matrix, strict=True))


def assert_same_as_cli(rows: list[dict], expected: dict[str, dict], path_key: str = "path") -> None:
    """Same labels, indices and probabilities (within 1e-5), and the same error message, file by file."""
    assert sorted(r[path_key] for r in rows) == sorted(expected)
    for row in rows:
        ref = expected[row[path_key]]
        assert row["error"] == ref["error"]
        if ref["error"]:
            assert row["labels"] is None and row["indices"] is None and row["probabilities"] is None
            continue
        assert row["labels"] == [p["label"] for p in ref["predictions"]]
        assert row["indices"] == [p["index"] for p in ref["predictions"]]
        assert np.allclose(row["probabilities"], [p["probability"] for p in ref["predictions"]], atol=1e-5)


def bytes_batch(files: list[str]) -> dict[str, np.ndarray]:
    """What ray.data.read_binary_files(..., include_paths=True) hands map_batches (numpy format)."""
    return {
        "bytes": np.array([Path(f).read_bytes() for f in files], dtype=object),
        "path": np.array(files, dtype=object),
    }


def ragged(arrays: list[np.ndarray]) -> np.ndarray:
    out = np.empty(len(arrays), dtype=object)
    out[:] = arrays
    return out


# ------------------------------------------------------------------------------------------------------------
# The callables on batches, without Ray


def test_classifier_on_bytes_equals_classify_json(small_vgg11_file, files, capsys):
    expected = cli_json(capsys, files, small_vgg11_file)
    classify = Classifier(**small(small_vgg11_file), topk=3, batch_size=2)
    table = classify(bytes_batch(files))
    assert table.schema.names == ["path", "labels", "indices", "probabilities", "error"]
    assert table.schema.field("labels").type == pa.list_(pa.string())
    assert table.schema.field("probabilities").type == pa.list_(pa.float32())
    rows = table.to_pylist()
    assert_same_as_cli(rows, expected)
    assert [r["path"] for r in rows] == files  # batch order kept
    assert "truncated or corrupt" in rows[-1]["error"] and rows[-1]["error"].startswith(files[-1])


def test_classifier_on_decoded_arrays_equals_classify_json(small_vgg11_file, files, capsys):
    photos = files[:-1]
    expected = cli_json(capsys, photos, small_vgg11_file)
    classify = Classifier(**small(small_vgg11_file), topk=3)
    rgb = [np.asarray(Image.open(f).convert("RGB")) for f in photos]
    assert_same_as_cli(classify({"image": ragged(rgb), "path": np.array(photos)}).to_pylist(), expected)
    # the layouts read_images gives: grey (H, W) or padded to (1, H, W), RGBA, one stacked (N, H, W, C) array
    grey = next(i for i, f in enumerate(photos) if "grayscale" in f)
    plain = np.asarray(Image.open(photos[grey]).convert("L"))
    variants = [plain, plain[None], np.dstack([rgb[grey], np.full(plain.shape, 7, np.uint8)])]
    rows = classify({"image": ragged(variants), "path": np.array([photos[grey]] * 3)}).to_pylist()
    for row in rows:
        assert_same_as_cli([row], {photos[grey]: expected[photos[grey]]})
    stacked = np.stack([rgb[grey], rgb[grey]])
    assert classify({"image": stacked}).column("labels").to_pylist() == [rows[0]["labels"]] * 2


def test_class_names_beside_a_checkpoint_are_used_as_by_classify(small_vgg11_file, files, tmp_path, capsys):
    weights = tmp_path / "finetuned.pth"
    shutil.copyfile(small_vgg11_file, weights)
    (weights.parent / "classes.txt").write_text("".join(f"kind_{i}\n" for i in range(10)))
    expected = cli_json(capsys, files[:2], weights)
    rows = Classifier(**small(weights), topk=3)(bytes_batch(files[:2])).to_pylist()
    assert_same_as_cli(rows, expected)
    assert all(label.startswith("kind_") for label in rows[0]["labels"])


def test_every_batch_format_gives_the_same_table_and_keeps_other_columns(small_vgg11_file, files):
    pd = pytest.importorskip("pandas")
    classify = Classifier(**small(small_vgg11_file), topk=2)
    batch = {**bytes_batch(files), "id": np.arange(len(files))}
    table = classify(batch)
    assert table.column_names == ["path", "id", "labels", "indices", "probabilities", "error"]
    assert table.column("id").to_pylist() == list(range(len(files)))
    assert classify(pd.DataFrame(batch)).to_pylist() == table.to_pylist()
    assert classify(pa.table(batch)).equals(table)
    without_paths = classify({"bytes": batch["bytes"]})
    assert without_paths.column_names == ["labels", "indices", "probabilities", "error"]
    assert without_paths.column("error").to_pylist()[-1].startswith("<bytes>: ")


@RAY_WARNINGS
def test_ray_tensor_columns_are_read_and_passed_through(small_vgg11_file):
    extensions = pytest.importorskip("ray.data.extensions")  # Ray's Arrow types, no Ray instance needed
    classify = Classifier(**small(small_vgg11_file), topk=2)
    images = ragged([np.zeros((40, 50, 3), np.uint8), np.full((30, 30, 3), 9, np.uint8)])
    embedding = np.arange(8, dtype=np.float32).reshape(2, 4)
    from_numpy = classify({"image": images, "embedding": embedding})
    from_arrow = classify(
        pa.table(
            {
                "image": extensions.ArrowTensorArray.from_numpy(images),
                "embedding": extensions.ArrowTensorArray.from_numpy(embedding),
            }
        )
    )
    assert from_numpy.column_names == ["embedding", "labels", "indices", "probabilities", "error"]
    assert from_numpy.to_pylist()[1]["labels"] == from_arrow.to_pylist()[1]["labels"]
    assert np.array_equal(np.stack([r["embedding"] for r in from_arrow.to_pylist()]), embedding)


def test_bad_values_are_error_rows_and_bad_batches_are_refused(small_vgg11_file):
    classify = Classifier(**small(small_vgg11_file))
    photo = PHOTOS[0].read_bytes()
    values = [photo, b"", None, b"not an image", photo[: len(photo) // 3]]
    errors = classify({"bytes": np.array(values, dtype=object)}).column("error").to_pylist()
    assert errors[0] is None and errors[1] == "<bytes>: file is empty"
    assert "null" in errors[2] and "not an image file" in errors[3] and errors[4]
    arrays = [
        np.zeros((40, 50, 3), np.float32),
        np.zeros((3, 40, 50), np.uint8),
        np.zeros((1, 32, 32), np.uint8),
    ]
    errors = classify({"image": ragged(arrays)}).column("error").to_pylist()
    assert "must be uint8" in errors[0] and "HWC" in errors[1] and errors[2] is None
    strip = np.zeros(
        (1, 20_000, 3), np.uint8
    )  # too extreme an aspect ratio to resize: refused, as by classify
    assert "aspect ratio" in classify({"image": strip[None]}).column("error")[0].as_py()
    with pytest.raises(VggnetsError, match="no image column"):
        classify({"pixels": np.zeros((1, 8, 8, 3), np.uint8)})
    with pytest.raises(VggnetsError, match="labels"):
        classify({"bytes": np.array([photo], dtype=object), "labels": np.array(["cat"])})
    named = Classifier(**small(small_vgg11_file), column="pixels")
    assert named({"pixels": np.zeros((1, 40, 40, 3), np.uint8)}).column("error")[0].as_py() is None


def test_engine_options_match_the_command_with_the_same_options(small_vgg11_file, files, capsys):
    expected = cli_json(capsys, files, small_vgg11_file, "--precision", "fp32", "--compile", "none")
    classify = Classifier(**small(small_vgg11_file), topk=3, precision="fp32", compile="none", batch_size=4)
    assert classify.runner.engine == {"precision": "fp32", "compile": "none", "device": "cpu"}
    assert_same_as_cli(classify(bytes_batch(files)).to_pylist(), expected)


@pytest.mark.parametrize(
    "options",
    [["--flip", "--l2norm"], ["--layer", "pool5"], ["--multiscale", "--scales", "224,256", "--layer", "fc6"]],
    ids=["relu7-flip-l2norm", "pool5", "multiscale-fc6"],
)
def test_embedder_equals_vggnets_features(small_vgg11_file, files, tmp_path, options):
    expected = cli_features(files, small_vgg11_file, tmp_path / "f.npy", *options)
    kwargs = {
        "flip": "--flip" in options,
        "l2norm": "--l2norm" in options,
        "multiscale": "--multiscale" in options,
    }
    if "--layer" in options:
        kwargs["layer"] = options[options.index("--layer") + 1]
    if "--scales" in options:
        kwargs["scales"] = [224, 256]
    table = Embedder(**small(small_vgg11_file), batch_size=2, **kwargs)(bytes_batch(files))
    assert table.schema.field("features").type == pa.list_(pa.float32())
    rows = {r["path"]: r for r in table.to_pylist()}
    assert sorted(expected) == sorted(p for p, r in rows.items() if r["error"] is None)
    for path, vector in expected.items():
        assert np.allclose(rows[path]["features"], vector, atol=1e-5)
    assert rows[files[-1]]["features"] is None and "corrupt" in rows[files[-1]]["error"]


def test_options_are_checked_when_the_actor_starts(small_vgg11_file):
    with pytest.raises(VggnetsError, match="no layer 'conv9_9'"):
        Embedder(**small(small_vgg11_file), layer="conv9_9")
    with pytest.raises(VggnetsError, match="at least 224"):
        Embedder(**small(small_vgg11_file), multiscale=True, scales=[128])
    with pytest.raises(VggnetsError, match="multiscale=True"):
        Embedder(**small(small_vgg11_file), scales=[256])
    with pytest.raises(VggnetsError, match="topk"):
        Classifier(**small(small_vgg11_file), topk=0)


def test_auto_device_is_cpu_outside_ray_and_names_the_extra_without_it(monkeypatch):
    pytest.importorskip("ray")
    assert actor_device("auto") == torch.device("cpu") and actor_device("cpu") == torch.device("cpu")

    def missing(name, *args, **kwargs):
        raise ImportError(f"No module named {name!r}")

    monkeypatch.setattr(columns_module.importlib, "import_module", missing)
    with pytest.raises(MissingDependencyError, match=r"pip install 'vggnets\[ray\]'"):
        actor_device("auto")


def test_importing_the_adapter_imports_neither_ray_nor_torchvision():
    code = "import sys, vggnets.ray; print(sorted({'ray', 'torchvision', 'pyarrow'} & set(sys.modules)))"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "[]"


# ------------------------------------------------------------------------------------------------------------
# Through a local Ray instance


@pytest.fixture(scope="module")
def ray_local():
    ray = pytest.importorskip("ray")
    pytest.importorskip("ray.data")
    started = not ray.is_initialized()
    if started:
        ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False, configure_logging=False)
    ray.data.DataContext.get_current().enable_progress_bars = False
    yield ray
    if started:
        ray.shutdown()


def actors(ray, n: int = 1) -> dict:
    """map_batches' pool of ``n`` actors (``compute=``: ``concurrency=`` is deprecated from Ray 2.51), each asking
    for half a CPU so that the read tasks still get one of the two."""
    return {"compute": ray.data.ActorPoolStrategy(size=n), "num_cpus": 0.5}


@RAY_WARNINGS
def test_ray_read_binary_files_to_parquet_equals_classify_json(
    ray_local, small_vgg11_file, folder, files, tmp_path, capsys
):
    expected = cli_json(capsys, files, small_vgg11_file)
    ds = ray_local.data.read_binary_files(str(folder), include_paths=True)
    labels = ds.map_batches(Classifier, fn_constructor_kwargs={**small(small_vgg11_file), "topk": 3},
                            batch_size=4, **actors(ray_local))  # fmt: skip
    labels.write_parquet(str(tmp_path / "labels"))
    table = pa.dataset.dataset(
        str(tmp_path / "labels"), format="parquet"
    ).to_table()  # plain pyarrow reads it
    assert_same_as_cli(table.to_pylist(), expected)
    assert table.schema.field("error").type == pa.string()


@pytest.mark.slow
@RAY_WARNINGS
def test_ray_embedder_equals_vggnets_features(ray_local, small_vgg11_file, folder, files, tmp_path):
    reference = cli_features(files, small_vgg11_file, tmp_path / "f.npy", "--l2norm")
    ds = ray_local.data.read_binary_files(str(folder), include_paths=True)
    rows = ds.map_batches(Embedder, fn_constructor_kwargs={**small(small_vgg11_file), "l2norm": True},
                          batch_size=4, **actors(ray_local))  # fmt: skip
    by_path = {r["path"]: r for r in rows.take_all()}
    assert by_path[files[-1]]["error"] and by_path[files[-1]]["features"] is None
    assert sorted(reference) == sorted(p for p, r in by_path.items() if r["error"] is None)
    for path, vector in reference.items():
        assert np.allclose(by_path[path]["features"], vector, atol=1e-5)


@pytest.mark.slow
@RAY_WARNINGS
def test_ray_read_images_equals_classify_json(ray_local, small_vgg11_file, files, capsys):
    photos = files[:-1]
    expected = cli_json(capsys, photos, small_vgg11_file)
    ds = ray_local.data.read_images(photos, include_paths=True, mode="RGB")
    rows = ds.map_batches(Classifier, fn_constructor_kwargs={**small(small_vgg11_file), "topk": 3},
                          batch_size=2, **actors(ray_local, 2)).take_all()  # fmt: skip
    assert_same_as_cli(rows, expected)

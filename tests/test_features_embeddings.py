"""Appendix B descriptors (vggnets.features.embeddings: embed, embed_files) and ``vggnets features`` end to end."""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pytest
import torch
from torchvision.transforms import functional as TF

import vggnets
from vggnets.cli import main
from vggnets.core.transforms import IMAGENET_MEAN, IMAGENET_STD
from vggnets.features.embeddings import embed, embed_files
from vggnets.io.images import collect_images, read_image
from vggnets.models.dense import fully_convolutional

EXAMPLES = Path(__file__).resolve().parents[1] / "examples" / "images"
NORM = {"mean": IMAGENET_MEAN, "std": IMAGENET_STD}


@pytest.fixture(scope="module")
def model():
    torch.manual_seed(0)
    return vggnets.vgg11(width=0.125).eval()


@pytest.fixture(scope="module")
def photos():
    return [read_image(EXAMPLES / n) for n in ("chelsea_cat.png", "coffee_cup.jpg")]


def test_single_scale_is_the_center_crop_through_the_model(model, photos):
    out = embed(model, photos, layer="relu7", **NORM)
    preset = vggnets.VGG16_Weights.DEFAULT.transforms()
    x = torch.stack([preset(p) for p in photos])
    with torch.no_grad():
        flat = torch.flatten(model.avgpool(model.features(x)), 1)
        relu7 = torch.relu(model.classifier[3](torch.relu(model.classifier[0](flat))))
    assert out.shape == (2, 512) and torch.allclose(out, relu7, atol=1e-5)
    flipped = embed(model, photos, layer="relu7", flip=True, **NORM)
    with torch.no_grad():
        mirror = embed(model, [p.flip(-1) for p in photos], layer="relu7", **NORM)
    assert torch.allclose(flipped, (out + mirror) / 2, atol=1e-4)


def test_multiscale_averages_dense_maps_over_positions_and_scales(model, photos):
    out = embed(model, photos[:1], layer="relu7", scales=(256, 320), **NORM)
    fcn = fully_convolutional(model)
    expected = []
    with torch.no_grad():
        for q in (256, 320):
            x = TF.normalize(
                TF.convert_image_dtype(TF.resize(photos[0], [q], antialias=True), torch.float32), **NORM
            )
            expected.append(fcn(x.unsqueeze(0), until="relu7").mean(dim=(-2, -1))[0])
    assert torch.allclose(out[0], torch.stack(expected).mean(0), atol=1e-5)


def test_conv_layers_are_pooled_and_l2norm_normalises(model, photos):
    out = embed(model, photos, layer="pool5", l2norm=True, **NORM)
    assert out.shape == (2, 64)
    assert torch.allclose(out.norm(dim=1), torch.ones(2), atol=1e-5)


@pytest.fixture
def labelled(tmp_path) -> Path:
    root = tmp_path / "photos"
    for label, name in (("cat", "chelsea_cat.png"), ("cup", "coffee_cup.jpg")):
        (root / label).mkdir(parents=True)
        shutil.copy(EXAMPLES / name, root / label / name)
    (root / "cup" / "broken.jpg").write_bytes(b"nope")
    return root


def features_args(labelled: Path, weights: Path) -> list[str]:
    """The command line shared by the CLI tests: the labelled tree, recursively, with the tiny checkpoint."""
    return ["features", str(labelled), "-r", "--model", "vgg11", "--weights", str(weights)]


@pytest.fixture(scope="module")
def tiny_weights(tmp_path_factory, model) -> Path:
    path = tmp_path_factory.mktemp("features") / "tiny.pth"
    torch.save(model.state_dict(), path)
    return path


def test_cli_writes_npy_with_files_and_labels(labelled, tiny_weights, tmp_path, capsys, model, photos):
    out = tmp_path / "feats.npy"
    code = main([*features_args(labelled, tiny_weights), "-o", str(out)])
    err = capsys.readouterr().err
    assert (
        code == 1 and "broken.jpg" in err and "Traceback" not in err
    )  # the bad file is skipped and reported
    array = np.load(out)
    rows = out.with_suffix(".csv").read_text().splitlines()
    assert rows[0] == "index,file,label" and [r.split(",")[2] for r in rows[1:]] == ["cat", "cup"]
    assert array.shape == (2, 512)
    assert np.allclose(array, embed(model, photos, layer="relu7", **NORM).numpy(), atol=1e-5)


def test_embed_files_gives_the_rows_the_cli_writes(labelled, tiny_weights, tmp_path, capsys, model):
    files, problems = collect_images([labelled], recursive=True)
    assert problems == [] and [f.name for f in files] == ["chelsea_cat.png", "broken.jpg", "coffee_cup.jpg"]
    rows = list(embed_files(model, files, layer="pool5", batch_size=2, **NORM))  # the bad file shares a batch
    assert [(Path(r.file).name, r.label) for r in rows] == [
        ("chelsea_cat.png", "cat"),
        ("broken.jpg", "cup"),
        ("coffee_cup.jpg", "cup"),
    ]
    assert rows[1].features is None and "broken.jpg" in rows[1].error
    read = [r for r in rows if r.error is None]
    assert all(r.features.shape == (64,) for r in read)

    out = tmp_path / "feats.pt"
    assert main([*features_args(labelled, tiny_weights), "--layer", "pool5", "-o", str(out)]) == 1
    assert "skipped" in capsys.readouterr().err
    doc = torch.load(out, weights_only=True)
    assert doc["files"] == [r.file for r in read] and doc["labels"] == [r.label for r in read]
    assert torch.allclose(doc["features"], torch.stack([r.features for r in read]), atol=1e-5)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["feats.pt", "photos"]  # no temporary file left


def test_cli_pt_and_parquet_and_overwrite_protection(labelled, tiny_weights, tmp_path, capsys):
    (labelled / "cup" / "broken.jpg").unlink()
    pt = tmp_path / "feats.pt"
    args = [*features_args(labelled, tiny_weights), "--layer", "pool5"]
    assert main([*args, "--l2norm", "-o", str(pt)]) == 0
    doc = torch.load(pt, weights_only=True)
    assert doc["features"].shape == (2, 64) and doc["labels"] == ["cat", "cup"] and doc["layer"] == "pool5"
    assert torch.allclose(doc["features"].norm(dim=1), torch.ones(2), atol=1e-5)
    before = pt.read_bytes()
    assert (
        main([*args, "-o", str(pt)]) == 2 and pt.read_bytes() == before
    )  # nothing the user has is overwritten
    assert "--force" in capsys.readouterr().err
    pytest.importorskip("pyarrow")
    import pyarrow.parquet as pq

    parquet = tmp_path / "feats.parquet"
    assert main([*args, "-o", str(parquet)]) == 0
    table = pq.read_table(parquet)
    assert table.column_names == ["file", "label", "features"] and table["label"].to_pylist() == [
        "cat",
        "cup",
    ]


@pytest.mark.parametrize(
    ("extra", "message"),
    [
        (["--layer", "fc9"], "has no layer 'fc9'"),
        (["-o", "x.txt"], "--output must end in"),
        (["--multiscale", "--scales", "100"], "at least 224"),
    ],
)
def test_cli_bad_options(labelled, tiny_weights, tmp_path, capsys, extra, message):
    args = [*features_args(labelled, tiny_weights), "-o", str(tmp_path / "f.npy")]
    assert main([*args, *extra]) == 2
    err = capsys.readouterr().err
    assert message in err and "Traceback" not in err

"""Conversion of timm and Keras Applications VGG weights, checked numerically against the real libraries.

timm's ``vgg16`` and Keras 3's ``keras.applications.VGG16`` (on its torch backend: no TensorFlow) are built with
random weights (random biases too, so that a misplaced bias shows), saved in their native formats, converted, and the
converted vggnets model must give the same outputs. Key conversions are also checked both ways without the libraries.
"""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path

os.environ.setdefault("KERAS_BACKEND", "torch")  # before keras is imported: without it keras needs TensorFlow

import numpy as np
import pytest
import torch

import vggnets
from vggnets import convert
from vggnets.cli import main
from vggnets.core.configs import MODELS
from vggnets.errors import ArchitectureMismatchError, CheckpointError, MissingDependencyError, VggnetsError

try:
    import h5py
except ImportError:  # the [keras] extra: only the tests that read or write .h5 files need it
    h5py = None

needs_h5py = pytest.mark.skipif(h5py is None, reason="needs h5py (pip install 'vggnets[keras]')")

# Keras 3.15 on NumPy 2 warns about __array__(copy=...) on every weight access: noise, not ours
pytestmark = pytest.mark.filterwarnings("ignore:__array__ implementation:DeprecationWarning")

NON_BN = [name for name, spec in MODELS.items() if not spec.batch_norm]


def assert_close(
    actual: torch.Tensor | np.ndarray, expected: torch.Tensor | np.ndarray, rtol: float = 1e-4
) -> None:
    """Max abs difference within rtol of the outputs' magnitude (float32 sums over 25088 inputs)."""
    actual, expected = torch.as_tensor(np.asarray(actual)), torch.as_tensor(np.asarray(expected))
    assert actual.shape == expected.shape
    scale = expected.abs().max().item()
    assert scale > 0
    assert (actual - expected).abs().max().item() <= rtol * scale


def randomize_(module: torch.nn.Module, seed: int) -> None:
    """Random biases and BN statistics (the libraries initialise biases to 0, which would hide a misplaced bias)."""
    gen = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, tensor in module.state_dict().items():
            if name.endswith("bias") or name.endswith("running_mean"):
                tensor.copy_(torch.randn(tensor.shape, generator=gen) * 0.1)
            elif name.endswith("running_var") or (name.endswith("weight") and tensor.dim() == 1):
                tensor.copy_(torch.rand(tensor.shape, generator=gen) + 0.5)


def small_state(name: str, seed: int = 0) -> dict[str, torch.Tensor]:
    """A width-1/8 model's state dict with random values everywhere."""
    torch.manual_seed(seed)
    model = vggnets.build(name, width=0.125, num_classes=7)
    randomize_(model, seed)
    return model.state_dict()


def cli(capsys: pytest.CaptureFixture[str], *argv: object) -> tuple[int, str, str]:
    code = main([str(a) for a in argv])
    out, err = capsys.readouterr()
    return code, out, err


# ------------------------------------------------------------------------------------------------------------
# key conversions both ways (no third-party library)


@pytest.mark.parametrize("name", ["vgg11", "vgg16_bn", "vgg19"])
def test_timm_keys_round_trip(name: str) -> None:
    state = small_state(name)
    timm_state = convert.to_timm(state)
    assert convert.detect_layout(state) == "torchvision"
    assert convert.detect_layout(timm_state) == "timm"
    assert timm_state["pre_logits.fc1.weight"].shape == (512, 64, 7, 7)
    assert timm_state["pre_logits.fc2.weight"].shape == (512, 512, 1, 1)
    assert "head.fc.weight" in timm_state and not any(k.startswith("classifier.") for k in timm_state)
    back = convert.from_timm(timm_state)
    assert list(back) == list(state)
    for key, value in state.items():
        assert torch.equal(back[key], value), key


@pytest.mark.parametrize("name", NON_BN)
@pytest.mark.parametrize("rgb", [True, False])
def test_keras_keys_round_trip(name: str, rgb: bool) -> None:
    state = small_state(name)
    keras_state = convert.to_keras(state, rgb=rgb, model=name)
    assert convert.detect_layout(keras_state) == "keras"
    assert keras_state["block1_conv1/kernel"].shape == (3, 3, 3, 8)
    assert keras_state["fc1/kernel"].shape == (64 * 49, 512)
    assert keras_state["predictions/kernel"].shape == (512, 7)
    back = convert.from_keras(keras_state, rgb=rgb, model=name)
    assert set(back) == set(state)
    for key, value in state.items():
        assert torch.equal(back[key], value), key
    flipped = torch.equal(keras_state["block1_conv1/kernel"], state["features.0.weight"].permute(2, 3, 1, 0))
    assert flipped != rgb


def test_keras_layer_names_follow_blocks() -> None:
    names = [k.split("/")[0] for k in convert.to_keras(small_state("vgg19"))][::2]
    assert names[:4] == ["block1_conv1", "block1_conv2", "block2_conv1", "block2_conv2"]
    assert names[-7:] == [
        "block5_conv1",
        "block5_conv2",
        "block5_conv3",
        "block5_conv4",
        "fc1",
        "fc2",
        "predictions",
    ]


def test_keras_fc1_is_reordered_from_channels_last() -> None:
    state = small_state("vgg11")
    kernel = convert.to_keras(state)["fc1/kernel"]  # rows in (H, W, C) order
    fc6 = state["classifier.0.weight"]  # columns in (C, H, W) order
    c, h, w = 5, 2, 6
    assert torch.equal(kernel[(h * 7 + w) * 64 + c], fc6[:, c * 49 + h * 7 + w])


def test_keras_model_is_recognised_from_the_convolutions() -> None:
    assert set(convert.from_keras(convert.to_keras(small_state("vgg16")))) == set(small_state("vgg16"))
    back = convert.from_keras(convert.to_keras(small_state("vgg16_1x1")))
    assert back["features.28.weight"].shape[-1] == 1  # conv5_3 of configuration C is 1x1
    with pytest.raises(ArchitectureMismatchError, match="vgg19"):
        convert.from_keras(convert.to_keras(small_state("vgg16")), model="vgg19")
    with pytest.raises(ArchitectureMismatchError, match="no batch normalisation"):
        convert.from_keras(convert.to_keras(small_state("vgg16")), model="vgg16_bn")


@needs_h5py
def test_keras_1_style_weight_names(tmp_path: Path) -> None:
    """The oldest keras.applications files name weights 'block1_conv1_W_1:0' inside each layer group."""
    state = small_state("vgg11")
    layers = convert.layouts.keras_layers(convert.to_keras(state))
    path = tmp_path / "keras1.h5"
    with h5py.File(path, "w") as f:
        f.attrs["layer_names"] = np.array([b"input_1"] + [n.encode() for n, _ in layers] + [b"flatten"])
        f.create_group("input_1").attrs["weight_names"] = np.array([], dtype="S1")
        f.create_group("flatten").attrs["weight_names"] = np.array([], dtype="S1")
        for name, weights in layers:
            group = f.create_group(name)
            group.attrs["weight_names"] = np.array([f"{name}_W_1:0".encode(), f"{name}_b_1:0".encode()])
            group[f"{name}_W_1:0"] = weights["kernel"].numpy()
            group[f"{name}_b_1:0"] = weights["bias"].numpy()
    back = convert.read_keras_h5(path)
    assert all(torch.equal(back[k], v) for k, v in state.items())
    model = vggnets.vgg11(weights=path).eval()  # the hub hook
    assert model.num_classes == 7


@needs_h5py
def test_write_keras_h5_round_trip(tmp_path: Path) -> None:
    state = small_state("vgg13")
    path = tmp_path / "vgg13.h5"
    convert.write_keras_h5(convert.to_keras(state), path)
    with h5py.File(path) as f:  # the layout of the files keras.applications downloads
        assert "block1_conv1" in [n.decode() for n in f.attrs["layer_names"]]
        assert f["block1_conv1"]["block1_conv1/kernel:0"].shape == (3, 3, 3, 8)
    back = convert.read_keras_h5(path)
    assert all(torch.equal(back[k], v) for k, v in state.items())


def test_headless_sources_get_a_nan_classifier() -> None:
    state = small_state("vgg11")
    keras_state = {k: v for k, v in convert.to_keras(state).items() if k.startswith("block")}
    features_only = convert.from_keras(keras_state)
    assert not any(k.startswith("classifier.") for k in features_only)
    assert set(convert.to_keras(features_only)) == set(keras_state)
    filled = convert.complete(features_only)
    assert len(filled) == 6
    assert features_only["classifier.0.weight"].shape == (512, 64 * 49)
    assert features_only["classifier.6.weight"].shape == (1000, 512)
    assert torch.isnan(features_only["classifier.3.weight"]).all()


def test_detect_layout_of_other_networks() -> None:
    assert convert.detect_layout({}) == "unknown"
    assert convert.detect_layout({"conv1.weight": torch.zeros(1), "fc.weight": torch.zeros(1)}) == "unknown"
    assert (
        convert.detect_layout({"features.0.weight": torch.zeros(1), "fc.weight": torch.zeros(1)}) == "unknown"
    )
    assert convert.as_torchvision({"fc.weight": torch.zeros(1)}) == {"fc.weight": torch.zeros(1)}
    with pytest.raises(CheckpointError, match="another network"):
        convert.from_timm({"conv1.weight": torch.zeros(1)})
    with pytest.raises(CheckpointError, match="timm"):
        convert.to_timm(convert.to_timm(small_state("vgg11")))


def test_to_keras_refuses_batch_norm() -> None:
    with pytest.raises(CheckpointError, match="batch normalisation"):
        convert.to_keras(small_state("vgg11_bn"))


def test_keras_transforms_is_caffe_mean_subtraction() -> None:
    image = torch.randint(0, 256, (3, 224, 224), dtype=torch.uint8)
    out = convert.keras_transforms(crop_size=224, resize_size=224)(image)
    expected = image.float() - torch.tensor(convert.KERAS_MEAN_RGB).view(3, 1, 1)
    assert_close(out, expected, rtol=1e-6)


# ------------------------------------------------------------------------------------------------------------
# timm (the real library)


@pytest.fixture(scope="module")
def timm_vgg16() -> torch.nn.Module:
    timm = pytest.importorskip("timm")
    torch.manual_seed(1)
    model = timm.create_model("vgg16", pretrained=False, num_classes=10).eval()
    randomize_(model, 1)
    return model


@pytest.fixture(scope="module")
def image_224() -> torch.Tensor:
    return torch.randn(1, 3, 224, 224, generator=torch.Generator().manual_seed(2))


@pytest.fixture(scope="module")
def timm_logits(timm_vgg16: torch.nn.Module, image_224: torch.Tensor) -> torch.Tensor:
    with torch.no_grad():
        return timm_vgg16(image_224)


def test_timm_vgg16_same_logits(
    timm_vgg16: torch.nn.Module, image_224: torch.Tensor, timm_logits: torch.Tensor
) -> None:
    state = timm_vgg16.state_dict()
    assert convert.detect_layout(state) == "timm"
    ours = vggnets.vgg16(num_classes=10).eval()
    ours.load_state_dict(convert.from_timm(state))  # strict
    with torch.no_grad():
        assert_close(ours(image_224), timm_logits)

    timm = pytest.importorskip("timm")
    back = timm.create_model("vgg16", pretrained=False, num_classes=10).eval()
    back.load_state_dict(convert.to_timm(ours.state_dict()))  # strict
    with torch.no_grad():
        assert_close(back(image_224), timm_logits)


@pytest.mark.parametrize("suffix", [".pth", ".safetensors"])
def test_timm_file_loads_with_weights_path(
    timm_vgg16: torch.nn.Module,
    image_224: torch.Tensor,
    timm_logits: torch.Tensor,
    tmp_path: Path,
    suffix: str,
) -> None:
    path = tmp_path / f"timm_vgg16{suffix}"
    if suffix == ".pth":
        torch.save({"state_dict": timm_vgg16.state_dict()}, path)  # wrapped, as training scripts save it
    else:
        from safetensors.torch import save_file

        save_file({k: v.contiguous() for k, v in timm_vgg16.state_dict().items()}, path)
    model = vggnets.vgg16(weights=path).eval()
    assert model.num_classes == 10
    with torch.no_grad():
        assert_close(model(image_224), timm_logits)


def test_cli_convert_timm_both_ways(
    timm_vgg16: torch.nn.Module,
    image_224: torch.Tensor,
    timm_logits: torch.Tensor,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    src = tmp_path / "timm.pth"
    torch.save(timm_vgg16.state_dict(), src)
    ours = tmp_path / "ours.safetensors"
    code, out, err = cli(capsys, "convert", src, ours)
    assert code == 0, err
    assert "timm layout" in out and "vgg16" in out and "32 (" in out and "RGB" in out
    with torch.no_grad():
        assert_close(vggnets.vgg16(weights=ours).eval()(image_224), timm_logits)
    from safetensors import safe_open

    with safe_open(ours, "pt") as f:
        assert f.get_slice("classifier.0.weight").get_shape() == [4096, 25088]

    back = tmp_path / "back_timm.pth"
    code, out, err = cli(capsys, "convert", ours, back, "--to", "timm", "--json")
    assert code == 0, err
    report = json.loads(out)
    assert report["source_layout"] == "torchvision" and report["target_layout"] == "timm"
    assert report["model"] == "vgg16" and report["num_classes"] == 10 and report["channel_flip"] is False
    timm = pytest.importorskip("timm")
    model = timm.create_model("vgg16", pretrained=False, num_classes=10).eval()
    model.load_state_dict(torch.load(back, weights_only=True))
    with torch.no_grad():
        assert_close(model(image_224), timm_logits)


def test_timm_bn_without_head(tmp_path: Path) -> None:
    """vgg11_bn with num_classes=0 (no head.fc): fc8 becomes NaN; the features and fc6-fc7 match timm."""
    timm = pytest.importorskip("timm")
    torch.manual_seed(3)
    model = timm.create_model("vgg11_bn", pretrained=False, num_classes=0).eval()
    randomize_(model, 3)
    path = tmp_path / "timm_vgg11_bn_headless.pth"
    torch.save(model.state_dict(), path)
    x = torch.randn(1, 3, 64, 64)
    ours = vggnets.vgg11_bn(weights=path).eval()
    assert torch.isnan(ours.classifier[6].weight).all()
    with torch.no_grad():
        assert_close(ours.classifier[:5](torch.flatten(ours.avgpool(ours.features(x)), 1)), model(x))
    fresh = vggnets.vgg11_bn(weights=path, num_classes=5).eval()
    with torch.no_grad():
        assert torch.isfinite(fresh(x)).all()


# ------------------------------------------------------------------------------------------------------------
# Keras 3 Applications on the torch backend (the real library)


def _keras():
    pytest.importorskip("h5py")
    keras = pytest.importorskip("keras")
    if keras.backend.backend() != "torch":
        pytest.skip(f"keras runs on {keras.backend.backend()}, these tests need KERAS_BACKEND=torch")
    return keras


def _randomize_keras(model, seed: int) -> None:
    rng = np.random.default_rng(seed)
    for layer in model.layers:
        weights = layer.get_weights()
        if weights:
            kernel, bias = weights
            layer.set_weights([kernel, rng.normal(0, 0.05, bias.shape).astype("float32")])


def _legacy_weights_only(model, path: Path) -> bool:
    """Keras 2's save_weights layout (root 'layer_names'), the layout of the files keras.applications downloads."""
    try:
        from keras.src.legacy.saving.legacy_h5_format import save_weights_to_hdf5_group
    except ImportError:
        return False
    with h5py.File(path, "w") as f:
        save_weights_to_hdf5_group(f, model)
    return True


@pytest.fixture(scope="module")
def keras_vgg16(tmp_path_factory: pytest.TempPathFactory):
    """Keras VGG16 (224x224, 10 classes, logits) with random weights, its files, an image and its outputs."""
    keras = _keras()
    keras.utils.set_random_seed(4)
    model = keras.applications.VGG16(
        weights=None, input_shape=(224, 224, 3), classes=10, classifier_activation=None
    )
    _randomize_keras(model, 4)
    folder = tmp_path_factory.mktemp("keras")
    files = {"weights.h5": folder / "vgg16.weights.h5", "model.h5": folder / "vgg16_model.h5"}
    model.save_weights(files["weights.h5"])  # Keras 3's own layout: layers/conv2d_N/vars/0
    model.save(files["model.h5"])  # legacy full-model HDF5: model_weights/<layer>/...
    if _legacy_weights_only(model, folder / "vgg16_legacy.h5"):
        files["legacy.h5"] = folder / "vgg16_legacy.h5"
    rgb = np.random.default_rng(5).uniform(0, 255, (1, 224, 224, 3)).astype("float32")
    caffe_bgr = keras.applications.vgg16.preprocess_input(rgb.copy())  # RGB -> BGR, minus the mean pixel
    logits = np.asarray(model.predict(caffe_bgr, verbose=0))
    return {"model": model, "files": files, "rgb": rgb, "bgr": caffe_bgr, "logits": logits}


def _ours_input(keras_vgg16) -> torch.Tensor:
    """The same image for the converted model: RGB, NCHW, normalised with the Caffe mean on [0, 1]-scaled input."""
    rgb = torch.from_numpy(keras_vgg16["rgb"]).permute(0, 3, 1, 2) / 255.0
    mean = torch.tensor(convert.KERAS_MEAN).view(1, 3, 1, 1)
    std = torch.tensor(convert.KERAS_STD).view(1, 3, 1, 1)
    return (rgb - mean) / std


@pytest.mark.parametrize("kind", ["weights.h5", "model.h5", "legacy.h5"])
def test_keras_vgg16_same_logits(keras_vgg16, kind: str) -> None:
    if kind not in keras_vgg16["files"]:
        pytest.skip("this Keras cannot write the legacy weights-only layout")
    model = vggnets.vgg16(weights=keras_vgg16["files"][kind]).eval()  # the hub hook converts
    assert model.num_classes == 10
    with torch.no_grad():
        assert_close(model(_ours_input(keras_vgg16)), keras_vgg16["logits"])


def test_keras_vgg16_bgr_keeps_channel_order(keras_vgg16) -> None:
    state = convert.read_keras_h5(keras_vgg16["files"]["weights.h5"], rgb=False)
    model = vggnets.vgg16(num_classes=10).eval()
    model.load_state_dict(state)
    bgr = torch.from_numpy(np.ascontiguousarray(keras_vgg16["bgr"])).permute(0, 3, 1, 2)
    with torch.no_grad():
        assert_close(model(bgr), keras_vgg16["logits"])


def test_cli_convert_keras_both_ways(keras_vgg16, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    keras = _keras()
    ours = tmp_path / "vgg16_keras.safetensors"
    code, out, err = cli(capsys, "convert", keras_vgg16["files"]["model.h5"], ours)
    assert code == 0, err
    assert "keras layout" in out and "vgg16" in out and "123.68" in out and "conv1_1" in out
    with torch.no_grad():
        assert_close(vggnets.vgg16(weights=ours).eval()(_ours_input(keras_vgg16)), keras_vgg16["logits"])

    back = tmp_path / "vgg16_back.h5"
    report = convert.convert_file(ours, back)
    assert report.target_layout == "keras" and report.channel_flip and report.preprocessing.channels == "BGR"
    fresh = keras.applications.VGG16(
        weights=None, input_shape=(224, 224, 3), classes=10, classifier_activation=None
    )
    fresh.load_weights(back)  # Keras reads our legacy .h5
    assert_close(np.asarray(fresh.predict(keras_vgg16["bgr"], verbose=0)), keras_vgg16["logits"])


def test_keras_vgg19_notop_keras_archive(tmp_path: Path) -> None:
    """VGG19 without its top, saved as a Keras 3 .keras archive: the features match, the classifier is NaN."""
    keras = _keras()
    keras.utils.set_random_seed(6)
    model = keras.applications.VGG19(weights=None, include_top=False, input_shape=(32, 32, 3))
    _randomize_keras(model, 6)
    path = tmp_path / "vgg19_notop.keras"
    model.save(path)
    x = np.random.default_rng(7).normal(0, 50, (2, 32, 32, 3)).astype("float32")
    expected = np.asarray(model.predict(x, verbose=0)).transpose(0, 3, 1, 2)

    ours = vggnets.vgg19(weights=path).eval()
    assert torch.isnan(ours.classifier[0].weight).all()
    with torch.no_grad():
        assert_close(ours.features(torch.from_numpy(x).permute(0, 3, 1, 2).flip(1)), expected)

    report = convert.convert_file(path, tmp_path / "vgg19.pth")
    assert report.model == "vgg19" and report.source_layout == "keras" and len(report.nan_filled) == 6
    assert "NaN" in convert.describe(report)

    back = convert.convert_file(tmp_path / "vgg19.pth", tmp_path / "vgg19_notop.h5")  # no top again
    assert back.tensors == 32 and back.model == "vgg19"
    fresh = keras.applications.VGG19(weights=None, include_top=False, input_shape=(32, 32, 3))
    fresh.load_weights(tmp_path / "vgg19_notop.h5")
    assert_close(np.asarray(fresh.predict(x, verbose=0)).transpose(0, 3, 1, 2), expected)


# ------------------------------------------------------------------------------------------------------------
# errors


@needs_h5py
def test_missing_h5py_names_the_extra(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    path = tmp_path / "vgg11.h5"
    convert.write_keras_h5(convert.to_keras(small_state("vgg11")), path)
    monkeypatch.setitem(sys.modules, "h5py", None)  # import h5py now raises ImportError
    with pytest.raises(MissingDependencyError, match=r"pip install 'vggnets\[keras\]'"):
        convert.read_keras_h5(path)
    with pytest.raises(MissingDependencyError, match=r"vggnets\[keras\]"):
        vggnets.vgg11(weights=path)


def test_refuses_to_overwrite(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    src = tmp_path / "timm.pth"
    torch.save(convert.to_timm(small_state("vgg11")), src)
    dst = tmp_path / "out.pth"
    dst.write_bytes(b"keep me")
    with pytest.raises(VggnetsError, match="overwrite=True"):
        convert.convert_file(src, dst)
    assert dst.read_bytes() == b"keep me"
    code, out, err = cli(capsys, "convert", src, dst)
    assert code == 2 and "--force" in err and "Traceback" not in err
    code, out, err = cli(capsys, "convert", src, dst, "--force")
    assert code == 0, err
    assert vggnets.vgg11(weights=dst).num_classes == 7
    assert [p.name for p in tmp_path.iterdir() if p.name.endswith(".partial")] == []


def test_unknown_layout_is_refused(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    src = tmp_path / "other.pth"
    torch.save({"conv1.weight": torch.zeros(8, 3, 7, 7), "fc.weight": torch.zeros(10, 8)}, src)
    with pytest.raises(CheckpointError, match="another network"):
        convert.convert_file(src, tmp_path / "out.safetensors")
    code, out, err = cli(capsys, "convert", src, tmp_path / "out.safetensors")
    assert code == 2 and "another network" in err and "Traceback" not in err
    assert not (tmp_path / "out.safetensors").exists()


def test_keras_file_of_another_network(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    keras = _keras()
    small = keras.Sequential(
        [keras.Input((32, 32, 3)), keras.layers.Conv2D(8, 3), keras.layers.Flatten(), keras.layers.Dense(4)]
    )
    path = tmp_path / "small.weights.h5"
    small.save_weights(path)
    with pytest.raises(CheckpointError, match="not a Keras Applications VGG"):
        convert.read_keras_h5(path)
    with pytest.raises(CheckpointError, match="small.weights.h5"):
        vggnets.vgg16(weights=path)
    code, out, err = cli(capsys, "convert", path, tmp_path / "out.safetensors")
    assert code == 2 and "Traceback" not in err

    with_bn = keras.Sequential(
        [keras.Input((32, 32, 3)), keras.layers.Conv2D(8, 3), keras.layers.BatchNormalization()]
    )
    path = tmp_path / "bn.weights.h5"
    with_bn.save_weights(path)
    with pytest.raises(CheckpointError, match="4 arrays"):
        convert.read_keras_h5(path)


@needs_h5py
def test_hdf5_that_is_not_keras(tmp_path: Path) -> None:
    path = tmp_path / "data.h5"
    with h5py.File(path, "w") as f:
        f["x"] = np.zeros(3)
    with pytest.raises(CheckpointError, match="without Keras"):
        convert.read_keras_h5(path)


def test_destination_names(tmp_path: Path) -> None:
    src = tmp_path / "ours.pth"
    torch.save(small_state("vgg11"), src)
    with pytest.raises(VggnetsError, match="legacy Keras"):
        convert.convert_file(src, tmp_path / "x.weights.h5")
    with pytest.raises(VggnetsError, match="which format"):
        convert.convert_file(src, tmp_path / "x.onnx")
    with pytest.raises(VggnetsError, match=".h5 name"):
        convert.convert_file(src, tmp_path / "x.pth", to="keras")
    # a missing folder is created by the writer, as for every output (vggnets.io.output)
    assert convert.convert_file(src, tmp_path / "missing" / "x.pth").model == "vgg11"
    assert (tmp_path / "missing" / "x.pth").is_file()
    with pytest.raises(ArchitectureMismatchError):
        convert.convert_file(src, tmp_path / "x.pth", model="vgg16")

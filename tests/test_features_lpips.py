"""Tests for vggnets.features.lpips: equality with the lpips package (and torchmetrics) on the same backbone, the
published linear weights (installed copy, cache, mirror, local HTTP download, digest, safe loading), and behaviour.

The references are built on the meta device and filled with the same tensors as ours, so nothing is downloaded and
no full VGG16 classifier is initialised; equality tests run full-width VGG16 features at 64x64 pixels.
"""

from __future__ import annotations

import dataclasses
import functools
import hashlib
import http.server
import importlib.util
import pickle
import shutil
import threading
import types
import warnings
from pathlib import Path

import pytest
import torch

import vggnets
from vggnets.errors import (
    ArchitectureMismatchError,
    CheckpointError,
    ChecksumError,
    DownloadError,
    WeightsError,
)
from vggnets.features import lpips as vl
from vggnets.features.lpips import LINEAR_WEIGHTS, LPIPS, convert_lpips_state_dict

lpips = pytest.importorskip("lpips")  # the reference package (dev extra)

PUBLISHED = LINEAR_WEIGHTS["0.1"]
LPIPS_FILE = Path(lpips.__file__).parent / "weights" / "v0.1" / "vgg.pth"
SMALL_CHANNELS = (8, 16, 32, 64, 64)  # relu1_2 ... relu5_3 of a width-1/8 VGG16


def small_linear(seed: int = 0) -> dict[str, torch.Tensor]:
    """Positive linear weights for a width-1/8 VGG16, in lpips' layout."""
    g = torch.Generator().manual_seed(seed)
    return {
        f"lin{k}.model.1.weight": torch.rand(1, c, 1, 1, generator=g) * 0.1
        for k, c in enumerate(SMALL_CHANNELS)
    }


@pytest.fixture(scope="module")
def ours() -> LPIPS:
    """Full-width VGG16 with seeded random weights and the published linear layers (read from the lpips package)."""
    torch.manual_seed(0)
    return LPIPS(weights=None)


@pytest.fixture(scope="module")
def reference(ours: LPIPS) -> torch.nn.Module:
    """lpips.LPIPS(net="vgg") holding our tensors: built on the meta device, then filled with our state dict."""
    with torch.device("meta"), warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)  # lpips passes torchvision the deprecated pretrained=
        ref = lpips.LPIPS(net="vgg", pretrained=False, pnet_rand=True, verbose=False)
    ref.to_empty(device="cpu")
    state = lpips_layout(ours)
    missing, unexpected = ref.load_state_dict(state, strict=False)
    assert not unexpected and all(k.startswith(("lins.", "scaling_layer.")) for k in missing)
    ref.scaling_layer.shift.copy_(torch.tensor([-0.030, -0.088, -0.188]).view(1, 3, 1, 1))  # lpips' values
    ref.scaling_layer.scale.copy_(torch.tensor([0.458, 0.448, 0.450]).view(1, 3, 1, 1))
    return ref.eval()


def lpips_layout(metric: LPIPS) -> dict[str, torch.Tensor]:
    """Our state dict in lpips' layout: net.slice{s}.{i}.* (torchvision's index i) and lin{k}.model.1.weight."""
    state = {}
    for key, tensor in metric.state_dict().items():
        head, index, name = key.split(".")
        if head == "lins":
            state[f"lin{index}.model.1.weight"] = tensor
        else:
            s = 1 + sum(int(index) > last for last in (3, 8, 15, 22))
            state[f"net.slice{s}.{index}.{name}"] = tensor
    return state


def images(n: int = 3, size: tuple[int, int] = (64, 64), seed: int = 1) -> tuple[torch.Tensor, torch.Tensor]:
    """Two related batches in [-1, 1]: b is a noisy, shifted version of a."""
    g = torch.Generator().manual_seed(seed)
    a = torch.rand(n, 3, *size, generator=g) * 2 - 1
    b = (a.roll(2, dims=-1) + 0.3 * torch.randn(a.shape, generator=g)).clamp(-1, 1)
    return a, b


# --- equality with the reference packages ---


def test_published_linear_weights_are_those_of_the_lpips_package(ours):
    assert PUBLISHED.installed_path() == LPIPS_FILE
    assert hashlib.sha256(LPIPS_FILE.read_bytes()).hexdigest() == PUBLISHED.sha256
    assert LPIPS_FILE.stat().st_size == PUBLISHED.size
    theirs = torch.load(LPIPS_FILE, map_location="cpu", weights_only=True)  # what lpips' constructor loads
    for k in range(5):
        assert torch.equal(ours.lins[k].weight, theirs[f"lin{k}.model.1.weight"])


def test_distance_equals_lpips(ours, reference):
    a, b = images()
    with torch.no_grad():
        expected = reference(a, b)
        got = ours(a, b)
    assert got.shape == expected.shape == (3, 1, 1, 1)
    torch.testing.assert_close(got, expected, atol=1e-5, rtol=0)
    assert float(got.min()) > 0.05  # a real, non-trivial distance


def test_normalize_and_odd_sizes_equal_lpips(ours, reference):
    a, b = images(2, (48, 80), seed=2)
    a01, b01 = (a + 1) / 2, (b + 1) / 2
    with torch.no_grad():
        expected = reference(a01, b01, normalize=True)
        torch.testing.assert_close(ours(a01, b01, normalize=True), expected, atol=1e-5, rtol=0)
        torch.testing.assert_close(ours(a, b), expected, atol=1e-5, rtol=0)


def test_spatial_map_and_per_layer_terms_equal_lpips(ours, reference):
    a, b = images(2, (64, 48), seed=3)
    with torch.no_grad():
        total, layers = reference(a, b, retPerLayer=True)
        got_total, got_layers = ours(a, b, per_layer=True)
        torch.testing.assert_close(got_total, total, atol=1e-5, rtol=0)
        for mine, theirs in zip(got_layers, layers):
            torch.testing.assert_close(mine, theirs, atol=1e-6, rtol=0)
        reference.spatial = ours.spatial = True
        try:
            expected, got = reference(a, b), ours(a, b)
        finally:
            reference.spatial = ours.spatial = False
    assert got.shape == (2, 1, 64, 48)
    torch.testing.assert_close(got, expected, atol=1e-5, rtol=0)


def test_gradients_equal_lpips(ours, reference):
    a, b = images(2, seed=4)
    grads = []
    for metric in (reference, ours):
        x = a.clone().requires_grad_(True)
        metric(x, b).sum().backward()
        grads.append(x.grad)
    scale = float(grads[0].abs().max())
    assert scale > 0
    torch.testing.assert_close(grads[1], grads[0], atol=1e-4 * scale, rtol=0)
    assert all(p.grad is None for p in ours.parameters())  # frozen: only the image gets a gradient


def test_equals_torchmetrics(ours):
    tm = pytest.importorskip("torchmetrics.functional.image.lpips")
    with torch.device("meta"):
        ref = tm._LPIPS(pretrained=False, net="vgg", pnet_rand=True)
    ref.to_empty(device="cpu")
    ref.load_state_dict(lpips_layout(ours), strict=False)
    ref.scaling_layer.shift.copy_(torch.tensor(vl.SHIFT).view(1, 3, 1, 1))
    ref.scaling_layer.scale.copy_(torch.tensor(vl.SCALE).view(1, 3, 1, 1))
    ref.eval()
    # torchmetrics ships the same linear weights file
    shipped = Path(tm.__file__).parent / "lpips_models" / "vgg.pth"
    if shipped.is_file():
        assert hashlib.sha256(shipped.read_bytes()).hexdigest() == PUBLISHED.sha256
    a, b = images(2, seed=5)
    with torch.no_grad():
        # torchmetrics puts its 1e-8 inside the square root (lpips: 1e-10 outside): equal to ~1e-6 here
        torch.testing.assert_close(ours(a, b), ref(a, b), atol=1e-5, rtol=0)


# --- the published file: installed copy, cache, mirror, download, digest, safe loading ---


@pytest.fixture
def no_lpips_package(monkeypatch):
    """As if the lpips package were not installed."""
    real = importlib.util.find_spec
    monkeypatch.setattr(
        vl.importlib.util, "find_spec", lambda name, *a: None if name == "lpips" else real(name, *a)
    )


def test_mirror_download_is_verified_and_cached(no_lpips_package, tmp_path, monkeypatch):
    mirror = tmp_path / "mirror"
    mirror.mkdir()
    shutil.copyfile(LPIPS_FILE, mirror / PUBLISHED.file_name)
    monkeypatch.setenv("VGGNETS_WEIGHTS_MIRROR", str(mirror))
    assert PUBLISHED.installed_path() is None and PUBLISHED.cached_path() is None
    state = PUBLISHED.get_state_dict(progress=False)
    assert sorted(state) == [f"lins.{k}.weight" for k in range(5)]
    cached = PUBLISHED.cached_path()
    assert cached is not None and cached.read_bytes() == LPIPS_FILE.read_bytes()
    (mirror / PUBLISHED.file_name).unlink()  # now served from the cache
    assert torch.equal(PUBLISHED.get_state_dict()["lins.0.weight"], state["lins.0.weight"])


def test_corrupt_mirror_file_is_refused_and_not_cached(no_lpips_package, tmp_path, monkeypatch):
    mirror = tmp_path / "mirror"
    mirror.mkdir()
    data = bytearray(LPIPS_FILE.read_bytes())
    data[-20] ^= 0xFF
    (mirror / PUBLISHED.file_name).write_bytes(bytes(data))
    monkeypatch.setenv("VGGNETS_WEIGHTS_MIRROR", str(mirror))
    with pytest.raises(ChecksumError, match=PUBLISHED.sha256):
        PUBLISHED.get_state_dict(progress=False)
    assert PUBLISHED.cached_path() is None


def test_download_from_a_local_http_server(no_lpips_package, tmp_path, monkeypatch):
    served = tmp_path / "served"
    served.mkdir()
    shutil.copyfile(LPIPS_FILE, served / "vgg.pth")
    handler = functools.partial(_QuietHandler, directory=str(served))
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        url = f"http://127.0.0.1:{server.server_address[1]}/vgg.pth"
        monkeypatch.setitem(LINEAR_WEIGHTS, "0.1", dataclasses.replace(PUBLISHED, url=url))
        path = LINEAR_WEIGHTS["0.1"].locate(progress=False)
        assert path.name == PUBLISHED.file_name and path.read_bytes() == LPIPS_FILE.read_bytes()
        monkeypatch.setitem(LINEAR_WEIGHTS, "0.1", dataclasses.replace(PUBLISHED, url=url + "-missing"))
        path.unlink()
        with pytest.raises(DownloadError, match="HTTP 404"):
            LINEAR_WEIGHTS["0.1"].locate(progress=False)
    finally:
        server.shutdown()
        server.server_close()


class _QuietHandler(http.server.SimpleHTTPRequestHandler):
    def log_message(self, format: str, *args: object) -> None:
        pass


def test_a_modified_installed_copy_is_ignored(tmp_path, monkeypatch):
    package = tmp_path / "lpips"
    (package / "weights" / "v0.1").mkdir(parents=True)
    (package / "weights" / "v0.1" / "vgg.pth").write_bytes(b"not the published file")
    spec = types.SimpleNamespace(submodule_search_locations=[str(package)])
    real = importlib.util.find_spec
    monkeypatch.setattr(
        vl.importlib.util, "find_spec", lambda name, *a: spec if name == "lpips" else real(name, *a)
    )
    with pytest.warns(UserWarning, match="ignoring the LPIPS weights"):
        assert PUBLISHED.installed_path() is None
    mirror = tmp_path / "mirror"
    mirror.mkdir()
    shutil.copyfile(LPIPS_FILE, mirror / PUBLISHED.file_name)
    monkeypatch.setenv("VGGNETS_WEIGHTS_MIRROR", str(mirror))
    with pytest.warns(UserWarning):
        assert PUBLISHED.locate(progress=False) == PUBLISHED.cached_path()


def test_local_copy_and_state_dicts_are_accepted(tmp_path):
    copy = tmp_path / "my_vgg.pth"
    shutil.copyfile(LPIPS_FILE, copy)
    small = vggnets.vgg16(width=0.125)
    torch.save(small_linear(), tmp_path / "small.pth")
    by_path = LPIPS(small, linear_weights=tmp_path / "small.pth")
    by_dict = LPIPS(small, linear_weights=small_linear())
    by_ours = LPIPS(
        small, linear_weights={f"lins.{k}.weight": w for k, w in enumerate(small_linear().values())}
    )
    for other in (by_dict, by_ours):
        assert all(torch.equal(x.weight, y.weight) for x, y in zip(by_path.lins, other.lins))
    assert convert_lpips_state_dict(torch.load(copy, map_location="cpu", weights_only=True)).keys() == {
        f"lins.{k}.weight" for k in range(5)
    }


def test_unsafe_or_broken_linear_weights_are_refused(tmp_path):
    small = vggnets.vgg16(width=0.125)
    with pytest.raises(CheckpointError, match="does not exist"):
        LPIPS(small, linear_weights=tmp_path / "missing.pth")
    evil = tmp_path / "evil.pth"
    torch.save({"lin0.model.1.weight": torch.zeros(1, 8, 1, 1), "x": _Payload()}, evil)
    with pytest.raises(CheckpointError, match="weights_only"):
        LPIPS(small, linear_weights=evil)
    (tmp_path / "empty.pth").write_bytes(b"")
    with pytest.raises(CheckpointError, match="empty"):
        LPIPS(small, linear_weights=tmp_path / "empty.pth")
    with pytest.raises(WeightsError, match="not an LPIPS"):
        LPIPS(small, linear_weights={"classifier.0.weight": torch.zeros(2, 2)})


class _Payload:
    """An object a weights_only load must refuse to unpickle."""

    def __reduce__(self):
        return (print, ("unpickled!",))


def test_published_weights_do_not_fit_a_width_reduced_backbone():
    with pytest.raises(ArchitectureMismatchError, match="full-width VGG16"):
        LPIPS(vggnets.vgg16(width=0.125))
    with pytest.raises(ArchitectureMismatchError, match="8, 16, 32, 64, 64 channels"):
        LPIPS(
            vggnets.vgg16(width=0.125),
            linear_weights={f"lin{k}.model.1.weight": torch.zeros(1, 3, 1, 1) for k in range(5)},
        )


def test_other_versions_and_backbones_are_refused():
    with pytest.raises(ValueError, match="'0.1'"):
        LPIPS(vggnets.vgg16(width=0.125), version="0.0", linear_weights=small_linear())
    with pytest.raises(ValueError, match="relu1_2"):  # VGG11 has one convolution in stage 1
        LPIPS(vggnets.vgg11(width=0.125), linear_weights=small_linear())


# --- behaviour (width-1/8 VGG16, random linear weights) ---


@pytest.fixture(scope="module")
def small() -> LPIPS:
    torch.manual_seed(16)
    return LPIPS(vggnets.vgg16(width=0.125), linear_weights=small_linear())


def test_module_is_frozen_small_and_stays_in_eval(small):
    assert vggnets.LPIPS is LPIPS
    assert not any(p.requires_grad for p in small.parameters())
    small.train()
    assert not small.features.training and not small.lins.training
    keys = list(small.state_dict())
    assert keys[0] == "features.0.weight" and keys[-1] == "lins.4.weight"
    assert not any(k.startswith("classifier") for k in keys)  # only the layers up to relu5_3
    assert max(int(k.split(".")[1]) for k in keys if k.startswith("features.")) == 28  # conv5_3


def test_identical_images_are_at_distance_zero_and_order_does_not_matter(small):
    a, b = images(2, seed=6)
    with torch.no_grad():
        assert small(a, a).abs().max() == 0
        torch.testing.assert_close(small(a, b), small(b, a), atol=1e-6, rtol=0)
        assert (small(a, b) > 0).all()


def test_one_image_against_a_batch_equals_the_repeated_pairs(small):
    a, b = images(3, seed=7)
    with torch.no_grad():
        broadcast = small(a[:1], b)
        repeated = small(a[:1].expand_as(b), b)
    assert broadcast.shape == (3, 1, 1, 1)
    torch.testing.assert_close(broadcast, repeated, atol=1e-6, rtol=1e-5)


def test_spatial_map_has_the_input_size_and_its_mean_tracks_the_distance(small):
    a, b = images(2, (64, 80), seed=8)
    spatial = LPIPS(vggnets.vgg16(width=0.125), spatial=True, weights=None, linear_weights=small_linear())
    spatial.load_state_dict(small.state_dict())
    with torch.no_grad():
        maps, values = spatial(a, b), small(a, b)
    assert maps.shape == (2, 1, 64, 80) and (maps >= 0).all()
    torch.testing.assert_close(maps.mean((2, 3), keepdim=True), values, rtol=0.05, atol=0)


def test_usable_as_a_loss(small):
    target, start = images(1, seed=9)
    x = start.clone().requires_grad_(True)
    optimizer = torch.optim.Adam([x], lr=0.02)
    first = None
    for _ in range(15):
        loss = small(x, target).sum()
        first = first if first is not None else loss.item()
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    assert small(x, target).sum().item() < 0.7 * first


def test_autocast_runs_the_network_in_bf16_and_the_distance_in_float32(small):
    a, b = images(2, seed=10)
    with torch.no_grad():
        exact = small(a, b)
        with torch.autocast("cpu", dtype=torch.bfloat16):
            low = small(a, b)
    assert low.dtype == torch.float32
    torch.testing.assert_close(low, exact, rtol=0.05, atol=0)


def test_bad_inputs_get_clear_errors(small):
    a, b = images(2, seed=11)
    with pytest.raises(ValueError, match="unsqueeze"):
        small(a[0], b[0])
    with pytest.raises(ValueError, match="same size"):
        small(a, b[..., :32])
    with pytest.raises(ValueError, match="same length"):
        small(torch.cat([a, a]), torch.cat([b, b, b]))
    with pytest.raises(ValueError, match="16x16"):
        small(a[..., :8, :8], b[..., :8, :8])
    with pytest.raises(ValueError, match=r"\(N, 3, H, W\)"):
        small(a[:, :1], b[:, :1])


def test_pickle_round_trip(small):
    clone = pickle.loads(pickle.dumps(small))
    a, b = images(1, seed=12)
    with torch.no_grad():
        assert torch.equal(clone(a, b), small(a, b))

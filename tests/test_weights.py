"""Weight enums and metadata against torchvision's, every form of ``weights=``, and loading through the cache."""

from __future__ import annotations

import importlib.util
import math
import subprocess
import sys
import warnings
from pathlib import Path

import pytest
import torch
import torchvision
from PIL import Image
from safetensors.torch import save_file

import vggnets
from vggnets.errors import ArchitectureMismatchError, CheckpointError, DownloadError, WeightsError
from vggnets.models import weights as W

ROOT = Path(__file__).resolve().parents[1]
ALL_MEMBERS = [m for enum_cls in W.WEIGHTS.values() for m in enum_cls]


def tv_member(member: W.WeightsEnum):
    """The torchvision enum member with the same name."""
    return torchvision.models.get_weight(str(member))


@pytest.mark.parametrize("member", ALL_MEMBERS, ids=str)
def test_metadata_matches_torchvision(member):
    tv = tv_member(member)
    assert member.url == tv.url
    assert member.meta["categories"] == tv.meta["categories"]
    assert member.meta["num_params"] == tv.meta["num_params"]
    assert member.meta["min_size"] == tv.meta["min_size"]
    assert member.meta["_ops"] == pytest.approx(tv.meta["_ops"], abs=1e-3)
    assert member.meta["_file_size"] == pytest.approx(tv.meta["_file_size"], abs=1e-3)
    assert member.meta["recipe"] == tv.meta["recipe"]
    ours, theirs = member.meta["_metrics"]["ImageNet-1K"], tv.meta["_metrics"]["ImageNet-1K"]
    for key in ("acc@1", "acc@5"):
        assert (math.isnan(ours[key]) and math.isnan(theirs[key])) or ours[key] == theirs[key]
    assert (
        member.file_name in member.url
        and member.sha256
        and member.file_name.split("-")[-1].startswith(member.sha256[:8])
    )


def test_enum_names_aliases_and_digests():
    assert len(W.WEIGHTS) == 8 and len(ALL_MEMBERS) == 9
    assert vggnets.VGG16_Weights.DEFAULT is vggnets.VGG16_Weights.IMAGENET1K_V1
    assert str(vggnets.VGG19_BN_Weights.DEFAULT) == "VGG19_BN_Weights.IMAGENET1K_V1"
    assert vggnets.VGG16_Weights.IMAGENET1K_V1.sha256 == (
        "397923af8e79cdbb6a7127f12361acd7a2f83e06b05044ddf496e83de57a5bf0"
    )
    assert vggnets.VGG11_Weights.DEFAULT.sha256 == "8a719046"
    assert vggnets.VGG16_Weights.IMAGENET1K_FEATURES.meta["categories"] is None
    assert list(torchvision.models._meta._IMAGENET_CATEGORIES) == W.IMAGENET_CATEGORIES
    assert (
        len(W.IMAGENET_WNIDS) == 1000
        and W.IMAGENET_WNIDS[0] == "n01440764"
        and sorted(W.IMAGENET_WNIDS) == W.IMAGENET_WNIDS
    )


@pytest.mark.parametrize(
    "member", [vggnets.VGG16_Weights.IMAGENET1K_V1, vggnets.VGG16_Weights.IMAGENET1K_FEATURES], ids=str
)
def test_transforms_equal_torchvision_presets(member):
    ours, theirs = member.transforms(), tv_member(member).transforms()
    torch.manual_seed(0)
    tensor = torch.randint(0, 256, (3, 300, 451), dtype=torch.uint8)
    assert torch.equal(ours(tensor), theirs(tensor))
    batch = torch.randint(0, 256, (2, 3, 240, 320), dtype=torch.uint8)
    assert torch.equal(ours(batch), theirs(batch))
    photo = Image.open(ROOT / "examples" / "images" / "chelsea_cat.png").convert("RGB")
    out = ours(photo)
    assert out.shape == (3, 224, 224) and torch.equal(out, theirs(photo))


def test_lookup_helpers():
    assert vggnets.get_model_weights("vgg16") is vggnets.VGG16_Weights
    assert vggnets.get_weight("VGG13_BN_Weights.IMAGENET1K_V1") is vggnets.VGG13_BN_Weights.IMAGENET1K_V1
    with pytest.raises(WeightsError, match="No pretrained weights are published for vgg11_lrn"):
        vggnets.get_model_weights("vgg11_lrn")
    with pytest.raises(ValueError, match="unknown model"):
        vggnets.get_model_weights("resnet50")
    with pytest.raises(ValueError, match="no member 'IMAGENET1K_V2'"):
        vggnets.get_weight("VGG16_Weights.IMAGENET1K_V2")
    with pytest.raises(ValueError, match="unknown weights"):
        vggnets.get_weight("ResNet50_Weights.DEFAULT")
    assert isinstance(vggnets.get_model("VGG11", width=0.125), vggnets.VGG)


@pytest.mark.parametrize(
    "value",
    ["DEFAULT", "IMAGENET1K_V1", "VGG16_Weights.IMAGENET1K_V1", vggnets.VGG16_Weights.IMAGENET1K_V1],
    ids=str,
)
def test_every_weights_spelling_loads_the_cached_file(value, cached_vgg16, vgg16_file):
    model = vggnets.vgg16(weights=value).eval()
    with torch.device("meta"):  # torchvision's model without a random initialisation it would overwrite
        tv = torchvision.models.vgg16()
    tv.load_state_dict(torch.load(vgg16_file, weights_only=True, mmap=True), assign=True)
    x = torch.randn(1, 3, 224, 224)
    with torch.no_grad():
        assert torch.allclose(model(x), tv.eval()(x), atol=1e-5, rtol=0)


def test_pretrained_flag_still_works_with_a_warning(cached_vgg16):
    with pytest.warns(FutureWarning, match="'pretrained' is deprecated"):
        model = vggnets.vgg16(pretrained=True)
    assert torch.equal(
        model.features[0].weight, torch.load(cached_vgg16, weights_only=True)["features.0.weight"]
    )
    with pytest.warns(FutureWarning):
        random = vggnets.vgg11(pretrained=False, width=0.125)
    assert random.features[0].out_channels == 8
    with pytest.raises(ValueError, match="either weights= or"), warnings.catch_warnings():
        warnings.simplefilter("ignore")
        vggnets.vgg16(weights="DEFAULT", pretrained=True)


def test_local_paths_pth_pt_safetensors(small_vgg11_file, tmp_path):
    expected = torch.load(small_vgg11_file, weights_only=True)
    st = tmp_path / "model.safetensors"
    save_file(expected, st)
    pt = tmp_path / "model.pt"
    pt.write_bytes(small_vgg11_file.read_bytes())
    for value in (small_vgg11_file, str(small_vgg11_file), st, str(pt)):
        model = vggnets.vgg11(weights=value)
        assert model.num_classes == 10 and model.features[0].out_channels == 8  # read from the file
        for key, tensor in model.state_dict().items():
            assert torch.equal(tensor, expected[key]), key


def test_training_checkpoint_wrappers_and_half_precision(small_vgg11_file, tmp_path):
    state = torch.load(small_vgg11_file, weights_only=True)
    wrapped = tmp_path / "ckpt.pth"
    torch.save({"model": {f"module.{k}": v for k, v in state.items()}, "epoch": 3}, wrapped)
    assert torch.equal(vggnets.vgg11(weights=wrapped).classifier[6].bias, state["classifier.6.bias"])
    half = tmp_path / "half.pth"
    torch.save({k: v.half() for k, v in state.items()}, half)
    model = vggnets.vgg11(weights=half)
    assert model.features[0].weight.dtype == torch.float32
    assert torch.allclose(model.features[0].weight, state["features.0.weight"], atol=1e-3)


def test_new_head_for_fine_tuning_keeps_every_other_layer(small_vgg11_file):
    state = torch.load(small_vgg11_file, weights_only=True)
    model = vggnets.vgg11(weights=small_vgg11_file, num_classes=3)
    assert model.num_classes == 3 and not model.classifier[6].weight.is_meta
    assert 0.005 < model.classifier[6].weight.std().item() < 0.02 and torch.all(model.classifier[6].bias == 0)
    for key, tensor in model.state_dict().items():
        if not key.startswith("classifier.6."):
            assert torch.equal(tensor, state[key]), key


def test_bn_checkpoint_without_step_counters_loads(tmp_path):
    state = vggnets.vgg11_bn(width=0.125).state_dict()
    old = {k: v for k, v in state.items() if not k.endswith("num_batches_tracked")}
    path = tmp_path / "old_bn.pth"
    torch.save(old, path)
    model = vggnets.vgg11_bn(weights=path)
    assert int(model.features[1].num_batches_tracked) == 0
    assert torch.equal(model.features[1].running_var, state["features.1.running_var"])


def test_wrong_architecture_lists_keys_and_names_the_right_model(small_vgg11_file, tmp_path):
    with pytest.raises(ArchitectureMismatchError) as info:
        vggnets.vgg13(weights=small_vgg11_file)
    text = str(info.value)
    assert "does not fit the vgg13 architecture" in text and "vgg11" in text
    assert (
        "Missing tensors (18): features.2.bias, features.2.weight" in text and str(small_vgg11_file) in text
    )
    assert "Unexpected tensors (14): features.3.bias, features.3.weight" in text
    junk = tmp_path / "junk.pth"
    torch.save({"encoder.weight": torch.zeros(3)}, junk)
    with pytest.raises(ArchitectureMismatchError, match="does not match any VGG configuration"):
        vggnets.vgg16(weights=junk)


def test_bad_weights_values(tmp_path, small_vgg11_file):
    with pytest.raises(WeightsError, match="does not exist"):
        vggnets.vgg16(weights=str(tmp_path / "missing.pth"))
    with pytest.raises(ValueError, match="are weights for vgg19, not vgg16"):
        vggnets.vgg16(weights=vggnets.VGG19_Weights.DEFAULT)
    with pytest.raises(ValueError, match="no member 'IMAGENET22K'"):
        vggnets.vgg16(weights="IMAGENET22K")
    with pytest.raises(WeightsError, match="vgg16_1x1"):
        vggnets.vgg16_1x1(weights="DEFAULT")
    with pytest.raises(TypeError):
        vggnets.vgg16(weights=3)
    corrupt = tmp_path / "corrupt.pth"
    corrupt.write_bytes(small_vgg11_file.read_bytes()[:5000])
    with pytest.raises(CheckpointError):
        vggnets.vgg11(weights=corrupt)


def test_download_from_a_mirror_directory_then_cache_hit(
    vgg16_file, tmp_path, monkeypatch, isolated_torch_home, place_in_cache
):
    """Enum weights missing from the cache are fetched (here from a mirror), verified, cached, then reused."""
    from vggnets.io import download as hub

    mirror = tmp_path / "mirror"
    place_in_cache(vgg16_file, mirror.parent, name=None)  # creates mirror.parent/hub/checkpoints
    monkeypatch.setenv("VGGNETS_WEIGHTS_MIRROR", str(mirror.parent / "hub" / "checkpoints"))
    monkeypatch.setitem(W.FILE_SHA256, vgg16_file.name, hub.sha256_file(vgg16_file))
    assert vggnets.VGG16_Weights.DEFAULT.cached_path() is None
    model = vggnets.vgg16(weights="DEFAULT")
    cached = isolated_torch_home / "hub" / "checkpoints" / vgg16_file.name
    assert vggnets.VGG16_Weights.DEFAULT.cached_path() == cached and cached.is_file()
    assert torch.equal(
        model.classifier[0].bias, torch.load(vgg16_file, weights_only=True)["classifier.0.bias"]
    )
    monkeypatch.setenv("VGGNETS_WEIGHTS_MIRROR", "http://127.0.0.1:9/unreachable")
    vggnets.vgg16(weights="DEFAULT")  # cache hit: the unreachable mirror is not contacted


def test_offline_without_cache_gives_actionable_error(monkeypatch, isolated_torch_home):
    monkeypatch.setenv("VGGNETS_WEIGHTS_MIRROR", "http://127.0.0.1:9/")
    with pytest.raises(DownloadError) as info:
        vggnets.vgg19_bn(weights="DEFAULT")
    text = str(info.value)
    assert "vgg19_bn-c79401a0.pth" in text and str(isolated_torch_home) in text


def test_import_does_not_load_torchvision():
    code = "import sys, vggnets; m = vggnets.vgg11(width=0.125); print('torchvision' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "False"


def test_torch_hub_local_entry_points(cached_vgg16):
    spec = importlib.util.spec_from_file_location("hubconf_under_test", ROOT / "hubconf.py")
    hubconf = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(hubconf)
    entry_points = {n for n in dir(hubconf) if callable(getattr(hubconf, n)) and not n.startswith("_")}
    assert set(vggnets.list_models()) <= entry_points and "torch" in hubconf.dependencies
    assert "Table 1" in hubconf.vgg19_bn.__doc__
    with pytest.warns(FutureWarning):
        model = torch.hub.load(str(ROOT), "vgg16", source="local", pretrained=True)
    again = torch.hub.load(str(ROOT), "vgg16", source="local", weights="DEFAULT")
    assert torch.equal(model.features[28].weight, again.features[28].weight)
    assert torch.equal(
        model.features[28].weight, torch.load(cached_vgg16, weights_only=True)["features.28.weight"]
    )

"""The configuration table, the module tree and exact equivalence with torchvision."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest
import torch
import torchvision
from torch import nn

import vggnets
from vggnets.core import configs
from vggnets.core.layout import expected_shapes, guess_architecture
from vggnets.core.vgg import initialize
from vggnets.models.builders import build

TV_MODELS = ["vgg11", "vgg11_bn", "vgg13", "vgg13_bn", "vgg16", "vgg16_bn", "vgg19", "vgg19_bn"]

#: Paper Table 2 (and torchvision for the BN variants), exact counts of weights and biases.
PAPER_PARAMS = {
    "vgg11": 132_863_336,
    "vgg11_lrn": 132_863_336,
    "vgg13": 133_047_848,
    "vgg16_1x1": 133_638_952,
    "vgg16": 138_357_544,
    "vgg19": 143_667_240,
    "vgg11_bn": 132_868_840,
    "vgg13_bn": 133_053_736,
    "vgg16_bn": 138_365_992,
    "vgg19_bn": 143_678_248,
}

#: torchvision's feature indices of the max-pools (REFERENCE 1.4).
POOL_INDICES = {
    "vgg11": [2, 5, 10, 15, 20],
    "vgg11_bn": [3, 7, 14, 21, 28],
    "vgg13": [4, 9, 14, 19, 24],
    "vgg13_bn": [6, 13, 20, 27, 34],
    "vgg16": [4, 9, 16, 23, 30],
    "vgg16_bn": [6, 13, 23, 33, 43],
    "vgg19": [4, 9, 18, 27, 36],
    "vgg19_bn": [6, 13, 26, 39, 52],
}


def meta_model(name: str) -> nn.Module:
    """The model on the meta device: structure without memory."""
    with torch.device("meta"):
        return vggnets.core.vgg.construct(configs.MODELS[name], 1000, 0.5, 1.0, "pytorch")


def test_every_paper_configuration_is_a_model():
    assert set(configs.MODELS) == {
        "vgg11", "vgg11_lrn", "vgg13", "vgg16_1x1", "vgg16", "vgg19",
        "vgg11_bn", "vgg13_bn", "vgg16_1x1_bn", "vgg16_bn", "vgg19_bn",
    }  # fmt: skip
    assert vggnets.list_models() == sorted(configs.MODELS)
    assert vggnets.list_models(include="*_bn") == [
        "vgg11_bn",
        "vgg13_bn",
        "vgg16_1x1_bn",
        "vgg16_bn",
        "vgg19_bn",
    ]
    assert vggnets.list_models(include="vgg16*", exclude="*_bn") == ["vgg16", "vgg16_1x1"]


@pytest.mark.parametrize("name", sorted(PAPER_PARAMS))
def test_parameter_counts_equal_paper_table_2(name):
    model = meta_model(name)
    assert sum(p.numel() for p in model.parameters()) == PAPER_PARAMS[name]
    assert configs.num_params(name) == PAPER_PARAMS[name]


def test_depths_and_gmacs_follow_table_1():
    depth = {n: s.depth for n, s in configs.MODELS.items()}
    assert depth["vgg11"] == depth["vgg11_lrn"] == 11 and depth["vgg13"] == 13
    assert depth["vgg16"] == depth["vgg16_1x1"] == 16 and depth["vgg19"] == 19
    gm = {n: round(configs.gmacs(n), 3) for n in ("vgg11", "vgg13", "vgg16_1x1", "vgg16", "vgg19")}
    assert gm == {"vgg11": 7.609, "vgg13": 11.308, "vgg16_1x1": 11.771, "vgg16": 15.47, "vgg19": 19.632}


def test_table_parser_rejects_unknown_tokens():
    with pytest.raises(ValueError, match="unknown token"):
        configs.parse("64 X M")


def test_config_c_has_1x1_convolutions_in_stages_3_to_5():
    convs = [m for m in meta_model("vgg16_1x1").features if isinstance(m, nn.Conv2d)]
    one_by_one = [(i, c.out_channels) for i, c in enumerate(convs) if c.kernel_size == (1, 1)]
    assert one_by_one == [(6, 256), (9, 512), (12, 512)]
    assert all(c.padding == (0, 0) for c in convs if c.kernel_size == (1, 1))
    assert all(c.padding == (1, 1) for c in convs if c.kernel_size == (3, 3))


def test_lrn_follows_first_relu_with_paper_parameters():
    f = meta_model("vgg11_lrn").features
    assert [type(m).__name__ for m in f[:4]] == ["Conv2d", "ReLU", "LocalResponseNorm", "MaxPool2d"]
    lrn = f[2]
    assert (lrn.size, lrn.alpha, lrn.beta, lrn.k) == (5, 1e-4, 0.75, 2.0)


@pytest.mark.parametrize("name", TV_MODELS)
def test_module_tree_and_keys_match_torchvision(name):
    with torch.device("meta"):
        tv = getattr(torchvision.models, name)(weights=None)
    ours = meta_model(name)
    assert [k for k in ours.state_dict()] == [k for k in tv.state_dict()]
    assert {k: v.shape for k, v in ours.state_dict().items()} == {
        k: v.shape for k, v in tv.state_dict().items()
    }
    assert [type(m) for m in ours.modules()][1:] == [type(m) for m in tv.modules()][1:]
    pools = [i for i, m in enumerate(ours.features) if isinstance(m, nn.MaxPool2d)]
    assert pools == POOL_INDICES[name]
    assert str(ours.classifier) == str(tv.classifier)


@pytest.mark.parametrize("name", TV_MODELS)
def test_same_logits_as_torchvision_both_directions(name, tmp_path):
    """A torchvision checkpoint loads strictly into ours with equal logits, and ours loads into torchvision."""
    torch.manual_seed(0)
    tv = getattr(torchvision.models, name)(weights=None).eval()
    if name.endswith("_bn"):  # non-trivial running statistics
        for m in tv.modules():
            if isinstance(m, nn.BatchNorm2d):
                m.running_mean.uniform_(-0.1, 0.1)
                m.running_var.uniform_(0.5, 1.5)
    path = tmp_path / f"{name}.pth"
    torch.save(tv.state_dict(), path)
    ours = build(name, weights=path).eval()
    x = torch.randn(1, 3, 224, 224)
    with torch.no_grad():
        expected = tv(x)
        assert torch.allclose(ours(x), expected, atol=1e-5, rtol=0)
        with torch.device("meta"):  # torchvision's module tree without a second random initialisation
            back = getattr(torchvision.models, name)(weights=None)
        back.load_state_dict(ours.state_dict(), strict=True, assign=True)
        back.eval()
        assert torch.allclose(back(x), expected, atol=1e-5, rtol=0)


def test_loaded_weights_are_not_random_initialised_or_copied(tmp_path):
    """The meta build + assign path maps the checkpoint: parameters are the loaded tensors, no meta tensor is left."""
    model = build("vgg11", init_weights="pytorch")
    path = tmp_path / "w.pth"
    torch.save(model.state_dict(), path)
    loaded = build("vgg11", weights=path)
    assert not any(t.is_meta for t in loaded.state_dict().values())
    for (k, a), b in zip(model.state_dict().items(), loaded.state_dict().values(), strict=True):
        assert torch.equal(a, b), k
    assert all(p.requires_grad for p in loaded.parameters())


@pytest.mark.parametrize("size", [(32, 32), (64, 48), (224, 224), (256, 320)])
def test_any_input_size_from_32(size):
    model = build("vgg11").eval()
    with torch.no_grad():
        assert model(torch.randn(1, 3, *size)).shape == (1, 1000)


def test_constructor_options():
    model = build("vgg13_bn", num_classes=10, dropout=0.2)
    assert model.num_classes == 10 and model.classifier[6].out_features == 10
    assert [m.p for m in model.classifier if isinstance(m, nn.Dropout)] == [0.2, 0.2]
    small = build("vgg11", width=0.125, num_classes=10)
    assert small.features[0].out_channels == 8 and small.classifier[0].in_features == 64 * 49
    assert small.classifier[0].out_features == 512
    assert configs.num_params("vgg11", width=0.125, num_classes=10) == sum(
        p.numel() for p in small.parameters()
    )
    with pytest.raises(ValueError, match="width"):
        build("vgg11", width=0)
    with pytest.raises(ValueError, match="dropout"):
        build("vgg11", dropout=1.5)
    with pytest.raises(ValueError, match="unknown model"):
        build("vgg12")


def test_init_schemes():
    torch.manual_seed(0)
    model = build("vgg11_bn", init_weights="torchvision", width=0.125)
    conv, fc = model.features[0], model.classifier[0]
    assert torch.all(conv.bias == 0) and torch.all(fc.bias == 0)
    assert abs(fc.weight.std().item() - 0.01) < 1e-3
    fan_out = conv.out_channels * 9
    assert abs(conv.weight.std().item() - (2 / fan_out) ** 0.5) < 0.03
    bn = model.features[1]
    assert torch.all(bn.weight == 1) and torch.all(bn.running_var == 1) and int(bn.num_batches_tracked) == 0
    paper = build("vgg11", init_weights="paper", width=0.125)
    assert abs(paper.features[3].weight.std().item() - 0.01) < 1e-3
    glorot = build("vgg11", init_weights="glorot", width=0.125)
    bound = (6 / (glorot.classifier[3].in_features + glorot.classifier[3].out_features)) ** 0.5
    assert glorot.classifier[3].weight.abs().max().item() <= bound
    with pytest.raises(ValueError, match="init_weights"):
        initialize(model, "he")


def test_guess_architecture_names_the_right_model():
    shapes = expected_shapes("vgg19_bn")
    fake = {k: torch.empty(s, device="meta") for k, s in shapes.items()}
    assert guess_architecture(fake) == ["vgg19_bn"]
    # LRN has no parameters but shifts the indices: a vgg11 file is not a vgg11_lrn file
    fake = {k: torch.empty(s, device="meta") for k, s in expected_shapes("vgg11").items()}
    assert guess_architecture(fake) == ["vgg11"]


@pytest.mark.parametrize("shape", [(1, 3, 31, 64), (1, 3, 64, 16), (3, 224, 224)])
def test_too_small_or_unbatched_input_is_a_clear_error(shape):
    model = build("vgg11", width=0.125).eval()
    with pytest.raises(ValueError, match="H and W >= 32"):
        model(torch.randn(*shape))


def test_compiled_model_keeps_the_clear_error():
    """Under torch.compile the check is traced, not skipped: a graph break there runs it eagerly."""
    torch.compiler.reset()
    compiled = torch.compile(build("vgg11", width=0.125).eval(), backend="eager")
    with torch.no_grad():
        assert compiled(torch.randn(1, 3, 32, 32)).shape == (1, 1000)
        with pytest.raises(ValueError, match="H and W >= 32"):
            compiled(torch.randn(3, 64, 64))


def test_library_never_imports_torchvision_models():
    """torchvision is used for transforms and image I/O only; its models are the test oracle, not a dependency.

    The one exception is bench/runner.py, whose job is to time torchvision's model as the baseline (imported lazily there).
    """
    src = Path(vggnets.__file__).parent
    offenders = []
    for path in src.rglob("*.py"):
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Import):
                names = [a.name for a in node.names]
            elif isinstance(node, ast.ImportFrom) and node.module:
                names = [node.module] + [f"{node.module}.{a.name}" for a in node.names]
            else:
                continue
            if path.as_posix().endswith("bench/runner.py") is False:
                offenders += [f"{path.name}: {n}" for n in names if n.startswith("torchvision.models")]
    assert offenders == []

"""torchvision's own checks of its VGG models, run on ours: stored outputs, TorchScript, FX, export, weights, filters.

What torchvision's test suite asserts for vgg* (test_models.py, test_extended_models.py, test_backbone_utils.py),
written for our builders: the stored expected outputs under its seeding, bit-identical initialisation under the same
seed, scripting with a save/load round trip, FX tracing and torchvision's graph node names, input backprop, its
``create_feature_extractor`` against our ``FeatureExtractor``, the weights metadata schema, pickling and copying of the
weights enums, scriptable presets and every shape of ``list_models`` filter. Every configuration of the paper (A-LRN
and C included) is checked where the check does not need torchvision's own model; torch.export and
``torch.compile(fullgraph=True)`` are checked too. Full-size models are built only where the stored outputs need them.
"""

from __future__ import annotations

import copy
import pickle
import random
from functools import partial
from pathlib import Path

import pytest
import torch
import torchvision
from torch import nn
from torchvision.models.feature_extraction import create_feature_extractor, get_graph_node_names

import vggnets
from vggnets.core import configs
from vggnets.core.vgg import MIN_SIZE, construct
from vggnets.features import FeatureExtractor, layer_names, named_layers
from vggnets.models import weights as W

EXPECT = Path(__file__).parent / "data" / "torchvision_expect"
TV_MODELS = ["vgg11", "vgg11_bn", "vgg13", "vgg13_bn", "vgg16", "vgg16_bn", "vgg19", "vgg19_bn"]
ALL_MODELS = sorted(configs.MODELS)
ALL_MEMBERS = [member for enum_cls in W.WEIGHTS.values() for member in enum_cls]


def small_model(name: str, **kwargs) -> nn.Module:
    """A seeded width-1/8 model in eval mode: every property below but the stored outputs holds at any width."""
    torch.manual_seed(0)
    return vggnets.build(name, width=0.125, num_classes=10, **kwargs).eval()


def seeded_like_torchvision(builder) -> tuple[nn.Module, torch.Tensor]:
    """torchvision's test_classification_model: set_rng_seed(0), build with 50 classes, eval, then the input."""
    torch.manual_seed(0)  # set_rng_seed(0) in torchvision's common_utils: torch's and Python's generators
    random.seed(0)
    model = builder(num_classes=50).eval()
    return model, torch.rand(1, 3, 224, 224)


# --- test_models.py: test_classification_model ---------------------------------------------------------------------


@pytest.mark.parametrize("name", TV_MODELS)
def test_stored_expected_output_and_same_seed_same_model(name):
    """The stored output at torchvision's tolerance, and what the tolerance hides: the same parameters bit for bit, the
    same input (as many random draws before it) and the same output as torchvision's model."""
    ours, x = seeded_like_torchvision(getattr(vggnets, name))
    with torch.no_grad():
        out = ours(x)
    assert out.shape == (1, 50)
    expected = torch.load(EXPECT / f"ModelTester.test_{name}_expect.pkl", weights_only=True).detach()
    torch.testing.assert_close(out, expected, rtol=1e-3, atol=1e-3, check_dtype=False)

    theirs, x_theirs = seeded_like_torchvision(getattr(torchvision.models, name))
    assert torch.equal(x_theirs, x)
    their_state = theirs.state_dict()
    assert list(ours.state_dict()) == list(their_state)
    for key, value in ours.state_dict().items():
        assert torch.equal(value, their_state[key]), key
    with torch.no_grad():
        assert torch.equal(theirs(x), out)


@pytest.mark.parametrize("name", ALL_MODELS)
def test_scripts_and_survives_save_and_load(name, tmp_path):
    """torchvision's _check_jit_scriptable: scripted output equals eager, and so does a saved and reloaded copy."""
    model = small_model(name)
    x = torch.rand(1, 3, 224, 224)
    scripted = torch.jit.script(model)
    with torch.no_grad():
        eager = model(x)
        script_out = scripted(x)
        torch.testing.assert_close(script_out, eager, atol=1e-4, rtol=1e-4)
        scripted.save(str(tmp_path / "script.pt"))
        loaded = torch.jit.load(str(tmp_path / "script.pt"))
        torch.testing.assert_close(loaded(x), script_out, atol=3e-4, rtol=3e-4)
    # the eager input check is left out of the script, so it stays a plain graph; eager keeps the clear error
    with pytest.raises(ValueError, match="H and W >= 32"):
        model(x[0])


@pytest.mark.parametrize("name", ALL_MODELS)
def test_fx_traces_to_the_same_function(name):
    """torchvision's _check_fx_compatible."""
    model = small_model(name)
    x = torch.rand(1, 3, 64, 80)
    traced = torch.fx.symbolic_trace(model)
    with torch.no_grad():
        torch.testing.assert_close(traced(x), model(x))
    called = [n.target for n in traced.graph.nodes if n.op in ("call_function", "call_method")]
    assert called == [torch.flatten]  # features, avgpool and classifier are module calls; no input check


@pytest.mark.parametrize("name", ALL_MODELS)
def test_input_backprop(name):
    """torchvision's _check_input_backprop: the gradient reaches the input."""
    model = small_model(name)
    x = torch.rand(1, 3, 64, 64, requires_grad=True)
    model(x)[0].sum().backward()
    assert x.grad is not None and x.grad.abs().sum() > 0


@pytest.mark.parametrize("name", ALL_MODELS)
def test_exports_with_dynamic_shapes_and_compiles_without_graph_breaks(name):
    model = small_model(name)
    x = torch.rand(2, 3, 224, 224)
    with torch.no_grad():
        eager = model(x)
        # from 2 * MIN_SIZE: at MIN_SIZE the adaptive pool sees a 1x1 map, a case torch.export cannot merge
        dims = {
            0: torch.export.Dim("batch", min=1),
            2: torch.export.Dim("height", min=2 * MIN_SIZE),
            3: torch.export.Dim("width", min=2 * MIN_SIZE),
        }
        exported = torch.export.export(model, (x,), dynamic_shapes=(dims,)).module()
        torch.testing.assert_close(exported(x), eager)
        other = torch.rand(1, 3, 256, 320)
        torch.testing.assert_close(exported(other), model(other))
        torch.compiler.reset()
        compiled = torch.compile(
            model, fullgraph=True, backend="eager"
        )  # fullgraph: a graph break is an error
        torch.testing.assert_close(compiled(x), eager)


# --- test_backbone_utils.py: graph node names and create_feature_extractor ------------------------------------------


@pytest.mark.parametrize("name", TV_MODELS)
def test_graph_node_names_are_torchvisions(name):
    with torch.device("meta"):
        theirs = getattr(torchvision.models, name)()
        ours = construct(configs.MODELS[name], 1000, 0.5, 1.0, "pytorch")
    assert get_graph_node_names(ours) == get_graph_node_names(theirs)
    train, evaluation = get_graph_node_names(ours)
    assert train[0] == "x" and "flatten" in train and train[-1] == "classifier.6"


@pytest.mark.parametrize("name", ALL_MODELS)
def test_create_feature_extractor_equals_our_feature_extractor(name):
    """torchvision's extractor and ours at every named layer. Where an in-place ReLU follows a layer (conv, bn, fc6,
    fc7), torchvision's extractor returns the tensor that ReLU overwrote, while ours returns the layer's own output."""
    model = small_model(name)
    names = layer_names(model)
    modules = named_layers(model)
    qualified = {id(module): path for path, module in model.named_modules()}
    nodes = {layer: qualified[id(modules[layer])] for layer in names}
    theirs = create_feature_extractor(model, return_nodes={nodes[layer]: layer for layer in names})
    ours = FeatureExtractor(model, names)
    x = torch.rand(2, 3, 64, 64)
    with torch.no_grad():
        got, expected = ours(x), theirs(x)
    assert list(got) == list(expected) == names
    overwritten = {a for a, b in zip(names, names[1:]) if getattr(modules[b], "inplace", False)}
    assert {"fc6", "fc7", "bn1_1" if "bn1_1" in names else "conv1_1"} <= overwritten
    for layer in names:
        ours_seen = torch.relu(got[layer]) if layer in overwritten else got[layer]
        assert torch.equal(ours_seen, expected[layer]), layer
    with torch.no_grad():
        assert torch.equal(expected["fc8"], model(x))


# --- test_extended_models.py: weights enums, metadata and presets ---------------------------------------------------

#: torchvision's test_schema_meta_validation: every field a weights' meta may have, and those a classifier must have.
PERMITTED_FIELDS = {
    "backend", "categories", "keypoint_names", "license", "_metrics", "min_size", "min_temporal_size", "num_params",
    "recipe", "unquantized", "_docs", "_ops", "_file_size",
}  # fmt: skip
REQUIRED_FIELDS = {
    "categories",
    "_metrics",
    "min_size",
    "num_params",
    "recipe",
    "_docs",
    "_file_size",
    "_ops",
}


@pytest.mark.parametrize("member", ALL_MEMBERS, ids=str)
def test_weights_meta_schema(member):
    fields = set(member.meta)
    # "model" is ours (the builder the weights belong to); the rest follows torchvision's schema
    assert fields - {"model"} <= PERMITTED_FIELDS and fields >= REQUIRED_FIELDS
    assert {"acc@1", "acc@5"} <= set(member.meta["_metrics"]["ImageNet-1K"])
    assert member.name.isupper() and type(member).DEFAULT is type(member).IMAGENET1K_V1
    with torch.device("meta"):
        model = construct(configs.MODELS[member.model_name], 1000, 0.5, 1.0, "pytorch")
    assert member.meta["num_params"] == sum(p.numel() for p in model.parameters())
    assert member.meta["_ops"] == round(configs.gmacs(member.model_name), 3)


@pytest.mark.parametrize("member", ALL_MEMBERS, ids=str)
def test_weights_pickle_and_copy_to_the_same_member(member):
    """torchvision's test_weights_copyable and test_weights_deserializable. VGG16_Weights.IMAGENET1K_FEATURES (NaN
    accuracies) included: torchvision's own member of that name does not survive pickling, ours does."""
    assert copy.copy(member) is member and copy.deepcopy(member) is member
    assert pickle.loads(pickle.dumps(member)) is member
    assert pickle.loads(pickle.dumps(type(member))) is type(member)


def test_weights_values_compare_like_torchvisions():
    features = vggnets.VGG16_Weights.IMAGENET1K_FEATURES.value
    v1 = vggnets.VGG16_Weights.IMAGENET1K_V1.value
    for value in (features, v1):
        assert copy.deepcopy(value) == value and pickle.loads(pickle.dumps(value)) == value
        assert copy.deepcopy(value) is not value
    assert features != v1 and v1 != vggnets.VGG19_Weights.IMAGENET1K_V1.value
    other = W.Weights(
        v1.url, partial(v1.transforms.func, **{**v1.transforms.keywords, "crop_size": 240}), v1.meta
    )
    assert other != v1 and W.Weights(v1.url, v1.transforms, {**v1.meta, "_ops": 0.0}) != v1
    assert W.Weights(v1.url, copy.deepcopy(v1.transforms), copy.deepcopy(v1.meta)) == v1
    assert v1.__eq__(object()) is NotImplemented
    with pytest.raises(TypeError):
        hash(v1)  # unhashable, as torchvision's: the enum finds a member by equality


@pytest.mark.parametrize("member", ALL_MEMBERS, ids=str)
def test_transforms_script_like_torchvisions(member, tmp_path):
    """torchvision's test_transforms_jit (through _check_jit_scriptable), and the scripted preset equals torchvision's."""
    transforms = member.transforms()
    scripted = torch.jit.script(transforms)
    x = torch.rand(1, 3, 224, 224)
    eager = transforms(x)
    torch.testing.assert_close(scripted(x), eager, atol=1e-4, rtol=1e-4)
    scripted.save(str(tmp_path / "transforms.pt"))
    torch.testing.assert_close(
        torch.jit.load(str(tmp_path / "transforms.pt"))(x), eager, atol=3e-4, rtol=3e-4
    )
    image = torch.randint(0, 256, (3, 300, 251), dtype=torch.uint8)
    assert torch.equal(scripted(image), torchvision.models.get_weight(str(member)).transforms()(image))


@pytest.mark.parametrize("name", TV_MODELS)
def test_naming_conventions_and_lookups(name):
    enum_cls = vggnets.get_model_weights(name)
    assert enum_cls.__name__ == torchvision.models.get_model_weights(name).__name__
    assert hasattr(enum_cls, "DEFAULT")
    assert vggnets.get_weight(f"{enum_cls.__name__}.DEFAULT") == enum_cls.IMAGENET1K_V1
    assert [m.name for m in enum_cls] == [m.name for m in torchvision.models.get_model_weights(name)]


#: The filter shapes of torchvision's test_list_models_filters, with VGG patterns.
INCLUDE_FILTERS = [
    None, [], (), {}, set(), "", "*_bn", ["*16*"], "*not-existing-model-for-test?", ["*_bn", "vgg1?"],
    ["*_bn", "vgg1?", "*not-existing-model-for-test?"], ("*_bn", "vgg13"), {"*_bn", "vgg19"},
    {"*_bn": "test", "vgg11": "test"},
]  # fmt: skip
EXCLUDE_FILTERS = [
    None, [], (), {}, set(), "", "*_bn", ["vgg1[13]*"], ["*not-existing-model-for-test?"],
    ["vgg16", "*not-existing-model-for-test?"], ["vgg16", "*19*"], ("vgg16", "*19*"), {"vgg16", "*19*"},
    {"vgg16": "test", "**vgg1**": "test"},
]  # fmt: skip


@pytest.mark.parametrize("include", INCLUDE_FILTERS, ids=repr)
def test_list_models_filters_follow_torchvision(include):
    shared = set(TV_MODELS)
    for exclude in EXCLUDE_FILTERS:
        theirs = torchvision.models.list_models(module=torchvision.models, include=include, exclude=exclude)
        ours = vggnets.list_models(include=include, exclude=exclude)
        assert [n for n in ours if n in shared] == [n for n in theirs if n in shared], exclude
        assert ours == sorted(ours) and set(ours) <= set(configs.MODELS)
    if not include:
        assert vggnets.list_models(include=include) == ALL_MODELS

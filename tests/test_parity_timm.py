"""timm's generic model checks run on ours, and timm's VGG with converted weights: the same logits and features.

timm's tests/test_models.py asserts for every model: a forward pass (batch kept, no NaN), a backward pass that gives
every parameter a gradient, a scripted forward, and ``features_only`` feature maps. The first three run here on every
configuration of the paper at width 1/8 (the properties do not depend on the width; timm's input sizes). The last is
checked through our conversion: a timm model's weights, converted with :func:`vggnets.convert.from_timm`, give our
model the same logits as timm's and our ``FeatureExtractor`` the same maps as timm's ``features_only`` wrapper, and
:func:`vggnets.convert.to_timm` gives back timm's state dict exactly. timm's VGG has a fixed 4096-wide head, so these
use full-size models.
"""

from __future__ import annotations

import pytest
import timm
import torch
from timm.models import FeatureListNet
from torch import nn

import vggnets
from vggnets.convert import from_timm, to_timm
from vggnets.core import configs
from vggnets.core.vgg import construct, initialize
from vggnets.features import FeatureExtractor, layer_names
from vggnets.models import load_weights

ALL_MODELS = sorted(configs.MODELS)
TIMM_MODELS = ["vgg11", "vgg11_bn", "vgg13", "vgg13_bn", "vgg16", "vgg16_bn", "vgg19", "vgg19_bn"]


def small_model(name: str, **kwargs) -> nn.Module:
    torch.manual_seed(0)
    return vggnets.build(name, width=0.125, **kwargs)


def test_timm_has_the_vgg_models_we_compare_with():
    assert set(TIMM_MODELS) <= set(timm.list_models("vgg*"))


@pytest.mark.parametrize("name", ALL_MODELS)
def test_model_forward(name):
    """timm's test_model_forward: batch 1 at the default input size (224), no NaN."""
    model = small_model(name).eval()
    with torch.no_grad():
        out = model(torch.randn(1, 3, 224, 224))
    assert out.shape == (1, 1000) and not torch.isnan(out).any()


@pytest.mark.parametrize("name", ALL_MODELS)
def test_model_backward(name):
    """timm's test_model_backward: 42 classes, train mode, batch 2 at 128x128; every parameter gets a gradient."""
    model = small_model(name, num_classes=42).train()
    out = model(torch.randn(2, 3, 128, 128))
    out.mean().backward()
    for key, param in model.named_parameters():
        assert param.grad is not None, f"no gradient for {key}"
    assert sum(p.grad.numel() for p in model.parameters()) == sum(p.numel() for p in model.parameters())
    assert out.shape == (2, 42) and not torch.isnan(out).any()


@pytest.mark.parametrize("name", ALL_MODELS)
def test_model_forward_torchscript(name):
    """timm's test_model_forward_torchscript: the scripted model runs batch 1 at 128x128, no NaN."""
    scripted = torch.jit.script(small_model(name).eval())
    with torch.no_grad():
        out = scripted(torch.randn(1, 3, 128, 128))
    assert out.shape == (1, 1000) and not torch.isnan(out).any()


def timm_features_only(model: nn.Module) -> FeatureListNet:
    """What ``timm.create_model(name, features_only=True)`` builds for a VGG, around an existing model: the list
    wrapper over the flattened modules with out_indices 0-5 (the ReLU before each pool, then pool5)."""
    return FeatureListNet(model, out_indices=(0, 1, 2, 3, 4, 5), flatten_sequential=True)


@pytest.mark.parametrize("name", TIMM_MODELS)
def test_timm_weights_convert_both_ways_with_the_same_logits_and_features(name):
    torch.manual_seed(0)
    with torch.device("meta"):
        theirs = timm.create_model(name, pretrained=False, num_classes=10)
    theirs.to_empty(device="cpu")
    initialize(theirs, "torchvision")  # random values in one pass (timm's own init draws them twice)
    theirs.eval()
    for module in theirs.modules():  # non-trivial running statistics for the BN models
        if isinstance(module, nn.BatchNorm2d):
            module.running_mean.uniform_(-0.1, 0.1)
            module.running_var.uniform_(0.5, 1.5)
    their_state = theirs.state_dict()

    with torch.device("meta"):
        ours = construct(configs.MODELS[name], 10, 0.5, 1.0, "pytorch")
    load_weights(ours, from_timm(their_state), f"timm {name}").eval()
    back = to_timm(ours.state_dict())
    assert list(back) == list(their_state)
    for key, value in back.items():
        assert torch.equal(value, their_state[key]), key
    with torch.device("meta"):
        timm.create_model(name, num_classes=10).load_state_dict(back, strict=True, assign=True)

    # 64x64: both heads pool the 2x2 map of pool5 up to 7x7 before fc6 (timm's ConvMlp does so below 7x7)
    x = torch.rand(1, 3, 64, 64)
    with torch.no_grad():
        torch.testing.assert_close(ours(x), theirs(x), rtol=1e-4, atol=1e-5)
        features = timm_features_only(theirs)
        with torch.device("meta"):
            reference = timm.create_model(name, features_only=True)
        assert features.feature_info.module_name() == reference.feature_info.module_name()
        indices = [int(path.split(".")[1]) for path in features.feature_info.module_name()]
        names = [layer_names(ours)[i] for i in indices]
        assert names[-1] == "pool5" and all(n.startswith("relu") for n in names[:-1])
        ours_maps = FeatureExtractor(ours, names)(x)
        for layer, theirs_map in zip(names, features(x), strict=True):
            torch.testing.assert_close(ours_maps[layer], theirs_map, rtol=0, atol=0, msg=layer)

"""vggnets.training.surgery: the paper's convolution names and the initialisation of deeper nets from net A."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

import vggnets
import vggnets.training as T


def _tiny(seed: int = 0, name: str = "vgg11_bn") -> torch.nn.Module:
    torch.manual_seed(seed)
    return vggnets.build(name, width=0.125, num_classes=10)


def test_conv_names() -> None:
    names = T.conv_names(vggnets.build("vgg11", width=0.125).features)
    assert list(names) == [
        "conv1_1",
        "conv2_1",
        "conv3_1",
        "conv3_2",
        "conv4_1",
        "conv4_2",
        "conv5_1",
        "conv5_2",
    ]


@pytest.mark.parametrize("target", ["vgg13", "vgg16", "vgg19_bn", "vgg16_1x1"])
def test_init_from_a(target: str) -> None:
    a = _tiny(1, "vgg11").state_dict()
    model = vggnets.build(target, width=0.125, num_classes=10)
    before = {k: v.clone() for k, v in model.state_dict().items()}
    copied = T.init_from_a(model, a)
    names = T.conv_names(model.features)
    a_convs = [0, 3, 6, 8]  # conv1_1, conv2_1, conv3_1, conv3_2 of A
    expected = []
    for a_i, name in zip(a_convs, T.A_CONVS, strict=True):
        for p in ("weight", "bias"):
            expected.append(f"features.{names[name]}.{p}")
            assert torch.equal(model.state_dict()[expected[-1]], a[f"features.{a_i}.{p}"])
    expected += [f"{fc}.{p}" for fc in T.FC_LAYERS for p in ("weight", "bias")]
    assert copied == expected
    after = model.state_dict()
    for k in after:
        if k in copied:
            assert torch.equal(after[k], a[k] if k.startswith("classifier") else after[k])
        else:
            assert torch.equal(after[k], before[k]), k  # everything else untouched


def test_init_from_a_new_head_and_path(tmp_path: Path) -> None:
    path = tmp_path / "a.pth"
    torch.save(_tiny(2, "vgg11").state_dict(), path)
    model = vggnets.build("vgg16", width=0.125, num_classes=5)
    copied = T.init_from_a(model, path)
    assert "classifier.6.weight" not in copied and "classifier.3.weight" in copied
    with pytest.raises(vggnets.errors.ArchitectureMismatchError):
        T.init_from_a(vggnets.build("vgg16", width=0.25, num_classes=10), path)

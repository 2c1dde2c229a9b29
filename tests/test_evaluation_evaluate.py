"""The runs of an evaluation: one per model and protocol, combinations that reuse their parts, ensembles."""

from __future__ import annotations

import pytest
import torch

from vggnets.core import configs
from vggnets.core.transforms import ImageClassification
from vggnets.core.vgg import VGG, make_features
from vggnets.errors import VggnetsError
from vggnets.evaluation.evaluate import Member, build_runs, open_for_models
from vggnets.evaluation.protocols import Average, Center, MultiCrop, MultiScale


def member(name: str, num_classes: int = 1000) -> Member:
    """A full-size model on the meta device: protocols can be built, nothing is computed."""
    with torch.device("meta"):
        model = VGG(
            make_features(configs.MODELS[name].layers), num_classes=num_classes, init_weights="pytorch"
        )
    return Member(name, model, ImageClassification(crop_size=224))


def test_one_run_per_model_and_protocol_then_the_ensemble():
    a, b = member("vgg11"), member("vgg13")
    runs = build_runs([a, b], ["center", "dense"], (224, 256, 288), num_classes=1000, flip=True)
    assert [(r.model, r.protocol.name) for r in runs] == [
        ("vgg11", "center"), ("vgg11", "dense"), ("vgg13", "center"), ("vgg13", "dense"),
        ("vgg11+vgg13", "center"), ("vgg11+vgg13", "dense"),
    ]  # fmt: skip
    assert runs[1].protocol.describe()["scales"] == [256] and runs[1].protocol.flip  # dense: the middle scale
    assert runs[4].parts == [runs[0], runs[2]] and isinstance(runs[4].protocol, Average)
    assert not any(r.hidden for r in runs)


def test_the_combination_reuses_or_hides_its_parts():
    only = build_runs([member("vgg11")], ["dense+multicrop"], (256, 384, 512), num_classes=1000)
    assert [r.protocol.name for r in only] == ["dense+multicrop"]
    multiscale, multicrop = only[0].parts
    assert isinstance(multiscale.protocol, MultiScale) and isinstance(multicrop.protocol, MultiCrop)
    assert multiscale.hidden and multicrop.hidden
    shared = build_runs(
        [member("vgg11")], ["multiscale", "dense+multicrop"], (256, 384, 512), num_classes=1000
    )
    assert shared[1].parts[0] is shared[0] and not shared[0].hidden and shared[1].parts[1].hidden


def test_a_model_twice_in_an_ensemble_counts_twice():
    runs = build_runs([member("vgg11"), member("vgg11")], ["center"], (256,), num_classes=1000)
    assert [r.model for r in runs] == ["vgg11", "vgg11", "vgg11+vgg11"]
    assert runs[2].parts == [runs[0], runs[1]] and runs[2].parts[0] is not runs[2].parts[1]


def test_center_can_be_built_by_the_caller():
    made = []

    def center(m: Member) -> Center:
        made.append(m.name)
        return Center(m.model, mean=m.transform.mean, std=m.transform.std, resize_size=300)

    runs = build_runs([member("vgg11")], ["center", "dense"], (256,), num_classes=1000, center=center)
    assert made == ["vgg11"] and runs[0].protocol.resize_size == 300


def test_open_for_models_needs_one_number_of_classes(tmp_path):
    with pytest.raises(VggnetsError, match="different numbers of classes"):
        open_for_models(tmp_path, [member("vgg11"), member("vgg11", num_classes=10)], (256,))

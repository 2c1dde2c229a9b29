"""vggnets.training's public API, and vggnets.train (its documented import path) giving the same objects."""

from __future__ import annotations

import vggnets.training
from vggnets import train


def test_documented_path_reexports_the_whole_api() -> None:
    documented = [
        "RECIPES",
        "Recipe",
        "make_optimizer",
        "make_scheduler",
        "PlateauDecay",
        "train_transforms",
        "eval_transforms",
        "PCALighting",
        "make_loaders",
        "train_one_epoch",
        "evaluate_epoch",
        "save_checkpoint",
        "load_checkpoint",
        "init_from_a",
        "freeze",
        "fit",
    ]
    assert set(documented) <= set(vggnets.training.__all__)
    for name in vggnets.training.__all__:
        assert getattr(train, name) is getattr(vggnets.training, name), name
    assert train.__all__ == vggnets.training.__all__

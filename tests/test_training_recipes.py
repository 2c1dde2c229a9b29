"""vggnets.training.recipes: recipes by name, the paper's and ImageNet's normalisation."""

from __future__ import annotations

import pytest

import vggnets.training as T
from vggnets.core import transforms


def test_unknown_recipe() -> None:
    with pytest.raises(ValueError, match="recipe"):
        T.get_recipe("alexnet")


def test_recipes_by_name_and_normalisation() -> None:
    assert T.get_recipe("paper") is T.RECIPES["paper"]
    assert T.get_recipe(T.RECIPES["torchvision"]) is T.RECIPES["torchvision"]
    assert T.RECIPES["paper"].std == T.PAPER_STD and T.RECIPES["paper"].mean == T.PAPER_MEAN
    torchvision = T.RECIPES["torchvision"]
    assert torchvision.mean == transforms.IMAGENET_MEAN and torchvision.std == transforms.IMAGENET_STD
    assert T.IMAGENET_MEAN is transforms.IMAGENET_MEAN and T.IMAGENET_STD is transforms.IMAGENET_STD

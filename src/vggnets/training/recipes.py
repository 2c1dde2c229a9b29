"""Training recipes as data: the paper's and torchvision's hyper-parameters and augmentation.

Documented choices:

- Weight decay: the paper's recipe decays only weights (conv and FC kernels); biases and BatchNorm parameters get none
  ([paper 3.1] "weight decay ... on weights"; Caffe's VGG prototxt gives biases ``decay_mult: 0``). torchvision's
  recipe decays every parameter, as its reference ``train.py`` does by default (``--norm-weight-decay`` unset).
- Learning-rate schedule of the paper: divide by 10 when validation accuracy has not improved (by more than
  ``threshold``) for more than ``patience`` epochs (ReduceLROnPlateau's rule, mode "max"), at most ``max_drops`` = 3
  times; after the last drop the rate stays put (:class:`vggnets.training.optimisation.PlateauDecay`).
- Preprocessing of the paper: subtract the mean RGB only, on the [0, 255] scale, i.e. ``Normalize(mean, std=1/255)`` of
  [0, 1] tensors. Fine-tuning torchvision's published weights expects mean/std normalisation: use the torchvision
  recipe, or ``dataclasses.replace(recipe, std=IMAGENET_STD)``.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from ..core.transforms import IMAGENET_MEAN, IMAGENET_STD

#: The paper's mean RGB (123.68, 116.779, 103.939) on the [0, 1] scale.
PAPER_MEAN = (123.68 / 255, 116.779 / 255, 103.939 / 255)
#: std that turns [0, 1] tensors back to the [0, 255] scale: the paper subtracts the mean only.
PAPER_STD = (1 / 255, 1 / 255, 1 / 255)


@dataclass(frozen=True)
class Recipe:
    """Hyper-parameters of a training recipe. Change one with ``dataclasses.replace(RECIPES["paper"], lr=1e-3)``."""

    name: str
    lr: float
    weight_decay: float
    decay_biases: bool  # False: no decay on biases and BatchNorm parameters
    schedule: Literal["plateau", "step"]
    epochs: int
    momentum: float = 0.9
    batch_size: int = 256
    lr_factor: float = 0.1
    patience: int = 2  # plateau: epochs without improvement tolerated before a drop
    max_drops: int = 3  # plateau: at most this many drops
    threshold: float = 1e-4  # plateau: minimum improvement of the validation accuracy
    step_size: int = 30  # step: epochs between drops
    crop: int = 224
    scale: tuple[int, int] = (256, 256)  # paper: S (fixed when equal) or the jitter range [Smin, Smax]
    resize: int = 256  # evaluation: smaller side before the centre crop
    random_resized_crop: bool = False  # torchvision: RandomResizedCrop instead of rescale + random crop
    hflip: bool = True
    pca_std: float = 0.0  # std of the PCA colour noise coefficients (0: off)
    mean: tuple[float, float, float] = IMAGENET_MEAN
    std: tuple[float, float, float] = IMAGENET_STD
    init: str = "torchvision"  # init scheme for models built from scratch with this recipe


RECIPES: dict[str, Recipe] = {
    # [paper 3.1]; 74 epochs = 370K iterations of 256 images
    "paper": Recipe(
        name="paper",
        lr=1e-2,
        weight_decay=5e-4,
        decay_biases=False,
        schedule="plateau",
        epochs=74,
        pca_std=0.1,
        mean=PAPER_MEAN,
        std=PAPER_STD,
        init="paper",
    ),
    # torchvision's reference recipe for its VGG weights (use lr=0.1 for the _bn models)
    "torchvision": Recipe(
        name="torchvision",
        lr=1e-2,
        weight_decay=1e-4,
        decay_biases=True,
        schedule="step",
        epochs=90,
        random_resized_crop=True,
    ),
}


def get_recipe(recipe: Recipe | str) -> Recipe:
    """A recipe by name (or the recipe itself)."""
    if isinstance(recipe, Recipe):
        return recipe
    if recipe not in RECIPES:
        raise ValueError(f"unknown recipe {recipe!r}; choose one of: {', '.join(RECIPES)}")
    return RECIPES[recipe]

"""Training augmentation and validation preprocessing of a recipe, with AlexNet's PCA colour noise."""

from __future__ import annotations

from collections.abc import Callable, Sequence

import torch
from torch import nn

from .recipes import Recipe, get_recipe

#: AlexNet PCA colour noise, eigen-decomposition of ImageNet RGB pixels in [0, 1] (fb.resnet.torch).
PCA_EIGVAL = (0.2175, 0.0188, 0.0045)
PCA_EIGVEC = (
    (-0.5675, 0.7192, 0.4009),
    (-0.5808, -0.0045, -0.8140),
    (-0.5836, -0.6948, 0.4203),
)


class PCALighting(nn.Module):
    """AlexNet's PCA colour noise: add ``eigvec @ (alpha * eigval)`` to every pixel, ``alpha ~ N(0, std)`` drawn per
    image and channel from torch's global RNG. Works on float tensors in [0, 1] shaped (3, H, W) or (N, 3, H, W).
    """

    def __init__(
        self,
        std: float = 0.1,
        eigval: Sequence[float] = PCA_EIGVAL,
        eigvec: Sequence[Sequence[float]] = PCA_EIGVEC,
    ) -> None:
        super().__init__()
        self.std = std
        self.register_buffer("eigval", torch.tensor(eigval, dtype=torch.float32), persistent=False)
        self.register_buffer("eigvec", torch.tensor(eigvec, dtype=torch.float32), persistent=False)

    def forward(self, img: torch.Tensor) -> torch.Tensor:
        if self.std == 0:
            return img
        if not img.is_floating_point() or img.shape[-3] != 3:
            raise ValueError(
                f"PCALighting expects float RGB tensors (..., 3, H, W), got {img.dtype} {tuple(img.shape)}"
            )
        batch = img.shape[:-3]
        alpha = torch.randn(*batch, 3) * self.std
        rgb = (alpha * self.eigval) @ self.eigvec.T  # (..., 3): eigvec @ (alpha * eigval) for each image
        return img + rgb.to(img.dtype)[..., :, None, None]

    def extra_repr(self) -> str:
        return f"std={self.std}"


def train_transforms(
    recipe: Recipe | str, crop: int | None = None, scale: int | tuple[int, int] | None = None
):
    """Training augmentation of a recipe (``torchvision.transforms.v2``), from a PIL image or uint8 tensor.

    Paper: isotropic rescale of the smaller side to S (``scale`` an int) or to S uniform in [Smin, Smax] (a pair),
    random ``crop`` x ``crop`` crop, horizontal flip, PCA colour noise, normalisation. torchvision: RandomResizedCrop
    (scale 0.08-1, ratio 3/4-4/3), horizontal flip, normalisation.
    """
    from torchvision.transforms import v2

    recipe = get_recipe(recipe)
    crop = recipe.crop if crop is None else crop
    scale = recipe.scale if scale is None else scale
    smin, smax = (scale, scale) if isinstance(scale, int) else scale
    steps: list[Callable] = [v2.ToImage()]
    if recipe.random_resized_crop:
        steps.append(v2.RandomResizedCrop(crop, antialias=True))
    else:
        if smin == smax:
            steps.append(v2.Resize(smin, antialias=True))
        else:
            steps.append(v2.RandomShortestSize(list(range(smin, smax + 1)), antialias=True))
        steps.append(v2.RandomCrop(crop))
    if recipe.hflip:
        steps.append(v2.RandomHorizontalFlip())
    steps.append(v2.ToDtype(torch.float32, scale=True))
    if recipe.pca_std > 0:
        steps.append(PCALighting(recipe.pca_std))
    steps.append(v2.Normalize(list(recipe.mean), list(recipe.std)))
    return v2.Compose(steps)


def eval_transforms(recipe: Recipe | str, crop: int | None = None, resize: int | None = None):
    """Validation preprocessing: resize the smaller side, centre crop, normalise with the recipe's statistics."""
    from torchvision.transforms import v2

    recipe = get_recipe(recipe)
    crop = recipe.crop if crop is None else crop
    resize = recipe.resize if resize is None else resize
    return v2.Compose(
        [
            v2.ToImage(),
            v2.Resize(resize, antialias=True),
            v2.CenterCrop(crop),
            v2.ToDtype(torch.float32, scale=True),
            v2.Normalize(list(recipe.mean), list(recipe.std)),
        ]
    )

"""The input each converted layout expects (channel order, range, mean/std), and Keras' preprocessing preset."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from ..core.transforms import IMAGENET_MEAN, IMAGENET_STD, ImageClassification
from .layouts import Layout, Target

#: The Caffe mean pixel of the Keras Applications (and original Caffe) VGG weights, BGR order, [0, 255] scale.
KERAS_MEAN_BGR = (103.939, 116.779, 123.68)
#: The same in RGB order.
KERAS_MEAN_RGB = (123.68, 116.779, 103.939)
#: Normalisation of a converted Keras model (RGB input) on the [0, 1] scale of vggnets' transforms:
#: ``(x - mean) / std`` with these values is ``255 * x - KERAS_MEAN_RGB``.
KERAS_MEAN = tuple(m / 255.0 for m in KERAS_MEAN_RGB)
KERAS_STD = (1.0 / 255.0, 1.0 / 255.0, 1.0 / 255.0)


def keras_transforms(*, crop_size: int = 224, resize_size: int = 256) -> Any:
    """The preprocessing of a converted Keras Applications model (``rgb=True``): resize, center-crop, then RGB in
    [0, 255] minus (123.68, 116.779, 103.939), no division: Keras' ``preprocess_input`` without the channel swap."""
    return ImageClassification(crop_size=crop_size, resize_size=resize_size, mean=KERAS_MEAN, std=KERAS_STD)


@dataclass(frozen=True)
class Preprocessing:
    """The input a converted model expects: channel order, value range, and mean/std on the [0, 1] scale of
    :class:`vggnets.core.transforms.ImageClassification` (``None`` where the source does not say)."""

    channels: str
    description: str
    mean: tuple[float, ...] | None = None
    std: tuple[float, ...] | None = None


def preprocessing_for(layout: Layout, rgb: bool, target: Target) -> Preprocessing:
    if layout == "keras":
        if rgb and target != "keras":
            return Preprocessing(
                "RGB",
                "Caffe-style: RGB in [0, 255] minus the mean pixel (123.68, 116.779, 103.939), no std "
                "(conv1_1 was flipped from Keras' BGR); vggnets.convert.keras_transforms() does it",
                KERAS_MEAN,
                KERAS_STD,
            )
        return Preprocessing(
            "BGR",
            "Caffe-style, as in Keras: BGR in [0, 255] minus the mean pixel (103.939, 116.779, 123.68), no std "
            "(keras.applications.vgg16.preprocess_input)",
            tuple(m / 255.0 for m in KERAS_MEAN_BGR),
            KERAS_STD,
        )
    if target == "keras" and rgb:
        return Preprocessing(
            "BGR",
            "unchanged apart from the channel order: conv1_1 was flipped to take BGR, as Keras' Caffe-style "
            "preprocess_input gives (right for weights that came from Keras; pass rgb=False / --bgr to keep RGB)",
        )
    return Preprocessing(
        "RGB",
        "unchanged: what the source weights expect (torchvision's and timm's ImageNet VGG weights: RGB in [0, 1] "
        "normalised with mean (0.485, 0.456, 0.406) and std (0.229, 0.224, 0.225))",
        IMAGENET_MEAN if layout == "timm" else None,
        IMAGENET_STD if layout == "timm" else None,
    )

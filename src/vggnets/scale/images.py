"""The values of an image column as uint8 (3, H, W) tensors, each unreadable value as a message, not an exception.

A value is either an encoded image file (``bytes``, ``bytearray``, ``memoryview`` or a 1-D uint8 array: Ray Data's
``read_binary_files``), decoded exactly as ``vggnets classify`` and ``vggnets features`` decode files (EXIF
orientation, 16-bit and CMYK conversion, the decompression-bomb guard), or a decoded uint8 array in HWC layout (Ray
Data's ``read_images``): (H, W) grey, (H, W, 1|2|3|4) with any alpha dropped, or (1, H, W), the shape Ray gives a grey
image in a column of 3-D tensors.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
import torch

from ..errors import ImageError

__all__ = ["decode_values", "is_encoded", "to_image"]

_ENCODED = (bytes, bytearray, memoryview)


def is_encoded(value: Any) -> bool:
    """True for the bytes of an image file, False for a decoded array."""
    return isinstance(value, _ENCODED) or (isinstance(value, np.ndarray) and value.ndim == 1)


def to_image(value: Any, name: str, *, max_pixels: int | None = None) -> torch.Tensor:
    """One column value as a uint8 RGB (3, H, W) tensor; ``name`` (the file's path when known) starts any message.
    ``max_pixels`` guards the decoding of bytes (None: the default, Pillow's 89,478,485 pixels, as the command line).

    Raises:
        ImageError: the bytes are not a readable image, or the array is not an 8-bit image in HWC layout.
    """
    if value is None:
        raise ImageError(f"{name}: no image (null value)")
    if is_encoded(value):
        from ..io.images import DEFAULT_MAX_PIXELS, decode_image_bytes  # torchvision.io: imported when used

        if isinstance(value, np.ndarray):
            value = value.tobytes()
        return decode_image_bytes(
            value, name, max_pixels=DEFAULT_MAX_PIXELS if max_pixels is None else max_pixels
        )
    return _from_hwc(np.asarray(value), name)


def decode_values(
    values: Sequence[Any], names: Sequence[str], *, max_pixels: int | None = None
) -> tuple[list[torch.Tensor | None], list[str | None]]:
    """(images, errors), one of each per value: the image and None, or None and the reason it cannot be read."""
    images: list[torch.Tensor | None] = []
    errors: list[str | None] = []
    for value, name in zip(values, names, strict=True):
        try:
            images.append(to_image(value, name, max_pixels=max_pixels))
            errors.append(None)
        except ImageError as exc:
            images.append(None)
            errors.append(str(exc))
    return images, errors


def _from_hwc(array: np.ndarray, name: str) -> torch.Tensor:
    """A decoded HWC (or grey) uint8 array as an RGB (3, H, W) tensor that owns its memory."""
    if array.dtype != np.uint8:
        raise ImageError(f"{name}: a decoded image must be uint8, got {array.dtype} {array.shape}")
    if array.ndim == 3 and array.shape[0] == 1 and array.shape[-1] not in (1, 2, 3, 4):
        array = array[0]  # Ray's 3-D tensor column pads a grey (H, W) image to (1, H, W)
    if array.ndim == 2:
        array = array[:, :, None]
    if array.ndim != 3 or array.shape[-1] not in (1, 2, 3, 4) or 0 in array.shape:
        raise ImageError(
            f"{name}: a decoded image must be (H, W) or (H, W, C) with C in 1-4 (HWC, as ray.data.read_images "
            f"gives), got shape {array.shape}"
        )
    channels = array.shape[-1]
    rgb = (
        array[:, :, :3] if channels >= 3 else array[:, :, :1].repeat(3, axis=2)
    )  # alpha dropped, grey spread
    return torch.from_numpy(np.array(rgb.transpose(2, 0, 1), order="C"))  # a writable copy

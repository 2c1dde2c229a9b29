"""Weights in other libraries' layouts: timm and Keras Applications.

layouts.py        pure remaps torchvision <-> timm <-> Keras, layout detection, NaN completion
keras_h5.py       reading and writing Keras HDF5 files (h5py)
preprocessing.py  the input each converted layout expects, Keras' preprocessing preset
files.py          reading any weights file into our layout, ``convert_file`` and its report
"""

from .files import TORCH_SUFFIXES, ConversionReport, convert_file, describe, read_weights
from .keras_h5 import (
    HDF5_SIGNATURE,
    KERAS_EXTRA,
    KERAS_SUFFIXES,
    is_keras_file,
    read_keras_h5,
    read_keras_raw,
    write_keras_h5,
)
from .layouts import (
    Layout,
    Target,
    as_torchvision,
    complete,
    detect_layout,
    from_keras,
    from_timm,
    to_keras,
    to_timm,
)
from .preprocessing import (
    KERAS_MEAN,
    KERAS_MEAN_BGR,
    KERAS_MEAN_RGB,
    KERAS_STD,
    Preprocessing,
    keras_transforms,
)

__all__ = [
    "HDF5_SIGNATURE",
    "KERAS_EXTRA",
    "KERAS_MEAN",
    "KERAS_MEAN_BGR",
    "KERAS_MEAN_RGB",
    "KERAS_STD",
    "KERAS_SUFFIXES",
    "TORCH_SUFFIXES",
    "ConversionReport",
    "Layout",
    "Preprocessing",
    "Target",
    "as_torchvision",
    "complete",
    "convert_file",
    "describe",
    "detect_layout",
    "from_keras",
    "from_timm",
    "is_keras_file",
    "keras_transforms",
    "read_keras_h5",
    "read_keras_raw",
    "read_weights",
    "to_keras",
    "to_timm",
    "write_keras_h5",
]

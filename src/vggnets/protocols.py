"""Documented import path of the paper's evaluation protocols (vggnets.evaluation.protocols): re-exports them."""

from .evaluation.cost import network_gmacs
from .evaluation.geometry import crop_grid, resized_size
from .evaluation.protocols import (
    PAPER_SCALES,
    PROTOCOLS,
    Average,
    Center,
    Dense,
    MultiCrop,
    MultiScale,
    Protocol,
    make_protocol,
    paper_scales,
)

__all__ = [
    "PAPER_SCALES",
    "PROTOCOLS",
    "Average",
    "Center",
    "Dense",
    "MultiCrop",
    "MultiScale",
    "Protocol",
    "crop_grid",
    "make_protocol",
    "network_gmacs",
    "paper_scales",
    "resized_size",
]

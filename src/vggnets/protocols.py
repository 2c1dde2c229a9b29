"""Documented import path of the paper's evaluation protocols (vggnets.evaluation.protocols): re-exports them."""

from .evaluation.cost import network_gmacs  # noqa: F401
from .evaluation.geometry import crop_grid, resized_size  # noqa: F401
from .evaluation.protocols import *  # noqa: F403

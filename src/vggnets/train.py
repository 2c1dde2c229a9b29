"""Documented import path of the training API (vggnets.training): re-exports it."""

from .training import *  # noqa: F403
from .training import __all__  # noqa: F401

"""Documented import path of vggnets.training.curves (learning curves): re-exports it."""

from .training.curves import *  # noqa: F403

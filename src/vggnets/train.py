"""Documented import path of the training API (vggnets.training): re-exports it."""

from .training.train import *  # noqa: F403

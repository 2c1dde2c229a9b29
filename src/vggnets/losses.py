"""Documented import path of vggnets.features.losses (perceptual losses): re-exports it."""

from .features.losses import *  # noqa: F403

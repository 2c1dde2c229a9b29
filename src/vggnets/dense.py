"""Documented import path of vggnets.models.dense (the fully-convolutional view): re-exports it."""

from .models.dense import *  # noqa: F403

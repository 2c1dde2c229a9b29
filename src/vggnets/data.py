"""Documented import path of vggnets.io.images (read images and collect image files): re-exports it."""

from .io.images import *  # noqa: F403

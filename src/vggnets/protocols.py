"""Documented import path of vggnets.evaluation.protocols (the paper's evaluation protocols): re-exports it."""

from .evaluation.protocols import *  # noqa: F403

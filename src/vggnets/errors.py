"""Exceptions for problems a user can fix; the CLI prints their message without a traceback."""

from __future__ import annotations


class VggnetsError(Exception):
    """Base class: the message is a complete, actionable paragraph."""


class WeightsError(VggnetsError):
    """Weights could not be found, fetched, verified or loaded."""


class DownloadError(WeightsError):
    """The network transfer failed (offline, unreachable host, HTTP error, truncated transfer)."""


class ChecksumError(WeightsError):
    """A file's SHA-256 does not match the published digest."""


class CheckpointError(WeightsError):
    """A file is not a readable checkpoint (truncated, corrupt, wrong format, unsafe pickle)."""


class ArchitectureMismatchError(CheckpointError):
    """A readable checkpoint whose tensors do not fit the requested model."""


class ImageError(VggnetsError):
    """An image file could not be read or decoded."""


class DatasetError(VggnetsError):
    """A dataset or its ground-truth labels cannot be used for evaluation (layout, class folders, label file)."""


class MissingDependencyError(VggnetsError):
    """An optional dependency is not installed; the message names the pip extra."""


class UnknownWeightsError(WeightsError, ValueError):
    """A weights name that no enum defines, or weights that belong to another model (also a ValueError)."""


class UnknownModelError(VggnetsError, ValueError):
    """A model name that no configuration defines (also a ValueError)."""


class ExportError(VggnetsError):
    """A model could not be exported or the exported file failed its check."""

"""``python -m vggnets``: the same as the ``vggnets`` command."""

from .cli import entry_point

entry_point()

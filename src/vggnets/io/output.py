"""The one writer of output files: temporary file in the destination folder, fsync, rename, no silent replace."""

from __future__ import annotations

import contextlib
import os
import tempfile
from collections.abc import Callable
from pathlib import Path

from ..errors import VggnetsError

PARTIAL_SUFFIX = ".partial"


def atomic_write(path: str | Path, write: Callable[[Path], None], *, overwrite: bool = False) -> Path:
    """Create ``path`` by calling ``write(tmp)`` on a temporary file beside it, then renaming it into place.

    The temporary file is fsynced before the rename and removed on any failure, so ``path`` is either absent, the old
    file, or the complete new one. An existing ``path`` is replaced only with ``overwrite=True``.
    """
    path = Path(path)
    if path.exists() and not overwrite:
        raise VggnetsError(f"{path} already exists; pass --force (overwrite=True in Python) to replace it.")
    fd, name = tempfile.mkstemp(prefix=f".{path.name}.", suffix=PARTIAL_SUFFIX, dir=path.parent)
    os.close(fd)
    tmp = Path(name)
    try:
        write(tmp)
        with open(tmp, "rb+") as f:
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            tmp.unlink()
        raise
    return path


def write_text(path: str | Path, text: str, *, overwrite: bool = False) -> Path:
    """Atomically write a UTF-8 text file (see :func:`atomic_write`)."""
    return atomic_write(path, lambda tmp: tmp.write_text(text, encoding="utf-8"), overwrite=overwrite)


def write_bytes(path: str | Path, data: bytes, *, overwrite: bool = False) -> Path:
    """Atomically write a binary file (see :func:`atomic_write`)."""
    return atomic_write(path, lambda tmp: tmp.write_bytes(data), overwrite=overwrite)

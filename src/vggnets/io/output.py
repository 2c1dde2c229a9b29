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

    The temporary file keeps the extension of ``path`` (writers such as ``np.save`` and ``torch.export.save`` go by
    it), gets the usual permissions (rw for everyone minus the umask, as ``open`` gives), is fsynced before the rename
    and removed on any failure, so ``path`` is either absent, the old file, or the complete new one. An existing
    ``path`` is replaced only with ``overwrite=True``, also one that appears while ``write`` runs.
    """
    path = Path(path)
    if path.exists() and not overwrite:
        raise _exists_error(path)
    fd, name = tempfile.mkstemp(prefix=f".{path.name}.", suffix=PARTIAL_SUFFIX + path.suffix, dir=path.parent)
    os.close(fd)
    tmp = Path(name)
    try:
        write(tmp)
        with open(tmp, "rb+") as f:
            os.fsync(f.fileno())
        _usual_permissions(tmp)
        _publish(tmp, path, overwrite)
    finally:
        with contextlib.suppress(OSError):
            tmp.unlink()
    return path


def _publish(tmp: Path, path: Path, overwrite: bool) -> None:
    """Move ``tmp`` to ``path``; without ``overwrite``, never replace a file, even one that appeared meanwhile."""
    if overwrite:
        os.replace(tmp, path)
        return
    try:
        os.link(tmp, path)  # fails if path exists: no window in which another file could be replaced
    except FileExistsError:
        raise _exists_error(path) from None
    except OSError:  # no hard links on this file system
        if path.exists():
            raise _exists_error(path) from None
        os.replace(tmp, path)


def _usual_permissions(path: Path) -> None:
    """rw for everyone minus the umask (mkstemp creates files 0600)."""
    umask = os.umask(0)
    os.umask(umask)
    with contextlib.suppress(OSError):
        os.chmod(path, 0o666 & ~umask)


def _exists_error(path: Path) -> VggnetsError:
    return VggnetsError(f"{path} already exists; pass --force (overwrite=True in Python) to replace it.")


def write_text(path: str | Path, text: str, *, overwrite: bool = False) -> Path:
    """Atomically write a UTF-8 text file (see :func:`atomic_write`)."""
    return atomic_write(path, lambda tmp: tmp.write_text(text, encoding="utf-8"), overwrite=overwrite)


def write_bytes(path: str | Path, data: bytes, *, overwrite: bool = False) -> Path:
    """Atomically write a binary file (see :func:`atomic_write`)."""
    return atomic_write(path, lambda tmp: tmp.write_bytes(data), overwrite=overwrite)


def check_output(path: str | Path, *, overwrite: bool = False, sidecars: tuple[str | Path, ...] = ()) -> Path:
    """Before any work: make sure ``path`` (and its ``sidecars``) can be created, or raise a one-line VggnetsError.

    The folder is created if missing and must take a new file; an existing target (sidecars included) is refused
    without ``overwrite``; a directory is never a target.
    """
    path = Path(path).expanduser()
    for target in (path, *map(Path, sidecars)):
        if target.is_dir():
            raise VggnetsError(f"cannot write {target}: it is a directory; give the path of a file.")
        if target.exists() and not overwrite:
            raise _exists_error(target)
    folder = path.parent
    try:
        folder.mkdir(parents=True, exist_ok=True)
        fd, probe = tempfile.mkstemp(prefix=f".{path.name}.", suffix=PARTIAL_SUFFIX, dir=folder)
        os.close(fd)
        os.unlink(probe)
    except OSError as exc:
        raise VggnetsError(
            f"cannot write {path}: {exc.strerror or exc} in {folder}; choose a writable folder."
        ) from None
    return path


def open_stream(path: str | Path, *, overwrite: bool = False):
    """A text file for results written as they are ready (flush after each unit): created exclusively, or truncated
    with ``overwrite``; every complete line in it is a finished result."""
    try:
        return open(path, "w" if overwrite else "x", encoding="utf-8", newline="")
    except FileExistsError:
        raise _exists_error(Path(path)) from None
    except OSError as exc:
        raise VggnetsError(f"cannot write {path}: {exc.strerror or exc}.") from None

"""The one writer of output files: temporary file in the destination folder, fsync, rename, no silent replace."""

from __future__ import annotations

import contextlib
import errno
import os
import shutil
import tempfile
from collections.abc import Callable, Sequence
from pathlib import Path

from ..errors import VggnetsError

PARTIAL_SUFFIX = ".partial"
#: Below this many free bytes in the destination folder, a failed write is reported as a full disk.
NEARLY_FULL_BYTES = 1 << 20


class OutputError(VggnetsError, OSError):
    """An output file could not be written (no space left, permission denied, ...): one line, for the user.

    Also an :class:`OSError` (``errno`` set where known), so that code that already handles ``OSError`` still does.
    """

    def __init__(self, message: str, errno_: int | None = None) -> None:
        super().__init__(message)
        self.errno = errno_

    def __str__(self) -> str:
        return str(self.args[0])


def atomic_write(path: str | Path, write: Callable[[Path], None], *, overwrite: bool = False) -> Path:
    """Create ``path`` (and its folder if missing) by calling ``write(tmp)`` on a temporary file beside it, then
    renaming it into place.

    The temporary file keeps the extension of ``path`` (writers such as ``np.save`` and ``torch.export.save`` go by
    it), gets the usual permissions (rw for everyone minus the umask, as ``open`` gives), is fsynced before the rename
    and removed on any failure, so ``path`` is either absent, the old file, or the complete new one. An existing
    ``path`` is replaced only with ``overwrite=True``, also one that appears while ``write`` runs.
    """
    path = Path(path)
    if path.exists() and not overwrite:
        raise _exists_error(path)
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, name = tempfile.mkstemp(
            prefix=f".{path.name}.", suffix=PARTIAL_SUFFIX + path.suffix, dir=path.parent
        )
    except OSError as exc:
        raise write_error(path, exc) from None
    os.close(fd)
    tmp = Path(name)
    try:
        write(tmp)
        with open(tmp, "rb+") as f:
            os.fsync(f.fileno())
        _usual_permissions(tmp)
        _publish(tmp, path, overwrite)
    except VggnetsError:
        raise
    except OSError as exc:
        if not _about_the_output(exc, path, tmp):
            raise
        raise write_error(path, exc) from None
    except Exception as exc:  # writers such as torch.save report a full disk in their own words
        if _nearly_full(path.parent):
            raise write_error(path, OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))) from exc
        raise
    finally:
        with contextlib.suppress(OSError):
            tmp.unlink()
    return path


def write_error(path: str | Path, exc: OSError, *, streamed: bool = False) -> OutputError:
    """The one-line error for an output that could not be written: what happened, and what to do about it
    (``streamed``: a file written as results come, which keeps those written before)."""
    path = Path(path)
    code = exc.errno
    kept = "it keeps the results written before" if streamed else "nothing was written there"
    if code in (errno.ENOSPC, errno.EDQUOT, errno.EFBIG):
        what = "no space left on device" if code != errno.EFBIG else "file too large for this file system"
        advice = f"{kept}; free some space in {path.parent}, or choose another folder"
    elif code in (errno.EACCES, errno.EPERM, errno.EROFS):
        what = "permission denied" if code != errno.EROFS else "read-only file system"
        advice = f"choose a folder you can write to instead of {path.parent}"
    elif code in (errno.ENOTDIR, errno.EEXIST) and (blocker := _file_in_the_way(path)) is not None:
        what = f"{blocker} is a file, not a folder"
        advice = "choose another path"
    elif code == errno.ENOENT:
        what = f"the folder {path.parent} does not exist"
        advice = "create it, or choose another path"
    else:
        what = (exc.strerror or str(exc)).lower()
        advice = kept
    return OutputError(f"cannot write {path}: {what}; {advice}.", code)


#: Errors that can only be about where a file is written, whatever file the writer names.
STORAGE_ERRNOS = (errno.ENOSPC, errno.EDQUOT, errno.EFBIG, errno.EROFS, errno.EIO)


def _about_the_output(exc: OSError, path: Path, tmp: Path) -> bool:
    """True when a writer's OSError is about the output (not, say, a file it reads or a tool it runs)."""
    if exc.errno in STORAGE_ERRNOS:
        return True
    if exc.filename is None:
        return exc.errno in (errno.EACCES, errno.EPERM)
    named = Path(os.fsdecode(exc.filename)).absolute()
    return named in (path.absolute(), tmp.absolute()) or named.parent == path.parent.absolute()


def _nearest_existing(folder: Path) -> Path:
    """``folder``, or its nearest ancestor that exists (something always does)."""
    for candidate in (folder, *folder.parents):
        if candidate.exists():
            return candidate
    return Path.cwd()


def _file_in_the_way(path: Path) -> Path | None:
    """The first folder of ``path`` that exists but is not a folder (None if there is none)."""
    for folder in reversed(path.parents):
        if folder.exists() and not folder.is_dir():
            return folder
    return None


def _nearly_full(folder: Path) -> bool:
    """True when ``folder``'s file system has almost no space left (a writer's failure is then a full disk)."""
    try:
        return shutil.disk_usage(folder).free < NEARLY_FULL_BYTES
    except OSError:
        return False


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
    return VggnetsError(f"{path} already exists; pass --force to replace it (overwrite=True in Python).")


def write_text(path: str | Path, text: str, *, overwrite: bool = False) -> Path:
    """Atomically write a UTF-8 text file (see :func:`atomic_write`)."""
    return atomic_write(path, lambda tmp: tmp.write_text(text, encoding="utf-8"), overwrite=overwrite)


def write_bytes(path: str | Path, data: bytes, *, overwrite: bool = False) -> Path:
    """Atomically write a binary file (see :func:`atomic_write`)."""
    return atomic_write(path, lambda tmp: tmp.write_bytes(data), overwrite=overwrite)


def check_output(
    path: str | Path, *, overwrite: bool = False, sidecars: Sequence[str | Path] = (), option: str = ""
) -> Path:
    """Before any work: make sure ``path`` (and its ``sidecars``) can be created, or raise a one-line VggnetsError.

    Each folder must exist and take a new file, or be creatable (the writer creates it): nothing is created here.
    An existing target (sidecars included) is refused without ``overwrite``; a directory is never a target.
    ``option`` (such as ``"--plot"``) names the path in the messages. Returns ``path`` (``~`` expanded).
    """
    path = Path(path).expanduser()
    named = f"{option} " if option else ""
    targets = [path, *(Path(s).expanduser() for s in sidecars)]
    for target in targets:
        if target.is_dir():
            raise VggnetsError(f"cannot write {named}{target}: it is a directory; give the path of a file.")
        if target.exists() and not overwrite:
            raise _exists_error(target)
    for folder in dict.fromkeys(t.parent for t in targets):
        base = _nearest_existing(folder)  # nothing is created before the work: only probed
        try:
            if not base.is_dir():
                raise NotADirectoryError(errno.ENOTDIR, os.strerror(errno.ENOTDIR), str(base))
            fd, probe = tempfile.mkstemp(prefix=f".{path.name}.", suffix=PARTIAL_SUFFIX, dir=base)
            os.close(fd)
            os.unlink(probe)
        except OSError as exc:
            message = str(write_error(path, exc)).removesuffix(".")
            raise OutputError(f"{named}{message} (checked before any work).", exc.errno) from None
    return path


def open_stream(path: str | Path, *, overwrite: bool = False) -> StreamFile:
    """A text file for results written as they are ready (flush after each unit): created exclusively, or truncated
    with ``overwrite``; every complete line in it is a finished result. A write that fails (disk full) raises a
    one-line :class:`OutputError`; what was flushed before stays."""
    try:
        Path(path).parent.mkdir(parents=True, exist_ok=True)
        return StreamFile(path, open(path, "w" if overwrite else "x", encoding="utf-8", newline=""))
    except FileExistsError:
        raise _exists_error(Path(path)) from None
    except OSError as exc:
        raise write_error(path, exc) from None


class StreamFile:
    """The text file of :func:`open_stream`: ``write``, ``flush`` and ``close`` report an OSError as an
    :class:`OutputError` naming the file (once: after a failed write, ``close`` only releases the file)."""

    def __init__(self, path: str | Path, file) -> None:
        self.path, self.file, self.failed = Path(path), file, False

    def _guarded(self, action: Callable, *args):
        try:
            return action(*args)
        except OSError as exc:
            self.failed = True
            raise write_error(self.path, exc, streamed=True) from None

    def write(self, text: str) -> int:
        return self._guarded(self.file.write, text)

    def flush(self) -> None:
        self._guarded(self.file.flush)

    def close(self) -> None:
        if self.failed:  # already reported; the unwritten buffer is lost with the space
            with contextlib.suppress(OSError):
                self.file.close()
            return
        self._guarded(self.file.close)

    @property
    def closed(self) -> bool:
        return self.file.closed

    def __enter__(self) -> StreamFile:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

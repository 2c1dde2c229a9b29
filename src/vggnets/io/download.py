"""Download, cache and verify published files (torch.hub's checkpoint folder, mirrors, resume, SHA-256).

Files live in torch.hub's checkpoint folder, the one torchvision uses, so weights it already downloaded are
reused. A download holds a lock file beside its target (``.<name>.lock``, flock) for as long as it runs, so two
processes never write the same file: the second one waits, then finds the file in the cache. The bytes stream into
``.<name>.partial``, hashed as they arrive; the partial is moved into place atomically only once the SHA-256 of the
whole file checks out, so a failed, interrupted or concurrent download never leaves a file under the final name and
never replaces a good cached file with a bad one. A partial left by a killed or failed download is resumed by the
next download of that file with an HTTP Range request (its bytes are hashed first; a server that ignores the Range
request, or refuses it, sends the file again from the start, and a resumed file that fails the digest is fetched
once more from the start). Partials of other files that no running download holds are removed once they are a day
old.
"""

from __future__ import annotations

import contextlib
import errno
import hashlib
import http.client
import io
import os
import re
import socket
import ssl
import string
import sys
import time
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any

import torch

from ..errors import ChecksumError, DownloadError

try:
    import fcntl
except ImportError:  # Windows: no flock; downloads still verify, but concurrent ones are not serialized
    fcntl = None  # type: ignore[assignment]

MIRROR_ENV = "VGGNETS_WEIGHTS_MIRROR"
TIMEOUT_ENV = "VGGNETS_DOWNLOAD_TIMEOUT"
DEFAULT_TIMEOUT_S = 60.0
#: A partial of another file that no download holds and nothing wrote to for this long is removed.
STALE_PARTIAL_AGE_S = 24 * 3600.0

_CHUNK_SIZE = 1 << 20
_PARTIAL_SUFFIX = ".partial"
_LOCK_SUFFIX = ".lock"
_URL_SCHEME = re.compile(r"([A-Za-z][A-Za-z0-9+.-]*)://")
_CONTENT_RANGE = re.compile(r"bytes\s+(\d+)-(\d+)/(\d+|\*)\s*", re.IGNORECASE)
_UNSATISFIED_RANGE = re.compile(r"bytes\s+\*/(\d+)\s*", re.IGNORECASE)


# --- cache ---


def cache_dir() -> Path:
    """torch.hub.get_dir()/checkpoints (follows TORCH_HOME and torch.hub.set_dir), as torchvision uses."""
    return Path(torch.hub.get_dir()) / "checkpoints"


def cached_path(file_name: str, legacy_names: Sequence[str] = ()) -> Path | None:
    """The cached file for file_name or the first existing legacy name (trusted, not hashed), else None."""
    folder = cache_dir()
    for name in (file_name, *legacy_names):
        candidate = folder / name
        if candidate.is_file():
            return candidate
    return None


#: How a failed download tells the user to pass a copy of the network weights instead.
WEIGHTS_OPTION = "--weights FILE (weights=FILE in Python)"


def ensure_file(
    url: str,
    file_name: str,
    sha256: str | None,
    *,
    legacy_names: Sequence[str] = (),
    progress: bool = True,
    quiet: bool = False,
    local_option: str = WEIGHTS_OPTION,
) -> Path:
    """The cached file (trusted, not re-hashed) if present, else download it (or wait for the process that is).

    ``local_option`` names, in a failed download's message, the way to pass a copy of the file instead.
    """
    found = cached_path(file_name, legacy_names)
    if found is not None:
        return found
    return _fetch(
        url,
        file_name,
        sha256,
        legacy_names,
        reuse=True,
        progress=progress,
        quiet=quiet,
        local_option=local_option,
    )


# --- digests ---


def sha256_file(path: str | Path) -> str:
    """Full hex SHA-256 of a file, read in chunks."""
    digest = hashlib.sha256()
    _hash_into(Path(path), digest)
    return digest.hexdigest()


def check_digest(actual_hex: str, expected: str | None, *, what: str) -> None:
    """Raise ChecksumError unless actual_hex matches expected: a full SHA-256, an 8+ hex prefix, or None."""
    wanted = _wanted_digest(expected)
    if wanted is None:
        return
    actual = actual_hex.strip().lower()
    if not actual.startswith(wanted):
        kind = "SHA-256" if len(wanted) == 64 else f"SHA-256 prefix ({len(wanted)} hex digits)"
        raise ChecksumError(
            f"Checksum mismatch for {what}: the expected {kind} is {wanted} but the file's SHA-256 is "
            f"{actual}. The file is corrupt, incomplete, or not the published file."
        )


def _wanted_digest(expected: str | None) -> str | None:
    """expected in lower case, checked to be 8 to 64 hex digits (ValueError otherwise); None stays None."""
    if expected is None:
        return None
    wanted = expected.strip().lower()
    if not 8 <= len(wanted) <= 64 or any(c not in string.hexdigits for c in wanted):
        raise ValueError(f"expected SHA-256 must be 8 to 64 hex digits, got {expected!r}")
    return wanted


def _hash_into(path: Path, digest: Any) -> None:
    with open(path, "rb") as f:
        while chunk := f.read(_CHUNK_SIZE):
            digest.update(chunk)


def _matches(actual_hex: str, expected: str | None) -> bool:
    try:
        check_digest(actual_hex, expected, what="")
    except ChecksumError:
        return False
    return True


# --- download ---


def download(
    url: str,
    file_name: str,
    sha256: str | None,
    *,
    progress: bool = True,
    quiet: bool = False,
    local_option: str = WEIGHTS_OPTION,
) -> Path:
    """Fetch url (or $VGGNETS_WEIGHTS_MIRROR/file_name) into cache_dir()/file_name, verified, and return it.

    A file already cached under that name is replaced, atomically and only once the new download verifies: it
    stays as it was if the download fails. ``local_option`` is as in :func:`ensure_file`.
    """
    return _fetch(
        url, file_name, sha256, (), reuse=False, progress=progress, quiet=quiet, local_option=local_option
    )


class _Interrupted(DownloadError):
    """A network transfer that stopped part-way: what arrived stays in the partial for the next download."""


@dataclass(frozen=True)
class _Job:
    """What one download needs for streaming and for its error messages."""

    source: str  # the URL or mirror path actually read
    file_name: str
    folder: Path
    fix: str  # the shared "how to fix it by hand" sentence
    show_bar: bool

    @property
    def final(self) -> Path:
        return self.folder / self.file_name

    @property
    def partial(self) -> Path:
        """Where the bytes go until they verify: one fixed name per file, so that the next download resumes it."""
        return self.folder / f".{self.file_name}{_PARTIAL_SUFFIX}"

    @property
    def lock(self) -> Path:
        return self.folder / f".{self.file_name}{_LOCK_SUFFIX}"

    def fail(self, sentence: str) -> DownloadError:
        return _Interrupted(f"{sentence} {self.fix}")

    def write_error(self, exc: OSError) -> DownloadError:
        return DownloadError(
            f"Could not write to the cache directory {self.folder} while downloading {self.source} "
            f"({exc.strerror or exc}). Free some disk space or fix its permissions, or set TORCH_HOME to a "
            "writable directory."
        )

    def waiting(self) -> None:
        """Say why nothing happens while another process holds the lock (on a terminal, like the progress bar)."""
        if self.show_bar and _is_terminal(sys.stderr):
            print(
                f"Waiting for another process that is downloading {self.file_name} to finish ...",
                file=sys.stderr,
                flush=True,
            )


def _fetch(
    url: str,
    file_name: str,
    sha256: str | None,
    legacy_names: Sequence[str],
    *,
    reuse: bool,
    progress: bool,
    quiet: bool,
    local_option: str,
) -> Path:
    """Download under the file's lock: resume its partial, verify, move into place; reuse=True returns a file
    that another process finished while this one waited for the lock."""
    _wanted_digest(sha256)  # a malformed digest is a programming error: say so before any transfer
    folder = cache_dir()
    source, local = _resolve_source(url, file_name)
    job = _Job(
        source,
        file_name,
        folder,
        _manual_fix(url, file_name, folder / file_name, local_option),
        progress and not quiet,
    )
    try:
        folder.mkdir(parents=True, exist_ok=True)
        lock = _Lock.acquire(job.lock, on_wait=job.waiting)
    except OSError as exc:
        raise job.write_error(exc) from exc
    assert lock is not None  # a waiting acquire always returns a lock
    try:
        if reuse and (found := cached_path(file_name, legacy_names)) is not None:
            return found  # another process downloaded it while this one waited
        _remove_orphaned_partials(folder, keep=job.partial.name)
        try:
            _transfer(job, local, sha256)
            try:
                os.replace(job.partial, job.final)
            except OSError as exc:
                raise job.write_error(exc) from exc
        except _Interrupted as exc:
            _keep_for_resume(job, exc, resumable=local is None)
            raise
        except KeyboardInterrupt:
            _keep_for_resume(job, None, resumable=local is None)
            raise
        except BaseException:
            with contextlib.suppress(OSError):
                job.partial.unlink()
            raise
        _fsync_directory(folder)
    finally:
        lock.release()
    return job.final


def _keep_for_resume(job: _Job, exc: DownloadError | None, *, resumable: bool) -> None:
    """Keep a non-empty partial of an interrupted network transfer (and say so in exc); remove anything else."""
    kept = _size(job.partial) if resumable else 0
    if not kept:
        with contextlib.suppress(OSError):
            job.partial.unlink()
        return
    if exc is not None:
        note = (
            f"The {kept:,} bytes received so far are kept in {job.partial}: the next download of "
            f"{job.file_name} resumes from there if the server allows it."
        )
        message = str(exc)
        head = message[: -len(job.fix)].rstrip() if message.endswith(job.fix) else message
        exc.args = (f"{head} {note} {job.fix}",)


def _transfer(job: _Job, local: Path | None, sha256: str | None) -> None:
    """Fill job.partial with the whole verified file, resuming what is there when it can be verified."""
    offset = _size(job.partial) if local is None and sha256 is not None else 0
    actual, resumed = _transfer_from(job, local, offset)
    if resumed and not _matches(actual, sha256):
        # The kept bytes were not the start of this file (it changed on the server, or the partial was damaged).
        actual, _ = _transfer_from(job, local, 0)
    try:
        check_digest(actual, sha256, what=job.source)
    except ChecksumError as exc:
        outcome = (
            f"{job.final} was left as it was." if job.final.exists() else f"Nothing was saved to {job.final}."
        )
        raise ChecksumError(f"{exc} {outcome} {job.fix}") from exc


def _transfer_from(job: _Job, local: Path | None, offset: int) -> tuple[str, bool]:
    """Write the file into job.partial, keeping its first offset bytes if the server resumes there.

    Returns the SHA-256 of the whole file, and whether the kept bytes were used.
    """
    if local is not None:
        with _open_partial(job, 0) as out:
            return _copy_local(local, out, job), False
    digest = hashlib.sha256()
    if offset:
        try:
            _hash_into(job.partial, digest)  # the kept prefix first, so the digest covers the whole file
        except OSError:
            offset, digest = 0, hashlib.sha256()
    timeout = _timeout_s()
    with _network_errors(job, timeout):
        response, start, total = _request(job, offset, timeout)
        with response if response is not None else contextlib.nullcontext():
            if start == 0:
                digest = hashlib.sha256()
            with _open_partial(job, start) as out:
                if response is not None:
                    _stream(response, out, total, job, digest, start)
    return digest.hexdigest(), start > 0


def _request(job: _Job, offset: int, timeout: float) -> tuple[Any, int, int | None]:
    """(response or None, where its body starts in the file, total file size or None).

    With offset > 0 it asks for the rest of the file; a server that answers with anything but a matching 206
    sends (or is asked again for) the whole file, and a 416 whose total is exactly offset means the partial is
    already complete (response None).
    """
    headers = {"User-Agent": "vggnets"}
    if offset:
        headers["Range"] = f"bytes={offset}-"
    try:
        response = urllib.request.urlopen(
            urllib.request.Request(job.source, headers=headers), timeout=timeout
        )
    except urllib.error.HTTPError as exc:
        if not (offset and exc.code == http.client.REQUESTED_RANGE_NOT_SATISFIABLE):
            raise
        unsatisfied = _UNSATISFIED_RANGE.fullmatch(
            exc.headers.get("Content-Range", "") if exc.headers else ""
        )
        exc.close()
        if unsatisfied and int(unsatisfied.group(1)) == offset:
            return None, offset, offset  # every byte is already here; the digest decides
        return _request(job, 0, timeout)
    if not offset or response.status != http.client.PARTIAL_CONTENT:
        return response, 0, _content_length(response)
    matched = _CONTENT_RANGE.fullmatch(response.headers.get("Content-Range", ""))
    if matched is None or int(matched.group(1)) != offset:
        response.close()  # not the part that was asked for: start over
        return _request(job, 0, timeout)
    total = matched.group(3)
    if total != "*":
        return response, offset, int(total)
    length = _content_length(response)
    return response, offset, offset + length if length is not None else None


def _content_length(response: Any) -> int | None:
    length = response.headers.get("Content-Length")
    return int(length) if length and length.isdigit() else None


@contextlib.contextmanager
def _open_partial(job: _Job, start: int) -> Iterator[IO[bytes]]:
    """job.partial opened for writing at start (its first start bytes kept), flushed and fsynced on success."""
    try:
        out = open(job.partial, "r+b" if start else "wb")  # noqa: SIM115 (closed below)
        if start:
            out.seek(start)
            out.truncate()
    except OSError as exc:
        raise job.write_error(exc) from exc
    with out:
        yield out
        try:
            out.flush()
            os.fsync(out.fileno())
        except OSError as exc:
            raise job.write_error(exc) from exc


@contextlib.contextmanager
def _network_errors(job: _Job, timeout: float) -> Iterator[None]:
    """Turn urllib, socket and http.client failures into one-paragraph DownloadErrors."""
    source = job.source
    try:
        yield
    except urllib.error.HTTPError as exc:
        exc.close()
        reason = exc.reason or http.client.responses.get(exc.code, "")
        raise job.fail(f"Download of {source} failed with HTTP {exc.code} {reason}.") from exc
    except urllib.error.URLError as exc:
        if isinstance(exc.reason, TimeoutError):
            raise job.fail(_timeout_sentence(source, timeout)) from exc
        raise job.fail(_unreachable_sentence(source, exc.reason)) from exc
    except TimeoutError as exc:
        raise job.fail(_timeout_sentence(source, timeout)) from exc
    except (OSError, http.client.HTTPException) as exc:
        raise job.fail(f"Download of {source} failed: the connection was lost ({exc!r}).") from exc


def _size(path: Path) -> int:
    try:
        return path.stat().st_size
    except OSError:
        return 0


def _fsync_directory(folder: Path) -> None:
    """Make the rename durable where the platform allows it (best effort)."""
    if os.name != "posix":
        return
    with contextlib.suppress(OSError):
        fd = os.open(folder, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)


# --- where from, and what to tell the user ---


def _resolve_source(url: str, file_name: str) -> tuple[str, Path | None]:
    """(source shown in messages, local path to copy from or None for a network URL)."""
    mirror = os.environ.get(MIRROR_ENV, "").strip()
    if mirror:
        scheme = _check_scheme(mirror, url, file_name)
        if scheme is None:
            local = Path(mirror).expanduser() / file_name
            return str(local), local
        source = f"{mirror.rstrip('/')}/{urllib.parse.quote(file_name)}"
    else:
        scheme = _check_scheme(url, url, file_name)
        source = url
    if scheme == "file":
        return source, Path(urllib.request.url2pathname(urllib.parse.urlparse(source).path))
    return source, None


def _check_scheme(location: str, url: str, file_name: str) -> str | None:
    """The lower-case URL scheme of location (None for a path); DownloadError for a scheme vggnets cannot read."""
    matched = _URL_SCHEME.match(location)
    if matched is None:
        return None
    scheme = matched.group(1).lower()
    if scheme in ("http", "https", "file"):
        return scheme
    forms = "an http:// or https:// URL, a file:// URL, or a directory"
    if location == url:
        raise DownloadError(
            f"Cannot download {url}: {scheme}:// URLs are not supported. Use {forms} that holds {file_name}."
        )
    raise DownloadError(
        f"{MIRROR_ENV} is set to {location!r}, but {scheme}:// URLs are not supported. Set it to {forms} that "
        f"holds {file_name} (e.g. https://mirror.example/vgg/ or /mnt/models), or unset it to download from {url}."
    )


def _manual_fix(url: str, file_name: str, final: Path, local_option: str) -> str:
    """The 'how to fix it by hand' sentence shared by every download error (in words for both CLI and Python)."""
    mirror = os.environ.get(MIRROR_ENV, "").strip()
    mirror_advice = (
        f"or fix {MIRROR_ENV} (now {mirror!r}) so that it holds {file_name}, or unset it"
        if mirror
        else f"or set {MIRROR_ENV} to a server URL or directory that holds {file_name}"
    )
    return (
        f"To fix it by hand, download {url} on a machine with internet access and copy it to {final}, "
        f"{mirror_advice}, or pass the downloaded file with {local_option}."
    )


def _timeout_s() -> float:
    raw = os.environ.get(TIMEOUT_ENV, "").strip()
    if not raw:
        return DEFAULT_TIMEOUT_S
    try:
        value = float(raw)
    except ValueError:
        value = -1.0
    if not value > 0:
        raise DownloadError(
            f"{TIMEOUT_ENV} must be a positive number of seconds, got {raw!r}. "
            f"Set it to e.g. 120, or unset it for the default of {DEFAULT_TIMEOUT_S:g} s."
        )
    return value


def _timeout_sentence(source: str, timeout: float) -> str:
    return (
        f"Download of {source} timed out: the server sent nothing for {timeout:g} s "
        f"(set {TIMEOUT_ENV} to a larger number of seconds on a slow connection)."
    )


def _unreachable_sentence(source: str, reason: object) -> str:
    host = urllib.parse.urlparse(source).hostname or source
    if isinstance(reason, socket.gaierror):
        why = f"the host name {host} could not be resolved (no network connection, or a DNS failure)"
    elif isinstance(reason, ConnectionRefusedError):
        why = f"the connection to {host} was refused (no server listening there, or a firewall)"
    elif isinstance(reason, ssl.SSLCertVerificationError):
        why = (
            f"the TLS certificate of {host} could not be verified (a proxy that intercepts HTTPS? "
            "point SSL_CERT_FILE at your organisation's CA bundle)"
        )
    else:
        why = f"{host} could not be reached (offline, or a proxy or firewall is in the way: {reason})"
    return f"Could not download {source}: {why}."


# --- lock and leftovers ---


class _Lock:
    """An exclusive flock on a lock file beside the download, removed on release (a no-op without fcntl)."""

    def __init__(self, path: Path, fd: int | None) -> None:
        self.path = path
        self.fd = fd

    @classmethod
    def acquire(
        cls, path: Path, *, wait: bool = True, on_wait: Callable[[], None] | None = None
    ) -> _Lock | None:
        """The lock on path; waits for its holder (calling on_wait once first), or returns None if wait=False."""
        if fcntl is None:
            return cls(path, None)
        while True:
            fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
            try:
                if not _flock(fd, blocking=False):
                    if not wait:
                        os.close(fd)
                        return None
                    if on_wait is not None:
                        on_wait()
                        on_wait = None
                    _flock(fd, blocking=True)
                if _same_file(path, fd):
                    return cls(path, fd)
            except BaseException:
                os.close(fd)
                raise
            os.close(fd)  # the previous holder removed the file this one locked: lock the one there now

    def release(self) -> None:
        """Remove the lock file while still holding it (waiters then lock a fresh one), then unlock."""
        if self.fd is None:
            return
        with contextlib.suppress(OSError):
            os.unlink(self.path)
        os.close(self.fd)
        self.fd = None


def _flock(fd: int, *, blocking: bool) -> bool:
    """Take an exclusive flock; False if another holds it (non-blocking). A filesystem without locks counts as
    locked: the digest check at the end still keeps a corrupt file out of the cache."""
    assert fcntl is not None
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | (0 if blocking else fcntl.LOCK_NB))
    except BlockingIOError:
        return False
    except OSError as exc:
        if exc.errno not in (errno.ENOLCK, errno.EOPNOTSUPP, errno.ENOSYS, errno.EINVAL):
            raise
    return True


def _same_file(path: Path, fd: int) -> bool:
    try:
        on_disk = os.stat(path)
    except FileNotFoundError:
        return False
    held = os.fstat(fd)
    return (on_disk.st_dev, on_disk.st_ino) == (held.st_dev, held.st_ino)


def _remove_orphaned_partials(folder: Path, *, keep: str) -> None:
    """Delete other downloads' '.<name>.partial' files that no process holds and nothing wrote to for a day."""
    cutoff = time.time() - STALE_PARTIAL_AGE_S
    try:
        with os.scandir(folder) as entries:
            names = [e.name for e in entries if e.name.startswith(".") and e.name.endswith(_PARTIAL_SUFFIX)]
    except OSError:
        return
    for name in names:
        path = folder / name
        if name == keep or _mtime(path) >= cutoff:
            continue
        with contextlib.suppress(OSError):
            lock = _Lock.acquire(folder / f"{name[: -len(_PARTIAL_SUFFIX)]}{_LOCK_SUFFIX}", wait=False)
            if lock is None:
                continue  # a running download holds it
            try:
                if _mtime(path) < cutoff:
                    path.unlink()
            finally:
                lock.release()


def _mtime(path: Path) -> float:
    try:
        return path.stat().st_mtime
    except OSError:
        return float("inf")


# --- streaming ---


def _copy_local(path: Path, out: IO[bytes], job: _Job) -> str:
    """Copy a file from a local (directory or file://) mirror into out and return its SHA-256."""
    try:
        with open(path, "rb") as src:
            return _stream(src, out, os.fstat(src.fileno()).st_size, job, hashlib.sha256(), 0)
    except FileNotFoundError as exc:
        raise DownloadError(
            f"{job.file_name} is not in the weights mirror: {path} does not exist ({MIRROR_ENV} is set). {job.fix}"
        ) from exc
    except OSError as exc:
        raise DownloadError(
            f"Could not read {path} from the weights mirror ({exc.strerror or exc}). {job.fix}"
        ) from exc


def _stream(
    src: io.BufferedIOBase, out: IO[bytes], total: int | None, job: _Job, digest: Any, received: int
) -> str:
    """Copy src to out while hashing (digest already holds the first received bytes); raise DownloadError if the
    file ends before total bytes."""
    cut_short = False
    bar = _progress_bar(total, job.file_name, received) if job.show_bar else None
    try:
        while not cut_short:
            try:
                chunk = src.read1(_CHUNK_SIZE)  # whatever has arrived, so the bar and the file advance
            except http.client.IncompleteRead as exc:
                chunk, cut_short = exc.partial, True
            if not chunk:
                break
            try:
                out.write(chunk)
            except OSError as exc:
                raise job.write_error(exc) from exc
            digest.update(chunk)
            received += len(chunk)
            if bar is not None:
                bar.update(len(chunk))
    finally:
        if bar is not None:
            bar.close()
    if cut_short or (total is not None and received < total):
        expected = f"{total:,}" if total is not None else "an unknown number of"
        raise job.fail(
            f"Download of {job.source} was truncated: received {received:,} of {expected} bytes before the "
            "connection closed."
        )
    return digest.hexdigest()


def _is_terminal(stream: Any) -> bool:
    return stream is not None and bool(getattr(stream, "isatty", lambda: False)())


def _progress_bar(total: int | None, desc: str, initial: int = 0) -> Any:
    """A tqdm bar on stderr (starting at the bytes already there), or None when stderr is not a terminal."""
    if not _is_terminal(sys.stderr):
        return None
    from tqdm import tqdm

    return tqdm(
        total=total, initial=initial, desc=desc, unit="B", unit_scale=True, unit_divisor=1024, file=sys.stderr
    )

"""Download, cache and verify published files (torch.hub's checkpoint folder, mirrors, SHA-256).

Files live in torch.hub's checkpoint folder, the one torchvision uses, so weights it already downloaded are
reused. Downloads stream into a private temporary file next to the final one, are hashed while streaming, and
are moved into place atomically only once their size and digest check out: a failed, interrupted or concurrent
download never leaves a partial file under the final name.
"""

from __future__ import annotations

import contextlib
import hashlib
import http.client
import io
import os
import socket
import ssl
import string
import sys
import tempfile
import time
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any

import torch

from ..errors import ChecksumError, DownloadError

MIRROR_ENV = "VGGNETS_WEIGHTS_MIRROR"
TIMEOUT_ENV = "VGGNETS_DOWNLOAD_TIMEOUT"
DEFAULT_TIMEOUT_S = 60.0
STALE_PARTIAL_AGE_S = 3600.0

_CHUNK_SIZE = 1 << 20
_PARTIAL_SUFFIX = ".partial"


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


def ensure_file(
    url: str,
    file_name: str,
    sha256: str | None,
    *,
    legacy_names: Sequence[str] = (),
    progress: bool = True,
    quiet: bool = False,
) -> Path:
    """The cached file (trusted, not re-hashed) if present, else download it."""
    found = cached_path(file_name, legacy_names)
    if found is not None:
        return found
    return download(url, file_name, sha256, progress=progress, quiet=quiet)


# --- digests ---


def sha256_file(path: str | Path) -> str:
    """Full hex SHA-256 of a file, read in chunks."""
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        while chunk := f.read(_CHUNK_SIZE):
            digest.update(chunk)
    return digest.hexdigest()


def check_digest(actual_hex: str, expected: str | None, *, what: str) -> None:
    """Raise ChecksumError unless actual_hex matches expected: a full SHA-256, an 8+ hex prefix, or None."""
    if expected is None:
        return
    wanted = expected.strip().lower()
    if not 8 <= len(wanted) <= 64 or any(c not in string.hexdigits for c in wanted):
        raise ValueError(f"expected SHA-256 must be 8 to 64 hex digits, got {expected!r}")
    actual = actual_hex.strip().lower()
    if not actual.startswith(wanted):
        kind = "SHA-256" if len(wanted) == 64 else f"SHA-256 prefix ({len(wanted)} hex digits)"
        raise ChecksumError(
            f"Checksum mismatch for {what}: the expected {kind} is {wanted} but the file's SHA-256 is "
            f"{actual}. The file is corrupt, incomplete, or not the published file."
        )


# --- download ---


def download(
    url: str, file_name: str, sha256: str | None, *, progress: bool = True, quiet: bool = False
) -> Path:
    """Fetch url (or $VGGNETS_WEIGHTS_MIRROR/file_name) into cache_dir()/file_name, verified; return it."""
    folder = cache_dir()
    source, local = _resolve_source(url, file_name)
    fix = _manual_fix(url, file_name, folder / file_name)
    job = _Job(source, file_name, folder, fix, show_bar=progress and not quiet)
    try:
        folder.mkdir(parents=True, exist_ok=True)
        _remove_stale_partials(folder, file_name)
        fd, tmp_name = tempfile.mkstemp(prefix=f".{file_name}.", suffix=_PARTIAL_SUFFIX, dir=folder)
    except OSError as exc:
        raise job.write_error(exc) from exc
    tmp = Path(tmp_name)
    try:
        with os.fdopen(fd, "wb") as out:
            actual = _copy_local(local, out, job) if local is not None else _fetch_url(out, job)
            try:
                out.flush()
                os.fsync(out.fileno())
            except OSError as exc:
                raise job.write_error(exc) from exc
        try:
            check_digest(actual, sha256, what=source)
        except ChecksumError as exc:
            raise ChecksumError(f"{exc} Nothing was saved to {folder / file_name}. {job.fix}") from exc
        os.replace(tmp, folder / file_name)
    except BaseException:
        with contextlib.suppress(OSError):
            tmp.unlink()
        raise
    return folder / file_name


@dataclass(frozen=True)
class _Job:
    """What one download needs for streaming and for its error messages."""

    source: str  # the URL or mirror path actually read
    file_name: str
    folder: Path
    fix: str  # the shared "how to fix it by hand" sentence
    show_bar: bool

    def fail(self, sentence: str) -> DownloadError:
        return DownloadError(f"{sentence} {self.fix}")

    def write_error(self, exc: OSError) -> DownloadError:
        return DownloadError(
            f"Could not write to the cache directory {self.folder} while downloading {self.source} "
            f"({exc.strerror or exc}). Free some disk space or fix its permissions, or set TORCH_HOME to a "
            "writable directory."
        )


def _resolve_source(url: str, file_name: str) -> tuple[str, Path | None]:
    """(source shown in messages, local path to copy from or None for a network URL)."""
    mirror = os.environ.get(MIRROR_ENV, "").strip()
    if mirror and not mirror.startswith(("http://", "https://", "file://")):
        local = Path(mirror).expanduser() / file_name
        return str(local), local
    source = f"{mirror.rstrip('/')}/{urllib.parse.quote(file_name)}" if mirror else url
    if source.startswith("file://"):
        return source, Path(urllib.request.url2pathname(urllib.parse.urlparse(source).path))
    return source, None


def _manual_fix(url: str, file_name: str, final: Path) -> str:
    """The 'how to fix it by hand' sentence shared by every download error."""
    mirror = os.environ.get(MIRROR_ENV, "").strip()
    mirror_advice = (
        f"or fix {MIRROR_ENV} (now {mirror!r}) so that it holds {file_name}, or unset it"
        if mirror
        else f"or set {MIRROR_ENV} to a server URL or directory that holds {file_name}"
    )
    return (
        f"To fix it by hand, download {url} on a machine with internet access and copy it to {final}, "
        f"{mirror_advice}, or pass weights='/path/to/{file_name}'."
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


def _remove_stale_partials(folder: Path, file_name: str) -> None:
    """Delete '.<file_name>.*.partial' files untouched for an hour (left by killed processes)."""
    prefix = f".{file_name}."
    cutoff = time.time() - STALE_PARTIAL_AGE_S
    with os.scandir(folder) as entries:
        stale = [e.path for e in entries if e.name.startswith(prefix) and e.name.endswith(_PARTIAL_SUFFIX)]
    for path in stale:
        with contextlib.suppress(OSError):
            if os.stat(path).st_mtime < cutoff:
                os.unlink(path)


def _fetch_url(out: IO[bytes], job: _Job) -> str:
    """Stream an http(s) URL into out and return its SHA-256; network failures become DownloadError."""
    source = job.source
    timeout = _timeout_s()
    request = urllib.request.Request(source, headers={"User-Agent": "vggnets"})
    try:
        with urllib.request.urlopen(request, timeout=timeout) as response:
            length = response.headers.get("Content-Length")
            return _stream(response, out, int(length) if length and length.isdigit() else None, job)
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


def _copy_local(path: Path, out: IO[bytes], job: _Job) -> str:
    """Copy a file from a local (directory or file://) mirror into out and return its SHA-256."""
    try:
        with open(path, "rb") as src:
            return _stream(src, out, os.fstat(src.fileno()).st_size, job)
    except FileNotFoundError as exc:
        raise job.fail(
            f"{job.file_name} is not in the weights mirror: {path} does not exist ({MIRROR_ENV} is set)."
        ) from exc
    except OSError as exc:
        raise job.fail(f"Could not read {path} from the weights mirror ({exc.strerror or exc}).") from exc


def _stream(src: io.BufferedIOBase, out: IO[bytes], total: int | None, job: _Job) -> str:
    """Copy src to out while hashing; raise DownloadError if fewer than total bytes arrive."""
    digest = hashlib.sha256()
    received = 0
    cut_short = False
    bar = _progress_bar(total, job.file_name) if job.show_bar else None
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


def _progress_bar(total: int | None, desc: str) -> Any:
    """A tqdm bar on stderr, or None when stderr is not a terminal."""
    stream = sys.stderr
    if stream is None or not getattr(stream, "isatty", lambda: False)():
        return None
    from tqdm import tqdm

    return tqdm(total=total, desc=desc, unit="B", unit_scale=True, unit_divisor=1024, file=stream)

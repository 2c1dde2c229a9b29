"""Tests for vggnets.io.download: downloads against a local HTTP server (no internet), the cache, mirrors."""

from __future__ import annotations

import hashlib
import http.server
import io
import os
import re
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import torch

from vggnets.errors import ChecksumError, DownloadError
from vggnets.io import checkpoint
from vggnets.io import download as hub

SRC = Path(__file__).resolve().parents[1] / "src"
NAME = "tiny-0123abcd.pth"


def _state_dict() -> dict[str, torch.Tensor]:
    g = torch.Generator().manual_seed(0)
    return {
        "features.0.weight": torch.randn(64, 3, 3, 3, generator=g),
        "features.0.bias": torch.randn(64, generator=g),
        "classifier.0.weight": torch.randn(256, 256, generator=g),
        "classifier.0.bias": torch.randn(256, generator=g),
    }


def _saved_bytes(obj: object, **kwargs: object) -> bytes:
    buf = io.BytesIO()
    torch.save(obj, buf, **kwargs)
    return buf.getvalue()


PAYLOAD = _saved_bytes(_state_dict())  # about 270 KB
SHA = hashlib.sha256(PAYLOAD).hexdigest()


def _assert_same_tensors(a: dict[str, torch.Tensor], b: dict[str, torch.Tensor]) -> None:
    assert sorted(a) == sorted(b)  # safetensors stores keys sorted
    for key in a:
        assert torch.equal(a[key], b[key]), key


# --- local HTTP server ---


class _Server(http.server.ThreadingHTTPServer):
    daemon_threads = True

    def __init__(self) -> None:
        super().__init__(("127.0.0.1", 0), _Handler)
        self.files: dict[str, bytes] = {NAME: PAYLOAD}
        self.hits: list[str] = []
        self.ranges: list[str | None] = []  # the Range header of each request, in the order of hits
        self.active = 0
        self.max_active = 0
        self.lock = threading.Lock()
        self.release = threading.Event()  # set at teardown to end stalled handlers
        self.gate = threading.Event()  # opened by a test to let the "gated" route finish

    def url(self, route: str, name: str = NAME) -> str:
        return f"http://127.0.0.1:{self.server_address[1]}/{route}/{name}"


class _Handler(http.server.BaseHTTPRequestHandler):
    server: _Server

    def log_message(self, format: str, *args: object) -> None:  # keep test output clean
        pass

    def do_GET(self) -> None:
        route, _, name = self.path.lstrip("/").partition("/")
        with self.server.lock:
            self.server.hits.append(self.path)
            self.server.ranges.append(self.headers.get("Range"))
            self.server.active += 1
            self.server.max_active = max(self.server.max_active, self.server.active)
        try:
            self._respond(route, self.server.files.get(name))
        except OSError:  # the client went away (killed, timed out)
            pass
        finally:
            with self.server.lock:
                self.server.active -= 1

    def _headers(self, length: int, content_range: str | None = None) -> None:
        self.send_response(206 if content_range else 200)
        self.send_header("Content-Type", "application/octet-stream")
        self.send_header("Content-Length", str(length))
        if content_range:
            self.send_header("Content-Range", content_range)
        self.end_headers()

    def _range_start(self) -> int | None:
        """The first byte asked for by a 'Range: bytes=N-' header, else None."""
        match = re.fullmatch(r"bytes=(\d+)-", self.headers.get("Range") or "")
        return int(match.group(1)) if match else None

    def _send_ranged(self, body: bytes, *, ranges: bool = True) -> bytes | None:
        """Send the status and headers for body (206 for a Range request when ranges), return what to write."""
        start = self._range_start() if ranges else None
        if start is None:
            self._headers(len(body))
            return body
        if start >= len(body):
            self.send_response(416)
            self.send_header("Content-Range", f"bytes */{len(body)}")
            self.send_header("Content-Length", "0")
            self.end_headers()
            return None
        self._headers(len(body) - start, f"bytes {start}-{len(body) - 1}/{len(body)}")
        return body[start:]

    def _respond(self, route: str, body: bytes | None) -> None:
        if body is None or route == "404":
            self.send_error(404, "Not Found")
        elif route == "403":
            self.send_error(403, "Forbidden")
        elif route in ("files", "norange"):  # norange: a server that ignores Range (200, whole file)
            data = self._send_ranged(body, ranges=route == "files")
            if data:
                self.wfile.write(data)
        elif route == "range416":  # refuses every Range request
            if self._range_start() is not None:
                self.send_response(416)
                self.send_header("Content-Length", "0")
                self.end_headers()
            else:
                self._headers(len(body))
                self.wfile.write(body)
        elif route == "wrongrange":  # answers a Range request with 206 but the whole file (bytes 0-...)
            if self._range_start() is not None:
                self._headers(len(body), f"bytes 0-{len(body) - 1}/{len(body)}")
            else:
                self._headers(len(body))
            self.wfile.write(body)
        elif route == "truncated":  # promise the whole file, send half, close
            self._headers(len(body))
            self.wfile.write(body[: len(body) // 2])
            self.close_connection = True
        elif route == "stall-headers":  # accept the request, then say nothing
            self.server.release.wait(10)
        elif route == "stall-body":  # send headers and some data, then say nothing
            self._headers(len(body))
            self.wfile.write(body[:1024])
            self.wfile.flush()
            self.server.release.wait(10)
        elif route == "gated":  # 16 KiB, then the rest once the test opens the gate (serves ranges)
            data = self._send_ranged(body) or b""
            self.wfile.write(data[:16384])
            self.wfile.flush()
            self.server.gate.wait(30)
            if not self.server.release.is_set():
                self.wfile.write(data[16384:])
        elif route == "paced":  # 16 KiB at a time, ~0.4 s for the file (serves ranges)
            step, pause = 16384, 0.02
            data = self._send_ranged(body) or b""
            for start in range(0, len(data), step):
                if self.server.release.is_set():
                    return
                self.wfile.write(data[start : start + step])
                self.wfile.flush()
                time.sleep(pause)
        else:
            self.send_error(400, "Bad route")


@pytest.fixture
def server() -> Iterator[_Server]:
    srv = _Server()
    thread = threading.Thread(target=srv.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
    thread.start()
    yield srv
    srv.release.set()
    srv.gate.set()
    srv.shutdown()
    srv.server_close()
    thread.join(5)


@pytest.fixture
def closed_port_url() -> str:
    """An http URL on 127.0.0.1 where nothing listens (connection refused)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    return f"http://127.0.0.1:{port}/models/{NAME}"


@pytest.fixture(autouse=True)
def isolated_cache(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """Point torch.hub (and so vggnets) at an empty cache under tmp_path; clear vggnets' environment."""
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch"))
    monkeypatch.setattr(torch.hub, "_hub_dir", None)  # undo any torch.hub.set_dir from elsewhere
    monkeypatch.delenv(hub.MIRROR_ENV, raising=False)
    monkeypatch.delenv(hub.TIMEOUT_ENV, raising=False)
    folder = hub.cache_dir()
    assert folder == tmp_path / "torch" / "hub" / "checkpoints"
    return folder


PARTIAL = (
    f".{NAME}.partial"  # where a download of NAME writes until the file verifies (resumed by the next one)
)
LOCK = f".{NAME}.lock"  # held by the process downloading NAME


def _leftovers(folder: Path) -> list[str]:
    return sorted(p.name for p in folder.iterdir()) if folder.exists() else []


def _assert_actionable(message: str, url: str, final: Path) -> None:
    """A download error names the URL, the cache path, and says how to fix it by hand (for CLI and Python)."""
    assert url in message
    assert str(final) in message
    assert "internet access" in message and hub.MIRROR_ENV in message
    assert "--weights FILE" in message and "weights='" not in message
    assert "\n" not in message


def _stage(folder: Path, name: str, data: bytes, *, age_s: float = 0.0) -> Path:
    """Write folder/name, as if last modified age_s seconds ago."""
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / name
    path.write_bytes(data)
    if age_s:
        when = time.time() - age_s
        os.utime(path, (when, when))
    return path


def _download_in_subprocess(url: str) -> subprocess.Popen[bytes]:
    """A separate process downloading NAME from url into the same (isolated) cache."""
    code = (
        "import sys; from vggnets.io.download import ensure_file; "
        "ensure_file(sys.argv[1], sys.argv[2], sys.argv[3], progress=False)"
    )
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(SRC), os.environ.get("PYTHONPATH", "")])}
    return subprocess.Popen(
        [sys.executable, "-c", code, url, NAME, SHA],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )


def _wait_for_partial(proc: subprocess.Popen[bytes], folder: Path) -> None:
    """Wait until proc has written some bytes of NAME (it then holds the lock)."""
    deadline = time.monotonic() + 120  # a generous bound for a busy machine, not a timing assertion
    while _size(folder / PARTIAL) == 0:
        if proc.poll() is not None:
            raise AssertionError(proc.stderr.read().decode() if proc.stderr else "the download process ended")
        assert time.monotonic() < deadline, "the download never started"
        time.sleep(0.02)


def _size(path: Path) -> int:
    try:
        return path.stat().st_size
    except FileNotFoundError:
        return 0


def _finish(proc: subprocess.Popen[bytes]) -> None:
    if proc.poll() is None:
        proc.kill()
    proc.wait(60)
    if proc.stderr:
        proc.stderr.close()


# --- cache_dir, cached_path, check_digest, sha256_file ---


def test_cache_dir_follows_torch_home_and_set_dir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "elsewhere"))
    assert hub.cache_dir() == tmp_path / "elsewhere" / "hub" / "checkpoints"
    torch.hub.set_dir(str(tmp_path / "custom"))  # the fixture's monkeypatch restores torch.hub._hub_dir
    assert hub.cache_dir() == tmp_path / "custom" / "checkpoints"


def test_sha256_file(tmp_path: Path) -> None:
    path = tmp_path / "f.bin"
    data = os.urandom(3 * (1 << 20) + 17)  # spans several read chunks
    path.write_bytes(data)
    assert hub.sha256_file(path) == hashlib.sha256(data).hexdigest()
    assert hub.sha256_file(str(path)) == hashlib.sha256(data).hexdigest()


def test_check_digest_accepts_full_prefix_and_none() -> None:
    hub.check_digest(SHA, SHA, what="x")
    hub.check_digest(SHA, SHA[:8], what="x")
    hub.check_digest(SHA, SHA[:8].upper(), what="x")
    hub.check_digest(SHA, None, what="x")


def test_check_digest_mismatch_names_file_and_both_digests() -> None:
    wrong = "0" * 64 if not SHA.startswith("0") else "1" * 64
    for expected in (wrong, wrong[:8]):
        with pytest.raises(ChecksumError) as info:
            hub.check_digest(SHA, expected, what="/some/file.pth")
        message = str(info.value)
        assert "/some/file.pth" in message and expected in message and SHA in message


def test_check_digest_rejects_malformed_expected() -> None:
    for bad in ("abc", "xyz12345", "0" * 65):
        with pytest.raises(ValueError):
            hub.check_digest(SHA, bad, what="x")


def test_cached_path_prefers_file_name_then_legacy_names(isolated_cache: Path) -> None:
    assert hub.cached_path(NAME, ["old.pth"]) is None
    isolated_cache.mkdir(parents=True)
    (isolated_cache / "old.pth").write_bytes(b"legacy")
    assert hub.cached_path(NAME, ["missing.pth", "old.pth"]) == isolated_cache / "old.pth"
    (isolated_cache / NAME).write_bytes(b"current")
    assert hub.cached_path(NAME, ["old.pth"]) == isolated_cache / NAME


# --- download: success and cache reuse ---


@pytest.mark.parametrize("expected", [SHA, SHA[:8], None], ids=["full", "prefix", "unchecked"])
def test_fresh_download(server: _Server, isolated_cache: Path, expected: str | None) -> None:
    path = hub.download(server.url("files"), NAME, expected)
    assert path == isolated_cache / NAME
    assert path.read_bytes() == PAYLOAD
    assert _leftovers(isolated_cache) == [NAME]  # no .partial left behind
    assert server.hits == [f"/files/{NAME}"]


def test_download_creates_missing_parents(server: _Server, tmp_path: Path, monkeypatch) -> None:
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "a" / "b" / "c"))
    path = hub.download(server.url("files"), NAME, SHA)
    assert path == tmp_path / "a" / "b" / "c" / "hub" / "checkpoints" / NAME and path.is_file()


def test_ensure_file_downloads_once_then_reuses_cache(server: _Server, isolated_cache: Path) -> None:
    first = hub.ensure_file(server.url("files"), NAME, SHA)
    second = hub.ensure_file(server.url("files"), NAME, SHA)
    assert first == second == isolated_cache / NAME
    assert len(server.hits) == 1


def test_ensure_file_reuses_file_placed_by_torchvision(tmp_path: Path, closed_port_url: str) -> None:
    # torchvision's cache is $TORCH_HOME/hub/checkpoints; a hit is trusted, so even bytes that would not match the
    # digest are returned without hashing (and without contacting the unreachable URL).
    folder = tmp_path / "torch" / "hub" / "checkpoints"
    folder.mkdir(parents=True)
    (folder / NAME).write_bytes(b"placed by torchvision")
    assert hub.ensure_file(closed_port_url, NAME, SHA) == folder / NAME


def test_ensure_file_reuses_legacy_name(isolated_cache: Path, closed_port_url: str) -> None:
    isolated_cache.mkdir(parents=True)
    (isolated_cache / "tiny-legacy.pth").write_bytes(PAYLOAD)
    found = hub.ensure_file(closed_port_url, NAME, SHA, legacy_names=("tiny-legacy.pth",))
    assert found == isolated_cache / "tiny-legacy.pth"


def test_download_replaces_existing_file(server: _Server, isolated_cache: Path) -> None:
    _stage(isolated_cache, NAME, b"stale")
    assert hub.download(server.url("files"), NAME, SHA).read_bytes() == PAYLOAD
    assert _leftovers(isolated_cache) == [NAME]


def test_download_keeps_cached_file_when_replacement_fails(server: _Server, isolated_cache: Path) -> None:
    # download() is `vggnets download --force`: the cached file is replaced only by a verified one.
    _stage(isolated_cache, NAME, b"old file")
    with pytest.raises(DownloadError, match="HTTP 404"):
        hub.download(server.url("404"), NAME, SHA)
    wrong = "f" * 64 if not SHA.startswith("f") else "e" * 64
    with pytest.raises(ChecksumError) as info:
        hub.download(server.url("files"), NAME, wrong)
    assert f"{isolated_cache / NAME} was left as it was" in str(info.value)
    assert (isolated_cache / NAME).read_bytes() == b"old file"
    assert _leftovers(isolated_cache) == [NAME]


# --- download: failures ---


def test_checksum_mismatch(server: _Server, isolated_cache: Path) -> None:
    wrong = "f" * 64 if not SHA.startswith("f") else "e" * 64
    url = server.url("files")
    with pytest.raises(ChecksumError) as info:
        hub.download(url, NAME, wrong)
    message = str(info.value)
    _assert_actionable(message, url, isolated_cache / NAME)
    assert wrong in message and SHA in message and "Nothing was saved" in message
    assert _leftovers(isolated_cache) == []  # a partial that fails the digest is not kept


def test_truncated_transfer_keeps_partial_and_next_download_resumes(
    server: _Server, isolated_cache: Path
) -> None:
    url = server.url("truncated")
    with pytest.raises(DownloadError) as info:
        hub.download(url, NAME, SHA)
    message = str(info.value)
    half = len(PAYLOAD) // 2
    assert "truncated" in message and f"{len(PAYLOAD):,}" in message
    assert f"The {half:,} bytes received so far are kept in {isolated_cache / PARTIAL}" in message
    _assert_actionable(message, url, isolated_cache / NAME)
    assert _leftovers(isolated_cache) == [PARTIAL]  # no file under the final name, no lock file
    assert _size(isolated_cache / PARTIAL) == half

    path = hub.ensure_file(server.url("files"), NAME, SHA)
    assert server.ranges[-1] == f"bytes={half}-"  # only the missing half was asked for
    assert hub.sha256_file(path) == SHA
    assert _leftovers(isolated_cache) == [NAME]


def test_truncated_transfer_detected_without_digest(server: _Server, isolated_cache: Path) -> None:
    with pytest.raises(DownloadError, match="truncated"):
        hub.download(server.url("truncated"), NAME, None)
    assert not (isolated_cache / NAME).exists()


@pytest.mark.parametrize(("route", "status"), [("404", "404 Not Found"), ("403", "403 Forbidden")])
def test_http_error(server: _Server, isolated_cache: Path, route: str, status: str) -> None:
    url = server.url(route)
    with pytest.raises(DownloadError) as info:
        hub.download(url, NAME, SHA)
    message = str(info.value)
    assert f"HTTP {status}" in message
    _assert_actionable(message, url, isolated_cache / NAME)
    assert _leftovers(isolated_cache) == []


def test_unreachable_host(isolated_cache: Path, closed_port_url: str) -> None:
    with pytest.raises(DownloadError) as info:
        hub.download(closed_port_url, NAME, SHA)
    message = str(info.value)
    assert "refused" in message
    _assert_actionable(message, closed_port_url, isolated_cache / NAME)
    assert isinstance(info.value.__cause__, OSError)  # raised `from` the urllib error
    assert _leftovers(isolated_cache) == []


def test_unresolvable_host_message(isolated_cache: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    # No DNS lookups in tests: simulate the resolver failing as it does offline.
    def no_dns(*args: object, **kwargs: object) -> object:
        raise socket.gaierror(socket.EAI_NONAME, "Name or service not known")

    monkeypatch.setattr(socket, "getaddrinfo", no_dns)
    url = f"https://download.example.invalid/models/{NAME}"
    with pytest.raises(DownloadError) as info:
        hub.download(url, NAME, SHA)
    assert "could not be resolved" in str(info.value)
    _assert_actionable(str(info.value), url, isolated_cache / NAME)


@pytest.mark.parametrize(("route", "kept"), [("stall-headers", []), ("stall-body", [PARTIAL])])
def test_stalled_server_times_out(
    server: _Server, isolated_cache: Path, monkeypatch: pytest.MonkeyPatch, route: str, kept: list[str]
) -> None:
    monkeypatch.setenv(hub.TIMEOUT_ENV, "1")
    url = server.url(route)
    with pytest.raises(DownloadError) as info:
        hub.download(url, NAME, SHA)
    message = str(info.value)
    assert "timed out" in message and hub.TIMEOUT_ENV in message
    _assert_actionable(message, url, isolated_cache / NAME)
    assert _leftovers(isolated_cache) == kept  # the 1 KiB that arrived before the stall is kept for resuming


def test_invalid_timeout_setting(
    server: _Server, isolated_cache: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv(hub.TIMEOUT_ENV, "soon")
    with pytest.raises(DownloadError, match=hub.TIMEOUT_ENV):
        hub.download(server.url("files"), NAME, SHA)
    assert server.hits == []
    assert _leftovers(isolated_cache) == []


def test_keyboard_interrupt_keeps_partial_for_the_next_download(
    server: _Server, isolated_cache: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    class InterruptingBar:
        def update(self, n: int) -> None:
            raise KeyboardInterrupt

        def close(self) -> None:
            pass

    with monkeypatch.context() as patch:
        patch.setattr(hub, "_progress_bar", lambda total, desc, initial=0: InterruptingBar())
        with pytest.raises(KeyboardInterrupt):
            hub.download(server.url("paced"), NAME, SHA)
    assert _leftovers(isolated_cache) == [PARTIAL]  # the lock is released and removed
    kept = _size(isolated_cache / PARTIAL)
    assert 0 < kept <= len(PAYLOAD)
    assert hub.ensure_file(server.url("files"), NAME, SHA).read_bytes() == PAYLOAD
    assert server.ranges == [None, f"bytes={kept}-"]


# --- resuming a partial ---


def test_killed_download_is_resumed_with_a_range_request(
    server: _Server, isolated_cache: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Another process downloads NAME and is SIGKILLed mid-transfer while this one waits for its lock: this one
    then resumes the partial it left with a Range request, and the whole file verifies."""
    waiting = threading.Event()
    monkeypatch.setattr(hub._Job, "waiting", lambda self: waiting.set())
    outcome: list[object] = []

    def rerun() -> None:
        try:
            outcome.append(hub.ensure_file(server.url("files"), NAME, SHA))
        except BaseException as exc:
            outcome.append(exc)

    proc = _download_in_subprocess(server.url("gated"))  # 16 KiB, then nothing until the gate opens
    thread = threading.Thread(target=rerun)
    try:
        _wait_for_partial(proc, isolated_cache)  # the other process holds the lock and has written some bytes
        thread.start()
        assert waiting.wait(60), "the second download did not wait for the lock"
        assert server.hits == [f"/gated/{NAME}"]  # ... and did not start a transfer of its own
        proc.send_signal(signal.SIGKILL)
        proc.wait(60)
        thread.join(60)
    finally:
        _finish(proc)
    assert proc.returncode == -signal.SIGKILL
    assert outcome == [isolated_cache / NAME]
    assert server.hits == [f"/gated/{NAME}", f"/files/{NAME}"]
    first, resumed = server.ranges
    match = re.fullmatch(r"bytes=(\d+)-", resumed or "")
    assert (
        first is None and match and 0 < int(match.group(1)) <= 16384
    )  # resumed where the killed one stopped
    assert hub.sha256_file(isolated_cache / NAME) == SHA
    assert _leftovers(isolated_cache) == [NAME]


def test_old_partial_with_a_lock_file_and_no_holder_is_resumed(server: _Server, isolated_cache: Path) -> None:
    # What `kill -9` leaves: the partial and the lock file, whose lock the kernel released; a week old here.
    week = 7 * 24 * 3600.0
    _stage(isolated_cache, PARTIAL, PAYLOAD[:5000], age_s=week)
    _stage(isolated_cache, LOCK, b"", age_s=week)
    assert hub.ensure_file(server.url("files"), NAME, SHA).read_bytes() == PAYLOAD
    assert server.ranges == ["bytes=5000-"]
    assert _leftovers(isolated_cache) == [NAME]


@pytest.mark.parametrize(
    ("route", "ranges"),
    [
        ("norange", ["bytes=5000-"]),  # 200 with the whole file: written from the start
        ("range416", ["bytes=5000-", None]),  # 416: asked again for the whole file
        ("wrongrange", ["bytes=5000-", None]),  # 206 for other bytes than asked: asked again
    ],
)
def test_server_that_does_not_resume_restarts_cleanly(
    server: _Server, isolated_cache: Path, route: str, ranges: list[str | None]
) -> None:
    _stage(isolated_cache, PARTIAL, PAYLOAD[:5000])
    path = hub.ensure_file(server.url(route), NAME, SHA)
    assert server.ranges == ranges
    assert hub.sha256_file(path) == SHA
    assert _leftovers(isolated_cache) == [NAME]


def test_complete_partial_is_verified_without_a_body(server: _Server, isolated_cache: Path) -> None:
    # Killed between the last byte and the rename: the server answers 416 (bytes */size), nothing is re-sent.
    _stage(isolated_cache, PARTIAL, PAYLOAD)
    assert hub.ensure_file(server.url("files"), NAME, SHA).read_bytes() == PAYLOAD
    assert server.ranges == [f"bytes={len(PAYLOAD)}-"]


@pytest.mark.parametrize("kept", [b"x" * 5000, PAYLOAD + b"more"], ids=["wrong-bytes", "too-long"])
def test_partial_that_is_not_a_prefix_of_the_file_is_replaced(
    server: _Server, isolated_cache: Path, kept: bytes
) -> None:
    # Another version of the file, or damaged: the digest of the resumed file fails, so it is fetched again whole.
    _stage(isolated_cache, PARTIAL, kept)
    assert hub.ensure_file(server.url("files"), NAME, SHA).read_bytes() == PAYLOAD
    assert server.ranges == [f"bytes={len(kept)}-", None]
    assert _leftovers(isolated_cache) == [NAME]


def test_file_sent_whole_after_a_range_request_is_not_fetched_twice(
    server: _Server, isolated_cache: Path
) -> None:
    # The server ignored the Range request and sent a file that fails the digest: that is the answer, no retry.
    _stage(isolated_cache, PARTIAL, PAYLOAD[:5000])
    wrong = "f" * 64 if not SHA.startswith("f") else "e" * 64
    with pytest.raises(ChecksumError, match="Nothing was saved"):
        hub.ensure_file(server.url("norange"), NAME, wrong)
    assert server.ranges == ["bytes=5000-"]
    assert _leftovers(isolated_cache) == []


def test_partial_is_not_resumed_without_a_digest_to_check_it(server: _Server, isolated_cache: Path) -> None:
    _stage(isolated_cache, PARTIAL, b"x" * 5000)
    assert hub.download(server.url("files"), NAME, None).read_bytes() == PAYLOAD
    assert server.ranges == [None]


def test_partial_is_overwritten_by_a_local_mirror(
    mirror_dir: Path, isolated_cache: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    _stage(isolated_cache, PARTIAL, b"x" * 5000)
    monkeypatch.setenv(hub.MIRROR_ENV, str(mirror_dir))
    assert hub.ensure_file("http://127.0.0.1:9/x", NAME, SHA).read_bytes() == PAYLOAD
    assert _leftovers(isolated_cache) == [NAME]


def test_orphaned_partials_of_other_files_are_removed(server: _Server, isolated_cache: Path) -> None:
    fcntl = pytest.importorskip("fcntl")
    old = 2 * hub.STALE_PARTIAL_AGE_S
    orphan = _stage(isolated_cache, ".other-1.pth.partial", b"no process holds it", age_s=old)
    held = _stage(isolated_cache, ".other-2.pth.partial", b"its download is stalled", age_s=old)
    recent = _stage(isolated_cache, ".other-3.pth.partial", b"killed a minute ago: may be resumed soon")
    legacy = _stage(isolated_cache, f".{NAME}.k3j2h1ab.partial", b"random name of older vggnets", age_s=old)
    by_torch = _stage(isolated_cache, f"{NAME}.0123abcd.partial", b"torch.hub's, not ours", age_s=old)
    fd = os.open(isolated_cache / ".other-2.pth.lock", os.O_RDWR | os.O_CREAT)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)  # another process is downloading other-2.pth
        hub.download(server.url("files"), NAME, SHA)
    finally:
        os.close(fd)
    assert not orphan.exists() and not legacy.exists()
    assert held.exists() and recent.exists() and by_torch.exists()
    assert _leftovers(isolated_cache) == sorted(
        [NAME, held.name, recent.name, by_torch.name, ".other-2.pth.lock"]
    )


# --- two downloads of the same file ---


def test_second_download_waits_for_the_lock_then_uses_the_file(
    server: _Server, isolated_cache: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    fcntl = pytest.importorskip("fcntl")
    waiting = threading.Event()
    monkeypatch.setattr(hub._Job, "waiting", lambda self: waiting.set())
    isolated_cache.mkdir(parents=True)
    fd = os.open(isolated_cache / LOCK, os.O_RDWR | os.O_CREAT)
    fcntl.flock(fd, fcntl.LOCK_EX)  # another process is downloading NAME
    outcome: list[object] = []

    def second() -> None:
        try:
            outcome.append(hub.ensure_file(server.url("files"), NAME, SHA))
        except BaseException as exc:
            outcome.append(exc)

    thread = threading.Thread(target=second)
    thread.start()
    try:
        assert waiting.wait(60), "the second download did not wait for the lock"
        (isolated_cache / NAME).write_bytes(PAYLOAD)  # the first one finishes: its file is in place
    finally:
        os.unlink(isolated_cache / LOCK)
        os.close(fd)
        thread.join(60)
    assert outcome == [isolated_cache / NAME]
    assert server.hits == []  # it found the file instead of downloading it again
    assert _leftovers(isolated_cache) == [NAME]


@pytest.mark.parametrize("fetch", ["ensure_file", "download"])
def test_concurrent_downloads_of_same_file(server: _Server, isolated_cache: Path, fetch: str) -> None:
    results: list[Path] = []
    errors: list[BaseException] = []

    def run() -> None:
        try:
            results.append(getattr(hub, fetch)(server.url("paced"), NAME, SHA))
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=run) for _ in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    assert errors == []
    assert results == [isolated_cache / NAME] * 2
    # ensure_file: the second finds the first one's file; download (--force): the second downloads again, after
    assert len(server.hits) == (1 if fetch == "ensure_file" else 2)
    assert hub.sha256_file(isolated_cache / NAME) == SHA
    assert _leftovers(isolated_cache) == [NAME]


# --- mirror ---


def test_mirror_http_base_url(
    server: _Server, isolated_cache: Path, monkeypatch, closed_port_url: str
) -> None:
    base = f"http://127.0.0.1:{server.server_address[1]}/files/"  # trailing slash is fine
    monkeypatch.setenv(hub.MIRROR_ENV, base)
    path = hub.download(closed_port_url, NAME, SHA)  # the official URL is unreachable: the mirror is used
    assert path.read_bytes() == PAYLOAD
    assert server.hits == [f"/files/{NAME}"]


def test_mirror_http_missing_file(
    server: _Server, isolated_cache: Path, monkeypatch, closed_port_url
) -> None:
    monkeypatch.setenv(hub.MIRROR_ENV, f"http://127.0.0.1:{server.server_address[1]}/404")
    with pytest.raises(DownloadError) as info:
        hub.download(closed_port_url, NAME, SHA)
    message = str(info.value)
    assert "404" in message and server.url("404") in message
    _assert_actionable(message, closed_port_url, isolated_cache / NAME)  # still says where the original lives


def test_mirror_url_scheme_in_capitals(
    server: _Server, isolated_cache: Path, monkeypatch, closed_port_url
) -> None:
    monkeypatch.setenv(hub.MIRROR_ENV, f"HTTP://127.0.0.1:{server.server_address[1]}/files")
    assert hub.download(closed_port_url, NAME, SHA).read_bytes() == PAYLOAD


@pytest.mark.parametrize("mirror", ["ftp://127.0.0.1/x", "s3://bucket/models/", "SFTP://host/dir"])
def test_mirror_with_unsupported_scheme(
    isolated_cache: Path, monkeypatch: pytest.MonkeyPatch, closed_port_url: str, mirror: str
) -> None:
    monkeypatch.setenv(hub.MIRROR_ENV, mirror)
    with pytest.raises(DownloadError) as info:
        hub.download(closed_port_url, NAME, SHA)
    message = str(info.value)
    scheme = mirror.split(":")[0].lower()
    assert f"{hub.MIRROR_ENV} is set to {mirror!r}, but {scheme}:// URLs are not supported" in message
    for form in ("http://", "https://", "file://", "a directory", "unset it", closed_port_url):
        assert form in message
    assert "does not exist" not in message and "\n" not in message
    assert _leftovers(isolated_cache) == []  # refused before anything was created


def test_unsupported_url_scheme(isolated_cache: Path) -> None:
    url = f"ftp://127.0.0.1/models/{NAME}"
    with pytest.raises(DownloadError, match=r"Cannot download ftp://.*ftp:// URLs are not supported"):
        hub.download(url, NAME, SHA)
    assert _leftovers(isolated_cache) == []


@pytest.fixture
def mirror_dir(tmp_path: Path) -> Path:
    folder = tmp_path / "mirror dir"  # a space, to exercise file:// quoting
    folder.mkdir()
    (folder / NAME).write_bytes(PAYLOAD)
    return folder


@pytest.mark.parametrize("form", ["directory", "file-url"])
def test_mirror_local(
    mirror_dir: Path, isolated_cache: Path, monkeypatch, closed_port_url, form: str
) -> None:
    monkeypatch.setenv(hub.MIRROR_ENV, str(mirror_dir) if form == "directory" else mirror_dir.as_uri())
    path = hub.download(closed_port_url, NAME, SHA)
    assert path == isolated_cache / NAME and path.read_bytes() == PAYLOAD
    assert _leftovers(isolated_cache) == [NAME]
    assert (mirror_dir / NAME).exists()  # copied, not moved


@pytest.mark.parametrize("form", ["directory", "file-url"])
def test_mirror_local_missing_file(
    tmp_path: Path, isolated_cache: Path, monkeypatch, closed_port_url, form
) -> None:
    empty = tmp_path / "empty-mirror"
    empty.mkdir()
    monkeypatch.setenv(hub.MIRROR_ENV, str(empty) if form == "directory" else empty.as_uri())
    with pytest.raises(DownloadError) as info:
        hub.download(closed_port_url, NAME, SHA)
    message = str(info.value)
    assert str(empty / NAME) in message and "not in the weights mirror" in message
    _assert_actionable(message, closed_port_url, isolated_cache / NAME)
    assert _leftovers(isolated_cache) == []


def test_mirror_with_wrong_file_is_checksum_error(
    mirror_dir: Path, isolated_cache: Path, monkeypatch
) -> None:
    (mirror_dir / NAME).write_bytes(PAYLOAD[:-1] + bytes([PAYLOAD[-1] ^ 0xFF]))
    monkeypatch.setenv(hub.MIRROR_ENV, str(mirror_dir))
    with pytest.raises(ChecksumError, match="mismatch"):
        hub.download("http://127.0.0.1:9/x", NAME, SHA)
    assert _leftovers(isolated_cache) == []


# --- progress output ---


class _FakeTTY(io.StringIO):
    def isatty(self) -> bool:
        return True


def test_no_output_when_stderr_is_not_a_terminal(server: _Server, capfd: pytest.CaptureFixture[str]) -> None:
    hub.download(server.url("files"), NAME, SHA)
    captured = capfd.readouterr()
    assert captured.err == "" and captured.out == ""


@pytest.mark.parametrize(
    ("progress", "quiet", "drawn"), [(True, False, True), (False, False, False), (True, True, False)]
)
def test_progress_bar_on_terminal(
    server: _Server, monkeypatch, progress: bool, quiet: bool, drawn: bool
) -> None:
    fake = _FakeTTY()
    monkeypatch.setattr(sys, "stderr", fake)
    hub.download(server.url("files"), NAME, SHA, progress=progress, quiet=quiet)
    assert (NAME in fake.getvalue()) is drawn


def test_downloaded_file_loads(server: _Server) -> None:
    path = hub.ensure_file(server.url("files"), NAME, SHA)
    _assert_same_tensors(checkpoint.load_state_dict_file(path), _state_dict())

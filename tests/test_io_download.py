"""Tests for vggnets.io.download: downloads against a local HTTP server (no internet), the cache, mirrors."""

from __future__ import annotations

import hashlib
import http.server
import io
import os
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
        self.active = 0
        self.max_active = 0
        self.lock = threading.Lock()
        self.release = threading.Event()  # set at teardown to end stalled handlers

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
            self.server.active += 1
            self.server.max_active = max(self.server.max_active, self.server.active)
        try:
            self._respond(route, self.server.files.get(name))
        except OSError:  # the client went away (killed, timed out)
            pass
        finally:
            with self.server.lock:
                self.server.active -= 1

    def _headers(self, length: int) -> None:
        self.send_response(200)
        self.send_header("Content-Type", "application/octet-stream")
        self.send_header("Content-Length", str(length))
        self.end_headers()

    def _respond(self, route: str, body: bytes | None) -> None:
        if body is None or route == "404":
            self.send_error(404, "Not Found")
        elif route == "403":
            self.send_error(403, "Forbidden")
        elif route == "files":
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
        elif route in ("slow", "paced"):  # slow: ~4 s for the file; paced: ~0.4 s
            step, pause = (4096, 0.05) if route == "slow" else (16384, 0.02)
            self._headers(len(body))
            for start in range(0, len(body), step):
                if self.server.release.is_set():
                    return
                self.wfile.write(body[start : start + step])
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


def _leftovers(folder: Path) -> list[str]:
    return sorted(p.name for p in folder.iterdir()) if folder.exists() else []


def _assert_actionable(message: str, url: str, final: Path) -> None:
    """A download error names the URL, the cache path, and says how to fix it by hand."""
    assert url in message
    assert str(final) in message
    assert "internet access" in message and hub.MIRROR_ENV in message
    assert "\n" not in message


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
    isolated_cache.mkdir(parents=True)
    (isolated_cache / NAME).write_bytes(b"stale")
    assert hub.download(server.url("files"), NAME, SHA).read_bytes() == PAYLOAD


# --- download: failures leave nothing behind ---


def test_checksum_mismatch(server: _Server, isolated_cache: Path) -> None:
    wrong = "f" * 64 if not SHA.startswith("f") else "e" * 64
    url = server.url("files")
    with pytest.raises(ChecksumError) as info:
        hub.download(url, NAME, wrong)
    message = str(info.value)
    _assert_actionable(message, url, isolated_cache / NAME)
    assert wrong in message and SHA in message
    assert _leftovers(isolated_cache) == []


def test_truncated_transfer(server: _Server, isolated_cache: Path) -> None:
    url = server.url("truncated")
    with pytest.raises(DownloadError) as info:
        hub.download(url, NAME, SHA)
    message = str(info.value)
    assert "truncated" in message and f"{len(PAYLOAD):,}" in message
    _assert_actionable(message, url, isolated_cache / NAME)
    assert _leftovers(isolated_cache) == []


def test_truncated_transfer_detected_without_digest(server: _Server, isolated_cache: Path) -> None:
    with pytest.raises(DownloadError, match="truncated"):
        hub.download(server.url("truncated"), NAME, None)
    assert _leftovers(isolated_cache) == []


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


@pytest.mark.parametrize("route", ["stall-headers", "stall-body"])
def test_stalled_server_times_out(
    server: _Server, isolated_cache: Path, monkeypatch: pytest.MonkeyPatch, route: str
) -> None:
    monkeypatch.setenv(hub.TIMEOUT_ENV, "1")
    url = server.url(route)
    start = time.monotonic()
    with pytest.raises(DownloadError) as info:
        hub.download(url, NAME, SHA)
    assert time.monotonic() - start < 8
    message = str(info.value)
    assert "timed out" in message and hub.TIMEOUT_ENV in message
    _assert_actionable(message, url, isolated_cache / NAME)
    assert _leftovers(isolated_cache) == []


def test_invalid_timeout_setting(
    server: _Server, isolated_cache: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv(hub.TIMEOUT_ENV, "soon")
    with pytest.raises(DownloadError, match=hub.TIMEOUT_ENV):
        hub.download(server.url("files"), NAME, SHA)
    assert server.hits == []
    assert _leftovers(isolated_cache) == []


def test_keyboard_interrupt_mid_transfer_removes_temp(
    server: _Server, isolated_cache: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    class InterruptingBar:
        def update(self, n: int) -> None:
            assert any(p.stat().st_size > 0 for p in isolated_cache.glob("*.partial"))  # data was written
            raise KeyboardInterrupt

        def close(self) -> None:
            pass

    monkeypatch.setattr(hub, "_progress_bar", lambda total, desc: InterruptingBar())
    with pytest.raises(KeyboardInterrupt):
        hub.download(server.url("files"), NAME, SHA)
    assert _leftovers(isolated_cache) == []


def test_killed_download_leaves_no_file_and_stale_partial_is_cleaned(
    server: _Server, isolated_cache: Path
) -> None:
    code = (
        "import sys; from vggnets.io.download import download; "
        "download(sys.argv[1], sys.argv[2], None, progress=False)"
    )
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(SRC), os.environ.get("PYTHONPATH", "")])}
    proc = subprocess.Popen(
        [sys.executable, "-c", code, server.url("slow"), NAME],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )
    try:
        deadline = time.monotonic() + 60
        while not any(p.stat().st_size > 0 for p in isolated_cache.glob(f".{NAME}.*.partial")):
            assert proc.poll() is None, proc.stderr.read().decode() if proc.stderr else ""
            assert time.monotonic() < deadline, "the download never started"
            time.sleep(0.02)
        proc.send_signal(signal.SIGKILL)
        proc.wait(10)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait(10)
        if proc.stderr:
            proc.stderr.close()
    assert proc.returncode == -signal.SIGKILL
    assert not (isolated_cache / NAME).exists()
    [partial] = isolated_cache.glob(f".{NAME}.*.partial")
    assert 0 < partial.stat().st_size < len(PAYLOAD)

    # Pretend the killed process died over an hour ago: the next download removes its leftover.
    old = time.time() - 2 * 3600
    os.utime(partial, (old, old))
    path = hub.download(server.url("files"), NAME, SHA)
    assert path.read_bytes() == PAYLOAD
    assert _leftovers(isolated_cache) == [NAME]


def test_recent_partial_of_another_download_is_left_alone(server: _Server, isolated_cache: Path) -> None:
    isolated_cache.mkdir(parents=True)
    other = isolated_cache / f".{NAME}.inprogress.partial"
    other.write_bytes(b"another process is still writing this")
    unrelated_old = isolated_cache / ".other.pth.x.partial"
    unrelated_old.write_bytes(b"not ours")
    old = time.time() - 2 * 3600
    os.utime(unrelated_old, (old, old))
    hub.download(server.url("files"), NAME, SHA)
    assert other.exists() and unrelated_old.exists()


def test_concurrent_downloads_of_same_file(server: _Server, isolated_cache: Path) -> None:
    results: list[Path] = []
    errors: list[BaseException] = []

    def run() -> None:
        try:
            results.append(hub.download(server.url("paced"), NAME, SHA))
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=run) for _ in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(30)
    assert errors == []
    assert results == [isolated_cache / NAME] * 2
    assert server.max_active == 2  # the transfers really overlapped
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

"""End-to-end tests of ``vggnets download``: --force, --verify advice, resumed downloads, mirror and error wording.

Every test runs ``vggnets.cli.main`` in-process against an isolated $TORCH_HOME, with a width-1/8 vgg11 file standing
in for vgg11's published weights (its digest pinned); the network is a local HTTP server on 127.0.0.1.
"""

from __future__ import annotations

import contextlib
import hashlib
import http.server
import re
import shutil
import socket
import threading
import warnings
from collections.abc import Iterator
from pathlib import Path

import pytest

from vggnets.cli import main
from vggnets.models import weights as vweights

EXAMPLES = Path(__file__).resolve().parents[1] / "examples" / "images"
VGG11_FILE = "vgg11-8a719046.pth"  # the official cache name of vgg11's DEFAULT weights
VGG11_LEGACY = "vgg11-bbd30ac9.pth"  # its name before 2021, still used when cached
MEMBER = "VGG11_Weights.IMAGENET1K_V1"


def cli(capsys: pytest.CaptureFixture[str], *argv: object) -> tuple[int, str, str]:
    """Run ``vggnets ARGV`` in-process: (exit code, stdout, stderr)."""
    code = main([str(a) for a in argv])
    out, err = capsys.readouterr()
    assert "Traceback" not in err
    return code, out, err


def sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


@pytest.fixture
def cache(isolated_torch_home: Path) -> Path:
    return isolated_torch_home / "hub" / "checkpoints"


@pytest.fixture
def weights(small_vgg11_file: Path, monkeypatch: pytest.MonkeyPatch) -> bytes:
    """The bytes that stand for vgg11's published file (its full SHA-256 pinned for this test)."""
    data = small_vgg11_file.read_bytes()
    monkeypatch.setitem(vweights.FILE_SHA256, VGG11_FILE, sha256(data))
    return data


@pytest.fixture
def mirror(tmp_path: Path, small_vgg11_file: Path, weights: bytes, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A mirror directory that holds the stand-in vgg11 file."""
    folder = tmp_path / "mirror"
    folder.mkdir()
    shutil.copyfile(small_vgg11_file, folder / VGG11_FILE)
    monkeypatch.setenv("VGGNETS_WEIGHTS_MIRROR", str(folder))
    return folder


def put(folder: Path, name: str, data: bytes) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    (folder / name).write_bytes(data)
    return folder / name


# --- a mirror server that serves byte ranges ---


class _Server(http.server.ThreadingHTTPServer):
    daemon_threads = True

    def __init__(self, files: dict[str, bytes]) -> None:
        super().__init__(("127.0.0.1", 0), _Handler)
        self.files = files
        self.requests: list[tuple[str, str | None]] = []  # (path, Range header)

    @property
    def base(self) -> str:
        return f"http://127.0.0.1:{self.server_address[1]}/models/"


class _Handler(http.server.BaseHTTPRequestHandler):
    server: _Server

    def log_message(self, format: str, *args: object) -> None:
        pass

    def do_GET(self) -> None:
        self.server.requests.append((self.path, self.headers.get("Range")))
        body = self.server.files.get(self.path.rpartition("/")[2])
        if body is None:
            self.send_error(404, "Not Found")
            return
        match = re.fullmatch(r"bytes=(\d+)-", self.headers.get("Range") or "")
        start = int(match.group(1)) if match and int(match.group(1)) < len(body) else 0
        self.send_response(206 if start else 200)
        self.send_header("Content-Length", str(len(body) - start))
        if start:
            self.send_header("Content-Range", f"bytes {start}-{len(body) - 1}/{len(body)}")
        self.end_headers()
        self.wfile.write(body[start:])


@contextlib.contextmanager
def serving(files: dict[str, bytes], monkeypatch: pytest.MonkeyPatch) -> Iterator[_Server]:
    """A mirror server on 127.0.0.1 holding ``files``, set as VGGNETS_WEIGHTS_MIRROR while the ``with`` lasts."""
    srv = _Server(files)
    thread = threading.Thread(target=srv.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
    thread.start()
    monkeypatch.setenv("VGGNETS_WEIGHTS_MIRROR", srv.base)
    try:
        yield srv
    finally:
        srv.shutdown()
        srv.server_close()
        thread.join(5)


@pytest.fixture
def server(weights: bytes, monkeypatch: pytest.MonkeyPatch) -> Iterator[_Server]:
    with serving({VGG11_FILE: weights}, monkeypatch) as srv:
        yield srv


@pytest.fixture
def closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


# --- --verify says what to do ---


def test_verify_mismatch_says_how_to_replace_the_file(cache: Path, weights: bytes, capsys) -> None:
    bad = put(cache, VGG11_FILE, b"copied by hand, and not the weights")
    code, out, err = cli(capsys, "download", "vgg11", "--verify")
    assert code == 1 and out.endswith("MISMATCH\n")
    assert err.count("\n") == 1 and "Checksum mismatch" in err
    assert f"Delete {bad}" in err
    assert (
        f"`vggnets download {MEMBER} --force`" in err
        and "replaced only once the new download verifies" in err
    )


def test_verify_mismatch_of_a_legacy_file_names_the_file_force_fetches(cache: Path, capsys) -> None:
    bad = put(cache, VGG11_LEGACY, b"not the weights either")
    code, _, err = cli(capsys, "download", "vgg11", "--verify")
    assert code == 1
    assert f"Delete {bad}" in err and f"--force` to download {VGG11_FILE} now" in err


# --- --force ---


def test_force_replaces_a_bad_cached_file(cache: Path, mirror: Path, weights: bytes, capsys) -> None:
    target = put(cache, VGG11_FILE, b"a bad copy")
    code, out, err = cli(capsys, "download", "vgg11", "--force", "--verify")
    assert (code, err) == (0, "")
    assert out == f"{MEMBER}  {target}  sha256 {sha256(weights)}  OK\n"
    assert target.read_bytes() == weights
    assert sorted(p.name for p in cache.iterdir()) == [VGG11_FILE]  # no partial or lock file left


def test_force_without_a_cached_file_downloads_it(cache: Path, mirror: Path, weights: bytes, capsys) -> None:
    code, out, _ = cli(capsys, "download", "vgg11", "--force")
    assert code == 0 and out == f"{MEMBER}  {cache / VGG11_FILE}\n"
    assert (cache / VGG11_FILE).read_bytes() == weights


def test_without_force_a_cached_file_is_kept(cache: Path, mirror: Path, capsys) -> None:
    target = put(cache, VGG11_FILE, b"a bad copy")
    assert cli(capsys, "download", "vgg11")[0] == 0
    assert (
        target.read_bytes() == b"a bad copy"
    )  # trusted, as documented; --verify finds it, --force replaces it


def test_force_keeps_the_cached_file_when_the_download_fails(
    cache: Path, mirror: Path, small_vgg11_file: Path, capsys
) -> None:
    old = put(cache, VGG11_FILE, b"the file that was there")
    (mirror / VGG11_FILE).unlink()
    code, out, err = cli(capsys, "download", "vgg11", "--force")
    assert code == 2 and out == ""
    assert "is not in the weights mirror" in err
    assert old.read_bytes() == b"the file that was there"

    (mirror / VGG11_FILE).write_bytes(small_vgg11_file.read_bytes()[:-10] + b"0123456789")
    code, out, err = cli(capsys, "download", "vgg11", "--force")
    assert code == 2 and out == ""
    assert "Checksum mismatch" in err and f"{old} was left as it was" in err
    assert old.read_bytes() == b"the file that was there"
    assert sorted(p.name for p in cache.iterdir()) == [VGG11_FILE]


# --- resuming ---


def test_download_resumes_a_partial_left_by_a_killed_download(
    cache: Path, server: _Server, weights: bytes, capsys
) -> None:
    put(cache, f".{VGG11_FILE}.partial", weights[:10000])  # what `kill -9` of an earlier download leaves
    put(cache, f".{VGG11_FILE}.lock", b"")
    code, out, err = cli(capsys, "download", "vgg11", "--verify")
    assert (code, err) == (0, "")
    assert out.endswith(f"sha256 {sha256(weights)}  OK\n")
    assert server.requests == [(f"/models/{VGG11_FILE}", "bytes=10000-")]
    assert sorted(p.name for p in cache.iterdir()) == [VGG11_FILE]


# --- error wording ---


@pytest.mark.parametrize("mirror_url", ["ftp://127.0.0.1/x", "s3://bucket/vgg/"])
def test_mirror_with_an_unsupported_scheme(mirror_url: str, cache: Path, monkeypatch, capsys) -> None:
    monkeypatch.setenv("VGGNETS_WEIGHTS_MIRROR", mirror_url)
    code, out, err = cli(capsys, "download", "vgg11")
    assert code == 2 and out == ""
    scheme = mirror_url.split(":")[0]
    assert err.startswith(
        f"vggnets download: error: VGGNETS_WEIGHTS_MIRROR is set to {mirror_url!r}, but {scheme}://"
    )
    assert "http:// or https:// URL, a file:// URL, or a directory" in err
    assert "does not exist" not in err and err.count("\n") == 1
    assert not cache.exists()


@pytest.mark.parametrize("command", ["download", "classify"])
def test_download_errors_speak_command_line(command: str, closed_port: int, monkeypatch, capsys) -> None:
    monkeypatch.setenv("VGGNETS_WEIGHTS_MIRROR", f"http://127.0.0.1:{closed_port}/models/")
    argv = (
        ["download", "vgg11"]
        if command == "download"
        else ["classify", EXAMPLES / "coffee_cup.jpg", "--model", "vgg11"]
    )
    code, out, err = cli(capsys, *argv)
    assert code == 2 and out == ""
    assert "refused" in err and err.count("\n") == 1
    assert "--weights FILE" in err
    assert "weights='" not in err and 'weights="' not in err


def test_help_documents_force(capsys) -> None:
    code, out, _ = cli(capsys, "download", "--help")
    assert code == 0
    assert "--force" in out and "resumed" in out


# --- the LPIPS linear layers ---


@pytest.fixture
def lpips_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> bytes:
    """A stand-in for the published LPIPS v0.1 file, served by a mirror server with its digest pinned."""
    import dataclasses

    import torch

    from vggnets.features import lpips

    path = tmp_path / "lin.pth"
    torch.save(
        {f"lin{i}.model.1.weight": torch.rand(1, c, 1, 1) for i, c in enumerate((64, 128, 256, 512, 512))},
        path,
    )
    data = path.read_bytes()
    published = lpips.LINEAR_WEIGHTS["0.1"]
    monkeypatch.setitem(lpips.LINEAR_WEIGHTS, "0.1", dataclasses.replace(published, sha256=sha256(data)))
    with serving({published.file_name: data}, monkeypatch):
        yield data


def test_download_lpips_fetches_and_verifies_the_linear_layers(
    cache: Path, lpips_file: bytes, capsys
) -> None:
    from vggnets.features.lpips import LINEAR_WEIGHTS

    name = LINEAR_WEIGHTS["0.1"].file_name
    code, out, err = cli(capsys, "download", "lpips", "--verify")
    assert (code, err) == (0, "")
    assert out == f"lpips-v0.1  {cache / name}  sha256 {sha256(lpips_file)}  OK\n"
    assert (cache / name).read_bytes() == lpips_file
    with warnings.catch_warnings():  # the installed lpips package's real file differs from this stand-in
        warnings.simplefilter("ignore")
        assert LINEAR_WEIGHTS["0.1"].get_state_dict(progress=False)  # what `vggnets lpips` then reads offline
    put(cache, name, b"damaged")
    code, out, err = cli(capsys, "download", "LPIPS-v0.1", "--verify")
    assert code == 1 and out.endswith("MISMATCH\n") and "`vggnets download lpips-v0.1 --force`" in err


def test_download_unknown_name_mentions_lpips(isolated_torch_home: Path, capsys) -> None:
    code, _, err = cli(capsys, "download", "lpipz")
    assert code == 2 and "lpips" in err and err.count("\n") == 1


@pytest.mark.parametrize("force", [False, True])
def test_a_failed_lpips_download_names_the_linear_weights_option(
    force, closed_port, monkeypatch, capsys
) -> None:
    monkeypatch.setenv("VGGNETS_WEIGHTS_MIRROR", f"http://127.0.0.1:{closed_port}/models/")
    code, out, err = cli(capsys, "download", "lpips", *(["--force"] if force else []))
    assert code == 2 and out == "" and err.count("\n") == 1 and "refused" in err
    assert "--linear-weights FILE (linear_weights=FILE in Python)" in err and "--weights FILE" not in err

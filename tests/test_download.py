"""Tests of metalearn_course.data.download: atomic downloads and safe zip extraction.

No internet is needed: downloads come from a throw-away HTTP server on 127.0.0.1.
"""

from __future__ import annotations

import functools
import hashlib
import http.server
import os
import socket
import stat
import threading
import zipfile
from pathlib import Path

import pytest

from metalearn_course.data import download
from metalearn_course.data.download import (
    ChecksumError,
    DownloadError,
    UnsafeArchiveError,
    atomic_write,
    data_dir,
    download_url,
    extract_zip,
)


class _Handler(http.server.SimpleHTTPRequestHandler):
    """Serves a folder, plus /truncated: a response that promises 1000 bytes and sends 10."""

    def do_GET(self) -> None:
        if self.path == "/truncated":
            self.send_response(200)
            self.send_header("Content-Length", "1000")
            self.end_headers()
            self.wfile.write(b"x" * 10)
            return
        super().do_GET()

    def log_message(self, *args: object) -> None:  # keep the test output clean
        pass


@pytest.fixture(autouse=True)
def _no_proxy(monkeypatch: pytest.MonkeyPatch) -> None:
    # A proxy configured on the machine must not intercept requests to 127.0.0.1.
    monkeypatch.setenv("no_proxy", "*")
    monkeypatch.setenv("NO_PROXY", "*")


@pytest.fixture
def server(tmp_path: Path):
    """(folder, base URL): whatever is put into folder is served at base URL."""
    folder = tmp_path / "served"
    folder.mkdir()
    httpd = http.server.ThreadingHTTPServer(
        ("127.0.0.1", 0), functools.partial(_Handler, directory=str(folder))
    )
    thread = threading.Thread(target=httpd.serve_forever, args=(0.05,), daemon=True)
    thread.start()
    yield folder, f"http://127.0.0.1:{httpd.server_address[1]}"
    httpd.shutdown()
    httpd.server_close()
    thread.join()


def closed_port_url() -> str:
    """A URL on a local port where nothing listens, so connecting is refused."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    return f"http://127.0.0.1:{port}/file.zip"


def md5(data: bytes) -> str:
    return hashlib.md5(data, usedforsecurity=False).hexdigest()


# --- data_dir ----------------------------------------------------------------------------------


def test_data_dir_precedence(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.delenv("METALEARN_DATA", raising=False)
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    monkeypatch.delenv("XDG_CACHE_HOME", raising=False)
    assert data_dir() == tmp_path / "home" / ".cache" / "metalearn_course"
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    assert data_dir() == tmp_path / "xdg" / "metalearn_course"
    monkeypatch.setenv("METALEARN_DATA", str(tmp_path / "env"))
    assert data_dir() == tmp_path / "env"
    assert data_dir(tmp_path / "arg") == tmp_path / "arg"


# --- downloads ---------------------------------------------------------------------------------


def test_download_success_with_progress(server, tmp_path: Path, capsys) -> None:
    folder, url = server
    payload = os.urandom(300_000)
    (folder / "data.bin").write_bytes(payload)
    dest = tmp_path / "out" / "data.bin"
    assert download_url(f"{url}/data.bin", dest, md5=md5(payload)) == dest
    assert dest.read_bytes() == payload
    assert os.listdir(dest.parent) == ["data.bin"]  # no temporary file left behind
    bar = capsys.readouterr().err
    assert "data.bin" in bar and "100%" in bar


def test_download_md5_mismatch_leaves_nothing(server, tmp_path: Path) -> None:
    folder, url = server
    (folder / "data.bin").write_bytes(b"not what you expected")
    out = tmp_path / "out"
    with pytest.raises(ChecksumError, match=r"expected 0{32}"):
        download_url(f"{url}/data.bin", out / "data.bin", md5="0" * 32, progress=False)
    assert os.listdir(out) == []  # neither the file nor its temporary


def test_download_connection_refused(tmp_path: Path) -> None:
    with pytest.raises(DownloadError, match=r"could not download .*refused"):
        download_url(closed_port_url(), tmp_path / "file.zip", progress=False)
    assert os.listdir(tmp_path) == []


def test_download_http_error(server, tmp_path: Path) -> None:
    _, url = server
    out = tmp_path / "out"
    with pytest.raises(DownloadError, match="HTTP 404"):
        download_url(f"{url}/missing.zip", out / "missing.zip", progress=False)
    assert not out.exists()


def test_download_broken_off_leaves_nothing(server, tmp_path: Path) -> None:
    _, url = server
    out = tmp_path / "out"
    with pytest.raises(DownloadError, match="after 10 "):
        download_url(f"{url}/truncated", out / "truncated", progress=False)
    assert os.listdir(out) == []


def test_download_never_overwrites(server, tmp_path: Path) -> None:
    folder, url = server
    (folder / "data.bin").write_bytes(b"server")
    dest = tmp_path / "data.bin"
    dest.write_bytes(b"the user's own file")
    with pytest.raises(FileExistsError, match="left untouched"):
        download_url(f"{url}/data.bin", dest, md5=md5(b"server"), progress=False)
    with pytest.raises(FileExistsError):
        download_url(f"{url}/data.bin", dest, progress=False)
    assert dest.read_bytes() == b"the user's own file"
    # A file that already has the expected md5 is simply kept: no second download.
    assert download_url(closed_port_url(), dest, md5=md5(b"the user's own file")) == dest


def test_atomic_write_cleans_up_on_interrupt(tmp_path: Path) -> None:
    target = tmp_path / "file.bin"
    target.write_bytes(b"old")
    with pytest.raises(KeyboardInterrupt), atomic_write(target) as f:
        f.write(b"half of the new")
        raise KeyboardInterrupt
    assert os.listdir(tmp_path) == ["file.bin"]
    assert target.read_bytes() == b"old"


def test_download_interrupted_leaves_nothing(server, tmp_path, monkeypatch) -> None:
    folder, url = server
    (folder / "data.bin").write_bytes(os.urandom(300_000))

    class Interrupt(download.tqdm):  # Ctrl-C arrives during the transfer
        def update(self, n: float | None = 1) -> bool | None:
            raise KeyboardInterrupt

    monkeypatch.setattr(download, "tqdm", Interrupt)
    out = tmp_path / "out"
    with pytest.raises(KeyboardInterrupt):
        download_url(f"{url}/data.bin", out / "data.bin")
    assert os.listdir(out) == []


# --- zip extraction ----------------------------------------------------------------------------


def make_zip(path: Path, members: list[tuple[str | zipfile.ZipInfo, bytes]]) -> Path:
    with zipfile.ZipFile(path, "w") as zf:
        for name, data in members:
            zf.writestr(name, data)
    return path


def symlink_member(name: str, target: str) -> zipfile.ZipInfo:
    info = zipfile.ZipInfo(name)
    info.external_attr = (stat.S_IFLNK | 0o777) << 16  # how Info-ZIP stores a symbolic link
    return info


@pytest.mark.parametrize(
    "bad",
    [
        ("pkg/../../evil", b"owned"),
        ("/etc/x", b"owned"),
        ("C:\\windows\\x", b"owned"),
        (symlink_member("pkg/link", "/etc/passwd"), b"/etc/passwd"),
    ],
    ids=["dotdot", "absolute", "drive", "symlink"],
)
def test_unsafe_zip_is_rejected_and_nothing_extracted(tmp_path: Path, bad) -> None:
    archive = make_zip(tmp_path / "bad.zip", [("pkg/fine.txt", b"fine"), bad])
    out = tmp_path / "out"
    out.mkdir()
    with pytest.raises(UnsafeArchiveError, match="refusing to extract"):
        extract_zip(archive, out / "pkg")
    assert os.listdir(out) == []  # not even a temporary folder
    assert not (tmp_path / "evil").exists()


def test_extract_zip(tmp_path: Path) -> None:
    archive = make_zip(
        tmp_path / "good.zip",
        [("top/", b""), ("top/a/one.txt", b"1"), ("top/two.txt", b"2"), ("__MACOSX/junk", b"")],
    )
    extract_zip(archive, tmp_path / "all")
    assert (tmp_path / "all" / "top" / "a" / "one.txt").read_bytes() == b"1"
    assert (tmp_path / "all" / "__MACOSX" / "junk").exists()
    extract_zip(archive, tmp_path / "only_top", subdir="top")  # drops the top-level folder
    assert (tmp_path / "only_top" / "a" / "one.txt").read_bytes() == b"1"
    assert (tmp_path / "only_top" / "two.txt").read_bytes() == b"2"
    assert sorted(os.listdir(tmp_path)) == ["all", "good.zip", "only_top"]
    with pytest.raises(ValueError, match="no folder 'nope'"):
        extract_zip(archive, tmp_path / "nope", subdir="nope")


def test_extract_never_overwrites(tmp_path: Path) -> None:
    archive = make_zip(tmp_path / "good.zip", [("a.txt", b"from the zip")])
    target = tmp_path / "mine"
    target.mkdir()
    (target / "a.txt").write_bytes(b"the user's")
    with pytest.raises(FileExistsError, match="already exists"):
        extract_zip(archive, target)
    assert (target / "a.txt").read_bytes() == b"the user's"


def test_failed_extraction_removes_its_temporary_folder(tmp_path: Path) -> None:
    archive = make_zip(tmp_path / "corrupt.zip", [("a.txt", b"a" * 1000), ("b.txt", b"b" * 1000)])
    data = bytearray(archive.read_bytes())
    at = data.rindex(b"b" * 1000)  # stored uncompressed: damage b.txt's bytes in place
    data[at] = ord("X")
    archive.write_bytes(data)
    out = tmp_path / "out"
    out.mkdir()
    with pytest.raises(zipfile.BadZipFile, match="CRC"):
        extract_zip(archive, out / "target")
    assert os.listdir(out) == []


def test_interrupted_extraction_removes_its_temporary_folder(tmp_path, monkeypatch) -> None:
    archive = make_zip(tmp_path / "good.zip", [("a.txt", b"a"), ("b.txt", b"b")])
    calls = []

    def copy_then_interrupt(src, dst) -> None:
        calls.append(src)
        if len(calls) == 2:
            raise KeyboardInterrupt
        dst.write(src.read())

    monkeypatch.setattr(download.shutil, "copyfileobj", copy_then_interrupt)
    out = tmp_path / "out"
    out.mkdir()
    with pytest.raises(KeyboardInterrupt):
        extract_zip(archive, out / "target")
    assert os.listdir(out) == []

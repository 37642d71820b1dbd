"""Fetch a file from a URL and unpack a zip, without ever leaving a half-written result behind.

Datasets in this course arrive as a URL plus a checksum. Three things can go wrong on the way,
and each has a rule here:

* The transfer stops half-way (network error, Ctrl-C, full disk). We write into a temporary
  file beside the target and give it its real name with a single ``os.replace`` only once it is
  complete and checked, so the target is either absent or whole, never truncated.
* The bytes are not the expected ones. The md5 is computed while streaming and compared before
  the file gets its real name.
* The archive is hostile. A zip member called ``../../.bashrc``, ``/etc/passwd`` or a symbolic
  link can make a naive extractor write outside the target folder ("zip slip"). Every member is
  checked before the first byte is extracted.

We never overwrite a file or folder that already exists: it may belong to the user.
"""

from __future__ import annotations

import hashlib
import http.client
import os
import shutil
import stat
import tempfile
import urllib.error
import urllib.request
import zipfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import BinaryIO

from tqdm import tqdm

DATA_ENV = "METALEARN_DATA"
CHUNK = 1 << 16  # 64 KiB per read: big enough to be fast, small enough for a smooth progress bar
# tempfile makes private entries (mode 0600 / 0700). What we move into place should get the mode
# a plain open() or mkdir() would give: what the umask allows. (Reading the umask means setting it.)
_UMASK = os.umask(0o022)
os.umask(_UMASK)


class DownloadError(RuntimeError):
    """The server could not be reached, or the transfer broke off."""


class ChecksumError(RuntimeError):
    """The downloaded bytes do not have the expected md5."""


class UnsafeArchiveError(ValueError):
    """A zip member would land outside the target folder, or is not a plain file or folder."""


def data_dir(root: str | os.PathLike[str] | None = None) -> Path:
    """The folder where datasets are downloaded and cached (it is not created here).

    The first of these that is set wins: the ``root`` argument, the environment variable
    ``METALEARN_DATA``, ``$XDG_CACHE_HOME/metalearn_course``, ``~/.cache/metalearn_course``.
    """
    if root is not None:
        return Path(root).expanduser()
    if env := os.environ.get(DATA_ENV):
        return Path(env).expanduser()
    # The XDG spec says a relative XDG_CACHE_HOME is invalid and must be ignored.
    xdg = os.environ.get("XDG_CACHE_HOME", "")
    cache = Path(xdg) if os.path.isabs(xdg) else Path("~/.cache").expanduser()
    return cache / "metalearn_course"


@contextmanager
def atomic_write(path: str | os.PathLike[str]) -> Iterator[BinaryIO]:
    """Yield a temporary file beside ``path``; when the block ends, move it to ``path``.

    If the block raises anything (KeyboardInterrupt included), the temporary file is deleted
    and ``path`` is left as it was.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    # Same folder as the target: os.replace is atomic only within one file system.
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".part")
    try:
        with os.fdopen(fd, "wb") as f:
            yield f
        os.chmod(tmp, 0o666 & ~_UMASK)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def md5sum(path: str | os.PathLike[str]) -> str:
    """The md5 of a file, as 32 hex digits (an integrity check, not a security measure)."""
    digest = hashlib.md5(usedforsecurity=False)
    with open(path, "rb") as f:
        while chunk := f.read(1 << 20):
            digest.update(chunk)
    return digest.hexdigest()


def download_url(
    url: str,
    dest: str | os.PathLike[str],
    *,
    md5: str | None = None,
    timeout: float = 30.0,
    progress: bool = True,
) -> Path:
    """Download ``url`` to the file ``dest``, showing a progress bar, and return ``dest``.

    With ``md5`` set, the bytes must have that md5 or nothing is saved (``ChecksumError``).
    An existing ``dest`` is never overwritten: if it already has the expected md5 it is
    returned as is, otherwise ``FileExistsError`` is raised. Network failures raise
    ``DownloadError``.
    """
    dest = Path(dest)
    if dest.exists():
        if md5 is not None and md5sum(dest) == md5:
            return dest
        why = "and its md5 is not the expected one" if md5 is not None else "already"
        raise FileExistsError(
            f"{dest} exists {why}; it is left untouched. Move or delete it to download {url}."
        )
    try:
        response = urllib.request.urlopen(url, timeout=timeout)
    except urllib.error.HTTPError as e:  # the server answered, with an error
        raise DownloadError(f"could not download {url}: HTTP {e.code} {e.reason}") from e
    except (urllib.error.URLError, OSError, http.client.HTTPException) as e:  # no answer
        raise DownloadError(f"could not download {url}: {getattr(e, 'reason', e)}") from e

    size = int(response.headers.get("Content-Length") or 0) or None
    digest, received = hashlib.md5(usedforsecurity=False), 0
    bar = tqdm(
        total=size, unit="B", unit_scale=True, unit_divisor=1024, desc=dest.name,
        disable=not progress,
    )  # fmt: skip
    with response, bar, atomic_write(dest) as f:
        while True:
            try:
                chunk = response.read(CHUNK)
            except (OSError, http.client.HTTPException) as e:
                raise DownloadError(f"download of {url} broke off after {received} B: {e}") from e
            if not chunk:
                break
            f.write(chunk)
            digest.update(chunk)
            received += len(chunk)
            bar.update(len(chunk))
        if size is not None and received != size:
            raise DownloadError(f"download of {url} stopped after {received} of {size} B")
        if md5 is not None and digest.hexdigest() != md5:
            raise ChecksumError(
                f"the file at {url} has md5 {digest.hexdigest()}, expected {md5}; "
                "nothing was saved. The file on the server changed, or the transfer was corrupted."
            )
    return dest


def extract_zip(
    archive: str | os.PathLike[str],
    target: str | os.PathLike[str],
    *,
    subdir: str | None = None,
) -> Path:
    """Extract the zip ``archive`` into the new folder ``target`` and return ``target``.

    With ``subdir``, only the members inside that top-level folder of the archive are
    extracted, and that folder level is dropped: ``<subdir>/a/b.png`` becomes
    ``<target>/a/b.png``. All members are checked first; one unsafe member (absolute path,
    ``..``, symbolic link, device...) rejects the whole archive with ``UnsafeArchiveError``.
    The files are extracted into a temporary folder beside ``target``, which is renamed to
    ``target`` only at the end, so ``target`` is either complete or absent. An existing
    ``target`` is never touched (``FileExistsError``).
    """
    archive, target = Path(archive), Path(target)
    if target.exists():
        raise FileExistsError(f"{target} already exists; delete it to extract {archive} again.")
    with zipfile.ZipFile(archive) as zf:
        members = _safe_members(zf, archive, subdir)
        target.parent.mkdir(parents=True, exist_ok=True)
        tmp = Path(tempfile.mkdtemp(dir=target.parent, prefix=f".{target.name}.", suffix=".part"))
        made: set[str] = set()  # folders created so far: one mkdir each, not one per file
        try:
            for info, parts in members:
                out = os.path.join(tmp, *parts)
                folder = out if info.is_dir() else os.path.dirname(out)
                if folder not in made:
                    os.makedirs(folder, exist_ok=True)
                    made.add(folder)
                if not info.is_dir():
                    with zf.open(info) as src, open(out, "wb") as dst:
                        shutil.copyfileobj(src, dst)  # zf.open checks the CRC as it reads
            if target.exists():  # someone else created it while we were extracting
                raise FileExistsError(f"{target} appeared during extraction; it is left untouched.")
            os.chmod(tmp, 0o777 & ~_UMASK)
            os.rename(tmp, target)
        except BaseException:
            shutil.rmtree(tmp, ignore_errors=True)
            raise
    return target


def _safe_members(
    zf: zipfile.ZipFile, archive: Path, subdir: str | None
) -> list[tuple[zipfile.ZipInfo, list[str]]]:
    """Check every member of ``zf``; return those to extract, with their path in the target."""
    selected = []
    for info in zf.infolist():
        name = info.filename
        problem = None
        # Zips made on Windows may use backslashes: check both separators.
        parts = name.replace("\\", "/").split("/")
        kind = stat.S_IFMT(info.external_attr >> 16)  # Unix file type; 0 if not recorded
        if name.startswith(("/", "\\")) or (len(name) > 1 and name[1] == ":"):
            problem = "is an absolute path"
        elif ".." in parts:
            problem = "contains '..' and would land outside the target folder"
        elif kind == stat.S_IFLNK:
            problem = "is a symbolic link"
        elif kind not in (0, stat.S_IFREG, stat.S_IFDIR):
            problem = "is neither a regular file nor a folder"
        if problem:
            raise UnsafeArchiveError(f"refusing to extract {archive}: member {name!r} {problem}.")
        parts = [p for p in parts if p not in ("", ".")]
        if subdir is not None:
            if parts[:1] != [subdir]:
                continue
            parts = parts[1:]
        if parts:
            selected.append((info, parts))
    if subdir is not None and not selected:
        raise ValueError(f"{archive} has no folder {subdir!r}; check the subdir argument.")
    return selected

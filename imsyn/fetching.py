"""Downloading, hash checking and staging, shared by the two registries of fetched files.

:mod:`imsyn.weights` (pretrained networks) and :mod:`imsyn.course_data` (the course's
images) obtain files the same way: each file has a sha256 and an ordered list of sources;
a file is downloaded (or copied from a local copy) into a staging folder *inside* the
destination cache, its sha256 is checked before anything reads it, and only then is it
renamed into place (``os.replace`` on one filesystem: a file is there whole or not at all).
A failed fetch removes the staging folder and leaves the cache as it was.

A staging folder is held by its fetch (an OS lock on ``.fetch-*/.lock``); one left by a
fetch that was killed (SIGKILL, power loss) is removed by the next fetch into the same
cache, while the staging folders of concurrent fetches are left alone.
"""

from __future__ import annotations

import contextlib
import hashlib
import http.client
import os
import shutil
import tempfile
import urllib.error
import urllib.request
from pathlib import Path

from imsyn.errors import OutputError

#: seconds a download may wait for the server (per read)
URL_TIMEOUT_S = 30.0
_BLOCK = 1 << 20


def sha256_of(path: str | os.PathLike) -> str:
    """The sha256 of a file, as 64 hex digits."""
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(_BLOCK), b""):
            h.update(block)
    return h.hexdigest()


def copy_hashed(src: str | os.PathLike, dest: str | os.PathLike) -> str:
    """Copies ``src`` to ``dest`` in one pass and returns the sha256 of the bytes copied."""
    h = hashlib.sha256()
    with open(src, "rb") as fin, open(dest, "wb") as fout:
        for block in iter(lambda: fin.read(_BLOCK), b""):
            h.update(block)
            fout.write(block)
    return h.hexdigest()


def download_url(
    url: str, dest: str | os.PathLike, *, timeout: float | None = None, progress: bool = True
) -> str:
    """Downloads ``url`` into ``dest`` and returns the sha256 of the bytes received.

    Args:
      url: an ``http(s)://`` or ``file://`` URL.
      dest: the file to write (in a staging folder: the caller verifies, then renames).
      timeout: seconds to wait for the server per read (default :data:`URL_TIMEOUT_S`).
      progress: show a progress line in MiB (for large files).

    Raises:
      OSError: the server cannot be reached, answers with an error status, the URL or the
        reply is malformed, or the write fails (``urllib.error.URLError`` is an ``OSError``).
    """
    try:
        return _download(url, Path(dest), timeout=timeout or URL_TIMEOUT_S, progress=progress)
    except http.client.HTTPException as e:  # a malformed URL or reply: as unreachable
        raise OSError(f"{type(e).__name__}: {e}") from None


def _download(url: str, dest: Path, *, timeout: float, progress: bool) -> str:
    from imsyn.progress import Progress

    h = hashlib.sha256()
    with urllib.request.urlopen(url, timeout=timeout) as r, open(dest, "wb") as f:
        total = int(r.headers.get("content-length") or 0)
        bar = Progress(
            total=max(total >> 20, 1),
            desc=f"download {dest.name}",
            unit="MiB",
            enabled=progress,
        )
        done = 0
        for block in iter(lambda: r.read(_BLOCK), b""):
            h.update(block)
            f.write(block)
            done += len(block)
            if done >> 20 > bar.n:
                bar.update((done >> 20) - bar.n)
        bar.close()
        if total and done != total:
            raise OSError(f"truncated download: {done} of {total} bytes")
    return h.hexdigest()


def reason(e: BaseException) -> str:
    """A one-line reason for a failed download or copy (``HTTP Error 404: Not Found``,
    ``[Errno 111] Connection refused``, ...)."""
    if isinstance(e, urllib.error.HTTPError):
        return f"HTTP {e.code} {e.reason}"
    why = getattr(e, "reason", None) or e
    text = str(why).strip().splitlines()
    return text[0] if text else type(e).__name__


#: staging folder -> the fd of its held lock
_STAGED: dict[Path, int] = {}
#: a staging folder without a lock file is an earlier version's (or one being created)
_UNLOCKED_STALE_S = 600.0


def _remove_stale(root: Path) -> None:
    """Removes the ``.fetch-*`` folders in ``root`` that no live fetch holds."""
    import fcntl
    import time

    for old in root.glob(".fetch-*"):
        if old in _STAGED:
            continue
        lock = old / ".lock"
        try:
            fd = os.open(lock, os.O_RDWR | os.O_CLOEXEC)
        except FileNotFoundError:
            try:
                if time.time() - old.stat().st_mtime > _UNLOCKED_STALE_S:
                    shutil.rmtree(old, ignore_errors=True)
            except OSError:
                pass
            continue
        except OSError:
            continue
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            os.close(fd)  # a live fetch holds it
            continue
        shutil.rmtree(old, ignore_errors=True)
        os.close(fd)


def staging_dir(root: str | os.PathLike, what: str) -> Path:
    """A fresh ``.fetch-*`` folder inside ``root`` (created with its parents), held by this
    process until :func:`remove_staging`; staging folders left by killed fetches are
    removed first.

    Staging inside the destination keeps the final rename on one filesystem, so it is
    atomic. The caller removes the folder with :func:`remove_staging` when done.

    Raises:
      OutputError: ``root`` cannot be created or written (``what`` names it in the message).
    """
    import fcntl

    root = Path(root)
    try:
        root.mkdir(parents=True, exist_ok=True)
        _remove_stale(root)
        path = Path(tempfile.mkdtemp(prefix=".fetch-", dir=root))
        fd = os.open(path / ".lock", os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o644)
    except OSError as e:
        raise OutputError(f"{root}: cannot use the {what} ({e.strerror or e})") from None
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError:
        pass  # no flock on this file system: the folder ages out instead
    _STAGED[path] = fd
    return path


def remove_staging(path: str | os.PathLike) -> None:
    """Removes a staging folder and everything in it, and lets go of its lock (never
    raises)."""
    path = Path(path)
    shutil.rmtree(path, ignore_errors=True)
    fd = _STAGED.pop(path, None)
    if fd is not None:
        with contextlib.suppress(OSError):
            os.close(fd)

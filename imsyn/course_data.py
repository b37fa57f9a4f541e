"""The course's images: a registry of files, one hash-checked fetch into the cache.

``python -m imsyn data fetch course|prokudin|poisson|nst|cats`` brings the images the
course's assignments use — Prokudin-Gorskii plates, the Poisson-blending pair and toy
image, style-transfer photos and paintings, the two cat folders — into :func:`data_dir`
(``~/.cache/imsyn/data``; ``$IMSYN_DATA_DIR`` moves it, ``$IMSYN_CACHE_DIR`` moves the
whole cache). Every file is listed in ``imsyn/course_data.json`` with its size, its sha256
and an ordered list of public sources, each pinned to a commit
(``owner/repo@commit:path``, downloaded from ``raw.githubusercontent.com``), so a fetch is
reproducible and the hash makes it safe. ``--from DIR`` imports a local copy laid out like
the data folder instead; ``--mirror URL`` (``$IMSYN_DATA_MIRROR``) replaces the public
sources with one server holding the same layout (``URL/prokudin/small/cathedral.jpg``),
as pip's ``--index-url`` replaces PyPI.

A fetch is all or nothing: every needed file is downloaded (or copied) into a staging
folder inside the data folder and its sha256 checked; only when all of them verified are
they renamed into place, each atomically. A wrong or missing file is one line naming it
(:class:`~imsyn.errors.InputError`), and the data folder is left as it was. Files already
present with the right hash are not fetched again.

Configs name fetched files with the ``@data`` prefix, resolved by :func:`resolve`:
``folder:@data/gan/grumpifyBprocessed`` (a data source spec) or ``data_root = "@data"`` (the
write-up). When such a path is missing, the error says which ``data fetch`` brings it
(:func:`require`).
"""

from __future__ import annotations

import concurrent.futures
import contextlib
import dataclasses
import functools
import json
import os
import sys
import urllib.parse
from importlib import resources
from pathlib import Path

from imsyn.errors import InputError, OutputError
from imsyn.fetching import (
    URL_TIMEOUT_S,
    copy_hashed,
    download_url,
    reason,
    remove_staging,
    sha256_of,
    staging_dir,
)

#: the prefix that stands for :func:`data_dir` in config paths and data specs
PREFIX = "@data"
#: a registry file to use instead of the packaged one (tests, private mirrors)
REGISTRY_ENV = "IMSYN_DATA_REGISTRY"
#: a server holding the data folder's layout, used instead of the registry's sources
MIRROR_ENV = "IMSYN_DATA_MIRROR"
#: the set of every file
ALL = "course"
RAW_URL = "https://raw.githubusercontent.com/{repo}/{commit}/{path}"
WORKERS = 8


@dataclasses.dataclass(frozen=True)
class DataFile:
    """One file of the registry: its path in the data folder, size, sha256 and sources."""

    path: str
    size: int
    sha256: str
    sources: tuple[str, ...]


@dataclasses.dataclass(frozen=True)
class DataSet:
    """A named set of files: those whose path starts with ``prefix`` (``""``: all)."""

    name: str
    prefix: str
    description: str
    licence: str
    used_by: str
    files: tuple[DataFile, ...]

    @property
    def size(self) -> int:
        return sum(f.size for f in self.files)


# --------------------------------------------------------------------------- registry


def registry_path() -> Path:
    """The registry in use: ``$IMSYN_DATA_REGISTRY`` if set, else the packaged one."""
    env = os.environ.get(REGISTRY_ENV)
    if env:
        return Path(env)
    return Path(str(resources.files("imsyn") / "course_data.json"))


@functools.cache
def _load(path: str, mtime_ns: int) -> dict[str, DataSet]:
    try:
        raw = json.loads(Path(path).read_text("utf-8"))
        files = [
            DataFile(rel, int(f["size"]), str(f["sha256"]).lower(), tuple(f["sources"]))
            for rel, f in sorted(raw["files"].items())
        ]
        sets = {}
        for name, meta in raw["sets"].items():
            prefix = meta.get("prefix", "")
            sets[name] = DataSet(
                name=name,
                prefix=prefix,
                description=meta.get("description", ""),
                licence=meta.get("licence", ""),
                used_by=meta.get("used_by", ""),
                files=tuple(f for f in files if f.path.startswith(prefix)),
            )
    except (OSError, ValueError, KeyError, TypeError, AttributeError) as e:
        raise InputError(f"{path}: not a course-data registry ({reason(e)})") from None
    for f in files:
        if len(f.sha256) != 64 or Path(f.path).is_absolute() or ".." in Path(f.path).parts:
            raise InputError(f"{path}: bad entry {f.path!r} (relative path and sha256 needed)")
    return sets


def registry() -> dict[str, DataSet]:
    """Every set of the registry in use, by name (see :func:`registry_path`).

    Raises:
      InputError: the registry file is missing or malformed.
    """
    path = registry_path()
    try:
        mtime = path.stat().st_mtime_ns
    except OSError as e:
        raise InputError(f"{path}: cannot read the course-data registry ({reason(e)})") from None
    return _load(str(path), mtime)


def get(name: str) -> DataSet:
    """The set ``name``.

    Raises:
      InputError: an unknown name (the known ones are listed).
    """
    sets = registry()
    if name not in sets:
        raise InputError(f"unknown data set {name!r}; known: {', '.join(sets)}")
    return sets[name]


def set_for(rel: str) -> str:
    """The smallest set holding the file or folder ``rel`` (a path in the data folder)."""
    rel = rel.strip("/")
    best = None
    for s in registry().values():
        if any(f.path == rel or f.path.startswith(rel + "/") for f in s.files) and (
            best is None or len(s.files) < len(best.files)
        ):
            best = s
    return best.name if best else ALL


# --------------------------------------------------------------------------- locations


def data_dir() -> Path:
    """The data folder (not created): ``$IMSYN_DATA_DIR``, else ``<cache home>/data``
    (``~/.cache/imsyn/data``; :func:`imsyn.runtime.cache_home`)."""
    env = os.environ.get("IMSYN_DATA_DIR")
    if env:
        return Path(env).expanduser()
    from imsyn.runtime import cache_home

    return cache_home() / "data"


def resolve(path: str | os.PathLike) -> Path:
    """``@data`` or ``@data/<rel>`` -> the fetched location; any other path unchanged."""
    text = os.fspath(path)
    if text == PREFIX or text.startswith(PREFIX + "/"):
        return data_dir().joinpath(*[p for p in text[len(PREFIX) :].split("/") if p])
    return Path(text).expanduser()


def fetch_hint(path: str | os.PathLike) -> str | None:
    """For a missing path inside the data folder: which ``data fetch`` command brings it."""
    try:
        rel = Path(path).resolve().relative_to(data_dir().resolve()).as_posix()
    except (ValueError, OSError):
        return None
    name = set_for("" if rel == "." else rel)
    return f"run `python -m imsyn data fetch {name}` (or `... --from DIR` with a local copy)"


def require(path: str | os.PathLike, what: str = "") -> Path:
    """Resolves ``path`` (see :func:`resolve`) and checks that it exists.

    Raises:
      InputError: it does not exist; inside the data folder the message names the
        ``data fetch`` that brings it.
    """
    p = resolve(path)
    if not p.exists():
        hint = fetch_hint(p)
        where = f"{what}: " if what else ""
        if hint:
            raise InputError(f"{where}{p} is not fetched: {hint}")
        raise InputError(f"{where}{p} does not exist")
    return p


# --------------------------------------------------------------------------- state


def _state(root: Path, f: DataFile) -> str:
    """``ok``, ``missing`` or ``damaged`` (present with another size or sha256)."""
    p = root / f.path
    try:
        if not p.is_file():
            return "missing"
        if p.stat().st_size != f.size or sha256_of(p) != f.sha256:
            return "damaged"
    except OSError:
        return "damaged"
    return "ok"


def status(name: str) -> dict:
    """One row of ``data list``: name, status, files, bytes, path, description, licence,
    used_by, and the paths of missing and damaged files."""
    s = get(name)
    root = data_dir()
    states = {f.path: _state(root, f) for f in s.files}
    ok = sum(v == "ok" for v in states.values())
    bad = sorted(k for k, v in states.items() if v == "damaged")
    if ok == len(s.files):
        state = "fetched"
    elif bad:
        state = f"damaged ({len(bad)} file(s); fetch again)"
    elif ok:
        state = f"partial ({ok} of {len(s.files)} files)"
    else:
        state = "missing"
    return {
        "name": name,
        "status": state,
        "files": len(s.files),
        "bytes": s.size,
        "path": str(root / s.prefix) if s.prefix else str(root),
        "description": s.description,
        "licence": s.licence,
        "used_by": s.used_by,
        "missing": sorted(k for k, v in states.items() if v == "missing"),
        "damaged": bad,
    }


def source_url(source: str) -> str:
    """The URL of a registry source: ``owner/repo@commit:path`` -> a raw.githubusercontent.com
    URL pinned to the commit; ``http(s)://`` and ``file://`` URLs as they are."""
    if source.startswith(("http://", "https://", "file://")):
        return source
    head, sep, path = source.partition(":")
    repo, at, commit = head.partition("@")
    if not sep or not at or repo.count("/") != 1 or not commit or not path:
        raise InputError(f"bad course-data source {source!r} (want owner/repo@commit:path)")
    return RAW_URL.format(repo=repo, commit=commit, path=urllib.parse.quote(path))


# --------------------------------------------------------------------------- fetching


@dataclasses.dataclass(frozen=True)
class FetchResult:
    """What :func:`fetch` did: files fetched, files already present, the data folder."""

    fetched: int
    present: int
    root: Path


def _obtain(f: DataFile, dest: Path, *, from_dir, mirror) -> str | None:
    """Brings one file into ``dest`` (verified); returns None, or a one-line error."""
    if from_dir is not None:
        src = Path(from_dir) / f.path
        if not src.is_file():
            return f"{src}: missing (expected {f.path}, sha256 {f.sha256[:16]}…)"
        try:
            got = copy_hashed(src, dest)
        except OSError as e:
            return f"{src}: cannot read ({reason(e)})"
        if got != f.sha256:
            return f"{src}: sha256 {got} does not match the registry's {f.sha256} for {f.path}"
        return None
    if mirror:
        urls = [mirror.rstrip("/") + "/" + urllib.parse.quote(f.path)]
    else:
        urls = [source_url(s) for s in f.sources]
    errors = []
    for url in urls:
        try:
            got = download_url(url, dest, timeout=URL_TIMEOUT_S, progress=False)
            if got != f.sha256:
                raise InputError(f"sha256 {got[:16]}… is not the expected {f.sha256[:16]}…")
            return None
        except (InputError, OSError, ValueError) as e:
            errors.append(f"{url}: {reason(e)}")
    return f"{f.path}: no source worked: " + "; ".join(errors)


def fetch(
    names: list[str] | str,
    *,
    from_dir: str | os.PathLike | None = None,
    mirror: str | None = None,
    force: bool = False,
    log=None,
) -> FetchResult:
    """Fetches the sets ``names`` into :func:`data_dir`, verifying every file's sha256.

    Args:
      names: set names (``course`` is every file), or one name.
      from_dir: a local copy laid out like the data folder, used instead of the sources.
      mirror: a URL holding the data folder's layout, used instead of the registry's
        sources (default ``$IMSYN_DATA_MIRROR``; ignored with ``from_dir``).
      force: fetch files again even when present with the right hash.
      log: ``log(str)`` for progress messages (default: stderr).

    Returns:
      A :class:`FetchResult`.

    Raises:
      InputError: an unknown set, a missing ``from_dir`` or file in it, a file whose sha256
        differs, or a file that no source delivered (one line naming it; the data folder
        is left as it was).
      OutputError: the data folder cannot be written.
    """
    from imsyn.progress import Progress

    names = [names] if isinstance(names, str) else list(names)
    log = log or (lambda msg: print(f"imsyn data: {msg}", file=sys.stderr))
    files: dict[str, DataFile] = {}
    for name in names:
        for f in get(name).files:
            files[f.path] = f
    if from_dir is not None and not Path(from_dir).is_dir():
        raise InputError(f"--from {from_dir}: no such folder")
    mirror = mirror if mirror is not None else os.environ.get(MIRROR_ENV) or None
    root = data_dir()
    todo = [f for f in files.values() if force or _state(root, f) != "ok"]
    present = len(files) - len(todo)
    if from_dir is None and not mirror:  # a file with no public origin comes only from --from
        for f in (f for f in todo if not f.sources):
            log(f"{f.path}: no public source; import a copy with --from DIR")
        todo = [f for f in todo if f.sources]
    if not todo:
        return FetchResult(0, present, root)
    where = f"--from {from_dir}" if from_dir is not None else (mirror or "the public sources")
    log(f"{len(todo)} file(s), {sum(f.size for f in todo) / 2**20:.1f} MiB from {where}")
    existed = root.exists()
    stage = staging_dir(root, "data folder")
    try:
        staged = {f.path: stage / f"{i:05d}" for i, f in enumerate(todo)}
        errors: dict[str, str] = {}
        bar = Progress(len(todo), desc=f"fetch {'+'.join(names)}", unit="file")
        with concurrent.futures.ThreadPoolExecutor(1 if from_dir else WORKERS) as pool:
            jobs = {
                pool.submit(_obtain, f, staged[f.path], from_dir=from_dir, mirror=mirror): f
                for f in todo
            }
            for job in concurrent.futures.as_completed(jobs):
                if job.cancelled():
                    continue
                err = job.result()
                if err:
                    errors[jobs[job].path] = err
                    if from_dir is not None:
                        pool.shutdown(cancel_futures=True)
                bar.update(1)
        bar.close()
        if errors:
            first = errors[min(errors)]
            more = f" (and {len(errors) - 1} more file(s))" if len(errors) > 1 else ""
            raise InputError(f"{first}{more}; nothing was written to {root}")
        for f in todo:  # every file verified: rename each into place
            dest = root / f.path
            try:
                dest.parent.mkdir(parents=True, exist_ok=True)
                os.replace(staged[f.path], dest)
            except OSError as e:
                raise OutputError(f"{dest}: cannot write ({e.strerror or e})") from None
    finally:
        remove_staging(stage)
        if not existed:
            with contextlib.suppress(OSError):
                root.rmdir()  # only when empty: a failed first fetch leaves no folder
    return FetchResult(len(todo), present, root)

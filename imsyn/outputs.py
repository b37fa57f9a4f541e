"""Where results may go: the rules that keep a user's files safe, in one place.

* :func:`check_outputs` — an output that resolves to one of the inputs, or lies
  inside a folder being read (a generator or training workdir, a data folder), is
  refused before any work.
* :func:`claim_workdir` — a run's workdir is held by one process at a time (an
  OS file lock, released when the process dies, so a killed run's lock is simply
  taken over), and ``train.py`` (and the write-up) writes only into an empty folder
  or its own earlier workdir.

Ownership is proven by a marker only imsyn writes, ``.imsyn-run.json`` (the task and a
run id, written when a run first claims an empty folder), never by familiar file names:
a user's folder holding ``config.json``, ``report.html``, ``index.html`` or
``results.json`` is refused, nothing changed. Workdirs written before the marker existed
are recognised by what no user folder holds: a ``checkpoints/<step>/meta`` record with
imsyn's architecture record and state digest (a run), or the write-up's ``state/``
records next to its ``config.json``; such a workdir gets its marker when it is resumed.

Groups of files that belong together (a result and its JSON sidecar) are written
with :func:`imsyn.image.write_together`: all or nothing.
"""

from __future__ import annotations

import contextlib
import errno
import json
import os
import uuid
from collections.abc import Iterable, Iterator
from pathlib import Path

from imsyn.errors import OutputError

#: the lock file a run holds in its workdir
LOCK_NAME = ".imsyn.lock"
#: the marker that makes a folder imsyn's own: ``{"imsyn": "workdir", "task", "run_id"}``
MARKER_NAME = ".imsyn-run.json"
_OURS = (LOCK_NAME, MARKER_NAME)


# --------------------------------------------------------------------------- outputs vs inputs


def _resolve(p: str | os.PathLike) -> Path:
    return Path(os.path.abspath(os.path.expanduser(os.fspath(p)))).resolve()


def _same_file(a: Path, b: Path) -> bool:
    try:
        return os.path.samefile(a, b)  # also hard links and case-insensitive file systems
    except OSError:
        return False


def _inside(path: Path, folder: Path) -> bool:
    return path == folder or folder in path.parents


def check_outputs(
    outputs: Iterable[str | os.PathLike],
    *,
    inputs: Iterable[str | os.PathLike] = (),
    read_dirs: Iterable[str | os.PathLike] = (),
) -> None:
    """Refuses outputs that would overwrite an input or write into a folder being read.

    Call it before any work, with every path the command will write.

    Args:
      outputs: files (or folders) the command will write.
      inputs: files the command reads.
      read_dirs: folders the command reads (a generator workdir, a data folder): nothing
        may be written inside them.

    Raises:
      OutputError: one line naming the output and the input it would destroy.
    """
    ins = [(Path(p), _resolve(p)) for p in inputs]
    dirs = [(Path(p), _resolve(p)) for p in read_dirs]
    for out in outputs:
        o = _resolve(out)
        for given, r in ins:
            if o == r or _same_file(o, r):
                raise OutputError(f"{out}: output would overwrite the input {given}")
        for given, d in dirs:
            if _inside(o, d) or _same_file(o, d):
                raise OutputError(
                    f"{out}: output would be written inside {given}, which is being read; "
                    "choose another output path"
                )


# --------------------------------------------------------------------------- workdirs


def read_marker(folder: str | os.PathLike) -> dict | None:
    """The ownership marker of ``folder`` (``{"imsyn": "workdir", "task", "run_id", ...}``),
    or None when it has none (or one that is not imsyn's)."""
    try:
        m = json.loads((Path(folder) / MARKER_NAME).read_text())
    except (OSError, ValueError):
        return None
    if (
        not isinstance(m, dict)
        or m.get("imsyn") != "workdir"
        or not isinstance(m.get("run_id"), str)
    ):
        return None
    return m


def _legacy_evidence(p: Path) -> str | None:
    """Why ``p`` is a workdir written before the marker existed, or None.

    A run: ``checkpoints/<step>/meta/metadata`` is imsyn's checkpoint record (a JSON
    object with ``arch`` and the state's ``digest``). The write-up: ``config.json`` says
    ``"task": "writeup"`` and ``state/`` holds its experiment records."""
    ck = p / "checkpoints"
    try:
        steps = [e for e in ck.iterdir() if e.name.isdigit()] if ck.is_dir() else []
    except OSError:
        steps = []
    for step in steps:
        try:
            meta = json.loads((step / "meta" / "metadata").read_text())
        except (OSError, ValueError):
            continue
        if isinstance(meta, dict) and isinstance(meta.get("arch"), dict) and "digest" in meta:
            return "checkpoint"
    if _saved_task(p) == "writeup":
        try:
            records = [json.loads(f.read_text()) for f in (p / "state").glob("*.json")]
        except (OSError, ValueError):
            records = []
        if records and all(isinstance(r, dict) and "key" in r for r in records):
            return "writeup"
    return None


def is_workdir(folder: str | os.PathLike) -> bool:
    """Whether ``folder`` is a workdir imsyn wrote: it holds imsyn's marker (or, written by
    an earlier version, imsyn's checkpoint or write-up records). File names alone never
    count."""
    f = Path(folder)
    return read_marker(f) is not None or _legacy_evidence(f) is not None


_HELD: dict[Path, list] = {}  # resolved workdir -> [lock fd, depth]


def _first_missing(p: Path) -> tuple[Path, list[Path]]:
    """The deepest existing ancestor of ``p`` and the folders below it that mkdir creates."""
    missing = []
    probe = p
    while not probe.exists() and probe != probe.parent:
        missing.append(probe)
        probe = probe.parent
    return probe, missing[::-1]


def check_folder(workdir: str | os.PathLike) -> None:
    """Raises OutputError if ``workdir`` is a file or lies under one (it may not exist yet)."""
    p = Path(workdir)
    probe, _ = _first_missing(p)
    if probe == p and not p.is_dir():
        raise OutputError(f"workdir {p} is a file, not a directory")
    if probe != p and not probe.is_dir():
        raise OutputError(f"workdir {p}: {probe} is not a directory")


def _check_train_target(p: Path, task: str | None) -> dict | None:
    """Checks that ``p`` may be written by a run of ``task``; returns the marker to write
    (None: the folder holds its marker already)."""
    check_folder(p)
    probe, _ = _first_missing(p)
    fresh = {"imsyn": "workdir", "task": task, "run_id": uuid.uuid4().hex}
    if probe == p:
        try:
            others = [e.name for e in p.iterdir() if e.name not in _OURS]
        except OSError as e:
            raise OutputError(f"workdir {p}: cannot read it ({e.strerror or e})") from None
        marker = read_marker(p)
        if marker is not None:
            saved = marker.get("task")
        elif not others:
            saved = None
        elif _legacy_evidence(p) is not None:  # an earlier version's workdir: adopted
            saved = _saved_task(p)
            fresh["adopted"] = True
        else:
            shown = ", ".join(sorted(others)[:3]) + (", ..." if len(others) > 3 else "")
            raise OutputError(
                f"workdir {p} holds other files ({shown}) and no {MARKER_NAME} of an imsyn "
                "run; a run writes only into an empty folder or its own earlier workdir: "
                "use a new --workdir"
            )
        if task is not None and saved is not None and saved != task:
            raise OutputError(
                f"workdir {p} holds a {saved!r} run, not {task!r}: use a new --workdir"
            )
        if marker is not None:
            fresh = None
    if not os.access(probe, os.W_OK | os.X_OK):
        raise OutputError(f"workdir {p} is not writable")
    return fresh


def run_config(workdir: str | os.PathLike) -> dict | None:
    """The run's own ``config.json`` (what ``train.py`` resolved), or None when missing or
    not a JSON object. Metadata of a run (its dtype, ...) comes from here, never from the
    command that reads the run."""
    try:
        saved = json.loads((Path(workdir) / "config.json").read_text())
    except (OSError, ValueError):
        return None
    return saved if isinstance(saved, dict) else None


def run_dtype(workdir: str | os.PathLike, default: str = "float32") -> str:
    """The compute dtype the run in ``workdir`` was trained with (``default`` for a run
    whose config names none)."""
    saved = run_config(workdir) or {}
    dtype = saved.get("dtype", default)
    return dtype if isinstance(dtype, str) else default


def _saved_task(p: Path) -> str | None:
    try:
        saved = json.loads((p / "config.json").read_text())
    except (OSError, ValueError):
        return None
    return saved.get("task") if isinstance(saved, dict) else None


def _lock(p: Path) -> int:
    """Opens and flocks ``p/LOCK_NAME``; returns the fd. OutputError if another run holds it."""
    import fcntl

    lock = p / LOCK_NAME
    while True:
        try:
            fd = os.open(lock, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o644)
        except OSError as e:
            raise OutputError(f"workdir {p}: cannot create {lock} ({e.strerror or e})") from None
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError as e:
            os.close(fd)
            if e.errno in (errno.EWOULDBLOCK, errno.EAGAIN, errno.EACCES):
                raise OutputError(
                    f"workdir {p} is in use by another run (it holds {lock}); wait for it to "
                    "finish or use another --workdir"
                ) from None
            return -1  # no flock on this file system (some network mounts): run unlocked
        try:  # the previous holder may have removed the file before we locked it: retry
            if os.fstat(fd).st_ino == os.stat(lock).st_ino:
                return fd
        except OSError:
            pass
        os.close(fd)


@contextlib.contextmanager
def claim_workdir(
    workdir: str | os.PathLike, *, mode: str = "train", task: str | None = None
) -> Iterator[Path]:
    """Holds ``workdir`` for this run: one process at a time; ``train`` only into its own.

    ``mode="train"``: the workdir must be an empty (or new) folder or a workdir imsyn
    wrote (its :data:`MARKER_NAME`, of the same ``task``; or an earlier version's run,
    :func:`is_workdir`); it is created if needed and gets its marker. ``mode="eval"``: it
    must be a folder if it exists (a missing one is left to the caller's "train first").
    A lock file in the workdir is held until the block ends; the OS releases it when a
    process dies, so a killed run's lock is taken over. Re-entrant within a process. If
    the run wrote nothing, what the claim created (the lock file, the marker, the
    folders) is removed again.

    Raises:
      OutputError: a file, a folder of other files, another task's run, not writable,
        cannot be created, or in use by another run (one line).
    """
    if mode not in ("train", "eval"):
        raise ValueError(f"mode must be 'train' or 'eval', got {mode!r}")
    p = Path(workdir)
    key = _resolve(p)
    if key in _HELD:
        _HELD[key][1] += 1
        try:
            yield p
        finally:
            _HELD[key][1] -= 1
        return
    created: list[Path] = []
    if mode == "eval":
        check_folder(p)
        if not p.is_dir():
            yield p
            return
    else:
        marker = _check_train_target(p, task)
        _, created = _first_missing(p)
        try:
            p.mkdir(parents=True, exist_ok=True)
        except OSError as e:
            raise OutputError(f"workdir {p}: cannot create it ({e.strerror or e})") from None
    try:
        fd = _lock(p)
    except BaseException:
        _remove_empty(created)
        raise
    wrote_marker = False
    if mode == "train" and marker is not None:
        from imsyn.image import write_json

        try:
            write_json(p / MARKER_NAME, marker)
            wrote_marker = True
        except OSError as e:
            if fd >= 0:
                os.close(fd)
            raise OutputError(
                f"workdir {p}: cannot write {MARKER_NAME} ({e.strerror or e})"
            ) from None
    _HELD[key] = [fd, 1]
    try:
        yield p
    finally:
        del _HELD[key]
        lock = p / LOCK_NAME
        with contextlib.suppress(OSError):
            left = sorted(e.name for e in p.iterdir())
            if left == [LOCK_NAME] or (wrote_marker and left == sorted(_OURS)):
                # nothing written: leave no trace
                if wrote_marker:
                    (p / MARKER_NAME).unlink()
                lock.unlink()
                _remove_empty(created)
        if fd >= 0:
            os.close(fd)


def _remove_empty(folders: list[Path]) -> None:
    for f in reversed(folders):
        with contextlib.suppress(OSError):
            f.rmdir()


def config_inputs(config) -> list[tuple[str, Path]]:
    """``(field, path)`` of the files and folders a config reads: its string fields that
    name an existing path (a ``kind:path[?options]`` data spec counts by its path; ``@data``
    is the fetched course data, :func:`imsyn.course_data.resolve`)."""
    from imsyn.course_data import resolve

    found = []
    items = config.items() if hasattr(config, "items") else ()
    for name, v in items:
        if not isinstance(v, str) or not v:
            continue
        for cand in (v, v.split(":", 1)[1].split("?", 1)[0] if ":" in v else ""):
            c = resolve(cand) if cand else None
            if c is not None and c.exists():
                found.append((name, c))
                break
    return found


def check_workdir_inputs(workdir: str | os.PathLike, config) -> None:
    """Refuses a workdir that is one of the config's inputs or lies inside a folder it reads
    (the rule of :func:`check_outputs`, with the config field named).

    Raises:
      OutputError: one line naming the field.
    """
    for name, path in config_inputs(config):
        try:
            if path.is_dir():
                check_outputs([workdir], read_dirs=[path])
            else:
                check_outputs([workdir], inputs=[path])
        except OutputError:
            raise OutputError(
                f"workdir {workdir} would be written inside {path}, which config.{name} reads; "
                "use another --workdir"
            ) from None

"""Where results may go: the rules that keep a user's files safe, in one place.

* :func:`check_outputs` — an output that resolves to one of the inputs, or lies
  inside a folder being read (a generator or training workdir, a data folder), is
  refused before any work.
* :func:`claim_workdir` — a run's workdir is held by one process at a time (an
  OS file lock, released when the process dies, so a killed run's lock is simply
  taken over), and ``train.py`` writes only into an empty folder or its own
  earlier workdir.

Groups of files that belong together (a result and its JSON sidecar) are written
with :func:`imsyn.image.write_together`: all or nothing.
"""

from __future__ import annotations

import contextlib
import errno
import json
import os
from collections.abc import Iterable, Iterator
from pathlib import Path

from imsyn.errors import OutputError

#: the lock file a run holds in its workdir
LOCK_NAME = ".imsyn.lock"
#: what a workdir written by imsyn holds (any one of them is enough to recognise it)
WORKDIR_MARKERS = (
    "config.json",
    "checkpoints",
    "metrics.jsonl",
    "report.html",
    "sweep.json",
    "comparison.html",
)


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


def is_workdir(folder: str | os.PathLike) -> bool:
    """Whether ``folder`` looks like a workdir imsyn wrote (or a sweep of such workdirs)."""
    f = Path(folder)
    try:
        entries = [e for e in f.iterdir() if e.name != LOCK_NAME]
    except OSError:
        return False
    if any(e.name in WORKDIR_MARKERS for e in entries):
        return True
    return bool(entries) and all(e.is_dir() and is_workdir(e) for e in entries)


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


def _check_train_target(p: Path, task: str | None) -> None:
    check_folder(p)
    probe, _ = _first_missing(p)
    if probe == p:
        try:
            others = [e.name for e in p.iterdir() if e.name != LOCK_NAME]
        except OSError as e:
            raise OutputError(f"workdir {p}: cannot read it ({e.strerror or e})") from None
        if others and not is_workdir(p):
            shown = ", ".join(sorted(others)[:3]) + (", ..." if len(others) > 3 else "")
            raise OutputError(
                f"workdir {p} holds other files ({shown}); a run writes only into an empty "
                "folder or its own earlier workdir: use a new --workdir"
            )
        saved = _saved_task(p)
        if task is not None and saved is not None and saved != task:
            raise OutputError(
                f"workdir {p} holds a {saved!r} run, not {task!r}: use a new --workdir"
            )
    if not os.access(probe, os.W_OK | os.X_OK):
        raise OutputError(f"workdir {p} is not writable")


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
    wrote (of the same ``task`` when its ``config.json`` names one); it is created if
    needed. ``mode="eval"``: it must be a folder if it exists (a missing one is left to
    the caller's "train first"). A lock file in the workdir is held until the block
    ends; the OS releases it when a process dies, so a killed run's lock is taken over.
    Re-entrant within a process. If the run wrote nothing, what the claim created (the
    lock file, the folders) is removed again.

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
        _check_train_target(p, task)
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
    _HELD[key] = [fd, 1]
    try:
        yield p
    finally:
        del _HELD[key]
        lock = p / LOCK_NAME
        with contextlib.suppress(OSError):
            if [e.name for e in p.iterdir()] == [LOCK_NAME]:  # nothing written: leave no trace
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

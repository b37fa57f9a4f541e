"""Checkpoints of a run: orbax ``CheckpointManager`` under ``workdir/checkpoints``.

Each checkpoint ``checkpoints/<step>/`` holds two items:

* ``state``: the training state pytree (models, optimizer states, ...), saved
  with ``ocp.args.StandardSave`` and restored onto the shardings of a target;
* ``meta``: JSON (``ocp.args.JsonSave``) with the step, the data iterator state
  (grain's own ``get_state()``, a JSON dict; a task's iterator of several grain iterators
  gives a dict of them), the mean-in-progress of the logging window and the architecture
  fields of the run (``arch``), so that a workdir of another architecture is refused
  before anything is overwritten. grain's orbax handler (``grain.checkpoint.CheckpointSave``)
  is not used: it takes one grain iterator, not a task's wrapper of several, and writes one
  file per process named by the process count (docs/training.md, "Running").

Orbax writes a checkpoint into a temporary directory and renames it when it is
complete (then writes the commit marker), and only finalized step directories
are listed, so a process killed in the middle of a save leaves a directory that
is never restored (and is cleaned up by the next run).

Integrity: orbax (0.12) checksums only the index of its zarr3 shards, not the
data, so ``meta`` also holds ``digest``, a SHA-256 of the state's arrays (dtype,
shape and bytes of every leaf) computed when it is saved and checked when it is
restored. A damaged checkpoint (flipped, truncated or emptied data files,
unreadable or missing metadata, a digest that does not match) is skipped with one
line on stderr and the newest intact step is restored instead; in a run that
writes, the damaged step is moved to ``checkpoints.damaged/<step>`` so that the
run can save that step again. A step whose recorded layout (``state/_METADATA``: the
paths and shapes of its arrays) matches the target but whose data cannot be read is
damaged; one whose layout differs belongs to another config (:class:`ConfigError`).

Nothing of orbax's reaches the user's stderr, only the one line that says what happened:
its (absl) error logs of a failed attempt are silenced, and the event loops it creates
for an operation (:func:`_contained`) drop the completions that tensorstore's threads
deliver after a failed operation has closed its loop (by default each is printed as an
"Event loop is closed" traceback, one per write or read still in flight). The writes
that a failed save created but never started, and the metadata reads of a failed restore,
are dropped silently too: Python warns "coroutine ... was never awaited" when the garbage
collector takes them, at any later point of the run (a filter for those two orbax coroutines,
installed when this module loads).
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import json
import logging
import os
import shutil
import sys
import warnings
from pathlib import Path
from typing import Any

import jax
import numpy as np
import orbax.checkpoint as ocp

from imsyn.errors import ConfigError, InputError, OutputError


def state_digest(state: Any) -> str:
    """SHA-256 (hex) of a pytree's arrays: the dtype, shape and bytes of every leaf, in order."""
    h = hashlib.sha256()
    for leaf in jax.tree.leaves(state):
        if isinstance(leaf, jax.Array) and jax.dtypes.issubdtype(leaf.dtype, jax.dtypes.prng_key):
            leaf = jax.random.key_data(leaf)
        if isinstance(leaf, jax.Array) and not leaf.is_fully_addressable:
            leaf = leaf.addressable_data(0)  # replicated state: every copy is the same
        a = np.ascontiguousarray(np.asarray(leaf))
        h.update(f"{a.dtype.str}{a.shape}".encode())
        h.update(a.tobytes())
    return h.hexdigest()


# orbax's per-fragment write of a save that failed before the write started, and its read of
# the array metadata of a restore that failed before the read started (seen on a loaded
# machine); the failure itself is reported by Checkpoints (one line)
warnings.filterwarnings(
    "ignore",
    message=r"coroutine '(async_serialize_from_host\.<locals>\.write_fragment"
    r"|Store\._get_array_metadatas)' was never awaited",
    category=RuntimeWarning,
)


class _Damaged(Exception):
    """A checkpoint step that cannot be restored because its files are damaged."""


# the platform's default policy (named privately from Python 3.14, where the public name warns)
_DefaultPolicy = getattr(asyncio, "_DefaultEventLoopPolicy", None) or asyncio.DefaultEventLoopPolicy


class _ClosedLoopQuiet(_DefaultPolicy._loop_factory):
    """An event loop that drops what other threads schedule on it once it is closed.

    Orbax runs each operation in a fresh loop and closes it when the operation ends; after
    a failure, the reads and writes still in flight complete later on tensorstore's threads,
    whose callbacks schedule the result on the closed loop. Nobody awaits those results,
    and the failures of the tasks that gathered them ("Task exception was never retrieved",
    logged when the garbage collector takes them) are the operation's own, which the
    caller reports: both are dropped; anything else goes to asyncio's default handler.
    """

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.set_exception_handler(_drop_unretrieved)

    def call_soon_threadsafe(self, callback, *args, context=None):
        try:
            return super().call_soon_threadsafe(callback, *args, context=context)
        except RuntimeError:
            if self.is_closed():
                return None
            raise


def _drop_unretrieved(loop, context: dict) -> None:
    error = context.get("exception")
    if isinstance(error, Exception) and context.get("message", "").endswith("never retrieved"):
        return
    loop.default_exception_handler(context)


class _ContainedPolicy(_DefaultPolicy):
    _loop_factory = _ClosedLoopQuiet


@contextlib.contextmanager
def _contained():
    """Runs a checkpoint operation so that nothing of orbax's reaches stderr; the caller reports.

    Silences orbax's (absl) error logs, and has the event loops orbax creates meanwhile
    be :class:`_ClosedLoopQuiet` ones (the previous event loop policy is put back after).
    """
    loggers = [logging.getLogger(n) for n in ("absl", "orbax")]
    levels = [lg.level for lg in loggers]
    for lg in loggers:
        lg.setLevel(logging.CRITICAL + 1)
    with warnings.catch_warnings():  # the policy API is deprecated from Python 3.14
        warnings.simplefilter("ignore", DeprecationWarning)
        policy = asyncio.get_event_loop_policy()
        asyncio.set_event_loop_policy(_ContainedPolicy())
    try:
        yield
    finally:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", DeprecationWarning)
            asyncio.set_event_loop_policy(policy)
        for lg, level in zip(loggers, levels, strict=True):
            lg.setLevel(level)


def _first_line(e: BaseException) -> str:
    text = str(e).strip()
    if not text:
        return type(e).__name__
    line = text.splitlines()[0].split(" See full TensorStore details")[0]
    return line if len(line) <= 200 else line[:197] + "..."


def _recorded_layout(recorded: Any) -> dict[tuple[str, ...], tuple[int, ...] | None] | None:
    """Path -> shape (None: not recorded) of every array in a ``state/_METADATA`` record.

    None when the record is not of the expected form.
    """
    try:
        layout = {}
        for entry in recorded["tree_metadata"].values():
            value = entry.get("value_metadata") or {}
            if value.get("value_type") in (None, "None"):
                continue
            keys = tuple(str(k["key"]) for k in entry["key_metadata"])
            shape = value.get("write_shape")
            layout[keys] = None if shape is None else tuple(int(n) for n in shape)
        return layout
    except (KeyError, TypeError, ValueError, AttributeError):
        return None


def _key_name(key: Any) -> str:
    for attr in ("key", "name", "idx"):  # DictKey / FlattenedIndexKey, GetAttrKey, SequenceKey
        if hasattr(key, attr):
            return str(getattr(key, attr))
    return str(key)


def _same_layout(layout: dict, abstract: Any) -> bool:
    """Whether the arrays of ``abstract`` have the recorded paths (and shapes, where known)."""
    want = {}
    for path, leaf in jax.tree_util.tree_flatten_with_path(abstract)[0]:
        shape = getattr(leaf, "shape", None)
        dtype = getattr(leaf, "dtype", None)
        if dtype is not None and jax.dtypes.issubdtype(dtype, jax.dtypes.prng_key):
            shape = None  # stored as key data, of another shape
        want[tuple(_key_name(k) for k in path)] = None if shape is None else tuple(shape)
    if set(want) != set(layout):
        return False
    return all(layout[k] is None or want[k] is None or layout[k] == want[k] for k in want)


class Checkpoints:
    """Periodic, keep-last-K checkpoints of ``(state, meta)`` in ``directory``.

    Args:
      directory: the ``checkpoints`` folder (created on the first save).
      keep: how many of the newest checkpoints to keep (>= 1).
      read_only: never write or delete (evaluation).
    """

    def __init__(self, directory: str | os.PathLike, *, keep: int = 3, read_only: bool = False):
        self.directory = Path(directory).absolute()
        self._read_only = read_only
        # orbax warns that a read-only manager ignores saving options: silenced
        with _contained():
            options = ocp.CheckpointManagerOptions(
                max_to_keep=keep,
                create=not read_only,
                read_only=read_only,
                # Saves block until committed: the loop donates its state buffers to the
                # next step, and a signal handler must know the checkpoint is on disk.
                enable_async_checkpointing=False,
                cleanup_tmp_directories=not read_only,
            )
            self._mgr = ocp.CheckpointManager(
                self.directory, item_names=("state", "meta"), options=options
            )

    def latest_step(self) -> int | None:
        """The newest complete checkpoint's step, or None."""
        return self._mgr.latest_step()

    def all_steps(self) -> list[int]:
        return list(self._mgr.all_steps())

    def save(self, step: int, state: Any, meta: dict) -> None:
        """Saves ``state`` and JSON ``meta`` (plus the state's ``digest``) as checkpoint ``step``.

        Blocking and atomic.

        Raises:
          OutputError: the checkpoint cannot be written (disk full, ...): one line.
        """
        meta = {**meta, "digest": state_digest(state)}
        try:
            with _contained():
                self._mgr.save(
                    step,
                    args=ocp.args.Composite(
                        state=ocp.args.StandardSave(state), meta=ocp.args.JsonSave(meta)
                    ),
                    force=True,
                )
                self._mgr.wait_until_finished()
        except Exception as e:  # noqa: BLE001 - orbax/tensorstore raise many kinds
            raise OutputError(
                f"{self.directory / str(step)}: cannot write checkpoint ({_first_line(e)})"
            ) from None

    def _read_meta(self, step: int) -> dict:
        try:
            with _contained():
                out = self._mgr.restore(step, args=ocp.args.Composite(meta=ocp.args.JsonRestore()))
        except Exception as e:  # noqa: BLE001
            raise _Damaged(f"its meta item is unreadable ({_first_line(e)})") from None
        meta = out["meta"]
        if not isinstance(meta, dict) or meta.get("step", step) != step:
            raise _Damaged("its meta item is damaged")
        return meta

    def read_meta(self, step: int | None = None) -> dict | None:
        """The ``meta`` item of checkpoint ``step`` (default: the newest readable), or None.

        Raises:
          InputError: ``step`` was given (or every checkpoint is) damaged.
        """
        if step is not None:
            try:
                return self._read_meta(step)
            except _Damaged as e:
                raise InputError(f"checkpoint {step} in {self.directory} is damaged: {e}") from None
        problems = []
        for s in sorted(self.all_steps(), reverse=True):
            try:
                return self._read_meta(s)
            except _Damaged as e:
                problems.append(f"step {s}: {e}")
        if problems:
            raise self._all_damaged(problems)
        return None

    def _all_damaged(self, problems: list[str]) -> InputError:
        return InputError(
            f"every checkpoint in {self.directory} is damaged ({'; '.join(problems)}); "
            "move the checkpoints folder away to start over"
        )

    def _diagnose(self, step: int, error: BaseException, abstract: Any) -> str | None:
        """What is damaged in checkpoint ``step`` (None: intact, of another layout)."""
        root = self.directory / str(step)
        meta_file = root / "state" / "_METADATA"
        if not meta_file.is_file():
            return "state/_METADATA is missing"
        try:
            recorded = json.loads(meta_file.read_text())
        except (OSError, ValueError):
            return "state/_METADATA is truncated or not JSON"
        for f in root.rglob("*"):
            with contextlib.suppress(OSError):
                if f.is_file() and f.stat().st_size == 0:
                    return f"{f.relative_to(root)} is empty"
        layout = _recorded_layout(recorded)
        if layout is None:
            return "state/_METADATA is damaged"
        config_kind = isinstance(error, ValueError | KeyError | TypeError)
        if _same_layout(layout, abstract) or not config_kind:
            return f"its data cannot be read ({_first_line(error)})"
        return None

    def _restore_step(self, step: int, abstract: Any) -> tuple[Any, dict]:
        meta = self._read_meta(step)
        try:
            with _contained():
                out = self._mgr.restore(
                    step,
                    args=ocp.args.Composite(
                        state=ocp.args.StandardRestore(abstract), meta=ocp.args.JsonRestore()
                    ),
                )
        except Exception as e:  # noqa: BLE001 - damage shows as many kinds of error
            damage = self._diagnose(step, e, abstract)
            if damage is not None:
                raise _Damaged(damage) from None
            raise ConfigError(
                f"checkpoint {step} in {self.directory} does not match this config: "
                f"{_first_line(e)}"
            ) from None
        want = meta.get("digest")
        if want is not None and state_digest(out["state"]) != want:
            raise _Damaged("its data do not match the checksum saved with it")
        return out["state"], meta

    def restore(self, target: Any, step: int | None = None) -> tuple[Any, dict]:
        """Restores checkpoint ``step`` (default: the newest intact one) onto ``target``'s layout.

        Without ``step``, a damaged checkpoint is skipped (one line on stderr; in a
        manager that writes it is moved to ``checkpoints.damaged/``) and the next
        older one is tried.

        Returns:
          (state, meta).

        Raises:
          ConfigError: no checkpoint, or its arrays do not match ``target``.
          InputError: ``step`` (or every checkpoint) is damaged.
        """
        steps = sorted(self.all_steps(), reverse=True) if step is None else [step]
        if not steps:
            raise ConfigError(f"no checkpoint in {self.directory}; train first (train.py)")
        abstract = jax.tree.map(ocp.utils.to_shape_dtype_struct, target)
        damaged: list[tuple[int, str]] = []
        for s in steps:
            try:
                result = self._restore_step(s, abstract)
            except _Damaged as e:
                if step is not None:
                    raise InputError(
                        f"checkpoint {s} in {self.directory} is damaged: {e}"
                    ) from None
                damaged.append((s, str(e)))
                continue
            for bad, why in damaged:
                print(
                    f"warning: checkpoint {bad} in {self.directory} is damaged ({why}); "
                    f"restored step {s} instead{self._set_aside(bad)}",
                    file=sys.stderr,
                )
            return result
        raise self._all_damaged([f"step {s}: {why}" for s, why in damaged])

    def _set_aside(self, step: int) -> str:
        """Moves a damaged step out of the way (writing managers only); says where."""
        if self._read_only:
            return ""
        dest = self.directory.parent / f"{self.directory.name}.damaged" / str(step)
        try:
            dest.parent.mkdir(parents=True, exist_ok=True)
            if dest.exists():
                shutil.rmtree(dest)
            os.replace(self.directory / str(step), dest)
            self._mgr.reload()
        except OSError:
            return ""
        return f"; moved to {dest}"

    def close(self) -> None:
        """Waits for orbax's background work and closes the manager (idempotent)."""
        with _contained():
            self._mgr.close()

"""Checkpoints of a run: orbax ``CheckpointManager`` under ``workdir/checkpoints``.

Each checkpoint ``checkpoints/<step>/`` holds two items:

* ``state``: the training state pytree (models, optimizer states, ...), saved
  with ``ocp.args.StandardSave`` and restored onto the shardings of a target;
* ``meta``: JSON (``ocp.args.JsonSave``) with the step, the data iterator state
  and the architecture fields of the run (``arch``), so that a workdir of
  another architecture is refused before anything is overwritten.

Orbax writes a checkpoint into a temporary directory and renames it when it is
complete (then writes the commit marker), and only finalized step directories
are listed, so a process killed in the middle of a save leaves a directory that
is never restored (and is cleaned up by the next run).
"""

from __future__ import annotations

import base64
import logging
import os
from pathlib import Path
from typing import Any

import jax
import orbax.checkpoint as ocp

from imsyn.errors import ConfigError


def encode_data_state(state: Any) -> Any:
    """Makes an iterator state JSON-safe (grain DataLoader states are bytes)."""
    if isinstance(state, bytes):
        return {"__bytes__": base64.b64encode(state).decode("ascii")}
    return state


def decode_data_state(state: Any) -> Any:
    if isinstance(state, dict) and set(state) == {"__bytes__"}:
        return base64.b64decode(state["__bytes__"])
    return state


class Checkpoints:
    """Periodic, keep-last-K checkpoints of ``(state, meta)`` in ``directory``.

    Args:
      directory: the ``checkpoints`` folder (created on the first save).
      keep: how many of the newest checkpoints to keep (>= 1).
      read_only: never write or delete (evaluation).
    """

    def __init__(self, directory: str | os.PathLike, *, keep: int = 3, read_only: bool = False):
        self.directory = Path(directory).absolute()
        absl_log = logging.getLogger("absl")
        level = absl_log.level
        if read_only:  # orbax warns that a read-only manager ignores saving options
            absl_log.setLevel(logging.ERROR)
        try:
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
        finally:
            absl_log.setLevel(level)

    def latest_step(self) -> int | None:
        """The newest complete checkpoint's step, or None."""
        return self._mgr.latest_step()

    def all_steps(self) -> list[int]:
        return list(self._mgr.all_steps())

    def save(self, step: int, state: Any, meta: dict) -> None:
        """Saves ``state`` and JSON ``meta`` as checkpoint ``step`` (blocking, atomic)."""
        self._mgr.save(
            step,
            args=ocp.args.Composite(
                state=ocp.args.StandardSave(state), meta=ocp.args.JsonSave(meta)
            ),
            force=True,
        )
        self._mgr.wait_until_finished()

    def read_meta(self, step: int | None = None) -> dict | None:
        """The ``meta`` item of checkpoint ``step`` (default: latest), or None if none."""
        step = self.latest_step() if step is None else step
        if step is None:
            return None
        out = self._mgr.restore(step, args=ocp.args.Composite(meta=ocp.args.JsonRestore()))
        return out["meta"]

    def restore(self, target: Any, step: int | None = None) -> tuple[Any, dict]:
        """Restores checkpoint ``step`` (default: latest) onto the layout of ``target``.

        Returns:
          (state, meta).

        Raises:
          ConfigError: no checkpoint, or its arrays do not match ``target``.
        """
        step = self.latest_step() if step is None else step
        if step is None:
            raise ConfigError(f"no checkpoint in {self.directory}; train first (train.py)")
        abstract = jax.tree.map(ocp.utils.to_shape_dtype_struct, target)
        try:
            out = self._mgr.restore(
                step,
                args=ocp.args.Composite(
                    state=ocp.args.StandardRestore(abstract), meta=ocp.args.JsonRestore()
                ),
            )
        except (ValueError, KeyError, TypeError) as e:
            first = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
            raise ConfigError(
                f"checkpoint {step} in {self.directory} does not match this config: {first}"
            ) from None
        return out["state"], out["meta"]

    def close(self) -> None:
        self._mgr.close()

"""The generic training core shared by every learned system (DCGAN, CycleGAN, ...).

A *task* describes one kind of experiment; the loop does everything else::

    class Task(Protocol):
        def validate(self, config) -> None
            # raise ConfigError naming the field; called BEFORE any compute or write.
            # check_config(config, FIELDS) (below): the fields every config shares + the task's.
        def init_state(self, config, key) -> state
            # a pytree of arrays (nnx.split states of the models, optax states, ...)
        def make_data(self, config, *, seed) -> data
            # an iterator: next(data) -> host batch (dict of numpy arrays, leading
            # axis = this process's rows of the global batch); data.get_state() /
            # data.set_state(s) (s JSON-serialisable) restore the position
        def train_step(self, state, batch, key) -> tuple[state, dict[str, scalar]]
            # PURE; the loop jits it once (donating state) with the batch sharded over
            # the ``data`` mesh and the state replicated
        def samples(self, state) -> dict[str, np.ndarray]
            # name -> float32[H, W, 3] grid in [0, 1] (fixed noise / fixed inputs)
        def evaluate(self, state, config, workdir) -> dict
            # writes workdir/eval/*.png, returns the content of eval/metrics.json
            # (the loop adds "step")
        def arch(self, config) -> dict
            # architecture fields (JSON); a workdir whose checkpoint has a different
            # arch is refused with a ConfigError before anything is written
        # optional: def report_sections(self, config, workdir) -> [(title, html), ...]

Entry points:

* :func:`fit` (``train.py``): validate, check the workdir (writable; same arch;
  an empty folder or this task's own earlier workdir; not one of the config's
  inputs), hold its lock (:func:`imsyn.outputs.claim_workdir`: one run at a time),
  write ``config.json``, build a 1-D ``data`` mesh over all devices, init or
  resume (model, optimizer, step, data iterator; the key of step ``t`` is
  ``fold_in(key(seed), t)``, so a resumed run reproduces an uninterrupted one),
  then ``train_step`` under ``jax.jit(donate_argnums=0)`` with a progress bar,
  ``metrics.jsonl`` + TensorBoard events every ``log_every`` steps (each metric's mean
  over the steps since the last log, :class:`~imsyn.training.writers.WindowMean`; a
  checkpoint holds the partial window, so a resumed run logs the same means), sample
  grids and ``plots/losses.png`` every ``sample_every`` steps, checkpoints
  every ``checkpoint_every`` steps and on SIGINT/SIGTERM (then it stops with
  :class:`KeyboardInterrupt`; also when the signal comes during the last step, or
  during the final evaluation, which a rerun then completes), a NaN/Inf guard (stops with
  :class:`TrainingDiverged`, keeps the last good checkpoint: a state is only
  saved when all its arrays are finite), finally :func:`evaluate_run`.
* :func:`restore` (``eval.py``): the newest intact checkpoint onto a fresh state
  (a damaged one is skipped with one line, see :mod:`imsyn.training.checkpoint`).
* :func:`evaluate_run`: ``task.evaluate`` → ``eval/metrics.json`` (with the
  step) → ``report.html``.

Workdir layout::

    config.json  metrics.jsonl  events.out.tfevents.*  checkpoints/<step>/
    plots/losses.png  samples/<name>_<step>.png  eval/metrics.json  eval/*.png  report.html

Multi-host: call ``jax.distributed.initialize()`` before :func:`fit` in every
process (``train.py --multihost`` does: :func:`imsyn.runtime.init_distributed`); each
process loads its rows (``make_data`` should shard by ``jax.process_index()``), every
process runs every step and checkpoint (orbax writes collectively), and only process 0
writes logs, samples and reports. A SIGINT/SIGTERM to any one process stops them all at
the same step: at every step that logs or checkpoints, and at least every
:data:`STOP_AGREE_EVERY` steps, the processes agree on it (:func:`_agree_stop`, a
collective of one integer each), then save that step's checkpoint together and stop.
Samples and the evaluation run on process 0 alone, on its own copy of the replicated
state (:func:`host_local`), so ``task.samples`` and ``task.evaluate`` need no other
process and the others write nothing outside ``checkpoints/``.
"""

from __future__ import annotations

import contextlib
import os
import signal
import time
from pathlib import Path
from typing import Any, Protocol

import jax
import jax.numpy as jnp
import numpy as np

from imsyn import validate
from imsyn.augment import COLOR_PARTS, POLICIES, parse_policy
from imsyn.data.sharding import (
    batch_sharding,
    check_batch_size,
    data_mesh,
    replicated,
    shard_batch,
)
from imsyn.errors import ConfigError, ImsynError
from imsyn.image import write_json
from imsyn.outputs import check_folder, check_workdir_inputs, claim_workdir, run_dtype
from imsyn.progress import Progress
from imsyn.training.checkpoint import Checkpoints
from imsyn.training.writers import (
    EventWriter,
    MetricsLog,
    WindowMean,
    plot_losses,
    read_metrics,
    write_samples,
)
from imsyn.validate import Decl

AUGMENTS = ("none", "basic", "deluxe")


def _diffaug_policy(v):
    if not isinstance(v, str):
        raise ValueError
    try:
        parse_policy(v)
    except ConfigError:
        raise ValueError from None
    return v


LR_SCHEDULES = ("constant", "linear_decay")

#: the fields every training config has: name -> Decl(default, rule, meaning); a default of
#: None is the task's to give. A task's table is :func:`training_fields` of them and its own.
COMMON_FIELDS = {
    "task": Decl(None, validate.string(nonempty=True), "the experiment (a task of imsyn.tasks)"),
    "name": Decl(None, validate.string(nonempty=True), "the run's name (workdir: runs/<name>)"),
    "seed": Decl(
        0, validate.integer(min=0, max=validate.INT64_MAX), "seed of initialization and data order"
    ),
    "num_steps": Decl(None, validate.integer(min=1), "training steps"),
    "batch_size": Decl(None, validate.integer(min=1), "global batch (split over all devices)"),
    "log_every": Decl(None, validate.integer(min=1), "steps between metric logs"),
    "checkpoint_every": Decl(None, validate.integer(min=1), "steps between checkpoints"),
    "keep_checkpoints": Decl(None, validate.integer(min=1), "checkpoints kept (the newest)"),
    "sample_every": Decl(None, validate.integer(min=1), "steps between sample grids"),
    "data": Decl(
        None,
        validate.string(nonempty=True, expect="a data spec such as 'emoji:twemoji'"),
        "the training images (CycleGAN: domain X): emoji:<style>[?category=...], folder:PATH "
        "or tfds:name",
    ),
    "image_size": Decl(None, validate.integer(min=1), "image side in pixels"),
    "augment": Decl(
        "basic",
        validate.one_of(*AUGMENTS),
        "host augmentation: basic = crop and flip; deluxe adds rotation, zoom, colour jitter",
    ),
    "diffaug": Decl(
        "",
        validate.custom(
            _diffaug_policy,
            f"'' or a comma-separated subset of {', '.join(POLICIES + COLOR_PARTS)}",
        ),
        "DiffAugment policy applied to real and fake images before D ('' = off)",
    ),
    "data_workers": Decl(
        0,
        validate.integer(min=0),
        "grain worker processes that decode and augment (0: threads of the training process)",
    ),
    "lr": Decl(2e-4, validate.number(min=0, open_min=True), "Adam's learning rate"),
    "beta1": Decl(0.5, validate.number(min=0, max=1, open_max=True), "Adam's beta1"),
    "beta2": Decl(0.999, validate.number(min=0, max=1, open_max=True), "Adam's beta2"),
    "lr_schedule": Decl(
        "constant", validate.one_of(*LR_SCHEDULES), "constant, or linear_decay to 0 at num_steps"
    ),
    "decay_start": Decl(
        0, validate.integer(min=0), "with lr_schedule='linear_decay': the step the decay starts at"
    ),
    "loss": Decl("lsgan", validate.string(nonempty=True, expect="a loss name"), "the GAN loss"),
}


def training_fields(
    fields: dict[str, Decl], *, defaults: dict, rules: dict | None = None
) -> dict[str, Decl]:
    """A training task's field table: :data:`COMMON_FIELDS` with the task's ``defaults``
    (common name -> value, or a function of the config being built) and stricter ``rules``
    (common name -> :class:`~imsyn.validate.Field`), then the task's own ``fields``.

    Raises:
      ValueError: a field declared twice (one of ``fields`` is common), a default or rule
        for a field that is not common, or a common field left without a default.
    """
    twice = sorted(set(fields) & set(COMMON_FIELDS))
    if twice:
        raise ValueError(f"fields declared twice (common and the task's): {twice}")
    for what, given in (("defaults", defaults), ("rules", rules or {})):
        unknown = sorted(set(given) - set(COMMON_FIELDS))
        if unknown:
            raise ValueError(f"{what} for fields that are not common: {unknown}")
    table = {}
    for name, decl in COMMON_FIELDS.items():
        decl = decl._replace(
            default=defaults.get(name, decl.default), rule=(rules or {}).get(name, decl.rule)
        )
        if decl.default is None:
            raise ValueError(f"the common field {name} needs the task's default")
        table[name] = decl
    return {**table, **fields}


class TrainingDiverged(ImsynError):
    """A loss became NaN/Inf; the run stopped and kept its last good checkpoint."""


class Task(Protocol):
    def validate(self, config) -> None: ...
    def init_state(self, config, key) -> Any: ...
    def make_data(self, config, *, seed: int) -> Any: ...
    def train_step(self, state, batch, key) -> tuple[Any, dict]: ...
    def samples(self, state) -> dict[str, np.ndarray]: ...
    def evaluate(self, state, config, workdir) -> dict: ...
    def arch(self, config) -> dict: ...


# --------------------------------------------------------------------------- config checks


def check_config(config, fields: dict) -> None:
    """Validates a training config: :data:`COMMON_FIELDS` plus the task's ``fields`` (its
    :func:`training_fields` table, or extra name -> rule entries).

    Raises:
      ConfigError: an unknown or missing field, or a bad value (one line naming it).
    """
    validate.check(config, {**COMMON_FIELDS, **fields})
    if config.decay_start >= config.num_steps:
        raise ConfigError(
            f"config.decay_start must be an integer in [0, num_steps={config.num_steps}), "
            f"got {config.decay_start!r}"
        )


def lr_schedule(config):
    """The optax learning-rate schedule of a config (constant, or linear decay to 0)."""
    import optax

    if config.lr_schedule == "constant":
        return optax.constant_schedule(config.lr)
    return optax.join_schedules(
        [
            optax.constant_schedule(config.lr),
            optax.linear_schedule(config.lr, 0.0, config.num_steps - config.decay_start),
        ],
        [config.decay_start],
    )


# --------------------------------------------------------------------------- workdir


def _is_primary() -> bool:
    return jax.process_index() == 0


def _check_arch(ckpts: Checkpoints, arch: dict, workdir: Path) -> dict | None:
    """The latest checkpoint's meta, after checking its arch equals ``arch``."""
    meta = ckpts.read_meta()
    if meta is None:
        return None
    saved = meta.get("arch")
    if saved != arch:
        diff = sorted(
            k for k in set(arch) | set(saved or {}) if (saved or {}).get(k) != arch.get(k)
        )
        detail = ", ".join(f"{k}: {(saved or {}).get(k)!r} != {arch.get(k)!r}" for k in diff)
        raise ConfigError(
            f"workdir {workdir} holds a checkpoint of another architecture ({detail}); "
            "use a new --workdir"
        )
    return meta


def _jsonable(arch: dict) -> dict:
    import json

    return json.loads(json.dumps(arch))


# --------------------------------------------------------------------------- helpers


def _next(data):
    return next(data) if hasattr(data, "__next__") else data.next()


@jax.jit
def _all_finite(tree) -> jax.Array:
    leaves = [
        jnp.all(jnp.isfinite(x))
        for x in jax.tree.leaves(tree)
        if jnp.issubdtype(jnp.asarray(x).dtype, jnp.inexact)
    ]
    return jnp.all(jnp.stack(leaves)) if leaves else jnp.array(True)


def _check_finite(host: list[tuple[int, dict]], last_good: int | None) -> None:
    """Raises TrainingDiverged at the first NaN/Inf metric of ``[(step, metrics), ...]``."""
    for step, m in host:
        bad = [k for k, v in m.items() if not np.all(np.isfinite(v))]
        if bad:
            raise TrainingDiverged(
                f"{bad[0]} became {float(np.asarray(m[bad[0]]))} at step {step}; "
                f"training stopped ({_kept(last_good)})"
            )


def _kept(last_good: int | None) -> str:
    return (
        f"last good checkpoint: step {last_good}"
        if last_good is not None
        else "no checkpoint was written"
    )


class _Signals:
    """Records SIGINT/SIGTERM so the loop can checkpoint and stop between steps.

    Once ``immediate`` is set (the final evaluation), a signal raises KeyboardInterrupt at once.
    """

    def __init__(self):
        self.received: int | None = None
        self.immediate = False
        self._old = {}

    def __enter__(self):
        import threading

        if threading.current_thread() is threading.main_thread():
            for sig in (signal.SIGINT, signal.SIGTERM):
                self._old[sig] = signal.signal(sig, self._handle)
        return self

    def _handle(self, signum, frame):
        second = self.received is not None
        self.received = signum
        if second or self.immediate:  # a second signal, or nothing to checkpoint: stop now
            raise KeyboardInterrupt

    def __exit__(self, *exc):
        for sig, handler in self._old.items():
            signal.signal(sig, handler)


# In a multi-process run the stop is agreed at least this often (in steps), and at every
# step that logs or checkpoints (where the loop waits for the devices anyway).
STOP_AGREE_EVERY = 10


def _agree_stop(received: int | None) -> tuple[int, int] | None:
    """The stop every process takes: ``(signal, process that got it)``, or None.

    One process receiving SIGINT/SIGTERM stops every process at the same step: each calls
    this at the same steps (a collective of one integer per process); the lowest-numbered
    process that received a signal names it. On one process, no collective.
    """
    if jax.process_count() == 1:
        return None if received is None else (received, 0)
    from jax.experimental import multihost_utils

    got = np.asarray(multihost_utils.process_allgather(np.int32(received or 0))).reshape(-1)
    stopped = np.flatnonzero(got)
    if stopped.size == 0:
        return None
    return int(got[stopped[0]]), int(stopped[0])


def host_local(state):
    """This process's own copy of a replicated state (on its first local device).

    On one process, ``state`` itself. On several, a computation on the global arrays would
    need every process to run it; this copy lets process 0 draw samples and evaluate alone.
    """
    if jax.process_count() == 1:
        return state
    return jax.tree.map(lambda x: x.addressable_data(0) if isinstance(x, jax.Array) else x, state)


def _init_placed(task: Task, config, mesh):
    """The initial state replicated over the mesh, and the base key of the step keys."""
    init_key, key = jax.random.split(jax.random.key(config.seed))
    state = jax.device_put(task.init_state(config, init_key), replicated(mesh))
    return state, key


def compile_step(task: Task, mesh):
    """``jax.jit(task.train_step)``: state replicated and donated, batch sharded on ``data``."""
    repl = replicated(mesh)
    return jax.jit(
        task.train_step,
        donate_argnums=0,
        in_shardings=(repl, batch_sharding(mesh), repl),
        out_shardings=(repl, repl),
    )


# --------------------------------------------------------------------------- entry points


def fit(config, workdir: str | os.PathLike, task: Task):
    """Trains ``task`` as configured into ``workdir`` (resuming if it holds a checkpoint).

    Returns:
      The final state (replicated over the mesh).

    Raises:
      ConfigError / OutputError: bad config or workdir (before anything is written).
      TrainingDiverged: a loss became NaN/Inf (the last good checkpoint is kept).
      KeyboardInterrupt: SIGINT/SIGTERM (after a checkpoint was written).
    """
    workdir = Path(workdir)
    task.validate(config)
    mesh = data_mesh()
    check_batch_size(config.batch_size, mesh)
    check_folder(workdir)
    check_workdir_inputs(workdir, config)
    arch = _jsonable(task.arch(config))
    ckpts = Checkpoints(workdir / "checkpoints", keep=config.keep_checkpoints, read_only=True)
    try:
        meta = _check_arch(ckpts, arch, workdir)
    finally:
        ckpts.close()

    # Nothing was written before this point.
    primary = _is_primary()
    with (
        claim_workdir(workdir, mode="train", task=config.get("task"))
        if primary
        else contextlib.nullcontext()
    ):
        return _fit_claimed(config, workdir, task, mesh, arch, meta, primary)


def _fit_claimed(config, workdir: Path, task: Task, mesh, arch: dict, meta, primary: bool):
    if primary:
        write_json(workdir / "config.json", config.to_dict())
    ckpts = Checkpoints(workdir / "checkpoints", keep=config.keep_checkpoints)
    state, key = _init_placed(task, config, mesh)
    data = task.make_data(config, seed=config.seed)
    step = 0
    window = WindowMean()
    if meta is not None:
        state, meta = ckpts.restore(state)
        state = jax.device_put(state, replicated(mesh))
        step = int(meta["step"])
        data.set_state(meta["data"])
        window = WindowMean(meta.get("window"))  # absent in checkpoints before window means
    last_good = step if meta is not None else None

    log = MetricsLog(workdir / "metrics.jsonl")
    events = EventWriter(workdir) if primary else None
    if primary:
        log.truncate_after(step)
    step_fn = compile_step(task, mesh)

    def save(at: int) -> bool:
        nonlocal last_good
        if not bool(_all_finite(state)):
            return False
        ckpts.save(
            at,
            state,
            {
                "step": at,
                "data": data.get_state(),
                "window": window.state(),
                "arch": arch,
            },
        )
        last_good = at
        return True

    def outputs(at: int) -> None:
        if primary:
            grids = task.samples(host_local(state))
            write_samples(workdir / "samples", at, grids)
            events.write_images(at, grids)
            plot_losses(read_metrics(log.path), workdir / "plots" / "losses.png", title=config.name)

    def stopped(signum: int, process: int) -> KeyboardInterrupt:
        name = signal.Signals(signum).name
        if jax.process_count() > 1:
            name = f"{name} to process {process}"
        print(f"\n{name}: checkpoint at step {step} in {ckpts.directory}")
        return KeyboardInterrupt()

    multi = jax.process_count() > 1

    bar = Progress(config.num_steps, desc=f"train {config.name}", unit="step", initial=step)
    pending: list[tuple[int, dict]] = []
    t_log, n_log = time.perf_counter(), 0
    with _Signals() as sigs:
        try:
            while step < config.num_steps:
                batch = shard_batch(_next(data), mesh)
                state, metrics = step_fn(state, batch, jax.random.fold_in(key, step))
                step += 1
                n_log += 1
                pending.append((step, metrics))
                due_log = step % config.log_every == 0 or step == config.num_steps
                due_ckpt = step % config.checkpoint_every == 0 or step == config.num_steps
                # several processes stop together, at a step where all of them agree
                agree = not multi or due_log or due_ckpt or step % STOP_AGREE_EVERY == 0
                stop = _agree_stop(sigs.received) if agree else None
                due_ckpt = due_ckpt or stop is not None
                if due_log or due_ckpt:  # never checkpoint past a NaN/Inf loss
                    host = jax.device_get(pending)
                    pending = []
                    _check_finite(host, last_good)
                    for _, m in host:
                        window.add(m)
                if due_log:
                    now = time.perf_counter()
                    rate = n_log / max(now - t_log, 1e-9)
                    t_log, n_log = now, 0
                    record = {"step": step, **window.pop()}
                    record["steps_per_s"] = rate
                    if primary:
                        log.write(record)
                        events.write_scalars(step, {k: v for k, v in record.items() if k != "step"})
                    bar.update(
                        step - bar.n,
                        postfix=" ".join(
                            f"{k}={v:.3f}" for k, v in record.items() if k.endswith("loss")
                        ),
                    )
                t_side = time.perf_counter()
                if due_ckpt and not save(step):
                    raise TrainingDiverged(
                        f"the state became NaN/Inf by step {step}; training stopped "
                        f"({_kept(last_good)})"
                    )
                if step % config.sample_every == 0 or step == config.num_steps:
                    outputs(step)
                t_log += time.perf_counter() - t_side  # steps_per_s counts training only
                if stop is not None:
                    raise stopped(*stop)
            if sigs.received is not None:  # came during the last step: its checkpoint is saved
                raise stopped(sigs.received, jax.process_index())
        finally:
            bar.close()
            if events is not None:
                events.close()
            ckpts.close()
            if hasattr(data, "close"):  # grain worker processes
                data.close()
        sigs.immediate = True  # from here a signal stops at once; a rerun evaluates again
        try:
            evaluate_run(config, workdir, task, state=state, step=step)
        except KeyboardInterrupt:
            name = signal.Signals(sigs.received or signal.SIGINT).name
            print(
                f"\n{name} during the final evaluation: the checkpoint of step {step} is kept; "
                "rerun the same command to evaluate"
            )
            raise
    return state


def restore(config, workdir: str | os.PathLike, task: Task):
    """The state of the latest checkpoint in ``workdir`` (replicated over all devices).

    Returns:
      (state, step).

    Raises:
      ConfigError: invalid config, no checkpoint, or a checkpoint of another architecture.
    """
    workdir = Path(workdir)
    task.validate(config)
    check_folder(workdir)
    if not (workdir / "checkpoints").is_dir():
        raise ConfigError(f"no checkpoint in {workdir}: train first (train.py)")
    mesh = data_mesh()
    ckpts = Checkpoints(workdir / "checkpoints", read_only=True)
    try:
        _check_arch(ckpts, _jsonable(task.arch(config)), workdir)
        state, _ = _init_placed(task, config, mesh)
        state, meta = ckpts.restore(state)
    finally:
        ckpts.close()
    return jax.device_put(state, replicated(mesh)), int(meta["step"])


def evaluate_run(config, workdir: str | os.PathLike, task: Task, *, state=None, step=None) -> dict:
    """Evaluates a run: ``task.evaluate`` → ``eval/metrics.json`` → ``report.html``.

    Restores the latest checkpoint unless ``state`` (and ``step``) are given. In a
    multi-host run every process restores, process 0 alone evaluates (on its own copy of
    the state) and writes; the others return ``{"step": step}``.

    Returns:
      The metrics written to ``eval/metrics.json`` (with ``"step"``).
    """
    from imsyn.report import write_report

    workdir = Path(workdir)
    if state is None:
        state, step = restore(config, workdir, task)
    if not _is_primary():
        return {"step": int(step)}
    with claim_workdir(workdir, mode="eval"):  # held already when called from fit: re-entrant
        metrics = dict(task.evaluate(host_local(state), config, workdir))
        metrics["step"] = int(step)
        if "dtype" in metrics:  # the run's (training) dtype, not this command's
            metrics["dtype"] = run_dtype(workdir, metrics["dtype"])
        write_json(workdir / "eval" / "metrics.json", metrics)
        extra = getattr(task, "report_sections", None)
        write_report(workdir, sections=extra(config, workdir) if extra else ())
    return metrics

"""Config-driven experiments behind ``train.py`` and ``eval.py``.

A config (an ``ml_collections.ConfigDict`` from ``configs/<exp>.py``) names its
``task``; the task's module provides ``train(config, workdir)`` and
``evaluate(config, workdir)``. Both entry points go through :func:`main`, which
parses flags, validates before any compute, holds the workdir for this run
(:func:`imsyn.outputs.claim_workdir`: one run at a time; ``train.py`` only into an
empty folder or its own earlier workdir; never into a folder the config reads),
turns user errors (and a failed write, such as a full disk) into one line on
stderr with exit status 2, SIGINT/SIGTERM into exit status 130 with one line, and
enables the persistent compilation cache.

Multi-host: with ``--multihost``, with ``--coordinator=HOST:PORT --num_processes=N
--process_id=I``, or by itself where JAX can detect a multi-process job (a TPU pod,
a SLURM ``srun`` step, ``mpirun``, a Kubernetes job; :func:`imsyn.runtime.detect_cluster`),
:func:`main` starts JAX's distributed runtime (:func:`imsyn.runtime.init_distributed`)
before anything touches a device; ``--nomultihost`` turns the detection off. Every
process then runs the same command on one shared workdir; process 0 alone holds the
workdir's lock and writes logs, samples and reports.
"""

from __future__ import annotations

import importlib
import signal
import sys

from imsyn.errors import ConfigError, ImsynError

# config.task -> module providing train(config, workdir) and evaluate(config, workdir)
EXPERIMENTS = {
    "dcgan": "imsyn.tasks.dcgan",
    "cyclegan": "imsyn.tasks.cyclegan",
    "nst": "imsyn.tasks.nst",
    "editing": "imsyn.tasks.editing",
    "writeup": "imsyn.tasks.writeup",
}


def get_experiment(config):
    task = config.get("task") if hasattr(config, "get") else None
    if task not in EXPERIMENTS:
        raise ConfigError(f"config.task must be one of {sorted(EXPERIMENTS)}, got {task!r}")
    return importlib.import_module(EXPERIMENTS[task])


def _one_line(e: BaseException) -> str:
    """The most telling line of a multi-line library error (absl/ml_collections)."""
    lines = [ln.strip() for ln in str(e).splitlines() if ln.strip()]
    for ln in reversed(lines):
        if "Errno" in ln or "rror" in ln:
            head, sep, tail = ln.partition(": ")
            return tail if sep and head.endswith("Error") else ln
    return lines[0] if lines else type(e).__name__


def main(argv: list[str], mode: str) -> int:
    """Runs ``train`` or ``evaluate`` for ``--config=... --workdir=...``."""
    from absl import flags
    from ml_collections import config_flags

    prog = "train.py" if mode == "train" else "eval.py"
    fv = flags.FlagValues()
    config_flags.DEFINE_config_file(
        "config",
        None,
        "experiment config file (configs/*.py[:preset])",
        flag_values=fv,
        lock_config=False,
        sys_argv=argv,
    )
    flags.DEFINE_string(
        "workdir", None, "run directory (checkpoints, metrics, report)", flag_values=fv
    )
    _define_multihost_flags(fv)
    try:
        fv(argv)
        config = fv.config
        if config is not None:
            config.get("task")  # the config file is loaded lazily: surface its errors here
    except flags.Error as e:
        print(f"{prog}: error: {_one_line(e)}", file=sys.stderr)
        return 2
    except OSError as e:
        print(f"{prog}: error: config file: {_one_line(e)}", file=sys.stderr)
        return 2
    except (AttributeError, KeyError) as e:  # an unknown field in a --config.x override
        print(f"{prog}: error: unknown config field in an override: {e}", file=sys.stderr)
        return 2
    except ImsynError as e:
        print(f"{prog}: error: {e}", file=sys.stderr)
        return 2
    if config is None:
        print(
            f"{prog}: error: --config is required, e.g. --config=configs/cyclegan.py",
            file=sys.stderr,
        )
        return 2
    workdir = fv.workdir or f"runs/{config.get('name', config.get('task', 'run'))}"
    import contextlib

    from imsyn.outputs import check_workdir_inputs, claim_workdir
    from imsyn.runtime import enable_compilation_cache, init_distributed

    try:  # first: nothing may touch a JAX device before this
        init_distributed(
            fv.multihost,
            coordinator=fv.coordinator,
            num_processes=fv.num_processes,
            process_id=fv.process_id,
        )
    except ImsynError as e:
        print(f"{prog}: error: {e}", file=sys.stderr)
        return 2
    import jax

    primary = jax.process_index() == 0
    if jax.process_count() > 1:
        print(
            f"{prog}: multi-host run: process {jax.process_index()} of {jax.process_count()}, "
            f"{jax.local_device_count()} of {jax.device_count()} devices",
            file=sys.stderr,
        )
    old_term = _interrupt_on_sigterm()
    try:
        exp = get_experiment(config)
        check_workdir_inputs(workdir, config)
        # process 0 holds the workdir for every process of a multi-host run (the others
        # would find it in use); they write nothing outside checkpoints/
        claim = (
            # an evaluation that builds its workdir (the write-up) claims it as training does:
            # an empty folder or its own earlier workdir, never a folder of other files
            claim_workdir(
                workdir,
                mode="train" if getattr(exp, "BUILDS_WORKDIR", False) else mode,
                task=config.get("task"),
            )
            if primary
            else contextlib.nullcontext()
        )
        with claim:
            enable_compilation_cache()
            fn = exp.train if mode == "train" else exp.evaluate
            fn(config, workdir)
    except ImsynError as e:
        print(f"{prog}: error: {e}", file=sys.stderr)
        return 2
    except OSError as e:  # a write the library did not wrap (disk full, ...): name the path
        where = e.filename or workdir
        print(f"{prog}: error: {where}: {e.strerror or e}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print(f"{prog}: interrupted; rerun the same command to resume", file=sys.stderr)
        return 130
    finally:
        if old_term is not None:
            signal.signal(signal.SIGTERM, old_term)
    return 0


def _define_multihost_flags(fv) -> None:
    from absl import flags

    flags.DEFINE_bool(
        "multihost",
        None,
        "start JAX's distributed runtime (jax.distributed.initialize) before anything else; "
        "default: when --coordinator/--num_processes/--process_id are given or JAX detects "
        "a multi-process job (TPU pod, SLURM srun, mpirun, Kubernetes); --nomultihost: never",
        flag_values=fv,
    )
    flags.DEFINE_string(
        "coordinator",
        None,
        "HOST:PORT of process 0's coordination service (multi-host; default: from the cluster)",
        flag_values=fv,
    )
    flags.DEFINE_integer(
        "num_processes",
        None,
        "number of processes of a multi-host run (default: from the cluster)",
        lower_bound=1,
        flag_values=fv,
    )
    flags.DEFINE_integer(
        "process_id",
        None,
        "index of this process in [0, num_processes) (default: from the cluster)",
        lower_bound=0,
        flag_values=fv,
    )


def _raise_interrupt(signum, frame):
    raise KeyboardInterrupt


def _interrupt_on_sigterm():
    """SIGTERM stops a run like SIGINT (exit 130 with a line, not a silent 143)."""
    import threading

    if threading.current_thread() is not threading.main_thread():
        return None
    return signal.signal(signal.SIGTERM, _raise_interrupt)

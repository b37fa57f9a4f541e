"""Config-driven experiments behind ``train.py`` and ``eval.py``.

A config (an ``ml_collections.ConfigDict`` from ``configs/<exp>.py``) names its
``task``; the task's module provides ``train(config, workdir)`` and
``evaluate(config, workdir)``. Both entry points go through :func:`main`, which
parses flags, validates before any compute, turns user errors into one line on
stderr with exit status 2, and enables the persistent compilation cache.
"""

from __future__ import annotations

import importlib
import sys

from imsyn.errors import ConfigError, ImsynError

# config.task -> module providing train(config, workdir) and evaluate(config, workdir)
EXPERIMENTS = {
    "dcgan": "imsyn.training.gan",
    "cyclegan": "imsyn.training.cyclegan",
    "nst": "imsyn.nst",
    "editing": "imsyn.editing",
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
    from imsyn.runtime import enable_compilation_cache

    try:
        exp = get_experiment(config)
        enable_compilation_cache()
        fn = exp.train if mode == "train" else exp.evaluate
        fn(config, workdir)
    except ImsynError as e:
        print(f"{prog}: error: {e}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print(f"{prog}: interrupted", file=sys.stderr)
        return 130
    return 0

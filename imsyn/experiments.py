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
--process_id=I``, or by itself where the launcher's environment shows a multi-process job
(a SLURM ``srun`` step, ``mpirun``, a TPU slice on GKE; :func:`imsyn.runtime.detect_cluster`),
:func:`main` starts JAX's distributed runtime (:func:`imsyn.runtime.init_distributed`)
before anything touches a device; ``--nomultihost`` turns the detection off. Every
process then runs the same command on one shared workdir; process 0 alone holds the
workdir's lock and writes logs, samples and reports.

Help, as absl programs give it: ``-h``, ``--help``, ``-?``, ``--helpshort`` and
``--helpfull`` print the usage and the flags and exit 0; ``--show_config`` prints every
field of the resolved config (the preset and the ``--config.x=y`` overrides applied) with
its value, the preset's default, its rule and a one-line meaning (:func:`describe_config`),
and exits 0 without touching a device.
"""

from __future__ import annotations

import importlib
import importlib.util
import signal
import sys
from pathlib import Path

from imsyn.errors import ConfigError, ImsynError

#: the command-line spellings of absl's help flags (short help; ``--helpfull``: all flags)
HELP_FLAGS = ("-h", "--help", "-?", "--helpshort", "--helpfull")

#: entry point -> its usage line and what it does
USAGE = {
    "train": (
        "python train.py --config=configs/<exp>.py[:preset] --workdir=runs/<name> "
        "[--config.<field>=<value> ...]",
        "Trains (or optimizes) the experiment of the config, resuming from the workdir's "
        "checkpoint, then evaluates it and writes report.html.",
    ),
    "eval": (
        "python eval.py --config=configs/<exp>.py[:preset] --workdir=runs/<name> "
        "[--config.<field>=<value> ...]",
        "Restores the run's newest intact checkpoint and (re)writes eval/ and report.html.",
    ),
    "sweep": (
        "python sweep.py --config=configs/<exp>.py[:preset] --sweep=<name> --workdir=runs/<dir> "
        "[--config.<field>=<value> ...]",
        "Trains every run of the config's sweep (get_sweep) and compares them on one page.",
    ),
}

# config.task -> module providing train(config, workdir) and evaluate(config, workdir)
EXPERIMENTS = {
    "dcgan": "imsyn.tasks.dcgan",
    "cyclegan": "imsyn.tasks.cyclegan",
    "nst": "imsyn.tasks.nst",
    "editing": "imsyn.tasks.editing",
    "writeup": "imsyn.tasks.writeup",
}


def configs_dir() -> Path:
    """The experiment configs: the installed package ``imsyn.configs`` (a wheel carries
    ``configs/*.py`` there), else the ``configs/`` folder of the clone imsyn runs from."""
    try:
        spec = importlib.util.find_spec("imsyn.configs")
    except (ImportError, ValueError):
        spec = None
    if spec is not None and spec.submodule_search_locations:
        return Path(next(iter(spec.submodule_search_locations)))
    return Path(__file__).resolve().parent.parent / "configs"


def resolve_config_arg(value: str) -> str:
    """A ``--config`` value with the config file found: ``path[:preset]`` as given when the
    file exists; else ``NAME``, ``NAME.py`` or ``configs/NAME.py`` name the shipped config
    ``NAME`` (:func:`configs_dir`), so ``--config=cyclegan:cats`` and the README's
    ``--config=configs/cyclegan.py`` work from any folder with an installed imsyn."""
    path, sep, preset = str(value).partition(":")
    if not path or Path(path).expanduser().is_file():
        return value
    p = Path(path)
    stem = p.name[:-3] if p.name.endswith(".py") else p.name
    if p.parent.as_posix() not in (".", "configs") or not stem.isidentifier():
        return value
    shipped = configs_dir() / f"{stem}.py"
    return f"{shipped}{sep}{preset}" if shipped.is_file() else value


def resolve_config_argv(argv: list[str]) -> list[str]:
    """``argv`` with its ``--config`` value passed through :func:`resolve_config_arg`."""
    out = list(argv)
    for i, arg in enumerate(out):
        if arg == "--":
            break
        if arg.startswith("--config="):
            out[i] = "--config=" + resolve_config_arg(arg[len("--config=") :])
        elif arg == "--config" and i + 1 < len(out):
            out[i + 1] = resolve_config_arg(out[i + 1])
    return out


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


# --------------------------------------------------------------------------- help


def wants_help(argv: list[str]) -> str | None:
    """``"short"`` or ``"full"`` when ``argv`` asks for help (absl's flags), else None."""
    args = argv[1:]
    if "--" in args:
        args = args[: args.index("--")]
    if "--helpfull" in args:
        return "full"
    return "short" if any(a in HELP_FLAGS for a in args) else None


def print_help(fv, mode: str, *, full: bool = False) -> None:
    """The usage, what the entry point does, and its flags (``full``: absl's own as well)."""
    usage, what = USAGE[mode]
    import textwrap

    lines = [f"usage: {usage}", "", *textwrap.wrap(what, 90), "", "flags:"]
    special = {"flagfile", "undefok"}
    seen = set()
    for name in sorted(fv):
        flag = fv[name]
        if id(flag) in seen or flag.name in special:
            continue
        seen.add(id(flag))
        spelled = f"--[no]{flag.name}" if flag.boolean else f"--{flag.name}"
        default = "" if flag.default in (None, "") else f" (default: {flag.default_as_str})"
        lines.append(f"  {spelled}")
        lines += textwrap.wrap(f"{flag.help}{default}", 88, initial_indent="    ",
                               subsequent_indent="    ")  # fmt: skip
    lines += [
        "  --config.<field>=<value>",
        "    set one field of the config (any field --show_config lists)",
        "  -h, --help, -?, --helpshort",
        "    this help (--helpfull: with absl's own flags)",
        "",
        "example:",
        f"  python {mode}.py --config=configs/cyclegan.py --show_config",
    ]
    if full:  # absl's listing, with its own flags (--flagfile, --undefok)
        lines += ["", "all flags, as absl lists them:", fv.get_help().strip("\n")]
    print("\n".join(lines))


def _define_help_flags(fv) -> None:
    from absl import flags

    flags.DEFINE_bool(
        "show_config",
        False,
        "print every field of the resolved config (value, the preset's default, rule, "
        "meaning) and exit",
        flag_values=fv,
    )


def _task_fields(task) -> dict:
    """The field table of ``task`` (its module's ``FIELDS``), or {} for an unknown task."""
    if task not in EXPERIMENTS:
        return {}
    return dict(getattr(importlib.import_module(EXPERIMENTS[task]), "FIELDS", {}))


def _followers(node) -> set[str]:
    """The fields of ``node`` that follow its ``num_steps`` (ml_collections references):
    those that change when ``num_steps`` does."""
    import copy

    if "num_steps" not in node or not isinstance(node["num_steps"], int):
        return set()
    probe = copy.deepcopy(node)
    try:
        probe.num_steps = node.num_steps * 2 + 7
    except (AttributeError, TypeError, ValueError):
        return set()
    return {k for k in node.keys() if k != "num_steps" and probe[k] != node[k]}


def describe_config(config, config_file: str | None = None) -> str:
    """Every field of ``config``, one per line: ``name = value  (default: d)  rule; meaning``.

    Args:
      config: the resolved config (an ``ml_collections.ConfigDict``; nested ones are listed
        with dotted names).
      config_file: the ``--config`` value (``path[:preset]``): its ``get_config(preset)``
        gives the defaults. Rules and meanings come from the task's field table
        (``FIELDS`` of its module, :class:`imsyn.validate.Decl`).
    """
    from collections.abc import Mapping

    from imsyn.validate import Decl

    default = None
    if config_file:
        path, _, preset = str(config_file).partition(":")
        try:
            from imsyn.training.sweep import config_module

            default = config_module(path).get_config(preset or None)
        except Exception:  # noqa: BLE001 - without defaults it is still a listing
            default = None
    rows: list[tuple[str, str, str, str]] = []

    def walk(node, dflt, prefix: str, table: Mapping) -> None:
        task = node.get("task") if "task" in node else None
        if isinstance(task, str):
            table = _task_fields(task)
        follows = _followers(node)
        for key in node.keys():
            value = node[key]
            has_default = dflt is not None and hasattr(dflt, "keys") and key in dflt
            d = dflt[key] if has_default else None
            entry = table.get(key)
            if hasattr(value, "keys"):
                walk(value, d, f"{prefix}{key}.", entry if isinstance(entry, Mapping) else {})
                continue
            notes = [entry.rule.expect, entry.meaning] if isinstance(entry, Decl) else []
            if key in follows:
                notes.append("follows num_steps unless set")
            rows.append(
                (
                    f"{prefix}{key}",
                    repr(value),
                    repr(d) if has_default else "?",
                    "; ".join(n for n in notes if n),
                )
            )

    walk(config, default, "", {})
    width = min(max((len(n) + len(v) + 3 for n, v, _, _ in rows), default=0), 60)
    lines = [
        f"# {config_file or 'config'}: field = value  (default: the preset's)  rule; meaning",
        "# set a field with --config.<field>=<value>; * marks a value that is not the default",
    ]
    for name, value, dflt, text in rows:
        mark = " " if dflt in ("?", value) else "*"
        left = f"{name} = {value}"
        lines.append(f"{mark}{left:<{width}}  (default: {dflt})  {text}".rstrip())
    return "\n".join(lines)


# --------------------------------------------------------------------------- main


def main(argv: list[str], mode: str) -> int:
    """Runs ``train`` or ``evaluate`` for ``--config=... --workdir=...``."""
    from absl import flags
    from ml_collections import config_flags

    prog = "train.py" if mode == "train" else "eval.py"
    argv = resolve_config_argv(argv)
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
    _define_help_flags(fv)
    help_kind = wants_help(argv)
    if help_kind is not None:
        print_help(fv, mode, full=help_kind == "full")
        return 0
    try:
        fv(argv)
        config = fv.config
        if config is not None:
            config.get("task")  # the config file is loaded lazily: surface its errors here
    except flags.Error as e:
        print(f"{prog}: error: {_one_line(e)}", file=sys.stderr)
        return 2
    except OSError as e:
        names = sorted(f.stem for f in configs_dir().glob("*.py") if not f.stem.startswith("_"))
        shipped = f" (shipped configs: {', '.join(names)})" if names else ""
        print(f"{prog}: error: config file: {_one_line(e)}{shipped}", file=sys.stderr)
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
    if fv.show_config:
        print(describe_config(config, config_flags.get_config_filename(fv["config"])))
        return 0
    workdir = fv.workdir or f"runs/{config.get('name', config.get('task', 'run'))}"
    import contextlib

    from imsyn.outputs import check_workdir_inputs, claim_workdir
    from imsyn.runtime import enable_compilation_cache, init_distributed, interrupt_on_sigterm

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
    old_term = interrupt_on_sigterm()
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
        "default: when --coordinator/--num_processes/--process_id are given or the environment "
        "shows a multi-process job (SLURM srun, mpirun, TPU slice on GKE); --nomultihost: never",
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

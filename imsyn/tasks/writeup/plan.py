"""The write-up's planner: the experiments of a config, the check of a config before any
compute, what a run does (:func:`plan`) and the run itself (:func:`run`).

An experiment (:class:`~imsyn.tasks.writeup.records.Exp`) is one function
``run(ctx, subdir) -> Output`` plus the settings it depends on (``key``, including the keys of
the experiments whose outputs it reads). When it finishes, ``state/<section>__<name>.json``
records the key, its :class:`~imsyn.tasks.writeup.records.Output` and its wall time; a rerun
skips it while the key is unchanged and redoes it (from an emptied sub-workdir) when a setting
changed or its section is named in ``config.only``; an interrupted one resumes in its
sub-workdir (a GAN from its last checkpoint).

Progress: one line per experiment on stderr with its index, the elapsed time and the ETA of
the whole, from :data:`COST` (seconds each kind of experiment took in ``:quick`` on the
2-core CPU, scaled by how fast the finished ones went).
"""

from __future__ import annotations

import shutil
import sys
import time
from pathlib import Path

import ml_collections

from imsyn.errors import ConfigError
from imsyn.image import write_json
from imsyn.outputs import is_workdir
from imsyn.tasks.writeup import a4
from imsyn.tasks.writeup.records import (
    Ctx,
    Exp,
    by_id,
    finished,
    jsonable,
    read_json,
    split,
    state,
    state_path,
)
from imsyn.tasks.writeup.runs import task_module
from imsyn.tasks.writeup.sections import DATA, FIELDS, MODULES, SECTIONS
from imsyn.validate import check

#: seconds an experiment of each kind took in ``:quick`` on the 2-core CPU (the ETA's units)
COST = {
    "a1": 2,
    "a2": 2,
    "dcgan": 60,
    "cyclegan": 90,
    "emoji": 230,
    "nst": 4,
    "generator": 120,
    "editing": 110,
}
#: seconds per experiment kind in the default preset on one GPU: estimates (no accelerator has
#: run it yet), from the course schedules and the accelerator benchmark's step times
GPU_ESTIMATE = {
    "a1": 10,
    "a2": 10,
    "dcgan": 120,
    "cyclegan": 400,
    "emoji": 300,
    "nst": 40,
    "generator": 120,
    "editing": 60,
}


def validate(config) -> None:
    """Every field, every nested task config and every data folder, before any compute.

    Raises:
      ConfigError: one line naming the field or the missing file.
    """
    check(config, FIELDS)
    root = data_root(config)
    sections = split(config["only"]) or SECTIONS
    for section in sections:
        for rel in DATA.get(section, ()):
            require(root / rel, f"config.data_root (section {section} needs it)")
    if "a4" in sections:
        for field, path in a4.inputs(config, root):
            require(path, f"config.a4.{field}")
    for exp in experiments(config):  # the exact configs the tasks will get
        if exp.kind in ("dcgan", "cyclegan", "emoji", "nst", "generator"):
            sub = ml_collections.ConfigDict(exp.key["config"])
            try:
                task_module(sub.task).validate(sub)
            except ConfigError as e:
                raise ConfigError(f"{exp.id}: {e}") from None


def data_root(config) -> Path:
    """``config.data_root`` resolved (``@data``: the fetched course data,
    :func:`imsyn.course_data.resolve`)."""
    from imsyn.course_data import resolve

    return resolve(config.data_root)


def require(path: Path, what: str) -> None:
    """A missing data file is one line; in the fetched data folder it names the fetch."""
    from imsyn.course_data import fetch_hint

    if not path.exists():
        hint = fetch_hint(path)
        why = f"is not fetched: {hint}" if hint else "does not exist"
        raise ConfigError(f"{what}: {path} {why}")


def experiments(config) -> list[Exp]:
    """Every experiment of the write-up, in page order."""
    root = data_root(config)
    exps: list[Exp] = []
    for section, m in MODULES.items():
        if hasattr(m, "experiments"):
            exps += m.experiments(config, root, exps)
        else:  # a library's section: every experiment on the section's settings and the data
            key = {"section": config[section].to_dict(), "data_root": config.data_root}
            exps += [
                Exp(f"{section}/{name}", title, section, key, getattr(m, name))
                for name, title in m.EXPERIMENTS.items()
            ]
    return exps


def plan(config, workdir) -> list[Exp]:
    """The experiments this run does: those of the ``only`` sections (all of them: a redo), or
    every unfinished or changed one; plus the unfinished experiments they read and the ones
    that read theirs (style transfer on the A2 blend follows a redone A2).

    A redo is recorded in ``state/redo.json`` until it completes, so rerunning the same
    ``only`` command after an interruption continues it instead of starting it over.
    """
    workdir = Path(workdir)
    exps = experiments(config)
    keys = {e.id: jsonable(e.key) for e in exps}
    only = sorted(set(split(config.only)))
    todo = {e.id for e in exps if not finished(workdir, e, keys[e.id])}
    redo = read_json(workdir / "state" / "redo.json") if only else None
    if only and redo and redo.get("only") == only:
        todo = set(redo["pending"]) | {i for i in todo if i.split("/")[0] in only}
    elif only:
        todo = {e.id for e in exps if e.section in only}
    for _ in range(2):  # needs come earlier in the page: two passes settle it
        for e in exps:
            if e.id in todo:
                todo |= {n for n in e.needs if not finished(workdir, by_id(exps, n), keys[n])}
            if any(n in todo for n in e.needs):
                todo.add(e.id)
    if only and not (redo and redo.get("only") == only):
        write_json(workdir / "state" / "redo.json", {"only": only, "pending": sorted(todo)})
    return [e for e in exps if e.id in todo]


def mark_redone(workdir: Path, eid: str) -> None:
    path = workdir / "state" / "redo.json"
    redo = read_json(path)
    if redo:
        redo["pending"] = [p for p in redo["pending"] if p != eid]
        if redo["pending"]:
            write_json(path, redo)
        else:
            path.unlink()


def run(config, workdir: Path) -> None:
    """Runs what :func:`plan` says in the claimed ``workdir``, each experiment in its
    sub-workdir, recording each in its state file."""
    from imsyn.progress import _fmt_time

    if not (workdir / "config.json").exists():
        write_json(workdir / "config.json", {"task": "writeup", "name": config.name})
    ctx = Ctx(config, workdir, data_root(config))
    todo = plan(config, workdir)
    total = sum(COST[e.kind] for e in todo)
    done_cost, t0 = 0.0, time.perf_counter()
    for i, e in enumerate(todo):
        elapsed = time.perf_counter() - t0
        speed = elapsed / done_cost if done_cost else 1.0
        eta = (total - done_cost) * speed
        print(f"writeup: {i + 1}/{len(todo)} {e.id} [{_fmt_time(elapsed)} elapsed, "
              f"ETA {_fmt_time(eta)}]", file=sys.stderr, flush=True)  # fmt: skip
        key = jsonable(e.key)
        sub = workdir / e.id
        s = state(workdir, e)
        resumable = s and s.get("key") == key and not s.get("done") and is_workdir(sub)
        if sub.exists() and not resumable:
            shutil.rmtree(sub)  # another setting, or redone: start clean (else it resumes)
        sub.mkdir(parents=True, exist_ok=True)
        write_json(state_path(workdir, e), {"key": key, "done": False})
        t = time.perf_counter()
        out = e.run(ctx, sub)
        write_json(state_path(workdir, e), {"key": key, "done": True, "output": jsonable(out),
                                             "seconds": time.perf_counter() - t})  # fmt: skip
        mark_redone(workdir, e.id)
        done_cost += COST[e.kind]
    if todo:
        print(f"writeup: {len(todo)} experiments in {_fmt_time(time.perf_counter() - t0)}",
              file=sys.stderr)  # fmt: skip

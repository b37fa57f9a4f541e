"""The write-up's experiments that run a task (A3, A4, A5): a nested task config, its
``train`` into the experiment's sub-workdir (an ordinary run directory), and what the page
shows of the run."""

from __future__ import annotations

import copy
from pathlib import Path

import ml_collections
import numpy as np

from imsyn import validate
from imsyn.errors import ConfigError
from imsyn.tasks.writeup.records import Ctx, Exp, Output, read_json, rel
from imsyn.validate import Decl


def task_module(name: str):
    from imsyn.experiments import get_experiment

    return get_experiment(ml_collections.ConfigDict({"task": name}))


def task_field(kind: str, config: str, meaning: str, **changes) -> Decl:
    """A nested task config (its task checks its fields): by default the shipped
    ``configs/<config>`` (``name[:preset]``) with ``changes``."""
    name, _, preset = config.partition(":")

    def default(_):
        from imsyn.experiments import configs_dir
        from imsyn.training.sweep import config_module

        c = config_module(configs_dir() / f"{name}.py").get_config(preset)
        c.update(changes)
        return c

    return Decl(default, validate.custom(lambda v: v, kind), meaning)


def task_config(base, name: str, **changes) -> ml_collections.ConfigDict:
    c = copy.deepcopy(base)
    for k, v in changes.items():
        if k not in c:
            raise ConfigError(f"{name}: unknown config field {k}")
        c[k] = v
    c.name = name
    return c


def task_exp(eid, title, kind, cfg, render, needs=()) -> Exp:
    """An experiment that trains the task of ``cfg`` into its sub-workdir."""
    key = {"config": cfg.to_dict()}

    def run(ctx: Ctx, sub: Path) -> Output:
        task_module(cfg.task).train(cfg, sub)
        out = render(ctx, sub, cfg)
        out["command"] = command(cfg)
        return out

    return Exp(eid, title, kind, key, run, needs)


def command(cfg) -> str:
    """The standalone ``train.py`` command of a task config: the fields that differ from the
    task's default config (``configs/<task>.py``)."""
    import shlex

    from imsyn.experiments import configs_dir
    from imsyn.training.sweep import config_module

    default = config_module(configs_dir() / f"{cfg.task}.py").get_config()
    flags = [
        shlex.quote(f"--config.{k}={v}")
        for k, v in cfg.items()
        if not (k in default and default[k] == v)
    ]
    return " ".join(["python train.py", f"--config=configs/{cfg.task}.py", *flags])


def scalars(d: dict, prefix: str = "") -> dict:
    """The numbers (and short strings) of a metrics dict, nested keys joined by ``/``."""
    out = {}
    for k, v in d.items():
        if isinstance(v, dict) and k in ("x2y", "y2x", "baseline_identity", "baseline_color"):
            out.update(scalars(v, f"{prefix}{k}/"))
        elif isinstance(v, bool | int | float) or (isinstance(v, str) and len(v) < 40):
            out[f"{prefix}{k}"] = v
    return out


def metrics(sub: Path) -> dict:
    return read_json(sub / "eval" / "metrics.json") or {}


def gan_render(ctx: Ctx, sub: Path, cfg) -> Output:
    base = rel(ctx, sub)
    figs = []
    steps = sorted(p for p in (sub / "samples").glob("*_[0-9]*.png"))
    names = sorted({p.name.rsplit("_", 1)[0] for p in steps})
    for name in names[:1]:
        snaps = [p for p in steps if p.name.rsplit("_", 1)[0] == name]
        pick = [snaps[int(i)] for i in np.unique(np.linspace(0, len(snaps) - 1, 4).round())]
        figs += [(f"{base}/samples/{p.name}", f"{name}, step {int(p.stem.rsplit('_', 1)[1])}")
                 for p in pick]  # fmt: skip
    for p in sorted((sub / "eval").glob("*.png")):
        figs.append((f"{base}/eval/{p.name}", f"eval/{p.name}"))
    if (sub / "plots" / "losses.png").exists():
        figs.append((f"{base}/plots/losses.png", "losses"))
    m = metrics(sub)
    notes = [m["features_note"]] if m.get("features_note") else []
    return Output(scalars(m), figs, (), notes=notes)


def nst_render(ctx: Ctx, sub: Path, cfg) -> Output:
    m = metrics(sub)
    keep = ("seconds", "steps", "content_loss", "style_loss", "style_reduction", "weights")
    return Output(
        {k: m[k] for k in keep if k in m},
        [(f"{rel(ctx, sub)}/result.png", f"{cfg.name} ({m.get('seconds', 0):.1f} s)")],
        notes=[m["note"]] if m.get("note") else [],
    )

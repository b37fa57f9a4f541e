"""A5 of the write-up: GAN photo editing, run by :mod:`imsyn.tasks.dcgan` (the style-based
generator) and :mod:`imsyn.tasks.editing` (projection, interpolation, drawing) on the nested
configs."""

from __future__ import annotations

import copy
from pathlib import Path

from imsyn.tasks.writeup.records import Ctx, Exp, Output, rel
from imsyn.tasks.writeup.runs import (
    command,
    gan_render,
    metrics,
    task_config,
    task_exp,
    task_field,
    task_module,
)

TITLE = "A5 · GAN photo editing"
#: ``config.a5``
FIELDS = {
    "generator": task_field(
        "a DCGAN config (style generator)", "dcgan:style", "the style-based GAN to edit"
    ),
    "editing": task_field("an editing config", "editing", "the projections and edits"),
}
#: the pretrained networks it needs (the page says when one is missing)
NETWORKS = ("vgg19", "lpips_vgg16")
#: the page's heading of each group of experiments
GROUPS = {
    "generator": "The style-based generator (z → w) that A5 edits",
}


def experiments(config, root: Path, earlier: list[Exp]) -> list[Exp]:
    gen = task_config(config.a5.generator, "style_generator")
    exps = [task_exp("a5/generator", "The style generator", "generator", gen, gan_render)]
    for mode in ("project", "interpolate", "draw"):
        exps.append(_editing_exp(config, mode, gen))
    return exps


def _editing_exp(config, mode: str, gen) -> Exp:
    from imsyn.tasks.editing import MODE_DEFAULTS

    changes = {k: v for k, v in MODE_DEFAULTS[mode].items() if k not in ("name", "steps")}
    cfg = task_config(config.a5.editing, f"edit_{mode}", **changes)
    key = {"config": cfg.to_dict(), "generator": gen.to_dict()}

    def run(ctx: Ctx, sub: Path) -> Output:
        c = copy.deepcopy(cfg)
        c.generator_workdir = str(ctx.workdir / "a5" / "generator")
        task_module("editing").train(c, sub)
        base = rel(ctx, sub)
        figs = [(f"{base}/eval/{p.name}", p.stem) for p in sorted((sub / "eval").glob("*.png"))]
        m = metrics(sub)
        res = {k: v for k, v in m.items() if isinstance(v, int | float) and "/" in k}
        return Output(res, figs, command=command(c))

    return Exp(f"a5/{mode}", {"project": "Projection into z, w, w+", "interpolate":
               "Interpolation", "draw": "Drawing from scribbles"}[mode], "editing", key, run,
               needs=("a5/generator",))  # fmt: skip

"""A4 of the write-up: neural style transfer, run by :mod:`imsyn.tasks.nst` on the nested
config (content reconstruction, texture synthesis, the style-weight sweep, content × style
grids, and style transfer on this page's own A2 and A3 results)."""

from __future__ import annotations

import copy
from pathlib import Path

import numpy as np

from imsyn import validate
from imsyn.errors import InputError
from imsyn.tasks.writeup.records import Ctx, Exp, Output, by_id, split
from imsyn.tasks.writeup.runs import (
    command,
    nst_render,
    task_config,
    task_exp,
    task_field,
    task_module,
)
from imsyn.validate import Decl

TITLE = "A4 · Neural style transfer"


def _layer_sets(v) -> str:
    from imsyn.models import vgg

    if not isinstance(v, str) or not v.strip():
        raise ValueError
    for layers in v.split(";"):
        if not split(layers):
            raise ValueError
        try:
            vgg.check_layers(split(layers))
        except InputError:
            raise ValueError from None
    return v


def _numbers(v, kind) -> str:
    if not isinstance(v, str) or not split(v):
        raise ValueError
    if any(not (kind(x) >= 0 and np.isfinite(kind(x))) for x in split(v)):
        raise ValueError
    if kind is float and any(float(x) <= 0 for x in split(v)):
        raise ValueError
    return v


#: ``config.a4``
FIELDS = {
    "nst": task_field("an NST config", "nst", "the style transfers", size=512, sample_every=0),
    "contents": Decl(
        "tubingen.jpg,dancing.jpg,golden_gate.jpg",
        validate.string(nonempty=True, expect="comma-separated file names"),
        "content images in data_root/nst/content",
    ),
    "styles": Decl(
        "starry_night.jpg,the_scream.jpg,great_wave.jpg",
        validate.string(nonempty=True, expect="comma-separated file names"),
        "style images in data_root/nst/style",
    ),
    "grid_size": Decl(
        256, validate.integer(min=32, max=4096), "size of the 3x3 content x style grids"
    ),
    "content_layers": Decl(
        "conv_1;conv_3;conv_5;conv_9;conv_1,conv_3,conv_5",
        validate.custom(_layer_sets, "layer lists separated by ';'"),
        "the content reconstructions: one layer list per run, ';' between runs",
    ),
    "texture_layers": Decl(
        "conv_1;conv_3;conv_5;conv_1,conv_2,conv_3;conv_1,conv_2,conv_3,conv_4,conv_5",
        validate.custom(_layer_sets, "layer lists separated by ';'"),
        "the texture syntheses: one layer list per run, ';' between runs",
    ),
    "texture_seeds": Decl(
        "0,1",
        validate.custom(lambda v: _numbers(v, int), "a comma list of seeds (integers >= 0)"),
        "seeds of the texture syntheses",
    ),
    "style_weights": Decl(
        "1e3,1e4,1e5,1e6,1e7",
        validate.custom(lambda v: _numbers(v, float), "a comma list of positive numbers"),
        "the style-weight sweep",
    ),
}
#: the pretrained networks it needs (the page says when one is missing)
NETWORKS = ("vgg19",)
#: the page's heading of each group of experiments
GROUPS = {
    "content": "Content reconstruction from noise: single layers and a layer set",
    "texture": "Texture synthesis from noise: single layers and layer sets, two seeds",
    "weight": "Style weight sweep (from the content image)",
    "grid": "Content × style grids, from noise and from the content image",
    "own": "Style transfer applied to this page's own A2 and A3 results",
}


def inputs(config, root: Path) -> list[tuple[str, Path]]:
    """``(field, path)`` of every image it reads: the contents and styles."""
    return [
        (field, root / "nst" / sub / name)
        for field, sub in (("contents", "content"), ("styles", "style"))
        for name in split(config.a4[field])
    ]


def experiments(config, root: Path, earlier: list[Exp]) -> list[Exp]:
    """Its experiments; the style transfers on this page's own results read (and key on)
    the ``earlier`` experiments that made them."""
    exps: list[Exp] = []
    a4 = config.a4
    content = str(root / "nst" / "content" / split(a4.contents)[0])
    style = str(root / "nst" / "style" / split(a4.styles)[0])
    for layers in a4.content_layers.split(";"):
        tag = layers.replace(",", "+")
        cfg = task_config(a4.nst, f"content_{tag}", mode="content", content=content,
                          content_layers=layers)  # fmt: skip
        exps.append(task_exp(f"a4/content_{tag}", f"content {layers}", "nst", cfg, nst_render))
    for layers in a4.texture_layers.split(";"):
        for seed in (int(x) for x in split(a4.texture_seeds)):
            tag = f"{layers.replace(',', '+')}_seed{seed}"
            cfg = task_config(a4.nst, f"texture_{tag}", mode="texture", style=style,
                              style_layers=layers, seed=seed)  # fmt: skip
            exps.append(task_exp(f"a4/texture_{tag}", f"texture {tag}", "nst", cfg, nst_render))
    for w in (float(x) for x in split(a4.style_weights)):
        tag = f"{w:.0e}".replace("+0", "")
        cfg = task_config(a4.nst, f"style_weight_{tag}", mode="transfer", content=content,
                          style=style, style_weight=float(w))  # fmt: skip
        exps.append(task_exp(f"a4/weight_{tag}", f"style weight {tag}", "nst", cfg, nst_render))
    for init in ("noise", "content"):
        for c in split(a4.contents):
            for s in split(a4.styles):
                tag = f"{init}_{Path(c).stem}_{Path(s).stem}"
                cfg = task_config(a4.nst, f"grid_{tag}", mode="transfer", size=a4.grid_size,
                                  content=str(root / "nst" / "content" / c),
                                  style=str(root / "nst" / "style" / s), init=init)  # fmt: skip
                exps.append(task_exp(f"a4/grid_{tag}", f"grid {tag}", "nst", cfg, nst_render))
    # A4 restyles this page's A2 blend and A3 samples
    last = split(config.a3.dcgan_settings)[-1]
    own = (("a2/blend", "a2/blend/poisson.png"),
           (f"a3/dcgan_{last}", f"a3/dcgan_{last}/eval/samples.png"))  # fmt: skip
    for need, src in own:
        tag = need.replace("/", "_")
        cfg = task_config(a4.nst, f"own_{tag}", mode="transfer", style=style)
        key = {"config": cfg.to_dict(), "content": src, "needs": by_id(earlier, need).key}
        exps.append(Exp(f"a4/own_{tag}", f"style transfer on {src}", "nst", key,
                        _own_result_run(cfg, src), needs=(need,)))  # fmt: skip
    return exps


def _own_result_run(cfg, src: str):
    def run(ctx: Ctx, sub: Path) -> Output:
        c = copy.deepcopy(cfg)
        c.content = str(ctx.workdir / src)
        task_module("nst").train(c, sub)
        out = nst_render(ctx, sub, c)
        out["command"] = command(c)
        return out

    return run

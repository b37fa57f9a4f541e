"""A2 of the write-up: gradient-domain fusion by :mod:`imsyn.poisson` (the toy problem, the
bear in the pool, Color2Gray on an isoluminant image, further edits)."""

from __future__ import annotations

import time
from pathlib import Path

import numpy as np

from imsyn import validate
from imsyn.image import read_float, write_image
from imsyn.tasks.writeup.records import Ctx, Output, rel
from imsyn.validate import Decl

TITLE = "A2 · Gradient-domain fusion"
#: ``config.a2``
FIELDS = {
    "isoluminant_size": Decl(
        256, validate.integer(min=16, max=4096), "side of the Color2Gray isoluminant image"
    ),
}
#: data it reads, relative to ``config.data_root``
DATA = (
    "poisson/toy_problem.png",
    "poisson/bear_pool/source_01.jpg",
    "poisson/bear_pool/source_01_mask.png",
    "poisson/bear_pool/source_01_newsource.png",
    "poisson/bear_pool/target_01.jpg",
    "poisson/bear_pool/target_01_mask.png",
)
#: its experiments in page order, all on the section's settings and the data: name (the
#: sub-workdir ``a2/<name>``, and the function of this module that runs it) -> title
EXPERIMENTS = {
    "toy": "Toy problem: an image from its gradients",
    "blend": "Bear in the pool: copy-paste, Poisson, mixed",
    "color2gray": "Color to gray on an isoluminant image",
    "extras": "More gradient-domain edits",
}


def _save(ctx: Ctx, sub: Path, name: str, img, caption: str, figs: list) -> None:
    write_image(sub / name, np.clip(img, 0, 1))
    figs.append((f"{rel(ctx, sub)}/{name}", caption))


def _bear(ctx: Ctx) -> dict:
    d = ctx.data / "poisson" / "bear_pool"
    return {
        "source": read_float(d / "source_01.jpg", mode="rgb"),
        "source_mask": read_float(d / "source_01_mask.png", mode="gray") >= 0.5,
        "newsource": read_float(d / "source_01_newsource.png", mode="rgb"),
        "target": read_float(d / "target_01.jpg", mode="rgb"),
        "mask": read_float(d / "target_01_mask.png", mode="gray") >= 0.5,
    }


def toy(ctx: Ctx, sub: Path) -> Output:
    from imsyn import poisson

    img = read_float(ctx.data / "poisson" / "toy_problem.png", mode="gray")
    t = time.perf_counter()
    out = poisson.reconstruct(img)
    seconds = time.perf_counter() - t
    err = np.abs(out.image - img)
    figs: list = []
    _save(ctx, sub, "original.png", img, "toy_problem.png", figs)
    _save(
        ctx, sub, "reconstruction.png", out.image, "reconstructed from its gradients + 1 px", figs
    )
    scale = 1.0 / max(float(err.max()), 1e-12)
    _save(ctx, sub, "error.png", err * scale, f"|error| × {scale:.3g}", figs)
    res = {"max_abs_error": float(err.max()), "mean_abs_error": float(err.mean()),
           "iterations": out.iterations, "residual": out.residual,
           "first_call_s": seconds}  # fmt: skip
    return Output(res, figs, (), "python -m imsyn toy toy_problem.png --out OUT.png")


def blend(ctx: Ctx, sub: Path) -> Output:
    from imsyn import poisson

    d = _bear(ctx)
    figs: list = []
    res = {}
    _save(ctx, sub, "target.png", d["target"], "target", figs)
    copy_paste = np.where(d["mask"][..., None], d["newsource"], d["target"])
    _save(ctx, sub, "copy_paste.png", copy_paste, "copy-paste", figs)
    for mode in ("poisson", "mixed"):
        t = time.perf_counter()
        out = poisson.blend(d["newsource"], d["target"], d["mask"], mode=mode)
        res[mode] = {"first_call_s": time.perf_counter() - t, "iterations": out.iterations,
                     "residual": out.residual}  # fmt: skip
        _save(ctx, sub, f"{mode}.png", out.image, f"{mode} blending", figs)
    cmd = ("python -m imsyn blend --source source_01_newsource.png --target target_01.jpg "
           "--mask target_01_mask.png [--mode mixed] --out OUT.png")  # fmt: skip
    return Output(res, figs, (), cmd)


def isoluminant_image(size: int) -> np.ndarray:
    """A test image whose discs have the background's luma: a luma conversion erases them."""
    from imsyn.poisson import _LUMA

    yy, xx = np.mgrid[0:size, 0:size] / size
    img = np.empty((size, size, 3), np.float32)
    img[:] = (0.5, 0.5, 0.5)
    for (cy, cx), (r, g) in (((0.3, 0.3), (0.9, 0.3)), ((0.3, 0.7), (0.2, 0.6)),
                             ((0.7, 0.5), (0.35, 0.55))):  # fmt: skip
        b = (0.5 - _LUMA[0] * r - _LUMA[1] * g) / _LUMA[2]  # luma = 0.5 exactly
        img[(yy - cy) ** 2 + (xx - cx) ** 2 < 0.15**2] = (r, g, b)
    return img


def color2gray(ctx: Ctx, sub: Path) -> Output:
    from imsyn import poisson

    img = isoluminant_image(ctx.config.a2.isoluminant_size)
    luma = img @ poisson._LUMA
    t = time.perf_counter()
    out = poisson.color2gray(img)
    seconds = time.perf_counter() - t
    discs = np.abs(img - 0.5).sum(-1) > 1e-3

    def contrast(gray):
        return float(abs(gray[discs].mean() - gray[~discs].mean()))

    figs: list = []
    _save(ctx, sub, "input.png", img, "isoluminant input (discs have the background's luma)", figs)
    _save(ctx, sub, "luma.png", luma, f"luma: disc contrast {contrast(luma):.4f}", figs)
    _save(ctx, sub, "color2gray.png", out.image,
          f"color2gray: disc contrast {contrast(out.image):.4f}", figs)  # fmt: skip
    res = {"luma_contrast": contrast(luma), "color2gray_contrast": contrast(out.image),
           "first_call_s": seconds, "iterations": out.iterations}  # fmt: skip
    return Output(res, figs, (), "python -m imsyn color2gray INPUT --out OUT.png")


def extras(ctx: Ctx, sub: Path) -> Output:
    from imsyn import poisson

    d = _bear(ctx)
    figs: list = []
    res = {}
    edits = {
        "monochrome_transfer": (
            lambda: poisson.monochrome_transfer(d["newsource"], d["target"], d["mask"]),
            "mono-transfer",
        ),  # fmt: skip
        "flatten": (lambda: poisson.flatten_texture(d["source"], d["source_mask"]), "flatten"),
        "illumination": (
            lambda: poisson.change_illumination(d["source"], d["source_mask"]),
            "illumination",
        ),  # fmt: skip
        "recolor": (lambda: poisson.change_color(d["source"], d["source_mask"]), "recolor"),
    }
    _save(ctx, sub, "bear.png", d["source"], "source (bear)", figs)
    for name, (fn, cli) in edits.items():
        t = time.perf_counter()
        out = fn()
        res[name] = {"first_call_s": time.perf_counter() - t, "iterations": out.iterations}
        _save(ctx, sub, f"{name}.png", out.image, f"{name.replace('_', ' ')} (imsyn {cli})", figs)
    return Output(res, figs, (), "python -m imsyn {mono-transfer|flatten|illumination|recolor} ...")

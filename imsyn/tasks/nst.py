"""Neural style transfer experiment (``config.task == "nst"``): config -> run -> outputs.

``train(config, workdir)`` / ``evaluate(config, workdir)`` are what ``train.py`` and
``eval.py`` call (via :mod:`imsyn.experiments`). The algorithm (features, Gram
matrices, the objective, L-BFGS/Adam, :func:`~imsyn.nst.style_transfer`) is
:mod:`imsyn.nst`.

Config: :data:`FIELDS`, every field's default, rule and meaning (numeric rules shared with
the ``stylize`` CLI: :data:`imsyn.nst.RULES`), checked by :func:`validate` before any
compute; one message format, ``config.num_steps must be an integer in [1, 1000000], got 0``.

Everything a run writes: ``config.json``, ``metrics.jsonl`` (per step: ``content_loss``,
``style_loss``, ``tv_loss``, ``loss``), ``samples/result_<step>.png`` every
``sample_every`` steps, ``plots/losses.png``, ``inputs.png``, ``result.png``,
``result.json`` (settings, the VGG weights used — a file name or ``"random"`` — and their
normalization, and the per-step loss lists), ``eval/samples.png``, ``eval/metrics.json``
and ``report.html``. ``config.sweep`` runs one of ``configs/nst.py``'s ablation grids
through :mod:`imsyn.training.sweep` (``comparison.html`` and ``sweep.png``).
"""

from __future__ import annotations

import dataclasses
import json
import os
from pathlib import Path
from typing import NamedTuple

import numpy as np

from imsyn import nst
from imsyn.errors import ConfigError, InputError
from imsyn.image import make_grid, read_float, write_image, write_json, write_text
from imsyn.models import vgg
from imsyn.outputs import claim_workdir, run_dtype
from imsyn.report import figure, write_report
from imsyn.validate import Decl, boolean, check, custom, existing_file, integer, one_of, string

MODES = ("transfer", "content", "texture")
SWEEPS = ("content_layers", "style_layers", "style_weight", "init", "all")
MAX_SIZE = 16384
CONFIG_FILE = Path(__file__).resolve().parents[2] / "configs" / "nst.py"  # its get_sweep


def _split(text: str) -> list[str]:
    return [s.strip() for s in str(text).split(",") if s.strip()]


def _style_files(v):
    if not isinstance(v, str) or not all(os.path.isfile(p) for p in _split(v)):
        raise ValueError
    return v


def _blend(v):
    if not isinstance(v, str):
        raise ValueError
    b = [float(x) for x in _split(v)]
    if not all(np.isfinite(b)) or any(x <= 0 for x in b):
        raise ValueError
    return v


def _layers(v):
    if not isinstance(v, str):
        raise ValueError
    try:
        vgg.check_layers(_split(v))
    except InputError as e:
        raise ConfigError(str(e)) from None
    return v


R = nst.RULES
#: every field of an NST config, declared once: default, rule, meaning (``configs/nst.py``
#: builds on these defaults; its presets change some)
FIELDS = {
    "task": Decl("nst", one_of("nst"), "the experiment"),
    "name": Decl("nst", string(), "the run's name (workdir: runs/<name>)"),
    "seed": Decl(0, R["seed"], "seed of the noise init"),
    "mode": Decl(
        "transfer", one_of(*MODES), "transfer; content: reconstruction; texture: synthesis"
    ),
    "content": Decl("", existing_file(), "the content image ('' = matplotlib's grace_hopper.jpg)"),
    "style": Decl(
        "",
        custom(_style_files, "'' or comma-separated existing files"),
        "the style image(s), comma-separated ('' = a generated brush-stroke texture)",
    ),
    "style_blend": Decl(
        "",
        custom(_blend, "'' or comma-separated positive numbers"),
        "weights of the style images, one per style ('' = equal)",
    ),
    "size": Decl(256, integer(min=0, max=MAX_SIZE), "longer side of the result (0: the content's)"),
    "style_fit": Decl(
        "scale", one_of(*nst.STYLE_FITS), "how the style image meets the result's size"
    ),
    "style_scale": Decl(1.0, R["style_scale"], "scale of the style image (larger: larger strokes)"),
    "original_colors": Decl(False, boolean(), "keep the content's colours (luminance transfer)"),
    "content_layers": Decl(
        "conv_4",
        custom(_layers, "comma-separated VGG-19 layer names"),
        "layers whose features are matched (conv_4 or conv4_2 spelling)",
    ),
    "style_layers": Decl(
        "conv_1,conv_2,conv_3,conv_4,conv_5",
        custom(_layers, "comma-separated VGG-19 layer names"),
        "layers whose Gram matrices are matched",
    ),
    "content_weight": Decl(1.0, R["content_weight"], "weight of the content loss"),
    "style_weight": Decl(1e5, R["style_weight"], "weight of the style loss (useful: 1e4..1e6)"),
    "tv_weight": Decl(0.0, R["tv_weight"], "weight of the total-variation loss (0: off)"),
    "init": Decl("", one_of("", *nst.INITS), "start image ('' = content for transfer, else noise)"),
    "optimizer": Decl("lbfgs", one_of(*nst.OPTIMIZERS), "lbfgs, or adam (with lr)"),
    "linesearch": Decl(
        "backtracking",
        one_of(*nst.LINESEARCHES),
        "L-BFGS line search; zoom: optax.lbfgs's own, in-graph (for GPU/TPU)",
    ),
    "num_steps": Decl(300, R["steps"], "optimizer steps"),
    "lr": Decl(0.02, R["lr"], "Adam's learning rate (L-BFGS searches its steps)"),
    "clamp": Decl(True, boolean(), "project the image onto [0, 1] after each step"),
    "pooling": Decl("max", one_of("max", "avg"), "VGG pooling"),
    "memory_size": Decl(10, R["memory_size"], "L-BFGS history length"),
    "remat": Decl(False, boolean(), "rematerialize VGG activations (large images)"),
    "dtype": Decl(
        "float32", R["dtype"], "bfloat16: VGG features in bf16; image, L-BFGS, losses float32"
    ),
    "weights": Decl(
        "", existing_file(), "VGG-19 weights ('' = $IMSYN_VGG19, the fetched vgg19, else random)"
    ),
    "sample_every": Decl(50, R["snapshot_every"], "steps between result snapshots (0: none)"),
    "sweep": Decl("", one_of("", *SWEEPS), "run this ablation grid of configs/nst.py instead"),
}


def validate(config) -> None:
    """Checks an NST config (``configs/nst.py``) before any compute.

    Raises:
      ConfigError: an unknown or missing field or an invalid value, one line naming it.
    """
    check(config, FIELDS)
    n_styles = max(len(_split(config["style"])), 1)
    blend = _split(config["style_blend"])
    if blend and len(blend) != n_styles:
        raise ConfigError(
            f"config.style_blend must be one positive weight per style image ({n_styles}), "
            f"got {config['style_blend']!r}"
        )
    size = config["size"]
    if size:
        try:
            nst.check_size((size, size), _layers_used(config))
        except InputError as e:
            raise ConfigError(f"config.size: {e}") from None


def _layers_used(config) -> tuple[str, ...]:
    content = _split(config["content_layers"]) if config["mode"] != "texture" else []
    style = _split(config["style_layers"]) if config["mode"] != "content" else []
    return tuple(content + style)


def _plain(config) -> dict:
    cfg = dict(config.to_dict() if hasattr(config, "to_dict") else config)
    for k, v in cfg.items():  # ints given for float fields are floats in the outputs
        if k in FIELDS and FIELDS[k].rule.expect.startswith("a finite number"):
            cfg[k] = float(v)
    return cfg


class _Run(NamedTuple):
    config: dict
    options: nst.Options
    content: np.ndarray | None
    styles: list
    style_blend: list | None
    weights: vgg.VGGWeights


def _options(cfg: dict) -> nst.Options:
    init = cfg["init"] or ("content" if cfg["mode"] == "transfer" else "noise")
    return nst.Options(
        content_layers=tuple(_split(cfg["content_layers"])),
        style_layers=tuple(_split(cfg["style_layers"])),
        content_weight=cfg["content_weight"],
        style_weight=cfg["style_weight"],
        tv_weight=cfg["tv_weight"],
        init=init,
        optimizer=cfg["optimizer"],
        linesearch=cfg["linesearch"],
        steps=cfg["num_steps"],
        lr=cfg["lr"],
        clamp=cfg["clamp"],
        pooling=cfg["pooling"],
        seed=cfg["seed"],
        memory_size=cfg["memory_size"],
        remat=cfg["remat"],
        dtype=cfg["dtype"],
    ).validated()


def _prepare(cfg: dict) -> _Run:
    options = _options(cfg)
    content = read_float(cfg["content"], mode="rgb") if cfg["content"] else nst.default_content()
    paths = _split(cfg["style"])
    styles = [read_float(p, mode="rgb") for p in paths] if paths else [nst.default_style()]
    blend = [float(b) for b in _split(cfg["style_blend"])] or None
    weights = vgg.load_weights(cfg["weights"] or None)
    size = cfg["size"] or None
    if cfg["mode"] == "texture":
        content = None
        styles = [nst.resize(s, nst.fit_size(s.shape[:2], size)) for s in styles]
    else:
        content = nst.resize(content, nst.fit_size(content.shape[:2], size))
        if cfg["mode"] == "content":
            styles = []
        else:
            styles = [
                nst.fit_style(s, content.shape[:2], fit=cfg["style_fit"], scale=cfg["style_scale"])
                for s in styles
            ]
    return _Run(cfg, options, content, styles, blend, weights)


# --------------------------------------------------------------------------- outputs


def _plot(hist: dict, path: Path, title: str) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from imsyn.image import atomic_path

    fig, ax = plt.subplots(figsize=(6, 3.8))
    for k in ("content_loss", "style_loss", "tv_loss", "loss"):
        v = np.asarray(hist[k], np.float64)
        if np.any(v > 0):
            ax.plot(np.arange(len(v)), np.where(v > 0, v, np.nan), label=k)
    ax.set_yscale("log")
    ax.set_xlabel("step")
    ax.grid(alpha=0.3)
    ax.legend()
    ax.set_title(title)
    fig.tight_layout()
    with atomic_path(path) as tmp:
        fig.savefig(tmp, format="png", dpi=100)
    plt.close(fig)


def _inputs_grid(run: _Run) -> np.ndarray:
    imgs = ([run.content] if run.content is not None else []) + list(run.styles)
    h = max(i.shape[0] for i in imgs)
    tiles = [nst.resize(i, (h, max(1, round(i.shape[1] * h / i.shape[0])))) for i in imgs]
    w = max(t.shape[1] for t in tiles)
    tiles = [
        np.pad(t, ((0, h - t.shape[0]), (0, w - t.shape[1]), (0, 0)), constant_values=1.0)
        for t in tiles
    ]
    return make_grid(np.stack(tiles), ncol=len(tiles))


def _final_metrics(res: nst.Result, run: _Run) -> dict:
    s0, s1 = res.style_loss[0], res.style_loss[-1]
    return {
        "mode": run.config["mode"],
        "dtype": run.options.dtype,
        "weights": res.weights,
        "vgg_normalization": run.weights.normalization,
        "steps": int(len(res.loss) - 1),
        "evaluations": res.evaluations,
        "seconds": round(res.seconds, 3),
        "content_loss": float(res.content_loss[-1]),
        "style_loss": float(s1),
        "tv_loss": float(res.tv_loss[-1]),
        "loss": float(res.loss[-1]),
        "loss_reduction": float(res.loss[0] / res.loss[-1]) if res.loss[-1] > 0 else None,
        "style_reduction": float(s0 / s1) if s1 > 0 else None,
        "note": "random VGG-19 features (no weights given): not comparable to pretrained results"
        if res.weights == "random"
        else "",
    }


def report_sections(workdir) -> list[tuple[str, str]]:
    """The report's extra sections: the inputs and the snapshot strip."""
    workdir = Path(workdir)
    figs = figure("inputs.png", "inputs.png") if (workdir / "inputs.png").exists() else ""
    snaps = sorted((workdir / "samples").glob("result_0*.png"))
    strip = "".join(figure(f"samples/{p.name}", p.stem, width=160) for p in snaps)
    return [("Inputs (content, styles)", figs), ("Snapshots", strip or "<p>none</p>")]


def _run_one(cfg: dict, workdir: Path, *, progress: bool = True) -> dict:
    from imsyn.training.writers import write_samples

    run = _prepare(cfg)
    write_json(
        workdir / "config.json",
        {**cfg, "weights_used": run.weights.source, "vgg_normalization": run.weights.normalization},
    )

    def snapshot(step, img, _metrics):
        write_samples(workdir / "samples", step, {"result": img})

    kw = dict(
        options=run.options,
        callback=snapshot,
        snapshot_every=cfg["sample_every"],
        progress=progress,
    )
    if cfg["mode"] == "transfer":
        res = nst.style_transfer(
            run.content,
            run.styles,
            run.weights,
            style_fit="none",  # _prepare fitted them
            original_colors=cfg["original_colors"],
            style_blend=run.style_blend,
            **kw,
        )
    else:
        res = nst.optimize(
            run.weights, content=run.content, styles=run.styles, style_blend=run.style_blend, **kw
        )
    hist = {k: getattr(res, k).tolist() for k in ("content_loss", "style_loss", "tv_loss", "loss")}
    write_text(
        workdir / "metrics.jsonl",
        "".join(
            json.dumps({"step": t, **{k: v[t] for k, v in hist.items()}}) + "\n"
            for t in range(len(hist["loss"]))
        ),
    )
    _plot(hist, workdir / "plots" / "losses.png", f"{cfg['name']} ({cfg['mode']})")
    write_image(workdir / "inputs.png", _inputs_grid(run))
    write_image(workdir / "result.png", res.image)
    write_image(workdir / "eval" / "samples.png", res.image)  # shown by report/sweep pages
    metrics = _final_metrics(res, run)
    write_json(
        workdir / "result.json",
        {"config": cfg, "options": dataclasses.asdict(run.options), **metrics, **hist},
    )
    write_json(workdir / "eval" / "metrics.json", metrics)
    write_report(workdir, sections=report_sections(workdir))
    return metrics


# --------------------------------------------------------------------------- entry points


def _sweep(config, workdir, name: str) -> dict:
    """``config.sweep``: ``configs/nst.py``'s grid ``name`` through the one sweep system."""
    import ml_collections

    from imsyn.report import page
    from imsyn.training import sweep

    workdir = Path(workdir)
    base = ml_collections.ConfigDict(_plain(config))
    base.sweep = ""
    runs = sweep.load_sweep(str(CONFIG_FILE), name)
    sweep.run_sweep(base, runs, workdir)
    names = [n for n, _ in runs]
    results = {n: json.loads((workdir / n / "eval" / "metrics.json").read_text()) for n in names}
    write_json(workdir / "sweep.json", results)
    write_image(workdir / "sweep.png", sweep.results_grid(workdir, names))
    link = '<p>See <a href="comparison.html">comparison.html</a> and <a href="sweep.png">'
    write_text(workdir / "sweep.html", page(f"NST sweep {name}", link + "sweep.png</a>.</p>"))
    return results


def train(config, workdir) -> dict:
    """``train.py`` entry: one optimization (or ``config.sweep``) into ``workdir``.

    Returns:
      ``eval/metrics.json``'s content (a sweep: ``{run name: metrics}``).
    """
    validate(config)
    if config["sweep"]:
        return _sweep(config, workdir, config["sweep"])
    with claim_workdir(workdir, mode="train", task="nst"):
        return _run_one(_plain(config), Path(workdir))


def evaluate(config, workdir) -> dict:
    """``eval.py`` entry: re-measures ``workdir/result.png`` (8-bit, as saved) against the
    config's targets; writes ``eval/metrics.json`` and ``report.html``."""
    validate(config)
    cfg = _plain(config)
    workdir = Path(workdir)
    if cfg["sweep"]:
        raise ConfigError("config.sweep: evaluate one run's workdir (sweep pages are final)")
    with claim_workdir(workdir, mode="eval"):
        if not (workdir / "result.png").exists():
            raise InputError(f"{workdir}: no result.png; run train.py with this workdir first")
        run = _prepare(cfg)
        image = read_float(workdir / "result.png", mode="rgb")
        if cfg["mode"] == "transfer" and cfg["original_colors"]:
            run = run._replace(
                content=nst.gray3(nst.luminance(run.content)),
                styles=[nst.gray3(nst.luminance(s)) for s in run.styles],
            )
            image = nst.gray3(nst.luminance(image))
        if run.content is not None and image.shape != run.content.shape:
            raise InputError(
                f"{workdir}/result.png is {image.shape}, the config gives {run.content.shape}"
            )
        m = nst.measure(
            run.weights,
            image,
            content=run.content,
            styles=run.styles,
            style_blend=run.style_blend,
            options=run.options,
        )
        metrics = {
            "mode": cfg["mode"],
            "dtype": run_dtype(workdir),  # of the run (the measurement is float32)
            "weights": run.weights.source,
            "vgg_normalization": run.weights.normalization,
            "saved_8bit": True,
            **m,
        }
        write_json(workdir / "eval" / "metrics.json", metrics)
        write_report(workdir, sections=report_sections(workdir))
        return metrics

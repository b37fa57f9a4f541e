"""The course write-up (``config.task == "writeup"``): every experiment on one page.

``python eval.py --config=configs/writeup.py[:quick] --workdir=runs/writeup`` runs
:func:`evaluate`: it validates the whole config (every nested task config through its
task's own ``validate``, the data folders, ``only``) before any compute, then runs the
experiments of :func:`experiments` in order, each in its own sub-workdir, and writes
``index.html`` and ``results.json``.

An experiment (:class:`Exp`) is one function ``run(ctx, subdir) -> Output`` plus the
settings it depends on (``key``, including the keys of the experiments whose outputs it
reads). When it finishes, ``state/<section>__<name>.json`` records the key, its
:class:`Output` (numbers, figures, tables, the command that reproduces it) and its wall time; a
rerun skips it while the key is unchanged and redoes it (from an emptied sub-workdir) when a
setting changed or its section is named in ``config.only``; an interrupted one resumes in its
sub-workdir (a GAN from its last checkpoint). The page and ``results.json`` are rebuilt from
the state files alone, so a run with nothing to do finishes in seconds.

The A1/A2 experiments call the libraries (:mod:`imsyn.align`, :mod:`imsyn.poisson`); the
A3/A4/A5 ones run the tasks (:mod:`imsyn.tasks.dcgan`, ...) on the nested configs, so their
sub-workdirs are ordinary run directories (``report.html``, checkpoints, ``metrics.jsonl``).

Progress: one line per experiment on stderr with its index, the elapsed time and the ETA of
the whole, from :data:`COST` (seconds each kind of experiment took in ``:quick`` on the
2-core CPU, scaled by how fast the finished ones went).
"""

from __future__ import annotations

import copy
import html
import json
import shutil
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any, NamedTuple

import ml_collections
import numpy as np

from imsyn import report, validate
from imsyn.align import EMIR_FULL_HEIGHT
from imsyn.errors import ConfigError, InputError
from imsyn.image import read_float, to_float, write_image, write_json, write_text
from imsyn.outputs import claim_workdir, is_workdir
from imsyn.validate import Decl

SECTIONS = {
    "a1": "A1 · Colorizing the Prokudin-Gorskii collection",
    "a2": "A2 · Gradient-domain fusion",
    "a3": "A3 · GANs: DCGAN and CycleGAN with DiffAugment",
    "a4": "A4 · Neural style transfer",
    "a5": "A5 · GAN photo editing",
}
#: the pretrained networks each section needs (the page says when one is missing)
NETWORKS = {
    "a3": ("inception_fid", "lpips_vgg16"),
    "a4": ("vgg19",),
    "a5": ("vgg19", "lpips_vgg16"),
}
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
#: ``eval.py`` holds the write-up's workdir as ``train.py`` holds a run's (imsyn.experiments):
#: an empty folder or an earlier write-up (imsyn.outputs' ownership marker), nothing else
BUILDS_WORKDIR = True


def _sections_field(v):
    if not isinstance(v, str):
        raise ValueError
    parts = [p.strip() for p in v.split(",") if p.strip()]
    if any(p not in SECTIONS for p in parts):
        raise ValueError
    return v


DCGAN_SETTINGS = {
    "basic": {"augment": "basic", "diffaug": ""},
    "deluxe": {"augment": "deluxe", "diffaug": ""},
    "deluxe_diffaug": {"augment": "deluxe", "diffaug": "color,translation,cutout"},
}
CYCLEGAN_VARIANTS = {
    "patch_cycle": {"discriminator": "patch"},
    "patch_nocycle": {"discriminator": "patch", "lambda_cycle": 0.0},
    "dc_cycle": {"discriminator": "dc"},
}


def _names(v, known) -> str:
    if not isinstance(v, str) or not _split(v) or any(n not in known for n in _split(v)):
        raise ValueError
    return v


def _layer_sets(v) -> str:
    from imsyn.models import vgg

    if not isinstance(v, str) or not v.strip():
        raise ValueError
    for layers in v.split(";"):
        if not _split(layers):
            raise ValueError
        try:
            vgg.check_layers(_split(layers))
        except InputError:
            raise ValueError from None
    return v


def _numbers(v, kind) -> str:
    if not isinstance(v, str) or not _split(v):
        raise ValueError
    if any(not (kind(x) >= 0 and np.isfinite(kind(x))) for x in _split(v)):
        raise ValueError
    if kind is float and any(float(x) <= 0 for x in _split(v)):
        raise ValueError
    return v


def _task_field(kind: str, config: str, meaning: str, **changes) -> Decl:
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


#: every field of the write-up config, declared once: default, rule, meaning, one nested
#: table per section (``configs/writeup.py`` builds on these defaults; ``quick`` changes some)
FIELDS = {
    "task": Decl("writeup", validate.one_of("writeup"), "the experiment"),
    "name": Decl("writeup", validate.string(nonempty=True), "the write-up's name"),
    "preset": Decl("default", validate.string(nonempty=True), "the preset: default or quick"),
    "only": Decl(
        "",
        validate.custom(_sections_field, f"'' or a comma list of {', '.join(SECTIONS)}"),
        "'' = every section; or a comma list of a1..a5: redo those",
    ),
    "data_root": Decl(
        "@data",
        validate.string(
            nonempty=True,
            expect="the course data folder (@data: python -m imsyn data fetch course)",
        ),
        "prokudin/, poisson/, nst/, gan/: @data = the fetched course data, or a folder like it",
    ),
    "a1": {
        "timing_repeats": Decl(5, validate.integer(min=1, max=100), "repeats of each timing"),
        "single_scale_radius": Decl(
            15,
            validate.integer(min=1, max=200),
            "± px of the single-scale vs pyramid timing (small plates)",
        ),
    },
    "a2": {
        "isoluminant_size": Decl(
            256, validate.integer(min=16, max=4096), "side of the Color2Gray isoluminant image"
        ),
    },
    "a3": {
        "dcgan_settings": Decl(
            "basic,deluxe,deluxe_diffaug",
            validate.custom(
                lambda v: _names(v, DCGAN_SETTINGS), f"a comma list of {', '.join(DCGAN_SETTINGS)}"
            ),
            "the DCGAN runs: augment/diffaug settings of DCGAN_SETTINGS",
        ),
        "cyclegan_variants": Decl(
            "patch_cycle,patch_nocycle,dc_cycle",
            validate.custom(
                lambda v: _names(v, CYCLEGAN_VARIANTS),
                f"a comma list of {', '.join(CYCLEGAN_VARIANTS)}",
            ),
            "the CycleGAN runs on the cats: variants of CYCLEGAN_VARIANTS",
        ),
        "dcgan": _task_field(
            "a DCGAN config", "dcgan:grumpy", "the grumpy-cat DCGAN (the settings vary it)"
        ),
        "cyclegan": _task_field(
            "a CycleGAN config", "cyclegan:cats_cpu", "the cats CycleGAN (the variants vary it)"
        ),
        "emoji": _task_field("a CycleGAN config", "cyclegan", "the main job (emoji)"),
    },
    "a4": {
        "nst": _task_field("an NST config", "nst", "the style transfers", size=512, sample_every=0),
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
    },
    "a5": {
        "generator": _task_field(
            "a DCGAN config (style generator)", "dcgan:style", "the style-based GAN to edit"
        ),
        "editing": _task_field("an editing config", "editing", "the projections and edits"),
    },
}
#: data each section reads, relative to ``config.data_root``
DATA = {
    "a1": ("prokudin", "prokudin/reported_offsets.md"),
    "a2": (
        "poisson/toy_problem.png",
        "poisson/bear_pool/source_01.jpg",
        "poisson/bear_pool/source_01_mask.png",
        "poisson/bear_pool/source_01_newsource.png",
        "poisson/bear_pool/target_01.jpg",
        "poisson/bear_pool/target_01_mask.png",
    ),
    "a3": ("gan/grumpifyAprocessed", "gan/grumpifyBprocessed"),
}


class Output(dict):
    """What an experiment leaves for the page: ``results`` (numbers), ``figures``
    (``[src, caption]`` with ``src`` relative to the write-up workdir), ``tables``
    (``{"caption", "header", "rows"}``), ``command`` and ``notes``."""

    def __init__(self, results=None, figures=(), tables=(), command="", notes=()):
        super().__init__(
            results=results or {},
            figures=[list(f) for f in figures],
            tables=list(tables),
            command=command,
            notes=list(notes),
        )


class Exp(NamedTuple):
    id: str  # "<section>/<name>": also the sub-workdir
    title: str
    kind: str  # a key of COST
    key: dict  # the settings it depends on
    run: Callable[[Any, Path], Output]
    needs: tuple[str, ...] = ()  # experiments whose outputs it reads

    @property
    def section(self) -> str:
        return self.id.split("/")[0]


class _Ctx(NamedTuple):
    config: Any
    workdir: Path
    data: Path


# --------------------------------------------------------------------------- validation


def _task_module(name: str):
    from imsyn.experiments import get_experiment

    return get_experiment(ml_collections.ConfigDict({"task": name}))


def validate_config(config) -> None:
    """Every field, every nested task config and every data folder, before any compute.

    Raises:
      ConfigError: one line naming the field or the missing file.
    """
    validate.check(config, FIELDS)
    root = data_root(config)
    sections = _sections(config["only"]) or SECTIONS
    for section in sections:
        for rel in DATA.get(section, ()):
            _require(root / rel, f"config.data_root (section {section} needs it)")
    for section in ("a4",) if "a4" in sections else ():
        for field, sub in (("contents", "content"), ("styles", "style")):
            for name in _split(config[section][field]):
                _require(root / "nst" / sub / name, f"config.a4.{field}")
    for exp in experiments(config):  # the exact configs the tasks will get
        if exp.kind in ("dcgan", "cyclegan", "emoji", "nst", "generator"):
            sub = ml_collections.ConfigDict(exp.key["config"])
            try:
                _task_module(sub.task).validate(sub)
            except ConfigError as e:
                raise ConfigError(f"{exp.id}: {e}") from None


def data_root(config) -> Path:
    """``config.data_root`` resolved (``@data``: the fetched course data,
    :func:`imsyn.course_data.resolve`)."""
    from imsyn.course_data import resolve

    return resolve(config.data_root)


def _require(path: Path, what: str) -> None:
    """A missing data file is one line; in the fetched data folder it names the fetch."""
    from imsyn.course_data import fetch_hint

    if not path.exists():
        hint = fetch_hint(path)
        state = f"is not fetched: {hint}" if hint else "does not exist"
        raise ConfigError(f"{what}: {path} {state}")


def _split(text: str) -> list[str]:
    return [t.strip() for t in text.split(",") if t.strip()]


def _sections(only: str) -> list[str]:
    return _split(only)


# --------------------------------------------------------------------------- experiments


def _task_config(base, name: str, **changes) -> ml_collections.ConfigDict:
    c = copy.deepcopy(base)
    for k, v in changes.items():
        if k not in c:
            raise ConfigError(f"{name}: unknown config field {k}")
        c[k] = v
    c.name = name
    return c


def _task_exp(eid, title, kind, cfg, render, needs=()) -> Exp:
    """An experiment that trains the task of ``cfg`` into its sub-workdir."""
    key = {"config": cfg.to_dict()}

    def run(ctx: _Ctx, sub: Path) -> Output:
        _task_module(cfg.task).train(cfg, sub)
        out = render(ctx, sub, cfg)
        out["command"] = _command(cfg)
        return out

    return Exp(eid, title, kind, key, run, needs)


def experiments(config) -> list[Exp]:
    """Every experiment of the write-up, in page order."""
    root = data_root(config)
    exps = [
        Exp("a1/plates", "Every plate, aligned and colorized", "a1", _key(config, "a1"), a1_plates),
        Exp("a1/metric", "NCC vs SSD", "a1", _key(config, "a1"), a1_metric),
        Exp("a1/pyramid", "Single-scale vs pyramid search", "a1", _key(config, "a1"), a1_pyramid),
        Exp("a1/features", "Intensity vs gradient features", "a1", _key(config, "a1"), a1_features),
        Exp("a1/finish", "Crop, contrast and white balance", "a1", _key(config, "a1"), a1_finish),
        Exp("a2/toy", "Toy problem: an image from its gradients", "a2", _key(config, "a2"), a2_toy),
        Exp("a2/blend", "Bear in the pool: copy-paste, Poisson, mixed", "a2", _key(config, "a2"),
            a2_blend),
        Exp("a2/color2gray", "Color to gray on an isoluminant image", "a2", _key(config, "a2"),
            a2_color2gray),
        Exp("a2/extras", "More gradient-domain edits", "a2", _key(config, "a2"), a2_extras),
    ]  # fmt: skip
    a3 = config.a3

    def cats(folder: str, preset_spec: str) -> str:
        # the cat folder under data_root, with the options of the preset's spec (its
        # held-out test fraction)
        _, sep, options = preset_spec.partition("?")
        return f"folder:{root / 'gan' / folder}{sep}{options}"

    for name in _split(a3.dcgan_settings):
        changes = DCGAN_SETTINGS[name]
        data = cats("grumpifyBprocessed", a3.dcgan.data)
        cfg = _task_config(a3.dcgan, f"dcgan_{name}", data=data, **changes)
        exps.append(_task_exp(f"a3/dcgan_{name}", f"DCGAN, {name}", "dcgan", cfg, _gan_render))
    cats_a = cats("grumpifyAprocessed", a3.cyclegan.data)
    cats_b = cats("grumpifyBprocessed", a3.cyclegan.data_y)
    for name in _split(a3.cyclegan_variants):
        changes = CYCLEGAN_VARIANTS[name]
        cfg = _task_config(a3.cyclegan, f"cyclegan_{name}", data=cats_a, data_y=cats_b, **changes)
        exps.append(
            _task_exp(f"a3/cyclegan_{name}", f"CycleGAN cats, {name}", "cyclegan", cfg, _gan_render)
        )
    cfg = _task_config(a3.emoji, "cyclegan_emoji")
    exps.append(_task_exp("a3/emoji", "CycleGAN emoji (the main job)", "emoji", cfg, _gan_render))

    a4 = config.a4
    content = str(root / "nst" / "content" / _split(a4.contents)[0])
    style = str(root / "nst" / "style" / _split(a4.styles)[0])
    for layers in a4.content_layers.split(";"):
        tag = layers.replace(",", "+")
        cfg = _task_config(a4.nst, f"content_{tag}", mode="content", content=content,
                           content_layers=layers)  # fmt: skip
        exps.append(_task_exp(f"a4/content_{tag}", f"content {layers}", "nst", cfg, _nst_render))
    for layers in a4.texture_layers.split(";"):
        for seed in (int(x) for x in _split(a4.texture_seeds)):
            tag = f"{layers.replace(',', '+')}_seed{seed}"
            cfg = _task_config(a4.nst, f"texture_{tag}", mode="texture", style=style,
                               style_layers=layers, seed=seed)  # fmt: skip
            exps.append(_task_exp(f"a4/texture_{tag}", f"texture {tag}", "nst", cfg, _nst_render))
    for w in (float(x) for x in _split(a4.style_weights)):
        tag = f"{w:.0e}".replace("+0", "")
        cfg = _task_config(a4.nst, f"style_weight_{tag}", mode="transfer", content=content,
                           style=style, style_weight=float(w))  # fmt: skip
        exps.append(_task_exp(f"a4/weight_{tag}", f"style weight {tag}", "nst", cfg, _nst_render))
    for init in ("noise", "content"):
        for c in _split(a4.contents):
            for s in _split(a4.styles):
                tag = f"{init}_{Path(c).stem}_{Path(s).stem}"
                cfg = _task_config(a4.nst, f"grid_{tag}", mode="transfer", size=a4.grid_size,
                                   content=str(root / "nst" / "content" / c),
                                   style=str(root / "nst" / "style" / s), init=init)  # fmt: skip
                exps.append(_task_exp(f"a4/grid_{tag}", f"grid {tag}", "nst", cfg, _nst_render))
    last = _split(a3.dcgan_settings)[-1]  # A4 restyles this page's A2 blend and A3 samples
    own = (("a2/blend", "a2/blend/poisson.png"),
           (f"a3/dcgan_{last}", f"a3/dcgan_{last}/eval/samples.png"))  # fmt: skip
    for need, src in own:
        tag = need.replace("/", "_")
        cfg = _task_config(a4.nst, f"own_{tag}", mode="transfer", style=style)
        key = {"config": cfg.to_dict(), "content": src, "needs": _by_id(exps, need).key}
        exps.append(Exp(f"a4/own_{tag}", f"style transfer on {src}", "nst", key,
                        _own_result_run(cfg, src), needs=(need,)))  # fmt: skip

    a5 = config.a5
    gen = _task_config(a5.generator, "style_generator")
    exps.append(_task_exp("a5/generator", "The style generator", "generator", gen, _gan_render))
    for mode in ("project", "interpolate", "draw"):
        exps.append(_editing_exp(config, mode, gen))
    return exps


def _key(config, section) -> dict:
    return {"section": config[section].to_dict(), "data_root": config.data_root}


def _command(cfg) -> str:
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


# --------------------------------------------------------------------------- A1


def _timed(fn, repeats: int):
    """(result, median seconds, [min, max]) after one warm-up call (compilation)."""
    out = fn()
    ts = []
    for _ in range(repeats):
        t = time.perf_counter()
        out = fn()
        ts.append(time.perf_counter() - t)
    return out, float(np.median(ts)), [float(min(ts)), float(max(ts))]


def _plates(ctx: _Ctx) -> list[Path]:
    exts = (".jpg", ".jpeg", ".png", ".tif", ".tiff")
    return sorted(p for p in (ctx.data / "prokudin").rglob("*") if p.suffix.lower() in exts)


def _read_plate(path: Path) -> np.ndarray:
    from imsyn.image import read_image, rgb_to_gray

    plate = to_float(read_image(path))
    return rgb_to_gray(plate) if plate.ndim == 3 else plate


def _consensus(ctx: _Ctx) -> dict:
    """``{(plate, "g"|"r"): (dy, dx)}``: the consensus column of ``reported_offsets.md``."""
    from imsyn.align import reported_offsets

    return reported_offsets(ctx.data / "prokudin" / "reported_offsets.md")


def _reported(ctx: _Ctx, path: Path, plate_h: int, cons: dict) -> dict:
    """The consensus offsets of a plate in its own pixels (emir's copy is downscaled)."""
    key = path.stem.split("_")[0]
    scale = plate_h / EMIR_FULL_HEIGHT if key == "emir" else 1.0
    return {
        ch: tuple(round(v * scale, 1) for v in cons[(key, ch)])
        for ch in ("g", "r")
        if (key, ch) in cons
    }


def _err(found, ref) -> float | None:
    return None if ref is None else float(max(abs(a - b) for a, b in zip(found, ref, strict=True)))


def _fmt_off(o) -> str:
    return "—" if o is None else f"({o[0]:g}, {o[1]:g})"


def a1_plates(ctx: _Ctx, sub: Path) -> Output:
    from imsyn import align

    cons, rows, figs, res = _consensus(ctx), [], [], {}
    for path in _plates(ctx):
        plate = _read_plate(path)
        out, t, spread = _timed(lambda p=plate: align.colorize(p), ctx.config.a1.timing_repeats)
        write_image(sub / f"{path.stem}.jpg", out.image)
        figs.append((f"{_rel(ctx, sub)}/{path.stem}.jpg", f"{path.name}: G {out.offsets['g']}, "
                     f"R {out.offsets['r']}"))  # fmt: skip
        ref = _reported(ctx, path, plate.shape[0], cons)
        err = [_err(out.offsets[c], ref.get(c)) for c in ("g", "r")]
        res[path.stem] = {
            "offsets": {c: list(out.offsets[c]) for c in ("g", "r")},
            "reported": {c: list(v) for c, v in ref.items()},
            "max_error_px": max((e for e in err if e is not None), default=None),
            "seconds": t,
            "seconds_range": spread,
            "plate_shape": list(plate.shape),
        }
        rows.append([path.stem, f"{plate.shape[1]}×{plate.shape[0]}", _fmt_off(out.offsets["g"]),
                     _fmt_off(ref.get("g")), _fmt_off(out.offsets["r"]), _fmt_off(ref.get("r")),
                     res[path.stem]["max_error_px"], round(1000 * t, 1)])  # fmt: skip
    table = {
        "caption": "Offsets (dy, dx) of G and R onto B in plate pixels, beside the consensus of "
        "seven published write-ups (prokudin/reported_offsets.md; emir's scaled to the 500×1300 "
        "copy); time per plate (decode excluded, compiled), median of "
        f"{ctx.config.a1.timing_repeats}",
        "header": [
            "plate",
            "size",
            "G",
            "G reported",
            "R",
            "R reported",
            "max error (px)",
            "time (ms)",
        ],  # fmt: skip
        "rows": rows,
    }
    cmd = "python -m imsyn colorize PLATE --out-dir OUT"
    return Output(res, figs, [table], cmd)


def _channels(path: Path):
    from imsyn.align import split_plate

    return split_plate(_read_plate(path))


def a1_metric(ctx: _Ctx, sub: Path) -> Output:
    from imsyn import align

    rows, res = [], {}
    for path in _plates(ctx):
        b, g, r = _channels(path)
        entry = {}
        for metric in ("ncc", "ssd"):
            out, t, spread = _timed(
                lambda m=metric, ch=(b, g, r): align.align_channels(*ch, metric=m),
                ctx.config.a1.timing_repeats,
            )
            entry[metric] = {"offsets": {c: list(out.offsets[c]) for c in "gr"}, "seconds": t}
        same = entry["ncc"]["offsets"] == entry["ssd"]["offsets"]
        res[path.stem] = {**entry, "agree": same}
        rows.append([path.stem, _fmt_off(entry["ncc"]["offsets"]["g"]),
                     _fmt_off(entry["ncc"]["offsets"]["r"]), _fmt_off(entry["ssd"]["offsets"]["g"]),
                     _fmt_off(entry["ssd"]["offsets"]["r"]), "yes" if same else "no",
                     round(1000 * entry["ncc"]["seconds"], 1),
                     round(1000 * entry["ssd"]["seconds"], 1)])  # fmt: skip
    table = {
        "caption": "Normalized cross-correlation vs sum of squared differences (both on gradient "
        "features, pyramid search)",
        "header": ["plate", "NCC G", "NCC R", "SSD G", "SSD R", "same", "NCC ms", "SSD ms"],
        "rows": rows,
    }
    return Output(res, (), [table], "python -m imsyn colorize PLATE --metric ssd --out-dir OUT")


def _upscaled(channels, height: int):
    """The channels resized (bicubic) so the plate is ``height`` px tall: a full-size stand-in."""
    from PIL import Image

    h, w = channels[0].shape
    size = (round(w * height / (3 * h)), height // 3)
    return [np.asarray(Image.fromarray(c).resize(size, Image.BICUBIC)) for c in channels]


def a1_pyramid(ctx: _Ctx, sub: Path) -> Output:
    from imsyn import align

    small = ctx.config.a1.single_scale_radius
    rows, res = [], {}
    cases = [(p.stem, _channels(p), small) for p in _plates(ctx)]
    emir = next((c for c in cases if c[0].startswith("emir")), None)
    if emir is not None:  # the course's large plates: ±8 % of the channel, the default radius
        chans = _upscaled(emir[1], EMIR_FULL_HEIGHT)
        cases.append((f"emir upscaled to {EMIR_FULL_HEIGHT} px", chans, None))
    for label, (b, g, r), radius in cases:
        entry = {}
        for name, coarse in (("single_scale", 1 << 20), ("pyramid", 64)):
            out, t, spread = _timed(
                lambda c=coarse, ch=(b, g, r), rad=radius: align.align_channels(
                    *ch, radius=rad, coarse_size=c
                ),
                ctx.config.a1.timing_repeats,
            )
            entry[name] = {"offsets": {c: list(out.offsets[c]) for c in "gr"}, "seconds": t,
                           "seconds_range": spread}  # fmt: skip
        reach = radius or max(8, int(np.ceil(0.08 * max(b.shape))))
        res[label] = {**entry, "radius": reach}
        ts, tp = entry["single_scale"]["seconds"], entry["pyramid"]["seconds"]
        rows.append([label, f"{b.shape[1]}×{b.shape[0]}", f"±{reach}", round(1000 * ts, 2),
                     round(1000 * tp, 2), round(ts / tp, 2), "yes" if entry["single_scale"][
                     "offsets"] == entry["pyramid"]["offsets"] else "no"])  # fmt: skip
    table = {
        "caption": "Exhaustive single-scale search (an FFT correlation over the whole ± radius "
        "window) vs the image pyramid (coarsest level ≤ 64 px, then 3×3 hill climbing per "
        f"level); compiled, median of {ctx.config.a1.timing_repeats}. The course's plates are "
        "small, so the last row upscales emir to the size of the Library of Congress original.",
        "header": [
            "plate",
            "channel",
            "radius",
            "single-scale ms",
            "pyramid ms",
            "speed-up",
            "same offsets",
        ],  # fmt: skip
        "rows": rows,
    }
    return Output(res, (), [table], "python benchmarks/align.py --quick")


def a1_features(ctx: _Ctx, sub: Path) -> Output:
    from imsyn import align

    cons, rows, res, figs = _consensus(ctx), [], {}, []
    for path in _plates(ctx):
        plate = _read_plate(path)
        ref = _reported(ctx, path, plate.shape[0], cons)
        entry = {}
        for kind in ("intensity", "gradient"):
            out = align.colorize(plate, features=kind)
            err = [_err(out.offsets[c], ref.get(c)) for c in "gr"]
            entry[kind] = {
                "offsets": {c: list(out.offsets[c]) for c in "gr"},
                "max_error_px": max((e for e in err if e is not None), default=None),
            }
            if path.stem.startswith("emir"):
                write_image(sub / f"{path.stem}_{kind}.jpg", out.image)
                figs.append((f"{_rel(ctx, sub)}/{path.stem}_{kind}.jpg", f"emir, {kind} features: "
                             f"G {out.offsets['g']}, R {out.offsets['r']}"))  # fmt: skip
        res[path.stem] = entry
        ints, grad = entry["intensity"], entry["gradient"]
        rows.append([path.stem, _fmt_off(ints["offsets"]["r"]), ints["max_error_px"],
                     _fmt_off(grad["offsets"]["r"]), grad["max_error_px"],
                     _fmt_off(ref.get("r"))])  # fmt: skip
    table = {
        "caption": "Raw intensities vs gradient-magnitude features (NCC): emir's channels differ "
        "in brightness (his robe is bright in one plate and dark in another), so intensity NCC "
        "locks onto the wrong R offset; gradients agree across channels",
        "header": [
            "plate",
            "intensity R",
            "intensity max error",
            "gradient R",
            "gradient max error",
            "R reported",
        ],  # fmt: skip
        "rows": rows,
    }
    return Output(
        res, figs, [table], "python -m imsyn colorize PLATE --features intensity --out-dir OUT"
    )


def a1_finish(ctx: _Ctx, sub: Path) -> Output:
    from imsyn import align

    plates = _plates(ctx)
    path = next((p for p in plates if p.stem == "cathedral"), plates[0])
    plate = _read_plate(path)
    steps = {
        "raw": dict(crop=False, contrast=False, balance=False),
        "cropped": dict(crop=True, contrast=False, balance=False),
        "cropped_contrast_balance": dict(crop=True, contrast=True, balance=True),
    }
    figs, res = [], {}
    for name, kw in steps.items():
        out = align.colorize(plate, **kw)
        write_image(sub / f"{name}.jpg", out.image)
        caption = f"{path.stem}: {name.replace('_', ', ')}"
        figs.append((f"{_rel(ctx, sub)}/{name}.jpg", caption))
        mean = out.image.reshape(-1, 3).mean(0)
        res[name] = {
            "shape": list(out.image.shape),
            "crop_box": list(out.crop),
            "mean_rgb": [round(float(v), 4) for v in mean],
        }
    cmd = (
        "python -m imsyn colorize PLATE [--no-crop --no-contrast --no-white-balance] --out-dir OUT"
    )
    return Output(res, figs, (), cmd)


# --------------------------------------------------------------------------- A2


def _save(ctx: _Ctx, sub: Path, name: str, img, caption: str, figs: list) -> None:
    write_image(sub / name, np.clip(img, 0, 1))
    figs.append((f"{_rel(ctx, sub)}/{name}", caption))


def _bear(ctx: _Ctx) -> dict:
    d = ctx.data / "poisson" / "bear_pool"
    return {
        "source": read_float(d / "source_01.jpg", mode="rgb"),
        "source_mask": read_float(d / "source_01_mask.png", mode="gray") >= 0.5,
        "newsource": read_float(d / "source_01_newsource.png", mode="rgb"),
        "target": read_float(d / "target_01.jpg", mode="rgb"),
        "mask": read_float(d / "target_01_mask.png", mode="gray") >= 0.5,
    }


def a2_toy(ctx: _Ctx, sub: Path) -> Output:
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


def a2_blend(ctx: _Ctx, sub: Path) -> Output:
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


def a2_color2gray(ctx: _Ctx, sub: Path) -> Output:
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


def a2_extras(ctx: _Ctx, sub: Path) -> Output:
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


# --------------------------------------------------------------------------- A3 / A4 / A5


def _rel(ctx: _Ctx, sub: Path) -> str:
    return sub.relative_to(ctx.workdir).as_posix()


def _scalars(d: dict, prefix: str = "") -> dict:
    """The numbers (and short strings) of a metrics dict, nested keys joined by ``/``."""
    out = {}
    for k, v in d.items():
        if isinstance(v, dict) and k in ("x2y", "y2x", "baseline_identity", "baseline_color"):
            out.update(_scalars(v, f"{prefix}{k}/"))
        elif isinstance(v, bool | int | float) or (isinstance(v, str) and len(v) < 40):
            out[f"{prefix}{k}"] = v
    return out


def _metrics(sub: Path) -> dict:
    return _read_json(sub / "eval" / "metrics.json") or {}


def _gan_render(ctx: _Ctx, sub: Path, cfg) -> Output:
    rel = _rel(ctx, sub)
    figs = []
    steps = sorted(p for p in (sub / "samples").glob("*_[0-9]*.png"))
    names = sorted({p.name.rsplit("_", 1)[0] for p in steps})
    for name in names[:1]:
        snaps = [p for p in steps if p.name.rsplit("_", 1)[0] == name]
        pick = [snaps[int(i)] for i in np.unique(np.linspace(0, len(snaps) - 1, 4).round())]
        figs += [(f"{rel}/samples/{p.name}", f"{name}, step {int(p.stem.rsplit('_', 1)[1])}")
                 for p in pick]  # fmt: skip
    for p in sorted((sub / "eval").glob("*.png")):
        figs.append((f"{rel}/eval/{p.name}", f"eval/{p.name}"))
    if (sub / "plots" / "losses.png").exists():
        figs.append((f"{rel}/plots/losses.png", "losses"))
    m = _metrics(sub)
    notes = [m["features_note"]] if m.get("features_note") else []
    return Output(_scalars(m), figs, (), notes=notes)


def _nst_render(ctx: _Ctx, sub: Path, cfg) -> Output:
    m = _metrics(sub)
    keep = ("seconds", "steps", "content_loss", "style_loss", "style_reduction", "weights")
    return Output(
        {k: m[k] for k in keep if k in m},
        [(f"{_rel(ctx, sub)}/result.png", f"{cfg.name} ({m.get('seconds', 0):.1f} s)")],
        notes=[m["note"]] if m.get("note") else [],
    )


def _own_result_run(cfg, src: str):
    def run(ctx: _Ctx, sub: Path) -> Output:
        c = copy.deepcopy(cfg)
        c.content = str(ctx.workdir / src)
        _task_module("nst").train(c, sub)
        out = _nst_render(ctx, sub, c)
        out["command"] = _command(c)
        return out

    return run


def _editing_exp(config, mode: str, gen) -> Exp:
    from imsyn.tasks.editing import MODE_DEFAULTS

    changes = {k: v for k, v in MODE_DEFAULTS[mode].items() if k not in ("name", "steps")}
    cfg = _task_config(config.a5.editing, f"edit_{mode}", **changes)
    key = {"config": cfg.to_dict(), "generator": gen.to_dict()}

    def run(ctx: _Ctx, sub: Path) -> Output:
        c = copy.deepcopy(cfg)
        c.generator_workdir = str(ctx.workdir / "a5" / "generator")
        _task_module("editing").train(c, sub)
        rel = _rel(ctx, sub)
        figs = [(f"{rel}/eval/{p.name}", p.stem) for p in sorted((sub / "eval").glob("*.png"))]
        m = _metrics(sub)
        res = {k: v for k, v in m.items() if isinstance(v, int | float) and "/" in k}
        return Output(res, figs, command=_command(c))

    return Exp(f"a5/{mode}", {"project": "Projection into z, w, w+", "interpolate":
               "Interpolation", "draw": "Drawing from scribbles"}[mode], "editing", key, run,
               needs=("a5/generator",))  # fmt: skip


# --------------------------------------------------------------------------- the run


def _state_path(workdir: Path, exp: Exp) -> Path:
    return workdir / "state" / f"{exp.id.replace('/', '__')}.json"


def _state(workdir: Path, exp: Exp) -> dict | None:
    return _read_json(_state_path(workdir, exp))


def _finished(workdir: Path, exp: Exp, key: dict) -> bool:
    s = _state(workdir, exp)
    return bool(s and s.get("done") and s.get("key") == key)


def _jsonable(x):
    return json.loads(json.dumps(x, default=lambda o: o.item() if hasattr(o, "item") else str(o)))


def plan(config, workdir) -> list[Exp]:
    """The experiments this run does: those of the ``only`` sections (all of them: a redo), or
    every unfinished or changed one; plus the unfinished experiments they read and the ones
    that read theirs (style transfer on the A2 blend follows a redone A2).

    A redo is recorded in ``state/redo.json`` until it completes, so rerunning the same
    ``only`` command after an interruption continues it instead of starting it over.
    """
    workdir = Path(workdir)
    exps = experiments(config)
    keys = {e.id: _jsonable(e.key) for e in exps}
    only = sorted(set(_sections(config.only)))
    todo = {e.id for e in exps if not _finished(workdir, e, keys[e.id])}
    redo = _read_json(workdir / "state" / "redo.json") if only else None
    if only and redo and redo.get("only") == only:
        todo = set(redo["pending"]) | {i for i in todo if i.split("/")[0] in only}
    elif only:
        todo = {e.id for e in exps if e.section in only}
    for _ in range(2):  # needs come earlier in the page: two passes settle it
        for e in exps:
            if e.id in todo:
                todo |= {n for n in e.needs if not _finished(workdir, _by_id(exps, n), keys[n])}
            if any(n in todo for n in e.needs):
                todo.add(e.id)
    if only and not (redo and redo.get("only") == only):
        write_json(workdir / "state" / "redo.json", {"only": only, "pending": sorted(todo)})
    return [e for e in exps if e.id in todo]


def _read_json(path: Path):
    try:
        return json.loads(path.read_text())
    except (OSError, json.JSONDecodeError):
        return None


def _mark_redone(workdir: Path, eid: str) -> None:
    path = workdir / "state" / "redo.json"
    redo = _read_json(path)
    if redo:
        redo["pending"] = [p for p in redo["pending"] if p != eid]
        if redo["pending"]:
            write_json(path, redo)
        else:
            path.unlink()


def _by_id(exps: list[Exp], eid: str) -> Exp:
    return next(e for e in exps if e.id == eid)


def evaluate(config, workdir) -> dict:
    """``eval.py`` entry: runs what :func:`plan` says, then writes the page; returns the
    content of ``results.json``."""
    validate_config(config)
    workdir = Path(workdir)
    # held as train.py holds a run (re-entrant under eval.py): an empty folder or its own
    # earlier write-up (imsyn.outputs' marker), never a folder of the user's files
    with claim_workdir(workdir, mode="train", task="writeup"):
        return _evaluate_claimed(config, workdir)


def _evaluate_claimed(config, workdir: Path) -> dict:
    from imsyn.progress import _fmt_time

    if not (workdir / "config.json").exists():
        write_json(workdir / "config.json", {"task": "writeup", "name": config.name})
    ctx = _Ctx(config, workdir, data_root(config))
    todo = plan(config, workdir)
    total = sum(COST[e.kind] for e in todo)
    done_cost, t0 = 0.0, time.perf_counter()
    for i, e in enumerate(todo):
        elapsed = time.perf_counter() - t0
        speed = elapsed / done_cost if done_cost else 1.0
        eta = (total - done_cost) * speed
        print(f"writeup: {i + 1}/{len(todo)} {e.id} [{_fmt_time(elapsed)} elapsed, "
              f"ETA {_fmt_time(eta)}]", file=sys.stderr, flush=True)  # fmt: skip
        key = _jsonable(e.key)
        sub = workdir / e.id
        s = _state(workdir, e)
        resumable = s and s.get("key") == key and not s.get("done") and is_workdir(sub)
        if sub.exists() and not resumable:
            shutil.rmtree(sub)  # another setting, or redone: start clean (else it resumes)
        sub.mkdir(parents=True, exist_ok=True)
        write_json(_state_path(workdir, e), {"key": key, "done": False})
        t = time.perf_counter()
        out = e.run(ctx, sub)
        write_json(_state_path(workdir, e), {"key": key, "done": True, "output": _jsonable(out),
                                             "seconds": time.perf_counter() - t})  # fmt: skip
        _mark_redone(workdir, e.id)
        done_cost += COST[e.kind]
    if todo:
        print(f"writeup: {len(todo)} experiments in {_fmt_time(time.perf_counter() - t0)}",
              file=sys.stderr)  # fmt: skip
    return write_page(config, workdir)


train = evaluate  # ``train.py --config=configs/writeup.py`` does the same


# --------------------------------------------------------------------------- the page

GROUPS = {
    "dcgan": "DCGAN on the grumpy cats: basic vs deluxe augmentation vs deluxe + DiffAugment",
    "cyclegan": "CycleGAN, Russian blue (X) ↔ grumpy (Y) cats: cycle loss and discriminator",
    "emoji": "CycleGAN, Twemoji (X) ↔ OpenMoji (Y): the main job, paired metrics",
    "content": "Content reconstruction from noise: single layers and a layer set",
    "texture": "Texture synthesis from noise: single layers and layer sets, two seeds",
    "weight": "Style weight sweep (from the content image)",
    "grid": "Content × style grids, from noise and from the content image",
    "own": "Style transfer applied to this page's own A2 and A3 results",
    "generator": "The style-based generator (z → w) that A5 edits",
}


def _group(exp: Exp) -> str:
    name = exp.id.split("/")[1]
    return name.split("_")[0] if exp.section in ("a3", "a4") else name


def _figures(figs: list, width: int | None = None) -> str:
    return "".join(report.figure(src, cap, width=width) for src, cap in figs)


def _results_table(rows: dict[str, dict]) -> str:
    cols = []
    for r in rows.values():
        cols += [k for k in r if k not in cols and not isinstance(r[k], dict | list)]
    if not cols:
        return ""
    body = [[n, *(r.get(c, "") for c in cols)] for n, r in rows.items()]
    return report.table(["run", *cols], body)


def _grid_html(states: dict[str, dict], exps: list[Exp], config) -> str:
    contents, styles = _split(config.a4.contents), _split(config.a4.styles)
    parts = []
    for init in ("noise", "content"):
        rows = []
        for c in contents:
            cells = [Path(c).stem]
            for s in styles:
                st = states.get(f"a4/grid_{init}_{Path(c).stem}_{Path(s).stem}")
                figs = st["output"]["figures"] if st else []
                cells.append(report.Html(_figures(figs, 200) if figs else "not run"))
            rows.append(cells)
        parts.append(f"<h4>from {init}</h4>" + report.table(["content \\ style", *styles], rows))
    return "".join(parts)


def write_page(config, workdir) -> dict:
    """Writes ``index.html`` and ``results.json`` from the finished experiments' records."""
    from imsyn import weights

    workdir = Path(workdir)
    exps = experiments(config)
    keys = {e.id: _jsonable(e.key) for e in exps}
    states = {e.id: _state(workdir, e) for e in exps if _finished(workdir, e, keys[e.id])}
    results: dict[str, Any] = {"preset": config.preset, "sections": {}}
    toc, body = [], []
    for section, title in SECTIONS.items():
        anchor = section
        toc.append(f'<li><a href="#{anchor}">{html.escape(title)}</a></li>')
        parts = [f'<h2 id="{anchor}">{html.escape(title)}</h2>']
        missing = [n for n in NETWORKS.get(section, ()) if weights.cached(n) is None]
        if missing:
            parts.append(
                f'<p class="note">Pretrained network(s) not fetched: {", ".join(missing)} — '
                "the numbers of this section use the fallbacks named beside them; run "
                f"<code>python -m imsyn weights fetch {' '.join(missing)}</code> and rerun.</p>"
            )
        sec_exps = [e for e in exps if e.section == section]
        seconds = sum(states[e.id]["seconds"] for e in sec_exps if e.id in states)
        results["sections"][section] = {"seconds": seconds, "experiments": {}}
        groups: dict[str, list[Exp]] = {}
        for e in sec_exps:
            groups.setdefault(_group(e), []).append(e)
        for g, members in groups.items():
            head = GROUPS.get(g) or members[0].title
            parts.append(f"<h3>{html.escape(head)}</h3>")
            rows, notes, cmds = {}, set(), []
            for e in members:
                st = states.get(e.id)
                if st is None:
                    parts.append(f'<p class="note">{html.escape(e.id)}: not run yet.</p>')
                    continue
                out = st["output"]
                results["sections"][section]["experiments"][e.id] = {
                    "results": out["results"], "seconds": st["seconds"], "command": out["command"],
                }  # fmt: skip
                for t in out["tables"]:
                    parts.append(f"<p>{html.escape(t['caption'])}</p>")
                    parts.append(report.table(t["header"], t["rows"]))
                if g != "grid":
                    parts.append(_figures(out["figures"], 256 if section == "a4" else None))
                flat = {k: v for k, v in out["results"].items() if not isinstance(v, dict)}
                if flat and not out["tables"]:
                    rows[e.id.split("/")[1]] = {**flat, "wall s": round(st["seconds"], 1)}
                notes |= set(out["notes"])
                if out["command"]:
                    cmds.append(out["command"])
            if g == "grid":
                parts.append(_grid_html(states, exps, config))
            parts.append(_results_table(rows))
            parts += [f'<p class="note">{html.escape(n)}</p>' for n in sorted(notes) if n]
            if cmds:
                listing = html.escape("\n".join(dict.fromkeys(cmds)))
                parts.append(f"<details><summary>commands</summary><pre>{listing}</pre></details>")
        body.append("".join(parts))
    n_done = len(states)
    intro = (
        f"<h1>imsyn write-up ({html.escape(config.preset)})</h1>"
        f"<p>{n_done} of {len(exps)} experiments. Made by <code>python eval.py "
        f"--config=configs/writeup.py{':quick' if config.preset == 'quick' else ''} "
        f"--workdir={html.escape(str(workdir))}</code>; every number is in "
        '<a href="results.json">results.json</a>.</p>'
        f"<ul>{''.join(toc)}</ul>"
    )
    write_text(workdir / "index.html", report.page("imsyn write-up", intro + "".join(body)))
    results["experiments_done"] = n_done
    results["experiments_total"] = len(exps)
    write_json(workdir / "results.json", results)
    return results

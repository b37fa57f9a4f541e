"""GAN editing experiment (``config.task == "editing"``): config -> run -> outputs.

``train(config, workdir)`` / ``evaluate(config, workdir)`` are what ``train.py`` and
``eval.py`` call (via :mod:`imsyn.experiments`) and what ``python -m imsyn edit`` runs
(:mod:`imsyn.cli.edit`). The algorithm (latent spaces, projection, interpolation, draw,
frames) is :mod:`imsyn.editing`.

A run restores the generator of a GAN workdir (:func:`load_generator`), loads the targets
(:func:`load_targets`) or the sketch (:func:`load_sketch`), projects them into every
configured latent space and writes, under its workdir, ``config.json``, ``latents.npz``
(targets, masks, latents and loss curves per space; ``eval.py`` re-renders from it),
``eval/*.png`` (+ ``*.gif``), ``plots/losses.png``, ``eval/metrics.json`` and
``report.html``.

Config: :data:`FIELDS`, every field's default, rule and meaning (the numeric rules shared
with the library and the CLI: :data:`imsyn.editing.RULES`), plus cross-field rules, checked
by :func:`validate` before any compute (unknown fields refused). :func:`default_config`
builds a mode's config: the defaults and the mode's changes, :data:`MODE_DEFAULTS` (the
presets of ``configs/editing.py``).

Paths (:func:`check_paths`, before any work): the workdir may not be, or lie inside, any
input — the generator workdir, the target images or their data folder, the sketch, the
mask, the VGG-19 weights; it is held by one run at a time and must be an empty folder or
an earlier workdir (:func:`imsyn.outputs.claim_workdir`).
"""

from __future__ import annotations

import io
from pathlib import Path
from typing import Any, NamedTuple

import jax
import ml_collections
import numpy as np
from flax import nnx

from imsyn import editing
from imsyn.editing import RULES
from imsyn.errors import ConfigError, InputError
from imsyn.image import (
    make_grid,
    read_float,
    to_float,
    to_network,
    to_uint8,
    write_bytes,
    write_image,
    write_json,
)
from imsyn.outputs import check_folder, check_outputs, claim_workdir
from imsyn.report import figure, write_report
from imsyn.validate import (
    INT32_MAX,
    INT64_MAX,
    Decl,
    check,
    custom,
    existing_file,
    integer,
    make_config,
    one_of,
    string,
)

MODES = ("project", "interpolate", "draw")
#: data-spec kinds (:func:`imsyn.data.get_source`); any other ``config.images`` is files
DATA_KINDS = ("emoji", "folder", "tfds")


# --------------------------------------------------------------------------- config


def _spaces_field(v):
    if not isinstance(v, str):
        raise ValueError
    spaces = [s.strip() for s in v.split(",") if s.strip()]
    if v != "all" and (not spaces or any(s not in editing.SPACES for s in spaces)):
        raise ValueError
    return v


#: every field of an editing config, declared once: default, rule, meaning (the ``project``
#: mode; :data:`MODE_DEFAULTS` holds the other modes' changes)
FIELDS = {
    "task": Decl("editing", one_of("editing"), "the experiment"),
    "name": Decl("edit_project", string(nonempty=True), "the run's name (workdir: runs/<name>)"),
    # jax.random.key takes int64 seeds
    "seed": Decl(0, integer(min=0, max=INT64_MAX), "seed of the z samples"),
    "mode": Decl("project", one_of(*MODES), "project images, interpolate two, or draw"),
    "generator_workdir": Decl(
        "",
        string(
            nonempty=True,
            expect="the run directory of a trained GAN (--config.generator_workdir=runs/dcgan) "
            "or a file written by `python -m imsyn export`",
        ),
        "required: a GAN run folder, or a file from `python -m imsyn export`",
    ),
    "spaces": Decl(
        "all",
        custom(_spaces_field, f"'all' or a comma list of {', '.join(editing.SPACES)}"),
        "latent spaces (all: every space the generator has)",
    ),
    "images": Decl(
        "",
        string(expect="a data spec, comma-separated files, or ''"),
        "targets ('' = held-out split of the generator's data; a data spec; or a.png,b.png)",
    ),
    "num_images": Decl(8, integer(min=1, max=INT32_MAX), "targets to project"),
    "sketch": Decl(
        "",
        string(expect="an image path or '' (built-in demo sketch)"),
        "draw: '' = built-in scribble; else RGBA (alpha = drawn), or RGB with a mask",
    ),
    "mask": Decl(
        "",
        string(expect="a mask image path or '' (the sketch's alpha)"),
        "draw: mask image (white = drawn; '' = the sketch's alpha)",
    ),
    "num_frames": Decl(12, RULES["num_frames"], "interpolate: frames between the two images"),
    "interpolation": Decl(
        "auto",
        one_of("auto", *editing.INTERPOLATIONS),
        "interpolate: auto = slerp in z, linear in w / w+",
    ),
    "steps": Decl(300, RULES["steps"], "optimizer steps per projection"),
    "optimizer": Decl("lbfgs", one_of(*editing.OPTIMIZERS), "lbfgs, or adam (with lr)"),
    "lr": Decl(0.05, RULES["lr"], "Adam only; L-BFGS chooses its steps by line search"),
    "pixel_loss": Decl("l2", one_of(*editing.PIXEL_LOSSES), "pixel loss"),
    "pixel_weight": Decl(1.0, RULES["pixel_weight"], "weight of the pixel loss"),
    "perceptual_weight": Decl(
        0.01,
        RULES["perceptual_weight"],
        "weight of the VGG-19 perceptual loss (docs/editing.md: chosen on held-out emoji)",
    ),
    "perceptual_layers": Decl(
        ",".join(editing.DEFAULT_LAYERS),
        string(expect="a comma list of VGG-19 layers"),
        "VGG-19 layers of the perceptual loss",
    ),
    "latent_reg": Decl(0.0, RULES["latent_reg"], "pull towards the mean latent"),
    "init": Decl(
        "mean", one_of(*editing.INITS), "start: mean w (w / w+); z starts from a seeded sample"
    ),
    "vgg_weights": Decl(
        "", existing_file(), "VGG-19 weights ('' = $IMSYN_VGG19, the fetched vgg19, else random)"
    ),
}

#: mode -> its changes to the default config (the ``project`` mode)
MODE_DEFAULTS = {
    "project": {},
    "interpolate": {"name": "edit_interpolate", "mode": "interpolate"},
    "draw": {
        "name": "edit_draw",
        "mode": "draw",
        "steps": 200,
        "pixel_loss": "l1",
        "latent_reg": 0.01,  # keeps the result near the mean latent outside the scribble
    },
}


def default_config(mode: str = "project") -> ml_collections.ConfigDict:
    """The default editing config of ``mode`` (``configs/editing.py`` and the CLI)."""
    if mode not in MODES:
        raise ConfigError(f"mode must be one of {list(MODES)}, got {mode!r}")
    c = make_config(FIELDS)
    c.update(MODE_DEFAULTS[mode])
    return c


def validate(config) -> None:
    """Checks an editing config (``configs/editing.py``) before any compute.

    Raises:
      ConfigError: an unknown or missing field or an invalid value, one line naming it
        (``config.steps must be an integer in [1, 1000000], got 0``).
    """
    check(config, FIELDS)
    if config.pixel_weight == 0 and config.perceptual_weight == 0:
        raise ConfigError("config.pixel_weight and config.perceptual_weight are both 0")
    if config.perceptual_weight > 0:
        from imsyn.models import vgg

        try:
            if not vgg.check_layers(config.perceptual_layers):
                raise ConfigError("config.perceptual_layers is empty")
        except InputError as e:
            raise ConfigError(f"config.perceptual_layers: {e}") from None


def spaces(config, gen) -> list[str]:
    """The latent spaces of ``config.spaces`` (``all``: every space ``gen`` has)."""
    if config.spaces == "all":
        return list(editing.latent_spaces(gen))
    out = list(dict.fromkeys(s.strip() for s in config.spaces.split(",") if s.strip()))
    for s in out:
        editing.check_space(gen, s)
    return out


# --------------------------------------------------------------------------- paths


def _data_folder(spec: str) -> str | None:
    """The folder of a ``folder:PATH[?options]`` data spec, else None."""
    from imsyn.course_data import resolve
    from imsyn.data.sources import parse_spec

    kind, _, rest = spec.partition(":")
    return str(resolve(parse_spec(rest)[0])) if kind == "folder" and rest else None


def _image_files(spec: str) -> list[str]:
    """The files of ``config.images`` when it lists files (not a data spec)."""
    if not spec or spec.split(":", 1)[0] in DATA_KINDS:
        return []
    return [f.strip() for f in spec.split(",") if f.strip()]


def input_paths(config, gen_config=None) -> tuple[list[str], list[str]]:
    """``(files, folders)`` a run of ``config`` reads (with ``gen_config``, the generator
    run's config, also the folder of its training data when the targets come from it)."""
    files = [*_image_files(config.images)]
    files += [p for p in (config.sketch, config.mask, config.vgg_weights) if p]
    folders = []
    if Path(config.generator_workdir).is_file():  # an exported model
        files.append(config.generator_workdir)
    else:
        folders.append(config.generator_workdir)
    spec = config.images or (gen_config.get("data", "") if gen_config is not None else "")
    if isinstance(spec, str) and (folder := _data_folder(spec)):
        folders.append(folder)
    return files, folders


def output_paths(config, workdir) -> list[Path]:
    """The workdir and every file a run of ``config`` may write in it (all latent spaces)."""
    wd = Path(workdir)
    names = ["config.json", "latents.npz", "eval/metrics.json", "plots/losses.png", "report.html"]
    if config.mode == "project":
        names.append("eval/projections.png")
    for s in editing.SPACES:
        if config.mode == "interpolate":
            names += [f"eval/interpolation_{s}.png", f"eval/interpolation_{s}.gif"]
        elif config.mode == "draw":
            names.append(f"eval/draw_{s}.png")
    return [wd, *(wd / n for n in names)]


def check_paths(config, workdir, gen_config=None) -> None:
    """Refuses a workdir that is (or would overwrite, or lies inside) an input of the run.

    Raises:
      OutputError: one line naming the output and the input.
    """
    files, folders = input_paths(config, gen_config)
    check_outputs(output_paths(config, workdir), inputs=files, read_dirs=folders)
    check_folder(workdir)


# --------------------------------------------------------------------------- generator


class LoadedGenerator(NamedTuple):
    """A generator restored from a training run (see :func:`load_generator`)."""

    gen: nnx.Module  #: in eval mode
    config: Any  #: the run's config (``ml_collections.ConfigDict`` from its config.json)
    step: int  #: the checkpoint's step
    name: str  #: registry name of the generator


def load_generator(workdir) -> LoadedGenerator:
    """Restores the generator of a GAN run directory (``config.json`` + latest checkpoint) or
    of a file written by ``python -m imsyn export`` (:func:`imsyn.trained.load`).

    Raises:
      InputError: the directory, its config.json or the file is missing, unreadable or
        damaged.
      ConfigError: not a GAN run, no checkpoint, or a checkpoint that does not match its config.
    """
    from imsyn import trained

    p = Path(workdir)
    if not p.exists():
        raise InputError(f"generator workdir {p}: no such directory or model file")
    if p.is_dir():
        task = trained.read_run_config(p).get("task")
        if task != "dcgan":
            raise ConfigError(
                f"generator workdir {p} is a {task!r} run; editing needs a GAN run "
                "(configs/dcgan.py)"
            )
    model = trained.load(p, tasks=("dcgan",))
    gen = model.module("g")
    cfg = model.config
    return LoadedGenerator(gen, cfg, model.step, cfg.get("generator", "dcgan_generator"))


# --------------------------------------------------------------------------- inputs


def _resize_square(img: np.ndarray, size: int) -> np.ndarray:
    """Centre-crops float [H, W, 3] in [0, 1] to a square and resizes it to ``size`` (Lanczos)."""
    from PIL import Image

    h, w = img.shape[:2]
    s = min(h, w)
    y, x = (h - s) // 2, (w - s) // 2
    im = Image.fromarray(to_uint8(img[y : y + s, x : x + s]))
    return to_float(np.asarray(im.resize((size, size), Image.Resampling.LANCZOS)))


def load_targets(config, gen_config, size: int) -> tuple[np.ndarray, list[str]]:
    """Images to project: float32[N, S, S, 3] in [-1, 1] and their names.

    ``config.images``: '' = the held-out (``test``) split of the generator's training data;
    a data spec (``emoji:openmoji``, ``folder:/path``); or comma-separated image files
    (centre-cropped and resized to the generator's size).
    """
    spec = config.images or gen_config.data
    n = config.num_images if config.mode == "project" else 2
    if spec.split(":", 1)[0] in DATA_KINDS:
        from imsyn.data import get_source

        src = get_source(spec, image_size=size, split="test")
        if len(src) < n:
            raise InputError(f"{spec}: {len(src)} images, {config.mode} needs {n}")
        rows = np.random.default_rng(config.seed).choice(len(src), n, replace=False)
        keys = getattr(src, "keys", None)
        names = [str(keys[int(i)]) if keys is not None else f"{spec}#{int(i)}" for i in rows]
        imgs = np.stack([to_float(src[int(i)]) for i in rows])
    else:
        files = _image_files(spec)
        if len(files) < n:
            raise InputError(f"config.images lists {len(files)} files, {config.mode} needs {n}")
        files = files[:n]
        imgs = np.stack([_resize_square(read_float(f, mode="rgb"), size) for f in files])
        names = files
    return to_network(imgs.astype(np.float32)), names


def load_sketch(config, size: int) -> tuple[np.ndarray, np.ndarray]:
    """The sketch (float32[S, S, 3] in [-1, 1]) and mask (float32[S, S] in {0, 1}).

    Raises:
      InputError: unreadable files, sketch and mask of different sizes or not S x S, an
        empty mask.
    """
    if not config.sketch:
        if config.mask:
            raise InputError("config.mask is given without config.sketch")
        sketch, mask = editing.demo_sketch(size)
    else:
        rgba = read_float(config.sketch, mode="rgba")
        sketch = rgba[..., :3]
        if config.mask:
            mask = read_float(config.mask, mode="gray") > 0.5
            if mask.shape != sketch.shape[:2]:
                raise InputError(
                    f"sketch {config.sketch} is {sketch.shape[1]}x{sketch.shape[0]} but mask "
                    f"{config.mask} is {mask.shape[1]}x{mask.shape[0]}"
                )
        else:
            mask = rgba[..., 3] > 0.5
        if sketch.shape[:2] != (size, size):
            raise InputError(
                f"sketch {config.sketch} is {sketch.shape[1]}x{sketch.shape[0]}, the generator "
                f"makes {size}x{size} images"
            )
    if not mask.any():
        raise InputError("the mask is empty: nothing to draw")
    return to_network(sketch.astype(np.float32)), mask.astype(np.float32)


def _inputs(config, loaded: LoadedGenerator) -> dict:
    """Targets [N, S, S, 3] in [-1, 1] and masks [N, S, S] of the configured mode."""
    size = loaded.config.image_size
    if config.mode == "draw":
        sketch, mask = load_sketch(config, size)
        return {"targets": sketch[None], "masks": mask[None], "names": np.array(["sketch"])}
    targets, names = load_targets(config, loaded.config, size)
    masks = np.ones(targets.shape[:3], np.float32)
    return {"targets": targets, "masks": masks, "names": np.array(names)}


# --------------------------------------------------------------------------- run


def _optimize(config, loaded: LoadedGenerator, spaces_, inputs) -> dict:
    """Runs the projection of every space; returns the arrays saved in ``latents.npz``."""
    perceptual = None
    if config.perceptual_weight > 0:
        perceptual = editing.perceptual_net(
            config.vgg_weights or None, layers=config.perceptual_layers
        )
    saved = dict(inputs)
    saved["features"] = np.array(perceptual.source if perceptual is not None else "none")
    for space in spaces_:
        r = editing.project(
            loaded.gen,
            inputs["targets"],
            masks=inputs["masks"],
            space=space,
            steps=config.steps,
            optimizer=config.optimizer,
            lr=float(config.lr),
            pixel=config.pixel_loss,
            pixel_weight=float(config.pixel_weight),
            perceptual=perceptual,
            perceptual_weight=float(config.perceptual_weight),
            latent_reg=float(config.latent_reg),
            init=config.init,
            key=jax.random.key(config.seed),
            progress=True,
        )
        saved[f"latents/{space}"] = np.asarray(r.latents)
        saved[f"losses/{space}"] = np.asarray(r.losses)
    return saved


def save_npz(path, arrays: dict) -> None:
    """Writes ``arrays`` as an ``.npz`` file atomically."""
    buf = io.BytesIO()
    np.savez(buf, **{k: np.asarray(v) for k, v in arrays.items()})
    write_bytes(path, buf.getvalue())


def load_npz(path) -> dict:
    """The arrays of a run's ``latents.npz``.

    Raises:
      ConfigError: the file is missing (the run was not trained).
    """
    if not Path(path).is_file():
        raise ConfigError(f"{path} is missing: run train.py with this config and workdir first")
    with np.load(path, allow_pickle=False) as f:
        return {k: f[k] for k in f.files}


# --------------------------------------------------------------------------- outputs


def _lpips_metric(config, targets: np.ndarray, out: dict):
    """The LPIPS metric for project/interpolate (else None); records what is used in ``out``."""
    if config.mode not in ("project", "interpolate"):
        return None
    from imsyn.models import lpips as lpips_lib

    metric = lpips_lib.LPIPS.load()
    if metric is None:
        out["lpips"] = lpips_lib.UNAVAILABLE
    elif min(targets.shape[1:3]) < lpips_lib.MIN_SIZE:
        out["lpips"] = f"not defined below {lpips_lib.MIN_SIZE} px"
        return None
    else:
        out["lpips"] = {"net": metric.name, "weights": metric.path}
    return metric


def _mean_lpips(metric, a: np.ndarray, b: np.ndarray) -> float | None:
    """Mean LPIPS of [0, 1] images, or None without the metric."""
    return None if metric is None else float(metric(to_network(a), to_network(b)).mean())


def _outputs(config, workdir, loaded: LoadedGenerator, saved: dict) -> dict:
    """Renders the saved latents, writes eval/*.png (+ GIFs) and plots/losses.png.

    Returns:
      The content of ``eval/metrics.json``.
    """
    from imsyn import metrics
    from imsyn.training.writers import plot_losses

    wd = Path(workdir)
    gen = loaded.gen
    spaces_ = [k.split("/", 1)[1] for k in saved if k.startswith("latents/")]
    targets = editing.as_frames(saved["targets"])
    m = np.asarray(saved["masks"], np.float32)[..., None]
    features = str(saved["features"])
    out: dict[str, Any] = {
        "mode": config.mode,
        "generator_workdir": str(config.generator_workdir),
        "generator": loaded.name,
        "generator_step": loaded.step,
        "num_images": len(targets),
        "perceptual_features": features,
    }
    if features == "random":
        out["features_note"] = (
            "perceptual loss on random (untrained) VGG-19 features; give VGG-19 weights "
            "(config.vgg_weights or $IMSYN_VGG19) for the real perceptual loss"
        )
    lpips = _lpips_metric(config, targets, out)
    images = {s: editing.render_frames(gen, saved[f"latents/{s}"], space=s) for s in spaces_}
    inside = np.maximum(3.0 * m.sum(axis=(1, 2, 3)), 1.0)
    for s in spaces_:
        err = float(((np.abs(images[s] - targets) * m).sum(axis=(1, 2, 3)) / inside).mean())
        if config.mode == "project":
            out[f"{s}/l1"] = err
            # per image, capped at 100 dB (identical images give +inf, which JSON cannot hold)
            psnr = np.minimum(np.asarray(metrics.psnr(images[s], targets), np.float64), 100.0)
            out[f"{s}/psnr"] = float(psnr.mean())
            out[f"{s}/lpips"] = _mean_lpips(lpips, images[s], targets)
        elif config.mode == "interpolate":
            out[f"{s}/endpoint_l1"] = err
            out[f"{s}/endpoint_lpips"] = _mean_lpips(lpips, images[s], targets)
        else:
            out[f"{s}/error_inside_mask"] = err
        out[f"{s}/final_loss"] = float(np.mean(saved[f"losses/{s}"][:, -1]))
    if config.mode == "project":
        grid = np.concatenate([targets] + [images[s] for s in spaces_])
        write_image(wd / "eval" / "projections.png", make_grid(grid, ncol=len(targets)))
    elif config.mode == "interpolate":
        for s in spaces_:
            out[f"{s}/interpolation"] = _write_interpolation(config, wd, gen, saved, targets, s)
    else:
        for s in spaces_:
            out.update(_write_draw(config, wd, gen, targets, m, images[s], inside, s))
    hist = {s: np.asarray(saved[f"losses/{s}"]).mean(axis=0) for s in spaces_}
    recs = [
        {"step": i, **{f"loss_{s}": float(h[i]) for s, h in hist.items()}}
        for i in range(len(next(iter(hist.values()))))
    ]
    plot_losses(recs, wd / "plots" / "losses.png", title=f"{config.name}: {config.mode} objective")
    return out


def _write_interpolation(config, wd: Path, gen, saved, targets, space: str) -> str:
    """Writes ``eval/interpolation_<space>.png`` (target, frames, target) and ``.gif``;
    returns the method used."""
    lat = saved[f"latents/{space}"]
    method = config.interpolation
    if method == "auto":
        method = "slerp" if space == "z" else "linear"
    lerp = editing.interpolate(lat[0], lat[1], num_frames=config.num_frames, method=method)
    frames = editing.render_frames(gen, lerp, space=space)
    strip = np.concatenate([targets[:1], frames, targets[1:2]])
    write_image(wd / "eval" / f"interpolation_{space}.png", make_grid(strip, ncol=len(strip)))
    editing.write_gif(wd / "eval" / f"interpolation_{space}.gif", frames)
    return method


def _write_draw(config, wd: Path, gen, targets, m, result, inside, space: str) -> dict:
    """Writes ``eval/draw_<space>.png`` (sketch, start, result); returns the start's error
    inside the mask and the change outside it."""
    shown = targets * m + 0.5 * (1.0 - m)
    outside = np.maximum(3.0 * (1.0 - m).sum(), 1.0)
    key = jax.random.key(config.seed)
    mean = editing.mean_latent(gen, space=space, key=key)
    start = editing.render_frames(gen, mean[None], space=space)
    start_err = (np.abs(start - targets) * m).sum(axis=(1, 2, 3)) / inside
    grid = np.concatenate([shown, start, result])
    write_image(wd / "eval" / f"draw_{space}.png", make_grid(grid, ncol=3))
    return {
        f"{space}/start_error_inside_mask": float(start_err.mean()),
        f"{space}/change_outside_mask": float((np.abs(result - start) * (1.0 - m)).sum() / outside),
    }


def report_sections(config, workdir) -> list[tuple[str, str]]:
    """The report's extra section: the interpolation GIFs (animated)."""
    gifs = sorted((Path(workdir) / "eval").glob("*.gif"))
    if not gifs:
        return []
    return [("Interpolation (animated)", "".join(figure(f"eval/{g.name}", g.name) for g in gifs))]


def _finish(config, workdir, loaded, saved) -> dict:
    metrics = _outputs(config, workdir, loaded, saved)
    write_json(Path(workdir) / "eval" / "metrics.json", metrics)
    write_report(workdir, sections=report_sections(config, workdir))
    return metrics


# --------------------------------------------------------------------------- entry points


def train(config, workdir) -> dict:
    """``train.py`` entry point (``task="editing"``): optimize, then write outputs and report.

    Everything is checked (config, paths, generator checkpoint, spaces, images, sketch and
    mask, workdir) before any compute; nothing is written before the optimization succeeded.

    Returns:
      The content of ``eval/metrics.json``.

    Raises:
      ConfigError / InputError / OutputError: one line, before anything is written.
    """
    validate(config)
    check_paths(config, workdir)
    # held from here on (re-entrant under train.py); left as it was if nothing gets written
    with claim_workdir(workdir, mode="train", task="editing"):
        loaded = load_generator(config.generator_workdir)
        check_paths(config, workdir, loaded.config)  # the generator's data folder, when read
        spaces_ = spaces(config, loaded.gen)
        inputs = _inputs(config, loaded)
        saved = _optimize(config, loaded, spaces_, inputs)
        wd = Path(workdir)
        write_json(wd / "config.json", config.to_dict())
        save_npz(wd / "latents.npz", saved)
        return _finish(config, wd, loaded, saved)


def evaluate(config, workdir) -> dict:
    """``eval.py`` entry point: re-renders ``latents.npz`` into eval/ and report.html."""
    validate(config)
    check_paths(config, workdir)
    with claim_workdir(workdir, mode="eval"):
        loaded = load_generator(config.generator_workdir)
        saved = load_npz(Path(workdir) / "latents.npz")
        for k in [k for k in saved if k.startswith("latents/")]:
            editing.check_space(loaded.gen, k.split("/", 1)[1])
        return _finish(config, workdir, loaded, saved)

"""Sweeps: several runs of one experiment with config overrides, compared on one page.

A config module may define ``get_sweep(name) -> [(run_name, overrides), ...]``::

    python sweep.py --config=configs/dcgan.py:quick --sweep=loss --workdir=runs/sweep_loss

trains every run into ``<workdir>/<run_name>/`` (each resumes if interrupted and
is only evaluated again once finished), then writes ``<workdir>/comparison.html``
and ``<workdir>/losses.png``: the eval metrics of each run side by side, their
latest sample grids and their smoothed loss curves overlaid. Every run's config
is validated before the first one starts (through the experiment module's
``validate(config)``, when it has one).

Each run's TensorBoard events also get the records of the HParams dashboard
(:func:`write_hparams`): the values of the fields the sweep changes, and the run's
evaluation metrics as scalars ``eval/<name>``, so ``tensorboard --logdir=<workdir>``
compares the runs in its HParams tab.
"""

from __future__ import annotations

import copy
import html
import json
import os
import sys
from pathlib import Path

from imsyn.errors import ConfigError, ImsynError
from imsyn.image import atomic_path, write_text
from imsyn.report import Html, figure, page, table
from imsyn.training.writers import read_metrics, smooth


def sweep_configs(config, sweep: list[tuple[str, dict]]) -> list[tuple[str, object]]:
    """``[(run_name, config with overrides), ...]``; unknown override fields are refused."""
    if not sweep:
        raise ConfigError("the sweep has no runs")
    out = []
    for run_name, overrides in sweep:
        c = copy.deepcopy(config)
        for k, v in overrides.items():
            if k not in c:
                raise ConfigError(f"sweep run {run_name!r}: unknown config field config.{k}")
            c[k] = v
        c.name = f"{config.name}_{run_name}"
        out.append((run_name, c))
    return out


def run_sweep(config, sweep: list[tuple[str, dict]], workdir: str | os.PathLike) -> Path:
    """Validates every run, trains them one after the other, writes the comparison page.

    Returns:
      The path of ``comparison.html``.
    """
    from imsyn.experiments import get_experiment

    workdir = Path(workdir)
    runs = sweep_configs(config, sweep)
    for _, c in runs:  # every run is checked before the first one starts
        validate = getattr(get_experiment(c), "validate", None)
        if validate is not None:
            validate(c)
    for run_name, c in runs:
        print(f"sweep: run {run_name} -> {workdir / run_name}", file=sys.stderr)
        get_experiment(c).train(c, workdir / run_name)
    write_hparams(workdir, runs, sorted({k for _, overrides in sweep for k in overrides}))
    return write_comparison(workdir, [name for name, _ in runs])


def write_hparams(workdir: str | os.PathLike, runs: list[tuple[str, object]], fields: list[str]):
    """Writes each run's HParams records into its TensorBoard events (``<workdir>/<name>``):
    the values of ``fields`` in its config, and the numbers of its ``eval/metrics.json`` as
    the metrics ``eval/<key>`` (scalars at the evaluated step)."""
    from imsyn.training.writers import EventWriter

    for run_name, c in runs:
        run = Path(workdir) / run_name
        try:
            evaluated = json.loads((run / "eval" / "metrics.json").read_text())
        except (OSError, json.JSONDecodeError):
            evaluated = {}
        metrics = {
            f"eval/{k}": float(v)
            for k, v in evaluated.items()
            if isinstance(v, int | float) and not isinstance(v, bool) and k != "step"
        }
        events = EventWriter(run)
        try:
            events.write_hparams({k: c[k] for k in fields}, metrics, step=evaluated.get("step", 0))
        finally:
            events.close()


def _loss_figure(workdir: Path, names: list[str]) -> Path | None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    curves = {n: read_metrics(workdir / n / "metrics.jsonl") for n in names}
    keys = sorted({k for recs in curves.values() for r in recs for k in r if "loss" in k})
    if not keys:
        return None
    fig, axes = plt.subplots(1, len(keys), figsize=(5 * len(keys), 3.6), squeeze=False)
    for ax, key in zip(axes[0], keys, strict=True):
        for name, recs in curves.items():
            pts = [(r["step"], r[key]) for r in recs if key in r]
            if pts:
                steps, vals = zip(*pts, strict=True)
                ax.plot(steps, smooth(vals), label=name, linewidth=1.5)
        ax.set_title(key)
        ax.set_xlabel("step")
        ax.grid(alpha=0.3)
        ax.legend(fontsize=8)
    fig.tight_layout()
    path = workdir / "losses.png"
    with atomic_path(path) as tmp:
        fig.savefig(tmp, format="png", dpi=90)
    plt.close(fig)
    return path


#: a run's image shown on the comparison page: the first of these that exists
_IMAGES = ("eval/samples.png", "eval/x2y.png", "samples/samples_latest.png", "result.png")


def results_grid(workdir: str | os.PathLike, names: list[str], *, ncol: int | None = None):
    """The runs' images (the first of :data:`_IMAGES` each) side by side, each labelled
    with its run name; ``float32[H', W', 3]`` in [0, 1], tiles resized to the first's size.

    ``ncol``: tiles per row (default: all in one row up to 5, else ceil(sqrt(n))).
    """
    import numpy as np
    from PIL import Image, ImageDraw

    from imsyn.image import make_grid, read_float

    tiles = []
    for n in names:
        path = next((Path(workdir, n, r) for r in _IMAGES if Path(workdir, n, r).exists()), None)
        if path is None:
            raise ConfigError(f"sweep run {n!r} has no image ({', '.join(_IMAGES)})")
        img = read_float(path, mode="rgb")
        if tiles and img.shape != tiles[0].shape:
            size = (tiles[0].shape[1], tiles[0].shape[0])
            pil = Image.fromarray((img * 255 + 0.5).astype(np.uint8)).resize(size, Image.LANCZOS)
            img = np.asarray(pil, np.float32) / 255.0
        tiles.append(img)
    w = tiles[0].shape[1]
    labelled = []
    for n, img in zip(names, tiles, strict=True):
        band = Image.new("RGB", (w, 14), "white")
        ImageDraw.Draw(band).text((3, 1), n, fill="black")
        labelled.append(np.concatenate([img, np.asarray(band, np.float32) / 255.0], axis=0))
    k = len(labelled)
    return make_grid(np.stack(labelled), ncol=ncol or (k if k <= 5 else None))


def write_comparison(workdir: str | os.PathLike, names: list[str]) -> Path:
    """Writes ``<workdir>/comparison.html`` comparing the runs ``<workdir>/<name>``."""
    workdir = Path(workdir)
    evals = {}
    for n in names:
        try:
            evals[n] = json.loads((workdir / n / "eval" / "metrics.json").read_text())
        except (OSError, json.JSONDecodeError):
            evals[n] = {}
    cols = [k for k in ("kid", "fid", "step", "features") if any(k in e for e in evals.values())]
    cols += sorted({k for e in evals.values() for k in e} - set(cols) - {"features_note"})

    rows = [
        [Html(f'<a href="{html.escape(n)}/report.html">{html.escape(n)}</a>')]
        + [evals[n].get(c, "") for c in cols]
        for n in names
    ]
    notes = {e.get("features_note") for e in evals.values() if e.get("features_note")}
    parts = [f"<h1>Sweep: {html.escape(workdir.name)}</h1>", table(["run", *cols], rows)]
    parts += [f'<p class="note">{html.escape(n)}</p>' for n in sorted(notes)]
    if _loss_figure(workdir, names):
        parts.append("<h2>Losses (smoothed)</h2>" + figure("losses.png", "smoothed losses"))
    figs = []
    for n in names:
        for rel in _IMAGES:
            if (workdir / n / rel).exists():
                figs.append(figure(f"{n}/{rel}", n))
                break
    if figs:
        parts.append("<h2>Samples</h2>" + "".join(figs))
    path = workdir / "comparison.html"
    write_text(path, page(f"sweep {workdir.name}", "".join(parts)))
    return path


def config_module(config_file: str | os.PathLike):
    """The module of a config file (``path[:preset]``; the preset is ignored)."""
    import importlib.util

    path = str(config_file).split(":", 1)[0]
    spec = importlib.util.spec_from_file_location(f"imsyn_config_{Path(path).stem}", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def load_sweep(config_file: str, name: str) -> list[tuple[str, dict]]:
    """``get_sweep(name)`` of the config file ``config_file`` (``path[:preset]``)."""
    module = config_module(config_file)
    if not hasattr(module, "get_sweep"):
        raise ConfigError(f"{config_file.split(':', 1)[0]} defines no get_sweep(name)")
    try:
        return list(module.get_sweep(name))
    except ValueError as e:
        raise ConfigError(str(e)) from None


def main(argv: list[str]) -> int:
    """``sweep.py --config=<file>[:preset] --sweep=<name> --workdir=<dir> [--config.x=y]``."""
    from absl import flags
    from ml_collections import config_flags

    from imsyn.experiments import (
        _define_help_flags,
        describe_config,
        print_help,
        resolve_config_argv,
        wants_help,
    )
    from imsyn.runtime import enable_compilation_cache

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
    flags.DEFINE_string("sweep", None, "sweep name (see the config's get_sweep)", flag_values=fv)
    flags.DEFINE_string("workdir", None, "sweep directory (one sub-folder per run)", flag_values=fv)
    _define_help_flags(fv)
    help_kind = wants_help(argv)
    if help_kind is not None:
        print_help(fv, "sweep", full=help_kind == "full")
        return 0
    try:
        fv(argv)
        if fv.show_config and fv.config is not None:
            filename = config_flags.get_config_filename(fv["config"])
            text = describe_config(fv.config, filename)
            if fv.sweep:  # and what each run changes
                runs = load_sweep(filename, fv.sweep)
                text += "\n" + "\n".join(
                    f"# sweep run {name}: "
                    + (", ".join(f"{k}={v!r}" for k, v in over.items()) or "no changes")
                    for name, over in runs
                )
            print(text)
            return 0
        if fv.config is None or not fv.sweep or not fv.workdir:
            raise ConfigError("--config, --sweep and --workdir are required")
        sweep = load_sweep(config_flags.get_config_filename(fv["config"]), fv.sweep)
        enable_compilation_cache()
        path = run_sweep(fv.config, sweep, fv.workdir)
    except (flags.Error, ImsynError, OSError, AttributeError, KeyError) as e:
        msg = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
        print(f"sweep.py: error: {msg}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("sweep.py: interrupted", file=sys.stderr)
        return 130
    print(f"sweep: comparison written to {path}", file=sys.stderr)
    return 0

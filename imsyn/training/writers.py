"""What a run writes while it trains: metrics.jsonl, TensorBoard events, loss plots, samples.

* :class:`WindowMean` averages each metric over the steps of a logging window (clu's
  ``metrics.Average``): what the loop logs is the window's mean, not its last step.
* :class:`MetricsLog` appends one JSON object per logged step to
  ``workdir/metrics.jsonl`` (``{"step": 100, "d_loss": ..., "g_loss": ...,
  "steps_per_s": ...}``); on resume it drops lines past the restored step so the
  file never holds two histories.
* :class:`EventWriter` writes TensorBoard event files (``events.out.tfevents.*``)
  through tensorboardX: ``write_scalars(step, {tag: value})``, ``write_images(step,
  {tag: image})``, ``write_hparams(hparams, metrics)`` (the HParams dashboard's records).
* :func:`plot_losses` draws ``plots/losses.png`` (raw curves faint, EMA-smoothed
  curves bold, one panel per metric group) from the metrics log.
* :func:`write_samples` writes sample grids to ``samples/<name>_<step>.png``.

Every file except the append-only logs is written atomically.
"""

from __future__ import annotations

import json
import math
import os
from pathlib import Path

import numpy as np

from imsyn.image import atomic_path, to_uint8, write_image

# ---------------------------------------------------------------- TensorBoard


class EventWriter:
    """TensorBoard events in ``<logdir>/events.out.tfevents.*`` (tensorboardX, no TensorFlow).

    A small ``write_scalars``/``write_images`` interface (like clu's metric writers) so the
    backend can change without touching the loop. Every call is flushed, so a killed run
    loses at most the event being written (TensorBoard skips a truncated tail record).
    """

    def __init__(self, logdir: str | os.PathLike):
        from tensorboardX import SummaryWriter

        Path(logdir).mkdir(parents=True, exist_ok=True)
        self._w = SummaryWriter(logdir=str(logdir))

    def write_scalars(self, step: int, values: dict[str, float]) -> None:
        for tag, value in values.items():
            self._w.add_scalar(tag, float(value), global_step=step)
        self._w.flush()

    def write_images(self, step: int, images: dict[str, np.ndarray]) -> None:
        """``images``: float [H, W, C] in [0, 1] (or uint8), one image per tag."""
        for tag, img in images.items():
            arr = (
                to_uint8(np.asarray(img, np.float32)) if np.asarray(img).dtype != np.uint8 else img
            )
            self._w.add_image(tag, arr, global_step=step, dataformats="HWC")
        self._w.flush()

    def write_hparams(self, hparams: dict, metrics: dict[str, float], *, step: int) -> None:
        """The records of TensorBoard's HParams dashboard: this run's ``hparams`` (name ->
        bool, int, float or str; anything else as its ``repr``) and the ``metrics`` to compare
        runs by (tag -> value, also written as scalars at ``step``)."""
        from tensorboardX.summary import hparams as hparams_summaries

        values = {
            k: v if isinstance(v, bool | int | float | str) else repr(v) for k, v in hparams.items()
        }
        for summary in hparams_summaries(values, metrics):
            self._w.file_writer.add_summary(summary)
        self.write_scalars(step, metrics)

    def close(self) -> None:
        self._w.close()


# ---------------------------------------------------------------- logging windows


class WindowMean:
    """The mean of each scalar metric over the steps since the last :meth:`pop`.

    Sums in float64 on the host. :meth:`state` (JSON) goes into a checkpoint, so a run
    resumed in the middle of a window logs the mean an uninterrupted run logs.
    """

    def __init__(self, state: dict | None = None):
        self._sums = {k: (float(total), int(n)) for k, (total, n) in (state or {}).items()}

    def add(self, metrics: dict) -> None:
        for k, v in metrics.items():
            total, n = self._sums.get(k, (0.0, 0))
            self._sums[k] = (total + float(v), n + 1)

    def pop(self) -> dict[str, float]:
        """The means, and a new window."""
        means = {k: total / n for k, (total, n) in self._sums.items()}
        self._sums = {}
        return means

    def state(self) -> dict:
        return {k: [total, n] for k, (total, n) in self._sums.items()}


# ---------------------------------------------------------------- metrics.jsonl


class MetricsLog:
    """Append-only ``metrics.jsonl``; ``truncate_after(step)`` on resume."""

    def __init__(self, path: str | os.PathLike):
        self.path = Path(path)

    def truncate_after(self, step: int) -> None:
        """Keeps only records with ``step <= step`` (atomic rewrite)."""
        if not self.path.exists():
            return
        kept = [r for r in read_metrics(self.path) if r.get("step", 0) <= step]
        with atomic_path(self.path) as tmp:
            tmp.write_text("".join(json.dumps(r) + "\n" for r in kept))

    def write(self, record: dict) -> None:
        with open(self.path, "a") as f:
            f.write(json.dumps(record) + "\n")


def read_metrics(path: str | os.PathLike) -> list[dict]:
    """The records of a metrics.jsonl (a truncated last line is ignored)."""
    path = Path(path)
    if not path.exists():
        return []
    out = []
    for line in path.read_text().splitlines():
        try:
            out.append(json.loads(line))
        except json.JSONDecodeError:
            continue
    return out


# ---------------------------------------------------------------- plots and samples


def smooth(values: np.ndarray, *, weight: float = 0.9) -> np.ndarray:
    """TensorBoard-style debiased exponential moving average."""
    out, acc = np.empty(len(values)), 0.0
    for i, v in enumerate(values):
        acc = weight * acc + (1 - weight) * v
        out[i] = acc / (1 - weight ** (i + 1))
    return out


def _loss_groups(keys: list[str]) -> list[list[str]]:
    """Adversarial losses (``d_*``, ``g_*``) in one panel, every other loss in a second."""
    adversarial = [k for k in keys if k.startswith(("d_", "g_"))]
    other = [k for k in keys if k not in adversarial]
    return [g for g in (adversarial, other) if g]


def plot_losses(records: list[dict], path: str | os.PathLike, *, title: str = "") -> Path | None:
    """Plots every ``*loss*`` metric against step (raw faint + smoothed) to a PNG.

    Returns the path, or None when there is nothing to plot.
    """
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    keys = sorted({k for r in records for k in r if "loss" in k})
    if not keys:
        return None
    groups = _loss_groups(keys)
    fig, axes = plt.subplots(1, len(groups), figsize=(5.5 * len(groups), 3.8), squeeze=False)
    for ax, group in zip(axes[0], groups, strict=True):
        for k in group:
            pts = [(r["step"], r[k]) for r in records if k in r and math.isfinite(r[k])]
            if not pts:
                continue
            steps, vals = map(np.asarray, zip(*pts, strict=True))
            (line,) = ax.plot(steps, smooth(vals), label=k, linewidth=1.8)
            ax.plot(steps, vals, color=line.get_color(), alpha=0.25, linewidth=0.8)
        ax.set_xlabel("step")
        ax.grid(alpha=0.3)
        ax.legend()
    if title:
        fig.suptitle(title)
    fig.tight_layout()
    with atomic_path(path) as tmp:
        fig.savefig(tmp, format="png", dpi=100)
    plt.close(fig)
    return Path(path)


def write_samples(directory: str | os.PathLike, step: int, images: dict[str, np.ndarray]) -> None:
    """Writes ``<directory>/<name>_<step:07d>.png`` and ``<name>_latest.png`` for each grid."""
    for name, img in images.items():
        write_image(Path(directory) / f"{name}_{step:07d}.png", img)
        write_image(Path(directory) / f"{name}_latest.png", img)

"""Input pipeline throughput vs what a DCGAN training step consumes (64 px, batch 16).

For each source (the course's grumpy-cat folder, Twemoji), host augmentation (``basic``,
``deluxe``) and worker count (0 = threads in-process, 2 = grain worker processes) it
measures the images/s delivered by :func:`imsyn.data.make_loader`, and, as the peer, by a
``torch.utils.data.DataLoader`` running the same augmentation functions with the same
worker count. It then times the DCGAN D+G step of :mod:`imsyn.gan` (64 px,
batch 16, the default config) with and without DiffAugment, and prints the ratio
pipeline images/s / step images/s (the faster of the two steps; target >= 10) and
grain / torch.

Folder sources stream from disk: both loaders decode, resize and augment every image when
it is drawn (``src[i]`` of :class:`imsyn.data.FolderSource`), nothing is held in memory.
``--folder DIR`` adds a folder of the user's (e.g. a few thousand photos) as a third source.

    python benchmarks/data_pipeline.py [--quick] [--data DIR] [--folder DIR]
"""

from __future__ import annotations

import argparse
import importlib.util
import statistics
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
SIZE, BATCH = 64, 16


def grain_rate(src, augment, workers, n_batches):
    from imsyn.data import make_loader

    it = make_loader(
        src, batch_size=BATCH, seed=0, augment=augment, image_size=SIZE, worker_count=workers
    )
    try:
        for _ in range(3):  # warm-up: workers started, buffers filled once
            next(it)
        t = time.perf_counter()
        for _ in range(n_batches):
            next(it)["image"].sum()
        return n_batches * BATCH / (time.perf_counter() - t)
    finally:
        if workers:
            it.close()


class _TorchSet:
    """The same source and augmentation as a torch map-style dataset (picklable)."""

    def __init__(self, src, augment):
        self.src, self.augment = src, augment

    def __len__(self):
        return len(self.src)

    def __getitem__(self, i):
        from imsyn.augment import host_augment_fn
        from imsyn.image import to_float, to_network

        fn = host_augment_fn(self.augment, SIZE)
        return to_network(to_float(fn(self.src[i], np.random.default_rng(i))))


def torch_rate(src, augment, workers, n_batches):
    import torch

    loader = torch.utils.data.DataLoader(
        _TorchSet(src, augment),
        batch_size=BATCH,
        shuffle=True,
        drop_last=True,
        num_workers=workers,
        persistent_workers=workers > 0,
        multiprocessing_context="spawn" if workers else None,  # like grain; JAX is threaded
    )
    it, done = iter(loader), 0

    def nxt():
        nonlocal it
        try:
            return next(it)
        except StopIteration:
            it = iter(loader)
            return next(it)

    for _ in range(3):
        nxt()
    t = time.perf_counter()
    while done < n_batches:
        nxt().sum()
        done += 1
    return n_batches * BATCH / (time.perf_counter() - t)


def step_rate(data_spec, diffaug, n_steps):
    """Images/s consumed by the DCGAN D+G step (imsyn.gan, default 64 px config)."""
    import jax

    from imsyn.tasks.dcgan import DCGANTask

    spec = importlib.util.spec_from_file_location("dcgan_config", ROOT / "configs" / "dcgan.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    cfg = mod.get_config()
    cfg.data, cfg.image_size, cfg.batch_size, cfg.diffaug = data_spec, SIZE, BATCH, diffaug
    task = DCGANTask(cfg)
    state = task.init_state(cfg, jax.random.key(0))
    step = jax.jit(task.train_step)
    batch = {
        "image": jax.numpy.asarray(
            np.random.default_rng(0).uniform(-1, 1, (BATCH, SIZE, SIZE, 3)), jax.numpy.float32
        )
    }
    key = jax.random.key(1)
    state, m = step(state, batch, key)  # compile
    jax.block_until_ready(m)
    times = []
    for i in range(n_steps):
        t = time.perf_counter()
        state, m = step(state, batch, jax.random.fold_in(key, i))
        jax.block_until_ready(m)
        times.append(time.perf_counter() - t)
    return BATCH / statistics.median(times)


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--quick", action="store_true", help="fewer batches and steps")
    p.add_argument("--data", default=None, help="course data (default: python -m imsyn data path)")
    p.add_argument("--no-torch", action="store_true", help="skip the torch DataLoader peer")
    p.add_argument("--folder", default=None, help="also measure this image folder")
    args = p.parse_args(argv)
    if args.data is None:  # the fetched course data (python -m imsyn data fetch course)
        from imsyn.course_data import data_dir

        args.data = str(data_dir())
    from imsyn.data import get_source

    n_batches = 20 if args.quick else 100
    n_steps = 3 if args.quick else 10
    cats = Path(args.data) / "gan" / "grumpifyBprocessed"
    if not cats.is_dir():
        print(
            f"data_pipeline: error: {cats} not found (python -m imsyn data fetch cats, or --data)",
            file=sys.stderr,
        )
        return 2
    sources = {
        "cats folder": get_source(f"folder:{cats}", image_size=SIZE),
        "emoji:twemoji": get_source("emoji:twemoji", image_size=SIZE, split="train"),
    }
    if args.folder:
        sources[f"folder {Path(args.folder).name}"] = get_source(
            f"folder:{args.folder}", image_size=SIZE
        )
    print(f"# step: DCGAN D+G (imsyn.gan, default config), {SIZE} px, batch {BATCH}")
    plain = step_rate(f"folder:{cats}", "", n_steps)
    diffaug = step_rate(f"folder:{cats}", "color,translation,cutout", n_steps)
    consumed = max(plain, diffaug)  # the ratio uses the faster (more demanding) step
    print(f"step consumes {plain:8.1f} img/s; with DiffAugment {diffaug:8.1f} img/s\n")
    print(
        "| source | augment | workers | imsyn (grain) img/s | ÷ step | torch img/s | grain/torch |"
    )
    print("|---|---|---:|---:|---:|---:|---:|")
    for name, src in sources.items():
        for augment in ("basic", "deluxe"):
            for workers in (0, 2):
                g = grain_rate(src, augment, workers, n_batches)
                t = None if args.no_torch else torch_rate(src, augment, workers, n_batches)
                tt = "n/a" if t is None else f"{t:,.0f}"
                tr = "n/a" if t is None else f"{g / t:.2f}"
                ratio = f"{g / consumed:.1f}x"
                row = f"| {name} | {augment} | {workers} | {g:,.0f} | {ratio} | {tt} | {tr} |"
                print(row, flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())

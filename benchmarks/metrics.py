"""The evaluation networks: imsyn (JAX) vs PyTorch on the same weights and images, on the CPU.

What the CycleGAN and DCGAN evaluations spend their time on, timed side by side:

* ``lpips``: LPIPS v0.1 (VGG-16) distances of 32-px emoji pairs (the main job's paired
  metric: 3 methods x 2 directions x 478 test pairs), batch 32 (``imsyn.models.lpips.LPIPS``'s
  chunk), against the same formula written out with ``torch.nn.functional`` and the same
  fetched weights (the reference of ``tests/test_lpips.py``);
* ``inception``: FID Inception-v3 pool features of 32-px emoji resized to 299 px, batch 16
  (imsyn's default chunk), against the published TorchScript network
  (``python -m imsyn weights fetch inception_fid`` keeps it in ``originals/``). imsyn's side
  includes its resize from 32 px; the TorchScript side is given the resized images.

Each framework runs in a process of its own; the two alternate timed windows (``--reps``), and
the table gives images (pairs) per second as the median (min-max) over the windows, the ratio
(imsyn / PyTorch throughput, > 1: imsyn is faster) as the median of the per-window ratios, each
side's page faults per batch, and the largest difference between the two sides' outputs::

    python benchmarks/metrics.py [--only lpips,inception] [--reps 7] [--keep-freed-memory]

``--keep-freed-memory`` runs both sides with imsyn's opt-in malloc settings
(:func:`imsyn.runtime.keep_freed_memory`); by default both use glibc's defaults, as train.py does.
"""

from __future__ import annotations

import argparse
import os
import resource
import statistics
import sys
import time
import warnings

from imsyn.runtime import keep_freed_memory

# first thing in every process (a spawned worker imports this module before anything else)
if "--keep-freed-memory" in sys.argv[1:]:
    os.environ["IMSYN_KEEP_FREED_MEMORY"] = "1"  # inherited by the workers
_MALLOC = "imsyn keep_freed_memory" if keep_freed_memory() else "glibc defaults"

import numpy as np  # noqa: E402
import workers  # noqa: E402  (benchmarks/workers.py)

#: case -> (batch, batches per timed window)
CASES = {"lpips": (32, 4), "inception": (16, 2)}


def _images(n: int, seed: int) -> np.ndarray:
    """``n`` emoji of the embedded test split, 32 px, float32 in [-1, 1]."""
    from imsyn.data import emoji_pairs

    pairs = emoji_pairs(image_size=32, split="test")
    idx = np.random.default_rng(seed).choice(len(pairs.x), n, replace=False)
    return pairs.x[idx].astype(np.float32) / 127.5 - 1.0, pairs.y[idx].astype(
        np.float32
    ) / 127.5 - 1


def _lpips_torch(w):
    import torch

    F = torch.nn.functional
    from imsyn.models import lpips

    shift = torch.tensor(lpips.SHIFT).view(1, 3, 1, 1)
    scale = torch.tensor(lpips.SCALE).view(1, 3, 1, 1)
    kernels = [torch.from_numpy(k).permute(3, 2, 0, 1).contiguous() for k in w.kernels]
    biases = [torch.from_numpy(b) for b in w.biases]
    lins = [torch.from_numpy(v).view(1, -1, 1, 1) for v in w.lins]

    def trunk(img):
        h, feats, k = (torch.from_numpy(img).permute(0, 3, 1, 2) - shift) / scale, [], 0
        for block, convs in enumerate((2, 2, 3, 3, 3)):
            if block:
                h = F.max_pool2d(h, 2)
            for _ in range(convs):
                h = F.relu(F.conv2d(h, kernels[k], biases[k], padding=1))
                k += 1
            feats.append(h)
        return feats

    def unit(f):
        return f / (torch.sqrt(torch.sum(f**2, dim=1, keepdim=True)) + lpips.EPS)

    def run(x, y):
        with torch.no_grad():
            total = 0.0
            for a, b, lin in zip(trunk(x), trunk(y), lins, strict=True):
                total = total + F.conv2d((unit(a) - unit(b)) ** 2, lin).mean(dim=(2, 3))[:, 0]
            return total.numpy()

    return run


def _setup(case: str, framework: str, batch: int):
    """``(run, inputs)``: ``run(*inputs)`` computes one batch and returns NumPy outputs."""
    from imsyn import weights
    from imsyn.runtime import enable_compilation_cache

    enable_compilation_cache()
    x, y = _images(batch, seed=0)
    if case == "lpips":
        from imsyn.models import lpips

        metric = lpips.LPIPS.load()
        if metric is None:
            sys.exit("metrics.py: error: run `python -m imsyn weights fetch lpips_vgg16` first")
        if framework == "jax":
            return (lambda a, b: np.asarray(metric(a, b))), (x, y)
        return _lpips_torch(metric.weights), (x, y)
    from imsyn import metrics
    from imsyn.models import inception

    path = weights.cached("inception_fid")
    if path is None:
        sys.exit("metrics.py: error: run `python -m imsyn weights fetch inception_fid` first")
    ext = metrics.get_extractor("inception_v3_fid", path, batch_size=batch)
    if framework == "jax":
        return (lambda a: np.asarray(ext(a))), (x,)
    import torch

    with warnings.catch_warnings():  # "torch.jit.load is deprecated"
        warnings.simplefilter("ignore", DeprecationWarning)
        model = torch.jit.load(str(weights.original("inception_fid")), map_location="cpu").eval()
    v = np.ascontiguousarray(inception.tf_input(ext.prepare(x)).transpose(0, 3, 1, 2))

    def run(v):
        with torch.no_grad():
            return model(torch.from_numpy(v)).numpy()

    return run, (v,)


def _minflt() -> int:
    return resource.getrusage(resource.RUSAGE_SELF).ru_minflt


def _worker(conn, case: str, framework: str) -> None:
    """One side of one case in its own process: ``"window"`` -> (batches/s, faults per batch);
    ``"stop"`` -> the last outputs, and ends."""
    batch, per_window = CASES[case]
    run, inputs = _setup(case, framework, batch)
    t0 = time.perf_counter()
    out = run(*inputs)  # JAX: compile (or load from the cache) + the first batch
    conn.send(time.perf_counter() - t0)
    run(*inputs)
    while conn.recv() == "window":
        f0, t = _minflt(), time.perf_counter()
        for _ in range(per_window):
            out = run(*inputs)
        dt = time.perf_counter() - t
        conn.send((per_window / dt, (_minflt() - f0) / per_window))
    conn.send(out)
    conn.close()


def _start(case: str, framework: str):
    return workers.start(
        _worker, case, framework, what=f"the {framework} worker for {case}", timeout_s=1800
    )


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--only", default="", help=f"comma-separated subset of {', '.join(CASES)}")
    p.add_argument("--reps", type=int, default=7, help="timed windows per side (median)")
    p.add_argument("--keep-freed-memory", action="store_true", help="imsyn's malloc settings")
    args = p.parse_args(argv)
    cases = [c for c in args.only.split(",") if c] or list(CASES)
    unknown = sorted(set(cases) - set(CASES))
    if unknown or args.reps < 1:
        p.error(f"unknown case(s) {unknown}" if unknown else "--reps must be >= 1")
    try:
        import torch
    except ImportError:
        p.error("the PyTorch side needs torch (pip install torch)")
    import jax

    print(
        f"jax {jax.__version__}, torch {torch.__version__} ({torch.get_num_threads()} threads), "
        f"{os.cpu_count()} CPUs, malloc: {_MALLOC}"
    )
    print(f"load average at start: {' '.join(f'{v:.1f}' for v in os.getloadavg())}")
    rows = []
    for case in cases:
        batch, _ = CASES[case]
        jfirst, jwin, jstop = _start(case, "jax")
        _, twin, tstop = _start(case, "torch")
        pairs = [(jwin(), twin()) for _ in range(args.reps)]  # alternating windows
        jout, tout = np.asarray(jstop(), np.float64), np.asarray(tstop(), np.float64)
        diff = float(np.max(np.abs(jout - tout)) / np.max(np.abs(tout)))
        j = [batch * w[0] for w, _ in pairs]
        t = [batch * w[0] for _, w in pairs]
        ratio = statistics.median(a / b for a, b in zip(j, t, strict=True))
        jf = statistics.median(w[1] for w, _ in pairs)
        tf = statistics.median(w[1] for _, w in pairs)
        rows.append((case, batch, j, t, ratio, jf, tf, jfirst, diff))
        print(f"  done {case}", flush=True)

    def span(v):
        return f"{statistics.median(v):.1f} ({min(v):.1f}–{max(v):.1f})"

    print(
        f"\n{args.reps} alternating windows per side; images (LPIPS: pairs) per second, "
        "median (min–max); ratio = imsyn / PyTorch throughput, median of per-window ratios"
    )
    print(
        "| case | batch | imsyn /s | PyTorch /s | imsyn/PyTorch | page faults per batch "
        "imsyn / PyTorch | imsyn first batch s | max rel. difference |"
    )
    print("|---|---|---|---|---|---|---|---|")
    for case, batch, j, t, ratio, jf, tf, first, diff in rows:
        print(
            f"| {case} | {batch} | {span(j)} | {span(t)} | **{ratio:.2f}** | "
            f"{jf:,.0f} / {tf:,.0f} | {first:.1f} | {diff:.1e} |"
        )
    print(f"load average at end: {' '.join(f'{v:.1f}' for v in os.getloadavg())}")
    return 0


if __name__ == "__main__":
    sys.exit(main())

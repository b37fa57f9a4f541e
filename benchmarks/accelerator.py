"""imsyn on one accelerator (GPU/TPU), side by side with PyTorch CUDA; prints one JSON object.

Cases (the course configurations):

* ``cyclegan256``: the full CycleGAN training step (``imsyn.gan.make_cyclegan_step``), 256 px,
  batch 1, 9 residual blocks, 70×70 PatchGAN; ``cyclegan128``: 128 px, batch 16, 6 blocks, Patch D;
* ``dcgan64``: the DCGAN D + G step (``DCGANTask.train_step``), 64 px, batch 128;
* ``nst512``: Gatys style transfer at 512×512 (random VGG-19 weights: the speed does not depend
  on them), L-BFGS iterations/s with the default (host-driven backtracking) and the in-graph
  zoom line search;
* ``poisson4mp``: an exact masked Poisson blend of 2048×2048 (4.2 MP, ~4.1 M unknowns);
* ``colorize3200``: ``align.colorize`` of a 3200×3200-per-channel plate.

PyTorch runs the same computation where the repo has one (the reference nets and steps of
``benchmarks/gan_step.py`` and ``TorchNST`` of ``benchmarks/nst.py``, imported, moved to
CUDA) and torch with CUDA is installed; ``ratio`` = imsyn rate / PyTorch rate (> 1: imsyn is
faster). Poisson and colorize have no PyTorch reference. Dtypes: the GAN steps and NST run in
float32 and in bfloat16 (mixed precision: ``dtype="bfloat16"``, bf16 compute with float32
parameters, optimizer state and losses; ``imsyn_bfloat16`` / ``imsyn_<ls>_bfloat16`` and
``bf16_speedup`` = bf16 rate / float32 rate); ``ratio`` compares imsyn float32 with PyTorch
float32. Poisson and colorize are float32 only. Each case runs warm-up steps (the
first one's time, mostly compilation, is reported) and then timed steps for about
``--seconds`` (at least ``--min-steps``); the whole script stays well under 8 minutes on one
GPU. Data are synthetic (the device machine need not have the course data).

On a machine without an accelerator it says so and runs a ~10-second smoke test of every case
at tiny shapes (rates meaningless), exit status 0.

    python benchmarks/accelerator.py [--only cyclegan256,nst512] [--seconds 10] [--smoke]
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import platform
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]


def bench_module(name: str):
    """``benchmarks/<name>.py`` imported by path (``configs/`` has modules of the same names)."""
    key = f"imsyn_bench_{name}"
    if key not in sys.modules:
        spec = importlib.util.spec_from_file_location(key, ROOT / "benchmarks" / f"{name}.py")
        mod = importlib.util.module_from_spec(spec)
        sys.modules[key] = mod
        spec.loader.exec_module(mod)
    return sys.modules[key]


DTYPES = ("float32", "bfloat16")
DTYPES_NOTE = (
    "cyclegan*, dcgan64 and nst512 run in float32 and bfloat16 (config.dtype / Options.dtype: "
    "bf16 compute, float32 parameters, optimizer state and losses); ratio = imsyn float32 / "
    "PyTorch float32, bf16_speedup = imsyn bfloat16 / imsyn float32; poisson and colorize are "
    "float32 only"
)

# name -> settings; "smoke" is the tiny CPU variant of the same code path.
CASES = {
    "cyclegan256": dict(kind="cyclegan", size=256, batch=1, blocks=9, disc="patch70", conv_dim=64),
    "cyclegan128": dict(kind="cyclegan", size=128, batch=16, blocks=6, disc="patch", conv_dim=64),
    "dcgan64": dict(kind="dcgan", size=64, batch=128, conv_dim=32),
    "nst512": dict(kind="nst", size=512, steps=20),
    "poisson4mp": dict(kind="poisson", size=2048),
    "colorize3200": dict(kind="colorize", size=3200),
}
SMOKE = {
    "cyclegan256": dict(kind="cyclegan", size=32, batch=1, blocks=1, disc="patch70", conv_dim=4),
    "cyclegan128": dict(kind="cyclegan", size=16, batch=2, blocks=1, disc="patch", conv_dim=4),
    "dcgan64": dict(kind="dcgan", size=64, batch=2, conv_dim=4),  # the PyTorch twin: 64 px only
    "nst512": dict(kind="nst", size=32, steps=2),
    "poisson4mp": dict(kind="poisson", size=48),
    "colorize3200": dict(kind="colorize", size=240),
}


WARMUP = 2  # calls before the timed window (1 in smoke runs)


def log(msg: str) -> None:
    print(msg, file=sys.stderr, flush=True)


def torch_device():
    """``"cuda"`` when torch with CUDA is usable, else None (and why)."""
    try:
        import torch
    except ImportError:
        return None, "torch is not installed"
    if not torch.cuda.is_available():
        return None, f"torch {torch.__version__} has no usable CUDA device"
    return "cuda", f"torch {torch.__version__}, {torch.cuda.get_device_name(0)}"


def measure(run, sync, *, seconds: float, min_steps: int) -> dict:
    """Rate of ``run()`` (``sync(out)`` waits for it): first call, warm-up, timed window."""
    t0 = time.perf_counter()
    sync(run())
    first = time.perf_counter() - t0
    for _ in range(WARMUP - 1):
        sync(run())
    n, t0 = 0, time.perf_counter()
    while True:
        out = run()
        n += 1
        if n >= min_steps and time.perf_counter() - t0 >= seconds:
            break
        if n % 8 == 0:  # keep the asynchronous queue short, and the clock honest
            sync(out)
    sync(out)
    dt = time.perf_counter() - t0
    return {"steps_per_s": n / dt, "ms_per_step": 1e3 * dt / n, "steps": n, "first_call_s": first}


def _torch_sync(device):
    import torch

    if device == "cuda":
        return lambda _out: torch.cuda.synchronize()
    return lambda _out: None


def _images(rng, batch: int, size: int) -> np.ndarray:
    """Smooth random images in [-1, 1] (8×8 blocks, bilinear-ish by repetition)."""
    blocks = rng.uniform(-1, 1, (batch, max(size // 8, 1), max(size // 8, 1), 3))
    rep = size // blocks.shape[1]
    return blocks.repeat(rep, 1).repeat(rep, 2).astype(np.float32)


# --------------------------------------------------------------------------- cases


def case_gan(c: dict, opts, device) -> dict:
    gan_step = bench_module("gan_step")
    rng = np.random.default_rng(0)
    xa, xb = _images(rng, c["batch"], c["size"]), _images(rng, c["batch"], c["size"])
    size, batch, dim = c["size"], c["batch"], c["conv_dim"]

    def build(dtype):
        if c["kind"] == "cyclegan":
            return gan_step.jax_cyclegan(size, batch, c["blocks"], c["disc"], xa, xb, dim, dtype)
        return gan_step.jax_dcgan(size, batch, xa, dim, dtype)

    nets, run, sync = build("float32")
    # the PyTorch twin (float32) copies the initial weights now (the JAX step donates its state)
    tdev = device or ("cpu" if opts.smoke_torch else None)
    if tdev and c["kind"] == "cyclegan":
        run_t, _, _ = gan_step.torch_cyclegan(nets, c["blocks"], c["disc"], xa, xb, tdev, dim)
    elif tdev:
        run_t, _ = gan_step.torch_dcgan(nets, xa, tdev)
    out: dict = {}
    for dtype in DTYPES:
        if dtype != "float32":
            _, run, sync = build(dtype)
        key = "imsyn" if dtype == "float32" else f"imsyn_{dtype}"
        out[key] = {**measure(run, sync, seconds=opts.seconds, min_steps=opts.min_steps)}
        out[key]["dtype"] = dtype
    out["bf16_speedup"] = out["imsyn_bfloat16"]["steps_per_s"] / out["imsyn"]["steps_per_s"]
    if tdev:
        out["torch"] = measure(
            run_t, _torch_sync(tdev), seconds=opts.seconds, min_steps=opts.min_steps
        )
        out["torch"]["device"] = tdev
        out["ratio"] = out["imsyn"]["steps_per_s"] / out["torch"]["steps_per_s"]
    return out


def case_nst(c: dict, opts, device) -> dict:
    from imsyn import nst
    from imsyn.models import vgg

    nst_bench = bench_module("nst")

    rng = np.random.default_rng(0)
    size, steps = c["size"], c["steps"]
    content = (0.5 + 0.5 * _images(rng, 1, size)[0]).clip(0, 1)
    style = (0.5 + 0.5 * _images(rng, 1, size)[0][::-1]).clip(0, 1).copy()
    weights = vgg.random_weights(0)
    layers = dict(content_layers=nst_bench.CONTENT_LAYERS, style_layers=nst_bench.STYLE_LAYERS)
    out: dict = {"weights": "random VGG-19 (speed does not depend on the values)"}
    for dtype in DTYPES:
        for ls in ("backtracking", "zoom"):
            opt = nst.Options(steps=steps, linesearch=ls, dtype=dtype, **layers)
            t0 = time.perf_counter()
            nst.optimize(
                weights,
                content=content,
                styles=[style],
                options=nst.Options(steps=1, linesearch=ls, dtype=dtype, **layers),
                progress=False,
            )  # fmt: skip  (compiles outside the timing)
            first = time.perf_counter() - t0
            res = nst.optimize(
                weights, content=content, styles=[style], options=opt, progress=False
            )
            key = f"imsyn_{ls}" if dtype == "float32" else f"imsyn_{ls}_{dtype}"
            out[key] = {
                "iterations_per_s": steps / res.seconds,
                "evaluations_per_s": res.evaluations / res.seconds,
                "iterations": steps,
                "evaluations": res.evaluations,
                "first_call_s": first,
                "final_loss": float(res.loss[-1]),
                "dtype": dtype,
            }
    out["bf16_speedup"] = {
        ls: out[f"imsyn_{ls}_bfloat16"]["iterations_per_s"] / out[f"imsyn_{ls}"]["iterations_per_s"]
        for ls in ("backtracking", "zoom")
    }
    tdev = device or ("cpu" if opts.smoke_torch else None)
    if tdev:
        ref = _torch_nst(nst_bench.TorchNST, weights, content, style, tdev)
        budget = out["imsyn_backtracking"]["evaluations"]
        ref.lbfgs(2)  # warm-up (cuDNN autotuning, allocator)
        t0 = time.perf_counter()
        _secs, evals, _c, _s = ref.lbfgs(budget)
        _torch_sync(tdev)(None)
        secs = time.perf_counter() - t0
        # torch.optim.LBFGS without a line search: one evaluation per iteration
        out["torch"] = {"iterations_per_s": evals / secs, "evaluations_per_s": evals / secs}
        out["torch"]["device"] = tdev
        for what in ("iterations", "evaluations"):
            out[f"ratio_{what}"] = {
                ls: out[f"imsyn_{ls}"][f"{what}_per_s"] / out["torch"][f"{what}_per_s"]
                for ls in ("backtracking", "zoom")
            }
    return out


def _torch_nst(cls, weights, content, style, device):
    """``benchmarks/nst.py``'s TorchNST (built on the CPU) with its net and targets on
    ``device``."""

    class OnDevice(cls):
        dev = "cpu"

        def nchw(self, a):
            return super().nchw(a).to(self.dev)

    ref = OnDevice(weights, content, style)
    ref.net.to(device)
    ref.mean, ref.std = ref.mean.to(device), ref.std.to(device)
    ref.ct = {k: v.to(device) for k, v in ref.ct.items()}
    ref.sg = {k: v.to(device) for k, v in ref.sg.items()}
    ref.dev = device
    return ref


def case_poisson(c: dict, opts, device) -> dict:
    from imsyn import poisson

    rng = np.random.default_rng(0)
    n = c["size"]
    yy, xx = np.mgrid[:n, :n] / n
    tgt = np.stack([np.sin(6 * xx + k) * np.cos(4 * yy) for k in range(3)], -1) * 0.3 + 0.5
    src = (tgt[::-1] + 0.05 * rng.standard_normal(tgt.shape)).clip(0, 1)
    mask = np.zeros((n, n), bool)
    mask[n // 64 + 1 : -n // 64 - 1, n // 64 + 1 : -n // 64 - 1] = True
    tgt, src = tgt.astype(np.float32), src.astype(np.float32)
    holder = {}

    def run():
        holder["res"] = poisson.blend(src, tgt, mask)
        return holder["res"]

    m = measure(run, lambda _r: None, seconds=opts.seconds, min_steps=min(opts.min_steps, 3))
    res = holder["res"]
    return {
        "imsyn": {**m, "unknowns": int(mask.sum()), "cg_iterations": res.iterations},
        "torch": None,
        "torch_note": "no PyTorch reference in the repo",
    }


def case_colorize(c: dict, opts, device) -> dict:
    from imsyn import align

    plate = bench_module("align").synthetic_plate(c["size"], {"g": (7, 3), "r": (15, -4)})

    def run():
        return align.colorize(plate)

    m = measure(run, lambda _r: None, seconds=opts.seconds, min_steps=min(opts.min_steps, 3))
    res = run()
    return {
        "imsyn": {**m, "plate": list(plate.shape), "offsets": np.asarray(res.offsets).tolist()},
        "torch": None,
        "torch_note": "no PyTorch reference in the repo",
    }


RUNNERS = {
    "cyclegan": case_gan,
    "dcgan": case_gan,
    "nst": case_nst,
    "poisson": case_poisson,
    "colorize": case_colorize,
}


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--only", default="", help="comma-separated case names")
    p.add_argument("--seconds", type=float, default=8.0, help="timed window per case and side")
    p.add_argument("--min-steps", type=int, default=5)
    p.add_argument("--smoke", action="store_true", help="tiny shapes even on an accelerator")
    opts = p.parse_args(argv)

    import jax

    from imsyn.runtime import enable_compilation_cache

    enable_compilation_cache()
    backend = jax.default_backend()
    smoke = opts.smoke or backend == "cpu"
    device, torch_note = torch_device()
    opts.smoke_torch = smoke and torch_note != "torch is not installed"
    if smoke:
        global WARMUP
        opts.seconds, opts.min_steps, WARMUP = min(opts.seconds, 0.2), 1, 1
        if opts.smoke_torch:
            import torch

            torch.set_num_threads(1)  # tiny shapes: threads only contend
    cases = SMOKE if smoke else CASES
    names = [n for n in opts.only.split(",") if n] or list(cases)
    unknown = sorted(set(names) - set(cases))
    if unknown:
        p.error(f"unknown case(s) {unknown}; known: {list(cases)}")
    report: dict = {
        "mode": "smoke" if smoke else "benchmark",
        "backend": backend,
        "devices": [str(d) for d in jax.devices()],
        "jax": jax.__version__,
        "python": platform.python_version(),
        "torch": torch_note,
        "dtypes": list(DTYPES),
        "dtype_note": DTYPES_NOTE,
        "cases": {},
    }
    if backend == "cpu":
        report["note"] = (
            "no accelerator (JAX backend is cpu): smoke run at tiny shapes, PyTorch on the CPU; "
            "the rates are not benchmarks"
        )
        log(f"accelerator.py: {report['note']}")
    t_all = time.perf_counter()
    for name in names:
        c = cases[name]
        log(f"accelerator.py: {name} {c}")
        t0 = time.perf_counter()
        try:
            r = RUNNERS[c["kind"]](c, opts, device)
        except Exception as e:  # one failing case must not lose the others' numbers
            r = {"error": f"{type(e).__name__}: {e}"}
        r["config"] = {k: v for k, v in c.items() if k != "kind"}
        r["wall_s"] = time.perf_counter() - t0
        report["cases"][name] = r
    report["total_s"] = time.perf_counter() - t_all
    print(json.dumps(report, indent=1, default=float))
    return 0


if __name__ == "__main__":
    sys.exit(main())

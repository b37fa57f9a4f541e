"""Neural style transfer: imsyn (JAX) vs a PyTorch reference on the CPU, side by side.

Both run the same problem — the same VGG-19 weights (``--weights``, else
``$IMSYN_VGG19``, the fetched vgg19, or the same random features; normalized),
the same images, the course's losses (content at conv_4, style at conv_1..conv_5,
weights 1 / 1e6), clamping to [0, 1] — and:

1. ``fwd+bwd``: one loss + image-gradient evaluation (median of ``--reps``,
   interleaved, after warm-up; JAX compile time reported separately);
2. ``L-BFGS``: imsyn runs ``--steps`` L-BFGS steps (default backtracking line
   search) and PyTorch the course's ``torch.optim.LBFGS`` (defaults, clamping in
   the closure) for the same number of loss evaluations; wall time, evaluations
   and the final losses of both are printed (fastest of ``--lbfgs-reps``
   interleaved runs);
3. (not with ``--quick``) peak memory of one evaluation at 1024 px, with and
   without ``remat``, in fresh subprocesses.

Ratios are PyTorch time / imsyn time (> 1: imsyn is faster).

    python benchmarks/nst.py [--quick] [--data DIR] [--weights vgg19.npz]   # DIR: course data
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import statistics
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
CONTENT_LAYERS = ("conv_4",)
STYLE_LAYERS = ("conv_1", "conv_2", "conv_3", "conv_4", "conv_5")


def load_images(data: Path, size: int):
    from imsyn import nst
    from imsyn.image import read_float

    c = read_float(data / "nst" / "content" / "tubingen.jpg", mode="rgb")
    s = read_float(data / "nst" / "style" / "starry_night.jpg", mode="rgb")
    c = nst.resize(c, nst.fit_size(c.shape[:2], size))
    return c, nst.fit_style(s, c.shape[:2], fit="scale")


class TorchNST:
    """The course's NST objective in plain PyTorch (torchvision VGG-19 layout)."""

    def __init__(self, weights, content, style):
        import torch
        from torch import nn

        from imsyn.models import vgg

        self.torch = torch
        layers, cin = [], 3
        for c in vgg.CFG:
            if c == "M":
                layers.append(nn.MaxPool2d(2, 2))
            else:
                layers += [nn.Conv2d(cin, c, 3, padding=1), nn.ReLU()]
                cin = c
        pos = {vgg.LAYER_INDEX[n]: n for n in CONTENT_LAYERS + STYLE_LAYERS}
        self.pos = pos
        self.net = nn.Sequential(*layers[: max(pos) + 1]).eval()
        convs = [m for m in self.net if isinstance(m, nn.Conv2d)]
        with torch.no_grad():
            for m, k, b in zip(convs, weights.kernels, weights.biases, strict=False):
                m.weight.copy_(torch.from_numpy(np.asarray(k).transpose(3, 2, 0, 1).copy()))
                m.bias.copy_(torch.from_numpy(np.asarray(b)))
        for p in self.net.parameters():
            p.requires_grad_(False)
        self.mean = torch.tensor(weights.mean).view(1, 3, 1, 1)
        self.std = torch.tensor(weights.std).view(1, 3, 1, 1)
        with torch.no_grad():
            self.ct = {
                k: v for k, v in self.feats(self.nchw(content)).items() if k in CONTENT_LAYERS
            }
            self.sg = {k: self.gram(v) for k, v in self.feats(self.nchw(style)).items()}
        self.content = content

    def nchw(self, a):
        return self.torch.from_numpy(
            np.ascontiguousarray(np.asarray(a)[None].transpose(0, 3, 1, 2))
        )

    def feats(self, x):
        out, h = {}, (x - self.mean) / self.std
        for i, m in enumerate(self.net):
            h = m(h)
            if i in self.pos:
                out[self.pos[i]] = h
        return out

    @staticmethod
    def gram(f):
        a, b, c, d = f.size()
        f = f.view(a * b, c * d)
        return f @ f.t() / (a * b * c * d)

    def losses(self, x):
        F = self.torch.nn.functional
        f = self.feats(x)
        c = sum(F.mse_loss(f[k], self.ct[k]) for k in CONTENT_LAYERS)
        s = sum(F.mse_loss(self.gram(f[k]), self.sg[k]) for k in STYLE_LAYERS)
        return c, s

    def fwd_bwd(self, x):
        x.grad = None
        c, s = self.losses(x)
        (c + 1e6 * s).backward()
        return x.grad

    def lbfgs(self, budget):
        """The course's / PyTorch tutorial's L-BFGS: ``torch.optim.LBFGS`` defaults (lr 1,
        no line search), the image clamped at the start of every closure call,
        stopped after ``budget`` loss evaluations."""
        torch = self.torch
        x = self.nchw(self.content).clone().requires_grad_(True)
        opt = torch.optim.LBFGS([x], max_iter=budget, max_eval=budget)
        evals = [0]

        def closure():
            with torch.no_grad():
                x.clamp_(0, 1)
            opt.zero_grad()
            c, s = self.losses(x)
            loss = c + 1e6 * s
            loss.backward()
            evals[0] += 1
            return loss

        t0 = time.perf_counter()
        opt.step(closure)
        secs = time.perf_counter() - t0
        with torch.no_grad():
            x.clamp_(0, 1)
            c, s = self.losses(x)
        return secs, evals[0], float(c), float(s)


def bench_size(size, args, weights, rows):
    import jax
    import jax.numpy as jnp
    import torch

    from imsyn import nst

    content, style = load_images(args.data, size)
    opts = nst.Options(steps=args.steps, content_layers=CONTENT_LAYERS, style_layers=STYLE_LAYERS)
    _, static, params, targets, _, _ = nst.build_problem(
        weights, content, [style], None, None, opts
    )
    grad = jax.jit(jax.grad(lambda x, p, t: nst.objective(x, p, t, static=static)[0]))

    def grad_fn(x):
        return grad(x, params, targets)

    x = jnp.asarray(content)[None]
    t0 = time.perf_counter()
    grad_fn(x).block_until_ready()
    compile_s = time.perf_counter() - t0
    ref = TorchNST(weights, content, style)
    xt = ref.nchw(content).clone().requires_grad_(True)
    ref.fwd_bwd(xt)
    tj, tt = [], []
    for _ in range(args.reps):  # interleaved, so load changes hit both
        t0 = time.perf_counter()
        grad_fn(x).block_until_ready()
        tj.append(time.perf_counter() - t0)
        t0 = time.perf_counter()
        ref.fwd_bwd(xt)
        tt.append(time.perf_counter() - t0)
    mj, mt = statistics.median(tj), statistics.median(tt)
    hw = f"{content.shape[1]}x{content.shape[0]}"
    rows.append((f"fwd+bwd {hw}", f"{mj * 1e3:.0f} ms", f"{mt * 1e3:.0f} ms", mt / mj, ""))
    print(f"  {hw}: JAX compile {compile_s:.1f} s; torch threads {torch.get_num_threads()}")

    nst.optimize(
        weights, content=content, styles=[style], options=nst.Options(steps=1), progress=False
    )  # fmt: skip  (compile the step outside the timing)
    secs_j, secs_t = [], []
    for _ in range(args.lbfgs_reps):  # interleaved repeats; the fastest of each is reported
        res = nst.optimize(weights, content=content, styles=[style], options=opts, progress=False)
        secs_j.append(res.seconds)
        # the same evaluation budget for PyTorch
        secs, evals_t, c_t, s_t = ref.lbfgs(res.evaluations)
        secs_t.append(secs)
    res = res._replace(seconds=min(secs_j))
    secs_t = min(secs_t)
    rows.append(
        (
            f"L-BFGS {args.steps} steps {hw}",
            f"{res.seconds:.1f} s ({res.evaluations} ev)",
            f"{secs_t:.1f} s ({evals_t} ev)",
            secs_t / res.seconds,
            f"style {res.style_loss[-1]:.3g} vs {s_t:.3g}; content {res.content_loss[-1]:.3g} "
            f"vs {c_t:.3g}; per eval {secs_t / evals_t / (res.seconds / res.evaluations):.2f}x",
        )
    )


MEMORY_CHILD = """
import json, resource, sys, time
import jax, jax.numpy as jnp, numpy as np
from imsyn import nst
from imsyn.models import vgg
size, remat = int(sys.argv[1]), sys.argv[2] == "1"
w = vgg.load_weights(sys.argv[3] or None, quiet=True)
rng = np.random.default_rng(0)
c = rng.uniform(0, 1, (size, size, 3)).astype(np.float32)
s = rng.uniform(0, 1, (size // 2, size // 2, 3)).astype(np.float32)
opts = nst.Options(remat=remat)
_, st, p, t, _, _ = nst.build_problem(w, c, [s], None, None, opts)
g = jax.jit(jax.grad(lambda x, p, t: nst.objective(x, p, t, static=st)[0]))
t0 = time.perf_counter()
g(jnp.asarray(c)[None], p, t).block_until_ready()
dt = time.perf_counter() - t0
print(json.dumps({"rss_gib": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20,
                  "seconds": dt}))
"""


def memory_check(args, rows):
    for remat in (False, True):
        p = subprocess.run(
            [sys.executable, "-c", MEMORY_CHILD, "1024", "1" if remat else "0", args.weights or ""],
            capture_output=True,
            text=True,
            cwd=ROOT,
        )
        if p.returncode != 0:
            rows.append(
                (f"1024 px memory remat={remat}", "failed", "", float("nan"), p.stderr[-200:])
            )
            continue
        r = json.loads(p.stdout.strip().splitlines()[-1])
        rows.append(
            (
                f"1024x1024 fwd+bwd, remat={remat}",
                f"peak RSS {r['rss_gib']:.2f} GiB",
                "",
                float("nan"),
                f"first call (with compile) {r['seconds']:.0f} s",
            )
        )


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true", help="256 px only, fewer reps, no 1024 check")
    ap.add_argument(
        "--data", type=Path, default=None, help="course data (default: python -m imsyn data path)"
    )
    ap.add_argument(
        "--weights",
        default=None,
        help="VGG-19 weights (default: $IMSYN_VGG19, the fetched vgg19, else random)",
    )
    ap.add_argument("--sizes", type=int, nargs="+", default=None)
    ap.add_argument("--steps", type=int, default=None)
    ap.add_argument("--reps", type=int, default=None)
    ap.add_argument("--lbfgs-reps", type=int, default=None)
    args = ap.parse_args()
    if args.data is None:  # the fetched course data (python -m imsyn data fetch course)
        from imsyn.course_data import data_dir

        args.data = data_dir()
    args.sizes = args.sizes or ([256] if args.quick else [256, 512])
    args.steps = args.steps or (5 if args.quick else 10)
    args.reps = args.reps or (3 if args.quick else 5)
    args.lbfgs_reps = args.lbfgs_reps or (1 if args.quick else 2)
    if not (args.data / "nst" / "content" / "tubingen.jpg").exists():
        sys.exit(
            f"benchmarks/nst.py: error: {args.data}/nst/content/tubingen.jpg not found "
            "(python -m imsyn data fetch nst, or --data)"
        )
    from imsyn.models import vgg
    from imsyn.runtime import enable_compilation_cache

    enable_compilation_cache()
    weights = vgg.load_weights(args.weights, quiet=True)
    print(f"VGG-19 weights: {weights.source}; CPU cores: {os.cpu_count()}; "
          f"load average: {os.getloadavg()[0]:.1f}")  # fmt: skip
    rows = []
    for size in args.sizes:
        bench_size(size, args, weights, rows)
    if not args.quick:
        memory_check(args, rows)
    w = max(len(r[0]) for r in rows)
    print(f"\n{'case':<{w}}  {'imsyn (JAX)':>20}  {'PyTorch':>20}  {'ratio':>6}  notes")
    for name, a, b, ratio, note in rows:
        rs = f"{ratio:.2f}x" if ratio == ratio else "-"
        print(f"{name:<{w}}  {a:>20}  {b:>20}  {rs:>6}  {note}")
    print(f"\npeak RSS of this process: "
          f"{resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20:.2f} GiB")  # fmt: skip


if __name__ == "__main__":
    main()

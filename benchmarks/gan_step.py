"""GAN training steps: imsyn (JAX/Flax NNX) vs the same networks in plain PyTorch, on the CPU.

Both sides run the same architecture with the same initial weights (copied from the NNX
modules into ``torch.nn`` modules written here; the script checks that the generators
agree), the same batch of real images (the course's cats from ``--data``, resized) and the
same optimizer (Adam), and time whole training steps:

* ``dcgan``: the DCGAN D step + G step (``imsyn.gan.make_dcgan_step``, the
  training helper's models), 64 px, batch 16, ``conv_dim`` 32, instance norm, LSGAN.
* ``cyclegan``: the full CycleGAN step (``imsyn.gan.make_cyclegan_step``: both
  generators forward once, both discriminators updated on real vs detached fakes, then both
  generators updated against the updated discriminators with λ_cyc = 10), 64 px and 128 px at
  batch 16 and 256 px at batch 1 (64-wide networks; 3/6/9 residual blocks; Patch
  discriminator, the 70×70 one at 256 px).

Each framework runs in a process of its own (as in training: one heap per framework, see
``_worker``). Steps/s are the median of ``--reps`` timed windows after a warm-up, the two
processes' windows alternating; JAX compile time is reported separately. ``ratio`` = JAX steps/s ÷
PyTorch steps/s (> 1: imsyn is faster), the median of the per-pair ratios.

    python benchmarks/gan_step.py [--quick] [--data DIR] [--only cyclegan64,...]  # DIR: course data
    python benchmarks/gan_step.py --pin-core=0 --threads=1   # both on one core
    python benchmarks/gan_step.py --pin-core=0 --threads=1 --layers=128   # per-layer table

``--keep-freed-memory`` runs both processes with imsyn's opt-in malloc settings
(:func:`imsyn.runtime.keep_freed_memory`: freed memory is reused instead of being faulted in
again every step); by default both run with glibc's defaults, as train.py does.

Single-core comparisons need ``--pin-core``: with ``--threads=1`` alone XLA still runs
independent operations concurrently on a second thread (its inter-op pool), so JAX used up
to 2 cores while PyTorch used one, and its process CPU time counted a waiting thread too.
"""

from __future__ import annotations

import argparse
import os
import resource
import statistics
import sys
import time
from pathlib import Path

from imsyn.runtime import keep_freed_memory

# First, in the main process and in each worker (a spawned worker imports this module before
# anything else): glibc applies the one-heap setting only if no thread has allocated yet.
if "--keep-freed-memory" in sys.argv[1:]:
    os.environ["IMSYN_KEEP_FREED_MEMORY"] = "1"  # inherited by the workers
_MALLOC = "imsyn keep_freed_memory" if keep_freed_memory() else "glibc defaults"

import numpy as np  # noqa: E402
import workers  # noqa: E402  (benchmarks/workers.py)

ROOT = Path(__file__).resolve().parents[1]

# name -> (kind, image size, batch, generator blocks, discriminator)
CASES = {
    "dcgan64": ("dcgan", 64, 16, 0, "dc"),
    "cyclegan64": ("cyclegan", 64, 16, 3, "patch"),
    "cyclegan128": ("cyclegan", 128, 16, 6, "patch"),
    "cyclegan256": ("cyclegan", 256, 1, 9, "patch70"),
}


# --------------------------------------------------------------------------- data


def load_batch(data: Path, size: int, batch: int, rng) -> tuple[np.ndarray, np.ndarray]:
    """Two batches of real cat photos (domain A, domain B) in [-1, 1], NHWC float32."""
    from PIL import Image

    out = []
    for folder in ("grumpifyAprocessed", "grumpifyBprocessed"):
        d = data / "gan" / folder
        files = sorted(d.glob("*.png"))
        if not files:
            sys.exit(f"gan_step.py: error: no PNGs in {d} (imsyn data fetch cats, or --data)")
        pick = rng.choice(len(files), batch, replace=len(files) < batch)
        imgs = []
        for i in pick:
            with Image.open(files[i]) as im:
                im = im.convert("RGB").resize((size, size), Image.BICUBIC)
                imgs.append(np.asarray(im, np.float32) / 127.5 - 1.0)
        out.append(np.stack(imgs))
    return out[0], out[1]


# --------------------------------------------------------------------------- PyTorch mirrors


def torch_modules():
    """The PyTorch twins of imsyn's networks (same structure and parameter names)."""
    import torch
    from torch import nn

    def norm(kind, c):
        return nn.InstanceNorm2d(c, affine=True) if kind == "instance" else nn.Identity()

    class UpConv(nn.Module):
        def __init__(self, cin, cout, norm_kind, padding_mode="zeros"):
            super().__init__()
            self.conv = nn.Conv2d(
                cin, cout, 3, padding=1, padding_mode=padding_mode, bias=norm_kind == "none"
            )
            self.norm = norm(norm_kind, cout)

        def forward(self, x):
            return self.norm(self.conv(nn.functional.interpolate(x, scale_factor=2.0)))

    class ResnetBlock(nn.Module):
        def __init__(self, dim):
            super().__init__()
            self.convs = nn.ModuleList(
                [
                    nn.Conv2d(dim, dim, 3, padding=1, padding_mode="reflect", bias=False)
                    for _ in range(2)
                ]
            )
            self.norms = nn.ModuleList([norm("instance", dim) for _ in range(2)])

        def forward(self, x):
            h = torch.relu(self.norms[0](self.convs[0](x)))
            return x + self.norms[1](self.convs[1](h))

    class CycleGenerator(nn.Module):
        def __init__(self, d, n_blocks):
            super().__init__()
            self.conv1 = nn.Conv2d(3, d, 4, 2, 1, bias=False)
            self.norm1 = norm("instance", d)
            self.conv2 = nn.Conv2d(d, 2 * d, 4, 2, 1, bias=False)
            self.norm2 = norm("instance", 2 * d)
            self.blocks = nn.ModuleList([ResnetBlock(2 * d) for _ in range(n_blocks)])
            self.up1 = UpConv(2 * d, d, "instance", "reflect")
            self.up2 = UpConv(d, 3, "none", "reflect")

        def forward(self, x):
            h = torch.relu(self.norm1(self.conv1(x)))
            h = torch.relu(self.norm2(self.conv2(h)))
            for b in self.blocks:
                h = b(h)
            return torch.tanh(self.up2(torch.relu(self.up1(h))))

    class ConvStack(nn.Module):
        def __init__(self, specs):
            super().__init__()
            n = len(specs)
            self.convs = nn.ModuleList(
                [
                    nn.Conv2d(ci, co, 4, s, 1, bias=(i == 0 or i == n - 1))
                    for i, (ci, co, s) in enumerate(specs)
                ]
            )
            self.norms = nn.ModuleList(
                [norm("instance" if 0 < i < n - 1 else "none", specs[i][1]) for i in range(n)]
            )

        def forward(self, x):
            n = len(self.convs)
            for i, (c, nm) in enumerate(zip(self.convs, self.norms, strict=True)):
                x = nm(c(x))
                if i < n - 1:
                    x = nn.functional.leaky_relu(x, 0.2)
            return x

    class PatchDiscriminator(nn.Module):
        def __init__(self, d, kind):
            super().__init__()
            if kind == "patch":
                specs = [(3, d, 2), (d, 2 * d, 2), (2 * d, 4 * d, 2), (4 * d, 1, 2)]
            else:
                specs = [
                    (3, d, 2),
                    (d, 2 * d, 2),
                    (2 * d, 4 * d, 2),
                    (4 * d, 8 * d, 1),
                    (8 * d, 1, 1),
                ]
            self.net = ConvStack(specs)

        def forward(self, x):
            return self.net(x)

    class DCGenerator(nn.Module):
        def __init__(self, conv_dim, z_dim=100):
            super().__init__()
            c = conv_dim * 8
            self.stem = nn.ConvTranspose2d(z_dim, c, 4, bias=False)
            self.stem_norm = norm("instance", c)
            blocks = []
            for w in (conv_dim * 4, conv_dim * 2, conv_dim):
                blocks.append(UpConv(c, w, "instance"))
                c = w
            self.blocks = nn.ModuleList(blocks)
            self.out = UpConv(c, 3, "none")

        def forward(self, z):
            x = torch.relu(self.stem_norm(self.stem(z[:, :, None, None])))
            for b in self.blocks:
                x = torch.relu(b(x))
            return torch.tanh(self.out(x))

    class DCDiscriminator(nn.Module):
        def __init__(self, conv_dim):
            super().__init__()
            convs, norms, cin = [], [], 3
            for i in range(4):
                cout = conv_dim * 2**i
                convs.append(nn.Conv2d(cin, cout, 4, 2, 1, bias=i == 0))
                norms.append(norm("none" if i == 0 else "instance", cout))
                cin = cout
            self.convs, self.norms = nn.ModuleList(convs), nn.ModuleList(norms)
            self.head = nn.Conv2d(cin, 1, 4)

        def forward(self, x):
            for c, n in zip(self.convs, self.norms, strict=True):
                x = nn.functional.leaky_relu(n(c(x)), 0.2)
            return self.head(x).reshape(x.shape[0])

    return CycleGenerator, PatchDiscriminator, DCGenerator, DCDiscriminator


def copy_weights(nnx_module, torch_module) -> None:
    """Copies an NNX module's parameters into its PyTorch twin (same attribute names)."""
    import torch
    from flax import nnx

    params = {}
    for path, v in nnx.to_flat_state(nnx.state(nnx_module, nnx.Param)):
        params[".".join(str(p) for p in path)] = np.asarray(v.get_value())
    sd = torch_module.state_dict()
    for name, t in sd.items():
        stem, leaf = name.rsplit(".", 1)
        if leaf == "weight" and t.ndim == 4:
            w = params.pop(f"{stem}.kernel")
            # HWIO -> OIHW (Conv2d) or HWIO -> IOHW (ConvTranspose2d)
            is_t = isinstance(torch_module.get_submodule(stem), torch.nn.ConvTranspose2d)
            w = w.transpose(2, 3, 0, 1) if is_t else w.transpose(3, 2, 0, 1)
        elif leaf == "weight":
            w = params.pop(f"{stem}.scale")
        elif leaf == "bias":
            w = params.pop(f"{stem}.bias")
        else:
            continue
        assert tuple(w.shape) == tuple(t.shape), (name, w.shape, t.shape)
        sd[name] = torch.tensor(np.ascontiguousarray(w))
    assert not params, f"parameters without a PyTorch twin: {sorted(params)[:3]}"
    torch_module.load_state_dict(sd)


# --------------------------------------------------------------------------- steps


def jax_cyclegan(size, batch, n_blocks, disc, xa, xb, conv_dim=64, dtype="float32"):
    import jax
    import jax.numpy as jnp
    import optax
    from flax import nnx

    from imsyn import gan, models

    r = nnx.Rngs(0)
    gen = models.get("cycle_resnet")
    dis = models.get({"patch": "patch_discriminator", "patch70": "patch70_discriminator"}[disc])
    nets = [gen(conv_dim=conv_dim, n_blocks=n_blocks, rngs=r) for _ in range(2)]
    nets += [dis(conv_dim=conv_dim, rngs=r) for _ in range(2)]
    opt = optax.adam(2e-4, 0.5, 0.999)
    state = gan.init_cyclegan_state(gan.CycleGAN(*nets), opt, opt)
    defs = gan.CycleGAN(*(nnx.graphdef(m) for m in nets))
    step = gan.make_cyclegan_step(defs, opt, opt, loss="lsgan", lambda_cycle=10.0, dtype=dtype)
    b = {"x": jnp.asarray(xa), "y": jnp.asarray(xb)}
    fn = jax.jit(step, donate_argnums=0)
    holder = {"state": state, "i": 0}

    def run():
        holder["state"], m = fn(holder["state"], b, jax.random.key(holder["i"]))
        holder["i"] += 1
        return m

    def sync(m):
        jax.block_until_ready(m)

    return nets, run, sync


def torch_cyclegan(nets, n_blocks, disc, xa, xb, device="cpu", conv_dim=64):
    import torch

    CycleGenerator, PatchDiscriminator, _, _ = torch_modules()
    g_xy, g_yx = CycleGenerator(conv_dim, n_blocks), CycleGenerator(conv_dim, n_blocks)
    d_x, d_y = PatchDiscriminator(conv_dim, disc), PatchDiscriminator(conv_dim, disc)
    for src, dst in zip(nets, (g_xy, g_yx, d_x, d_y), strict=True):
        copy_weights(src, dst)
        dst.to(device)
    opt_g = torch.optim.Adam([*g_xy.parameters(), *g_yx.parameters()], 2e-4, betas=(0.5, 0.999))
    opt_d = torch.optim.Adam([*d_x.parameters(), *d_y.parameters()], 2e-4, betas=(0.5, 0.999))
    x = torch.tensor(xa).permute(0, 3, 1, 2).contiguous().to(device)
    y = torch.tensor(xb).permute(0, 3, 1, 2).contiguous().to(device)
    n = x.shape[0]

    def d_loss(real_logits, fake_logits):
        return 0.5 * ((real_logits - 1) ** 2).mean() + 0.5 * (fake_logits**2).mean()

    def run():
        fake_y, fake_x = g_xy(x), g_yx(y)
        rec_x, rec_y = g_yx(fake_y), g_xy(fake_x)
        # discriminators on real vs detached fakes (one batch each, as imsyn does)
        opt_d.zero_grad(set_to_none=True)
        ly = d_y(torch.cat([y, fake_y.detach()]))
        lx = d_x(torch.cat([x, fake_x.detach()]))
        ld = d_loss(ly[:n], ly[n:]) + d_loss(lx[:n], lx[n:])
        ld.backward()
        opt_d.step()
        # generators against the updated discriminators (D grads discarded)
        opt_g.zero_grad(set_to_none=True)
        adv = 0.5 * ((d_y(fake_y) - 1) ** 2).mean() + 0.5 * ((d_x(fake_x) - 1) ** 2).mean()
        cyc = (x - rec_x).abs().mean() + (y - rec_y).abs().mean()
        lg = adv + 10.0 * cyc
        lg.backward()
        opt_g.step()
        return lg

    def check(jax_out: np.ndarray) -> float:
        with torch.no_grad():
            want = g_xy(x).permute(0, 2, 3, 1).cpu().numpy()
        return float(np.abs(jax_out - want).max())

    return run, (lambda m: None), check


def jax_dcgan(size, batch, xa, conv_dim=None, dtype="float32"):
    import jax
    import jax.numpy as jnp

    from imsyn.tasks.dcgan import DCGANTask, graphdefs

    sys.path.insert(0, str(ROOT / "configs"))
    import dcgan as dcgan_config

    cfg = dcgan_config.get_config()
    cfg.update(image_size=size, batch_size=batch, diffaug="", dtype=dtype)
    if conv_dim:
        cfg.update(conv_dim=conv_dim)
    task = DCGANTask(cfg)
    state = task.init_state(cfg, jax.random.key(0))
    from flax import nnx

    g_def, d_def = graphdefs(cfg)
    g = nnx.merge(g_def, state["g"])
    d = nnx.merge(d_def, state["d"])
    fn = jax.jit(task.train_step, donate_argnums=0)
    b = {"image": jnp.asarray(xa)}
    holder = {"state": state, "i": 0}

    def run():
        holder["state"], m = fn(holder["state"], b, jax.random.key(holder["i"]))
        holder["i"] += 1
        return m

    return (g, d, cfg.conv_dim), run, jax.block_until_ready


def torch_dcgan(nets, xa, device="cpu"):
    import torch

    _, _, DCGenerator, DCDiscriminator = torch_modules()
    g_src, d_src, conv_dim = nets
    g, d = DCGenerator(conv_dim), DCDiscriminator(conv_dim)
    copy_weights(g_src, g)
    copy_weights(d_src, d)
    g.to(device)
    d.to(device)
    opt_g = torch.optim.Adam(g.parameters(), 2e-4, betas=(0.5, 0.999))
    opt_d = torch.optim.Adam(d.parameters(), 2e-4, betas=(0.5, 0.999))
    real = torch.tensor(xa).permute(0, 3, 1, 2).contiguous().to(device)
    n = real.shape[0]

    def run():
        with torch.no_grad():
            fake = g(torch.randn(n, 100, device=device))
        opt_d.zero_grad(set_to_none=True)
        ld = 0.5 * ((d(real) - 1) ** 2).mean() + 0.5 * (d(fake) ** 2).mean()
        ld.backward()
        opt_d.step()
        opt_g.zero_grad(set_to_none=True)
        lg = 0.5 * ((d(g(torch.randn(n, 100, device=device))) - 1) ** 2).mean()
        lg.backward()
        opt_g.step()
        return lg

    return run, (lambda m: None)


# --------------------------------------------------------------------------- per layer

# The layers of the 64-wide CycleGAN networks at image size S (input side, channels, kind):
# kind "s2" = 4x4 stride-2 zero-padded conv, "res" = 3x3 reflect conv, "up" = UpConv (reflect).
LAYERS = (
    ("G conv1", 1, 3, 64, "s2"),
    ("G conv2", 2, 64, 128, "s2"),
    ("G res conv", 4, 128, 128, "res"),
    ("G up1", 4, 128, 64, "up"),
    ("G up2", 2, 64, 3, "up"),
    ("D conv1", 1, 3, 64, "s2"),
    ("D conv2", 2, 64, 128, "s2"),
    ("D conv3", 4, 128, 256, "s2"),
    ("D conv4", 8, 256, 1, "s2"),
)


def _time_layer(kind: str, h: int, cin: int, cout: int, batch: int, best) -> tuple:
    """(JAX fwd, PyTorch fwd, JAX fwd+bwd, PyTorch fwd+bwd) in ms for one layer."""
    import jax
    import jax.numpy as jnp
    import torch
    from flax import nnx

    from imsyn.models import layers

    if kind == "up":
        m = layers.UpConv(cin, cout, norm="none", padding_mode="reflect", rngs=nnx.Rngs(0))
        conv = torch.nn.Conv2d(cin, cout, 3, padding=1, padding_mode="reflect")

        def tfn(x):
            return conv(torch.nn.functional.interpolate(x, scale_factor=2.0))
    else:
        k, s, mode = (3, 1, "reflect") if kind == "res" else (4, 2, "zeros")
        m = layers.Conv2d(cin, cout, k, stride=s, padding=1, padding_mode=mode, rngs=nnx.Rngs(0))
        conv = tfn = torch.nn.Conv2d(cin, cout, k, stride=s, padding=1, padding_mode=mode)
    graph, state = nnx.split(m)
    x = jnp.asarray(np.random.default_rng(0).standard_normal((batch, h, h, cin), np.float32))
    fwd = jax.jit(lambda s, x: nnx.merge(graph, s)(x))
    grad = jax.jit(jax.grad(lambda s, x: jnp.sum(nnx.merge(graph, s)(x) ** 2), argnums=(0, 1)))
    tx = torch.tensor(np.asarray(x)).permute(0, 3, 1, 2).contiguous().requires_grad_()

    def tf():
        with torch.no_grad():
            tfn(tx)

    def tb():
        tx.grad = None
        conv.zero_grad(set_to_none=True)
        (tfn(tx) ** 2).sum().backward()

    return (
        best(lambda: jax.block_until_ready(fwd(state, x))),
        best(tf),
        best(lambda: jax.block_until_ready(grad(state, x))),
        best(tb),
    )


def layer_table(size: int, batch: int, clock, reps: int) -> None:
    """Per-layer forward and forward+backward (grads of input and weights), JAX vs PyTorch."""

    def best(f):
        f()
        ts = []
        for _ in range(reps):
            t = clock()
            f()
            ts.append(clock() - t)
        return 1e3 * min(ts)

    print(f"\nper layer, {size} px, batch {batch} (ms, best of {reps})")
    print("| layer | input | JAX fwd | PyTorch fwd | JAX fwd+bwd | PyTorch fwd+bwd | bwd ratio |")
    print("|---|---|---|---|---|---|---|")
    for name, div, cin, cout, kind in LAYERS:
        h = size // div
        jf, tf, jb, tb = _time_layer(kind, h, cin, cout, batch, best)
        print(
            f"| {name} | {h}x{h}x{cin} | {jf:.1f} | {tf:.1f} | {jb:.1f} | {tb:.1f} "
            f"| {(tb - tf) / max(jb - jf, 1e-9):.2f} |",
            flush=True,
        )


# --------------------------------------------------------------------------- timing


def time_pair(jax_window, torch_window, *, reps: int):
    """(JAX steps/s, PyTorch steps/s, ratio): medians over ``reps`` pairs of timed windows.

    ``*_window()`` runs one window in that framework's process and returns its steps/s and
    page faults per step (also returned, as medians, after the ratio). The
    two frameworks alternate window by window, and the ratio is the median of the per-pair
    ratios, so that drift in the machine's speed (a shared VM varies by ±5 % over minutes)
    affects both sides of each ratio alike.
    """
    pairs = [(jax_window(), torch_window()) for _ in range(reps)]
    j, t, jf, tf = (statistics.median(p[i][k] for p in pairs) for k in (0, 1) for i in (0, 1))
    return j, t, statistics.median(a[0] / b[0] for a, b in pairs), jf, tf


def _setup_process(opts: dict) -> None:
    """Process settings shared by the main process and both workers (before jax/torch)."""
    if opts["pin_core"] is not None:
        os.sched_setaffinity(0, {opts["pin_core"]})
    if opts["threads"]:
        os.environ["XLA_FLAGS"] = (
            os.environ.get("XLA_FLAGS", "")
            + f" --xla_cpu_multi_thread_eigen={str(opts['threads'] > 1).lower()}"
            + f" intra_op_parallelism_threads={opts['threads']}"
        )
        import torch

        torch.set_num_threads(opts["threads"])
    from imsyn.runtime import enable_compilation_cache

    enable_compilation_cache()


def _worker(conn, framework: str, name: str, opts: dict) -> None:
    """One framework's side of one case, in its own process: builds the step, then runs
    timed windows on request (``"window"`` -> steps/s and page faults per step; ``"stop"`` ->
    peak memory, and ends it).

    After the first step, untimed steps run until the page faults per step stop dropping
    (at most 10): with ``--keep-freed-memory`` the heap grows for a few steps until it holds
    what a step needs, and on this VM first touches of memory are slow. Each
    window starts with one untimed step. A process of its own gives each framework its own
    heap: in one process the other framework's allocations land in the memory one step
    freed, and the next step faults fresh pages in again (training never switches
    frameworks).
    """
    _setup_process(opts)
    import jax.numpy as jnp

    kind, size, batch, n_blocks, disc = CASES[name]
    xa, xb = load_batch(Path(opts["data"]), size, batch, np.random.default_rng(0))
    ready = {}
    if kind == "cyclegan":
        nets, run, sync = jax_cyclegan(size, batch, n_blocks, disc, xa, xb)
        if framework == "torch":  # same weights: do the generators agree?
            run, sync, check = torch_cyclegan(nets, n_blocks, disc, xa, xb)
            ready["g_err"] = float(check(np.asarray(nets[0](jnp.asarray(xa)))))
    else:
        nets, run, sync = jax_dcgan(size, batch, xa)
        if framework == "torch":
            run, sync = torch_dcgan(nets, xa)
    clock = time.process_time if opts["cpu_time"] else time.perf_counter
    t0 = time.perf_counter()
    sync(run())  # JAX: compile + first step
    ready["first_step_s"] = time.perf_counter() - t0
    faults = [_faults(lambda: sync(run())) for _ in range(2)]
    while len(faults) < 10 and faults[-1] < 0.9 * faults[-2]:
        faults.append(_faults(lambda: sync(run())))  # the heap still grows: not steady yet
    conn.send(ready)
    while conn.recv() == "window":
        sync(run())
        f0, t = _minflt(), clock()
        for _ in range(opts["steps"]):
            m = run()
        sync(m)
        conn.send((opts["steps"] / (clock() - t), (_minflt() - f0) / opts["steps"]))
    conn.send(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20)  # GiB
    conn.close()


def _minflt() -> int:
    return resource.getrusage(resource.RUSAGE_SELF).ru_minflt


def _faults(step) -> int:
    f0 = _minflt()
    step()
    return _minflt() - f0


def _start(framework: str, name: str, opts: dict):
    """A worker process for one side; returns (ready message, window callable, stop -> the
    worker's peak memory in GiB)."""
    return workers.start(
        _worker, framework, name, opts, what=f"the {framework} worker for {name}", timeout_s=3600
    )


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--quick", action="store_true", help="fewer steps, skip 256 px")
    p.add_argument("--data", default=None, help="course data (default: python -m imsyn data path)")
    p.add_argument("--only", default="", help=f"comma-separated subset of {', '.join(CASES)}")
    p.add_argument("--steps", type=int, default=None, help="steps per timed window")
    p.add_argument("--reps", type=int, default=None, help="timed windows (median)")
    p.add_argument(
        "--threads",
        type=int,
        default=0,
        help="threads for both frameworks (0 = their defaults: all cores)",
    )
    p.add_argument(
        "--pin-core",
        type=int,
        default=None,
        metavar="CPU",
        help="run the whole process (both frameworks, all their threads) on this one core",
    )
    p.add_argument(
        "--cpu-time",
        action="store_true",
        help="time with process CPU time instead of wall time (counts every thread, "
        "waiting ones included)",
    )
    p.add_argument(
        "--layers",
        type=int,
        default=0,
        metavar="PX",
        help="instead of whole steps, time each layer of the networks at this image size "
        "(batch 16): forward and forward+backward, JAX vs PyTorch",
    )
    p.add_argument(
        "--keep-freed-memory",
        action="store_true",
        help="both frameworks' processes with imsyn.runtime.keep_freed_memory (what train.py "
        "does with IMSYN_KEEP_FREED_MEMORY=1; default: glibc's malloc as it is)",
    )
    args = p.parse_args(argv)
    if args.data is None:  # the fetched course data (python -m imsyn data fetch course)
        from imsyn.course_data import data_dir

        args.data = str(data_dir())
    opts = {
        "pin_core": args.pin_core,
        "threads": args.threads,
        "cpu_time": args.cpu_time,
        "data": args.data,
    }
    if args.layers:
        _setup_process(opts)
        clock = time.process_time if args.cpu_time else time.perf_counter
        layer_table(args.layers, 16, clock, args.reps or 3)
        return 0
    load_batch(Path(args.data), 8, 1, np.random.default_rng(0))  # exits if the data is missing
    names = [n for n in args.only.split(",") if n] or list(CASES)
    bad = [n for n in names if n not in CASES]
    if bad:
        p.error(f"unknown case {bad[0]!r}; choose from {', '.join(CASES)}")
    if args.quick and not args.only:
        names = [n for n in names if n != "cyclegan256"]
    steps = args.steps or (3 if args.quick else 8)
    reps = args.reps or (2 if args.quick else 3)
    from importlib.metadata import version

    print(
        f"jax {version('jax')}, torch {version('torch')} (CPU, {args.threads or 'default'} "
        f"threads{f', pinned to CPU {args.pin_core}' if args.pin_core is not None else ''}), "
        f"{os.cpu_count()} CPUs; each framework in its own process; {reps} windows x {steps} "
        f"steps, median, {'CPU' if args.cpu_time else 'wall'} time; malloc: {_MALLOC}",
        flush=True,
    )
    opts["steps"] = steps
    rows = []
    for name in names:
        _, size, batch, *_ = CASES[name]
        jax_ready, jax_window, jax_stop = _start("jax", name, opts)
        torch_ready, torch_window, torch_stop = _start("torch", name, opts)
        if "g_err" in torch_ready:
            print(f"{name}: |G_jax - G_torch| max = {torch_ready['g_err']:.2e} (same weights)")
        j, t, ratio, jf, tf = time_pair(jax_window, torch_window, reps=reps)
        jax_rss, torch_rss = jax_stop(), torch_stop()
        compile_s = jax_ready["first_step_s"]
        rows.append((name, size, batch, compile_s, 1e3 / j, 1e3 / t, j, t, ratio))
        print(
            f"{name}: jax {1e3 / j:.0f} ms/step ({jf:.0f} page faults/step, peak memory "
            f"{jax_rss:.1f} GiB), torch {1e3 / t:.0f} ms/step ({tf:.0f}, {torch_rss:.1f} GiB)",
            flush=True,
        )

    print()
    print(
        "| case | px | batch | JAX compile s | JAX ms/step | PyTorch ms/step | JAX steps/s "
        "| PyTorch steps/s | ratio JAX/PyTorch |"
    )
    print("|---|---|---|---|---|---|---|---|---|")
    for name, size, batch, c, jm, tm, j, t, r in rows:
        print(
            f"| {name} | {size} | {batch} | {c:.1f} | {jm:.0f} | {tm:.0f} | {j:.2f} | {t:.2f} "
            f"| {r:.2f} |"
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""CycleGAN training and paired evaluation: the ``cyclegan`` task of the training core.

The state is a plain pytree (nested dicts of arrays, string keys) so that it checkpoints,
shards and donates like any other::

    {"g_xy": {"params", "rest"}, "g_yx": ..., "d_x": ..., "d_y": ...,   # NNX states
     "opt_g": optax state (both generators), "opt_d": optax state (both discriminators),
     "pool_x": float32[P, H, W, C], "pool_y": ..., "pool_n": int32}      # pool (if P > 0)

``train_step(state, batch, key)`` is pure: with ``batch = {"x": [N,H,W,C], "y": [N,H,W,C]}``
in ``[-1, 1]`` (unpaired) it

1. runs both generators once (``G: X→Y``, ``F: Y→X``, and the cycles ``F(G(x))``,
   ``G(F(y))`` and identity mappings only when their weights are non-zero), keeping the VJP;
2. updates ``D_X`` and ``D_Y`` on real vs. (pooled, detached) fake images, with DiffAugment
   applied to real and fake alike;
3. updates both generators on the adversarial loss against the *updated* discriminators
   (DiffAugment again) + ``λ_cyc · (|x - F(G(x))| + |y - G(F(y))|)`` +
   ``λ_cyc · λ_id · (|y - G(y)| + |x - F(x)|)``, back-propagated through the saved VJP.

Step 3 reuses step 1's forward pass: the generators have not changed in between, so this is
the same gradient as a second forward pass at a fraction of the cost.

Evaluation translates the held-out paired test split both ways and compares with the true
counterpart (L1, PSNR, SSIM in ``[0, 1]``, and LPIPS v0.1 when ``lpips_vgg16`` is fetched)
next to two baselines — identity (output = input) and global colour-statistics transfer
(per-channel mean/std of the training domains) — and the cycle-reconstruction error. FID
and KID per direction compare the translations (and the baselines' outputs) with the real
target-domain test images, on the features of ``config.features`` (``"auto"``: the real
TF-FID Inception-v3 when ``inception_fid`` is fetched, else the offline ``random_conv_v1``;
the resolved name is recorded) and on a fixed random subset of at most
``config.fid_max_images`` test images per domain (Inception-v3 at 299 px is slow on a CPU).
"""

from __future__ import annotations

import os
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
import optax
from flax import nnx

from imsyn import losses
from imsyn import metrics as metrics_lib
from imsyn import models as model_registry
from imsyn.errors import ConfigError

# --------------------------------------------------------------------------- NNX <-> pytree


def _export(state) -> dict:
    """``nnx.State`` -> nested dict with string keys (checkpoint-friendly)."""
    out: dict = {}
    for path, v in nnx.to_flat_state(state):
        d = out
        for p in path[:-1]:
            d = d.setdefault(str(p), {})
        d[str(path[-1])] = v.get_value() if isinstance(v, nnx.Variable) else v
    return out


def _import(paths, tree: dict):
    """Nested string-keyed dict -> ``nnx.State`` with the original ``paths``."""
    flat = []
    for path in paths:
        d = tree
        for p in path:
            d = d[str(p)]
        flat.append((path, d))
    return nnx.from_flat_state(flat)


class _Net:
    """A split NNX module: graphdef + variable paths, to merge pytrees back into modules."""

    def __init__(self, module: nnx.Module):
        self.graphdef, params, rest = nnx.split(module, nnx.Param, ...)
        self.param_paths = [p for p, _ in nnx.to_flat_state(params)]
        self.rest_paths = [p for p, _ in nnx.to_flat_state(rest)]
        self.initial = {"params": _export(params), "rest": _export(rest)}

    def merge(self, params: dict, rest: dict) -> nnx.Module:
        return nnx.merge(
            self.graphdef, _import(self.param_paths, params), _import(self.rest_paths, rest)
        )

    def apply(self, params: dict, rest: dict, x: jax.Array) -> tuple[jax.Array, dict]:
        """Runs the module; returns the output and its updated non-parameter state."""
        m = self.merge(params, rest)
        y = m(x)
        _, new_rest = nnx.split(m, nnx.Param, ...)[1:]
        return y, _export(new_rest)


# --------------------------------------------------------------------------- image pool


def pool_query(pool: jax.Array, count: jax.Array, fakes: jax.Array, key: jax.Array):
    """The CycleGAN history buffer (Shrivastava et al.), functional.

    For each fake in turn: while the pool has room, store it and return it; once full, with
    probability 1/2 return a random stored image and put the fake in its place, otherwise
    return the fake.

    Args:
      pool: float32[P, H, W, C] stored images (P = 0 disables the pool).
      count: int32 scalar, how many slots are filled.
      fakes: float32[N, H, W, C] new generated images.
      key: PRNG key.

    Returns:
      (images for the discriminator [N, H, W, C], new pool, new count).
    """
    size = pool.shape[0]
    if size == 0:
        return fakes, pool, count

    def one(carry, inp):
        pool, count = carry
        img, k = inp
        k_coin, k_idx = jax.random.split(k)
        full = count >= size
        swap = full & jax.random.bernoulli(k_coin, 0.5)
        idx = jnp.where(full, jax.random.randint(k_idx, (), 0, size), count)
        old = pool[idx]
        out = jnp.where(swap, old, img)
        store = jnp.logical_not(full) | swap
        pool = pool.at[idx].set(jnp.where(store, img, old))
        count = jnp.minimum(count + jnp.where(full, 0, 1), size)
        return (pool, count), out

    keys = jax.random.split(key, fakes.shape[0])
    (pool, count), out = jax.lax.scan(one, (pool, count), (fakes, keys))
    return out, pool, count.astype(jnp.int32)


# --------------------------------------------------------------------------- step


class StepConfig(NamedTuple):
    """The static knobs of a CycleGAN step (hashable)."""

    loss: str = "lsgan"
    lambda_cycle: float = 10.0
    lambda_identity: float = 0.0


def _mean(v):
    return jnp.mean(v)


class CycleGANStep:
    """Builds the four networks and the pure ``init``/``step`` functions of one architecture.

    Args:
      g_xy, g_yx, d_x, d_y: freshly constructed NNX modules (their initial weights are the
        initial state).
      opt_g, opt_d: optax transformations for the generators and discriminators.
      cfg: :class:`StepConfig`.
      pool_size: image-pool capacity (0 = no pool).
      image_shape: (H, W, C) of the images.
      augment_fn: ``(images, key) -> images`` DiffAugment (or None).
    """

    def __init__(
        self,
        g_xy,
        g_yx,
        d_x,
        d_y,
        *,
        opt_g,
        opt_d,
        cfg: StepConfig,
        pool_size: int,
        image_shape,
        augment_fn=None,
    ):
        self.nets = {"g_xy": _Net(g_xy), "g_yx": _Net(g_yx), "d_x": _Net(d_x), "d_y": _Net(d_y)}
        self.opt_g, self.opt_d = opt_g, opt_d
        self.cfg = cfg
        self.pool_size = pool_size
        self.image_shape = tuple(image_shape)
        self.augment_fn = augment_fn

    def init_state(self) -> dict:
        # Fresh copies: the loop donates the state, which must not alias the modules' arrays.
        state = {k: jax.tree.map(jnp.array, n.initial) for k, n in self.nets.items()}
        state["opt_g"] = self.opt_g.init(
            {"g_xy": state["g_xy"]["params"], "g_yx": state["g_yx"]["params"]}
        )
        state["opt_d"] = self.opt_d.init(
            {"d_x": state["d_x"]["params"], "d_y": state["d_y"]["params"]}
        )
        if self.pool_size:  # (orbax cannot save zero-size arrays: no pool, no entries)
            for name in ("pool_x", "pool_y"):
                state[name] = jnp.zeros((self.pool_size, *self.image_shape), jnp.float32)
            state["pool_n"] = jnp.zeros((), jnp.int32)
        return state

    # -- helpers
    def _aug(self, imgs, key):
        return imgs if self.augment_fn is None else self.augment_fn(imgs, key)

    def generate(self, state, x, y, params_g=None):
        """Generator forward pass: dict of fake/rec/identity images, new generator state."""
        cfg = self.cfg
        pg = params_g or {"g_xy": state["g_xy"]["params"], "g_yx": state["g_yx"]["params"]}
        gxy, gyx = self.nets["g_xy"], self.nets["g_yx"]
        rxy, ryx = state["g_xy"]["rest"], state["g_yx"]["rest"]
        out = {}
        if cfg.lambda_identity > 0:  # G(x) and G(y) in one call (instance norm: per example)
            n = x.shape[0]
            both, rxy = gxy.apply(pg["g_xy"], rxy, jnp.concatenate([x, y]))
            out["fake_y"], out["id_y"] = both[:n], both[n:]
            both, ryx = gyx.apply(pg["g_yx"], ryx, jnp.concatenate([y, x]))
            out["fake_x"], out["id_x"] = both[:n], both[n:]
        else:
            out["fake_y"], rxy = gxy.apply(pg["g_xy"], rxy, x)
            out["fake_x"], ryx = gyx.apply(pg["g_yx"], ryx, y)
        if cfg.lambda_cycle > 0:
            out["rec_x"], ryx = gyx.apply(pg["g_yx"], ryx, out["fake_y"])
            out["rec_y"], rxy = gxy.apply(pg["g_xy"], rxy, out["fake_x"])
        return out, {"g_xy": rxy, "g_yx": ryx}

    def step(self, state: dict, batch: dict, key: jax.Array) -> tuple[dict, dict]:
        """One CycleGAN training step (pure; jit it). See the module docstring."""
        cfg = self.cfg
        x, y = batch["x"].astype(jnp.float32), batch["y"].astype(jnp.float32)
        k_pool_x, k_pool_y, k_dx, k_dy, k_gx, k_gy = jax.random.split(key, 6)
        pg = {"g_xy": state["g_xy"]["params"], "g_yx": state["g_yx"]["params"]}

        # 1. generators, once, keeping the VJP for step 3.
        outs, g_vjp, g_rest = jax.vjp(lambda p: self.generate(state, x, y, p), pg, has_aux=True)

        # 2. discriminators on real vs pooled detached fakes.
        fake_y = jax.lax.stop_gradient(outs["fake_y"])
        fake_x = jax.lax.stop_gradient(outs["fake_x"])
        pools = {}
        if self.pool_size:
            fake_y, pools["pool_y"], pools["pool_n"] = pool_query(
                state["pool_y"], state["pool_n"], fake_y, k_pool_y
            )
            fake_x, pools["pool_x"], _ = pool_query(
                state["pool_x"], state["pool_n"], fake_x, k_pool_x
            )
        n = x.shape[0]
        dx_net, dy_net = self.nets["d_x"], self.nets["d_y"]

        def d_loss_fn(pd):
            ly, ry = dy_net.apply(
                pd["d_y"], state["d_y"]["rest"], self._aug(jnp.concatenate([y, fake_y]), k_dy)
            )
            lx, rx = dx_net.apply(
                pd["d_x"], state["d_x"]["rest"], self._aug(jnp.concatenate([x, fake_x]), k_dx)
            )
            d_y = _mean(losses.gan_d_loss(ly[:n], ly[n:], kind=cfg.loss))
            d_x = _mean(losses.gan_d_loss(lx[:n], lx[n:], kind=cfg.loss))
            return d_x + d_y, ({"d_x": d_x, "d_y": d_y}, {"d_x": rx, "d_y": ry})

        pd = {"d_x": state["d_x"]["params"], "d_y": state["d_y"]["params"]}
        (d_total, (d_metrics, d_rest)), d_grads = jax.value_and_grad(d_loss_fn, has_aux=True)(pd)
        d_updates, opt_d = self.opt_d.update(d_grads, state["opt_d"], pd)
        pd = optax.apply_updates(pd, d_updates)

        # 3. generators against the updated discriminators (their stats are not updated here).
        def g_loss_fn(o):
            ly, _ = dy_net.apply(pd["d_y"], d_rest["d_y"], self._aug(o["fake_y"], k_gy))
            lx, _ = dx_net.apply(pd["d_x"], d_rest["d_x"], self._aug(o["fake_x"], k_gx))
            m = {
                "g_adv_y": _mean(losses.gan_g_loss(ly, kind=cfg.loss)),
                "g_adv_x": _mean(losses.gan_g_loss(lx, kind=cfg.loss)),
            }
            total = m["g_adv_x"] + m["g_adv_y"]
            if cfg.lambda_cycle > 0:
                m["cycle"] = _mean(losses.cycle_loss(x, o["rec_x"])) + _mean(
                    losses.cycle_loss(y, o["rec_y"])
                )
                total = total + cfg.lambda_cycle * m["cycle"]
            if cfg.lambda_identity > 0:
                m["identity"] = _mean(losses.identity_loss(y, o["id_y"])) + _mean(
                    losses.identity_loss(x, o["id_x"])
                )
                total = total + cfg.lambda_cycle * cfg.lambda_identity * m["identity"]
            return total, m

        (g_total, g_metrics), g_out_grads = jax.value_and_grad(g_loss_fn, has_aux=True)(outs)
        (g_grads,) = g_vjp(g_out_grads)
        g_updates, opt_g = self.opt_g.update(g_grads, state["opt_g"], pg)
        pg = optax.apply_updates(pg, g_updates)

        new_state = {
            "g_xy": {"params": pg["g_xy"], "rest": g_rest["g_xy"]},
            "g_yx": {"params": pg["g_yx"], "rest": g_rest["g_yx"]},
            "d_x": {"params": pd["d_x"], "rest": d_rest["d_x"]},
            "d_y": {"params": pd["d_y"], "rest": d_rest["d_y"]},
            "opt_g": opt_g,
            "opt_d": opt_d,
            **pools,
        }
        metrics = {"d_loss": d_total, "g_loss": g_total, **d_metrics, **g_metrics}
        return new_state, metrics

    def translate(self, state: dict, images: jax.Array, *, direction: str) -> jax.Array:
        """Applies ``G`` (direction "x2y") or ``F`` ("y2x") to ``[N, H, W, C]`` in [-1, 1]."""
        name = {"x2y": "g_xy", "y2x": "g_yx"}[direction]
        m = self.nets[name].merge(state[name]["params"], state[name]["rest"])
        m.eval()
        return m(images)


# --------------------------------------------------------------------------- evaluation math


class ChannelStats(NamedTuple):
    """Per-channel mean and standard deviation of a domain, float64[C] each, in [0, 1]."""

    mean: np.ndarray
    std: np.ndarray


def channel_stats(images) -> ChannelStats:
    """Per-channel mean/std of ``[N, H, W, C]`` images in [0, 1] (or an iterable of chunks)."""
    chunks = [images] if isinstance(images, np.ndarray) else images
    s = s2 = 0.0
    n = 0
    for c in chunks:
        c = np.asarray(c, np.float64)
        s = s + c.sum(axis=(0, 1, 2))
        s2 = s2 + np.square(c).sum(axis=(0, 1, 2))
        n += c.shape[0] * c.shape[1] * c.shape[2]
    if n == 0:
        raise ValueError("channel_stats needs at least one image")
    mean = s / n
    return ChannelStats(mean, np.sqrt(np.maximum(s2 / n - mean**2, 0.0)))


def color_transfer(images: np.ndarray, src: ChannelStats, dst: ChannelStats) -> np.ndarray:
    """Global colour-statistics transfer (Reinhard-style, per RGB channel).

    ``out = (x - mean_src) / std_src * std_dst + mean_dst``, clipped to [0, 1].

    Args:
      images: float[N, H, W, C] in [0, 1] from the source domain.
      src, dst: :class:`ChannelStats` of the source and target training domains.

    Returns:
      float32[N, H, W, C] in [0, 1].
    """
    x = np.asarray(images, np.float64)
    out = (x - src.mean) / np.maximum(src.std, 1e-6) * dst.std + dst.mean
    return np.clip(out, 0.0, 1.0).astype(np.float32)


def paired_metrics(pred: np.ndarray, target: np.ndarray, *, batch: int = 64, lpips=None) -> dict:
    """Mean L1, PSNR (dB), SSIM and LPIPS of ``pred`` against ``target``.

    Args:
      pred, target: float [N, H, W, 3] in [0, 1].
      batch: images per metric call.
      lpips: an :class:`imsyn.models.lpips.LPIPS` (or ``None``: no ``"lpips"`` key).

    Returns:
      ``{"l1", "psnr", "ssim", "lpips"}`` as floats; SSIM only for images of at least 11 px,
      LPIPS only with ``lpips`` and images of at least 16 px.
    """
    from imsyn.image import to_network
    from imsyn.models.lpips import MIN_SIZE

    use_lpips = lpips is not None and min(np.shape(pred)[1:3]) >= MIN_SIZE
    vals = {"l1": [], "psnr": [], "ssim": [], "lpips": []}
    for i in range(0, len(pred), batch):
        a, b = jnp.asarray(pred[i : i + batch]), jnp.asarray(target[i : i + batch])
        vals["l1"].append(np.asarray(metrics_lib.l1(a, b)))
        vals["psnr"].append(np.asarray(metrics_lib.psnr(a, b)))
        if min(a.shape[1:3]) >= 11:
            vals["ssim"].append(np.asarray(metrics_lib.ssim(a, b)))
        if use_lpips:
            na, nb = (to_network(np.asarray(v, np.float32)) for v in (a, b))
            vals["lpips"].append(np.asarray(lpips(na, nb)))
    out = {}
    for k, v in vals.items():
        if v:
            v = np.concatenate(v).astype(np.float64)
            if k == "psnr":  # identical images give +inf; cap at 100 dB so JSON stays valid
                v = np.minimum(v, 100.0)
            out[k] = float(v.mean())
    return out


# --------------------------------------------------------------------------- the task

DISCRIMINATORS = {
    "patch": "patch_discriminator",
    "patch70": "patch70_discriminator",
    "dc": "dc_discriminator",
}
# Fields of a cyclegan config beyond the loop's COMMON_FIELDS.
FIELDS = (
    "data_y",
    "data_category",
    "g_conv_dim",
    "d_conv_dim",
    "n_blocks",
    "block_convs",
    "norm",
    "padding_mode",
    "discriminator",
    "spectral_norm",
    "lambda_cycle",
    "lambda_identity",
    "pool_size",
    "memory_check",
    "features",
    "features_path",
    "fid_max_images",
)
_SAMPLES = 8  # fixed test images per direction in the sample grids


def estimate_step_bytes(config) -> int:
    """A generous estimate of the memory one training step needs (activations + state).

    Counts the activations a generator pass keeps for the backward pass (conv, norm and
    activation outputs at each resolution) times the passes per step (2 translations, 2
    cycles, 2 identities), plus the discriminators' (real and fake, twice), plus parameters,
    gradients and Adam moments, times a safety factor of 2 for XLA temporaries.
    """
    s, d, b = config.image_size, config.g_conv_dim, config.batch_size
    half, quarter = (s // 2) ** 2, (s // 4) ** 2
    gen = 3 * (half * d + quarter * 2 * d)  # encoder: conv, norm, relu
    gen += 3 * config.n_blocks * config.block_convs * quarter * 2 * d
    gen += 3 * (half * 2 * d + s * s * d) + 3 * (s * s * d + s * s * 3)  # up-convs
    passes = 2 + (2 if config.lambda_cycle > 0 else 0) + (2 if config.lambda_identity > 0 else 0)
    dd = config.d_conv_dim
    disc = 3 * sum((s >> k) ** 2 * dd * 2 ** (k - 1) for k in range(1, 5))
    acts = b * (gen * passes + disc * 2 * 2 * 2)
    gp = 2 * (d * d * (16 * 2 + 9 * 2 * 2 * 2 * config.n_blocks * config.block_convs) + d * 100)
    dp = 2 * (dd * dd * 16 * (2 + 8 + 32) + dd * 100)
    params = (gp + dp) * 4  # params, grads, two Adam moments
    pool = 2 * config.pool_size * s * s * 3
    return int(2 * 4 * (acts + params + pool))


def available_bytes() -> int | None:
    """Memory the default device can use: the accelerator's limit, or free host RAM on CPU."""
    dev = jax.devices()[0]
    if dev.platform != "cpu":
        stats = dev.memory_stats() or {}
        return stats.get("bytes_limit")
    try:
        with open("/proc/meminfo") as f:
            info = dict(line.split(":", 1) for line in f)
        return int(info["MemAvailable"].split()[0]) * 1024
    except (OSError, KeyError, ValueError):
        return None


class CycleGANTask:
    """The ``cyclegan`` experiment for :func:`imsyn.training.loop.fit` (see module docstring).

    Config fields: the loop's common fields (``data`` is domain X) plus :data:`FIELDS`.
    """

    def __init__(self):
        self._step = None
        self._sources: dict = {}
        self._translate = None

    # -- config
    def validate(self, config) -> None:
        from imsyn.training.loop import COMMON_FIELDS, _need, check_common, check_fields

        check_fields(config, (*COMMON_FIELDS, *FIELDS))
        check_common(config)
        from imsyn.losses import GAN_LOSSES

        _need(config, "loss", str, check=lambda v: v in GAN_LOSSES, expect=f"one of {GAN_LOSSES}")
        _need(config, "data_y", str, check=bool, expect="a data spec such as 'emoji:openmoji'")
        _need(config, "data_category", str, expect="an emoji category or ''")
        for f in ("g_conv_dim", "d_conv_dim"):
            _need(config, f, int, check=lambda v: v >= 1, expect="an integer >= 1")
        _need(config, "n_blocks", int, check=lambda v: v >= 0, expect="an integer >= 0")
        _need(config, "block_convs", int, check=lambda v: v in (1, 2), expect="1 or 2")
        _need(
            config,
            "norm",
            str,
            check=lambda v: v in ("instance", "batch", "none"),
            expect="'instance', 'batch' or 'none'",
        )
        _need(
            config,
            "padding_mode",
            str,
            check=lambda v: v in ("zeros", "reflect"),
            expect="'zeros' or 'reflect'",
        )
        _need(
            config,
            "discriminator",
            str,
            check=lambda v: v in DISCRIMINATORS,
            expect=f"one of {tuple(DISCRIMINATORS)}",
        )
        _need(config, "spectral_norm", bool)
        num = (int, float)
        for f in ("lambda_cycle", "lambda_identity"):
            _need(config, f, num, check=lambda v: v >= 0 and np.isfinite(v), expect="a number >= 0")
        _need(config, "pool_size", int, check=lambda v: v >= 0, expect="an integer >= 0")
        _need(config, "memory_check", bool)
        _need(config, "features", str, expect=f"one of {metrics_lib.NAMES}")
        _need(config, "features_path", str, expect="a weights file or ''")
        if config.features_path and not os.path.isfile(config.features_path):
            raise ConfigError(
                f"config.features_path must be an existing weights file, "
                f"got {config.features_path!r}"
            )
        try:
            metrics_lib.resolve_features(config.features, config.features_path or None)
        except ConfigError as e:
            raise ConfigError(f"config.features: {e}") from None
        _need(
            config,
            "fid_max_images",
            int,
            check=lambda v: v == 0 or v >= 2,
            expect="0 (all test images) or an integer >= 2",
        )
        from imsyn.augment import parse_policy

        parse_policy(config.diffaug)
        s = config.image_size
        need = {"patch": 16, "patch70": 32, "dc": 32}[config.discriminator]
        if s % 16 or s < need:
            raise ConfigError(
                f"config.image_size must be a multiple of 16 and >= {need} for the "
                f"{config.discriminator!r} discriminator, got {s}"
            )
        if config.discriminator == "dc" and s not in (32, 64):
            raise ConfigError(f"config.image_size must be 32 or 64 for discriminator='dc', got {s}")
        if config.memory_check:
            self._check_memory(config)
        self._load_sources(config)

    def _check_memory(self, config) -> None:
        avail = available_bytes()
        if avail is None:
            return
        need = estimate_step_bytes(config)
        if need > 0.8 * avail:
            per = need / config.batch_size
            fit = max(int(0.8 * avail / per), 0)
            hint = (
                f"use --config.batch_size={fit} or smaller"
                if fit >= 1
                else "use a smaller image_size or g_conv_dim"
            )
            raise ConfigError(
                f"config.batch_size={config.batch_size} at {config.image_size} px needs about "
                f"{need / 2**30:.1f} GiB, this {jax.devices()[0].platform} has "
                f"{avail / 2**30:.1f} GiB available; {hint} (--config.memory_check=False skips "
                "this check)"
            )

    def _opts(self, spec: str, config) -> dict:
        return (
            {"category": config.data_category}
            if spec.startswith("emoji:") and config.data_category
            else {}
        )

    def _load_sources(self, config) -> None:
        """Builds (and checks) both domains' train and test sources, before any output."""
        from imsyn.data import get_source

        key = (config.data, config.data_y, config.data_category, config.image_size)
        if self._sources.get("key") == key:
            return
        src = {}
        for dom, spec in (("x", config.data), ("y", config.data_y)):
            for split in ("train", "test"):
                src[dom, split] = get_source(
                    spec,
                    image_size=config.image_size,
                    split=_split(spec, split, dom),
                    **self._opts(spec, config),
                )
        check_domains(src, batch_size=config.batch_size)
        self._sources = {"key": key, **src}

    def arch(self, config) -> dict:
        return {
            "image_size": config.image_size,
            "g_conv_dim": config.g_conv_dim,
            "d_conv_dim": config.d_conv_dim,
            "n_blocks": config.n_blocks,
            "block_convs": config.block_convs,
            "norm": config.norm,
            "padding_mode": config.padding_mode,
            "discriminator": config.discriminator,
            "spectral_norm": config.spectral_norm,
            "pool_size": config.pool_size,
        }

    # -- state and step
    def build(self, config, key) -> CycleGANStep:
        """The :class:`CycleGANStep` of ``config``, its networks initialised from ``key``."""
        from imsyn.augment import diff_augment
        from imsyn.training.loop import lr_schedule

        rngs = nnx.Rngs(params=key)
        gen = model_registry.get("cycle_resnet")
        g_kw = dict(
            conv_dim=config.g_conv_dim,
            n_blocks=config.n_blocks,
            norm=config.norm,
            padding_mode=config.padding_mode,
            block_convs=config.block_convs,
        )
        disc = model_registry.get(DISCRIMINATORS[config.discriminator])
        d_kw = dict(
            conv_dim=config.d_conv_dim, norm=config.norm, spectral_norm=config.spectral_norm
        )
        if config.discriminator == "dc":
            d_kw["image_size"] = config.image_size
        sched = lr_schedule(config)
        policy = config.diffaug

        def make_opt():
            return optax.adam(sched, b1=config.beta1, b2=config.beta2)

        return CycleGANStep(
            gen(**g_kw, rngs=rngs),
            gen(**g_kw, rngs=rngs),
            disc(**d_kw, rngs=rngs),
            disc(**d_kw, rngs=rngs),
            opt_g=make_opt(),
            opt_d=make_opt(),
            cfg=StepConfig(
                loss=config.loss,
                lambda_cycle=float(config.lambda_cycle),
                lambda_identity=float(config.lambda_identity),
            ),
            pool_size=config.pool_size,
            image_shape=(config.image_size, config.image_size, 3),
            augment_fn=(lambda x, k: diff_augment(x, k, policy)) if policy else None,
        )

    def init_state(self, config, key) -> dict:
        self._step = self.build(config, key)
        self._translate = jax.jit(self._step.translate, static_argnames="direction")
        return self._step.init_state()

    def train_step(self, state, batch, key):
        return self._step.step(state, batch, key)

    # -- data
    def make_data(self, config, *, seed: int):
        from imsyn.data import make_loader

        self._load_sources(config)
        nproc = jax.process_count()
        local = config.batch_size // nproc
        loaders = {
            dom: make_loader(
                self._sources[dom, "train"],
                batch_size=local,
                seed=seed + i,
                augment=config.augment,
                image_size=config.image_size,
                shard_index=jax.process_index(),
                shard_count=nproc,
            )
            for i, dom in enumerate(("x", "y"))
        }
        return UnpairedData(loaders)

    # -- outputs
    def _fixed(self, dom: str) -> np.ndarray:
        src = self._sources[dom, "test"]
        return np.stack([src[i] for i in range(min(_SAMPLES, len(src)))])

    def translate(self, state, images_uint8: np.ndarray, *, direction: str, batch: int = 64):
        """uint8 [N,H,W,3] -> (translated, reconstructed) float32 [N,H,W,3] in [0, 1]."""
        from imsyn.image import from_network, to_float, to_network

        back = "y2x" if direction == "x2y" else "x2y"
        outs, recs = [], []
        for i in range(0, len(images_uint8), batch):
            x = jnp.asarray(to_network(to_float(images_uint8[i : i + batch])))
            t = self._translate(state, x, direction=direction)
            r = self._translate(state, t, direction=back)
            outs.append(np.asarray(from_network(t)))
            recs.append(np.asarray(from_network(r)))
        return np.concatenate(outs), np.concatenate(recs)

    def samples(self, state) -> dict[str, np.ndarray]:
        from imsyn.image import to_float

        out = {}
        for dom, direction in (("x", "x2y"), ("y", "y2x")):
            imgs = self._fixed(dom)
            t, r = self.translate(state, imgs, direction=direction)
            out[direction] = _triptych(to_float(imgs), t, r, None)
        return out

    def evaluate(self, state, config, workdir) -> dict:
        from pathlib import Path

        from imsyn.data import emoji_pairs
        from imsyn.image import to_float, write_image
        from imsyn.models import lpips as lpips_lib

        self._load_sources(config)
        paired = (
            config.data.startswith("emoji:")
            and config.data_y.startswith("emoji:")
            and config.data != config.data_y
        )
        if paired:
            pairs = emoji_pairs(
                image_size=config.image_size, split="test", category=config.data_category or None
            )
            x_u8, y_u8 = (
                (pairs.x, pairs.y) if config.data.endswith("twemoji") else (pairs.y, pairs.x)
            )
        else:
            x_u8 = _all(self._sources["x", "test"])
            y_u8 = _all(self._sources["y", "test"])
        stats = {dom: channel_stats(_chunks(self._sources[dom, "train"])) for dom in ("x", "y")}
        lpips = lpips_lib.LPIPS.load() if paired else None
        extractor = metrics_lib.get_extractor(config.features, config.features_path or None)
        real = {"x": to_float(x_u8), "y": to_float(y_u8)}
        # FID/KID: a fixed random subset of each domain's test images (the same indices for
        # the translations and baselines of that domain, and for its real images)
        subset = {
            dom: _subset(len(real[dom]), config.fid_max_images, seed=config.seed)
            for dom in ("x", "y")
        }
        real_feats = {dom: _features(extractor, real[dom][subset[dom]]) for dom in ("x", "y")}
        result: dict[str, Any] = {}
        cyc = {}
        eval_dir = Path(workdir) / "eval"
        for dom, other, direction in (("x", "y", "x2y"), ("y", "x", "y2x")):
            src_u8 = x_u8 if dom == "x" else y_u8
            src = real[dom]
            pred, rec = self.translate(state, src_u8, direction=direction)
            colour = color_transfer(src, stats[dom], stats[other])
            cyc[dom] = float(np.mean(np.abs(rec - src)))
            entry: dict[str, Any] = {"n": int(len(src))}
            tgt = real[other] if paired else None
            ident: dict[str, Any] = {}
            col: dict[str, Any] = {}
            if paired:
                entry.update(paired_metrics(pred, tgt, lpips=lpips))
                ident.update(paired_metrics(src, tgt, lpips=lpips))
                col.update(paired_metrics(colour, tgt, lpips=lpips))
                if lpips is None:
                    entry["lpips"] = ident["lpips"] = col["lpips"] = None
            ref = real_feats[other]
            sub = subset[dom]
            entry.update(_distances(_features(extractor, pred[sub]), ref))
            ident.update(_distances(real_feats[dom], ref))
            col.update(_distances(_features(extractor, colour[sub]), ref))
            entry["baseline_identity"] = ident
            entry["baseline_color"] = col
            if paired:
                entry["beats_baselines"] = bool(
                    entry["l1"] < entry["baseline_identity"]["l1"]
                    and entry["l1"] < entry["baseline_color"]["l1"]
                )
            entry["cycle_l1"] = cyc[dom]
            result[direction] = entry
            k = min(16, len(src))
            grid = _triptych(src[:k], pred[:k], rec[:k], None if tgt is None else tgt[:k])
            write_image(eval_dir / f"{direction}.png", grid)
        result["cycle_l1"] = float(np.mean(list(cyc.values())))
        for direction in ("x2y", "y2x"):  # flat copies for tables (sweep comparison pages)
            for k in ("l1", "psnr", "ssim", "lpips", "fid", "kid"):
                if k in result[direction]:
                    result[f"{direction}_{k}"] = result[direction][k]
        result["paired"] = paired
        result["data"] = {
            "x": config.data,
            "y": config.data_y,
            "split": "test",
            "category": config.data_category,
        }
        result["metric_range"] = (
            "images in [0, 1]; L1 mean absolute error, PSNR dB, SSIM; LPIPS v0.1 (VGG-16) on "
            "[-1, 1]; FID/KID of each method's outputs against the real target-domain test images"
        )
        if paired:
            result["lpips"] = (
                {"net": lpips.name, "weights": lpips.path}
                if lpips is not None
                else lpips_lib.UNAVAILABLE
            )
        result["features"] = extractor.name
        result["features_resize"] = extractor.resize
        note = getattr(extractor, "note", None)
        if note:
            result["features_note"] = note
        counts = {dom: int(len(subset[dom])) for dom in ("x", "y")}
        result["fid_images"] = {**counts, "of": {dom: len(real[dom]) for dom in ("x", "y")}}
        result["fid_note"] = (
            f"FID/KID on a fixed random subset of {counts['x']} of {len(real['x'])} X and "
            f"{counts['y']} of {len(real['y'])} Y test images (config.fid_max_images="
            f"{config.fid_max_images}; 0 = all): each method's outputs for the subset against "
            "the real target-domain images of the subset. FID from a few hundred images is "
            "biased upwards: compare the rows of this table, not published (50k-image) FIDs."
        )
        return result

    def report_sections(self, config, workdir) -> list[tuple[str, str]]:
        from pathlib import Path

        from imsyn.report import _read_json

        m = _read_json(Path(workdir) / "eval" / "metrics.json") or {}
        if m.get("paired"):
            return [("Paired translation metrics (held-out test split)", metrics_html(m))]
        if "features" in m:
            return [("Translation metrics (held-out test split)", metrics_html(m))]
        return []


def _subset(n: int, limit: int, *, seed: int) -> np.ndarray:
    """Sorted indices of a fixed random subset of ``min(n, limit)`` of ``range(n)`` (0: all)."""
    if limit == 0 or n <= limit:
        return np.arange(n)
    return np.sort(np.random.default_rng(seed).choice(n, limit, replace=False))


def _features(extractor, images01: np.ndarray) -> np.ndarray:
    """Features ``[N, D]`` of images in [0, 1] (the extractors take [-1, 1])."""
    from imsyn.image import to_network

    return np.asarray(extractor(to_network(np.asarray(images01, np.float32))))


def _distances(feats: np.ndarray, ref: np.ndarray) -> dict:
    return {"fid": metrics_lib.fid(feats, ref), "kid": metrics_lib.kid(feats, ref)}


_COLUMNS = (
    ("l1", "L1 ↓", "{:.4f}"),
    ("psnr", "PSNR ↑", "{:.2f}"),
    ("ssim", "SSIM ↑", "{:.4f}"),
    ("lpips", "LPIPS ↓", "{:.4f}"),
    ("fid", "FID ↓", "{:.2f}"),
    ("kid", "KID ↓", "{:.4f}"),
)


def metrics_html(m: dict) -> str:
    """The paired-metrics table of ``eval/metrics.json`` as HTML."""
    import html

    rows = []
    cols = [c for c in _COLUMNS if any(c[0] in (m.get(d) or {}) for d in ("x2y", "y2x"))]
    for direction, label in (("x2y", "X → Y"), ("y2x", "Y → X")):
        e = m.get(direction) or {}
        for name, vals in (
            ("CycleGAN", e),
            ("identity", e.get("baseline_identity", {})),
            ("colour transfer", e.get("baseline_color", {})),
        ):
            cells = "".join(
                f"<td>{fmt.format(vals[k])}</td>"
                if isinstance(vals.get(k), int | float)
                else "<td>–</td>"
                for k, _, fmt in cols
            )
            rows.append(f"<tr><td>{label}</td><td>{name}</td>{cells}</tr>")
    head = "".join(f"<th>{h}</th>" for _, h, _ in cols)
    head = f"<tr><th>direction</th><th>method</th>{head}</tr>"
    cyc = f"<p>cycle-reconstruction L1: {m.get('cycle_l1', float('nan')):.4f}</p>"
    notes = []
    lp = m.get("lpips")
    if isinstance(lp, dict):
        notes.append(f"LPIPS: {lp.get('net')} ({lp.get('weights')})")
    elif lp:
        notes.append(f"LPIPS: {lp}")
    if "features" in m:
        notes.append(f"FID/KID features: {m['features']} ({m.get('features_resize', '')})")
    for k in ("features_note", "fid_note"):
        if m.get(k):
            notes.append(m[k])
    notes.append(
        "Columns of eval/x2y.png / eval/y2x.png: input, translation, reconstruction, "
        "ground-truth counterpart."
    )
    text = "".join(f"<p>{html.escape(n)}</p>" for n in notes)
    return f"<table>{head}{''.join(rows)}</table>{cyc}{text}"


class UnpairedData:
    """Two domain loaders as one iterator of ``{"x": [N,H,W,3], "y": [N,H,W,3]}`` in [-1, 1]."""

    def __init__(self, loaders: dict):
        self.loaders = loaders

    def __iter__(self):
        return self

    def __next__(self) -> dict:
        return {dom: next(it)["image"] for dom, it in self.loaders.items()}

    def get_state(self) -> dict:
        from imsyn.training.checkpoint import encode_data_state

        return {dom: encode_data_state(it.get_state()) for dom, it in self.loaders.items()}

    def set_state(self, state: dict) -> None:
        from imsyn.training.checkpoint import decode_data_state

        for dom, it in self.loaders.items():
            it.set_state(decode_data_state(state[dom]))


def check_domains(sources: dict, *, batch_size: int) -> None:
    """Checks the ``{(domain, split): Source}`` of both domains before training.

    Raises:
      ConfigError: a domain (or its test split) is empty or smaller than one batch, or the
        two domains deliver images of different shapes.
    """
    names = {"x": "config.data", "y": "config.data_y"}
    shapes = {}
    for (dom, split), src in sorted(sources.items()):
        n = len(src)
        if n == 0:
            raise ConfigError(f"{names[dom]} ({src.name}): the {split} split is empty")
        if n < batch_size:
            raise ConfigError(
                f"{names[dom]} ({src.name}): the {split} split has {n} images, fewer than "
                f"one batch (batch_size={batch_size})"
            )
        shapes[dom, split] = tuple(np.shape(src[0]))
    if len(set(shapes.values())) > 1:
        detail = ", ".join(f"{names[d]} {s}: {shape}" for (d, s), shape in sorted(shapes.items()))
        raise ConfigError(f"the two domains deliver images of different shapes ({detail})")


def _split(spec: str, split: str, dom: str) -> str:
    """TFDS CycleGAN datasets name their splits trainA/testA (X) and trainB/testB (Y)."""
    if spec.startswith("tfds:"):
        return f"{split}{'A' if dom == 'x' else 'B'}"
    return split


def _all(src) -> np.ndarray:
    return np.stack([src[i] for i in range(len(src))])


def _chunks(src, *, size: int = 256, limit: int = 4096):
    from imsyn.image import to_float

    n = min(len(src), limit)
    for i in range(0, n, size):
        yield to_float(np.stack([src[j] for j in range(i, min(i + size, n))]))


def _triptych(src, pred, rec, target) -> np.ndarray:
    """Grid with one row per image: input | translation | reconstruction [| ground truth]."""
    from imsyn.image import make_grid

    cols = [src, pred, rec] + ([target] if target is not None else [])
    tiles = np.stack(cols, axis=1).reshape(-1, *src.shape[1:])
    scale = max(1, 96 // src.shape[1])  # small emoji: enlarge (nearest) so they can be seen
    if scale > 1:
        tiles = tiles.repeat(scale, axis=1).repeat(scale, axis=2)
    return make_grid(tiles, ncol=len(cols))


# --------------------------------------------------------------------------- entry points


def train(config, workdir):
    """``train.py`` entry point: trains (or resumes) into ``workdir``, then evaluates."""
    from imsyn.training.loop import fit

    return fit(config, workdir, CycleGANTask())


def evaluate(config, workdir):
    """``eval.py`` entry point: restores the latest checkpoint, writes eval/ and the report."""
    from imsyn.training.loop import evaluate_run

    task = CycleGANTask()
    return evaluate_run(config, workdir, task)

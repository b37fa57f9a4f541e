"""GANs (A3), the library: models built by name, pure training steps, sampling, slerp.

Nothing here knows about configs, checkpoints or workdirs (that is :mod:`imsyn.tasks.dcgan`
and :mod:`imsyn.tasks.cyclegan`); every function takes arrays, NNX graphdefs/states and
explicit keys. The one state convention: models are split with ``nnx.split`` into a
static ``GraphDef`` (closed over by the step) and an ``nnx.State`` (a pytree leaf of
the training state); steps merge them back with ``nnx.merge``.

DCGAN::

    g, d = gan.make_dcgan(image_size=32, conv_dim=16, key=jax.random.key(0))
    opt = optax.adam(2e-4, b1=0.5, b2=0.999)
    state = gan.init_dcgan_state(g, d, opt, opt)
    step = jax.jit(gan.make_dcgan_step(nnx.graphdef(g), nnx.graphdef(d), opt, opt))
    state, metrics = step(state, {"image": real}, key)      # real: float32[N, 32, 32, 3]
    images = gan.generate(nnx.graphdef(g), state["g"], z)  # float32[N, 32, 32, 3] in [0, 1]

State of a DCGAN step (a pytree, checkpointed as is)::

    {"g": nnx.State, "d": nnx.State, "g_opt": optax state, "d_opt": optax state}

CycleGAN (two generators G: X→Y and F: Y→X, two discriminators, cycle/identity losses,
an image pool; the colour-statistics baseline and the paired metrics of its evaluation)::

    nets = gan.make_cyclegan(image_size=32, g_conv_dim=32, d_conv_dim=32, key=key)
    state = gan.init_cyclegan_state(nets, opt, opt)          # {"g_xy", "g_yx", "d_x", "d_y",
                                                             #  "opt_g", "opt_d"[, pools]}
    defs = gan.CycleGAN(*(nnx.graphdef(m) for m in nets))
    step = jax.jit(gan.make_cyclegan_step(defs, opt, opt, lambda_cycle=10.0))
    state, metrics = step(state, {"x": x, "y": y}, key)      # float32[N, S, S, 3] in [-1, 1]
    y_hat = gan.translate(defs.g_xy, state["g_xy"], x)       # same range

Mixed precision: both steps take ``dtype="bfloat16"`` (bf16 compute; parameters, optimizer
state, gradients and losses float32; the state is the same pytree in either dtype).
"""

from __future__ import annotations

from collections.abc import Callable
from functools import partial
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
import optax
from flax import nnx

from imsyn import losses, models
from imsyn import metrics as metrics_lib
from imsyn.augment import diff_augment, parse_policy
from imsyn.image import from_network, to_network
from imsyn.models.dcgan import Z_DIM
from imsyn.models.layers import apply_in, compute_dtype

GENERATORS = ("dcgan_generator", "style_generator")

Step = Callable[[dict, dict, jax.Array], tuple[dict, dict]]

# --------------------------------------------------------------------------- DCGAN


def make_dcgan(
    *,
    image_size: int,
    conv_dim: int,
    norm: str = "instance",
    spectral_norm: bool = False,
    generator: str = "dcgan_generator",
    key: jax.Array,
) -> tuple[nnx.Module, nnx.Module]:
    """A DCGAN generator and discriminator (``imsyn.models`` registry names).

    Args:
      image_size: 32 or 64.
      conv_dim: base width of both networks.
      norm: "instance", "batch" or "none" (the style generator has its own, unaffected).
      spectral_norm: spectral normalisation on every discriminator conv.
      generator: "dcgan_generator" or "style_generator" (z -> w -> image, for A5).
      key: initialisation key (split into one for G and one for D).

    Returns:
      (G: z float32[N, 100] -> float32[N, S, S, 3] in [-1, 1], D: images -> logits float32[N]).
    """
    if generator not in GENERATORS:
        raise ValueError(f"generator must be one of {GENERATORS}, got {generator!r}")
    kg, kd = jax.random.split(key)
    kwargs = {"norm": norm} if generator == "dcgan_generator" else {}
    g = models.get(generator)(
        image_size=image_size, conv_dim=conv_dim, rngs=nnx.Rngs(params=kg), **kwargs
    )
    d = models.get("dc_discriminator")(
        image_size=image_size,
        conv_dim=conv_dim,
        norm=norm,
        spectral_norm=spectral_norm,
        rngs=nnx.Rngs(params=kd),
    )
    return g, d


def init_dcgan_state(
    g: nnx.Module,
    d: nnx.Module,
    opt_g: optax.GradientTransformation,
    opt_d: optax.GradientTransformation,
) -> dict:
    """The training state of :func:`make_dcgan_step`: model states and optimizer states."""
    return {
        "g": nnx.state(g),
        "d": nnx.state(d),
        "g_opt": opt_g.init(nnx.state(g, nnx.Param)),
        "d_opt": opt_d.init(nnx.state(d, nnx.Param)),
    }


def make_dcgan_step(
    g_def: nnx.GraphDef,
    d_def: nnx.GraphDef,
    opt_g: optax.GradientTransformation,
    opt_d: optax.GradientTransformation,
    *,
    loss: str = "lsgan",
    diffaug: str = "",
    dtype: str = "float32",
) -> Step:
    """The DCGAN training step: one D update then one G update, as a pure function.

    Each update draws fresh noise. DiffAugment (``diffaug``) is applied to real and fake
    images alike before D, in both updates (Zhao et al.). The non-differentiated states
    enter ``value_and_grad`` as plain arrays (``nnx.as_pure``): batch-norm statistics and
    spectral-norm vectors are updated inside the gradient trace and returned as auxiliary
    outputs.

    Args:
      g_def, d_def: graphdefs of G and D (``nnx.graphdef`` or the first half of ``nnx.split``).
      opt_g, opt_d: their optimizers.
      loss: "lsgan", "bce" or "hinge" (:data:`imsyn.losses.GAN_LOSSES`).
      diffaug: DiffAugment policy, e.g. "color,translation,cutout" ("" = off).
      dtype: compute dtype, "float32" or "bfloat16" (mixed precision: the networks run in
        bfloat16 on bfloat16 noise and images; parameters, optimizer state, gradients,
        DiffAugment, logits and losses stay float32; see :func:`imsyn.models.layers.apply_in`).

    Returns:
      ``step(state, batch, key) -> (state, metrics)``: state as :func:`init_dcgan_state`,
      batch ``{"image": float32[N, S, S, 3] in [-1, 1]}``, metrics the scalars ``d_loss``,
      ``g_loss``, ``d_real``, ``d_fake`` (mean logits). Jit it (donating the state).

    Raises:
      ValueError: an unknown loss; ConfigError: an unknown DiffAugment policy.
    """
    if loss not in losses.GAN_LOSSES:
        raise ValueError(f"loss must be one of {losses.GAN_LOSSES}, got {loss!r}")
    parse_policy(diffaug)
    cdt = compute_dtype(dtype)

    def augment(x, key):
        return diff_augment(x, key, diffaug) if diffaug else x

    def step(state, batch, key):
        real = batch["image"]
        n = real.shape[0]
        kz_d, kz_g, ka_r, ka_f, ka_g = jax.random.split(key, 5)

        def d_loss_fn(d_params, d_rest, g_state):
            g = nnx.merge(g_def, g_state)
            d = nnx.merge(d_def, d_params, d_rest)
            fake = jax.lax.stop_gradient(apply_in(g, jax.random.normal(kz_d, (n, Z_DIM)), cdt))
            real_logits = apply_in(d, augment(real, ka_r), cdt)
            fake_logits = apply_in(d, augment(fake, ka_f), cdt)
            value = jnp.mean(losses.gan_d_loss(real_logits, fake_logits, kind=loss))
            aux = (nnx.state(d, nnx.Not(nnx.Param)), nnx.state(g), real_logits, fake_logits)
            return value, aux

        d_params, d_rest = nnx.split_state(state["d"], nnx.Param, ...)
        (d_loss, (d_rest, g_state, real_logits, fake_logits)), d_grads = jax.value_and_grad(
            d_loss_fn, has_aux=True
        )(d_params, nnx.as_pure(d_rest), nnx.as_pure(state["g"]))
        updates, d_opt = opt_d.update(d_grads, state["d_opt"], d_params)
        d_params = optax.apply_updates(d_params, updates)

        def g_loss_fn(g_params, g_rest, d_state):
            g = nnx.merge(g_def, g_params, g_rest)
            d = nnx.merge(d_def, d_state)
            fake = apply_in(g, jax.random.normal(kz_g, (n, Z_DIM)), cdt)
            value = jnp.mean(losses.gan_g_loss(apply_in(d, augment(fake, ka_g), cdt), kind=loss))
            return value, (nnx.state(g, nnx.Not(nnx.Param)), nnx.state(d, nnx.Not(nnx.Param)))

        g_params, g_rest = nnx.split_state(g_state, nnx.Param, ...)
        d_state = nnx.merge_state(d_params, d_rest)
        (g_loss, (g_rest, d_rest)), g_grads = jax.value_and_grad(g_loss_fn, has_aux=True)(
            g_params, nnx.as_pure(g_rest), nnx.as_pure(d_state)
        )
        updates, g_opt = opt_g.update(g_grads, state["g_opt"], g_params)
        g_params = optax.apply_updates(g_params, updates)

        new_state = {
            "g": nnx.merge_state(g_params, g_rest),
            "d": nnx.merge_state(d_params, d_rest),
            "g_opt": g_opt,
            "d_opt": d_opt,
        }
        metrics = {
            "d_loss": d_loss,
            "g_loss": g_loss,
            "d_real": jnp.mean(real_logits),
            "d_fake": jnp.mean(fake_logits),
        }
        return new_state, metrics

    return step


# --------------------------------------------------------------------------- sampling


@partial(jax.jit, static_argnums=0)
def _generate(g_def, g_state, z):
    g = nnx.merge(g_def, g_state)
    g.eval()
    return from_network(g(z))


def generate(g_def: nnx.GraphDef, g_state: nnx.State, z, *, batch_size: int = 64) -> np.ndarray:
    """Images of a generator in eval mode (running batch-norm statistics; state unchanged).

    Args:
      g_def, g_state: the generator, split.
      z: float[N, z_dim] latents.
      batch_size: latents per compiled call.

    Returns:
      float32[N, S, S, 3] in [0, 1] (numpy).
    """
    z = jnp.asarray(z, jnp.float32)
    parts = [_generate(g_def, g_state, z[i : i + batch_size]) for i in range(0, len(z), batch_size)]
    return np.concatenate([np.asarray(p) for p in parts], axis=0)


def slerp(a, b, t) -> jax.Array:
    """Spherical linear interpolation between two latents, the whole latent as one vector.

    Follows the great circle from ``a`` to ``b`` (keeping the norm of Gaussian z); where
    they are (anti)parallel, the straight line. Traceable (no Python branch on values).

    Args:
      a, b: float latents of the same shape ``[...]`` (e.g. ``[100]``, or ``[L, 512]`` for w+).
      t: float[T] fractions (0 gives ``a``, 1 gives ``b`` up to rounding).

    Returns:
      float32[T, ...].
    """
    a, b = jnp.asarray(a, jnp.float32), jnp.asarray(b, jnp.float32)
    if a.shape != b.shape:
        raise ValueError(f"slerp: latents differ in shape: {a.shape} vs {b.shape}")
    t = jnp.asarray(t, jnp.float32).reshape((-1,) + (1,) * a.ndim)
    na, nb = jnp.linalg.norm(a), jnp.linalg.norm(b)
    cos = jnp.clip(jnp.vdot(a, b) / jnp.maximum(na * nb, 1e-12), -1.0, 1.0)
    omega = jnp.arccos(cos)
    so = jnp.sin(omega)
    lin = (1.0 - t) * a + t * b
    arc = (jnp.sin((1.0 - t) * omega) * a + jnp.sin(t * omega) * b) / jnp.where(so > 0, so, 1.0)
    return jnp.where(so > 1e-6, arc, lin)


def interpolation_latents(key: jax.Array, *, rows: int, cols: int, z_dim: int = Z_DIM):
    """``rows`` pairs of Gaussian latents, each slerped in ``cols`` steps.

    Returns:
      float32[rows * cols, z_dim], row-major (one pair per row of a ``cols``-wide grid).
    """
    ends = jax.random.normal(key, (rows, 2, z_dim))
    t = jnp.linspace(0.0, 1.0, cols)
    return jnp.concatenate([slerp(a, b, t) for a, b in ends], axis=0)


# --------------------------------------------------------------------------- CycleGAN

#: ``discriminator`` config name -> :mod:`imsyn.models` registry name
DISCRIMINATORS = {
    "patch": "patch_discriminator",
    "patch70": "patch70_discriminator",
    "patch16": "patch16_discriminator",
    "dc": "dc_discriminator",
}


class CycleGAN(NamedTuple):
    """The four CycleGAN networks (or their graphdefs): G: X→Y, F: Y→X, D_X, D_Y."""

    g_xy: Any
    g_yx: Any
    d_x: Any
    d_y: Any


def make_cyclegan(
    *,
    image_size: int,
    g_conv_dim: int,
    d_conv_dim: int,
    n_blocks: int = 3,
    block_convs: int = 2,
    norm: str = "instance",
    padding_mode: str = "reflect",
    g_skip: str = "none",
    g_align: str = "none",
    discriminator: str = "patch",
    spectral_norm: bool = False,
    key: jax.Array,
) -> CycleGAN:
    """Two ``cycle_resnet`` generators and two discriminators (``imsyn.models`` registry).

    Args:
      image_size: side of the images (the ``dc`` discriminator is built for it: 32 or 64).
      g_conv_dim, d_conv_dim: base widths of the generators and discriminators.
      n_blocks, block_convs, padding_mode: the generators' residual blocks.
      g_skip: the generators' skip: "none" (the course's), "unet" (around the bottleneck) or
        "unet_full" (also the input at full resolution).
      g_align: "none", or "zoom": each generator zooms its input by a fixed scale (state,
        not a parameter: ``imsyn.tasks.cyclegan.set_zoom``), for domains that frame their
        subject differently; the identity loss applies to the restyling after it.
      norm: "instance", "batch" or "none" (all four networks).
      discriminator: "patch" (4×4 logits at 64 px), "patch70" (pix2pix 70×70), "patch16"
        (pix2pix 16×16: local logits) or "dc".
      spectral_norm: spectral normalisation on every discriminator conv.
      key: initialisation key (one ``nnx.Rngs`` stream, in the order G, F, D_X, D_Y).

    Returns:
      :class:`CycleGAN` of NNX modules: generators map float32[N, S, S, 3] in [-1, 1] to the
      same, discriminators images to logits.
    """
    if discriminator not in DISCRIMINATORS:
        raise ValueError(
            f"discriminator must be one of {tuple(DISCRIMINATORS)}, got {discriminator!r}"
        )
    rngs = nnx.Rngs(params=key)
    gen = models.get("cycle_resnet")
    g_kw = dict(
        conv_dim=g_conv_dim,
        n_blocks=n_blocks,
        norm=norm,
        padding_mode=padding_mode,
        block_convs=block_convs,
        skip=g_skip,
        align=g_align,
    )
    disc = models.get(DISCRIMINATORS[discriminator])
    d_kw = dict(conv_dim=d_conv_dim, norm=norm, spectral_norm=spectral_norm)
    if discriminator == "dc":
        d_kw["image_size"] = image_size
    return CycleGAN(
        gen(**g_kw, rngs=rngs),
        gen(**g_kw, rngs=rngs),
        disc(**d_kw, rngs=rngs),
        disc(**d_kw, rngs=rngs),
    )


def _params(state: nnx.State) -> nnx.State:
    return nnx.split_state(state, nnx.Param, ...)[0]


def init_cyclegan_state(
    nets: CycleGAN,
    opt_g: optax.GradientTransformation,
    opt_d: optax.GradientTransformation,
    *,
    pool_size: int = 0,
    image_shape: tuple[int, int, int] | None = None,
    ema: bool = False,
) -> dict:
    """The training state of :func:`make_cyclegan_step` (copies: the modules stay untouched).

    Returns::

        {"g_xy", "g_yx", "d_x", "d_y": nnx.State,
         "opt_g": optax state of {"g_xy", "g_yx"} params, "opt_d": of {"d_x", "d_y"},
         "pool_x", "pool_y": float32[pool_size, H, W, C], "pool_n": int32,   # if pool_size
         "ema": {"g_xy", "g_yx": nnx.State of params}, "ema_n": int32}     # if ema

    Raises:
      ValueError: ``pool_size`` > 0 without ``image_shape``.
    """
    if pool_size and image_shape is None:
        raise ValueError("init_cyclegan_state: a pool needs image_shape=(H, W, C)")
    # fresh arrays: a jitted step donates the state, which must not alias the modules
    state = {k: jax.tree.map(jnp.array, nnx.state(m)) for k, m in nets._asdict().items()}
    state["opt_g"] = opt_g.init({k: _params(state[k]) for k in ("g_xy", "g_yx")})
    state["opt_d"] = opt_d.init({k: _params(state[k]) for k in ("d_x", "d_y")})
    if pool_size:  # (orbax cannot save zero-size arrays: no pool, no entries)
        for name in ("pool_x", "pool_y"):
            state[name] = jnp.zeros((pool_size, *image_shape), jnp.float32)
        state["pool_n"] = jnp.zeros((), jnp.int32)
    if ema:  # the generators' parameters, averaged over training (see make_cyclegan_step)
        state["ema"] = {k: jax.tree.map(jnp.array, _params(state[k])) for k in ("g_xy", "g_yx")}
        state["ema_n"] = jnp.zeros((), jnp.int32)
    return state


def cyclegan_generators(state: dict) -> dict:
    """``{"g_xy", "g_yx": nnx.State}`` to translate with: the moving averages of the
    parameters when the state keeps them (``ema``), else the trained parameters."""
    if "ema" not in state:
        return {k: state[k] for k in ("g_xy", "g_yx")}
    return {k: nnx.merge_state(state[k], state["ema"][k]) for k in ("g_xy", "g_yx")}


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


def make_cyclegan_step(
    defs: CycleGAN,
    opt_g: optax.GradientTransformation,
    opt_d: optax.GradientTransformation,
    *,
    loss: str = "lsgan",
    lambda_cycle: float = 10.0,
    lambda_identity: float = 0.0,
    diffaug: str = "",
    dtype: str = "float32",
    ema_decay: float = 0.0,
) -> Step:
    """The CycleGAN training step, as a pure function.

    With ``batch = {"x": [N,H,W,C], "y": [N,H,W,C]}`` in ``[-1, 1]`` (unpaired) it

    1. runs both generators once (``G(x)``, ``F(y)``, and the cycles ``F(G(x))``,
       ``G(F(y))`` and identity mappings ``G(y)``, ``F(x)`` only when their weights are
       non-zero), keeping the VJP;
    2. updates ``D_X`` and ``D_Y`` on real vs. (pooled, detached) fake images, DiffAugment
       applied to real and fake alike;
    3. updates both generators on the adversarial loss against the *updated* discriminators
       (DiffAugment again; their running statistics are not updated by this pass) +
       ``λ_cyc · (|x - F(G(x))| + |y - G(F(y))|)`` + ``λ_cyc · λ_id · (|y - G(y)| + |x - F(x)|)``,
       back-propagated through step 1's saved VJP: the generators have not changed in between,
       so this is the gradient of a second forward pass at a fraction of the cost.

    The image pool is used when the state has one (``pool_size`` of
    :func:`init_cyclegan_state`). When the state keeps moving averages of the generators'
    parameters (``ema``), they are updated after step 3 with decay ``min(ema_decay,
    (1 + t) / (10 + t))`` at update ``t`` (TensorFlow's ``ExponentialMovingAverage`` with
    ``num_updates``: short runs are not dominated by the initial weights). Every network's
    non-parameter state (batch-norm statistics, spectral-norm vectors) enters the traced
    functions as plain arrays (``nnx.as_pure``).

    Args:
      defs: :class:`CycleGAN` of the four graphdefs (``nnx.graphdef``).
      opt_g: optimizer of both generators (one state over ``{"g_xy", "g_yx"}``).
      opt_d: optimizer of both discriminators.
      loss: "lsgan", "bce" or "hinge" (:data:`imsyn.losses.GAN_LOSSES`).
      lambda_cycle: cycle-loss weight (0 removes the cycle passes from the graph).
      lambda_identity: identity-loss weight relative to ``lambda_cycle`` (0 = off).
      diffaug: DiffAugment policy, e.g. "color,translation" ("" = off).
      dtype: compute dtype, "float32" or "bfloat16" (mixed precision: every network call
        casts its input to bfloat16 and its output back to float32, so parameters, optimizer
        state, gradients, the image pool and all losses stay float32).
      ema_decay: decay of the generators' parameter averages (used when the state has them).

    Returns:
      ``step(state, batch, key) -> (state, metrics)``: state as :func:`init_cyclegan_state`;
      metrics the scalars ``d_loss``, ``g_loss``, ``d_x``, ``d_y``, ``g_adv_x``, ``g_adv_y``
      and, when on, ``cycle`` and ``identity``. Jit it (donating the state).

    Raises:
      ValueError: an unknown loss or a negative weight; ConfigError: an unknown policy.
    """
    if loss not in losses.GAN_LOSSES:
        raise ValueError(f"loss must be one of {losses.GAN_LOSSES}, got {loss!r}")
    if not (lambda_cycle >= 0 and lambda_identity >= 0):
        raise ValueError(f"loss weights must be >= 0, got {lambda_cycle=}, {lambda_identity=}")
    if not 0.0 <= ema_decay < 1.0:
        raise ValueError(f"ema_decay must be in [0, 1), got {ema_decay}")
    parse_policy(diffaug)
    lam_cyc, lam_id = float(lambda_cycle), float(lambda_identity)
    graphdefs = defs._asdict()
    cdt = compute_dtype(dtype)

    def augment(x, key):
        return diff_augment(x, key, diffaug) if diffaug else x

    def run(name, params, rest, x, frame=None):
        """One network on ``x``: its output and its updated non-parameter state. With
        ``frame``, a generator zooms (``frame``) the first ``frame`` images of ``x`` and
        restyles them all: the identity passes ride along without the zoom."""
        m = nnx.merge(graphdefs[name], nnx.as_pure(params), nnx.as_pure(rest))
        if frame is not None:
            x = jnp.concatenate([m.frame(x[:frame]), x[frame:]])
            return apply_in(m.restyle, x, cdt), nnx.state(m, nnx.Not(nnx.Param))
        return apply_in(m, x, cdt), nnx.state(m, nnx.Not(nnx.Param))

    def generate(pg, rest, x, y):
        """The generator passes: {fake_y, fake_x[, rec_x, rec_y][, id_y, id_x]}, new states."""
        rxy, ryx = rest["g_xy"], rest["g_yx"]
        out = {}
        if lam_id > 0:  # G(x) and G(y) in one call (instance norm: per example)
            n = x.shape[0]
            both, rxy = run("g_xy", pg["g_xy"], rxy, jnp.concatenate([x, y]), frame=n)
            out["fake_y"], out["id_y"] = both[:n], both[n:]
            both, ryx = run("g_yx", pg["g_yx"], ryx, jnp.concatenate([y, x]), frame=n)
            out["fake_x"], out["id_x"] = both[:n], both[n:]
        else:
            out["fake_y"], rxy = run("g_xy", pg["g_xy"], rxy, x)
            out["fake_x"], ryx = run("g_yx", pg["g_yx"], ryx, y)
        if lam_cyc > 0:
            out["rec_x"], ryx = run("g_yx", pg["g_yx"], ryx, out["fake_y"])
            out["rec_y"], rxy = run("g_xy", pg["g_xy"], rxy, out["fake_x"])
        return out, {"g_xy": rxy, "g_yx": ryx}

    def step(state, batch, key):
        x, y = batch["x"].astype(jnp.float32), batch["y"].astype(jnp.float32)
        n = x.shape[0]
        k_pool_x, k_pool_y, k_dx, k_dy, k_gx, k_gy = jax.random.split(key, 6)
        split = {k: nnx.split_state(state[k], nnx.Param, ...) for k in graphdefs}
        rest = {k: r for k, (_, r) in split.items()}
        pg = {k: split[k][0] for k in ("g_xy", "g_yx")}
        pd = {k: split[k][0] for k in ("d_x", "d_y")}

        # 1. the generators, once, keeping the VJP for step 3
        outs, g_vjp, g_rest = jax.vjp(lambda p: generate(p, rest, x, y), pg, has_aux=True)

        # 2. the discriminators on real vs (pooled) detached fakes
        fake_y = jax.lax.stop_gradient(outs["fake_y"])
        fake_x = jax.lax.stop_gradient(outs["fake_x"])
        pools = {}
        if "pool_x" in state:
            fake_y, pools["pool_y"], pools["pool_n"] = pool_query(
                state["pool_y"], state["pool_n"], fake_y, k_pool_y
            )
            fake_x, pools["pool_x"], _ = pool_query(
                state["pool_x"], state["pool_n"], fake_x, k_pool_x
            )

        def d_loss_fn(pd):
            ly, ry = run("d_y", pd["d_y"], rest["d_y"], augment(jnp.concatenate([y, fake_y]), k_dy))
            lx, rx = run("d_x", pd["d_x"], rest["d_x"], augment(jnp.concatenate([x, fake_x]), k_dx))
            d_y = jnp.mean(losses.gan_d_loss(ly[:n], ly[n:], kind=loss))
            d_x = jnp.mean(losses.gan_d_loss(lx[:n], lx[n:], kind=loss))
            return d_x + d_y, ({"d_x": d_x, "d_y": d_y}, {"d_x": rx, "d_y": ry})

        (d_total, (d_metrics, d_rest)), d_grads = jax.value_and_grad(d_loss_fn, has_aux=True)(pd)
        d_updates, d_opt = opt_d.update(d_grads, state["opt_d"], pd)
        pd = optax.apply_updates(pd, d_updates)

        # 3. the generators against the updated discriminators
        def g_loss_fn(o):
            ly, _ = run("d_y", pd["d_y"], d_rest["d_y"], augment(o["fake_y"], k_gy))
            lx, _ = run("d_x", pd["d_x"], d_rest["d_x"], augment(o["fake_x"], k_gx))
            m = {
                "g_adv_y": jnp.mean(losses.gan_g_loss(ly, kind=loss)),
                "g_adv_x": jnp.mean(losses.gan_g_loss(lx, kind=loss)),
            }
            total = m["g_adv_x"] + m["g_adv_y"]
            if lam_cyc > 0:
                m["cycle"] = jnp.mean(losses.cycle_loss(x, o["rec_x"])) + jnp.mean(
                    losses.cycle_loss(y, o["rec_y"])
                )
                total = total + lam_cyc * m["cycle"]
            if lam_id > 0:
                m["identity"] = jnp.mean(losses.identity_loss(y, o["id_y"])) + jnp.mean(
                    losses.identity_loss(x, o["id_x"])
                )
                total = total + lam_cyc * lam_id * m["identity"]
            return total, m

        (g_total, g_metrics), g_out_grads = jax.value_and_grad(g_loss_fn, has_aux=True)(outs)
        (g_grads,) = g_vjp(g_out_grads)
        g_updates, g_opt = opt_g.update(g_grads, state["opt_g"], pg)
        pg = optax.apply_updates(pg, g_updates)

        new_state = {
            **{k: nnx.merge_state(pg[k], g_rest[k]) for k in ("g_xy", "g_yx")},
            **{k: nnx.merge_state(pd[k], d_rest[k]) for k in ("d_x", "d_y")},
            "opt_g": g_opt,
            "opt_d": d_opt,
            **pools,
        }
        if "ema" in state:
            t = state["ema_n"].astype(jnp.float32)
            decay = jnp.minimum(ema_decay, (1.0 + t) / (10.0 + t))
            new_state["ema"] = jax.tree.map(
                lambda e, p: e + (1.0 - decay) * (p - e), state["ema"], pg
            )
            new_state["ema_n"] = state["ema_n"] + 1
        return new_state, {"d_loss": d_total, "g_loss": g_total, **d_metrics, **g_metrics}

    return step


@partial(jax.jit, static_argnums=0)
def _translate(g_def, g_state, images):
    g = nnx.merge(g_def, g_state)
    g.eval()
    return g(images)


def translate(g_def: nnx.GraphDef, g_state: nnx.State, images) -> jax.Array:
    """One generator in eval mode on ``float32[N, H, W, 3]`` in [-1, 1] (jitted; same range).

    Args:
      g_def, g_state: the generator, split (``defs.g_xy`` with ``state["g_xy"]`` for X → Y).
      images: float[N, H, W, 3] in [-1, 1].
    """
    return _translate(g_def, g_state, jnp.asarray(images, jnp.float32))


# --------------------------------------------------------------------------- CycleGAN baselines


class ChannelStats(NamedTuple):
    """Per-channel mean and standard deviation of a domain, float64[C] each, in [0, 1]."""

    mean: np.ndarray
    std: np.ndarray


def channel_stats(images) -> ChannelStats:
    """Per-channel mean/std of ``[N, H, W, C]`` images in [0, 1] (or an iterable of chunks).

    Raises:
      ValueError: no image.
    """
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


def framing(images) -> float:
    """How far a domain's subjects spread from the image centre: the mean, over images, of the
    RMS distance (in image sides) of the foreground pixels from the centre.

    Foreground: pixels whose colour differs by more than 0.1 (any channel) from the median
    colour of the image's one-pixel border — the background of an emoji or a product shot;
    a photo filled to its border has no such background, and its framing is not measured.

    Args:
      images: float ``[N, H, W, C]`` in [0, 1], or an iterable of such chunks.

    Raises:
      ValueError: no image with a foreground pixel.
    """
    chunks = [images] if isinstance(images, np.ndarray) else images
    radii = []
    for c in chunks:
        c = np.asarray(c, np.float32)
        n, h, w, _ = c.shape
        border = np.concatenate([c[:, 0], c[:, -1], c[:, :, 0], c[:, :, -1]], axis=1)
        fg = (np.abs(c - np.median(border, axis=1)[:, None, None]).max(-1) > 0.1).astype(np.float64)
        yy = (np.arange(h) + 0.5) / h - 0.5
        xx = (np.arange(w) + 0.5) / w - 0.5
        r2 = yy[:, None] ** 2 + xx[None, :] ** 2
        count = fg.sum(axis=(1, 2))
        keep = count > 0
        radii.append(np.sqrt((fg * r2).sum(axis=(1, 2))[keep] / count[keep]))
    radii = np.concatenate(radii) if radii else np.zeros(0)
    if not len(radii):
        raise ValueError("framing needs at least one image with a foreground")
    return float(radii.mean())


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
      LPIPS only with ``lpips`` and images of at least 16 px; PSNR capped at 100 dB (identical
      images would give +inf, which JSON cannot hold).
    """
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
            if k == "psnr":
                v = np.minimum(v, 100.0)
            out[k] = float(v.mean())
    return out

"""GANs (A3), the library: models built by name, pure training steps, sampling, slerp.

Nothing here knows about configs, checkpoints or workdirs (that is
:mod:`imsyn.tasks.dcgan`); every function takes arrays, NNX graphdefs/states and
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

The CycleGAN step lives in the CycleGAN section at the end of this module.
"""

from __future__ import annotations

from collections.abc import Callable
from functools import partial

import jax
import jax.numpy as jnp
import numpy as np
import optax
from flax import nnx

from imsyn import losses, models
from imsyn.augment import diff_augment, parse_policy
from imsyn.image import from_network
from imsyn.models.dcgan import Z_DIM

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

    def augment(x, key):
        return diff_augment(x, key, diffaug) if diffaug else x

    def step(state, batch, key):
        real = batch["image"]
        n = real.shape[0]
        kz_d, kz_g, ka_r, ka_f, ka_g = jax.random.split(key, 5)

        def d_loss_fn(d_params, d_rest, g_state):
            g = nnx.merge(g_def, g_state)
            d = nnx.merge(d_def, d_params, d_rest)
            fake = jax.lax.stop_gradient(g(jax.random.normal(kz_d, (n, Z_DIM))))
            real_logits = d(augment(real, ka_r))
            fake_logits = d(augment(fake, ka_f))
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
            fake = g(jax.random.normal(kz_g, (n, Z_DIM)))
            value = jnp.mean(losses.gan_g_loss(d(augment(fake, ka_g)), kind=loss))
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
# The CycleGAN step (two generators, two discriminators, cycle and identity losses) moves
# here from imsyn/training/cyclegan.py, as make_cyclegan_step(...) on the same convention.

"""A5: GAN photo editing — sample, project, interpolate, draw (iGAN-style).

Works on any imsyn generator ``G(z) -> [N, S, S, 3]`` in ``[-1, 1]`` (the DCGAN
generator has the latent space ``z``); a style-based generator
(:class:`imsyn.models.stylegan.StyleGenerator`, with ``mapping`` and
``synthesis``) also has ``w`` (the mapping network's output, shared by every
layer) and ``w+`` (one ``w`` per modulated layer).

* :func:`sample`: images from random latents or from the mean latent.
* :func:`project`: find latents whose images match target images, minimizing
  ``pixel_weight * L1|L2 + perceptual_weight * VGG-19 feature MSE
  + latent_reg * mean((latent - prior)^2)``, optimized by L-BFGS (optax, zoom line
  search) or Adam for ``steps`` steps.
  Each image is optimized independently (``jax.vmap`` around the whole optimizer),
  so the other images of a batch never change a result, and a batch equals one
  image at a time up to float round-off.
* :func:`interpolate`: frames between two latents (linear, or spherical for z).
* :func:`draw`: scribble-to-image — :func:`project` with a mask, starting from
  the mean latent, so that inside the mask the image follows a colour sketch.
* :func:`train` / :func:`evaluate`: the ``task="editing"`` experiment of
  ``train.py``/``eval.py`` (``configs/editing.py``).

Latent shapes: ``z: [N, z_dim]``, ``w: [N, w_dim]``, ``w+: [N, num_ws, w_dim]``.
"""

from __future__ import annotations

import functools
import math
from collections.abc import Sequence
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
import optax
from flax import nnx

from imsyn.errors import ConfigError, InputError

SPACES = ("z", "w", "w+")
OPTIMIZERS = ("lbfgs", "adam")
PIXEL_LOSSES = ("l1", "l2")
#: VGG-19 layers of the default perceptual loss (the paper's names).
DEFAULT_LAYERS = ("conv1_2", "conv2_2", "conv3_4")


# --------------------------------------------------------------------------- generators


def latent_spaces(gen: nnx.Module) -> tuple[str, ...]:
    """The latent spaces of ``gen``: ``("z",)``, or ``("z", "w", "w+")`` for a style generator."""
    if hasattr(gen, "mapping") and hasattr(gen, "synthesis") and hasattr(gen, "num_ws"):
        return SPACES
    return ("z",)


def check_space(gen: nnx.Module, space: str) -> None:
    """Raises ConfigError unless ``space`` is a latent space of ``gen``."""
    spaces = latent_spaces(gen)
    if space not in spaces:
        kind = "a style-based generator" if spaces == SPACES else "this generator (no mapping net)"
        raise ConfigError(
            f"latent space {space!r} is not available for {kind}; choose one of {list(spaces)}"
        )


def z_dim(gen: nnx.Module) -> int:
    """Dimension of the generator's z."""
    for name in ("z_dim", "latent_dim", "noise_dim", "nz"):
        if isinstance(getattr(gen, name, None), int):
            return getattr(gen, name)
    raise ConfigError(f"{type(gen).__name__} does not expose its latent size (z_dim)")


def latent_shape(gen: nnx.Module, space: str) -> tuple[int, ...]:
    """Shape of one latent (no batch axis) in ``space``."""
    check_space(gen, space)
    if space == "z":
        return (z_dim(gen),)
    if space == "w":
        return (gen.w_dim,)
    return (gen.num_ws, gen.w_dim)


def render(gen: nnx.Module, latents: jax.Array, *, space: str) -> jax.Array:
    """Images of ``latents`` in ``space``: ``[N, ...] -> float32[N, S, S, 3]`` in ``[-1, 1]``."""
    if space == "z":
        return gen(latents)
    if space == "w":
        return gen.synthesis(gen.broadcast(latents))
    return gen.synthesis(latents)


def mean_latent(gen: nnx.Module, *, space: str, key: jax.Array, n: int = 10_000) -> jax.Array:
    """The mean latent (no batch axis): zeros for z; the mean of ``mapping(z)`` over ``n``
    samples for w (broadcast to every layer for w+)."""
    check_space(gen, space)
    if space == "z":
        return jnp.zeros((z_dim(gen),), jnp.float32)
    w = _mean_w(gen, key, n)
    return w if space == "w" else jnp.broadcast_to(w, (gen.num_ws, gen.w_dim))


def _mean_w(gen, key, n):
    gdef, gstate = nnx.split(gen)
    return _mean_w_jit(gdef, gstate, key, n)


@functools.partial(jax.jit, static_argnums=(0, 3))
def _mean_w_jit(gdef, gstate, key, n):
    return nnx.merge(gdef, gstate).mean_w(key, n)


class Samples(NamedTuple):
    """Result of :func:`sample`."""

    latents: jax.Array  #: [N, ...] in the chosen space
    images: jax.Array  #: float32[N, S, S, 3] in [-1, 1]


def sample(
    gen: nnx.Module,
    *,
    n: int,
    key: jax.Array,
    space: str = "z",
    mean: bool = False,
    truncation: float = 1.0,
) -> Samples:
    """Samples ``n`` images from random latents (or the mean latent).

    Args:
      gen: generator.
      n: number of samples.
      key: PRNG key (z ~ N(0, I); for w/w+ also the key of the mean w estimate).
      space: the space the returned latents live in ("z", "w" or "w+").
      mean: use the mean latent for every sample instead of random ones.
      truncation: psi of the truncation trick in w/w+, ``w = mean + psi (w - mean)``
        (1 = no truncation; ignored in z).

    Returns:
      :class:`Samples`.
    """
    check_space(gen, space)
    if n < 1:
        raise ConfigError(f"n must be positive, got {n}")
    kz, km = jax.random.split(key)
    if mean:
        lat = jnp.broadcast_to(
            mean_latent(gen, space=space, key=km), (n, *latent_shape(gen, space))
        )
    else:
        z = jax.random.normal(kz, (n, z_dim(gen)), jnp.float32)
        w_avg = _mean_w(gen, km, 10_000) if space != "z" and truncation != 1.0 else None
        gdef, gstate = nnx.split(gen)
        lat = _latents_of_z(gdef, space, gstate, z, w_avg, jnp.float32(truncation))
    gdef, gstate = nnx.split(gen)
    return Samples(lat, _render_jit(gdef, gstate, lat, space))


@functools.partial(jax.jit, static_argnums=(0, 1))
def _latents_of_z(gdef, space, gstate, z, w_avg, psi):
    if space == "z":
        return z
    gen = nnx.merge(gdef, gstate)
    w = gen.mapping(z)
    if w_avg is not None:
        w = w_avg + psi * (w - w_avg)
    return w if space == "w" else gen.broadcast(w)


@functools.partial(jax.jit, static_argnums=(0, 3))
def _render_jit(gdef, gstate, latents, space):
    return render(nnx.merge(gdef, gstate), latents, space=space)


# --------------------------------------------------------------------------- perceptual features


class Perceptual(NamedTuple):
    """VGG-19 features for the perceptual loss (build it with :func:`perceptual_net`)."""

    params: dict  #: VGG-19 arrays ``{"kernels": [...], "biases": [...]}``
    layers: tuple[str, ...]  #: layer names (either spelling of :mod:`imsyn.models.vgg`)
    mean: tuple[float, float, float]  #: input normalization of the weights
    std: tuple[float, float, float]
    source: str  #: where the weights came from: a file name, or "random"


def perceptual_net(
    weights: str | None = None, *, layers: Sequence[str] = DEFAULT_LAYERS, quiet: bool = False
) -> Perceptual:
    """VGG-19 features from ``weights`` (a file, else ``$IMSYN_VGG19``, else the random mode).

    Raises:
      InputError: a missing/corrupt weights file, an unknown layer name.
    """
    from imsyn.models import vgg

    layers = vgg.check_layers(layers)
    if not layers:
        raise ConfigError("perceptual layers are empty; name at least one VGG-19 layer")
    w = vgg.load_weights(weights, quiet=quiet)
    params = jax.tree.map(jnp.asarray, w.params)
    return Perceptual(params, layers, tuple(w.mean), tuple(w.std), w.source)


def _feature_fn(pconf, params):
    """images [N, S, S, 3] in [-1, 1] -> list of VGG-19 feature maps (None without a net)."""
    if pconf is None:
        return None
    from imsyn.models import vgg

    layers, mean, std = pconf

    def fn(images):
        out = vgg.features(params, (images + 1.0) * 0.5, layers=layers, mean=mean, std=std)
        return [out[name] for name in layers]

    return fn


# --------------------------------------------------------------------------- projection


class Options(NamedTuple):
    """Knobs of a projection (see :func:`project`)."""

    space: str = "w+"
    optimizer: str = "lbfgs"
    lr: float = 0.05
    pixel: str = "l1"
    pixel_weight: float = 1.0
    perceptual_weight: float = 0.0
    latent_reg: float = 0.0


class _Static(NamedTuple):
    """The part of :class:`Options` that shapes the compiled program (weights are arguments)."""

    space: str
    optimizer: str
    pixel: str
    perceptual: bool


class Projection(NamedTuple):
    """Result of :func:`project` / :func:`draw` (batch of N)."""

    latents: jax.Array  #: [N, ...] in ``space``
    images: jax.Array  #: float32[N, S, S, 3] in [-1, 1], the images of ``latents``
    losses: jax.Array  #: float32[N, steps + 1], the objective before each step and at the end
    error: jax.Array  #: float32[N], mean |image - target| (on [0, 1]) inside the mask
    space: str


def _check_options(opts: Options, steps: int) -> None:
    if opts.space not in SPACES:
        raise ConfigError(f"latent space must be one of {list(SPACES)}, got {opts.space!r}")
    if opts.optimizer not in OPTIMIZERS:
        raise ConfigError(f"optimizer must be one of {list(OPTIMIZERS)}, got {opts.optimizer!r}")
    if opts.pixel not in PIXEL_LOSSES:
        raise ConfigError(f"pixel loss must be one of {list(PIXEL_LOSSES)}, got {opts.pixel!r}")
    if not isinstance(steps, int) or steps < 1:
        raise ConfigError(f"steps must be a positive integer, got {steps!r}")
    if not (opts.lr > 0 and math.isfinite(opts.lr)):
        raise ConfigError(f"lr must be a finite number > 0, got {opts.lr}")
    for name in ("pixel_weight", "perceptual_weight", "latent_reg"):
        v = getattr(opts, name)
        if not (v >= 0 and math.isfinite(v)):
            raise ConfigError(f"{name} must be a finite number >= 0, got {v}")
    if opts.pixel_weight == 0 and opts.perceptual_weight == 0:
        raise ConfigError("pixel_weight and perceptual_weight are both 0: nothing to optimize")


def _make_optimizer(optimizer: str, lr) -> optax.GradientTransformationExtraArgs:
    if optimizer == "adam":
        return optax.adam(lr)
    return optax.lbfgs()


def _loss_one(gen, feats, st: _Static, weights, latent, target, mask, prior, tfeat):
    """Objective of one example: latent [...], target [S, S, 3] in [-1, 1], mask [S, S, 1],
    ``tfeat`` the VGG features of ``target * mask`` (computed once, see :func:`project`).

    ``weights = [lr, pixel_weight, perceptual_weight, latent_reg]``.
    """
    img = render(gen, latent[None], space=st.space)[0]
    area = jnp.maximum(jnp.sum(mask) * img.shape[-1], 1.0)
    diff = (img - target) * mask
    pix = jnp.sum(jnp.abs(diff) if st.pixel == "l1" else jnp.square(diff)) / area
    loss = weights[1] * pix + weights[3] * jnp.mean(jnp.square(latent - prior))
    if st.perceptual:
        fa = feats((img * mask)[None])
        perc = sum(jnp.mean(jnp.square(f[0] - t)) for f, t in zip(fa, tfeat, strict=True))
        loss = loss + weights[2] * perc / len(fa)
    return loss


@functools.partial(jax.jit, static_argnums=(0,))
def _target_features(pconf, pparams, targets, masks):
    return _feature_fn(pconf, pparams)(targets * masks)


@functools.partial(jax.jit, static_argnums=(0, 1, 2, 3))
def _run_chunk(gdef, pconf, st: _Static, n_steps: int, gstate, pparams, latents, opt_state, data):
    """``n_steps`` optimizer steps on every example (vmapped); returns losses [N, n_steps]."""
    gen = nnx.merge(gdef, gstate)
    feats = _feature_fn(pconf, pparams)
    targets, masks, priors, tfeats, weights = data
    tx = _make_optimizer(st.optimizer, weights[0])

    def one(latent, state, target, mask, prior, tfeat):
        def value(lat):
            return _loss_one(gen, feats, st, weights, lat, target, mask, prior, tfeat)

        def step(carry, _):
            lat, s = carry
            if st.optimizer == "lbfgs":
                val, grad = optax.value_and_grad_from_state(value)(lat, state=s)
                upd, s = tx.update(grad, s, lat, value=val, grad=grad, value_fn=value)
            else:
                val, grad = jax.value_and_grad(value)(lat)
                upd, s = tx.update(grad, s, lat)
            return (optax.apply_updates(lat, upd), s), val

        (lat, s), vals = jax.lax.scan(step, (latent, state), None, length=n_steps)
        return lat, s, vals

    return jax.vmap(one)(latents, opt_state, targets, masks, priors, tfeats)


@functools.partial(jax.jit, static_argnums=(0, 1, 2))
def _final(gdef, pconf, st: _Static, gstate, pparams, latents, data):
    gen = nnx.merge(gdef, gstate)
    feats = _feature_fn(pconf, pparams)
    targets, masks, priors, tfeats, weights = data

    def one(lat, target, mask, prior, tfeat):
        return _loss_one(gen, feats, st, weights, lat, target, mask, prior, tfeat)

    losses = jax.vmap(one)(latents, targets, masks, priors, tfeats)
    images = render(gen, latents, space=st.space)
    err = jnp.sum(jnp.abs(images - targets) * masks, axis=(1, 2, 3)) / (
        2.0 * jnp.maximum(jnp.sum(masks, axis=(1, 2, 3)) * images.shape[-1], 1.0)
    )
    return images, losses, err


def _initial_latents(gen, space: str, n: int, init: str, key) -> tuple[jax.Array, jax.Array]:
    """(initial latents [N, ...], prior [N, ...]) for ``init`` in {"mean", "random"}."""
    kz, km = jax.random.split(key)
    shape = (n, *latent_shape(gen, space))
    prior = jnp.broadcast_to(mean_latent(gen, space=space, key=km), shape)
    if init == "random" or space == "z":
        # The mean z = 0 is a degenerate point of generators that normalize z (pixel norm,
        # instance norm): projection in z starts from a seeded sample instead.
        lat = sample(gen, n=n, key=kz, space=space).latents
    else:
        lat = prior
    return jnp.asarray(lat, jnp.float32), prior


def _check_targets(gen, targets, masks):
    targets = jnp.asarray(targets, jnp.float32)
    if targets.ndim == 3:
        targets = targets[None]
    if targets.ndim != 4 or targets.shape[-1] != 3 or targets.shape[0] == 0:
        raise InputError(f"targets must be [N, H, W, 3] images, got shape {tuple(targets.shape)}")
    size = getattr(gen, "image_size", None)
    if size is not None and targets.shape[1:3] != (size, size):
        raise InputError(
            f"targets are {targets.shape[1]}x{targets.shape[2]} but the generator makes "
            f"{size}x{size} images; resize them first"
        )
    if masks is None:
        masks = jnp.ones((*targets.shape[:3], 1), jnp.float32)
    else:
        masks = jnp.asarray(masks, jnp.float32)
        if masks.ndim == 2:
            masks = masks[None]
        if masks.ndim == 3:
            masks = masks[..., None]
        if masks.shape[:3] != targets.shape[:3] or masks.shape[-1] != 1:
            raise InputError(
                f"masks of shape {tuple(masks.shape)} do not match targets {tuple(targets.shape)}"
            )
        empty = np.flatnonzero(np.asarray(jnp.sum(masks, axis=(1, 2, 3))) <= 0)
        if empty.size:
            raise InputError(f"mask {int(empty[0])} is empty: nothing to match")
    return targets, masks


def project(
    gen: nnx.Module,
    targets: Any,
    *,
    space: str = "w+",
    steps: int = 200,
    optimizer: str = "lbfgs",
    lr: float = 0.05,
    pixel: str = "l1",
    pixel_weight: float = 1.0,
    perceptual: Perceptual | None = None,
    perceptual_weight: float = 0.0,
    latent_reg: float = 0.0,
    init: str = "mean",
    key: jax.Array | None = None,
    masks: Any = None,
    chunk: int = 25,
    progress: bool = False,
) -> Projection:
    """Projects images into the generator's latent ``space``.

    Args:
      gen: generator (eval mode is set on a copy of its state; ``gen`` is not modified).
      targets: float[N, S, S, 3] (or [S, S, 3]) in ``[-1, 1]``, S the generator's size.
      space: "z", "w" or "w+" (w/w+ need a style-based generator).
      steps: optimizer steps.
      optimizer: "lbfgs" (optax L-BFGS with zoom line search) or "adam".
      lr: Adam learning rate (L-BFGS picks its step by line search).
      pixel: "l1" or "l2" pixel loss (mean over the mask and channels).
      pixel_weight: weight of the pixel loss.
      perceptual: feature network (:func:`perceptual_net`); needed if ``perceptual_weight > 0``.
      perceptual_weight: weight of the mean squared feature difference (mean over layers).
      latent_reg: weight of ``mean((latent - prior)^2)``, prior 0 for z and the mean w for w/w+.
      init: "mean" (mean w for w/w+) or "random" (a sample); z always starts from a sample.
      key: PRNG key for the initial samples and the mean-w estimate (default ``key(0)``).
      masks: optional float[N, S, S] (or [N, S, S, 1]) weights in [0, 1]; the losses only
        look inside the mask.
      chunk: steps per compiled call (the progress bar updates between calls).
      progress: show a progress bar on stderr.

    Returns:
      :class:`Projection`.

    Raises:
      ConfigError: unknown space/optimizer/loss, a space the generator does not have, bad weights.
      InputError: targets of the wrong size, masks not matching the targets, an empty mask.
    """
    opts = Options(
        space=space,
        optimizer=optimizer,
        lr=float(lr),
        pixel=pixel,
        pixel_weight=float(pixel_weight),
        perceptual_weight=float(perceptual_weight),
        latent_reg=float(latent_reg),
    )
    _check_options(opts, steps)
    if init not in ("mean", "random"):
        raise ConfigError(f"init must be 'mean' or 'random', got {init!r}")
    if not isinstance(chunk, int) or chunk < 1:
        raise ConfigError(f"chunk must be a positive integer, got {chunk!r}")
    check_space(gen, space)
    if opts.perceptual_weight > 0 and perceptual is None:
        raise ConfigError("perceptual_weight > 0 needs a feature network (perceptual=...)")
    targets, masks = _check_targets(gen, targets, masks)
    key = jax.random.key(0) if key is None else key
    gen = nnx.clone(gen)
    gen.eval()
    latents, priors = _initial_latents(gen, space, targets.shape[0], init, key)
    gdef, gstate = nnx.split(gen)
    st = _Static(space, optimizer, pixel, opts.perceptual_weight > 0)
    if st.perceptual:
        pconf = (perceptual.layers, perceptual.mean, perceptual.std)
        pparams = perceptual.params
    else:
        pconf, pparams = None, None
    weights = jnp.asarray(
        [opts.lr, opts.pixel_weight, opts.perceptual_weight, opts.latent_reg], jnp.float32
    )
    tx = _make_optimizer(optimizer, opts.lr)
    # Strong types, so that the state returned by a chunk matches the initial one (no recompile).
    opt_state = jax.tree.map(lambda x: jnp.array(x, dtype=x.dtype), jax.vmap(tx.init)(latents))
    tfeats = _target_features(pconf, pparams, targets, masks) if st.perceptual else ()
    data = (targets, masks, priors, tfeats, weights)
    bar = None
    if progress:
        from imsyn.progress import Progress

        bar = Progress(steps, desc=f"project {space}", unit="step")
    history = []
    done = 0
    while done < steps:
        k = min(chunk, steps - done)
        latents, opt_state, vals = _run_chunk(
            gdef, pconf, st, k, gstate, pparams, latents, opt_state, data
        )
        history.append(vals)
        done += k
        if bar is not None:
            bar.update(k, postfix=f"loss={float(jnp.mean(vals[:, -1])):.4f}")
    if bar is not None:
        bar.close()
    images, final, err = _final(gdef, pconf, st, gstate, pparams, latents, data)
    losses = jnp.concatenate([*history, final[:, None]], axis=1)
    return Projection(latents, images, losses, err, space)


# --------------------------------------------------------------------------- interpolation


def interpolate(
    latent_a: jax.Array, latent_b: jax.Array, *, num_frames: int = 8, method: str = "linear"
) -> jax.Array:
    """Latents from ``latent_a`` to ``latent_b`` (both included).

    Args:
      latent_a, latent_b: latents of the same shape (no batch axis).
      num_frames: number of frames >= 2; the first is exactly ``latent_a``, the last ``latent_b``.
      method: "linear" or "slerp" (great circle, keeps the norm of Gaussian z; whole latent).

    Returns:
      [num_frames, ...] latents.
    """
    a, b = jnp.asarray(latent_a, jnp.float32), jnp.asarray(latent_b, jnp.float32)
    if a.shape != b.shape:
        raise InputError(f"latents differ in shape: {a.shape} vs {b.shape}")
    if num_frames < 2:
        raise ConfigError(f"num_frames must be >= 2, got {num_frames}")
    if method not in ("linear", "slerp"):
        raise ConfigError(f"method must be 'linear' or 'slerp', got {method!r}")
    t = jnp.linspace(0.0, 1.0, num_frames).reshape((-1,) + (1,) * a.ndim)
    if method == "linear":
        out = (1.0 - t) * a + t * b
    else:
        na, nb = jnp.linalg.norm(a), jnp.linalg.norm(b)
        cos = jnp.clip(jnp.vdot(a, b) / jnp.maximum(na * nb, 1e-12), -1.0, 1.0)
        omega = jnp.arccos(cos)
        so = jnp.sin(omega)
        lin = (1.0 - t) * a + t * b
        sl = (jnp.sin((1.0 - t) * omega) * a + jnp.sin(t * omega) * b) / jnp.where(so > 0, so, 1.0)
        out = jnp.where(so > 1e-6, sl, lin)
    # Exact endpoints, whatever the rounding of the formula.
    return out.at[0].set(a).at[-1].set(b)


# --------------------------------------------------------------------------- draw


def draw(
    gen: nnx.Module,
    sketches: Any,
    masks: Any,
    *,
    space: str = "w+",
    steps: int = 200,
    init: str = "mean",
    **kwargs,
) -> Projection:
    """Scribble-to-image: latents whose images follow colour sketches inside masks.

    Starts from the mean latent (w/w+) and optimizes the masked pixel (+ perceptual)
    loss; ``latent_reg`` (default 0.01 here) keeps the rest a plausible sample.

    Args:
      gen: generator.
      sketches: float[N, S, S, 3] (or [S, S, 3]) colour sketches in ``[-1, 1]``.
      masks: float[N, S, S] (or [S, S]) in [0, 1], > 0 where the sketch is drawn.
      space, steps, init: as in :func:`project`.
      **kwargs: other :func:`project` arguments.

    Returns:
      :class:`Projection`; ``error`` is the mean |image - sketch| (on [0, 1]) inside the mask.
    """
    kwargs.setdefault("latent_reg", 0.01)
    sk = jnp.asarray(sketches, jnp.float32)
    mk = jnp.asarray(masks, jnp.float32)
    if sk.ndim == 3:
        sk = sk[None]
    if mk.ndim == 2:
        mk = mk[None]
    if mk.ndim == 4 and mk.shape[-1] == 1:
        mk = mk[..., 0]
    if mk.ndim != 3 or mk.shape != sk.shape[:3]:
        raise InputError(
            f"sketch {tuple(sk.shape[-3:-1])} and mask {tuple(mk.shape[-2:])} differ in size"
        )
    return project(gen, sk, masks=mk, space=space, steps=steps, init=init, **kwargs)


def render_frames(gen: nnx.Module, latents: jax.Array, *, space: str) -> np.ndarray:
    """Images of ``latents`` (jitted) as ``float32[N, S, S, 3]`` in ``[0, 1]`` (numpy)."""
    gdef, gstate = nnx.split(gen)
    return as_frames(_render_jit(gdef, gstate, jnp.asarray(latents, jnp.float32), space))


def as_frames(images: jax.Array) -> np.ndarray:
    """Network images ``[-1, 1]`` -> ``float32 [N, S, S, 3]`` in ``[0, 1]`` (numpy)."""
    from imsyn.image import from_network

    return np.asarray(from_network(np.asarray(images, np.float32)))


def write_gif(path, frames: Sequence[np.ndarray] | np.ndarray, *, duration_ms: int = 120):
    """Atomically writes frames (float [F, H, W, 3] in [0, 1]) as a looping GIF (there and back)."""
    from PIL import Image

    from imsyn.image import atomic_path, to_uint8

    frames = [to_uint8(np.asarray(f)) for f in frames]
    seq = frames + frames[-2:0:-1]
    ims = [Image.fromarray(f) for f in seq]
    with atomic_path(path) as tmp:
        ims[0].save(
            tmp, format="GIF", save_all=True, append_images=ims[1:], duration=duration_ms, loop=0
        )
    return path


# --------------------------------------------------------------------------- generators of a run


class LoadedGenerator(NamedTuple):
    """A generator restored from a training run (see :func:`load_generator`)."""

    gen: nnx.Module  #: in eval mode
    config: Any  #: the run's config (``ml_collections.ConfigDict`` from its config.json)
    step: int  #: the checkpoint's step
    name: str  #: registry name of the generator


def _build_generator(cfg) -> tuple[nnx.Module, str]:
    from imsyn import models

    name = cfg.get("generator", "dcgan_generator")
    kwargs = {"image_size": cfg.image_size, "conv_dim": cfg.conv_dim}
    if name == "dcgan_generator":
        kwargs["norm"] = cfg.norm
    else:
        for f in ("z_dim", "w_dim", "mapping_layers"):
            if f in cfg:
                kwargs[f] = cfg[f]
    return models.get(name)(**kwargs, rngs=nnx.Rngs(0)), name


def load_generator(workdir) -> LoadedGenerator:
    """Restores the generator of a GAN run directory (``config.json`` + latest checkpoint).

    Raises:
      InputError: the directory or its config.json is missing or unreadable.
      ConfigError: not a GAN run, no checkpoint, or a checkpoint that does not match its config.
    """
    import json
    from pathlib import Path

    import ml_collections

    from imsyn.tasks.dcgan import DCGANTask
    from imsyn.training.checkpoint import Checkpoints

    wd = Path(workdir)
    if not wd.is_dir():
        raise InputError(f"generator workdir {wd}: no such directory")
    try:
        cfg = ml_collections.ConfigDict(json.loads((wd / "config.json").read_text()))
    except FileNotFoundError:
        raise InputError(f"generator workdir {wd} has no config.json: not a training run") from None
    except (OSError, ValueError) as e:
        raise InputError(f"{wd / 'config.json'}: unreadable ({e})") from None
    if cfg.get("task") != "dcgan":
        raise ConfigError(
            f"generator workdir {wd} is a {cfg.get('task')!r} run; editing needs a GAN run "
            "(configs/dcgan.py)"
        )
    if not (wd / "checkpoints").is_dir():
        raise ConfigError(f"no checkpoint in generator workdir {wd}: train it first (train.py)")
    task = DCGANTask()
    ckpts = Checkpoints(wd / "checkpoints", read_only=True)
    try:
        meta = ckpts.read_meta()
        if meta is None:
            raise ConfigError(f"no checkpoint in generator workdir {wd}: train it first (train.py)")
        arch = json.loads(json.dumps(task.arch(cfg)))
        if meta.get("arch") != arch:
            raise ConfigError(
                f"the checkpoint in {wd} does not match its config.json ({meta.get('arch')} != "
                f"{arch})"
            )
        state, meta = ckpts.restore(task.init_state(cfg, jax.random.key(0)))
    finally:
        ckpts.close()
    gen, name = _build_generator(cfg)
    nnx.update(gen, state["g"])
    gen.eval()
    return LoadedGenerator(gen, cfg, int(meta["step"]), name)


# --------------------------------------------------------------------------- experiment

MODES = ("project", "interpolate", "draw")
FIELDS = (
    "task",
    "name",
    "seed",
    "mode",
    "generator_workdir",
    "spaces",
    "images",
    "num_images",
    "sketch",
    "mask",
    "num_frames",
    "interpolation",
    "steps",
    "optimizer",
    "lr",
    "pixel_loss",
    "pixel_weight",
    "perceptual_weight",
    "perceptual_layers",
    "latent_reg",
    "init",
    "vgg_weights",
)


def default_config(mode: str = "project"):
    """The default editing config of ``mode`` (``configs/editing.py`` presets and the CLI)."""
    import ml_collections

    if mode not in MODES:
        raise ConfigError(f"mode must be one of {list(MODES)}, got {mode!r}")
    c = ml_collections.ConfigDict()
    c.task = "editing"
    c.name = f"edit_{mode}"
    c.seed = 0
    c.mode = mode
    c.generator_workdir = ""  # required: a GAN run directory (config.json + checkpoints/)
    c.spaces = "all"  # or a comma list of z, w, w+
    c.images = ""  # '' = held-out split of the generator's data; a data spec; or a.png,b.png
    c.num_images = 8
    c.sketch = ""  # '' = built-in scribble; else RGBA (alpha = drawn), or RGB + mask
    c.mask = ""
    c.num_frames = 12
    c.interpolation = "auto"  # slerp in z, linear in w / w+
    c.steps = 200 if mode == "draw" else 300
    c.optimizer = "lbfgs"
    c.lr = 0.05  # Adam only; L-BFGS chooses its steps by line search
    c.pixel_loss = "l1" if mode == "draw" else "l2"
    c.pixel_weight = 1.0
    c.perceptual_weight = 0.1
    c.perceptual_layers = ",".join(DEFAULT_LAYERS)
    c.latent_reg = 0.01 if mode == "draw" else 0.0
    c.init = "mean"  # mean w (w / w+); z always starts from a seeded sample
    c.vgg_weights = ""  # '' = $IMSYN_VGG19, else the random-feature mode
    return c


def validate(config) -> None:
    """Checks an editing config (``configs/editing.py``) before any compute.

    Raises:
      ConfigError: an unknown field or an invalid value, naming the field.
    """

    def need(field, ok, expect):
        if field not in config:
            raise ConfigError(f"config.{field} is missing")
        v = config[field]
        if isinstance(v, bool) or not ok(v):
            raise ConfigError(f"config.{field} must be {expect}, got {v!r}")

    unknown = sorted(k for k in config.keys() if k not in FIELDS)
    if unknown:
        raise ConfigError(f"unknown config field config.{unknown[0]} (known: {', '.join(FIELDS)})")
    num = (int, float)
    pos_int = lambda v: isinstance(v, int) and v >= 1  # noqa: E731
    need("name", lambda v: isinstance(v, str) and v, "a non-empty string")
    need("seed", lambda v: isinstance(v, int) and v >= 0, "an integer >= 0")
    need("mode", lambda v: v in MODES, f"one of {list(MODES)}")
    need(
        "generator_workdir",
        lambda v: isinstance(v, str) and v,
        "the run directory of a trained GAN (--config.generator_workdir=runs/dcgan)",
    )
    need("spaces", lambda v: isinstance(v, str) and v, "'all' or a comma list of z, w, w+")
    spaces = [s.strip() for s in config.spaces.split(",") if s.strip()]
    if config.spaces != "all" and (not spaces or any(s not in SPACES for s in spaces)):
        raise ConfigError(f"config.spaces must be 'all' or a comma list of {SPACES}")
    need("images", lambda v: isinstance(v, str), "a data spec, comma-separated files, or ''")
    need("num_images", pos_int, "an integer >= 1")
    need("sketch", lambda v: isinstance(v, str), "an image path or '' (built-in demo sketch)")
    need("mask", lambda v: isinstance(v, str), "a mask image path or '' (the sketch's alpha)")
    need("num_frames", lambda v: isinstance(v, int) and v >= 2, "an integer >= 2")
    need("interpolation", lambda v: v in ("auto", "linear", "slerp"), "auto, linear or slerp")
    need("steps", pos_int, "an integer >= 1")
    need("optimizer", lambda v: v in OPTIMIZERS, f"one of {list(OPTIMIZERS)}")
    need("lr", lambda v: isinstance(v, num) and 0 < v < math.inf, "a number > 0")
    need("pixel_loss", lambda v: v in PIXEL_LOSSES, f"one of {list(PIXEL_LOSSES)}")
    for f in ("pixel_weight", "perceptual_weight", "latent_reg"):
        need(f, lambda v: isinstance(v, num) and 0 <= v < math.inf, "a number >= 0")
    if config.pixel_weight == 0 and config.perceptual_weight == 0:
        raise ConfigError("config.pixel_weight and config.perceptual_weight are both 0")
    need("perceptual_layers", lambda v: isinstance(v, str), "a comma list of VGG-19 layers")
    if config.perceptual_weight > 0:
        from imsyn.models import vgg

        try:
            if not vgg.check_layers(config.perceptual_layers):
                raise ConfigError("config.perceptual_layers is empty")
        except InputError as e:
            raise ConfigError(f"config.perceptual_layers: {e}") from None
    need("init", lambda v: v in ("mean", "random"), "'mean' or 'random'")
    need("vgg_weights", lambda v: isinstance(v, str), "a weights path or ''")


def _spaces(config, gen) -> list[str]:
    if config.spaces == "all":
        return list(latent_spaces(gen))
    spaces = list(dict.fromkeys(s.strip() for s in config.spaces.split(",") if s.strip()))
    for s in spaces:
        check_space(gen, s)
    return spaces


def _resize_square(img: np.ndarray, size: int) -> np.ndarray:
    """Centre-crops float [H, W, 3] in [0, 1] to a square and resizes it to ``size`` (Lanczos)."""
    from PIL import Image

    from imsyn.image import to_float, to_uint8

    h, w = img.shape[:2]
    s = min(h, w)
    y, x = (h - s) // 2, (w - s) // 2
    im = Image.fromarray(to_uint8(img[y : y + s, x : x + s]))
    return to_float(np.asarray(im.resize((size, size), Image.Resampling.LANCZOS)))


def load_targets(config, gen_config, size: int) -> tuple[np.ndarray, list[str]]:
    """Images to project: float32[N, S, S, 3] in [-1, 1] and their names.

    ``config.images``: '' = the held-out (``test``) split of the generator's training data;
    a data spec (``emoji:openmoji``, ``folder:/path``); or comma-separated image files
    (centre-cropped and resized to the generator's size).
    """
    from imsyn.image import read_float, to_float, to_network

    spec = config.images or gen_config.data
    n = config.num_images if config.mode == "project" else 2
    if spec.split(":", 1)[0] in ("emoji", "folder", "tfds"):
        from imsyn.data import get_source

        src = get_source(spec, image_size=size, split="test")
        if len(src) < n:
            raise InputError(f"{spec}: {len(src)} images, {config.mode} needs {n}")
        rows = np.random.default_rng(config.seed).choice(len(src), n, replace=False)
        keys = getattr(src, "keys", None)
        names = [str(keys[int(i)]) if keys is not None else f"{spec}#{int(i)}" for i in rows]
        imgs = np.stack([to_float(src[int(i)]) for i in rows])
    else:
        files = [f.strip() for f in spec.split(",") if f.strip()]
        if len(files) < n:
            raise InputError(f"config.images lists {len(files)} files, {config.mode} needs {n}")
        files = files[:n]
        imgs = np.stack([_resize_square(read_float(f, mode="rgb"), size) for f in files])
        names = files
    return to_network(imgs.astype(np.float32)), names


def demo_sketch(size: int) -> tuple[np.ndarray, np.ndarray]:
    """A built-in scribble: yellow ring, dark eyes, red mouth (float [S, S, 3], mask [S, S])."""
    yy, xx = np.mgrid[0:size, 0:size].astype(np.float32) + 0.5
    c = size / 2.0
    r = np.hypot(yy - c, xx - c)
    sketch = np.zeros((size, size, 3), np.float32)
    mask = np.zeros((size, size), bool)
    t = max(size / 16.0, 1.0)
    ring = np.abs(r - 0.36 * size) < t
    sketch[ring], mask[ring] = (1.0, 0.8, 0.1), True
    for ex in (c - 0.14 * size, c + 0.14 * size):
        eye = np.hypot(yy - (c - 0.1 * size), xx - ex) < max(0.06 * size, 1.0)
        sketch[eye], mask[eye] = (0.25, 0.15, 0.05), True
    mouth = (np.abs(r - 0.2 * size) < t / 1.5) & (yy > c + 0.08 * size)
    sketch[mouth], mask[mouth] = (0.8, 0.1, 0.1), True
    return sketch, mask


def load_sketch(config, size: int) -> tuple[np.ndarray, np.ndarray]:
    """The sketch (float32[S, S, 3] in [-1, 1]) and mask (float32[S, S] in {0, 1}).

    Raises:
      InputError: unreadable files, sketch and mask of different sizes or not S x S, an
        empty mask.
    """
    from imsyn.image import read_float, to_network

    if not config.sketch:
        if config.mask:
            raise InputError("config.mask is given without config.sketch")
        sketch, mask = demo_sketch(size)
    else:
        rgba = read_float(config.sketch, mode="rgba")
        sketch = rgba[..., :3]
        if config.mask:
            mask = read_float(config.mask, mode="gray") > 0.5
            if mask.shape != sketch.shape[:2]:
                raise InputError(
                    f"sketch {config.sketch} is {sketch.shape[1]}x{sketch.shape[0]} but mask "
                    f"{config.mask} is {mask.shape[1]}x{mask.shape[0]}"
                )
        else:
            mask = rgba[..., 3] > 0.5
        if sketch.shape[:2] != (size, size):
            raise InputError(
                f"sketch {config.sketch} is {sketch.shape[1]}x{sketch.shape[0]}, the generator "
                f"makes {size}x{size} images"
            )
    if not mask.any():
        raise InputError("the mask is empty: nothing to draw")
    return to_network(sketch.astype(np.float32)), mask.astype(np.float32)


def _lpips(metric, a: np.ndarray, b: np.ndarray) -> np.ndarray | None:
    """LPIPS per example of [0, 1] images, or ``None`` without the metric or below its
    minimum size."""
    from imsyn.image import to_network
    from imsyn.models.lpips import MIN_SIZE

    if metric is None or min(a.shape[1:3]) < MIN_SIZE:
        return None
    return metric(to_network(a), to_network(b))


def _inputs(config, loaded: LoadedGenerator) -> dict:
    """Targets [N, S, S, 3] in [-1, 1] and masks [N, S, S] of the configured mode."""
    size = loaded.config.image_size
    if config.mode == "draw":
        sketch, mask = load_sketch(config, size)
        return {"targets": sketch[None], "masks": mask[None], "names": np.array(["sketch"])}
    targets, names = load_targets(config, loaded.config, size)
    masks = np.ones(targets.shape[:3], np.float32)
    return {"targets": targets, "masks": masks, "names": np.array(names)}


def _optimize(config, loaded: LoadedGenerator, spaces, inputs) -> dict:
    """Runs the projection of every space; returns the arrays saved in ``latents.npz``."""
    perceptual = None
    if config.perceptual_weight > 0:
        perceptual = perceptual_net(config.vgg_weights or None, layers=config.perceptual_layers)
    saved = dict(inputs)
    saved["features"] = np.array(perceptual.source if perceptual is not None else "none")
    for space in spaces:
        r = project(
            loaded.gen,
            inputs["targets"],
            masks=inputs["masks"],
            space=space,
            steps=config.steps,
            optimizer=config.optimizer,
            lr=float(config.lr),
            pixel=config.pixel_loss,
            pixel_weight=float(config.pixel_weight),
            perceptual=perceptual,
            perceptual_weight=float(config.perceptual_weight),
            latent_reg=float(config.latent_reg),
            init=config.init,
            key=jax.random.key(config.seed),
            progress=True,
        )
        saved[f"latents/{space}"] = np.asarray(r.latents)
        saved[f"losses/{space}"] = np.asarray(r.losses)
    return saved


def _save_npz(path, arrays: dict) -> None:
    import io

    from imsyn.image import write_bytes

    buf = io.BytesIO()
    np.savez(buf, **{k: np.asarray(v) for k, v in arrays.items()})
    write_bytes(path, buf.getvalue())


def _load_npz(path) -> dict:
    from pathlib import Path

    if not Path(path).is_file():
        raise ConfigError(f"{path} is missing: run train.py with this config and workdir first")
    with np.load(path, allow_pickle=False) as f:
        return {k: f[k] for k in f.files}


def _outputs(config, workdir, loaded: LoadedGenerator, saved: dict) -> dict:
    """Renders the saved latents, writes eval/*.png (+ GIFs) and plots/losses.png.

    Returns:
      The content of ``eval/metrics.json``.
    """
    from pathlib import Path

    from imsyn import metrics
    from imsyn.image import make_grid, write_image
    from imsyn.training.writers import plot_losses

    wd = Path(workdir)
    gen = loaded.gen
    spaces = [k.split("/", 1)[1] for k in saved if k.startswith("latents/")]
    targets = as_frames(saved["targets"])
    m = np.asarray(saved["masks"], np.float32)[..., None]
    features = str(saved["features"])
    out: dict[str, Any] = {
        "mode": config.mode,
        "generator_workdir": str(config.generator_workdir),
        "generator": loaded.name,
        "generator_step": loaded.step,
        "num_images": len(targets),
        "perceptual_features": features,
    }
    if features == "random":
        out["features_note"] = (
            "perceptual loss on random (untrained) VGG-19 features; give VGG-19 weights "
            "(config.vgg_weights or $IMSYN_VGG19) for the real perceptual loss"
        )
    lpips = None
    if config.mode in ("project", "interpolate"):
        from imsyn.models import lpips as lpips_lib

        lpips = lpips_lib.LPIPS.load()
        if lpips is None:
            out["lpips"] = lpips_lib.UNAVAILABLE
        elif min(targets.shape[1:3]) < lpips_lib.MIN_SIZE:
            out["lpips"] = f"not defined below {lpips_lib.MIN_SIZE} px"
            lpips = None
        else:
            out["lpips"] = {"net": lpips.name, "weights": lpips.path}
    images = {s: render_frames(gen, saved[f"latents/{s}"], space=s) for s in spaces}
    inside = np.maximum(3.0 * m.sum(axis=(1, 2, 3)), 1.0)
    for s in spaces:
        err = (np.abs(images[s] - targets) * m).sum(axis=(1, 2, 3)) / inside
        final = float(np.mean(saved[f"losses/{s}"][:, -1]))
        d = _lpips(lpips, images[s], targets)
        if config.mode == "project":
            out[f"{s}/l1"] = float(err.mean())
            # per image, capped at 100 dB (identical images give +inf, which JSON cannot hold)
            psnr = np.minimum(np.asarray(metrics.psnr(images[s], targets), np.float64), 100.0)
            out[f"{s}/psnr"] = float(psnr.mean())
            out[f"{s}/lpips"] = None if d is None else float(d.mean())
        elif config.mode == "interpolate":
            out[f"{s}/endpoint_l1"] = float(err.mean())
            out[f"{s}/endpoint_lpips"] = None if d is None else float(d.mean())
        else:
            out[f"{s}/error_inside_mask"] = float(err.mean())
        out[f"{s}/final_loss"] = final
    if config.mode == "project":
        grid = np.concatenate([targets] + [images[s] for s in spaces])
        write_image(wd / "eval" / "projections.png", make_grid(grid, ncol=len(targets)))
    elif config.mode == "interpolate":
        for s in spaces:
            lat = saved[f"latents/{s}"]
            method = config.interpolation
            if method == "auto":
                method = "slerp" if s == "z" else "linear"
            lerp = interpolate(lat[0], lat[1], num_frames=config.num_frames, method=method)
            frames = render_frames(gen, lerp, space=s)
            strip = np.concatenate([targets[:1], frames, targets[1:2]])
            write_image(wd / "eval" / f"interpolation_{s}.png", make_grid(strip, ncol=len(strip)))
            write_gif(wd / "eval" / f"interpolation_{s}.gif", frames)
            out[f"{s}/interpolation"] = method
    else:
        shown = targets * m + 0.5 * (1.0 - m)
        outside = np.maximum(3.0 * (1.0 - m).sum(), 1.0)
        for s in spaces:
            key = jax.random.key(config.seed)
            start = render_frames(gen, mean_latent(gen, space=s, key=key)[None], space=s)
            change = float((np.abs(images[s] - start) * (1.0 - m)).sum() / outside)
            start_err = (np.abs(start - targets) * m).sum(axis=(1, 2, 3)) / inside
            out[f"{s}/start_error_inside_mask"] = float(start_err.mean())
            out[f"{s}/change_outside_mask"] = change
            grid = np.concatenate([shown, start, images[s]])
            write_image(wd / "eval" / f"draw_{s}.png", make_grid(grid, ncol=3))
    recs = []
    hist = {s: np.asarray(saved[f"losses/{s}"]).mean(axis=0) for s in spaces}
    for i in range(len(next(iter(hist.values())))):
        recs.append({"step": i, **{f"loss_{s}": float(h[i]) for s, h in hist.items()}})
    plot_losses(recs, wd / "plots" / "losses.png", title=f"{config.name}: {config.mode} objective")
    return out


def _report_sections(config, workdir) -> list[tuple[str, str]]:
    from pathlib import Path

    wd = Path(workdir)
    gifs = sorted((wd / "eval").glob("*.gif"))
    if not gifs:
        return []
    figs = "".join(
        f'<figure><img src="eval/{g.name}" alt="{g.name}"><figcaption>{g.name}</figcaption>'
        "</figure>"
        for g in gifs
    )
    return [("Interpolation (animated)", figs)]


def _finish(config, workdir, loaded, saved) -> dict:
    from pathlib import Path

    from imsyn.image import write_json
    from imsyn.report import write_report

    metrics = _outputs(config, workdir, loaded, saved)
    write_json(Path(workdir) / "eval" / "metrics.json", metrics)
    write_report(workdir, sections=_report_sections(config, workdir))
    return metrics


def _check_workdir(workdir) -> None:
    import os
    from pathlib import Path

    from imsyn.errors import OutputError

    probe = Path(workdir).absolute()
    while not probe.exists():
        probe = probe.parent
    if not probe.is_dir() or not os.access(probe, os.W_OK | os.X_OK):
        raise OutputError(f"workdir {workdir} is not writable")


def train(config, workdir) -> dict:
    """``train.py`` entry point (``task="editing"``): optimize, then write outputs and report.

    Everything is checked (config, generator checkpoint, spaces, images, sketch and mask,
    workdir) before any compute; nothing is written before the optimization succeeded.
    Writes ``config.json``, ``latents.npz`` (targets, masks, latents and loss curves per
    space), ``eval/*.png`` (+ ``*.gif``), ``plots/losses.png``, ``eval/metrics.json`` and
    ``report.html``.

    Returns:
      The content of ``eval/metrics.json``.
    """
    from pathlib import Path

    from imsyn.image import write_json

    validate(config)
    loaded = load_generator(config.generator_workdir)
    spaces = _spaces(config, loaded.gen)
    inputs = _inputs(config, loaded)
    _check_workdir(workdir)
    saved = _optimize(config, loaded, spaces, inputs)
    wd = Path(workdir)
    write_json(wd / "config.json", config.to_dict())
    _save_npz(wd / "latents.npz", saved)
    return _finish(config, wd, loaded, saved)


def evaluate(config, workdir) -> dict:
    """``eval.py`` entry point: re-renders ``latents.npz`` into eval/ and report.html."""
    from pathlib import Path

    validate(config)
    loaded = load_generator(config.generator_workdir)
    saved = _load_npz(Path(workdir) / "latents.npz")
    for k in [k for k in saved if k.startswith("latents/")]:
        check_space(loaded.gen, k.split("/", 1)[1])
    return _finish(config, workdir, loaded, saved)

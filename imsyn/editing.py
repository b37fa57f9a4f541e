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
  the mean latent, so that inside the mask the image follows a colour sketch
  (:func:`demo_sketch`: a built-in one).
* :func:`render_frames`, :func:`as_frames`, :func:`write_gif`: images and animations
  of latents.

The library knows nothing of configs, checkpoints or workdirs: the ``task="editing"``
experiment of ``train.py``/``eval.py`` and ``python -m imsyn edit`` (restore a GAN run,
load targets and sketches, write outputs and the report) is :mod:`imsyn.tasks.editing`.

Numeric knobs follow :data:`RULES` (the same rules check the experiment's config and the
CLI's options): a bad value is one :class:`~imsyn.errors.ConfigError` line,
``steps must be an integer in [1, 1000000], got 0``.

Latent shapes: ``z: [N, z_dim]``, ``w: [N, w_dim]``, ``w+: [N, num_ws, w_dim]``.
"""

from __future__ import annotations

import functools
import numbers
from collections.abc import Sequence
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
import optax
from flax import nnx

from imsyn import gan, validate
from imsyn.errors import ConfigError, InputError

SPACES = ("z", "w", "w+")
OPTIMIZERS = ("lbfgs", "adam")
PIXEL_LOSSES = ("l1", "l2")
INITS = ("mean", "random")
INTERPOLATIONS = ("linear", "slerp")
#: VGG-19 layers of the default perceptual loss (the paper's names).
DEFAULT_LAYERS = ("conv1_2", "conv2_2", "conv3_4")

#: upper bounds that keep a run finite and its arrays in memory (the loss history holds
#: steps + 1 values per image; every frame is rendered at once)
MAX_STEPS = 1_000_000
MAX_FRAMES = 1_000
#: loss weights beyond this overflow float32 objectives long before they mean anything
#: (only their ratios matter to the optimizers)
MAX_WEIGHT = 1e6
#: an Adam step beyond this leaves the generator's latent distribution in one step
MAX_LR = 100.0

#: the rule of every numeric knob, shared by the library's arguments, the experiment's
#: config fields (:mod:`imsyn.tasks.editing`) and the CLI's options (``python -m imsyn edit``)
RULES = {
    "steps": validate.integer(min=1, max=MAX_STEPS),
    "lr": validate.number(min=0, max=MAX_LR, open_min=True),
    "pixel_weight": validate.number(min=0, max=MAX_WEIGHT),
    "perceptual_weight": validate.number(min=0, max=MAX_WEIGHT),
    "latent_reg": validate.number(min=0, max=MAX_WEIGHT),
    "num_frames": validate.integer(min=2, max=MAX_FRAMES),
    "chunk": validate.integer(min=1, max=MAX_STEPS),
    "truncation": validate.number(),
}


def check_value(name: str, value, *, prefix: str = ""):
    """Checks ``value`` against ``RULES[name]``; returns it.

    Raises:
      ConfigError: ``"{prefix}{name} must be {expect}, got {value!r}"`` (one line).
    """
    field = RULES[name]
    if not isinstance(value, bool):  # numpy scalars count as the numbers they are
        if isinstance(value, numbers.Integral):
            value = int(value)
        elif isinstance(value, numbers.Real):
            value = float(value)
    try:
        return field.parse(value)
    except (ValueError, TypeError, OverflowError):
        raise ConfigError(f"{prefix}{name} must be {field.expect}, got {value!r}") from None


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
    if isinstance(n, bool) or not isinstance(n, int) or n < 1:
        raise ConfigError(f"n must be an integer >= 1, got {n!r}")
    check_value("truncation", truncation)
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


class Weights(NamedTuple):
    """The numbers of :class:`Options`, traced (float32 scalars): a new value never recompiles."""

    lr: jax.Array
    pixel_weight: jax.Array
    perceptual_weight: jax.Array
    latent_reg: jax.Array

    @classmethod
    def of(cls, opts: Options) -> Weights:
        return cls(*(jnp.float32(getattr(opts, f)) for f in cls._fields))


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
    check_value("steps", steps)
    for name in ("lr", "pixel_weight", "perceptual_weight", "latent_reg"):
        check_value(name, getattr(opts, name))
    if opts.pixel_weight == 0 and opts.perceptual_weight == 0:
        raise ConfigError("pixel_weight and perceptual_weight are both 0: nothing to optimize")


def _make_optimizer(optimizer: str, lr) -> optax.GradientTransformationExtraArgs:
    if optimizer == "adam":
        return optax.adam(lr)
    return optax.lbfgs()


def _loss_one(gen, feats, st: _Static, w: Weights, latent, target, mask, prior, tfeat):
    """Objective of one example: latent [...], target [S, S, 3] in [-1, 1], mask [S, S, 1],
    ``tfeat`` the VGG features of ``target * mask`` (computed once, see :func:`project`)."""
    img = render(gen, latent[None], space=st.space)[0]
    area = jnp.maximum(jnp.sum(mask) * img.shape[-1], 1.0)
    diff = (img - target) * mask
    pix = jnp.sum(jnp.abs(diff) if st.pixel == "l1" else jnp.square(diff)) / area
    loss = w.pixel_weight * pix + w.latent_reg * jnp.mean(jnp.square(latent - prior))
    if st.perceptual:
        fa = feats((img * mask)[None])
        perc = sum(jnp.mean(jnp.square(f[0] - t)) for f, t in zip(fa, tfeat, strict=True))
        loss = loss + w.perceptual_weight * perc / len(fa)
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
    tx = _make_optimizer(st.optimizer, weights.lr)

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
      steps: optimizer steps, in ``[1, MAX_STEPS]``.
      optimizer: "lbfgs" (optax L-BFGS with zoom line search) or "adam".
      lr: Adam learning rate in ``(0, MAX_LR]`` (L-BFGS picks its step by line search).
      pixel: "l1" or "l2" pixel loss (mean over the mask and channels).
      pixel_weight: weight of the pixel loss (weights: finite, in ``[0, MAX_WEIGHT]``).
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
        lr=float(check_value("lr", lr)),
        pixel=pixel,
        pixel_weight=float(check_value("pixel_weight", pixel_weight)),
        perceptual_weight=float(check_value("perceptual_weight", perceptual_weight)),
        latent_reg=float(check_value("latent_reg", latent_reg)),
    )
    steps = check_value("steps", steps)
    _check_options(opts, steps)
    if init not in INITS:
        raise ConfigError(f"init must be one of {list(INITS)}, got {init!r}")
    chunk = check_value("chunk", chunk)
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
    weights = Weights.of(opts)
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
      num_frames: number of frames in ``[2, MAX_FRAMES]``; the first is exactly ``latent_a``,
        the last ``latent_b``.
      method: "linear" or "slerp" (:func:`imsyn.gan.slerp`: the great circle, which keeps
        the norm of Gaussian z; the whole latent as one vector).

    Returns:
      [num_frames, ...] latents.
    """
    a, b = jnp.asarray(latent_a, jnp.float32), jnp.asarray(latent_b, jnp.float32)
    if a.shape != b.shape:
        raise InputError(f"latents differ in shape: {a.shape} vs {b.shape}")
    num_frames = check_value("num_frames", num_frames)
    if method not in INTERPOLATIONS:
        raise ConfigError(f"method must be one of {list(INTERPOLATIONS)}, got {method!r}")
    t = jnp.linspace(0.0, 1.0, num_frames)
    if method == "linear":
        t = t.reshape((-1,) + (1,) * a.ndim)
        out = (1.0 - t) * a + t * b
    else:
        out = gan.slerp(a, b, t)
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


# --------------------------------------------------------------------------- frames


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

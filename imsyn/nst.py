"""A4: neural style transfer (Gatys et al.) on VGG-19.

Three optimizations of an image ``x`` (``float32[H, W, 3]`` in ``[0, 1]``) over
the features of :mod:`imsyn.models.vgg`:

* content reconstruction — match the content image's features at any set of
  layers, usually from noise (:func:`reconstruct_content`);
* texture synthesis — match the Gram matrices of one or more style images at any
  set of layers (:func:`synthesize_texture`);
* style transfer — both, weighted (:func:`style_transfer`; the course's
  layers: content at ``conv_4``, style at ``conv_1`` … ``conv_5``; content weight
  1, style weight 1e5), with ``original_colors`` (luminance-only transfer) and
  several styles blended by weight.

The losses are the course's / PyTorch tutorial's definitions
(:mod:`imsyn.losses`: content = feature MSE, Gram = ``F^T F / (H W C)``, style =
Gram MSE, summed over layers), so numbers match a PyTorch implementation run on
the same network. The network is the one :func:`imsyn.models.vgg.load_weights`
returns: every weights file rescaled so that each conv layer's mean activation
on a fixed reference set is 1, which makes the loss weights mean the same for
every file. With the real VGG-19 the course's range holds: style weight 1e3
barely changes the photo, 1e4 … 1e6 give visible to strong strokes, 1e7
overwrites most of the content (measured in ``docs/nst.md``); the default, 1e5,
is the middle of it.

Optimizers: L-BFGS (default: host-driven projected Armijo backtracking around
optax's L-BFGS direction; or ``optax.lbfgs`` with its zoom line search, one
compiled call per step) or Adam. ``clamp`` projects the image onto ``[0, 1]``
after every step. Compiled once per image size and layer set; the loss weights
are traced arguments, so a style-weight sweep does not recompile.

Numeric knobs follow :data:`RULES` (the same rules check the experiment's config,
the ``stylize`` options and :meth:`Options.validated`).

Mixed precision: ``Options(dtype="bfloat16")`` computes VGG-19's features in bfloat16
(:func:`imsyn.models.vgg.features` with ``dtype``), for the targets and for every loss
evaluation; the image being optimized, the optimizer (L-BFGS history, Adam moments), the
Gram matrices, the losses and the gradient stay float32 (``docs/nst.md``, "Mixed
precision", for how closely the loss curves track float32). The experiment driver
(``train.py``/``eval.py``/sweeps) is :mod:`imsyn.tasks.nst`; this module imports no
training machinery.
"""

from __future__ import annotations

import dataclasses
import functools
import math
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
import optax

from imsyn import losses, validate
from imsyn.errors import InputError
from imsyn.models import vgg
from imsyn.models.layers import DTYPES

COURSE_CONTENT_LAYERS = ("conv_4",)
COURSE_STYLE_LAYERS = ("conv_1", "conv_2", "conv_3", "conv_4", "conv_5")
OPTIMIZERS = ("lbfgs", "adam")
INITS = ("content", "noise")
LINESEARCHES = ("backtracking", "zoom")
STYLE_FITS = ("scale", "pad_crop", "stretch", "none")

MAX_STEPS = 1_000_000
MAX_WEIGHT = 1e15
#: the numeric knobs' rules: :meth:`Options.validated`, the experiment's config schema and
#: the ``stylize`` options check the same ones (one message: ``steps must be ...``)
RULES = {
    "steps": validate.integer(min=1, max=MAX_STEPS),
    "content_weight": validate.number(min=0, max=MAX_WEIGHT, open_min=True),
    "style_weight": validate.number(min=0, max=MAX_WEIGHT, open_min=True),
    "tv_weight": validate.number(min=0, max=MAX_WEIGHT),
    "lr": validate.number(min=0, max=100, open_min=True),
    "seed": validate.integer(min=0, max=validate.INT64_MAX),
    "memory_size": validate.integer(min=1, max=1000),
    "max_linesearch_steps": validate.integer(min=1, max=1000),
    "style_scale": validate.number(min=0, max=100, open_min=True),
    "snapshot_every": validate.integer(min=0, max=MAX_STEPS),
    "dtype": validate.one_of(*DTYPES),
}


class Weights(NamedTuple):
    """The loss weights, traced (a weight sweep does not recompile)."""

    content: jax.Array | float
    style: jax.Array | float
    tv: jax.Array | float


# ---------------------------------------------------------------- options and results


@dataclasses.dataclass(frozen=True)
class Options:
    """Settings of one optimization.

    Attributes:
      content_layers: layers whose features the result matches to the content's.
      style_layers: layers whose Gram matrices the result matches to the style's.
      content_weight, style_weight, tv_weight: loss weights (tv 0 = off). On the
        normalized network (any weights file) style weights 1e4 … 1e6 are the
        useful range at content weight 1; below, the style barely shows, above,
        it overwrites the content.
      init: ``"content"`` (start from the content image) or ``"noise"`` (uniform).
      optimizer: ``"lbfgs"`` or ``"adam"``.
      steps: optimizer steps (> 0).
      lr: Adam learning rate (image units per step).
      clamp: project the image onto [0, 1] after each step.
      pooling: VGG pooling, ``"max"`` or ``"avg"``.
      seed: noise seed.
      memory_size: L-BFGS history length.
      max_linesearch_steps: L-BFGS line-search budget per step.
      linesearch: L-BFGS line search. ``"backtracking"`` (default): Armijo
        backtracking on the projected step, driven from the host, each trial one
        call of the same compiled loss+gradient (the accepted trial's gradient
        is reused, so a step usually costs one evaluation). ``"zoom"``:
        ``optax.lbfgs`` with its zoom (strong Wolfe) line search, the whole step
        one compiled call; XLA:CPU runs the line search's while-loop body about
        3x slower than the same code outside a loop, so prefer it on GPU/TPU.
      remat: rematerialize VGG activations in the backward pass (large images).
      dtype: compute dtype of the VGG features, ``"float32"`` or ``"bfloat16"`` (mixed
        precision: the image, optimizer state, Gram matrices and losses stay float32).
    """

    content_layers: tuple[str, ...] = COURSE_CONTENT_LAYERS
    style_layers: tuple[str, ...] = COURSE_STYLE_LAYERS
    content_weight: float = 1.0
    style_weight: float = 1e5
    tv_weight: float = 0.0
    init: str = "content"
    optimizer: str = "lbfgs"
    steps: int = 300
    lr: float = 0.02
    clamp: bool = True
    pooling: str = "max"
    seed: int = 0
    memory_size: int = 10
    max_linesearch_steps: int = 20
    linesearch: str = "backtracking"
    remat: bool = False
    dtype: str = "float32"

    def validated(self) -> Options:
        """Checks every field; returns a copy with layer names as tuples.

        Raises:
          InputError: the first invalid field, named.
        """
        cl = vgg.check_layers(self.content_layers, what="content layer")
        sl = vgg.check_layers(self.style_layers, what="style layer")
        for name in (
            "content_weight", "style_weight", "tv_weight", "lr", "steps", "seed",
            "memory_size", "max_linesearch_steps", "dtype",
        ):  # fmt: skip
            validate.param(name, getattr(self, name), RULES[name])
        if self.init not in INITS:
            raise InputError(f"init must be one of {INITS}, got {self.init!r}")
        if self.optimizer not in OPTIMIZERS:
            raise InputError(f"optimizer must be one of {OPTIMIZERS}, got {self.optimizer!r}")
        if self.pooling not in ("max", "avg"):
            raise InputError(f"pooling must be 'max' or 'avg', got {self.pooling!r}")
        if self.linesearch not in LINESEARCHES:
            raise InputError(f"linesearch must be one of {LINESEARCHES}, got {self.linesearch!r}")
        return dataclasses.replace(self, content_layers=cl, style_layers=sl)


class Result(NamedTuple):
    """Outcome of an optimization.

    Attributes:
      image: ``float32[H, W, 3]`` in [0, 1].
      content_loss, style_loss, tv_loss, loss: ``float64[steps + 1]``; entry ``t``
        is the (unweighted content/style/tv, weighted total) loss of the image
        after ``t`` steps (shorter if L-BFGS converged: no trial step decreased
        the loss any more).
      evaluations: loss+gradient evaluations made (L-BFGS line search included).
      seconds: wall time of the optimization loop (compilation included).
      weights: the VGG weights used: a file name, or ``"random"``.
    """

    image: np.ndarray
    content_loss: np.ndarray
    style_loss: np.ndarray
    tv_loss: np.ndarray
    loss: np.ndarray
    evaluations: int
    seconds: float
    weights: str


# ---------------------------------------------------------------- image preparation


def resize(img: np.ndarray, shape: tuple[int, int]) -> np.ndarray:
    """Antialiased Lanczos resize of ``float32[H, W, C]`` in [0, 1] to ``shape`` (clipped)."""
    img = np.asarray(img, np.float32)
    if img.shape[:2] == tuple(shape):
        return img
    out = jax.image.resize(jnp.asarray(img), (*shape, img.shape[2]), "lanczos3", antialias=True)
    return np.clip(np.asarray(out), 0.0, 1.0)


def fit_size(shape: tuple[int, int], size: int | None) -> tuple[int, int]:
    """``(H, W)`` scaled so that the longer side is ``size`` (unchanged for None)."""
    h, w = shape
    if not size:
        return h, w
    s = size / max(h, w)
    return max(1, round(h * s)), max(1, round(w * s))


def fit_style(
    style: np.ndarray, content_shape: tuple[int, int], *, fit: str = "scale", scale: float = 1.0
) -> np.ndarray:
    """Brings a style image to a size that suits the content.

    Args:
      style: ``float32[h, w, 3]`` in [0, 1].
      content_shape: the result's ``(H, W)``.
      fit: ``"scale"`` keeps the style's aspect ratio and scales its longer side to
        ``scale`` x the content's longer side (Gram matrices need no equal sizes);
        ``"pad_crop"`` (the seed project's) reflect-pads the style up to at least
        ``(H, W)`` and then center-crops it to exactly ``(H, W)``; ``"stretch"``
        resizes to ``(H, W)``; ``"none"`` keeps the style as it is.
      scale: style size relative to the content (``"scale"`` only).
    """
    h, w = content_shape
    if fit == "none":
        return np.asarray(style, np.float32)
    if fit == "scale":
        return resize(style, fit_size(style.shape[:2], max(1, round(max(h, w) * scale))))
    if fit == "stretch":
        return resize(style, (h, w))
    if fit == "pad_crop":
        sh, sw = style.shape[:2]
        py, px = max(0, h - sh), max(0, w - sw)
        if py or px:
            # reflect padding needs pad < size; repeat until large enough
            while style.shape[0] < h or style.shape[1] < w:
                sh, sw = style.shape[:2]
                py, px = min(max(0, h - sh), sh - 1), min(max(0, w - sw), sw - 1)
                mode = "reflect" if min(sh, sw) > 1 else "edge"
                style = np.pad(
                    style, ((py // 2, py - py // 2), (px // 2, px - px // 2), (0, 0)), mode=mode
                )
        sh, sw = style.shape[:2]
        y0, x0 = (sh - h) // 2, (sw - w) // 2
        return np.ascontiguousarray(style[y0 : y0 + h, x0 : x0 + w])
    raise InputError(f"style_fit must be one of {STYLE_FITS}, got {fit!r}")


_YIQ = np.array(
    [[0.299, 0.587, 0.114], [0.595716, -0.274453, -0.321263], [0.211456, -0.522591, 0.311135]],
    np.float32,
)
_YIQ_INV = np.linalg.inv(_YIQ).astype(np.float32)


def luminance(img: np.ndarray) -> np.ndarray:
    """YIQ luminance ``Y`` of ``[H, W, 3]``, ``float32[H, W]``."""
    return np.asarray(img, np.float32) @ _YIQ[0]


def with_colors(luma_src: np.ndarray, color_src: np.ndarray) -> np.ndarray:
    """``luma_src``'s luminance with ``color_src``'s YIQ chrominance, clipped to [0, 1]."""
    yiq = np.asarray(color_src, np.float32) @ _YIQ.T
    yiq[..., 0] = luminance(luma_src)
    return np.clip(yiq @ _YIQ_INV.T, 0.0, 1.0).astype(np.float32)


def gray3(y: np.ndarray) -> np.ndarray:
    return np.repeat(np.clip(y, 0.0, 1.0)[..., None], 3, axis=-1).astype(np.float32)


def check_size(shape: tuple[int, int], layers: Sequence[str]) -> None:
    """Refuses an image too small for VGG's pooling before the deepest of ``layers``.

    Raises:
      InputError: ``"image of HxW px is too small for VGG-19's pooling: ..."``.
    """
    pools = max(
        (sum(op == "pool" for op, _ in vgg.OPS[: vgg.LAYER_INDEX[name]]) for name in layers),
        default=0,
    )
    need = 2**pools
    if min(shape) < need:
        raise InputError(
            f"image of {shape[0]}x{shape[1]} px is too small for VGG-19's pooling: the layers "
            f"used ({', '.join(layers)}) need at least {need} px on the shorter side"
        )


def estimate_bytes(shape: tuple[int, int], *, memory_size: int = 10) -> int:
    """A generous estimate of the memory one optimization of an ``H x W`` image needs:
    VGG-19's activations through conv5_4 kept for the backward pass (about 600 floats per
    pixel), doubled for gradients and XLA temporaries, plus the L-BFGS history."""
    px = int(shape[0]) * int(shape[1])
    return int(4 * px * (2 * 600 + (2 * memory_size + 4) * 3))


def check_memory(shape: tuple[int, int], *, memory_size: int = 10) -> None:
    """Refuses an image size whose optimization would not fit the default device.

    Raises:
      InputError: one line with the estimate and what is available.
    """
    from imsyn.runtime import available_bytes

    avail = available_bytes()
    need = estimate_bytes(shape, memory_size=memory_size)
    if avail is not None and need > avail:
        raise InputError(
            f"an image of {shape[0]}x{shape[1]} px needs about {need / 2**30:.1f} GiB, "
            f"this device has {avail / 2**30:.1f} GiB available; choose a smaller size"
        )


def _check_image(img, name: str) -> np.ndarray:
    a = np.asarray(img, np.float32)
    if a.ndim != 3 or a.shape[-1] != 3 or min(a.shape[:2]) < 1:
        raise InputError(f"{name} must be float32[H, W, 3] in [0, 1], got shape {a.shape}")
    if not np.all(np.isfinite(a)):
        raise InputError(f"{name} has non-finite values")
    return a


# ---------------------------------------------------------------- the jitted step


@dataclasses.dataclass(frozen=True)
class _Static:
    content_layers: tuple[str, ...]
    style_layers: tuple[str, ...]
    mean: tuple[float, ...]
    std: tuple[float, ...]
    pooling: str
    remat: bool
    optimizer: str
    clamp: bool
    lr: float
    memory_size: int
    max_linesearch_steps: int
    linesearch: str
    dtype: str = "float32"


def objective(x, vgg_params, targets, *, static: _Static):
    """Weighted NST loss of ``x`` (``float32[1, H, W, 3]``) and its parts.

    The features are computed in ``static.dtype`` and returned float32; Gram matrices,
    losses (and so the gradient with respect to ``x``) are float32.

    ``targets``: ``{"content": {layer: features}, "style": {layer: gram},
    "weights": Weights}`` (float32 scalars); a missing part counts 0.

    Returns:
      ``(total, {"content_loss", "style_loss", "tv_loss"})``, scalars.
    """
    layers = tuple(dict.fromkeys(static.content_layers + static.style_layers))
    feats = vgg.features(
        vgg_params,
        x,
        layers=layers,
        mean=static.mean,
        std=static.std,
        pooling=static.pooling,
        remat=static.remat,
        dtype=None if static.dtype == "float32" else static.dtype,
    )
    zero = jnp.zeros((), jnp.float32)
    c = sum(
        (jnp.sum(losses.content_loss(feats[k], t)) for k, t in targets["content"].items()), zero
    )
    s = sum((jnp.sum(losses.style_loss(feats[k], g)) for k, g in targets["style"].items()), zero)
    tv = jnp.sum(losses.total_variation(x))
    w = targets["weights"]
    total = w.content * c + w.style * s + w.tv * tv
    return total, {"content_loss": c, "style_loss": s, "tv_loss": tv}


def make_optimizer(static: _Static) -> optax.GradientTransformation:
    if static.optimizer == "adam":
        return optax.adam(static.lr)
    return optax.lbfgs(
        memory_size=static.memory_size,
        linesearch=optax.scale_by_zoom_linesearch(
            max_linesearch_steps=static.max_linesearch_steps, initial_guess_strategy="one"
        ),
    )


def build_step(static: _Static) -> Callable:
    """The pure step ``(x, opt_state, vgg_params, targets) -> (x, opt_state, metrics)``.

    ``metrics`` hold the losses of the input ``x`` plus ``evaluations`` (loss and
    gradient evaluations this step made).
    """
    opt = make_optimizer(static)

    def step(x, opt_state, vgg_params, targets):
        def value_fn(y):
            return objective(y, vgg_params, targets, static=static)[0]

        (total, parts), grad = jax.value_and_grad(
            lambda y: objective(y, vgg_params, targets, static=static), has_aux=True
        )(x)
        if static.optimizer == "lbfgs":
            updates, opt_state = opt.update(
                grad, opt_state, x, value=total, grad=grad, value_fn=value_fn
            )
            evals = 1 + optax.tree.get(opt_state, "num_linesearch_steps")
        else:
            updates, opt_state = opt.update(grad, opt_state, x)
            evals = jnp.ones((), jnp.int32)
        x = optax.apply_updates(x, updates)
        if static.clamp:
            x = jnp.clip(x, 0.0, 1.0)
        return x, opt_state, {**parts, "loss": total, "evaluations": evals}

    return step


def init_state(static: _Static, x: jax.Array):
    """The optimizer state for image ``x``, with strong dtypes so the step's output
    state has the same types as its input (the step compiles once)."""
    state = make_optimizer(static).init(x)
    return jax.tree.map(lambda a: jnp.array(a, dtype=jnp.asarray(a).dtype), state)


@functools.lru_cache(maxsize=16)
def _jitted(static: _Static):
    step = jax.jit(build_step(static))
    loss = jax.jit(functools.partial(objective, static=static))
    return step, loss


def build_trial(static: _Static) -> Callable:
    """The pure line-search trial ``(x, d, g, eta, vgg_params, targets) ->
    (x_new, total, parts, grad, slope)``: ``x_new = clip(x + eta d)`` (projected
    when clamping), its loss, parts and gradient, and ``slope = <g, x_new - x>``
    for the Armijo test. ``eta = 0`` evaluates ``x`` itself."""

    def trial(x, d, g, eta, vgg_params, targets):
        x_new = x + eta * d
        if static.clamp:
            x_new = jnp.clip(x_new, 0.0, 1.0)
        (total, parts), grad = jax.value_and_grad(
            lambda y: objective(y, vgg_params, targets, static=static), has_aux=True
        )(x_new)
        return x_new, total, parts, grad, jnp.vdot(g, x_new - x)

    return trial


def build_direction(static: _Static) -> Callable:
    """The pure L-BFGS direction ``(g, state, x) -> (d, state, <g, d>)`` (optax's
    ``scale_by_lbfgs`` two-loop recursion over the last ``memory_size`` pairs)."""
    tx = optax.scale_by_lbfgs(memory_size=static.memory_size)

    def direction(g, state, x):
        d, state = tx.update(g, state, x)
        return -d, state, -jnp.vdot(g, d)

    return direction


def init_direction_state(static: _Static, x: jax.Array):
    state = optax.scale_by_lbfgs(memory_size=static.memory_size).init(x)
    return jax.tree.map(lambda a: jnp.array(a, dtype=jnp.asarray(a).dtype), state)


@functools.lru_cache(maxsize=16)
def _jitted_host(static: _Static):
    return jax.jit(build_trial(static)), jax.jit(build_direction(static))


def _iterate_backtracking(static, x, params, targets, steps, *, fns=None):
    """Projected L-BFGS with Armijo backtracking, driven from the host.

    Yields ``(metrics of x_t, x_{t+1}, evaluations)`` per step, then
    ``(metrics of the last x, None, 0)``; stops early when no trial decreases
    the loss even along the (projected) gradient (converged to float precision).

    With clamping, an L-BFGS direction that descends may stop descending once
    projected (its decrease came from pixels pushed out of [0, 1]); then the
    memory is reset and the step retried from the scaled gradient, along which
    a small enough projected step always descends.
    """
    trial, direction = fns or _jitted_host(static)
    zeros = jnp.zeros_like(x)
    x, f, parts, g, _ = trial(x, zeros, zeros, 0.0, params, targets)
    f = float(f)
    state = init_direction_state(static, x)
    fresh = True  # the memory is empty
    initial = 1  # the evaluation at x_0 counts towards the first step

    def search(d):
        """Armijo backtracking along ``d`` from ``x``: ``(accepted or None, evaluations)``."""
        # First trial: the full step, but never one that moves a pixel by more than the
        # box's width (such a step is clipping only).
        dmax = float(jnp.max(jnp.abs(d)))
        eta = 1.0 / dmax if static.clamp and dmax > 1.0 else 1.0
        for n in range(1, static.max_linesearch_steps + 1):
            xn, fn, pn, gn, dec = trial(x, d, g, eta, params, targets)
            fn = float(fn)
            if math.isfinite(fn) and fn <= f + 1e-4 * float(dec):
                return (xn, fn, pn, gn), n
            eta *= 0.5
        return None, static.max_linesearch_steps

    for _ in range(steps):
        d, new_state, slope = direction(g, state, x)
        if not float(slope) < 0 and not fresh:  # not a descent direction: restart
            state, fresh = init_direction_state(static, x), True
            d, new_state, slope = direction(g, state, x)
        metrics = {**jax.device_get(parts), "loss": f}
        accepted, evals = search(d)
        evals += initial
        initial = 0
        if accepted is None and not fresh:  # projection spoilt the L-BFGS step: restart
            state, fresh = init_direction_state(static, x), True
            d, new_state, _ = direction(g, state, x)
            accepted, n = search(d)
            evals += n
        if accepted is None:
            yield metrics, x, evals
            break
        x, f, parts, g = accepted
        state, fresh = new_state, False
        yield metrics, x, evals
    yield {**jax.device_get(parts), "loss": f}, None, 0


def _iterate_in_graph(static, x, params, targets, steps):
    """Adam or ``optax.lbfgs`` (zoom line search) steps, one compiled call each."""
    step_fn, loss_fn = _jitted(static)
    opt_state = init_state(static, x)
    for _ in range(steps):
        x_new, opt_state, m = step_fn(x, opt_state, params, targets)
        m = jax.device_get(m)
        evals = int(m.pop("evaluations"))
        x = x_new
        yield m, x, evals
    total, parts = jax.device_get(loss_fn(x, params, targets))
    yield {**parts, "loss": total}, None, 0


@functools.lru_cache(maxsize=16)
def _feature_fn(layers, mean, std, pooling, dtype="float32"):
    dt = None if dtype == "float32" else dtype
    return jax.jit(
        lambda p, x: vgg.features(
            p, x, layers=layers, mean=mean, std=std, pooling=pooling, dtype=dt
        )
    )


# ---------------------------------------------------------------- optimization


class Problem(NamedTuple):
    """A validated optimization problem (see :func:`build_problem`)."""

    options: Options
    static: _Static  # the compile-time settings of the jitted functions
    params: dict  # VGG-19 arrays
    targets: dict  # content features, blended style Grams, loss weights
    content: np.ndarray | None
    shape: tuple[int, int]


def build_problem(weights, content, styles, style_blend, shape, options) -> Problem:
    """Validates the inputs and computes the targets (content features at the content
    layers, blended Gram matrices at the style layers) for :func:`objective`.

    Arguments as in :func:`optimize`. Raises InputError naming a bad argument.
    """
    options = options.validated()
    if content is None and not styles:
        raise InputError("give a content image, a style image, or both")
    if content is not None:
        content = _check_image(content, "content")
    styles = [_check_image(s, f"style {i + 1}") for i, s in enumerate(styles)]
    if style_blend is None:
        blend = np.full(len(styles), 1.0 / max(len(styles), 1))
    else:
        blend = np.asarray(style_blend, np.float64)
        if blend.shape != (len(styles),) or not np.all(np.isfinite(blend)) or np.any(blend <= 0):
            raise InputError(
                f"style_blend must be {len(styles)} positive weight(s), got {list(style_blend)}"
            )
        blend = blend / blend.sum()
    if shape is None:
        shape = content.shape[:2] if content is not None else styles[0].shape[:2]
    h, w = int(shape[0]), int(shape[1])
    if content is not None and content.shape[:2] != (h, w):
        raise InputError(f"content is {content.shape[:2]}, but shape is {(h, w)}")
    if options.init == "content" and content is None:
        raise InputError("init='content' needs a content image; use init='noise'")

    use_content = content is not None
    static = _Static(
        content_layers=options.content_layers if use_content else (),
        style_layers=options.style_layers if styles else (),
        mean=tuple(weights.mean),
        std=tuple(weights.std),
        pooling=options.pooling,
        remat=options.remat,
        optimizer=options.optimizer,
        clamp=options.clamp,
        lr=float(options.lr),
        memory_size=options.memory_size,
        max_linesearch_steps=options.max_linesearch_steps,
        linesearch=options.linesearch if options.optimizer == "lbfgs" else "",
        dtype=options.dtype,
    )
    if not static.content_layers and not static.style_layers:
        raise InputError("nothing to optimize: the content and style layer lists are empty")
    check_size((h, w), static.content_layers + static.style_layers)
    for s in styles:
        check_size(s.shape[:2], static.style_layers)
    params = jax.tree.map(jnp.asarray, weights.params)
    targets: dict[str, Any] = {"content": {}, "style": {}}
    if static.content_layers:
        fn = _feature_fn(
            static.content_layers, static.mean, static.std, static.pooling, static.dtype
        )
        targets["content"] = dict(fn(params, jnp.asarray(content)[None]))
    if static.style_layers:
        fn = _feature_fn(static.style_layers, static.mean, static.std, static.pooling, static.dtype)
        grams = {k: 0.0 for k in static.style_layers}
        for b, s in zip(blend, styles, strict=True):
            feats = fn(params, jnp.asarray(s)[None])
            for k in static.style_layers:
                grams[k] = grams[k] + float(b) * losses.gram_matrix(feats[k])
        targets["style"] = grams
    targets["weights"] = Weights(
        content=jnp.asarray(options.content_weight, jnp.float32),
        style=jnp.asarray(options.style_weight, jnp.float32),
        tv=jnp.asarray(options.tv_weight, jnp.float32),
    )

    return Problem(options, static, params, targets, content, (h, w))


def optimize(
    weights: vgg.VGGWeights,
    *,
    content: np.ndarray | None = None,
    styles: Sequence[np.ndarray] = (),
    style_blend: Sequence[float] | None = None,
    shape: tuple[int, int] | None = None,
    options: Options = Options(),  # noqa: B008 - frozen dataclass
    callback: Callable[[int, np.ndarray, dict], None] | None = None,
    snapshot_every: int = 0,
    progress: bool = True,
) -> Result:
    """Optimizes an image to match content features and/or style Gram matrices.

    Args:
      weights: VGG-19 weights (:func:`imsyn.models.vgg.load_weights`).
      content: ``float32[H, W, 3]`` in [0, 1], or None (texture synthesis).
      styles: style images ``float32[h_k, w_k, 3]`` in [0, 1] of any sizes; none
        gives content reconstruction.
      style_blend: positive weight per style (normalized; default equal). The
        target Gram is the blend, equivalent in gradient to the weighted sum of
        per-style losses.
      shape: the result's ``(H, W)`` (default: the content's, else the first style's).
      options: :class:`Options`.
      callback: called as ``callback(step, image, metrics)`` every
        ``snapshot_every`` steps and after the last.
      snapshot_every: see ``callback`` (0: only after the last step).
      progress: draw a progress bar on stderr.

    Returns:
      :class:`Result`.

    Raises:
      InputError: invalid images, options or blend weights, named.
    """
    from imsyn.progress import Progress

    options, static, params, targets, content, (h, w) = build_problem(
        weights, content, styles, style_blend, shape, options
    )
    if options.init == "content":
        x = jnp.asarray(content)[None]
    else:
        x = jax.random.uniform(jax.random.key(options.seed), (1, h, w, 3), jnp.float32)
    hist: dict[str, list[float]] = {
        k: [] for k in ("content_loss", "style_loss", "tv_loss", "loss")
    }
    evaluations = 0
    bar = Progress(options.steps, desc="stylize", unit="step", enabled=progress)
    t0 = time.perf_counter()
    if static.linesearch == "backtracking":
        it = _iterate_backtracking(static, x, params, targets, options.steps)
    else:
        it = _iterate_in_graph(static, x, params, targets, options.steps)
    for t, (m, x_next, evals) in enumerate(it):
        if not math.isfinite(float(m["loss"])):
            raise InputError(
                f"the loss became {float(m['loss'])} at step {t}; lower the weights or lr"
            )
        for k in hist:
            hist[k].append(float(m[k]))
        if x_next is None:
            break
        x = x_next
        evaluations += evals
        bar.update(1, postfix=f"content={m['content_loss']:.4g} style={m['style_loss']:.4g}")
        if callback is not None and snapshot_every and (t + 1) % snapshot_every == 0:
            callback(t + 1, np.asarray(x[0]), {k: v[-1] for k, v in hist.items()})
    bar.close()
    seconds = time.perf_counter() - t0
    image = np.asarray(jnp.clip(x[0], 0.0, 1.0))
    done = len(hist["loss"]) - 1
    if callback is not None and not (snapshot_every and done % snapshot_every == 0):
        callback(done, image, {k: v[-1] for k, v in hist.items()})
    return Result(
        image=image,
        **{k: np.asarray(v) for k, v in hist.items()},
        evaluations=evaluations,
        seconds=seconds,
        weights=weights.source,
    )


def reconstruct_content(
    content: np.ndarray, weights: vgg.VGGWeights, *, layers=COURSE_CONTENT_LAYERS, **kw
) -> Result:
    """Reconstructs ``content`` from noise by matching its features at ``layers``."""
    options = dataclasses.replace(
        kw.pop("options", Options()), content_layers=tuple(layers), init="noise"
    )
    return optimize(weights, content=content, options=options, **kw)


def synthesize_texture(
    style: np.ndarray | Sequence[np.ndarray],
    weights: vgg.VGGWeights,
    *,
    shape: tuple[int, int] | None = None,
    layers=COURSE_STYLE_LAYERS,
    **kw,
) -> Result:
    """Synthesizes a texture of ``shape`` from noise matching ``style``'s Gram matrices."""
    styles = [style] if np.ndim(style) == 3 else list(style)
    options = dataclasses.replace(
        kw.pop("options", Options()), style_layers=tuple(layers), init="noise"
    )
    return optimize(weights, styles=styles, shape=shape, options=options, **kw)


def style_transfer(
    content: np.ndarray,
    styles: np.ndarray | Sequence[np.ndarray],
    weights: vgg.VGGWeights,
    *,
    size: int | None = None,
    style_fit: str = "scale",
    style_scale: float = 1.0,
    original_colors: bool = False,
    **kw,
) -> Result:
    """Renders ``content`` in the style of ``styles`` (Gatys et al.).

    Args:
      content: ``float32[H, W, 3]`` in [0, 1].
      styles: one ``[h, w, 3]`` image or a list (blend with ``style_blend=``).
      weights: VGG-19 weights.
      size: longer side of the result in pixels (default: the content's).
      style_fit: how styles are sized, see :func:`fit_style`.
      style_scale: style size relative to the content for ``style_fit="scale"``.
      original_colors: keep the content's colours: transfer on luminance only
        (style luminance matched to the content's mean and std), then combine
        the result's luminance with the content's YIQ chrominance.
      **kw: :func:`optimize` arguments (``options``, ``style_blend``, ``callback``, ...).
    """
    content = _check_image(content, "content")
    styles = [styles] if np.ndim(styles) == 3 else list(styles)
    if not styles:
        raise InputError("style_transfer needs at least one style image")
    if size is not None and (isinstance(size, bool) or int(size) != size or size <= 0):
        raise InputError(f"size must be a positive integer, got {size!r}")
    validate.param("style_scale", style_scale, RULES["style_scale"])
    content = resize(content, fit_size(content.shape[:2], size))
    styles = [
        fit_style(
            _check_image(s, f"style {i + 1}"), content.shape[:2], fit=style_fit, scale=style_scale
        )
        for i, s in enumerate(styles)
    ]
    if not original_colors:
        return optimize(weights, content=content, styles=styles, **kw)
    yc = luminance(content)
    mu, sd = float(yc.mean()), float(yc.std())
    lum_styles = []
    for s in styles:
        ys = luminance(s)
        lum_styles.append(gray3((ys - ys.mean()) / max(float(ys.std()), 1e-6) * sd + mu))
    user_cb = kw.pop("callback", None)
    cb = None
    if user_cb is not None:

        def cb(step, img, metrics):
            user_cb(step, with_colors(img, content), metrics)

    res = optimize(weights, content=gray3(yc), styles=lum_styles, callback=cb, **kw)
    return res._replace(image=with_colors(res.image, content))


# ---------------------------------------------------------------- default images


def default_content() -> np.ndarray:
    """A photo shipped with matplotlib (a runtime dependency): Grace Hopper, [H, W, 3]."""
    import matplotlib

    from imsyn.image import read_float

    path = Path(matplotlib.get_data_path(), "sample_data", "grace_hopper.jpg")
    return read_float(path, mode="rgb")


def default_style(size: int = 256) -> np.ndarray:
    """A generated swirling brush-stroke texture (deterministic), ``float32[size, size, 3]``."""
    y, x = np.mgrid[0:size, 0:size].astype(np.float32) / size
    angle = 3.0 * np.sin(2 * np.pi * (1.3 * x + 0.7 * y)) + 2.0 * np.cos(2 * np.pi * 1.1 * y)
    stroke = np.sin(40.0 * (x * np.cos(angle) + y * np.sin(angle)))
    swirl = np.sin(2 * np.pi * (2.0 * x - 1.5 * y) + 2.0 * np.sin(6.0 * y))
    t = 0.5 + 0.5 * np.tanh(1.5 * (0.7 * stroke + 0.6 * swirl))
    deep = np.array([0.08, 0.16, 0.45], np.float32)
    gold = np.array([0.96, 0.82, 0.25], np.float32)
    sky = np.array([0.35, 0.6, 0.85], np.float32)
    mix = 0.5 + 0.5 * np.sin(2 * np.pi * 3.0 * x * y + angle)
    img = (1 - t)[..., None] * deep + t[..., None] * (
        mix[..., None] * gold + (1 - mix)[..., None] * sky
    )
    return np.clip(img, 0.0, 1.0).astype(np.float32)


# ---------------------------------------------------------------- measuring


def measure(
    weights: vgg.VGGWeights,
    image: np.ndarray,
    *,
    content: np.ndarray | None = None,
    styles: Sequence[np.ndarray] = (),
    style_blend: Sequence[float] | None = None,
    options: Options = Options(),  # noqa: B008
) -> dict:
    """The (unweighted) content, style and TV losses and the weighted total of ``image``."""
    image = _check_image(image, "image")
    _, static, params, targets, _, _ = build_problem(
        weights, content, styles, style_blend, image.shape[:2], options
    )
    total, parts = jax.device_get(_jitted(static)[1](jnp.asarray(image)[None], params, targets))
    return {**{k: float(v) for k, v in parts.items()}, "loss": float(total)}

"""Augmentation: host-side basic/deluxe (numpy + Pillow) and on-device DiffAugment (JAX).

Host side (used by :func:`imsyn.data.make_loader`, one image at a time, seeded by grain):

* :func:`fit_square` — resize the shorter side to ``size`` and centre-crop (no randomness).
* :func:`basic_augment` — resize to ``1.1 * size``, random ``size`` crop, horizontal flip.
* :func:`deluxe_augment` — basic plus random rotation up to ±10°, random scale (zoom 1.0-1.25)
  and colour jitter (brightness, contrast, saturation factors in [0.9, 1.1]).

Images are ``uint8[H, W, 3]`` in and ``uint8[size, size, 3]`` out; corners uncovered by a
rotation show the image reflected at its border (no fill colour for a discriminator to spot).

Device side: :func:`diff_augment` implements DiffAugment (Zhao et al., "Differentiable
Augmentation for Data-Efficient GAN Training", NeurIPS 2020) on ``float32[N, H, W, C]`` in
``[-1, 1]``, with the paper's definitions:

* ``color``: brightness ``x + U[-0.5, 0.5]``, then saturation
  ``(x - mean_c) * U[0, 2] + mean_c``, then contrast ``(x - mean_hwc) * U[0.5, 1.5] + mean_hwc``;
* ``translation``: an integer shift of up to ``ratio * size`` pixels (ratio 1/8) in each
  axis, uncovered pixels set to 0;
* ``cutout``: a square of side ``ratio * size`` (ratio 1/2), centred uniformly in the image
  (clipped at the border), set to 0.

Each factor is drawn per example. Apply the same policy to real and fake images in both the
D and the G step so that the generator's output distribution is not augmented-away.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import jax
import jax.numpy as jnp
import numpy as np
from PIL import Image

from imsyn.errors import ConfigError

POLICIES = ("color", "translation", "cutout")
# The three parts of ``color``, usable on their own (ablations, tests).
COLOR_PARTS = ("brightness", "saturation", "contrast")
HOST_AUGMENTS = ("none", "basic", "deluxe")

# --------------------------------------------------------------------------- host side


def _check_image(img: np.ndarray) -> np.ndarray:
    img = np.asarray(img)
    if img.dtype != np.uint8 or img.ndim != 3 or img.shape[-1] != 3:
        raise ValueError(f"img must be uint8[H, W, 3], got {img.dtype}{list(img.shape)}")
    return img


def fit_square(img: np.ndarray, size: int) -> np.ndarray:
    """Resizes the shorter side to ``size`` (Lanczos) and centre-crops to a square.

    Args:
      img: ``uint8[H, W, 3]``.
      size: output side in pixels.

    Returns:
      ``uint8[size, size, 3]`` (``img`` itself when it already has that shape).
    """
    img = _check_image(img)
    h, w = img.shape[:2]
    if h == w == size:
        return img
    scale = size / min(h, w)
    nw, nh = max(size, round(w * scale)), max(size, round(h * scale))
    im = Image.fromarray(img).resize((nw, nh), Image.Resampling.LANCZOS, reducing_gap=3.0)
    x0, y0 = (nw - size) // 2, (nh - size) // 2
    return np.asarray(im.crop((x0, y0, x0 + size, y0 + size)))


def basic_augment(img: np.ndarray, rng: np.random.Generator, *, image_size: int) -> np.ndarray:
    """Resize to ``round(1.1 * image_size)``, take a random ``image_size`` crop, flip with p=1/2.

    Args:
      img: ``uint8[H, W, 3]`` (any size; the shorter side is fitted first).
      rng: numpy generator (grain passes one per element, seeded by the pipeline seed).
      image_size: output side.

    Returns:
      ``uint8[image_size, image_size, 3]``.
    """
    big = fit_square(img, round(1.1 * image_size))
    y, x = rng.integers(0, big.shape[0] - image_size + 1, size=2)
    out = big[y : y + image_size, x : x + image_size]
    if rng.random() < 0.5:
        out = out[:, ::-1]
    return np.ascontiguousarray(out)


def deluxe_augment(
    img: np.ndarray,
    rng: np.random.Generator,
    *,
    image_size: int,
    max_rotation: float = 10.0,
    scale_range: tuple[float, float] = (1.0, 1.25),
    jitter: float = 0.1,
) -> np.ndarray:
    """Random zoom, rotation, crop position and flip in one bicubic resample, then colour jitter.

    The geometric part is a single affine map: the shorter side is fitted to
    ``image_size * s`` with ``s ~ U[scale_range]``, rotated by ``U[-max_rotation,
    max_rotation]`` degrees about the centre, shifted by up to the zoom margin
    ``(s - 1) * image_size / 2`` in each axis and mirrored with probability 1/2. Colour:
    brightness, contrast and saturation factors each ``~ U[1 - jitter, 1 + jitter]``
    (torchvision ``ColorJitter`` semantics), in a random order.

    Args:
      img: ``uint8[H, W, 3]``.
      rng: numpy generator.
      image_size: output side.
      max_rotation: degrees.
      scale_range: zoom range (1 = the shorter side exactly fits).
      jitter: colour jitter strength.

    Returns:
      ``uint8[image_size, image_size, 3]``.
    """
    img = _check_image(img)
    h, w = img.shape[:2]
    s = rng.uniform(*scale_range)
    theta = np.deg2rad(rng.uniform(-max_rotation, max_rotation))
    margin = (s - 1.0) * image_size / 2.0
    tx, ty = rng.uniform(-margin, margin, size=2) if margin > 0 else (0.0, 0.0)
    flip = -1.0 if rng.random() < 0.5 else 1.0
    step = min(h, w) / (image_size * s)  # input pixels per output pixel
    c, si = np.cos(theta), np.sin(theta)
    # input = centre_in + step * R(theta) @ (diag(flip, 1) @ (out - centre_out) + t)
    a, b = step * c * flip, -step * si
    d, e = step * si * flip, step * c
    co = image_size / 2.0
    cx, cy = w / 2.0 + step * (c * tx - si * ty), h / 2.0 + step * (si * tx + c * ty)
    coeffs = (a, b, cx - a * co - b * co, d, e, cy - d * co - e * co)
    im = Image.fromarray(img)
    if step > 1.25:  # downscaling: pre-shrink with Lanczos so bicubic sampling does not alias
        im = im.resize((max(1, round(w / step)), max(1, round(h / step))), Image.Resampling.LANCZOS)
        kx, ky = w / im.width, h / im.height
        coeffs = (a / kx, b / kx, coeffs[2] / kx, d / ky, e / ky, coeffs[5] / ky)
    # Reflect-pad so rotated corners show mirrored content rather than a fill colour.
    pad = int(np.ceil(0.25 * min(im.width, im.height)))
    im = Image.fromarray(np.pad(np.asarray(im), ((pad, pad), (pad, pad), (0, 0)), "reflect"))
    coeffs = (coeffs[0], coeffs[1], coeffs[2] + pad, coeffs[3], coeffs[4], coeffs[5] + pad)
    out = im.transform(
        (image_size, image_size),
        Image.Transform.AFFINE,
        coeffs,
        resample=Image.Resampling.BICUBIC,
        fillcolor=(255, 255, 255),
    )
    x = np.asarray(out, dtype=np.float32)
    factors = rng.uniform(1.0 - jitter, 1.0 + jitter, size=3)
    for op in rng.permutation(3):
        f = np.float32(factors[op])
        if op == 0:  # brightness
            x = x * f
        elif op == 1:  # contrast: blend with the mean gray level
            gray = x @ np.array([0.299, 0.587, 0.114], np.float32)
            x = (x - gray.mean()) * f + gray.mean()
        else:  # saturation: blend with the per-pixel gray
            gray = (x @ np.array([0.299, 0.587, 0.114], np.float32))[..., None]
            x = (x - gray) * f + gray
        x = np.clip(x, 0.0, 255.0)
    return np.rint(x).astype(np.uint8)


def host_augment_fn(
    augment: str, image_size: int
) -> Callable[[np.ndarray, np.random.Generator], np.ndarray]:
    """The host-side augmentation named ``augment`` as ``fn(img, rng) -> uint8[S, S, 3]``.

    Raises:
      ConfigError: ``augment`` is not one of ``none``, ``basic``, ``deluxe``.
    """
    if augment == "none":
        return lambda img, rng: fit_square(img, image_size)
    if augment == "basic":
        return lambda img, rng: basic_augment(img, rng, image_size=image_size)
    if augment == "deluxe":
        return lambda img, rng: deluxe_augment(img, rng, image_size=image_size)
    raise ConfigError(f"augment must be one of {', '.join(HOST_AUGMENTS)}; got {augment!r}")


# --------------------------------------------------------------------------- DiffAugment


def parse_policy(policy: str | Sequence[str]) -> tuple[str, ...]:
    """``"color,translation"`` or ``["color", "translation"]`` -> a tuple of policy names.

    Raises:
      ConfigError: an unknown policy name.
    """
    names = policy.split(",") if isinstance(policy, str) else list(policy)
    names = tuple(n.strip() for n in names if n.strip())
    bad = [n for n in names if n not in POLICIES + COLOR_PARTS]
    if bad:
        raise ConfigError(
            f"unknown DiffAugment policy {bad[0]!r}; use a comma-separated subset of "
            f"{', '.join(POLICIES + COLOR_PARTS)} (or '' for none)"
        )
    return names


def _uniform(key, n, lo, hi):
    return jax.random.uniform(key, (n, 1, 1, 1), jnp.float32, lo, hi)


def _brightness(x, key):
    return x + _uniform(key, x.shape[0], -0.5, 0.5)


def _saturation(x, key):
    mean = x.mean(axis=-1, keepdims=True)
    return (x - mean) * _uniform(key, x.shape[0], 0.0, 2.0) + mean


def _contrast(x, key):
    mean = x.mean(axis=(1, 2, 3), keepdims=True)
    return (x - mean) * _uniform(key, x.shape[0], 0.5, 1.5) + mean


def _color(x, key):
    kb, ks, kc = jax.random.split(key, 3)
    return _contrast(_saturation(_brightness(x, kb), ks), kc)


def _translation(x, key, ratio):
    n, h, w, _ = x.shape
    sy, sx = int(h * ratio + 0.5), int(w * ratio + 0.5)
    ky, kx = jax.random.split(key)
    dy = jax.random.randint(ky, (n,), -sy, sy + 1)
    dx = jax.random.randint(kx, (n,), -sx, sx + 1)
    pad = jnp.pad(x, ((0, 0), (sy, sy), (sx, sx), (0, 0)))

    def shift(img, oy, ox):  # out[i, j] = x[i + oy, j + ox], zero outside
        return jax.lax.dynamic_slice(img, (sy + oy, sx + ox, 0), (h, w, img.shape[-1]))

    return jax.vmap(shift)(pad, dy, dx)


def _cutout(x, key, ratio):
    n, h, w, _ = x.shape
    ch, cw = int(h * ratio + 0.5), int(w * ratio + 0.5)
    ky, kx = jax.random.split(key)
    cy = jax.random.randint(ky, (n, 1, 1, 1), 0, h + (1 - ch % 2))
    cx = jax.random.randint(kx, (n, 1, 1, 1), 0, w + (1 - cw % 2))
    yy = jnp.arange(h)[None, :, None, None] - (cy - ch // 2)
    xx = jnp.arange(w)[None, None, :, None] - (cx - cw // 2)
    inside = (yy >= 0) & (yy < ch) & (xx >= 0) & (xx < cw)
    return jnp.where(inside, jnp.zeros((), x.dtype), x)


_COLOR_FNS = {
    "color": _color,
    "brightness": _brightness,
    "saturation": _saturation,
    "contrast": _contrast,
}


def diff_augment(
    x: jax.Array,
    key: jax.Array,
    policy: str | Sequence[str] = "color,translation,cutout",
    *,
    translation_ratio: float = 0.125,
    cutout_ratio: float = 0.5,
) -> jax.Array:
    """DiffAugment: differentiable colour / translation / cutout augmentation.

    Pure and differentiable with respect to ``x``; jit it with ``policy`` (and the ratios)
    static, e.g. inside a jitted train step or via
    ``jax.jit(diff_augment, static_argnames="policy")``.

    Args:
      x: ``float32[N, H, W, C]`` in ``[-1, 1]`` (real or generated images).
      key: a ``jax.random`` key; each policy draws from its own fold of it.
      policy: comma-separated string or sequence of names from ``color``, ``translation``,
        ``cutout`` (or the parts of ``color``: ``brightness``, ``saturation``,
        ``contrast``), applied in the given order; ``""`` returns ``x`` unchanged.
      translation_ratio: maximum shift as a fraction of the image side.
      cutout_ratio: cutout square side as a fraction of the image side.

    Returns:
      ``float32[N, H, W, C]``, the augmented images (not clipped, as in the paper).

    Raises:
      ConfigError: unknown policy name.
      ValueError: ``x`` is not 4-D.
    """
    names = parse_policy(policy)
    if not names:
        return x
    if x.ndim != 4:
        raise ValueError(f"x must be [N, H, W, C], got shape {tuple(x.shape)}")
    for name in names:
        k = jax.random.fold_in(key, (POLICIES + COLOR_PARTS).index(name))
        if name == "translation":
            x = _translation(x, k, translation_ratio)
        elif name == "cutout":
            x = _cutout(x, k, cutout_ratio)
        else:
            x = _COLOR_FNS[name](x, k)
    return x

"""A1: align and colorize Prokudin-Gorskii glass plates.

A plate is one grayscale scan with three exposures stacked top to bottom:
blue (B), green (G), red (R). :func:`split_plate` cuts it into equal thirds,
:func:`align_channels` finds the shifts that register G and R onto B, and
:func:`colorize` runs the whole pipeline (split, align, compose, crop, white
balance, contrast).

Offset convention (API, JSON and docs): ``(dy, dx)`` in full-resolution pixels
such that, with ``h = height // 3`` and the thirds ``plate[:h]`` (B),
``plate[h:2h]`` (G), ``plate[2h:3h]`` (R),
``np.roll(third, (dy, dx), axis=(0, 1))`` lies on the B third. Cathedral is
G = (5, 2), R = (12, 3).

Method: each channel is reduced to a feature map (``"intensity"``,
``"gradient"`` (Sobel magnitude, the default) or ``"usm"`` (unsharp-masked
intensity)) on every level of a 2x box pyramid. A fixed interior window of the
B map (a margin at least as wide as the search reach is excluded, and at most
``max_window`` pixels per side are kept) is scored against the shifted G/R map
with NCC or SSD, so every candidate compares the same pixels and none reads a
wrapped-around or out-of-plate one. The coarsest level is searched
exhaustively (NCC/SSD for all shifts at once from FFT correlations, far faster
than ``vmap`` or ``lax.map`` over candidates; see ``benchmarks/align.py``);
each finer level hill-climbs a 3x3 window of candidates (one convolution per
step) from twice the coarser answer until the centre is best. G and R run
under one ``lax.map``: the whole search is one ``jax.jit`` program per plate
shape and set of knobs. See ``docs/colorize.md``.
"""

from __future__ import annotations

import functools
import math
import time
from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
from jax import lax

from imsyn.errors import InputError

FEATURES = ("intensity", "gradient", "usm")
METRICS = ("ssd", "ncc")
MIN_CHANNEL = 48  # smallest channel side (pixels) that can be aligned with the defaults
_EPS = 1e-12


# --------------------------------------------------------------------------- results


class Peak(NamedTuple):
    """The score landscape around the chosen shift of one channel.

    Attributes:
      score: metric at the chosen shift, full resolution (NCC in [-1, 1],
        higher is better; SSD >= 0 on standardised features, lower is better).
      sharpness: how much better the peak is than the mean of its 4 neighbours
        at full resolution (metric units, > 0 for a proper peak).
      coarse_best: best score of the exhaustive coarse search.
      coarse_second: best coarse score outside the 3x3 neighbourhood of the
        coarse peak; close to ``coarse_best`` means an ambiguous alignment.
      converged: the answer is a local optimum of the full-resolution scores
        inside the search range (False: the search hit its radius or step limit).
    """

    score: float
    sharpness: float
    coarse_best: float
    coarse_second: float
    converged: bool


class AlignResult(NamedTuple):
    """Result of :func:`align_channels`.

    Attributes:
      offsets: ``{"g": (dy, dx), "r": (dy, dx)}`` in the module's convention
        (ints, or floats with sub-pixel refinement).
      scores: ``{"g": float, "r": float}``, the metric at those offsets.
      peaks: ``{"g": Peak, "r": Peak}``.
    """

    offsets: dict[str, tuple[float, float]]
    scores: dict[str, float]
    peaks: dict[str, Peak]


class ColorizeResult(NamedTuple):
    """Result of :func:`colorize`.

    Attributes:
      image: ``float32[H', W', 3]`` RGB in [0, 1] (``uint8``/``uint16`` if
        :func:`colorize` was asked for them).
      offsets: ``{"g": (dy, dx), "r": (dy, dx)}`` (module convention).
      scores: ``{"g": float, "r": float}``.
      peaks: ``{"g": Peak, "r": Peak}``.
      crop: ``(top, bottom, left, right)``: ``image`` is the aligned
        ``[h, W, 3]`` composite sliced ``[top:bottom, left:right]`` (bottom and
        right exclusive), in the coordinates of the B third.
    """

    image: np.ndarray
    offsets: dict[str, tuple[float, float]]
    scores: dict[str, float]
    peaks: dict[str, Peak]
    crop: tuple[int, int, int, int]


# --------------------------------------------------------------------------- plates


def split_plate(plate) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Cuts a stacked plate into its B, G and R thirds.

    Args:
      plate: ``[H, W]`` (or ``[H, W, C]``, converted to gray) array, any dtype;
        B on top, G in the middle, R at the bottom.

    Returns:
      ``(b, g, r)``, each ``[H // 3, W]`` views of ``plate`` (rows beyond
      ``3 * (H // 3)`` are dropped).

    Raises:
      InputError: the plate is not 2-D/3-D or a third is smaller than
        ``MIN_CHANNEL`` pixels on a side.
    """
    plate = np.asarray(plate)
    if plate.ndim == 3:
        from imsyn.image import rgb_to_gray, to_float

        plate = rgb_to_gray(to_float(plate))
    if plate.ndim != 2:
        raise InputError(f"plate must be a 2-D grayscale image, got shape {plate.shape}")
    h, w = plate.shape[0] // 3, plate.shape[1]
    if h < MIN_CHANNEL or w < MIN_CHANNEL:
        raise InputError(
            f"plate of {plate.shape[0]}x{plate.shape[1]} pixels is too small to split into "
            f"three channels of at least {MIN_CHANNEL}x{MIN_CHANNEL}"
        )
    return plate[:h], plate[h : 2 * h], plate[2 * h : 3 * h]


# --------------------------------------------------------------------------- features


def _gaussian_blur(x, sigma: float):
    """Separable Gaussian blur of ``[H, W]`` with edge padding (slices, no conv)."""
    rad = max(1, int(math.ceil(3 * sigma)))
    k = np.exp(-0.5 * (np.arange(-rad, rad + 1) / sigma) ** 2)
    k = (k / k.sum()).astype(np.float32)
    h, w = x.shape
    p = jnp.pad(x, ((rad, rad), (0, 0)), mode="edge")
    x = sum(float(k[i]) * p[i : i + h] for i in range(2 * rad + 1))
    p = jnp.pad(x, ((0, 0), (rad, rad)), mode="edge")
    return sum(float(k[i]) * p[:, i : i + w] for i in range(2 * rad + 1))


def _sobel_valid(x):
    """Sobel gradient magnitude of ``[H, W]`` -> ``[H - 2, W - 2]`` (no padding)."""
    gx = (x[:-2, 2:] + 2 * x[1:-1, 2:] + x[2:, 2:]) - (x[:-2, :-2] + 2 * x[1:-1, :-2] + x[2:, :-2])
    gy = (x[2:, :-2] + 2 * x[2:, 1:-1] + x[2:, 2:]) - (x[:-2, :-2] + 2 * x[:-2, 1:-1] + x[:-2, 2:])
    return jnp.sqrt(gx * gx + gy * gy + _EPS)


def feature_map(x, *, kind: str = "gradient", usm_sigma: float = 2.0, usm_amount: float = 1.5):
    """The feature a channel is aligned on.

    Args:
      x: ``float32[H, W]`` channel (any range; numpy or jax).
      kind: ``"intensity"`` (the channel itself), ``"gradient"`` (Sobel edge
        magnitude) or ``"usm"`` (unsharp mask ``x + amount * (x - blur(x))``).
      usm_sigma: Gaussian sigma of the unsharp mask, pixels.
      usm_amount: strength of the unsharp mask.

    Returns:
      ``float32[H, W]`` jax array.
    """
    x = jnp.asarray(x, jnp.float32)
    if kind == "intensity":
        return x
    if kind == "gradient":
        return _sobel_valid(jnp.pad(x, 1, mode="edge"))
    if kind == "usm":
        return x + usm_amount * (x - _gaussian_blur(x, usm_sigma))
    raise ValueError(f"features must be one of {FEATURES}, got {kind!r}")


def _downsample(x):
    """2x2 box average of ``[H, W]`` (odd trailing row/column dropped).

    Strided slices: XLA on CPU runs this ~30x faster than a reshape + mean.
    """
    h, w = x.shape[0] // 2 * 2, x.shape[1] // 2 * 2
    x = x[0:h:2, :w] + x[1:h:2, :w]
    return 0.25 * (x[:, 0::2] + x[:, 1::2])


# --------------------------------------------------------------------------- scores


def _prep_ref(win, metric: str):
    """Constants of the fixed reference window: (normalised window, sum of squares)."""
    if metric == "ncc":
        c = win - jnp.mean(win)
        return c / jnp.sqrt(jnp.sum(c * c) + _EPS), jnp.float32(0.0)
    return win, jnp.sum(win * win)


def _score_window(refw, ref_sq, movw, metric: str):
    """Similarity (higher is better) of the reference window and a moving window."""
    n = refw.size
    cross = jnp.sum(refw * movw)
    s2 = jnp.sum(movw * movw)
    if metric == "ncc":
        s1 = jnp.sum(movw)
        return cross / jnp.sqrt(jnp.maximum(s2 - s1 * s1 / n, _EPS))
    return -(ref_sq - 2 * cross + s2) / n


def _natural(sim, metric: str):
    """Internal similarity -> the metric's own units (SSD is reported positive)."""
    return sim if metric == "ncc" else -sim


def shift_score(ref, mov, offset, *, metric: str = "ncc", margin: int):
    """Score of one shift on the valid overlap (the formula the search uses).

    Compares ``ref[m:h-m, m:w-m]`` with the same pixels of
    ``np.roll(mov, offset, axis=(0, 1))`` (``m = margin``); because
    ``|dy|, |dx| <= m`` these pixels never wrap around, so plate borders and
    the far side of the image cannot bias the score.

    Args:
      ref: ``float32[H, W]`` reference (B) feature map.
      mov: ``float32[H, W]`` moving (G or R) feature map.
      offset: integer ``(dy, dx)`` with ``|dy|, |dx| <= margin``.
      metric: ``"ssd"`` (mean squared difference, lower is better) or
        ``"ncc"`` (normalised cross-correlation, higher is better).
      margin: interior margin, pixels.

    Returns:
      scalar float32 in the metric's units.
    """
    dy, dx = (int(v) for v in offset)
    ref = jnp.asarray(ref, jnp.float32)
    mov = jnp.asarray(mov, jnp.float32)
    if max(abs(dy), abs(dx)) > margin or 2 * margin >= min(ref.shape):
        raise ValueError(f"offset {offset} must lie within margin={margin} < half the image")
    h, w = ref.shape
    refw, ref_sq = _prep_ref(ref[margin : h - margin, margin : w - margin], metric)
    movw = mov[margin - dy : h - margin - dy, margin - dx : w - margin - dx]
    return _natural(_score_window(refw, ref_sq, movw, metric), metric)


# --------------------------------------------------------------------------- search

_PAD = 8  # context around a window for the feature filters (Sobel 1 px, USM 3 sigma)


class _Level(NamedTuple):
    """Static plan of one pyramid level: the reference window and the search reach."""

    y0: int
    x0: int
    hw: int
    ww: int
    reach: int


def _plan(h, w, *, radius, coarse_size, margin, max_window):
    """Levels (finest first) and the coarse search radius, from the channel shape."""
    if radius is None:
        radius = max(8, int(math.ceil(0.08 * max(h, w))))
    n = 0
    while max(h, w) >> n > coarse_size and min(h, w) >> (n + 1) >= 4 * MIN_CHANNEL:
        n += 1
    levels = []
    for lvl in range(n + 1):
        hl, wl = h >> lvl, w >> lvl
        reach = int(math.ceil(radius / 2**lvl)) + 4
        m = max(int(math.ceil(margin * min(hl, wl))), reach + _PAD)
        hw, ww = min(hl - 2 * m, max_window), min(wl - 2 * m, max_window)
        if min(hw, ww) < 8:
            raise InputError(
                f"search radius {radius} px is too large for a {h}x{w} channel; give a smaller one"
            )
        levels.append(_Level((hl - hw) // 2, (wl - ww) // 2, hw, ww, reach))
    coarse_radius = int(math.ceil(radius / 2**n)) + 1
    return levels, coarse_radius


def _level_features(img, lv: _Level, extra: int, kind: str):
    """Standardised feature map of the window grown by ``extra`` pixels.

    The filters run on ``_PAD`` pixels of real context ("valid" mode), so the
    map equals :func:`feature_map` of the whole level inside the window.
    """
    e = extra + _PAD
    x = img[lv.y0 - e : lv.y0 + lv.hw + e, lv.x0 - e : lv.x0 + lv.ww + e]
    h, w = x.shape
    if kind == "gradient":
        f = _sobel_valid(x)[_PAD - 1 : h - _PAD - 1, _PAD - 1 : w - _PAD - 1]
    else:
        f = feature_map(x, kind=kind)[_PAD : h - _PAD, _PAD : w - _PAD]
    mean = jnp.mean(f)
    std = jnp.sqrt(jnp.maximum(jnp.mean(f * f) - mean * mean, 0.0))
    return (f - mean) / (std + 1e-6)


def _box_sums(e, hw: int, ww: int, r: int):
    """Sums of ``e`` over every ``[hw, ww]`` window starting at ``(a, b)``, ``a, b <= 2r``.

    ``e`` is ``[hw + 2r, ww + 2r]``; returns ``[2r + 1, 2r + 1]``. Written as two
    small products with 0/1 band matrices (no cumulative sums, which compile
    slowly on XLA:CPU).
    """
    k = np.arange(2 * r + 1)
    rows = (np.arange(hw + 2 * r)[None] >= k[:, None]) & (
        np.arange(hw + 2 * r)[None] < k[:, None] + hw
    )
    cols = (np.arange(ww + 2 * r)[:, None] >= k[None]) & (
        np.arange(ww + 2 * r)[:, None] < k[None] + ww
    )
    hi = lax.Precision.HIGHEST
    rs = jnp.dot(jnp.asarray(rows, jnp.float32), e, precision=hi)  # [2r+1, ww+2r]
    return jnp.dot(rs, jnp.asarray(cols, jnp.float32), precision=hi)


def _landscape(refw, ref_sq, ext, r: int, *, metric: str, impl: str):
    """Similarity of every shift in ``[-r, r]^2`` -> ``[2r+1, 2r+1]`` (index ``[dy+r, dx+r]``).

    ``ext`` is the moving map around the reference window, grown by ``r`` on
    every side, so shift ``(dy, dx)`` compares ``refw`` with
    ``ext[r-dy : r-dy+hw, r-dx : r-dx+ww]``: no candidate ever reads outside
    the map or wraps around.

    Formulations (``impl``, same results): ``"conv"`` (cross terms as one XLA
    convolution with the window as kernel, box sums as two band-matrix
    products; fastest for small ``r``), ``"fft"`` (cross terms and box sums as
    FFT correlations; cost independent of ``r``), ``"vmap"`` and
    ``"map<batch>"`` (every candidate scored on its own dynamic slice, under
    ``jax.vmap`` or ``lax.map`` with that batch size).
    """
    hw, ww = refw.shape
    n = hw * ww
    if impl in ("conv", "fft"):
        if impl == "conv":
            cross = lax.conv_general_dilated(
                ext[None, None], refw[None, None], (1, 1), "VALID", precision=lax.Precision.HIGHEST
            )[0, 0]
            s1 = _box_sums(ext, hw, ww, r)
            s2 = _box_sums(ext * ext, hw, ww, r)
        else:
            # Correlations with the window and with a box of ones; circular, but
            # the 2r+1 leading lags never wrap because ext is the window grown by r.
            h, w = ext.shape
            kern = (
                jnp.zeros((2, h, w), jnp.float32).at[0, :hw, :ww].set(refw).at[1, :hw, :ww].set(1)
            )
            kf = jnp.conj(jnp.fft.rfft2(kern))
            ef = jnp.fft.rfft2(jnp.stack([ext, ext * ext]))
            corr = jnp.fft.irfft2(
                jnp.stack([kf[0] * ef[0], kf[1] * ef[0], kf[1] * ef[1]]), s=(h, w)
            )
            cross, s1, s2 = corr[:, : 2 * r + 1, : 2 * r + 1]
        if metric == "ncc":
            sims = cross / jnp.sqrt(jnp.maximum(s2 - s1 * s1 / n, _EPS))
        else:
            sims = -(ref_sq - 2 * cross + s2) / n
        return sims[::-1, ::-1]  # start (a, b) = (r - dy, r - dx)
    d = jnp.arange(-r, r + 1)
    dy, dx = jnp.meshgrid(d, d, indexing="ij")
    cands = jnp.stack([dy.ravel(), dx.ravel()], axis=1)

    def one(c):
        movw = lax.dynamic_slice(ext, (r - c[0], r - c[1]), (hw, ww))
        return _score_window(refw, ref_sq, movw, metric)

    if impl == "vmap":
        sims = jax.vmap(one)(cands)
    elif impl.startswith("map") and impl[3:].isdigit():
        sims = lax.map(one, cands, batch_size=int(impl[3:]))
    else:
        raise ValueError(f"impl must be 'conv', 'fft', 'vmap' or 'map<batch>', got {impl!r}")
    return sims.reshape(2 * r + 1, 2 * r + 1)


def _hill_climb(refw, ref_sq, mov, start, *, reach: int, metric: str, impl: str, max_steps: int):
    """Moves a 3x3 window of candidate shifts uphill until its centre is best."""
    hw, ww = refw.shape
    lim = reach - 1

    def body(state):
        step, center, _, _ = state
        ext = lax.dynamic_slice(mov, (lim - center[0], lim - center[1]), (hw + 2, ww + 2))
        sims = _landscape(refw, ref_sq, ext, 1, metric=metric, impl=impl)
        k = jnp.argmax(sims)
        move = jnp.stack([k // 3 - 1, k % 3 - 1]).astype(center.dtype)
        at_edge = jnp.any(jnp.abs(center + move) > lim)
        done = jnp.all(move == 0) | at_edge
        return step + 1, jnp.where(at_edge, center, center + move), sims, done

    def cond(state):
        step, _, _, done = state
        return (step < max_steps) & ~done

    start = jnp.clip(start, -lim, lim)
    init = (jnp.int32(0), start, jnp.zeros((3, 3), jnp.float32), jnp.bool_(False))
    _, center, sims, _ = lax.while_loop(cond, body, init)
    return center, sims, jnp.argmax(sims) == 4  # converged: the centre is a local optimum


def _parabola(lo, mid, hi, ok):
    """Vertex of the parabola through (-1, lo), (0, mid), (1, hi), in [-0.5, 0.5]."""
    curv = lo - 2 * mid + hi
    ok = ok & (curv < 0) & jnp.isfinite(curv)
    return jnp.where(ok, jnp.clip((lo - hi) / (2 * jnp.where(ok, curv, -1.0)), -0.5, 0.5), 0.0)


@functools.partial(
    jax.jit,
    static_argnames=(
        "features",
        "metric",
        "radius",
        "coarse_size",
        "margin",
        "max_window",
        "max_steps",
        "impl",
    ),
)
def align_offsets(
    ref,
    movs,
    *,
    features: str = "gradient",
    metric: str = "ncc",
    radius: int | None = None,
    coarse_size: int = 1600,
    margin: float = 0.1,
    max_window: int = 768,
    max_steps: int = 8,
    impl: str = "fft",
):
    """Jitted core of :func:`align_channels` (compiled once per shape and knobs).

    Args:
      ref: ``float32[H, W]`` reference channel (B), any range.
      movs: ``float32[K, H, W]`` channels to register onto ``ref``.
      features: ``"intensity"``, ``"gradient"`` or ``"usm"``.
      metric: ``"ssd"`` or ``"ncc"``.
      radius: full-resolution search radius in pixels (default
        ``max(8, ceil(0.08 * max(H, W)))``: ±256 px for a 3200-px channel).
      coarse_size: the pyramid is halved until the longest side is at most
        this; that level is searched exhaustively.
      margin: interior margin excluded from the scores, fraction of the
        shorter side (at least the search reach, so nothing wraps around).
      max_window: the scored window is the central crop of at most this many
        pixels per side of the interior (bounds the cost on large plates).
      max_steps: hill-climb steps per finer level.
      impl: formulation of the exhaustive coarse search: ``"fft"`` (default,
        fastest), ``"conv"``, ``"vmap"`` or ``"map<batch>"``; identical results
        up to float rounding (see ``_landscape`` and ``benchmarks/align.py``).
        The 3x3 hill-climb windows always use ``"conv"``.

    Returns:
      dict of arrays: ``offsets`` ``int32[K, 2]``, ``subpixel`` ``float32[K, 2]``
      (parabola-fit fraction in [-0.5, 0.5]), ``score``, ``sharpness``,
      ``coarse_best``, ``coarse_second`` ``float32[K]``, ``converged`` ``bool[K]``.
    """
    if features not in FEATURES:
        raise ValueError(f"features must be one of {FEATURES}, got {features!r}")
    if metric not in METRICS:
        raise ValueError(f"metric must be one of {METRICS}, got {metric!r}")
    ref = jnp.asarray(ref, jnp.float32)
    movs = jnp.asarray(movs, jnp.float32)
    levels, rc = _plan(
        *ref.shape, radius=radius, coarse_size=coarse_size, margin=margin, max_window=max_window
    )
    refs, mov_pyr = [ref], [movs]
    for _ in levels[1:]:
        refs.append(_downsample(refs[-1]))
        mov_pyr.append(jnp.stack([_downsample(m) for m in mov_pyr[-1]]))
    ref_win = [
        _prep_ref(_level_features(x, lv, 0, features), metric)
        for x, lv in zip(refs, levels, strict=True)
    ]

    def one_channel(pyr):
        lv = levels[-1]
        refw, ref_sq = ref_win[-1]
        mov = _level_features(pyr[-1], lv, lv.reach, features)
        ext = mov[
            lv.reach - rc : mov.shape[0] - lv.reach + rc,
            lv.reach - rc : mov.shape[1] - lv.reach + rc,
        ]
        land = _landscape(refw, ref_sq, ext, rc, metric=metric, impl=impl)
        k = jnp.argmax(land)
        by, bx = k // land.shape[1], k % land.shape[1]
        yy, xx = jnp.meshgrid(jnp.arange(land.shape[0]), jnp.arange(land.shape[1]), indexing="ij")
        near = (jnp.abs(yy - by) <= 1) & (jnp.abs(xx - bx) <= 1)
        second = jnp.max(jnp.where(near, -jnp.inf, land))
        center = jnp.stack([by - rc, bx - rc]).astype(jnp.int32)
        # Landscape around the answer: the coarse one if there is a single level.
        sims = lax.dynamic_slice(jnp.pad(land, 1, constant_values=-jnp.inf), (by, bx), (3, 3))
        done = (jnp.minimum(by, bx) > 0) & (jnp.maximum(by, bx) < 2 * rc)  # not on the rim
        for lvl in range(len(levels) - 2, -1, -1):
            lv = levels[lvl]
            refw, ref_sq = ref_win[lvl]
            mov = _level_features(pyr[lvl], lv, lv.reach, features)
            center, sims, done = _hill_climb(
                refw, ref_sq, mov, 2 * center, reach=lv.reach, metric=metric, impl="conv",
                max_steps=max_steps,
            )  # fmt: skip
        s0 = sims[1, 1]
        frac = jnp.stack(
            [
                _parabola(sims[0, 1], s0, sims[2, 1], done),
                _parabola(sims[1, 0], s0, sims[1, 2], done),
            ]
        )
        neigh = jnp.stack([sims[0, 1], sims[2, 1], sims[1, 0], sims[1, 2]])
        sharp = s0 - jnp.mean(jnp.where(jnp.isfinite(neigh), neigh, s0))
        return {
            "offsets": center,
            "subpixel": frac,
            "score": _natural(s0, metric),
            "sharpness": sharp,
            "coarse_best": _natural(land[by, bx], metric),
            "coarse_second": _natural(second, metric),
            "converged": done,
        }

    return lax.map(one_channel, mov_pyr)


def align_channels(
    b,
    g,
    r,
    *,
    features: str = "gradient",
    metric: str = "ncc",
    radius: int | None = None,
    subpixel: bool = False,
    coarse_size: int = 1600,
    margin: float = 0.1,
    max_window: int = 768,
) -> AlignResult:
    """Finds the shifts that register G and R onto B.

    Args:
      b: ``[H, W]`` blue channel (float, any range; the reference).
      g: ``[H, W]`` green channel.
      r: ``[H, W]`` red channel.
      features: ``"gradient"`` (default; aligns every plate in the course set,
        including emir, whose channels differ too much in brightness for raw
        intensity), ``"intensity"`` or ``"usm"``.
      metric: ``"ncc"`` (default) or ``"ssd"`` (on standardised features).
      radius: full-resolution search radius, pixels (default 8% of the
        longest channel side: ±256 px for a 3200-px channel).
      subpixel: refine each offset with a parabola fit of the score landscape.
      coarse_size: longest side of the exhaustively searched pyramid level.
      margin: interior margin excluded from the scores (fraction of the
        shorter side).
      max_window: side of the largest window scored per pyramid level.

    Returns:
      :class:`AlignResult`; offsets follow the module convention
      (``np.roll(g, offsets["g"], axis=(0, 1))`` lies on ``b``).

    Raises:
      InputError: channels of different shapes or too small.
      ValueError: unknown ``features`` / ``metric``.
    """
    chans = [np.asarray(c, np.float32) for c in (b, g, r)]
    if any(c.ndim != 2 for c in chans) or len({c.shape for c in chans}) != 1:
        raise InputError(f"b, g, r must be 2-D of one shape, got {[c.shape for c in chans]}")
    if min(chans[0].shape) < MIN_CHANNEL:
        raise InputError(f"channels of {chans[0].shape} are smaller than {MIN_CHANNEL} px")
    return _align(chans[0], np.stack(chans[1:]), subpixel=subpixel, **dict(
        features=features, metric=metric, radius=radius, coarse_size=coarse_size, margin=margin,
        max_window=max_window,
    ))  # fmt: skip


def _align(b, movs, *, subpixel: bool, **knobs) -> AlignResult:
    """:func:`align_channels` on ``b`` and stacked ``movs = [g, r]``."""
    res = align_offsets(b, movs, **knobs)
    res = jax.device_get(res)
    offsets, scores, peaks = {}, {}, {}
    for i, name in enumerate(("g", "r")):
        off = tuple(int(v) for v in res["offsets"][i])
        if subpixel:
            off = tuple(float(o + f) for o, f in zip(off, res["subpixel"][i], strict=True))
        offsets[name] = off
        scores[name] = float(res["score"][i])
        peaks[name] = Peak(
            score=float(res["score"][i]),
            sharpness=float(res["sharpness"][i]),
            coarse_best=float(res["coarse_best"][i]),
            coarse_second=float(res["coarse_second"][i]),
            converged=bool(res["converged"][i]),
        )
    return AlignResult(offsets, scores, peaks)


# --------------------------------------------------------------------------- compose


def shift_channel(x: np.ndarray, offset) -> np.ndarray:
    """``np.roll`` by ``(dy, dx)``; fractional parts are bilinearly interpolated.

    Args:
      x: ``float32[H, W]``.
      offset: ``(dy, dx)``, ints or floats (module convention).

    Returns:
      ``float32[H, W]`` (wrapped-around rows/columns are removed later by
      :func:`auto_crop`).
    """
    x = np.asarray(x, np.float32)
    dy, dx = (float(v) for v in offset)
    iy, ix = math.floor(dy), math.floor(dx)
    fy, fx = dy - iy, dx - ix
    out = np.roll(x, (iy, ix), axis=(0, 1))
    if fy or fx:
        # value at y is x[y - dy]: blend the integer shift with one more row/column.
        out = (1 - fy) * out + fy * np.roll(out, 1, axis=0) if fy else out
        out = (1 - fx) * out + fx * np.roll(out, 1, axis=1) if fx else out
    return out.astype(np.float32, copy=False)


def overlap_box(shape, offsets) -> tuple[int, int, int, int]:
    """The part of a composite where no shifted channel wrapped around.

    Args:
      shape: ``(H, W)`` of a channel.
      offsets: ``{"g": (dy, dx), "r": (dy, dx)}`` (module convention).

    Returns:
      ``(top, bottom, left, right)``, bottom/right exclusive.
    """
    h, w = shape[:2]
    top, bottom, left, right = 0, h, 0, w
    for dy, dx in offsets.values():
        top = max(top, math.ceil(dy))
        bottom = min(bottom, h + math.floor(min(dy, 0)))
        left = max(left, math.ceil(dx))
        right = min(right, w + math.floor(min(dx, 0)))
    return top, max(bottom, top), left, max(right, left)


def compose(b, g, r, offsets, *, box=None) -> np.ndarray:
    """Stacks the shifted channels into ``float32[H, W, 3]`` RGB.

    Args:
      b, g, r: ``[H, W]`` channels.
      offsets: ``{"g": (dy, dx), "r": (dy, dx)}`` (module convention).
      box: optional ``(top, bottom, left, right)`` inside :func:`overlap_box`:
        only that part is composed, straight from slices of the channels
        (no full-size rolled copies).

    Returns:
      ``float32[H, W, 3]`` (or the box's size), R, G, B order.
    """
    chans = (("r", r), ("g", g), ("b", b))
    if box is None:
        return np.stack(
            [
                np.asarray(c, np.float32) if k == "b" else shift_channel(c, offsets[k])
                for k, c in chans
            ],
            axis=-1,
        )
    top, bottom, left, right = box
    out = np.empty((bottom - top, right - left, 3), np.float32)
    for i, (k, c) in enumerate(chans):
        dy, dx = offsets.get(k, (0, 0))
        if float(dy).is_integer() and float(dx).is_integer():
            dy, dx = int(dy), int(dx)
            if not (
                0 <= top - dy
                and bottom - dy <= c.shape[0]
                and 0 <= left - dx
                and right - dx <= c.shape[1]
            ):
                raise ValueError(f"box {box} is not inside the overlap of offsets {offsets}")
            out[..., i] = c[top - dy : bottom - dy, left - dx : right - dx]
        else:
            out[..., i] = shift_channel(c, (dy, dx))[top:bottom, left:right]
    return out


def _aligned_empty(shape, align: int = 64) -> np.ndarray:
    """An uninitialised C-contiguous ``float32`` array whose data is ``align``-byte aligned
    (NumPy gives 16; jax on CPU uses a 64-byte-aligned host array without copying it)."""
    n = math.prod(shape) * 4
    raw = np.empty(n + align, np.uint8)
    start = -raw.ctypes.data % align
    return raw[start : start + n].view(np.float32).reshape(shape)


def _subsample(img: np.ndarray, max_pixels: int = 1 << 18) -> np.ndarray:
    step = max(1, int(math.sqrt(img.shape[0] * img.shape[1] / max_pixels)))
    return img[::step, ::step]


# --------------------------------------------------------------------------- finishing


def auto_crop(
    img,
    *,
    offsets=None,
    max_frac: float = 0.12,
    dark: float = 0.15,
    bright: float = 0.9,
    fringe: float = 0.25,
) -> tuple[int, int, int, int]:
    """Finds the crop box that removes plate borders.

    Three kinds of border are removed: rows/columns that wrapped around when a
    channel was shifted (:func:`overlap_box` of ``offsets``), then, within
    ``max_frac`` of each side, the innermost row/column (measured over the
    central half of the other axis) that is part of a black or white frame
    (every channel's mean below ``dark`` / above ``bright``) or a colour fringe
    (channel means differing by more than ``fringe``).

    Args:
      img: ``float32[H, W, 3]`` aligned RGB in [0, 1].
      offsets: the ``{"g": (dy, dx), "r": (dy, dx)}`` used to compose ``img``.
      max_frac: largest fraction of each side that the frame test may remove.
      dark: frame rows darker than this (every channel) are cut.
      bright: frame rows brighter than this (every channel) are cut.
      fringe: rows whose channel means differ by more than this are cut.

    Returns:
      ``(top, bottom, left, right)``, bottom/right exclusive.
    """
    img = np.asarray(img, np.float32)
    h, w = img.shape[:2]
    top, bottom, left, right = overlap_box((h, w), offsets or {})
    if bottom - top < 2 or right - left < 2:
        return 0, h, 0, w
    sub = img[top:bottom, left:right]
    y0, y1, x0, x1 = _frame_cut(
        lambda ys, xs: sub[ys, xs], *sub.shape[:2], max_frac=max_frac, dark=dark,
        bright=bright, fringe=fringe,
    )  # fmt: skip
    return top + y0, top + y1, left + x0, left + x1


def _frame_cut(region, sh: int, sw: int, *, max_frac, dark, bright, fringe):
    """:func:`auto_crop`'s frame test on an ``[sh, sw, 3]`` image seen through
    ``region(row_slice, col_slice)`` (only the sampled rows/columns are read)."""
    sy, sx = max(1, sh // 512), max(1, sw // 512)  # every row/column, ~256 samples along it
    row_means = region(slice(0, sh), slice(sw // 4, sw - sw // 4, sx)).mean(axis=1)  # [sh, 3]
    col_means = region(slice(sh // 4, sh - sh // 4, sy), slice(0, sw)).mean(axis=0)  # [sw, 3]

    def bad(m):
        lo, hi = m.min(axis=-1), m.max(axis=-1)
        return (hi < dark) | (lo > bright) | (hi - lo > fringe)

    def cut(flags, n):
        band = max(1, int(max_frac * n))
        head = np.flatnonzero(flags[:band])
        tail = np.flatnonzero(flags[n - band :])
        start = int(head[-1]) + 1 if head.size else 0
        stop = n - band + int(tail[0]) if tail.size else n
        return start, stop

    y0, y1 = cut(bad(row_means), sh)
    x0, x1 = cut(bad(col_means), sw)
    return y0, y1, x0, x1


def contrast_limits(img, *, low: float = 0.5, high: float = 99.5) -> tuple[float, float]:
    """The ``low``/``high`` percentiles over all channels (of a <= 0.26 Mpx subsample)."""
    lo, hi = np.percentile(_subsample(np.asarray(img)), [low, high])
    return float(lo), float(hi)


def auto_contrast(img, *, low: float = 0.5, high: float = 99.5) -> np.ndarray:
    """Percentile stretch: the ``low``/``high`` percentiles (over all channels) go to 0/1.

    Args:
      img: ``float32[H, W, C]`` in [0, 1].
      low: lower percentile (0-100).
      high: upper percentile (0-100).

    Returns:
      ``float32[H, W, C]`` in [0, 1] (a copy; unchanged if the image is flat).
    """
    img = np.asarray(img, np.float32)
    lo, hi = contrast_limits(img, low=low, high=high)
    if hi - lo < 1e-6:
        return img.copy()
    return _affine(img, np.float32(1.0 / (hi - lo)), np.float32(lo / (hi - lo)))


def white_balance_gains(img, *, max_gain: float = 2.0) -> np.ndarray:
    """Gray-world gains ``float32[C]``: mean of all channels / channel mean, clipped."""
    return _gains(_subsample(np.asarray(img)), max_gain)


def _gains(sub, max_gain: float = 2.0) -> np.ndarray:
    """:func:`white_balance_gains` of an image whose :func:`_subsample` is ``sub``."""
    means = sub.reshape(-1, sub.shape[-1]).mean(axis=0, dtype=np.float64)
    gains = means.mean() / np.maximum(means, 1e-6)
    return np.clip(gains, 1.0 / max_gain, max_gain).astype(np.float32)


def white_balance(img, *, max_gain: float = 2.0) -> np.ndarray:
    """Gray-world white balance: every channel gets the mean of all channels.

    Args:
      img: ``float32[H, W, 3]`` in [0, 1].
      max_gain: channel gains are clipped to ``[1 / max_gain, max_gain]``.

    Returns:
      ``float32[H, W, 3]`` in [0, 1].
    """
    img = np.asarray(img, np.float32)
    return _affine(img, white_balance_gains(img, max_gain=max_gain), np.float32(0.0))


_ROWS = 1 << 15  # pixels per block of the finishing passes (384 KiB of float32 RGB: cached)


def _affine(img, scale, offset):
    """``clip(img * scale - offset, 0, 1)`` in float32, in cache-sized row blocks."""
    out = np.empty(img.shape, np.float32)
    step = max(1, _ROWS // max(1, math.prod(img.shape[1:2])))
    for i in range(0, img.shape[0], step):
        o = out[i : i + step]
        np.multiply(img[i : i + step], scale, out=o, dtype=np.float32)
        o -= offset
        np.maximum(o, 0.0, out=o)
        np.minimum(o, 1.0, out=o)
    return out


def _finish_map(sub, *, balance: bool, contrast: bool):
    """``(scale float32[C], offset float32)`` of the map ``clip(x * scale - offset, 0, 1)``
    that :func:`_finish` applies to an image whose :func:`_subsample` is ``sub``
    (``None``: the image is kept as it is)."""
    gains = _gains(sub) if balance else np.ones(sub.shape[-1], np.float32)
    if not contrast:
        return (gains, np.float32(0.0)) if balance else None
    lo, hi = contrast_limits(np.clip(sub * gains, 0.0, 1.0))
    if hi - lo < 1e-6:
        return gains, np.float32(0.0)
    return (gains / np.float32(hi - lo)).astype(np.float32), np.float32(lo / (hi - lo))


def _finish(img, *, balance: bool, contrast: bool) -> np.ndarray:
    """``auto_contrast(white_balance(img))`` (either optional) in one pass over the image.

    Exact because the contrast limits come from the balanced, clipped subsample
    (so ``hi <= 1`` and the first clip never changes the second one's result).
    """
    m = _finish_map(_subsample(img), balance=balance, contrast=contrast)
    return img if m is None else _affine(img, *m)


def _crop_and_finish(chans, offsets, box, *, balance: bool, contrast: bool, quantize=None):
    """``auto_crop`` then ``_finish`` of ``compose(..., box=box)``, for integer offsets.

    The same pixels and the same arithmetic as composing the box, cropping and finishing
    in turn (then, with ``quantize`` = ``np.uint8`` or ``np.uint16``, the rounding of
    :func:`imsyn.image.to_uint8` / ``to_uint16``), but the frame test and the finishing
    statistics read only the sampled rows/columns of the channels, and the result is made
    one channel of a row block at a time, in cache, and written once: no full-size
    composite, temporaries or float copy.

    Returns:
      ``(image, (top, bottom, left, right))``.
    """
    shifts = [(c, (0, 0) if k == "b" else tuple(int(v) for v in offsets[k])) for k, c in chans]

    def region(ys: slice, xs: slice, out=None):  # compose(...)[ys, xs], B-third coordinates
        for i, (c, (dy, dx)) in enumerate(shifts):
            part = c[ys.start - dy : ys.stop - dy : ys.step, xs.start - dx : xs.stop - dx : xs.step]
            if out is None:
                out = np.empty((*part.shape, 3), np.float32)
            out[..., i] = part
        return out

    top, bottom, left, right = box
    y0, y1, x0, x1 = _frame_cut(
        lambda ys, xs: region(
            slice(top + ys.start, top + ys.stop, ys.step),
            slice(left + xs.start, left + xs.stop, xs.step),
        ),
        bottom - top, right - left,
        **{k: v for k, v in auto_crop.__kwdefaults__.items() if k != "offsets"},  # its defaults
    )  # fmt: skip
    top, bottom, left, right = top + y0, top + y1, left + x0, left + x1
    h, w = bottom - top, right - left
    step = max(1, int(math.sqrt(h * w / (1 << 18))))  # as _subsample
    scale_offset = _finish_map(
        region(slice(top, bottom, step), slice(left, right, step)),
        balance=balance,
        contrast=contrast,
    )
    scale, offset = scale_offset or (None, None)
    top_value = {None: None, np.uint8: 255, np.uint16: 65535}[quantize]
    out = np.empty((h, w, 3), quantize or np.float32)
    rows = max(1, _ROWS // w)
    plane = np.empty((min(rows, h), w), np.float32)
    wide = np.empty(plane.shape, np.float64) if quantize else None
    for y in range(top, bottom, rows):
        n = min(rows, bottom - y)
        for i, (c, (dy, dx)) in enumerate(shifts):
            p = c[y - dy : y - dy + n, left - dx : right - dx]
            dst = out[y - top : y - top + n, :, i]
            if scale is not None:
                src, p = p, plane[:n]  # one channel of the block, contiguous: in-cache passes
                np.multiply(src, scale[i], out=p)
                p -= offset
                np.maximum(p, 0.0, out=p)
                np.minimum(p, 1.0, out=p)
            if quantize is None:
                dst[...] = p
            else:  # imsyn.image.to_uint8 / to_uint16: the same float64 rounding
                q = wide[:n]
                np.multiply(p, top_value, out=q, dtype=np.float64)
                np.rint(q, out=q)
                if scale is None:  # else p is in [0, 1] already: the clip changes nothing
                    np.clip(q, 0, top_value, out=q)
                dst[...] = q
    return out, (top, bottom, left, right)


def colorize(
    plate,
    *,
    features: str = "gradient",
    metric: str = "ncc",
    radius: int | None = None,
    subpixel: bool = False,
    crop: bool = True,
    contrast: bool = True,
    balance: bool = True,
    coarse_size: int = 1600,
    margin: float = 0.1,
    max_window: int = 768,
    dtype=np.float32,
    timings: dict | None = None,
) -> ColorizeResult:
    """Splits, aligns and finishes a Prokudin-Gorskii plate.

    Args:
      plate: ``[H, W]`` grayscale plate (B, G, R stacked top to bottom); float
        in [0, 1] or integer (converted with :func:`imsyn.image.to_float`).
      features, metric, radius, subpixel, coarse_size, margin, max_window: see
        :func:`align_channels`.
      crop: remove borders with :func:`auto_crop`.
      contrast: percentile stretch with :func:`auto_contrast`.
      balance: gray-world :func:`white_balance`.
      dtype: of the image: ``float32`` in [0, 1], or ``uint8`` / ``uint16``, which
        are exactly :func:`imsyn.image.to_uint8` / ``to_uint16`` of the float image,
        made block by block without it (what an 8-bit JPEG or 16-bit TIFF needs).
      timings: a dict that, when given, receives the seconds spent in ``"align"``
        (conversion, split and search) and ``"finish"`` (compose, crop, balance,
        contrast).

    Returns:
      :class:`ColorizeResult`.

    Raises:
      InputError: the plate is not 2-D or too small to split.
    """
    from imsyn.image import to_float, to_uint8, to_uint16

    kinds = {np.dtype(np.float32): None, np.dtype(np.uint8): np.uint8,
             np.dtype(np.uint16): np.uint16}  # fmt: skip
    if np.dtype(dtype) not in kinds:
        raise ValueError(f"dtype must be float32, uint8 or uint16, got {dtype!r}")
    quantize = kinds[np.dtype(dtype)]
    t0 = time.perf_counter()
    plate = np.asarray(plate)
    b, g, r = split_plate(plate)  # checks the shape; gray float32 views of a colour plate
    h, w = b.shape
    if plate.ndim == 2 and plate.dtype != np.float32:
        # Converted straight into 64-byte-aligned buffers, which XLA:CPU reads in place:
        # the search gets B and [G, R] without copying 140 MB for a 3200x3700 channel.
        b = to_float(b, out=_aligned_empty((h, w)))
        movs = to_float(plate[h : 3 * h].reshape(2, h, w), out=_aligned_empty((2, h, w)))
        g, r = movs
    elif plate.ndim == 2 and plate.flags.c_contiguous:
        movs = plate[h : 3 * h].reshape(2, h, w)  # G and R without a copy
    else:
        movs = np.stack([g, r]).astype(np.float32)
    res = _align(
        np.asarray(b, np.float32), movs, subpixel=subpixel, features=features, metric=metric,
        radius=radius, coarse_size=coarse_size, margin=margin, max_window=max_window,
    )  # fmt: skip
    t1 = time.perf_counter()
    box = overlap_box((h, w), res.offsets) if crop else (0, h, 0, w)
    integer = all(float(v).is_integer() for o in res.offsets.values() for v in o)
    if crop and integer and box[1] - box[0] >= 2 and box[3] - box[2] >= 2:
        chans = (("r", r), ("g", g), ("b", b))
        img, box = _crop_and_finish(
            chans, res.offsets, box, balance=balance, contrast=contrast, quantize=quantize
        )
    else:
        img = compose(b, g, r, res.offsets, box=box if crop else None)
        if crop:
            t, _, l, _ = box
            y0, y1, x0, x1 = auto_crop(img)
            box = (t + y0, t + y1, l + x0, l + x1)
            img = img[y0:y1, x0:x1]
        img = _finish(img, balance=balance, contrast=contrast)
        if quantize is not None:
            img = (to_uint8 if quantize is np.uint8 else to_uint16)(img)
    img = np.ascontiguousarray(img)
    if timings is not None:
        timings.update(align=t1 - t0, finish=time.perf_counter() - t1)
    return ColorizeResult(img, res.offsets, res.scores, res.peaks, box)


# --------------------------------------------------------------------------- published offsets

#: height of emir's Library of Congress original (the course's large plate), px
EMIR_FULL_HEIGHT = 9740


def reported_offsets(path) -> dict[tuple[str, str], tuple[float, float]]:
    """``{(plate, "g"|"r"): (dy, dx)}``: the consensus column of a ``reported_offsets.md``
    table (``| plate | ch | sources... | consensus (dy,dx) | notes |``), full-resolution px."""
    import re
    from pathlib import Path

    table = {}
    for line in Path(path).read_text().splitlines():
        cells = [c.strip() for c in line.strip().strip("|").split("|")]
        if len(cells) < 10 or cells[1] not in ("G", "R"):
            continue
        m = re.match(r"\(([-\d.]+),([-\d.]+)\)", cells[9])
        if m:
            table[(cells[0], cells[1].lower())] = (float(m.group(1)), float(m.group(2)))
    return table

"""A2: gradient-domain image editing with one exact masked Poisson solver.

Every edit here solves the same discrete problem (Pérez et al. 2003). Given a
set of unknown pixels ``Ω`` (the mask), known values ``t`` elsewhere (the
target) and a guidance field ``v`` on pixel pairs, find ``f`` on ``Ω`` with::

    |N_p| f_p - Σ_{q ∈ N_p ∩ Ω} f_q = Σ_{q ∈ N_p \\ Ω} t_q + Σ_{q ∈ N_p} v_pq    for p ∈ Ω

where ``N_p`` are the 4-neighbours of ``p`` inside the image (so a mask that
touches the image border gets a natural, Neumann, condition there) and
``v_pq`` is the desired ``f_p - f_q``. Pixels outside ``Ω`` are copied from the
target bit for bit. The edits differ only in ``v`` (and, for Color2Gray, a weak
data term that makes the whole image solvable):

=====================  ====================================================
``blend``              ``v`` = source gradients (``mode="poisson"``) or the
                       larger of source/target gradient (``mode="mixed"``)
``reconstruct``        toy problem: ``v`` = the image's own gradients, one
                       pixel known; returns the image
``monochrome_transfer`` ``v`` = gradients of the source's luma in every channel
``flatten_texture``    ``v`` = image gradients on edges, 0 elsewhere
``change_illumination`` ``v = (α·mean|∇f|)^β |∇f|^-β ∇f`` (Fattal-style)
``change_color``       ``v`` = gradients of the image with channels rescaled
``color2gray``         ``v`` = luma or signed chroma contrast, whichever is
                       larger, plus a weak pull towards the luma
=====================  ====================================================

Solver. The problem is restricted to the mask's bounding box (plus one pixel of
boundary), padded to a *size class* ``k·2^L`` with ``12 < k ≤ 24`` per side (at
most 8.3 % padding per side; a handful of compiled programs serve all masks
of a similar size). On that box a matrix-free 5-point operator (pixels outside
``Ω`` are identity rows with a zero right-hand side) is solved by
preconditioned conjugate gradients, channels batched (each channel has its own
step sizes and its own stopping test). The preconditioner is one symmetric
geometric multigrid V-cycle: red-black Gauss-Seidel smoothing, cell-centred
bilinear prolongation masked to ``Ω`` and its transpose as restriction,
coarse operators from 2×2 aggregation of the stencil (a variable-coefficient
5-point stencil at every level, so holes, thin parts and several components
coarsen naturally; links to known values are summed, not halved, so the coarse
boundary stays where the fine one is), and a dense direct solve on the coarsest
grid (≤ 24×24). Blending takes 7-8 CG iterations from 256² to 1024² unknowns.
On a CPU every multigrid stage, the operator and the right-hand side are each computed
into their own buffer (a fusion boundary, :func:`imsyn.models.conv_cpu.staged`); on
accelerators XLA fuses freely.
The CG loop is the algorithm of ``jax.scipy.sparse.linalg.cg`` (same stopping
rule ``‖r‖ ≤ max(tol·‖b‖, atol)``), written out because that function reports
neither the iteration count nor the residual; tests check both agree.

All functions take numpy or jax arrays: images ``float32[H, W]`` or
``float32[H, W, C]`` in ``[0, 1]`` (any channel count; RGBA alpha is solved
like any other channel), masks ``[h, w]`` bool or numbers (thresholded at 0.5).
Results are :class:`PoissonResult` with ``image`` as ``float32`` of the
target's shape; the exact solution may leave ``[0, 1]`` slightly, so use
:func:`imsyn.image.to_uint8` (which clips and rounds correctly) to save it.

Numeric arguments follow one set of rules, the :mod:`imsyn.validate` fields below
(:data:`TOL`, :data:`MAXITER`, :data:`ANGLE`, ...): every function checks its
arguments with them (:func:`imsyn.validate.param`: an :class:`~imsyn.errors.InputError`
``"tol must be a finite number in (0, 1), got inf"``) and the ``python -m imsyn``
gradient-domain CLI parses its options with the same fields, so a bad value fails the
same way in both. Numbers may be Python or NumPy scalars; integer arguments must be
integers.
"""

from __future__ import annotations

import math
import operator
from functools import partial
from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

from imsyn import validate as v
from imsyn.errors import InputError
from imsyn.models.conv_cpu import staged

__all__ = [
    "PoissonResult",
    "binarize_mask",
    "blend",
    "change_color",
    "change_illumination",
    "color2gray",
    "flatten_texture",
    "monochrome_transfer",
    "reconstruct",
    "solve_guided",
]

DEFAULT_TOL = 1e-5
DEFAULT_MAXITER = 200

# The rules of the numeric arguments, for the library (:func:`_param`) and the CLI
# (``imsyn/cli/gradient.py`` parses its options with them: ``validate.arg(TOL)``).
TOL = v.number(0, 1, open_min=True, open_max=True)  # a relative residual: >= 1 is "x = 0"
TOL_WITH_ATOL = v.number(0, 1, open_max=True)  # solve_guided: tol may be 0 when atol > 0
ATOL = v.number(min=0)
MAXITER = v.integer(1, v.INT32_MAX)
OFFSET = v.integer(v.INT32_MIN, v.INT32_MAX)
ANCHOR = v.integer(0, v.INT32_MAX)
THRESHOLD = v.number(min=0)
ALPHA = v.number(min=0, max=1e3, open_min=True)
BETA = v.number(0, 1, open_max=True)
FACTOR = v.number(0, 1e3)
ANGLE = v.number(-360, 360)
DATA_WEIGHT = v.number(0, 1e6, open_min=True)
SCREEN = v.number(min=0)
_LUMA = np.array([0.299, 0.587, 0.114], np.float32)


class PoissonResult(NamedTuple):
    """Result of a gradient-domain solve.

    Attributes:
      image: ``float32`` of the target's shape (``[H, W]`` or ``[H, W, C]``);
        the exact solution inside the mask, the target outside. Not clipped.
      residual: largest relative residual ``‖b - Ax‖ / ‖b‖`` over channels.
      iterations: preconditioned CG iterations taken.
      converged: whether every channel met the tolerance within ``maxiter``.
    """

    image: np.ndarray
    residual: float
    iterations: int
    converged: bool


# --------------------------------------------------------------------------- stencil helpers
# Images on the solver grid are [H, C, W]: rows outermost, channels inside a
# row. The stencil coefficients are [H, W] (one set for all channels) and a
# coefficient row is then reused for every channel while it is in L1 cache; with
# [C, H, W] each channel streamed all coefficients from memory again, and a
# smoothing sweep took ~1.4x longer. The helpers shift along the first (rows) and
# last (columns) axis with zero fill, so they serve [H, W] and [H, C, W] alike.
# They are written as slice + concatenate: XLA:CPU emits a plain vectorised loop
# for that, about 2.5x faster than the same shift written with ``jnp.pad``.


def _shift(a, axis, k):
    """``out[i] = a[i - k]`` along ``axis`` (k = ±1), zero fill."""
    n = a.shape[axis]
    zero = jnp.zeros_like(jax.lax.slice_in_dim(a, 0, 1, axis=axis))
    if k > 0:
        return jnp.concatenate([zero, jax.lax.slice_in_dim(a, 0, n - 1, axis=axis)], axis)
    return jnp.concatenate([jax.lax.slice_in_dim(a, 1, n, axis=axis), zero], axis)


def _right(x):  # value at (i, j + 1)
    return _shift(x, x.ndim - 1, -1)


def _left(x):  # value at (i, j - 1)
    return _shift(x, x.ndim - 1, 1)


def _down(x):  # value at (i + 1, j)
    return _shift(x, 0, -1)


def _up(x):  # value at (i - 1, j)
    return _shift(x, 0, 1)


def _c(a):
    """``[H, W]`` coefficients -> ``[H, 1, W]``, to broadcast over ``[H, C, W]``."""
    return a[:, None, :]


class _Level(NamedTuple):
    diag: jax.Array  # [H, W]; 1 on inactive cells
    ex: jax.Array  # [H, W] weight of edge (i, j)-(i, j+1)
    ey: jax.Array  # [H, W] weight of edge (i, j)-(i+1, j)
    ew: jax.Array  # [H, W] weight of edge (i, j)-(i, j-1), i.e. ``ex`` shifted
    en: jax.Array  # [H, W] weight of edge (i, j)-(i-1, j)
    inv: jax.Array  # [H, W] 1 / diag on active cells, 0 elsewhere
    active: jax.Array  # [H, W] float 0/1
    scaled: tuple  # (ex, ew, ey, en) times the neighbour's ``inv``


def _level(diag, ex, ey, active) -> _Level:
    inv = jnp.where(active > 0, 1.0 / diag, 0.0)
    ew, en, scaled = _derived(ex, ey, inv)
    return _Level(diag, ex, ey, ew, en, inv, active, scaled)


def _derived(ex, ey, inv):
    """``(ew, en, scaled)`` of a level (:class:`_Level`) from its weights and ``inv``."""
    ew, en = _left(ex), _up(ey)
    return ew, en, (ex * _right(inv), ew * _left(inv), ey * _down(inv), en * _up(inv))


def _neighbours(lv: _Level, x):
    """Weighted sum of the 4 neighbours of ``x[H, C, W]``."""
    return _c(lv.ex) * _right(x) + _c(lv.ew) * _left(x) + _c(lv.ey) * _down(x) + _c(lv.en) * _up(x)


def _apply(lv: _Level, x):
    """The operator on ``x[H, C, W]``."""
    return _c(lv.diag) * x - _neighbours(lv, x)


def _fine_raw(omega, inimg, screen):
    """(diag, ex, ey, active) of the fine level."""
    om = omega.astype(jnp.float32)
    img = inimg.astype(jnp.float32)
    ex = om * _right(om)
    ey = om * _down(om)
    deg = _right(img) + _left(img) + _down(img) + _up(img)
    diag = jnp.where(omega, deg + screen, 1.0)
    return diag, ex, ey, om


def _fine_level(omega, inimg, screen):
    return _level(*_fine_raw(omega, inimg, screen))


def _coarsen(lv: _Level) -> _Level:
    """2×2 aggregation of the stencil: a re-discretisation on the coarse grid.

    A coarse edge weighs half the fine edges crossing it (the 5-point stencil
    on a grid twice as coarse). The links of the block's cells to known
    values (Dirichlet boundary, and the screen term) are summed, not halved:
    halving them moves the coarse boundary half a coarse cell away from the
    fine one, which made the V-cycle divergent as a stationary iteration and
    cost CG 12-14 instead of 7-8 iterations.
    """
    ex, ey, active, ext = _coarse_edges(lv)
    return _level(_coarse_diag(ex, ey, active, ext), ex, ey, active)


def _coarse_edges(lv: _Level):
    """(ex, ey, active, links to known values) of the level below ``lv``."""
    h, w = lv.diag.shape

    def blocks(a):
        return a.reshape(h // 2, 2, w // 2, 2)

    # links of each active fine cell to known values (Dirichlet) and the screen term
    ext = (lv.diag - lv.ex - lv.ew - lv.ey - lv.en) * lv.active
    active = blocks(lv.active).max((1, 3))
    ex_c = 0.5 * blocks(lv.ex)[:, :, :, 1].sum(1)
    ey_c = 0.5 * blocks(lv.ey)[:, 1, :, :].sum(-1)
    return ex_c, ey_c, active, blocks(ext).sum((1, 3))


def _coarse_diag(ex, ey, active, ext):
    """The diagonal of a coarse level from :func:`_coarse_edges`."""
    edges = ex + _left(ex) + ey + _up(ey)
    return jnp.where(active > 0, edges + ext, 1.0)


def _hierarchy(omega, inimg, screen, levels, flag):
    """The fine level and ``levels`` coarser ones, each level built in stages.

    Without the stage boundaries (:func:`staged`) XLA:CPU fuses the whole chain and
    recomputes each coarse array per shifted read: building the 6 levels of a 1280² box
    took 25-170 ms; staged, each array is computed once. A stage returns only the arrays it
    computes: one that also returned its inputs would copy them (a conditional's results
    are buffers of their own), 8 copies per level that the solve paid in time and memory.
    """

    def finish(diag, ex, ey, active):
        inv = staged(lambda d, a: jnp.where(a > 0, 1.0 / d, 0.0), diag, active, pred=flag)
        ew, en, scaled = staged(_derived, ex, ey, inv, pred=flag)
        return _Level(diag, ex, ey, ew, en, inv, active, scaled)

    raw = staged(lambda o, i, s: _fine_raw(o, i, s), omega, inimg, screen, pred=flag)
    lvls = [finish(*raw)]
    for _ in range(levels):
        ex, ey, active, ext = staged(_coarse_edges, lvls[-1], pred=flag)
        diag = staged(_coarse_diag, ex, ey, active, ext, pred=flag)
        lvls.append(finish(diag, ex, ey, active))
    return lvls


def _prolong(c):
    """Cell-centred bilinear interpolation ``[h, C, w] -> [2h, C, 2w]``."""

    def along(a, axis):
        even = 0.75 * a + 0.25 * _shift(a, axis, 1)
        odd = 0.75 * a + 0.25 * _shift(a, axis, -1)
        shape = list(a.shape)
        shape[axis] *= 2
        return jnp.stack([even, odd], axis + 1).reshape(shape)

    return along(along(c, 0), c.ndim - 1)


def _restrict(f):
    """Transpose of :func:`_prolong`."""

    def along(a, axis):
        shape = list(a.shape)
        shape[axis : axis + 1] = [shape[axis] // 2, 2]
        a2 = a.reshape(shape)
        even = jax.lax.index_in_dim(a2, 0, axis + 1, keepdims=False)
        odd = jax.lax.index_in_dim(a2, 1, axis + 1, keepdims=False)
        return 0.75 * (even + odd) + 0.25 * (_shift(odd, axis, 1) + _shift(even, axis, -1))

    return along(along(f, 0), f.ndim - 1)


def _red(shape):
    """``True`` on cells with even ``i + j`` of ``[H, C, W]`` (iotas: fuses for free)."""
    i = jax.lax.broadcasted_iota(jnp.int32, shape, 0)
    j = jax.lax.broadcasted_iota(jnp.int32, shape, len(shape) - 1)
    return jnp.bitwise_and(i + j, 1) == 0


def _half_sweep(lv: _Level, x, b, colour):
    """One red-black Gauss-Seidel half-sweep: cells of ``colour`` relaxed."""
    return jnp.where(colour, (b + _neighbours(lv, x)) * _c(lv.inv), x)


def _coarse_factor(lv: _Level):
    """``L⁻¹`` for the Cholesky factor ``L`` of the coarsest operator ``A = L Lᵀ`` (assembled
    densely, ≤ 576 unknowns), so ``A⁻¹ r = L⁻ᵀ (L⁻¹ r)``: two small matrix products per cycle.

    Cholesky plus one triangular solve costs about a third of the flops of
    ``jnp.linalg.inv`` (LU, then the inverse); solving with the factor in every cycle
    (``cho_solve``) is slow on XLA:CPU (16 ms per call at 400 unknowns).
    """
    h, w = lv.diag.shape
    basis = jnp.eye(h * w, dtype=jnp.float32).reshape(h * w, h, 1, w)
    mat = jax.vmap(partial(_apply, lv))(basis).reshape(h * w, h * w)
    chol = jnp.linalg.cholesky(mat)
    eye = jnp.eye(h * w, dtype=jnp.float32)
    return jax.lax.linalg.triangular_solve(chol, eye, left_side=True, lower=True)


def _cycle(levels, coarse, k, rhs, flag):
    """One symmetric V(1,1)-cycle (x0 = 0) from level ``k`` on ``rhs[H, C, W]``.

    Pre-smoothing is red then black, post-smoothing black then red (the
    adjoint order), restriction the transpose of prolongation: the cycle is a
    symmetric positive definite operator, as CG needs. The first red
    half-sweep from zero is just ``rhs / diag`` on red cells, and after the
    black half-sweep the residual vanishes on black cells, so only red cells
    are computed. Each stage is ``staged``: on the CPU, XLA fuses a stencil into a consumer
    that reads it at several offsets by recomputing it per read (5^k work for k chained
    stencils; ``optimization_barrier`` does not stop it), and the boundary prevents that; on
    accelerators it is a plain call. ``flag`` is a traced ``True``, the boundaries' predicate.
    """
    lv = levels[k]
    if k == len(levels) - 1:
        h, c, w = rhs.shape
        flat = jnp.swapaxes(rhs, 0, 1).reshape(c, h * w) @ coarse.T @ coarse
        return jnp.swapaxes(flat.reshape(c, h, w), 0, 1) * _c(lv.active)
    red = _red(rhs.shape)

    # red from x = 0: rhs / diag; black: its neighbours are all red, and
    # their values rhs / diag enter through the pre-scaled weights
    def pre(rhs):
        sx, sw, sy, sn = (_c(a) for a in lv.scaled)
        nb = sx * _right(rhs) + sw * _left(rhs) + sy * _down(rhs) + sn * _up(rhs)
        return jnp.where(red, rhs, rhs + nb) * _c(lv.inv)

    x = staged(pre, rhs, pred=flag)
    # residual: 0 on black cells (just relaxed), and on red cells
    # rhs - diag * x = 0 too, so only the neighbour sum is left
    r = staged(lambda x: jnp.where(red, _neighbours(lv, x), 0.0), x, pred=flag)
    rc = staged(lambda r: _restrict(r) * _c(levels[k + 1].active), r, pred=flag)
    ec = _cycle(levels, coarse, k + 1, rc, flag)
    x = staged(lambda x, e: x + _prolong(e) * _c(lv.active), x, ec, pred=flag)
    x = staged(lambda x: _half_sweep(lv, x, rhs, ~red), x, pred=flag)
    return staged(lambda x: _half_sweep(lv, x, rhs, red), x, pred=flag)


def _vcycle(levels, coarse, b, flag):
    """The preconditioner: one V-cycle on the finest level (see :func:`_cycle`); ``coarse``
    is :func:`_coarse_factor` of the last level."""
    return _cycle(levels, coarse, 0, b, flag)


def _pcg(matvec, precond, b, x0, *, tol, atol, maxiter):
    """Batched preconditioned CG over the channel axis of ``[H, C, W]``.

    Same algorithm and stopping rule as ``jax.scipy.sparse.linalg.cg`` but
    each channel has its own step sizes and stops on its own, and the
    iteration count is returned. ``x0=None`` starts from zero.
    """

    def dot(a, c):
        return jnp.sum(a * c, axis=(0, 2))

    def bc(s):
        return s[None, :, None]

    thresh = jnp.maximum(tol * jnp.sqrt(dot(b, b)), atol) ** 2
    if x0 is None:  # zero start: r = b, no matvec
        x0, r = jnp.zeros_like(b), b
    else:
        r = b - matvec(x0)
    z = precond(r)
    state = (x0, r, dot(r, r), dot(r, z), z, jnp.int32(0))

    def cond(s):
        *_, rr, _, _, k = s
        return (k < maxiter) & jnp.any(rr > thresh)

    def body(s):
        x, r, rr, rz, p, k = s
        live = rr > thresh
        ap = matvec(p)
        pap = dot(p, ap)
        alpha = jnp.where(live & (pap > 0), rz / jnp.where(pap > 0, pap, 1.0), 0.0)
        x = x + bc(alpha) * p
        r = r - bc(alpha) * ap
        z = precond(r)
        rz_new = dot(r, z)
        beta = jnp.where(live & (rz != 0), rz_new / jnp.where(rz != 0, rz, 1.0), 0.0)
        p = z + bc(beta) * p
        return x, r, dot(r, r), rz_new, p, k + 1

    x, _, rr, *_, k = jax.lax.while_loop(cond, body, state)
    return x, k, jnp.all(rr <= thresh)


def _forward_diffs(a):
    """Forward differences ``a[i, j+1] - a[i, j]``, ``a[i+1, j] - a[i, j]`` (zero fill)."""
    return _right(a) - a, _down(a) - a


def _guidance(kind, guide, t):
    """The guidance field ``(gx, gy)`` ``[H, C, W]`` on the box, built on the device.

    ``kind`` "fields": ``guide`` is ``(gx, gy)``; "poisson": the source's
    differences; "mixed_channel" / "mixed_color": per pixel pair the source or
    target difference of larger magnitude, per channel or over colour.
    """
    if kind == "fields":
        return guide
    sx, sy = _forward_diffs(guide)
    if kind == "poisson":
        return sx, sy
    tx, ty = _forward_diffs(t)
    if kind == "mixed_channel":
        return jnp.where(jnp.abs(sx) > jnp.abs(tx), sx, tx), jnp.where(
            jnp.abs(sy) > jnp.abs(ty), sy, ty
        )

    def pick(s, d):
        return jnp.where(jnp.sum(s * s, 1, keepdims=True) > jnp.sum(d * d, 1, keepdims=True), s, d)

    return pick(sx, tx), pick(sy, ty)


def _fluxes(kind, t, guide, img):
    """The guidance across each pixel pair ``(fx, fy)`` ``[H, C, W]`` (:func:`_guidance`),
    zero across the pairs that leave the image."""
    gx, gy = _guidance(kind, guide, t)
    return gx * _c(img * _right(img)), gy * _c(img * _down(img))


def _rhs(t, fx, fy, om, img, screen, data):
    """The right-hand side on ``Ω``: known neighbours, the divergence of the guidance, and
    ``screen * data`` (``data`` None: no data term)."""
    known = t * _c(img * (1.0 - om))
    bnd = _right(known) + _left(known) + _down(known) + _up(known)
    div = -fx + _left(fx) - fy + _up(fy)
    return (bnd + div if data is None else bnd + div + screen * data) * _c(om)


def _blend_start(s, t, om, img):
    """CG's starting guess for blending: the source on ``Ω``, shifted per channel by the
    mean of ``t - s`` over the known pixels next to ``Ω``.

    The solution is ``s`` plus a harmonic correction that matches ``t - s`` on the boundary;
    this guess already carries the correction's mean, so the first residual lives on the
    boundary ring only and is small: blending takes one CG iteration fewer (7 instead of 8
    at 512² and 1024² unknowns). The stopping rule (relative to ``‖b‖``) is unchanged.
    """
    ring = (_right(om) + _left(om) + _down(om) + _up(om)) * (1.0 - om) * img
    ring = (ring > 0).astype(jnp.float32)
    d = jnp.sum((t - s) * _c(ring), axis=(0, 2)) / jnp.maximum(jnp.sum(ring), 1.0)
    return (s + d[None, :, None]) * _c(om)


@partial(jax.jit, static_argnames=("guidance", "levels", "maxiter"))
def _solve_box(t, guide, omega, inimg, screen, data, tol, atol, *, guidance, levels, maxiter):
    """Exact masked solve on a box.

    Images are ``[H, C, W]`` (the host transposes: inside XLA the transpose
    fused into every stencil that reads it), ``guide`` as :func:`_guidance`
    takes it, ``data`` is None when ``screen`` is 0. Returns (f ``[H, C, W]``,
    iterations, relative residual, converged); ``f`` is ``t`` outside
    ``omega``, bit for bit.
    """
    flag = tol >= 0  # a traced True: the predicate of the CPU fusion boundaries (staged)
    om = omega.astype(jnp.float32)
    img = inimg.astype(jnp.float32)
    # two stages: unstaged, XLA:CPU wrote each shifted copy of the images into a buffer of
    # its own (ten of them) before summing
    fx, fy = staged(partial(_fluxes, guidance), t, guide, img, pred=flag)
    b = staged(_rhs, t, fx, fy, om, img, screen, data, pred=flag)
    lvls = _hierarchy(omega, inimg, screen, levels, flag)
    fine = lvls[0]
    coarse = staged(_coarse_factor, lvls[-1], pred=flag)

    def matvec(x):
        return staged(partial(_apply, fine), x, pred=flag)

    x, it, ok = _pcg(
        matvec,
        lambda r: _vcycle(lvls, coarse, r, flag),
        b,
        None if guidance == "fields" else _blend_start(guide, t, om, img),
        tol=tol,
        atol=atol,
        maxiter=maxiter,
    )
    r = b - matvec(x)
    bn = jnp.sqrt(jnp.sum(b * b, axis=(0, 2)))
    rn = jnp.sqrt(jnp.sum(r * r, axis=(0, 2)))
    rel = jnp.max(jnp.where(bn > 0, rn / jnp.where(bn > 0, bn, 1.0), rn))
    return jnp.where(_c(omega), x, t), it, rel, ok


# --------------------------------------------------------------------------- box / size classes


def _size_class(n: int, levels: int) -> int:
    step = 1 << levels
    return -(-n // step) * step


_COARSEST = 24  # the coarsest grid is at most this many cells per side (dense solve)


def _levels_for(h: int, w: int) -> int:
    m = max(h, w)
    return max(0, math.ceil(math.log2(m / _COARSEST))) if m > _COARSEST else 0


def _box(omega: np.ndarray, *, margin: int = 1):
    ys, xs = np.nonzero(omega.any(1)), np.nonzero(omega.any(0))
    h, w = omega.shape
    y0, y1 = max(int(ys[0][0]) - margin, 0), min(int(ys[0][-1]) + margin + 1, h)
    x0, x1 = max(int(xs[0][0]) - margin, 0), min(int(xs[0][-1]) + margin + 1, w)
    return y0, y1, x0, x1


def binarize_mask(mask) -> tuple[np.ndarray, bool]:
    """Mask -> bool ``[h, w]`` thresholded at 0.5 (of full scale for integer masks).

    Args:
      mask: ``[h, w]`` or ``[h, w, C]`` (the first channel is used; a mask image's
        colour channels are equal), bool, integer or float.

    Returns:
      ``(bool[h, w], was_binary)``; ``was_binary`` is False when some value was
      neither 0 nor full scale, i.e. when thresholding changed something.
    """
    m = np.asarray(mask)
    if m.ndim == 3:
        m = m[..., 0]
    if m.ndim != 2:
        raise InputError(f"mask must be [h, w] or [h, w, C], got shape {m.shape}")
    if m.dtype == np.bool_:
        return m, True
    if np.issubdtype(m.dtype, np.integer):
        full = np.iinfo(m.dtype).max if m.dtype in (np.uint8, np.uint16) else 1
        m = m.astype(np.float32) / np.float32(full)
    m = m.astype(np.float32)
    binary = bool(np.all((m == 0) | (m == 1)))
    return m >= 0.5, binary


def _as_image(x, name) -> np.ndarray:
    a = np.asarray(x)
    if a.dtype.kind in "ui" or a.dtype == np.bool_:
        from imsyn.image import to_float

        a = to_float(a)
    a = a.astype(np.float32, copy=False)
    if a.ndim not in (2, 3) or a.size == 0:
        raise InputError(f"{name} must be a non-empty [H, W] or [H, W, C] image, got {a.shape}")
    if not np.all(np.isfinite(a)):
        raise InputError(f"{name} contains NaN or infinite values")
    return a


def _check_solvable(omega: np.ndarray, screen: float):
    if not omega.any():
        raise InputError("the mask is empty (no pixel >= 0.5)")
    if screen == 0 and omega.all():
        raise InputError(
            "the mask has no boundary pixels (it covers the whole target), so the "
            "solution is not determined"
        )


def _param(name: str, x, field: v.Field):
    """``x`` checked by ``field`` (:func:`imsyn.validate.param`); NumPy scalars (and 0-d
    arrays) count as the Python number they hold, integer fields take any integer type."""
    if isinstance(x, np.ndarray | jax.Array) and x.ndim == 0 or isinstance(x, np.generic):
        x = x.item()
    if field.expect.startswith("an integer") and not isinstance(x, bool):
        try:
            x = operator.index(x)
        except TypeError:
            pass  # refused by the field with its message
    return v.param(name, x, field)


def _params(name: str, xs, field: v.Field, n: int | None = None) -> tuple:
    """``n`` values (if None: one or more, a scalar counts as one), each checked by
    ``field``; one message for a wrong count and for a bad value."""
    count = f"{n} values" if n is not None else "one or more values"
    try:
        items = list(np.asarray(xs, dtype=object).reshape(-1))
        if n is not None and (np.ndim(xs) != 1 or len(items) != n):
            raise ValueError
        if not items:
            raise ValueError
        return tuple(_param(name, x, field) for x in items)
    except (InputError, TypeError, ValueError):
        raise InputError(f"{name} must be {count}, each {field.expect}, got {xs!r}") from None


def _check_solver_args(tol, atol, maxiter):
    """(tol, atol, maxiter) checked: ``TOL`` (``TOL_WITH_ATOL`` when ``atol > 0``), ``ATOL``,
    ``MAXITER``."""
    atol = _param("atol", atol, ATOL)
    tol = _param("tol", tol, TOL_WITH_ATOL if atol > 0 else TOL)
    return tol, atol, _param("maxiter", maxiter, MAXITER)


def solve_guided(
    target,
    gx,
    gy,
    mask,
    *,
    screen: float = 0.0,
    data=None,
    tol: float = DEFAULT_TOL,
    atol: float = 0.0,
    maxiter: int = DEFAULT_MAXITER,
) -> PoissonResult:
    """Solves the masked Poisson problem for an arbitrary guidance field.

    Args:
      target: ``float32[H, W]`` or ``[H, W, C]``: Dirichlet values outside the mask.
      gx: ``float32`` like ``target``: desired ``f[i, j+1] - f[i, j]`` (last column unused).
      gy: ``float32`` like ``target``: desired ``f[i+1, j] - f[i, j]`` (last row unused).
      mask: ``[H, W]`` unknown pixels (bool, or numbers thresholded at 0.5).
      screen: weight ``λ ≥ 0`` of an extra term ``λ‖f - data‖²`` (0: pure Poisson).
      data: like ``target``; required when ``screen > 0``.
      tol: relative residual tolerance per channel (``‖r‖ ≤ tol·‖b‖``), in ``(0, 1)``
        (:data:`TOL`; ``[0, 1)`` when ``atol > 0``).
      atol: absolute residual tolerance (``>= 0``).
      maxiter: CG iteration cap (:data:`MAXITER`).

    Returns:
      :class:`PoissonResult`.

    Raises:
      InputError: shapes disagree, the mask is empty or has no boundary pixels, a numeric
        argument breaks its rule.
    """
    t = _as_image(target, "target")
    gx = np.asarray(gx, np.float32)
    gy = np.asarray(gy, np.float32)
    omega, _ = binarize_mask(mask)
    if gx.shape != t.shape or gy.shape != t.shape:
        raise InputError(f"guidance fields must have the target's shape {t.shape}")
    if omega.shape != t.shape[:2]:
        raise InputError(f"mask shape {omega.shape} does not match target {t.shape[:2]}")
    screen = _param("screen", screen, SCREEN)
    _check_solvable(omega, screen)
    tol, atol, maxiter = _check_solver_args(tol, atol, maxiter)
    d = t if data is None else _as_image(data, "data")
    if d.shape != t.shape:
        raise InputError(f"data shape {d.shape} does not match target {t.shape}")

    return _solve(t, (gx, gy), "fields", omega, screen, d, tol, atol, maxiter)


def _solve(t, guide, kind, omega, screen, data, tol, atol, maxiter) -> PoissonResult:
    """Crops the mask's box (padded to its size class), solves, pastes back.

    ``t``, ``data`` and the arrays in ``guide`` are ``float32[H, W(, C)]`` in the
    target frame, already validated; ``kind`` as in :func:`_guidance`.
    """
    y0, y1, x0, x1 = _box(omega)
    bh, bw = y1 - y0, x1 - x0
    levels = _levels_for(bh, bw)
    ph, pw = _size_class(bh, levels), _size_class(bw, levels)
    c = 1 if t.ndim == 2 else t.shape[2]

    def crop(a):  # -> [ph, c, pw], the solver's layout, zero padded
        out = np.zeros((ph, c, pw), np.float32)
        out[:bh, :, :bw] = a[y0:y1, x0:x1].reshape(bh, bw, c).transpose(0, 2, 1)
        return out

    om = np.zeros((ph, pw), bool)
    om[:bh, :bw] = omega[y0:y1, x0:x1]
    inimg = np.zeros((ph, pw), bool)
    inimg[:bh, :bw] = True
    f, it, res, ok = _solve_box(
        crop(t),
        tuple(crop(g) for g in guide) if isinstance(guide, tuple) else crop(guide),
        om,
        inimg,
        np.float32(screen),
        crop(data) if screen > 0 else None,
        np.float32(tol),
        np.float32(atol),
        guidance=kind,
        levels=levels,
        maxiter=int(maxiter),
    )
    out = t.copy()
    f = np.asarray(f)[:bh, :, :bw].transpose(0, 2, 1)
    out[y0:y1, x0:x1] = f.reshape(out[y0:y1, x0:x1].shape)
    return PoissonResult(out, float(res), int(it), bool(ok))


# --------------------------------------------------------------------------- guidance fields


def _grads(a: np.ndarray):
    gx = np.zeros_like(a)
    gy = np.zeros_like(a)
    gx[:, :-1] = a[:, 1:] - a[:, :-1]
    gy[:-1] = a[1:] - a[:-1]
    return gx, gy


def _luma(a: np.ndarray) -> np.ndarray:
    if a.ndim == 2:
        return a
    if a.shape[-1] >= 3:
        return a[..., :3] @ _LUMA
    return a[..., 0]


def _place(source, target, mask, offset):
    """Source and mask into the target frame. Returns (src_full, omega_full)."""
    s = _as_image(source, "source")
    t = _as_image(target, "target")
    omega, _ = binarize_mask(mask)
    if omega.shape != s.shape[:2]:
        raise InputError(
            f"mask size {omega.shape[1]}x{omega.shape[0]} does not match source size "
            f"{s.shape[1]}x{s.shape[0]}"
        )
    if s.ndim != t.ndim or (s.ndim == 3 and s.shape[-1] != t.shape[-1]):
        raise InputError(
            f"source channels {s.shape[2:]} do not match target channels {t.shape[2:]}"
        )
    if not omega.any():
        raise InputError("the mask is empty (no pixel >= 0.5)")
    H, W = t.shape[:2]
    if offset is None:
        if s.shape[:2] != (H, W):
            raise InputError(
                f"source {s.shape[1]}x{s.shape[0]} and target {W}x{H} differ in size: give an "
                "offset to place the source, or pre-align it"
            )
        return s, omega
    dy, dx = _params("offset", offset, OFFSET, 2)
    ys, xs = np.nonzero(omega)
    if ys.min() + dy < 0 or xs.min() + dx < 0 or ys.max() + dy >= H or xs.max() + dx >= W:
        raise InputError(
            f"the mask lies partly outside the {W}x{H} target after offset (dy={dy}, dx={dx}): "
            f"mask rows {ys.min() + dy}..{ys.max() + dy}, columns {xs.min() + dx}..{xs.max() + dx}"
        )
    # Source in the target frame; outside the source, edge-replicate (zero gradient).
    yy = np.clip(np.arange(H) - dy, 0, s.shape[0] - 1)
    xx = np.clip(np.arange(W) - dx, 0, s.shape[1] - 1)
    s_full = s[yy][:, xx]
    om = np.zeros((H, W), bool)
    sy0, sx0 = max(0, -dy), max(0, -dx)
    ty0, tx0 = max(0, dy), max(0, dx)
    hh = min(s.shape[0] - sy0, H - ty0)
    ww = min(s.shape[1] - sx0, W - tx0)
    om[ty0 : ty0 + hh, tx0 : tx0 + ww] = omega[sy0 : sy0 + hh, sx0 : sx0 + ww]
    return s_full, om


def blend(
    source,
    target,
    mask,
    *,
    offset: tuple[int, int] | None = None,
    mode: str = "poisson",
    magnitude: str = "channel",
    tol: float = DEFAULT_TOL,
    maxiter: int = DEFAULT_MAXITER,
) -> PoissonResult:
    """Poisson (seamless) or mixed-gradient blending of ``source`` into ``target``.

    Args:
      source: ``float32[h, w(, C)]`` in [0, 1] (integer images are converted).
      target: ``float32[H, W(, C)]``, same channel count as ``source``.
      mask: ``[h, w]`` in source coordinates; True/≥0.5 marks the pasted region.
        Holes, several components, thin parts and the image border are all fine.
      offset: ``(dy, dx)`` integers: source pixel (0, 0) lands on target pixel (dy, dx).
        ``None``: source and mask are pre-aligned (same size as the target).
      mode: ``"poisson"``: guidance = source gradients. ``"mixed"``: for each
        pixel pair the source or target difference with the larger magnitude.
      magnitude: for ``"mixed"``: ``"channel"`` compares each channel's
        difference on its own (channels may take their guidance from
        different images); ``"color"`` compares the Euclidean norm over
        channels and takes all channels from one image.
      tol, maxiter: CG tolerance (relative residual per channel, :data:`TOL`) and cap
        (:data:`MAXITER`).

    Returns:
      :class:`PoissonResult`; outside the mask ``image`` equals ``target`` exactly.

    Raises:
      InputError: size/channel mismatch, empty mask, mask outside the target after
        the offset, mask without boundary pixels, unknown mode, a numeric argument
        that breaks its rule.
    """
    if mode not in ("poisson", "mixed"):
        raise InputError(f"mode must be 'poisson' or 'mixed', got {mode!r}")
    tol, _, maxiter = _check_solver_args(tol, 0.0, maxiter)
    t = _as_image(target, "target")
    s, omega = _place(source, t, mask, offset)
    if mode == "poisson":
        kind = "poisson"
    elif magnitude in ("channel", "color"):
        kind = "mixed_channel" if magnitude == "channel" or t.ndim == 2 else "mixed_color"
    else:
        raise InputError(f"magnitude must be 'channel' or 'color', got {magnitude!r}")
    _check_solvable(omega, 0.0)
    return _solve(t, s, kind, omega, 0.0, None, tol, 0.0, maxiter)


def reconstruct(image, *, anchor: tuple[int, int] = (0, 0), tol: float = 1e-7, maxiter: int = 500):
    """Toy problem: rebuilds an image from its x/y gradients plus one pixel value.

    The least-squares problem ``min Σ (f[p+x]-f[p] - gx)² + (f[p+y]-f[p] - gy)²
    + (f[a] - s[a])²`` has normal equations equal to the masked Poisson problem
    with every pixel but the anchor unknown (Neumann at the image border), so
    this is :func:`solve_guided` with that mask. The answer is the image itself.

    Args:
      image: ``float32[H, W(, C)]``.
      anchor: ``(y, x)`` of the pixel whose value is given.
      tol, maxiter: CG settings (the default reaches ~1e-6 absolute error).

    Returns:
      :class:`PoissonResult` whose ``image`` reproduces ``image``.
    """
    ay, ax = _params("anchor", anchor, ANCHOR, 2)
    tol, _, maxiter = _check_solver_args(tol, 0.0, maxiter)
    s = _as_image(image, "image")
    if s.shape[0] * s.shape[1] < 2:
        raise InputError("image must have at least two pixels")
    if not (ay < s.shape[0] and ax < s.shape[1]):
        raise InputError(f"anchor {anchor} is outside the {s.shape[1]}x{s.shape[0]} image")
    omega = np.ones(s.shape[:2], bool)
    omega[ay, ax] = False
    known = np.zeros_like(s)
    known[ay, ax] = s[ay, ax]
    gx, gy = _grads(s)
    return solve_guided(known, gx, gy, omega, tol=tol, maxiter=maxiter)


def monochrome_transfer(
    source, target, mask, *, offset=None, tol=DEFAULT_TOL, maxiter=DEFAULT_MAXITER
) -> PoissonResult:
    """Pastes the source's *structure* only: guidance = gradients of its luma.

    Like OpenCV's ``MONOCHROME_TRANSFER``: every channel of the target gets the
    source's luma gradients, so the pasted region takes its colour from the
    target's boundary. Arguments as in :func:`blend`.
    """
    tol, _, maxiter = _check_solver_args(tol, 0.0, maxiter)
    t = _as_image(target, "target")
    s, omega = _place(source, t, mask, offset)
    lx, ly = _grads(_luma(s))
    if t.ndim == 3:
        lx = np.repeat(lx[..., None], t.shape[-1], -1)
        ly = np.repeat(ly[..., None], t.shape[-1], -1)
    return solve_guided(t, lx, ly, omega, tol=tol, maxiter=maxiter)


def _self_edit_inputs(image, mask):
    f = _as_image(image, "image")
    omega, _ = binarize_mask(mask)
    if omega.shape != f.shape[:2]:
        raise InputError(f"mask shape {omega.shape} does not match image {f.shape[:2]}")
    return f, omega


def flatten_texture(
    image, mask, *, threshold: float = 0.1, tol=DEFAULT_TOL, maxiter=DEFAULT_MAXITER
) -> PoissonResult:
    """Texture flattening: inside the mask keep gradients only across edges.

    A pixel pair keeps its gradient when the luma difference across it or the
    luma gradient magnitude at either end (forward differences) reaches
    ``threshold``; all other guidance is 0, so texture is washed out while
    edges stay (OpenCV's ``textureFlattening`` uses Canny edges instead).

    Args:
      image: ``float32[H, W(, C)]``; also the boundary values.
      mask: ``[H, W]`` region to flatten.
      threshold: edge threshold on luma gradient magnitude, in [0, 1] units
        (:data:`THRESHOLD`: finite, >= 0).
    """
    threshold = _param("threshold", threshold, THRESHOLD)
    tol, _, maxiter = _check_solver_args(tol, 0.0, maxiter)
    f, omega = _self_edit_inputs(image, mask)
    gx, gy = _grads(f)
    lx, ly = _grads(_luma(f))
    mag = np.hypot(lx, ly)
    edge = mag >= threshold
    keep_x = edge.copy()
    keep_x[:, :-1] |= edge[:, 1:]
    keep_y = edge.copy()
    keep_y[:-1] |= edge[1:]
    if f.ndim == 3:
        keep_x, keep_y = keep_x[..., None], keep_y[..., None]
    return solve_guided(f, gx * keep_x, gy * keep_y, omega, tol=tol, maxiter=maxiter)


def change_illumination(
    image, mask, *, alpha: float = 0.2, beta: float = 0.4, tol=DEFAULT_TOL, maxiter=DEFAULT_MAXITER
) -> PoissonResult:
    """Local illumination change (Pérez et al. §4, after Fattal et al.).

    Guidance ``v = a^β |∇f|^{-β} ∇f`` with ``a = alpha · mean over the mask of
    |∇f|`` (per channel, forward differences): large gradients are compressed,
    small ones amplified, which lightens shadows and tones down highlights.
    Defaults follow OpenCV's ``illuminationChange`` (alpha 0.2, beta 0.4); ``alpha`` in
    ``(0, 1000]`` (:data:`ALPHA`), ``beta`` in ``[0, 1)`` (:data:`BETA`).
    """
    alpha = _param("alpha", alpha, ALPHA)
    beta = _param("beta", beta, BETA)
    tol, _, maxiter = _check_solver_args(tol, 0.0, maxiter)
    f, omega = _self_edit_inputs(image, mask)
    gx, gy = _grads(f)
    mag = np.hypot(gx, gy)
    sel = mag[omega]
    a = alpha * float(sel.mean()) if sel.size and sel.mean() > 0 else alpha
    scale = np.where(mag > 1e-6, (a**beta) * np.maximum(mag, 1e-6) ** (-beta), 0.0)
    return solve_guided(f, gx * scale, gy * scale, omega, tol=tol, maxiter=maxiter)


def change_color(
    image, mask, *, factors=(1.5, 0.5, 0.5), tol=DEFAULT_TOL, maxiter=DEFAULT_MAXITER
) -> PoissonResult:
    """Local colour change: the masked region's channels scaled by ``factors``.

    Guidance = gradients of ``image * factors`` (per channel, RGB order), boundary
    from ``image``: the object changes colour while blending seamlessly into
    its surroundings (OpenCV's ``colorChange``; note OpenCV takes BGR factors). One
    factor per channel (3 for RGBA: alpha is kept), each in ``[0, 1000]`` (:data:`FACTOR`).
    """
    factors = _params("factors", factors, FACTOR)
    tol, _, maxiter = _check_solver_args(tol, 0.0, maxiter)
    f, omega = _self_edit_inputs(image, mask)
    k = np.asarray(factors, np.float32).reshape(-1)
    c = 1 if f.ndim == 2 else f.shape[-1]
    if k.size == 3 and c == 4:
        k = np.concatenate([k, [1.0]]).astype(np.float32)
    if k.size != c:
        raise InputError(f"factors must be {c} non-negative numbers, got {list(factors)}")
    g = f * (k if f.ndim == 3 else k[0])
    gx, gy = _grads(g)
    return solve_guided(f, gx, gy, omega, tol=tol, maxiter=maxiter)


def color2gray(
    image,
    *,
    angle: float = 45.0,
    data_weight: float = 1e-3,
    tol: float = DEFAULT_TOL,
    maxiter: int = DEFAULT_MAXITER,
) -> PoissonResult:
    """Contrast-preserving colour to gray in the gradient domain.

    For each pixel pair the guidance is the luma difference, unless the chroma
    difference is larger: then its magnitude, signed by the chroma difference's
    projection on a hue direction ``angle`` (Gooch et al. 2005). Chroma is
    measured on the opponent axes ``((R-G)/√2, (R+G-2B)/√6)`` (orthonormal,
    orthogonal to gray). The result minimises ``Σ (f_p - f_q - v_pq)² +
    data_weight · Σ (f - luma)²``, so isoluminant edges become visible while
    overall intensity stays that of the luma.

    Args:
      image: ``float32[H, W, 3|4]`` RGB(A) (alpha ignored).
      angle: hue direction in degrees that decides the sign of chroma contrast, in
        ``[-360, 360]`` (:data:`ANGLE`).
      data_weight: pull towards the luma, in ``(0, 1e6]`` (:data:`DATA_WEIGHT`; larger:
        closer to plain luma).
      tol, maxiter: CG tolerance (:data:`TOL`) and cap (:data:`MAXITER`).

    Returns:
      :class:`PoissonResult` with ``image`` ``float32[H, W]``.
    """
    angle = _param("angle", angle, ANGLE)
    data_weight = _param("data_weight", data_weight, DATA_WEIGHT)
    tol, _, maxiter = _check_solver_args(tol, 0.0, maxiter)
    f = _as_image(image, "image")
    if f.ndim != 3 or f.shape[-1] < 3:
        raise InputError(f"color2gray needs an RGB(A) image, got shape {f.shape}")
    rgb = f[..., :3]
    lum = rgb @ _LUMA
    c1 = (rgb[..., 0] - rgb[..., 1]) / np.sqrt(2.0)
    c2 = (rgb[..., 0] + rgb[..., 1] - 2 * rgb[..., 2]) / np.sqrt(6.0)
    th = np.deg2rad(angle)
    lx, ly = _grads(lum)
    c1x, c1y = _grads(c1)
    c2x, c2y = _grads(c2)

    def pick(dl, d1, d2):
        dc = np.hypot(d1, d2)
        proj = d1 * np.cos(th) + d2 * np.sin(th)
        sign = np.where(proj != 0, np.sign(proj), np.where(dl != 0, np.sign(dl), 1.0))
        return np.where(np.abs(dl) >= dc, dl, sign * dc).astype(np.float32)

    gx = pick(lx, c1x, c2x)
    gy = pick(ly, c1y, c2y)
    omega = np.ones(lum.shape, bool)
    return solve_guided(lum, gx, gy, omega, screen=data_weight, data=lum, tol=tol, maxiter=maxiter)

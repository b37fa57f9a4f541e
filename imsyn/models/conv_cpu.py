"""Convolution kernels and a fusion barrier tuned for XLA:CPU, used only when running on a CPU.

imsyn's networks are written for accelerators: on a GPU or TPU every convolution is one plain
``lax.conv_general_dilated`` (cuDNN / the TPU convolution emitter do better than any rewrite of
it). XLA:CPU is another matter: its convolutions run far below the machine's GEMM rate for the
shapes of these networks (small channel counts, unpadded borders, kernel gradients that
contract only the batch), and it recomputes elementwise producers once per read when it fuses
them into stencil-like consumers. This module holds the CPU rewrites, all in one place:

* :func:`conv2d`: a ``custom_vjp`` convolution with Winograd F(4×4, 3×3) for wide 3×3 convs,
  per-row GEMM gradients, space-to-depth gradients for stride-2 convs, per-tap GEMM kernel
  gradients and a padding trick for XLA:CPU's slow unpadded convolutions;
* :func:`upconv3x3_x2`: nearest ×2 upsampling + 3×3 conv in sub-pixel form (no upsampled
  copy, 16/36 of the multiply-adds);
* :func:`materialize` / :func:`staged`: a ``lax.cond`` fusion boundary.

Callers never pick a path themselves: :func:`cpu_or_default` is
``jax.lax.platform_dependent(..., cpu=..., default=...)``, so one traced program carries both
paths and each lowering keeps one. A program lowered for ``cuda`` or ``tpu`` contains none of
the code here (no Winograd GEMMs, no conditionals; ``tests/test_accelerator_export.py``), and
on the CPU the compiled program is the one imsyn compiled before the switch existed.
Gradients flow through the switch as through ``lax.switch`` (each lowering keeps the
gradient of its own branch).

Precision: the kernels here compute in float32. A bfloat16 (or float16) input is upcast,
convolved in float32 and the result rounded back to the input's dtype (:func:`conv2d`,
:func:`upconv3x3_x2`), so a mixed-precision program runs on the CPU too; XLA:CPU has no fast
bfloat16 GEMMs and Winograd's transform constants (1/6, 1/24) do not survive bfloat16.
Accelerators never see this: their branch is the plain bfloat16 convolution.
"""

from __future__ import annotations

from functools import partial

import jax
import jax.numpy as jnp
import numpy as np

_DN = ("NHWC", "HWIO", "NHWC")


def cpu_or_default(*args, cpu, default):
    """``cpu(*args)`` in a program that runs on a CPU, ``default(*args)`` anywhere else.

    ``jax.lax.platform_dependent``: both branches are traced; lowering for one platform keeps
    only that platform's branch (a one-branch conditional on a constant, which XLA inlines
    before optimising). Tests replace this function to run the ``default`` path on the CPU.
    """
    return jax.lax.platform_dependent(*args, cpu=cpu, default=default)


def conv_highest(x: jax.Array, w: jax.Array, strides, padding) -> jax.Array:
    """One ``lax`` convolution (NHWC, HWIO) at ``Precision.HIGHEST``: the accelerator path of
    the metrics' networks (no TF32 or bfloat16 passes: the same numbers on GPU and TPU)."""
    return jax.lax.conv_general_dilated(
        x,
        w,
        strides,
        padding,
        dimension_numbers=("NHWC", "HWIO", "NHWC"),
        precision=jax.lax.Precision.HIGHEST,
    )


def _always_true(x: jax.Array) -> jax.Array:
    """A ``True`` that XLA cannot prove: the bits of ``x``'s first element OR 1 are never 0."""
    v = x.reshape(-1)[0]
    probe = jax.lax.bitcast_convert_type(v, jnp.dtype(f"int{8 * v.dtype.itemsize}"))
    return (probe | 1) != 0


def _staged_cpu(fn, *args, pred=None):
    out = jax.eval_shape(fn, *args)
    return jax.lax.cond(
        _always_true(args[0]) if pred is None else pred,
        fn,
        lambda *a: jax.tree.map(lambda s: jnp.zeros(s.shape, s.dtype), out),
        *args,
    )


def materialize(*xs):
    """``xs`` unchanged, each computed into its own buffer first. CPU path only.

    XLA:CPU fuses an elementwise producer (reflect padding, an instance-norm backward, a
    multigrid stencil) into a consumer that reads it at several offsets by recomputing it per
    read: the Winograd input transform reads each input 9 times on average, the row-GEMM
    gradients read ``dy`` and ``xp`` 3 times, and at 128 px the recomputation cost more than
    the GEMMs (18 ms per conv). ``optimization_barrier`` does not stop it; a ``lax.cond``
    boundary does. Its predicate is always true but only known at run time
    (:func:`_always_true`), so XLA cannot fold the conditional away; the other branch is never
    taken. Call it only from code that already runs on the CPU path (inside a ``cpu=`` branch
    of :func:`cpu_or_default`); elsewhere use :func:`staged`.
    """
    return _staged_cpu(lambda *a: a, *xs)


def staged(fn, *args, pred=None):
    """``fn(*args)``, on the CPU computed as a region of its own (a fusion boundary around it).

    On the CPU, ``fn`` runs inside the never-false conditional of :func:`materialize`, so XLA
    neither fuses it into its consumers (recomputing it per read) nor its producers into it.
    ``pred``: a traced scalar ``True`` XLA cannot fold (e.g. ``tol >= 0`` of a traced ``tol``)
    to use as the predicate; computed once outside a loop it saves the per-call probe of
    ``args[0]``'s bits. On accelerators this is plain ``fn(*args)``: no conditional, fusion left
    to XLA.
    """
    return cpu_or_default(*args, cpu=partial(_staged_cpu, fn, pred=pred), default=fn)


def _conv_fwd_impl(x, w, stride, padding):
    """``lax`` convolution, NHWC/HWIO, explicit zero ``padding`` ((top, bottom), (left, right)).

    XLA:CPU runs a convolution without padding ("VALID") 3-10x slower than the same
    convolution with padding (jax 0.10: 3x3, 64->3 channels, 128 px: 80 ms vs 7 ms
    single-threaded). So an unpadded side is padded by ``stride`` zeros inside the convolution
    and the extra ring of outputs is cropped: the same numbers, on the fast path.
    """
    (sh, sw), ((pt, pb), (pl, pr)) = stride, padding
    kh, kw = w.shape[:2]
    oh = (x.shape[1] + pt + pb - kh) // sh + 1
    ow = (x.shape[2] + pl + pr - kw) // sw + 1
    eh, ew = (sh if pt == 0 else 0), (sw if pl == 0 else 0)
    pad = ((pt + eh, pb + eh), (pl + ew, pr + ew))
    y = jax.lax.conv_general_dilated(x, w, stride, pad, dimension_numbers=_DN)
    return y[:, eh // sh : eh // sh + oh, ew // sw : ew // sw + ow]


def _in_float32(fn, x: jax.Array, *args):
    """``fn(x, *args)`` with floating arrays upcast to float32, the result cast to ``x.dtype``
    (nothing is cast when ``x`` is float32: the float32 program is unchanged)."""
    if x.dtype == jnp.float32:
        return fn(x, *args)
    up = [a.astype(jnp.float32) if isinstance(a, jax.Array) else a for a in (x, *args)]
    return fn(*up).astype(x.dtype)


def conv2d(x: jax.Array, w: jax.Array, stride, padding) -> jax.Array:
    """2-D convolution ``[N, H, W, I] * [kh, kw, I, O] -> [N, H', W', O]`` (NHWC, HWIO).

    :func:`_conv2d` in float32; another floating ``x`` (bfloat16) is upcast with ``w``, and
    the result (and, by autodiff of the casts, the input gradient) is rounded to ``x.dtype``.
    """
    return _in_float32(lambda x, w: _conv2d(x, w, stride, padding), x, w)


@partial(jax.custom_vjp, nondiff_argnums=(2, 3))
def _conv2d(x: jax.Array, w: jax.Array, stride, padding) -> jax.Array:
    """2-D convolution ``float32[N, H, W, I] * [kh, kw, I, O] -> [N, H', W', O]`` (NHWC, HWIO).

    The same numbers as ``lax.conv_general_dilated(x, w, stride, padding)`` with explicit zero
    ``padding`` ``((top, bottom), (left, right))`` (both static), up to float rounding, but
    faster on XLA:CPU (per-layer timings in docs/cyclegan.md). CPU path only:

    * forward and input gradient avoid XLA:CPU's slow unpadded convolution (see
      :func:`_conv_fwd_impl`); the input gradient of a stride-2 conv with an even kernel is
      taken through its space-to-depth form (:func:`_s2d_conv`);
    * the kernel gradient is made of GEMMs over ``N*H'*W'`` (:func:`_kernel_grad`) instead of
      XLA's convolution with an ``H'×W'`` kernel that contracts only ``N`` channels per tap
      and runs at ~1/5 of the forward's FLOP rate;
    * stride-1 3×3 convs with >= 128 channels (and 0/1-pixel padding) run forward and both
      gradients by Winograd F(4×4, 3×3) (:func:`_winograd_conv3x3`; ~1e-5 relative rounding
      differences): the input gradient is a 3×3 conv with the flipped kernel
      (:func:`_winograd_input_grad`), the kernel gradient the autodiff of the Winograd
      forward (36 GEMMs over the tiles, 4x fewer multiply-adds than per-tap GEMMs);
    * other stride-1 3×3 convs with >= 64 channels take both gradients as one GEMM per
      kernel row (:func:`_row_gemm_conv`).
    """
    return _conv_forward(x, w, stride, padding)


def _conv2d_fwd(x, w, stride, padding):
    return _conv_forward(x, w, stride, padding), (x, w)


def _conv_forward(x, w, stride, padding):
    if tuple(stride) == (1, 1) and _winograd_ok(w.shape):
        (xp,) = materialize(jnp.pad(x, ((0, 0), *padding, (0, 0))))
        return _winograd_conv3x3(xp, w)
    return _conv_fwd_impl(x, w, stride, padding)


def _conv2d_bwd(stride, padding, res, dy):
    x, w = res
    if tuple(stride) == (1, 1) and _winograd_ok(w.shape) and set(sum(padding, ())) <= {0, 1}:
        xp, dy = materialize(jnp.pad(x, ((0, 0), *padding, (0, 0))), dy)
        _, grad_w = jax.vjp(lambda v: _winograd_conv3x3(xp, v), w)
        return _winograd_input_grad(dy, w, padding), grad_w(dy)[0]
    if tuple(stride) == (1, 1) and _row_gemm_ok(w.shape):
        xp, dy = materialize(jnp.pad(x, ((0, 0), *padding, (0, 0))), dy)
        _, grads = jax.vjp(_row_gemm_conv, xp, w)
        dxp, dw = grads(dy)
        (pt, _), (pl, _) = padding
        return dxp[:, pt : pt + x.shape[1], pl : pl + x.shape[2]], dw
    fwd = _s2d_conv if _s2d_ok(x.shape, w.shape, stride, padding) else _conv_fwd_impl
    _, dx_fn = jax.vjp(lambda v: fwd(v, w, stride, padding), x)
    (dx,) = dx_fn(dy)
    return dx, _kernel_grad(x, dy, w.shape, stride, padding).astype(w.dtype)


def _winograd_input_grad(dy, w, padding):
    """Input gradient of a stride-1 3×3 :func:`conv2d` with 0/1-pixel ``padding``, by Winograd.

    The full gradient of the padded input, ``dxp`` (``[N, H' + 2, W' + 2, I]``), is a 3×3
    convolution of ``dy`` with the flipped kernel (in and out swapped). Its interior
    (``dxp[1:-1, 1:-1]``, the gradient of a 1-pixel zero-padded input) is a same-size conv of
    ``dy`` padded by 1, done by :func:`_winograd_conv3x3`; the border rows and columns a
    0-padded side needs (a reflect-padded input, whose padding is outside the conv) see one
    kernel row or column each and are added by small GEMMs (:func:`_full_conv_1d`). A
    Winograd pass over the whole ``H' + 2`` rows would cost 56 % more at 16×16.
    """
    wt = jnp.flip(w, (0, 1)).transpose(0, 1, 3, 2)  # [3, 3, O, I]
    (dyp,) = materialize(jnp.pad(dy, ((0, 0), (1, 1), (1, 1), (0, 0))))
    dx = _winograd_conv3x3(dyp, wt)  # dxp[1:-1, 1:-1]
    (pt, pb), (pl, pr) = padding
    if not pl:  # left and right columns of the interior rows
        dx = jnp.concatenate([_full_conv_1d(dy[:, :, 0], w[:, 0])[:, 1:-1, None], dx], 2)
    if not pr:
        dx = jnp.concatenate([dx, _full_conv_1d(dy[:, :, -1], w[:, 2])[:, 1:-1, None]], 2)
    lo, hi = (1 if pl else 0), (-1 if pr else None)  # the border rows span the columns kept
    if not pt:
        dx = jnp.concatenate([_full_conv_1d(dy[:, 0], w[0])[:, None, lo:hi], dx], 1)
    if not pb:
        dx = jnp.concatenate([dx, _full_conv_1d(dy[:, -1], w[2])[:, None, lo:hi]], 1)
    return dx


def _full_conv_1d(d, wk):
    """``out[c] = sum_j d[c - j] @ wk[j]^T``; ``d[N, L, O]``, ``wk[3, I, O]`` -> ``[N, L+2, I]``."""
    n, length, cout = d.shape
    s = (d.reshape(n * length, cout) @ wk.transpose(2, 0, 1).reshape(cout, -1)).reshape(
        n, length, 3, -1
    )
    return sum(jnp.pad(s[:, :, j], ((0, 0), (j, 2 - j), (0, 0))) for j in range(3))


# Winograd F(4x4, 3x3) (Lavin & Gray 2016): Y = AT [(G g G^T) * (BT d B)] A per 6x6 input tile.
_WINO_BT = (
    (4, 0, -5, 0, 1, 0),
    (0, -4, -4, 1, 1, 0),
    (0, 4, -4, -1, 1, 0),
    (0, -2, -1, 2, 1, 0),
    (0, 2, -1, -2, 1, 0),
    (0, 4, 0, -5, 0, 1),
)
_WINO_G = (
    (1 / 4, 0, 0),
    (-1 / 6, -1 / 6, -1 / 6),
    (-1 / 6, 1 / 6, -1 / 6),
    (1 / 24, 1 / 12, 1 / 6),
    (1 / 24, -1 / 12, 1 / 6),
    (0, 0, 1),
)
_WINO_AT = ((1, 1, 1, 1, 1, 0), (0, 1, -1, 2, -2, 0), (0, 1, 1, 4, 4, 0), (0, 1, -1, 8, -8, 1))
_WINO_CHUNK = 4096  # output pixels per chunk: keeps the 2.25x larger transformed input in cache


def _kron(m, dtype) -> jax.Array:
    """``M ⊗ M``: the 2-D transform ``M t M^T`` of a flattened tile as one matrix."""
    m = np.asarray(m, np.float64)
    return jnp.asarray(np.kron(m, m), dtype)


def _winograd_ok(wshape) -> bool:
    """Whether a stride-1 conv runs by :func:`_winograd_conv3x3` (forward; and both gradients
    when its padding is 0 or 1 pixel, see :func:`_conv2d_bwd`)."""
    kh, kw, cin, cout = wshape
    return (kh, kw) == (3, 3) and min(cin, cout) >= 128


def _winograd_conv3x3(xp, w):
    """Stride-1 "VALID" 3×3 convolution by Winograd's F(4×4, 3×3).

    Each 6×6 input tile (stride 4) and the kernel are transformed (``BT d B``, ``G g G^T``),
    the 36 transformed positions are 36 GEMMs ``[tiles, I] @ [I, O]`` with 4x fewer
    multiply-adds than the direct convolution, and ``AT m A`` gives each 4×4 output tile.
    The three transforms are GEMMs too, with the Kronecker products ``BT ⊗ BT`` [36, 36],
    ``G ⊗ G`` [36, 9] and ``AT ⊗ AT`` [16, 36] (written as sums of shifted slices they became
    ~70 small XLA fusions per conv; as GEMMs the forward is 10-30 % faster). The images are
    processed in chunks of ~4096 output pixels so the transformed input stays in cache. With
    >= 128 channels this forward is ~2x faster than XLA:CPU's convolution (docs/cyclegan.md);
    float32 results differ from the direct sum by ~1e-5 relative.
    """
    n, hp, wp, cin = xp.shape
    cout = w.shape[-1]
    oh, ow = hp - 2, wp - 2
    th, tw = -(-oh // 4), -(-ow // 4)
    xp = jnp.pad(xp, ((0, 0), (0, 4 * th + 2 - hp), (0, 4 * tw + 2 - wp), (0, 0)))
    u = (_kron(_WINO_G, w.dtype) @ w.reshape(9, cin * cout)).reshape(36, cin, cout)

    def chunk(xc):
        m = xc.shape[0]
        d = [xc[:, k : k + 4 * th : 4, j : j + 4 * tw : 4] for k in range(6) for j in range(6)]
        v = (_kron(_WINO_BT, xc.dtype) @ jnp.stack(d).reshape(36, -1)).reshape(36, m * th * tw, cin)
        prod = jax.lax.dot_general(v, u, (((2,), (1,)), ((0,), (0,))))  # [36, tiles, O]
        y = (_kron(_WINO_AT, prod.dtype) @ prod.reshape(36, -1)).reshape(4, 4, m, th, tw, cout)
        return y.transpose(2, 3, 0, 4, 1, 5).reshape(m, 4 * th, 4 * tw, cout)

    per = max(1, _WINO_CHUNK // (16 * th * tw))
    if n <= per:
        y = chunk(xp)
    else:  # a loop over equal chunks (one copy of the code: compile time)
        k = -(-n // per)
        per = -(-n // k)  # as even as the batch allows: 24 in chunks of 12, not 20 + 4 padding
        xp = jnp.pad(xp, ((0, k * per - n), (0, 0), (0, 0), (0, 0)))
        y = jax.lax.map(chunk, xp.reshape(k, per, *xp.shape[1:]))
        y = y.reshape(k * per, *y.shape[2:])[:n]
    return y[:, :oh, :ow]


def _row_gemm_ok(wshape) -> bool:
    """Whether a stride-1 conv's gradients are taken through :func:`_row_gemm_conv`."""
    kh, kw, cin, cout = wshape
    return (kh, kw) == (3, 3) and min(cin, cout) >= 64


def _row_gemm_conv(xp, w):
    """Stride-1 "VALID" conv of the padded ``xp`` as one GEMM per kernel row.

    Row ``i`` of the kernel applied to the ``oh`` input rows it sees, at *every* column of
    the padded width: ``xp[:, i:i + oh]`` (one copy) times ``w[i]`` laid out ``[I, kw * O]``
    gives, for each column, the contribution of all ``kw`` taps; the output sums tap ``j``'s
    block shifted by ``j`` columns. Its forward is not used (XLA's convolution is faster); its
    autodiff backward is: ``dx`` and ``dw`` become ``2·kh`` large GEMMs over ``N·oh·Wp`` rows,
    with no per-tap copies of the input. For 3×3 convs with 128 channels that was 16–25 %
    faster than XLA's input gradient plus per-tap GEMMs (docs/cyclegan.md); those now take
    Winograd gradients, and this serves 3×3 convs with 64 to 127 channels.
    """
    n, hp, wp, cin = xp.shape
    kh, kw, _, cout = w.shape
    oh, ow = hp - kh + 1, wp - kw + 1
    y = 0.0
    for i in range(kh):
        rows = xp[:, i : i + oh].reshape(n * oh * wp, cin)
        s = (rows @ w[i].transpose(1, 0, 2).reshape(cin, kw * cout)).reshape(n, oh, wp, kw, cout)
        for j in range(kw):
            y = y + s[:, :, j : j + ow, j]
    return y


def _s2d_ok(xshape, wshape, stride, padding) -> bool:
    """Whether a conv can be rewritten by space-to-depth (stride 2, even kernel and size)."""
    hp = xshape[1] + sum(padding[0])
    wp = xshape[2] + sum(padding[1])
    return tuple(stride) == (2, 2) and not (wshape[0] % 2 or wshape[1] % 2 or hp % 2 or wp % 2)


def _space_to_depth(xp):
    n, hp, wp, c = xp.shape
    xs = xp.reshape(n, hp // 2, 2, wp // 2, 2, c).transpose(0, 1, 3, 2, 4, 5)
    return xs.reshape(n, hp // 2, wp // 2, 4 * c)


def _s2d_conv(x, w, stride, padding):
    """A stride-2 conv with an even kernel as a stride-1 conv of the space-to-depth input.

    ``y[a, b] = sum_ij xp[2a + i, 2b + j] w[i, j]`` with ``i = 2u + p``: the padded input's
    2×2 phases become channels and the kernel ``[kh/2, kw/2, 4 I, O]``. Used for the input
    gradient, where XLA's own (a convolution with a dilated input) is ~1.5x slower.
    """
    del stride
    kh, kw, cin, cout = w.shape
    xs = _space_to_depth(jnp.pad(x, ((0, 0), *padding, (0, 0))))
    ws = w.reshape(kh // 2, 2, kw // 2, 2, cin, cout).transpose(0, 2, 1, 3, 4, 5)
    ws = ws.reshape(kh // 2, kw // 2, 4 * cin, cout)
    return _conv_fwd_impl(xs, ws, (1, 1), ((0, 0), (0, 0)))


def _kernel_grad(x, dy, wshape, stride, padding):
    """``dL/dw[kh, kw, I, O]`` of :func:`conv2d` from ``x[N, H, W, I]`` and ``dy[N, H', W', O]``.

    A stride-2 convolution with an even kernel over an even padded size is first rewritten as
    a stride-1 convolution of the space-to-depth input (``[N, Hp/2, Wp/2, 4I]``, kernel
    ``kh/2 × kw/2``); other strided convolutions keep XLA's own kernel gradient.
    """
    kh, kw, cin, cout = wshape
    xp, dy = materialize(jnp.pad(x, ((0, 0), *padding, (0, 0))), dy)  # read once per tap
    if tuple(stride) == (1, 1):
        return _kernel_grad_s1(xp, dy, kh, kw)
    if _s2d_ok(x.shape, wshape, stride, padding):
        dw = _kernel_grad_s1(_space_to_depth(xp), dy, kh // 2, kw // 2)
        dw = dw.reshape(kh // 2, kw // 2, 2, 2, cin, cout).transpose(0, 2, 1, 3, 4, 5)
        return dw.reshape(wshape)
    _, f = jax.vjp(
        lambda w: jax.lax.conv_general_dilated(x, w, stride, padding, dimension_numbers=_DN),
        jnp.zeros(wshape, x.dtype),
    )
    return f(dy)[0]


def _kernel_grad_s1(xp, dy, kh, kw):
    """Kernel gradient of a stride-1 "VALID" convolution of the padded input ``xp``.

    With ``O >= I``: one product ``xp_tap^T @ dy`` per kernel tap (``xp_tap`` = the input
    window the tap sees). With ``O < I`` the shifted copies are made of the smaller ``dy``
    instead (``dy`` placed at every tap offset in a zero frame of ``xp``'s size, all taps side
    by side) and the whole gradient is one product ``xp^T @ [dy_tap0 | dy_tap1 | ...]``.
    """
    n, hp, wp, cin = xp.shape
    _, oh, ow, cout = dy.shape
    if cout < cin:
        frames = [
            jnp.pad(dy, ((0, 0), (i, hp - oh - i), (j, wp - ow - j), (0, 0)))
            for i in range(kh)
            for j in range(kw)
        ]
        dy_all = jnp.concatenate(frames, axis=-1).reshape(-1, kh * kw * cout)
        dw = xp.reshape(-1, cin).T @ dy_all
        return dw.reshape(cin, kh, kw, cout).transpose(1, 2, 0, 3)
    dy2 = dy.reshape(n * oh * ow, cout)
    taps = [
        xp[:, i : i + oh, j : j + ow].reshape(-1, cin).T @ dy2 for i in range(kh) for j in range(kw)
    ]
    return jnp.stack(taps).reshape(kh, kw, cin, cout)


_conv2d.defvjp(_conv2d_fwd, _conv2d_bwd)


def upconv3x3_x2(x, kernel, *, reflect: bool):
    """``conv3x3(pad(upsample_nearest(x, 2)))`` (1-pixel padding, stride 1), sub-pixel form.

    ``x[N, H, W, I]``, ``kernel[3, 3, I, O]`` (cast to ``x.dtype`` after the phase sums) ->
    ``[N, 2H, 2W, O]`` without bias. ``reflect``: reflect padding of the upsampled input (else
    zeros). pad(upsample2(x)) is upsample2 of x padded by one low-resolution pixel
    (edge-replicated for "reflect", zeros for "zeros"), so output phase (p, q) (row parity p,
    column parity q) is a 2x2 conv of that padded x, with the 3x3 taps that read the same
    duplicated pixel summed. Same result without materialising the 4x larger upsampled input
    and with 16/36 of the multiply-adds. Wide outputs: four 2x2 convs; narrow ones (e.g. 3
    RGB channels, where a GEMM with 3 columns is slow on the CPU): one 3x3 conv with 4x the
    outputs (zeros where a phase does not read). A bfloat16 ``x`` is computed in float32 and
    the result rounded to bfloat16.
    """
    return _in_float32(partial(_upconv3x3_x2, reflect=reflect), x, kernel)


def _upconv3x3_x2(x, kernel, *, reflect: bool):
    n, h, w, cin = x.shape
    cout = kernel.shape[-1]
    xe = jnp.pad(x, ((0, 0), (1, 1), (1, 1), (0, 0)), mode="edge" if reflect else "constant")
    if cout >= 16:
        k = jnp.einsum("pui,qvj,ijco->pquvco", _PHASE, _PHASE, kernel).astype(x.dtype)
        ph = [
            [
                conv2d(
                    xe[:, p : p + h + 1, q : q + w + 1],
                    k[p, q, p : p + 2, q : q + 2],
                    (1, 1),
                    ((0, 0), (0, 0)),
                )
                for q in range(2)
            ]
            for p in range(2)
        ]
        y = jnp.stack([jnp.stack(row, 3) for row in ph], 2)  # [N, H, 2, W, 2, C]
    else:
        k = jnp.einsum("pui,qvj,ijco->uvcpqo", _PHASE, _PHASE, kernel)
        k = k.reshape(3, 3, cin, 4 * cout).astype(x.dtype)
        y = conv2d(xe, k, (1, 1), ((0, 0), (0, 0))).reshape(n, h, w, 2, 2, cout)
        y = y.transpose(0, 1, 3, 2, 4, 5)
    return y.reshape(n, 2 * h, 2 * w, cout)


# _PHASE[p, u, i]: output phase p of a nearest x2 upsampling reads low-resolution offset u
# (of the 1-pixel padded input) for tap i of a 3x3 kernel. A NumPy constant: importing
# imsyn must not start a JAX backend (a multi-host run initializes JAX's runtime first).
_PHASE = np.array(
    [[[1, 0, 0], [0, 1, 1], [0, 0, 0]], [[0, 0, 0], [1, 1, 0], [0, 0, 1]]], np.float32
)

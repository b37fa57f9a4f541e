"""Shared NNX building blocks for the image networks (NHWC, PyTorch-exact semantics).

Every layer works on ``float32[N, H, W, C]`` and takes ``rngs: nnx.Rngs``. Padding
follows PyTorch's explicit convention (``padding=p`` pads ``p`` pixels on every side,
``padding_mode="reflect"`` reflects without repeating the edge), and the default
initialisation is PyTorch's (``kaiming_uniform(a=sqrt(5))`` for weights, ``U(-1/sqrt(fan_in),
1/sqrt(fan_in))`` for biases), so a network ported weight-for-weight from PyTorch gives
the same numbers. ``init="dcgan"`` gives the DCGAN paper's ``N(0, 0.02)`` weights and zero
biases.

Kernels are stored ``HWIO`` (``[kh, kw, in, out]``); convert a PyTorch ``OIHW`` weight with
``w.transpose(2, 3, 1, 0)`` (and a ``ConvTranspose2d`` ``IOHW`` weight with
``w.transpose(2, 3, 0, 1)``).
"""

from __future__ import annotations

import math
from functools import partial

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx

_DN = ("NHWC", "HWIO", "NHWC")
INITS = ("pytorch", "dcgan")
NORMS = ("instance", "batch", "none")
PADDING_MODES = ("zeros", "reflect")


def _pair(v) -> tuple[int, int]:
    if isinstance(v, int):
        return (v, v)
    v = tuple(int(a) for a in v)
    if len(v) != 2:
        raise ValueError(f"expected an int or a pair of ints, got {v!r}")
    return v


def _init_params(key, shape, fan_in: int, init: str, use_bias: bool):
    if init not in INITS:
        raise ValueError(f"init must be one of {INITS}, got {init!r}")
    kw, kb = jax.random.split(key)
    if init == "dcgan":
        w = 0.02 * jax.random.normal(kw, shape, jnp.float32)
        b = jnp.zeros((shape[-1],), jnp.float32)
    else:  # PyTorch: kaiming_uniform(a=sqrt(5)) == U(-1/sqrt(fan_in), 1/sqrt(fan_in)); same bias.
        bound = 1.0 / math.sqrt(fan_in) if fan_in > 0 else 0.0
        w = jax.random.uniform(kw, shape, jnp.float32, -bound, bound)
        b = jax.random.uniform(kb, (shape[-1],), jnp.float32, -bound, bound)
    return w, (b if use_bias else None)


def _l2n(v, eps=1e-12):
    return v * jax.lax.rsqrt(jnp.maximum(jnp.sum(v * v), eps * eps))


class _SpectralMixin:
    """Spectral normalisation (Miyato et al. 2018) of ``self.kernel`` by one power iteration.

    The left singular-vector estimate ``u`` lives in an ``nnx.BatchStat`` and is updated only
    while the module is in training mode (``model.train()``, the default); ``model.eval()``
    freezes it. The stored kernel itself is never overwritten.
    """

    def _setup_sn(self, enabled: bool, out_features: int, rngs: nnx.Rngs):
        self.spectral_norm = enabled
        self.use_running_average = False  # toggled by nnx .train()/.eval()
        if enabled:
            u = jax.random.normal(rngs.params(), (out_features,), jnp.float32)
            self.sn_u = nnx.BatchStat(_l2n(u))

    def _kernel(self) -> jax.Array:
        w = self.kernel[...]
        if not self.spectral_norm:
            return w
        mat = w.reshape(-1, w.shape[-1])  # [k*k*in, out]
        u = self.sn_u[...]
        v = _l2n(mat @ u)
        u_new = _l2n(mat.T @ v)
        u_new = jax.lax.stop_gradient(u_new)
        v = jax.lax.stop_gradient(v)
        sigma = v @ (mat @ u_new)
        if not self.use_running_average:
            self.sn_u[...] = u_new
        return w / sigma


class Conv2d(_SpectralMixin, nnx.Module):
    """2-D convolution with PyTorch's explicit padding semantics (NHWC in, NHWC out).

    Args:
      in_features: input channels.
      out_features: output channels.
      kernel_size: int or (kh, kw).
      stride: int or pair.
      padding: pixels added on each side (int or pair), as in ``torch.nn.Conv2d``.
      padding_mode: "zeros" or "reflect" (PyTorch's ``reflect``: edge not repeated).
      use_bias: add a per-channel bias.
      init: "pytorch" (kaiming_uniform a=sqrt(5)) or "dcgan" (N(0, 0.02), zero bias).
      spectral_norm: divide the kernel by its largest singular value (one power iteration).
      rngs: ``nnx.Rngs`` with a ``params`` stream.

    Call: ``float32[N, H, W, in]`` -> ``float32[N, H', W', out]`` with
    ``H' = (H + 2 * pad - kh) // stride + 1``.
    """

    def __init__(
        self,
        in_features: int,
        out_features: int,
        kernel_size,
        *,
        stride=1,
        padding=0,
        padding_mode: str = "zeros",
        use_bias: bool = True,
        init: str = "pytorch",
        spectral_norm: bool = False,
        rngs: nnx.Rngs,
    ):
        if padding_mode not in PADDING_MODES:
            raise ValueError(f"padding_mode must be one of {PADDING_MODES}, got {padding_mode!r}")
        self.in_features = in_features
        self.out_features = out_features
        self.kernel_size = _pair(kernel_size)
        self.stride = _pair(stride)
        self.padding = _pair(padding)
        self.padding_mode = padding_mode
        kh, kw = self.kernel_size
        w, b = _init_params(
            rngs.params(),
            (kh, kw, in_features, out_features),
            in_features * kh * kw,
            init,
            use_bias,
        )
        self.kernel = nnx.Param(w)
        self.bias = nnx.Param(b) if use_bias else None
        self._setup_sn(spectral_norm, out_features, rngs)

    def __call__(self, x: jax.Array) -> jax.Array:
        ph, pw = self.padding
        w = self._kernel().astype(x.dtype)
        if self.padding_mode == "reflect" and (ph or pw):
            x = jnp.pad(x, ((0, 0), (ph, ph), (pw, pw), (0, 0)), mode="reflect")
            ph = pw = 0
        y = conv2d(x, w, self.stride, ((ph, ph), (pw, pw)))
        if self.bias is not None:
            y = y + self.bias[...].astype(y.dtype)
        return y


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


@partial(jax.custom_vjp, nondiff_argnums=(2, 3))
def conv2d(x: jax.Array, w: jax.Array, stride, padding) -> jax.Array:
    """2-D convolution ``float32[N, H, W, I] * [kh, kw, I, O] -> [N, H', W', O]`` (NHWC, HWIO).

    The same numbers as ``lax.conv_general_dilated(x, w, stride, padding)`` with explicit zero
    ``padding`` ``((top, bottom), (left, right))`` (both static), up to float rounding, but
    faster on XLA:CPU (per-layer timings in docs/cyclegan.md):

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


def _materialized(*xs):
    """``xs`` unchanged, each computed into its own buffer first.

    XLA fuses an elementwise producer (reflect padding, an instance-norm backward) into a
    consumer that reads it at several offsets by recomputing it per read: the Winograd input
    transform reads each input 9 times on average, the row-GEMM gradients read ``dy`` and
    ``xp`` 3 times, and at 128 px the recomputation cost more than the GEMMs (18 ms per
    conv). ``optimization_barrier`` does not stop it; a ``lax.cond`` boundary does. Its
    predicate is always true (a float's bits OR 1 is never 0) but only known at run time, so
    XLA cannot fold the conditional away; the other branch is never taken.
    """
    probe = jax.lax.bitcast_convert_type(xs[0].reshape(-1)[0], jnp.int32)
    return jax.lax.cond(
        (probe | 1) != 0,
        lambda *a: a,
        lambda *a: tuple(jnp.zeros_like(v) for v in a),
        *xs,
    )


def _conv2d_fwd(x, w, stride, padding):
    return _conv_forward(x, w, stride, padding), (x, w)


def _conv_forward(x, w, stride, padding):
    if tuple(stride) == (1, 1) and _winograd_ok(w.shape):
        (xp,) = _materialized(jnp.pad(x, ((0, 0), *padding, (0, 0))))
        return _winograd_conv3x3(xp, w)
    return _conv_fwd_impl(x, w, stride, padding)


def _conv2d_bwd(stride, padding, res, dy):
    x, w = res
    if tuple(stride) == (1, 1) and _winograd_ok(w.shape) and set(sum(padding, ())) <= {0, 1}:
        xp, dy = _materialized(jnp.pad(x, ((0, 0), *padding, (0, 0))), dy)
        _, grad_w = jax.vjp(lambda v: _winograd_conv3x3(xp, v), w)
        return _winograd_input_grad(dy, w, padding), grad_w(dy)[0]
    if tuple(stride) == (1, 1) and _row_gemm_ok(w.shape):
        xp, dy = _materialized(jnp.pad(x, ((0, 0), *padding, (0, 0))), dy)
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
    (dyp,) = _materialized(jnp.pad(dy, ((0, 0), (1, 1), (1, 1), (0, 0))))
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
    xp, dy = _materialized(jnp.pad(x, ((0, 0), *padding, (0, 0))), dy)  # read once per tap
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


conv2d.defvjp(_conv2d_fwd, _conv2d_bwd)


class ConvTranspose2d(_SpectralMixin, nnx.Module):
    """Transposed convolution with ``torch.nn.ConvTranspose2d`` semantics (NHWC).

    Output size ``(H - 1) * stride - 2 * padding + kernel_size``. The kernel is stored
    ``[kh, kw, in, out]``; PyTorch's ``IOHW`` weight maps to it by ``transpose(2, 3, 0, 1)``.
    PyTorch's default init uses ``fan_in = out * kh * kw`` for this layer; so does this one.
    """

    def __init__(
        self,
        in_features: int,
        out_features: int,
        kernel_size,
        *,
        stride=1,
        padding=0,
        use_bias: bool = True,
        init: str = "pytorch",
        spectral_norm: bool = False,
        rngs: nnx.Rngs,
    ):
        self.in_features = in_features
        self.out_features = out_features
        self.kernel_size = _pair(kernel_size)
        self.stride = _pair(stride)
        self.padding = _pair(padding)
        kh, kw = self.kernel_size
        w, b = _init_params(
            rngs.params(),
            (kh, kw, in_features, out_features),
            out_features * kh * kw,
            init,
            use_bias,
        )
        self.kernel = nnx.Param(w)
        self.bias = nnx.Param(b) if use_bias else None
        self._setup_sn(spectral_norm, out_features, rngs)

    def __call__(self, x: jax.Array) -> jax.Array:
        kh, kw = self.kernel_size
        ph, pw = self.padding
        k = jnp.flip(self._kernel(), (0, 1)).astype(x.dtype)
        y = jax.lax.conv_general_dilated(
            x,
            k,
            (1, 1),
            ((kh - 1 - ph, kh - 1 - ph), (kw - 1 - pw, kw - 1 - pw)),
            lhs_dilation=self.stride,
            dimension_numbers=_DN,
        )
        if self.bias is not None:
            y = y + self.bias[...].astype(y.dtype)
        return y


def instance_norm(x: jax.Array, scale=None, bias=None, *, eps: float = 1e-5) -> jax.Array:
    """Normalises ``x[N, H, W, C]`` over H and W per example and channel (biased variance).

    Statistics are computed in float32 in one pass (mean and mean of squares), which XLA
    fuses into a single reduction over the activation.
    """
    xf = x.astype(jnp.float32)
    mean = jnp.mean(xf, axis=(1, 2), keepdims=True)
    meansq = jnp.mean(jnp.square(xf), axis=(1, 2), keepdims=True)
    var = jnp.maximum(meansq - jnp.square(mean), 0.0)
    inv = jax.lax.rsqrt(var + eps)
    if scale is not None:
        inv = inv * scale
    y = (xf - mean) * inv
    if bias is not None:
        y = y + bias
    return y.astype(x.dtype)


class InstanceNorm(nnx.Module):
    """Instance normalisation (Ulyanov et al.) over H, W per example and channel.

    Args:
      features: channels C.
      affine: learn a per-channel scale (init 1) and bias (init 0).
      eps: added to the variance.
      rngs: unused (kept for a uniform layer signature).

    Call: ``float32[N, H, W, C]`` -> same shape.
    """

    def __init__(self, features: int, *, affine: bool = True, eps: float = 1e-5, rngs: nnx.Rngs):
        del rngs
        self.features = features
        self.eps = eps
        if affine:
            self.scale = nnx.Param(jnp.ones((features,), jnp.float32))
            self.bias = nnx.Param(jnp.zeros((features,), jnp.float32))
        else:
            self.scale = None
            self.bias = None

    def __call__(self, x: jax.Array) -> jax.Array:
        scale = None if self.scale is None else self.scale[...]
        bias = None if self.bias is None else self.bias[...]
        return instance_norm(x, scale, bias, eps=self.eps)


class Identity(nnx.Module):
    """Returns its input (the "none" normalisation)."""

    def __call__(self, x: jax.Array) -> jax.Array:
        return x


def make_norm(kind: str, features: int, *, rngs: nnx.Rngs) -> nnx.Module:
    """Builds a normalisation layer by name.

    Args:
      kind: "instance" (affine :class:`InstanceNorm`), "batch" (``nnx.BatchNorm`` with
        PyTorch's momentum 0.1 / eps 1e-5; batch statistics in ``.train()`` mode, running
        averages in ``.eval()`` mode) or "none" (:class:`Identity`).
      features: channels.
      rngs: ``nnx.Rngs``.

    Raises:
      ValueError: unknown ``kind``.
    """
    if kind == "instance":
        return InstanceNorm(features, rngs=rngs)
    if kind == "batch":
        return nnx.BatchNorm(
            features, momentum=0.9, epsilon=1e-5, use_running_average=False, rngs=rngs
        )
    if kind == "none":
        return Identity()
    raise ValueError(f"norm must be one of {NORMS}, got {kind!r}")


def upsample_nearest(x: jax.Array, scale: int = 2) -> jax.Array:
    """Nearest-neighbour upsampling of ``[N, H, W, C]`` by an integer ``scale``."""
    n, h, w, c = x.shape
    x = jnp.broadcast_to(x[:, :, None, :, None, :], (n, h, scale, w, scale, c))
    return x.reshape(n, h * scale, w * scale, c)


class UpConv(nnx.Module):
    """Nearest-neighbour ×``scale`` upsampling then a stride-1 conv then a norm.

    Avoids the checkerboard artefacts of transposed convolutions (Odena et al. 2016). The conv
    keeps the spatial size (``padding = kernel_size // 2``). No activation: the caller adds it.

    Call: ``float32[N, H, W, in]`` -> ``float32[N, H*scale, W*scale, out]``.
    """

    def __init__(
        self,
        in_features: int,
        out_features: int,
        *,
        kernel_size: int = 3,
        scale: int = 2,
        norm: str = "instance",
        padding_mode: str = "zeros",
        init: str = "pytorch",
        rngs: nnx.Rngs,
    ):
        self.scale = scale
        self.conv = Conv2d(
            in_features,
            out_features,
            kernel_size,
            padding=kernel_size // 2,
            padding_mode=padding_mode,
            use_bias=norm == "none",  # a bias before a normalisation is redundant
            init=init,
            rngs=rngs,
        )
        self.norm = make_norm(norm, out_features, rngs=rngs)

    def __call__(self, x: jax.Array) -> jax.Array:
        conv = self.conv
        if self.scale != 2 or conv.kernel_size != (3, 3):
            return self.norm(conv(upsample_nearest(x, self.scale)))
        # Sub-pixel form of conv3x3(pad(upsample2(x))): pad(upsample2(x)) is upsample2 of x
        # padded by one low-resolution pixel (edge-replicated for "reflect", zeros for
        # "zeros"), so output phase (p, q) (row parity p, column parity q) is a 2x2 conv of
        # that padded x, with the 3x3 taps that read the same duplicated pixel summed. Same
        # result without materialising the 4x larger upsampled input and with 16/36 of the
        # multiply-adds. Wide outputs: four 2x2 convs; narrow ones (e.g. 3 RGB channels, where
        # a GEMM with 3 columns is slow): one 3x3 conv with 4x the outputs (zeros where a phase
        # does not read).
        n, h, w, cin = x.shape
        mode = "edge" if conv.padding_mode == "reflect" else "constant"
        xe = jnp.pad(x, ((0, 0), (1, 1), (1, 1), (0, 0)), mode=mode)
        cout = conv.out_features
        if cout >= 16:
            k = jnp.einsum("pui,qvj,ijco->pquvco", _PHASE, _PHASE, conv._kernel()).astype(x.dtype)
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
            k = jnp.einsum("pui,qvj,ijco->uvcpqo", _PHASE, _PHASE, conv._kernel())
            k = k.reshape(3, 3, cin, 4 * cout).astype(x.dtype)
            y = conv2d(xe, k, (1, 1), ((0, 0), (0, 0))).reshape(n, h, w, 2, 2, cout)
            y = y.transpose(0, 1, 3, 2, 4, 5)
        y = y.reshape(n, 2 * h, 2 * w, cout)
        if conv.bias is not None:
            y = y + conv.bias[...].astype(y.dtype)
        return self.norm(y)


# _PHASE[p, u, i]: output phase p of a nearest x2 upsampling reads low-resolution offset u
# (of the 1-pixel padded input) for tap i of a 3x3 kernel.
_PHASE = jnp.array(
    [[[1, 0, 0], [0, 1, 1], [0, 0, 0]], [[0, 0, 0], [1, 1, 0], [0, 0, 1]]], jnp.float32
)

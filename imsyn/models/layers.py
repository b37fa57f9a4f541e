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

What runs where: on a GPU or TPU every convolution is one plain ``lax.conv_general_dilated``
(:func:`conv2d_plain`, :func:`upconv3x3_x2_plain`, :class:`ConvTranspose2d`). On a CPU,
:class:`Conv2d` and :class:`UpConv` run the XLA:CPU kernels of :mod:`imsyn.models.conv_cpu`
(Winograd, GEMM gradients, sub-pixel up-convs, fusion barriers). The choice is
``jax.lax.platform_dependent``, made when the program is lowered, so one traced program
serves both and an accelerator's lowering contains none of the CPU code.

Mixed precision: every layer computes in the dtype of its input and keeps float32
parameters. Feed ``bfloat16`` activations and the convolutions run in bfloat16 (kernels and
biases cast to the input's dtype inside the call, so gradients come back float32 for the
float32 parameters); normalisation statistics are computed in float32 (:func:`instance_norm`,
:class:`BatchNorm`) and the normalised activation is cast back. On an accelerator a bfloat16
convolution is one bfloat16 ``lax.conv_general_dilated``; the CPU kernels compute it in
float32 and round the result (:func:`imsyn.models.conv_cpu.conv2d`). A float32 input runs
exactly the float32 program. :data:`DTYPES` names the compute dtypes a config may choose.
"""

from __future__ import annotations

import math
from functools import partial

import jax
import jax.numpy as jnp
from flax import nnx

from imsyn.models import conv_cpu

_DN = ("NHWC", "HWIO", "NHWC")
INITS = ("pytorch", "dcgan")
NORMS = ("instance", "batch", "none")
PADDING_MODES = ("zeros", "reflect")
#: compute dtypes of ``config.dtype`` / ``--dtype`` (parameters and optimizer state stay float32)
DTYPES = ("float32", "bfloat16")


def compute_dtype(name: str) -> jnp.dtype:
    """The ``jnp`` dtype of a :data:`DTYPES` name.

    Raises:
      ValueError: a name not in :data:`DTYPES`.
    """
    if name not in DTYPES:
        raise ValueError(f"dtype must be one of {DTYPES}, got {name!r}")
    return jnp.dtype(name)


def apply_in(fn, x: jax.Array, dtype) -> jax.Array:
    """``fn(x)`` computed in ``dtype``, returned as float32: ``x`` is cast to ``dtype`` on the
    way in and the output to float32 on the way out (losses stay float32). With a float32
    ``dtype`` this is exactly ``fn(x)`` (no cast is traced)."""
    dtype = jnp.dtype(dtype)
    if dtype == jnp.float32:
        return fn(x)
    return fn(x.astype(dtype)).astype(jnp.float32)


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


def conv2d(x: jax.Array, w: jax.Array, stride, padding) -> jax.Array:
    """2-D convolution ``[N, H, W, I] * [kh, kw, I, O] -> [N, H', W', O]`` (NHWC, HWIO).

    ``lax.conv_general_dilated(x, w, stride, padding)`` with explicit zero ``padding``
    ``((top, bottom), (left, right))`` (both static): exactly that on accelerators; on a CPU
    the same numbers up to float rounding by :func:`imsyn.models.conv_cpu.conv2d` (XLA:CPU
    rewrites; the choice is ``jax.lax.platform_dependent``, made when the program is lowered).
    """
    stride = tuple(stride)
    padding = tuple(tuple(p) for p in padding)
    return conv_cpu.cpu_or_default(
        x,
        w,
        cpu=lambda x, w: conv_cpu.conv2d(x, w, stride, padding),
        default=lambda x, w: conv2d_plain(x, w, stride, padding),
    )


def conv2d_plain(x: jax.Array, w: jax.Array, stride, padding) -> jax.Array:
    """The accelerator path of :func:`conv2d`: one ``lax.conv_general_dilated``."""
    return jax.lax.conv_general_dilated(x, w, stride, padding, dimension_numbers=_DN)


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


class BatchNorm(nnx.BatchNorm):
    """``nnx.BatchNorm`` that returns its input's dtype: a bfloat16 activation is normalised
    in float32 (statistics, running averages and the affine transform) and cast back. On a
    float32 input it is exactly ``nnx.BatchNorm``."""

    def __call__(self, x: jax.Array, **kwargs) -> jax.Array:
        if x.dtype == jnp.float32:
            return super().__call__(x, **kwargs)
        return super().__call__(x.astype(jnp.float32), **kwargs).astype(x.dtype)


class Identity(nnx.Module):
    """Returns its input (the "none" normalisation)."""

    def __call__(self, x: jax.Array) -> jax.Array:
        return x


def make_norm(kind: str, features: int, *, rngs: nnx.Rngs) -> nnx.Module:
    """Builds a normalisation layer by name.

    Args:
      kind: "instance" (affine :class:`InstanceNorm`), "batch" (:class:`BatchNorm` with
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
        return BatchNorm(features, momentum=0.9, epsilon=1e-5, use_running_average=False, rngs=rngs)
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
        reflect = conv.padding_mode == "reflect"
        y = conv_cpu.cpu_or_default(
            x,
            conv._kernel(),
            cpu=partial(conv_cpu.upconv3x3_x2, reflect=reflect),
            default=partial(upconv3x3_x2_plain, reflect=reflect),
        )
        if conv.bias is not None:
            y = y + conv.bias[...].astype(y.dtype)
        return self.norm(y)


def upconv3x3_x2_plain(x: jax.Array, kernel: jax.Array, *, reflect: bool) -> jax.Array:
    """``conv3x3(pad(upsample_nearest(x, 2)))``, no bias: PyTorch's ``Upsample`` + ``Conv2d``
    (1-pixel reflect or zero padding) as written; the accelerator path of :class:`UpConv`
    (on a CPU: :func:`imsyn.models.conv_cpu.upconv3x3_x2`)."""
    xu = upsample_nearest(x, 2)
    pad = ((1, 1), (1, 1))
    if reflect:
        xu = jnp.pad(xu, ((0, 0), *pad, (0, 0)), mode="reflect")
        pad = ((0, 0), (0, 0))
    return conv2d_plain(xu, kernel.astype(x.dtype), (1, 1), pad)

"""A small style-based generator (StyleGAN2-like) with latent spaces z, w and w+.

``z -> mapping MLP -> w``; a learned constant 4x4 input; synthesis blocks of
nearest x2 up-sampling and 3x3 *modulated, demodulated* convolutions (each
conv's input channels are scaled by a style ``s = A(w) + 1``, its output
renormalised to unit expected variance); "skip" RGB outputs (a 1x1 modulated
conv per resolution, not demodulated) summed over resolutions, scaled, then ``tanh``.

Every modulated layer reads its own row of ``ws`` (``[N, num_ws, w_dim]``):
the same ``w`` broadcast to all rows is the ``w`` space, independent rows are
``w+``. As in StyleGAN2 a ToRGB layer shares the row of the next block's first
conv, so ``num_ws = num_convs + 1``.

There is no per-pixel noise input: the generator is a deterministic function
of its latent, which is what projection and editing need. Weights use the
equalized learning rate of StyleGAN (stored N(0, 1), scaled by
``1/sqrt(fan_in)`` at run time; the mapping network also by ``lr_mul``).

Same call signature as the DCGAN generator::

    G = StyleGenerator(image_size=32, conv_dim=16, rngs=nnx.Rngs(0))
    x = G(z)                      # z: [N, z_dim] -> [N, 32, 32, 3] in [-1, 1]
    w = G.mapping(z)              # [N, w_dim]
    x = G.synthesis(G.broadcast(w))   # == G(z)
"""

from __future__ import annotations

import math

import jax
import jax.numpy as jnp
from flax import nnx

from imsyn.models import register

_LRELU_GAIN = math.sqrt(2.0)


def _lrelu(x):
    return jax.nn.leaky_relu(x, 0.2) * _LRELU_GAIN


def _pixel_norm(z, eps=1e-8):
    return z * jax.lax.rsqrt(jnp.mean(jnp.square(z), axis=-1, keepdims=True) + eps)


class EqualLinear(nnx.Module):
    """Dense layer with equalized learning rate: ``x @ (W * lr_mul / sqrt(in)) + b * lr_mul``."""

    def __init__(
        self,
        in_features: int,
        out_features: int,
        *,
        bias_init: float = 0.0,
        lr_mul: float = 1.0,
        rngs: nnx.Rngs,
    ):
        self.weight = nnx.Param(
            jax.random.normal(rngs.params(), (in_features, out_features)) / lr_mul
        )
        self.bias = nnx.Param(jnp.full((out_features,), bias_init / lr_mul, jnp.float32))
        self.scale = lr_mul / math.sqrt(in_features)
        self.lr_mul = lr_mul

    def __call__(self, x: jax.Array) -> jax.Array:
        return x @ (self.weight[...] * self.scale) + self.bias[...] * self.lr_mul


class ModulatedConv(nnx.Module):
    """k x k convolution whose input channels are modulated per example by a style from ``w``.

    ``y = conv(x * s, W) * d`` with ``s = A(w)`` (bias 1) and, when ``demodulate``,
    ``d = 1 / sqrt(sum_{k,k,cin} (W s)^2 + eps)``: identical to convolving with
    the per-example weight ``W * s * d`` (StyleGAN2), but one shared conv for the batch.
    """

    def __init__(
        self,
        in_features: int,
        out_features: int,
        w_dim: int,
        *,
        kernel_size: int = 3,
        demodulate: bool = True,
        rngs: nnx.Rngs,
    ):
        k = kernel_size
        self.affine = EqualLinear(w_dim, in_features, bias_init=1.0, rngs=rngs)
        self.weight = nnx.Param(jax.random.normal(rngs.params(), (k, k, in_features, out_features)))
        self.bias = nnx.Param(jnp.zeros((out_features,), jnp.float32))
        self.scale = 1.0 / math.sqrt(in_features * k * k)
        self.demodulate = demodulate

    def __call__(self, x: jax.Array, w: jax.Array) -> jax.Array:
        """x: float[N, H, W, Cin]; w: float[N, w_dim] -> float[N, H, W, Cout]."""
        s = self.affine(w)  # [N, Cin]
        weight = self.weight[...] * self.scale
        y = jax.lax.conv_general_dilated(
            x * s[:, None, None, :],
            weight,
            window_strides=(1, 1),
            padding="SAME",
            dimension_numbers=("NHWC", "HWIO", "NHWC"),
        )
        if self.demodulate:
            wsq = jnp.sum(jnp.square(weight), axis=(0, 1))  # [Cin, Cout]
            d = jax.lax.rsqrt(jnp.square(s) @ wsq + 1e-8)  # [N, Cout]
            y = y * d[:, None, None, :]
        return y + self.bias[...]


def _upsample(x: jax.Array) -> jax.Array:
    """Nearest-neighbour x2 on NHWC."""
    return jnp.repeat(jnp.repeat(x, 2, axis=1), 2, axis=2)


@register("style_generator")
class StyleGenerator(nnx.Module):
    """Style-based generator ``z [N, z_dim] -> [N, S, S, 3]`` in ``[-1, 1]``.

    Args:
      image_size: output size S, a power of two >= 8.
      conv_dim: base width; channels are ``conv_dim * 8`` at 4x4, halving per
        resolution down to ``conv_dim`` (as in the DCGAN generator).
      z_dim: dimension of z (100 like the DCGAN generator).
      w_dim: dimension of w.
      mapping_layers: depth of the mapping MLP.
      lr_mul: learning-rate multiplier of the mapping network (StyleGAN: 0.01).
      rngs: parameter initialisation.
    """

    def __init__(
        self,
        *,
        image_size: int = 64,
        conv_dim: int = 32,
        z_dim: int = 100,
        w_dim: int = 128,
        mapping_layers: int = 4,
        lr_mul: float = 0.01,
        rngs: nnx.Rngs,
    ):
        if image_size < 8 or image_size & (image_size - 1):
            raise ValueError(f"image_size must be a power of two >= 8, got {image_size}")
        for name, v in (("conv_dim", conv_dim), ("z_dim", z_dim), ("w_dim", w_dim)):
            if v < 1:
                raise ValueError(f"{name} must be positive, got {v}")
        if mapping_layers < 1:
            raise ValueError(f"mapping_layers must be >= 1, got {mapping_layers}")
        self.image_size = image_size
        self.z_dim = z_dim
        self.w_dim = w_dim
        self.mapping_net = nnx.List(
            [
                EqualLinear(z_dim if i == 0 else w_dim, w_dim, lr_mul=lr_mul, rngs=rngs)
                for i in range(mapping_layers)
            ]
        )
        n_up = int(math.log2(image_size)) - 2
        chans = [conv_dim * 2 ** max(0, 3 - i) for i in range(n_up + 1)]
        self.const = nnx.Param(jax.random.normal(rngs.params(), (4, 4, chans[0])))
        self.conv0 = ModulatedConv(chans[0], chans[0], w_dim, rngs=rngs)
        self.rgb0 = ModulatedConv(chans[0], 3, w_dim, kernel_size=1, demodulate=False, rngs=rngs)
        self.convs_a = nnx.List(
            [ModulatedConv(chans[i], chans[i + 1], w_dim, rngs=rngs) for i in range(n_up)]
        )
        self.convs_b = nnx.List(
            [ModulatedConv(chans[i + 1], chans[i + 1], w_dim, rngs=rngs) for i in range(n_up)]
        )
        self.rgbs = nnx.List(
            [
                ModulatedConv(chans[i + 1], 3, w_dim, kernel_size=1, demodulate=False, rngs=rngs)
                for i in range(n_up)
            ]
        )
        self.n_up = n_up
        # The summed RGB skips have variance ~(n_up + 1) at init; start tanh in its linear range.
        self.rgb_gain = 0.5 / math.sqrt(n_up + 1)

    @property
    def num_ws(self) -> int:
        """Rows of a w+ latent: one per conv layer, plus one for the last ToRGB."""
        return 2 + 2 * self.n_up

    def mapping(self, z: jax.Array) -> jax.Array:
        """z: float[N, z_dim] (or [N, 1, 1, z_dim]) -> w: float32[N, w_dim]."""
        z = jnp.reshape(z, (z.shape[0], -1)).astype(jnp.float32)
        if z.shape[1] != self.z_dim:
            raise ValueError(f"z must have {self.z_dim} features, got shape {z.shape}")
        x = _pixel_norm(z)
        for layer in self.mapping_net:
            x = _lrelu(layer(x))
        return x

    def broadcast(self, w: jax.Array) -> jax.Array:
        """w: float[N, w_dim] -> w+: float[N, num_ws, w_dim] (the same w in every row)."""
        return jnp.broadcast_to(w[:, None, :], (w.shape[0], self.num_ws, w.shape[-1]))

    def synthesis(self, ws: jax.Array) -> jax.Array:
        """ws: float[N, num_ws, w_dim] (w+) -> images float32[N, S, S, 3] in [-1, 1]."""
        if ws.ndim != 3 or ws.shape[1:] != (self.num_ws, self.w_dim):
            raise ValueError(
                f"ws must be [N, {self.num_ws}, {self.w_dim}] (w+), got shape {tuple(ws.shape)}"
            )
        n = ws.shape[0]
        x = jnp.broadcast_to(self.const[...], (n, *self.const.shape))
        x = _lrelu(self.conv0(x, ws[:, 0]))
        rgb = self.rgb0(x, ws[:, 1])
        for i in range(self.n_up):
            x = _upsample(x)
            x = _lrelu(self.convs_a[i](x, ws[:, 1 + 2 * i]))
            x = _lrelu(self.convs_b[i](x, ws[:, 2 + 2 * i]))
            rgb = _upsample(rgb) + self.rgbs[i](x, ws[:, 3 + 2 * i])
        return jnp.tanh(rgb * self.rgb_gain)

    def __call__(self, z: jax.Array) -> jax.Array:
        """z: float[N, z_dim] (or [N, 1, 1, z_dim]) -> images float32[N, S, S, 3] in [-1, 1]."""
        return self.synthesis(self.broadcast(self.mapping(z)))

    def mean_w(self, key: jax.Array, n: int = 10_000) -> jax.Array:
        """Mean of ``mapping(z)`` over ``n`` samples z ~ N(0, I): float32[w_dim]."""
        if n < 1:
            raise ValueError(f"n must be positive, got {n}")
        z = jax.random.normal(key, (n, self.z_dim))
        return jnp.mean(self.mapping(z), axis=0)

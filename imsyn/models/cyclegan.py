"""CycleGAN networks (NNX, NHWC): the ResNet generator and PatchGAN discriminators.

* ``"cycle_resnet"`` — :class:`CycleGenerator`, the course's generator: two stride-2 4×4
  convs (encoder), ``n_blocks`` residual blocks at 1/4 resolution, two up-convs (nearest ×2 +
  3×3 conv, no checkerboard artefacts), instance norm, ReLU, tanh output in ``[-1, 1]``.
  Residual blocks follow the reference PyTorch repo (conv-norm-ReLU-conv-norm with reflect
  padding); ``block_convs=1`` gives the course's single-conv block. ``skip="unet"`` adds
  pix2pix's U-Net skip around the bottleneck (the encoder's half-resolution features join the
  decoder's).
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
from flax import nnx

from imsyn.models import register
from imsyn.models.layers import Conv2d, UpConv, make_norm

#: generator skip connections: none (the course's) or a U-Net skip around the bottleneck
SKIPS = ("none", "unet")


class ResnetBlock(nnx.Module):
    """``x + body(x)`` with ``body`` = [reflect-pad 3×3 conv, norm, ReLU] × ``convs`` (no
    ReLU after the last norm when ``convs == 2``, as in the reference repo)."""

    def __init__(self, dim: int, *, norm: str, padding_mode: str, convs: int, rngs: nnx.Rngs):
        self.convs = nnx.List(
            [
                Conv2d(
                    dim,
                    dim,
                    3,
                    padding=1,
                    padding_mode=padding_mode,
                    use_bias=norm == "none",
                    rngs=rngs,
                )
                for _ in range(convs)
            ]
        )
        self.norms = nnx.List([make_norm(norm, dim, rngs=rngs) for _ in range(convs)])

    def __call__(self, x: jax.Array) -> jax.Array:
        h = x
        n = len(self.convs)
        for i, (conv, norm) in enumerate(zip(self.convs, self.norms, strict=True)):
            h = norm(conv(h))
            if n == 1 or i < n - 1:
                h = jax.nn.relu(h)
        return x + h


@register("cycle_resnet")
class CycleGenerator(nnx.Module):
    """The CycleGAN ResNet generator (image size must be a multiple of 4).

    Args:
      in_channels: input channels (3 for RGB).
      out_channels: output channels.
      conv_dim: width of the first layer (64 in the paper, 32 in the course).
      n_blocks: residual blocks at 1/4 resolution (3 for 32–64 px, 6 for 128, 9 for 256).
      norm: "instance" (default), "batch" or "none".
      padding_mode: padding of the 3×3 convs, "reflect" (reference repo) or "zeros".
      block_convs: convs per residual block: 2 (reference repo) or 1 (course).
      skip: "none" (the course's generator) or "unet": the encoder's half-resolution
        features are concatenated to the decoder's before the last up-conv (pix2pix's U-Net
        skip), so detail need not pass through the 1/4-resolution bottleneck.
      rngs: ``nnx.Rngs``.

    Call: ``float32[N, H, W, in_channels]`` in ``[-1, 1]`` ->
    ``float32[N, H, W, out_channels]`` in ``(-1, 1)``.
    """

    def __init__(
        self,
        *,
        in_channels: int = 3,
        out_channels: int = 3,
        conv_dim: int = 64,
        n_blocks: int = 3,
        norm: str = "instance",
        padding_mode: str = "reflect",
        block_convs: int = 2,
        skip: str = "none",
        rngs: nnx.Rngs,
    ):
        if skip not in SKIPS:
            raise ValueError(f"skip must be one of {SKIPS}, got {skip!r}")
        if n_blocks < 0:
            raise ValueError(f"n_blocks must be >= 0, got {n_blocks}")
        if block_convs not in (1, 2):
            raise ValueError(f"block_convs must be 1 or 2, got {block_convs}")
        bias = norm == "none"
        d = conv_dim
        self.conv1 = Conv2d(in_channels, d, 4, stride=2, padding=1, use_bias=bias, rngs=rngs)
        self.norm1 = make_norm(norm, d, rngs=rngs)
        self.conv2 = Conv2d(d, 2 * d, 4, stride=2, padding=1, use_bias=bias, rngs=rngs)
        self.norm2 = make_norm(norm, 2 * d, rngs=rngs)
        self.blocks = nnx.List(
            [
                ResnetBlock(
                    2 * d, norm=norm, padding_mode=padding_mode, convs=block_convs, rngs=rngs
                )
                for _ in range(n_blocks)
            ]
        )
        self.up1 = UpConv(2 * d, d, norm=norm, padding_mode=padding_mode, rngs=rngs)
        up2_in = 2 * d if skip == "unet" else d  # U-Net: the encoder's 1/2-scale features too
        self.up2 = UpConv(up2_in, out_channels, norm="none", padding_mode=padding_mode, rngs=rngs)
        self.skip = skip

    def __call__(self, x: jax.Array) -> jax.Array:
        if x.ndim != 4 or x.shape[1] % 4 or x.shape[2] % 4:
            raise ValueError(f"expected [N, H, W, C] with H, W multiples of 4, got {x.shape}")
        e1 = jax.nn.relu(self.norm1(self.conv1(x)))
        h = jax.nn.relu(self.norm2(self.conv2(e1)))
        for block in self.blocks:
            h = block(h)
        h = jax.nn.relu(self.up1(h))
        if self.skip == "unet":
            h = jnp.concatenate([h, e1], axis=-1)
        h = self.up2(h)
        return jnp.tanh(h)


class _ConvStack(nnx.Module):
    """Convs with LeakyReLU(0.2) between them; no norm on the first layer, none on the last."""

    def __init__(self, specs, *, norm: str, spectral_norm: bool, rngs: nnx.Rngs):
        # specs: list of (in, out, stride); every conv is 4×4 with padding 1.
        n = len(specs)
        self.convs = nnx.List(
            [
                Conv2d(
                    cin,
                    cout,
                    4,
                    stride=s,
                    padding=1,
                    use_bias=(i == 0 or i == n - 1 or norm == "none"),
                    spectral_norm=spectral_norm,
                    rngs=rngs,
                )
                for i, (cin, cout, s) in enumerate(specs)
            ]
        )
        self.norms = nnx.List(
            [make_norm(norm if 0 < i < n - 1 else "none", specs[i][1], rngs=rngs) for i in range(n)]
        )

    def __call__(self, x: jax.Array) -> jax.Array:
        n = len(self.convs)
        for i, (conv, norm) in enumerate(zip(self.convs, self.norms, strict=True)):
            x = norm(conv(x))
            if i < n - 1:
                x = jax.nn.leaky_relu(x, 0.2)
        return x


@register("patch_discriminator")
class PatchDiscriminator(nnx.Module):
    """The course's PatchGAN: four stride-2 4×4 convs, ``H/16 × W/16`` logits (4×4 at 64 px).

    Args:
      in_channels: image channels.
      conv_dim: width of the first layer; then ×2, ×4, then 1 logit channel.
      norm: "instance" (default), "batch" or "none" (layers 2 and 3).
      spectral_norm: spectral-normalise every conv.
      rngs: ``nnx.Rngs``.

    Call: ``float32[N, H, W, C]`` (H, W multiples of 16) -> ``float32[N, H/16, W/16, 1]`` logits.
    """

    def __init__(
        self,
        *,
        in_channels: int = 3,
        conv_dim: int = 64,
        norm: str = "instance",
        spectral_norm: bool = False,
        rngs: nnx.Rngs,
    ):
        d = conv_dim
        specs = [(in_channels, d, 2), (d, 2 * d, 2), (2 * d, 4 * d, 2), (4 * d, 1, 2)]
        self.net = _ConvStack(specs, norm=norm, spectral_norm=spectral_norm, rngs=rngs)

    def __call__(self, x: jax.Array) -> jax.Array:
        return self.net(x)


@register("patch70_discriminator")
class Patch70Discriminator(nnx.Module):
    """pix2pix's 70×70 PatchGAN (``NLayerDiscriminator``, 3 layers): 30×30 logits at 256 px.

    Three stride-2 4×4 convs (``d, 2d, 4d``), a stride-1 4×4 conv to ``8d``, a stride-1 4×4
    conv to one logit channel. Output ``(H/8 - 2) × (W/8 - 2)``; needs H, W >= 32.

    Args: as :class:`PatchDiscriminator`.
    """

    def __init__(
        self,
        *,
        in_channels: int = 3,
        conv_dim: int = 64,
        norm: str = "instance",
        spectral_norm: bool = False,
        rngs: nnx.Rngs,
    ):
        d = conv_dim
        specs = [
            (in_channels, d, 2),
            (d, 2 * d, 2),
            (2 * d, 4 * d, 2),
            (4 * d, 8 * d, 1),
            (8 * d, 1, 1),
        ]
        self.net = _ConvStack(specs, norm=norm, spectral_norm=spectral_norm, rngs=rngs)

    def __call__(self, x: jax.Array) -> jax.Array:
        return self.net(x)

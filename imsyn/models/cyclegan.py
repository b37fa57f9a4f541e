"""CycleGAN networks (NNX, NHWC): the ResNet generator and PatchGAN discriminators.

* ``"cycle_resnet"`` — :class:`CycleGenerator`, the course's generator: two stride-2 4×4
  convs (encoder), ``n_blocks`` residual blocks at 1/4 resolution, two up-convs (nearest ×2 +
  3×3 conv, no checkerboard artefacts), instance norm, ReLU, tanh output in ``[-1, 1]``.
  Residual blocks follow the reference PyTorch repo (conv-norm-ReLU-conv-norm with reflect
  padding); ``block_convs=1`` gives the course's single-conv block. ``skip="unet"`` adds
  pix2pix's U-Net skip around the bottleneck (the encoder's half-resolution features join the
  decoder's); ``skip="unet_full"`` also passes the input at full resolution to a last 3×3
  conv. ``align="zoom"`` puts a fixed zoom about the centre in front of the network
  (:class:`Framing`, one scale for the domain pair, measured from the training images), for
  domains that frame their subject differently (OpenMoji draws its art smaller inside the
  tile than Twemoji).
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
from flax import nnx

from imsyn.models import register
from imsyn.models.layers import Conv2d, UpConv, make_norm

#: generator skip connections: none (the course's), a U-Net skip around the bottleneck, or that
#: and the input at full resolution
SKIPS = ("none", "unet", "unet_full")
#: generator alignment: none, or a fixed zoom of the input (measured, not trained)
ALIGNS = ("none", "zoom")


class Framing(nnx.Variable):
    """The log scale of a generator's input zoom: state, not a parameter (no gradient, no
    optimizer); set from the training data's framing (``imsyn.tasks.cyclegan.set_zoom``)."""


def _interp_matrix(n: int, src: jax.Array) -> jax.Array:
    """``[N, n, n]`` linear-interpolation rows: output pixel ``i`` of image ``b`` reads source
    position ``src[b, i]`` (in pixels, clamped to the edge: the border pixel is repeated)."""
    src = jnp.clip(src, 0.0, n - 1.0)
    k = jnp.arange(n, dtype=src.dtype)
    return jnp.maximum(0.0, 1.0 - jnp.abs(src[..., None] - k))


def zoom(images: jax.Array, log_scale: jax.Array) -> jax.Array:
    """Each image scaled by ``exp(log_scale)`` about its centre (bilinear).

    Args:
      images: ``[N, H, W, C]``.
      log_scale: ``[N]`` or a scalar; negative shrinks (the uncovered border repeats the edge
        pixels), positive enlarges (the centre is kept).

    Differentiable in both; ``log_scale = 0`` returns the images exactly.
    """
    n, h, w, _ = images.shape
    s = jnp.broadcast_to(jnp.exp(log_scale), (n,))[:, None]

    def matrix(size):  # output pixel centre -> source position (pixels), about the centre
        u = jnp.arange(size, dtype=images.dtype) + 0.5 - size / 2
        return _interp_matrix(size, u[None] / s + size / 2 - 0.5)

    return jnp.einsum("nij,njkc,nlk->nilc", matrix(h), images, matrix(w))


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
      skip: "none" (the course's generator); "unet": the encoder's half-resolution
        features are concatenated to the decoder's before the last up-conv (pix2pix's U-Net
        skip), so detail need not pass through the 1/4-resolution bottleneck; "unet_full":
        also the input itself, at full resolution, concatenated to the last up-conv's
        ``conv_dim // 2`` features before a final 3×3 conv (pix2pix's outermost skip), so
        edges need not be rebuilt from half resolution.
      align: "none", or "zoom": the input is first scaled about its centre by a fixed
        amount (:func:`zoom` by the :class:`Framing` variable ``zoom``, 1 until set) —
        :meth:`frame` — and then restyled by the network —
        :meth:`restyle` (the identity loss applies to the restyling alone: an image already
        in the target domain needs no reframing).
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
        align: str = "none",
        rngs: nnx.Rngs,
    ):
        if skip not in SKIPS:
            raise ValueError(f"skip must be one of {SKIPS}, got {skip!r}")
        if align not in ALIGNS:
            raise ValueError(f"align must be one of {ALIGNS}, got {align!r}")
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
        up2_in = d if skip == "none" else 2 * d  # U-Net: the encoder's 1/2-scale features too
        if skip == "unet_full":  # and the input itself, at full resolution, before a last conv
            half = max(d // 2, 1)
            self.up2 = UpConv(up2_in, half, norm=norm, padding_mode=padding_mode, rngs=rngs)
            self.out = Conv2d(
                half + in_channels, out_channels, 3, padding=1, padding_mode=padding_mode,
                rngs=rngs,
            )  # fmt: skip
        else:
            self.up2 = UpConv(
                up2_in, out_channels, norm="none", padding_mode=padding_mode, rngs=rngs
            )
        self.skip = skip
        self.align = align
        if align == "zoom":  # log scale: the identity until set
            self.zoom = Framing(jnp.zeros((), jnp.float32))

    def __call__(self, x: jax.Array) -> jax.Array:
        return self.restyle(self.frame(x))

    def log_zoom(self) -> jax.Array:
        """The log scale of :meth:`frame` (0 without ``align="zoom"``)."""
        if self.align != "zoom":
            return jnp.zeros(())
        return self.zoom[...]

    def frame(self, x: jax.Array) -> jax.Array:
        """The zoom of the input (``x`` itself without ``align="zoom"``)."""
        if self.align != "zoom":
            return x
        return zoom(x.astype(jnp.float32), self.log_zoom()).astype(x.dtype)

    def restyle(self, x: jax.Array) -> jax.Array:
        """The network without the zoom."""
        if x.ndim != 4 or x.shape[1] % 4 or x.shape[2] % 4:
            raise ValueError(f"expected [N, H, W, C] with H, W multiples of 4, got {x.shape}")
        e1 = jax.nn.relu(self.norm1(self.conv1(x)))
        h = jax.nn.relu(self.norm2(self.conv2(e1)))
        for block in self.blocks:
            h = block(h)
        h = jax.nn.relu(self.up1(h))
        if self.skip != "none":
            h = jnp.concatenate([h, e1], axis=-1)
        if self.skip == "unet_full":
            h = jnp.concatenate([jax.nn.relu(self.up2(h)), x], axis=-1)
            return jnp.tanh(self.out(h))
        return jnp.tanh(self.up2(h))


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


class _PatchGAN(nnx.Module):
    """A stack of 4×4 convs (:class:`_ConvStack`) whose ``(in, out, stride)`` list comes from
    the subclass's :meth:`specs`.

    Args:
      in_channels: image channels.
      conv_dim: width of the first layer (the later ones are multiples of it).
      norm: "instance" (default), "batch" or "none" (every layer but the first and last).
      spectral_norm: spectral-normalise every conv.
      rngs: ``nnx.Rngs``.
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
        specs = self.specs(in_channels, conv_dim)
        self.net = _ConvStack(specs, norm=norm, spectral_norm=spectral_norm, rngs=rngs)

    @staticmethod
    def specs(c: int, d: int) -> list[tuple[int, int, int]]:
        raise NotImplementedError

    def __call__(self, x: jax.Array) -> jax.Array:
        return self.net(x)


@register("patch_discriminator")
class PatchDiscriminator(_PatchGAN):
    """The course's PatchGAN: four stride-2 4×4 convs (``d, 2d, 4d``, then 1 logit channel),
    ``H/16 × W/16`` logits (4×4 at 64 px).

    Args: as :class:`_PatchGAN`.

    Call: ``float32[N, H, W, C]`` (H, W multiples of 16) -> ``float32[N, H/16, W/16, 1]`` logits.
    """

    @staticmethod
    def specs(c, d):
        return [(c, d, 2), (d, 2 * d, 2), (2 * d, 4 * d, 2), (4 * d, 1, 2)]


@register("patch16_discriminator")
class Patch16Discriminator(_PatchGAN):
    """pix2pix's 16×16 PatchGAN (``NLayerDiscriminator`` with 1 layer): local logits.

    A stride-2 4×4 conv (``d``), a stride-1 4×4 conv to ``2d``, a stride-1 4×4 conv to one
    logit channel: each logit sees a 16×16 patch, and there are ``(H/2 - 2) × (W/2 - 2)`` of
    them (14×14 at 32 px, where the course's PatchGAN has 2×2 logits that each see the whole
    image). It judges local texture (outlines, edges, flat fills), not layout.

    Args: as :class:`_PatchGAN`.
    """

    @staticmethod
    def specs(c, d):
        return [(c, d, 2), (d, 2 * d, 1), (2 * d, 1, 1)]


@register("patch70_discriminator")
class Patch70Discriminator(_PatchGAN):
    """pix2pix's 70×70 PatchGAN (``NLayerDiscriminator``, 3 layers): 30×30 logits at 256 px.

    Three stride-2 4×4 convs (``d, 2d, 4d``), a stride-1 4×4 conv to ``8d``, a stride-1 4×4
    conv to one logit channel. Output ``(H/8 - 2) × (W/8 - 2)``; needs H, W >= 32.

    Args: as :class:`_PatchGAN`.
    """

    @staticmethod
    def specs(c, d):
        return [(c, d, 2), (d, 2 * d, 2), (2 * d, 4 * d, 2), (4 * d, 8 * d, 1), (8 * d, 1, 1)]

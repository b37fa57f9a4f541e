"""DCGAN generator and discriminator (the course architecture), Flax NNX, NHWC.

Generator (64 px): ``z float32[N, 100]`` → transposed conv 4×4 to ``conv_dim*8 × 4 × 4``
→ norm + ReLU → up-conv blocks (nearest ×2 + 3×3 conv + norm + ReLU) to
``conv_dim*4`` @8, ``conv_dim*2`` @16, ``conv_dim`` @32 → a last up-conv to 3
channels @64 with tanh (no norm). The 32 px variant drops the ``conv_dim`` block.
Output ``float32[N, S, S, 3]`` in ``[-1, 1]``.

DC discriminator (64 px): stride-2 4×4 convs ``3 → conv_dim → conv_dim*2 →
conv_dim*4 → conv_dim*8`` (64→32→16→8→4), each followed by the norm (none on
the first, as in DCGAN) and LeakyReLU(0.2), then a 4×4 valid conv to one logit.
The 32 px variant stops at ``conv_dim*4`` @4. Output ``float32[N]`` logits.
``spectral_norm=True`` normalises every conv kernel of D (Miyato et al.).

Weights use the DCGAN init N(0, 0.02). Norms: "instance" (default), "batch"
(``nnx.BatchNorm``; batch statistics in ``.train()``, running averages in
``.eval()``), "none".
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
from flax import nnx

from imsyn.models import register
from imsyn.models.layers import NORMS, Conv2d, ConvTranspose2d, UpConv, make_norm

IMAGE_SIZES = (32, 64)
Z_DIM = 100


def _check(image_size: int, conv_dim: int, norm: str) -> None:
    if image_size not in IMAGE_SIZES:
        raise ValueError(f"DCGAN image_size must be one of {IMAGE_SIZES}, got {image_size}")
    if conv_dim < 1:
        raise ValueError(f"conv_dim must be >= 1, got {conv_dim}")
    if norm not in NORMS:
        raise ValueError(f"norm must be one of {NORMS}, got {norm!r}")


@register("dcgan_generator")
class DCGenerator(nnx.Module):
    """The DCGAN generator.

    Args:
      image_size: 64 or 32.
      conv_dim: width multiplier (the first feature map has ``conv_dim*8`` channels).
      norm: "instance", "batch" or "none".
      z_dim: noise dimension.
      rngs: ``nnx.Rngs`` with a ``params`` stream.

    Call: ``z float32[N, z_dim]`` -> ``float32[N, S, S, 3]`` in [-1, 1].
    """

    def __init__(
        self,
        *,
        image_size: int = 64,
        conv_dim: int = 32,
        norm: str = "instance",
        z_dim: int = Z_DIM,
        rngs: nnx.Rngs,
    ):
        _check(image_size, conv_dim, norm)
        self.z_dim = z_dim
        self.image_size = image_size
        c = conv_dim * 8
        self.stem = ConvTranspose2d(z_dim, c, 4, use_bias=norm == "none", init="dcgan", rngs=rngs)
        self.stem_norm = make_norm(norm, c, rngs=rngs)
        widths = [conv_dim * 4, conv_dim * 2] + ([conv_dim] if image_size == 64 else [])
        blocks = []
        for w in widths:
            blocks.append(UpConv(c, w, norm=norm, init="dcgan", rngs=rngs))
            c = w
        self.blocks = nnx.List(blocks)
        self.out = UpConv(c, 3, norm="none", init="dcgan", rngs=rngs)

    def __call__(self, z: jax.Array) -> jax.Array:
        x = z.reshape(z.shape[0], 1, 1, self.z_dim)
        x = jax.nn.relu(self.stem_norm(self.stem(x)))
        for block in self.blocks:
            x = jax.nn.relu(block(x))
        return jnp.tanh(self.out(x))


@register("dc_discriminator")
class DCDiscriminator(nnx.Module):
    """The DC discriminator: strided 4×4 convs to a 4×4 map, then a 4×4 conv to one logit.

    Args:
      image_size: 64 or 32.
      conv_dim: width of the first conv.
      norm: "instance", "batch" or "none" (not applied after the first conv).
      spectral_norm: spectral normalisation of every conv.
      rngs: ``nnx.Rngs`` with a ``params`` stream.

    Call: ``float32[N, S, S, 3]`` in [-1, 1] -> ``float32[N]`` logits.
    """

    def __init__(
        self,
        *,
        image_size: int = 64,
        conv_dim: int = 32,
        norm: str = "instance",
        spectral_norm: bool = False,
        rngs: nnx.Rngs,
    ):
        _check(image_size, conv_dim, norm)
        self.image_size = image_size
        n_down = 4 if image_size == 64 else 3
        convs, norms, cin = [], [], 3
        for i in range(n_down):
            cout = conv_dim * 2**i
            first = i == 0
            convs.append(
                Conv2d(
                    cin,
                    cout,
                    4,
                    stride=2,
                    padding=1,
                    use_bias=first or norm == "none",
                    init="dcgan",
                    spectral_norm=spectral_norm,
                    rngs=rngs,
                )
            )
            norms.append(make_norm("none" if first else norm, cout, rngs=rngs))
            cin = cout
        self.convs = nnx.List(convs)
        self.norms = nnx.List(norms)
        self.head = Conv2d(cin, 1, 4, init="dcgan", spectral_norm=spectral_norm, rngs=rngs)

    def __call__(self, x: jax.Array) -> jax.Array:
        if x.shape[1:] != (self.image_size, self.image_size, 3):
            raise ValueError(
                f"discriminator expects [N, {self.image_size}, {self.image_size}, 3], got {x.shape}"
            )
        for conv, norm in zip(self.convs, self.norms, strict=True):
            x = jax.nn.leaky_relu(norm(conv(x)), 0.2)
        return self.head(x).reshape(x.shape[0])

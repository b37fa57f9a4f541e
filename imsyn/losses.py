"""Losses for the learned systems. Every loss returns per-example values, shape ``[N]``.

The caller reduces (usually ``jnp.mean``), so losses compose with masking,
weighting and data-parallel sharding without hidden means.

GAN losses take discriminator logits of any shape ``[N, ...]`` (one logit per
image for the DC discriminator, a patch map for PatchGAN) and average over the
non-batch axes. ``kind`` selects the objective:

* ``"lsgan"``: least squares (Mao et al.), D: (D(x)-1)² + D(G(z))², G: (D(G(z))-1)²
  — the course default. Both terms are halved as in the course handout.
* ``"bce"``: the non-saturating GAN, D: softplus(-D(x)) + softplus(D(G(z))),
  G: softplus(-D(G(z))) (= -log sigmoid).
* ``"hinge"``: D: relu(1-D(x)) + relu(1+D(G(z))), G: -D(G(z)).
"""

from __future__ import annotations

import jax
import jax.numpy as jnp

GAN_LOSSES = ("lsgan", "bce", "hinge")


def _per_example(x: jax.Array) -> jax.Array:
    """Mean over every axis except the first: ``[N, ...] -> [N]``."""
    x = jnp.asarray(x)
    if x.ndim == 0:
        raise ValueError("losses expect a leading batch axis, got a scalar")
    return jnp.mean(x.reshape(x.shape[0], -1).astype(jnp.float32), axis=1)


def _check_kind(kind: str) -> None:
    if kind not in GAN_LOSSES:
        raise ValueError(f"loss kind must be one of {GAN_LOSSES}, got {kind!r}")


def gan_d_loss(real_logits: jax.Array, fake_logits: jax.Array, *, kind: str) -> jax.Array:
    """Discriminator loss per example.

    Args:
      real_logits: float[N, ...] discriminator outputs on real images.
      fake_logits: float[N, ...] discriminator outputs on generated images.
      kind: "lsgan", "bce" or "hinge".

    Returns:
      float32[N]: the loss of each example (real term + fake term).
    """
    _check_kind(kind)
    if kind == "lsgan":
        real = 0.5 * jnp.square(real_logits - 1.0)
        fake = 0.5 * jnp.square(fake_logits)
    elif kind == "bce":
        real = jax.nn.softplus(-real_logits)
        fake = jax.nn.softplus(fake_logits)
    else:
        real = jax.nn.relu(1.0 - real_logits)
        fake = jax.nn.relu(1.0 + fake_logits)
    return _per_example(real) + _per_example(fake)


def gan_g_loss(fake_logits: jax.Array, *, kind: str) -> jax.Array:
    """Generator loss per example.

    Args:
      fake_logits: float[N, ...] discriminator outputs on generated images.
      kind: "lsgan", "bce" (non-saturating) or "hinge".

    Returns:
      float32[N].
    """
    _check_kind(kind)
    if kind == "lsgan":
        return _per_example(0.5 * jnp.square(fake_logits - 1.0))
    if kind == "bce":
        return _per_example(jax.nn.softplus(-fake_logits))
    return _per_example(-fake_logits)


def l1(a: jax.Array, b: jax.Array) -> jax.Array:
    """Mean absolute difference per example: float[N, ...] x2 -> float32[N]."""
    return _per_example(jnp.abs(jnp.asarray(a) - jnp.asarray(b)))


def cycle_loss(x: jax.Array, x_rec: jax.Array) -> jax.Array:
    """Cycle-consistency loss ``|x - F(G(x))|`` per example, float32[N]."""
    return l1(x, x_rec)


def identity_loss(x: jax.Array, x_id: jax.Array) -> jax.Array:
    """Identity loss ``|x - G(x)|`` for x already in G's target domain, float32[N]."""
    return l1(x, x_id)


# ---- style transfer (Gatys et al.; definitions of the course / the PyTorch tutorial)


def gram_matrix(features: jax.Array) -> jax.Array:
    """Normalized Gram matrices of feature maps.

    Args:
      features: ``float32[N, H, W, C]``.

    Returns:
      ``float32[N, C, C]``: ``F^T F / (H * W * C)`` with ``F`` the ``[H*W, C]`` features.
    """
    n, h, w, c = features.shape
    f = features.reshape(n, h * w, c)
    # One 2-D matmul per example: XLA:CPU's batched dot_general took ~3x longer for
    # the course's style layers at 256 px (benchmarks/nst.py).
    return jnp.stack([f[i].T @ f[i] for i in range(n)]) / (h * w * c)


def content_loss(features: jax.Array, target: jax.Array) -> jax.Array:
    """Mean squared feature difference per example, ``float32[N]``."""
    return _per_example(jnp.square(features - target))


def style_loss(features: jax.Array, target_gram: jax.Array) -> jax.Array:
    """Mean squared Gram difference per example (target from :func:`gram_matrix`), ``[N]``."""
    return _per_example(jnp.square(gram_matrix(features) - target_gram))


def total_variation(images: jax.Array) -> jax.Array:
    """Squared total variation per example: mean of vertical plus mean of horizontal
    squared neighbour differences of ``[N, H, W, C]``, ``float32[N]``."""
    dy = images[:, 1:, :, :] - images[:, :-1, :, :]
    dx = images[:, :, 1:, :] - images[:, :, :-1, :]
    return _per_example(jnp.square(dy)) + _per_example(jnp.square(dx))

"""GAN and reconstruction losses: known values, per-example shapes, gradients."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from imsyn import losses


def _softplus(x):
    return np.log1p(np.exp(x))


@pytest.mark.parametrize("kind", losses.GAN_LOSSES)
def test_per_example_shape_and_patch_average(kind, rng):
    real = rng.normal(size=(3, 4, 4, 1)).astype(np.float32)
    fake = rng.normal(size=(3, 4, 4, 1)).astype(np.float32)
    d = losses.gan_d_loss(real, fake, kind=kind)
    g = losses.gan_g_loss(fake, kind=kind)
    assert d.shape == (3,) and g.shape == (3,)
    # a patch map is averaged per example: example i only depends on its own logits
    d0 = losses.gan_d_loss(real[:1], fake[:1], kind=kind)
    np.testing.assert_allclose(d[:1], d0, rtol=1e-6)


def test_lsgan_known_values():
    # perfect discriminator / perfect generator give zero loss
    assert float(losses.gan_d_loss(jnp.ones((2,)), jnp.zeros((2,)), kind="lsgan")[0]) == 0.0
    assert float(losses.gan_g_loss(jnp.ones((2,)), kind="lsgan")[0]) == 0.0
    # fully fooled D: 0.5 (0-1)^2 + 0.5 (1-0)^2 = 1
    np.testing.assert_allclose(losses.gan_d_loss(jnp.zeros(2), jnp.ones(2), kind="lsgan"), 1.0)
    np.testing.assert_allclose(losses.gan_g_loss(jnp.array([3.0]), kind="lsgan"), 2.0)


def test_bce_matches_logistic_formula(rng):
    r, f = rng.normal(size=(5,)) * 3, rng.normal(size=(5,)) * 3
    sig = lambda x: 1 / (1 + np.exp(-x))  # noqa: E731
    want_d = -np.log(sig(r)) - np.log(1 - sig(f))
    want_g = -np.log(sig(f))  # non-saturating
    np.testing.assert_allclose(losses.gan_d_loss(r, f, kind="bce"), want_d, rtol=1e-5)
    np.testing.assert_allclose(losses.gan_g_loss(f, kind="bce"), want_g, rtol=1e-5)
    np.testing.assert_allclose(losses.gan_g_loss(f, kind="bce"), _softplus(-f), rtol=1e-5)


def test_bce_generator_does_not_saturate():
    # the non-saturating loss keeps a strong gradient when D confidently rejects fakes
    grad = jax.grad(lambda x: losses.gan_g_loss(x, kind="bce").sum())(jnp.array([-20.0]))
    assert float(grad[0]) < -0.99


def test_hinge_known_values():
    np.testing.assert_allclose(
        losses.gan_d_loss(jnp.array([2.0, 0.5]), jnp.array([-3.0, 0.0]), kind="hinge"), [0.0, 1.5]
    )
    np.testing.assert_allclose(losses.gan_g_loss(jnp.array([0.7]), kind="hinge"), [-0.7])


def test_reconstruction_losses(rng):
    x = rng.uniform(-1, 1, size=(2, 8, 8, 3)).astype(np.float32)
    np.testing.assert_array_equal(losses.cycle_loss(x, x), [0.0, 0.0])
    np.testing.assert_array_equal(losses.identity_loss(x, x), [0.0, 0.0])
    np.testing.assert_allclose(losses.l1(x, x + 0.25), [0.25, 0.25], rtol=1e-5)


def test_jit_matches_eager(rng):
    r, f = rng.normal(size=(4, 2, 2, 1)), rng.normal(size=(4, 2, 2, 1))
    for kind in losses.GAN_LOSSES:
        fn = jax.jit(lambda a, b, k=kind: losses.gan_d_loss(a, b, kind=k))
        np.testing.assert_allclose(fn(r, f), losses.gan_d_loss(r, f, kind=kind), rtol=1e-6)


def test_bad_kind_is_refused():
    with pytest.raises(ValueError, match="loss kind"):
        losses.gan_g_loss(jnp.zeros(2), kind="wgan")

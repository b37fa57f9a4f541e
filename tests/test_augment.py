"""Augmentation: DiffAugment definitions (Zhao et al. 2020) and host basic/deluxe."""

import functools

import chex
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from imsyn.augment import (
    basic_augment,
    deluxe_augment,
    diff_augment,
    fit_square,
    host_augment_fn,
    parse_policy,
)
from imsyn.errors import ConfigError

N, S = 256, 32


@pytest.fixture(scope="module")
def batch():
    rng = np.random.default_rng(0)
    return jnp.asarray(rng.uniform(-1, 1, (N, S, S, 3)).astype(np.float32))


KEY = jax.random.key(3)


def test_empty_policy_is_identity(batch):
    assert diff_augment(batch, KEY, "") is batch
    assert diff_augment(batch, KEY, []) is batch
    np.testing.assert_array_equal(
        jax.jit(diff_augment, static_argnames="policy")(batch, KEY, ""), batch
    )


def test_unknown_policy_is_config_error(batch):
    with pytest.raises(ConfigError, match="unknown DiffAugment policy 'blur'"):
        diff_augment(batch, KEY, "color,blur")
    assert parse_policy(" color , cutout ") == ("color", "cutout")
    assert parse_policy(["translation"]) == ("translation",)


def test_brightness_adds_one_offset_per_image_in_range(batch):
    d = np.asarray(diff_augment(batch, KEY, "brightness") - batch)
    per_image = d[:, :1, :1, :1]
    np.testing.assert_allclose(d, np.broadcast_to(per_image, d.shape), atol=1e-6)
    b = per_image.ravel()
    assert b.min() >= -0.5 and b.max() <= 0.5
    assert b.min() < -0.45 and b.max() > 0.45  # covers U[-0.5, 0.5]
    assert abs(b.mean()) < 0.06


def test_saturation_scales_chroma_by_u02_and_keeps_luma_mean(batch):
    x = np.asarray(batch)
    y = np.asarray(diff_augment(batch, KEY, "saturation"))
    mx, my = x.mean(-1, keepdims=True), y.mean(-1, keepdims=True)
    np.testing.assert_allclose(my, mx, atol=1e-5)
    s = ((y - my) * (x - mx)).sum((1, 2, 3)) / ((x - mx) ** 2).sum((1, 2, 3))
    np.testing.assert_allclose(y - my, (x - mx) * s[:, None, None, None], atol=1e-5)
    assert s.min() >= 0 and s.max() <= 2 and s.min() < 0.1 and s.max() > 1.9


def test_contrast_scales_around_image_mean_by_u05_15(batch):
    x = np.asarray(batch)
    y = np.asarray(diff_augment(batch, KEY, "contrast"))
    mx, my = x.mean((1, 2, 3), keepdims=True), y.mean((1, 2, 3), keepdims=True)
    np.testing.assert_allclose(my, mx, atol=1e-5)
    c = ((y - my) * (x - mx)).sum((1, 2, 3)) / ((x - mx) ** 2).sum((1, 2, 3))
    np.testing.assert_allclose(y - my, (x - mx) * c[:, None, None, None], atol=1e-5)
    assert c.min() >= 0.5 and c.max() <= 1.5 and c.min() < 0.55 and c.max() > 1.45


def test_color_is_brightness_then_saturation_then_contrast_on_gray(batch):
    # On a flat gray image saturation and contrast are no-ops around their means, so only
    # the brightness offset remains: a per-image constant in [-0.5, 0.5].
    gray = jnp.broadcast_to(batch[:, :1, :1, :1], batch.shape)
    d = np.asarray(diff_augment(gray, KEY, "color") - gray)
    assert np.ptp(d, axis=(1, 2, 3)).max() < 1e-5
    assert np.abs(d).max() <= 0.5 + 1e-6


def test_translation_shifts_by_at_most_one_eighth_with_zero_fill():
    code = np.arange(1, S * S + 1, dtype=np.float32).reshape(1, S, S, 1)
    x = jnp.asarray(np.broadcast_to(code, (N, S, S, 1)))
    y = np.asarray(diff_augment(x, KEY, "translation"))
    limit = S // 8
    shifts = set()
    for img in y:
        nz = np.argwhere(img[..., 0] > 0)
        i, j = nz[0]  # first non-zero output pixel maps to source pixel (i + dy, j + dx)
        src = int(img[i, j, 0]) - 1
        dy, dx = src // S - i, src % S - j
        assert abs(dy) <= limit and abs(dx) <= limit
        shifted = np.zeros((S + 2 * limit, S + 2 * limit), np.float32)
        shifted[limit : limit + S, limit : limit + S] = code[0, ..., 0]
        expect = shifted[limit + dy : limit + dy + S, limit + dx : limit + dx + S]
        np.testing.assert_array_equal(img[..., 0], expect)
        shifts.add((int(dy), int(dx)))
    assert {d for s in shifts for d in s} == set(range(-limit, limit + 1))


def test_cutout_zeroes_a_half_size_square_clipped_at_borders():
    x = jnp.ones((N, S, S, 3), jnp.float32)
    y = np.asarray(diff_augment(x, KEY, "cutout"))
    side, inside = S // 2, 0
    for img in y:
        zero = img[..., 0] == 0
        assert (img[zero] == 0).all() and (img[~zero] == 1).all()
        rows, cols = np.nonzero(zero.any(1))[0], np.nonzero(zero.any(0))[0]
        assert zero.sum() == len(rows) * len(cols)  # one axis-aligned rectangle
        assert np.all(np.diff(rows) == 1) and np.all(np.diff(cols) == 1)
        for idx in (rows, cols):
            assert len(idx) <= side
            if 0 < idx[0] and idx[-1] < S - 1:
                assert len(idx) == side  # not clipped -> the full half-size side
        inside += bool(len(rows) == side and len(cols) == side)
    assert 0.1 * N < inside < 0.9 * N  # centres are uniform, so some squares are clipped


@pytest.mark.parametrize(
    "policy", ["color", "brightness", "saturation", "contrast", "translation", "cutout"]
)
def test_gradients_flow_through_each_policy(batch, policy):
    x = batch[:4]
    w = jax.random.normal(jax.random.key(1), x.shape)
    g = jax.grad(lambda v: (diff_augment(v, KEY, policy) * w).sum())(x)
    assert np.isfinite(np.asarray(g)).all()
    assert float(jnp.abs(g).sum()) > 0
    # Every policy is affine in x for a fixed key, f(x) = A x + b, so the gradient of
    # <f(x), w> is A^T w: check the adjoint identity <A^T w, v> = <w, f(v) - f(0)>.
    v = jax.random.normal(jax.random.key(2), x.shape)
    lhs = float((g * v).sum())
    rhs = float((w * (diff_augment(v, KEY, policy) - diff_augment(0 * v, KEY, policy))).sum())
    assert abs(lhs - rhs) <= 1e-3 * max(1.0, abs(rhs))


def test_jit_matches_eager_and_compiles_once(batch):
    x = batch[:4]
    eager = diff_augment(x, KEY)

    @jax.jit
    @chex.assert_max_traces(n=1)
    def aug(v, k):
        return diff_augment(v, k, "color,translation,cutout")

    np.testing.assert_allclose(np.asarray(aug(x, KEY)), np.asarray(eager), atol=1e-6)
    other = aug(x, jax.random.key(4))
    assert not np.allclose(np.asarray(other), np.asarray(eager))
    chex.clear_trace_counter()


def test_diff_augment_is_deterministic_per_key(batch):
    a = diff_augment(batch[:4], KEY)
    b = diff_augment(batch[:4], KEY)
    np.testing.assert_array_equal(np.asarray(a), np.asarray(b))


# --------------------------------------------------------------------------- host side


@pytest.fixture(scope="module")
def img():
    from skimage import data

    return np.ascontiguousarray(data.astronaut()[::8, ::8])  # uint8 [64, 64, 3]


def test_fit_square_centre_crops_the_shorter_side():
    wide = np.zeros((40, 120, 3), np.uint8)
    wide[:, 40:80] = 200  # the middle third survives a centre crop
    out = fit_square(wide, 20)
    assert out.shape == (20, 20, 3) and out.dtype == np.uint8
    assert (out[:, 3:-3] == 200).all()  # Lanczos rings only next to the cut edges
    assert abs(out.mean() - 200) < 10


def test_basic_is_a_flipped_or_plain_crop_of_the_enlarged_image(img):
    big = fit_square(img, round(1.1 * 32))
    flips = 0
    for seed in range(40):
        out = basic_augment(img, np.random.default_rng(seed), image_size=32)
        assert out.shape == (32, 32, 3) and out.dtype == np.uint8
        found = False
        for cand, flipped in ((out, False), (out[:, ::-1], True)):
            for y in range(big.shape[0] - 31):
                for x in range(big.shape[1] - 31):
                    if np.array_equal(big[y : y + 32, x : x + 32], cand):
                        found, flips = True, flips + flipped
                        break
                if found:
                    break
            if found:
                break
        assert found
    assert 8 <= flips <= 32


def test_deluxe_without_randomness_is_fit_square_up_to_flip(img):
    rng = np.random.default_rng(0)
    out = deluxe_augment(
        img, rng, image_size=32, max_rotation=0.0, scale_range=(1.0, 1.0), jitter=0.0
    )
    ref = fit_square(img, 32).astype(int)
    err = min(np.abs(out - ref).mean(), np.abs(out[:, ::-1] - ref).mean())
    assert err < 2.0  # the same geometry, resampled through a different path


def test_deluxe_is_seeded_and_varied(img):
    a = deluxe_augment(img, np.random.default_rng(1), image_size=32)
    b = deluxe_augment(img, np.random.default_rng(1), image_size=32)
    c = deluxe_augment(img, np.random.default_rng(2), image_size=32)
    np.testing.assert_array_equal(a, b)
    assert a.shape == (32, 32, 3) and a.dtype == np.uint8
    assert not np.array_equal(a, c)


def test_deluxe_colour_jitter_stays_within_ten_percent():
    gray = np.full((32, 32, 3), 100, np.uint8)
    for seed in range(10):
        out = deluxe_augment(gray, np.random.default_rng(seed), image_size=32)
        assert 100 * 0.9**2 - 1 <= out.min() and out.max() <= 100 * 1.1**2 + 1


def test_host_augment_fn_rejects_unknown_names():
    with pytest.raises(ConfigError, match="augment must be one of none, basic, deluxe"):
        host_augment_fn("fancy", 32)
    fn = host_augment_fn("none", 16)
    assert fn(np.zeros((20, 30, 3), np.uint8), None).shape == (16, 16, 3)


def test_jit_with_partial_policy(batch):
    f = jax.jit(functools.partial(diff_augment, policy=("translation", "cutout")))
    np.testing.assert_allclose(
        np.asarray(f(batch[:2], KEY)),
        np.asarray(diff_augment(batch[:2], KEY, "translation,cutout")),
        atol=1e-6,
    )

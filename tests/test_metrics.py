"""Per-image metrics, FID/KID against reference formulas, the offline feature extractor."""

import jax
import numpy as np
import pytest
import scipy.linalg

from imsyn import metrics
from imsyn.errors import ConfigError, InputError


def test_psnr_ssim_l1_known_values(photo):
    a = photo[None, ::8, ::8]  # [1, 64, 64, 3]
    b = np.clip(a + 0.1, 0, 1)
    flat = np.zeros((2, 16, 16, 3), np.float32)
    np.testing.assert_allclose(metrics.psnr(flat, flat + 0.1), [20.0, 20.0], rtol=1e-5)
    np.testing.assert_allclose(metrics.l1(flat, flat + 0.25), [0.25, 0.25], rtol=1e-6)
    np.testing.assert_allclose(metrics.ssim(a, a), [1.0], rtol=1e-5)
    assert float(metrics.ssim(a, b)[0]) < 1.0
    noisy = np.clip(a + np.random.default_rng(0).normal(0, 0.2, a.shape), 0, 1).astype(np.float32)
    assert float(metrics.ssim(a, noisy)[0]) < float(metrics.ssim(a, b)[0])


def test_ssim_matches_scikit_image(photo):
    from skimage.metrics import structural_similarity

    a = photo[::8, ::8]
    b = np.clip(a + np.random.default_rng(1).normal(0, 0.1, a.shape), 0, 1).astype(np.float32)
    want = structural_similarity(
        a, b, channel_axis=-1, data_range=1.0, gaussian_weights=True, sigma=1.5,
        use_sample_covariance=False,
    )  # fmt: skip
    np.testing.assert_allclose(metrics.ssim(a[None], b[None])[0], want, atol=2e-3)


def test_metrics_refuse_mismatched_shapes():
    with pytest.raises(InputError):
        metrics.psnr(np.zeros((1, 8, 8, 3)), np.zeros((1, 8, 8, 1)))
    with pytest.raises(InputError, match="11x11"):
        metrics.ssim(np.zeros((1, 8, 8, 3)), np.zeros((1, 8, 8, 3)))


def _fid_reference(a, b):
    mu1, mu2 = a.mean(0), b.mean(0)
    s1, s2 = np.cov(a, rowvar=False), np.cov(b, rowvar=False)
    covmean = np.real(scipy.linalg.sqrtm(s1 @ s2))
    return np.sum((mu1 - mu2) ** 2) + np.trace(s1 + s2 - 2 * covmean)


def test_fid_known_answers(rng):
    a = rng.normal(size=(400, 6))
    b = rng.normal(size=(300, 6)) @ rng.normal(size=(6, 6)) + 0.5
    np.testing.assert_allclose(metrics.fid(a, b), _fid_reference(a, b), rtol=1e-8)
    assert metrics.fid(a, a) == pytest.approx(0.0, abs=1e-8)
    # a pure shift of the mean by c adds |c|^2
    c = np.array([1.0, -2.0, 0.0, 0.5, 0.0, 0.0])
    assert metrics.fid(a, a + c) == pytest.approx(np.sum(c**2), rel=1e-8)
    # fewer samples than dimensions (singular covariances) still gives a finite value
    assert np.isfinite(metrics.fid(rng.normal(size=(5, 50)), rng.normal(size=(7, 50))))


def _kid_reference(x, y):
    d, m = x.shape[1], len(x)
    k = lambda p, q: (p @ q.T / d + 1) ** 3  # noqa: E731
    kxx, kyy, kxy = k(x, x), k(y, y), k(x, y)
    total = 0.0
    for i in range(m):
        for j in range(m):
            if i != j:
                total += (kxx[i, j] + kyy[i, j]) / (m * (m - 1))
    return total - 2 * kxy.mean()


def test_kid_matches_definition_and_ranks(rng):
    x, y = rng.normal(size=(30, 4)), rng.normal(size=(30, 4)) + 0.3
    np.testing.assert_allclose(metrics.kid(x, y), _kid_reference(x, y), rtol=1e-10)
    same = metrics.kid(rng.normal(size=(200, 4)), rng.normal(size=(200, 4)))
    far = metrics.kid(rng.normal(size=(200, 4)), rng.normal(size=(200, 4)) + 1.0)
    assert abs(same) < 0.05 < far
    # subsets: deterministic for a seed
    big1, big2 = rng.normal(size=(120, 4)), rng.normal(size=(150, 4))
    assert metrics.kid(big1, big2, subset_size=50) == metrics.kid(big1, big2, subset_size=50)


def test_distances_refuse_bad_features():
    with pytest.raises(InputError):
        metrics.fid(np.zeros((10, 3)), np.zeros((10, 4)))
    with pytest.raises(InputError, match="NaN"):
        metrics.kid(np.full((10, 3), np.nan), np.zeros((10, 3)))


def test_random_conv_extractor_is_deterministic_and_batch_independent(rng):
    ext = metrics.get_extractor("random_conv_v1")
    assert isinstance(ext, metrics.FeatureExtractor) and ext.name == "random_conv_v1"
    imgs = rng.uniform(-1, 1, size=(70, 32, 32, 3)).astype(np.float32)
    f = np.asarray(ext(imgs))
    assert f.shape == (70, 480) and np.all(np.isfinite(f))
    f3 = np.asarray(metrics.get_extractor("random_conv_v1")(imgs[:3]))  # a fresh instance
    np.testing.assert_allclose(f3, f[:3], rtol=1e-5, atol=1e-6)
    # the features see image content: a blurred set is far from the original, a copy is not
    blurred = np.repeat(np.repeat(imgs[:, ::4, ::4], 4, 1), 4, 2)
    assert metrics.fid(f, np.asarray(ext(blurred))) > 10 * metrics.fid(f[:35], f[35:])


def test_unknown_extractor_is_a_config_error():
    with pytest.raises(ConfigError, match="random_conv_v1"):
        metrics.get_extractor("inception_v4")

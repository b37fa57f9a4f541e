"""Per-image metrics, FID/KID against reference formulas, the offline feature extractor."""

import json

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


def test_fid_with_fewer_images_than_dimensions_matches_the_covariance_formula(rng):
    # 30 and 45 images of 64 features (as 200 test emoji of 2048 Inception features): the
    # low-rank path of fid() against the D x D formula on the same statistics, and scipy
    mix = rng.normal(size=(64, 64))
    a = rng.normal(size=(30, 64)) @ mix
    b = rng.normal(size=(45, 64)) @ mix * 1.3 + 0.2
    want = metrics.fid_from_stats(*metrics.feature_stats(a), *metrics.feature_stats(b))
    np.testing.assert_allclose(metrics.fid(a, b), want, rtol=1e-7)  # the D x D path's rounding
    np.testing.assert_allclose(metrics.fid(a, b), _fid_reference(a, b), rtol=1e-6)
    # a scaled copy has a closed form: S2 = s² S1, mu2 = s mu1 -> (1 - s)² (|mu1|² + Tr S1)
    mu, sigma = metrics.feature_stats(a)
    s = 1.7
    exact = (1 - s) ** 2 * (np.sum(mu**2) + np.trace(sigma))
    np.testing.assert_allclose(metrics.fid(a, s * a), exact, rtol=1e-12)
    assert metrics.fid(a, a) == pytest.approx(0.0, abs=1e-8 * np.sum(np.var(a, 0)))
    assert metrics.fid(b, a) == pytest.approx(metrics.fid(a, b), rel=1e-12)


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


# --------------------------------------------------------------------------- auto, the fid CLI


def test_auto_resolves_to_the_fetched_network_else_the_fallback(pretrained, monkeypatch, tmp_path):
    path = pretrained("inception_fid")
    ext = metrics.get_extractor("auto")
    assert ext.name == "inception_v3_fid" and ext.weights == str(path)
    assert getattr(ext, "note", None) is None and "bicubic" in ext.resize
    assert metrics.resolve_features("inception_v3") == "inception_v3_fid"
    with pytest.raises(ConfigError, match="takes no weights file"):
        metrics.get_extractor("auto", str(path))
    monkeypatch.setenv("IMSYN_CACHE_DIR", str(tmp_path))  # an empty cache
    fallback = metrics.get_extractor("auto")
    assert fallback.name == "random_conv_v1" and fallback.note == metrics.FALLBACK_NOTE
    with pytest.raises(ConfigError, match="weights fetch inception_fid"):
        metrics.get_extractor("inception_v3_fid")
    # a weights file given by path needs no cache
    assert metrics.get_extractor("inception_v3_fid", path).name == "inception_v3_fid"


def _folder(root, name, images):
    from PIL import Image

    folder = root / name
    folder.mkdir()
    for i, arr in enumerate(images):
        suffix = ".jpg" if i == 1 and arr.ndim == 3 and arr.shape[-1] == 3 else ".png"
        Image.fromarray(arr).save(folder / f"{i:02d}{suffix}")
    return folder


def _fid_cli(args, capsys):
    from imsyn.__main__ import main

    rc = main(["fid", *map(str, args)])
    out, err = capsys.readouterr()
    return rc, out, err


def test_fid_cli_prints_one_json_object(pretrained, tmp_path, capsys, rng):
    pretrained("inception_fid")
    rgb = [rng.integers(0, 256, (24, 20, 3), dtype=np.uint8) for _ in range(3)]
    mixed = [
        rng.integers(0, 256, (30, 30, 3), dtype=np.uint8),
        rng.integers(0, 256, (16, 40, 3), dtype=np.uint8),  # saved as JPEG
        rng.integers(0, 256, (20, 20), dtype=np.uint8),  # grayscale
        rng.integers(0, 256, (20, 20, 4), dtype=np.uint8),  # RGBA, flattened on white
    ]
    a, b = _folder(tmp_path, "a", rgb), _folder(tmp_path, "b", mixed)
    from PIL import Image

    gray = rng.integers(0, 256, (20, 20), dtype=np.uint8)
    Image.fromarray(gray).convert("LA").save(b / "la.png")  # gray + alpha
    rc, out, err = _fid_cli([a, b, "--batch-size", "4"], capsys)
    assert rc == 0 and err == "" and len(out.strip().splitlines()) == 1, err
    res = json.loads(out)
    assert res["features"] == "inception_v3_fid" and "features_note" not in res
    assert (res["n_a"], res["n_b"], res["kid_subset_size"]) == (3, 5, 3)
    assert res["fid"] > 0 and np.isfinite(res["kid"]) and "bicubic to 299x299" in res["resize"]
    rc, out, _ = _fid_cli([a, a, "--features", "random_conv_v1"], capsys)
    res = json.loads(out)
    assert rc == 0 and res["features"] == "random_conv_v1" and res["fid"] < 1e-6
    assert res["features_note"] == metrics.FALLBACK_NOTE and "64x64" in res["resize"]


def test_fid_cli_bad_input_is_one_line_and_status_2(tmp_path, capsys, rng):
    imgs = [rng.integers(0, 256, (16, 16, 3), dtype=np.uint8) for _ in range(2)]
    good = _folder(tmp_path, "good", imgs)
    one = _folder(tmp_path, "one", imgs[:1])
    empty = tmp_path / "empty"
    empty.mkdir()
    broken = _folder(tmp_path, "broken", imgs)
    (broken / "zz.png").write_bytes(b"not a png")
    fast = ["--features", "random_conv_v1"]
    for args, match in (
        ([tmp_path / "missing", good], "no such directory"),
        ([good, empty], "found 0 image(s)"),
        ([one, good], "found 1 image(s)"),
        ([good, broken, *fast], "zz.png: not a readable image"),
        ([good, good, "--features", "inception_v4"], "unknown feature extractor"),
        ([good, good, "--batch-size", "0"], "--batch-size must be >= 1"),
        ([good, good, "--features", "random_conv_v1", "--weights", good / "00.png"], "takes no"),
    ):
        rc, out, err = _fid_cli(args, capsys)
        assert rc == 2 and out == "" and len(err.strip().splitlines()) == 1, (args, err)
        assert match in err, (match, err)


def test_long_feature_extraction_shows_progress(capsys):
    """Feature extraction over many images reports progress (rate, ETA) on stderr."""
    from imsyn.metrics import PROGRESS_MIN_IMAGES, _batched

    images = np.zeros((PROGRESS_MIN_IMAGES + 3, 4, 4, 3), np.float32)
    feats = _batched(lambda x: x.mean(axis=(1, 2)), images, 32, desc="toy features")
    assert feats.shape == (len(images), 3)
    err = capsys.readouterr().err
    assert f"toy features: {len(images)}/{len(images)} (100%)" in err and "img/s" in err
    _batched(lambda x: x.mean(axis=(1, 2)), images[:8], 32, desc="toy features")
    assert capsys.readouterr().err == ""  # short calls stay quiet

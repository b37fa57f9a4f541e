"""LPIPS v0.1 (VGG-16): parity with a plain reference, known answers, bad weights files."""

import pickle

import chex
import jax
import numpy as np
import pytest
from scipy import ndimage

from imsyn.errors import InputError
from imsyn.models import lpips as lp


@pytest.fixture(scope="module")
def weights():
    from imsyn import weights as registry

    path = registry.cached("lpips_vgg16")
    if path is None:
        pytest.fail(
            "lpips_vgg16 weights are not in the cache: run `python -m imsyn weights fetch all`"
        )
    return lp.read_weights(path)


@pytest.fixture
def lpips_path(pretrained):
    return pretrained("lpips_vgg16")


def _crops(photo, size, n, seed=0):
    """``n`` random crops of the astronaut, resized to ``size`` px, in [-1, 1]."""
    from PIL import Image

    rng = np.random.default_rng(seed)
    out = []
    for _ in range(n):
        s = int(rng.integers(96, 400))
        y, x = rng.integers(0, photo.shape[0] - s, 2)
        im = Image.fromarray((photo[y : y + s, x : x + s] * 255).astype(np.uint8))
        out.append(np.asarray(im.resize((size, size), Image.Resampling.BILINEAR)) / 127.5 - 1)
    return np.stack(out).astype(np.float32)


def _reference_torch(w: lp.LPIPSWeights, x: np.ndarray, y: np.ndarray) -> np.ndarray:
    """The reference LPIPS v0.1 formula written out with torch.nn.functional (NCHW)."""
    torch = pytest.importorskip("torch")
    F = torch.nn.functional
    shift = torch.tensor([-0.030, -0.088, -0.188]).view(1, 3, 1, 1)
    scale = torch.tensor([0.458, 0.448, 0.450]).view(1, 3, 1, 1)

    def vgg16(img):
        h = (torch.from_numpy(img).permute(0, 3, 1, 2) - shift) / scale
        feats, k = [], 0
        for block, convs in enumerate((2, 2, 3, 3, 3)):
            if block:
                h = F.max_pool2d(h, kernel_size=2, stride=2)
            for _ in range(convs):
                kernel = torch.from_numpy(w.kernels[k]).permute(3, 2, 0, 1)  # HWIO -> OIHW
                h = F.relu(F.conv2d(h, kernel, torch.from_numpy(w.biases[k]), padding=1))
                k += 1
            feats.append(h)  # relu1_2, relu2_2, relu3_3, relu4_3, relu5_3
        return feats

    def unit(f):
        return f / (torch.sqrt(torch.sum(f**2, dim=1, keepdim=True)) + 1e-10)

    with torch.no_grad():
        total = 0.0
        for f0, f1, lin in zip(vgg16(x), vgg16(y), w.lins, strict=True):
            d = (unit(f0) - unit(f1)) ** 2
            lin_w = torch.from_numpy(lin).view(1, -1, 1, 1)
            total = total + F.conv2d(d, lin_w).mean(dim=(2, 3))[:, 0]
    return total.numpy()


def _reference_numpy(w: lp.LPIPSWeights, x: np.ndarray, y: np.ndarray) -> np.ndarray:
    """The same formula with NumPy only (float64): 3x3 convolutions as 9 shifted matmuls."""

    def conv3x3(h, k, b):
        n, hh, ww, _ = h.shape
        p = np.pad(h, ((0, 0), (1, 1), (1, 1), (0, 0)))
        out = np.zeros((n, hh, ww, k.shape[-1]))
        for i in range(3):
            for j in range(3):
                out += p[:, i : i + hh, j : j + ww] @ k[i, j]
        return np.maximum(out + b, 0.0)

    def vgg16(img):
        h = (img.astype(np.float64) - np.array(lp.SHIFT)) / np.array(lp.SCALE)
        feats, k = [], 0
        for block, convs in enumerate((2, 2, 3, 3, 3)):
            if block:
                n, hh, ww, c = h.shape
                h = h.reshape(n, hh // 2, 2, ww // 2, 2, c).max(axis=(2, 4))
            for _ in range(convs):
                h = conv3x3(h, w.kernels[k].astype(np.float64), w.biases[k])
                k += 1
            feats.append(h)
        return feats

    total = 0.0
    for f0, f1, lin in zip(vgg16(x), vgg16(y), w.lins, strict=True):
        u0 = f0 / (np.sqrt((f0**2).sum(-1, keepdims=True)) + 1e-10)
        u1 = f1 / (np.sqrt((f1**2).sum(-1, keepdims=True)) + 1e-10)
        total = total + ((u0 - u1) ** 2 @ lin).mean(axis=(1, 2))
    return total


def test_matches_reference_formula(weights, photo):
    x = _crops(photo, 32, 3, seed=1)
    y = _crops(photo, 32, 3, seed=2)
    got = np.asarray(lp.lpips(weights.params, x, y))
    want = _reference_numpy(weights, x, y)
    assert got.shape == (3,) and got.dtype == np.float32
    np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-6)
    assert np.all(got > 0.05)  # different crops are far apart


def test_matches_torch_reference(weights, photo):
    x = _crops(photo, 48, 2, seed=3)
    y = _crops(photo, 48, 2, seed=4)
    y[1] = np.clip(x[1] + 0.1, -1, 1)  # one near pair, one far pair
    want = _reference_torch(weights, x, y)
    got = np.asarray(lp.lpips(weights.params, x, y))
    np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-6)


def test_identical_images_give_zero(weights, photo):
    x = _crops(photo, 32, 2)
    np.testing.assert_array_equal(np.asarray(lp.lpips(weights.params, x, x)), 0.0)


def test_blur_is_farther_than_one_pixel_shift(weights, photo):
    """On a real photo LPIPS ranks a blur (lost detail) above a 1-px translation."""
    from PIL import Image

    img = np.asarray(Image.fromarray((photo * 255).astype(np.uint8)).resize((128, 128))) / 255.0
    ref = img[8:120, 8:120]
    shifted = img[8:120, 9:121]
    blurred = ndimage.gaussian_filter(img, sigma=(1.5, 1.5, 0))[8:120, 8:120]
    x = np.stack([ref, ref]).astype(np.float32) * 2 - 1
    y = np.stack([shifted, blurred]).astype(np.float32) * 2 - 1
    d_shift, d_blur = np.asarray(lp.lpips(weights.params, x, y))
    assert 0 < d_shift < d_blur, (d_shift, d_blur)
    # a pixel metric disagrees: the shift has the larger mean absolute error
    assert np.abs(ref - shifted).mean() > np.abs(ref - blurred).mean()


def test_loader_batches_like_the_pure_function(lpips_path, photo):
    metric = lp.LPIPS.load(lpips_path, batch_size=2)
    assert metric.name == "lpips_vgg16_v0.1"
    x, y = _crops(photo, 16, 5, seed=5), _crops(photo, 16, 5, seed=6)  # 16 px: the minimum
    np.testing.assert_allclose(
        metric(x, y), np.asarray(lp.lpips(metric.params, x, y)), rtol=1e-6, atol=1e-7
    )
    assert lp.LPIPS.load().path == str(lpips_path)  # default: the cached file


def test_load_returns_none_when_not_cached(monkeypatch, tmp_path):
    monkeypatch.setenv("IMSYN_CACHE_DIR", str(tmp_path))
    assert lp.LPIPS.load() is None


def test_small_or_mismatched_images_raise(weights):
    x = np.zeros((1, 15, 32, 3), np.float32)
    with pytest.raises(InputError, match="at least 16x16"):
        lp.lpips(weights.params, x, x)
    with pytest.raises(InputError, match="one shape"):
        lp.lpips(weights.params, np.zeros((1, 32, 32, 3)), np.zeros((2, 32, 32, 3)))


def test_jit_compiles_once_per_shape(weights, monkeypatch):
    monkeypatch.setattr(lp, "_lpips", jax.jit(chex.assert_max_traces(lp._lpips.__wrapped__, n=1)))
    x = np.zeros((2, 16, 16, 3), np.float32)
    lp.lpips(weights.params, x, x)
    lp.lpips(weights.params, x + 0.5, x)  # new values, same shape: no new trace
    assert isinstance(lp.lpips(weights.params, x, x), jax.Array)


# ------------------------------------------------------------------- weights files


def _tree(w: lp.LPIPSWeights) -> dict:
    """The published checkpoint's layout, rebuilt from converted weights (copies)."""
    tree = {"VGG16_0": {}}
    for i, (k, b) in enumerate(zip(w.kernels, w.biases, strict=True)):
        tree["VGG16_0"][f"Conv_{i}"] = {"kernel": k.copy(), "bias": b.copy()}
    for i, lin in enumerate(w.lins):
        tree[f"NetLinLayer_{i}"] = {"Conv_0": {"kernel": lin.reshape(1, 1, -1, 1).copy()}}
    return tree


def _dump(path, tree):
    with open(path, "wb") as f:
        pickle.dump(tree, f, protocol=4)
    return path


def test_convert_round_trip(weights, tmp_path):
    src = _dump(tmp_path / "vgg16.ckpt", _tree(weights))
    dst = lp.convert_weights(src, tmp_path / "out" / "lpips.npz")
    back = lp.read_weights(dst)
    for a, b in zip(back.kernels + back.lins, weights.kernels + weights.lins, strict=True):
        np.testing.assert_array_equal(a, b)
    assert back.source == "vgg16.ckpt"
    assert [p.name for p in dst.parent.iterdir()] == ["lpips.npz"]  # no temp file left


@pytest.mark.parametrize(
    "damage, message",
    [
        (lambda t: t["VGG16_0"]["Conv_3"].update(kernel=np.zeros((3, 3, 64, 128))), "conv2_2"),
        (lambda t: t["VGG16_0"].pop("Conv_12"), "Conv_12"),
        (lambda t: t["VGG16_0"]["Conv_5"]["bias"].__setitem__(0, np.nan), "conv3_2 bias"),
        (lambda t: t["NetLinLayer_2"]["Conv_0"]["kernel"].__setitem__(0, -0.5), "negative"),
        (
            lambda t: t["NetLinLayer_4"]["Conv_0"].update(kernel=np.ones((1, 1, 256, 1))),
            "(1, 1, 512",
        ),
    ],
)
def test_damaged_checkpoint_raises(weights, tmp_path, damage, message):
    tree = _tree(weights)
    damage(tree)
    src = _dump(tmp_path / "bad.ckpt", tree)
    with pytest.raises(InputError, match=message.replace("(", r"\(")):
        lp.convert_weights(src, tmp_path / "out.npz")
    assert not (tmp_path / "out.npz").exists()


def test_not_a_weights_file_raises(tmp_path):
    text = tmp_path / "notes.txt"
    text.write_text("not weights\n")
    with pytest.raises(InputError, match="notes.txt"):
        lp.convert_weights(text, tmp_path / "out.npz")
    other = _dump(tmp_path / "list.ckpt", [np.zeros(3)])
    with pytest.raises(InputError, match="expected the LPIPS VGG-16 checkpoint"):
        lp.convert_weights(other, tmp_path / "out.npz")
    npz = tmp_path / "other.npz"
    np.savez(npz, a=np.zeros(3))
    with pytest.raises(InputError, match="not an imsyn LPIPS weights file"):
        lp.read_weights(npz)
    with pytest.raises(InputError, match="no such"):
        lp.read_weights(tmp_path / "missing.npz")


def test_damaged_npz_raises(weights, tmp_path):
    good = lp.save_weights(weights, tmp_path / "good.npz")
    with np.load(good) as z:
        arrays = {k: z[k] for k in z.files}
    arrays["conv4_1/kernel"] = arrays["conv4_1/kernel"].copy()
    arrays["conv4_1/kernel"][0, 0, 0, 0] = np.inf
    np.savez(tmp_path / "inf.npz", **arrays)
    with pytest.raises(InputError, match="conv4_1 kernel has non-finite"):
        lp.read_weights(tmp_path / "inf.npz")
    (tmp_path / "cut.npz").write_bytes(good.read_bytes()[:1000])
    with pytest.raises(InputError, match="cut.npz"):
        lp.read_weights(tmp_path / "cut.npz")

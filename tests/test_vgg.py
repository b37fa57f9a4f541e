"""VGG-19 features: layer names, PyTorch parity, weight import (torchvision, Keras),
normalization (real VGG-19 against a plain PyTorch one), default weights order."""

import functools
import subprocess
import sys
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from imsyn.errors import InputError
from imsyn.models import vgg

ROOT = Path(__file__).resolve().parents[1]
VGG16_CONV_INDICES = (0, 2, 5, 7, 10, 12, 14, 17, 19, 21, 24, 26, 28)


def torch_features(weights: vgg.VGGWeights, *, pooling="max"):
    """torchvision's ``vgg19().features`` layout in plain torch.nn, loaded with ``weights``."""
    torch = pytest.importorskip("torch")
    nn = torch.nn
    layers, cin = [], 3
    for c in vgg.CFG:
        if c == "M":
            layers.append(nn.MaxPool2d(2, 2) if pooling == "max" else nn.AvgPool2d(2, 2))
        else:
            layers += [nn.Conv2d(cin, c, 3, padding=1), nn.ReLU(inplace=False)]
            cin = c
    net = nn.Sequential(*layers).eval()
    convs = [m for m in net if isinstance(m, nn.Conv2d)]
    with torch.no_grad():
        for m, k, b in zip(convs, weights.kernels, weights.biases, strict=True):
            m.weight.copy_(torch.from_numpy(np.asarray(k).transpose(3, 2, 0, 1).copy()))
            m.bias.copy_(torch.from_numpy(np.asarray(b)))
    return net


def torch_taps(net, x_nchw, positions):
    """Activations after the ops at ``positions`` (indices into vgg.OPS == net indices)."""
    out, x = {}, x_nchw
    for i, m in enumerate(net):
        x = m(x)
        if i in positions:
            out[i] = x
        if i >= max(positions):
            break
    return out


def _rel(a, b):
    a, b = np.asarray(a, np.float64), np.asarray(b, np.float64)
    return np.linalg.norm(a - b) / max(np.linalg.norm(b), 1e-30)


def _torch_input(img01, mean, std, *, bgr255=False):
    torch = pytest.importorskip("torch")
    x = np.asarray(img01, np.float32)
    if bgr255:  # Keras/Caffe preprocessing, done the reference way
        x = x[..., ::-1] * 255.0 - np.asarray(vgg.CAFFE_MEAN_BGR, np.float32)
    else:
        x = (x - np.asarray(mean, np.float32)) / np.asarray(std, np.float32)
    return torch.from_numpy(np.ascontiguousarray(x.transpose(0, 3, 1, 2)))


def _compare(weights, torch_weights, images, layers, *, pooling="max", bgr255=False):
    import torch

    feats = vgg.features(
        weights.params,
        jnp.asarray(images),
        layers=layers,
        mean=weights.mean,
        std=weights.std,
        pooling=pooling,
    )
    net = torch_features(torch_weights, pooling=pooling)
    pos = {name: vgg.LAYER_INDEX[name] for name in layers}
    with torch.no_grad():
        ref = torch_taps(
            net, _torch_input(images, weights.mean, weights.std, bgr255=bgr255), set(pos.values())
        )
    for name in layers:
        r = ref[pos[name]].numpy().transpose(0, 2, 3, 1)
        assert feats[name].shape == r.shape, name
        assert _rel(feats[name], r) < 1e-4, (name, _rel(feats[name], r))


@pytest.fixture(scope="module")
def rweights():
    return vgg.random_weights()


@pytest.fixture
def images(rng):
    # odd sizes exercise PyTorch's floor pooling
    return rng.uniform(0, 1, (2, 37, 45, 3)).astype(np.float32)


def test_layer_names_both_spellings():
    assert vgg.canonical("conv2_2") == "conv_4"
    assert vgg.canonical("conv3_1") == "conv_5"
    assert vgg.canonical("relu4_2") == "relu_10"
    assert vgg.canonical("pool5") == "pool_5"
    assert vgg.LAYER_INDEX["conv_16"] == vgg.LAYER_INDEX["conv5_4"] == 34
    assert len(vgg.OPS) == 37  # torchvision's features has 37 modules
    with pytest.raises(InputError, match="conv6_1"):
        vgg.check_layers(["conv_1", "conv6_1"])


def test_features_match_pytorch(rweights, images):
    pytest.importorskip("torch")
    layers = ("conv_1", "relu1_2", "pool_1", "conv_4", "conv3_1", "relu4_2", "pool4", "conv5_1")
    _compare(rweights, rweights, images, layers)
    _compare(rweights, rweights, images, ("relu_9", "pool_3"), pooling="avg")


def test_stops_at_deepest_layer_and_module_agrees(rweights, images):
    from imsyn import models

    x = jnp.asarray(images)
    jaxpr = str(jax.make_jaxpr(lambda x: vgg.features(rweights.params, x, layers=("conv_2",)))(x))
    assert jaxpr.count("conv_general_dilated") == 2
    m = models.get("vgg19")(weights=rweights)
    a = m(x, layers=("relu3_1", "conv_1"))
    b = vgg.features(rweights.params, x, layers=("relu3_1", "conv_1"))
    assert set(a) == {"relu3_1", "conv_1"}
    np.testing.assert_array_equal(np.asarray(a["relu3_1"]), np.asarray(b["relu3_1"]))


def test_remat_same_gradient(rweights, images):
    def f(x, remat):
        out = vgg.features(rweights.params, x, layers=("conv_5", "relu_9"), remat=remat)
        return sum(jnp.sum(v**2) for v in out.values())

    x = jnp.asarray(images[:1, :24, :24])
    g0 = jax.grad(f)(x, False)
    g1 = jax.grad(f)(x, True)
    assert _rel(g1, g0) < 1e-5


def _real_torchvision_state(weights, torch, *, indices=vgg.TORCHVISION_CONV_INDICES):
    state = {}
    for idx, k, b in zip(indices, weights.kernels, weights.biases, strict=False):
        state[f"features.{idx}.weight"] = torch.from_numpy(
            np.asarray(k).transpose(3, 2, 0, 1).copy()
        )
        state[f"features.{idx}.bias"] = torch.from_numpy(np.asarray(b).copy())
    state["classifier.6.bias"] = torch.zeros(10)  # a classifier key is ignored
    return state


def _cli(*args):
    return subprocess.run(
        [sys.executable, "-m", "imsyn", *map(str, args)], cwd=ROOT, capture_output=True, text=True
    )


def test_torchvision_pth_convert_and_features(tmp_path, images):
    torch = pytest.importorskip("torch")
    w = vgg.random_weights(seed=3)
    pth = tmp_path / "vgg19-dcbb9e9d.pth"
    torch.save(_real_torchvision_state(w, torch), pth)
    out = tmp_path / "vgg19.npz"
    p = _cli("convert-weights", pth, "--out", out)
    assert p.returncode == 0, p.stderr
    loaded = vgg.read_weights(out)  # the raw network (load_weights normalizes it)
    assert loaded.source == pth.name and loaded.scales is not None and not loaded.normalized
    assert loaded.mean == vgg.IMAGENET_MEAN and loaded.std == vgg.IMAGENET_STD
    _compare(loaded, w, images[:1], ("conv_1", "relu_7", "conv5_1"))
    # the same file read directly (torch installed) gives the same arrays
    direct = vgg.read_weights(pth)
    np.testing.assert_array_equal(direct.kernels[15], loaded.kernels[15])


def test_safetensors_torchvision_layout(tmp_path, images):
    from safetensors.numpy import save_file

    w = vgg.random_weights(seed=4)
    state = {}
    for idx, k, b in zip(vgg.TORCHVISION_CONV_INDICES, w.kernels, w.biases, strict=True):
        state[f"features.{idx}.weight"] = np.ascontiguousarray(k.transpose(3, 2, 0, 1))
        state[f"features.{idx}.bias"] = b
    path = tmp_path / "vgg19.safetensors"
    save_file(state, str(path))
    loaded = vgg.read_weights(path)
    for a, b in zip(loaded.kernels, w.kernels, strict=True):
        np.testing.assert_array_equal(a, b)


def _write_keras_h5(path, weights, *, new_names=False, drop=None):
    import h5py

    with h5py.File(path, "w") as f:
        names = ["input_1"]
        b = 1
        for c in vgg.CONV_NAMES:
            blk = int(c[4])
            if blk != b:
                names.append(f"block{b}_pool")
                b = blk
            names.append(f"block{c[4]}_conv{c[6]}")
        names.append("block5_pool")
        names = [n for n in names if n != drop]
        f.attrs["layer_names"] = [n.encode() for n in names]
        f.attrs["backend"] = b"tensorflow"
        convs = iter(zip(weights.kernels, weights.biases, strict=True))
        for n in names:
            g = f.create_group(n)
            if "conv" not in n:
                g.attrs["weight_names"] = np.array([], dtype="S1")
                continue
            k, bias = next(convs)
            wn = [f"{n}/kernel:0", f"{n}/bias:0"] if new_names else [f"{n}_W_1:0", f"{n}_b_1:0"]
            g.attrs["weight_names"] = [s.encode() for s in wn]
            g.create_dataset(wn[0], data=k)  # HWIO, BGR input for the first layer
            g.create_dataset(wn[1], data=bias)


@pytest.mark.parametrize("new_names", [False, True])
def test_keras_h5_layout_matches_caffe_preprocessing(tmp_path, images, new_names):
    pytest.importorskip("torch")
    w = vgg.random_weights(seed=5)
    h5 = tmp_path / "vgg19_weights_tf_dim_ordering_tf_kernels_notop.h5"
    _write_keras_h5(h5, w, new_names=new_names)
    out = tmp_path / "k.npz"
    vgg.convert_weights(h5, out)
    loaded = vgg.read_weights(out)
    # reference: the Keras weights as-is on BGR 0..255 mean-subtracted input
    _compare(loaded, w, images[:1], ("conv_1", "relu_4", "conv4_1"), bgr255=True)


def test_bad_weight_files_name_the_problem(tmp_path):
    pytest.importorskip("torch")
    import torch

    w = vgg.random_weights()
    with pytest.raises(InputError, match="no such weights file.*torchvision"):
        vgg.read_weights(tmp_path / "missing.pth")
    junk = tmp_path / "junk.pth"
    junk.write_bytes(b"\x00not a pickle" * 10)
    with pytest.raises(InputError, match="torchvision state dict"):
        vgg.read_weights(junk)
    bad_npz = tmp_path / "junk.npz"
    bad_npz.write_bytes(b"PK\x03\x04garbage")
    with pytest.raises(InputError, match="imsyn VGG-19 weights"):
        vgg.read_weights(bad_npz)
    bad_h5 = tmp_path / "junk.h5"
    bad_h5.write_bytes(b"garbage")
    with pytest.raises(InputError, match="HDF5"):
        vgg.read_weights(bad_h5)
    # VGG-16 (13 convs at other indices): the first missing VGG-19 key is named
    v16 = tmp_path / "vgg16.pth"
    torch.save(_real_torchvision_state(w, torch, indices=VGG16_CONV_INDICES), v16)
    with pytest.raises(InputError, match=r"missing features\.16\.weight"):
        vgg.read_weights(v16)
    # right keys, wrong shape: the layer is named
    state = _real_torchvision_state(w, torch)
    state["features.5.weight"] = torch.zeros(64, 64, 3, 3)
    wrong = tmp_path / "wrong.pth"
    torch.save(state, wrong)
    with pytest.raises(InputError, match=r"features\.5\.weight .*conv2_1"):
        vgg.read_weights(wrong)
    dropped = tmp_path / "k.h5"
    _write_keras_h5(dropped, w, drop="block4_conv3")
    with pytest.raises(InputError, match="Keras layout: missing block4_conv3"):
        vgg.read_weights(dropped)


def test_convert_weights_cli_bad_input_exit_2(tmp_path):
    out = tmp_path / "o.npz"
    p = _cli("convert-weights", tmp_path / "nope.h5", "--out", out)
    assert p.returncode == 2
    assert len(p.stderr.strip().splitlines()) == 1
    assert "nope.h5" in p.stderr and "Keras" in p.stderr
    assert not out.exists()


def test_random_mode_is_explicit(tmp_path, monkeypatch, capsys):
    monkeypatch.delenv("IMSYN_VGG19", raising=False)
    monkeypatch.setenv("IMSYN_CACHE_DIR", str(tmp_path))  # nothing fetched
    w = vgg.load_weights()
    assert w.source == "random" and w.normalization == "none"
    err = capsys.readouterr().err
    assert "random features" in err and "weights fetch vgg19" in err
    w2 = vgg.load_weights(quiet=True)
    np.testing.assert_array_equal(w.kernels[3], w2.kernels[3])  # fixed seed
    # He init keeps activations O(1) deep into the network
    x = jnp.full((1, 32, 32, 3), 0.5) + 0.1 * jax.random.normal(jax.random.key(0), (1, 32, 32, 3))
    f = vgg.features(w.params, x, layers=("relu_1", "relu5_1"))
    assert 0.01 < float(jnp.std(f["relu5_1"])) < 100


# ---------------------------------------------------------------- normalization


def _small_weights(seed, **kw):
    """Random weights saved with unit scales (loading them measures nothing)."""
    w = vgg.random_weights(seed)
    return w._replace(scales=(1.0,) * 16, source=f"seed{seed}.h5", **kw)


def test_default_weights_order(tmp_path, monkeypatch, capsys):
    from imsyn import weights as registry

    files = {}
    for seed, name in ((1, "explicit"), (2, "env"), (3, "cache")):
        files[name] = vgg.save_weights(_small_weights(seed), tmp_path / f"{name}.npz")
    monkeypatch.setenv("IMSYN_VGG19", str(files["env"]))
    monkeypatch.setattr(registry, "cached", lambda n: files["cache"] if n == "vgg19" else None)
    assert vgg.load_weights(files["explicit"]).source == "seed1.h5"
    assert vgg.load_weights().source == "seed2.h5"
    monkeypatch.delenv("IMSYN_VGG19")
    w = vgg.load_weights()
    assert w.source == "seed3.h5" and w.normalization == "mean-activation-1"
    assert capsys.readouterr().err == ""  # scales stored: nothing measured, no note
    monkeypatch.setattr(registry, "cached", lambda n: None)
    assert vgg.load_weights(quiet=True).source == "random"
    # a checkout without imsyn/weights.py still works (the import is guarded)
    monkeypatch.setattr(registry, "cached", lambda n: files["cache"])
    import imsyn

    monkeypatch.delattr(imsyn, "weights")
    monkeypatch.setitem(sys.modules, "imsyn.weights", None)
    assert vgg.load_weights(quiet=True).source == "random"


def test_normalization_invariant_to_per_layer_rescaling(rng):
    """conv1 x10 (kernel and bias) and conv2's kernel x0.1 is the same function from conv2
    on; raw conv1 features change 10x, the normalized network does not change at all."""
    w = vgg.random_weights(seed=7)
    ks, bs = list(w.kernels), list(w.biases)
    bs[0] = bs[0] + 0.05  # non-zero biases, so that the bias has to be scaled too
    w = w._replace(biases=tuple(bs))
    ks[0], bs[0], ks[1] = ks[0] * 10, bs[0] * 10, ks[1] * 0.1
    w2 = w._replace(kernels=tuple(ks), biases=tuple(bs))
    ref = rng.uniform(0, 1, (2, 32, 32, 3)).astype(np.float32)
    x = jnp.asarray(rng.uniform(0, 1, (1, 24, 28, 3)).astype(np.float32))
    layers = ("conv_1", "relu_1", "conv_2", "pool_1", "relu_5", "conv5_1")
    raw1 = vgg.features(w.params, x, layers=layers)
    raw2 = vgg.features(w2.params, x, layers=layers)
    assert _rel(raw2["conv_1"], 10 * raw1["conv_1"]) < 1e-6
    assert _rel(raw2["conv_2"], raw1["conv_2"]) < 1e-5
    n1 = vgg.normalize(w, vgg.activation_means(w, ref))
    n2 = vgg.normalize(w2, vgg.activation_means(w2, ref))
    assert n2.scales[0] == pytest.approx(10 * n1.scales[0], rel=1e-5)
    assert n2.scales[1:] == pytest.approx(n1.scales[1:], rel=1e-5)
    f1 = vgg.features(n1.params, x, layers=layers)
    f2 = vgg.features(n2.params, x, layers=layers)
    for k in layers:
        assert _rel(f2[k], f1[k]) < 1e-5, k
    assert vgg.activation_means(n1, ref) == pytest.approx((1.0,) * 16, rel=1e-4)
    back = vgg.denormalize(n1)
    for a, b in zip(back.kernels, w.kernels, strict=True):
        assert _rel(a, b) < 1e-6


def test_scales_stored_and_old_files_load(tmp_path, capsys):
    w = vgg.random_weights(seed=5)
    h5 = tmp_path / "vgg19_weights_tf_dim_ordering_tf_kernels_notop.h5"
    _write_keras_h5(h5, w)
    new = vgg.convert_weights(h5, tmp_path / "new.npz")
    with np.load(new) as z:
        assert z["scales"].shape == (16,) and "grace_hopper.jpg" in str(z["scales_set"])
    a = vgg.load_weights(new)
    assert a.normalized and capsys.readouterr().err == ""
    assert vgg.activation_means(a) == pytest.approx((1.0,) * 16, rel=1e-4)
    # a file converted by an older imsyn (no scales): measured at load time, with a note
    old = vgg.save_weights(vgg.read_weights(new)._replace(scales=None), tmp_path / "old.npz")
    with np.load(old) as z:
        assert "scales" not in z.files
    b = vgg.load_weights(old)
    assert "no normalization scales" in capsys.readouterr().err
    for x, y in zip(a.kernels + a.biases, b.kernels + b.biases, strict=True):
        np.testing.assert_allclose(x, y, rtol=1e-6, atol=1e-12)
    raw = vgg.load_weights(old, normalize=False)
    assert not raw.normalized and raw.normalization == "none"
    np.testing.assert_array_equal(raw.kernels[3], vgg.read_weights(new).kernels[3])
    # normalized weights saved and read back stay normalized (not rescaled twice)
    c = vgg.load_weights(vgg.save_weights(a, tmp_path / "n.npz"))
    np.testing.assert_array_equal(c.kernels[9], a.kernels[9])
    bad = dict(np.load(new))
    bad["scales"] = np.zeros(16)
    np.savez(tmp_path / "bad.npz", **bad)
    with pytest.raises(InputError, match="scales"):
        vgg.load_weights(tmp_path / "bad.npz")


# ---------------------------------------------------------------- the real VGG-19


@functools.lru_cache(maxsize=2)
def real_weights(path: str) -> vgg.VGGWeights:
    """The fetched VGG-19, normalized by imsyn (loaded once per test session)."""
    return vgg.load_weights(path, quiet=True)


class TorchVGG19:
    """The converted file's raw arrays (read with numpy, not imsyn) in plain
    ``torch.nn.functional``, on the Keras/Caffe input (BGR, 0..255, mean subtracted), with
    its own normalization scales: each layer's mean ReLU activation on the reference set."""

    def __init__(self, npz_path):
        torch = pytest.importorskip("torch")
        self.torch, self.F = torch, torch.nn.functional
        with np.load(npz_path) as z:
            assert "normalized" not in z.files or not bool(z["normalized"])  # raw arrays
            self.k = [
                torch.from_numpy(z[f"{n}/kernel"].transpose(3, 2, 0, 1).copy())
                for n in vgg.CONV_NAMES
            ]
            self.b = [torch.from_numpy(z[f"{n}/bias"].copy()) for n in vgg.CONV_NAMES]
        self.k[0] = self.k[0].flip(1)  # the converter flipped conv1 to RGB; Keras has BGR
        self.caffe = torch.tensor(vgg.CAFFE_MEAN_BGR, dtype=torch.float32).view(1, 3, 1, 1)
        self.scales = [1.0] * 16
        with torch.no_grad():
            x = self.nchw(vgg.reference_images())
            taps = self.taps(x, [f"relu_{i}" for i in range(1, 17)], normalized=False)
            self.scales = [float(taps[f"relu_{i}"].mean()) for i in range(1, 17)]

    def nchw(self, a):
        return self.torch.from_numpy(
            np.ascontiguousarray(np.asarray(a, np.float32).transpose(0, 3, 1, 2))
        )

    def taps(self, x_rgb01, layers, *, normalized=True):
        """``{name: NCHW activation}`` of ``x`` (NCHW RGB in [0, 1]), raw or normalized."""
        F = self.F
        h = x_rgb01.flip(1) * 255.0 - self.caffe
        want = {vgg.LAYER_INDEX[n]: n for n in layers}
        out, pos, k = {}, 0, -1
        for c in vgg.CFG:
            if c == "M":
                ops = [lambda t: F.max_pool2d(t, 2, 2)]
            else:
                k += 1
                ops = [lambda t, k=k: F.conv2d(t, self.k[k], self.b[k], padding=1), F.relu]
            for op in ops:
                h = op(h)
                if pos in want:
                    out[want[pos]] = h / self.scales[k] if normalized else h
                pos += 1
            if pos > max(want):
                return out
        return out


@functools.lru_cache(maxsize=2)
def torch_vgg19(path: str) -> TorchVGG19:
    return TorchVGG19(path)


def test_real_vgg19_normalized_features_match_pytorch(pretrained, rng):
    pytest.importorskip("torch")
    path = str(pretrained("vgg19"))
    w = real_weights(path)
    ref = torch_vgg19(path)
    assert w.source == "vgg19_weights_tf_dim_ordering_tf_kernels_notop.h5" and w.normalized
    # the scales: imsyn's (stored or measured) == PyTorch's measurement on the same images
    np.testing.assert_allclose(w.scales, ref.scales, rtol=1e-4)
    assert 20 < w.scales[0] < 40 and w.scales[8] > 300  # Caffe-scale raw features (0..255 in)
    x = rng.uniform(0, 1, (1, 40, 52, 3)).astype(np.float32)
    layers = ("conv_1", "relu1_2", "pool_1", "conv_4", "relu_9", "pool4", "conv5_1", "relu_16")
    feats = vgg.features(w.params, jnp.asarray(x), layers=layers, mean=w.mean, std=w.std)
    with ref.torch.no_grad():
        out = ref.taps(ref.nchw(x), layers)
    for k in layers:
        r = out[k].numpy().transpose(0, 2, 3, 1)
        assert _rel(feats[k], r) < 1e-4, (k, _rel(feats[k], r))

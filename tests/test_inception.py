"""Inception-v3 for FID: layers against PyTorch, the TF-FID TorchScript converter, the one
resize filter against PIL, and the real network (fetched ``inception_fid``) against the
TorchScript original on random and real images, features and FID."""

import hashlib
import warnings

import numpy as np
import pytest
import scipy.linalg

from imsyn import metrics
from imsyn.errors import ConfigError, InputError
from imsyn.models import inception

# --------------------------------------------------------------------------- layers, files


def test_inception_layers_match_pytorch(rng):
    torch = pytest.importorskip("torch")
    F = torch.nn.functional  # noqa: N806

    x = rng.normal(size=(2, 9, 11, 5)).astype(np.float32)
    xt = torch.from_numpy(x.transpose(0, 3, 1, 2))

    def back(t):
        return t.detach().numpy().transpose(0, 2, 3, 1)

    for include in (True, False):
        want = back(F.avg_pool2d(xt, 3, stride=1, padding=1, count_include_pad=include))
        got = inception.avg_pool_3x3(x, count_include_pad=include)
        np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(inception.max_pool(x), back(F.max_pool2d(xt, 3, stride=2)))
    np.testing.assert_allclose(
        inception.max_pool(x, 3, 1, 1), back(F.max_pool2d(xt, 3, stride=1, padding=1))
    )
    # BasicConv2d (conv without bias, BatchNorm eps 1e-3 in eval mode, ReLU), folded at load
    name = "Mixed_6b.branch7x7_2"  # a (1, 7) kernel with (0, 3) padding
    cin, cout, k, stride, pad = inception.SPECS[name]
    conv = torch.nn.Conv2d(cin, cout, k, stride=stride, padding=pad, bias=False)
    bn = torch.nn.BatchNorm2d(cout, eps=1e-3).eval()
    with torch.no_grad():
        bn.running_mean.uniform_(-0.5, 0.5)
        bn.running_var.uniform_(0.5, 2.0)
        bn.weight.uniform_(0.5, 1.5)
        bn.bias.uniform_(-0.5, 0.5)
    shapes = inception.torch_state_shapes()
    state = {
        k2: np.full(s, float(k2.endswith("running_var")), np.float32) for k2, s in shapes.items()
    }
    state[f"{name}.conv.weight"] = conv.weight.detach().numpy()
    for p in ("weight", "bias", "running_mean", "running_var"):
        state[f"{name}.bn.{p}"] = getattr(bn, p).detach().numpy()
    params = inception.fold_state_dict(state)
    z = rng.normal(size=(2, 8, 12, cin)).astype(np.float32)
    want = back(torch.relu(bn(conv(torch.from_numpy(z.transpose(0, 3, 1, 2))))))
    np.testing.assert_allclose(inception._conv(params, name, z), want, rtol=1e-4, atol=1e-4)


def test_resize_is_pil_bicubic_and_tf_input_scale(rng):
    from PIL import Image

    for (h, w), size in (((40, 52), 75), ((160, 120), 75), ((75, 75), 75)):
        u = rng.uniform(0, 255, size=(h, w)).astype(np.float32)
        want = np.asarray(Image.fromarray(u, mode="F").resize((size, size), Image.BICUBIC))
        want = np.clip(want, 0, 255) / 127.5 - 1.0
        got = np.asarray(inception.resize(u[None, :, :, None] / 127.5 - 1.0, size))[0, ..., 0]
        np.testing.assert_allclose(got, want, atol=5e-5)  # float32 vs PIL's double weights
    x = rng.uniform(-1, 1, size=(1, 75, 75, 3)).astype(np.float32)
    assert inception.resize(x, 75) is x  # already the input size: untouched
    # [-1, 1] -> uint8 scale (x+1)*127.5 -> (u - 128) / 128
    np.testing.assert_allclose(inception.tf_input(np.array([-1.0, 1.0])), [-1.0, 127 / 128])
    assert "bicubic" in inception.RESIZE_FILTER and "299" in inception.RESIZE_FILTER


def test_inception_features_and_weight_files(rng, tmp_path):
    from safetensors.numpy import save_file

    params = inception.random_weights(0)
    x = rng.uniform(-1, 1, size=(2, 32, 32, 3)).astype(np.float32)
    fid_feats = np.asarray(inception.features(params, x, variant="fid", size=75))
    tv_feats = np.asarray(inception.features(params, x, variant="torchvision", size=75))
    assert fid_feats.shape == (2, 2048) and np.all(np.isfinite(fid_feats))
    assert np.all(fid_feats >= 0) and not np.allclose(fid_feats, tv_feats)

    shapes = inception.torch_state_shapes()
    state = {k: rng.normal(size=s).astype(np.float32) for k, s in shapes.items()}
    state.update({k: np.ones(s, np.float32) for k, s in shapes.items() if "running_var" in k})
    save_file(state, str(tmp_path / "inc.safetensors"))
    ext = metrics.get_extractor("inception_v3_fid", str(tmp_path / "inc.safetensors"))
    assert ext.name == "inception_v3_fid" and len(ext.params) == len(inception.SPECS)
    # the older name is the same network, recorded under the resolved name
    assert metrics.get_extractor("inception_v3", tmp_path / "inc.safetensors").name == (
        "inception_v3_fid"
    )
    tv = metrics.get_extractor("inception_v3_torchvision", tmp_path / "inc.safetensors")
    assert tv.name == "inception_v3_torchvision" and "bicubic" in tv.resize
    del state["Mixed_7c.branch_pool.bn.running_mean"]
    save_file(state, str(tmp_path / "bad.safetensors"))
    with pytest.raises(InputError, match="Mixed_7c.branch_pool.bn.running_mean"):
        metrics.get_extractor("inception_v3_fid", str(tmp_path / "bad.safetensors"))
    with pytest.raises(ConfigError, match="needs a weights file"):
        metrics.get_extractor("inception_v3_torchvision")
    with pytest.raises(InputError, match="not found"):
        metrics.get_extractor("inception_v3_fid", str(tmp_path / "missing.safetensors"))


def _tf_port_entries() -> dict[str, tuple[int, ...]]:
    """Entries of the TF-FID TorchScript port and their shapes."""
    out = {}
    for name, (cin, cout, (kh, kw), _, _) in inception.SPECS.items():
        tf = "net." + inception.TF_FID_NAMES[name]
        out[f"{tf}.weight"] = (cout, cin, kh, kw)
        for p in ("beta", "mean", "var"):
            out[f"{tf}.{p}"] = (cout,)
    return out


def test_convert_fid_torchscript_maps_checks_and_writes_atomically(tmp_path, monkeypatch, rng):
    import imsyn.safe_pickle

    entries = _tf_port_entries()
    assert len(entries) == 376 and "net.layers.mixed_10.tower_2_conv.weight" in entries
    src = tmp_path / "default_1.pt"
    src.write_bytes(b"stand-in: load_torch_archive is replaced below")
    raw = {
        k: (rng.uniform(0.5, 1.5, s) if k.endswith(".var") else rng.normal(0, 0.1, s)).astype(
            np.float32
        )
        for k, s in entries.items()
    }
    monkeypatch.setattr(imsyn.safe_pickle, "load_torch_archive", lambda p: dict(raw))
    dst = inception.convert_fid_torchscript(src, tmp_path / "inception_fid.npz")
    with np.load(dst, allow_pickle=False) as z:
        assert str(z["__source__"]) == "default_1.pt"
        assert str(z["__source_sha256__"]) == hashlib.sha256(src.read_bytes()).hexdigest()
        tf = "net.layers.mixed_9.tower_mixed_conv.weight"
        np.testing.assert_array_equal(z["Mixed_7b.branch3x3_2a.conv.weight"], raw[tf])
        np.testing.assert_array_equal(z["Conv2d_1a_3x3.bn.weight"], np.ones(32, np.float32))
        tf = "net.layers.mixed_7.tower_1.conv_4.var"
        np.testing.assert_array_equal(z["Mixed_6e.branch7x7dbl_5.bn.running_var"], raw[tf])
    params = inception.read_weights(dst)
    w, b = params["Conv2d_1a_3x3"]
    scale = 1 / np.sqrt(raw["net.layers.conv.var"] + 1e-3)  # gamma = 1
    np.testing.assert_allclose(w, raw["net.layers.conv.weight"].transpose(2, 3, 1, 0) * scale)
    np.testing.assert_allclose(b, raw["net.layers.conv.beta"] - raw["net.layers.conv.mean"] * scale)

    def bad(key, value):
        broken = dict(raw)
        if value is None:
            del broken[key]
        else:
            broken[key] = value
        monkeypatch.setattr(imsyn.safe_pickle, "load_torch_archive", lambda p: broken)
        out = tmp_path / "out.npz"
        with pytest.raises(InputError, match=key.removeprefix("net.").replace(".", r"\.")):
            inception.convert_fid_torchscript(src, out)
        assert not out.exists() and not list(tmp_path.glob(".out.npz*"))

    key = "net.layers.mixed_4.tower_1.conv_2.weight"
    bad(key, None)
    bad(key, raw[key][..., :1])
    bad("net.layers.mixed_2.tower_2.conv.mean", np.full(64, np.nan, np.float32))
    with pytest.raises(InputError, match="not found"):
        inception.convert_fid_torchscript(tmp_path / "missing.pt", tmp_path / "x.npz")


# --------------------------------------------------------------------------- the real network


@pytest.fixture
def torchscript(pretrained):
    """The TF-FID TorchScript model (torch.jit.load) from the fetched original file."""
    torch = pytest.importorskip("torch")
    path = pretrained("inception_fid", original=True)
    with warnings.catch_warnings():  # "torch.jit.load is deprecated" (torch 2.13)
        warnings.simplefilter("ignore", DeprecationWarning)
        model = torch.jit.load(str(path), map_location="cpu").eval()

    def run(x):
        """float32[N, 299, 299, 3] in [-1, 1] -> TorchScript features [N, 2048]."""
        v = inception.tf_input(np.asarray(x, np.float32)).transpose(0, 3, 1, 2)
        v = np.ascontiguousarray(v)
        with torch.no_grad():
            return model(torch.from_numpy(v)).numpy().astype(np.float64)

    return run


@pytest.fixture(scope="module")
def photos() -> list[np.ndarray]:
    """Six real photos of different sizes, float32 [H, W, 3] in [-1, 1]: two sets of three."""
    from skimage import data

    a, c, k = data.astronaut(), data.coffee(), data.chelsea()
    imgs = [a, c, k, a[40:400, 100:480], c[:, ::-1], k[20:280, 60:400]]
    return [im.astype(np.float32) / 127.5 - 1.0 for im in imgs]


def _rel(got, want) -> float:
    return float(np.max(np.abs(got - want)) / np.max(np.abs(want)))


def test_real_network_matches_torchscript_on_random_and_real_images(
    pretrained, torchscript, photos, rng
):
    ext = metrics.get_extractor("inception_v3_fid", pretrained("inception_fid"), batch_size=4)
    x_random = rng.uniform(-1, 1, size=(2, 299, 299, 3)).astype(np.float32)
    x_real = np.concatenate([ext.prepare(p[None]) for p in photos[:3]])  # same 299 input
    for x in (x_random, x_real):
        got, want = np.asarray(ext(x), np.float64), torchscript(x)
        assert got.shape == want.shape == (len(x), 2048)
        assert _rel(got, want) < 1e-4
        np.testing.assert_allclose(got, want, rtol=1e-4, atol=1e-4 * np.abs(want).max())
    assert float(np.mean(want > 0)) > 0.5  # real images activate most pool3 units


def test_fid_on_real_images_matches_scipy_on_torchscript_features(pretrained, torchscript, photos):
    ext = metrics.get_extractor("inception_v3_fid", pretrained("inception_fid"), batch_size=3)
    x = np.concatenate([ext.prepare(p[None]) for p in photos])  # 299x299, bicubic
    f = np.asarray(ext(x), np.float64)
    t = torchscript(x)
    a, b = t[:3], t[3:]
    mu1, mu2 = a.mean(0), b.mean(0)
    s1, s2 = np.cov(a, rowvar=False), np.cov(b, rowvar=False)
    # pytorch-fid's formula. S1 S2 maps everything into span(centred rows of a and b) and
    # vanishes on its complement, so Tr sqrtm(S1 S2) is that of S1 S2 in an orthonormal basis
    # Q of the span (4-d here): exact in exact arithmetic and seconds faster than sqrtm on the
    # 2048x2048 product (which gave the same FID to 6e-6 relative, its own rounding, by hand).
    q, _ = np.linalg.qr(np.concatenate([a - mu1, b - mu2]).T)
    with warnings.catch_warnings():  # rank 2 of 4: "ill-conditioned", as pytorch-fid's is
        warnings.simplefilter("ignore", scipy.linalg.LinAlgWarning)
        covmean = np.real(scipy.linalg.sqrtm((q.T @ s1 @ q) @ (q.T @ s2 @ q)))
    want = float(np.sum((mu1 - mu2) ** 2) + np.trace(s1) + np.trace(s2) - 2 * np.trace(covmean))
    got = metrics.fid(f[:3], f[3:])
    assert want > 10 and abs(got - want) <= 1e-3 * want, (got, want)

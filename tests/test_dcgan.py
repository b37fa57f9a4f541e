"""DCGAN architecture: shapes, ranges, norms, spectral norm, registry, bad arguments."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx

from imsyn import models
from imsyn.errors import ConfigError
from imsyn.models.dcgan import DCDiscriminator, DCGenerator


@pytest.mark.parametrize("size", [32, 64])
@pytest.mark.parametrize("norm", ["instance", "batch", "none"])
def test_shapes_and_range(size, norm):
    g = models.get("dcgan_generator")(image_size=size, conv_dim=4, norm=norm, rngs=nnx.Rngs(0))
    d = models.get("dc_discriminator")(image_size=size, conv_dim=4, norm=norm, rngs=nnx.Rngs(1))
    z = jax.random.normal(jax.random.key(0), (3, 100))
    x = g(z)
    assert x.shape == (3, size, size, 3) and x.dtype == jnp.float32
    assert float(jnp.max(jnp.abs(x))) <= 1.0
    logits = d(x)
    assert logits.shape == (3,) and bool(jnp.all(jnp.isfinite(logits)))


def test_course_architecture_widths():
    g = DCGenerator(image_size=64, conv_dim=8, rngs=nnx.Rngs(0))
    assert g.stem.kernel.shape == (4, 4, 100, 64)  # 4x4 transposed conv to conv_dim*8
    assert [b.conv.kernel.shape[-1] for b in g.blocks] == [32, 16, 8]
    assert g.out.conv.kernel.shape[-1] == 3
    d = DCDiscriminator(image_size=64, conv_dim=8, rngs=nnx.Rngs(0))
    assert [c.kernel.shape[-1] for c in d.convs] == [8, 16, 32, 64]
    assert all(c.stride == (2, 2) and c.kernel_size == (4, 4) for c in d.convs)
    assert d.head.kernel.shape == (4, 4, 64, 1)
    g32 = DCGenerator(image_size=32, conv_dim=8, rngs=nnx.Rngs(0))
    assert len(g32.blocks) == 2
    # DCGAN init: N(0, 0.02)
    w = np.asarray(DCGenerator(image_size=64, conv_dim=32, rngs=nnx.Rngs(3)).stem.kernel[...])
    assert abs(w.std() - 0.02) < 0.001 and abs(w.mean()) < 0.001


def test_examples_are_independent_with_instance_norm():
    g = DCGenerator(image_size=32, conv_dim=4, rngs=nnx.Rngs(0))
    z = jax.random.normal(jax.random.key(1), (4, 100))
    np.testing.assert_allclose(g(z)[:1], g(z[:1]), atol=1e-6)


def test_batch_norm_train_and_eval_modes_differ():
    g = DCGenerator(image_size=32, conv_dim=4, norm="batch", rngs=nnx.Rngs(0))
    z = jax.random.normal(jax.random.key(1), (4, 100))
    train_out = g(z)  # batch statistics, updates the running averages
    g.eval()
    assert not np.allclose(train_out, g(z), atol=1e-4)


def test_spectral_norm_bounds_the_kernel():
    d = DCDiscriminator(
        image_size=32, conv_dim=4, norm="none", spectral_norm=True, rngs=nnx.Rngs(0)
    )
    x = jax.random.normal(jax.random.key(1), (2, 32, 32, 3))
    for _ in range(30):  # power iterations converge while training
        d(x)
    for conv in list(d.convs) + [d.head]:
        w = np.asarray(conv._kernel()).reshape(-1, conv.kernel.shape[-1])
        assert np.linalg.svd(w, compute_uv=False)[0] == pytest.approx(1.0, rel=0.05)


def test_bad_arguments():
    with pytest.raises(ValueError, match="image_size"):
        DCGenerator(image_size=48, rngs=nnx.Rngs(0))
    with pytest.raises(ValueError, match="norm"):
        DCDiscriminator(norm="layer", rngs=nnx.Rngs(0))
    d = DCDiscriminator(image_size=32, conv_dim=4, rngs=nnx.Rngs(0))
    with pytest.raises(ValueError, match="expects"):
        d(jnp.zeros((1, 64, 64, 3)))


def test_registry():
    assert models.get("dcgan_generator") is DCGenerator
    assert {"dcgan_generator", "dc_discriminator", "cycle_resnet"} <= set(models.names())
    with pytest.raises(ConfigError, match="unknown model"):
        models.get("no_such_model")


# --------------------------------------------------------------------------- evaluation features


def _dcgan_config(folder, **overrides):
    import importlib.util
    from pathlib import Path

    path = Path(__file__).resolve().parents[1] / "configs" / "dcgan.py"
    spec = importlib.util.spec_from_file_location("dcgan_config", path)
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    c = mod.get_config("quick")
    c.update({"data": f"folder:{folder}", "data_category": "", "conv_dim": 2, "batch_size": 2})
    c.update({"eval_samples": 3, "num_sample_images": 2, **overrides})
    return c


@pytest.fixture
def four_images(tmp_path):
    from PIL import Image

    folder = tmp_path / "imgs"
    folder.mkdir()
    rng = np.random.default_rng(0)
    for i in range(4):
        Image.fromarray(rng.integers(0, 255, (32, 32, 3), dtype=np.uint8)).save(folder / f"{i}.png")
    return folder


def test_features_auto_is_validated_and_recorded_resolved(
    four_images, tmp_path, monkeypatch, pretrained
):
    from imsyn.training.gan import DCGANTask

    task = DCGANTask()
    c = _dcgan_config(four_images)
    assert c.features == "auto" and c.features_path == ""
    for bad, match in (
        ({"features": "inception_v4"}, "config.features: unknown feature extractor"),
        ({"features_path": str(tmp_path / "none.npz")}, "config.features_path"),
        ({"features_path": str(four_images / "0.png")}, "takes no weights file"),
        ({"features": "inception_v3_torchvision"}, "needs a weights file"),
    ):
        with pytest.raises(ConfigError, match=match):
            task.validate(_dcgan_config(four_images, **bad))
    # with the fetched TF-FID weights "auto" is the real Inception-v3
    pretrained("inception_fid")
    task.validate(c)
    state = task.init_state(c, jax.random.key(0))
    m = task.evaluate(state, c, tmp_path / "run")
    assert m["features"] == "inception_v3_fid" and "features_note" not in m
    assert m["fid"] > 0 and "bicubic to 299x299" in m["features_resize"]
    # without them "auto" is the offline fallback, recorded as such
    monkeypatch.setenv("IMSYN_CACHE_DIR", str(tmp_path / "empty_cache"))
    with pytest.raises(ConfigError, match="weights fetch inception_fid"):
        task.validate(_dcgan_config(four_images, features="inception_v3_fid"))
    m = task.evaluate(state, c, tmp_path / "run")
    assert m["features"] == "random_conv_v1" and "not comparable" in m["features_note"]
    assert np.isfinite(m["fid"]) and "64x64" in m["features_resize"]

"""DCGAN: architecture (shapes, norms, spectral norm, registry, bad arguments), the pure
step of :mod:`imsyn.gan`, slerp, and the config of :mod:`imsyn.tasks.dcgan` (every preset,
data-spec overrides, features)."""

import importlib.util
from pathlib import Path

import chex
import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx

from imsyn import gan, models
from imsyn.errors import ConfigError
from imsyn.models.dcgan import DCDiscriminator, DCGenerator
from imsyn.tasks import dcgan
from imsyn.tasks.dcgan import DCGANTask


@pytest.mark.parametrize("size", [32, 64])
@pytest.mark.parametrize("norm", ["instance", "batch", "none"])
def test_shapes_and_range(size, norm):
    g = models.get("dcgan_generator")(image_size=size, conv_dim=4, norm=norm, rngs=nnx.Rngs(0))
    d = models.get("dc_discriminator")(image_size=size, conv_dim=4, norm=norm, rngs=nnx.Rngs(1))
    z = jax.random.normal(jax.random.key(0), (3, 100))
    x = g(z)
    assert x.shape == (3, size, size, 3) and x.dtype == jnp.float32
    # the image depends on z: no two latents give the same image
    diff = jnp.abs(x[:, None] - x[None]).max(axis=(2, 3, 4))
    assert float(jnp.min(diff + jnp.eye(3))) > 1e-4
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


# --------------------------------------------------------------------------- the library


def test_library_imports_no_training_machinery():
    import subprocess
    import sys

    code = (
        "import sys, imsyn.gan; print(sorted(m for m in sys.modules if m.split('.')[0] in "
        "('orbax', 'ml_collections', 'tensorboardX') or m.startswith(('imsyn.training', "
        "'imsyn.tasks'))))"
    )  # (absl comes with optax)
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"


def test_dcgan_step_is_pure_and_jit_agrees():
    import optax

    g, d = gan.make_dcgan(image_size=32, conv_dim=2, norm="batch", key=jax.random.key(0))
    opt = optax.adam(1e-3, b1=0.5)
    state = gan.init_dcgan_state(g, d, opt, opt)
    step = gan.make_dcgan_step(nnx.graphdef(g), nnx.graphdef(d), opt, opt, loss="hinge", diffaug="")
    batch = {"image": jax.random.uniform(jax.random.key(1), (2, 32, 32, 3), minval=-1, maxval=1)}
    key = jax.random.key(2)
    jitted = jax.jit(chex.assert_max_traces(step, n=1))
    s1, m1 = jitted(state, batch, key)
    s2, m2 = jitted(state, batch, key)  # same inputs, same outputs, no retrace
    s0, m0 = step(state, batch, key)
    chex.assert_trees_all_close(m1, m0, rtol=1e-4, atol=1e-5)
    chex.assert_trees_all_close(s1, s0, rtol=1e-4, atol=1e-5)
    chex.assert_trees_all_equal(s1, s2)
    # the step moved both networks' parameters and G's batch-norm statistics
    for net in ("g", "d"):
        params = nnx.split_state(state[net], nnx.Param, ...)[0]
        new = nnx.split_state(s1[net], nnx.Param, ...)[0]
        assert any(jax.tree.leaves(jax.tree.map(lambda a, b: bool(jnp.any(a != b)), params, new)))
    stats = nnx.split_state(s1["g"], nnx.BatchStat, ...)[0]
    assert jax.tree.leaves(stats) and any(bool(jnp.any(v != 0)) for v in jax.tree.leaves(stats))
    with pytest.raises(ValueError, match="loss"):
        gan.make_dcgan_step(nnx.graphdef(g), nnx.graphdef(d), opt, opt, loss="wgan")


def test_generate_is_eval_mode_and_batched():
    g, _ = gan.make_dcgan(image_size=32, conv_dim=2, norm="batch", key=jax.random.key(0))
    z = jax.random.normal(jax.random.key(1), (5, 100))
    g_def, g_state = nnx.split(g)
    images = gan.generate(g_def, g_state, z, batch_size=2)  # 3 calls, running statistics
    assert images.shape == (5, 32, 32, 3) and images.min() >= 0 and images.max() <= 1
    g.eval()
    np.testing.assert_allclose(images, (np.asarray(g(z)) + 1) / 2, atol=1e-5)


def test_slerp():
    a, b = np.array([1.0, 0.0]), np.array([0.0, 1.0])
    out = np.asarray(gan.slerp(a, b, np.linspace(0, 1, 5)))
    np.testing.assert_allclose(out[[0, -1]], [a, b], atol=1e-6)
    mid = out[2]  # on the great circle: at 45 degrees, not on the chord from a to b
    np.testing.assert_allclose(np.arctan2(mid[1], mid[0]), np.pi / 4, atol=1e-6)
    assert np.linalg.norm(mid) == pytest.approx(1.0, rel=1e-6)  # the chord's midpoint: 0.71
    # parallel latents: the straight line, no NaN; shapes beyond vectors (w+)
    np.testing.assert_allclose(gan.slerp(a, 3 * a, [0.5]), [2 * a], atol=1e-6)
    w = jax.random.normal(jax.random.key(0), (2, 4, 8))
    assert gan.slerp(w[0], w[1], jnp.linspace(0, 1, 3)).shape == (3, 4, 8)


# --------------------------------------------------------------------------- evaluation features


CONFIG = Path(__file__).resolve().parents[1] / "configs" / "dcgan.py"


def _config_module():
    spec = importlib.util.spec_from_file_location("dcgan_config", CONFIG)
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def _dcgan_config(folder, **overrides):
    c = _config_module().get_config("quick")
    c.update({"data": f"folder:{folder}", "conv_dim": 2, "batch_size": 2})
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
    c = _dcgan_config(four_images)
    task = DCGANTask(c)
    assert c.features == "auto" and c.features_path == ""
    for bad, match in (
        ({"features": "inception_v4"}, "config.features must be one of 'auto'.*got 'inception_v4'"),
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
    # the DiffAugment paper's low-shot protocol: eval_samples generated images against
    # every training image (eval_real caps them), stated in the metrics
    assert (m["num_fake"], m["num_real"]) == (3, 4)
    assert m["protocol"].startswith("3 generated images against 4 of the 4 training images")
    m = task.evaluate(state, _dcgan_config(four_images, eval_real=2), tmp_path / "run2")
    assert (m["num_fake"], m["num_real"]) == (3, 2)


# --------------------------------------------------------------------------- the config


@pytest.mark.parametrize("preset", list(_config_module().PRESETS))
def test_every_preset_validates(preset, four_images):
    c = _config_module().get_config(preset)
    if c.data.startswith("folder:"):  # the course's data lives beside the checkout
        c.data = f"folder:{four_images}"
    dcgan.validate(c)


def test_quick_preset_with_a_folder_from_the_command_line(four_images):
    from absl import flags
    from ml_collections import config_flags

    argv = ["train.py", f"--config={CONFIG}:quick", f"--config.data=folder:{four_images}"]
    fv = flags.FlagValues()
    config_flags.DEFINE_config_file(
        "config", None, "", flag_values=fv, lock_config=False, sys_argv=argv
    )
    fv(argv)
    dcgan.validate(fv.config)
    assert len(DCGANTask().source(fv.config)) == 4


def test_old_data_category_field_is_refused_with_the_new_spelling(four_images):
    c = _dcgan_config(four_images)
    c.data_category = "faces"
    with pytest.raises(ConfigError, match=r"config.data_category.*emoji:twemoji\?category=faces"):
        dcgan.validate(c)

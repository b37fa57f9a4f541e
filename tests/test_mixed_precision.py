"""Mixed precision (``dtype="bfloat16"``): bf16 compute, float32 parameters, optimizer state,
gradients and losses, for DCGAN, CycleGAN and NST.

The training tests run the same tiny GAN from the same initialisation, data and keys in
float32 and in bfloat16 and compare the loss curves as means over windows of 50 steps, each
difference divided by the float32 loss's first-window mean (its scale). Measured on this CPU
(``python -m pytest tests/test_mixed_precision.py``; the numbers are in docs/training.md):
first window <= 0.5 %, any window of 300 steps <= 11 % (DCGAN's G loss late in training,
where the two GAN trajectories have drifted apart; CycleGAN <= 1.5 %). The tolerances below
are about 2x those: 2 % for the first window, 25 % for every window. NST (real VGG-19, 64 px):
the bf16 loss is within 0.7 % of the float32 loss at every step of L-BFGS and Adam (the
tolerance: 2 %).
"""

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
from flax import nnx

from imsyn import gan, nst
from imsyn.errors import ConfigError, InputError
from imsyn.models import conv_cpu, layers, vgg

STEPS = 300
WINDOW = 50
FIRST_WINDOW_TOL = 0.02
WINDOW_TOL = 0.25
NST_TOL = 0.02


def _smooth(key, n, size):
    """Smooth random images in [-1, 1] (4x4 blocks): learnable by a tiny network."""
    lo = jax.random.uniform(key, (n, size // 4, size // 4, 3), minval=-1, maxval=1)
    return jnp.repeat(jnp.repeat(lo, 4, 1), 4, 2)


def _train(step, state, batch_of, steps=STEPS):
    step = jax.jit(step)
    hist = []
    for i in range(steps):
        state, m = step(state, batch_of(i), jax.random.fold_in(jax.random.key(7), i))
        hist.append(m)
    return state, {k: np.array([float(h[k]) for h in hist]) for k in hist[0]}


def _window_diffs(f32, bf16):
    """|window mean difference| / |first float32 window mean| per window of WINDOW steps."""
    n = len(f32) // WINDOW
    a = f32[: n * WINDOW].reshape(n, WINDOW).mean(1)
    b = bf16[: n * WINDOW].reshape(n, WINDOW).mean(1)
    return np.abs(a - b) / abs(a[0])


def _check_tracks(hists, keys):
    for k in keys:
        d = _window_diffs(hists["float32"][k], hists["bfloat16"][k])
        assert d[0] <= FIRST_WINDOW_TOL, (k, d)
        assert d.max() <= WINDOW_TOL, (k, d)


def _float32_only(tree):
    return {str(a.dtype) for a in jax.tree.leaves(tree)} <= {"float32", "int32"}


def _eqns(jaxpr):
    """Every equation of a jaxpr, sub-jaxprs (cond branches, custom_vjp, pjit) included."""
    for e in jaxpr.eqns:
        yield e
        for v in e.params.values():
            for sub in v if isinstance(v, (list, tuple)) else [v]:
                inner = getattr(sub, "jaxpr", sub)
                if hasattr(inner, "eqns"):
                    yield from _eqns(inner)


def _conv_dtypes(fn, *args) -> set:
    jaxpr = jax.make_jaxpr(fn)(*args).jaxpr
    return {
        tuple(str(v.aval.dtype) for v in e.invars[:2])
        for e in _eqns(jaxpr)
        if e.primitive.name == "conv_general_dilated"
    }


# --------------------------------------------------------------------------- GANs


def test_dcgan_bf16_tracks_float32():
    images = _smooth(jax.random.key(1), 64, 32)
    g, d = gan.make_dcgan(image_size=32, conv_dim=8, key=jax.random.key(0))
    opt = optax.adam(2e-4, b1=0.5)

    def batch_of(i):
        j = (i * 4) % 64
        return {"image": images[j : j + 4]}

    hists, steps = {}, {}
    for dt in layers.DTYPES:
        steps[dt] = gan.make_dcgan_step(nnx.graphdef(g), nnx.graphdef(d), opt, opt, dtype=dt)
        state, hists[dt] = _train(steps[dt], gan.init_dcgan_state(g, d, opt, opt), batch_of)
        assert _float32_only(state), dt  # params, batch statistics and Adam moments
    _check_tracks(hists, ("d_loss", "g_loss"))
    args = (gan.init_dcgan_state(g, d, opt, opt), batch_of(0), jax.random.key(0))
    # bf16 convolutions (the accelerator branch; the CPU branch upcasts inside its kernels)
    assert ("bfloat16", "bfloat16") in _conv_dtypes(steps["bfloat16"], *args)
    assert _conv_dtypes(steps["float32"], *args) == {("float32", "float32")}


def test_cyclegan_bf16_tracks_float32():
    px = _smooth(jax.random.key(2), 32, 16)
    py = -_smooth(jax.random.key(3), 32, 16)
    nets = gan.make_cyclegan(
        image_size=16, g_conv_dim=8, d_conv_dim=8, n_blocks=1, key=jax.random.key(0)
    )
    defs = gan.CycleGAN(*(nnx.graphdef(m) for m in nets))
    opt = optax.adam(3e-4, b1=0.5)

    def batch_of(i):
        j = (i * 4) % 32
        return {"x": px[j : j + 4], "y": py[j : j + 4]}

    hists, steps = {}, {}
    for dt in layers.DTYPES:
        steps[dt] = gan.make_cyclegan_step(defs, opt, opt, dtype=dt)
        state, hists[dt] = _train(steps[dt], gan.init_cyclegan_state(nets, opt, opt), batch_of)
        assert _float32_only(state), dt
    _check_tracks(hists, ("d_loss", "g_loss", "cycle"))
    args = (gan.init_cyclegan_state(nets, opt, opt), batch_of(0), jax.random.key(0))
    assert ("bfloat16", "bfloat16") in _conv_dtypes(steps["bfloat16"], *args)


def test_bf16_gradients_are_float32_and_norms_return_the_input_dtype():
    g, d = gan.make_dcgan(image_size=32, conv_dim=4, key=jax.random.key(0))
    gd, gp = nnx.split(g)

    def loss(p, z):
        out = layers.apply_in(nnx.merge(gd, p), z, jnp.bfloat16)
        assert out.dtype == jnp.float32
        return jnp.mean(out)

    grads = jax.jit(jax.grad(loss))(gp, jnp.ones((2, 100)))
    assert _float32_only(grads)
    x = jnp.ones((2, 4, 4, 8), jnp.bfloat16)
    bn = layers.make_norm("batch", 8, rngs=nnx.Rngs(0))
    assert bn(x).dtype == jnp.bfloat16
    assert bn.mean[...].dtype == jnp.float32  # running statistics stay float32
    assert layers.make_norm("instance", 8, rngs=nnx.Rngs(0))(x).dtype == jnp.bfloat16


def test_cpu_kernels_accept_bf16():
    rng = np.random.default_rng(0)
    x = jnp.asarray(rng.standard_normal((2, 8, 8, 128)), jnp.float32)
    w = jnp.asarray(rng.standard_normal((3, 3, 128, 128)) * 0.03, jnp.float32)
    assert conv_cpu._winograd_ok(w.shape)  # the Winograd path, upcast
    ref = conv_cpu.conv2d(x, w, (1, 1), ((1, 1), (1, 1)))
    got = conv_cpu.conv2d(x.astype(jnp.bfloat16), w.astype(jnp.bfloat16), (1, 1), ((1, 1),) * 2)
    assert got.dtype == jnp.bfloat16
    np.testing.assert_allclose(np.asarray(got, np.float32), ref, rtol=0.05, atol=0.05)
    dx = jax.grad(lambda v: jnp.sum(conv_cpu.conv2d(v, w.astype(v.dtype), (1, 1), ((1, 1),) * 2)))(
        x.astype(jnp.bfloat16)
    )
    assert dx.dtype == jnp.bfloat16
    k = w[:, :, :, :3]
    up = conv_cpu.upconv3x3_x2(x.astype(jnp.bfloat16), k, reflect=True)
    ref = layers.upconv3x3_x2_plain(x, k, reflect=True)
    assert up.dtype == jnp.bfloat16
    np.testing.assert_allclose(np.asarray(up, np.float32), ref, rtol=0.05, atol=0.05)


# --------------------------------------------------------------------------- config


def test_bad_dtype_is_one_config_error():
    import importlib.util
    from pathlib import Path

    from imsyn.tasks import cyclegan as cyclegan_task
    from imsyn.tasks import dcgan as dcgan_task

    root = Path(__file__).resolve().parents[1]
    for name, task in (("dcgan", dcgan_task), ("cyclegan", cyclegan_task)):
        spec = importlib.util.spec_from_file_location(f"{name}_cfg", root / f"configs/{name}.py")
        mod = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(mod)
        c = mod.get_config()
        assert c.dtype == "float32"
        c.dtype = "float16"
        with pytest.raises(ConfigError, match=r"^config\.dtype must be one of 'float32', "):
            task.check(c)
    with pytest.raises(InputError, match="dtype must be one of"):
        nst.Options(dtype="bf16").validated()


# --------------------------------------------------------------------------- NST


@pytest.mark.parametrize("optimizer", ["lbfgs", "adam"])
def test_nst_bf16_tracks_float32(pretrained, optimizer):
    from skimage import data

    weights = vgg.load_weights(pretrained("vgg19"))
    content = nst.resize(data.astronaut().astype(np.float32) / 255, (64, 64))
    style = nst.resize(data.coffee().astype(np.float32) / 255, (64, 64))
    res = {}
    for dt in layers.DTYPES:
        options = nst.Options(optimizer=optimizer, steps=40, dtype=dt)
        res[dt] = nst.optimize(weights, content=content, styles=[style], options=options)
    a, b = res["float32"].loss, res["bfloat16"].loss
    n = min(len(a), len(b))
    assert n > 20
    rel = np.abs(a[:n] - b[:n]) / a[:n]
    assert rel.max() <= NST_TOL, rel
    assert a[-1] < 0.1 * a[0] and b[-1] < 0.1 * b[0]  # both converge
    assert res["bfloat16"].image.dtype == np.float32

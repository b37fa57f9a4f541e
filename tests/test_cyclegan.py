"""CycleGAN: networks, the pure step and pool of :mod:`imsyn.gan`, the evaluation, the config
of :mod:`imsyn.tasks.cyclegan` (every preset) and bad input (the shared layers are tested in
test_layers.py)."""

import importlib.util
import json
from pathlib import Path

import chex
import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
from flax import nnx

from imsyn import gan, models
from imsyn.data import ArraySource
from imsyn.errors import ConfigError
from imsyn.experiments import main as experiments_main
from imsyn.tasks import cyclegan as cg

ROOT = Path(__file__).resolve().parents[1]
# face-smiling: 11 train / 3 test emoji, renders in a moment
_TINY = dict(
    data="emoji:twemoji?category=face-smiling",
    data_y="emoji:openmoji?category=face-smiling",
    image_size=16,
    batch_size=2,
    num_steps=3,
    decay_start=1,
    g_conv_dim=4,
    d_conv_dim=4,
    n_blocks=1,
    log_every=1,
    checkpoint_every=3,
    sample_every=3,
    features="random_conv_v1",  # FID/KID without Inception: fast
)


def _config(preset=""):
    spec = importlib.util.spec_from_file_location("cyclegan_config", ROOT / "configs/cyclegan.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod.get_config(preset), mod


def _tiny_config(**over):
    c, _ = _config()
    c.update({**_TINY, **over})
    return c


# --------------------------------------------------------------------------- networks


def test_network_shapes_and_registry():
    r = nnx.Rngs(0)
    g = models.get("cycle_resnet")(conv_dim=8, n_blocks=2, rngs=r)
    x = jnp.asarray(np.random.default_rng(0).uniform(-1, 1, (2, 32, 32, 3)), jnp.float32)
    y = g(x)
    assert y.shape == (2, 32, 32, 3)
    assert float(jnp.abs(y).max()) < 1.0  # tanh
    assert models.get("patch_discriminator")(conv_dim=8, rngs=r)(
        jnp.zeros((2, 64, 64, 3))
    ).shape == (2, 4, 4, 1)  # the course's 4x4 patch output at 64 px
    assert models.get("patch70_discriminator")(conv_dim=8, rngs=r)(
        jnp.zeros((1, 64, 64, 3))
    ).shape == (1, 6, 6, 1)
    assert models.get("patch16_discriminator")(conv_dim=8, rngs=r)(
        jnp.zeros((1, 32, 32, 3))
    ).shape == (1, 14, 14, 1)  # pix2pix's 16x16 PatchGAN: local logits
    with pytest.raises(ValueError, match="multiples of 4"):
        g(jnp.zeros((1, 30, 30, 3)))


def test_unet_skip_carries_detail_around_the_bottleneck():
    r = nnx.Rngs(0)
    plain = models.get("cycle_resnet")(conv_dim=8, n_blocks=1, rngs=r)
    unet = models.get("cycle_resnet")(conv_dim=8, n_blocks=1, skip="unet", rngs=r)
    x = jnp.asarray(np.random.default_rng(0).uniform(-1, 1, (1, 16, 16, 3)), jnp.float32)
    assert unet(x).shape == x.shape and float(jnp.abs(unet(x)).max()) < 1.0
    assert unet.up2.conv.kernel.shape[2] == 2 * plain.up2.conv.kernel.shape[2]
    # the output depends on the half-resolution features directly: a change in one input
    # pixel reaches the output through the skip even when the bottleneck is switched off

    def out(x, m):
        gd, st = nnx.split(m)
        st = jax.tree.map(lambda a: a, st)
        m2 = nnx.merge(gd, st)
        m2.up1.conv.kernel.value = jnp.zeros_like(m2.up1.conv.kernel.value)
        return m2(x)

    assert float(jnp.abs(out(x, unet) - out(-x, unet)).max()) > 1e-3
    assert float(jnp.abs(out(x, plain) - out(-x, plain)).max()) < 1e-6
    with pytest.raises(ValueError, match="skip"):
        models.get("cycle_resnet")(conv_dim=8, skip="add", rngs=r)


def test_full_unet_skip_passes_the_input_at_full_resolution():
    g = models.get("cycle_resnet")(conv_dim=8, n_blocks=1, skip="unet_full", rngs=nnx.Rngs(0))
    assert g.out.kernel.shape[2] == 4 + 3  # conv_dim // 2 features and the input
    g.up2.conv.kernel[...] = jnp.zeros_like(g.up2.conv.kernel[...])  # cut the decoder off
    x = jnp.asarray(np.random.default_rng(0).uniform(-1, 1, (1, 16, 16, 3)), jnp.float32)
    x2 = x.at[0, 5, 9, 0].add(0.5)  # one input pixel
    changed = np.argwhere(np.abs(np.asarray(g(x2) - g(x)))[0].max(-1) > 1e-6)
    # only the last 3x3 conv reaches the output: the pixel's 3x3 neighbourhood changes
    assert len(changed) and (np.abs(changed - [5, 9]) <= 1).all(), changed


def test_zoom_known_answers_and_gradient():
    from imsyn.models.cyclegan import zoom

    n = 16
    ramp = jnp.broadcast_to(
        jnp.arange(n, dtype=jnp.float32)[None, :, None, None], (2, n, n, 1)
    )  # rows
    assert jnp.array_equal(zoom(ramp, jnp.zeros(2)), ramp)  # exactly the identity at scale 1
    # a linear image scaled by s about the centre reads position (i + 1/2 - n/2) / s + n/2 - 1/2,
    # clamped to the edge (the uncovered border repeats the edge pixels)
    s = jnp.array([0.8, 1.25])
    out = zoom(ramp, jnp.log(s))
    i = np.arange(n) + 0.5 - n / 2
    for b in range(2):
        want = np.clip(i / float(s[b]) + n / 2 - 0.5, 0, n - 1)
        np.testing.assert_allclose(
            np.asarray(out[b, :, :, 0]), np.tile(want[:, None], (1, n)), atol=1e-5
        )
        np.testing.assert_allclose(  # and the same down the columns
            np.asarray(out[b, :, :, 0]).T,
            np.asarray(zoom(jnp.swapaxes(ramp, 1, 2), jnp.log(s))[b, :, :, 0]),
            atol=1e-5,
        )
    # differentiable in the scale: shrinking a centred bright square darkens the image
    sq = jnp.zeros((1, n, n, 1)).at[:, 4:12, 4:12].set(1.0)
    assert float(jax.grad(lambda a: zoom(sq, a).sum())(jnp.zeros(()))) > 0


def test_zoom_generator_starts_as_the_plain_generator():
    x = jnp.asarray(np.random.default_rng(0).uniform(-1, 1, (2, 16, 16, 3)), jnp.float32)
    plain = models.get("cycle_resnet")(conv_dim=4, n_blocks=1, skip="unet", rngs=nnx.Rngs(0))
    zoomed = models.get("cycle_resnet")(
        conv_dim=4, n_blocks=1, skip="unet", align="zoom", rngs=nnx.Rngs(0)
    )
    np.testing.assert_allclose(np.asarray(zoomed(x)), np.asarray(plain(x)), atol=1e-6)
    with pytest.raises(ValueError, match="align"):
        models.get("cycle_resnet")(conv_dim=4, align="affine", rngs=nnx.Rngs(0))


def test_identity_loss_skips_the_zoom(rng):
    """G = restyle ∘ frame; the identity term compares y with restyle(y): an image already
    in the target domain needs no reframing."""
    nets = gan.make_cyclegan(
        image_size=16,
        g_conv_dim=4,
        d_conv_dim=4,
        n_blocks=1,
        g_skip="unet",
        g_align="zoom",
        key=jax.random.key(0),
    )
    nets.g_xy.zoom[...] = jnp.array(-0.15)  # shrink (log scale)
    nets.g_yx.zoom[...] = jnp.array(0.15)  # enlarge: the inverse
    opt = optax.sgd(0.0)
    defs = gan.CycleGAN(*(nnx.graphdef(m) for m in nets))
    step = gan.make_cyclegan_step(defs, opt, opt, lambda_identity=0.5)
    batch = _batch(rng)
    _, m = step(gan.init_cyclegan_state(nets, opt, opt), batch, jax.random.key(0))
    x, y = batch["x"], batch["y"]

    def l1(a, b):
        return float(jnp.mean(jnp.abs(a - b)))

    want = l1(y, nets.g_xy.restyle(y)) + l1(x, nets.g_yx.restyle(x))
    zoomed = l1(y, nets.g_xy(y)) + l1(x, nets.g_yx(x))
    assert float(m["identity"]) == pytest.approx(want, rel=1e-5)
    assert abs(zoomed - want) > 1e-3
    want_cycle = l1(x, nets.g_yx(nets.g_xy(x))) + l1(y, nets.g_xy(nets.g_yx(y)))
    assert float(m["cycle"]) == pytest.approx(want_cycle, rel=1e-5)


def test_framing_measures_the_spread_of_the_subject():
    def squares(side, n=32, bg=1.0):
        img = np.full((2, n, n, 3), bg, np.float32)
        a = (n - side) // 2
        img[:, a : a + side, a : a + side] = 0.2  # a centred square on a plain background
        return img

    # a square of side a (in image sides): RMS distance from the centre sqrt(a^2 / 6)
    assert gan.framing(squares(16)) == pytest.approx(np.sqrt(0.5**2 / 6), rel=0.02)
    assert gan.framing(iter([squares(16), squares(16, bg=0.0)])) == pytest.approx(
        np.sqrt(0.5**2 / 6), rel=0.02
    )  # any background colour: the border's
    assert gan.framing(squares(12)) / gan.framing(squares(16)) == pytest.approx(0.75, rel=0.03)
    with pytest.raises(ValueError, match="foreground"):
        gan.framing(np.ones((2, 8, 8, 3), np.float32))


def test_zoom_starts_at_the_measured_framing(tmp_path):
    c = _tiny_config(g_align="zoom", ema_decay=0.99)
    state = cg.CycleGANTask(c).init_state(c, jax.random.key(0))
    defs = cg.graphdefs(c)
    src = cg.CycleGANTask(c).sources(c)
    fx, fy = (gan.framing(cg._chunks(src[d, "train"])) for d in ("x", "y"))
    for gens in (gan.cyclegan_generators(state), {k: state[k] for k in ("g_xy", "g_yx")}):
        g, f = (nnx.merge(getattr(defs, k), gens[k]) for k in ("g_xy", "g_yx"))
        assert float(jnp.exp(g.log_zoom())) == pytest.approx(fy / fx, rel=1e-4)
        assert float(g.log_zoom()) == pytest.approx(-float(f.log_zoom()))
    assert cg.arch(c)["g_align"] == "zoom" and cg.arch(c)["ema"] is True


def test_the_zoom_is_state_not_a_parameter(rng):
    """Training leaves the measured zoom alone (no gradient, no optimizer state)."""
    nets = gan.make_cyclegan(
        image_size=16,
        g_conv_dim=4,
        d_conv_dim=4,
        n_blocks=1,
        g_align="zoom",
        key=jax.random.key(0),
    )
    nets.g_xy.zoom[...] = jnp.array(-0.2)
    opt = optax.adam(1e-2, 0.5)
    defs = gan.CycleGAN(*(nnx.graphdef(m) for m in nets))
    step = jax.jit(gan.make_cyclegan_step(defs, opt, opt, lambda_identity=0.5))
    state = gan.init_cyclegan_state(nets, opt, opt)
    paths = jax.tree_util.tree_flatten_with_path(state["opt_g"])[0]
    assert paths and not any("zoom" in jax.tree_util.keystr(p) for p, _ in paths)
    for i in range(3):
        state, _ = step(state, _batch(rng), jax.random.key(i))
    assert float(state["g_xy"]["zoom"][...]) == pytest.approx(-0.2)


def _step(size=16, pool_size=0, **kw):
    """(the pure step, a function returning a fresh initial state) of tiny networks."""
    nets = gan.make_cyclegan(
        image_size=size, g_conv_dim=4, d_conv_dim=4, n_blocks=1, key=jax.random.key(0)
    )
    opt = optax.adam(1e-3, 0.5)
    defs = gan.CycleGAN(*(nnx.graphdef(m) for m in nets))

    def init():
        return gan.init_cyclegan_state(
            nets, opt, opt, pool_size=pool_size, image_shape=(size, size, 3)
        )

    return gan.make_cyclegan_step(defs, opt, opt, **kw), init


def _params(state):
    return nnx.split_state(state, nnx.Param, ...)[0]


def _batch(rng, n=2, size=16):
    """Smooth random images (4x4 blocks) in [-1, 1]: learnable by a tiny generator."""

    def smooth():
        blocks = rng.uniform(-1, 1, (n, size // 4, size // 4, 3))
        return jnp.asarray(blocks.repeat(4, axis=1).repeat(4, axis=2), jnp.float32)

    return {"x": smooth(), "y": smooth()}


def test_step_compiles_once_and_losses_decrease(rng):
    step, init = _step(lambda_identity=0.5, pool_size=4)
    state = init()
    batch = _batch(rng)
    fn = jax.jit(chex.assert_max_traces(step, n=1), donate_argnums=0)
    history = []
    for i in range(30):
        state, m = fn(state, batch, jax.random.key(i))
        history.append({k: float(v) for k, v in m.items()})
    assert set(history[0]) >= {
        "d_loss",
        "g_loss",
        "d_x",
        "d_y",
        "g_adv_x",
        "g_adv_y",
        "cycle",
        "identity",
    }
    assert all(np.isfinite(v) for h in history for v in h.values())
    # overfitting one batch: the reconstruction terms and the D loss go down
    assert history[-1]["cycle"] < 0.8 * history[0]["cycle"]
    assert history[-1]["identity"] < 0.9 * history[0]["identity"]
    assert history[-1]["d_loss"] < history[0]["d_loss"]
    assert int(state["pool_n"]) == 4  # the image pool (batch 2) filled up after two steps
    assert all(
        np.abs(np.asarray(state[k])).min(axis=(1, 2, 3)).max() > 0 for k in ("pool_x", "pool_y")
    )


def test_generator_averages_follow_the_documented_recurrence(rng):
    nets = gan.make_cyclegan(
        image_size=16, g_conv_dim=4, d_conv_dim=4, n_blocks=1, key=jax.random.key(0)
    )
    opt = optax.adam(1e-2, 0.5)
    defs = gan.CycleGAN(*(nnx.graphdef(m) for m in nets))
    step = jax.jit(gan.make_cyclegan_step(defs, opt, opt, ema_decay=0.99))
    state = gan.init_cyclegan_state(nets, opt, opt, ema=True)
    p0 = _params(state["g_xy"])
    assert jax.tree.all(jax.tree.map(jnp.array_equal, state["ema"]["g_xy"], p0))
    batch = _batch(rng)
    ema, p = p0, p0
    for i in range(3):  # decay min(0.99, (1 + t) / (10 + t)): 0.1, 2/11, 0.25
        state, _ = step(state, batch, jax.random.key(i))
        d = min(0.99, (1 + i) / (10 + i))
        p = _params(state["g_xy"])
        ema = jax.tree.map(lambda e, q, d=d: d * e + (1 - d) * q, ema, p)
    assert int(state["ema_n"]) == 3
    got = state["ema"]["g_xy"]
    assert jax.tree.all(jax.tree.map(lambda a, b: bool(jnp.allclose(a, b, atol=1e-6)), got, ema))
    assert not jax.tree.all(jax.tree.map(lambda a, b: bool(jnp.allclose(a, b)), got, p))
    # translation uses the averages; a state without them, the trained parameters
    gens = gan.cyclegan_generators(state)
    assert jax.tree.all(jax.tree.map(jnp.array_equal, _params(gens["g_xy"]), got))
    plain = gan.cyclegan_generators({k: v for k, v in state.items() if k != "ema"})
    assert plain["g_yx"] is state["g_yx"]


def test_cycle_weight_zero_really_disables_the_cycle_loss(rng):
    """With λ_cyc = 0 (and no identity loss) G's update cannot depend on F's weights."""
    batch = _batch(rng)

    def g_xy_after_step(lam):
        """G's parameters after one step, from F as initialised and from a perturbed F."""
        step, init = _step(lambda_cycle=lam)
        fn = jax.jit(step)
        out = []
        for perturb in (False, True):
            state = init()
            if perturb:
                params, rest = nnx.split_state(state["g_yx"], nnx.Param, ...)
                params = jax.tree.map(lambda a: a * 1.5 + 0.1, params)
                state["g_yx"] = nnx.merge_state(params, rest)
            before = jax.tree.map(np.array, state)
            new, m = fn(state, batch, jax.random.key(0))
            chex.assert_trees_all_equal(state, before)  # pure: the input state is untouched
            out.append(_params(new["g_xy"]))
        return out, m

    (a, b), m0 = g_xy_after_step(0.0)
    assert "cycle" not in m0
    chex.assert_trees_all_close(a, b)
    (a, b), m1 = g_xy_after_step(10.0)
    assert "cycle" in m1
    leaves = zip(jax.tree.leaves(a), jax.tree.leaves(b), strict=True)
    assert not all(np.allclose(u, v) for u, v in leaves)


def test_task_step_comes_from_the_config_alone():
    """No init_state needed first; the new state has the structure (and Variable types) of
    the old one, as donation and checkpoints need."""
    config = _tiny_config(pool_size=4)
    step = cg.CycleGANTask(config).train_step
    state = jax.eval_shape(lambda: cg.init_state(config, jax.random.key(0)))
    batch = jax.tree.map(
        lambda a: jax.ShapeDtypeStruct(a.shape, a.dtype), _batch(np.random.default_rng(0))
    )
    new, m = jax.eval_shape(step, state, batch, jax.random.key(1))
    assert jax.tree.structure(new) == jax.tree.structure(state)
    assert set(m) == {"d_loss", "g_loss", "d_x", "d_y", "g_adv_x", "g_adv_y", "cycle", "identity"}


def test_image_pool():
    pool = jnp.zeros((3, 2, 2, 1))
    fakes = jnp.arange(1.0, 3.0)[:, None, None, None] * jnp.ones((2, 2, 2, 1))
    out, pool, n = gan.pool_query(pool, jnp.int32(0), fakes, jax.random.key(0))
    np.testing.assert_array_equal(out, fakes)  # not full: returns the new images
    assert int(n) == 2
    np.testing.assert_array_equal(pool[:2], fakes)
    seen = set()
    for i in range(20):
        new = jnp.full((2, 2, 2, 1), 10.0 + i)
        out, pool, n = gan.pool_query(pool, n, new, jax.random.key(i + 1))
        assert int(n) == 3
        stored = {float(v) for v in pool[:, 0, 0, 0]}
        for o in np.asarray(out)[:, 0, 0, 0]:
            seen.add(float(o) == 10.0 + i)
            assert float(o) == 10.0 + i or float(o) < 10.0 + i  # new or an older image
        assert 10.0 + i in stored or all(float(o) == 10.0 + i for o in out[:, 0, 0, 0])
    assert seen == {True, False}  # both branches of the coin are taken
    # size 0: pass-through
    empty = jnp.zeros((0, 2, 2, 1))
    out, p, n = gan.pool_query(empty, jnp.int32(0), fakes, jax.random.key(0))
    np.testing.assert_array_equal(out, fakes)


# --------------------------------------------------------------------------- evaluation math


def test_paired_metrics_and_colour_transfer_known_answers(rng):
    a = rng.uniform(0, 1, (3, 16, 16, 3)).astype(np.float32)
    m = gan.paired_metrics(a, a)
    assert m["l1"] == 0.0 and m["psnr"] == 100.0 and m["ssim"] == pytest.approx(1.0, abs=1e-5)
    b = np.clip(a + 0.1, 0, 1)
    assert gan.paired_metrics(a, b)["l1"] == pytest.approx(np.abs(a - b).mean(), rel=1e-5)

    st = gan.channel_stats(a)
    np.testing.assert_allclose(st.mean, a.reshape(-1, 3).mean(0), rtol=1e-6)
    np.testing.assert_allclose(st.std, a.reshape(-1, 3).std(0), rtol=1e-5)
    np.testing.assert_allclose(gan.color_transfer(a, st, st), a, atol=1e-6)  # same stats: id
    # mid-grey low-contrast images mapped onto other stats hit those stats exactly
    src = (0.5 + 0.05 * rng.standard_normal((4, 16, 16, 3))).astype(np.float32)
    dst = gan.ChannelStats(np.array([0.3, 0.5, 0.7]), np.array([0.05, 0.1, 0.02]))
    out = gan.color_transfer(src, gan.channel_stats(src), dst)
    got = gan.channel_stats(out)
    np.testing.assert_allclose(got.mean, dst.mean, atol=1e-5)
    np.testing.assert_allclose(got.std, dst.std, atol=1e-4)


def test_evaluate_identity_translator_equals_identity_baseline(tmp_path, monkeypatch, pretrained):
    lpips_path = pretrained("lpips_vgg16")
    config = _tiny_config(image_size=16)
    task = cg.CycleGANTask(config)
    task.validate(config)

    def identity(state, images, *, direction, batch=64, config=None):
        f = images.astype(np.float32) / 255.0
        return f, f

    monkeypatch.setattr(task, "translate", identity)
    m = task.evaluate(None, config, tmp_path)
    keys = ("l1", "psnr", "ssim", "lpips", "fid", "kid")
    for d in ("x2y", "y2x"):
        for k in keys:
            assert m[d][k] == pytest.approx(m[d]["baseline_identity"][k], rel=1e-6), k
        assert m[d]["cycle_l1"] == 0.0
        assert set(m[d]["baseline_color"]) == set(keys)
        assert m[d]["lpips"] > 0.05 and m[d]["fid"] > 0  # twemoji and openmoji differ
    # the two directions compare the same pairs (and FID/KID are symmetric)
    for k in keys:
        assert m["x2y"]["baseline_identity"][k] == pytest.approx(m["y2x"]["baseline_identity"][k])
    assert m["paired"] is True and m["cycle_l1"] == 0.0
    assert m["x2y_l1"] == m["x2y"]["l1"] and m["y2x_ssim"] == m["y2x"]["ssim"]
    assert m["x2y_lpips"] == m["x2y"]["lpips"] and m["y2x_kid"] == m["y2x"]["kid"]
    assert m["lpips"] == {"net": "lpips_vgg16_v0.1", "weights": str(lpips_path)}
    assert m["features"] == "random_conv_v1" and "not comparable" in m["features_note"]
    # paired: the reference is the target domain's test images of the subset
    assert m["fid_images"] == {
        "x": 3,
        "y": 3,
        "of": {"x": 3, "y": 3},
        "reference": {"x": 3, "y": 3},
    }
    assert (tmp_path / "eval" / "x2y.png").is_file() and (tmp_path / "eval" / "y2x.png").is_file()


def test_evaluate_perfect_translator_scores_zero(tmp_path, monkeypatch, pretrained):
    """A translator that returns the true counterparts: L1 = LPIPS = 0, FID ~ 0, and the
    colour-transfer baseline is worse on every metric."""
    from imsyn.data import emoji_pairs

    pretrained("lpips_vgg16")
    config = _tiny_config(image_size=16, fid_max_images=2)
    task = cg.CycleGANTask(config)
    task.validate(config)
    pairs = emoji_pairs(image_size=16, split="test", category="face-smiling")

    def perfect(state, images, *, direction, batch=64, config=None):
        src, tgt = (pairs.x, pairs.y) if direction == "x2y" else (pairs.y, pairs.x)
        np.testing.assert_array_equal(images, src)
        return tgt.astype(np.float32) / 255.0, src.astype(np.float32) / 255.0

    monkeypatch.setattr(task, "translate", perfect)
    m = task.evaluate(None, config, tmp_path)
    for d in ("x2y", "y2x"):
        e, col = m[d], m[d]["baseline_color"]
        assert e["l1"] == 0.0 and e["lpips"] == 0.0 and e["psnr"] == 100.0
        assert e["fid"] < 1e-6 * col["fid"]
        assert col["lpips"] > 0.05 and col["l1"] > 0 and e["kid"] < col["kid"]
        assert e["beats_baselines"] is True
    assert m["fid_images"] == {
        "x": 2,
        "y": 2,
        "of": {"x": 3, "y": 3},
        "reference": {"x": 2, "y": 2},
    }
    assert "fid_max_images=2" in m["fid_note"]
    page = cg.metrics_html(m)
    assert "LPIPS ↓" in page and "FID ↓" in page and "random_conv_v1" in page


def test_evaluate_without_lpips_weights_says_so(tmp_path, monkeypatch):
    monkeypatch.setenv("IMSYN_CACHE_DIR", str(tmp_path / "empty_cache"))
    config = _tiny_config(image_size=16, features="auto")
    task = cg.CycleGANTask(config)
    task.validate(config)
    monkeypatch.setattr(task, "translate", lambda s, im, **kw: (im / 255.0, im / 255.0))
    m = task.evaluate(None, config, tmp_path)
    assert m["lpips"] == "not available: run `python -m imsyn weights fetch lpips_vgg16`"
    for d in ("x2y", "y2x"):
        assert m[d]["lpips"] is None and m[d]["baseline_color"]["lpips"] is None
        assert np.isfinite(m[d]["l1"]) and np.isfinite(m[d]["fid"])
    assert m["features"] == "random_conv_v1"  # auto without inception_fid: the fallback
    assert "not available" in cg.metrics_html(m)


def _write_domain(folder: Path, n: int, colour, rng) -> None:
    from imsyn.image import write_image

    folder.mkdir(parents=True)
    for i in range(n):
        img = np.clip(np.asarray(colour) + 0.15 * rng.standard_normal((16, 16, 3)), 0, 1)
        write_image(folder / f"{i:03d}.png", img.astype(np.float32))


def test_unpaired_evaluation_holds_out_inputs_and_uses_the_whole_target_domain(
    tmp_path, monkeypatch, rng
):
    """Folder domains (no pairs): the held-out inputs are translated; FID/KID compare them,
    and the untouched inputs (identity baseline), with every image of the target domain."""
    _write_domain(tmp_path / "a", 20, (0.8, 0.3, 0.2), rng)
    _write_domain(tmp_path / "b", 30, (0.2, 0.3, 0.8), rng)
    config = _tiny_config(
        data=f"folder:{tmp_path / 'a'}?test_fraction=0.2",
        data_y=f"folder:{tmp_path / 'b'}?test_fraction=0.2",
        fid_max_images=0,
    )
    task = cg.CycleGANTask(config)
    task.validate(config)
    mean = {"x2y": (0.2, 0.3, 0.8), "y2x": (0.8, 0.3, 0.2)}

    def recolour(state, images, *, direction, batch=64, config=None):
        # keeps each image's noise, takes the target domain's colour: a good translation
        f = images.astype(np.float32) / 255.0
        out = np.clip(f - f.mean((1, 2), keepdims=True) + np.asarray(mean[direction]), 0, 1)
        return out.astype(np.float32), f

    monkeypatch.setattr(task, "translate", recolour)
    m = task.evaluate(None, config, tmp_path / "run")
    assert m["paired"] is False and "test_is_train" not in m
    src = task.sources(config)
    n = {d: len(src[d, "test"]) for d in ("x", "y")}
    assert 0 < n["x"] < 20 and 0 < n["y"] < 30  # held out, not the training images
    assert m["fid_images"] == {**n, "of": n, "reference": {"x": 20, "y": 30}}
    assert "the whole domain" in m["fid_note"]
    for d in ("x2y", "y2x"):
        e = m[d]
        assert "l1" not in e and e["n"] == n[d[0]]
        assert e["fid"] < e["baseline_identity"]["fid"] and e["kid"] < e["baseline_identity"]["kid"]


# --------------------------------------------------------------------------- end to end


def _run(mode, config, workdir, capsys, monkeypatch):
    """Runs train.py / eval.py in-process; returns (exit status, stderr)."""
    argv = [f"{mode}.py", f"--config={ROOT / 'configs/cyclegan.py'}", f"--workdir={workdir}"]
    argv += [f"--config.{k}={v}" for k, v in config.items()]
    monkeypatch.setattr("sys.argv", argv)  # ml_collections finds --config.x overrides there
    rc = experiments_main(argv, mode)
    return rc, capsys.readouterr().err


def test_train_then_eval_writes_paired_metrics_and_report(tmp_path, capsys, monkeypatch):
    wd = tmp_path / "run"
    rc, err = _run("train", _TINY, wd, capsys, monkeypatch)
    assert rc == 0, err
    m = json.loads((wd / "eval" / "metrics.json").read_text())
    for d in ("x2y", "y2x"):
        assert {"l1", "psnr", "ssim", "lpips", "fid", "kid"} <= set(m[d])
        assert {"lpips", "fid", "kid"} <= set(m[d]["baseline_color"])
    assert m["step"] == 3 and np.isfinite(m["cycle_l1"])
    report = (wd / "report.html").read_text()
    assert "Paired translation metrics" in report and "eval/x2y.png" in report
    assert "LPIPS ↓" in report and "KID ↓" in report
    assert (wd / "samples" / "x2y_latest.png").is_file()
    (wd / "eval" / "metrics.json").unlink()
    rc, err = _run("eval", _TINY, wd, capsys, monkeypatch)
    assert rc == 0, err
    assert json.loads((wd / "eval" / "metrics.json").read_text())["x2y"] == m["x2y"]


@pytest.mark.parametrize(
    "over,needle",
    [
        ({"discriminator": "resnet"}, "config.discriminator"),
        ({"lambda_cycle": -1.0}, "config.lambda_cycle"),
        ({"image_size": 24}, "config.image_size"),
        ({"batch_size": 12}, "fewer than one batch"),  # 11 training emoji in face-smiling
        ({"batch_size": 10**6, "image_size": 64}, "--config.batch_size="),
        ({"diffaug": "colour"}, "config.diffaug must be"),
        ({"features": "inception"}, "config.features"),
        ({"features_path": "/nonexistent/pt_inception.pth"}, "config.features_path"),
        ({"fid_max_images": 1}, "config.fid_max_images"),
    ],
)
def test_bad_config_is_one_line_exit_2_and_writes_nothing(
    tmp_path, capsys, monkeypatch, over, needle
):
    wd = tmp_path / "run"
    rc, err = _run("train", {**_TINY, **over}, wd, capsys, monkeypatch)
    assert rc == 2
    assert len(err.strip().splitlines()) == 1 and needle in err, err
    assert not wd.exists()


def test_empty_domain_is_refused(tmp_path, capsys, monkeypatch):
    empty = tmp_path / "empty"
    empty.mkdir()
    wd = tmp_path / "run"
    rc, err = _run("train", {**_TINY, "data_y": f"folder:{empty}"}, wd, capsys, monkeypatch)
    assert rc == 2 and len(err.strip().splitlines()) == 1 and "empty" in err, err
    assert not wd.exists()
    # a held-out split of one image cannot be evaluated (FID/KID): refused before training
    _write_domain(tmp_path / "one" / "train", 10, (0.5, 0.5, 0.5), np.random.default_rng(0))
    _write_domain(tmp_path / "one" / "test", 1, (0.5, 0.5, 0.5), np.random.default_rng(1))
    one = {**_TINY, "data_y": f"folder:{tmp_path / 'one'}"}
    rc, err = _run("train", one, wd, capsys, monkeypatch)
    assert rc == 2 and len(err.strip().splitlines()) == 1 and "test split has 1 image" in err, err
    assert not wd.exists()


def test_domains_of_different_shapes_are_refused():
    def src(n, size, c=3):
        return ArraySource(
            np.zeros((n, size, size, c), np.uint8), [str(i) for i in range(n)], f"test{size}x{c}"
        )

    ok = {
        ("x", "train"): src(4, 16),
        ("x", "test"): src(2, 16),
        ("y", "train"): src(4, 16),
        ("y", "test"): src(2, 16),
    }
    cg.check_domains(ok, batch_size=2)
    with pytest.raises(ConfigError, match="different shapes"):
        cg.check_domains({**ok, ("y", "train"): src(4, 32)}, batch_size=2)
    with pytest.raises(ConfigError, match="different shapes"):
        cg.check_domains({**ok, ("y", "train"): src(4, 16, 4)}, batch_size=2)
    with pytest.raises(ConfigError, match="empty"):
        cg.check_domains({**ok, ("x", "train"): src(0, 16)}, batch_size=2)


def _folder(path, n, size=8):
    """``n`` random PNG images in ``path`` (a stand-in for the course's cat folders)."""
    from PIL import Image

    path.mkdir()
    rng = np.random.default_rng(0)
    for i in range(n):
        Image.fromarray(rng.integers(0, 256, (size, size, 3), np.uint8)).save(path / f"{i}.png")
    return f"folder:{path}"


@pytest.mark.parametrize("preset", list(_config()[1].PRESETS))
def test_every_preset_validates(preset, tmp_path):
    """Every preset's field values pass the schema and cross-field rules; its data specs are
    checked on stand-ins (emoji of one category, generated folders; TFDS needs a prepared
    dataset, so there only the fields)."""
    config, _ = _config(preset)
    config.memory_check = False  # the device's memory is not the preset's business
    cg.check(config)
    if config.data.startswith("tfds:"):
        return
    for field in ("data", "data_y"):
        if config[field].startswith("folder:"):
            config[field] = _folder(tmp_path / field, config.batch_size)
        else:
            config[field] += "?category=face-smiling"  # keep the source check cheap
    if config.data.startswith("emoji:"):
        config.batch_size = 2  # 3 test emoji in face-smiling
    cg.validate(config)


def test_sweep_validates_and_memory_estimate_grows():
    _, mod = _config()
    names = [n for n, _ in mod.get_sweep("ablations")]
    assert {"no_cycle", "dc_discriminator", "no_diffaug"} <= set(names)
    for _, over in mod.get_sweep("ablations"):
        config, _ = _config()
        config.update({**over, "data": _TINY["data"], "data_y": _TINY["data_y"], "batch_size": 2})
        cg.validate(config)
    for preset in ("cats", "cats_cpu"):  # the course's folders, a fifth held out for the test
        cats, _ = _config(preset)
        assert cats.data.endswith("grumpifyAprocessed?test_fraction=0.2")
        assert cats.data_y.endswith("grumpifyBprocessed?test_fraction=0.2")
    assert _config("cats")[0].image_size == _config("cats_cpu")[0].image_size == 64
    h2z, _ = _config("horse2zebra")
    assert (h2z.image_size, h2z.n_blocks, h2z.discriminator) == (256, 9, "patch70")
    assert cg.estimate_step_bytes(h2z) > cg.estimate_step_bytes(_config()[0])


def test_old_data_category_field_is_refused_with_the_new_spelling():
    c, _ = _config()
    c.data_category = "faces"
    with pytest.raises(ConfigError, match=r"config.data_category.*emoji:twemoji\?category=faces"):
        cg.check(c)


def test_emoji_pairing_comes_from_the_specs():
    c, _ = _config()
    assert cg.emoji_pairing(c) == {}
    c.update(data="emoji:openmoji?category=faces", data_y="emoji:twemoji?category=faces")
    assert cg.emoji_pairing(c) == {"category": "faces"}
    c.data_y = "emoji:twemoji?category=animals-nature"  # other code points: no pairs
    assert cg.emoji_pairing(c) is None
    c.update(data="emoji:twemoji", data_y="emoji:twemoji")
    assert cg.emoji_pairing(c) is None
    c.update(data="folder:/a", data_y="emoji:openmoji")
    assert cg.emoji_pairing(c) is None


def test_unpaired_data_resumes_from_its_json_state(rng):
    """The two domains' positions, stored as JSON with a checkpoint, give the same batches."""
    from imsyn.data import make_loader

    def data():
        loaders = {
            dom: make_loader(
                ArraySource(rng_images, [str(i) for i in range(7)], f"test:{dom}"),
                batch_size=2,
                seed=s,
                augment="basic",
                image_size=8,
            )
            for dom, s in (("x", 1), ("y", 2))
        }
        return cg.UnpairedData(loaders)

    rng_images = rng.integers(0, 256, (7, 12, 12, 3), dtype=np.uint8)
    run = data()
    for _ in range(5):  # past an epoch of x and y
        next(run)
    state = json.loads(json.dumps(run.get_state()))
    want = [next(run) for _ in range(4)]
    resumed = data()
    resumed.set_state(state)
    for batch in want:
        got = next(resumed)
        for dom in ("x", "y"):
            np.testing.assert_array_equal(got[dom], batch[dom])

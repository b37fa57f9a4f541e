"""Neural style transfer: PyTorch parity of the losses and gradient (random and the real
VGG-19), loss weights invariant to the weights file's scale, optimization, CLI, runs."""

import dataclasses
import json
import subprocess
import sys
from pathlib import Path

import chex
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from imsyn import losses, nst
from imsyn.errors import ConfigError, InputError
from imsyn.image import write_image
from imsyn.models import vgg

sys.path.insert(0, str(Path(__file__).parent))
from test_vgg import _rel, real_weights, torch_features, torch_vgg19  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def weights():
    return vgg.random_weights()


@pytest.fixture
def content(photo):
    return nst.resize(photo, (32, 32))


@pytest.fixture
def style():
    return nst.default_style(40)


def _torch_reference(w, x, content, style, *, cl, sl, cw, sw, tvw):
    """The course's / PyTorch tutorial's NST loss in plain torch; returns numpy values."""
    torch = pytest.importorskip("torch")
    F = torch.nn.functional
    net = torch_features(w)
    mean = torch.tensor(w.mean).view(1, 3, 1, 1)
    std = torch.tensor(w.std).view(1, 3, 1, 1)

    def feats(img):
        out, h = {}, (img - mean) / std
        pos = {vgg.LAYER_INDEX[n]: n for n in cl + sl}
        for i, m in enumerate(net):
            h = m(h)
            if i in pos:
                out[pos[i]] = h
            if i >= max(pos):
                return out

    def gram(f):
        a, b, c, d = f.size()
        f = f.view(a * b, c * d)
        return f @ f.t() / (a * b * c * d)

    def nchw(a):
        return torch.from_numpy(np.ascontiguousarray(np.asarray(a)[None].transpose(0, 3, 1, 2)))

    with torch.no_grad():
        ct = feats(nchw(content))
        st = {k: gram(v) for k, v in feats(nchw(style)).items()}
    xt = nchw(x).requires_grad_(True)
    f = feats(xt)
    c = sum(F.mse_loss(f[k], ct[k]) for k in cl)
    s = sum(F.mse_loss(gram(f[k]), st[k]) for k in sl)
    tv = torch.mean((xt[:, :, 1:] - xt[:, :, :-1]) ** 2) + torch.mean(
        (xt[:, :, :, 1:] - xt[:, :, :, :-1]) ** 2
    )
    total = cw * c + sw * s + tvw * tv
    total.backward()
    grams = {k: gram(f[k]).detach().numpy() for k in sl}
    g = xt.grad.numpy()[0].transpose(1, 2, 0)
    return c.item(), s.item(), tv.item(), total.item(), grams, g


def test_losses_grams_and_gradient_match_pytorch(weights, content, style, rng):
    pytest.importorskip("torch")
    x = rng.uniform(0, 1, content.shape).astype(np.float32)
    cl, sl = ("conv_4",), nst.COURSE_STYLE_LAYERS + ("relu4_2",)
    cw, sw, tvw = 1.0, 1e6, 10.0
    opts = nst.Options(content_layers=cl, style_layers=sl, style_weight=sw, tv_weight=tvw)
    _, static, params, targets, _, _ = nst.build_problem(
        weights, content, [style], None, None, opts
    )

    def f(x):
        return nst.objective(x[None], params, targets, static=static)

    (total, parts), g = jax.value_and_grad(f, has_aux=True)(jnp.asarray(x))
    c, s, tv, total_t, grams_t, g_t = _torch_reference(
        weights, x, content, style, cl=cl, sl=sl, cw=cw, sw=sw, tvw=tvw
    )
    assert abs(float(parts["content_loss"]) / c - 1) < 1e-4
    assert abs(float(parts["style_loss"]) / s - 1) < 1e-4
    assert abs(float(parts["tv_loss"]) / tv - 1) < 1e-4
    assert abs(float(total) / total_t - 1) < 1e-4
    assert _rel(g, g_t) < 1e-4
    feats = vgg.features(params, jnp.asarray(x)[None], layers=sl)
    for k in sl:
        assert _rel(losses.gram_matrix(feats[k])[0], grams_t[k]) < 1e-4, k


def test_loss_known_answers(rng):
    f = jnp.asarray(rng.normal(size=(2, 5, 6, 4)).astype(np.float32))
    g = losses.gram_matrix(f)
    assert g.shape == (2, 4, 4)
    np.testing.assert_allclose(g[1], f[1].reshape(30, 4).T @ f[1].reshape(30, 4) / 120, rtol=1e-5)
    np.testing.assert_array_equal(losses.content_loss(f, f), np.zeros(2))
    np.testing.assert_array_equal(losses.style_loss(f, g), np.zeros(2))
    np.testing.assert_array_equal(losses.total_variation(jnp.ones((3, 4, 4, 3))), np.zeros(3))


def test_steps_compile_once_across_weights(weights, content, style):
    x0 = jnp.asarray(content)[None]
    # in-graph steps: optax.lbfgs with its zoom line search, and Adam
    for opts in (nst.Options(linesearch="zoom"), nst.Options(optimizer="adam")):
        _, static, params, targets, _, _ = nst.build_problem(
            weights, content, [style], None, None, opts
        )
        chex.clear_trace_counter()
        step = jax.jit(chex.assert_max_traces(nst.build_step(static), n=1))
        x, state = x0, nst.init_state(static, x0)
        for sw in (1e3, 1e5, 1e7):  # a style-weight sweep reuses the compiled step
            targets = {**targets, "weights": nst.Weights(*jnp.asarray([1.0, sw, 0.0], jnp.float32))}
            x, state, m = step(x, state, params, targets)
            assert float(x.min()) >= 0.0 and float(x.max()) <= 1.0
        assert int(m["evaluations"]) >= (2 if static.optimizer == "lbfgs" else 1)
    # host-driven backtracking L-BFGS: one compiled trial, one compiled direction
    _, static, params, targets, _, _ = nst.build_problem(
        weights, content, [style], None, None, opts
    )
    static = dataclasses.replace(static, optimizer="lbfgs", linesearch="backtracking")
    fns = tuple(
        jax.jit(chex.assert_max_traces(f, n=1))
        for f in (nst.build_trial(static), nst.build_direction(static))
    )
    out = list(nst._iterate_backtracking(static, x0, params, targets, 4, fns=fns))
    losses_ = [m["loss"] for m, _, _ in out]
    assert len(out) == 5 and all(b <= a for a, b in zip(losses_, losses_[1:], strict=False))


def test_style_transfer_reduces_style_loss_10x(weights, content, style):
    res = nst.style_transfer(content, style, weights, options=nst.Options(steps=10), progress=False)
    assert res.image.shape == (32, 32, 3)
    assert res.style_loss[-1] <= res.style_loss[0] / 10
    assert len(res.content_loss) == len(res.style_loss) == 11
    # content stays bounded: far closer to the content than noise is
    noise = np.random.default_rng(0).uniform(0, 1, content.shape).astype(np.float32)
    m = nst.measure(weights, noise, content=content, styles=[nst.fit_style(style, (32, 32))])
    assert 0 < res.content_loss[-1] < m["content_loss"]
    assert res.weights == "random"


def test_content_reconstruction_from_noise(weights, content):
    res = nst.reconstruct_content(
        content, weights, layers=("conv_1",), options=nst.Options(steps=15), progress=False
    )
    assert res.content_loss[-1] < res.content_loss[0] / 100
    mse = float(np.mean((res.image - content) ** 2))
    assert 10 * np.log10(1 / mse) > 25  # conv_1 features determine the image


def test_texture_synthesis_and_adam(weights, style):
    opts = nst.Options(optimizer="adam", steps=20, lr=0.05, style_layers=("conv_1", "relu2_1"))
    res = nst.synthesize_texture(style, weights, shape=(24, 28), options=opts, progress=False)
    assert res.image.shape == (24, 28, 3)
    assert res.style_loss[-1] < res.style_loss[0] / 10
    assert res.evaluations == 20
    assert np.all(res.content_loss == 0)


def test_original_colors_keep_content_chroma(weights, content, style):
    res = nst.style_transfer(
        content, style, weights, original_colors=True, options=nst.Options(steps=3), progress=False
    )
    yiq = lambda a: a @ nst._YIQ.T  # noqa: E731
    inside = np.all((res.image > 0.01) & (res.image < 0.99), axis=-1)
    np.testing.assert_allclose(
        yiq(res.image)[inside][:, 1:], yiq(content)[inside][:, 1:], atol=2e-3
    )


def test_style_sizes_and_blend(weights, content, rng):
    a = rng.uniform(0, 1, (20, 30, 3)).astype(np.float32)
    out = nst.fit_style(a, (32, 40), fit="pad_crop")
    assert out.shape == (32, 40, 3)
    np.testing.assert_array_equal(out[6:26, 5:35], a)  # padded around, then centered
    big = rng.uniform(0, 1, (50, 60, 3)).astype(np.float32)
    np.testing.assert_array_equal(nst.fit_style(big, (32, 40), fit="pad_crop"), big[9:41, 10:50])
    assert nst.fit_style(a, (64, 48), fit="scale").shape == (43, 64, 3)  # aspect kept
    assert nst.fit_style(a, (64, 48), fit="stretch").shape == (64, 48, 3)
    assert nst.fit_size((300, 400), 100) == (75, 100)
    # the blended Gram target is the weighted mean of the styles' Grams
    b = rng.uniform(0, 1, (24, 24, 3)).astype(np.float32)
    opts = nst.Options(style_layers=("conv_2",))
    _, _, _, t, _, _ = nst.build_problem(weights, content, [a, b], [3.0, 1.0], None, opts)
    _, _, _, ta, _, _ = nst.build_problem(weights, content, [a], None, None, opts)
    _, _, _, tb, _, _ = nst.build_problem(weights, content, [b], None, None, opts)
    want = 0.75 * ta["style"]["conv_2"] + 0.25 * tb["style"]["conv_2"]
    np.testing.assert_allclose(t["style"]["conv_2"], want, rtol=1e-5)
    with pytest.raises(InputError, match="style_blend"):
        nst.optimize(weights, content=content, styles=[a, b], style_blend=[1.0, -1.0])


@pytest.mark.parametrize(
    "field,value,match",
    [
        ("steps", 0, "steps"),
        ("style_weight", -1.0, "style_weight"),
        ("content_weight", 0.0, "content_weight"),
        ("content_layers", ("conv_99",), "conv_99"),
        ("style_layers", ("relu9_1",), "relu9_1"),
        ("optimizer", "sgd", "optimizer"),
    ],
)
def test_bad_options_named(field, value, match):
    with pytest.raises(InputError, match=match):
        dataclasses.replace(nst.Options(), **{field: value}).validated()


def _stylize(capsys, *args):
    from imsyn.__main__ import main

    try:
        rc = main(["stylize", *map(str, args)])
    except SystemExit as e:  # refused while parsing the command line
        rc = e.code
    return rc, capsys.readouterr().err


def test_stylize_cli_writes_image_and_json(tmp_path, capsys, photo, monkeypatch):
    monkeypatch.delenv("IMSYN_VGG19", raising=False)
    monkeypatch.setenv("IMSYN_CACHE_DIR", str(tmp_path / "cache"))  # nothing fetched
    c, s = tmp_path / "c.png", tmp_path / "s.jpg"
    write_image(c, photo[::8, ::10])
    write_image(s, nst.default_style(40))
    out = tmp_path / "o.png"
    rc, err = _stylize(
        capsys, c, s, s, "--out", out, "--size", 32, "--steps", 3, "--snapshot-every", 2,
        "--style-blend", 1, 2, "--quiet",
    )  # fmt: skip
    assert rc == 0, err
    assert "random features" in err
    meta = json.loads((tmp_path / "o.png.json").read_text())
    assert meta["weights"] == "random" and meta["weights_normalization"] == "none"
    assert len(meta["content_loss"]) == len(meta["style_loss"]) == 4
    assert meta["options"]["steps"] == 3 and meta["style_blend"] == [1.0, 2.0]
    assert meta["size"] == [32, 26]
    assert (tmp_path / "o_snapshots" / "step_00002.png").exists()
    from imsyn.image import read_image

    assert read_image(out).shape == (32, 26, 3)


@pytest.mark.parametrize(
    "extra,match",
    [
        (["--steps", "0"], "steps"),
        (["--style-weight", "-5"], "--style-weight: must be a finite number in (0, "),
        (["--style-weight", "nan"], "--style-weight"),
        (["--seed", "99999999999999999999"], "--seed: must be an integer in [0, "),
        (["--size", "1"], "too small for VGG-19's pooling"),
        (["--size", "200000"], "--size"),
        (["--lr", "inf"], "--lr"),
        (["--content-layers", "conv_4,conv_99"], "conv_99"),
        (["--weights", "missing.npz"], "missing.npz"),
        (["--style-blend", "1", "2"], "style-blend"),
    ],
)
def test_stylize_cli_bad_input_exit_2(tmp_path, capsys, photo, extra, match):
    c = tmp_path / "c.png"
    write_image(c, photo[::16, ::16])
    out = tmp_path / "o.png"
    rc, err = _stylize(capsys, c, c, "--out", out, "--steps", "2", *extra)
    assert rc == 2
    assert len(err.strip().splitlines()) == 1 and match in err, err
    assert not out.exists() and not (tmp_path / "o.png.json").exists()


def test_stylize_cli_refuses_outputs_before_computing(tmp_path, capsys, photo, monkeypatch):
    from imsyn import nst as lib

    c = tmp_path / "c.png"
    write_image(c, photo[::16, ::16])
    calls = []
    monkeypatch.setattr(lib, "style_transfer", lambda *a, **k: calls.append(1))
    (tmp_path / "folder.png").mkdir()
    rc, err = _stylize(capsys, c, c, "--out", tmp_path / "folder.png", "--steps", "2")
    assert rc == 2 and "is a directory" in err and len(err.strip().splitlines()) == 1
    rc, err = _stylize(capsys, c, c, "--out", c, "--steps", "2")  # the content image itself
    assert rc == 2 and "overwrite the input" in err
    (tmp_path / "o.png.json").mkdir()  # the sidecar's path is a folder
    rc, err = _stylize(capsys, c, c, "--out", tmp_path / "o.png", "--steps", "2")
    assert rc == 2 and "is a directory" in err
    assert not calls  # refused before any optimisation


def test_size_and_memory_rules_in_library(weights):
    with pytest.raises(InputError, match="too small for VGG-19's pooling"):
        lib_img = np.full((2, 2, 3), 0.5, np.float32)
        nst.style_transfer(lib_img, lib_img, weights, options=nst.Options(steps=1))
    with pytest.raises(InputError, match="GiB"):
        nst.check_memory((200000, 200000))
    with pytest.raises(InputError, match="seed must be an integer"):
        nst.Options(seed=2**63).validated()


def test_stylize_cli_unreadable_image_exit_2(tmp_path, capsys):
    bad = tmp_path / "bad.png"
    bad.write_bytes(b"not a png")
    out = tmp_path / "o.png"
    rc, err = _stylize(capsys, bad, bad, "--out", out, "--steps", "2")
    assert rc == 2 and "bad.png" in err and len(err.strip().splitlines()) == 1
    assert not out.exists()


def _config(**kw):
    sys.path.insert(0, str(ROOT))
    from configs import nst as cfg_mod

    c = cfg_mod.get_config("quick")
    c.update(kw)
    return c


def test_config_validation_names_field():
    from imsyn.tasks import nst as task

    with pytest.raises(ConfigError, match="config.bogus"):
        task.validate({**_config().to_dict(), "bogus": 1})
    with pytest.raises(ConfigError, match="config.mode must be one of"):
        task.validate(_config(mode="paint"))
    with pytest.raises(ConfigError, match=r"config.num_steps must be an integer in \[1, "):
        task.validate(_config(num_steps=0))
    with pytest.raises(ConfigError, match="config.style_layers"):
        task.validate(_config(style_layers="conv_1,pool_9"))
    with pytest.raises(ConfigError, match="config.seed must be an integer"):
        task.validate(_config(seed=2**63))
    with pytest.raises(ConfigError, match="config.style_weight must be a finite number"):
        task.validate(_config(style_weight=float("nan")))
    with pytest.raises(ConfigError, match="config.size: .*too small for VGG-19's pooling"):
        task.validate(_config(size=2))
    with pytest.raises(ConfigError, match="config.content must be"):
        task.validate(_config(content="/no/such/photo.jpg"))
    from configs import nst as cfg_mod

    assert [r for r, _ in cfg_mod.get_sweep("init")] == ["init_content", "init_noise"]
    assert len(cfg_mod.get_sweep("all")) == 7 + 6 + 5 + 2
    with pytest.raises(ValueError, match="unknown sweep"):
        cfg_mod.get_sweep("bogus")


def test_every_preset_and_sweep_run_validates():
    sys.path.insert(0, str(ROOT))
    from configs import nst as cfg_mod
    from imsyn.tasks import nst as task
    from imsyn.training.sweep import sweep_configs

    for preset in cfg_mod.PRESETS:
        c = cfg_mod.get_config(preset)
        task.validate(c)
        for _, run in sweep_configs(c, cfg_mod.get_sweep("all")):
            task.validate(run)
    assert cfg_mod.get_config("quick").size == 128  # an override of the default
    assert cfg_mod.get_config("quick").style_weight == cfg_mod.get_config().style_weight


def test_library_imports_no_training_machinery():
    code = (
        "import sys, imsyn.nst; bad = [m for m in ('imsyn.training', 'imsyn.tasks', 'orbax', "
        "'absl.app', 'ml_collections') "
        "if any(k == m or k.startswith(m + '.') for k in sys.modules)]; "
        "print(bad); sys.exit(1 if bad else 0)"
    )  # (absl.flags and absl.logging come with optax)
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT)
    assert r.returncode == 0, r.stdout + r.stderr


def test_train_sweep_and_evaluate(tmp_path, monkeypatch):
    from imsyn.tasks import nst as task

    monkeypatch.delenv("IMSYN_VGG19", raising=False)
    monkeypatch.setenv("IMSYN_CACHE_DIR", str(tmp_path / "cache"))  # nothing fetched
    cfg = _config(size=32, num_steps=3, sample_every=2, sweep="init")
    results = task.train(cfg, tmp_path)
    assert set(results) == {"init_content", "init_noise"}
    page = (tmp_path / "comparison.html").read_text()  # the one sweep system's page
    assert "init_noise/eval/samples.png" in page and "random" in page
    assert "style_loss" in page and "content_loss" in page
    assert "comparison.html" in (tmp_path / "sweep.html").read_text()
    from imsyn.image import read_image

    h, w = read_image(tmp_path / "init_noise" / "result.png").shape[:2]
    grid = read_image(tmp_path / "sweep.png")  # both results side by side, labelled
    assert grid.shape[1] > 2 * w and h < grid.shape[0] < 2 * h
    run = tmp_path / "init_noise"
    for name in ("config.json", "metrics.jsonl", "result.png", "result.json", "report.html"):
        assert (run / name).exists(), name
    assert (run / "plots" / "losses.png").exists()
    assert (run / "samples" / "result_0000002.png").exists()
    lines = (run / "metrics.jsonl").read_text().splitlines()
    assert len(lines) == 4 and "style_loss" in json.loads(lines[-1])
    saved = json.loads((run / "eval" / "metrics.json").read_text())
    m = task.evaluate(_config(size=32, num_steps=3, init="noise"), run)
    assert m["weights"] == "random" and saved["vgg_normalization"] == "none"
    assert abs(m["style_loss"] / saved["style_loss"] - 1) < 0.05  # 8-bit rounding only


def test_backtracking_recovers_when_projection_spoils_the_lbfgs_step():
    """A clamped L-BFGS step whose descent lies only in pixels pushed out of [0, 1] used to
    end the run ("converged"); now the memory is reset and the step retried from the gradient.
    Toy problem: a weighted quadratic with targets outside the box, and a direction function
    that spoils every step taken with memory once a pixel sits on a bound."""
    static = nst._Static(
        content_layers=(), style_layers=("conv_1",), mean=(0.0,) * 3, std=(1.0,) * 3,
        pooling="max", remat=False, optimizer="lbfgs", clamp=True, lr=0.1, memory_size=5,
        max_linesearch_steps=20, linesearch="backtracking",
    )  # fmt: skip
    t = jnp.asarray(np.linspace(-0.5, 1.5, 48, dtype=np.float32).reshape(1, 4, 4, 3))
    w = jnp.asarray(np.geomspace(100, 1, 48, dtype=np.float32).reshape(1, 4, 4, 3))

    def trial(x, d, g, eta, params, targets):
        xn = jnp.clip(x + eta * d, 0.0, 1.0)
        f, gn = jax.value_and_grad(lambda y: jnp.sum(w * (y - t) ** 2))(xn)
        return xn, f, {"content_loss": f}, gn, jnp.vdot(g, xn - x)

    lbfgs = nst.build_direction(static)

    def direction(g, state, x):
        d, state_, slope = lbfgs(g, state, x)
        if int(state.count) > 0 and bool(jnp.any((x <= 0) | (x >= 1))):
            bad = jnp.where(x >= 1, 10 * jnp.abs(g), jnp.where(x <= 0, -10 * jnp.abs(g), g))
            return bad, state_, jnp.vdot(g, bad)  # descends only before the projection
        return d, state_, slope

    out = list(nst._iterate_backtracking(static, jnp.full_like(t, 0.5), None, None, 8,
                                         fns=(trial, direction)))  # fmt: skip
    losses_ = [float(m["loss"]) for m, _, _ in out]
    assert len(out) == 9  # all 8 steps taken (it used to stop after the first)
    assert all(b <= a for a, b in zip(losses_, losses_[1:], strict=False))
    assert losses_[-1] < 0.5 * losses_[1]


# ---------------------------------------------------------------- the real VGG-19


def _real_torch_losses(ref, x, content, style, *, cl, sl, cw, sw, tvw):
    """The course's NST loss on the real VGG-19 in plain torch.nn.functional (``ref``: the
    converted file's raw arrays on Caffe input, each layer divided by torch's own scale)."""
    torch = ref.torch
    F = torch.nn.functional

    def gram(f):
        a, b, c, d = f.size()
        f = f.reshape(a * b, c * d)
        return f @ f.t() / (a * b * c * d)

    with torch.no_grad():
        ct = ref.taps(ref.nchw(content[None]), cl)
        st = {k: gram(v) for k, v in ref.taps(ref.nchw(style[None]), sl).items()}
    xt = ref.nchw(x[None]).requires_grad_(True)
    f = ref.taps(xt, tuple(dict.fromkeys(cl + sl)))
    c = sum(F.mse_loss(f[k], ct[k]) for k in cl)
    s = sum(F.mse_loss(gram(f[k]), st[k]) for k in sl)
    tv = torch.mean((xt[:, :, 1:] - xt[:, :, :-1]) ** 2) + torch.mean(
        (xt[:, :, :, 1:] - xt[:, :, :, :-1]) ** 2
    )
    total = cw * c + sw * s + tvw * tv
    total.backward()
    grams = {k: gram(f[k]).detach().numpy() for k in sl}
    return c.item(), s.item(), total.item(), grams, xt.grad.numpy()[0].transpose(1, 2, 0)


def _losses_and_grad(weights, x, content, style, opts):
    _, static, params, targets, _, _ = nst.build_problem(
        weights, content, [style], None, None, opts
    )

    def f(x):
        return nst.objective(x[None], params, targets, static=static)

    (total, parts), g = jax.value_and_grad(f, has_aux=True)(jnp.asarray(x))
    return float(parts["content_loss"]), float(parts["style_loss"]), float(total), np.asarray(g)


def test_real_vgg19_losses_and_gradient_match_pytorch(pretrained, photo, rng):
    pytest.importorskip("torch")
    path = str(pretrained("vgg19"))
    w, ref = real_weights(path), torch_vgg19(path)
    content = nst.resize(photo, (64, 64))
    style = nst.default_style(72)
    x = np.clip(content + rng.normal(0, 0.1, content.shape), 0, 1).astype(np.float32)
    cl, sl = ("conv_4",), nst.COURSE_STYLE_LAYERS + ("relu4_2",)
    cw, sw, tvw = 1.0, nst.Options().style_weight, 10.0
    opts = nst.Options(content_layers=cl, style_layers=sl, tv_weight=tvw)
    c, s, total, g = _losses_and_grad(w, x, content, style, opts)
    c_t, s_t, total_t, grams_t, g_t = _real_torch_losses(
        ref, x, content, style, cl=cl, sl=sl, cw=cw, sw=sw, tvw=tvw
    )
    assert abs(c / c_t - 1) < 1e-4, (c, c_t)
    assert abs(s / s_t - 1) < 1e-4, (s, s_t)
    assert abs(total / total_t - 1) < 1e-4, (total, total_t)
    assert _rel(g, g_t) < 1e-4, _rel(g, g_t)
    feats = vgg.features(w.params, jnp.asarray(x)[None], layers=sl, mean=w.mean, std=w.std)
    for k in sl:
        assert _rel(losses.gram_matrix(feats[k])[0], grams_t[k]) < 1e-4, k


def test_loss_weights_invariant_to_rescaled_weights_file(pretrained, photo):
    """conv1 x10 (kernel and bias), conv2's kernel x0.1: the same network from conv2 on, but
    conv_1's raw features are 10x larger, its raw content loss 100x, its style loss 1e4x.
    Normalized, every loss and the image gradient are unchanged."""
    raw = vgg.load_weights(pretrained("vgg19"), normalize=False, quiet=True)
    ks, bs = list(raw.kernels), list(raw.biases)
    ks[0], bs[0], ks[1] = ks[0] * 10, bs[0] * 10, ks[1] * 0.1
    scaled = raw._replace(kernels=tuple(ks), biases=tuple(bs), scales=None)
    content = nst.resize(photo, (40, 40))
    style = nst.default_style(40)
    x = nst.resize(photo[100:300, 150:350], (40, 40))
    opts = nst.Options(style_layers=("conv_1", "conv_3"), content_layers=("conv_1",))
    c1, s1, _, _ = _losses_and_grad(raw, x, content, style, opts)
    c2, s2, _, _ = _losses_and_grad(scaled, x, content, style, opts)
    assert c2 / c1 == pytest.approx(100, rel=1e-3) and s2 / s1 > 10  # conv_1's part: 1e4x
    a = _losses_and_grad(vgg.normalize(raw), x, content, style, opts)
    b = _losses_and_grad(vgg.normalize(scaled), x, content, style, opts)  # scales measured
    for u, v in zip(a[:3], b[:3], strict=True):
        assert abs(v / u - 1) < 1e-4, (u, v)
    assert _rel(b[3], a[3]) < 1e-4


def test_stylize_cli_records_real_weights(tmp_path, capsys, photo, pretrained):
    c = tmp_path / "c.png"
    write_image(c, photo[::16, ::16])
    out = tmp_path / "o.jpg"
    rc, err = _stylize(
        capsys, c, c, "--out", out, "--steps", 2, "--weights", pretrained("vgg19"), "--quiet"
    )
    assert rc == 0, err
    meta = json.loads((tmp_path / "o.jpg.json").read_text())
    assert meta["weights"] == "vgg19_weights_tf_dim_ordering_tf_kernels_notop.h5"
    assert meta["weights_normalization"] == "mean-activation-1"
    assert meta["options"]["style_weight"] == 1e5

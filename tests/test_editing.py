"""A5 GAN editing: style generator, projection (z / w / w+), interpolation, draw (the library
:mod:`imsyn.editing`), the experiment :mod:`imsyn.tasks.editing` (every preset), the CLI, and
bad input (the same value fails the same way through the CLI, the config and the library).

Known answers use images the generator made itself from known latents, so a
perfect projection exists. All generators are tiny random-init networks.
"""

import hashlib
import importlib.util
import json
import re
import subprocess
import sys
from pathlib import Path

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import pytest
from flax import nnx

from imsyn import editing, models
from imsyn.errors import ConfigError, InputError, OutputError
from imsyn.tasks import editing as task

ROOT = Path(__file__).resolve().parents[1]
CONFIG = ROOT / "configs" / "editing.py"
STEPS = 10  # steps per compiled chunk in every projection here (one program per shape)


@pytest.fixture(scope="module")
def gen():
    return models.get("style_generator")(
        image_size=16, conv_dim=8, z_dim=16, w_dim=16, mapping_layers=2, rngs=nnx.Rngs(0)
    )


@pytest.fixture(scope="module")
def truth(gen):
    """Two images generated from known latents: (z [2, 16], w [2, 16], images [2, 16, 16, 3])."""
    s = editing.sample(gen, n=2, key=jax.random.key(3), space="z")
    return s.latents, gen.mapping(s.latents), s.images


def _project(gen, targets, space, steps, **kw):
    kw.setdefault("pixel", "l2")
    return editing.project(gen, targets, space=space, steps=steps, chunk=STEPS, **kw)


@pytest.fixture(scope="module")
def projections(gen, truth):
    return {s: _project(gen, truth[2], s, 100) for s in editing.SPACES}


# ----------------------------------------------------------------------------- generator


@nnx.jit
def _views(g, z, w):
    wp = g.broadcast(w)
    return g(z), g.synthesis(wp), g.mapping(3.0 * z), g.synthesis(wp.at[:, -1].add(1.0))


def test_style_generator_latent_spaces_agree(gen, truth):
    z, w, x = truth
    assert x.shape == (2, 16, 16, 3) and float(jnp.abs(x).max()) <= 1.0
    assert gen.num_ws == 6  # conv at 4 px, 2 convs at 8 and 16 px, and the last ToRGB
    from_z, from_w, w_scaled, last_row = _views(gen, z, w)
    np.testing.assert_allclose(from_z, x, atol=1e-5)
    np.testing.assert_allclose(from_w, x, atol=1e-5)
    np.testing.assert_allclose(w_scaled, w, atol=1e-5)  # pixel norm: z only up to its scale
    assert float(jnp.abs(last_row - x).max()) > 1e-3  # w+ rows act on their own layers
    mw = editing.mean_latent(gen, space="w", key=jax.random.key(0), n=4096)
    ref = jnp.mean(gen.mapping(jax.random.normal(jax.random.key(0), (4096, 16))), axis=0)
    np.testing.assert_allclose(mw, ref, atol=1e-5)
    with pytest.raises(ValueError, match="ws must be"):
        gen.synthesis(w)


# ----------------------------------------------------------------------------- projection


@pytest.mark.parametrize("space", ["z", "w", "w+"])
def test_projection_recovers_generated_image(gen, truth, projections, space):
    z, w, x = truth
    p = projections[space]
    assert p.space == space and p.losses.shape == (2, 101)
    assert float(p.losses[:, -1].max()) < 0.05 * float(p.losses[:, 0].min())
    # image error (mean |.| on [0, 1])
    assert float(p.error.max()) < {"z": 0.01, "w": 1e-4, "w+": 0.01}[space]
    np.testing.assert_allclose(
        editing.as_frames(p.images),
        editing.as_frames(x),
        atol={"z": 0.1, "w": 1e-3, "w+": 0.1}[space],
    )
    if space == "w":  # w is identifiable: recovered itself
        np.testing.assert_allclose(p.latents, w, atol=1e-3)
    if space == "z":  # z only up to the generator's invariances: its w is recovered
        rel = jnp.linalg.norm(gen.mapping(p.latents) - w, axis=-1) / jnp.linalg.norm(w, axis=-1)
        assert float(rel.max()) < 0.05


def test_batched_projection_equals_one_by_one(gen, truth):
    x = truth[2]
    batch = _project(gen, x, "w+", STEPS)
    ones = [_project(gen, x[i : i + 1], "w+", STEPS) for i in range(2)]
    np.testing.assert_allclose(
        np.concatenate([o.latents for o in ones]), batch.latents, atol=1e-4, rtol=1e-4
    )
    np.testing.assert_allclose(np.concatenate([o.losses for o in ones]), batch.losses, rtol=1e-4)
    # Examples never interact: the partner does not change a result, bit for bit.
    other = _project(gen, jnp.stack([x[0], x[0] * 0.5]), "w+", STEPS)
    np.testing.assert_array_equal(other.latents[0], batch.latents[0])


def test_projection_compiles_once_per_shape(gen, truth, projections, monkeypatch):
    """Every chunk of a projection, and a second batch of the same shape (other images,
    weights and key), reuse the programs compiled for the first (``projections``): nothing
    is traced again. The objective, which every trace of a chunk or of the final evaluation
    calls, is wrapped to count its traces (a cache hit never calls it)."""
    traces = []
    objective = editing._loss_one

    def counted(*args, **kwargs):
        traces.append(1)
        return objective(*args, **kwargs)

    monkeypatch.setattr(editing, "_loss_one", counted)
    other = truth[2][::-1] * 0.5
    p = _project(gen, other, "w", 3 * STEPS, latent_reg=0.5, key=jax.random.key(7))
    assert p.losses.shape == (2, 3 * STEPS + 1)
    assert not traces, f"the objective was traced {len(traces)} times: a recompilation"


# ----------------------------------------------------------------------------- interpolate, draw


def test_interpolation_endpoints_are_the_projections(gen, projections):
    p = projections["w+"]
    frames = editing.interpolate(p.latents[0], p.latents[1], num_frames=5)
    assert frames.shape == (5, *p.latents.shape[1:])
    np.testing.assert_array_equal(frames[0], p.latents[0])
    np.testing.assert_array_equal(frames[-1], p.latents[1])
    imgs = editing.render_frames(gen, frames, space="w+")
    np.testing.assert_allclose(imgs[0], editing.as_frames(p.images[0]), atol=1e-5)
    np.testing.assert_allclose(imgs[-1], editing.as_frames(p.images[1]), atol=1e-5)
    np.testing.assert_allclose(frames[2], 0.5 * (p.latents[0] + p.latents[1]), atol=1e-6)
    z = projections["z"].latents
    sl = editing.interpolate(z[0], z[1], num_frames=5, method="slerp")
    np.testing.assert_array_equal(sl[-1], z[1])
    na, nb = float(jnp.linalg.norm(z[0])), float(jnp.linalg.norm(z[1]))
    norms = jnp.linalg.norm(sl, axis=-1)  # on the great circle: norms between the ends' norms
    assert float(norms.min()) > 0.9 * min(na, nb) and float(norms.max()) < 1.1 * max(na, nb)


def test_draw_follows_sketch_inside_mask(gen, truth):
    x = truth[2][:1]
    mask = np.zeros((1, 16, 16), np.float32)
    mask[:, 4:12, 2:9] = 1.0  # a scribbled region of a real sample
    mean = editing.mean_latent(gen, space="w+", key=jax.random.key(0))
    start = editing.render_frames(gen, mean[None], space="w+")
    m = mask[..., None]
    err0 = float(np.sum(np.abs(start - editing.as_frames(x)) * m) / (3 * m.sum()))
    d = editing.draw(gen, x, mask, space="w+", steps=5 * STEPS, chunk=STEPS, pixel="l2")
    assert float(d.error[0]) < 0.2 * err0, (float(d.error[0]), err0)
    # The objective only looks inside the mask: an image differing outside it is no worse.
    y = x.at[:, :, 10:].set(-x[:, :, 10:])
    d2 = editing.draw(gen, y, mask, space="w+", steps=5 * STEPS, chunk=STEPS, pixel="l2")
    np.testing.assert_allclose(d2.latents, d.latents, atol=1e-5)


def test_library_imports_no_training_machinery():
    code = (
        "import sys, imsyn.editing; print(sorted(m for m in sys.modules if m.split('.')[0] in "
        "('orbax', 'ml_collections', 'tensorboardX') or m.startswith(('imsyn.training', "
        "'imsyn.tasks'))))"
    )  # (absl comes with optax)
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"


def test_loss_weights_by_name():
    w = editing.Weights.of(editing.Options(lr=0.5, pixel_weight=2.0, latent_reg=3.0))
    assert (float(w.lr), float(w.pixel_weight), float(w.perceptual_weight)) == (0.5, 2.0, 0.0)
    assert float(w.latent_reg) == 3.0


def test_library_bad_inputs(gen, truth):
    x = truth[2]
    with pytest.raises(InputError, match="makes 16x16"):
        editing.project(gen, jnp.zeros((1, 8, 8, 3)), space="w")
    with pytest.raises(InputError, match="empty"):
        editing.draw(gen, x[:1], np.zeros((16, 16)), space="w")
    with pytest.raises(InputError, match="differ in size"):
        editing.draw(gen, x[:1], np.ones((8, 8)), space="w")
    with pytest.raises(ConfigError, match="latent space"):
        editing.project(gen, x, space="w++")
    with pytest.raises(ConfigError, match="steps"):
        editing.project(gen, x, space="w", steps=0)


# ----------------------------------------------------------------------------- entry points


@pytest.fixture(scope="module")
def dcgan_run(tmp_path_factory):
    """A DCGAN run directory as train.py leaves it: config.json + an orbax checkpoint."""
    import ml_collections

    from imsyn.image import write_json
    from imsyn.tasks.dcgan import DCGANTask
    from imsyn.training.checkpoint import Checkpoints

    spec = {
        "task": "dcgan", "name": "tiny", "seed": 0, "data": "emoji:twemoji", "image_size": 32,
        "num_steps": 10, "batch_size": 4, "augment": "none", "diffaug": "", "conv_dim": 2,
        "norm": "instance", "spectral_norm": False, "loss": "lsgan", "lr": 2e-4, "beta1": 0.5,
        "beta2": 0.999, "lr_schedule": "constant", "decay_start": 0, "log_every": 5,
        "checkpoint_every": 5, "keep_checkpoints": 1, "sample_every": 5,
        "num_sample_images": 4, "eval_samples": 4, "features": "random_conv_v1",
        "features_path": "",
    }  # fmt: skip
    cfg = ml_collections.ConfigDict(spec)
    wd = tmp_path_factory.mktemp("dcgan_run")
    task = DCGANTask()
    state = task.init_state(cfg, jax.random.key(0))
    write_json(wd / "config.json", cfg.to_dict())
    ck = Checkpoints(wd / "checkpoints")
    ck.save(5, state, {"step": 5, "data": None, "arch": task.arch(cfg)})
    ck.close()
    return wd


def _edit_config(mode, run, **over):
    c = task.default_config(mode)
    c.generator_workdir = str(run)
    c.update(over)
    return c


def test_train_draw_and_evaluate_on_a_dcgan_run(dcgan_run, tmp_path, monkeypatch):
    """The experiment end to end: restore a DCGAN checkpoint, draw with Adam + the perceptual
    loss (random VGG-19 features), write outputs, then eval re-renders the same numbers."""
    monkeypatch.delenv("IMSYN_VGG19", raising=False)  # no weights given or fetched: random
    monkeypatch.setenv("IMSYN_CACHE_DIR", str(tmp_path / "empty_cache"))
    cfg = _edit_config("draw", dcgan_run, steps=STEPS, optimizer="adam", lr=0.1,
                       perceptual_layers="conv1_2")  # fmt: skip
    out = tmp_path / "draw"
    m = task.train(cfg, out)
    assert m["generator"] == "dcgan_generator" and m["generator_step"] == 5
    assert m["perceptual_features"] == "random" and "features_note" in m
    assert m["z/error_inside_mask"] < m["z/start_error_inside_mask"]
    for f in ("config.json", "latents.npz", "eval/draw_z.png", "eval/metrics.json",
              "plots/losses.png", "report.html"):  # fmt: skip
        assert (out / f).is_file(), f
    assert json.loads((out / "eval" / "metrics.json").read_text()) == m
    again = task.evaluate(cfg, out)  # re-renders the saved latents
    assert again == m


def test_project_records_lpips_and_exact_targets_score_zero(
    dcgan_run, tmp_path, pretrained, monkeypatch, capsys
):
    """project mode writes L1/PSNR/LPIPS per space; when the targets are exactly the images
    of the saved latents, eval gives L1 = LPIPS = 0 and PSNR at its 100 dB cap; without the
    LPIPS weights it says so instead of a number."""
    import ml_collections

    from imsyn.__main__ import main

    lpips_path = pretrained("lpips_vgg16")
    out = tmp_path / "proj"
    rc = main(["edit", "project", "--generator-workdir", str(dcgan_run), "--num-images", "2",
               "--out", str(out), "--steps", str(STEPS), "--optimizer", "adam",
               "--perceptual-weight", "0"])  # fmt: skip
    assert rc == 0
    assert "z/lpips=" in capsys.readouterr().out
    m = json.loads((out / "eval" / "metrics.json").read_text())
    assert m["lpips"] == {"net": "lpips_vgg16_v0.1", "weights": str(lpips_path)}
    assert 0 < m["z/lpips"] < 2 and m["z/l1"] > 0 and 0 < m["z/psnr"] < 100

    cfg = ml_collections.ConfigDict(json.loads((out / "config.json").read_text()))
    saved = task.load_npz(out / "latents.npz")
    gdef, gstate = nnx.split(task.load_generator(dcgan_run).gen)
    latents = jnp.asarray(saved["latents/z"])  # the jitted renderer eval uses: same images
    saved["targets"] = np.asarray(editing._render_jit(gdef, gstate, latents, "z"))
    task.save_npz(out / "latents.npz", saved)
    exact = task.evaluate(cfg, out)
    assert exact["z/lpips"] == 0.0 and exact["z/l1"] == 0.0 and exact["z/psnr"] == 100.0

    monkeypatch.setenv("IMSYN_CACHE_DIR", str(tmp_path / "empty_cache"))
    m = task.evaluate(cfg, out)
    assert m["lpips"] == "not available: run `python -m imsyn weights fetch lpips_vgg16`"
    assert m["z/lpips"] is None and m["z/l1"] == 0.0


def test_cli_interpolate_writes_gif_and_strip(dcgan_run, tmp_path, capsys):
    from PIL import Image

    from imsyn.__main__ import main
    from imsyn.image import write_image

    rng = np.random.default_rng(0)
    files = []
    for i in range(2):
        f = tmp_path / f"in{i}.png"
        write_image(f, rng.random((40, 48, 3)).astype(np.float32))  # resized to 32 px
        files.append(str(f))
    out = tmp_path / "lerp"
    rc = main(["edit", "interpolate", "--generator-workdir", str(dcgan_run), *files,
               "--out", str(out), "--steps", str(STEPS), "--optimizer", "adam",
               "--perceptual-weight", "0", "--frames", "4"])  # fmt: skip
    assert rc == 0, capsys.readouterr().err
    with Image.open(out / "eval" / "interpolation_z.gif") as im:
        assert im.n_frames == 2 * 4 - 2 and im.size == (32, 32)
    strip = np.asarray(Image.open(out / "eval" / "interpolation_z.png"))
    assert strip.shape[1] == 6 * 34 + 2  # target, 4 frames, target
    m = json.loads((out / "eval" / "metrics.json").read_text())
    assert m["z/interpolation"] == "slerp" and m["num_images"] == 2


def _write_png(path, arr):
    from imsyn.image import write_image

    write_image(path, np.asarray(arr, np.float32))
    return str(path)


def test_cli_bad_inputs_one_line_exit_2_no_output(dcgan_run, tmp_path, capsys):
    from imsyn.__main__ import main

    empty = tmp_path / "empty_run"
    empty.mkdir()
    (empty / "config.json").write_text('{"task": "dcgan"}')
    sk32 = _write_png(tmp_path / "sk32.png", np.full((32, 32, 3), 0.5))
    sk33 = _write_png(tmp_path / "sk33.png", np.full((33, 33, 4), 0.5))
    m31 = _write_png(tmp_path / "m31.png", np.ones((31, 31)))
    m0 = _write_png(tmp_path / "m0.png", np.zeros((32, 32)))
    run = str(dcgan_run)
    cases = [
        (["project", "--generator-workdir", str(empty)], "no checkpoint"),
        (["project", "--generator-workdir", str(tmp_path / "nope")], "no such directory"),
        (["project", "--generator-workdir", run, "--space", "w+"], "'w+' is not available"),
        (["draw", "--generator-workdir", run, "--sketch", sk33], "generator makes 32x32"),
        (["draw", "--generator-workdir", run, "--sketch", sk32, "--mask", m31], "is 31x31"),
        (["draw", "--generator-workdir", run, "--sketch", sk32, "--mask", m0], "mask is empty"),
        (["interpolate", "--generator-workdir", run, sk32], "two images"),
        (["project", "--generator-workdir", run, "--steps", "0"], "argument --steps: must be"),
    ]
    for i, (args, msg) in enumerate(cases):
        out = tmp_path / f"out{i}"
        rc = _main(main, ["edit", *args, "--out", str(out)])
        err = capsys.readouterr().err.strip().splitlines()
        assert rc == 2 and len(err) == 1 and msg in err[0], (args, err)
        assert not out.exists()


def test_train_py_unknown_space_exits_2(dcgan_run, tmp_path):
    out = tmp_path / "w"
    p = subprocess.run(
        [sys.executable, "train.py", "--config=configs/editing.py:draw",
         f"--config.generator_workdir={dcgan_run}", "--config.spaces=w", f"--workdir={out}"],
        cwd=ROOT, capture_output=True, text=True,
    )  # fmt: skip
    assert p.returncode == 2, p.stderr
    assert "'w' is not available" in p.stderr and len(p.stderr.strip().splitlines()) == 1
    assert not out.exists()


def test_config_validation():
    cfg = task.default_config("project")
    with pytest.raises(ConfigError, match="generator_workdir"):
        task.validate(cfg)
    cfg.generator_workdir = "runs/x"
    task.validate(cfg)
    for field, value, msg in [
        ("mode", "paint", "config.mode"),
        ("spaces", "z,q", "config.spaces"),
        ("steps", -1, "config.steps"),
        ("perceptual_layers", "conv9_9", "perceptual_layers"),
        ("lr", 0, "config.lr"),
    ]:
        bad = task.default_config("project")
        bad.generator_workdir = "runs/x"
        bad[field] = value
        with pytest.raises(ConfigError, match=msg):
            task.validate(bad)
    bad = task.default_config("draw")
    bad.generator_workdir = "runs/x"
    bad.colour = 1
    with pytest.raises(ConfigError, match="unknown config field config.colour"):
        task.validate(bad)
    assert task.default_config("draw").latent_reg == 0.01


def _config_module():
    spec = importlib.util.spec_from_file_location("editing_config", CONFIG)
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


@pytest.mark.parametrize("preset", list(_config_module().PRESETS))
def test_every_preset_validates(preset):
    c = _config_module().get_config(preset)
    c.generator_workdir = "runs/x"
    task.validate(c)
    assert c.mode == (preset or "project")
    assert c.to_dict() == _edit_config(c.mode, "runs/x").to_dict()  # the CLI's config of the mode


# ----------------------------------------------------------------------------- bad input


def _main(main, argv) -> int:
    """``main(argv)``'s exit status, also when argparse exits (a bad command line)."""
    try:
        return main(argv)
    except SystemExit as e:
        return e.code


def _digests(folder: Path) -> dict:
    return {
        p.relative_to(folder).as_posix(): hashlib.sha256(p.read_bytes()).hexdigest()
        for p in sorted(folder.rglob("*"))
        if p.is_file()
    }


def test_out_may_not_be_an_input(dcgan_run, tmp_path, capsys):
    """``--out`` (the workdir) that is, or lies inside, the generator workdir or an input image
    is refused before any work, through the CLI (one line, exit 2) and the library (the same
    OutputError); the generator's files are untouched."""
    from imsyn.__main__ import main

    img = _write_png(tmp_path / "a.png", np.full((32, 32, 3), 0.5))
    before = _digests(dcgan_run)
    run = str(dcgan_run)
    cases = [
        (["project", "--generator-workdir", run, "--out", run], "inside"),
        (["project", "--generator-workdir", run, "--out", f"{run}/eval"], "inside"),
        (["project", "--generator-workdir", run, "--num-images", "1", img, "--out", img], img),
        (["draw", "--generator-workdir", run, "--sketch", img, "--out", img], img),
    ]
    for args, msg in cases:
        rc = _main(main, ["edit", *args])
        err = capsys.readouterr().err.strip().splitlines()
        assert rc == 2 and len(err) == 1 and msg in err[0] and "output" in err[0], (args, err)
    assert _digests(dcgan_run) == before and not (dcgan_run / "eval").exists()
    cfg = _edit_config("project", dcgan_run, steps=STEPS)
    with pytest.raises(OutputError, match="inside"):
        task.train(cfg, dcgan_run)
    with pytest.raises(OutputError, match="inside"):
        task.evaluate(cfg, dcgan_run)
    cfg = _edit_config("project", dcgan_run, images=f"folder:{tmp_path}")
    with pytest.raises(OutputError, match="inside"):
        task.train(cfg, tmp_path / "edit")
    assert _digests(dcgan_run) == before and not (tmp_path / "edit").exists()


# (option, config field, bad value): each fails where it is parsed, with the field's rule
BAD_NUMBERS = [
    ("--seed", "seed", "99999999999999999999"),
    ("--seed", "seed", "1e23"),
    ("--seed", "seed", "-1"),
    ("--steps", "steps", "0"),
    ("--steps", "steps", "99999999999999999999"),
    ("--lr", "lr", "inf"),
    ("--lr", "lr", "nan"),
    ("--lr", "lr", "0"),
    ("--pixel-weight", "pixel_weight", "-1"),
    ("--perceptual-weight", "perceptual_weight", "nan"),
    ("--latent-reg", "latent_reg", "1e30"),
    ("--num-images", "num_images", "0"),
    ("--frames", "num_frames", "1"),
    ("--frames", "num_frames", "99999999999"),
]


def _parsed(text: str):
    try:
        return int(text)
    except ValueError:
        return float(text)


def test_bad_numbers_fail_the_same_way_in_cli_config_and_library(gen, truth, tmp_path, capsys):
    from imsyn.__main__ import main

    for option, field, text in BAD_NUMBERS:
        mode = "interpolate" if option == "--frames" else "project"
        out = tmp_path / "out"
        argv = ["edit", mode, "--generator-workdir", str(tmp_path), option, text]
        rc = _main(main, [*argv, "--out", str(out)])
        err = capsys.readouterr().err.strip().splitlines()
        assert rc == 2 and len(err) == 1 and f"argument {option}: must be " in err[0], err
        assert not out.exists()
        expect = re.search(r"must be (.*), got", err[0]).group(1)
        values = _edit_config(mode, tmp_path).to_dict()
        values[field] = _parsed(text)
        cfg = ml_collections.ConfigDict(values)  # (no type-safe override: 1e23 into an int)
        with pytest.raises(ConfigError, match=re.escape(f"config.{field} must be {expect}, got")):
            task.validate(cfg)
        if field in editing.RULES:  # the library's own arguments
            with pytest.raises(ConfigError, match=re.escape(f"{field} must be {expect}, got")):
                if field == "num_frames":
                    editing.interpolate(truth[0][0], truth[0][1], num_frames=_parsed(text))
                else:
                    editing.project(gen, truth[2], space="w", **{field: _parsed(text)})

"""The generic training loop on DCGAN (tiny, CPU) and on a toy task.

Covers: outputs of a run (metrics.jsonl, TensorBoard events parsed back with
protobuf, samples, plots, eval/metrics.json, report.html), train_step compiled
once, SIGTERM/SIGKILL at a random moment then resume reproduces the losses of an
uninterrupted run, a half-written checkpoint is ignored, the NaN guard keeps the
last good checkpoint, bad configs exit 2 without touching the workdir, another
architecture is refused, and 8 fake CPU devices train like 1.
"""

import importlib.util
import json
import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import chex
import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
from PIL import Image

from imsyn import validate
from imsyn.data import ArraySource, make_loader
from imsyn.errors import ConfigError
from imsyn.experiments import main
from imsyn.tasks.dcgan import DCGANTask
from imsyn.training import loop
from imsyn.training.checkpoint import Checkpoints
from imsyn.training.writers import read_metrics

ROOT = Path(__file__).resolve().parents[1]
CONFIG = ROOT / "configs" / "dcgan.py"
STEPS = 16

# Tiny DCGAN: 32 px, conv_dim 2, batch 4; a log line every step, checkpoints every 4.
TINY = {
    "num_steps": STEPS,
    "batch_size": 4,
    "conv_dim": 2,
    "log_every": 1,
    "checkpoint_every": 4,
    "sample_every": 1000,
    "eval_samples": 8,
    "num_sample_images": 4,
    "features": "random_conv_v1",  # the default "auto" depends on the weights cache
}


def _load_config_module():
    spec = importlib.util.spec_from_file_location("dcgan_config", CONFIG)
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def tiny_config(data: str, /, **overrides):
    c = _load_config_module().get_config("quick")
    c.update({**TINY, "data": data, **overrides})
    return c


def run_main(argv: list[str], mode: str) -> int:
    """``imsyn.experiments.main`` in process (config overrides are read from sys.argv)."""
    saved = sys.argv
    sys.argv = argv
    try:
        return main(argv, mode)
    finally:
        sys.argv = saved


def flags(data: str, workdir, /, **overrides) -> list[str]:
    over = {**TINY, "data": data, **overrides}
    return [f"--config={CONFIG}:quick", f"--workdir={workdir}"] + [
        f"--config.{k}={v}" for k, v in over.items()
    ]


@pytest.fixture(scope="module")
def blobs(tmp_path_factory) -> str:
    """A folder of 12 PNGs (coloured discs on white), as a ``folder:`` data spec."""
    folder = tmp_path_factory.mktemp("blobs")
    rng = np.random.default_rng(0)
    yy, xx = np.mgrid[:32, :32]
    for i in range(12):
        img = np.full((32, 32, 3), 255, np.uint8)
        r, (cy, cx) = rng.integers(5, 12), rng.integers(10, 22, 2)
        img[(yy - cy) ** 2 + (xx - cx) ** 2 < r * r] = rng.integers(0, 255, 3)
        Image.fromarray(img).save(folder / f"{i:02d}.png")
    return f"folder:{folder}"


class CountedDCGAN(DCGANTask):
    """DCGAN whose train_step fails if it is traced more than once."""

    def __init__(self, config):
        super().__init__(config)
        self.train_step = chex.assert_max_traces(super().train_step, n=1)


@pytest.fixture(scope="module")
def reference(blobs, tmp_path_factory):
    """An uninterrupted tiny DCGAN run (in process); its train_step must compile once."""
    workdir = tmp_path_factory.mktemp("reference")
    config = tiny_config(blobs)
    loop.fit(config, workdir, CountedDCGAN(config))
    return workdir


def _losses(workdir) -> dict[int, tuple[float, float]]:
    return {r["step"]: (r["d_loss"], r["g_loss"]) for r in read_metrics(workdir / "metrics.jsonl")}


# --------------------------------------------------------------------------- outputs


def test_run_outputs_and_tensorboard_events(reference):
    wd = reference
    config = json.loads((wd / "config.json").read_text())
    assert config["num_steps"] == STEPS and config["task"] == "dcgan"
    records = read_metrics(wd / "metrics.jsonl")
    assert [r["step"] for r in records] == list(range(1, STEPS + 1))
    assert all(np.isfinite(r["d_loss"]) and np.isfinite(r["g_loss"]) for r in records)
    assert sorted(Checkpoints(wd / "checkpoints", read_only=True).all_steps()) == [8, 12, 16]
    for f in ("samples/samples_latest.png", "samples/samples_0000016.png", "plots/losses.png",
              "eval/samples.png", "eval/interpolation.png"):  # fmt: skip
        assert Image.open(wd / f).size[0] > 32, f
    ev = json.loads((wd / "eval" / "metrics.json").read_text())
    assert ev["step"] == STEPS and ev["features"] == "random_conv_v1"
    assert np.isfinite(ev["kid"]) and ev["fid"] > 0 and "not comparable" in ev["features_note"]
    report = (wd / "report.html").read_text()
    assert 'src="plots/losses.png"' in report and "random_conv_v1" in report

    # TensorBoard's own reader loads the events: every logged loss and the sample images.
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    acc = EventAccumulator(str(wd), size_guidance={"scalars": 0, "images": 0}).Reload()
    scalars = {(e.step, "d_loss"): e.value for e in acc.Scalars("d_loss")}
    for r in records:
        assert scalars[(r["step"], "d_loss")] == pytest.approx(r["d_loss"], rel=1e-6)
    (tag, *_) = acc.Tags()["images"]
    image = acc.Images(tag)[-1]
    assert image.encoded_image_string.startswith(b"\x89PNG") and image.width > 32


def test_eval_py_rewrites_metrics_and_report(reference, blobs, capsys):
    before = json.loads((reference / "eval" / "metrics.json").read_text())
    (reference / "report.html").unlink()
    assert run_main(["eval.py", *flags(blobs, reference)], "eval") == 0
    after = json.loads((reference / "eval" / "metrics.json").read_text())
    assert after == pytest.approx(before) and (reference / "report.html").exists()


# --------------------------------------------------------------------------- kill and resume


def _start(argv, workdir, **env):
    log = open(Path(workdir).with_suffix(".log"), "ab")  # noqa: SIM115 - closed by the OS on exit
    return subprocess.Popen(
        [sys.executable, str(ROOT / "train.py"), *argv],
        cwd=ROOT,
        stdout=log,
        stderr=subprocess.STDOUT,
        env={**os.environ, "JAX_PLATFORMS": "cpu", **env},
    )


def _wait_for_step(proc, workdir: Path, step: int, timeout: float = 120) -> None:
    deadline = time.monotonic() + timeout  # a deadline against hangs, not a timing assertion
    while time.monotonic() < deadline:
        if len(read_metrics(workdir / "metrics.jsonl")) >= step:
            return
        assert proc.poll() is None, Path(workdir).with_suffix(".log").read_text()[-2000:]
        time.sleep(0.02)
    raise AssertionError(f"no step {step} within {timeout}s")


def test_sigterm_then_sigkill_then_resume_reproduces_uninterrupted_losses(
    reference, blobs, tmp_path
):
    rng = np.random.default_rng(7)  # seeded: the same interruption points every run
    k_term, k_kill = sorted(rng.choice(np.arange(2, STEPS - 1), 2, replace=False))
    note = f"(SIGTERM after step {k_term}, SIGKILL after step {k_kill})"
    wd = tmp_path / "run"
    argv = flags(blobs, wd)

    proc = _start(argv, wd)  # SIGTERM: checkpoint at the current step, exit 130
    _wait_for_step(proc, wd, k_term)
    proc.send_signal(signal.SIGTERM)
    assert proc.wait(120) == 130, note
    stopped = Checkpoints(wd / "checkpoints", read_only=True).latest_step()
    assert stopped == max(r["step"] for r in read_metrics(wd / "metrics.jsonl")), note

    proc = _start(argv, wd)  # SIGKILL once step k_kill is logged: nothing gets to clean up
    _wait_for_step(proc, wd, k_kill)
    proc.kill()
    proc.wait(60)
    ckpts = Checkpoints(wd / "checkpoints", read_only=True)
    latest = ckpts.latest_step()
    # a checkpoint that was being written when the process died: never picked up
    half = wd / "checkpoints" / f"{STEPS}.orbax-checkpoint-tmp-1700000000"
    (half / "state").mkdir(parents=True)
    (half / "state" / "manifest.ocdbt").write_bytes(b"\x00truncated")
    assert ckpts.latest_step() == latest, note

    proc = _start(argv, wd)
    assert proc.wait(300) == 0, wd.with_suffix(".log").read_text()[-2000:]
    assert not half.exists()
    got, want = _losses(wd), _losses(reference)
    assert sorted(got) == list(range(1, STEPS + 1)), note  # no step logged twice
    for step in want:
        np.testing.assert_allclose(got[step], want[step], rtol=1e-5, err_msg=f"step {step} {note}")
    ev_got = json.loads((wd / "eval" / "metrics.json").read_text())
    ev_want = json.loads((reference / "eval" / "metrics.json").read_text())
    assert ev_got["kid"] == pytest.approx(ev_want["kid"], rel=1e-3), note


class _SignalAt:
    """A data iterator that sends this process SIGTERM when batch ``at`` is taken."""

    def __init__(self, data, at: int):
        self.data, self.at, self.taken = data, at, 0

    def __next__(self):
        self.taken += 1
        if self.taken == self.at:
            signal.raise_signal(signal.SIGTERM)
        return next(self.data)

    def get_state(self):
        return self.data.get_state()

    def set_state(self, state):
        self.data.set_state(state)


class _StopAt5(DCGANTask):
    def make_data(self, config, *, seed):
        return _SignalAt(super().make_data(config, seed=seed), 5)


def test_logs_are_window_means_and_a_resume_keeps_the_window(reference, blobs, tmp_path):
    """log_every=3: each record is the mean of its 3 steps (the reference logs every step),
    also for the window of steps 4-6 that a SIGTERM after step 5 splits over two processes'
    worth of fit (the checkpoint of step 5 holds steps 4 and 5)."""
    per_step = {r["step"]: r for r in read_metrics(reference / "metrics.jsonl")}
    config = tiny_config(blobs, log_every=3)
    wd = tmp_path / "run"
    with pytest.raises(KeyboardInterrupt):
        loop.fit(config, wd, _StopAt5(config))
    assert Checkpoints(wd / "checkpoints", read_only=True).latest_step() == 5
    loop.fit(config, wd, DCGANTask(config))
    records = read_metrics(wd / "metrics.jsonl")
    assert [r["step"] for r in records] == [3, 6, 9, 12, 15, 16]
    for r, first in zip(records, [1, 4, 7, 10, 13, 16], strict=True):
        for key in ("d_loss", "g_loss", "d_real"):
            want = np.mean([per_step[s][key] for s in range(first, r["step"] + 1)])
            np.testing.assert_allclose(r[key], want, rtol=1e-5, err_msg=f"{key} at {r['step']}")


# --------------------------------------------------------------------------- bad input


def _snapshot(workdir: Path) -> dict:
    return {
        p.relative_to(workdir): (p.stat().st_mtime_ns, p.stat().st_size) for p in workdir.rglob("*")
    }


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        ({"lr": -1.0}, "config.lr"),
        ({"image_size": 48}, "config.image_size"),
        ({"batch_size": 0}, "config.batch_size"),
        ({"loss": "wgan"}, "config.loss"),
        ({"diffaug": "colour"}, "config.diffaug"),
        ({"decay_start": STEPS}, "config.decay_start"),
        ({"conv_dim": 3}, "another architecture"),
        ({"norm": "batch"}, "another architecture"),
        ({"data": "folder:/no/such/folder"}, "/no/such/folder"),
    ],
)
def test_bad_config_exits_2_and_touches_nothing(reference, blobs, overrides, message, capsys):
    before = _snapshot(reference)
    assert run_main(["train.py", *flags(blobs, reference, **overrides)], "train") == 2
    lines = capsys.readouterr().err.strip().splitlines()  # progress lines may precede it
    errors = [line for line in lines if "error" in line]
    assert errors == [lines[-1]] and lines[-1].startswith("train.py: error:"), lines
    assert message in lines[-1]
    assert _snapshot(reference) == before


def test_unwritable_workdir_and_unknown_fields(blobs, tmp_path, capsys):
    blocker = tmp_path / "file"
    blocker.write_text("x")
    assert run_main(["train.py", *flags(blobs, blocker / "run")], "train") == 2
    assert "not a directory" in capsys.readouterr().err
    c = tiny_config(blobs)
    c.unknown_knob = 3  # a config file with a typo'd field
    with pytest.raises(ConfigError, match="config.unknown_knob"):
        DCGANTask().validate(c)


def test_eval_without_checkpoint_is_a_clear_error(blobs, tmp_path, capsys):
    assert run_main(["eval.py", *flags(blobs, tmp_path / "empty")], "eval") == 2
    assert "no checkpoint" in capsys.readouterr().err
    assert not (tmp_path / "empty").exists()


# --------------------------------------------------------------------------- NaN guard (toy task)


class ToyTask:
    """Linear regression on image means; the loss (and state) turn NaN from step ``nan_at``."""

    def __init__(self, config):
        self.nan_at = config.nan_at
        self.opt = optax.sgd(config.lr)

    def validate(self, config):
        loop.check_config(config, {"nan_at": validate.integer(min=1)})

    def init_state(self, config, key):
        w = jax.random.normal(key, (3,))
        return {"w": w, "count": jnp.zeros((), jnp.int32), "opt": self.opt.init(w)}

    def make_data(self, config, *, seed):
        rng = np.random.default_rng(0)
        images = rng.integers(0, 256, (8, 8, 8, 3), dtype=np.uint8)
        source = ArraySource(images, [str(i) for i in range(8)], "toy")
        return make_loader(source, batch_size=config.batch_size, seed=seed, image_size=8)

    def train_step(self, state, batch, key):
        x = batch["image"].mean(axis=(1, 2))
        loss, grad = jax.value_and_grad(lambda w: jnp.mean((x @ w - 1.0) ** 2))(state["w"])
        updates, opt = self.opt.update(grad, state["opt"])
        count = state["count"] + 1
        bad = count >= self.nan_at
        w = jnp.where(bad, jnp.nan, optax.apply_updates(state["w"], updates))
        return {"w": w, "count": count, "opt": opt}, {"loss": jnp.where(bad, jnp.nan, loss)}

    def samples(self, state):
        return {"w": np.full((4, 4, 3), 0.5, np.float32)}

    def evaluate(self, state, config, workdir):
        return {"w_norm": float(jnp.linalg.norm(state["w"]))}

    def arch(self, config):
        return {"model": "toy"}


def test_nan_guard_stops_and_keeps_last_good_checkpoint(blobs, tmp_path):
    c = tiny_config(blobs, task="toy", lr=0.1, log_every=100, checkpoint_every=2, num_steps=20)
    for field in set(c.keys()) - set(loop.COMMON_FIELDS):
        del c[field]
    c.nan_at = 7
    with pytest.raises(
        loop.TrainingDiverged, match="loss became nan at step 7.*checkpoint: step 6"
    ):
        loop.fit(c, tmp_path, ToyTask(c))
    state, step = loop.restore(c, tmp_path, ToyTask(c))
    assert step == 6 and int(state["count"]) == 6
    assert bool(jnp.all(jnp.isfinite(state["w"])))
    assert not (tmp_path / "eval").exists()


# --------------------------------------------------------------------------- 8 devices == 1


def test_eight_fake_devices_train_like_one(blobs, tmp_path):
    over = {"num_steps": 3, "batch_size": 8, "norm": "batch", "checkpoint_every": 3}
    script = textwrap.dedent(
        f"""
        import importlib.util, sys, jax, numpy as np
        from flax import nnx
        from imsyn.errors import ConfigError
        from imsyn.runtime import enable_compilation_cache
        from imsyn.training import loop
        from imsyn.tasks.dcgan import DCGANTask
        enable_compilation_cache()
        assert len(jax.devices()) == 8, jax.devices()
        spec = importlib.util.spec_from_file_location("cfg", {str(CONFIG)!r})
        mod = importlib.util.module_from_spec(spec); spec.loader.exec_module(mod)
        c = mod.get_config("quick"); c.update({ {**TINY, "data": blobs, **over}!r})
        try:
            c.batch_size = 4
            loop.fit(c, {str(tmp_path / "bad")!r}, DCGANTask(c))
            raise SystemExit("batch 4 on 8 devices was accepted")
        except ConfigError as e:
            assert "multiple of the device count (8)" in str(e), e
        c.batch_size = 8
        state = loop.fit(c, {str(tmp_path / "eight")!r}, DCGANTask(c))
        leaf = jax.tree.leaves(state["g"])[0]
        assert len(leaf.sharding.device_set) == 8
        flat = {{"/".join(map(str, k)): np.asarray(v)
                 for k, v in jax.tree_util.tree_flatten_with_path(state)[0]}}
        np.savez({str(tmp_path / "eight.npz")!r}, **flat)
        """
    )
    env = {**os.environ, "JAX_PLATFORMS": "cpu"}
    env["XLA_FLAGS"] = env.get("XLA_FLAGS", "") + " --xla_force_host_platform_device_count=8"
    proc = subprocess.run([sys.executable, "-c", script], env=env, capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert not (tmp_path / "bad").exists()

    c = tiny_config(blobs, **over)
    state = loop.fit(c, tmp_path / "one", DCGANTask(c))
    eight = np.load(tmp_path / "eight.npz")
    flat = jax.tree_util.tree_flatten_with_path(state)[0]
    assert len(flat) == len(eight.files)
    stats = [v for p, v in flat if "mean" in "/".join(map(str, p)) and "'g'" in str(p[0])]
    assert stats and all(np.any(np.asarray(v) != 0) for v in stats)  # batch stats were updated
    for path, value in flat:
        name = "/".join(map(str, path))
        np.testing.assert_allclose(
            np.asarray(value), eight[name], rtol=1e-4, atol=2e-5, err_msg=name
        )


# --------------------------------------------------------------------------- sweeps


def test_sweep_configs_and_comparison_page(reference, blobs, tmp_path):
    from imsyn.training.sweep import sweep_configs, write_comparison, write_hparams

    base = tiny_config(blobs)
    runs = sweep_configs(base, _load_config_module().get_sweep("norm"))
    assert [c.norm for _, c in runs] == ["instance", "batch", "none", "none"]
    assert runs[3][1].spectral_norm and runs[0][1].name == "dcgan_quick_norm_instance"
    with pytest.raises(ConfigError, match="config.nrom"):
        sweep_configs(base, [("typo", {"nrom": "batch"})])

    import shutil

    for name in ("a", "b"):
        shutil.copytree(reference, tmp_path / name, ignore=shutil.ignore_patterns("checkpoints"))
    page = write_comparison(tmp_path, ["a", "b"]).read_text()
    kid = json.loads((reference / "eval" / "metrics.json").read_text())["kid"]
    assert page.count(f"{kid:.6g}") == 2 and 'src="a/eval/samples.png"' in page
    assert Image.open(tmp_path / "losses.png").size[0] > 100

    # TensorBoard's HParams dashboard: each run's changed fields and its evaluation metrics
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator
    from tensorboard.plugins.hparams import plugin_data_pb2

    write_hparams(tmp_path, [("a", runs[0][1]), ("b", runs[3][1])], ["norm", "spectral_norm"])
    for name, norm, spectral in (("a", "instance", False), ("b", "none", True)):
        acc = EventAccumulator(str(tmp_path / name)).Reload()
        records = [
            plugin_data_pb2.HParamsPluginData.FromString(c)
            for c in acc.PluginTagToContent("hparams").values()
        ]
        filled = {r.WhichOneof("data"): getattr(r, r.WhichOneof("data")) for r in records}
        (values,) = [f.hparams for f in filled.values() if hasattr(f, "hparams")]
        assert values["norm"].string_value == norm
        assert values["spectral_norm"].bool_value is spectral
        assert "eval/kid" in {m.name.tag for m in filled["experiment"].metric_infos}
        (kid_event,) = acc.Scalars("eval/kid")
        assert kid_event.step == STEPS and kid_event.value == pytest.approx(kid, rel=1e-6)


def test_style_preset_trains_the_style_generator(blobs):
    """``configs/dcgan.py:style`` swaps in the z -> w -> image generator that A5 edits."""
    c = _load_config_module().get_config("style")
    c.update({**TINY, "data": blobs})
    task = DCGANTask(c)
    task.validate(c)
    assert task.arch(c)["generator"] == "style_generator"
    state = task.init_state(c, jax.random.key(0))
    batch = {"image": np.zeros((4, 32, 32, 3), np.float32)}
    state, metrics = task.train_step(state, batch, jax.random.key(1))
    assert all(np.isfinite(float(v)) for v in metrics.values())
    # a DCGAN run's arch stays unchanged, so existing checkpoints keep loading
    assert "generator" not in task.arch(tiny_config(blobs))
    with pytest.raises(ConfigError, match="config.generator"):
        task.validate(tiny_config(blobs, generator="vgg19"))

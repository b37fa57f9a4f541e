"""Nothing lost, nothing silently wrong: one test per class of fault (issue 16).

Every class is checked through the CLI (in process: ``imsyn.__main__.main``,
``imsyn.experiments.main``) and through the library, with the same input failing
the same way: one line, exit status 2, no traceback, no file lost or half-written.

1. outputs never replace inputs (:func:`imsyn.outputs.check_outputs`);
2. a result and its sidecar are committed together (:func:`imsyn.image.write_together`);
3. a workdir is held by one run and ``train.py`` writes only into its own
   (:func:`imsyn.outputs.claim_workdir`);
4. numeric options are finite and in range when parsed (:func:`imsyn.validate.arg`);
5. one decoded-size limit for every image format (:data:`imsyn.image.MAX_PIXELS`);
6. damaged checkpoints are detected and skipped (:mod:`imsyn.training.checkpoint`);
7. SIGTERM in the last step or the final evaluation stops with 130 and a line;
8. one line means one line; an RGBA/LA source blends into an RGB target.
"""

import errno
import json
import os
import re
import signal
import struct
import subprocess
import sys
import time
import types
import zlib
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
import tifffile
from PIL import Image
from scipy import ndimage

from imsyn import image, outputs, validate
from imsyn.__main__ import main as imsyn_main
from imsyn.errors import ConfigError, InputError, OutputError
from imsyn.training import loop
from imsyn.training.checkpoint import Checkpoints

ROOT = Path(__file__).resolve().parents[1]


def cli(capsys, *args) -> tuple[int, list[str], str]:
    """``python -m imsyn ARGS`` in process: (status, stderr lines, stdout)."""
    with pytest.raises(SystemExit) as e:
        sys.exit(imsyn_main([str(a) for a in args]))
    out = capsys.readouterr()
    return e.value.code, out.err.strip().splitlines(), out.out


def _plate(photo) -> np.ndarray:
    base = ndimage.zoom(photo, (0.5, 0.5, 1), order=1)
    return np.concatenate([base[40:168, 40:168, c] for c in (2, 1, 0)], axis=0)


@pytest.fixture
def plate_png(photo, tmp_path) -> Path:
    path = tmp_path / "plate.png"
    Image.fromarray(np.rint(_plate(photo) * 255).astype(np.uint8)).save(path)
    return path


@pytest.fixture
def pair(tmp_path) -> dict:
    """A 24x24 RGB target, a 12x12 source and a binary mask."""
    rng = np.random.default_rng(0)
    Image.fromarray(rng.integers(0, 255, (24, 24, 3), dtype=np.uint8)).save(tmp_path / "t.png")
    Image.fromarray(rng.integers(0, 255, (12, 12, 3), dtype=np.uint8)).save(tmp_path / "s.png")
    m = np.zeros((12, 12), np.uint8)
    m[3:9, 3:9] = 255
    Image.fromarray(m).save(tmp_path / "m.png")
    return {k: tmp_path / f"{k}.png" for k in "tsm"}


def _blend(pair, out, *extra):
    return ("blend", "--source", pair["s"], "--target", pair["t"], "--mask", pair["m"],
            "--offset", "4,4", "--out", out, *extra)  # fmt: skip


# --------------------------------------------------------------------------- 1. outputs vs inputs


def test_output_onto_an_input_is_refused_before_any_work(plate_png, pair, tmp_path, capsys):
    before = plate_png.read_bytes()
    status, err, _ = cli(capsys, "colorize", plate_png, "--out-dir", tmp_path, "--format", "png")
    assert status == 2 and len(err) == 1 and "would overwrite the input" in err[0], err
    assert plate_png.read_bytes() == before and not (tmp_path / "plate.json").exists()

    target = pair["t"].read_bytes()
    status, err, _ = cli(capsys, *_blend(pair, pair["t"]))
    assert status == 2 and len(err) == 1 and "would overwrite the input" in err[0], err
    assert pair["t"].read_bytes() == target

    # the library: the same rule and message, also through links and into folders being read
    with pytest.raises(OutputError, match="would overwrite the input"):
        outputs.check_outputs([tmp_path / "plate.png"], inputs=[plate_png])
    os.link(plate_png, tmp_path / "hard.png")
    (tmp_path / "soft.png").symlink_to(plate_png)
    for alias in ("hard.png", "soft.png"):
        with pytest.raises(OutputError, match="would overwrite the input"):
            outputs.check_outputs([tmp_path / alias], inputs=[plate_png])
    gen = tmp_path / "generator"
    gen.mkdir()
    with pytest.raises(OutputError, match="inside .*generator, which is being read"):
        outputs.check_outputs([gen / "x" / "report.html"], read_dirs=[gen])
    outputs.check_outputs([tmp_path / "other.png"], inputs=[plate_png], read_dirs=[gen])
    with pytest.raises(OutputError, match="which config.data reads"):  # workdir inside its data
        outputs.check_workdir_inputs(gen / "run", {"data": f"folder:{gen}", "lr": 0.1})


# --------------------------------------------------------------------------- 2. all or nothing


def test_result_and_sidecar_are_committed_together(plate_png, tmp_path, capsys):
    out = tmp_path / "out"
    out.mkdir()
    (out / "plate.jpg").write_bytes(b"older result")
    (out / "plate.json").mkdir()  # the sidecar cannot be written
    status, err, _ = cli(capsys, "colorize", plate_png, "--out-dir", out)
    assert status == 2 and len(err) == 1 and "plate.json" in err[0] and "directory" in err[0]
    assert (out / "plate.jpg").read_bytes() == b"older result"
    assert sorted(p.name for p in out.iterdir()) == ["plate.jpg", "plate.json"]

    # the library: a failing writer, or a rename failing half-way, changes nothing
    a, b = tmp_path / "a.txt", tmp_path / "b.txt"
    a.write_text("old a")

    def fail(tmp):
        raise OSError(errno.ENOSPC, "No space left on device")

    with pytest.raises(OutputError, match=r"b.txt: cannot write output \(No space left on device"):
        image.write_together({a: lambda t: t.write_text("new a"), b: fail})
    assert a.read_text() == "old a" and not b.exists()
    real_replace = os.replace

    def replace_fails_on_b(src, dst):
        if Path(dst) == b:
            raise OSError(errno.EIO, "Input/output error")
        return real_replace(src, dst)

    os.replace = replace_fails_on_b
    try:
        with pytest.raises(OutputError, match="b.txt"):
            image.write_together(
                {a: lambda t: t.write_text("new a"), b: lambda t: t.write_text("new b")}
            )
    finally:
        os.replace = real_replace
    assert a.read_text() == "old a" and not b.exists()
    assert sorted(p.name for p in tmp_path.iterdir() if p.suffix == ".txt") == ["a.txt"]
    assert not [p for p in tmp_path.iterdir() if ".tmp" in p.name]
    image.write_together({a: lambda t: t.write_text("new a"), b: lambda t: t.write_text("new b")})
    assert (a.read_text(), b.read_text()) == ("new a", "new b")


def test_disk_full_is_one_line_naming_the_path(pair, tmp_path, capsys, monkeypatch):
    def no_space(self, fp, *args, **kwargs):
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(Image.Image, "save", no_space)
    out = tmp_path / "o.png"
    status, err, _ = cli(capsys, *_blend(pair, out))
    assert status == 2 and len(err) == 1, err
    assert str(out) in err[0] and "No space left on device" in err[0]
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".o.png")] and not out.exists()
    with pytest.raises(OutputError, match=r"o.png: cannot write output \(No space left"):
        image.write_image(out, np.zeros((4, 4), np.uint8))


# --------------------------------------------------------------------------- 3. workdirs

_HOLD = """
import sys, time
from imsyn.outputs import claim_workdir
with claim_workdir(sys.argv[1]):
    print("held", flush=True)
    time.sleep(120)
"""


def _hold(workdir) -> subprocess.Popen:
    proc = subprocess.Popen(
        [sys.executable, "-c", _HOLD, str(workdir)], cwd=ROOT, stdout=subprocess.PIPE, text=True
    )
    assert proc.stdout.readline().strip() == "held"
    return proc


def _config_file(tmp_path, task="fake") -> Path:
    path = tmp_path / "fake_config.py"
    path.write_text(
        "import ml_collections\n\n\ndef get_config():\n"
        f"    return ml_collections.ConfigDict({{'task': {task!r}, 'name': 'fake'}})\n"
    )
    return path


@pytest.fixture
def fake_experiment(monkeypatch):
    """A ``fake`` experiment for experiments.main whose train/evaluate run ``fake.action``."""
    from imsyn import experiments

    mod = types.ModuleType("imsyn_fake_experiment")
    mod.action = lambda workdir: None

    def train(config, workdir):
        (Path(workdir) / "config.json").write_text(json.dumps(config.to_dict()))
        mod.action(workdir)

    mod.train = train
    mod.evaluate = lambda config, workdir: mod.action(workdir)
    monkeypatch.setitem(sys.modules, mod.__name__, mod)
    monkeypatch.setitem(experiments.EXPERIMENTS, "fake", mod.__name__)
    return mod


def run_experiment(tmp_path, workdir, mode="train") -> int:
    from imsyn.experiments import main

    argv = [f"{mode}.py", f"--config={_config_file(tmp_path)}", f"--workdir={workdir}"]
    saved, sys.argv = sys.argv, argv
    try:
        return main(argv, mode)
    finally:
        sys.argv = saved


def test_workdir_is_held_by_one_run_and_a_dead_runs_lock_is_taken_over(
    tmp_path, capsys, fake_experiment
):
    wd = tmp_path / "run"
    proc = _hold(wd)
    try:
        with pytest.raises(OutputError, match="in use by another run"):
            with outputs.claim_workdir(wd):
                pass
        assert run_experiment(tmp_path, wd) == 2
        err = capsys.readouterr().err.strip().splitlines()
        assert len(err) == 1 and "in use by another run" in err[0], err
        assert not (wd / "config.json").exists()
    finally:
        proc.kill()  # SIGKILL: the lock file stays, the OS lock goes
        proc.wait()
    assert (wd / outputs.LOCK_NAME).exists()
    assert run_experiment(tmp_path, wd) == 0
    assert (wd / "config.json").exists()
    with outputs.claim_workdir(wd), outputs.claim_workdir(wd):  # re-entrant in one process
        pass


def test_train_writes_only_into_an_empty_folder_or_its_own_workdir(
    tmp_path, capsys, fake_experiment
):
    folder = tmp_path / "photos"
    folder.mkdir()
    (folder / "notes.txt").write_text("mine")
    assert run_experiment(tmp_path, folder) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "holds other files (notes.txt)" in err[0], err
    assert sorted(p.name for p in folder.iterdir()) == ["notes.txt"]
    with pytest.raises(OutputError, match="holds other files"):
        with outputs.claim_workdir(folder):
            pass

    own = tmp_path / "own"
    assert run_experiment(tmp_path, own) == 0  # new folder
    assert run_experiment(tmp_path, own) == 0  # its own earlier workdir
    marker = json.loads((own / outputs.MARKER_NAME).read_text())
    (own / outputs.MARKER_NAME).write_text(json.dumps({**marker, "task": "dcgan"}))
    assert run_experiment(tmp_path, own) == 2
    assert "holds a 'dcgan' run" in capsys.readouterr().err

    # nothing is left behind when the run wrote nothing: bad input "touches nothing"
    empty = tmp_path / "new" / "run"
    fake_experiment.train = lambda config, workdir: (_ for _ in ()).throw(ConfigError("bad"))
    assert run_experiment(tmp_path, empty) == 2
    assert not (tmp_path / "new").exists()


def test_bad_workdirs_are_one_line(tmp_path, capsys, fake_experiment):
    a_file = tmp_path / "file"
    a_file.write_text("x")
    for mode in ("train", "eval"):
        assert run_experiment(tmp_path, a_file, mode) == 2
        err = capsys.readouterr().err.strip().splitlines()
        assert len(err) == 1 and "is a file" in err[0], err
    with pytest.raises(OutputError, match="is a file, not a directory"):
        loop.restore(_toy_config(), a_file, ToyTask())
    assert run_experiment(tmp_path, "/proc/imsyn_run") == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "/proc/imsyn_run" in err[0], err


def test_train_disk_full_and_sigterm_are_one_line(tmp_path, capsys, fake_experiment):
    def disk_full(workdir):
        raise OSError(errno.ENOSPC, "No space left on device", str(Path(workdir) / "m.jsonl"))

    fake_experiment.action = disk_full
    assert run_experiment(tmp_path, tmp_path / "a") == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "m.jsonl: No space left on device" in err[0], err

    def sigterm(workdir):
        os.kill(os.getpid(), signal.SIGTERM)
        time.sleep(5)

    fake_experiment.action = sigterm
    assert run_experiment(tmp_path, tmp_path / "b") == 130
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "interrupted; rerun" in err[0], err
    assert signal.getsignal(signal.SIGTERM) is signal.SIG_DFL


# --------------------------------------------------------------------------- 4. numbers


@pytest.mark.parametrize(
    "args, message",
    [
        (("toy", "{t}", "--tol", "1e30"), "--tol: must be a finite number in (0, 1), got '1e30'"),
        (("toy", "{t}", "--tol", "inf"), "--tol: must be a finite number in (0, 1)"),
        (("toy", "{t}", "--maxiter", "99999999999999999999"), "--maxiter: must be an integer"),
        (("toy", "{t}", "--anchor", "1e23,0"), "--anchor: must be Y,X"),
        (("color2gray", "{t}", "--angle", "nan"), "--angle: must be a finite number"),
        (("color2gray", "{t}", "--angle", "inf"), "--angle: must be a finite number"),
        (("color2gray", "{t}", "--data-weight", "inf"), "--data-weight: must be a finite"),
        (("illumination", "{t}", "--mask", "{m}", "--beta", "-1"), "--beta: must be"),
        (("recolor", "{t}", "--mask", "{m}", "--factors", "1,nan,1"), "--factors: must be R,G,B"),
        (
            (
                "blend",
                "--source",
                "{s}",
                "--target",
                "{t}",
                "--mask",
                "{m}",
                "--offset",
                "99999999999999999999,1",
            ),
            "--offset: must be DY,DX",
        ),  # fmt: skip
        (("colorize", "{t}", "--radius", "99999999999999999999"), "--radius: must be an integer"),
        (("colorize", "{t}", "--quality", "0"), "--quality: must be an integer in [1, 95]"),
    ],
)
def test_numeric_options_are_checked_when_parsed(pair, tmp_path, capsys, args, message):
    args = [a.format(t=pair["t"], s=pair["s"], m=pair["m"]) for a in args]
    where = (
        ["--out-dir", tmp_path / "out"] if args[0] == "colorize" else ["--out", tmp_path / "o.png"]
    )
    status, err, _ = cli(capsys, *args, *where)
    assert status == 2 and len(err) == 1 and message in err[0], err
    assert not (tmp_path / "o.png").exists() and not (tmp_path / "out").exists()


def test_the_cli_rule_is_the_library_rule():
    from imsyn.cli.gradient import TOL

    with pytest.raises(InputError, match=r"^tol must be a finite number in \(0, 1\), got inf$"):
        validate.param("tol", float("inf"), TOL)
    assert validate.param("tol", 1e-5, TOL) == 1e-5
    with pytest.raises(ConfigError, match=r"config.tol must be a finite number in \(0, 1\)"):
        validate.value("tol", 1e30, TOL)
    parse = validate.arg(validate.integer(1, validate.INT32_MAX))
    assert parse("7") == 7
    for bad in ("2147483648", "1e3", "7.0", "", "0x10"):
        with pytest.raises(Exception, match="must be an integer in \\[1, 2147483647\\]"):
            parse(bad)


# --------------------------------------------------------------------------- 5. decoded size


def _declared(path: Path, width: int, height: int) -> Path:
    """``path`` rewritten to declare ``width`` x ``height`` in its header (data unchanged)."""
    if path.suffix == ".tif":
        with tifffile.TiffFile(path, mode="r+") as tif:
            tif.pages[0].tags["ImageWidth"].overwrite(width)
            tif.pages[0].tags["ImageLength"].overwrite(height)
        return path
    data = bytearray(path.read_bytes())  # PNG: IHDR is the first chunk
    data[16:24] = struct.pack(">II", width, height)
    data[29:33] = struct.pack(">I", zlib.crc32(bytes(data[12:29])))
    path.write_bytes(bytes(data))
    return path


@pytest.mark.parametrize("suffix", [".tif", ".png"])
def test_one_decoded_size_limit_for_every_format(tmp_path, capsys, suffix):
    path = tmp_path / f"bomb{suffix}"
    if suffix == ".tif":
        tifffile.imwrite(path, np.zeros((64, 64), np.uint8), compression="zlib")
    else:
        Image.fromarray(np.zeros((64, 64), np.uint8)).save(path)
    _declared(path, 20000, 20000)
    want = "declares 20000x20000 pixels (400.0 Mpx), more than the 89.5 Mpx"
    if suffix == ".png":
        want = "declares 400.0 Mpx, more than the 89.5 Mpx"  # beyond Pillow's own limit
    with pytest.raises(
        InputError, match=f"bomb{suffix}: {want}".replace("(", r"\(").replace(")", r"\)")
    ):
        image.read_image(path)
    status, err, _ = cli(capsys, "colorize", path, "--out-dir", tmp_path / "out")
    assert status == 2 and len(err) == 1 and want in err[0], err
    _declared(path, 10000, 9000)  # within Pillow's limit, beyond imsyn's
    with pytest.raises(InputError, match="10000x9000 pixels"):
        image.read_image(path)


# --------------------------------------------------------------------------- 6. checkpoints


def _state(scale: float = 1.0) -> dict:
    w = jnp.arange(512, dtype=jnp.float32) * scale
    return {"g": {"w": w, "b": jnp.ones((3,))}, "opt": optax.adam(1e-3).init(w)}


def _biggest(step_dir: Path) -> Path:
    files = [p for p in (step_dir / "state").rglob("*") if p.is_file() and p.parent.name == "d"]
    return max(files, key=lambda p: p.stat().st_size)


def _flip(p: Path) -> None:
    data = bytearray(p.read_bytes())
    for i in range(len(data) // 2, len(data) // 2 + 16):
        data[i] ^= 0xFF
    p.write_bytes(bytes(data))


DAMAGE = {
    # flipped bytes inside a stored array fail the checksum; where orbax's (nondeterministic)
    # file layout puts compressed or structural bytes in the middle, the read itself fails
    "flipped data": (lambda d: _flip(_biggest(d)), "(do not match the checksum|cannot be read)"),
    "emptied data": (lambda d: _biggest(d).write_bytes(b""), "is empty"),
    "truncated data": (
        lambda d: _biggest(d).write_bytes(_biggest(d).read_bytes()[:40]),
        "cannot be read",
    ),
    "truncated metadata": (
        lambda d: (d / "state/_METADATA").write_text((d / "state/_METADATA").read_text()[:50]),
        "_METADATA is truncated",
    ),
    "deleted metadata": (lambda d: (d / "state/_METADATA").unlink(), "_METADATA is missing"),
    "truncated meta": (lambda d: (d / "meta/metadata").write_text('{"step'), "meta item"),
}


# orbax leaves the tensorstore handles of a failed attempt to the garbage collector
quiet_gc = pytest.mark.filterwarnings("ignore::pytest.PytestUnraisableExceptionWarning")


@quiet_gc
@pytest.mark.parametrize("kind", DAMAGE)
def test_damaged_checkpoint_falls_back_to_the_newest_intact_step(tmp_path, capfd, kind):
    damage, what = DAMAGE[kind]
    ckpts = Checkpoints(tmp_path / "checkpoints")
    for step in (4, 8):
        ckpts.save(step, _state(step), {"step": step})
    ckpts.close()
    damage(tmp_path / "checkpoints" / "8")
    capfd.readouterr()

    ro = Checkpoints(tmp_path / "checkpoints", read_only=True)
    state, meta = ro.restore(_state())
    assert meta["step"] == 4 and float(state["g"]["w"][1]) == 4.0
    err = capfd.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "checkpoint 8" in err[0] and re.search(what, err[0]), err
    assert "restored step 4 instead" in err[0]
    with pytest.raises(InputError, match=f"checkpoint 8 in .* is damaged: .*{what}"):
        ro.restore(_state(), step=8)  # asked for by number: no fallback
    ro.close()

    rw = Checkpoints(tmp_path / "checkpoints")  # a run resuming: sets it aside, saves step 8 anew
    rw.restore(_state())
    assert "moved to" in capfd.readouterr().err
    rw.save(8, _state(8.0), {"step": 8})
    assert rw.all_steps() == [4, 8] and (tmp_path / "checkpoints.damaged" / "8").is_dir()
    rw.close()
    assert "ERROR" not in capfd.readouterr().err  # orbax's own logs stay quiet


@quiet_gc
def test_every_checkpoint_damaged_or_another_layout_is_one_line(tmp_path, capfd):
    ckpts = Checkpoints(tmp_path / "checkpoints")
    ckpts.save(4, _state(), {"step": 4})
    ckpts.close()
    ro = Checkpoints(tmp_path / "checkpoints", read_only=True)
    with pytest.raises(ConfigError, match=r"checkpoint 4 .* does not match this config"):
        ro.restore({"other": jnp.zeros((2,))})
    (tmp_path / "checkpoints/4/state/_METADATA").unlink()
    with pytest.raises(InputError) as e:
        ro.restore(_state())
    assert "every checkpoint in" in str(e.value) and "_METADATA is missing" in str(e.value)
    assert "\n" not in str(e.value) and "ERROR" not in capfd.readouterr().err


def test_checkpoint_disk_full_is_one_line(tmp_path, monkeypatch):
    ckpts = Checkpoints(tmp_path / "checkpoints")

    def no_space(*args, **kwargs):
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(ckpts._mgr, "save", no_space)
    with pytest.raises(OutputError, match=r"checkpoints/4: cannot write checkpoint \(.*No space"):
        ckpts.save(4, _state(), {"step": 4})
    ckpts.close()


# --------------------------------------------------------------------------- 7. signals


class ToyTask:
    """A 3-weight regression; ``signal_in`` names the hook that sends this process SIGTERM."""

    signal_in: str | None = None

    def validate(self, config):
        loop.check_config(config, {})

    def init_state(self, config, key):
        self.opt = optax.sgd(config.lr)
        w = jax.random.normal(key, (3,))
        return {"w": w, "opt": self.opt.init(w)}

    def make_data(self, config, *, seed):
        from imsyn.data import ArraySource, make_loader

        images = np.random.default_rng(0).integers(0, 256, (8, 8, 8, 3), dtype=np.uint8)
        source = ArraySource(images, [str(i) for i in range(8)], "toy")
        return make_loader(source, batch_size=config.batch_size, seed=seed, image_size=8)

    def train_step(self, state, batch, key):
        x = batch["image"].mean(axis=(1, 2))
        loss, grad = jax.value_and_grad(lambda w: jnp.mean((x @ w - 1.0) ** 2))(state["w"])
        updates, opt = self.opt.update(grad, state["opt"])
        return {"w": optax.apply_updates(state["w"], updates), "opt": opt}, {"loss": loss}

    def _maybe_signal(self, hook):
        if self.signal_in == hook:
            self.signal_in = None
            os.kill(os.getpid(), signal.SIGTERM)
            time.sleep(0.5)  # the handler runs here (or interrupts the sleep)

    def samples(self, state):
        self._maybe_signal("samples")  # runs at the last step only (sample_every = num_steps)
        return {"w": np.full((4, 4, 3), 0.5, np.float32)}

    def evaluate(self, state, config, workdir):
        self._maybe_signal("evaluate")
        return {"w_norm": float(jnp.linalg.norm(state["w"]))}

    def arch(self, config):
        return {"model": "toy"}


def _toy_config():
    import ml_collections

    common = {n: d.default for n, d in loop.COMMON_FIELDS.items() if d.default is not None}
    return ml_collections.ConfigDict(
        {**common, "task": "toy", "name": "toy", "num_steps": 4, "batch_size": 4,
         "log_every": 1, "checkpoint_every": 2, "keep_checkpoints": 2, "sample_every": 4,
         "data": "toy", "image_size": 8, "augment": "none", "lr": 0.1, "loss": "mse"}
    )  # fmt: skip


@pytest.mark.parametrize("hook", ["samples", "evaluate"])
def test_sigterm_in_the_last_step_or_the_evaluation_stops_and_a_rerun_completes(
    tmp_path, capsys, hook
):
    task = ToyTask()
    task.signal_in = hook
    with pytest.raises(KeyboardInterrupt):
        loop.fit(_toy_config(), tmp_path, task)
    out = capsys.readouterr().out
    if hook == "samples":
        assert "SIGTERM: checkpoint at step 4" in out
    else:
        assert "SIGTERM during the final evaluation" in out and "rerun" in out
    assert not (tmp_path / "eval" / "metrics.json").exists()
    assert Checkpoints(tmp_path / "checkpoints", read_only=True).latest_step() == 4
    loop.fit(_toy_config(), tmp_path, task)  # the rerun evaluates
    assert json.loads((tmp_path / "eval" / "metrics.json").read_text())["step"] == 4


# --------------------------------------------------------------------------- 8. one line; alpha


def test_one_line_per_failure_and_notes_stay_on_the_result_line(pair, tmp_path, capsys):
    bad = tmp_path / "bad.png"
    bad.write_text("not an image")
    status, err, _ = cli(capsys, "colorize", bad, "--out-dir", tmp_path / "out")
    assert status == 2 and len(err) == 1 and "bad.png" in err[0], err

    m = np.asarray(Image.open(pair["m"])).copy()
    m[4, 4] = 100  # not binary
    Image.fromarray(m).save(tmp_path / "grey.png")
    status, err, out = cli(
        capsys, *_blend({**pair, "m": tmp_path / "grey.png"}, tmp_path / "o.png")
    )
    assert status == 0 and err == [] and "not binary" in out and len(out.splitlines()) == 1
    big = tmp_path / "big.png"
    Image.fromarray(np.zeros((30, 30), np.uint8)).save(big)
    status, err, _ = cli(capsys, "flatten", pair["t"], "--mask", tmp_path / "grey.png",
                         "--out", tmp_path / "f.png")  # fmt: skip
    assert status == 2 and len(err) == 1 and "mask" in err[0], err


@pytest.mark.parametrize("mode", ["RGBA", "LA"])
def test_alpha_source_blends_into_rgb_target(pair, tmp_path, capsys, mode):
    src = Image.open(pair["s"]).convert(mode)
    src.putalpha(200)
    src.save(tmp_path / "alpha.png")
    out = tmp_path / "o.png"
    status, err, _ = cli(capsys, *_blend({**pair, "s": tmp_path / "alpha.png"}, out))
    assert status == 0, err
    assert image.read_image(out).shape == (24, 24, 3)


# --------------------------------------------------------------------------- convert-weights


def test_convert_weights_bad_files_are_one_line(tmp_path, capsys):
    from imsyn.__main__ import main as imsyn_main

    folder = tmp_path / "weights.h5"
    folder.mkdir()
    empty = tmp_path / "empty.h5"
    empty.write_bytes(b"")
    text = tmp_path / "notes.pth"
    text.write_text("not a state dict")
    same = tmp_path / "w.npz"
    same.write_bytes(b"x")
    cases = [
        ([str(folder), "--out", str(tmp_path / "o.npz")], "is a directory"),
        ([str(empty), "--out", str(tmp_path / "o.npz")], "not a readable HDF5 file"),
        ([str(text), "--out", str(tmp_path / "o.npz")], "not a readable torchvision state dict"),
        ([str(same), "--out", str(same)], "would overwrite the input"),
    ]
    for argv, needle in cases:
        assert imsyn_main(["convert-weights", *argv]) == 2
        err = capsys.readouterr().err.strip()
        assert len(err.splitlines()) == 1 and needle in err, err
    assert not (tmp_path / "o.npz").exists() and same.read_bytes() == b"x"


def test_convert_weights_refuses_non_finite_values(tmp_path, capsys):
    """NaN weights fail the same way through the library and the CLI, and nothing is written."""
    from imsyn.__main__ import main as imsyn_main
    from imsyn.models import vgg

    w = vgg.random_weights()
    kernels = list(w.kernels)
    kernels[3] = kernels[3].copy()
    kernels[3][0, 0, 0, 0] = np.nan
    bad = tmp_path / "bad.npz"
    vgg.save_weights(w._replace(kernels=tuple(kernels)), bad)
    with pytest.raises(InputError, match="NaN or infinite"):
        vgg.read_weights(bad)
    assert imsyn_main(["convert-weights", str(bad), "--out", str(tmp_path / "o.npz")]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "NaN or infinite" in err
    assert not (tmp_path / "o.npz").exists()


def test_failed_colorize_creates_no_output_folder(tmp_path, capsys):
    """When every plate fails, --out-dir is not left behind as an empty folder."""
    from imsyn.__main__ import main as imsyn_main

    bad = tmp_path / "plate.png"
    bad.write_bytes(b"\x89PNG\r\n\x1a\n truncated")
    out = tmp_path / "results" / "sub"
    assert imsyn_main(["colorize", str(bad), "--out-dir", str(out)]) == 2
    assert len(capsys.readouterr().err.strip().splitlines()) == 1
    assert not (tmp_path / "results").exists()

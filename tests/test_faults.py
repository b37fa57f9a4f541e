"""Nothing lost, nothing silently wrong, part 2 (issue 25): one test per class of fault.

Each class goes through the CLI (in process) and the library, failing the same way: one
line, exit status 2, no traceback, nothing lost.

1. a folder is imsyn's by the marker imsyn writes, never by familiar file names
   (:func:`imsyn.outputs.claim_workdir`); an earlier version's run is adopted;
2. a failed refetch leaves the verified cache entry in place (:mod:`imsyn.fetching`);
3. EXIF orientation is applied in the one image reader (:func:`imsyn.image.read_image`);
4. ``fid`` counts every image under its folders or fails naming the one it cannot read;
5. ``eval.py`` records the run's dtype, not the command's;
6. one line, exit 2, never a traceback, never a hang (caches, checkpoint threads,
   multi-host flags, ``.pth`` files, SIGTERM, ``--kid-subsets``); a SIGTERM to one process
   of a multi-host run stops every process at one checkpointed step.
"""

from __future__ import annotations

import json
import re
import sys
import types
from pathlib import Path

import pytest

from imsyn import outputs
from imsyn.errors import OutputError

ROOT = Path(__file__).resolve().parents[1]


# --------------------------------------------------------------------------- 1. ownership


def _config_file(tmp_path, task="fake") -> Path:
    path = tmp_path / "fake_config.py"
    path.write_text(
        "import ml_collections\n\n\ndef get_config():\n"
        f"    return ml_collections.ConfigDict({{'task': {task!r}, 'name': 'fake'}})\n"
    )
    return path


@pytest.fixture
def fake_experiment(monkeypatch):
    """A ``fake`` experiment whose train writes config.json and report.html."""
    from imsyn import experiments

    mod = types.ModuleType("imsyn_fake_experiment_25")

    def train(config, workdir):
        (Path(workdir) / "config.json").write_text(json.dumps(config.to_dict()))
        (Path(workdir) / "report.html").write_text("<p>run</p>")

    mod.train = train
    mod.evaluate = train
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


def _contents(folder: Path) -> dict:
    return {
        p.relative_to(folder).as_posix(): p.read_bytes() for p in folder.rglob("*") if p.is_file()
    }


@pytest.mark.parametrize(
    "files",
    [
        {"config.json": '{"task": "fake", "lr": 3}', "notes.txt": "mine"},
        {"report.html": "<p>my report</p>", "metrics.jsonl": "{}\n"},
        {"config.json": "{}", "checkpoints/notes.txt": "not a checkpoint"},
    ],
)
def test_familiar_file_names_do_not_make_a_folder_imsyns(tmp_path, capsys, fake_experiment, files):
    folder = tmp_path / "mine"
    for name, text in files.items():
        (folder / name).parent.mkdir(parents=True, exist_ok=True)
        (folder / name).write_text(text)
    before = _contents(folder)
    assert run_experiment(tmp_path, folder) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "holds other files" in err[0] and outputs.MARKER_NAME in err[0], err
    assert _contents(folder) == before
    assert not outputs.is_workdir(folder)
    with pytest.raises(OutputError, match="holds other files"):
        with outputs.claim_workdir(folder, task="fake"):
            pass
    assert _contents(folder) == before


def test_a_run_marks_its_workdir_and_a_failed_start_leaves_no_marker(tmp_path, fake_experiment):
    own = tmp_path / "own"
    assert run_experiment(tmp_path, own) == 0
    marker = outputs.read_marker(own)
    assert marker["task"] == "fake" and len(marker["run_id"]) == 32
    assert run_experiment(tmp_path, own) == 0  # its own earlier workdir
    assert outputs.read_marker(own) == marker  # the same run: the id is kept

    empty = tmp_path / "empty"
    empty.mkdir()
    with outputs.claim_workdir(empty, task="fake"):
        assert outputs.read_marker(empty)["task"] == "fake"
    assert list(empty.iterdir()) == []  # nothing written: no marker, no lock


def test_an_earlier_versions_run_is_adopted_by_its_checkpoint_record(tmp_path, fake_experiment):
    import jax.numpy as jnp

    from imsyn.training.checkpoint import Checkpoints

    old = tmp_path / "old_run"
    ck = Checkpoints(old / "checkpoints")
    ck.save(3, {"w": jnp.ones(2)}, {"step": 3, "arch": {"task": "fake"}})
    ck.close()
    (old / "config.json").write_text(json.dumps({"task": "fake", "name": "fake"}))
    (old / "metrics.jsonl").write_text("{}\n")
    assert outputs.read_marker(old) is None and outputs.is_workdir(old)
    assert run_experiment(tmp_path, old) == 0
    marker = outputs.read_marker(old)
    assert marker["task"] == "fake" and marker["adopted"] is True
    assert (old / "checkpoints" / "3").is_dir()


# --------------------------------------------------------------------------- 2. caches


PAYLOAD = b"pretend weights " * 64


def _toy_convert(src, dst):
    import numpy as np

    with open(dst, "wb") as f:
        np.savez(f, w=np.frombuffer(Path(src).read_bytes(), np.uint8))
    return dst


@pytest.fixture
def toy_weights(tmp_path, monkeypatch):
    """An empty cache and a registry of one network whose source is a local file."""
    import hashlib

    from imsyn import weights

    monkeypatch.setenv("IMSYN_CACHE_DIR", str(tmp_path / "cache"))
    good = tmp_path / "good.bin"
    good.write_bytes(PAYLOAD)
    net = weights.Network(
        name="toy",
        description="test network",
        filename="good.bin",
        sha256=hashlib.sha256(PAYLOAD).hexdigest(),
        sources=(weights.Source("url", good.as_uri()),),
        licence="test",
        converter=_toy_convert,
        used_by="tests",
    )
    monkeypatch.setattr(weights, "NETWORKS", {"toy": net})
    return tmp_path / "cache" / "weights"


def _entry(root: Path) -> dict:
    return {p.relative_to(root).as_posix(): p.read_bytes() for p in root.rglob("*") if p.is_file()}


@pytest.mark.parametrize("fail_at", ["convert", "original", "record"])
def test_a_failed_refetch_leaves_the_verified_entry(toy_weights, monkeypatch, capsys, fail_at):
    import errno
    import os

    from imsyn import weights
    from imsyn.__main__ import main

    assert main(["weights", "fetch", "toy"]) == 0
    before = _entry(toy_weights)
    real_replace = os.replace

    def no_space(*a, **k):
        raise OSError(errno.ENOSPC, "No space left on device")

    if fail_at == "convert":
        net = weights.NETWORKS["toy"]
        monkeypatch.setitem(
            weights.NETWORKS, "toy", net.__class__(**{**net.__dict__, "converter": no_space})
        )
    else:
        target = "good.bin" if fail_at == "original" else "toy.json"

        failed = []

        def replace(src, dst):  # the first rename onto the target fails (once)
            if Path(dst).name == target and not failed:
                failed.append(dst)
                no_space()
            return real_replace(src, dst)

        monkeypatch.setattr(weights.os, "replace", replace)
    capsys.readouterr()
    assert main(["weights", "fetch", "toy", "--force"]) == 2
    err = [ln for ln in capsys.readouterr().err.splitlines() if "error" in ln]
    assert len(err) == 1 and "No space left" in err[0], err
    assert _entry(toy_weights) == before  # the old entry, whole; no staging folder left
    assert weights.cached("toy") is not None and weights.status("toy")["status"] == "cached"


def test_a_killed_fetchs_staging_folder_is_removed_by_the_next(toy_weights):
    from imsyn import fetching
    from imsyn.__main__ import main

    toy_weights.mkdir(parents=True)
    dead = toy_weights / ".fetch-dead"
    dead.mkdir()
    (dead / ".lock").write_text("")
    (dead / "good.bin").write_bytes(b"x" * 1000)
    live = fetching.staging_dir(toy_weights, "weights cache")  # a concurrent fetch's
    try:
        assert main(["weights", "fetch", "toy"]) == 0
        assert not dead.exists() and live.is_dir()
    finally:
        fetching.remove_staging(live)
    assert sorted(p.name for p in toy_weights.iterdir()) == ["originals", "toy.json", "toy.npz"]


_SLOW_FETCH = r"""
import hashlib, http.server, sys, threading, time
from imsyn import weights
from imsyn.__main__ import main

class Slow(http.server.BaseHTTPRequestHandler):
    def do_GET(self):
        self.send_response(200)
        self.send_header("content-length", str(64 << 20))
        self.end_headers()
        self.wfile.write(b"x" * (2 << 20))
        self.wfile.flush()
        time.sleep(60)
    def log_message(self, *a):
        pass

srv = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Slow)
threading.Thread(target=srv.serve_forever, daemon=True).start()
url = f"http://127.0.0.1:{srv.server_address[1]}/w.bin"
weights.NETWORKS = {"toy": weights.Network(
    name="toy", description="t", filename="w.bin", sha256="0" * 64,
    sources=(weights.Source("url", url),), licence="t", converter=None, used_by="t")}
sys.exit(main(["weights", "fetch", "toy"]))
"""


def test_sigterm_stops_a_fetch_with_one_line_and_removes_its_staging(tmp_path):
    import os
    import signal
    import subprocess
    import time

    env = {**os.environ, "IMSYN_CACHE_DIR": str(tmp_path / "cache")}
    proc = subprocess.Popen(
        [sys.executable, "-c", _SLOW_FETCH], cwd=ROOT, env=env, stderr=subprocess.PIPE, text=True
    )
    root = tmp_path / "cache" / "weights"
    deadline = time.time() + 60
    while time.time() < deadline:
        part = list(root.glob(".fetch-*/w.bin"))
        if part and part[0].stat().st_size > 0:
            break
        time.sleep(0.1)
    else:
        proc.kill()
        pytest.fail("the fetch never started")
    proc.send_signal(signal.SIGTERM)
    _, err = proc.communicate(timeout=60)
    lines = [
        ln for ln in err.splitlines() if not ln.startswith(("imsyn weights: toy:", "download"))
    ]
    assert proc.returncode == 130, err
    assert lines == ["imsyn weights: interrupted"], err
    assert list(root.glob(".fetch-*")) == []


# --------------------------------------------------------------------------- 3. orientation


def _stored_sideways(path: Path, upright, orientation: int, **save) -> None:
    """Saves ``upright`` as a camera would: pixels turned, the EXIF tag saying how to undo it."""
    import numpy as np
    from PIL import Image

    undo = {6: lambda a: np.rot90(a, 1), 8: lambda a: np.rot90(a, -1), 3: lambda a: a[::-1, ::-1]}
    stored = Image.fromarray(np.ascontiguousarray(undo[orientation](upright)))
    exif = stored.getexif()
    exif[0x0112] = orientation
    stored.save(path, exif=exif, **save)


@pytest.mark.parametrize("orientation", [3, 6, 8])
@pytest.mark.parametrize("suffix", [".png", ".jpg", ".tif"])
def test_exif_orientation_is_applied_by_the_one_reader(tmp_path, orientation, suffix):
    import numpy as np
    import tifffile

    from imsyn import image

    rng = np.random.default_rng(orientation)
    upright = np.zeros((24, 40, 3), np.uint8)
    upright[:12] = rng.integers(0, 255, (1, 1, 3))  # the top half differs from the bottom
    path = tmp_path / f"photo{suffix}"
    if suffix == ".tif":  # 16-bit, the TIFF Orientation tag
        up16 = upright.astype(np.uint16) * 257
        undo = {
            6: lambda a: np.rot90(a, 1),
            8: lambda a: np.rot90(a, -1),
            3: lambda a: a[::-1, ::-1],
        }
        tifffile.imwrite(
            path,
            np.ascontiguousarray(undo[orientation](up16)),
            photometric="rgb",
            extratags=[(274, "H", 1, orientation, True)],
        )
        expected = up16
    else:
        _stored_sideways(path, upright, orientation, quality=100)
        expected = upright
    got = image.read_image(path)
    assert got.shape == expected.shape
    err = np.abs(got.astype(np.int64) - expected)
    assert err.mean() < 3 if suffix == ".jpg" else err.max() == 0  # JPEG: ringing at the edge


def test_color2gray_writes_a_sideways_photo_upright(tmp_path, capsys):
    import numpy as np

    from imsyn import image
    from imsyn.__main__ import main

    upright = np.zeros((24, 40, 3), np.uint8)
    upright[:12, :, 0] = 255  # red over blue, wider than tall
    upright[12:, :, 2] = 255
    src = tmp_path / "phone.png"
    _stored_sideways(src, upright, 6)
    out = tmp_path / "gray.png"
    assert main(["color2gray", str(src), "--out", str(out)]) == 0
    gray = image.read_image(out)
    assert gray.shape[:2] == (24, 40)  # as the viewer shows it, not as stored (40 x 24)
    top, bottom = gray[:12].mean(), gray[12:].mean()
    assert abs(top - bottom) > 5  # the two colours stay in their upright halves


# --------------------------------------------------------------------------- 4. fid counts all


def _two_folders(tmp_path) -> tuple[Path, Path]:
    import numpy as np
    from PIL import Image

    rng = np.random.default_rng(0)
    a, b = tmp_path / "a", tmp_path / "b"
    for folder in (a, b, a / "sub"):
        folder.mkdir(parents=True, exist_ok=True)
        for i in range(3):
            img = rng.integers(0, 255, (16, 16, 3), dtype=np.uint8)
            Image.fromarray(img).save(folder / f"{i}.png")
    return a, b


def test_an_unreadable_subfolder_fails_fid_naming_it(tmp_path, capsys, monkeypatch):
    import os

    from imsyn import image
    from imsyn.__main__ import main
    from imsyn.errors import InputError

    a, b = _two_folders(tmp_path)
    assert len(image.list_images(a)) == 6  # the subfolder's images count
    real_scandir = os.scandir

    def scandir(path="."):  # what a folder without read permission does (tests run as root)
        if Path(path) == a / "sub":
            raise PermissionError(13, "Permission denied", str(path))
        return real_scandir(path)

    monkeypatch.setattr(os, "scandir", scandir)
    with pytest.raises(InputError, match="sub: cannot read this folder"):
        image.list_images(a)
    capsys.readouterr()
    assert main(["fid", str(a), str(b), "--features", "random_conv_v1", "--quiet"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and f"{a / 'sub'}: cannot read this folder" in err[0], err


def test_kid_subsets_are_bounded(tmp_path, capsys):
    import numpy as np

    from imsyn import metrics
    from imsyn.__main__ import main
    from imsyn.errors import InputError

    a, b = _two_folders(tmp_path)
    assert main(["fid", str(a), str(b), "--kid-subsets", "100000000"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "--kid-subsets" in err[0] and "1000" in err[0], err
    f = np.random.default_rng(0).normal(size=(8, 4))
    with pytest.raises(InputError, match="KID subsets must be in"):
        metrics.kid(f, f[::-1], num_subsets=10**8)
    assert np.isfinite(metrics.kid(f, f[:6], num_subsets=metrics.KID_MAX_SUBSETS, subset_size=4))


# --------------------------------------------------------------------------- 5. run metadata


def test_eval_records_the_runs_dtype_not_the_commands(tmp_path):
    """eval.py -> dcgan.evaluate -> loop.evaluate_run, the library path of every GAN."""
    import numpy as np
    from PIL import Image

    from imsyn.experiments import main

    folder = tmp_path / "imgs"
    folder.mkdir()
    rng = np.random.default_rng(0)
    for i in range(4):
        Image.fromarray(rng.integers(0, 255, (32, 32, 3), dtype=np.uint8)).save(folder / f"{i}.png")
    wd = tmp_path / "run"
    flags = [
        f"--config.data=folder:{folder}", "--config.conv_dim=2", "--config.batch_size=2",
        "--config.num_steps=1", "--config.eval_samples=3", "--config.num_sample_images=2",
        "--config.features=random_conv_v1", "--config.log_every=1", "--config.checkpoint_every=1",
        "--config.sample_every=1",
    ]  # fmt: skip

    def run(mode, dtype):
        argv = [f"{mode}.py", "--config=configs/dcgan.py:quick", f"--workdir={wd}", *flags,
                f"--config.dtype={dtype}"]  # fmt: skip
        saved, sys.argv = sys.argv, argv
        try:
            return main(argv, mode)
        finally:
            sys.argv = saved

    assert run("train", "bfloat16") == 0
    metrics = wd / "eval" / "metrics.json"
    assert json.loads(metrics.read_text())["dtype"] == "bfloat16"
    metrics.unlink()
    assert run("eval", "float32") == 0  # the command's dtype differs: the run's is recorded
    assert json.loads(metrics.read_text())["dtype"] == "bfloat16"
    assert outputs.run_dtype(wd) == "bfloat16"
    assert outputs.run_dtype(tmp_path) == "float32"  # no run: the default


# --------------------------------------------------------------------------- 6. one line


def test_a_truncated_emoji_cache_is_rendered_again(tmp_path):
    import numpy as np

    from imsyn.data import get_source

    def load():
        return get_source("emoji:twemoji", image_size=16, split="all", category="faces",
                          limit=3, cache_dir=tmp_path)  # fmt: skip

    first = np.array(load().images)
    (cache,) = tmp_path.glob("*.npz")
    data = cache.read_bytes()
    cache.write_bytes(data[: len(data) // 2])  # a zip without its directory: BadZipFile
    again = load()
    np.testing.assert_array_equal(again.images, first)
    assert cache.read_bytes() == data  # written again, whole


@pytest.mark.parametrize(
    "flags, message",
    [
        (["--num_processes=4294967297"], "--num_processes must be an integer in [1, 65536]"),
        (["--num_processes=2", "--process_id=4294967297"], "--process_id must be an integer"),
        (
            ["--coordinator=no-such-host.invalid:1234", "--num_processes=2", "--process_id=1"],
            "coordinator no-such-host.invalid:1234: unknown host",
        ),
        (
            ["--coordinator=127.0.0.1:9", "--num_processes=2", "--process_id=1"],
            "coordinator 127.0.0.1:9 did not answer within 1 s",
        ),
    ],
)
def test_multihost_values_and_a_silent_coordinator_are_one_line(
    tmp_path, capsys, monkeypatch, fake_experiment, flags, message
):
    import jax

    from imsyn import runtime
    from imsyn.errors import ConfigError
    from imsyn.experiments import main

    monkeypatch.setattr(runtime, "CONNECT_TIMEOUT_S", 1.0)
    wd = tmp_path / "run"
    argv = ["train.py", f"--config={_config_file(tmp_path)}", f"--workdir={wd}", *flags]
    saved, sys.argv = sys.argv, argv
    try:
        assert main(argv, "train") == 2
    finally:
        sys.argv = saved
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and message in err[0], err
    assert not wd.exists() and not jax.distributed.is_initialized()
    kwargs = {f.split("=")[0].lstrip("-"): f.split("=")[1] for f in flags}
    kwargs = {k: (v if k == "coordinator" else int(v)) for k, v in kwargs.items()}
    with pytest.raises(ConfigError, match=re.escape(message)):
        runtime.init_distributed(**kwargs)


# Run in a fresh process: what orbax's threads print goes to the real stderr, after the
# operation has returned (pytest would turn it into warnings). ``save``: the files of this
# process may not grow past 64 KiB (RLIMIT_FSIZE, SIGXFSZ ignored: writes fail as on a full
# disk), then 64 arrays are saved, four times; ``restore``: the newest of two checkpoints
# has every data file flipped. ``library`` calls Checkpoints; ``cli`` goes through train.py /
# eval.py's main with an experiment that saves or restores the same way.
_CHECKPOINT_FAULT = r"""
import resource, signal, sys, types
from pathlib import Path

import jax.numpy as jnp

from imsyn import experiments
from imsyn.errors import OutputError
from imsyn.training.checkpoint import Checkpoints

kind, where, root = sys.argv[1], sys.argv[2], Path(sys.argv[3])


def state(scale):
    return {f"l{i}": jnp.arange(20_000, dtype=jnp.float32) * (i + scale) for i in range(64)}


def flip_newest():
    ckpts = Checkpoints(root / "checkpoints")
    for step in (4, 8):
        ckpts.save(step, state(step), {"step": step})
    ckpts.close()
    for p in (root / "checkpoints" / "8" / "state").rglob("*"):
        if p.is_file() and p.parent.name == "d":
            data = bytearray(p.read_bytes())
            at = len(data) // 3
            data[at : at + 16] = bytes(b ^ 0xFF for b in data[at : at + 16])
            p.write_bytes(bytes(data))


def work(workdir):
    if kind == "save":
        for k in range(4):
            ckpts = Checkpoints(Path(workdir) / f"checkpoints{k}")
            try:
                ckpts.save(4, state(0), {"step": 4})
            except OutputError as e:
                if where == "cli" and k == 3:
                    raise
                print(f"error: {e}", file=sys.stderr)
            finally:
                ckpts.close()
    else:
        ckpts = Checkpoints(Path(workdir) / "checkpoints", read_only=True)
        _, meta = ckpts.restore(state(0))
        ckpts.close()
        print("restored", meta["step"])


if kind == "restore":
    flip_newest()
else:
    signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
    resource.setrlimit(resource.RLIMIT_FSIZE, (64 << 10, 64 << 10))
if where == "library":
    work(root)
    sys.exit(0)
mod = types.ModuleType("imsyn_checkpoint_fault")
mod.train = mod.evaluate = lambda config, workdir: work(workdir)
sys.modules[mod.__name__] = mod
experiments.EXPERIMENTS["fake"] = mod.__name__
mode = "train" if kind == "save" else "eval"
argv = [f"{mode}.py", f"--config={root.parent / 'fake_config.py'}", f"--workdir={root}"]
sys.argv = argv
sys.exit(experiments.main(argv, mode))
"""


@pytest.mark.parametrize("where", ["library", "cli"])
@pytest.mark.parametrize("kind", ["save", "restore"])
def test_checkpoint_threads_write_nothing_to_stderr(tmp_path, kind, where):
    """Disk full during a save, flipped bytes in the newest checkpoint: only imsyn's lines.

    Orbax runs each operation in an event loop that it closes when the operation fails;
    tensorstore's reads and writes still in flight then complete on its threads and printed
    "Event loop is closed" and "Task exception was never retrieved" tracebacks (hundreds
    here; intermittent with fewer arrays).
    """
    import os
    import subprocess

    _config_file(tmp_path)
    root = tmp_path / "run"
    root.mkdir()
    env = {**os.environ, "JAX_PLATFORMS": "cpu"}
    proc = subprocess.run(
        [sys.executable, "-c", _CHECKPOINT_FAULT, kind, where, str(root)],
        cwd=ROOT, env=env, capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    err = proc.stderr.strip().splitlines()
    if kind == "save":
        assert proc.returncode == (0 if where == "library" else 2), proc.stderr[-3000:]
        assert len(err) == 4, proc.stderr[-3000:]
        assert all("cannot write checkpoint" in ln for ln in err), err
        if where == "cli":
            assert err[-1].startswith("train.py: error: "), err
    else:
        assert proc.returncode == 0, proc.stderr[-3000:]
        assert proc.stdout.split() == ["restored", "4"], proc.stdout
        assert len(err) == 1, proc.stderr[-3000:]
        assert "checkpoint 8" in err[0] and "restored step 4 instead" in err[0], err


def _torch_files(tmp_path) -> dict:
    """A pickled whole model, a TorchScript archive and a training checkpoint, as users have."""
    torch = pytest.importorskip("torch")
    import argparse
    import warnings

    net = torch.nn.Sequential(torch.nn.Conv2d(3, 2, 3))
    files = {k: tmp_path / f"{k}.pth" for k in ("model", "torchscript", "checkpoint", "legacy")}
    torch.save(net, files["model"])
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # torch.jit.save is deprecated
        torch.jit.script(net).save(str(files["torchscript"]))
    torch.save({"model": net.state_dict(), "args": argparse.Namespace(lr=1)}, files["checkpoint"])
    torch.save(net, files["legacy"], _use_new_zipfile_serialization=False)
    return files


_PTH_SAYS = {
    "model": r"a PyTorch checkpoint \(torch\.save\) that pickles torch\.nn\.\S+\.Sequential",
    "torchscript": r"a PyTorch TorchScript archive \(a whole network with its code\)",
    "checkpoint": r"a PyTorch checkpoint \(torch\.save\) that pickles argparse\.Namespace",
    "legacy": r"a PyTorch checkpoint \(torch\.save, the format before PyTorch 1\.6\) that hold",
}


def test_pth_where_weights_are_expected_says_what_it_is_and_what_converts_it(
    tmp_path, capsys, monkeypatch
):
    """fid --weights / config.features_path (Inception), convert-weights / stylize (VGG-19)."""
    from imsyn import metrics
    from imsyn.__main__ import main
    from imsyn.errors import InputError
    from imsyn.models import vgg

    files = _torch_files(tmp_path)
    a, b = _two_folders(tmp_path)
    fetch = "`python -m imsyn weights fetch inception_fid --file "
    convert = "`python -m imsyn convert-weights FILE.pth --out vgg19.npz`"
    for kind, path in files.items():
        says = _PTH_SAYS[kind]
        argv = ["fid", str(a), str(b), "--features", "inception_v3_fid", "--weights", str(path)]
        assert main([*argv, "--quiet"]) == 2
        err = capsys.readouterr().err.strip().splitlines()
        assert len(err) == 1 and re.search(says, err[0]) and fetch in err[0], err
        assert "weights_only" not in err[0]
        with pytest.raises(InputError, match=says) as e:  # config.features_path's path
            metrics.get_extractor("inception_v3_fid", str(path))
        assert fetch in str(e.value) and "\n" not in str(e.value)

        out = tmp_path / "vgg19.npz"
        assert main(["convert-weights", str(path), "--out", str(out)]) == 2
        err = capsys.readouterr().err.strip().splitlines()
        assert len(err) == 1 and re.search(says, err[0]) and convert in err[0], err
        assert "weights_only" not in err[0] and not out.exists()
        with pytest.raises(InputError, match=says):
            vgg.read_weights(path)


# --------------------------------------------------------------------------- multi-host stop


def test_sigterm_to_one_process_stops_every_process_at_one_checkpoint(tmp_path):
    """Two CPU processes train; SIGTERM to process 1 alone stops both at the same step.

    They agree on the stop at a step where both take part in one small collective, save
    that step's checkpoint together, print the same line and exit 130; the checkpoint
    restores. Without the agreement process 1 saved alone while process 0 trained on, and
    both hung in collectives that did not match.
    """
    import os
    import signal
    import subprocess
    import time

    import numpy as np
    import test_multihost as mh
    from PIL import Image

    from imsyn.training.checkpoint import Checkpoints

    folder = tmp_path / "blobs"
    folder.mkdir()
    rng = np.random.default_rng(0)
    for i in range(8):
        Image.fromarray(rng.integers(0, 255, (32, 32, 3), dtype=np.uint8)).save(folder / f"{i}.png")
    workdir, logs = tmp_path / "run", tmp_path / "logs"
    logs.mkdir()
    flags = {**mh.TINY, "num_steps": 100000, "log_every": 5, "checkpoint_every": 100000}
    flags = {**flags, "keep_checkpoints": 2, "data": f"folder:{folder}"}

    def start(tag):
        port = mh._free_port()
        env = {**os.environ, "JAX_PLATFORMS": "cpu"}
        env["XLA_FLAGS"] = " ".join(
            x for x in env.get("XLA_FLAGS", "").split() if "device_count" not in x
        )
        argv = [f"--config={mh.CONFIG}:quick", f"--workdir={workdir}"]
        argv += [f"--config.{k}={v}" for k, v in flags.items()]
        procs = []
        for pid in (0, 1):
            cmd = [sys.executable, str(ROOT / "train.py"), *argv]
            cmd += [f"--coordinator=127.0.0.1:{port}", "--num_processes=2", f"--process_id={pid}"]
            with open(logs / f"{tag}.{pid}", "w") as log:
                procs.append(subprocess.Popen(cmd, cwd=ROOT, env=env, stdout=log, stderr=log))
        return procs

    def text(tag):
        return {pid: (logs / f"{tag}.{pid}").read_text() for pid in (0, 1)}

    procs = start("first")
    try:
        end = time.monotonic() + 240
        metrics = workdir / "metrics.jsonl"
        while not (metrics.is_file() and metrics.read_text().strip()):
            assert time.monotonic() < end and all(p.poll() is None for p in procs), text("first")
            time.sleep(0.05)
        procs[1].send_signal(signal.SIGTERM)
        codes = [p.wait(120) for p in procs]
    finally:
        for p in procs:
            if p.poll() is None:
                p.kill()
    out = text("first")
    assert codes == [130, 130], out
    lines = {
        pid: [ln for ln in out[pid].splitlines() if "checkpoint at step" in ln] for pid in (0, 1)
    }
    assert len(lines[0]) == len(lines[1]) == 1, out
    assert lines[0] == lines[1] and lines[0][0].startswith("SIGTERM to process 1: "), lines
    step = int(re.search(r"checkpoint at step (\d+)", lines[0][0])[1])
    assert step % 5 == 0 or step % 10 == 0, step  # an agreement step
    for pid in (0, 1):
        assert "train.py: interrupted; rerun the same command to resume" in out[pid], out[pid]
        assert "Traceback" not in out[pid], out[pid]
    assert Checkpoints(workdir / "checkpoints", read_only=True).latest_step() == step

    # resumable: the stop's checkpoint restores, with the data position (mid-run resumes
    # of two processes are test_multihost's)
    from imsyn.tasks.dcgan import DCGANTask
    from imsyn.training import loop

    config = mh._config(flags["data"])
    config.update(flags)
    _, restored = loop.restore(config, workdir, DCGANTask(config))
    assert restored == step
    meta = Checkpoints(workdir / "checkpoints", read_only=True).read_meta()
    assert meta["step"] == step and meta["data"] is not None

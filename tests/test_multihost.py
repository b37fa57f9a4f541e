"""Multi-host training: two CPU processes on this machine, one shared workdir.

``train.py --coordinator=... --num_processes=2 --process_id=i`` starts JAX's distributed
runtime (gloo collectives on CPU, one device per process); both processes train a tiny
DCGAN on the global batch of a one-process run. Both are killed (SIGKILL) once the first
checkpoint is on disk and started again: the run resumes from it and ends with the
parameters (and losses) of an uninterrupted one-process run. Every file outside
``checkpoints/`` is written by process 0 (an audit hook records what each process opens for
writing), and the workdir lock that process 0 holds does not stop process 1.
"""

import json
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import jax
import numpy as np
import pytest
from PIL import Image

from imsyn.data import ArraySource, make_loader
from imsyn.tasks.dcgan import DCGANTask
from imsyn.training import loop
from imsyn.training.checkpoint import Checkpoints
from imsyn.training.writers import read_metrics

ROOT = Path(__file__).resolve().parents[1]
CONFIG = ROOT / "configs" / "dcgan.py"
STEPS = 16

# Tiny DCGAN (as in test_training.py): 32 px, conv_dim 2, global batch 4, a checkpoint
# every 4 steps (all kept, so the first one can be recognised after the restart).
TINY = {
    "num_steps": STEPS,
    "batch_size": 4,
    "conv_dim": 2,
    "log_every": 1,
    "checkpoint_every": 4,
    "keep_checkpoints": STEPS // 4,
    "sample_every": 1000,
    "eval_samples": 8,
    "num_sample_images": 4,
    "features": "random_conv_v1",
}

# Loaded by each training process (PYTHONPATH): appends every path under the workdir that
# the process opens for writing, creates, renames or removes to $IMSYN_AUDIT_LOG.
_AUDIT = """
import os, sys

_root = os.path.realpath(os.environ["IMSYN_AUDIT_ROOT"]) + os.sep
_log = open(os.environ["IMSYN_AUDIT_LOG"], "a", buffering=1)
_WRITE = os.O_WRONLY | os.O_RDWR | os.O_CREAT | os.O_TRUNC | os.O_APPEND


def _record(path):
    if isinstance(path, (str, bytes, os.PathLike)):
        p = os.path.realpath(os.fsdecode(path))
        if p.startswith(_root):
            _log.write(p[len(_root):] + "\\n")


def _hook(event, args):
    if event == "open":
        path, mode, flags = args
        if (mode is not None and any(c in mode for c in "wax+")) or (
            mode is None and isinstance(flags, int) and flags & _WRITE
        ):
            _record(path)
    elif event in ("os.rename", "os.mkdir", "os.remove", "os.rmdir", "shutil.rmtree"):
        _record(args[0])
        if event == "os.rename":
            _record(args[1])


sys.addaudithook(_hook)
"""


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


def _config(data: str):
    import importlib.util

    spec = importlib.util.spec_from_file_location("dcgan_config", CONFIG)
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    c = mod.get_config("quick")
    c.update({**TINY, "data": data})
    return c


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _start_pair(data: str, workdir: Path, audit: Path, tag: str) -> list[subprocess.Popen]:
    """Process 0 and 1 of ``train.py`` on ``workdir``, one CPU device each."""
    hook = audit / "hook"
    hook.mkdir(parents=True, exist_ok=True)
    (hook / "sitecustomize.py").write_text(_AUDIT)
    port = _free_port()
    argv = [f"--config={CONFIG}:quick", f"--workdir={workdir}"]
    argv += [f"--config.{k}={v}" for k, v in {**TINY, "data": data}.items()]
    flags = [x for x in os.environ.get("XLA_FLAGS", "").split() if "device_count" not in x]
    procs = []
    for pid in (0, 1):
        env = {
            **os.environ,
            "JAX_PLATFORMS": "cpu",
            "XLA_FLAGS": " ".join(flags),
            "PYTHONPATH": os.pathsep.join([str(hook), os.environ.get("PYTHONPATH", "")]),
            "IMSYN_AUDIT_ROOT": str(workdir),
            "IMSYN_AUDIT_LOG": str(audit / f"writes.{pid}"),
        }
        cmd = [sys.executable, str(ROOT / "train.py"), *argv]
        cmd += [f"--coordinator=127.0.0.1:{port}", "--num_processes=2", f"--process_id={pid}"]
        log = open(audit / f"{tag}.{pid}.log", "w")  # noqa: SIM115 - closed with the process
        procs.append(subprocess.Popen(cmd, cwd=ROOT, env=env, stdout=log, stderr=subprocess.STDOUT))
        log.close()
    return procs


def _logs(audit: Path, tag: str) -> str:
    return "\n".join((audit / f"{tag}.{i}.log").read_text()[-1500:] for i in (0, 1))


def _wait_for_checkpoint(procs, workdir: Path, audit: Path, timeout: float = 240) -> None:
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        if (workdir / "checkpoints" / "4").is_dir():  # orbax renames it there once committed
            return
        if any(p.poll() is not None for p in procs):
            break
        time.sleep(0.05)
    for p in procs:
        p.kill()
    pytest.fail(f"no checkpoint 4 appeared:\n{_logs(audit, 'first')}")


def _flat(state) -> dict[str, np.ndarray]:
    return {
        jax.tree_util.keystr(k): np.asarray(v)
        for k, v in jax.tree_util.tree_flatten_with_path(state)[0]
    }


def test_two_processes_train_resume_and_match_one_process(blobs, tmp_path):
    workdir, audit = tmp_path / "run", tmp_path / "audit"

    # both processes from scratch; SIGKILL both as soon as the first checkpoint is committed
    procs = _start_pair(blobs, workdir, audit, "first")
    _wait_for_checkpoint(procs, workdir, audit)
    for p in procs:
        p.send_signal(signal.SIGKILL)
    for p in procs:
        p.wait(30)
    killed_at = Checkpoints(workdir / "checkpoints", read_only=True).latest_step()
    assert killed_at is not None and killed_at < STEPS, _logs(audit, "first")
    assert not (workdir / "eval").exists()
    first_ckpt = (workdir / "checkpoints" / "4").stat().st_ino

    # both again, on new ports: they resume from the newest checkpoint and finish
    procs = _start_pair(blobs, workdir, audit, "again")
    for p in procs:
        assert p.wait(300) == 0, _logs(audit, "again")
    assert (workdir / "checkpoints" / "4").stat().st_ino == first_ckpt  # not trained again

    # process 0 wrote everything outside checkpoints/; process 1 nothing else
    writes = {
        i: {Path(ln).parts[0] for ln in (audit / f"writes.{i}").read_text().split()} for i in (0, 1)
    }
    assert writes[1] <= {"checkpoints"}, writes[1]
    assert {"config.json", "metrics.jsonl", "report.html", "eval", "samples"} <= writes[0]
    assert ".imsyn.lock" in writes[0]

    # the one-process run with the same global batch
    config = _config(blobs)
    reference = tmp_path / "one"
    want = _flat(loop.fit(config, reference, DCGANTask(config)))
    got, step = loop.restore(config, workdir, DCGANTask(config))
    assert step == STEPS
    got = _flat(got)
    assert got.keys() == want.keys()
    worst = max(float(np.max(np.abs(got[k] - want[k]))) for k in want)
    for k in want:
        np.testing.assert_allclose(got[k], want[k], rtol=1e-4, atol=1e-5, err_msg=k)

    losses, ref = (
        {r["step"]: (r["d_loss"], r["g_loss"]) for r in read_metrics(wd / "metrics.jsonl")}
        for wd in (workdir, reference)
    )
    assert sorted(losses) == list(range(1, STEPS + 1))  # resumed: no step logged twice
    for s in ref:
        np.testing.assert_allclose(losses[s], ref[s], rtol=1e-5, err_msg=f"step {s}")
    ev = json.loads((workdir / "eval" / "metrics.json").read_text())
    ev_ref = json.loads((reference / "eval" / "metrics.json").read_text())
    assert ev["step"] == STEPS
    assert ev["kid"] == pytest.approx(ev_ref["kid"], rel=1e-3, abs=1e-6)
    print(f"killed after checkpoint {killed_at}; largest parameter difference {worst:.2e}")


def test_process_shards_concatenate_to_the_one_process_batches():
    """Process k's batch j holds rows [k*B, (k+1)*B) of the one-process run's batch j."""
    rng = np.random.default_rng(0)
    images = rng.integers(0, 256, (10, 12, 12, 3), dtype=np.uint8)
    src = ArraySource(images, list("abcdefghij"), "test:random")
    kw = dict(seed=5, augment="basic", image_size=8)
    one = make_loader(src, batch_size=4, **kw)
    two = [make_loader(src, batch_size=2, shard_index=k, shard_count=2, **kw) for k in (0, 1)]
    for _ in range(6):  # crosses epoch boundaries (10 images, global batches of 4)
        want = next(one)["image"]
        np.testing.assert_array_equal(np.concatenate([next(t)["image"] for t in two]), want)
    assert two[0].get_state() == two[1].get_state()  # process 0's state is everyone's
    finite = [
        list(make_loader(src, batch_size=2, shard_index=k, shard_count=2, num_epochs=1, **kw))
        for k in (0, 1)
    ]
    assert len(finite[0]) == len(finite[1]) == 2  # whole global batches only


def test_bad_multihost_flags_exit_2_before_anything_is_written(tmp_path, capsys):
    from imsyn.experiments import main

    wd = tmp_path / "run"
    argv = ["train.py", f"--config={CONFIG}:quick", f"--workdir={wd}"]
    for extra, message in [
        (["--process_id=1", "--num_processes=1"], "--process_id must be an integer in [0, 1)"),
        (["--nomultihost", "--num_processes=2"], "--num_processes contradicts --nomultihost"),
        (["--coordinator=nowhere"], "--coordinator must be HOST:PORT"),
        (["--num_processes=0"], "num_processes"),
    ]:
        saved, sys.argv = sys.argv, argv + extra
        try:
            assert main(argv + extra, "train") == 2
        finally:
            sys.argv = saved
        err = capsys.readouterr().err
        assert message in err and len(err.strip().splitlines()) == 1, err
    assert not wd.exists()

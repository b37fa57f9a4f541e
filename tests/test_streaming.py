"""Folder sources stream from disk (imsyn.data.sources.FolderSource).

Covers: memory that does not grow with the folder (RSS of a subprocess reading an epoch of
2,000 images, against what an eager decode would hold), a first batch that decodes only
what the pipeline buffers, identical batches after a resume from the iterator state, and a
corrupt file in the middle of the folder: skipped with a counted warning under
``?skip_corrupt=1``, else one line naming it (library, grain worker processes, train.py:
exit 2, no traceback).
"""

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from imsyn.data import FolderSource, get_source, make_loader
from imsyn.errors import InputError

ROOT = Path(__file__).resolve().parents[1]
N_FILES = 2000
SIZE = 256  # delivered side: an eager decode would hold N_FILES * SIZE**2 * 3 bytes


def _write_folder(folder: Path, n: int, *, side: int = 24, seed: int = 0) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    for i in range(n):
        img = rng.integers(0, 256, (side, side + 8, 3), dtype=np.uint8)
        Image.fromarray(img).save(folder / f"{i:05d}.png", compress_level=1)
    return folder


@pytest.fixture(scope="module")
def big_folder(tmp_path_factory) -> Path:
    """2,000 small PNGs (delivered at 256 px: 393 MB if all were decoded at once)."""
    return _write_folder(tmp_path_factory.mktemp("stream") / "imgs", N_FILES)


@pytest.fixture
def corrupt_folder(tmp_path) -> Path:
    """64 images, the 33rd (index 32, in the middle) truncated."""
    folder = _write_folder(tmp_path / "imgs", 64, side=12)
    bad = folder / "00032.png"
    bad.write_bytes(bad.read_bytes()[:40])
    return folder


def _run_python(code: str, *args: str, timeout: float = 600) -> subprocess.CompletedProcess:
    env = {**os.environ, "JAX_PLATFORMS": "cpu"}
    return subprocess.run(
        [sys.executable, "-c", textwrap.dedent(code), *args],
        cwd=ROOT,
        capture_output=True,
        text=True,
        env=env,
        timeout=timeout,  # against hangs, not a timing assertion
    )


# --------------------------------------------------------------------------- memory


_MEMORY = """
    import json, sys

    def status(field):  # kB, from /proc/self/status
        for line in open("/proc/self/status"):
            if line.startswith(field + ":"):
                return int(line.split()[1]) * 1024

    from imsyn.data import get_source, make_loader

    base = status("VmRSS")
    src = get_source("folder:" + sys.argv[1], image_size=int(sys.argv[2]))
    it = make_loader(src, batch_size=8, seed=0, image_size=int(sys.argv[2]), num_epochs=1)
    n = sum(len(b["image"]) for b in it)
    print(json.dumps({"images": n, "growth": status("VmHWM") - base}))
"""


@pytest.mark.skipif(not Path("/proc/self/status").exists(), reason="reads /proc (Linux)")
def test_an_epoch_of_a_folder_needs_memory_for_the_buffers_not_the_folder(big_folder):
    proc = _run_python(_MEMORY, str(big_folder), str(SIZE))
    assert proc.returncode == 0, proc.stderr[-2000:]
    out = json.loads(proc.stdout.strip().splitlines()[-1])
    eager = N_FILES * SIZE * SIZE * 3  # uint8 images, before any float batch
    assert out["images"] == N_FILES
    # batches of 8 x 256 x 256 x 3 float32 are 6.3 MB: measured 61-80 MB for the buffered
    # ones and the allocator's slack, far below the 393 MB of the decoded folder alone
    assert out["growth"] < 160 * 2**20 < eager / 2, out


def test_the_first_batch_decodes_what_the_pipeline_buffers(big_folder, monkeypatch):
    calls = []
    read = FolderSource._read
    monkeypatch.setattr(FolderSource, "_read", lambda self, i: calls.append(i) or read(self, i))
    src = get_source(f"folder:{big_folder}", image_size=16)
    assert len(src) == N_FILES and not calls  # the file list only
    it = make_loader(src, batch_size=8, seed=0, image_size=16)
    assert next(it)["image"].shape == (8, 16, 16, 3)
    assert 8 <= len(calls) <= 8 * 16 < N_FILES // 10  # the prefetch buffers, not the folder


# --------------------------------------------------------------------------- resume


@pytest.mark.parametrize("augment", ["none", "basic"])
def test_resume_from_the_iterator_state_gives_identical_batches(big_folder, augment):
    kw = dict(batch_size=8, seed=5, augment=augment, image_size=16)
    spec = f"folder:{big_folder}"
    it = make_loader(get_source(spec, image_size=16), **kw)
    for _ in range(6):
        next(it)
    state = json.loads(json.dumps(it.get_state()))  # as stored with a checkpoint
    want = [next(it)["image"] for _ in range(4)]
    resumed = make_loader(get_source(spec, image_size=16), **kw)  # a fresh source and loader
    resumed.set_state(state)
    for w in want:
        np.testing.assert_array_equal(next(resumed)["image"], w)
    other = make_loader(get_source(spec, image_size=16), **{**kw, "seed": 6})
    other.set_state(state)
    assert not np.array_equal(next(other)["image"], want[0])  # the seed matters


# --------------------------------------------------------------------------- corrupt files


def test_corrupt_file_mid_epoch_stops_with_one_line_naming_it(corrupt_folder):
    src = get_source(f"folder:{corrupt_folder}", image_size=8)
    it = make_loader(src, batch_size=8, seed=0, image_size=8, shuffle=False, num_epochs=1)
    good = [next(it) for _ in range(4)]  # images 0-31 are fine
    assert len(good) == 4
    with pytest.raises(InputError, match=r"00032\.png.*skip_corrupt=1") as e:
        next(it)
    assert "\n" not in str(e.value)


def test_skip_corrupt_skips_with_a_counted_warning(corrupt_folder, capfd):
    src = get_source(f"folder:{corrupt_folder}?skip_corrupt=1", image_size=8)
    plain = get_source(f"folder:{corrupt_folder}", image_size=8)
    it = make_loader(src, batch_size=8, seed=0, image_size=8, num_epochs=2)
    batches = [b["image"] for b in it]
    assert len(batches) == 16 and all(b.shape == (8, 8, 8, 3) for b in batches)
    warnings = [line for line in capfd.readouterr().err.splitlines() if "skip_corrupt" in line]
    assert len(warnings) == 1, warnings  # once per file, not once per epoch
    assert "00032.png" in warnings[0] and "1 corrupt file(s) skipped so far" in warnings[0]
    assert src.skipped == [str(corrupt_folder / "00032.png")]
    np.testing.assert_array_equal(src[32], plain[33])  # the next readable image stands in


_WORKERS = """
    import sys
    from imsyn.data import get_source, make_loader
    from imsyn.errors import InputError


    def main():
        src = get_source("folder:" + sys.argv[1], image_size=8)
        it = make_loader(src, batch_size=8, seed=0, image_size=8, worker_count=2)
        try:
            for _ in range(100):
                next(it)
        except InputError as e:
            print(f"error: {e}", file=sys.stderr)
            return 2
        finally:
            it.close()
        return 0


    if __name__ == "__main__":
        sys.exit(main())
"""


def test_corrupt_file_in_a_worker_process_is_one_line_not_a_traceback(corrupt_folder, tmp_path):
    script = tmp_path / "workers.py"  # a file: worker processes re-import the main module
    script.write_text(textwrap.dedent(_WORKERS))
    env = {**os.environ, "JAX_PLATFORMS": "cpu"}
    proc = subprocess.run(
        [sys.executable, str(script), str(corrupt_folder)],
        cwd=ROOT, capture_output=True, text=True, env=env, timeout=300,
    )  # fmt: skip
    assert proc.returncode == 2, proc.stderr[-3000:]
    assert "Traceback" not in proc.stderr, proc.stderr[-3000:]
    errors = [line for line in proc.stderr.splitlines() if line.startswith("error:")]
    assert len(errors) == 1 and "00032.png" in errors[0], proc.stderr[-3000:]


@pytest.mark.parametrize("workers", [0, 2])
def test_train_py_stops_at_a_corrupt_file_with_one_line(corrupt_folder, tmp_path, workers):
    """In the training process and in grain worker processes (``data_workers``) alike."""
    over = {
        "data_workers": workers,
        "data": f"folder:{corrupt_folder}",
        "num_steps": 40,  # 8 batches of 8 an epoch: the corrupt file comes up in the first
        "batch_size": 8,
        "conv_dim": 2,
        "log_every": 1,
        "checkpoint_every": 100,
        "sample_every": 1000,
        "eval_samples": 8,
        "num_sample_images": 4,
        "features": "random_conv_v1",
    }
    argv = [f"--config={ROOT / 'configs' / 'dcgan.py'}:quick", f"--workdir={tmp_path / 'run'}"]
    argv += [f"--config.{k}={v}" for k, v in over.items()]
    proc = subprocess.run(
        [sys.executable, str(ROOT / "train.py"), *argv],
        cwd=ROOT, capture_output=True, text=True, timeout=600,
        env={**os.environ, "JAX_PLATFORMS": "cpu"},
    )  # fmt: skip
    assert proc.returncode == 2, proc.stderr[-3000:]
    assert "Traceback" not in proc.stderr, proc.stderr[-3000:]
    lines = proc.stderr.strip().splitlines()
    if workers:  # after a worker's error Python's resource_tracker may warn about grain's
        # shared memory at exit (google/grain#398, docs/data.md): those lines come after
        while lines and "resource_tracker" in lines[-1]:
            lines.pop()
    assert lines[-1].startswith("train.py: error:") and "00032.png" in lines[-1], lines[-5:]
    assert "skip_corrupt=1" in lines[-1]
    assert sum(line.startswith("train.py: error:") for line in lines) == 1

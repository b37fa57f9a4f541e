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
   multi-host flags, ``.pth`` files, SIGTERM, ``--kid-subsets``).
"""

from __future__ import annotations

import json
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

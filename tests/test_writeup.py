"""The write-up (``python eval.py --config=configs/writeup.py``): one page of every experiment.

The ``:quick`` preset with the step counts cut to a handful, on a generated data folder laid
out like ``../shared/data`` (no test reads the shared data): every section is on the page,
every linked file exists, ``results.json`` holds the numbers, a rerun with nothing to do
recomputes nothing, a changed setting redoes only what depends on it, and bad values fail
before any compute.
"""

from __future__ import annotations

import html
import json
import re
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from imsyn.experiments import main
from imsyn.outputs import LOCK_NAME
from imsyn.tasks import writeup
from imsyn.tasks.writeup import a2

TINY = {
    "a3.dcgan_settings": "deluxe_diffaug",
    "a3.cyclegan_variants": "dc_cycle",
    "a3.dcgan.num_steps": 4,
    "a3.dcgan.sample_every": 2,
    "a3.dcgan.checkpoint_every": 4,
    "a3.dcgan.log_every": 2,
    "a3.dcgan.eval_samples": 8,
    "a3.dcgan.batch_size": 4,
    "a3.dcgan.conv_dim": 8,
    "a3.cyclegan.num_steps": 2,
    "a3.cyclegan.decay_start": 1,
    "a3.cyclegan.sample_every": 1,
    "a3.cyclegan.checkpoint_every": 2,
    "a3.cyclegan.log_every": 1,
    "a3.cyclegan.batch_size": 2,
    "a3.cyclegan.g_conv_dim": 8,
    "a3.cyclegan.d_conv_dim": 8,
    "a3.cyclegan.n_blocks": 1,
    "a3.cyclegan.fid_max_images": 8,
    "a3.emoji.data": "emoji:twemoji?category=faces&limit=64",
    "a3.emoji.data_y": "emoji:openmoji?category=faces&limit=64",
    "a3.emoji.num_steps": 2,
    "a3.emoji.decay_start": 1,
    "a3.emoji.sample_every": 1,
    "a3.emoji.checkpoint_every": 2,
    "a3.emoji.log_every": 1,
    "a3.emoji.batch_size": 2,
    "a3.emoji.g_conv_dim": 8,
    "a3.emoji.d_conv_dim": 8,
    "a3.emoji.n_blocks": 1,
    "a3.emoji.fid_max_images": 8,
    "a4.nst.size": 32,
    "a4.nst.num_steps": 2,
    "a4.grid_size": 32,
    "a4.contents": "content.png",
    "a4.styles": "style.png",
    "a4.content_layers": "conv_3",
    "a4.texture_layers": "conv_1,conv_3",
    "a4.texture_seeds": "0",
    "a4.style_weights": "1e5",
    "a5.generator.num_steps": 4,
    "a5.generator.sample_every": 2,
    "a5.generator.checkpoint_every": 4,
    "a5.generator.log_every": 2,
    "a5.generator.eval_samples": 8,
    "a5.generator.conv_dim": 8,
    "a5.generator.data": "emoji:twemoji?category=faces&limit=64",
    "a5.editing.steps": 2,
    "a5.editing.num_images": 2,
    "a5.editing.num_frames": 3,
}


def _smooth(rng, h, w, c=3):
    """A smooth random image in [0, 1] (upsampled noise): something to align and blend."""
    small = rng.random((max(h // 8, 2), max(w // 8, 2), c))
    img = Image.fromarray((small * 255).astype(np.uint8).squeeze())
    return np.asarray(img.resize((w, h), Image.BICUBIC), np.float32) / 255.0


def _save(path: Path, img: np.ndarray) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray((np.clip(img, 0, 1) * 255 + 0.5).astype(np.uint8)).save(path)


@pytest.fixture(scope="module")
def data_root(tmp_path_factory) -> Path:
    """A generated folder laid out like ``../shared/data``."""
    root = tmp_path_factory.mktemp("data")
    rng = np.random.default_rng(0)
    # A1: a plate whose G and R thirds are the B third rolled by known offsets
    b = _smooth(rng, 120, 100)[..., 0]
    g = np.roll(b, (-4, -2), axis=(0, 1))  # np.roll(g, (4, 2)) lies on b
    r = np.roll(b, (-7, 3), axis=(0, 1))
    _save(root / "prokudin" / "small" / "plate.png", np.concatenate([b, g, r]))
    (root / "prokudin" / "reported_offsets.md").write_text(
        "| plate | ch | A | B | C | D | E | F | G | consensus (dy,dx) | notes |\n"
        "|---|---|---|---|---|---|---|---|---|---|---|\n"
        "| plate | G | | | | | | | | (4,2) (n=1) | |\n"
        "| plate | R | | | | | | | | (7,-3) (n=1) | |\n"
    )
    # A2: toy image, bear-in-pool layout
    p = root / "poisson"
    _save(p / "toy_problem.png", _smooth(rng, 24, 20)[..., 0])
    src, tgt = _smooth(rng, 20, 16), _smooth(rng, 32, 40)
    mask = np.zeros((20, 16))
    mask[4:16, 3:13] = 1
    tmask = np.zeros((32, 40))
    tmask[8:20, 10:20] = 1
    news = tgt.copy()
    news[8:20, 10:20] = src[4:16, 3:13]
    for name, img in (("source_01.jpg", src), ("source_01_mask.png", mask),
                      ("source_01_newsource.png", news), ("target_01.jpg", tgt),
                      ("target_01_mask.png", tmask)):  # fmt: skip
        _save(p / "bear_pool" / name, img)
    # A3: two folders of 64 px "cats"
    for dom in ("grumpifyAprocessed", "grumpifyBprocessed"):
        for i in range(12):
            _save(root / "gan" / dom / f"{i}.png", _smooth(rng, 64, 64))
    # A4: one content and one style image
    _save(root / "nst" / "content" / "content.png", _smooth(rng, 40, 48))
    _save(root / "nst" / "style" / "style.png", _smooth(rng, 48, 40))
    return root


def _argv(workdir, data_root, **extra) -> list[str]:
    flags = {**TINY, "data_root": str(data_root), **extra}
    return [
        "eval.py",
        "--config=configs/writeup.py:quick",
        f"--workdir={workdir}",
        *(f"--config.{k}={v}" for k, v in flags.items()),
    ]


def _snapshot(workdir: Path) -> dict:
    """mtime of every file but the workdir's lock (each run holds it)."""
    files = (p for p in workdir.rglob("*") if p.is_file() and p.name != LOCK_NAME)
    return {p: p.stat().st_mtime_ns for p in files}


@pytest.fixture(scope="module")
def built(tmp_path_factory, data_root):
    workdir = tmp_path_factory.mktemp("writeup") / "w"
    assert main(_argv(workdir, data_root), "eval") == 0
    return workdir


def test_page_has_every_section_and_every_linked_file(built):
    page = (built / "index.html").read_text()
    for section, title in writeup.SECTIONS.items():
        assert f'id="{section}"' in page and f'href="#{section}"' in page  # body + contents
        assert title.split("·")[1].strip() in page
    assert "not run yet" not in page
    # the quick page says what its short GAN runs cannot show, with the full-length numbers
    for note in writeup.sections.QUICK_NOTES.values():
        assert html.escape(note) in page
    links = re.findall(r'(?:src|href)="([^"#][^"]*)"', page)
    assert len(links) > 40
    missing = [link for link in links if not (built / link).is_file()]
    assert not missing, missing
    results = json.loads((built / "results.json").read_text())
    assert results["experiments_done"] == results["experiments_total"]
    exps = {k for s in results["sections"].values() for k in s["experiments"]}
    assert {"a1/plates", "a2/color2gray", "a3/emoji", "a4/own_a2_blend", "a5/draw"} <= exps
    a1 = results["sections"]["a1"]["experiments"]["a1/plates"]["results"]["plate"]
    assert a1["offsets"] == {"g": [4, 2], "r": [7, -3]} and a1["max_error_px"] == 0
    c2g = results["sections"]["a2"]["experiments"]["a2/color2gray"]["results"]
    assert c2g["luma_contrast"] < 1e-3 < 0.02 < c2g["color2gray_contrast"]
    emoji = results["sections"]["a3"]["experiments"]["a3/emoji"]["results"]
    assert {"x2y/l1", "x2y/fid", "y2x/psnr"} <= set(emoji)
    for exp in results["sections"]["a4"]["experiments"].values():
        assert exp["command"].startswith("python train.py --config=configs/nst.py")


def test_rerun_with_nothing_to_do_recomputes_nothing(built, data_root, capfd):
    before = _snapshot(built)
    assert main(_argv(built, data_root), "eval") == 0
    err = capfd.readouterr().err
    assert "writeup: 1/" not in err  # no experiment started
    after = _snapshot(built)
    changed = {p for p in after if before.get(p) != after[p]}
    assert changed == {built / "index.html", built / "results.json"}


def test_changed_setting_redoes_only_what_depends_on_it(built, data_root, capfd):
    state = built / "state"
    a1_before = (state / "a1__plates.json").stat().st_mtime_ns
    assert main(_argv(built, data_root, **{"a2.isoluminant_size": 24}), "eval") == 0
    err = capfd.readouterr().err
    started = re.findall(r"writeup: \d+/\d+ (\S+)", err)
    # A2 and the style transfer A4 applies to A2's blend; nothing else
    assert started == ["a2/toy", "a2/blend", "a2/color2gray", "a2/extras", "a4/own_a2_blend"]
    assert (state / "a1__plates.json").stat().st_mtime_ns == a1_before
    results = json.loads((built / "results.json").read_text())
    assert results["experiments_done"] == results["experiments_total"]


@pytest.mark.parametrize(
    "extra, words",
    [
        ({"only": "a6"}, "config.only"),
        ({"a4.style_weights": "1e5,-1"}, "config.a4.style_weights"),
        ({"a3.dcgan.lr": -1.0}, "a3/dcgan_deluxe_diffaug: config.lr"),
    ],
)
def test_bad_values_fail_before_any_compute(tmp_path, data_root, capfd, extra, words):
    workdir = tmp_path / "w"
    assert main(_argv(workdir, data_root, **extra), "eval") == 2
    err = capfd.readouterr().err.strip().splitlines()
    assert len(err) == 1 and words in err[0], err
    assert not workdir.exists()


def test_missing_data_folder_fails_before_any_compute(tmp_path, capfd):
    workdir = tmp_path / "w"
    assert main(_argv(workdir, tmp_path / "nowhere"), "eval") == 2
    err = capfd.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "config.data_root" in err[0] and "does not exist" in err[0]
    assert not workdir.exists()


def test_interrupted_redo_continues_where_it_stopped(built, data_root, capfd, monkeypatch):
    def interrupted(ctx, sub):
        raise KeyboardInterrupt

    monkeypatch.setattr(a2, "color2gray", interrupted)
    assert main(_argv(built, data_root, only="a2"), "eval") == 130
    first = re.findall(r"writeup: \d+/\d+ (\S+)", capfd.readouterr().err)
    assert first == ["a2/toy", "a2/blend", "a2/color2gray"]
    monkeypatch.undo()
    assert main(_argv(built, data_root, only="a2"), "eval") == 0
    second = re.findall(r"writeup: \d+/\d+ (\S+)", capfd.readouterr().err)
    assert second == ["a2/color2gray", "a2/extras", "a4/own_a2_blend"]  # goes on, not over
    assert main(_argv(built, data_root, only="a2"), "eval") == 0  # a new redo: all of a2
    third = re.findall(r"writeup: \d+/\d+ (\S+)", capfd.readouterr().err)
    assert third == ["a2/toy", "a2/blend", "a2/color2gray", "a2/extras", "a4/own_a2_blend"]
    results = json.loads((built / "results.json").read_text())
    assert results["experiments_done"] == results["experiments_total"]


def test_a_folder_of_other_files_is_refused(tmp_path, data_root, capfd):
    workdir = tmp_path / "mine"
    (workdir / "a1" / "plates").mkdir(parents=True)
    (workdir / "a1" / "plates" / "keep.txt").write_text("not the write-up's")
    assert main(_argv(workdir, data_root, only="a1"), "eval") == 2
    err = capfd.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "holds other files" in err[0], err
    assert (workdir / "a1" / "plates" / "keep.txt").exists()
    assert sorted(p.name for p in workdir.iterdir()) == ["a1"]


def test_a_users_page_and_results_are_not_taken_for_a_write_up(tmp_path, data_root, capfd):
    """Ownership is the marker imsyn writes, not familiar file names (issue 25)."""
    import importlib.util

    from imsyn.errors import OutputError
    from imsyn.outputs import MARKER_NAME

    workdir = tmp_path / "site"
    workdir.mkdir()
    files = {"index.html": "<p>my page</p>", "results.json": '{"mine": 1}',
             "config.json": '{"task": "writeup"}'}  # fmt: skip
    for name, text in files.items():
        (workdir / name).write_text(text)
    assert main(_argv(workdir, data_root, only="a1"), "eval") == 2
    err = capfd.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "holds other files" in err[0] and MARKER_NAME in err[0], err
    spec = importlib.util.spec_from_file_location("writeup_cfg", "configs/writeup.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    config = mod.get_config("quick")
    for key, value in {**TINY, "data_root": str(data_root), "only": "a1"}.items():
        *parents, leaf = key.split(".")
        node = config
        for part in parents:
            node = node[part]
        node[leaf] = value
    with pytest.raises(OutputError, match="holds other files"):
        writeup.evaluate(config, workdir)
    assert {p.name: p.read_text() for p in workdir.iterdir()} == files

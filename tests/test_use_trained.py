"""Using a trained model (:mod:`imsyn.trained`, ``python -m imsyn translate | sample |
export``): a CycleGAN trained a few steps with ``train.py``, exported, then translated from the
export and from the run folder (byte-identical); images of odd sizes, grayscale, RGBA and
16 bits; the safety rules on ``--out-dir``; damaged and foreign model files; DCGAN samples
that depend on the seed alone; ``edit`` on an exported generator; FID statistics files."""

import json
from pathlib import Path

import jax
import ml_collections
import numpy as np
import pytest
from PIL import Image

from imsyn import trained
from imsyn.__main__ import main
from imsyn.experiments import main as experiments_main
from imsyn.image import write_image, write_json

ROOT = Path(__file__).resolve().parents[1]
# a CycleGAN a few steps old: face-smiling emoji (11 train / 3 test) at 16 px
TINY = dict(
    data="emoji:twemoji?category=face-smiling",
    data_y="emoji:openmoji?category=face-smiling",
    image_size=16,
    batch_size=2,
    num_steps=2,
    decay_start=1,
    g_conv_dim=8,
    d_conv_dim=4,
    n_blocks=1,
    log_every=1,
    checkpoint_every=2,
    sample_every=2,
    features="random_conv_v1",
)


@pytest.fixture(scope="module")
def cg_run(tmp_path_factory):
    """A CycleGAN run folder as ``python train.py --config=configs/cyclegan.py`` leaves it
    (trained 2 steps; the evaluation, which is not under test here, skipped)."""
    from imsyn.tasks.cyclegan import CycleGANTask

    wd = tmp_path_factory.mktemp("cg") / "run"
    argv = ["train.py", f"--config={ROOT / 'configs/cyclegan.py'}", f"--workdir={wd}"]
    argv += [f"--config.{k}={v}" for k, v in TINY.items()]
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr("sys.argv", argv)
        mp.setattr(CycleGANTask, "evaluate", lambda self, state, config, workdir: {})
        assert experiments_main(argv, "train") == 0
    assert (wd / "checkpoints").is_dir()
    return wd


@pytest.fixture(scope="module")
def cg_export(cg_run, tmp_path_factory):
    out = tmp_path_factory.mktemp("export") / "cg.safetensors"
    assert main(["export", "--model", str(cg_run), "--out", str(out)]) == 0
    return out


@pytest.fixture(scope="module")
def dcgan_run(tmp_path_factory):
    """A DCGAN run folder (config.json + a checkpoint of the initial state)."""
    from imsyn.tasks.dcgan import DCGANTask
    from imsyn.training.checkpoint import Checkpoints
    from imsyn.training.sweep import config_module

    cfg = config_module(ROOT / "configs/dcgan.py").get_config("quick")
    cfg.update(dict(conv_dim=2, num_steps=10, features="random_conv_v1"))
    wd = tmp_path_factory.mktemp("dcgan") / "run"
    task = DCGANTask()
    state = task.init_state(cfg, jax.random.key(0))
    write_json(wd / "config.json", cfg.to_dict())
    ck = Checkpoints(wd / "checkpoints")
    ck.save(5, state, {"step": 5, "data": None, "arch": task.arch(cfg)})
    ck.close()
    return wd


def _images(folder: Path, rng) -> dict[str, np.ndarray]:
    """Inputs of every kind, with what each must translate like (an RGB uint8 image)."""
    folder.mkdir(parents=True, exist_ok=True)
    rgb = rng.integers(0, 256, (17, 23, 3), dtype=np.uint8)  # odd size: padded to 20 x 24
    gray = rng.integers(0, 256, (9, 5), dtype=np.uint8)
    write_image(folder / "odd.png", rgb)
    write_image(folder / "gray.png", gray)
    write_image(folder / "gray_as_rgb.png", np.repeat(gray[..., None], 3, axis=-1))
    write_image(folder / "rgb16.tif", rgb.astype(np.uint16) * 257)  # the same values in 16 bits
    clear = np.zeros((12, 12, 4), np.uint8)
    clear[..., :3] = rng.integers(0, 256, (12, 12, 3), dtype=np.uint8)  # alpha 0: white
    write_image(folder / "clear.png", clear)
    write_image(folder / "white.png", np.full((12, 12, 3), 255, np.uint8))
    return {"odd": rgb, "gray": gray}


def _pixels(path) -> np.ndarray:
    with Image.open(path) as im:
        return np.asarray(im)


def _one_line_refusal(capsys, argv, *needles):
    try:
        rc = main(argv)
    except SystemExit as e:  # argparse's (one-line) error
        rc = e.code
    err = capsys.readouterr().err.strip().splitlines()
    assert rc == 2 and len(err) == 1, (argv, err)
    for n in needles:
        assert n in err[0], (n, err)
    return err[0]


# --------------------------------------------------------------------------- translate


def test_translate_export_and_run_agree_on_every_kind_of_image(
    cg_run, cg_export, tmp_path, rng, capsys
):
    src = tmp_path / "in"
    _images(src, rng)
    outs = {}
    for name, model in (("file", cg_export), ("run", cg_run)):
        out = tmp_path / f"out_{name}"
        assert main(["translate", "--model", str(model), str(src), "--out-dir", str(out)]) == 0
        outs[name] = out
    captured = capsys.readouterr()
    assert "img/s" in captured.err or "s/img" in captured.err  # the progress line
    names = sorted(p.name for p in outs["file"].iterdir())
    assert names == sorted(f"{p.stem}.png" for p in src.iterdir())
    for n in names:  # byte-identical from the export and from the run folder
        assert (outs["file"] / n).read_bytes() == (outs["run"] / n).read_bytes(), n
    out = outs["file"]
    for n in names:  # every translation has its input's size, RGB
        inp = next(src.glob(Path(n).stem + ".*"))
        with Image.open(inp) as a, Image.open(out / n) as b:
            assert b.size == a.size and b.mode == "RGB", n
    # 16-bit values v * 257 are the 8-bit values v: the same translation; grayscale is read
    # as three equal channels; a transparent image is composited on white
    np.testing.assert_array_equal(_pixels(out / "rgb16.png"), _pixels(out / "odd.png"))
    np.testing.assert_array_equal(_pixels(out / "gray.png"), _pixels(out / "gray_as_rgb.png"))
    np.testing.assert_array_equal(_pixels(out / "clear.png"), _pixels(out / "white.png"))


def test_translation_is_the_generator_on_the_reflect_padded_image(cg_export, tmp_path, rng):
    """The policy: native size, reflect-padded to multiples of 4, the result cropped back;
    y2x runs the other generator."""
    from imsyn import gan
    from imsyn.image import from_network, to_network, to_uint8

    img = rng.integers(0, 256, (13, 10, 3), dtype=np.uint8)
    write_image(tmp_path / "a.png", img)
    model = trained.load(cg_export)
    for direction, net in (("x2y", "g_xy"), ("y2x", "g_yx")):
        out = tmp_path / direction
        argv = ["translate", "--model", str(cg_export), str(tmp_path / "a.png")]
        assert main([*argv, "--out-dir", str(out), "--direction", direction]) == 0
        x = np.pad(img.astype(np.float32) / 255.0, ((1, 2), (1, 1), (0, 0)), mode="reflect")
        y = from_network(gan.translate(*model.generator(net), to_network(x[None])))[0]
        np.testing.assert_array_equal(_pixels(out / "a.png"), to_uint8(np.asarray(y)[1:14, 1:11]))
    assert not np.array_equal(_pixels(tmp_path / "x2y" / "a.png"), _pixels(tmp_path / "y2x/a.png"))


def test_input_folder_may_contain_the_output_folder(cg_export, tmp_path, rng):
    src = tmp_path / "photos"
    _images(src, rng)
    n = len(list(src.iterdir()))
    out = src / "translated"
    argv = ["translate", "--model", str(cg_export), str(src), "--out-dir", str(out)]
    assert main(argv) == 0
    first = {p.name: p.read_bytes() for p in out.iterdir()}
    assert len(first) == n
    assert main(argv) == 0  # again: the translations are not read as inputs
    assert {p.name: p.read_bytes() for p in out.iterdir()} == first


def test_unsafe_out_dirs_are_refused_before_any_work(cg_run, cg_export, tmp_path, rng, capsys):
    src = tmp_path / "in"
    _images(src, rng)
    before = sorted(p.name for p in src.iterdir())
    model = str(cg_export)
    cases = [
        ([str(src), "--out-dir", str(src)], "is the input folder"),
        ([str(src), "--out-dir", str(src / ".")], "is the input folder"),
        ([str(src / "odd.png"), "--out-dir", str(src)], "would overwrite the input"),
        ([str(src / "odd.png"), "--out-dir", str(src / "odd.png")], "is a file"),
        ([str(tmp_path / "nope"), "--out-dir", str(tmp_path / "o")], "no such file or folder"),
    ]
    for args, needle in cases:
        _one_line_refusal(capsys, ["translate", "--model", model, *args], needle)
    assert sorted(p.name for p in src.iterdir()) == before
    assert not (cg_run / "translated").exists() and not (tmp_path / "o").exists()
    # the run folder is an input of its own: nothing may be written inside it
    argv = ["translate", "--model", str(cg_run), str(src), "--out-dir", str(cg_run / "t")]
    _one_line_refusal(capsys, argv, "inside")
    # two inputs with one stem would overwrite each other
    write_image(tmp_path / "other" / "odd.jpg", np.zeros((8, 8, 3), np.uint8))
    argv = ["translate", "--model", model, str(src / "odd.png"), str(tmp_path / "other/odd.jpg")]
    _one_line_refusal(capsys, [*argv, "--out-dir", str(tmp_path / "o")], "both be written")


def test_damaged_or_foreign_model_files_are_refused(cg_export, tmp_path, rng, capsys):
    from safetensors.numpy import save

    src = tmp_path / "in"
    _images(src, rng)
    data = cg_export.read_bytes()
    flipped = bytearray(data)
    flipped[-5] ^= 0x40
    header = int.from_bytes(data[:8], "little")
    files = {
        "truncated.safetensors": data[: len(data) - 100],
        "cut_header.safetensors": data[: 8 + header // 2],
        "flipped.safetensors": bytes(flipped),
        "foreign.safetensors": save({"w": np.zeros(3, np.float32)}),
        "png.safetensors": (src / "odd.png").read_bytes(),
        "empty.safetensors": b"",
        "cyclegan.pth": _torch_save_layout(tmp_path / "torch.zip"),  # a PyTorch checkpoint
    }
    for name, content in files.items():
        bad = tmp_path / name
        bad.write_bytes(content)
        out = tmp_path / f"out_{name}"
        argv = ["translate", "--model", str(bad), str(src), "--out-dir", str(out)]
        line = _one_line_refusal(capsys, argv, str(bad))
        assert "damaged" in line or "not an imsyn model" in line or "truncated" in line, line
        if name.endswith(".pth"):
            assert "a PyTorch checkpoint (torch.save)" in line and "imsyn export" in line, line
        assert not out.exists()


def _torch_save_layout(path) -> bytes:
    """The bytes of a zip laid out as ``torch.save`` writes it (no torch needed)."""
    import pickle
    import zipfile

    with zipfile.ZipFile(path, "w") as z:
        z.writestr("archive/data.pkl", pickle.dumps({"g_xy": 0}))
        z.writestr("archive/version", "3\n")
    return path.read_bytes()


def test_translate_refuses_a_dcgan_and_sample_a_cyclegan(cg_export, dcgan_run, tmp_path, capsys):
    write_image(tmp_path / "a.png", np.zeros((8, 8, 3), np.uint8))
    argv = ["translate", "--model", str(dcgan_run), str(tmp_path / "a.png")]
    _one_line_refusal(capsys, [*argv, "--out-dir", str(tmp_path / "o")], "needs a cyclegan")
    argv = ["sample", "--model", str(cg_export), "--num", "2", "--out-dir", str(tmp_path / "s")]
    _one_line_refusal(capsys, argv, "needs a dcgan")
    assert not (tmp_path / "o").exists() and not (tmp_path / "s").exists()


# --------------------------------------------------------------------------- export


def test_export_holds_the_generators_and_a_checked_record(cg_run, cg_export, tmp_path, capsys):
    from safetensors import safe_open

    with safe_open(str(cg_export), framework="np") as f:
        record = json.loads(f.metadata()["imsyn"])
        names = list(f.keys())
    assert record["format"] == trained.FORMAT and record["format_version"] == 1
    assert record["task"] == "cyclegan" and record["networks"] == ["g_xy", "g_yx"]
    assert record["image_size"] == 16 and record["step"] == 2
    assert record["arch"]["g_conv_dim"] == 8 and record["arch"]["n_blocks"] == 1
    assert all(n.startswith(("g_xy.", "g_yx.")) for n in names)  # no D, no optimizer state
    run = trained.load(cg_run)
    assert record["config"] == json.loads((cg_run / "config.json").read_text())
    for net in ("g_xy", "g_yx"):
        a, b = trained.load(cg_export).states[net], run.states[net]
        for x, y in zip(jax.tree.leaves(a), jax.tree.leaves(b), strict=True):
            np.testing.assert_array_equal(np.asarray(x), np.asarray(y))
    again = tmp_path / "again.safetensors"  # an export of the export: the same file
    assert main(["export", "--model", str(cg_export), "--out", str(again)]) == 0
    assert again.read_bytes() == cg_export.read_bytes()
    capsys.readouterr()
    for out, needle in (
        (cg_run / "g.safetensors", "inside"),
        (tmp_path / "g.npz", "*.safetensors"),
        (cg_export, "would overwrite the input"),
    ):
        model = cg_export if out == cg_export else cg_run
        _one_line_refusal(capsys, ["export", "--model", str(model), "--out", str(out)], needle)
    assert not (cg_run / "g.safetensors").exists()


def test_a_run_older_than_a_field_loads_with_its_old_value(cg_run, tmp_path):
    """config.json and the checkpoint's arch record without ``g_skip`` (runs written before
    it existed): the generator is built as it was then (``g_skip="none"``)."""
    from imsyn.tasks import cyclegan as cg
    from imsyn.training.checkpoint import Checkpoints

    cfg = json.loads((cg_run / "config.json").read_text())
    cfg.pop("g_skip", None)
    old = tmp_path / "old_run"
    write_json(old / "config.json", cfg)
    full = trained.complete_config("cyclegan", ml_collections.ConfigDict(cfg))
    assert full.g_skip == "none"
    arch = {k: v for k, v in cg.arch(full).items() if k != "g_skip"}
    ck = Checkpoints(old / "checkpoints")
    ck.save(1, cg.init_state(full, jax.random.key(3)), {"step": 1, "data": None, "arch": arch})
    ck.close()
    model = trained.load(old)
    assert model.config.g_skip == "none" and model.step == 1


# --------------------------------------------------------------------------- sample


def test_sample_depends_on_the_seed_only(dcgan_run, tmp_path, capsys):
    def sample(out, *extra):
        argv = ["sample", "--model", str(dcgan_run), "--out-dir", str(out), *extra]
        assert main(argv) == 0, capsys.readouterr().err
        return {p.name: p.read_bytes() for p in sorted(out.rglob("*.png"))}

    a = sample(tmp_path / "a", "--num", "5", "--seed", "7")
    b = sample(tmp_path / "b", "--num", "5", "--seed", "7", "--batch-size", "2")
    assert a == b and sorted(a) == [f"sample_{i:06d}.png" for i in range(5)]
    assert len(set(a.values())) == 5
    c = sample(tmp_path / "c", "--num", "3", "--seed", "7")  # a prefix of the same samples
    assert c == {k: a[k] for k in sorted(a)[:3]}
    d = sample(tmp_path / "d", "--num", "5", "--seed", "8")
    assert all(d[k] != a[k] for k in a)
    f = sample(tmp_path / "f", "--num", "3", "--seed", "7", "--interpolate", "4")
    frames = sorted((tmp_path / "f" / "interpolation").iterdir())
    assert len(frames) == (3 - 1) * 4 + 1 and len(f) == 3 + len(frames)
    with Image.open(frames[0]) as im:
        assert im.size == (32, 32)
    # the same samples from an export of the run
    exp = tmp_path / "dcgan.safetensors"
    assert main(["export", "--model", str(dcgan_run), "--out", str(exp)]) == 0
    argv = ["sample", "--model", str(exp), "--out-dir", str(tmp_path / "e")]
    assert main([*argv, "--num", "5", "--seed", "7"]) == 0
    assert {p.name: p.read_bytes() for p in (tmp_path / "e").iterdir()} == a
    capsys.readouterr()
    for argv, needle in (
        (["--num", "1", "--interpolate", "3"], "--num >= 2"),
        (["--num", "0"], "argument --num"),
        (["--num", "2", "--seed", "-1"], "argument --seed"),
    ):
        out = tmp_path / "bad"
        _one_line_refusal(
            capsys, ["sample", "--model", str(dcgan_run), "--out-dir", str(out), *argv], needle
        )
        assert not out.exists()


def test_edit_loads_an_exported_generator(dcgan_run, tmp_path):
    """``edit --model FILE``: the generator of an export is the run's."""
    from imsyn.cli.edit import add_arguments
    from imsyn.tasks.editing import load_generator

    exp = tmp_path / "g.safetensors"
    assert main(["export", "--model", str(dcgan_run), "--out", str(exp)]) == 0
    z = np.random.default_rng(0).normal(size=(2, 100)).astype(np.float32)
    a, b = load_generator(exp), load_generator(dcgan_run)
    assert a.step == b.step == 5 and a.name == b.name and a.config.image_size == 32
    np.testing.assert_array_equal(np.asarray(a.gen(z)), np.asarray(b.gen(z)))
    import argparse

    p = argparse.ArgumentParser()
    add_arguments(p)
    for flag in ("--model", "--generator-workdir"):  # the new name and the old one
        args = p.parse_args(["project", flag, str(exp), "--out", str(tmp_path / "o")])
        assert args.generator_workdir == str(exp)


# --------------------------------------------------------------------------- fid statistics


def test_fid_from_saved_statistics_equals_fid_from_the_folder(tmp_path, rng, capsys):
    folders = {}
    for name, n in (("a", 4), ("b", 4)):
        folders[name] = tmp_path / name
        for i in range(n):
            write_image(folders[name] / f"{i}.png", rng.integers(0, 256, (20, 24, 3), np.uint8))
    fast = ["--features", "random_conv_v1"]

    def fid(*args):
        rc = main(["fid", *map(str, args)])
        out, err = capsys.readouterr()
        assert rc == 0, err
        return json.loads(out)

    stats = tmp_path / "a_stats.npz"
    saved = fid("--save-stats", stats, folders["a"], *fast)
    assert saved["n"] == 4 and saved["features"] == "random_conv_v1" and stats.is_file()
    with np.load(stats) as f:
        assert f["mu"].shape == (f["sigma"].shape[0],) and str(f["features"]) == "random_conv_v1"
    direct = fid(folders["a"], folders["b"], *fast)
    from_stats = fid(stats, folders["b"])  # the features come from the statistics file
    assert from_stats["fid"] == direct["fid"] and from_stats["features"] == "random_conv_v1"
    assert from_stats["kid"] is None and "kid_note" in from_stats
    assert fid(stats, stats)["fid"] == 0.0
    foreign = tmp_path / "pytorch_fid.npz"  # pytorch-fid's files: mu and sigma only
    with np.load(stats) as f:
        np.savez(foreign, mu=f["mu"], sigma=f["sigma"])
    assert fid(foreign, folders["b"], *fast)["fid"] == direct["fid"]
    for args, needle in (
        ([foreign, folders["b"]], "--features"),
        (["--save-stats", tmp_path / "s.npz", folders["a"], folders["b"]], "one image folder"),
        (["--save-stats", folders["a"] / "s.npz", folders["a"], *fast], "inside"),
        (["--save-stats", tmp_path / "s.txt", folders["a"], *fast], "*.npz"),
        ([folders["a"] / "0.png", folders["b"]], "not a directory"),
        ([tmp_path / "missing.npz", folders["b"]], "no such statistics file"),
        ([folders["a"]], "two folders"),
    ):
        _one_line_refusal(capsys, ["fid", *map(str, args)], needle)
    assert not (tmp_path / "s.npz").exists() and not (folders["a"] / "s.npz").exists()

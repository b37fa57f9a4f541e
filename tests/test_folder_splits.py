"""Folder data sets: ``train/``+``test/``, the reference CycleGAN layout (``trainA/ trainB/ testA/
testB/`` with ``?domain=``), a hashed ``?test_fraction``, and a folder without a test split,
whose test split is its training images, said in one stderr line and in ``src.test_is_train``.
"""

from __future__ import annotations

from pathlib import Path

import ml_collections
import numpy as np
import pytest
from PIL import Image

from imsyn.data import get_source
from imsyn.data.sources import split_folder
from imsyn.errors import ConfigError


def _images(folder: Path, names, rng) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    for name in names:
        img = rng.integers(0, 256, (12, 12, 3), dtype=np.uint8)
        Image.fromarray(img).save(folder / f"{name}.png")


@pytest.fixture
def cyclegan_layout(tmp_path, rng) -> Path:
    """Like an unpacked horse2zebra.zip: trainA (5), trainB (4), testA (3), testB (2)."""
    root = tmp_path / "h2z"
    for sub, n in (("trainA", 5), ("trainB", 4), ("testA", 3), ("testB", 2)):
        _images(root / sub, [f"{sub}_{i}" for i in range(n)], rng)
    return root


def test_cyclegan_layout_gives_each_domain_its_splits(cyclegan_layout, capfd):
    spec = f"folder:{cyclegan_layout}"
    sizes = {
        (dom, split): len(get_source(f"{spec}?domain={dom}", image_size=8, split=split))
        for dom in "AB"
        for split in ("train", "test")
    }
    assert sizes == {("A", "train"): 5, ("A", "test"): 3, ("B", "train"): 4, ("B", "test"): 2}
    src = get_source(f"{spec}?domain=B", image_size=8, split="test")
    assert src.keys == ["testB_0", "testB_1"] and not src.test_is_train
    assert "warning" not in capfd.readouterr().err


def test_cyclegan_layout_without_a_domain_is_one_line(cyclegan_layout):
    with pytest.raises(ConfigError, match=r"laid out like CycleGAN's.*\?domain=A or \?domain=B"):
        get_source(f"folder:{cyclegan_layout}", image_size=8, split="train")
    with pytest.raises(ConfigError, match=r"no trainC/ folder"):
        get_source(f"folder:{cyclegan_layout}?domain=C", image_size=8, split="train")


def test_train_and_test_subfolders(tmp_path, rng):
    _images(tmp_path / "d" / "train", range(4), rng)
    _images(tmp_path / "d" / "test", range(2), rng)
    spec = f"folder:{tmp_path / 'd'}"
    assert len(get_source(spec, image_size=8, split="train")) == 4
    test = get_source(spec, image_size=8, split="test")
    assert len(test) == 2 and not test.test_is_train
    assert len(get_source(spec, image_size=8, split="all")) == 6
    with pytest.raises(ConfigError, match=r"test_fraction applies to a folder without"):
        get_source(f"{spec}?test_fraction=0.5", image_size=8, split="test")


def test_test_fraction_is_a_disjoint_deterministic_hash_split(tmp_path, rng):
    folder = tmp_path / "cats"
    _images(folder, [f"cat{i:03d}" for i in range(60)], rng)
    spec = f"folder:{folder}?test_fraction=0.25"
    train = get_source(spec, image_size=8, split="train")
    test = get_source(spec, image_size=8, split="test")
    assert not set(train.keys) & set(test.keys)
    assert sorted(train.keys + test.keys) == [f"cat{i:03d}" for i in range(60)]
    assert 5 <= len(test) <= 25 and not test.test_is_train
    assert get_source(spec, image_size=8, split="test").keys == test.keys  # deterministic
    # a file's side depends on its own path only: more files leave the old ones where they were
    _images(folder, [f"new{i}" for i in range(10)], rng)
    grown = get_source(spec, image_size=8, split="test")
    assert [k for k in grown.keys if k.startswith("cat")] == test.keys


@pytest.mark.parametrize("value", ["0", "1", "1.5", "-0.1", "x", "nan"])
def test_bad_test_fraction_is_refused(tmp_path, rng, value):
    _images(tmp_path / "d", range(3), rng)
    with pytest.raises(ConfigError, match=r"test_fraction must be a number in \(0, 1\)"):
        get_source(f"folder:{tmp_path / 'd'}?test_fraction={value}", image_size=8)


def test_a_fraction_that_empties_a_side_is_refused(tmp_path, rng):
    _images(tmp_path / "d", ["only"], rng)
    with pytest.raises(ConfigError, match=r"leaves the (train|test) split empty"):
        get_source(f"folder:{tmp_path / 'd'}?test_fraction=0.5", image_size=8, split="test")


def test_no_test_split_says_so_once_and_marks_the_source(tmp_path, rng, capfd):
    _images(tmp_path / "cats", range(5), rng)
    spec = f"folder:{tmp_path / 'cats'}"
    train = get_source(spec, image_size=8, split="train")
    assert not train.test_is_train
    assert "warning" not in capfd.readouterr().err
    test = get_source(spec, image_size=8, split="test")
    assert test.test_is_train and test.keys == train.keys
    warnings = [ln for ln in capfd.readouterr().err.splitlines() if "warning" in ln]
    assert len(warnings) == 1 and "no test split" in warnings[0]
    assert "test_fraction" in warnings[0]
    # a train/ sub-folder alone: its images stand in for the test split (not the whole folder)
    _images(tmp_path / "only_train" / "train", range(3), rng)
    _images(tmp_path / "only_train" / "extra", range(2), rng)
    src = get_source(f"folder:{tmp_path / 'only_train'}", image_size=8, split="test")
    assert len(src) == 3 and src.test_is_train


def test_split_folder_and_emoji_sources_default_to_a_real_test_split(tmp_path, rng):
    _images(tmp_path / "p", range(2), rng)
    part = split_folder(tmp_path / "p", "test")
    assert part.test_is_train and len(part.files) == 2 and part.note
    assert not get_source("emoji:twemoji?limit=4", image_size=8, split="test").test_is_train


def test_cyclegan_task_reads_a_cyclegan_layout(cyclegan_layout):
    """``config.data``/``data_y`` as one folder with ``?domain=A``/``B``: the task's loader gets
    four real splits; two plain folders give test sources marked ``test_is_train``."""
    from imsyn.tasks import cyclegan

    config = ml_collections.ConfigDict(
        {
            "data": f"folder:{cyclegan_layout}?domain=A",
            "data_y": f"folder:{cyclegan_layout}?domain=B",
            "image_size": 8,
        }
    )
    sources = cyclegan.load_sources(config)
    assert {k: len(v) for k, v in sources.items()} == {
        ("x", "train"): 5,
        ("x", "test"): 3,
        ("y", "train"): 4,
        ("y", "test"): 2,
    }
    assert not any(s.test_is_train for s in sources.values())
    config.data = f"folder:{cyclegan_layout / 'trainA'}"
    config.data_y = f"folder:{cyclegan_layout / 'trainB'}"
    sources = cyclegan.load_sources(config)
    assert [k for k, s in sorted(sources.items()) if s.test_is_train] == [
        ("x", "test"),
        ("y", "test"),
    ]

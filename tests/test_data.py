"""Data sources (emoji, folders, TFDS) and the grain pipeline."""

import importlib.util
import json
import pickle
import sys

import numpy as np
import pytest

from imsyn.data import ArraySource, emoji_keys, emoji_pairs, get_source, make_loader
from imsyn.data import sources as sources_mod
from imsyn.errors import ConfigError, InputError
from imsyn.image import write_bytes, write_image

# --------------------------------------------------------------------------- emoji


@pytest.fixture(scope="module")
def emoji_cache(tmp_path_factory):
    return tmp_path_factory.mktemp("emoji-cache")


@pytest.fixture(scope="module")
def hearts(emoji_cache):
    """The ~25 coloured hearts in both styles: distinct colours make pairing checkable."""
    return emoji_pairs(image_size=32, split="all", category="heart", cache_dir=emoji_cache)


def _ink_colour(img):
    px = img.reshape(-1, 3).astype(float)
    return np.median(px[(px < 230).any(1)], axis=0)


# Plain hearts in 12 colours: red, orange, yellow, green, blue, purple, brown, black, white,
# pink, light blue, grey.
COLOURED = "2764 1f9e1 1f49b 1f49a 1f499 1f49c 1f90e 1f5a4 1f90d 1fa77 1fa75 1fa76".split()


def test_emoji_pairs_share_code_points_and_look_alike(hearts):
    x, y, keys = hearts
    assert set(COLOURED) <= set(keys) and keys == sorted(keys)
    assert x.shape == y.shape == (len(keys), 32, 32, 3) and x.dtype == y.dtype == np.uint8
    assert not np.array_equal(x, y)
    # White background in both styles (a few emoji, e.g. heart decoration, fill the tile).
    assert (x[:, 0, 0] > 240).all(-1).mean() > 0.8 and (y[:, 0, 0] > 240).all(-1).mean() > 0.8
    # Pairing: for most coloured hearts the OpenMoji heart closest in ink colour to the
    # Twemoji one is the same code point (chance level: 1/12).
    idx = [keys.index(k) for k in COLOURED]
    cx = np.stack([_ink_colour(x[i]) for i in idx])
    cy = np.stack([_ink_colour(y[i]) for i in idx])
    dist = ((cx[:, None] - cy[None]) ** 2).sum(-1)
    assert (np.argmin(dist, axis=1) == np.arange(len(idx))).mean() >= 0.5
    assert np.diag(dist).mean() < 0.5 * dist[~np.eye(len(idx), dtype=bool)].mean()


def test_emoji_cache_hit_needs_no_rendering(hearts, emoji_cache, monkeypatch):
    files = sorted(p.name for p in emoji_cache.glob("*.npz"))
    assert any(f.startswith("twemoji-32px-all-heart") for f in files)
    assert any(f.startswith("openmoji-32px-all-heart") for f in files)

    def boom(*a, **k):
        raise AssertionError("rendered although cached")

    monkeypatch.setattr(sources_mod, "_render_twemoji", boom)
    monkeypatch.setattr(sources_mod, "_OpenMojiRenderer", boom)
    again = emoji_pairs(image_size=32, split="all", category="heart", cache_dir=emoji_cache)
    np.testing.assert_array_equal(again.x, hearts.x)
    np.testing.assert_array_equal(again.y, hearts.y)
    assert again.keys == hearts.keys


def test_emoji_source_is_picklable_without_copying_cached_arrays(emoji_cache, hearts):
    src = get_source(
        "emoji:openmoji", image_size=32, split="all", category="heart", cache_dir=emoji_cache
    )
    blob = pickle.dumps(src)
    assert len(blob) < src.images.nbytes // 4  # sends the cache path, not the pixels
    back = pickle.loads(blob)
    np.testing.assert_array_equal(back[3], src[3])
    assert back.keys == src.keys and back.name == "emoji:openmoji"


def test_emoji_split_is_deterministic_disjoint_and_about_one_eighth():
    train, test, everything = (emoji_keys(split=s) for s in ("train", "test", "all"))
    assert emoji_keys(split="test") == test
    assert not set(train) & set(test)
    assert set(train) | set(test) == set(everything)
    assert 0.08 < len(test) / len(everything) < 0.17
    assert len(everything) > 3000
    # Skin-tone variants never straddle the split.
    tones = ("-1f3fb", "-1f3fc", "-1f3fd", "-1f3fe", "-1f3ff")
    side = {k: "test" for k in test} | {k: "train" for k in train}
    for k in everything:
        for t in tones:
            if k.endswith(t) and "-" not in k[: -len(t)] and k[: -len(t)] in side:
                assert side[k] == side[k[: -len(t)]]


def test_emoji_category_and_limit(emoji_cache):
    faces = emoji_keys(split="all", category="faces")
    assert "1f600" in faces and "1f436" not in faces  # grinning face yes, dog face no
    src = get_source(
        "emoji:twemoji", image_size=16, split="train", category="faces", limit=3,
        cache_dir=emoji_cache,
    )  # fmt: skip
    assert len(src) == 3 and src[0].shape == (16, 16, 3)
    train = set(emoji_keys(split="train"))
    assert src.keys == [k for k in faces if k in train][:3]
    in_spec = get_source(
        f"emoji:twemoji?category=faces&limit=3&cache_dir={emoji_cache}", image_size=16
    )  # options travel with the source string
    assert in_spec.keys == src.keys
    with pytest.raises(ConfigError, match="unknown emoji category 'dinosaurs'"):
        emoji_keys(category="dinosaurs")
    with pytest.raises(ConfigError, match="emoji style"):
        get_source("emoji:notoemoji", image_size=32)
    with pytest.raises(ConfigError, match="emoji split"):
        get_source("emoji:twemoji", image_size=32, split="trainA")


# --------------------------------------------------------------------------- folders


def _png_bytes(arr):
    import io

    from PIL import Image

    buf = io.BytesIO()
    Image.fromarray(arr).save(buf, format="PNG")
    return buf.getvalue()


@pytest.fixture
def folder(tmp_path, rng):
    root = tmp_path / "imgs"
    write_image(root / "a.png", rng.integers(0, 256, (40, 60, 3), dtype=np.uint8))
    rgba = np.zeros((20, 20, 4), np.uint8)  # fully transparent -> white
    write_image(root / "sub" / "clear.png", rgba)
    write_image(root / "sub" / "gray.jpg", np.full((30, 30), 90, np.uint8))
    return root


def test_folder_source_recursive_resized_on_white(folder):
    src = get_source(f"folder:{folder}", image_size=16)
    assert src.keys == ["a", "sub/clear", "sub/gray"]
    assert len(src) == 3 and all(src[i].shape == (16, 16, 3) for i in range(3))
    assert src[0].dtype == np.uint8
    assert (src[1] == 255).all()  # transparent -> white
    g = src[2].astype(int)
    assert (g[..., 0] == g[..., 1]).all() and (g[..., 1] == g[..., 2]).all()  # gray -> RGB
    assert abs(g.mean() - 90) <= 2


def test_folder_split_subfolder(tmp_path, rng):
    for split, n in (("train", 3), ("test", 1)):
        for i in range(n):
            write_image(tmp_path / split / f"{i}.png", rng.integers(0, 256, (8, 8, 3), np.uint8))
    assert len(get_source(f"folder:{tmp_path}", image_size=8, split="train")) == 3
    assert len(get_source(f"folder:{tmp_path}", image_size=8, split="test")) == 1
    assert len(get_source(f"folder:{tmp_path}", image_size=8, split="all")) == 4


def test_folder_errors(tmp_path, folder):
    with pytest.raises(InputError, match="no such folder"):
        get_source(f"folder:{tmp_path / 'missing'}", image_size=16)
    (tmp_path / "empty").mkdir()
    (tmp_path / "empty" / "notes.txt").write_text("not an image")
    with pytest.raises(InputError, match="no image files"):
        get_source(f"folder:{tmp_path / 'empty'}", image_size=16)
    with pytest.raises(ConfigError, match="missing folder path"):
        get_source("folder:", image_size=16)
    bad = folder / "sub" / "broken.png"
    write_bytes(bad, _png_bytes(np.zeros((8, 8, 3), np.uint8))[:40])  # truncated
    src = get_source(f"folder:{folder}", image_size=16)  # files are read on access
    assert src.keys == ["a", "sub/broken", "sub/clear", "sub/gray"]
    with pytest.raises(InputError, match=r"broken\.png.*skip_corrupt=1") as e:
        src[1]
    assert "\n" not in str(e.value)
    src = get_source(f"folder:{folder}?skip_corrupt=1", image_size=16)
    assert len(src) == 4 and not src.skipped
    np.testing.assert_array_equal(src[1], src[2])  # the next readable image stands in
    assert len(src.skipped) == 1 and src.skipped[0].endswith("broken.png")
    only_bad = tmp_path / "allbad"
    write_bytes(only_bad / "x.jpg", b"definitely not a jpeg")
    with pytest.raises(InputError, match="none of the 1 image files"):
        get_source(f"folder:{only_bad}", image_size=16, skip_corrupt=True)[0]


def test_unknown_specs_and_options(folder):
    for spec in ("cats", "s3:bucket/cats", "", None):
        with pytest.raises(ConfigError, match="unknown data source"):
            get_source(spec, image_size=32)
    with pytest.raises(ConfigError, match="unknown data source option 'colour'"):
        get_source(f"folder:{folder}", image_size=16, colour="red")
    with pytest.raises(ConfigError, match="'category' does not apply to folder"):
        get_source(f"folder:{folder}", image_size=16, category="faces")
    with pytest.raises(ConfigError, match="'category' does not apply to folder"):
        get_source(f"folder:{folder}?category=faces", image_size=16)
    with pytest.raises(ConfigError, match="option limit must be an integer >= 1, got 'x'"):
        get_source("emoji:twemoji?limit=x", image_size=16)
    with pytest.raises(ConfigError, match="key=value pairs"):
        get_source("emoji:twemoji?faces", image_size=16)
    with pytest.raises(ConfigError, match="image_size"):
        get_source(f"folder:{folder}", image_size=2)


# --------------------------------------------------------------------------- TFDS

HAVE_TFDS = importlib.util.find_spec("tensorflow_datasets") is not None


def test_tfds_missing_says_how_to_install(monkeypatch):
    monkeypatch.setitem(sys.modules, "tensorflow_datasets", None)  # import fails as if absent
    with pytest.raises(ConfigError, match=r"pip install 'imsyn\[tfds\]'"):
        get_source("tfds:cycle_gan/horse2zebra", image_size=32, split="trainA")


@pytest.mark.skipif(not HAVE_TFDS, reason="tensorflow_datasets is not installed (imsyn[tfds])")
def test_tfds_local_dataset(tmp_path):
    import tensorflow_datasets as tfds
    from PIL import Image

    class ImsynTinyPairs(tfds.core.GeneratorBasedBuilder):
        VERSION = tfds.core.Version("1.0.0")

        def _info(self):
            feats = {"image": tfds.features.Image(shape=(None, None, 3))}
            return tfds.core.DatasetInfo(builder=self, features=tfds.features.FeaturesDict(feats))

        def _split_generators(self, dl_manager):
            return {"trainA": self._generate_examples(5), "testA": self._generate_examples(2)}

        def _generate_examples(self, n):
            for i in range(n):  # PIL images: encoding them needs no TensorFlow
                yield i, {"image": Image.fromarray(np.full((10 + i, 20, 3), 40 * i, np.uint8))}

    ImsynTinyPairs(data_dir=tmp_path, file_format="array_record").download_and_prepare()
    src = get_source("tfds:imsyn_tiny_pairs", image_size=8, split="trainA", data_dir=tmp_path)
    assert len(src) == 5 and src.keys[0] == "trainA:0"
    got = sorted(int(src[i][0, 0, 0]) for i in range(5))
    assert got == [0, 40, 80, 120, 160] and src[0].shape == (8, 8, 3)
    back = pickle.loads(pickle.dumps(src))
    np.testing.assert_array_equal(back[2], src[2])
    with pytest.raises(ConfigError, match="no split 'trainB'; available: testA, trainA"):
        get_source("tfds:imsyn_tiny_pairs", image_size=8, split="trainB", data_dir=tmp_path)
    with pytest.raises(ConfigError, match="unknown TFDS dataset"):
        get_source("tfds:imsyn_no_such_set", image_size=8, data_dir=tmp_path)
    batch = next(make_loader(src, batch_size=2, seed=0, image_size=8))
    assert batch["image"].shape == (2, 8, 8, 3)


# --------------------------------------------------------------------------- loader


@pytest.fixture
def indexed():
    """12 flat images whose pixel value is their index (to track them through the loader)."""
    imgs = np.repeat(np.arange(12, dtype=np.uint8)[:, None, None, None] * 20, 8, 1)
    imgs = np.repeat(np.repeat(imgs, 8, 2), 3, 3)
    return ArraySource(imgs, [str(i) for i in range(12)], "test:indexed")


def _ids(batch):
    # [-1, 1] back to the index (flat images survive "none" augmentation exactly).
    return np.rint((batch["image"][:, 0, 0, 0] + 1) * 127.5 / 20).astype(int).tolist()


def test_loader_batches_epochs_and_determinism(indexed):
    it = make_loader(indexed, batch_size=4, seed=0, image_size=8, num_epochs=2)
    batches = list(it)
    assert len(batches) == 6
    b = batches[0]["image"]
    assert b.shape == (4, 8, 8, 3) and b.dtype == np.float32 and -1 <= b.min() <= b.max() <= 1
    ep1 = sum((_ids(x) for x in batches[:3]), [])
    ep2 = sum((_ids(x) for x in batches[3:]), [])
    assert sorted(ep1) == sorted(ep2) == list(range(12))  # each image once per epoch
    assert ep1 != ep2 and ep1 != list(range(12))  # reshuffled each epoch
    again = list(make_loader(indexed, batch_size=4, seed=0, image_size=8, num_epochs=2))
    assert all(np.array_equal(x["image"], y["image"]) for x, y in zip(batches, again, strict=True))
    other = list(make_loader(indexed, batch_size=4, seed=1, image_size=8, num_epochs=2))
    assert sum((_ids(x) for x in other[:3]), []) != ep1
    plain = make_loader(indexed, batch_size=4, seed=0, image_size=8, shuffle=False)
    assert _ids(next(plain)) == [0, 1, 2, 3]


@pytest.mark.parametrize("augment", ["none", "basic", "deluxe"])
def test_iterator_state_restores_the_same_following_batches(rng, augment):
    imgs = rng.integers(0, 256, (10, 12, 12, 3), dtype=np.uint8)
    src = ArraySource(imgs, [str(i) for i in range(10)], "test:random")
    kw = dict(batch_size=3, seed=7, augment=augment, image_size=8)
    it = make_loader(src, **kw)
    for _ in range(4):  # crosses an epoch boundary (10 images, batches of 3)
        next(it)
    state = json.loads(json.dumps(it.get_state()))  # storable as JSON with a checkpoint
    expected = [next(it)["image"] for _ in range(5)]
    resumed = make_loader(src, **kw)
    resumed.set_state(state)
    for want in expected:
        np.testing.assert_array_equal(next(resumed)["image"], want)


def test_shards_are_disjoint_and_cover_the_source(indexed):
    seen = []
    for k in range(2):
        it = make_loader(
            indexed, batch_size=2, seed=0, image_size=8, num_epochs=1, shuffle=False,
            shard_index=k, shard_count=2,
        )  # fmt: skip
        seen.append(sum((_ids(b) for b in it), []))
    assert not set(seen[0]) & set(seen[1])
    assert sorted(seen[0] + seen[1]) == list(range(12))


def test_workers_deliver_the_same_batches_as_threads(indexed):
    kw = dict(batch_size=4, seed=3, augment="basic", image_size=8, num_epochs=1)
    ref = [b["image"] for b in make_loader(indexed, **kw)]
    it = make_loader(indexed, worker_count=2, **kw)
    try:
        got = [b["image"] for b in it]
    finally:
        it.close()
    assert len(got) == len(ref) == 3
    for a, b in zip(got, ref, strict=True):
        np.testing.assert_array_equal(a, b)


def test_loader_argument_errors(indexed):
    with pytest.raises(ConfigError, match="fewer than batch_size=16"):
        make_loader(indexed, batch_size=16, seed=0, image_size=8)
    with pytest.raises(ConfigError, match="augment must be one of"):
        make_loader(indexed, batch_size=2, seed=0, image_size=8, augment="heavy")
    with pytest.raises(ConfigError, match="shard_index"):
        make_loader(indexed, batch_size=2, seed=0, image_size=8, shard_index=2, shard_count=2)

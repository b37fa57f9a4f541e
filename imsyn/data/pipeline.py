"""Grain input pipelines: shuffle, augment, batch, prefetch, checkpointable iterators.

:func:`make_loader` turns a :class:`~imsyn.data.sources.Source` into an iterator of
``{"image": float32[B, S, S, 3]}`` batches in ``[-1, 1]``. Everything random (the shuffle
order of each epoch, each image's augmentation) is a function of ``seed`` and the element's
position, so the stream is identical across runs, worker counts and restarts; the
iterator's ``get_state()`` / ``set_state()`` make a resumed run see exactly the batches an
uninterrupted one would. The state is a small JSON dict, which the training loop stores in
its checkpoint's ``meta`` item (:mod:`imsyn.training.checkpoint`).
"""

from __future__ import annotations

import grain
import numpy as np

from imsyn.augment import HOST_AUGMENTS, host_augment_fn
from imsyn.data.sources import Source
from imsyn.errors import ConfigError
from imsyn.image import to_float, to_network


class _Augment(grain.transforms.RandomMap):
    """``Source`` element -> ``{"image": uint8[S, S, 3]}`` with the named augmentation."""

    def __init__(self, augment: str, image_size: int):
        self.augment, self.image_size = augment, image_size
        self._fn = host_augment_fn(augment, image_size)

    def random_map(self, element, rng: np.random.Generator):
        return {"image": self._fn(element, rng)}

    def __getstate__(self):
        return {"augment": self.augment, "image_size": self.image_size}

    def __setstate__(self, state):
        self.__init__(state["augment"], state["image_size"])


class _ToNetwork(grain.transforms.Map):
    """``uint8`` batch -> ``float32`` in ``[-1, 1]``."""

    def map(self, batch):
        return {"image": to_network(to_float(batch["image"]))}


def _ensure_flags_parsed() -> None:
    """Grain's worker processes read absl flags; outside an absl app use their defaults."""
    from absl import flags

    if not flags.FLAGS.is_parsed():
        flags.FLAGS.mark_as_parsed()


def make_dataset(
    source: Source,
    *,
    batch_size: int,
    seed: int,
    augment: str = "none",
    image_size: int,
    shuffle: bool = True,
    num_epochs: int | None = None,
    worker_count: int = 0,
    shard_index: int = 0,
    shard_count: int = 1,
    num_threads: int = 2,
    prefetch: int = 4,
) -> grain.IterDataset:
    """The grain dataset behind :func:`make_loader`, not yet iterated.

    Same arguments as :func:`make_loader`, plus ``num_threads`` (threads reading and
    augmenting in each process) and ``prefetch`` (batches buffered ahead). Epochs are
    concatenated before batching, so with ``num_epochs=None`` a batch may span two epochs.
    """
    if augment not in HOST_AUGMENTS:
        raise ConfigError(f"augment must be one of {', '.join(HOST_AUGMENTS)}; got {augment!r}")
    if not isinstance(batch_size, int | np.integer) or batch_size <= 0:
        raise ConfigError(f"batch_size must be a positive integer, got {batch_size!r}")
    if not 0 <= shard_index < shard_count:
        raise ConfigError(f"shard_index={shard_index} must be in [0, shard_count={shard_count})")
    if num_epochs is not None and num_epochs < 1:
        raise ConfigError(f"num_epochs must be None (forever) or >= 1, got {num_epochs!r}")
    if worker_count < 0:
        raise ConfigError(f"worker_count must be >= 0, got {worker_count!r}")
    ds = grain.MapDataset.source(source)
    if len(ds) < batch_size * shard_count:
        times = f" x shard_count={shard_count}" if shard_count > 1 else ""
        raise ConfigError(
            f"data source {source.name!r} has {len(ds)} images, fewer than "
            f"batch_size={batch_size}{times}"
        )
    ds = ds.seed(int(seed))
    if shuffle:
        ds = ds.shuffle()
    ds = ds.repeat(num_epochs)
    ds = ds.random_map(_Augment(augment, int(image_size)))
    ds = ds.batch(int(batch_size), drop_remainder=True)
    if shard_count > 1:
        # local batch j of process k = rows of global batch j: the same global stream for any
        # shard_count; whole global batches only, so every process gets as many batches
        ds = ds[: len(ds) - len(ds) % shard_count][shard_index::shard_count]
    ds = ds.map(_ToNetwork())
    it = ds.to_iter_dataset(
        grain.ReadOptions(num_threads=num_threads, prefetch_buffer_size=prefetch)
    )
    if worker_count > 0:
        _ensure_flags_parsed()
        it = it.mp_prefetch(grain.MultiprocessingOptions(num_workers=int(worker_count)))
    return it


def make_loader(
    source: Source,
    *,
    batch_size: int,
    seed: int,
    augment: str = "none",
    image_size: int,
    shuffle: bool = True,
    num_epochs: int | None = None,
    worker_count: int = 0,
    shard_index: int = 0,
    shard_count: int = 1,
):
    """A deterministic, checkpointable iterator of training batches.

    Args:
      source: images to load.
      batch_size: LOCAL batch (rows this process loads; the global batch divided by
        ``jax.process_count()``). Incomplete final batches are dropped.
      seed: determines the shuffle order of every epoch and every augmentation.
      augment: ``none`` (fit to ``image_size``), ``basic`` or ``deluxe`` (see
        :mod:`imsyn.augment`).
      image_size: side of the delivered images.
      shuffle: shuffle the order (a different permutation each epoch).
      num_epochs: ``None`` repeats forever; otherwise stops after that many epochs.
      worker_count: grain worker processes (0 = threads in this process).
      shard_index: this process's index (``jax.process_index()``).
      shard_count: number of processes (``jax.process_count()``). The stream of global
        batches (``shard_count * batch_size`` rows) is the same for every
        ``shard_count``: process ``k`` loads rows ``[k * batch_size, (k + 1) *
        batch_size)`` of each, so a multi-host run sees the batches of a one-process run
        with the same global batch (same shuffle, same augmentation of each image).

    Returns:
      A grain ``DatasetIterator`` yielding ``{"image": float32[batch_size, S, S, 3]}`` in
      ``[-1, 1]``, with ``get_state() -> dict`` and ``set_state(dict)``. Close it
      (``it.close()``) when using workers.

    Raises:
      ConfigError: invalid argument, or fewer images than ``batch_size``.
    """
    return iter(
        make_dataset(
            source,
            batch_size=batch_size,
            seed=seed,
            augment=augment,
            image_size=image_size,
            shuffle=shuffle,
            num_epochs=num_epochs,
            worker_count=worker_count,
            shard_index=shard_index,
            shard_count=shard_count,
        )
    )

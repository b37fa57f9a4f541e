"""Placing batches on devices: a 1-D ``data`` mesh over all devices.

The same code runs on 1 CPU, 8 fake CPU devices, a GPU or a TPU slice. On a
multi-host run (after ``jax.distributed.initialize()``) each process feeds its
local slice of the global batch and :func:`shard_batch` assembles the global
array with ``jax.make_array_from_process_local_data``.
"""

from __future__ import annotations

import jax
import numpy as np
from jax.sharding import Mesh, NamedSharding, PartitionSpec

from imsyn.errors import ConfigError

DATA_AXIS = "data"


def data_mesh(devices=None) -> Mesh:
    """A 1-D mesh named ``data`` over ``devices`` (default: all devices)."""
    devs = np.asarray(devices if devices is not None else jax.devices())
    return Mesh(devs.reshape(-1), (DATA_AXIS,))


def batch_sharding(mesh: Mesh) -> NamedSharding:
    """Leading (batch) axis split over ``data``; the rest replicated."""
    return NamedSharding(mesh, PartitionSpec(DATA_AXIS))


def replicated(mesh: Mesh) -> NamedSharding:
    """Fully replicated over the mesh (parameters, optimizer state, keys)."""
    return NamedSharding(mesh, PartitionSpec())


def check_batch_size(global_batch: int, mesh: Mesh) -> None:
    """Raises ConfigError unless the global batch splits evenly over the devices."""
    n = mesh.devices.size
    if global_batch <= 0 or global_batch % n:
        raise ConfigError(
            f"batch_size={global_batch} must be a positive multiple of the device count ({n})"
        )


def local_batch_size(global_batch: int) -> int:
    """Rows of the global batch that this process loads."""
    return global_batch // jax.process_count()


def shard_batch(batch, mesh: Mesh):
    """Places a host batch (pytree of numpy arrays, leading axis = batch) on the mesh.

    On one process the arrays are the global batch; on several, each process
    passes its local rows and the result is the global array.
    """
    sharding = batch_sharding(mesh)
    if jax.process_count() == 1:
        return jax.device_put(batch, sharding)
    return jax.tree.map(lambda x: jax.make_array_from_process_local_data(sharding, x), batch)

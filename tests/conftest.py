"""Shared test set-up: persistent compilation cache, tiny deterministic inputs."""

import os

# Keep JAX on one CPU device for the in-process tests; multi-device tests run a
# subprocess with XLA_FLAGS=--xla_force_host_platform_device_count=8.
os.environ.setdefault("JAX_PLATFORMS", "cpu")

import numpy as np  # noqa: E402
import pytest  # noqa: E402

from imsyn.runtime import enable_compilation_cache  # noqa: E402

enable_compilation_cache()


@pytest.fixture
def photo() -> np.ndarray:
    """A real colour photo shipped with scikit-image (astronaut), float32 [H, W, 3] in [0, 1]."""
    from skimage import data

    return data.astronaut().astype(np.float32) / 255.0


@pytest.fixture
def rng() -> np.random.Generator:
    return np.random.default_rng(0)

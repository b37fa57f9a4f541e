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


@pytest.fixture
def pretrained():
    """``pretrained(name) -> Path`` of a fetched, verified network (vgg19, inception_fid,
    lpips_vgg16). Fails, never skips, when it is missing: the README's test command fetches
    them first (``python -m imsyn weights fetch all``)."""
    from imsyn import weights

    def get(name: str, *, original: bool = False):
        """The converted file, or with ``original=True`` the published file as fetched."""
        path = weights.original(name) if original else weights.cached(name)
        if path is None:
            pytest.fail(
                f"{name} weights are not in the cache: run `python -m imsyn weights fetch all`"
            )
        return path

    return get

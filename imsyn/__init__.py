"""imsyn: learning-based image synthesis in JAX/Flax.

Submodules are imported lazily (``from imsyn import align`` or ``imsyn.align``)
so that ``import imsyn`` stays fast and does not start JAX.
"""

from __future__ import annotations

import importlib

__version__ = "0.1.0"

_SUBMODULES = (
    "align",
    "augment",
    "data",
    "editing",
    "errors",
    "image",
    "losses",
    "metrics",
    "models",
    "nst",
    "poisson",
    "progress",
    "report",
    "runtime",
    "trained",
    "training",
)


def __getattr__(name: str):
    if name in _SUBMODULES:
        return importlib.import_module(f"imsyn.{name}")
    raise AttributeError(f"module 'imsyn' has no attribute {name!r}")


def __dir__():
    return sorted(list(globals()) + list(_SUBMODULES))

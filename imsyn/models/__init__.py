"""Model registry: configs pick architectures by name.

``register(name)`` decorates a constructor (an NNX module class or a factory);
``get(name)`` returns it. Submodules are imported lazily on the first ``get``,
so a model module that is missing (or still being written) only fails when one
of its names is asked for::

    from imsyn import models
    G = models.get("dcgan_generator")(image_size=64, conv_dim=32, rngs=nnx.Rngs(0))
"""

from __future__ import annotations

import importlib
from collections.abc import Callable

from imsyn.errors import ConfigError

_REGISTRY: dict[str, Callable] = {}

# Modules that register models, imported on demand by get(); name -> module.
_MODULES = {
    "dcgan_generator": "imsyn.models.dcgan",
    "dc_discriminator": "imsyn.models.dcgan",
    "cycle_resnet": "imsyn.models.cyclegan",
    "patch_discriminator": "imsyn.models.cyclegan",
    "patch70_discriminator": "imsyn.models.cyclegan",
    "patch16_discriminator": "imsyn.models.cyclegan",
    "vgg19": "imsyn.models.vgg",
    "style_generator": "imsyn.models.stylegan",
}


def register(name: str) -> Callable[[Callable], Callable]:
    """Decorator registering a model constructor under ``name``."""

    def deco(fn: Callable) -> Callable:
        if name in _REGISTRY and _REGISTRY[name] is not fn:
            raise ValueError(f"model {name!r} is already registered")
        _REGISTRY[name] = fn
        return fn

    return deco


def get(name: str) -> Callable:
    """Returns the constructor registered under ``name``.

    Raises:
      ConfigError: unknown name, or its module is not available.
    """
    if name not in _REGISTRY and name in _MODULES:
        try:
            importlib.import_module(_MODULES[name])
        except ModuleNotFoundError as e:
            if e.name and e.name.startswith("imsyn"):
                raise ConfigError(
                    f"model {name!r} is not available in this build ({e.name} missing)"
                ) from None
            raise
    if name not in _REGISTRY:
        raise ConfigError(
            f"unknown model {name!r}; known: {sorted(set(_MODULES) | set(_REGISTRY))}"
        )
    return _REGISTRY[name]


def names() -> list[str]:
    """All model names (registered or importable)."""
    return sorted(set(_MODULES) | set(_REGISTRY))

"""Process-level set-up shared by CLIs, train.py/eval.py and tests.

* :func:`cache_dir` — the imsyn cache home (``$IMSYN_CACHE_DIR``, else
  ``$XDG_CACHE_HOME/imsyn``, else ``~/.cache/imsyn``).
* :func:`enable_compilation_cache` — JAX's persistent compilation cache under
  ``cache_dir()/jax`` so that a second run of the same command does not recompile.
"""

from __future__ import annotations

import os
from pathlib import Path

_ENABLED = False


def cache_dir(*parts: str) -> Path:
    """Returns (and creates) a directory under the imsyn cache home."""
    root = os.environ.get("IMSYN_CACHE_DIR")
    if not root:
        xdg = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
        root = os.path.join(xdg, "imsyn")
    path = Path(root, *parts)
    path.mkdir(parents=True, exist_ok=True)
    return path


def enable_compilation_cache() -> Path | None:
    """Turns on JAX's persistent compilation cache (idempotent).

    Every compiled program is cached, however quick its compile, because on a
    2-core CPU the many small kernels add up. Returns the cache directory, or
    None if it could not be created (then JAX simply compiles as usual).
    """
    global _ENABLED
    import jax

    try:
        path = cache_dir("jax")
    except OSError:
        return None
    if not _ENABLED:
        jax.config.update("jax_compilation_cache_dir", str(path))
        jax.config.update("jax_persistent_cache_min_compile_time_secs", 0.0)
        jax.config.update("jax_persistent_cache_min_entry_size_bytes", 0)
        _ENABLED = True
    return path

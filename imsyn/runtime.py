"""Process-level set-up shared by CLIs, train.py/eval.py and tests.

* :func:`cache_dir` — the imsyn cache home (``$IMSYN_CACHE_DIR``, else
  ``$XDG_CACHE_HOME/imsyn``, else ``~/.cache/imsyn``).
* :func:`enable_compilation_cache` — JAX's persistent compilation cache under
  ``cache_dir()/jax`` so that a second run of the same command does not recompile.
* :func:`keep_freed_memory` — opt-in glibc malloc settings for training processes (called
  first thing by train.py, eval.py and sweep.py, never on import).
"""

from __future__ import annotations

import ctypes
import os
import sys
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


def keep_freed_memory() -> bool:
    """Opt-in (``IMSYN_KEEP_FREED_MEMORY=1``): glibc's malloc keeps freed memory for reuse.

    XLA:CPU allocates a step's temporaries as one large buffer and frees it after the step.
    glibc serves such blocks with ``mmap`` and returns them with ``munmap``, so every step
    touches fresh pages: ~10 k page faults per step of the main job (32 px), ~0.9 M (a 3.7 GB
    buffer) per CycleGAN step at 128 px, batch 16. With one heap (XLA's worker threads would
    otherwise allocate from per-thread heaps, which still ``mmap`` large blocks), no ``mmap``
    blocks and no trimming of the heap, the faults stop: when the step comes from the
    persistent compilation cache, the main job runs 20-30 % more steps per second and the
    128 px step takes ~20 % less time. But when XLA compiles in the process, the compiler's
    allocations fragment the single heap and the main job runs ~12 % *slower*; and the
    process keeps its peak memory (8.4 instead of 5.2 GB at 128 px). Hence off by default;
    numbers in docs/cyclegan.md. Process-wide, so only for processes that imsyn starts:
    train.py, eval.py and sweep.py call it before anything else is imported (threads that
    allocated earlier would keep heaps of their own). Elsewhere than Linux/glibc it does
    nothing.

    Returns whether the settings were applied.
    """
    if os.environ.get("IMSYN_KEEP_FREED_MEMORY", "0") != "1" or not sys.platform.startswith(
        "linux"
    ):
        return False
    try:
        mallopt = ctypes.CDLL(None).mallopt
    except (OSError, AttributeError):
        return False
    m_trim_threshold, m_mmap_max, m_arena_max = -1, -4, -8  # <malloc.h>
    # mallopt takes an int: -1 becomes SIZE_MAX (never trim); 2**31 - 1 would trim the 3.7 GB
    # block of a 128 px step after every step
    settings = ((m_arena_max, 1), (m_mmap_max, 0), (m_trim_threshold, -1))
    return all(mallopt(option, value) == 1 for option, value in settings)

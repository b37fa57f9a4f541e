"""Process-level set-up shared by CLIs, train.py/eval.py and tests.

* :func:`cache_home` / :func:`cache_dir` — the imsyn cache home (``$IMSYN_CACHE_DIR``, else
  ``$XDG_CACHE_HOME/imsyn``, else ``~/.cache/imsyn``) and folders under it; the course data
  (:func:`imsyn.course_data.data_dir`) and pretrained weights (:func:`imsyn.weights.weights_dir`)
  live there.
* :func:`enable_compilation_cache` — JAX's persistent compilation cache under
  ``cache_dir()/jax`` so that a second run of the same command does not recompile.
* :func:`keep_freed_memory` — opt-in glibc malloc settings for training processes (called
  first thing by train.py, eval.py and sweep.py, never on import).
* :func:`interrupt_on_sigterm` — SIGTERM stops a command as Ctrl-C does (a
  ``KeyboardInterrupt``: cleanup runs, one line, exit 130), for every entry point.
* :func:`init_distributed` — JAX's multi-process runtime (``jax.distributed.initialize``)
  for ``train.py`` / ``eval.py``: explicit (``--multihost``, ``--coordinator=...``) or
  where :func:`detect_cluster` finds a multi-process job in the launcher's environment
  variables; before anything touches devices.
"""

from __future__ import annotations

import ctypes
import os
import sys
from pathlib import Path

_ENABLED = False


def _raise_interrupt(signum, frame):
    raise KeyboardInterrupt


def interrupt_on_sigterm():
    """Makes SIGTERM raise ``KeyboardInterrupt`` (as SIGINT does), so that ``finally``
    blocks run (staging folders removed, a checkpoint saved) and the entry point prints
    its one line and exits 130 rather than dying silently with 143.

    Returns:
      The previous handler (restore it with ``signal.signal(signal.SIGTERM, old)``), or None
      outside the main thread (where handlers cannot be set).
    """
    import signal
    import threading

    if threading.current_thread() is not threading.main_thread():
        return None
    return signal.signal(signal.SIGTERM, _raise_interrupt)


def cache_home() -> Path:
    """The imsyn cache home (not created): ``$IMSYN_CACHE_DIR``, else
    ``$XDG_CACHE_HOME/imsyn``, else ``~/.cache/imsyn``."""
    root = os.environ.get("IMSYN_CACHE_DIR")
    if not root:
        xdg = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
        root = os.path.join(xdg, "imsyn")
    return Path(root)


def cache_dir(*parts: str) -> Path:
    """Returns (and creates) a directory under the imsyn cache home."""
    path = Path(cache_home(), *parts)
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


# --------------------------------------------------------------------------- multi-host

#: how long (s) a process waits at exit for the others: process 0 evaluates alone at the end
#: of a run while the others have finished (JAX's default is 300 s)
#: the most processes a multi-host run may name (JAX takes 32-bit ids)
MAX_PROCESSES = 1 << 16
#: environment variable: seconds to wait for the coordinator (and for every process)
TIMEOUT_ENV = "IMSYN_COORDINATOR_TIMEOUT"
#: seconds a multi-host start waits for the coordinator and its peers
CONNECT_TIMEOUT_S = float(os.environ.get(TIMEOUT_ENV) or 120)
SHUTDOWN_TIMEOUT_S = 3600


#: a SLURM ``srun`` step: the variables JAX's SLURM detection reads (SLURM's documented
#: output environment); the process count is ``SLURM_NTASKS``
_SLURM_STEP = (
    "SLURM_JOB_ID",
    "SLURM_STEP_NODELIST",
    "SLURM_NTASKS",
    "SLURM_PROCID",
    "SLURM_LOCALID",
)


def _count(value: str | None) -> int:
    try:
        return int(value or 0)
    except ValueError:
        return 0


def detect_cluster() -> tuple[str, int] | None:
    """The multi-process job this process belongs to, as ``(launcher, process count)``, or None.

    Reads the environment variables that the launchers document and that
    ``jax.distributed.initialize()`` detects them by, without initialising anything or
    importing JAX's internals: a SLURM ``srun`` step (``SLURM_STEP_NODELIST``, count
    ``SLURM_NTASKS``), Open MPI's ``mpirun`` (``OMPI_MCA_orte_hnp_uri``, count
    ``OMPI_COMM_WORLD_SIZE``), a Cloud TPU slice on GKE (``TPU_WORKER_HOSTNAMES``, one host
    per process). Only a job of more than one process counts: a single SLURM task or a
    one-host TPU VM runs as before. Where only a query tells the count (a TPU pod on GCE
    asks the metadata server, a Kubernetes Job the Kubernetes API), ``--multihost`` has
    ``jax.distributed.initialize()`` ask.
    """
    env = os.environ
    if all(var in env for var in _SLURM_STEP):
        found = ("SLURM", _count(env["SLURM_NTASKS"]))
    elif "OMPI_MCA_orte_hnp_uri" in env:
        found = ("Open MPI", _count(env.get("OMPI_COMM_WORLD_SIZE")))
    elif hosts := env.get("TPU_PROCESS_ADDRESSES") or env.get("TPU_WORKER_HOSTNAMES"):
        found = ("Cloud TPU (GKE)", len([h for h in hosts.split(",") if h.strip()]))
    else:
        return None
    return found if found[1] > 1 else None


def _reach_coordinator(address: str, timeout: float) -> None:
    """Waits up to ``timeout`` s for a TCP connection to ``HOST:PORT``.

    Raises:
      ConfigError: the host does not resolve, or nothing answers in time (one line naming
        the coordinator), instead of JAX's minutes of silence and a C++ abort.
    """
    import socket
    import time

    from imsyn.errors import ConfigError

    host, _, port = address.rpartition(":")
    deadline = time.monotonic() + timeout
    while True:
        try:
            socket.create_connection((host.strip("[]"), int(port)), timeout=5).close()
            return
        except socket.gaierror as e:
            raise ConfigError(f"multi-host: coordinator {address}: unknown host ({e})") from None
        except OSError as e:
            if time.monotonic() >= deadline:
                raise ConfigError(
                    f"multi-host: coordinator {address} did not answer within {timeout:.0f} s "
                    f"({e.strerror or e}); start process 0 there first, or check "
                    f"--coordinator (${TIMEOUT_ENV} sets the wait)"
                ) from None
            time.sleep(1.0)


def _check_coordinator(address: str) -> str:
    from imsyn.errors import ConfigError

    host, sep, port = address.rpartition(":")
    if not sep or not host or not port.isdigit() or not 0 < int(port) < 65536:
        raise ConfigError(f"--coordinator must be HOST:PORT (e.g. node0:1234), got {address!r}")
    return address


def init_distributed(
    multihost: bool | None = None,
    *,
    coordinator: str | None = None,
    num_processes: int | None = None,
    process_id: int | None = None,
) -> bool:
    """Starts JAX's distributed runtime when this process is one of several; idempotent.

    Must run before anything touches JAX devices (``jax.devices()``, an array, a jit):
    ``train.py`` and ``eval.py`` call it (through :func:`imsyn.experiments.main`) right
    after parsing their flags.

    Args:
      multihost: ``True`` (``--multihost``): initialise; the coordinator, process count and
        id come from the arguments below, else from the cluster (what
        ``jax.distributed.initialize()`` detects). ``False`` (``--nomultihost``): never.
        ``None`` (default): initialise if any of the arguments below is given, or if
        :func:`detect_cluster` finds a job of several processes.
      coordinator: ``HOST:PORT`` of process 0's coordination service (``--coordinator``).
      num_processes: how many processes take part (``--num_processes``).
      process_id: this process's index in ``[0, num_processes)`` (``--process_id``).

    Returns:
      Whether the distributed runtime is initialised (by this call or an earlier one).

    Raises:
      ConfigError: contradictory or incomplete arguments, no cluster to take them from,
        or JAX already computing (one line).
    """
    import jax

    from imsyn.errors import ConfigError

    explicit = {
        "--coordinator": coordinator,
        "--num_processes": num_processes,
        "--process_id": process_id,
    }
    given = [k for k, v in explicit.items() if v is not None]
    if multihost is False:
        if given:
            raise ConfigError(f"{given[0]} contradicts --nomultihost")
        return jax.distributed.is_initialized()
    if jax.distributed.is_initialized():
        return True
    if multihost is None and not given and detect_cluster() is None:
        return False
    if num_processes is not None and not 1 <= num_processes <= MAX_PROCESSES:
        raise ConfigError(
            f"--num_processes must be an integer in [1, {MAX_PROCESSES}], got {num_processes}"
        )
    if process_id is not None and (
        not 0 <= process_id < MAX_PROCESSES
        or (num_processes is not None and process_id >= num_processes)
    ):
        bound = f"[0, {num_processes if num_processes is not None else MAX_PROCESSES})"
        raise ConfigError(f"--process_id must be an integer in {bound}, got {process_id}")
    if coordinator is not None:
        _check_coordinator(coordinator)
        if process_id:  # a peer: the coordinator must answer before JAX waits on it
            _reach_coordinator(coordinator, CONNECT_TIMEOUT_S)
    try:
        jax.distributed.initialize(
            coordinator_address=coordinator,
            num_processes=num_processes,
            process_id=process_id,
            initialization_timeout=int(CONNECT_TIMEOUT_S),
            shutdown_timeout_seconds=SHUTDOWN_TIMEOUT_S,
        )
    except ValueError as e:  # JAX: "coordinator_address should be defined." and the like
        missing = [k for k, v in explicit.items() if v is None]
        raise ConfigError(
            f"multi-host: {str(e).rstrip('.')}; no cluster (TPU pod, SLURM, Open MPI, "
            f"Kubernetes) provides it: give {' '.join(f'{k}=...' for k in missing)}"
        ) from None
    except RuntimeError as e:
        first = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
        raise ConfigError(f"multi-host: {first}") from None
    return True


def available_bytes() -> int | None:
    """Memory the default device can use: the accelerator's limit, or free host RAM on CPU."""
    import jax

    dev = jax.devices()[0]
    if dev.platform != "cpu":
        stats = dev.memory_stats() or {}
        return stats.get("bytes_limit")
    try:
        with open("/proc/meminfo") as f:
            info = dict(line.split(":", 1) for line in f)
        return int(info["MemAvailable"].split()[0]) * 1024
    except (OSError, KeyError, ValueError):
        return None

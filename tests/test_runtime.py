"""Process-level set-up: the malloc settings of the training CLIs, multi-host start-up."""

import os
import subprocess
import sys

import pytest

from imsyn.errors import ConfigError
from imsyn.runtime import detect_cluster, init_distributed

# Allocates, fills and frees a block of argv[1] MiB (above glibc's largest mmap threshold)
# 1 + argv[2] times and prints how many page faults the last argv[2] took.
_CYCLES = """
import ctypes, resource, sys
from imsyn.runtime import keep_freed_memory

applied = keep_freed_memory()
libc = ctypes.CDLL(None)
libc.malloc.restype = ctypes.c_void_p
libc.malloc.argtypes = [ctypes.c_size_t]
libc.free.argtypes = [ctypes.c_void_p]


def cycle(size=int(sys.argv[1]) << 20):  # what XLA:CPU does with a step's temporaries
    p = libc.malloc(size)
    ctypes.memset(p, 1, size)
    libc.free(p)


cycle()
before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
for _ in range(int(sys.argv[2])):
    cycle()
print(applied, resource.getrusage(resource.RUSAGE_SELF).ru_minflt - before)
"""


def _faults(keep: str | None, mib: int = 64, cycles: int = 5) -> tuple[str, int]:
    env = {k: v for k, v in os.environ.items() if k != "IMSYN_KEEP_FREED_MEMORY"}
    if keep is not None:
        env["IMSYN_KEEP_FREED_MEMORY"] = keep
    cmd = [sys.executable, "-c", _CYCLES, str(mib), str(cycles)]
    out = subprocess.run(cmd, env=env, capture_output=True, text=True, check=True).stdout.split()
    return out[0], int(out[1])


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="glibc malloc settings")
def test_keep_freed_memory_reuses_pages_instead_of_faulting_them_in_again():
    applied, faults = _faults("1")
    assert applied == "True"
    assert faults < 2000  # 5 x 16384 pages reused
    for keep in (None, "0"):  # off by default: glibc maps and unmaps the block every time
        applied, faults = _faults(keep)
        assert applied == "False"
        assert faults > 4 * 16384


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="glibc malloc settings")
def test_keep_freed_memory_keeps_blocks_above_2_gib():
    # a 128 px CycleGAN step frees a 3.7 GB block; mallopt's int trim threshold must not
    # return it to the OS after every step (2**31 - 1 would)
    applied, faults = _faults("1", mib=2200, cycles=1)
    assert applied == "True"
    assert faults < 2000  # 563,200 pages reused


def test_training_scripts_set_it_up_before_anything_else():
    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    for script in ("train.py", "eval.py", "sweep.py"):
        with open(os.path.join(root, script)) as f:
            body = f.read().split('if __name__ == "__main__":')[1]
        assert body.split()[0] == "keep_freed_memory()", script


# --------------------------------------------------------------------------- multi-host

_SLURM = ("SLURM_JOB_ID", "SLURM_STEP_NODELIST", "SLURM_NTASKS", "SLURM_PROCID", "SLURM_LOCALID")


@pytest.fixture
def no_cluster(monkeypatch):
    for var in (
        *_SLURM,
        "OMPI_MCA_orte_hnp_uri",
        "OMPI_COMM_WORLD_SIZE",
        "TPU_PROCESS_ADDRESSES",
        "TPU_WORKER_HOSTNAMES",
        "KUBERNETES_SERVICE_HOST",
    ):
        monkeypatch.delenv(var, raising=False)
    return monkeypatch


def test_detect_cluster_finds_a_slurm_step_of_several_tasks_only(no_cluster):
    assert detect_cluster() is None  # this machine: no cluster, nothing initialised
    values = dict(zip(_SLURM, ("7", "node[0-1]", "2", "1", "0"), strict=True))
    for var, v in values.items():
        no_cluster.setenv(var, v)
    assert detect_cluster() == ("SLURM", 2)
    no_cluster.setenv("SLURM_NTASKS", "1")  # one task: runs as before
    assert detect_cluster() is None
    no_cluster.delenv("SLURM_STEP_NODELIST")  # salloc without srun: not a step
    no_cluster.setenv("SLURM_NTASKS", "2")
    assert detect_cluster() is None


def test_detect_cluster_finds_mpirun_and_gke_tpu_jobs_of_several_processes(no_cluster):
    no_cluster.setenv("OMPI_MCA_orte_hnp_uri", "1234.0;tcp://10.0.0.1:5000")
    no_cluster.setenv("OMPI_COMM_WORLD_SIZE", "4")
    assert detect_cluster() == ("Open MPI", 4)
    no_cluster.setenv("OMPI_COMM_WORLD_SIZE", "1")
    assert detect_cluster() is None
    no_cluster.delenv("OMPI_MCA_orte_hnp_uri")
    no_cluster.setenv("TPU_WORKER_HOSTNAMES", "host-0,host-1")
    assert detect_cluster() == ("Cloud TPU (GKE)", 2)
    no_cluster.setenv("TPU_WORKER_HOSTNAMES", "localhost")  # one host: runs as before
    assert detect_cluster() is None


def test_init_distributed_stays_single_process_without_a_cluster(no_cluster):
    import jax

    assert init_distributed() is False
    assert init_distributed(False) is False
    assert not jax.distributed.is_initialized()


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"multihost": False, "process_id": 0}, "--process_id contradicts --nomultihost"),
        ({"num_processes": 0}, "--num_processes must be an integer in [1, 65536], got 0"),
        ({"num_processes": 2, "process_id": 2}, "--process_id must be an integer in [0, 2)"),
        ({"process_id": -1}, "--process_id must be an integer in [0, 65536)"),
        ({"coordinator": "node0"}, "--coordinator must be HOST:PORT"),
        ({"coordinator": "node0:99999"}, "--coordinator must be HOST:PORT"),
    ],
)
def test_init_distributed_refuses_bad_arguments_before_starting_anything(
    no_cluster, kwargs, message
):
    import jax

    with pytest.raises(ConfigError) as e:
        init_distributed(**kwargs)
    assert message in str(e.value)
    assert not jax.distributed.is_initialized()


def test_multihost_without_a_cluster_or_coordinator_says_what_to_give():
    env = {k: v for k, v in os.environ.items() if k not in _SLURM}
    env["JAX_PLATFORMS"] = "cpu"
    code = (
        "from imsyn.errors import ConfigError\n"
        "from imsyn.runtime import init_distributed\n"
        "try:\n    init_distributed(True)\nexcept ConfigError as e:\n    print(e)\n"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], env=env, capture_output=True, text=True, check=True
    ).stdout
    assert "no cluster" in out and "--coordinator=... --num_processes=... --process_id=..." in out

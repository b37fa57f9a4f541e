"""Process-level set-up: the malloc settings of the training CLIs."""

import os
import subprocess
import sys

import pytest

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

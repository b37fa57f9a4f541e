"""Process-level set-up: the malloc settings of the training CLIs."""

import os
import subprocess
import sys

import pytest

# Allocates, fills and frees a 64 MiB block (above glibc's largest mmap threshold) six times
# and prints how many page faults the last five took.
_CYCLES = """
import ctypes, resource
from imsyn.runtime import keep_freed_memory

applied = keep_freed_memory()
libc = ctypes.CDLL(None)
libc.malloc.restype = ctypes.c_void_p
libc.free.argtypes = [ctypes.c_void_p]


def cycle():  # what XLA:CPU does with a step's temporaries
    p = libc.malloc(64 << 20)
    ctypes.memset(p, 1, 64 << 20)
    libc.free(p)


cycle()
before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
for _ in range(5):
    cycle()
print(applied, resource.getrusage(resource.RUSAGE_SELF).ru_minflt - before)
"""


def _faults(keep: str) -> tuple[str, int]:
    env = {**os.environ, "IMSYN_KEEP_FREED_MEMORY": keep}
    out = subprocess.run(
        [sys.executable, "-c", _CYCLES], env=env, capture_output=True, text=True, check=True
    ).stdout.split()
    return out[0], int(out[1])


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="glibc malloc settings")
def test_keep_freed_memory_reuses_pages_instead_of_faulting_them_in_again():
    applied, faults = _faults("1")
    assert applied == "True"
    assert faults < 2000  # 5 x 16384 pages reused
    applied, faults = _faults("0")  # opted out: glibc maps and unmaps the block every time
    assert applied == "False"
    assert faults > 4 * 16384


def test_training_scripts_set_it_up_before_anything_else():
    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    for script in ("train.py", "eval.py", "sweep.py"):
        with open(os.path.join(root, script)) as f:
            body = f.read().split('if __name__ == "__main__":')[1]
        assert body.split()[0] == "keep_freed_memory()", script

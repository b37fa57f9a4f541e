"""One side of a side-by-side benchmark in a process of its own (shared by the benchmarks).

A worker is ``worker(conn, *args)``: it sets up its side, sends one "ready" message, then
answers each ``"window"`` with one timed window's result and ``"stop"`` with a last message
before it returns. Each framework gets its own process, hence its own heap: in one process the
other framework's allocations land in the memory one side freed, and the next call faults
fresh pages in again.
"""

from __future__ import annotations

import sys


def start(worker, *args, what: str, timeout_s: float):
    """Starts ``worker(conn, *args)`` (spawned); returns ``(ready, window, stop)``: the ready
    message, a callable that runs one window and returns its result, and one that stops the
    worker and returns its last message. Exits with one line naming ``what`` if the worker
    sends nothing within ``timeout_s``."""
    import multiprocessing as mp

    ctx = mp.get_context("spawn")
    here, there = ctx.Pipe()
    proc = ctx.Process(target=worker, args=(there, *args), daemon=True)
    proc.start()
    if not here.poll(timeout_s):
        sys.exit(f"{sys.argv[0]}: error: {what} did not start")
    ready = here.recv()

    def window():
        here.send("window")
        return here.recv()

    def stop():
        here.send("stop")
        last = here.recv()
        proc.join()
        return last

    return ready, window, stop

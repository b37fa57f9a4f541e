"""Evaluate a run: python eval.py --config=configs/<exp>.py --workdir=runs/<name>.

Multi-host flags as for train.py (``--multihost``, ``--coordinator=HOST:PORT
--num_processes=N --process_id=I``, ``--nomultihost``); process 0 evaluates and writes.
"""

import sys

from imsyn.runtime import keep_freed_memory

if __name__ == "__main__":
    keep_freed_memory()  # if IMSYN_KEEP_FREED_MEMORY=1; first, before any thread allocates
    from imsyn.experiments import main

    sys.exit(main(sys.argv, "eval"))

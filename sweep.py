"""Run an ablation sweep and compare the runs side by side.

python sweep.py --config=configs/<exp>.py[:preset] --sweep=<name> --workdir=runs/<dir>
    [--config.x=y ...]
"""

import sys

from imsyn.runtime import keep_freed_memory

if __name__ == "__main__":
    keep_freed_memory()  # if IMSYN_KEEP_FREED_MEMORY=1; first, before any thread allocates
    from imsyn.training.sweep import main

    sys.exit(main(sys.argv))

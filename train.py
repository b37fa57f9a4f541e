"""Train (or optimize) an experiment.

python train.py --config=configs/<exp>.py[:preset] --workdir=runs/<name> [--config.x=y ...]
"""

import sys

from imsyn.runtime import keep_freed_memory

if __name__ == "__main__":
    keep_freed_memory()  # if IMSYN_KEEP_FREED_MEMORY=1; first, before any thread allocates
    from imsyn.experiments import main

    sys.exit(main(sys.argv, "train"))

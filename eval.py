"""Evaluate a run: python eval.py --config=configs/<exp>.py --workdir=runs/<name>."""

import sys

from imsyn.experiments import main
from imsyn.runtime import keep_freed_memory

if __name__ == "__main__":
    keep_freed_memory()
    sys.exit(main(sys.argv, "eval"))

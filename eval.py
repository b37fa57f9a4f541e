"""Evaluate a run: python eval.py --config=configs/<exp>.py --workdir=runs/<name>."""

import sys

from imsyn.experiments import main

if __name__ == "__main__":
    sys.exit(main(sys.argv, "eval"))

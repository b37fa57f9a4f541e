"""Run an ablation sweep and compare the runs side by side.

python sweep.py --config=configs/<exp>.py[:preset] --sweep=<name> --workdir=runs/<dir>
    [--config.x=y ...]
"""

import sys

from imsyn.training.sweep import main

if __name__ == "__main__":
    sys.exit(main(sys.argv))

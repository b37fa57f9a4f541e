"""Train (or optimize) an experiment.

python train.py --config=configs/<exp>.py[:preset] --workdir=runs/<name> [--config.x=y ...]
"""

import sys

from imsyn.experiments import main

if __name__ == "__main__":
    sys.exit(main(sys.argv, "train"))

"""Train (or optimize) an experiment.

python train.py --config=configs/<exp>.py[:preset] --workdir=runs/<name> [--config.x=y ...]

Multi-host: one process per host on a shared workdir; JAX's distributed runtime starts by
itself on a detected cluster (TPU pod, SLURM srun, mpirun, Kubernetes), or with
``--multihost`` / ``--coordinator=HOST:PORT --num_processes=N --process_id=I``
(``--nomultihost``: never). See imsyn.experiments and docs/training.md.
"""

import sys

from imsyn.runtime import keep_freed_memory

if __name__ == "__main__":
    keep_freed_memory()  # if IMSYN_KEEP_FREED_MEMORY=1; first, before any thread allocates
    from imsyn.experiments import main

    sys.exit(main(sys.argv, "train"))

"""The course write-up: every experiment of the five systems on one page.

::

    python -m imsyn weights fetch all     # once: VGG-19, Inception (FID), LPIPS
    python -m imsyn data fetch course     # once: the course's images (config.data_root)
    python eval.py --config=configs/writeup.py:quick --workdir=runs/writeup

writes ``runs/writeup/index.html`` (one page, a table of contents, one section per system;
figures as files beside it) and ``runs/writeup/results.json`` (every number on the page).
Each experiment lives in its own sub-workdir (``a1/``, ``a3/dcgan_deluxe/``, ...) and is
resumable: a rerun skips finished experiments whose settings did not change and redoes the
ones whose settings did; ``--config.only=a4`` (or ``a1,a3``) redoes those sections. A progress
line names the running experiment and the ETA of the whole.

Presets:

* ``quick``: small sizes and step counts — every section filled in about 30 minutes on a
  2-core CPU (README: the measured time).
* default: the course's sizes and schedules (grumpy-cat DCGAN at 64 px for 6000 steps,
  CycleGAN on the cats at 64 px for 10000 steps, NST at 512 px with 300 L-BFGS steps, ...),
  meant for one GPU (estimated times: ``imsyn.tasks.writeup.GPU_ESTIMATE`` and the README).

The A3/A4/A5 experiments are the tasks' own configs, nested here (``config.a3.dcgan`` is
``configs/dcgan.py:grumpy``, ``config.a4.nst`` is ``configs/nst.py``, ...), so any of their
fields can be changed from the command line, e.g. ``--config.a4.nst.size=256``; the page shows
each figure with the standalone ``train.py`` command that reproduces it.
"""

import ml_collections

from imsyn import validate
from imsyn.tasks import writeup

#: the quick preset's changes, per nested config
QUICK = {
    "a1": {"timing_repeats": 3},
    "a2": {"isoluminant_size": 128},
    "a3.dcgan": {
        "image_size": 32,
        "conv_dim": 16,
        "num_steps": 1200,
        "log_every": 20,
        "checkpoint_every": 1200,
        "sample_every": 300,
        "eval_samples": 128,
    },
    "a3.cyclegan": {
        "image_size": 32,
        "g_conv_dim": 16,
        "d_conv_dim": 16,
        "n_blocks": 2,
        "batch_size": 8,
        "num_steps": 600,
        "log_every": 20,
        "checkpoint_every": 600,
        "sample_every": 200,
        "fid_max_images": 64,
    },
    "a3.emoji": {
        "num_steps": 1000,
        "checkpoint_every": 1000,
        "sample_every": 500,
        "fid_max_images": 64,
    },
    "a4": {"grid_size": 128},
    "a4.nst": {"size": 128, "num_steps": 80},
    "a5.generator": {"checkpoint_every": 1500, "sample_every": 500},
    "a5.editing": {"num_images": 4, "steps": 80, "num_frames": 8},
}


def get_config(arg: str | None = None) -> ml_collections.ConfigDict:
    arg = arg or ""
    if arg not in ("", "quick"):
        raise ValueError(f"unknown preset {arg!r}; choose one of ['quick']")
    # every field: imsyn/tasks/writeup/ (each section's in a1.py ... a5.py); the nested task
    # configs are the shipped ones (config.a3.dcgan is configs/dcgan.py:grumpy, ...)
    c = validate.make_config(writeup.FIELDS)
    if arg == "quick":
        c.name, c.preset = "writeup_quick", "quick"
        for path, changes in QUICK.items():
            node = c
            for part in path.split("."):
                node = node[part]
            node.update(changes)
        # both CycleGAN jobs' LR decays over the second half of their short schedules,
        # following --config.a3.<job>.num_steps
        for job in (c.a3.cyclegan, c.a3.emoji):
            job.decay_start = job.get_ref("num_steps") // 2
    return c

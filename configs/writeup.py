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

from pathlib import Path

import ml_collections

from imsyn.training.sweep import config_module

SECTIONS = ("a1", "a2", "a3", "a4", "a5")


def _config_of(name: str, preset: str = "") -> ml_collections.ConfigDict:
    return config_module(Path(__file__).with_name(f"{name}.py")).get_config(preset)


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
    c = ml_collections.ConfigDict()
    c.task = "writeup"
    c.name = "writeup" if not arg else f"writeup_{arg}"
    c.preset = arg or "default"
    c.only = ""  # '' = every section; or a comma list of a1..a5: redo those
    # prokudin/, poisson/, nst/, gan/: "@data" is the fetched course data (python -m imsyn data
    # fetch course; imsyn.course_data), or give any folder laid out the same way
    c.data_root = "@data"

    c.a1 = ml_collections.ConfigDict()
    c.a1.timing_repeats = 5
    c.a1.single_scale_radius = 15  # ± px of the single-scale vs pyramid timing (small plates)

    c.a2 = ml_collections.ConfigDict()
    c.a2.isoluminant_size = 256

    c.a3 = ml_collections.ConfigDict()
    c.a3.dcgan_settings = "basic,deluxe,deluxe_diffaug"  # imsyn.tasks.writeup.DCGAN_SETTINGS
    c.a3.cyclegan_variants = "patch_cycle,patch_nocycle,dc_cycle"  # ...writeup.CYCLEGAN_VARIANTS
    c.a3.dcgan = _config_of("dcgan", "grumpy")  # the settings vary augment/diffaug
    c.a3.cyclegan = _config_of("cyclegan", "cats")  # variants: cycle loss, discriminator
    c.a3.emoji = _config_of("cyclegan")  # the main job

    c.a4 = ml_collections.ConfigDict()
    c.a4.nst = _config_of("nst")
    c.a4.nst.size = 512
    c.a4.nst.sample_every = 0
    c.a4.contents = "tubingen.jpg,dancing.jpg,golden_gate.jpg"  # in data_root/nst/content
    c.a4.styles = "starry_night.jpg,the_scream.jpg,great_wave.jpg"  # in data_root/nst/style
    c.a4.grid_size = 256  # the 3x3 content x style grids
    c.a4.content_layers = "conv_1;conv_3;conv_5;conv_9;conv_1,conv_3,conv_5"  # ';' between runs
    c.a4.texture_layers = (
        "conv_1;conv_3;conv_5;conv_1,conv_2,conv_3;conv_1,conv_2,conv_3,conv_4,conv_5"
    )
    c.a4.texture_seeds = "0,1"
    c.a4.style_weights = "1e3,1e4,1e5,1e6,1e7"

    c.a5 = ml_collections.ConfigDict()
    c.a5.generator = _config_of("dcgan", "style")
    c.a5.editing = _config_of("editing")

    if arg == "quick":
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

"""CycleGAN (course assignment 3, part 2): Twemoji ↔ OpenMoji emoji style translation.

The main job of imsyn (minutes on a CPU; measured times and metrics, with the commands that
produced them: ``docs/cyclegan.md``)::

    python -m imsyn weights fetch lpips_vgg16     # once (else LPIPS is recorded as not available)
    python -m imsyn weights fetch inception_fid   # once (else FID on the random_conv_v1 fallback)
    python train.py --config=configs/cyclegan.py --workdir=runs/cyclegan

Default: Twemoji (X) ↔ OpenMoji (Y), 32 px, 4000 steps of batch 8 (Adam at 6e-4, three times
the course's rate because 4000 steps are few; constant, then linear decay over the last third),
32-wide generators with 3 residual blocks and U-Net skips at half and full resolution
(``g_skip="unet_full"``: the course's generator cannot rebuild a 32-px emoji from 8×8 in 4000
steps), 64-wide PatchGAN discriminators, a fixed zoom of G's input by the measured ratio of the
two domains' framings (``g_align="zoom"``; F zooms by the inverse), moving averages of the
generators for evaluation (``ema_decay``), LSGAN, λ_cyc = 10, identity loss 0.5·λ_cyc and a
50-image pool (the reference implementation's), DiffAugment ``translation`` (no ``color``:
it blinds the discriminators to a wrong palette). The evaluation translates the held-out test
split (paired by code point) both ways. Expect, in ``eval/metrics.json`` and the table of
``report.html`` (measured over three seeds, ``docs/cyclegan.md``): translations that keep each
emoji's structure and take on the target style's outlines, palette and framing; L1, LPIPS and
KID below both baselines (identity and colour-statistics transfer) in both directions (LPIPS
0.370 and 0.428 against 0.472–0.486, 21 % and 10 % below the better one); FID below them
X → Y (~155 against ~159) and, Y → X, below them on two seeds of three (~158 against ~160; the
third is 1.3 above the untouched input's). The cycle-reconstruction L1 is far below the
translation L1.

Presets (``--config=configs/cyclegan.py:<preset>``), each a few overrides of the default
(:data:`PRESETS`):

* ``full``: the course schedule — 64 px, 10000 iterations of batch 16, 64-wide networks,
  DiffAugment with cutout (for a GPU)::

      python train.py --config=configs/cyclegan.py:full --workdir=runs/cg_full

* ``cats``: ``full`` on the course's Russian-blue (X) ↔ grumpy (Y) cats (``python -m imsyn
  data fetch cats`` once), deluxe augmentation, a fifth of each folder held out (the folders
  have no test split: ``?test_fraction=0.2``); unpaired, so the evaluation has FID/KID
  against the whole target domain next to the untouched input, cycle errors and grids::

      python train.py --config=configs/cyclegan.py:cats --workdir=runs/cats

* ``cats_cpu``: the same recipe sized for a CPU (about 27 minutes on 2 cores): 64 px, 4500
  steps of batch 8, 32-wide networks, DiffAugment with cutout (59 Russian
  blues are few for a discriminator). Translations keep each cat's pose and take on the
  other breed's coat; FID and KID beat the untouched input in both directions
  (``docs/cyclegan.md``, "The course's cats")::

      python train.py --config=configs/cyclegan.py:cats_cpu --workdir=runs/cats_cpu

* ``horse2zebra``: ``tfds:cycle_gan/horse2zebra`` (prepare it with TFDS first), 256 px, 9
  residual blocks, the 70×70 PatchGAN, identity loss 0.5, a 50-image pool, the paper's
  schedule (200 epochs of batch 1)::

      python train.py --config=configs/cyclegan.py:horse2zebra --workdir=runs/h2z

A category of emoji instead of all of them: the option travels in both specs, e.g.
``--config.data='emoji:twemoji?category=faces' --config.data_y='emoji:openmoji?category=faces'``
(the paired evaluation then pairs the test emoji of that category).

Ablations (one sweep, one comparison page with the paired metrics of every run)::

    python sweep.py --config=configs/cyclegan.py --sweep=ablations --workdir=runs/cg_ablations

Every field (its default, rule and meaning) is declared once, in ``FIELDS`` of
``imsyn/tasks/cyclegan.py``, and checked before any compute; unknown fields are refused.
``python train.py --config=configs/cyclegan.py --show_config`` lists them. ``data`` is domain
X and ``data_y`` domain Y (``emoji:<style>[?category=...]``, ``folder:/path``, ``tfds:name``).
"""

import ml_collections

from imsyn import validate
from imsyn.tasks import cyclegan

# the course schedule at 64 px (for a GPU)
_COURSE = {
    "lr": 2e-4,
    "image_size": 64,
    "num_steps": 10000,
    "batch_size": 16,
    "g_conv_dim": 64,
    "d_conv_dim": 64,
    "diffaug": "color,translation,cutout",
    "checkpoint_every": 1000,
    "sample_every": 500,
    "log_every": 50,
}

# the course's cats (python -m imsyn data fetch cats): Russian blue (X) <-> grumpy (Y), a
# fifth of each folder held out for the evaluation (the folders have no test split)
_CATS = {
    "lr": 2e-4,  # the course's (the emoji default's 4e-4 was not measured on the cats)
    "data": "folder:@data/gan/grumpifyAprocessed?test_fraction=0.2",
    "data_y": "folder:@data/gan/grumpifyBprocessed?test_fraction=0.2",
    "augment": "deluxe",
    "fid_max_images": 0,  # every held-out image (16 X, 33 Y)
    # photos filled to the border have no background to measure a framing from; the
    # full-resolution skip and the averages as in the default (docs/cyclegan.md, the cats)
    "g_align": "none",
}

#: preset name -> overrides of the default config
PRESETS = {
    "": {},
    "full": {**_COURSE, "name": "cyclegan_emoji_full"},
    "cats": {**_COURSE, **_CATS, "name": "cyclegan_cats"},
    "cats_cpu": {
        **_CATS,
        "name": "cyclegan_cats_cpu",
        "image_size": 64,
        "num_steps": 4500,
        "d_conv_dim": 32,
        "diffaug": "color,translation,cutout",
        "checkpoint_every": 500,
    },
    "horse2zebra": {
        "name": "cyclegan_horse2zebra",
        "data": "tfds:cycle_gan/horse2zebra",
        "data_y": "tfds:cycle_gan/horse2zebra",
        "image_size": 256,
        "diffaug": "",
        "num_steps": 200 * 1067,  # 200 epochs of trainA at batch 1, as in the paper
        "batch_size": 1,
        "lr": 2e-4,
        "g_conv_dim": 64,
        "d_conv_dim": 64,
        "n_blocks": 9,
        "g_skip": "none",  # the paper's resnet_9blocks
        "g_align": "none",
        "ema_decay": 0.0,
        "discriminator": "patch70",
        "lambda_identity": 0.5,
        "pool_size": 50,
        "checkpoint_every": 5000,
        "sample_every": 2000,
        "log_every": 100,
    },
}

#: preset name -> (a, b): the linear LR decay starts at step num_steps * a // b (the default:
#: the last third; the course's and the paper's schedules: the second half)
DECAY_START = {
    "": (2, 3),
    "full": (1, 2),
    "cats": (1, 2),
    "cats_cpu": (2, 3),
    "horse2zebra": (1, 2),
}


def get_config(arg: str | None = None) -> ml_collections.ConfigDict:
    arg = arg or ""
    if arg not in PRESETS:
        raise ValueError(f"unknown preset {arg!r}; choose one of {[p for p in PRESETS if p]}")
    c = validate.make_config(cyclegan.FIELDS)  # every field: imsyn/tasks/cyclegan.py
    # constant LR, then linear decay to 0 from the preset's fraction of num_steps (following
    # --config.num_steps unless set)
    c.decay_start = c.get_ref("num_steps") * DECAY_START[arg][0] // DECAY_START[arg][1]
    c.update(PRESETS[arg])
    return c


def get_sweep(name: str) -> list[tuple[str, dict]]:
    """Ablations: (run name, config overrides) pairs for ``sweep.py --sweep=<name>``."""
    sweeps = {
        "ablations": [
            ("baseline", {}),
            ("no_cycle", {"lambda_cycle": 0.0}),
            ("dc_discriminator", {"discriminator": "dc"}),
            ("local_discriminator", {"discriminator": "patch16"}),  # 16x16 patches
            ("no_diffaug", {"diffaug": ""}),
            ("course_generator", {"g_skip": "none"}),  # no U-Net skip
            ("half_unet", {"g_skip": "unet"}),  # no full-resolution skip
            ("no_zoom", {"g_align": "none"}),
            ("no_ema", {"ema_decay": 0.0}),
            ("course_lr", {"lr": 2e-4}),  # a third of the default's learning rate
            ("no_host_augment", {"augment": "none"}),  # no resize-and-crop, no flips
            ("color_diffaug", {"diffaug": "color,translation"}),
            ("narrow_discriminators", {"d_conv_dim": 32}),
        ],
    }
    if name not in sweeps:
        raise ValueError(f"unknown sweep {name!r}; choose one of {sorted(sweeps)}")
    return sweeps[name]

"""CycleGAN (course assignment 3, part 2): Twemoji ↔ OpenMoji emoji style translation.

The main job of imsyn (minutes on a CPU; measured times and metrics, with the commands that
produced them: ``docs/cyclegan.md``)::

    python -m imsyn weights fetch lpips_vgg16     # once (else LPIPS is recorded as not available)
    python -m imsyn weights fetch inception_fid   # once (else FID on the random_conv_v1 fallback)
    python train.py --config=configs/cyclegan.py --workdir=runs/cyclegan

Default: Twemoji (X) ↔ OpenMoji (Y), 32 px, 4000 steps of batch 8 (Adam at 2e-4, constant,
then linear decay over the last third), 32-wide networks with 3 residual blocks and a U-Net skip
around the 8×8 bottleneck (``g_skip="unet"``: the course's generator cannot rebuild a 32-px
emoji from 8×8 in 4000 steps), PatchGAN, LSGAN, λ_cyc = 10, identity loss 0.5·λ_cyc and a
50-image pool (the reference implementation's), DiffAugment ``color,translation``. The
evaluation translates the held-out test split (paired by code point) both ways. Expect, in
``eval/metrics.json`` and the table of ``report.html`` (measured over three seeds,
``docs/cyclegan.md``): translations that keep each emoji's structure and take on the target
style's outlines and palette, softer than the real thing; L1 and LPIPS below both baselines
(identity and colour-statistics transfer) in both directions (LPIPS 0.439 and 0.449 against
0.472–0.486); FID/KID still above the baselines' (~175 and ~188 against ~160). The
cycle-reconstruction L1 is far below the translation L1.

Presets (``--config=configs/cyclegan.py:<preset>``), each a few overrides of the default
(:data:`PRESETS`):

* ``full``: the course schedule — 64 px, 10000 iterations of batch 16, 64-wide networks,
  DiffAugment with cutout (for a GPU)::

      python train.py --config=configs/cyclegan.py:full --workdir=runs/cg_full

* ``cats``: ``full`` on the course's grumpy ↔ Russian-blue cats (``python -m imsyn data
  fetch cats`` once), deluxe augmentation; unpaired, so the evaluation has FID/KID, cycle
  errors and grids but no paired metrics; the folders have no test split, so the
  evaluation runs on the training images and ``eval/metrics.json`` says so
  (``test_is_train``)::

      python train.py --config=configs/cyclegan.py:cats --workdir=runs/cats

* ``horse2zebra``: ``tfds:cycle_gan/horse2zebra`` (prepare it with TFDS first), 256 px, 9
  residual blocks, the 70×70 PatchGAN, identity loss 0.5, a 50-image pool, the paper's
  schedule (200 epochs of batch 1)::

      python train.py --config=configs/cyclegan.py:horse2zebra --workdir=runs/h2z

A category of emoji instead of all of them: the option travels in both specs, e.g.
``--config.data='emoji:twemoji?category=faces' --config.data_y='emoji:openmoji?category=faces'``
(the paired evaluation then pairs the test emoji of that category).

Ablations (one sweep, one comparison page with the paired metrics of every run)::

    python sweep.py --config=configs/cyclegan.py --sweep=ablations --workdir=runs/cg_ablations

Every field is checked before any compute (``imsyn/tasks/cyclegan.py``); unknown fields are
refused. Besides the common training fields, ``data`` is domain X and ``data_y`` domain Y
(``emoji:<style>[?category=...]``, ``folder:/path``, ``tfds:name``); ``lambda_cycle`` = 0
disables the cycle loss; ``lambda_identity`` weighs the identity loss relative to it;
``pool_size`` = 0 disables the image pool; ``discriminator`` is ``patch`` (4×4 logits at
64 px), ``patch70`` (pix2pix 70×70) or ``dc`` (one logit); ``memory_check`` refuses a batch
that will not fit the device's memory; ``features`` (``auto``: Inception-v3 when fetched,
else ``random_conv_v1``; or a name of ``imsyn.metrics.NAMES``), ``features_path`` (an
Inception weights file) and ``fid_max_images`` (test images per domain for FID/KID, 0 = all)
set the FID/KID evaluation.
"""

import ml_collections

# the course schedule at 64 px (for a GPU)
_COURSE = {
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

#: preset name -> overrides of the default config
PRESETS = {
    "": {},
    "full": {**_COURSE, "name": "cyclegan_emoji_full"},
    "cats": {
        **_COURSE,
        "name": "cyclegan_cats",
        "data": "folder:@data/gan/grumpifyAprocessed",  # python -m imsyn data fetch cats
        "data_y": "folder:@data/gan/grumpifyBprocessed",
        "augment": "deluxe",
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
DECAY_START = {"": (2, 3), "full": (1, 2), "cats": (1, 2), "horse2zebra": (1, 2)}


def get_config(arg: str | None = None) -> ml_collections.ConfigDict:
    arg = arg or ""
    if arg not in PRESETS:
        raise ValueError(f"unknown preset {arg!r}; choose one of {[p for p in PRESETS if p]}")
    c = ml_collections.ConfigDict()
    c.task = "cyclegan"
    c.name = "cyclegan_emoji"
    c.seed = 0
    # data: X = Twemoji, Y = OpenMoji, paired by code point for evaluation only; options in
    # the specs ("emoji:twemoji?category=faces"), "folder:PATH", "tfds:name"
    c.data = "emoji:twemoji"
    c.data_y = "emoji:openmoji"
    c.image_size = 32
    c.augment = "basic"
    c.diffaug = "color,translation"
    # schedule
    c.num_steps = 4000
    c.batch_size = 8
    c.lr = 2e-4
    c.beta1 = 0.5
    c.beta2 = 0.999
    c.lr_schedule = "linear_decay"
    # constant LR, then linear decay to 0 from this step (default: the preset's
    # DECAY_START fraction of num_steps, following --config.num_steps)
    c.decay_start = c.get_ref("num_steps") * DECAY_START[arg][0] // DECAY_START[arg][1]
    # model
    c.g_conv_dim = 32
    c.d_conv_dim = 32
    c.n_blocks = 3
    c.block_convs = 2
    c.norm = "instance"
    c.padding_mode = "reflect"
    # "unet": the encoder's half-resolution features skip the 8x8 bottleneck (pix2pix);
    # keeps each emoji's structure at 32 px ("none" is the course's generator)
    c.g_skip = "unet"
    c.discriminator = "patch"
    c.spectral_norm = False
    # compute dtype: "float32", or "bfloat16" (mixed precision: bf16 compute, float32
    # parameters, optimizer state and losses; docs/training.md "Mixed precision")
    c.dtype = "float32"
    # objective
    c.loss = "lsgan"
    c.lambda_cycle = 10.0
    c.lambda_identity = 0.5  # of lambda_cycle, as the reference implementation
    c.pool_size = 50  # the reference implementation's image pool
    # bookkeeping
    c.log_every = 25
    c.checkpoint_every = 500
    c.keep_checkpoints = 2
    # steps between sample grids (default: num_steps / 16, following --config.num_steps)
    c.sample_every = (c.get_ref("num_steps") + 15) // 16
    c.memory_check = True
    # evaluation: FID/KID features ("auto": the real TF-FID Inception-v3 when fetched with
    # `python -m imsyn weights fetch inception_fid`, else the offline random_conv_v1 fallback;
    # the resolved name is recorded), an optional Inception weights file, and the number of
    # test images per domain FID/KID use (0 = all; Inception at 299 px is slow on a CPU)
    c.features = "auto"
    c.features_path = ""
    c.fid_max_images = 200
    c.update(PRESETS[arg])
    return c


def get_sweep(name: str) -> list[tuple[str, dict]]:
    """Ablations: (run name, config overrides) pairs for ``sweep.py --sweep=<name>``."""
    sweeps = {
        "ablations": [
            ("baseline", {}),
            ("no_cycle", {"lambda_cycle": 0.0}),
            ("dc_discriminator", {"discriminator": "dc"}),
            ("no_diffaug", {"diffaug": ""}),
            ("course_generator", {"g_skip": "none"}),  # no U-Net skip
        ],
    }
    if name not in sweeps:
        raise ValueError(f"unknown sweep {name!r}; choose one of {sorted(sweeps)}")
    return sweeps[name]

"""CycleGAN (course assignment 3, part 2): Twemoji ↔ OpenMoji emoji style translation.

The main job of imsyn — on an otherwise idle 2-core CPU it took 5 min 36 s (rendering, training,
evaluation, report) before LPIPS and FID/KID joined the evaluation; they add a few minutes
(Inception-v3 at 299 px on 6 x 200 images, about 0.1-0.2 s each on this CPU)::

    python -m imsyn weights fetch lpips_vgg16     # once (else LPIPS is recorded as not available)
    python -m imsyn weights fetch inception_fid   # once (else FID on the random_conv_v1 fallback)
    python train.py --config=configs/cyclegan.py --workdir=runs/cyclegan

Default: Twemoji (X) ↔ OpenMoji (Y), 32 px, 4000 steps of batch 8 (constant LR, then linear decay
from step 2666), 32-wide networks with 3 residual blocks, PatchGAN, LSGAN, λ_cyc = 10, DiffAugment
``color,translation``. Measured on the held-out paired test split (478 emoji, images in [0, 1];
LPIPS v0.1 VGG-16; FID/KID on Inception-v3 (TF-FID weights) over a fixed random subset of 200
test emoji per domain, ``fid_max_images``; 2-core CPU shared with three other jobs: 17 min wall,
of which training 10.5 min and evaluation 6.5 min)::

    direction  method            L1 ↓    PSNR ↑  SSIM ↑  LPIPS ↓  FID ↓   KID ↓
    X → Y      CycleGAN          0.208   9.72    0.135   0.464    231.0   0.104
    X → Y      identity          0.218   9.58    0.140   0.475    155.3   0.035
    X → Y      colour transfer   0.219   9.38    0.138   0.472    154.3   0.035
    Y → X      CycleGAN          0.186   11.33   0.178   0.522    255.4   0.128
    Y → X      identity          0.218   9.58    0.140   0.475    155.3   0.035
    Y → X      colour transfer   0.218   10.10   0.145   0.486    157.0   0.038
    cycle-reconstruction L1: 0.069

(An earlier run of the same config: L1 0.211 / 0.187, PSNR 9.65 / 11.29, SSIM 0.126 / 0.169;
1500 steps gave L1 0.212 / 0.196, 2000 steps 0.216 / 0.198.) The translations take on the
target style's palette, frame and outline conventions but stay blurry and noisy at 32 px: they
beat the baselines on L1 and PSNR, only X → Y on LPIPS (barely), and on FID/KID they are
*farther* from real target-style emoji than the untranslated inputs — the artefacts are what
Inception sees. ``--config.lambda_identity=0.5`` is an option worth sweeping.

Presets (``--config=configs/cyclegan.py:<preset>``):

* ``full``: the course schedule — 64 px, 10000 iterations of batch 16, 64-wide networks
  (for a GPU).
* ``cats``: the course's grumpy ↔ Russian-blue cats (folder data), 64 px, deluxe
  augmentation::

      python train.py --config=configs/cyclegan.py:cats --workdir=runs/cats

* ``horse2zebra``: ``tfds:cycle_gan/horse2zebra`` (prepare it with TFDS first), 256 px, 9
  residual blocks, the 70×70 PatchGAN, the paper's schedule.

Ablations (one sweep, one comparison page with the paired metrics of every run)::

    python sweep.py --config=configs/cyclegan.py --sweep=ablations --workdir=runs/cg_ablations

Every field is checked before any compute; unknown fields are refused. Besides the common
training fields, ``data`` is domain X and ``data_y`` domain Y (``emoji:<style>``,
``folder:/path``, ``tfds:name``); ``data_category`` restricts emoji to a Unicode group
(``''`` = all); ``lambda_cycle`` = 0 disables the cycle loss; ``lambda_identity`` weighs the
identity loss relative to it; ``pool_size`` = 0 disables the image pool; ``discriminator`` is
``patch`` (4×4 logits at 64 px), ``patch70`` (pix2pix 70×70) or ``dc`` (one logit);
``memory_check`` refuses a batch that will not fit the device's memory; ``features``
(``auto``: Inception-v3 when fetched, else ``random_conv_v1``; or a name of
``imsyn.metrics.NAMES``), ``features_path`` (an Inception weights file) and ``fid_max_images``
(test images per domain for FID/KID, 0 = all) set the FID/KID evaluation.
"""

import ml_collections

PRESETS = ("", "full", "cats", "horse2zebra")


def get_config(arg: str | None = None) -> ml_collections.ConfigDict:
    c = ml_collections.ConfigDict()
    c.task = "cyclegan"
    c.name = "cyclegan_emoji"
    c.seed = 0
    # data: X = Twemoji, Y = OpenMoji, paired by code point for evaluation only
    c.data = "emoji:twemoji"
    c.data_y = "emoji:openmoji"
    c.data_category = ""
    c.image_size = 32
    c.augment = "basic"
    c.diffaug = "color,translation"
    # schedule
    c.num_steps = 4000
    c.batch_size = 8
    c.lr = 3e-4
    c.beta1 = 0.5
    c.beta2 = 0.999
    c.lr_schedule = "linear_decay"
    c.decay_start = 2666
    # model
    c.g_conv_dim = 32
    c.d_conv_dim = 32
    c.n_blocks = 3
    c.block_convs = 2
    c.norm = "instance"
    c.padding_mode = "reflect"
    c.discriminator = "patch"
    c.spectral_norm = False
    # objective
    c.loss = "lsgan"
    c.lambda_cycle = 10.0
    c.lambda_identity = 0.0
    c.pool_size = 0
    # bookkeeping
    c.log_every = 25
    c.checkpoint_every = 500
    c.keep_checkpoints = 2
    c.sample_every = 250
    c.memory_check = True
    # evaluation: FID/KID features ("auto": the real TF-FID Inception-v3 when fetched with
    # `python -m imsyn weights fetch inception_fid`, else the offline random_conv_v1 fallback;
    # the resolved name is recorded), an optional Inception weights file, and the number of
    # test images per domain FID/KID use (0 = all; Inception at 299 px is slow on a CPU)
    c.features = "auto"
    c.features_path = ""
    c.fid_max_images = 200

    arg = arg or ""
    if arg not in PRESETS:
        raise ValueError(f"unknown preset {arg!r}; choose one of {PRESETS[1:]}")
    if arg == "full":
        c.name = "cyclegan_emoji_full"
        c.image_size = 64
        c.num_steps = 10000
        c.batch_size = 16
        c.decay_start = 5000
        c.g_conv_dim = 64
        c.d_conv_dim = 64
        c.diffaug = "color,translation,cutout"
        c.checkpoint_every = 1000
        c.sample_every = 500
        c.log_every = 50
    elif arg == "cats":
        c.name = "cyclegan_cats"
        c.data = "folder:../shared/data/gan/grumpifyAprocessed"
        c.data_y = "folder:../shared/data/gan/grumpifyBprocessed"
        c.image_size = 64
        c.augment = "deluxe"
        c.diffaug = "color,translation,cutout"
        c.num_steps = 10000
        c.batch_size = 16
        c.decay_start = 5000
        c.g_conv_dim = 64
        c.d_conv_dim = 64
        c.checkpoint_every = 1000
        c.sample_every = 500
        c.log_every = 50
    elif arg == "horse2zebra":
        c.name = "cyclegan_horse2zebra"
        c.data = "tfds:cycle_gan/horse2zebra"
        c.data_y = "tfds:cycle_gan/horse2zebra"
        c.image_size = 256
        c.augment = "basic"
        c.diffaug = ""
        c.num_steps = 200 * 1067  # 200 epochs of trainA at batch 1, as in the paper
        c.batch_size = 1
        c.lr = 2e-4
        c.decay_start = 100 * 1067
        c.g_conv_dim = 64
        c.d_conv_dim = 64
        c.n_blocks = 9
        c.discriminator = "patch70"
        c.lambda_identity = 0.5
        c.pool_size = 50
        c.checkpoint_every = 5000
        c.sample_every = 2000
        c.log_every = 100
    return c


def get_sweep(name: str) -> list[tuple[str, dict]]:
    """Ablations: (run name, config overrides) pairs for ``sweep.py --sweep=<name>``."""
    sweeps = {
        "ablations": [
            ("baseline", {}),
            ("no_cycle", {"lambda_cycle": 0.0}),
            ("dc_discriminator", {"discriminator": "dc"}),
            ("no_diffaug", {"diffaug": ""}),
        ],
    }
    if name not in sweeps:
        raise ValueError(f"unknown sweep {name!r}; choose one of {sorted(sweeps)}")
    return sweeps[name]

"""DCGAN (course assignment 3, part 1) on emoji or an image folder.

Default — Twemoji emoji at 64 px (what the course trains on)::

    python train.py --config=configs/dcgan.py --workdir=runs/dcgan

Presets (``--config=configs/dcgan.py:<preset>``), each a few overrides of the default
(:data:`PRESETS`):

* ``quick``: the Twemoji faces (``data="emoji:twemoji?category=faces"``) at 32 px,
  conv_dim 16, 1500 steps of batch 16 — minutes on a CPU::

      python train.py --config=configs/dcgan.py:quick --workdir=runs/dcgan_quick

  Expect yellow face-shaped emoji with dark eyes and mouths (still blocky) in
  ``eval/samples.png``, and a KID in ``eval/metrics.json`` far below that of the untrained
  generator. With ``--config.features=random_conv_v1`` the numbers are the offline
  features'; the default ``features="auto"`` uses the real Inception-v3 once ``python -m
  imsyn weights fetch inception_fid`` has run. D's least-squares loss falls well below G's.
  Any other data works on the same preset: ``--config.data=folder:PATH``.
* ``style``: like ``quick`` but with the style-based generator
  (``imsyn/models/stylegan.py``: mapping net z -> w, modulated convs), Adam(2e-3, 0, 0.99);
  its runs give ``configs/editing.py`` the latent spaces z, w and w+.
* ``grumpy``: the course's settings — batch 16, 500 epochs of the 204 grumpy-cat
  images (12 full batches per epoch → 6000 steps), 64 px, least squares,
  instance norm, deluxe augmentation, Adam(2e-4, 0.5, 0.999); the images are the fetched
  course data (``data="folder:@data/gan/grumpifyBprocessed"``)::

      python -m imsyn data fetch cats     # once
      python train.py --config=configs/dcgan.py:grumpy --workdir=runs/grumpy

  The course reports recognisable cat faces with deluxe augmentation + DiffAugment
  (``--config.diffaug=color,translation,cutout``) and collapsed or overfitted samples
  without augmentation: compare ``eval/metrics.json`` across the augment and diffaug
  sweeps.

Measured times and KID/FID, with the commands that produced them: ``docs/training.md``.

Ablations: ``python sweep.py --config=configs/dcgan.py:quick --sweep=<name>
--workdir=runs/sweep_<name>`` with <name> one of ``augment``, ``diffaug``,
``loss``, ``norm`` (see :func:`get_sweep`); ``comparison.html`` shows the runs
side by side (sample grids, loss curves, KID/FID).

Every field (its default, rule and meaning) is declared once, in ``FIELDS`` of
``imsyn/tasks/dcgan.py``, and checked before any compute; unknown fields are refused.
``python train.py --config=configs/dcgan.py --show_config`` lists them.
"""

import ml_collections

from imsyn import validate
from imsyn.tasks import dcgan

_QUICK = {
    "name": "dcgan_quick",
    "data": "emoji:twemoji?category=faces",
    "image_size": 32,
    "conv_dim": 16,
    "num_steps": 1500,
    "log_every": 25,
    "checkpoint_every": 250,
    "sample_every": 250,
    "eval_samples": 256,
}

#: preset name -> overrides of the default config
PRESETS = {
    "": {},
    "quick": _QUICK,
    "style": {
        **_QUICK,
        "name": "dcgan_style",
        "generator": "style_generator",
        "lr": 2e-3,  # equalized learning rate (StyleGAN2 settings)
        "beta1": 0.0,
        "beta2": 0.99,
    },
    "grumpy": {
        "name": "dcgan_grumpy",
        "data": "folder:@data/gan/grumpifyBprocessed",  # python -m imsyn data fetch cats
        "num_steps": 500 * (204 // 16),
        "augment": "deluxe",
        "checkpoint_every": 500,
        "sample_every": 500,
        "eval_samples": 500,  # generated; against all 204 training images
    },
}


def get_config(arg: str | None = None) -> ml_collections.ConfigDict:
    arg = arg or ""
    if arg not in PRESETS:
        raise ValueError(f"unknown preset {arg!r}; choose one of {[p for p in PRESETS if p]}")
    c = validate.make_config(dcgan.FIELDS)  # every field: imsyn/tasks/dcgan.py
    c.update(PRESETS[arg])
    return c


def get_sweep(name: str) -> list[tuple[str, dict]]:
    """Ablations: (run name, config overrides) pairs for ``sweep.py --sweep=<name>``."""
    sweeps = {
        "augment": [(f"augment_{a}", {"augment": a}) for a in ("none", "basic", "deluxe")],
        "diffaug": [
            ("diffaug_off", {"diffaug": ""}),
            ("diffaug_color_translation", {"diffaug": "color,translation"}),
            ("diffaug_all", {"diffaug": "color,translation,cutout"}),
        ],
        "loss": [(f"loss_{k}", {"loss": k}) for k in ("lsgan", "bce", "hinge")],
        "norm": [
            ("norm_instance", {"norm": "instance"}),
            ("norm_batch", {"norm": "batch"}),
            ("norm_none", {"norm": "none"}),
            ("norm_none_sn", {"norm": "none", "spectral_norm": True}),
        ],
    }
    if name not in sweeps:
        raise ValueError(f"unknown sweep {name!r}; choose one of {sorted(sweeps)}")
    return sweeps[name]

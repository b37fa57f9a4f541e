"""GAN photo editing (course assignment 5): project, interpolate, draw.

Needs a trained GAN run (``configs/dcgan.py``: z only; ``configs/dcgan.py:style``,
the style-based generator, gives the latent spaces z, w and w+)::

    python train.py --config=configs/dcgan.py:style --workdir=runs/style
    python train.py --config=configs/editing.py:project \\
        --config.generator_workdir=runs/style --workdir=runs/edit_project

Presets (``--config=configs/editing.py:<preset>``; the default is ``project``), each a few
overrides of the default config (:data:`PRESETS`, from
:data:`imsyn.tasks.editing.MODE_DEFAULTS`, which the CLI's modes use too):

* ``project``: projects ``num_images`` held-out emoji (the ``test`` split of the
  generator's training data, or ``--config.images=folder:DIR`` / ``a.png,b.png``)
  into every latent space of the generator (``spaces="all"``: z for DCGAN,
  z, w, w+ for a style generator). ``eval/projections.png`` shows the targets
  (first row) and one row per space; ``eval/metrics.json`` has ``<space>/l1``
  (mean |error| on [0, 1]), ``<space>/psnr`` and ``<space>/lpips`` (LPIPS v0.1, VGG-16;
  ``python -m imsyn weights fetch lpips_vgg16`` once, else recorded as not available).
  Expect w+ to reconstruct best, then w, then z (the course's finding), and held-out
  emoji to be matched in colour and layout but not in fine detail by a small generator.
* ``interpolate``: projects two images, then renders ``num_frames`` frames
  between their latents (slerp in z, linear in w/w+): ``eval/interpolation_<space>.png``
  (target, frames, target) and ``.gif``::

      python train.py --config=configs/editing.py:interpolate \\
          --config.generator_workdir=runs/style --workdir=runs/edit_lerp

* ``draw``: scribble-to-image from the mean latent (200 steps, L1 pixel loss,
  ``latent_reg=0.01``)::

      python train.py --config=configs/editing.py:draw \\
          --config.generator_workdir=runs/style --workdir=runs/edit_draw

  Without ``--config.sketch`` a built-in scribble (yellow ring, dark eyes, red mouth) is
  used; give an RGBA sketch (alpha = drawn) or a sketch plus ``--config.mask``, both at the
  generator's resolution. ``eval/draw_<space>.png`` shows sketch, start, result;
  ``<space>/error_inside_mask`` should fall well below the start's error, and
  ``<space>/change_outside_mask`` stays moderate (``latent_reg`` keeps the result
  near the mean latent).

The perceptual loss uses VGG-19 (``--config.vgg_weights=vgg19.npz`` or
``$IMSYN_VGG19``; without weights the explicit random-feature mode, recorded in
``eval/metrics.json``). ``python eval.py`` with the same flags re-renders
``latents.npz`` into ``eval/`` and ``report.html``. Every field is checked
before any compute (``imsyn/tasks/editing.py``); unknown fields are refused, and so is a
workdir inside the generator workdir or any other input.

Measured reconstruction errors per latent space and wall times, with the commands that
produced them: ``docs/editing.md``.
"""

from imsyn.tasks.editing import MODE_DEFAULTS, default_config

#: preset name -> overrides of the default config (the ``project`` mode)
PRESETS = {"": {}, **MODE_DEFAULTS}


def get_config(arg: str | None = None):
    arg = arg or ""
    if arg not in PRESETS:
        raise ValueError(f"unknown preset {arg!r}; choose one of {[p for p in PRESETS if p]}")
    c = default_config()
    c.update(PRESETS[arg])
    return c

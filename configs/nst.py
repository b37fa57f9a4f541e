"""Neural style transfer (course assignment 4, Gatys et al.) on VGG-19.

Default — the course's settings (content at conv_4, style at conv_1..conv_5,
content weight 1, L-BFGS, 300 steps, start from the content image) with style
weight 1e5 at 256 px, on matplotlib's Grace Hopper photo and a generated
brush-stroke texture (no files needed)::

    python train.py --config=configs/nst.py --workdir=runs/nst

Real images and real weights (``../shared/data/nst/`` holds photos and
paintings; fetch the VGG-19 once with ``python -m imsyn weights fetch vgg19``,
then every run uses it)::

    python train.py --config=configs/nst.py --workdir=runs/tubingen_starry \\
        --config.content=../shared/data/nst/content/tubingen.jpg \\
        --config.style=../shared/data/nst/style/starry_night.jpg --config.size=512

Weights: ``config.weights``, else ``$IMSYN_VGG19``, else the fetched vgg19, else
random VGG features (a warning, and ``"random"`` in every output): the style
loss still falls by orders of magnitude, but the picture only picks up the
style's colours and fine grain — no brush strokes. Every weights file is
normalized to mean activation 1 per conv layer (``imsyn/models/vgg.py``), so
the style weight means the same for each: 1e3 barely shows, 1e4..1e6 is the
useful range, 1e7 overwrites the content (``docs/nst.md``).

Presets (``--config=configs/nst.py:<preset>``):

* ``quick``: 128 px, 60 steps — about a minute on a 2-core CPU; the style loss
  falls by more than 10x, the content loss stays bounded.
* ``content``: content reconstruction from noise (``mode="content"``) at conv_4.
* ``texture``: texture synthesis from noise (``mode="texture"``) at conv_1..conv_5.
* ``sweep``: the seed project's ablation grids (single content layers,
  style-layer sets, style weight 1e3..1e7, noise vs content init) at 128 px,
  one page ``sweep.html`` in the workdir; pick one grid with
  ``--config.sweep=content_layers|style_layers|style_weight|init``.

Fields: ``mode`` transfer|content|texture; ``content``/``style`` paths (``style``
comma-separated for several, ``style_blend`` their weights); ``size`` longer
side of the result (0: the content's own); ``style_fit`` scale|pad_crop|stretch|
none and ``style_scale``; ``original_colors``; layer lists in either spelling
(``conv_4`` or ``conv2_2``); ``init`` ("" = content for transfer, else noise);
``optimizer`` lbfgs|adam with ``lr`` for Adam, ``linesearch`` backtracking|zoom
for L-BFGS; ``sample_every`` snapshot
interval. Every field is checked before any compute; unknown fields are refused.
"""

import ml_collections

PRESETS = ("", "quick", "content", "texture", "sweep")


def get_config(arg: str | None = None) -> ml_collections.ConfigDict:
    c = ml_collections.ConfigDict()
    c.task = "nst"
    c.name = "nst"
    c.seed = 0
    c.mode = "transfer"
    c.content = ""  # "" = matplotlib's grace_hopper.jpg
    c.style = ""  # "" = a generated brush-stroke texture; comma-separated for several
    c.style_blend = ""  # comma-separated weights, one per style
    c.size = 256
    c.style_fit = "scale"
    c.style_scale = 1.0
    c.original_colors = False
    c.content_layers = "conv_4"
    c.style_layers = "conv_1,conv_2,conv_3,conv_4,conv_5"
    c.content_weight = 1.0
    c.style_weight = 1e5  # useful range 1e4..1e6 (docs/nst.md)
    c.tv_weight = 0.0
    c.init = ""
    c.optimizer = "lbfgs"
    c.linesearch = "backtracking"  # or "zoom" (optax.lbfgs's own, in-graph; for GPU/TPU)
    c.num_steps = 300
    c.lr = 0.02
    c.clamp = True
    c.pooling = "max"
    c.memory_size = 10
    c.remat = False
    c.weights = ""  # "" = $IMSYN_VGG19, else the fetched vgg19, else random features
    c.sample_every = 50
    c.sweep = ""

    arg = arg or ""
    if arg not in PRESETS:
        raise ValueError(f"unknown preset {arg!r}; choose one of {PRESETS[1:]}")
    if arg == "quick":
        c.name = "nst_quick"
        c.size = 128
        c.num_steps = 60
        c.sample_every = 20
    elif arg == "content":
        c.name = "nst_content"
        c.mode = "content"
    elif arg == "texture":
        c.name = "nst_texture"
        c.mode = "texture"
    elif arg == "sweep":
        c.name = "nst_sweep"
        c.size = 128
        c.num_steps = 100
        c.sample_every = 0
        c.sweep = "all"
    return c


def get_sweep(name: str) -> list[tuple[str, dict]]:
    """Ablations: (run name, config overrides) pairs, for ``sweep.py --sweep=<name>``."""
    from imsyn.nst import sweep_runs

    return sweep_runs(name)

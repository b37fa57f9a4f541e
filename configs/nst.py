"""Neural style transfer (course assignment 4, Gatys et al.) on VGG-19.

Default — the course's settings (content at conv_4, style at conv_1..conv_5,
content weight 1, L-BFGS, 300 steps, start from the content image) with style
weight 1e5 at 256 px, on matplotlib's Grace Hopper photo and a generated
brush-stroke texture (no files needed)::

    python train.py --config=configs/nst.py --workdir=runs/nst

Real images and real weights (``python -m imsyn data fetch nst`` brings the course's
photos and paintings; fetch the VGG-19 once with ``python -m imsyn weights fetch vgg19``,
then every run uses it)::

    D=$(python -m imsyn data path nst)
    python train.py --config=configs/nst.py --workdir=runs/tubingen_starry \\
        --config.content=$D/content/tubingen.jpg \\
        --config.style=$D/style/starry_night.jpg --config.size=512

Weights: ``config.weights``, else ``$IMSYN_VGG19``, else the fetched vgg19, else
random VGG features (a warning, and ``"random"`` in every output): the style
loss still falls by orders of magnitude, but the picture only picks up the
style's colours and fine grain — no brush strokes. Every weights file is
normalized to mean activation 1 per conv layer (``imsyn/models/vgg.py``), so
the style weight means the same for each: 1e3 barely shows, 1e4..1e6 is the
useful range, 1e7 overwrites the content (``docs/nst.md``).

Presets (``--config=configs/nst.py:<preset>``, overrides of the default in
:data:`PRESETS`):

* ``quick``: 128 px, 60 steps — a quick look on a CPU; the style loss falls by
  orders of magnitude while the content loss stays bounded.
* ``content``: content reconstruction from noise (``mode="content"``) at conv_4.
* ``texture``: texture synthesis from noise (``mode="texture"``) at conv_1..conv_5.
* ``sweep``: the seed project's ablation grids (:func:`get_sweep`: single content
  layers, style-layer sets, style weight 1e3..1e7, noise vs content init) at 128 px
  through the one sweep system (``comparison.html``, all results in ``sweep.png``);
  pick one grid with ``--config.sweep=content_layers|style_layers|style_weight|init``,
  or run a grid on any preset with
  ``python sweep.py --config=configs/nst.py:quick --sweep=style_weight --workdir=runs/sw``.

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

#: preset -> overrides of the default config
PRESETS = {
    "": {},
    "quick": {"name": "nst_quick", "size": 128, "num_steps": 60, "sample_every": 20},
    "content": {"name": "nst_content", "mode": "content"},
    "texture": {"name": "nst_texture", "mode": "texture"},
    "sweep": {
        "name": "nst_sweep",
        "size": 128,
        "num_steps": 100,
        "sample_every": 0,
        "sweep": "all",
    },
}
SWEEPS = ("content_layers", "style_layers", "style_weight", "init", "all")


def get_config(arg: str | None = None) -> ml_collections.ConfigDict:
    arg = arg or ""
    if arg not in PRESETS:
        raise ValueError(f"unknown preset {arg!r}; choose one of {tuple(p for p in PRESETS if p)}")
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
    c.dtype = "float32"  # or "bfloat16": VGG features in bf16, image/L-BFGS/losses float32
    c.weights = ""  # "" = $IMSYN_VGG19, else the fetched vgg19, else random features
    c.sample_every = 50
    c.sweep = ""
    c.update(PRESETS[arg])
    return c


_STYLE_SETS = {
    "conv_1": "conv_1",
    "conv_1-2": "conv_1,conv_2",
    "conv_1-3": "conv_1,conv_2,conv_3",
    "conv_1-4": "conv_1,conv_2,conv_3,conv_4",
    "conv_1-5": "conv_1,conv_2,conv_3,conv_4,conv_5",
    "paper": "conv1_1,conv2_1,conv3_1,conv4_1,conv5_1",
}


def get_sweep(name: str) -> list[tuple[str, dict]]:
    """Ablations as ``(run name, config overrides)`` pairs (``sweep.py --sweep=<name>``).

    * ``content_layers``: content reconstruction from noise at one layer each
      (conv_1 … conv_5, conv_9 = conv4_1, conv_13 = conv5_1);
    * ``style_layers``: texture synthesis from noise with growing layer sets;
    * ``style_weight``: style transfer with style weight 1e3 … 1e7;
    * ``init``: style transfer from noise vs from the content image;
    * ``all``: all of them.
    """
    grids = {
        "content_layers": [
            (f"content_{layer}", {"mode": "content", "content_layers": layer})
            for layer in ("conv_1", "conv_2", "conv_3", "conv_4", "conv_5", "conv_9", "conv_13")
        ],
        "style_layers": [
            (f"texture_{k}", {"mode": "texture", "style_layers": v}) for k, v in _STYLE_SETS.items()
        ],
        "style_weight": [
            (f"style_weight_1e{e}", {"mode": "transfer", "style_weight": float(10**e)})
            for e in range(3, 8)
        ],
        "init": [(f"init_{i}", {"mode": "transfer", "init": i}) for i in ("content", "noise")],
    }
    if name == "all":
        return [r for g in SWEEPS[:-1] for r in grids[g]]
    if name not in grids:
        raise ValueError(f"unknown sweep {name!r}; choose one of {SWEEPS}")
    return grids[name]

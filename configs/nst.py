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

Every field (its default, rule and meaning) is declared once, in ``FIELDS`` of
``imsyn/tasks/nst.py``, and checked before any compute; unknown fields are refused.
``python train.py --config=configs/nst.py --show_config`` lists them.
"""

import ml_collections

from imsyn import validate
from imsyn.tasks import nst

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
    c = validate.make_config(nst.FIELDS)  # every field: imsyn/tasks/nst.py
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

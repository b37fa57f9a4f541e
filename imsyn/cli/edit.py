"""``python -m imsyn edit {project,interpolate,draw}``: A5 GAN photo editing.

Examples::

    python -m imsyn edit project --model runs/dcgan --out runs/proj a.png b.png
    python -m imsyn edit project --model style.safetensors --space w+ --out runs/proj
    python -m imsyn edit interpolate --model runs/style a.png b.png --out runs/lerp
    python -m imsyn edit draw --model runs/style --sketch s.png --mask m.png --out runs/draw

``--model`` (or its older name ``--generator-workdir``) is a GAN run folder or a file written
by ``python -m imsyn export`` (:mod:`imsyn.trained`).

Each command builds the ``configs/editing.py`` config of its mode and runs it
(:func:`imsyn.tasks.editing.train`) into ``--out`` (``eval/*.png``, GIFs,
``eval/metrics.json``, ``latents.npz``, ``report.html``). Without images, ``project`` uses
held-out images of the generator's training data and ``draw`` a built-in scribble.

Bad input is one line and exit status 2, before any work: every numeric option is checked
where it is parsed, by the rule of the config field it sets
(:data:`imsyn.tasks.editing.FIELDS`: ``--steps 0``, ``--lr inf``, ``--seed 1e23`` or a
seed beyond int64 are refused), and ``--out`` may not be (or lie inside) any input: the
generator workdir (or model file), an image, the sketch or the mask.
"""

from __future__ import annotations

import argparse

from imsyn.tasks.editing import FIELDS
from imsyn.validate import arg


def _rule(field: str):
    """The argparse ``type=`` of an option that sets ``config.<field>``."""
    return arg(FIELDS[field].rule)


def _default(field: str):
    """The default of an option that sets ``config.<field>``: the field's."""
    return FIELDS[field].default


def _common(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--model",
        "--generator-workdir",
        dest="generator_workdir",
        required=True,
        metavar="RUN_OR_FILE",
        help="the DCGAN: a run folder (config.json + checkpoints/) or a file written by "
        "`python -m imsyn export`",
    )
    p.add_argument("--out", required=True, help="output directory (the editing workdir)")
    p.add_argument(
        "--space",
        default=_default("spaces"),
        help="latent space(s): z, w, w+, a comma list, or 'all' (default: all the generator has)",
    )
    p.add_argument("--steps", type=_rule("steps"), default=None, help="optimizer steps")
    p.add_argument("--optimizer", choices=("lbfgs", "adam"), default=_default("optimizer"))
    p.add_argument("--lr", type=_rule("lr"), default=_default("lr"), help="Adam learning rate")
    p.add_argument("--pixel-loss", choices=("l1", "l2"), default=None)
    p.add_argument("--pixel-weight", type=_rule("pixel_weight"), default=_default("pixel_weight"))
    p.add_argument(
        "--perceptual-weight",
        type=_rule("perceptual_weight"),
        default=_default("perceptual_weight"),
    )
    p.add_argument(
        "--layers",
        default=_default("perceptual_layers"),
        help="VGG-19 layers of the perceptual loss",
    )
    p.add_argument(
        "--latent-reg",
        type=_rule("latent_reg"),
        default=None,
        help="weight of |latent - mean latent|^2",
    )
    p.add_argument(
        "--vgg-weights",
        default=_default("vgg_weights"),
        help="VGG-19 weights file (default: $IMSYN_VGG19, else random features)",
    )
    p.add_argument("--seed", type=_rule("seed"), default=_default("seed"))


def add_arguments(parser: argparse.ArgumentParser) -> None:
    sub = parser.add_subparsers(dest="mode", metavar="MODE", required=True)
    p = sub.add_parser("project", help="project images into the latent space(s)")
    p.add_argument(
        "images", nargs="*", help="images (default: held-out images of the generator's data)"
    )
    p.add_argument(
        "--num-images",
        type=_rule("num_images"),
        default=_default("num_images"),
        help="held-out images to project",
    )
    _common(p)
    p = sub.add_parser("interpolate", help="project two images and interpolate between them")
    p.add_argument("images", nargs="*", help="two images (default: two held-out images)")
    p.add_argument(
        "--frames",
        type=_rule("num_frames"),
        default=_default("num_frames"),
        help="frames of the interpolation",
    )
    p.add_argument("--method", choices=("auto", "linear", "slerp"), default="auto")
    _common(p)
    p = sub.add_parser("draw", help="scribble-to-image from the mean latent")
    p.add_argument("--sketch", default="", help="colour sketch (RGBA: alpha = drawn)")
    p.add_argument("--mask", default="", help="mask image (white = drawn), same size as the sketch")
    _common(p)


def build_config(args: argparse.Namespace):
    """The editing config of the parsed arguments."""
    from imsyn.errors import ConfigError
    from imsyn.tasks.editing import default_config

    c = default_config(args.mode)
    c.generator_workdir = args.generator_workdir
    c.spaces = args.space
    c.seed = args.seed
    c.optimizer = args.optimizer
    c.lr = args.lr
    c.pixel_weight = args.pixel_weight
    c.perceptual_weight = args.perceptual_weight
    c.perceptual_layers = args.layers
    c.vgg_weights = args.vgg_weights
    if args.steps is not None:
        c.steps = args.steps
    if args.pixel_loss is not None:
        c.pixel_loss = args.pixel_loss
    if args.latent_reg is not None:
        c.latent_reg = args.latent_reg
    if args.mode in ("project", "interpolate") and args.images:
        if any("," in f for f in args.images):
            raise ConfigError("image file names must not contain ','")
        c.images = ",".join(args.images)
    if args.mode == "project":
        c.num_images = len(args.images) if args.images else args.num_images
    elif args.mode == "interpolate":
        if args.images and len(args.images) != 2:
            raise ConfigError(f"interpolate takes two images, got {len(args.images)}")
        c.num_frames = args.frames
        c.interpolation = args.method
    else:
        c.sketch = args.sketch
        c.mask = args.mask
    return c


def run(args: argparse.Namespace) -> int:
    from imsyn.tasks import editing

    config = build_config(args)
    metrics = editing.train(config, args.out)  # checks the config and --out before any work
    keys = [
        k
        for k in metrics
        if "/" in k
        and not k.endswith(("final_loss", "interpolation"))
        and isinstance(metrics[k], int | float)
    ]
    print(" ".join(f"{k}={metrics[k]:.4g}" for k in keys))
    if isinstance(metrics.get("lpips"), str):
        print(f"lpips: {metrics['lpips']}")
    print(f"wrote {args.out}/report.html")
    return 0

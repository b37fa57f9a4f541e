"""``python -m imsyn stylize CONTENT STYLE [STYLE ...] --out O [options]``.

Neural style transfer (Gatys et al.) on VGG-19. Writes the result ``O`` and
``O.json`` beside it: the settings, the VGG weights used (a file name or
``"random"``) and their normalization, and per-step ``content_loss``,
``style_loss``, ``tv_loss`` and ``loss`` lists (entry ``t`` = the image after
``t`` steps).
"""

from __future__ import annotations

import argparse
import dataclasses
import sys
from pathlib import Path

from imsyn.errors import InputError


def _floats(text: str) -> float:
    try:
        return float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a number: {text!r}") from None


def add_arguments(parser: argparse.ArgumentParser) -> None:
    from imsyn import nst

    d = nst.Options()
    parser.add_argument("content", metavar="CONTENT", help="content image")
    parser.add_argument("styles", metavar="STYLE", nargs="+", help="style image(s)")
    parser.add_argument("--out", required=True, metavar="O", help="result image (.png, .jpg, ...)")
    parser.add_argument("--size", type=int, default=None, help="longer side of the result (px)")
    parser.add_argument("--steps", type=int, default=d.steps, help=f"optimizer steps ({d.steps})")
    parser.add_argument(
        "--weights",
        default=None,
        help="VGG-19 weights (imsyn .npz, torchvision .pth/.safetensors, Keras .h5); default "
        "$IMSYN_VGG19, else the fetched vgg19 (`imsyn weights fetch vgg19`), else random "
        "features (a warning)",
    )
    parser.add_argument("--optimizer", choices=nst.OPTIMIZERS, default=d.optimizer)
    parser.add_argument("--init", choices=nst.INITS, default=d.init)
    parser.add_argument(
        "--linesearch",
        choices=nst.LINESEARCHES,
        default=d.linesearch,
        help="L-BFGS line search: host-side Armijo backtracking, or optax's in-graph zoom",
    )
    parser.add_argument("--lr", type=_floats, default=d.lr, help="Adam learning rate")
    parser.add_argument("--content-weight", type=_floats, default=d.content_weight)
    parser.add_argument(
        "--style-weight",
        type=_floats,
        default=d.style_weight,
        help=f"({d.style_weight:g}) useful range 1e4..1e6 at content weight 1 (any weights file: "
        "the network is normalized to mean activation 1 per layer)",
    )
    parser.add_argument("--tv-weight", type=_floats, default=d.tv_weight, help="0 = off")
    parser.add_argument(
        "--content-layers", default=",".join(d.content_layers), help="comma-separated"
    )
    parser.add_argument("--style-layers", default=",".join(d.style_layers), help="comma-separated")
    parser.add_argument(
        "--style-blend", type=_floats, nargs="+", default=None, help="one weight per style"
    )
    parser.add_argument("--style-fit", choices=nst.STYLE_FITS, default="scale")
    parser.add_argument(
        "--style-scale", type=_floats, default=1.0, help="style size / content size (fit=scale)"
    )
    parser.add_argument("--original-colors", action="store_true", help="keep the content's colours")
    parser.add_argument("--pooling", choices=("max", "avg"), default=d.pooling)
    parser.add_argument("--no-clamp", action="store_true", help="do not clamp to [0, 1] per step")
    parser.add_argument("--seed", type=int, default=d.seed, help="noise seed")
    parser.add_argument(
        "--snapshot-every", type=int, default=0, help="write O_snapshots/step_N.png every N steps"
    )
    parser.add_argument("--remat", action="store_true", help="save memory at large sizes")
    parser.add_argument("--quiet", action="store_true", help="no progress bar")


def run(args: argparse.Namespace) -> int:
    from imsyn import nst
    from imsyn.image import IMAGE_SUFFIXES, read_float, write_image, write_json
    from imsyn.models import vgg

    out = Path(args.out)
    if out.suffix.lower() not in IMAGE_SUFFIXES:
        raise InputError(
            f"{out}: unsupported output format; use one of {', '.join(IMAGE_SUFFIXES)}"
        )
    if args.size is not None and args.size <= 0:
        raise InputError(f"--size must be positive, got {args.size}")
    if args.snapshot_every < 0:
        raise InputError(f"--snapshot-every must be >= 0, got {args.snapshot_every}")
    options = nst.Options(
        content_layers=tuple(s for s in args.content_layers.split(",") if s),
        style_layers=tuple(s for s in args.style_layers.split(",") if s),
        content_weight=args.content_weight,
        style_weight=args.style_weight,
        tv_weight=args.tv_weight,
        init=args.init,
        optimizer=args.optimizer,
        linesearch=args.linesearch,
        steps=args.steps,
        lr=args.lr,
        clamp=not args.no_clamp,
        pooling=args.pooling,
        seed=args.seed,
        remat=args.remat,
    ).validated()
    if args.style_blend is not None and len(args.style_blend) != len(args.styles):
        raise InputError(
            f"--style-blend needs one weight per style ({len(args.styles)}), "
            f"got {len(args.style_blend)}"
        )
    content = read_float(args.content, mode="rgb")
    styles = [read_float(s, mode="rgb") for s in args.styles]
    weights = vgg.load_weights(args.weights)

    snap_dir = out.with_name(out.stem + "_snapshots")

    def snapshot(step, img, _metrics):
        write_image(snap_dir / f"step_{step:05d}.png", img)

    res = nst.style_transfer(
        content,
        styles,
        weights,
        size=args.size,
        style_fit=args.style_fit,
        style_scale=args.style_scale,
        original_colors=args.original_colors,
        options=options,
        style_blend=args.style_blend,
        callback=snapshot if args.snapshot_every else None,
        snapshot_every=args.snapshot_every,
        progress=not args.quiet,
    )
    meta = {
        "content": str(args.content),
        "styles": [str(s) for s in args.styles],
        "style_blend": args.style_blend,
        "size": list(res.image.shape[:2]),
        "style_fit": args.style_fit,
        "style_scale": args.style_scale,
        "original_colors": args.original_colors,
        "options": dataclasses.asdict(options),
        "weights": weights.source,
        "weights_normalization": weights.normalization,
        "evaluations": res.evaluations,
        "seconds": round(res.seconds, 3),
        "content_loss": res.content_loss.tolist(),
        "style_loss": res.style_loss.tolist(),
        "tv_loss": res.tv_loss.tolist(),
        "loss": res.loss.tolist(),
    }
    json_path = out.with_name(out.name + ".json")
    write_image(out, res.image)
    try:
        write_json(json_path, meta)
    except BaseException:
        out.unlink(missing_ok=True)
        raise
    print(
        f"wrote {out} ({res.image.shape[1]}x{res.image.shape[0]}, {options.steps} steps, "
        f"style {res.style_loss[0]:.4g} -> {res.style_loss[-1]:.4g}, weights: {weights.source}, "
        f"{res.seconds:.1f} s)",
        file=sys.stderr,
    )
    return 0

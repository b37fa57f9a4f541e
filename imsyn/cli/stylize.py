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

MIN_SIZE, MAX_SIZE = 16, 16384  # VGG-19 pools 4 times before conv5_4


def _size(v):
    if isinstance(v, bool) or not isinstance(v, int) or not MIN_SIZE <= v <= MAX_SIZE:
        raise ValueError
    return v


def add_arguments(parser: argparse.ArgumentParser) -> None:
    from imsyn import nst, validate

    d = nst.Options()
    R = {k: validate.arg(f) for k, f in nst.RULES.items()}
    _floats = validate.arg(validate.number(min=0, max=nst.MAX_WEIGHT, open_min=True))
    size = validate.custom(
        _size,
        f"an integer in [{MIN_SIZE}, {MAX_SIZE}] (smaller images are too small for "
        "VGG-19's pooling)",
    )
    parser.add_argument("content", metavar="CONTENT", help="content image")
    parser.add_argument("styles", metavar="STYLE", nargs="+", help="style image(s)")
    parser.add_argument("--out", required=True, metavar="O", help="result image (.png, .jpg, ...)")
    parser.add_argument(
        "--size", type=validate.arg(size), default=None, help="longer side of the result (px)"
    )
    parser.add_argument(
        "--steps", type=R["steps"], default=d.steps, help=f"optimizer steps ({d.steps})"
    )
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
    parser.add_argument("--lr", type=R["lr"], default=d.lr, help="Adam learning rate")
    parser.add_argument("--content-weight", type=R["content_weight"], default=d.content_weight)
    parser.add_argument(
        "--style-weight",
        type=R["style_weight"],
        default=d.style_weight,
        help=f"({d.style_weight:.0e}) useful range 1e4..1e6 at content weight 1 (any weights file: "
        "the network is normalized to mean activation 1 per layer)",
    )
    parser.add_argument("--tv-weight", type=R["tv_weight"], default=d.tv_weight, help="0 = off")
    parser.add_argument(
        "--content-layers", default=",".join(d.content_layers), help="comma-separated"
    )
    parser.add_argument("--style-layers", default=",".join(d.style_layers), help="comma-separated")
    parser.add_argument(
        "--style-blend", type=_floats, nargs="+", default=None, help="one weight per style"
    )
    parser.add_argument("--style-fit", choices=nst.STYLE_FITS, default="scale")
    parser.add_argument(
        "--style-scale",
        type=R["style_scale"],
        default=1.0,
        help="style size / content size (fit=scale)",
    )
    parser.add_argument("--original-colors", action="store_true", help="keep the content's colours")
    parser.add_argument("--pooling", choices=("max", "avg"), default=d.pooling)
    parser.add_argument("--no-clamp", action="store_true", help="do not clamp to [0, 1] per step")
    parser.add_argument("--seed", type=R["seed"], default=d.seed, help="noise seed")
    parser.add_argument(
        "--snapshot-every",
        type=R["snapshot_every"],
        default=0,
        help="write O_snapshots/step_N.png every N steps",
    )
    parser.add_argument("--remat", action="store_true", help="save memory at large sizes")
    parser.add_argument(
        "--dtype",
        choices=nst.DTYPES,
        default=d.dtype,
        help="compute dtype of the VGG features (bfloat16: mixed precision; the image, "
        "optimizer and losses stay float32)",
    )
    parser.add_argument("--quiet", action="store_true", help="no progress bar")


def run(args: argparse.Namespace) -> int:
    from imsyn import nst
    from imsyn.errors import OutputError
    from imsyn.image import IMAGE_SUFFIXES, read_float, write_image, write_json, write_together
    from imsyn.models import vgg
    from imsyn.outputs import check_outputs

    out = Path(args.out)
    if out.is_dir():
        raise OutputError(f"{out}: is a directory; give a file name for the result")
    if out.suffix.lower() not in IMAGE_SUFFIXES:
        raise InputError(
            f"{out}: unsupported output format; use one of {', '.join(IMAGE_SUFFIXES)}"
        )
    json_path = out.with_name(out.name + ".json")
    for p in (out, json_path):
        if p.is_dir():
            raise OutputError(f"{p}: is a directory; give a file name for the result")
    inputs = [args.content, *args.styles] + ([args.weights] if args.weights else [])
    check_outputs([out, json_path], inputs=inputs)
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
        dtype=args.dtype,
    ).validated()
    if args.style_blend is not None and len(args.style_blend) != len(args.styles):
        raise InputError(
            f"--style-blend needs one weight per style ({len(args.styles)}), "
            f"got {len(args.style_blend)}"
        )
    content = read_float(args.content, mode="rgb")
    shape = nst.fit_size(content.shape[:2], args.size)
    nst.check_size(shape, options.content_layers + options.style_layers)
    nst.check_memory(shape, memory_size=options.memory_size)
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
    write_together(
        {out: lambda tmp: write_image(tmp, res.image), json_path: lambda tmp: write_json(tmp, meta)}
    )
    print(
        f"wrote {out} ({res.image.shape[1]}x{res.image.shape[0]}, {options.steps} steps, "
        f"style {res.style_loss[0]:.4g} -> {res.style_loss[-1]:.4g}, weights: {weights.source}, "
        f"{res.seconds:.1f} s)",
        file=sys.stderr,
    )
    return 0

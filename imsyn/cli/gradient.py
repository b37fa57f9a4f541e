"""CLI for the A2 gradient-domain tasks (one module, several tasks).

``blend``, ``mono-transfer``: a source pasted into a target under a mask;
``flatten``, ``illumination``, ``recolor``: an edit of one image under a mask;
``color2gray``: colour to gray; ``toy``: rebuild an image from its gradients.
Each prints the solver's residual and iteration count on stdout.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np

from imsyn import image as im
from imsyn.errors import InputError, OutputError

_MASKED = ("flatten", "illumination", "recolor")
_PASTE = ("blend", "mono-transfer")


def _pair(text: str, name: str, kind=int) -> tuple:
    parts = text.replace(" ", "").split(",")
    try:
        return tuple(kind(p) for p in parts)
    except ValueError:
        raise InputError(f"{name} must be comma-separated numbers, got {text!r}") from None


def add_task_arguments(task: str, parser: argparse.ArgumentParser) -> None:
    """Adds the arguments of ``task`` to its sub-parser."""
    if task in _PASTE:
        parser.add_argument("--source", required=True, help="image to paste (file)")
        parser.add_argument("--target", required=True, help="image to paste into (file)")
        parser.add_argument(
            "--mask",
            required=True,
            help="mask in source coordinates (white = pasted; thresholded at 0.5)",
        )
        parser.add_argument(
            "--offset",
            default=None,
            metavar="DY,DX",
            help="target pixel that source pixel (0,0) lands on; omit when the source "
            "is pre-aligned (same size as the target)",
        )
        if task == "blend":
            parser.add_argument(
                "--mode",
                choices=("poisson", "mixed"),
                default="poisson",
                help="guidance: source gradients, or the larger of source/target gradient",
            )
            parser.add_argument(
                "--magnitude",
                choices=("channel", "color"),
                default="channel",
                help="mixed mode: compare gradients per channel or over all channels",
            )
    else:
        parser.add_argument("input", help="input image (file)")
        if task in _MASKED:
            parser.add_argument("--mask", required=True, help="region to edit (white)")
    if task == "flatten":
        parser.add_argument(
            "--threshold", type=float, default=0.1, help="edge threshold on luma gradient (0-1)"
        )
    if task == "illumination":
        parser.add_argument("--alpha", type=float, default=0.2, help="fraction of mean gradient")
        parser.add_argument("--beta", type=float, default=0.4, help="compression exponent (0-1)")
    if task == "recolor":
        parser.add_argument(
            "--factors", default="1.5,0.5,0.5", metavar="R,G,B", help="channel multipliers"
        )
    if task == "color2gray":
        parser.add_argument("--angle", type=float, default=45.0, help="hue axis for the sign")
        parser.add_argument(
            "--data-weight", type=float, default=1e-3, help="pull towards the luma (> 0)"
        )
    if task == "toy":
        parser.add_argument(
            "--anchor", default="0,0", metavar="Y,X", help="the pixel whose value is given"
        )
    parser.add_argument("--out", required=True, help="output image (.png/.jpg/.tif ...)")
    parser.add_argument("--tol", type=float, default=None, help="CG relative tolerance")
    parser.add_argument("--maxiter", type=int, default=None, help="CG iteration cap")


def _read(path: str):
    raw = im.read_image(path)
    return raw, im.to_float(raw)


def _read_mask(path: str):
    from imsyn.poisson import binarize_mask

    raw = im.read_image(path)
    mask, binary = binarize_mask(raw)
    if not binary:
        print(f"note: mask {path} is not binary; thresholded at 0.5", file=sys.stderr)
    return mask


def _match_channels(a: np.ndarray, b: np.ndarray):
    ca = 1 if a.ndim == 2 else a.shape[-1]
    cb = 1 if b.ndim == 2 else b.shape[-1]
    if ca == cb:
        return a, b
    mode = "rgba" if 4 in (ca, cb) else "rgb"

    def conv(x):
        if mode == "rgb":
            return im.to_rgb(x)
        if x.ndim == 2:
            x = np.repeat(x[..., None], 3, -1)
        return np.concatenate([x, np.ones_like(x[..., :1])], -1)

    return conv(a), conv(b)


def _check_out(path: str) -> Path:
    out = Path(path)
    if out.suffix.lower() not in im.IMAGE_SUFFIXES:
        raise OutputError(
            f"{out}: unsupported output format {out.suffix or '(none)'!r}; "
            f"use one of {', '.join(im.IMAGE_SUFFIXES)}"
        )
    if out.is_dir():
        raise OutputError(f"{out}: is a directory")
    return out


def _write(out: Path, img: np.ndarray, raw_dtype) -> None:
    sixteen = raw_dtype == np.uint16 and (
        out.suffix.lower() in (".tif", ".tiff") or (out.suffix.lower() == ".png" and img.ndim == 2)
    )
    data = im.to_uint16(img) if sixteen else im.to_uint8(img)
    im.write_image(out, data)


def run(args: argparse.Namespace) -> int:
    """Runs the task named by ``args.task``; returns the exit status."""
    from imsyn import poisson

    task = args.task
    out = _check_out(args.out)
    if args.tol is not None and not args.tol > 0:
        raise InputError(f"--tol must be > 0, got {args.tol}")
    if args.maxiter is not None and args.maxiter < 1:
        raise InputError(f"--maxiter must be >= 1, got {args.maxiter}")
    opts = {}
    if args.tol is not None:
        opts["tol"] = args.tol
    if args.maxiter is not None:
        opts["maxiter"] = args.maxiter

    extra = ""
    if task in _PASTE:
        _, src = _read(args.source)
        raw, tgt = _read(args.target)
        mask = _read_mask(args.mask)
        src, tgt = _match_channels(src, tgt)
        offset = None if args.offset is None else _pair(args.offset, "--offset")
        if offset is not None and len(offset) != 2:
            raise InputError(f"--offset must be DY,DX, got {args.offset!r}")
        if task == "blend":
            res = poisson.blend(
                src, tgt, mask, offset=offset, mode=args.mode, magnitude=args.magnitude, **opts
            )
        else:
            res = poisson.monochrome_transfer(src, tgt, mask, offset=offset, **opts)
    else:
        raw, img = _read(args.input)
        if task in _MASKED:
            mask = _read_mask(args.mask)
            if mask.shape != img.shape[:2]:
                raise InputError(
                    f"mask {args.mask} is {mask.shape[1]}x{mask.shape[0]} but the input is "
                    f"{img.shape[1]}x{img.shape[0]}"
                )
        if task == "flatten":
            res = poisson.flatten_texture(img, mask, threshold=args.threshold, **opts)
        elif task == "illumination":
            res = poisson.change_illumination(img, mask, alpha=args.alpha, beta=args.beta, **opts)
        elif task == "recolor":
            factors = _pair(args.factors, "--factors", float)
            if img.ndim == 2:
                img = im.to_rgb(img)
            res = poisson.change_color(img, mask, factors=factors, **opts)
        elif task == "color2gray":
            if img.ndim == 2:
                raise InputError(f"{args.input}: is already grayscale")
            res = poisson.color2gray(img, angle=args.angle, data_weight=args.data_weight, **opts)
        elif task == "toy":
            anchor = _pair(args.anchor, "--anchor")
            if len(anchor) != 2:
                raise InputError(f"--anchor must be Y,X, got {args.anchor!r}")
            res = poisson.reconstruct(img, anchor=anchor, **opts)
            extra = f" max_abs_error={float(np.abs(res.image - img).max()):.3g}"
        else:  # pragma: no cover - argparse only offers known tasks
            raise InputError(f"unknown task {task!r}")

    _write(out, res.image, raw.dtype)
    print(
        f"{task}: residual={res.residual:.3g} iterations={res.iterations} "
        f"converged={res.converged}{extra} -> {out}"
    )
    if not res.converged:
        print(
            f"warning: CG stopped at --maxiter before reaching the tolerance "
            f"(residual {res.residual:.3g})",
            file=sys.stderr,
        )
    return 0

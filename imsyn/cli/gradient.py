"""CLI for the A2 gradient-domain tasks (one module, several tasks).

``blend``, ``mono-transfer``: a source pasted into a target under a mask;
``flatten``, ``illumination``, ``recolor``: an edit of one image under a mask;
``color2gray``: colour to gray; ``toy``: rebuild an image from its gradients.
Each prints one line on stdout: the solver's residual, iteration count and notes
(a mask that was not binary). Every numeric option is checked when it is parsed
(:func:`imsyn.validate.arg`: finite, in range, integers within int32) with the field
that :mod:`imsyn.poisson` checks the same argument with (``TOL``, ``MAXITER``, ...); the output
may not be one of the inputs (:func:`imsyn.outputs.check_outputs`); a result that
is not finite is never written.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np

from imsyn import image as im
from imsyn import validate as v
from imsyn.errors import InputError, OutputError
from imsyn.outputs import check_outputs

# The rules of the numeric options are the library's (one source: imsyn/poisson.py, whose
# functions check their arguments with the same fields), so both fail alike on a bad value.
from imsyn.poisson import (
    ALPHA,
    ANCHOR,
    ANGLE,
    BETA,
    DATA_WEIGHT,
    FACTOR,
    MAXITER,
    OFFSET,
    THRESHOLD,
    TOL,
)

_MASKED = ("flatten", "illumination", "recolor")
_PASTE = ("blend", "mono-transfer")


def add_task_arguments(task: str, parser: argparse.ArgumentParser) -> None:
    """Adds the arguments of ``task`` to its sub-parser."""
    v.one_line_errors(parser)
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
            type=v.arg_tuple(OFFSET, 2, names="DY,DX"),
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
            "--threshold",
            type=v.arg(THRESHOLD),
            default=0.1,
            help="edge threshold on luma gradient (0-1)",
        )
    if task == "illumination":
        parser.add_argument(
            "--alpha", type=v.arg(ALPHA), default=0.2, help="fraction of mean gradient"
        )
        parser.add_argument(
            "--beta", type=v.arg(BETA), default=0.4, help="compression exponent (0-1)"
        )
    if task == "recolor":
        parser.add_argument(
            "--factors",
            default=(1.5, 0.5, 0.5),
            type=v.arg_tuple(FACTOR, 3, names="R,G,B"),
            metavar="R,G,B",
            help="channel multipliers",
        )
    if task == "color2gray":
        parser.add_argument(
            "--angle", type=v.arg(ANGLE), default=45.0, help="hue axis for the sign"
        )
        parser.add_argument(
            "--data-weight",
            type=v.arg(DATA_WEIGHT),
            default=1e-3,
            help="pull towards the luma (> 0)",
        )
    if task == "toy":
        parser.add_argument(
            "--anchor",
            default=(0, 0),
            type=v.arg_tuple(ANCHOR, 2, names="Y,X"),
            metavar="Y,X",
            help="the pixel whose value is given",
        )
    parser.add_argument("--out", required=True, help="output image (.png/.jpg/.tif ...)")
    parser.add_argument(
        "--tol", type=v.arg(TOL), default=None, help="CG relative tolerance, in (0, 1)"
    )
    parser.add_argument("--maxiter", type=v.arg(MAXITER), default=None, help="CG iteration cap")


def _read(path: str):
    raw = im.read_image(path)
    return raw, im.to_float(raw)


def _read_mask(path: str, notes: list[str]):
    from imsyn.poisson import binarize_mask

    raw = im.read_image(path)
    mask, binary = binarize_mask(raw)
    if not binary:
        notes.append(f"mask {path} not binary: thresholded at 0.5")
    return mask


def _match_channels(a: np.ndarray, b: np.ndarray):
    """The source ``a`` in the target ``b``'s channels; the source's alpha is flattened
    (composited on white, as every reader does) unless the target has alpha too."""
    if a.ndim == 3 and a.shape[-1] == 4 and not (b.ndim == 3 and b.shape[-1] == 4):
        a = im.to_rgb(a)
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
    if not np.all(np.isfinite(img)):
        raise InputError(
            f"the solve gave NaN or infinite values; nothing written to {out} "
            "(try a smaller --tol or other weights)"
        )
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
    inputs = [args.source, args.target] if task in _PASTE else [args.input]
    if getattr(args, "mask", None):
        inputs.append(args.mask)
    check_outputs([out], inputs=inputs)
    opts = {}
    if args.tol is not None:
        opts["tol"] = args.tol
    if args.maxiter is not None:
        opts["maxiter"] = args.maxiter
    notes: list[str] = []

    extra = ""
    if task in _PASTE:
        _, src = _read(args.source)
        raw, tgt = _read(args.target)
        mask = _read_mask(args.mask, notes)
        src, tgt = _match_channels(src, tgt)
        offset = args.offset
        if task == "blend":
            res = poisson.blend(
                src, tgt, mask, offset=offset, mode=args.mode, magnitude=args.magnitude, **opts
            )
        else:
            res = poisson.monochrome_transfer(src, tgt, mask, offset=offset, **opts)
    else:
        raw, img = _read(args.input)
        if task in _MASKED:
            mask = _read_mask(args.mask, notes)
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
            factors = args.factors
            if img.ndim == 2:
                img = im.to_rgb(img)
            res = poisson.change_color(img, mask, factors=factors, **opts)
        elif task == "color2gray":
            if img.ndim == 2:
                raise InputError(f"{args.input}: is already grayscale")
            res = poisson.color2gray(img, angle=args.angle, data_weight=args.data_weight, **opts)
        elif task == "toy":
            res = poisson.reconstruct(img, anchor=args.anchor, **opts)
            extra = f" max_abs_error={float(np.abs(res.image - img).max()):.3g}"
        else:  # pragma: no cover - argparse only offers known tasks
            raise InputError(f"unknown task {task!r}")

    _write(out, res.image, raw.dtype)
    note = f" ({'; '.join(notes)})" if notes else ""
    print(
        f"{task}: residual={res.residual:.3g} iterations={res.iterations} "
        f"converged={res.converged}{extra} -> {out}{note}"
    )
    if not res.converged:
        print(
            f"warning: CG stopped at --maxiter before reaching the tolerance "
            f"(residual {res.residual:.3g})",
            file=sys.stderr,
        )
    return 0

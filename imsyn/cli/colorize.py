"""``python -m imsyn colorize PLATE [PLATE ...] --out-dir DIR``: A1 colorization.

For every plate writes ``DIR/<stem>.<format>`` (the aligned, cropped colour
image) and ``DIR/<stem>.json`` (offsets in the convention of
:mod:`imsyn.align`, crop box, scores, peak, settings, seconds). A plate that
fails (unreadable, truncated, too small, a directory) gets one error line and
no output; the others are still processed, a batch ends with one summary line,
and the exit status is 2. An output that would replace one of the plates is
refused before any work; an image and its JSON are written together or not at
all (a failed write leaves any older result of the same name as it was).
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path

from imsyn import validate as v
from imsyn.errors import ImsynError, OutputError
from imsyn.outputs import check_outputs

FORMATS = ("jpg", "png", "tif")


def add_arguments(parser: argparse.ArgumentParser) -> None:
    from imsyn.align import FEATURES, METRICS

    v.one_line_errors(parser)
    parser.add_argument("plates", nargs="+", metavar="PLATE", help="stacked B/G/R plate images")
    parser.add_argument("--out-dir", required=True, type=Path, help="output directory")
    parser.add_argument("--format", choices=FORMATS, default="jpg", help="output image format")
    parser.add_argument(
        "--features", choices=FEATURES, default="gradient", help="what the channels are aligned on"
    )
    parser.add_argument("--metric", choices=METRICS, default="ncc", help="alignment score")
    parser.add_argument(
        "--radius",
        type=v.arg(v.integer(1, v.INT32_MAX)),
        default=None,
        help="full-resolution search radius in pixels (default: 8%% of the channel side)",
    )
    parser.add_argument(
        "--subpixel", action="store_true", help="sub-pixel offsets (parabola fit of the scores)"
    )
    parser.add_argument("--no-crop", action="store_true", help="keep the plate borders")
    parser.add_argument("--no-contrast", action="store_true", help="skip the percentile stretch")
    parser.add_argument(
        "--no-white-balance", action="store_true", help="skip the gray-world white balance"
    )
    parser.add_argument(
        "--quality", type=v.arg(v.integer(1, 95)), default=95, help="JPEG quality (1-95)"
    )


def _check_out_dir(out_dir: Path) -> None:
    """Refuses an output folder that cannot be written, without creating it (it is created
    by the first result written, so a run where every plate fails leaves nothing behind)."""
    if out_dir.exists() and not out_dir.is_dir():
        raise OutputError(f"{out_dir}: output path exists and is not a directory")
    existing = next(p for p in (out_dir.absolute(), *out_dir.absolute().parents) if p.exists())
    if not existing.is_dir():
        raise OutputError(f"{out_dir}: cannot create output directory ({existing} is a file)")
    if not os.access(existing, os.W_OK | os.X_OK):
        raise OutputError(f"{out_dir}: output directory is not writable")


def _outputs(path: Path, args: argparse.Namespace) -> tuple[Path, Path]:
    """The image and JSON that plate ``path`` writes."""
    return args.out_dir / f"{path.stem}.{args.format}", args.out_dir / f"{path.stem}.json"


def _one(path: Path, args: argparse.Namespace) -> tuple[Path, dict]:
    """Colorizes one plate and writes its image and JSON; returns (image path, record)."""
    import numpy as np

    from imsyn import align
    from imsyn.image import (
        read_image,
        rgb_to_gray,
        to_float,
        write_image,
        write_json,
        write_together,
    )

    t0 = time.perf_counter()
    raw = read_image(path)
    if raw.ndim == 3:
        plate = rgb_to_gray(to_float(raw))
    elif np.issubdtype(raw.dtype, np.integer):
        # An integer gray plate goes to colorize as decoded: it converts each third with
        # to_float straight into the buffers the search reads in place (no extra copy).
        plate = raw
    else:
        plate = to_float(raw)  # float TIFF: clipped to [0, 1]
    t1 = time.perf_counter()
    bit_depth = 16 if args.format == "tif" and raw.dtype == np.uint16 else 8
    steps: dict = {}
    res = align.colorize(
        plate,
        features=args.features,
        metric=args.metric,
        radius=args.radius,
        subpixel=args.subpixel,
        crop=not args.no_crop,
        contrast=not args.no_contrast,
        balance=not args.no_white_balance,
        dtype=np.uint16 if bit_depth == 16 else np.uint8,  # what the file holds, made in
        timings=steps,  # cache-sized blocks (the same pixels as write_image's conversion)
    )
    t2 = time.perf_counter()
    out_img, out_json = _outputs(path, args)
    h = plate.shape[0] // 3
    record = {
        "input": str(path),
        "output": str(out_img),
        "convention": (
            "(dy, dx) full-resolution px: np.roll(third, (dy, dx), axis=(0, 1)) lies on the "
            f"B third; thirds are plate[:{h}], plate[{h}:{2 * h}], plate[{2 * h}:{3 * h}]"
        ),
        "offsets": {k: list(v) for k, v in res.offsets.items()},
        "crop": list(res.crop),
        "scores": res.scores,
        "peak": {k: p._asdict() for k, p in res.peaks.items()},
        "plate_shape": list(raw.shape),
        "image_shape": list(res.image.shape),
        "settings": {
            "features": args.features,
            "metric": args.metric,
            "radius": args.radius,
            "subpixel": args.subpixel,
            "crop": not args.no_crop,
            "contrast": not args.no_contrast,
            "white_balance": not args.no_white_balance,
            "format": args.format,
            "bit_depth": bit_depth,
        },
    }

    def json_writer(tmp: Path) -> None:  # runs after the image is staged: times its encoding
        t3 = time.perf_counter()
        record["timings"] = {
            "read": t1 - t0,
            "align_finish": t2 - t1,
            "align": steps["align"],
            "finish": steps["finish"],
            "write": t3 - t2,
        }
        record["seconds"] = t3 - t0
        write_json(tmp, record)

    write_together(
        {
            out_img: lambda tmp: write_image(
                tmp, res.image, bit_depth=bit_depth, quality=args.quality
            ),
            out_json: json_writer,
        }
    )
    return out_img, record


def run(args: argparse.Namespace) -> int:
    from imsyn.progress import Progress

    plates = [Path(p) for p in args.plates]
    check_outputs([o for p in plates for o in _outputs(p, args)], inputs=plates)
    _check_out_dir(args.out_dir)
    failed: list[str] = []
    seen: set[str] = set()
    bar = Progress(len(plates), desc="colorize", unit="plate", enabled=len(plates) > 1)
    for path in plates:
        try:
            if path.stem in seen:
                raise ImsynError(f"{path}: another plate already wrote {path.stem}.*")
            seen.add(path.stem)
            out_img, rec = _one(path, args)
            g, r = rec["offsets"]["g"], rec["offsets"]["r"]
            print(f"{out_img}: g={tuple(g)} r={tuple(r)} crop={tuple(rec['crop'])} "
                  f"{rec['seconds']:.2f}s")  # fmt: skip
        except ImsynError as e:
            msg = str(e)
            if not msg.startswith(str(path)):
                msg = f"{path}: {msg}"
            print(f"imsyn colorize: error: {msg}", file=sys.stderr)
            failed.append(str(path))
        bar.update(1, postfix=path.name)
    bar.close()
    if failed and len(plates) > 1:  # one plate: its error line says it all
        print(
            f"imsyn colorize: {len(failed)} of {len(plates)} plates failed: {', '.join(failed)}",
            file=sys.stderr,
        )
    return 2 if failed else 0

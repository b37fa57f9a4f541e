"""``python -m imsyn fid DIR_A DIR_B [--features auto|inception_v3_fid|random_conv_v1]``.

FID and KID between two folders of images (png, jpg, tif, bmp, webp; searched
recursively). Images are read as RGB in [0, 1] (grayscale repeated to three
channels, RGBA/LA composited over white), mapped to [-1, 1] and resized to the
network input with the extractor's one stated filter: for ``inception_v3_fid``
(the real TF-FID Inception-v3, ``python -m imsyn weights fetch inception_fid``)
bicubic to 299x299 (:data:`imsyn.models.inception.RESIZE_FILTER`).

Prints ONE JSON object on stdout::

    {"fid": ..., "kid": ..., "features": "inception_v3_fid", "resize": "bicubic ...",
     "n_a": 50, "n_b": 50, "kid_subset_size": 50, "dir_a": ..., "dir_b": ...}

with ``"features_note"`` when the offline ``random_conv_v1`` fallback was used
(``--features auto`` without fetched weights). Progress goes to stderr on long runs.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np

from imsyn.errors import InputError

PROGRESS_MIN_IMAGES = 256


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("dir_a", metavar="DIR_A", help="first image folder (e.g. real images)")
    parser.add_argument("dir_b", metavar="DIR_B", help="second image folder (e.g. generated)")
    parser.add_argument(
        "--features",
        default="auto",
        metavar="NAME",
        help="auto (default: inception_v3_fid when fetched, else random_conv_v1), "
        "inception_v3_fid or random_conv_v1",
    )
    parser.add_argument(
        "--weights",
        default=None,
        metavar="PATH",
        help="Inception-v3 weights file for inception_v3_fid (default: the fetched cache)",
    )
    parser.add_argument(
        "--batch-size", type=int, default=16, metavar="N", help="images per batch (default 16)"
    )
    parser.add_argument(
        "--kid-subset-size",
        type=int,
        default=1000,
        metavar="M",
        help="rows per KID subset (default 1000; capped at the smaller set's size)",
    )
    parser.add_argument(
        "--kid-subsets", type=int, default=100, metavar="K", help="KID subsets (default 100)"
    )
    parser.add_argument("--quiet", action="store_true", help="no progress line on stderr")


def _images(folder: str) -> list[Path]:
    from imsyn.image import IMAGE_SUFFIXES, list_images

    root = Path(folder)
    if not root.exists():
        raise InputError(f"{root}: no such directory")
    if not root.is_dir():
        raise InputError(f"{root}: not a directory")
    files = list_images(root)
    if len(files) < 2:
        kinds = ", ".join(sorted(s.lstrip(".") for s in IMAGE_SUFFIXES))
        raise InputError(f"{root}: found {len(files)} image(s), FID/KID need at least 2 ({kinds})")
    return files


def _features(extractor, files: list[Path], batch_size: int, bar) -> np.ndarray:
    """Features float[N, D] of image files, ``batch_size`` images per call."""
    from imsyn.image import read_float, to_network

    out = []
    for i in range(0, len(files), batch_size):
        batch = []
        for f in files[i : i + batch_size]:
            img = to_network(read_float(f, mode="rgb"))[None]
            batch.append(extractor.prepare(img)[0])
        out.append(np.asarray(extractor(np.stack(batch))))
        bar.update(len(batch))
    return np.concatenate(out)


def run(args: argparse.Namespace) -> int:
    from imsyn import metrics
    from imsyn.progress import Progress

    for flag, value, low in (
        ("--batch-size", args.batch_size, 1),
        ("--kid-subset-size", args.kid_subset_size, 2),
        ("--kid-subsets", args.kid_subsets, 1),
    ):
        if value < low:
            raise InputError(f"{flag} must be >= {low}, got {value}")
    files_a, files_b = _images(args.dir_a), _images(args.dir_b)
    if args.weights and not Path(args.weights).is_file():
        raise InputError(f"{args.weights}: weights file not found")
    extractor = metrics.get_extractor(args.features, args.weights, batch_size=args.batch_size)
    total = len(files_a) + len(files_b)
    bar = Progress(
        total,
        desc=f"fid features ({extractor.name})",
        unit="img",
        enabled=not args.quiet and total >= PROGRESS_MIN_IMAGES,
    )
    try:
        f_a = _features(extractor, files_a, args.batch_size, bar)
        f_b = _features(extractor, files_b, args.batch_size, bar)
    finally:
        bar.close()
    out = {
        "fid": metrics.fid(f_a, f_b),
        "kid": metrics.kid(
            f_a, f_b, num_subsets=args.kid_subsets, subset_size=args.kid_subset_size
        ),
        "features": extractor.name,
    }
    note = getattr(extractor, "note", None)
    if note:
        out["features_note"] = note
    out.update(
        {
            "resize": extractor.resize,
            "n_a": len(files_a),
            "n_b": len(files_b),
            "kid_subset_size": min(args.kid_subset_size, len(files_a), len(files_b)),
            "dir_a": str(args.dir_a),
            "dir_b": str(args.dir_b),
        }
    )
    print(json.dumps(out))
    return 0

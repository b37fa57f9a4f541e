"""``python -m imsyn fid A B`` and ``fid --save-stats OUT.npz DIR``: FID and KID.

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

Statistics, as pytorch-fid and clean-fid users keep them: ``--save-stats OUT.npz DIR``
writes the Gaussian FID fits to DIR's features (``mu`` float64[D], ``sigma``
float64[D, D], with ``features``, ``resize`` and ``n``); either input of ``fid A B`` may
then be such a ``.npz`` instead of a folder (also pytorch-fid's ``mu``/``sigma`` files, with
``--features`` named). FID from statistics equals FID from the folder exactly; KID needs
the features themselves, so it is ``null`` (with ``kid_note``) when an input is statistics.
The features of the statistics decide ``--features auto``; other features are refused.
clean-fid's legacy TF resize is not offered: imsyn has no TensorFlow to match it against.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np

from imsyn.errors import InputError

PROGRESS_MIN_IMAGES = 256


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "inputs",
        nargs="+",
        metavar="DIR_OR_STATS",
        help="two image folders (e.g. real and generated), either one may be a statistics "
        ".npz; with --save-stats: one folder",
    )
    parser.add_argument(
        "--save-stats",
        default=None,
        metavar="OUT.npz",
        help="write the FID statistics (mu, sigma, features) of the one folder given",
    )
    parser.add_argument(
        "--features",
        default="auto",
        metavar="NAME",
        help="auto (default: the features of a statistics input, else inception_v3_fid when "
        "fetched, else random_conv_v1), inception_v3_fid or random_conv_v1",
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
        "--kid-subsets",
        type=int,
        default=100,
        metavar="K",
        help="KID subsets (default 100, at most 1000)",
    )
    parser.add_argument("--quiet", action="store_true", help="no progress line on stderr")


#: the ``format`` entry of a statistics file written by ``--save-stats``
STATS_FORMAT = "imsyn.fid_stats"


def _is_stats(path: str) -> bool:
    return Path(path).suffix.lower() == ".npz"


def _images(folder: str) -> list[Path]:
    from imsyn.image import IMAGE_SUFFIXES, list_images

    root = Path(folder)
    if not root.exists():
        raise InputError(f"{root}: no such directory")
    if not root.is_dir():
        raise InputError(f"{root}: not a directory (nor a statistics .npz)")
    files = list_images(root)
    if len(files) < 2:
        kinds = ", ".join(sorted(s.lstrip(".") for s in IMAGE_SUFFIXES))
        raise InputError(f"{root}: found {len(files)} image(s), FID/KID need at least 2 ({kinds})")
    return files


def load_stats(path: str) -> dict:
    """``{"mu", "sigma", "features" (or None), "resize", "n"}`` of a statistics file.

    Raises:
      InputError: missing, unreadable, or without ``mu`` and ``sigma`` of fitting shapes.
    """
    p = Path(path)
    if not p.is_file():
        raise InputError(f"{p}: no such statistics file")
    bad = f"{p}: not a FID statistics file (an .npz with mu and sigma)"
    try:
        with np.load(p, allow_pickle=False) as f:
            arrays = {k: f[k] for k in f.files}
    except (OSError, ValueError, EOFError) as e:
        raise InputError(f"{bad}: {e}") from None
    if "mu" not in arrays or "sigma" not in arrays:
        raise InputError(bad)
    mu, sigma = np.asarray(arrays["mu"], np.float64), np.asarray(arrays["sigma"], np.float64)
    if mu.ndim != 1 or sigma.shape != (len(mu), len(mu)):
        raise InputError(f"{bad}: mu {mu.shape} and sigma {sigma.shape} do not fit together")

    def text(k):
        return str(arrays[k]) if k in arrays and arrays[k].ndim == 0 else None

    n = int(arrays["n"]) if "n" in arrays and arrays["n"].ndim == 0 else None
    return {
        "mu": mu,
        "sigma": sigma,
        "features": text("features"),
        "resize": text("resize"),
        "n": n,
    }


def save_stats(path: str | Path, mu, sigma, *, features: str, resize: str, n: int) -> None:
    """Writes a statistics file (atomically)."""
    import io

    from imsyn.image import write_bytes

    buf = io.BytesIO()
    np.savez(
        buf,
        mu=np.asarray(mu, np.float64),
        sigma=np.asarray(sigma, np.float64),
        features=np.array(features),
        resize=np.array(resize),
        n=np.array(n, np.int64),
        format=np.array(STATS_FORMAT),
    )
    write_bytes(path, buf.getvalue())


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


def _check_numbers(args) -> None:
    from imsyn import metrics

    for flag, value, low in (
        ("--batch-size", args.batch_size, 1),
        ("--kid-subset-size", args.kid_subset_size, 2),
    ):
        if value < low:
            raise InputError(f"{flag} must be >= {low}, got {value}")
    try:
        metrics.check_kid_subsets(args.kid_subsets)
    except InputError as e:
        raise InputError(f"--kid-subsets: {e}") from None
    if args.weights and not Path(args.weights).is_file():
        raise InputError(f"{args.weights}: weights file not found")


def _feature_name(args, stats: list[tuple[str, dict]]) -> str:
    """The features to use: ``--features``, or those of the statistics inputs (which must agree)."""
    from imsyn import metrics
    from imsyn.errors import ConfigError

    named = {s["features"] for _, s in stats if s["features"]}
    if len(named) > 1:
        raise InputError(f"the statistics files hold different features: {sorted(named)}")
    if args.features != "auto":
        want = metrics.resolve_features(args.features, args.weights)
        for path, s in stats:
            if s["features"] and s["features"] != want:
                raise InputError(
                    f"{path} holds {s['features']} statistics, not {want}: compare statistics "
                    "of the same features (omit --features to use the file's)"
                )
        return want
    for path, s in stats:
        if not s["features"]:
            raise ConfigError(
                f"{path} does not record its features; name them, e.g. --features "
                "inception_v3_fid (pytorch-fid and clean-fid statistics are Inception pool3)"
            )
    return named.pop() if named else args.features


def run(args: argparse.Namespace) -> int:
    from imsyn import metrics
    from imsyn.outputs import check_outputs
    from imsyn.progress import Progress

    _check_numbers(args)
    if args.save_stats is not None:
        if len(args.inputs) != 1 or _is_stats(args.inputs[0]):
            raise InputError("--save-stats takes one image folder: fid --save-stats OUT.npz DIR")
        if not args.save_stats.lower().endswith(".npz"):
            raise InputError(f"--save-stats {args.save_stats}: name the file *.npz")
        files = _images(args.inputs[0])
        check_outputs([args.save_stats], read_dirs=[args.inputs[0]])
    elif len(args.inputs) != 2:
        raise InputError(
            f"fid takes two folders or statistics files, got {len(args.inputs)} "
            "(--save-stats OUT.npz takes one folder)"
        )
    inputs = args.inputs
    stats = [(p, load_stats(p)) for p in inputs if _is_stats(p)]
    folders = {p: _images(p) for p in inputs if not _is_stats(p)}
    name = _feature_name(args, stats)
    extractor = None
    if folders:
        extractor = metrics.get_extractor(name, args.weights, batch_size=args.batch_size)
        name = extractor.name
    total = sum(len(f) for f in folders.values())
    bar = Progress(
        total,
        desc=f"fid features ({name})",
        unit="img",
        enabled=not args.quiet and total >= PROGRESS_MIN_IMAGES,
    )
    feats = {}
    try:
        for p, files in folders.items():
            feats[p] = _features(extractor, files, args.batch_size, bar)
    finally:
        bar.close()
    resize = extractor.resize if extractor is not None else stats[0][1]["resize"]
    note = getattr(extractor, "note", None)
    if args.save_stats is not None:
        (p,) = inputs
        mu, sigma = metrics.feature_stats(feats[p])
        save_stats(args.save_stats, mu, sigma, features=name, resize=resize, n=len(feats[p]))
        out = {"stats": args.save_stats, "features": name}
        if note:
            out["features_note"] = note
        out.update({"resize": resize, "n": len(feats[p]), "dir": p})
        print(json.dumps(out))
        return 0
    fits = {p: metrics.feature_stats(f) for p, f in feats.items()}
    fits.update({p: (s["mu"], s["sigma"]) for p, s in stats})
    counts = {p: len(f) for p, f in feats.items()}
    counts.update({p: s["n"] for p, s in stats})
    a, b = inputs
    if fits[a][0].shape != fits[b][0].shape:
        raise InputError(
            f"{a} and {b} have features of different widths ({len(fits[a][0])} and "
            f"{len(fits[b][0])})"
        )
    out = {"fid": metrics.fid_from_stats(*fits[a], *fits[b])}
    if not stats:
        out["kid"] = metrics.kid(
            feats[a], feats[b], num_subsets=args.kid_subsets, subset_size=args.kid_subset_size
        )
    else:
        out["kid"] = None
        out["kid_note"] = "KID needs the features of both sets; a statistics file has none"
    out["features"] = name
    if note:
        out["features_note"] = note
    out.update({"resize": resize, "n_a": counts[a], "n_b": counts[b]})
    if not stats:
        out["kid_subset_size"] = min(args.kid_subset_size, counts[a], counts[b])
    out.update({"dir_a": str(a), "dir_b": str(b)})
    print(json.dumps(out))
    return 0

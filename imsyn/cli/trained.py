"""``python -m imsyn translate | sample | export``: use a trained model.

``--model`` is a ``train.py`` run folder or a file written by ``export`` (see
:mod:`imsyn.trained`; the file is checked before use: a damaged or foreign file is one line,
exit status 2).

* ``translate --model RUN_OR_FILE IN... --out-dir DIR [--direction x2y|y2x]``: a CycleGAN
  applied to image files and folders (searched recursively) of any size and format:
  8/16-bit, grayscale (repeated to RGB), RGB, RGBA (composited on white, as the training data
  are). Each image is translated at its own size, reflect-padded to multiples of 4 and
  cropped back (:func:`imsyn.trained.translate_images`). One PNG per input, with the input's
  stem (inputs from a folder keep their sub-folders). An input folder may contain the output
  folder (what is already in it is not read); ``--out-dir`` may not be an input folder, lie
  inside the run folder, or overwrite an input.
* ``sample --model RUN_OR_FILE --num N --out-dir DIR [--seed S] [--interpolate K]``: N
  PNGs ``sample_000000.png`` ... from a DCGAN or style generator; sample ``i`` depends on the
  seed and ``i`` only (:func:`imsyn.trained.latents`), so the same seed gives the same files
  and a larger ``--num`` extends the set. ``--interpolate K`` also writes
  ``interpolation/frame_*.png``: a walk through the N latents, K frames from each to the
  next (spherical interpolation, :func:`imsyn.gan.slerp`), ending on the last.
* ``export --model RUN --out FILE.safetensors``: the generators and their architecture
  record in one file, loadable without the run folder: the way to share a trained model.

Nothing is written before every input and output has been checked; every file is written
atomically.
"""

from __future__ import annotations

import argparse
import os
from pathlib import Path

import numpy as np

from imsyn import validate as v
from imsyn.errors import InputError, OutputError

_MODEL_HELP = "a train.py run folder (--workdir) or a file written by `python -m imsyn export`"
BATCH = v.integer(min=1, max=v.INT32_MAX)
NUM = v.integer(min=1, max=10**6)
SEED = v.integer(min=0, max=v.INT64_MAX)
FRAMES = v.integer(min=2, max=10**4)
EXPORT_SUFFIX = ".safetensors"


def add_task_arguments(task: str, parser: argparse.ArgumentParser) -> None:
    """Adds the arguments of ``task`` (translate, sample, export) to its sub-parser."""
    if task == "translate":
        parser.add_argument(
            "inputs", nargs="+", metavar="IN", help="image files or folders (searched recursively)"
        )
        parser.add_argument(
            "--model", required=True, metavar="RUN_OR_FILE", help=f"CycleGAN: {_MODEL_HELP}"
        )
        parser.add_argument(
            "--out-dir", required=True, metavar="DIR", help="folder for the translations"
        )
        parser.add_argument(
            "--direction",
            choices=("x2y", "y2x"),
            default="x2y",
            help="x2y: the generator from config.data's domain to config.data_y's; y2x: back",
        )
        parser.add_argument(
            "--batch-size",
            metavar="B",
            type=v.arg(BATCH),
            default=8,
            help="images per generator call (images of one size are batched together)",
        )
    elif task == "sample":
        parser.add_argument(
            "--model", required=True, metavar="RUN_OR_FILE", help=f"DCGAN: {_MODEL_HELP}"
        )
        parser.add_argument(
            "--num", type=v.arg(NUM), required=True, metavar="N", help="samples to write"
        )
        parser.add_argument(
            "--out-dir", required=True, metavar="DIR", help="folder for the samples"
        )
        parser.add_argument("--seed", type=v.arg(SEED), default=0, metavar="S", help="latent seed")
        parser.add_argument(
            "--batch-size",
            type=v.arg(BATCH),
            default=64,
            metavar="B",
            help="samples per generator call",
        )
        parser.add_argument(
            "--interpolate",
            type=v.arg(FRAMES),
            default=None,
            metavar="K",
            help="also write interpolation/frame_*.png: K frames from each sample to the next",
        )
    elif task == "export":
        parser.add_argument("--model", required=True, metavar="RUN_OR_FILE", help=_MODEL_HELP)
        parser.add_argument("--out", required=True, help=f"the file to write (*{EXPORT_SUFFIX})")
    else:  # pragma: no cover - __main__ only passes the three
        raise ValueError(task)


def run(args: argparse.Namespace) -> int:
    return {"translate": run_translate, "sample": run_sample, "export": run_export}[args.task](args)


# --------------------------------------------------------------------------- checks


def _resolve(p) -> Path:
    return Path(os.path.abspath(os.path.expanduser(os.fspath(p)))).resolve()


def _model_inputs(model: str) -> tuple[list[str], list[str]]:
    """(files, folders) a --model reads: the file, or the run folder (nothing may go there)."""
    p = Path(model)
    if p.is_dir():
        return [], [model]
    if p.is_file():
        return [model], []
    raise InputError(f"--model {model}: no such run folder or model file")


def _check_out_dir(out_dir: str) -> None:
    p = Path(out_dir)
    if p.exists() and not p.is_dir():
        raise OutputError(f"--out-dir {out_dir} is a file, not a folder")
    probe = p
    while not probe.exists() and probe != probe.parent:
        probe = probe.parent
    if not probe.is_dir():
        raise OutputError(f"--out-dir {out_dir}: {probe} is not a folder")


def _inside(path: Path, folder: Path) -> bool:
    return path == folder or folder in path.parents


# --------------------------------------------------------------------------- translate


def plan_translation(inputs: list[str], out_dir: str) -> list[tuple[Path, Path]]:
    """``[(input image, output PNG), ...]`` of a ``translate`` command line, in order.

    A file goes to ``out_dir/<stem>.png``; the images of a folder (recursively; not those
    inside ``out_dir``) to ``out_dir/<sub-folders>/<stem>.png``.

    Raises:
      InputError: a missing input, a file that is not an image, a folder without images, or
        two inputs that would give the same output.
      OutputError: ``out_dir`` is an input folder or a file.
    """
    from imsyn.image import IMAGE_SUFFIXES, list_images

    _check_out_dir(out_dir)
    out = Path(out_dir)
    out_r = _resolve(out)
    pairs: list[tuple[Path, Path]] = []
    for given in inputs:
        p = Path(given)
        if p.is_dir():
            if _resolve(p) == out_r or (out.exists() and os.path.samefile(p, out)):
                raise OutputError(
                    f"--out-dir {out_dir} is the input folder {given}: the translations would "
                    "mix with the inputs; choose another --out-dir (a sub-folder is fine)"
                )
            files = [f for f in list_images(p) if not _inside(_resolve(f), out_r)]
            if not files:
                kinds = ", ".join(sorted(s.lstrip(".") for s in IMAGE_SUFFIXES))
                raise InputError(f"{given}: no images in this folder ({kinds})")
            pairs += [(f, out / f.relative_to(p).parent / f"{f.stem}.png") for f in files]
        elif p.is_file():
            if p.suffix.lower() not in IMAGE_SUFFIXES:
                kinds = ", ".join(IMAGE_SUFFIXES)
                raise InputError(f"{given}: not an image file (expected one of {kinds})")
            pairs.append((p, out / f"{p.stem}.png"))
        else:
            raise InputError(f"{given}: no such file or folder")
    seen: dict[Path, Path] = {}
    for src, dst in pairs:
        key = _resolve(dst)
        if key in seen:
            raise InputError(
                f"{seen[key]} and {src} would both be written to {dst}; translate them "
                "into different --out-dir folders"
            )
        seen[key] = src
    return pairs


def _padded(img: np.ndarray) -> tuple[int, int]:
    from imsyn.trained import pad_amounts

    return tuple(n + sum(pad_amounts(n)) for n in img.shape[:2])


def run_translate(args: argparse.Namespace) -> int:
    from imsyn import trained
    from imsyn.image import read_float, write_image
    from imsyn.outputs import check_outputs
    from imsyn.progress import Progress

    pairs = plan_translation(args.inputs, args.out_dir)
    model_files, run_dirs = _model_inputs(args.model)
    outs = [args.out_dir] + [dst for _, dst in pairs]
    check_outputs(outs, inputs=[src for src, _ in pairs] + model_files, read_dirs=run_dirs)

    model = trained.load(args.model, tasks=("cyclegan",))
    g_def, g_state = model.generator("g_xy" if args.direction == "x2y" else "g_yx")
    bar = Progress(len(pairs), desc=f"translate {args.direction}", unit="img")
    pending: list[tuple[np.ndarray, Path]] = []

    def flush():
        outs = trained.translate_images(g_def, g_state, [img for img, _ in pending])
        for y, (_, dst) in zip(outs, pending, strict=True):
            write_image(dst, y)
        bar.update(len(pending))
        pending.clear()

    try:
        for src, dst in pairs:
            img = read_float(src, mode="rgb")
            # a batch holds images of one padded size, in input order
            if pending and (
                len(pending) >= args.batch_size or _padded(pending[0][0]) != _padded(img)
            ):
                flush()
            pending.append((img, dst))
        if pending:
            flush()
    finally:
        bar.close()
    print(
        f"wrote {len(pairs)} translation(s) ({args.direction}, {model.task} step {model.step}) "
        f"to {args.out_dir}"
    )
    return 0


# --------------------------------------------------------------------------- sample


def run_sample(args: argparse.Namespace) -> int:
    import jax.numpy as jnp

    from imsyn import gan, trained
    from imsyn.image import write_image
    from imsyn.outputs import check_outputs
    from imsyn.progress import Progress

    if args.interpolate is not None and args.num < 2:
        raise InputError("--interpolate needs --num >= 2 (it walks from each sample to the next)")
    _check_out_dir(args.out_dir)
    out = Path(args.out_dir)
    names = [out / f"sample_{i:06d}.png" for i in range(args.num)]
    n_frames = 0 if args.interpolate is None else (args.num - 1) * args.interpolate + 1
    frames = [out / "interpolation" / f"frame_{j:06d}.png" for j in range(n_frames)]
    model_files, run_dirs = _model_inputs(args.model)
    check_outputs([out, *names, *frames], inputs=model_files, read_dirs=run_dirs)

    model = trained.load(args.model, tasks=("dcgan",))
    g_def, g_state = model.generator("g")
    z_dim = int(model.arch["z_dim"])
    bs = args.batch_size

    def write(paths: list[Path], z) -> None:
        for i in range(0, len(paths), bs):
            imgs = gan.generate(g_def, g_state, z[i : i + bs], batch_size=bs)
            for path, img in zip(paths[i : i + bs], imgs, strict=True):
                write_image(path, img)
            bar.update(len(imgs))

    bar = Progress(args.num + n_frames, desc="sample", unit="img")
    try:
        for i in range(0, args.num, bs):  # latents a batch at a time: any --num fits
            write(
                names[i : i + bs],
                trained.latents(args.seed, range(i, min(i + bs, args.num)), z_dim),
            )
        if n_frames:
            k = args.interpolate
            t = jnp.linspace(0.0, 1.0, k, endpoint=False)
            for i in range(args.num - 1):  # K frames from sample i towards sample i + 1
                a, b = trained.latents(args.seed, (i, i + 1), z_dim)
                write(frames[i * k : (i + 1) * k], np.asarray(gan.slerp(a, b, t)))
            write(frames[-1:], trained.latents(args.seed, (args.num - 1,), z_dim))  # the last
    finally:
        bar.close()
    extra = f" and {n_frames} interpolation frames" if n_frames else ""
    print(f"wrote {args.num} samples{extra} (seed {args.seed}, step {model.step}) to {out}")
    return 0


# --------------------------------------------------------------------------- export


def run_export(args: argparse.Namespace) -> int:
    from imsyn import trained
    from imsyn.outputs import check_outputs

    out = Path(args.out)
    if out.suffix.lower() != EXPORT_SUFFIX:
        raise OutputError(f"--out {args.out}: name the file *{EXPORT_SUFFIX}")
    if out.is_dir():
        raise OutputError(f"--out {args.out} is a folder; give a file name")
    model_files, run_dirs = _model_inputs(args.model)
    check_outputs([out], inputs=model_files, read_dirs=run_dirs)
    model = trained.load(args.model)
    trained.export(model, out)
    size = out.stat().st_size
    nets = ", ".join(trained.NETWORKS[model.task])
    print(
        f"wrote {out} ({model.task} {nets}, step {model.step}, "
        f"{model.config.image_size} px, {size / 2**20:.1f} MiB)"
    )
    return 0

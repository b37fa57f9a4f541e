"""A1 alignment speed and accuracy, side by side with the peers, ratios printed.

Sections (all in one run):

1. Exhaustive-search formulations (``impl`` of :func:`imsyn.align.align_offsets`):
   FFT, convolution, ``vmap`` and ``lax.map`` with batch sizes, on one exhaustive
   search (default: a 400-px channel, ±40 px).
2. A synthetic plate of ``--size``² px per channel (the astronaut upscaled, per-channel
   gain, known shifts up to ±200 px): imsyn vs ``skimage.registration.phase_cross_correlation``
   on the same full-resolution channels vs a plain NumPy exhaustive-SSD pyramid (the
   course approach); error against the truth and time, with ratios.
3. The real plates in ``--data``/prokudin: the same three methods.
4. First-call compile time in a fresh process, twice with one cache directory: the
   second process must hit JAX's persistent cache.
5. The whole pipeline per plate (decode a 16-bit TIFF, align, compose + crop + white
   balance + contrast, encode JPEG at quality 95) on a ~9600x3700 plate (``--size``
   3200: 3 x 3200 x 3700), warm, side by side with the same pipeline built from
   scikit-image the way a course solution does (:func:`skimage_pipeline`:
   ``skimage.io.imread``, ``phase_cross_correlation`` at pyramid level 1 and at full
   resolution, ``np.roll``, fixed border crop, gray world, ``rescale_intensity``, Pillow
   JPEG at the same quality; ``img_as_float32``, not the course starter's float64
   ``img_as_float``, which is slower). One input file; each side in a worker process of
   its own, rounds interleaved after one warm-up round; per stage and total: median
   (min-max), CPU seconds; the ratio of the medians, of the best rounds and per round.
   imsyn runs through the CLI's own per-plate function (``imsyn colorize``). The
   command for this section alone (the ``--json`` file holds every round)::

       python benchmarks/align.py --pipeline --repeats 11 --json pipeline.json

``--check`` only aligns the real plates and compares them with the consensus in
``prokudin/reported_offsets.md`` (exit status 1 if any is off by more than 1 px).

    python benchmarks/align.py [--quick] [--check] [--data DIR]   # default: the fetched course data
    python benchmarks/align.py --pipeline --repeats 11 --json pipeline.json   # section 5 only
"""

from __future__ import annotations

import argparse
import functools
import json
import math
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
PLATES = ("small/cathedral.jpg", "small/monastery.jpg", "small/tobolsk.jpg")
EMIR = "large_jpg/emir_500x1300.jpg"


def _timed(fn, repeats):
    """(result, median wall seconds) after one warm-up call; CPU seconds go to ``_CPU``."""
    out = fn()  # warm-up (compile)
    ts, cpu = [], time.process_time()
    for _ in range(repeats):
        t = time.perf_counter()
        out = fn()
        ts.append(time.perf_counter() - t)
    _CPU[0] = (time.process_time() - cpu) / repeats
    return out, statistics.median(ts)


_CPU = [0.0]  # CPU seconds (all threads) per call of the last _timed: load-independent


def _table(header, rows):
    widths = [max(len(str(x)) for x in col) for col in zip(header, *rows, strict=True)]
    line = "| " + " | ".join(h.ljust(w) for h, w in zip(header, widths, strict=True)) + " |"
    print(line)
    print("|" + "|".join("-" * (w + 2) for w in widths) + "|")
    for r in rows:
        print("| " + " | ".join(str(x).ljust(w) for x, w in zip(r, widths, strict=True)) + " |")
    print()


# --------------------------------------------------------------------------- methods


def imsyn_align(b, g, r, **kw):
    from imsyn import align

    return align.align_channels(b, g, r, **kw).offsets


def pcc_align(b, g, r, normalization=None):
    """skimage's FFT registration; plain cross-correlation (``normalization=None``) by
    default, since the default ``"phase"`` finds (0, 0) on the smooth upscaled plate."""
    from skimage.registration import phase_cross_correlation

    out = {}
    for name, ch in (("g", g), ("r", r)):
        # the shift that registers ch onto b: the same convention as imsyn
        shift = phase_cross_correlation(b, ch, normalization=normalization)[0]
        out[name] = tuple(int(round(v)) for v in shift)
    return out


def _np_ssd_pyramid(ref, mov, radius, min_size=400):
    """The course approach: exhaustive np.roll SSD at the coarsest level, ±2 per finer level.

    ``radius`` is the full-resolution search radius (halved with every level)."""
    if max(ref.shape) > min_size:
        h, w = ref.shape[0] // 2 * 2, ref.shape[1] // 2 * 2

        def half(x):
            return x[:h, :w].reshape(h // 2, 2, w // 2, 2).mean(axis=(1, 3))

        cy, cx = _np_ssd_pyramid(half(ref), half(mov), radius / 2, min_size)
        cy, cx, rad = 2 * cy, 2 * cx, 2
    else:
        cy, cx, rad = 0, 0, math.ceil(radius) + 1
    my, mx = ref.shape[0] // 10, ref.shape[1] // 10
    inner = np.s_[my:-my, mx:-mx]
    best, arg = np.inf, (cy, cx)
    for dy in range(cy - rad, cy + rad + 1):
        for dx in range(cx - rad, cx + rad + 1):
            ssd = np.sum((np.roll(mov, (dy, dx), axis=(0, 1))[inner] - ref[inner]) ** 2)
            if ssd < best:
                best, arg = ssd, (dy, dx)
    return arg


def numpy_align(b, g, r):
    radius = max(15, math.ceil(0.08 * max(b.shape)))  # the same reach as imsyn's default
    return {"g": _np_ssd_pyramid(b, g, radius), "r": _np_ssd_pyramid(b, r, radius)}


def _err(found, truth):
    return max(abs(a - t) for k in ("g", "r") for a, t in zip(found[k], truth[k], strict=True))


# --------------------------------------------------------------------------- data


def synthetic_plate(size, offsets, *, width=None):
    """``[3 * size, width]`` float32 plate from the astronaut upscaled (B, G, R thirds)."""
    from scipy import ndimage
    from skimage import data

    width = width or size
    photo = data.astronaut().astype(np.float32) / 255.0
    pad = 220
    zoom = (size + 2 * pad) / 512, (width + 2 * pad) / 512
    thirds = []
    for c, (dy, dx), gain in zip(
        (2, 1, 0), [(0, 0), offsets["g"], offsets["r"]], (1.0, 0.8, 1.15), strict=True
    ):
        ch = ndimage.zoom(photo[..., c], zoom, order=1)
        thirds.append(
            np.clip(ch[pad + dy : pad + dy + size, pad + dx : pad + dx + width] * gain, 0, 1)
        )
    return np.concatenate(thirds, axis=0).astype(np.float32)


def real_plates(data_dir):
    from imsyn.align import split_plate
    from imsyn.image import read_image, to_float

    out = {}
    for rel in (*PLATES, EMIR):
        path = data_dir / "prokudin" / rel
        if path.exists():
            out[path.stem] = split_plate(to_float(read_image(path)))
    return out


def consensus(data_dir):
    """{(plate, "g"|"r"): (dy, dx)} from the consensus column of reported_offsets.md."""
    from imsyn.align import reported_offsets

    return reported_offsets(data_dir / "prokudin" / "reported_offsets.md")


# --------------------------------------------------------------------------- sections


def section_impls(quick):
    import jax

    from imsyn import align

    n = 256 if quick else 400
    plate = synthetic_plate(n, {"g": (17, -9), "r": (31, 12)})
    b, g, r = align.split_plate(plate)
    movs = np.stack([g, r])
    rows, base = [], None
    for impl in ("fft", "conv", "vmap", "map1", "map16", "map128"):

        def run(impl=impl):
            return jax.block_until_ready(
                align.align_offsets(b, movs, impl=impl, radius=40, coarse_size=4096)
            )

        t = time.perf_counter()
        out = run()
        first = time.perf_counter() - t
        out, sec = _timed(run, 2 if quick else 5)
        base = base or sec
        rows.append([impl, f"{first:.2f}", f"{sec * 1e3:.1f}", f"{sec / base:.2f}x",
                     out["offsets"].tolist()])  # fmt: skip
    print(f"## 1. Exhaustive search formulations ({n}x{n} channel, 81x81 shifts, G and R)\n")
    _table(["impl", "first call s", "warm ms", "vs fft", "offsets"], rows)


def section_synthetic(size, quick):
    from imsyn import align

    truth = {"g": (-57, -23), "r": (160, 31)} if size >= 2000 else {"g": (-29, -12), "r": (80, 16)}
    plate = synthetic_plate(size, truth)
    b, g, r = align.split_plate(plate)
    reps = 2 if quick else 5
    res, cpu = {}, {}

    def add(name, fn, n):
        res[name] = _timed(fn, n)
        cpu[name] = _CPU[0]

    add("imsyn", lambda: imsyn_align(b, g, r), reps)
    add("imsyn subpixel", lambda: imsyn_align(b, g, r, subpixel=True), reps)
    add("phase_cross_correlation", lambda: pcc_align(b, g, r), 1 if quick else 3)
    add("phase_cross_correlation (phase)", lambda: pcc_align(b, g, r, "phase"), 1)
    t, c = time.perf_counter(), time.process_time()
    res["numpy SSD pyramid"] = (numpy_align(b, g, r), time.perf_counter() - t)
    cpu["numpy SSD pyramid"] = time.process_time() - c
    base, base_cpu = res["imsyn"][1], cpu["imsyn"]
    rows = [
        [k, f"{v[1]:.3f}", f"{v[1] / base:.1f}x", f"{cpu[k]:.3f}", f"{cpu[k] / base_cpu:.1f}x",
         f"{_err(v[0], truth):.2f}", {c: tuple(round(x, 2) for x in o) for c, o in v[0].items()}]
        for k, v in res.items()
    ]  # fmt: skip
    print(f"## 2. Synthetic {size}x{size}-per-channel plate, truth {truth}\n")
    header = ["method", "wall s (G+R)", "vs imsyn", "CPU s", "vs imsyn", "max error px", "offsets"]
    _table(header, rows)


def section_real(data_dir, quick):
    plates = real_plates(data_dir)
    rows = []
    for name, (b, g, r) in plates.items():
        ours, t_ours = _timed(lambda b=b, g=g, r=r: imsyn_align(b, g, r), 3)
        pcc, t_pcc = _timed(lambda b=b, g=g, r=r: pcc_align(b, g, r, "phase"), 3)
        t = time.perf_counter()
        npy = numpy_align(b, g, r)
        t_np = time.perf_counter() - t
        rows.append([name, ours, f"{t_ours * 1e3:.0f}", pcc, f"{t_pcc * 1e3:.0f}",
                     f"{t_pcc / t_ours:.1f}x", npy, f"{t_np * 1e3:.0f}",
                     f"{t_np / t_ours:.1f}x"])  # fmt: skip
    print(
        "## 3. Real plates (G and R offsets, ms warm; pcc with its default phase normalization)\n"
    )
    _table(["plate", "imsyn", "ms", "pcc", "ms", "pcc/imsyn", "numpy", "ms", "numpy/imsyn"], rows)


_CHILD = """
import json, sys, time
t0 = time.perf_counter()
from imsyn.runtime import enable_compilation_cache
enable_compilation_cache()
import numpy as np, jax
from imsyn import align
size = int(sys.argv[1])
rng = np.random.default_rng(0)
b = rng.random((size, size), dtype=np.float32)
movs = rng.random((2, size, size), dtype=np.float32)
t1, c1 = time.perf_counter(), time.process_time()
jax.block_until_ready(align.align_offsets(b, movs))
t2, c2 = time.perf_counter(), time.process_time()
jax.block_until_ready(align.align_offsets(b, movs))
t3, c3 = time.perf_counter(), time.process_time()
print(json.dumps({"first": t2 - t1, "second": t3 - t2,
                  "first_cpu": c2 - c1, "second_cpu": c3 - c2}))
"""


def section_compile(size):
    with tempfile.TemporaryDirectory() as cache:
        env = dict(os.environ, IMSYN_CACHE_DIR=cache)
        rows = []
        for run in ("fresh cache", "second process"):
            p = subprocess.run(
                [sys.executable, "-c", _CHILD, str(size)],
                env=env,
                capture_output=True,
                text=True,
                check=True,
            )
            t = json.loads(p.stdout.strip().splitlines()[-1])
            n = sum(1 for _ in Path(cache, "jax").rglob("*") if _.is_file())
            first, second = t["first"], t["second"]
            rows.append([run, f"{first:.2f}", f"{t['first_cpu']:.2f}", f"{second:.3f}",
                         f"{t['second_cpu']:.3f}", f"{first - second:.2f}", n])  # fmt: skip
    print(f"## 4. First call of align_offsets ({size}x{size} channels) in a new process\n")
    header = ["process", "1st call s", "CPU s", "2nd call s", "CPU s", "1st - 2nd s", "cache files"]
    _table(header, rows)


QUALITY = 95  # JPEG quality on both sides (the CLI's default)
STAGES = ("decode", "align", "finish", "encode")


def imsyn_pipeline(src: Path, out_dir: Path):
    """One plate through ``python -m imsyn colorize`` (in-process: the CLI's own per-plate
    function, so JSON sidecar and atomic writes included). Stage seconds from its record:
    decode = read, align = conversion + split + search, finish = compose + crop + balance +
    contrast, encode = JPEG (+ JSON) write."""
    from imsyn.cli import colorize as cli

    ap = argparse.ArgumentParser()
    cli.add_arguments(ap)
    args = ap.parse_args([str(src), "--out-dir", str(out_dir), "--quality", str(QUALITY)])
    t = time.perf_counter()
    _, rec = cli._one(src, args)
    total = time.perf_counter() - t
    tm = rec["timings"]
    stages = {"decode": tm["read"], "align": tm["align"], "finish": tm["finish"],
              "encode": tm["write"]}  # fmt: skip
    offsets = {k: tuple(v) for k, v in rec["offsets"].items()}
    return stages, total, offsets, tuple(rec["image_shape"])


def skimage_pipeline(src: Path, out_dir: Path, *, level: int = 1, margin: float = 0.1):
    """The same pipeline as a course solution builds it with scikit-image.

    ``skimage.io.imread`` + ``img_as_float32``; thirds; ``phase_cross_correlation`` (its
    defaults: ``upsample_factor=1``, but ``normalization=None``: ``"phase"`` finds (0, 0) on
    the smooth synthetic plate) on ``downscale_local_mean`` copies at pyramid ``level``
    (0 = full resolution), offsets scaled back; ``np.roll`` + ``np.dstack``; a fixed
    ``margin`` border crop; gray-world balance; ``np.percentile`` 0.5/99.5 +
    ``exposure.rescale_intensity``; ``img_as_ubyte`` + Pillow JPEG at the same quality.
    """
    import skimage.io as skio
    from PIL import Image
    from skimage import exposure, img_as_float32, img_as_ubyte
    from skimage.registration import phase_cross_correlation
    from skimage.transform import downscale_local_mean

    t = [time.perf_counter()]
    im = img_as_float32(skio.imread(src))
    t.append(time.perf_counter())
    h = im.shape[0] // 3
    b, g, r = im[:h], im[h : 2 * h], im[2 * h : 3 * h]
    f = 2**level
    bs = downscale_local_mean(b, (f, f)) if level else b
    offsets = {}
    for name, ch in (("g", g), ("r", r)):
        cs = downscale_local_mean(ch, (f, f)) if level else ch
        shift = phase_cross_correlation(bs, cs, normalization=None)[0]
        offsets[name] = tuple(int(round(v)) * f for v in shift)
    t.append(time.perf_counter())
    g, r = (np.roll(c, offsets[k], axis=(0, 1)) for k, c in (("g", g), ("r", r)))
    rgb = np.dstack([r, g, b])
    my, mx = int(margin * rgb.shape[0]), int(margin * rgb.shape[1])
    rgb = rgb[my:-my, mx:-mx]
    means = rgb.mean(axis=(0, 1))
    rgb = np.clip(rgb * (means.mean() / means), 0, 1)
    lo, hi = np.percentile(rgb, (0.5, 99.5))
    rgb = exposure.rescale_intensity(rgb, in_range=(lo, hi), out_range=(0, 1))
    t.append(time.perf_counter())
    Image.fromarray(img_as_ubyte(rgb)).save(out_dir / "skimage.jpg", quality=QUALITY)
    t.append(time.perf_counter())
    return dict(zip(STAGES, np.diff(t), strict=True)), t[-1] - t[0], offsets, rgb.shape


def _spread(xs):
    return f"{statistics.median(xs):.3f} ({min(xs):.3f}-{max(xs):.3f})"


def _pipeline_worker(conn, name: str, level: int) -> None:
    """Runs one side's pipeline on request, in a process of its own (spawned), so neither
    side's allocations, threads or caches change the state the other runs in."""
    sys.path.insert(0, str(ROOT))
    from imsyn.runtime import enable_compilation_cache

    enable_compilation_cache()
    fn = imsyn_pipeline if name == "imsyn" else functools.partial(skimage_pipeline, level=level)
    while (msg := conn.recv()) is not None:
        c = time.process_time()
        stages, total, offs, shape = fn(Path(msg[0]), Path(msg[1]))
        conn.send({"stages": {k: float(v) for k, v in stages.items()}, "total": total,
                   "cpu": time.process_time() - c, "offsets": offs,
                   "shape": [int(v) for v in shape]})  # fmt: skip


def section_pipeline(height, width, quick, *, repeats=None, peer_levels=(1, 0)):
    """Both pipelines on one 16-bit TIFF, warm, interleaved rounds; returns the results.

    Each side runs in its own worker process (one warm-up round first); the rounds
    alternate between them, so load from other jobs falls on both alike."""
    import multiprocessing

    import tifffile

    truth = {"g": (49, 24), "r": (107, 41)}
    plate = synthetic_plate(height, truth, width=width)
    repeats = repeats or (2 if quick else 7)
    sides = {"imsyn": 0, **{f"skimage pcc level {lvl}": lvl for lvl in peer_levels}}
    ctx = multiprocessing.get_context("spawn")
    with tempfile.TemporaryDirectory() as tmp:
        src = Path(tmp, "plate.tif")
        tifffile.imwrite(src, np.rint(plate * 65535).astype(np.uint16))
        del plate
        workers = {}
        for name, lvl in sides.items():
            here, there = ctx.Pipe()
            proc = ctx.Process(target=_pipeline_worker, args=(there, name, lvl), daemon=True)
            proc.start()
            workers[name] = (here, proc)
        runs = {k: [] for k in sides}
        try:
            for rnd in range(repeats + 1):  # round 0 warms up (compilation, caches)
                for name, (conn, _) in workers.items():
                    out = Path(tmp, name.replace(" ", "_"))
                    out.mkdir(exist_ok=True)
                    conn.send((str(src), str(out)))
                    res = conn.recv()
                    if rnd:
                        runs[name].append(res)
        finally:
            for conn, proc in workers.values():
                conn.send(None)
                proc.join(timeout=60)
    base = runs["imsyn"]
    base_median = statistics.median(b["total"] for b in base)
    base_best = min(b["total"] for b in base)
    result = {"plate": [3 * height, width], "truth": truth, "quality": QUALITY,
              "repeats": repeats, "load_average": os.getloadavg()[0], "sides": {}}  # fmt: skip
    rows = []
    for name, rs in runs.items():
        totals = [r["total"] for r in rs]
        paired = [r["total"] / b["total"] for r, b in zip(rs, base, strict=True)]
        off = rs[-1]["offsets"]
        err = _err(off, truth)
        result["sides"][name] = {
            **{st: [r["stages"][st] for r in rs] for st in STAGES},
            "total": totals,
            "cpu": [r["cpu"] for r in rs],
            "offsets": off,
            "max_error_px": err,
            "output_shape": list(rs[-1]["shape"]),
            "ratio_of_medians": statistics.median(totals) / base_median,
            "ratio_of_best": min(totals) / base_best,
            "paired_ratios": paired,
        }
        rows.append([name, *(_spread([r["stages"][st] for r in rs]) for st in STAGES),
                     _spread(totals), f"{statistics.median(r['cpu'] for r in rs):.3f}",
                     f"{result['sides'][name]['ratio_of_medians']:.2f}x",
                     f"{result['sides'][name]['ratio_of_best']:.2f}x",
                     f"{statistics.median(paired):.2f}x ({min(paired):.2f}-{max(paired):.2f})",
                     f"{err:g}", "x".join(map(str, rs[-1]["shape"][:2]))])  # fmt: skip
    print(
        f"## 5. Whole pipeline per plate, {3 * height}x{width} 16-bit TIFF -> JPEG q{QUALITY} "
        f"(warm; median (min-max) of {repeats} interleaved rounds, wall s)\n"
    )
    header = ["pipeline", "decode", "align", "compose+crop+balance+contrast", "encode", "total",
              "CPU s", "vs imsyn", "best vs best", "per round", "max error px",
              "output"]  # fmt: skip
    _table(header, rows)
    print(
        "Each side in its own worker process. vs imsyn: ratio of the medians; best vs best: "
        "of the fastest rounds; per round: median (min-max) of the ratios within a round.\n"
        "imsyn: the CLI's per-plate path (align includes the uint16->float conversion; encode "
        "includes the JSON sidecar).\nskimage: imread + img_as_float32, phase_cross_correlation "
        "on downscale_local_mean copies at the level shown, np.roll, 10% border crop, gray "
        "world, percentile stretch, img_as_ubyte + Pillow.\n"
    )
    return result


def check(data_dir) -> int:
    # emir's Library of Congress original is 3741 x 9740 px (W x H); the course copy 500 x 1300
    from imsyn.align import EMIR_FULL_HEIGHT

    table = consensus(data_dir)
    plates = real_plates(data_dir)
    rows, bad = [], 0
    emir_h = None
    for name, (b, g, r) in plates.items():
        res_int = imsyn_align(b, g, r)
        res_sub = imsyn_align(b, g, r, subpixel=True)
        res_ints = imsyn_align(b, g, r, features="intensity")
        scale = 1.0
        if name.startswith("emir"):
            emir_h = b.shape[0]
            scale = 3 * emir_h / EMIR_FULL_HEIGHT
        key = name.split("_")[0]
        for ch in ("g", "r"):
            ref = table[(key, ch)]
            ref_s = tuple(v * scale for v in ref)
            err = max(abs(a - e) for a, e in zip(res_int[ch], ref_s, strict=True))
            ok = err <= 1.0
            bad += not ok
            shown = f"({ref[0]:g}, {ref[1]:g})" + (
                f" x {scale:.4f} = ({ref_s[0]:.1f}, {ref_s[1]:.1f})" if scale != 1 else ""
            )
            sub = tuple(round(v, 2) for v in res_sub[ch])
            rows.append([name, ch.upper(), shown, res_int[ch], sub, f"{err:.2f}",
                         "ok" if ok else "OFF", res_ints[ch]])  # fmt: skip
    print("## Check against the consensus of reported offsets (within 1 px)\n")
    header = ["plate", "ch", "consensus (dy, dx)", "imsyn", "imsyn --subpixel", "error", "", ""]
    _table(header[:-1] + ["--features intensity"], rows)
    if emir_h:
        print(
            f"emir: {3 * emir_h}-px-tall copy of a {EMIR_FULL_HEIGHT}-px plate; consensus scaled."
        )
    return 1 if bad else 0


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true", help="smaller plate, fewer repeats")
    ap.add_argument("--check", action="store_true", help="only check the real plates")
    ap.add_argument(
        "--data", type=Path, default=None, help="course data (default: python -m imsyn data path)"
    )
    ap.add_argument("--size", type=int, default=None, help="synthetic channel side (3200)")
    ap.add_argument("--pipeline", action="store_true", help="only section 5 (whole pipeline)")
    ap.add_argument("--repeats", type=int, default=None, help="section 5 rounds (7; quick 2)")
    ap.add_argument(
        "--peer-levels", default="1,0", help="section 5: pyramid levels of the skimage pipelines"
    )
    ap.add_argument("--json", type=Path, default=None, help="write section 5's numbers here")
    args = ap.parse_args(argv)
    if args.data is None:  # the fetched course data (python -m imsyn data fetch course)
        from imsyn.course_data import data_dir

        args.data = data_dir()

    sys.path.insert(0, str(ROOT))
    from imsyn.runtime import enable_compilation_cache

    enable_compilation_cache()
    if args.check:
        return check(args.data)
    import jax

    size = args.size or (1600 if args.quick else 3200)
    print(f"jax {jax.__version__} on {jax.devices()[0].platform}, {os.cpu_count()} CPUs; "
          f"load average {os.getloadavg()[0]:.1f}\n")  # fmt: skip

    def pipeline():
        levels = tuple(int(v) for v in args.peer_levels.split(","))
        res = section_pipeline(
            size, size * 3700 // 3200, args.quick, repeats=args.repeats, peer_levels=levels
        )
        if args.json:
            args.json.write_text(json.dumps(res, indent=2) + "\n")

    if args.pipeline:
        pipeline()
        return 0
    section_impls(args.quick)
    section_synthetic(size, args.quick)
    if (args.data / "prokudin").exists():
        section_real(args.data, args.quick)
        check(args.data)
    else:
        print(
            f"({args.data}/prokudin not found: real-plate sections skipped; "
            "python -m imsyn data fetch prokudin)\n"
        )
    section_compile(size)
    pipeline()
    return 0


if __name__ == "__main__":
    sys.exit(main())

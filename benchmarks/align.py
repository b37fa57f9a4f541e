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
5. The whole pipeline (decode a 16-bit TIFF, align, crop, balance, contrast, encode
   JPEG) on a ~9600x3700 plate after warm-up.

``--check`` only aligns the real plates and compares them with the consensus in
``prokudin/reported_offsets.md`` (exit status 1 if any is off by more than 1 px).

    python benchmarks/align.py [--quick] [--check] [--data ../shared/data]
"""

from __future__ import annotations

import argparse
import json
import math
import os
import re
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
# Library of Congress original of emir: 3741 x 9740 px (W x H); the shared copy is 500 x 1300.
EMIR_FULL_HEIGHT = 9740


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
    text = (data_dir / "prokudin" / "reported_offsets.md").read_text()
    table = {}
    for line in text.splitlines():
        cells = [c.strip() for c in line.strip().strip("|").split("|")]
        if len(cells) < 10 or cells[1] not in ("G", "R"):
            continue
        m = re.match(r"\(([-\d.]+),([-\d.]+)\)", cells[9])
        if m:
            table[(cells[0], cells[1].lower())] = (float(m.group(1)), float(m.group(2)))
    return table


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


def section_pipeline(height, width, quick):
    from imsyn import align
    from imsyn.image import read_image, to_float, write_image

    truth = {"g": (49, 24), "r": (107, 41)}
    import tifffile

    plate = synthetic_plate(height, truth, width=width)
    with tempfile.TemporaryDirectory() as tmp:
        src = Path(tmp, "plate.tif")
        tifffile.imwrite(src, np.rint(plate * 65535).astype(np.uint16))
        del plate

        def pipeline():
            t, c = [time.perf_counter()], time.process_time()
            p = to_float(read_image(src))
            t.append(time.perf_counter())
            res = align.colorize(p)
            t.append(time.perf_counter())
            write_image(Path(tmp, "out.jpg"), res.image)
            t.append(time.perf_counter())
            return res, np.diff(t), time.process_time() - c

        pipeline()  # warm-up
        runs = [pipeline() for _ in range(1 if quick else 3)]
        res = runs[-1][0]
        parts = np.median([r[1] for r in runs], axis=0)
        cpu = float(np.median([r[2] for r in runs]))
        sub = {}
        b, g, r = align.split_plate(to_float(read_image(src)))
        _, sub["align"] = _timed(lambda: imsyn_align(b, g, r), 1 if quick else 3)
    total = parts.sum()
    print(f"## 5. Whole pipeline, {3 * height}x{width} 16-bit TIFF plate -> JPEG (warm)\n")
    _table(
        ["decode s", "colorize s (align alone)", "encode s", "total s", "total CPU s", "offsets"],
        [
            [
                f"{parts[0]:.3f}",
                f"{parts[1]:.3f} ({sub['align']:.3f})",
                f"{parts[2]:.3f}",
                f"{total:.3f}",
                f"{cpu:.3f}",
                res.offsets,
            ]
        ],  # fmt: skip
    )


def check(data_dir) -> int:
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
    ap.add_argument("--data", type=Path, default=ROOT.parent / "shared" / "data")
    ap.add_argument("--size", type=int, default=None, help="synthetic channel side (3200)")
    args = ap.parse_args(argv)

    sys.path.insert(0, str(ROOT))
    from imsyn.runtime import enable_compilation_cache

    enable_compilation_cache()
    if args.check:
        return check(args.data)
    import jax

    size = args.size or (1600 if args.quick else 3200)
    print(f"jax {jax.__version__} on {jax.devices()[0].platform}, {os.cpu_count()} CPUs; "
          f"load average {os.getloadavg()[0]:.1f}\n")  # fmt: skip
    section_impls(args.quick)
    section_synthetic(size, args.quick)
    if (args.data / "prokudin").exists():
        section_real(args.data, args.quick)
        check(args.data)
    else:
        print(f"({args.data}/prokudin not found: real-plate sections skipped)\n")
    section_compile(size)
    section_pipeline(size, size * 3700 // 3200, args.quick)
    return 0


if __name__ == "__main__":
    sys.exit(main())

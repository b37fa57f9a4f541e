"""Poisson blending: imsyn vs cv2.seamlessClone vs SciPy spsolve, side by side.

For masked regions of 512², 1024² and 2048² unknowns (a wavy blob on real photos
from ``--data``), prints warm wall times of cv2 and imsyn from interleaved rounds
in one process (median, min–max; the ratio of the medians and the range of the
per-round ratios), the first imsyn call, the CG iterations, the max error against
SciPy's sparse direct solve of the exact masked problem (up to ``--spsolve-max``; in
1/255 units; the target is <= 0.5), and the first calls in new processes with an
empty and with a filled persistent compilation cache. cv2 solves a
different problem (a DST solve on the mask's bounding box with an eroded
mask), so its error column shows how far it is from the exact solution.

Page faults per call (minor faults of the process, median over the rounds) come with each
side's times: with glibc's malloc as it is, both tools take their working memory from the system
on every call and fault it in again, a large share of a call's time on a virtual machine.
``--keep-freed-memory`` runs the benchmark with imsyn's opt-in malloc settings
(:func:`imsyn.runtime.keep_freed_memory`; freed memory is reused), which apply to cv2 too.

Also checks the toy problem on ``poisson/toy_problem.png`` and, with
``--figures DIR``, writes the bear/pool blend next to cv2's and a Color2Gray
comparison with ``cv2.decolor``.

    python benchmarks/poisson.py [--quick] [--rounds N] [--figures docs/img] [--data DIR]
                                 [--keep-freed-memory]
"""

from __future__ import annotations

import argparse
import math
import os
import resource
import sys
import time
from functools import partial
from pathlib import Path

from imsyn.runtime import keep_freed_memory

# before numpy and cv2 start threads: glibc applies the one-heap setting only if no thread has
# allocated yet
if "--keep-freed-memory" in sys.argv[1:]:
    os.environ["IMSYN_KEEP_FREED_MEMORY"] = "1"
_MALLOC = "imsyn keep_freed_memory" if keep_freed_memory() else "glibc defaults"

import cv2  # noqa: E402
import numpy as np  # noqa: E402
import scipy.sparse as sp  # noqa: E402
import scipy.sparse.linalg as spl  # noqa: E402

from imsyn import image as im  # noqa: E402
from imsyn import poisson  # noqa: E402
from imsyn.runtime import enable_compilation_cache  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]


def blob_mask(h: int, w: int, n_unknowns: int) -> np.ndarray:
    """A wavy blob (5 lobes) centred in [h, w] with about ``n_unknowns`` pixels."""
    yy, xx = np.mgrid[:h, :w].astype(np.float64)
    dy, dx = yy - (h - 1) / 2, xx - (w - 1) / 2
    r, th = np.hypot(dy, dx), np.arctan2(dy, dx)
    shape = 1 + 0.15 * np.sin(5 * th)
    # area of r < R·shape(θ) is R²/2 ∫ shape² dθ = R² π (1 + 0.15²/2)
    radius = math.sqrt(n_unknowns / (math.pi * (1 + 0.15**2 / 2)))
    return r < radius * shape


def spsolve_reference(target, gx, gy, omega):
    """Assembles the exact masked system (vectorised) and solves it with spsolve (float64)."""
    h, w = omega.shape
    t = target.astype(np.float64).reshape(h, w, -1)
    gx = gx.astype(np.float64).reshape(h, w, -1)
    gy = gy.astype(np.float64).reshape(h, w, -1)
    idx = -np.ones((h, w), np.int64)
    ys, xs = np.nonzero(omega)
    n = ys.size
    idx[ys, xs] = np.arange(n)
    deg = np.zeros(n)
    b = np.zeros((n, t.shape[-1]))
    rows, cols = [np.arange(n)], [np.arange(n)]
    off = []
    for dy, dx in ((0, 1), (0, -1), (1, 0), (-1, 0)):
        qy, qx = ys + dy, xs + dx
        ok = (qy >= 0) & (qy < h) & (qx >= 0) & (qx < w)
        deg += ok
        p = np.nonzero(ok)[0]
        qy, qx = qy[ok], qx[ok]
        py, px = ys[ok], xs[ok]
        if (dy, dx) == (0, 1):
            v = -gx[py, px]
        elif (dy, dx) == (0, -1):
            v = gx[qy, qx]
        elif (dy, dx) == (1, 0):
            v = -gy[py, px]
        else:
            v = gy[qy, qx]
        b[p] += v
        inside = omega[qy, qx]
        b[p[~inside]] += t[qy[~inside], qx[~inside]]
        rows.append(p[inside])
        cols.append(idx[qy[inside], qx[inside]])
        off.append(np.full(int(inside.sum()), -1.0))
    vals = np.concatenate([deg, *off])
    a = sp.csc_matrix((vals, (np.concatenate(rows), np.concatenate(cols))), shape=(n, n))
    t0 = time.perf_counter()
    sol = spl.spsolve(a, b).reshape(n, -1)
    dt = time.perf_counter() - t0
    out = t.copy()
    out[ys, xs] = sol
    return out.reshape(target.shape), dt


def grads(a):
    gx = np.zeros_like(a)
    gy = np.zeros_like(a)
    gx[:, :-1] = a[:, 1:] - a[:, :-1]
    gy[:-1] = a[1:] - a[:-1]
    return gx, gy


def cv2_center(mask: np.ndarray) -> tuple[int, int]:
    """seamlessClone's ``p`` that puts a same-size source back where it is (pre-aligned)."""
    inner = mask.copy()
    inner[0] = inner[-1] = inner[:, 0] = inner[:, -1] = False
    x, y, w, h = cv2.boundingRect(inner.astype(np.uint8))
    return (x + w // 2, y + h // 2)


def _minor_faults() -> int:
    return resource.getrusage(resource.RUSAGE_SELF).ru_minflt


def timed(fn, *args, **kwargs):
    """(wall s, CPU s over all threads, result, minor page faults) of one call."""
    f0, t0, c0 = _minor_faults(), time.perf_counter(), time.process_time()
    out = fn(*args, **kwargs)
    return time.perf_counter() - t0, time.process_time() - c0, out, _minor_faults() - f0


def stats(xs) -> str:
    """``median (min–max)`` of a list of seconds."""
    return f"{np.median(xs):.3f} ({min(xs):.3f}–{max(xs):.3f})"


def load_rgb(path: Path, size: int) -> np.ndarray:
    from PIL import Image

    with Image.open(path) as img:
        img = img.convert("RGB").resize((size, size), Image.Resampling.LANCZOS)
        return np.asarray(img)


def inputs(data: Path, n: int):
    """Source, target (uint8 and float) and the blob mask of about n² unknowns."""
    side = int(math.ceil(n * 1.35)) | 1
    tgt8 = load_rgb(data / "nst/content/tubingen.jpg", side)
    src8 = load_rgb(data / "nst/content/golden_gate.jpg", side)
    mask = blob_mask(side, side, n * n)
    return src8, tgt8, mask


def bench_sizes(data: Path, sizes, rounds, spsolve_max):
    """Warm timings: cv2 and imsyn alternate, round after round, on the same inputs."""
    rows = []
    for n in sizes:
        src8, tgt8, mask = inputs(data, n)
        src, tgt = im.to_float(src8), im.to_float(tgt8)
        mask8 = mask.astype(np.uint8) * 255
        center = cv2_center(mask)
        row = {"n": n, "unknowns": int(mask.sum())}
        for mode, flag in (("poisson", cv2.NORMAL_CLONE), ("mixed", cv2.MIXED_CLONE)):
            cv_out = cv2.seamlessClone(src8, tgt8, mask8, center, flag)  # warm-up
            t_first, _, res, _ = timed(poisson.blend, src, tgt, mask, mode=mode)
            m = {k: [] for k in ("cv", "cv_cpu", "cv_flt", "im", "im_cpu", "im_flt")}
            for _ in range(rounds):
                for side, fn, a in (
                    ("cv", cv2.seamlessClone, (src8, tgt8, mask8, center, flag)),
                    ("im", partial(poisson.blend, mode=mode), (src, tgt, mask)),
                ):
                    w, c, _, f = timed(fn, *a)
                    m[side].append(w)
                    m[f"{side}_cpu"].append(c)
                    m[f"{side}_flt"].append(f)
            m.update(first=t_first, it=res.iterations)
            m["ratios"] = [a / b for a, b in zip(m["im"], m["cv"], strict=True)]
            if n <= spsolve_max:
                sx, sy = grads(src)
                if mode == "mixed":
                    tx, ty = grads(tgt)
                    sx = np.where(np.abs(sx) > np.abs(tx), sx, tx)
                    sy = np.where(np.abs(sy) > np.abs(ty), sy, ty)
                ref, m["sp"] = spsolve_reference(tgt, sx, sy, mask)
                m["err"] = float(np.abs(res.image - ref).max() * 255)
                cv_err = np.abs(im.to_float(cv_out) - ref) * 255
                m["err_cv"] = f"{cv_err.max():.0f} / {np.median(cv_err[mask]):.1f}"
            row[mode] = m
            print(f"  done {n}² {mode}", file=sys.stderr, flush=True)
        rows.append(row)
    return rows


def print_table(rows, rounds):
    print(
        f"\nwarm, {rounds} interleaved rounds (cv2, imsyn, cv2, imsyn, ...): "
        "median (min–max) seconds; ratio = median imsyn / median cv2"
    )
    hdr = (
        "| unknowns | mode | cv2 wall s | imsyn wall s | imsyn/cv2 wall | per-round ratios "
        "| cv2 / imsyn CPU s | cv2 / imsyn page faults | imsyn first call s | CG iters | spsolve s "
        "| imsyn max err ×255 | cv2 max / median err ×255 |"
    )
    print(hdr)
    print("|---" * 13 + "|")
    for r in rows:
        for mode in ("poisson", "mixed"):
            m = r[mode]
            sp_s = f"{m['sp']:.2f}" if "sp" in m else "-"
            err = f"{m['err']:.3f}" if "err" in m else "-"
            ratio = np.median(m["im"]) / np.median(m["cv"])
            print(
                f"| {r['unknowns']:,} ({r['n']}²) | {mode} | {stats(m['cv'])} | {stats(m['im'])} "
                f"| **{ratio:.2f}** | {min(m['ratios']):.2f}–{max(m['ratios']):.2f} "
                f"| {np.median(m['cv_cpu']):.3f} / {np.median(m['im_cpu']):.3f} "
                f"| {np.median(m['cv_flt']):,.0f} / {np.median(m['im_flt']):,.0f} "
                f"| {m['first']:.2f} | {m['it']} | {sp_s} | {err} | {m.get('err_cv', '-')} |"
            )


def first_call_child(data: Path, sizes) -> int:
    """Run in a new process: the first blend at each size, then a second mask of the
    same size class (another shape: no new compile), one line of JSON each."""
    import json

    enable_compilation_cache()
    for n in sizes:
        src8, tgt8, mask = inputs(data, n)
        src, tgt = im.to_float(src8), im.to_float(tgt8)
        w, _, res, _ = timed(poisson.blend, src, tgt, mask)
        other = np.zeros_like(mask)  # a different shape, a few pixels smaller per side
        other[3:-5, 2:-6] = mask[3:-5, 2:-6]
        w2, *_ = timed(poisson.blend, src, tgt, other)
        w3, *_ = timed(poisson.blend, src, tgt, mask)
        print(json.dumps({"n": n, "first": w, "other_shape": w2, "again": w3}), flush=True)
    return 0


def first_calls(data: Path, sizes):
    """First calls in new processes: with an empty compilation cache, then with the cache
    the first process filled (``IMSYN_CACHE_DIR`` points both at a fresh directory)."""
    import json
    import subprocess
    import tempfile

    out = {}
    with tempfile.TemporaryDirectory() as tmp:
        env = dict(os.environ, IMSYN_CACHE_DIR=tmp)
        for label in ("empty cache", "cache hit"):
            cmd = [sys.executable, __file__, "--first-call-child", "--data", str(data)]
            cmd += ["--sizes", ",".join(map(str, sizes))]
            t0 = time.perf_counter()
            run = subprocess.run(cmd, env=env, capture_output=True, text=True, check=True)
            total = time.perf_counter() - t0
            lines = [json.loads(x) for x in run.stdout.splitlines() if x.startswith("{")]
            out[label] = (lines, total)
    print("\nfirst calls in a new process (persistent compilation cache in a fresh directory)")
    print("| cache | unknowns | first blend s | then another mask shape s | the first again s |")
    print("|---|---|---|---|---|")
    for label, (lines, _) in out.items():
        for x in lines:
            print(
                f"| {label} | {x['n']}² | {x['first']:.2f} | {x['other_shape']:.2f} "
                f"| {x['again']:.2f} |"
            )
    for label, (_, total) in out.items():
        print(f"process wall time, {label} (imports, inputs, all calls): {total:.1f} s")


def toy_check(data: Path):
    img = im.read_float(data / "poisson/toy_problem.png", mode="gray")
    res = poisson.reconstruct(img)
    err = float(np.abs(res.image - img).max())
    status = "OK" if err <= 1e-4 else "FAIL"
    print(
        f"toy problem {img.shape[1]}x{img.shape[0]}: max |error| = {err:.2e} "
        f"(target 1e-4: {status}), {res.iterations} CG iterations, residual {res.residual:.2e}"
    )
    return err


def label(img: np.ndarray, text: str) -> np.ndarray:
    out = img.copy()
    cv2.putText(out, text, (6, 18), cv2.FONT_HERSHEY_SIMPLEX, 0.55, (0, 0, 0), 3, cv2.LINE_AA)
    cv2.putText(out, text, (6, 18), cv2.FONT_HERSHEY_SIMPLEX, 0.55, (255, 255, 255), 1, cv2.LINE_AA)
    return out


def figures(data: Path, out_dir: Path):
    bp = data / "poisson/bear_pool"
    src8 = im.to_uint8(im.read_float(bp / "source_01_newsource.png", mode="rgb"))
    tgt8 = im.to_uint8(im.read_float(bp / "target_01.jpg", mode="rgb"))
    mask, _ = poisson.binarize_mask(im.read_image(bp / "target_01_mask.png"))
    naive = np.where(mask[..., None], src8, tgt8)
    ours = poisson.blend(im.to_float(src8), im.to_float(tgt8), mask)
    mixed = poisson.blend(im.to_float(src8), im.to_float(tgt8), mask, mode="mixed")
    cvo = cv2.seamlessClone(
        src8, tgt8, mask.astype(np.uint8) * 255, cv2_center(mask), cv2.NORMAL_CLONE
    )
    tiles = [
        label(naive, "copy-paste"),
        label(im.to_uint8(ours.image), "imsyn poisson"),
        label(im.to_uint8(mixed.image), "imsyn mixed"),
        label(cvo, "cv2 NORMAL_CLONE"),
    ]
    p1 = out_dir / "poisson_bear_pool.png"
    im.write_image(p1, im.make_grid(np.stack([im.to_float(t) for t in tiles]), ncol=4))
    print(f"wrote {p1} (imsyn: {ours.iterations} iterations, residual {ours.residual:.1e})")

    # Color2Gray: a real painting and an isoluminant test chart, vs cv2.decolor
    s = 192
    paint = load_rgb(data / "nst/style/starry_night_crop.png", s)
    luma_w = np.array([0.299, 0.587, 0.114], np.float32)
    hues = np.array(
        [(0.8, 0.35, 0.5), (0.2, 0.61, 0.9), (0.45, 0.55, 0.2), (0.6, 0.42, 0.9)], np.float32
    )
    hues += 0.5 - (hues @ luma_w)[:, None]  # every colour has luma 0.5
    chart = np.zeros((s, s, 3), np.float32)
    yy, xx = np.mgrid[:s, :s]
    q = s // 4
    for k in range(4):
        cy, cx = q + 2 * q * (k // 2), q + 2 * q * (k % 2)
        chart[(np.abs(yy - cy) < q + 1) & (np.abs(xx - cx) < q + 1)] = hues[k]
        chart[(yy - cy) ** 2 + (xx - cx) ** 2 < (q // 2) ** 2] = hues[(k + 1) % 4]
    chart8 = im.to_uint8(np.clip(chart, 0, 1))
    rows = []
    for rgb8 in (paint, chart8):
        f = im.to_float(rgb8)
        gray = im.to_uint8(im.rgb_to_gray(f))
        ours = im.to_uint8(poisson.color2gray(f).image)
        dec, _ = cv2.decolor(cv2.cvtColor(rgb8, cv2.COLOR_RGB2BGR))
        rows += [
            label(rgb8, "input"),
            label(np.repeat(gray[..., None], 3, -1), "luma"),
            label(np.repeat(ours[..., None], 3, -1), "imsyn"),
            label(np.repeat(dec[..., None], 3, -1), "cv2.decolor"),
        ]
    p2 = out_dir / "color2gray_compare.png"
    im.write_image(p2, im.make_grid(np.stack([im.to_float(t) for t in rows]), ncol=4))
    print(f"wrote {p2}")


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true", help="512² and 1024² only, 3 rounds")
    ap.add_argument("--data", default=None, help="course data (default: python -m imsyn data path)")
    ap.add_argument("--figures", default=None, help="write comparison PNGs here (docs/img)")
    ap.add_argument("--sizes", default=None, help="comma-separated region sides, e.g. 256,1024")
    ap.add_argument("--rounds", type=int, default=None, help="interleaved rounds (default 7)")
    ap.add_argument(
        "--spsolve-max", type=int, default=1024, help="exact reference up to this side (0: none)"
    )
    ap.add_argument("--no-first-call", action="store_true", help="skip the new-process timings")
    ap.add_argument(
        "--keep-freed-memory",
        action="store_true",
        help="imsyn.runtime.keep_freed_memory in this process (read before the imports)",
    )
    ap.add_argument("--first-call-child", action="store_true", help=argparse.SUPPRESS)
    args = ap.parse_args(argv)
    if args.data is None:  # the fetched course data (python -m imsyn data fetch course)
        from imsyn.course_data import data_dir

        args.data = str(data_dir())
    data = Path(args.data)
    sizes = (
        [int(s) for s in args.sizes.split(",")]
        if args.sizes
        else ([512, 1024] if args.quick else [512, 1024, 2048])
    )
    if args.first_call_child:
        return first_call_child(data, sizes)
    enable_compilation_cache()
    if not (data / "poisson").is_dir():
        print(
            f"error: {data}/poisson not found (python -m imsyn data fetch poisson, or --data)",
            file=sys.stderr,
        )
        return 2
    rounds = args.rounds or (3 if args.quick else 7)
    print(
        f"cv2 {cv2.__version__} ({cv2.getNumThreads()} threads), {os.cpu_count()} CPUs, "
        f"malloc: {_MALLOC}"
    )
    print("load average at start: {:.1f} {:.1f} {:.1f}".format(*os.getloadavg()))
    toy_check(data)
    rows = bench_sizes(data, sizes, rounds, args.spsolve_max)
    print_table(rows, rounds)
    if not args.no_first_call:
        first_calls(data, sizes)
    print("load average at end: {:.1f} {:.1f} {:.1f}".format(*os.getloadavg()))
    if args.figures:
        figures(data, Path(args.figures))
    return 0


if __name__ == "__main__":
    sys.exit(main())

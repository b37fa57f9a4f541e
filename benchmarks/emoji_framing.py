"""How much of the Twemoji ↔ OpenMoji gap is framing: hand-made geometric baselines.

The paired CycleGAN evaluation compares each translation with the same emoji in the other
style. OpenMoji draws its art smaller inside the tile than Twemoji (and outlines it), so a
fixed rescale of the whole image, with no learning at all, already moves L1 and LPIPS. This
script prints the paired metrics (imsyn.gan.paired_metrics, LPIPS v0.1 when fetched) of the
identity, of shrinking Twemoji by ``s`` onto a white tile (X → Y) and of enlarging OpenMoji by
``1/s`` with a centre crop (Y → X) on the held-out test split, and of the generators' own fixed
zoom (bilinear, :func:`imsyn.models.cyclegan.zoom`, by the framing ratio measured from the
training split, 0.865 at 32 px) alone, so a learned translator's numbers can be read against
what geometry alone gives. With the FID Inception-v3 fetched it adds FID against the target
domain's test images on the main job's subset (``fid_max_images`` = 200 drawn from
``--seed``, as the evaluation draws it)::

    python benchmarks/emoji_framing.py [--size 32] [--seed 0]
"""

from __future__ import annotations

import argparse

import jax.numpy as jnp
import numpy as np
from PIL import Image

from imsyn import gan, metrics
from imsyn.data import emoji_pairs
from imsyn.image import to_float
from imsyn.models import lpips as lpips_lib
from imsyn.models.cyclegan import zoom
from imsyn.runtime import enable_compilation_cache
from imsyn.tasks.cyclegan import _subset


def rescale(images: np.ndarray, s: float) -> np.ndarray:
    """Each float image in [0, 1] scaled by ``s`` about its centre (Lanczos): a smaller one on
    white, a larger one centre-cropped."""
    n = images.shape[1]
    k = int(round(n * s))
    out = np.ones_like(images)
    for i, img in enumerate(images):
        pil = Image.fromarray(np.round(img * 255).astype(np.uint8)).resize((k, k), Image.LANCZOS)
        a = np.asarray(pil, np.float32) / 255
        if k <= n:
            o = (n - k) // 2
            out[i, o : o + k, o : o + k] = a
        else:
            o = (k - n) // 2
            out[i] = a[o : o + n, o : o + n]
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--size", type=int, default=32, help="emoji size in pixels")
    ap.add_argument("--seed", type=int, default=0, help="the FID subset's seed (config.seed)")
    args = ap.parse_args()
    enable_compilation_cache()
    pairs = emoji_pairs(image_size=args.size, split="test")
    x, y = to_float(pairs.x), to_float(pairs.y)
    lpips = lpips_lib.LPIPS.load()
    fid_on = metrics.resolve_features("auto") == "inception_v3_fid"
    print(
        f"{len(x)} test emoji at {args.size} px; LPIPS: {lpips.name if lpips else 'not fetched'}; "
        f"FID: {'Inception-v3' if fid_on else 'not fetched'}"
    )
    # the generators' scale, measured from the training split as a run measures it
    train = emoji_pairs(image_size=args.size, split="train")
    scale = gan.framing(to_float(train.y)) / gan.framing(to_float(train.x))
    bilinear = {
        d: np.asarray(zoom(jnp.asarray(a), np.log(f)))
        for d, a, f in (("x", x, scale), ("y", y, 1 / scale))
    }
    rows = [("X → Y", "identity", x, y), ("Y → X", "identity", y, x)]
    rows += [("X → Y", f"shrink {s}", rescale(x, s), y) for s in (0.75, 0.8, 0.85, 0.9)]
    rows += [("X → Y", f"G's zoom alone ({scale:.3f}, bilinear)", bilinear["x"], y)]
    rows += [("Y → X", f"enlarge {1 / s:.2f}", rescale(y, 1 / s), x) for s in (0.8, 0.85, 0.9)]
    rows += [("Y → X", f"F's zoom alone ({1 / scale:.3f}, bilinear)", bilinear["y"], x)]
    if fid_on:
        sub = _subset(len(x), 200, seed=args.seed)
        extractor = metrics.get_extractor("inception_v3_fid")
        feats = {}  # id(images) -> features of the subset

        def features(a):
            if id(a) not in feats:
                feats[id(a)] = np.asarray(extractor(jnp.asarray(a[sub] * 2 - 1)))
            return feats[id(a)]

    print("| direction | method | L1 | PSNR | SSIM | LPIPS | FID |\n|---|---|---|---|---|---|---|")
    for direction, name, pred, target in rows:
        m = gan.paired_metrics(pred, target, lpips=lpips)
        lp = "n/a" if m.get("lpips") is None else f"{m['lpips']:.4f}"
        fid = f"{metrics.fid(features(target), features(pred)):.1f}" if fid_on else "n/a"
        print(
            f"| {direction} | {name} | {m['l1']:.4f} | {m['psnr']:.2f} | {m['ssim']:.4f} | {lp} "
            f"| {fid} |"
        )


if __name__ == "__main__":
    main()

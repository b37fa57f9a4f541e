"""Image-quality metrics and distribution distances (FID, KID) with pluggable features.

Per-image metrics take float ``[N, H, W, C]`` images in ``[0, 1]`` and return
``float32[N]`` (one value per example; the caller reduces): :func:`l1`,
:func:`psnr`, :func:`ssim` (dm-pix).

Distribution metrics take feature matrices ``[N, D]`` (numpy or jax) and return
Python floats computed in float64 on the host: :func:`fid` (Fréchet distance of
Gaussians fitted to the features) and :func:`kid` (unbiased MMD² with the cubic
polynomial kernel, averaged over subsets).

Features come from a :class:`FeatureExtractor` (``.name`` and
``__call__(images) -> [N, D]`` on images in ``[-1, 1]`` NHWC), chosen by
:func:`get_extractor`: ``"inception_v3"`` (pytorch-fid's Inception-v3, from a
weights file the user gives; nothing is downloaded), ``"inception_v3_torchvision"``,
or the explicit offline fallback ``"random_conv_v1"`` (a fixed-seed random conv
net) whose numbers rank runs against each other but are NOT comparable with
published FID/KID values. Callers write ``extractor.name`` next to every number
(and :data:`FALLBACK_NOTE` for the fallback).
"""

from __future__ import annotations

from functools import partial
from typing import Protocol, runtime_checkable

import dm_pix
import jax
import jax.numpy as jnp
import numpy as np

from imsyn.errors import ConfigError, InputError

FALLBACK_NOTE = (
    "features from random_conv_v1, a fixed-seed random conv net (offline fallback): "
    "use these FID/KID values to compare runs with each other, they are not comparable "
    "with published Inception-v3 FIDs"
)


def _check_pair(a, b) -> tuple[jax.Array, jax.Array]:
    a, b = jnp.asarray(a, jnp.float32), jnp.asarray(b, jnp.float32)
    if a.shape != b.shape or a.ndim != 4:
        raise InputError(
            f"expected two float [N,H,W,C] arrays of one shape, got {a.shape} and {b.shape}"
        )
    return a, b


def l1(a, b) -> jax.Array:
    """Mean absolute error per example: float[N,H,W,C] x2 in [0,1] -> float32[N]."""
    a, b = _check_pair(a, b)
    return jnp.mean(jnp.abs(a - b), axis=(1, 2, 3))


def psnr(a, b) -> jax.Array:
    """Peak signal-to-noise ratio in dB per example (peak 1.0): float32[N]; +inf where a == b."""
    a, b = _check_pair(a, b)
    return dm_pix.psnr(a, b)


def ssim(a, b) -> jax.Array:
    """Structural similarity per example (Wang et al. 2004, 11x11 Gaussian σ=1.5): float32[N].

    Images must be at least 11 px on each side.
    """
    a, b = _check_pair(a, b)
    if min(a.shape[1:3]) < 11:
        raise InputError(f"ssim needs images of at least 11x11 px, got {a.shape[1:3]}")
    return dm_pix.ssim(a, b, max_val=1.0)


def _features64(f) -> np.ndarray:
    f = np.asarray(f, dtype=np.float64)
    if f.ndim != 2:
        raise InputError(f"features must be a [N, D] matrix, got shape {f.shape}")
    if not np.all(np.isfinite(f)):
        raise InputError("features contain NaN or Inf")
    return f


def fid(f1, f2) -> float:
    """Fréchet distance between Gaussians fitted to two feature sets.

    ``|mu1 - mu2|² + Tr(S1 + S2 - 2 (S1 S2)^½)``, in float64.

    Args:
      f1: float[N1, D] features of one image set (N1 >= 2).
      f2: float[N2, D] features of the other (N2 >= 2).

    Returns:
      The distance (>= 0; 0 for identical sets).
    """
    f1, f2 = _features64(f1), _features64(f2)
    if f1.shape[1] != f2.shape[1] or min(len(f1), len(f2)) < 2:
        raise InputError(f"fid needs >= 2 rows of the same width, got {f1.shape} and {f2.shape}")
    mu1, mu2 = f1.mean(0), f2.mean(0)
    s1, s2 = np.atleast_2d(np.cov(f1, rowvar=False)), np.atleast_2d(np.cov(f2, rowvar=False))
    # Tr((S1 S2)^½) = Σ sqrt(eig(S1^½ S2 S1^½)): symmetric PSD, stable even when singular.
    w, v = np.linalg.eigh(s1)
    root1 = (v * np.sqrt(np.clip(w, 0.0, None))) @ v.T
    eig = np.linalg.eigvalsh(root1 @ s2 @ root1)
    tr_covmean = np.sum(np.sqrt(np.clip(eig, 0.0, None)))
    value = np.sum((mu1 - mu2) ** 2) + np.trace(s1) + np.trace(s2) - 2.0 * tr_covmean
    return float(max(value, 0.0))


def kid(f1, f2, *, num_subsets: int = 100, subset_size: int = 1000, seed: int = 0) -> float:
    """Kernel Inception Distance: unbiased MMD² with k(x, y) = (x·y / D + 1)³.

    Averaged over ``num_subsets`` random subsets of ``min(subset_size, N1, N2)``
    rows of each set (one subset of everything when the sets are that small).

    Args:
      f1: float[N1, D] features (N1 >= 2).
      f2: float[N2, D] features (N2 >= 2).
      num_subsets: subsets to average over.
      subset_size: rows per subset.
      seed: subset sampling seed (the result is deterministic).

    Returns:
      The estimate (can be slightly negative when the sets match: it is unbiased).
    """
    f1, f2 = _features64(f1), _features64(f2)
    if f1.shape[1] != f2.shape[1] or min(len(f1), len(f2)) < 2:
        raise InputError(f"kid needs >= 2 rows of the same width, got {f1.shape} and {f2.shape}")
    d = f1.shape[1]
    m = min(subset_size, len(f1), len(f2))
    rng = np.random.default_rng(seed)
    whole = m == len(f1) == len(f2)
    values = []
    for _ in range(1 if whole else num_subsets):
        x = f1 if whole else f1[rng.choice(len(f1), m, replace=False)]
        y = f2 if whole else f2[rng.choice(len(f2), m, replace=False)]
        kxx = (x @ x.T / d + 1.0) ** 3
        kyy = (y @ y.T / d + 1.0) ** 3
        kxy = (x @ y.T / d + 1.0) ** 3
        off = m * (m - 1)
        values.append(
            (kxx.sum() - np.trace(kxx)) / off + (kyy.sum() - np.trace(kyy)) / off - 2 * kxy.mean()
        )
    return float(np.mean(values))


@runtime_checkable
class FeatureExtractor(Protocol):
    """Maps images float32[N, H, W, 3] in [-1, 1] to features float32[N, D]."""

    name: str

    def __call__(self, images) -> jax.Array: ...


class RandomConvFeatures:
    """``random_conv_v1``: the offline fallback feature extractor.

    Images are resized to 64x64, then passed through four 3x3 stride-2 convs
    (32, 64, 128, 256 channels, He-normal weights from ``jax.random.key(0)``,
    ReLU); the features are the spatial means of every layer concatenated
    (480 values). Deterministic on every platform (threefry keys), needs no
    download, and is sensitive to colour, edges and layout — but it is not
    Inception-v3: see :data:`FALLBACK_NOTE`.
    """

    name = "random_conv_v1"
    note = FALLBACK_NOTE
    widths = (32, 64, 128, 256)

    def __init__(self, *, batch_size: int = 64):
        keys = jax.random.split(jax.random.key(0), len(self.widths))
        cin, self.kernels = 3, []
        for k, cout in zip(keys, self.widths, strict=True):
            std = np.sqrt(2.0 / (9 * cin))
            self.kernels.append(std * jax.random.normal(k, (3, 3, cin, cout), jnp.float32))
            cin = cout
        self.batch_size = batch_size
        self._fn = jax.jit(self._features)

    def _features(self, kernels, x):
        x = jax.image.resize(x, (x.shape[0], 64, 64, x.shape[3]), "linear", antialias=True)
        feats = []
        for w in kernels:
            x = jax.lax.conv_general_dilated(
                x, w, (2, 2), "SAME", dimension_numbers=("NHWC", "HWIO", "NHWC")
            )
            x = jax.nn.relu(x)
            feats.append(jnp.mean(x, axis=(1, 2)))
        return jnp.concatenate(feats, axis=-1)

    def __call__(self, images) -> jax.Array:
        return _batched(lambda chunk: self._fn(self.kernels, chunk), images, self.batch_size)


class InceptionFeatures:
    """Inception-v3 pool3 features (2048-d) from a user-given weights file.

    ``inception_v3``: pytorch-fid's network (weights ``pt_inception-2015-12-05-*.pth``,
    converted to ``.safetensors`` or read with torch), whose values are comparable with
    published FIDs; ``inception_v3_torchvision``: torchvision's ImageNet weights. See
    :mod:`imsyn.models.inception`.
    """

    def __init__(self, path, *, variant: str = "fid", batch_size: int = 32):
        from imsyn.models import inception

        self.name = "inception_v3" if variant == "fid" else "inception_v3_torchvision"
        self.variant = variant
        self.params = jax.tree.map(jnp.asarray, inception.read_weights(path))
        self.batch_size = batch_size
        self._features = inception.features

    def __call__(self, images) -> jax.Array:
        return _batched(
            lambda chunk: self._features(self.params, chunk, variant=self.variant),
            images,
            self.batch_size,
        )


def _batched(fn, images, bs: int) -> jax.Array:
    """``fn`` over ``images`` float32[N,H,W,3] in chunks of ``bs``, padding the last chunk
    so that every call has one compiled shape."""
    images = np.asarray(images, np.float32)
    if images.ndim != 4 or images.shape[-1] != 3:
        raise InputError(f"expected images float32[N,H,W,3] in [-1,1], got {images.shape}")
    out = []
    for i in range(0, len(images), bs):
        chunk = images[i : i + bs]
        pad = bs - len(chunk)
        if pad:
            chunk = np.concatenate([chunk, np.zeros((pad, *chunk.shape[1:]), np.float32)])
        out.append(np.asarray(fn(chunk))[: bs - pad])
    return jnp.asarray(np.concatenate(out))


EXTRACTORS = {
    "random_conv_v1": RandomConvFeatures,
    "inception_v3": partial(InceptionFeatures, variant="fid"),
    "inception_v3_torchvision": partial(InceptionFeatures, variant="torchvision"),
}
NEEDS_WEIGHTS = ("inception_v3", "inception_v3_torchvision")


def get_extractor(name: str, path: str | None = None) -> FeatureExtractor:
    """Returns the feature extractor called ``name``.

    Args:
      name: "random_conv_v1" (offline fallback, no weights), "inception_v3"
        (pytorch-fid weights; the FIDs people publish) or "inception_v3_torchvision".
      path: the weights file of the Inception extractors (.safetensors, .npz or .pth).

    Raises:
      ConfigError: unknown name, or a missing/unneeded weights path.
      InputError: an unreadable or mismatched weights file.
    """
    if name not in EXTRACTORS:
        raise ConfigError(f"unknown feature extractor {name!r}; available: {sorted(EXTRACTORS)}")
    if name in NEEDS_WEIGHTS:
        if not path:
            raise ConfigError(
                f"feature extractor {name!r} needs a weights file (config.features_path); "
                "nothing is downloaded - use 'random_conv_v1' offline"
            )
        return EXTRACTORS[name](path)
    if path:
        raise ConfigError(f"feature extractor {name!r} takes no weights file, got {path!r}")
    return EXTRACTORS[name]()

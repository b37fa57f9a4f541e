"""VGG-19 ``features`` (16 convolutions, 5 pools) for perceptual losses and style transfer.

The network takes ``float32[N, H, W, 3]`` RGB images in ``[0, 1]`` (like
torchvision's VGG; the input normalization of the weights is applied inside)
and returns the activations of the requested layers only, stopping after the
deepest one.

Layer names (both spellings address the same tap):

* the course's counting: ``conv_1`` … ``conv_16`` (output of the convolution,
  before its ReLU), ``relu_1`` … ``relu_16``, ``pool_1`` … ``pool_5``;
* the paper's: ``conv1_1`` … ``conv5_4``, ``relu1_1`` … ``relu5_4``,
  ``pool1`` … ``pool5``. ``conv_4`` is ``conv2_2``; ``conv_5`` is ``conv3_1``.

Weights. Nothing is downloaded here. :func:`load_weights` takes, in this order,
an explicit path, ``$IMSYN_VGG19``, the network fetched into the cache by
``python -m imsyn weights fetch vgg19`` (:func:`imsyn.weights.cached`), and
otherwise the explicit random-feature mode. :func:`read_weights` reads

* an imsyn weights file (``.npz`` written by :func:`convert_weights` /
  ``python -m imsyn convert-weights``; loading it needs only numpy),
* torchvision's state dict as ``.safetensors`` (numpy API of ``safetensors``),
* Keras' ``vgg19_weights_tf_dim_ordering_tf_kernels(_notop).h5`` (``h5py``),
* torchvision's ``vgg19-*.pth`` (needs ``torch``, imported lazily; convert it
  once with ``convert-weights`` so later runs do not).

Normalization (after Gatys et al., 2016, who scaled each filter; here each
layer). Weights files of the same architecture differ wildly in feature scale
(the Keras/Caffe weights see 0…255 input: their mean ReLU activations run from 1
to 610 across the layers; torchvision's see input divided by the ImageNet std,
features tens of times smaller), and the NST losses scale with the features
squared (content) and to the fourth power (style), so a style weight would mean
something else for every file. :func:`load_weights` therefore returns every
file's network rescaled so that the mean ReLU activation of each of the 16
convolution layers over a fixed reference set (:func:`reference_images`:
matplotlib's ``grace_hopper.jpg``, shipped with a runtime dependency) is 1.
The rescaling is folded into the arrays (:func:`normalize`: layer ``k``'s
kernel times ``s[k-1] / s[k]``, its bias divided by ``s[k]``), so
:func:`features` and every caller are unchanged; the network computes exactly
the raw activations of layer ``k`` divided by ``s[k]``, which makes it
invariant to any per-layer rescaling of the file. :func:`convert_weights`
stores the scales ``s`` (the raw network's mean activations) in the ``.npz``; a
file without them (converted by an older imsyn, or a ``.h5``/``.pth`` read
directly) gets them measured at load time (about 2 s on a CPU; a note on
stderr). ``load_weights(..., normalize=False)`` gives the raw network.

Without any weights the explicit random-feature mode is used: He-normal kernels
from a fixed seed, zero biases, ImageNet normalization, ``source == "random"``,
and a warning on stderr. It is not rescaled: He initialisation already keeps the
mean activation of every layer between 0.77 and 1.10 on the reference set (0.59
to 0.91 on the photos and paintings of the course data's ``nst/``), so loss weights
mean about the same for it as for a normalized file. Random VGG features still
give textures and a recognisable stylization (Ustyuzhaninov et al., 2017) but
much weaker than trained features.

Keras weights were trained on Caffe-style input (BGR, 0…255, mean subtracted,
no scaling); the converter flips the first convolution's input channels to RGB
and records ``mean = caffe_mean / 255``, ``std = 1 / 255``, which is exact.
"""

from __future__ import annotations

import functools
import math
import os
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx

from imsyn.errors import InputError
from imsyn.models import register

# ---------------------------------------------------------------- architecture

# VGG-19 "E" configuration: channels per conv, "M" = pool.
CFG = (64, 64, "M", 128, 128, "M", 256, 256, 256, 256, "M", 512, 512, 512, 512, "M") + (
    512,
    512,
    512,
    512,
    "M",
)
# conv index (0-based) -> (block, index in block), paper naming conv{b}_{j}
CONV_NAMES: tuple[str, ...] = tuple(
    f"conv{b}_{j}" for b, n in enumerate((2, 2, 4, 4, 4), start=1) for j in range(1, n + 1)
)
# torchvision ``features`` indices of the 16 convolutions
TORCHVISION_CONV_INDICES = (0, 2, 5, 7, 10, 12, 14, 16, 19, 21, 23, 25, 28, 30, 32, 34)
IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
CAFFE_MEAN_BGR = (103.939, 116.779, 123.68)
FORMAT_TAG = "imsyn-vgg19-v1"
NORMALIZATION = "mean-activation-1"  # recorded in outputs (VGGWeights.normalization)
REFERENCE_FILE = "grace_hopper.jpg"  # matplotlib's sample data (a runtime dependency)
REFERENCE_SIZE = 224
REFERENCE_SET = (
    f"matplotlib sample_data/{REFERENCE_FILE} (512x600): the central 512x512 square and its "
    f"four 256x256 quadrants, each resized to {REFERENCE_SIZE}x{REFERENCE_SIZE} (Lanczos)"
)


def _build_ops() -> tuple[list[tuple[str, int]], dict[str, int]]:
    """Flat op list [("conv", k) | ("relu", k) | ("pool", p)] and name -> op position."""
    ops: list[tuple[str, int]] = []
    names: dict[str, int] = {}
    k = p = 0
    for c in CFG:
        if c == "M":
            p += 1
            ops.append(("pool", p - 1))
            names[f"pool_{p}"] = names[f"pool{p}"] = len(ops) - 1
        else:
            k += 1
            paper = CONV_NAMES[k - 1]
            ops.append(("conv", k - 1))
            names[f"conv_{k}"] = names[paper] = len(ops) - 1
            ops.append(("relu", k - 1))
            names[f"relu_{k}"] = names["relu" + paper[4:]] = len(ops) - 1
    return ops, names


OPS, LAYER_INDEX = _build_ops()
LAYER_NAMES: tuple[str, ...] = tuple(LAYER_INDEX)


def check_layers(layers: Sequence[str], *, what: str = "layer") -> tuple[str, ...]:
    """Validates layer names; returns them as a tuple.

    Raises:
      InputError: an unknown name (the message lists the accepted spellings).
    """
    if isinstance(layers, str):
        layers = [s.strip() for s in layers.split(",") if s.strip()]
    out = tuple(layers)
    for name in out:
        if name not in LAYER_INDEX:
            raise InputError(
                f"unknown VGG-19 {what} {name!r}; use conv_1..conv_16, relu_1..relu_16, "
                "pool_1..pool_5 (course) or conv1_1..conv5_4, relu1_1..relu5_4, "
                "pool1..pool5 (paper)"
            )
    return out


def canonical(name: str) -> str:
    """The course spelling (``conv_4``) of a layer name (``conv2_2`` -> ``conv_4``)."""
    kind, i = OPS[LAYER_INDEX[check_layers([name])[0]]]
    return f"{kind}_{i + 1}"


# ---------------------------------------------------------------- weights


class VGGWeights(NamedTuple):
    """VGG-19 weights as arrays.

    Attributes:
      kernels: 16 ``float32[3, 3, C_in, C_out]`` (HWIO, RGB input order for the first).
      biases: 16 ``float32[C_out]``.
      mean: per-channel input mean (RGB, [0, 1] units).
      std: per-channel input std (RGB, [0, 1] units).
      source: the file the weights came from, or ``"random"``.
      scales: 16 floats, the mean ReLU activation of each convolution layer of the
        file's raw network over :func:`reference_images`, or None (not known).
      normalized: the arrays are already divided by ``scales`` (:func:`normalize`).
    """

    kernels: tuple
    biases: tuple
    mean: tuple[float, float, float]
    std: tuple[float, float, float]
    source: str
    scales: tuple[float, ...] | None = None
    normalized: bool = False

    @property
    def normalization(self) -> str:
        """How the features are scaled, for outputs: ``"mean-activation-1"`` or ``"none"``."""
        return NORMALIZATION if self.normalized else "none"

    @property
    def params(self) -> dict:
        """The arrays as a pytree ``{"kernels": [...], "biases": [...]}`` (for jit arguments)."""
        return {"kernels": list(self.kernels), "biases": list(self.biases)}


def conv_shapes(cfg=None) -> list[tuple[int, int]]:
    """``(C_in, C_out)`` of every convolution of a VGG configuration (channels, "M" = pool);
    VGG-19's by default (LPIPS uses it for VGG-16)."""
    shapes, cin = [], 3
    for c in CFG if cfg is None else cfg:
        if c != "M":
            shapes.append((cin, c))
            cin = c
    return shapes


EXPECTED_SHAPES = conv_shapes()  # (C_in, C_out) of the 16 convs


def random_weights(seed: int = 0) -> VGGWeights:
    """The random-feature mode: He-normal kernels (fixed seed), zero biases."""
    rng = np.random.default_rng(seed)
    kernels, biases = [], []
    for cin, cout in EXPECTED_SHAPES:
        std = np.sqrt(2.0 / (9 * cin))
        kernels.append((rng.standard_normal((3, 3, cin, cout)) * std).astype(np.float32))
        biases.append(np.zeros((cout,), np.float32))
    return VGGWeights(tuple(kernels), tuple(biases), IMAGENET_MEAN, IMAGENET_STD, "random")


def _check_arrays(kernels, biases, *, layout: str, names: Sequence[str], path) -> None:
    for i, ((cin, cout), k, b, name) in enumerate(
        zip(EXPECTED_SHAPES, kernels, biases, names, strict=True)
    ):
        if k.shape != (3, 3, cin, cout) or b.shape != (cout,):
            raise InputError(
                f"{path}: {layout} layer {name} (VGG-19 conv {i + 1}, {CONV_NAMES[i]}) has kernel "
                f"{tuple(k.shape)} / bias {tuple(b.shape)} after conversion, expected "
                f"(3, 3, {cin}, {cout}) / ({cout},): not VGG-19 weights"
            )
        if not (np.all(np.isfinite(k)) and np.all(np.isfinite(b))):
            raise InputError(
                f"{path}: {layout} layer {name} (VGG-19 conv {i + 1}) holds NaN or infinite "
                "values: not usable weights"
            )


def from_torchvision_state_dict(state: dict, *, path="state dict") -> VGGWeights:
    """Converts torchvision ``vgg19`` keys (``features.N.weight`` OIHW) to :class:`VGGWeights`.

    ``module.`` prefixes (DataParallel) are stripped; ``classifier.*`` is ignored.

    Raises:
      InputError: a missing key or a shape mismatch, named.
    """
    state = {(k[len("module.") :] if k.startswith("module.") else k): v for k, v in state.items()}
    conv_keys = sorted(
        {int(k.split(".")[1]) for k in state if k.startswith("features.") and k.endswith("weight")}
    )
    kernels, biases, names = [], [], []
    for i, idx in enumerate(TORCHVISION_CONV_INDICES):
        wk, bk = f"features.{idx}.weight", f"features.{idx}.bias"
        if wk not in state or bk not in state:
            raise InputError(
                f"{path}: torchvision layout: missing {wk if wk not in state else bk} "
                f"(VGG-19 conv {i + 1}, {CONV_NAMES[i]}); the file has convolutions at features "
                f"{conv_keys}, VGG-19 has them at {list(TORCHVISION_CONV_INDICES)}"
            )
        w = np.asarray(state[wk], np.float32)
        if w.ndim != 4:
            raise InputError(f"{path}: torchvision layout: {wk} has shape {w.shape}, expected 4-D")
        kernels.append(np.ascontiguousarray(w.transpose(2, 3, 1, 0)))
        biases.append(np.asarray(state[bk], np.float32))
        names.append(wk)
    extra = sorted(set(conv_keys) - set(TORCHVISION_CONV_INDICES))
    if extra:
        raise InputError(
            f"{path}: torchvision layout: unexpected layers features.{extra[0]}.* (VGG-19 has "
            f"convolutions only at features {list(TORCHVISION_CONV_INDICES)}; batch-norm or "
            "another VGG variant?)"
        )
    _check_arrays(kernels, biases, layout="torchvision", names=names, path=path)
    return VGGWeights(tuple(kernels), tuple(biases), IMAGENET_MEAN, IMAGENET_STD, str(path))


def _read_keras_h5(path: Path) -> VGGWeights:
    import h5py

    try:
        f = h5py.File(path, "r")
    except OSError as e:
        raise InputError(f"{path}: not a readable HDF5 file ({e})") from None
    with f:
        root = f["model_weights"] if "model_weights" in f else f
        if "layer_names" in root.attrs:
            layer_names = [
                n.decode() if isinstance(n, bytes) else str(n) for n in root.attrs["layer_names"]
            ]
        else:
            layer_names = list(root.keys())
        convs = [n for n in layer_names if "conv" in n]
        expected = [f"block{c[4]}_conv{c[6]}" for c in CONV_NAMES]
        if convs != expected:
            missing = [n for n in expected if n not in convs]
            what = (
                f"missing {missing[0]}"
                if missing
                else f"extra layers {sorted(set(convs) - set(expected))}"
            )
            raise InputError(
                f"{path}: Keras layout: {what}; VGG-19 has conv layers "
                f"{expected[0]}..{expected[-1]} (16), the file has {len(convs)}: "
                f"{', '.join(convs[:3])}..."
            )
        kernels, biases = [], []
        for name in expected:
            g = root[name]
            wnames = g.attrs.get("weight_names")
            arrays = (
                [np.asarray(g[w.decode() if isinstance(w, bytes) else w]) for w in wnames]
                if wnames is not None
                else [np.asarray(v) for v in g.values() if isinstance(v, h5py.Dataset)]
            )
            k = [a for a in arrays if a.ndim == 4]
            b = [a for a in arrays if a.ndim == 1]
            if len(k) != 1 or len(b) != 1:
                raise InputError(f"{path}: Keras layout: layer {name} has no kernel/bias pair")
            kernels.append(k[0].astype(np.float32))
            biases.append(b[0].astype(np.float32))
    _check_arrays(kernels, biases, layout="Keras", names=expected, path=path)
    # Caffe-style input (BGR, 0..255, mean-subtracted): flip the first conv to RGB input.
    kernels[0] = np.ascontiguousarray(kernels[0][:, :, ::-1, :])
    mean = tuple(m / 255.0 for m in CAFFE_MEAN_BGR[::-1])
    return VGGWeights(tuple(kernels), tuple(biases), mean, (1 / 255.0,) * 3, str(path))


def _read_npz(path: Path) -> VGGWeights:
    try:
        with np.load(path, allow_pickle=False) as z:
            data = {k: z[k] for k in z.files}
    except Exception as e:  # noqa: BLE001 - any decoding failure is a corrupt file
        raise InputError(
            f"{path}: not a readable imsyn VGG-19 weights file (.npz from convert-weights): {e}"
        ) from None
    if str(data.get("format", "")) != FORMAT_TAG:
        raise InputError(
            f"{path}: not an imsyn VGG-19 weights file (expected 'format'={FORMAT_TAG!r}; "
            "convert torchvision/Keras weights with `python -m imsyn convert-weights`)"
        )
    kernels, biases = [], []
    for i, name in enumerate(CONV_NAMES):
        if f"{name}/kernel" not in data or f"{name}/bias" not in data:
            raise InputError(f"{path}: imsyn layout: missing {name}/kernel (VGG-19 conv {i + 1})")
        kernels.append(data[f"{name}/kernel"].astype(np.float32))
        biases.append(data[f"{name}/bias"].astype(np.float32))
    _check_arrays(kernels, biases, layout="imsyn", names=CONV_NAMES, path=path)
    source = str(data.get("source", path))
    scales = None
    if "scales" in data:
        sc = np.asarray(data["scales"], np.float64)
        if sc.shape != (16,) or not np.all(np.isfinite(sc)) or np.any(sc <= 0):
            raise InputError(
                f"{path}: imsyn layout: 'scales' must be 16 positive numbers (mean activation "
                f"of each conv layer), got shape {sc.shape}; convert the weights again"
            )
        scales = tuple(float(v) for v in sc)
    return VGGWeights(
        tuple(kernels),
        tuple(biases),
        tuple(float(v) for v in data["mean"]),
        tuple(float(v) for v in data["std"]),
        source,
        scales=scales,
        normalized=bool(data["normalized"]) if "normalized" in data else False,
    )


def _read_safetensors(path: Path) -> VGGWeights:
    try:
        from safetensors.numpy import load_file

        state = load_file(str(path))
    except Exception as e:  # noqa: BLE001
        raise InputError(
            f"{path}: not a readable .safetensors file (expected torchvision VGG-19 keys "
            f"features.N.weight/bias): {e}"
        ) from None
    return from_torchvision_state_dict(state, path=path)


def _read_torch(path: Path) -> VGGWeights:
    from imsyn.safe_pickle import read_torch_weights

    arrays = read_torch_weights(
        path,
        what="torchvision state dict (features.N.weight/bias tensors saved with torch.save)",
        convert=(
            "save the network's state_dict() with torch.save and convert that once with "
            "`python -m imsyn convert-weights FILE.pth --out vgg19.npz`"
        ),
    )
    return from_torchvision_state_dict(arrays, path=path)


FORMATS = ("auto", "imsyn", "torchvision", "keras")


def read_weights(path: str | os.PathLike, *, fmt: str = "auto") -> VGGWeights:
    """Reads VGG-19 weights from any supported file.

    Args:
      path: ``.npz`` (imsyn), ``.safetensors``/``.pth``/``.pt`` (torchvision), ``.h5`` (Keras).
      fmt: ``"auto"`` (by suffix), ``"imsyn"``, ``"torchvision"`` or ``"keras"``.

    Raises:
      InputError: missing/corrupt file (the expected layout is named), or not VGG-19.
    """
    p = Path(path)
    if fmt not in FORMATS:
        raise InputError(f"weights format must be one of {FORMATS}, got {fmt!r}")
    if not p.is_file():
        raise InputError(
            f"{p}: no such weights file (expected VGG-19 weights: imsyn .npz, torchvision "
            ".pth/.safetensors or Keras .h5)"
        )
    suffix = p.suffix.lower()
    if fmt == "auto":
        fmt = {".npz": "imsyn", ".h5": "keras", ".hdf5": "keras"}.get(suffix, "torchvision")
    if fmt == "imsyn":
        return _read_npz(p)
    if fmt == "keras":
        return _read_keras_h5(p)
    if suffix == ".safetensors":
        return _read_safetensors(p)
    return _read_torch(p)


def save_weights(weights: VGGWeights, path: str | os.PathLike) -> Path:
    """Writes an imsyn ``.npz`` weights file atomically (loading it needs only numpy).

    The file holds ``conv1_1/kernel`` … ``conv5_4/bias`` as given, the input
    ``mean``/``std``, ``source``, and when known the normalization ``scales``
    (with ``scales_set``, the reference set they were measured on) and whether
    the arrays are already ``normalized``.
    """
    from imsyn.image import atomic_path

    arrays = {"format": np.array(FORMAT_TAG), "source": np.array(weights.source)}
    arrays["mean"] = np.asarray(weights.mean, np.float64)
    arrays["std"] = np.asarray(weights.std, np.float64)
    if weights.scales is not None:
        arrays["scales"] = np.asarray(weights.scales, np.float64)
        arrays["scales_set"] = np.array(REFERENCE_SET)
        arrays["normalized"] = np.array(bool(weights.normalized))
    for name, k, b in zip(CONV_NAMES, weights.kernels, weights.biases, strict=True):
        arrays[f"{name}/kernel"] = np.asarray(k, np.float32)
        arrays[f"{name}/bias"] = np.asarray(b, np.float32)
    dest = Path(path)
    with atomic_path(dest) as tmp, open(tmp, "wb") as f:
        np.savez(f, **arrays)
    return dest


def convert_weights(src: str | os.PathLike, dst: str | os.PathLike, *, fmt: str = "auto") -> Path:
    """Converts torchvision/Keras VGG-19 weights into an imsyn ``.npz`` file.

    The raw arrays are stored together with their normalization scales
    (:func:`activation_means` over :func:`reference_images`), so that loading the
    file later needs neither the reference images nor any computation.
    """
    w = read_weights(src, fmt=fmt)
    if w.scales is None:
        w = w._replace(scales=activation_means(w))
    return save_weights(w._replace(source=str(Path(src).name)), dst)


# ---------------------------------------------------------------- normalization


def reference_images() -> np.ndarray:
    """The normalization set (:data:`REFERENCE_SET`), ``float32[5, 224, 224, 3]`` in [0, 1].

    Built from matplotlib's ``grace_hopper.jpg`` (matplotlib is a runtime
    dependency, so every install has it; no download).

    Raises:
      InputError: the file is missing from the matplotlib install.
    """
    import matplotlib
    from PIL import Image

    path = Path(matplotlib.get_data_path(), "sample_data", REFERENCE_FILE)
    if not path.is_file():
        raise InputError(
            f"{path}: matplotlib's sample image is missing; it is the VGG-19 normalization "
            "set (reinstall matplotlib, or load weights converted with their scales)"
        )
    with Image.open(path) as im:
        im = im.convert("RGB")
        w, h = im.size
        side = min(w, h)
        x0, y0 = (w - side) // 2, (h - side) // 2
        half = side // 2
        boxes = [(x0, y0, x0 + side, y0 + side)] + [
            (x0 + i * half, y0 + j * half, x0 + (i + 1) * half, y0 + (j + 1) * half)
            for j in (0, 1)
            for i in (0, 1)
        ]
        size = (REFERENCE_SIZE, REFERENCE_SIZE)
        tiles = [np.asarray(im.resize(size, Image.LANCZOS, box=b)) for b in boxes]
    return np.stack(tiles).astype(np.float32) / 255.0


RELU_LAYERS = tuple(f"relu_{k}" for k in range(1, 17))


def activation_means(weights: VGGWeights, images: np.ndarray | None = None) -> tuple[float, ...]:
    """Mean ReLU activation of each of the 16 conv layers (over images, positions, channels).

    Args:
      weights: the network to measure (as its arrays are: raw, or normalized).
      images: ``float32[N, H, W, 3]`` in [0, 1] (default :func:`reference_images`).

    Returns:
      16 positive floats (a layer whose mean is 0, i.e. dead on the set, gets 1).
    """
    x = reference_images() if images is None else np.asarray(images, np.float32)
    params = jax.tree.map(jnp.asarray, weights.params)
    fn = jax.jit(
        lambda p, x: {
            k: jnp.mean(v, dtype=jnp.float32)
            for k, v in features(
                p, x, layers=RELU_LAYERS, mean=weights.mean, std=weights.std
            ).items()
        }
    )
    # one image at a time keeps the memory at one 224x224 forward pass
    sums = np.zeros(16, np.float64)
    for i in range(len(x)):
        out = jax.device_get(fn(params, jnp.asarray(x[i : i + 1])))
        sums += np.array([float(out[k]) for k in RELU_LAYERS], np.float64)
    means = sums / len(x)
    return tuple(float(m) if m > 0 and math.isfinite(m) else 1.0 for m in means)


def _fold(kernels, biases, scales, *, inverse: bool = False):
    ks, bs, prev = [], [], 1.0
    for k, b, s in zip(kernels, biases, scales, strict=True):
        f_in, f_out = (1.0 / prev, 1.0 / s) if inverse else (prev, s)
        ks.append((np.asarray(k, np.float64) * (f_in / f_out)).astype(np.float32))
        bs.append((np.asarray(b, np.float64) / f_out).astype(np.float32))
        prev = s
    return tuple(ks), tuple(bs)


def normalize(weights: VGGWeights, scales: Sequence[float] | None = None) -> VGGWeights:
    """The network with each conv layer's output divided by its scale (folded into the arrays).

    Layer ``k``'s kernel is multiplied by ``s[k-1] / s[k]`` (``s[0-1] = 1``) and its
    bias divided by ``s[k]``; ReLU and pooling commute with positive scaling, so
    every activation of layer ``k`` (conv, relu, pool) becomes the raw one divided
    by ``s[k]``. With the default scales (the raw network's mean activations on
    :func:`reference_images`) every layer's mean activation on that set is 1.

    Args:
      weights: raw weights (already normalized ones are returned as they are).
      scales: 16 positive numbers (default: ``weights.scales``, else measured).
    """
    if weights.normalized:
        return weights
    if scales is None:
        scales = weights.scales if weights.scales is not None else activation_means(weights)
    s = tuple(float(v) for v in scales)
    if len(s) != 16 or not all(math.isfinite(v) and v > 0 for v in s):
        raise InputError(f"scales must be 16 positive numbers, got {s}")
    kernels, biases = _fold(weights.kernels, weights.biases, s)
    return weights._replace(kernels=kernels, biases=biases, scales=s, normalized=True)


def denormalize(weights: VGGWeights) -> VGGWeights:
    """The raw network back from :func:`normalize`'s output (identity for raw weights)."""
    if not weights.normalized:
        return weights
    kernels, biases = _fold(weights.kernels, weights.biases, weights.scales, inverse=True)
    return weights._replace(kernels=kernels, biases=biases, normalized=False)


# ---------------------------------------------------------------- loading


def _fetched() -> Path | None:
    """The VGG-19 fetched into the cache (``imsyn.weights.cached``), if any."""
    try:
        from imsyn import weights as registry

        cached = registry.cached
    except (ImportError, AttributeError):  # a checkout without the registry
        return None
    return cached("vgg19")


def load_weights(
    path: str | os.PathLike | None = None, *, quiet: bool = False, normalize: bool = True
) -> VGGWeights:
    """The weights to use, normalized (see the module docstring).

    Order: ``path``; else ``$IMSYN_VGG19``; else the fetched network
    (``python -m imsyn weights fetch vgg19``); else the random-feature mode, which
    prints a warning on stderr (unless ``quiet``) and is recorded as
    ``source == "random"`` (it is never rescaled).

    Args:
      path: a weights file (any format of :func:`read_weights`).
      quiet: no warning/note on stderr.
      normalize: rescale each layer to mean activation 1 (:func:`normalize`);
        ``False`` gives the file's raw network.

    Raises:
      InputError: a missing or corrupt file.
    """
    path = path or os.environ.get("IMSYN_VGG19") or _fetched() or None
    if not path:
        if not quiet:
            print(
                "imsyn: warning: no VGG-19 weights given (--weights / config.weights / "
                "$IMSYN_VGG19) or fetched (`python -m imsyn weights fetch vgg19`); using random "
                "features (fixed seed): expect weak textures, not real style transfer",
                file=sys.stderr,
            )
        return random_weights()
    w = read_weights(path)
    if normalize and not w.normalized:
        if w.scales is None:
            st = Path(path).stat()
            key = (str(Path(path).resolve()), st.st_size, st.st_mtime_ns)
            if key in _MEASURED:  # measured before in this process
                return _normalize(w._replace(scales=_MEASURED[key]))
            t0 = time.perf_counter()
            w = w._replace(scales=activation_means(w))
            _MEASURED[key] = w.scales
            if not quiet:
                hint = (
                    "convert it once with `python -m imsyn convert-weights` (or "
                    "`python -m imsyn weights fetch vgg19 --force`) to store them"
                )
                print(
                    f"imsyn: note: {Path(path).name} has no normalization scales; measured them "
                    f"on the reference set in {time.perf_counter() - t0:.1f} s; {hint}",
                    file=sys.stderr,
                )
        w = _normalize(w)
    return w


_normalize = normalize  # load_weights' keyword shadows the function
_MEASURED: dict[tuple, tuple[float, ...]] = {}  # (path, size, mtime) -> measured scales


# ---------------------------------------------------------------- forward


def features(
    params: dict,
    images: jax.Array,
    *,
    layers: Sequence[str],
    mean: Sequence[float] = IMAGENET_MEAN,
    std: Sequence[float] = IMAGENET_STD,
    pooling: str = "max",
    remat: bool = False,
    dtype=None,
) -> dict[str, jax.Array]:
    """VGG-19 activations at ``layers`` (a pure function of arrays).

    Args:
      params: ``{"kernels": 16 x float32[3,3,Cin,Cout], "biases": 16 x float32[Cout]}``.
      images: ``float32[N, H, W, 3]`` RGB in ``[0, 1]``.
      layers: names (either spelling); computation stops after the deepest.
      mean, std: input normalization of the weights (RGB, [0, 1] units).
      pooling: ``"max"`` or ``"avg"`` (2x2, stride 2, floor like PyTorch).
      remat: rematerialize each block's activations in the backward pass
        (``jax.checkpoint``; trades compute for memory at large sizes).
      dtype: compute dtype (``None`` or float32: the float32 network; ``"bfloat16"``:
        mixed precision, the normalized input, kernels and biases cast to bfloat16, every
        convolution one bfloat16 ``lax.conv_general_dilated``; the float32 parameters and
        input get float32 gradients).

    Returns:
      ``{name: float32[N, h, w, C]}`` for each requested name, as spelled (features
      computed in bfloat16 are returned cast to float32, for float32 losses).
    """
    layers = check_layers(layers)
    if pooling not in ("max", "avg"):
        raise InputError(f"pooling must be 'max' or 'avg', got {pooling!r}")
    if not layers:
        return {}
    wanted: dict[int, list[str]] = {}
    for name in layers:
        wanted.setdefault(LAYER_INDEX[name], []).append(name)
    last = max(wanted)
    x = (images - jnp.asarray(mean, images.dtype)) / jnp.asarray(std, images.dtype)
    low = dtype is not None and jnp.dtype(dtype) != x.dtype  # mixed precision
    if low:
        x = x.astype(dtype)
    out: dict[str, jax.Array] = {}

    def conv(x, k, b):
        if low:
            k, b = k.astype(x.dtype), b.astype(x.dtype)
        y = jax.lax.conv_general_dilated(
            x, k, (1, 1), ((1, 1), (1, 1)), dimension_numbers=("NHWC", "HWIO", "NHWC")
        )
        return y + b

    def pool(x):
        # 2x2 windows as a reshape + reduction: same values as reduce_window, but
        # its gradient is a cheap compare instead of XLA's select-and-scatter
        # (about 5x faster on CPU). Odd sizes are floored like PyTorch.
        n, h, w, c = x.shape
        x = x[:, : h // 2 * 2, : w // 2 * 2].reshape(n, h // 2, 2, w // 2, 2, c)
        return x.max(axis=(2, 4)) if pooling == "max" else x.mean(axis=(2, 4))

    # Group ops into segments ending at a pool or at the last wanted op, so that
    # remat can checkpoint segment by segment and taps are segment outputs.
    def run_segment(x, ks, bs, seg):
        taps = []
        ci = 0
        for pos, (kind, _) in seg:
            if kind == "conv":
                x = conv(x, ks[ci], bs[ci])
                ci += 1
            elif kind == "relu":
                x = jax.nn.relu(x)
            else:
                x = pool(x)
            if pos in wanted:
                taps.append(x)
        return x, taps

    segments, cur = [], []
    for pos in range(last + 1):
        cur.append((pos, OPS[pos]))
        if OPS[pos][0] == "pool" or pos == last:
            segments.append(cur)
            cur = []
    for seg in segments:
        idx = [i for _, (kind, i) in seg if kind == "conv"]
        ks = [params["kernels"][i] for i in idx]
        bs = [params["biases"][i] for i in idx]
        fn = functools.partial(run_segment, seg=seg)
        if remat:
            fn = jax.checkpoint(fn)
        x, taps = fn(x, ks, bs)
        tap_pos = [pos for pos, _ in seg if pos in wanted]
        for pos, t in zip(tap_pos, taps, strict=True):
            for name in wanted[pos]:
                out[name] = t.astype(jnp.float32) if low else t
    return out


@register("vgg19")
class VGG19(nnx.Module):
    """VGG-19 ``features`` as an NNX module (weights as ``nnx.Param``).

    Example::

        vgg = VGG19(weights=load_weights("vgg19.npz"))
        feats = vgg(images, layers=("conv_4", "relu5_1"))   # images [N,H,W,3] in [0,1]

    Args:
      weights: a :class:`VGGWeights` (default: the random-feature mode, quietly).
      pooling: ``"max"`` or ``"avg"``.
      rngs: unused (the weights are given); accepted for registry uniformity.
    """

    def __init__(
        self,
        *,
        weights: VGGWeights | None = None,
        pooling: str = "max",
        rngs: nnx.Rngs | None = None,
    ):
        del rngs
        weights = weights if weights is not None else random_weights()
        if pooling not in ("max", "avg"):
            raise InputError(f"pooling must be 'max' or 'avg', got {pooling!r}")
        self.kernels = nnx.List([nnx.Param(jnp.asarray(k)) for k in weights.kernels])
        self.biases = nnx.List([nnx.Param(jnp.asarray(b)) for b in weights.biases])
        self.mean = tuple(weights.mean)
        self.std = tuple(weights.std)
        self.source = weights.source
        self.pooling = pooling

    def params(self) -> dict:
        return {"kernels": [k[...] for k in self.kernels], "biases": [b[...] for b in self.biases]}

    def __call__(self, images, *, layers: Sequence[str], remat: bool = False) -> dict:
        return features(
            self.params(),
            images,
            layers=layers,
            mean=self.mean,
            std=self.std,
            pooling=self.pooling,
            remat=remat,
        )

"""Inception-v3 pool features (2048-d) for FID/KID, from a user-given weights file.

A functional JAX implementation of torchvision's ``Inception3`` up to the global
average pool, in two variants:

* ``"fid"``: pytorch-fid's ``FIDInceptionA/C/E_1/E_2`` blocks (average pools that
  exclude padding, a max pool in the last block), for the TF-ported weights
  ``pt_inception-2015-12-05-6726825d.pth`` that published FIDs use;
* ``"torchvision"``: torchvision's blocks, for ``inception_v3_google-*.pth``.

Weights are read from ``.safetensors``, ``.npz`` (a flat state dict) or ``.pth``
(needs torch; convert once with ``safetensors`` otherwise), with torchvision's
parameter names (``Conv2d_1a_3x3.conv.weight``, ``Mixed_5b.branch1x1.bn.running_mean``, ...).
Batch norms (eps 1e-3) are folded into the convolutions at load time. Nothing is
downloaded: without a file, use the offline fallback of :mod:`imsyn.metrics`.

Input: ``float32[N, H, W, 3]`` in ``[-1, 1]``, resized bilinearly (half-pixel
centres, no antialiasing, as ``F.interpolate(..., align_corners=False)``) to 299x299.
"""

from __future__ import annotations

import os
from functools import partial
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np

from imsyn.errors import InputError

VARIANTS = ("fid", "torchvision")
BN_EPS = 1e-3


def _block_specs() -> list[tuple[str, int, int, tuple[int, int], int, tuple[int, int]]]:
    """Every BasicConv2d: (name, in, out, (kh, kw), stride, (ph, pw))."""
    s = []

    def conv(name, cin, cout, k=1, stride=1, pad=0):
        k = (k, k) if isinstance(k, int) else k
        pad = (pad, pad) if isinstance(pad, int) else pad
        s.append((name, cin, cout, k, stride, pad))

    conv("Conv2d_1a_3x3", 3, 32, 3, 2)
    conv("Conv2d_2a_3x3", 32, 32, 3)
    conv("Conv2d_2b_3x3", 32, 64, 3, 1, 1)
    conv("Conv2d_3b_1x1", 64, 80)
    conv("Conv2d_4a_3x3", 80, 192, 3)
    for name, cin, pool in (("Mixed_5b", 192, 32), ("Mixed_5c", 256, 64), ("Mixed_5d", 288, 64)):
        conv(f"{name}.branch1x1", cin, 64)
        conv(f"{name}.branch5x5_1", cin, 48)
        conv(f"{name}.branch5x5_2", 48, 64, 5, 1, 2)
        conv(f"{name}.branch3x3dbl_1", cin, 64)
        conv(f"{name}.branch3x3dbl_2", 64, 96, 3, 1, 1)
        conv(f"{name}.branch3x3dbl_3", 96, 96, 3, 1, 1)
        conv(f"{name}.branch_pool", cin, pool)
    conv("Mixed_6a.branch3x3", 288, 384, 3, 2)
    conv("Mixed_6a.branch3x3dbl_1", 288, 64)
    conv("Mixed_6a.branch3x3dbl_2", 64, 96, 3, 1, 1)
    conv("Mixed_6a.branch3x3dbl_3", 96, 96, 3, 2)
    for name, c7 in (("Mixed_6b", 128), ("Mixed_6c", 160), ("Mixed_6d", 160), ("Mixed_6e", 192)):
        conv(f"{name}.branch1x1", 768, 192)
        conv(f"{name}.branch7x7_1", 768, c7)
        conv(f"{name}.branch7x7_2", c7, c7, (1, 7), 1, (0, 3))
        conv(f"{name}.branch7x7_3", c7, 192, (7, 1), 1, (3, 0))
        conv(f"{name}.branch7x7dbl_1", 768, c7)
        conv(f"{name}.branch7x7dbl_2", c7, c7, (7, 1), 1, (3, 0))
        conv(f"{name}.branch7x7dbl_3", c7, c7, (1, 7), 1, (0, 3))
        conv(f"{name}.branch7x7dbl_4", c7, c7, (7, 1), 1, (3, 0))
        conv(f"{name}.branch7x7dbl_5", c7, 192, (1, 7), 1, (0, 3))
        conv(f"{name}.branch_pool", 768, 192)
    conv("Mixed_7a.branch3x3_1", 768, 192)
    conv("Mixed_7a.branch3x3_2", 192, 320, 3, 2)
    conv("Mixed_7a.branch7x7x3_1", 768, 192)
    conv("Mixed_7a.branch7x7x3_2", 192, 192, (1, 7), 1, (0, 3))
    conv("Mixed_7a.branch7x7x3_3", 192, 192, (7, 1), 1, (3, 0))
    conv("Mixed_7a.branch7x7x3_4", 192, 192, 3, 2)
    for name, cin in (("Mixed_7b", 1280), ("Mixed_7c", 2048)):
        conv(f"{name}.branch1x1", cin, 320)
        conv(f"{name}.branch3x3_1", cin, 384)
        conv(f"{name}.branch3x3_2a", 384, 384, (1, 3), 1, (0, 1))
        conv(f"{name}.branch3x3_2b", 384, 384, (3, 1), 1, (1, 0))
        conv(f"{name}.branch3x3dbl_1", cin, 448)
        conv(f"{name}.branch3x3dbl_2", 448, 384, 3, 1, 1)
        conv(f"{name}.branch3x3dbl_3a", 384, 384, (1, 3), 1, (0, 1))
        conv(f"{name}.branch3x3dbl_3b", 384, 384, (3, 1), 1, (1, 0))
        conv(f"{name}.branch_pool", cin, 192)
    return s


SPECS = {name: rest for name, *rest in _block_specs()}


def torch_state_shapes() -> dict[str, tuple[int, ...]]:
    """The torchvision state-dict entries the features need, with their shapes."""
    out = {}
    for name, (cin, cout, (kh, kw), _, _) in SPECS.items():
        out[f"{name}.conv.weight"] = (cout, cin, kh, kw)
        for p in ("weight", "bias", "running_mean", "running_var"):
            out[f"{name}.bn.{p}"] = (cout,)
    return out


def fold_state_dict(state: dict, *, path="state dict") -> dict[str, tuple[np.ndarray, np.ndarray]]:
    """torchvision state dict (numpy arrays) -> {conv name: (kernel HWIO, bias)}, BN folded.

    Raises:
      InputError: a missing entry or a wrong shape (naming it).
    """
    state = {k.removeprefix("module."): v for k, v in state.items()}
    for key, shape in torch_state_shapes().items():
        if key not in state:
            raise InputError(f"{path}: missing Inception-v3 weight {key!r}")
        if tuple(np.shape(state[key])) != shape:
            raise InputError(
                f"{path}: {key} has shape {tuple(np.shape(state[key]))}, expected {shape}"
            )
    params = {}
    for name in SPECS:
        w = np.asarray(state[f"{name}.conv.weight"], np.float32)
        gamma, beta, mean, var = (
            np.asarray(state[f"{name}.bn.{p}"], np.float32)
            for p in ("weight", "bias", "running_mean", "running_var")
        )
        scale = gamma / np.sqrt(var + BN_EPS)
        params[name] = (w.transpose(2, 3, 1, 0) * scale, beta - mean * scale)
    return params


def read_weights(path: str | os.PathLike) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    """Reads and folds Inception-v3 weights (.safetensors, .npz or .pth)."""
    path = Path(path)
    if not path.is_file():
        raise InputError(f"{path}: Inception-v3 weights file not found")
    suffix = path.suffix.lower()
    try:
        if suffix == ".safetensors":
            from safetensors.numpy import load_file

            state = load_file(str(path))
        elif suffix == ".npz":
            with np.load(path) as z:
                state = {k: z[k] for k in z.files}
        elif suffix in (".pth", ".pt"):
            state = _read_torch(path)
        else:
            raise InputError(f"{path}: expected a .safetensors, .npz or .pth weights file")
    except InputError:
        raise
    except Exception as e:  # noqa: BLE001 - any reader failure is a bad file
        first = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
        raise InputError(f"{path}: not a readable weights file: {first}") from None
    return fold_state_dict(state, path=path)


def _read_torch(path: Path) -> dict:
    try:
        import torch
    except ImportError:
        raise InputError(
            f"{path}: reading a .pth file needs torch; convert it once to .safetensors "
            "(safetensors.torch.save_file(torch.load(path), 'inception.safetensors'))"
        ) from None
    state = torch.load(path, map_location="cpu", weights_only=True)
    return {k: v.numpy() for k, v in state.items() if hasattr(v, "numpy")}


def random_weights(seed: int = 0) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    """A torchvision-layout state dict of random values, folded (for tests and shapes)."""
    rng = np.random.default_rng(seed)
    state = {}
    for key, shape in torch_state_shapes().items():
        if key.endswith("conv.weight"):
            fan_in = shape[1] * shape[2] * shape[3]
            state[key] = rng.normal(0, np.sqrt(2.0 / fan_in), shape).astype(np.float32)
        elif key.endswith("running_var"):
            state[key] = rng.uniform(0.5, 1.5, shape).astype(np.float32)
        elif key.endswith(".bn.weight"):
            state[key] = rng.uniform(0.8, 1.2, shape).astype(np.float32)
        else:
            state[key] = rng.normal(0, 0.1, shape).astype(np.float32)
    return fold_state_dict(state)


# --------------------------------------------------------------------------- forward


def _conv(params, name, x):
    _, _, _, stride, (ph, pw) = SPECS[name]
    w, b = params[name]
    y = jax.lax.conv_general_dilated(
        x, w, (stride, stride), ((ph, ph), (pw, pw)), dimension_numbers=("NHWC", "HWIO", "NHWC")
    )
    return jax.nn.relu(y + b)


def max_pool(x, k=3, stride=2, pad=0):
    """``F.max_pool2d`` (padding with -inf)."""
    pads = ((0, 0), (pad, pad), (pad, pad), (0, 0))
    return jax.lax.reduce_window(
        x, -jnp.inf, jax.lax.max, (1, k, k, 1), (1, stride, stride, 1), pads
    )


def avg_pool_3x3(x, *, count_include_pad: bool):
    """``F.avg_pool2d(x, 3, stride=1, padding=1, count_include_pad=...)``."""
    pads = ((0, 0), (1, 1), (1, 1), (0, 0))
    total = jax.lax.reduce_window(x, 0.0, jax.lax.add, (1, 3, 3, 1), (1, 1, 1, 1), pads)
    if count_include_pad:
        return total / 9.0
    ones = jnp.ones((1, *x.shape[1:3], 1), x.dtype)
    count = jax.lax.reduce_window(ones, 0.0, jax.lax.add, (1, 3, 3, 1), (1, 1, 1, 1), pads)
    return total / count


def _block_a(p, n, x, fid):
    b1 = _conv(p, f"{n}.branch1x1", x)
    b5 = _conv(p, f"{n}.branch5x5_2", _conv(p, f"{n}.branch5x5_1", x))
    b3 = _conv(p, f"{n}.branch3x3dbl_1", x)
    b3 = _conv(p, f"{n}.branch3x3dbl_3", _conv(p, f"{n}.branch3x3dbl_2", b3))
    bp = _conv(p, f"{n}.branch_pool", avg_pool_3x3(x, count_include_pad=not fid))
    return jnp.concatenate([b1, b5, b3, bp], axis=-1)


def _block_b(p, n, x):
    b3 = _conv(p, f"{n}.branch3x3", x)
    bd = _conv(p, f"{n}.branch3x3dbl_1", x)
    bd = _conv(p, f"{n}.branch3x3dbl_3", _conv(p, f"{n}.branch3x3dbl_2", bd))
    return jnp.concatenate([b3, bd, max_pool(x)], axis=-1)


def _block_c(p, n, x, fid):
    b1 = _conv(p, f"{n}.branch1x1", x)
    b7 = x
    for i in (1, 2, 3):
        b7 = _conv(p, f"{n}.branch7x7_{i}", b7)
    bd = x
    for i in (1, 2, 3, 4, 5):
        bd = _conv(p, f"{n}.branch7x7dbl_{i}", bd)
    bp = _conv(p, f"{n}.branch_pool", avg_pool_3x3(x, count_include_pad=not fid))
    return jnp.concatenate([b1, b7, bd, bp], axis=-1)


def _block_d(p, n, x):
    b3 = _conv(p, f"{n}.branch3x3_2", _conv(p, f"{n}.branch3x3_1", x))
    b7 = x
    for i in (1, 2, 3, 4):
        b7 = _conv(p, f"{n}.branch7x7x3_{i}", b7)
    return jnp.concatenate([b3, b7, max_pool(x)], axis=-1)


def _block_e(p, n, x, pool: str):
    b1 = _conv(p, f"{n}.branch1x1", x)
    b3 = _conv(p, f"{n}.branch3x3_1", x)
    b3 = jnp.concatenate(
        [_conv(p, f"{n}.branch3x3_2a", b3), _conv(p, f"{n}.branch3x3_2b", b3)], axis=-1
    )
    bd = _conv(p, f"{n}.branch3x3dbl_2", _conv(p, f"{n}.branch3x3dbl_1", x))
    bd = jnp.concatenate(
        [_conv(p, f"{n}.branch3x3dbl_3a", bd), _conv(p, f"{n}.branch3x3dbl_3b", bd)], axis=-1
    )
    if pool == "max":
        pooled = max_pool(x, 3, 1, 1)
    else:
        pooled = avg_pool_3x3(x, count_include_pad=pool == "avg_include_pad")
    return jnp.concatenate([b1, b3, bd, _conv(p, f"{n}.branch_pool", pooled)], axis=-1)


@partial(jax.jit, static_argnames=("variant", "size"))
def features(params, x, *, variant: str = "fid", size: int = 299):
    """Inception-v3 pool3 features.

    Args:
      params: folded weights from :func:`read_weights` / :func:`random_weights`.
      x: float32[N, H, W, 3] in [-1, 1].
      variant: "fid" (pytorch-fid blocks) or "torchvision".
      size: side the input is resized to (299 for meaningful FIDs; >= 75).

    Returns:
      float32[N, 2048].
    """
    if variant not in VARIANTS:
        raise ValueError(f"variant must be one of {VARIANTS}, got {variant!r}")
    fid = variant == "fid"
    x = jax.image.resize(x, (x.shape[0], size, size, x.shape[3]), "linear", antialias=False)
    for name in ("Conv2d_1a_3x3", "Conv2d_2a_3x3", "Conv2d_2b_3x3"):
        x = _conv(params, name, x)
    x = max_pool(x)
    x = _conv(params, "Conv2d_4a_3x3", _conv(params, "Conv2d_3b_1x1", x))
    x = max_pool(x)
    for name in ("Mixed_5b", "Mixed_5c", "Mixed_5d"):
        x = _block_a(params, name, x, fid)
    x = _block_b(params, "Mixed_6a", x)
    for name in ("Mixed_6b", "Mixed_6c", "Mixed_6d", "Mixed_6e"):
        x = _block_c(params, name, x, fid)
    x = _block_d(params, "Mixed_7a", x)
    x = _block_e(params, "Mixed_7b", x, "avg_exclude_pad" if fid else "avg_include_pad")
    x = _block_e(params, "Mixed_7c", x, "max" if fid else "avg_include_pad")
    return jnp.mean(x, axis=(1, 2))

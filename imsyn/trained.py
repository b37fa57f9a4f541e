"""Trained generators: load them from a run folder or an exported file, export them, use them.

A trained model reaches the inference commands (``python -m imsyn translate``, ``sample``,
``edit``) as ``--model``, which is either

* a **run folder** written by ``train.py`` (``config.json`` + ``checkpoints/``): the newest
  intact checkpoint is restored (:class:`imsyn.training.checkpoint.Checkpoints`; a damaged
  one is skipped with one line) after its architecture is checked against ``config.json``; or
* an **exported file** (:func:`export`, ``python -m imsyn export``): one safetensors file
  holding the generators' arrays only (CycleGAN: ``g_xy`` and ``g_yx``; DCGAN and the style
  generator: ``g``; no discriminators, no optimizer state) and, in its header metadata
  (``__metadata__["imsyn"]``), a JSON record (:data:`FORMAT`, :data:`FORMAT_VERSION`, the
  task, the architecture fields that rebuild the networks, ``image_size``, the training
  step, the run's resolved config and a SHA-256 of the arrays). It needs nothing but imsyn
  to load: the way to share a trained model.

A file is checked before use: not a safetensors file, not an imsyn model (a foreign
safetensors file), truncated, written by a newer imsyn, of an unknown task, with arrays that
do not match the architecture it records, or whose arrays do not match its checksum: one
:class:`~imsyn.errors.InputError` naming the file (the CLIs print it as one line, exit 2).

Runs written before a field existed lack it in ``config.json``: the field takes the value
the code had before it existed (:data:`LEGACY`, e.g. ``g_skip="none"``), and any other
missing field the default of ``configs/<task>.py`` (where the config files are at hand).

CycleGAN translation (:func:`translate_images`): the generator is fully convolutional, so
an image is translated at its own size. It needs height and width to be multiples of 4 (two
stride-2 convs down, two ×2 up-convs back), so each image is reflect-padded to the next
multiples of 4 (split between both sides) and the result cropped back to the input's size.
The generator's instance norm sees the padded image; a generator trained at 32 px works at
the scale it learned, so images much larger than its training images are best downsized
first.
"""

from __future__ import annotations

import hashlib
import json
import os
import struct
from pathlib import Path
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
from flax import nnx

from imsyn import safe_pickle
from imsyn.errors import ConfigError, InputError

#: the ``format`` of an exported file's record, and its version (readers refuse newer ones)
FORMAT = "imsyn.generator"
FORMAT_VERSION = 1
#: task -> the networks an export holds
NETWORKS = {"cyclegan": ("g_xy", "g_yx"), "dcgan": ("g",)}
#: task -> fields added after runs of it were written, with the value earlier code implied
LEGACY = {
    "cyclegan": {"g_skip": "none", "g_align": "none", "ema_decay": 0.0},
    "dcgan": {"generator": "dcgan_generator"},
}
#: side lengths a CycleGAN generator takes are multiples of this
MULTIPLE = 4
_CONFIGS = Path(__file__).resolve().parents[1] / "configs"
_MAX_HEADER = 100 * 2**20  # bytes of a safetensors JSON header we are willing to read


class Model(NamedTuple):
    """A trained model's generators (see :func:`load`)."""

    task: str  #: "cyclegan" or "dcgan"
    config: Any  #: the run's resolved config (``ml_collections.ConfigDict``)
    arch: dict  #: the architecture record (the task's ``arch(config)``)
    step: int  #: the training step of the weights
    states: dict  #: network name -> ``nnx.State`` (see :data:`NETWORKS`)
    source: str  #: the run folder or file it came from

    def generator(self, name: str) -> tuple[nnx.GraphDef, nnx.State]:
        """``(graphdef, state)`` of network ``name`` (``"g"``, ``"g_xy"``, ``"g_yx"``)."""
        return _graphdefs(self.task, self.config)[name], self.states[name]

    def module(self, name: str) -> nnx.Module:
        """Network ``name`` as an ``nnx.Module`` in eval mode."""
        net = nnx.merge(*self.generator(name))
        net.eval()
        return net


# --------------------------------------------------------------------------- tasks


def _task_module(task: str):
    if task == "cyclegan":
        from imsyn.tasks import cyclegan as mod
    elif task == "dcgan":
        from imsyn.tasks import dcgan as mod
    else:
        raise ValueError(task)
    return mod


def _graphdefs(task: str, config) -> dict:
    mod = _task_module(task)
    if task == "cyclegan":
        defs = mod.graphdefs(config)
        return {"g_xy": defs.g_xy, "g_yx": defs.g_yx}
    return {"g": mod.graphdefs(config)[0]}


def _abstract_states(task: str, config) -> dict:
    """Network name -> abstract ``nnx.State`` (shapes and dtypes; nothing allocated)."""
    mod = _task_module(task)
    nets = nnx.eval_shape(lambda: mod.build_models(config, jax.random.key(0)))
    if task == "cyclegan":
        return {"g_xy": nnx.state(nets.g_xy), "g_yx": nnx.state(nets.g_yx)}
    return {"g": nnx.state(nets[0])}


def _jsonable(obj):
    return json.loads(json.dumps(obj))


def default_config(task: str):
    """``get_config()`` of ``configs/<task>.py``, or None where the config files are not at
    hand (an installed package)."""
    path = _CONFIGS / f"{task}.py"
    if not path.is_file():
        return None
    from imsyn.training.sweep import config_module

    try:
        return config_module(path).get_config()
    except Exception:  # noqa: BLE001 - a broken config file only loses the defaults
        return None


def complete_config(task: str, cfg: ml_collections.ConfigDict) -> ml_collections.ConfigDict:
    """A run's config with the fields it predates filled in (see the module docstring)."""
    for k, v in LEGACY.get(task, {}).items():
        if k not in cfg:
            cfg[k] = v
    defaults = default_config(task)
    if defaults is not None:
        for k, v in defaults.to_dict().items():
            if k not in cfg:
                cfg[k] = v
    return cfg


def _same_arch(task: str, saved: dict | None, now: dict) -> bool:
    """Whether a checkpoint's arch record describes ``now`` (fields it predates: LEGACY)."""
    if not isinstance(saved, dict):
        return False
    legacy = LEGACY.get(task, {})
    keys = set(saved) | set(now)
    return all(saved.get(k, legacy.get(k)) == now.get(k, legacy.get(k)) for k in keys)


# --------------------------------------------------------------------------- loading


def load(path: str | os.PathLike, *, tasks: tuple[str, ...] = tuple(NETWORKS)) -> Model:
    """A trained model from a run folder or an exported file (see the module docstring).

    Args:
      path: a ``train.py`` run folder, or a file written by :func:`export`.
      tasks: the tasks the caller can use (``("cyclegan",)`` for translation).

    Raises:
      InputError: missing, unreadable, damaged or foreign (one line naming it).
      ConfigError: a run or file of another task, or without a checkpoint.
    """
    p = Path(path)
    if p.is_dir():
        model = load_run(p)
    elif p.is_file():
        model = load_file(p)
    else:
        raise InputError(f"--model {p}: no such run folder or model file")
    if model.task not in tasks:
        need = " or ".join(f"a {t} model" for t in tasks)
        raise ConfigError(f"--model {p} is a {model.task} model; this command needs {need}")
    return model


def read_run_config(run: str | os.PathLike) -> ml_collections.ConfigDict:
    """The resolved config a run folder's ``config.json`` holds (fields it predates filled in).

    Raises:
      InputError: no such folder, no or unreadable ``config.json``.
      ConfigError: a run of a task that has no generator to load.
    """
    wd = Path(run)
    if not wd.is_dir():
        raise InputError(f"run folder {wd}: no such directory")
    try:
        cfg = json.loads((wd / "config.json").read_text())
    except FileNotFoundError:
        raise InputError(f"{wd} has no config.json: not a training run (train.py)") from None
    except (OSError, ValueError) as e:
        raise InputError(f"{wd / 'config.json'}: unreadable ({e})") from None
    if not isinstance(cfg, dict):
        raise InputError(f"{wd / 'config.json'}: not a run config")
    task = cfg.get("task")
    if task not in NETWORKS:
        raise ConfigError(
            f"{wd} is a {task!r} run; a trained model is a CycleGAN or DCGAN run "
            "(configs/cyclegan.py, configs/dcgan.py)"
        )
    return complete_config(task, ml_collections.ConfigDict(cfg))


def load_run(run: str | os.PathLike) -> Model:
    """The generators of a run folder's newest intact checkpoint.

    Raises:
      InputError / ConfigError: see :func:`load`; also a checkpoint whose architecture is
        not the one ``config.json`` describes.
    """
    from imsyn.training.checkpoint import Checkpoints

    wd = Path(run)
    cfg = read_run_config(wd)
    task = cfg.task
    mod = _task_module(task)
    if not (wd / "checkpoints").is_dir():
        raise ConfigError(f"no checkpoint in {wd}: train it first (train.py)")
    arch = _jsonable(mod.arch(cfg))
    ckpts = Checkpoints(wd / "checkpoints", read_only=True)
    try:
        meta = ckpts.read_meta()
        if meta is None:
            raise ConfigError(f"no checkpoint in {wd}: train it first (train.py)")
        if not _same_arch(task, meta.get("arch"), arch):
            raise ConfigError(
                f"the checkpoint in {wd} does not match its config.json "
                f"({meta.get('arch')} != {arch})"
            )
        state, meta = ckpts.restore(mod.init_state(cfg, jax.random.key(0)))
    finally:
        ckpts.close()
    if task == "cyclegan":  # the parameter averages when the run keeps them
        from imsyn.gan import cyclegan_generators

        state = {**state, **cyclegan_generators(state)}
    states = {n: state[n] for n in NETWORKS[task]}
    return Model(task, cfg, arch, int(meta["step"]), states, str(wd))


def _key_name(path) -> str:
    parts = []
    for k in path:
        if isinstance(k, jax.tree_util.DictKey):
            parts.append(str(k.key))
        elif isinstance(k, jax.tree_util.SequenceKey):
            parts.append(str(k.idx))
        elif isinstance(k, jax.tree_util.GetAttrKey):
            if k.name != "value":
                parts.append(k.name)
        else:
            parts.append(str(k))
    return ".".join(parts)


def _flat(states: dict) -> dict[str, np.ndarray]:
    """``{"<net>.<path>": array}`` of every array of the networks' states."""
    out = {}
    for net, state in states.items():
        for path, leaf in jax.tree_util.tree_flatten_with_path(state)[0]:
            out[f"{net}.{_key_name(path)}"] = np.asarray(leaf, order="C")  # (0-d stays 0-d)
    return out


def arrays_digest(arrays: dict[str, np.ndarray]) -> str:
    """SHA-256 (hex) of named arrays: name, dtype, shape and bytes of each, by name."""
    h = hashlib.sha256()
    for name in sorted(arrays):
        a = np.asarray(arrays[name], order="C")
        h.update(f"{name}|{a.dtype.str}|{a.shape}|".encode())
        h.update(a.tobytes())
    return h.hexdigest()


def _read_header(p: Path, data: bytes) -> dict:
    """The JSON header of a safetensors file (InputError if it is not one)."""
    not_one = f"model file {p}: not an imsyn model file (not a safetensors file)"
    kind = safe_pickle.torch_file_kind(p)
    if kind is not None:  # a PyTorch file: say so, and what an imsyn model file is
        raise InputError(
            f"model file {p} is {safe_pickle.KIND_WORDS[kind]}, not an imsyn model: give a run "
            "folder, or a file written by `python -m imsyn export --model RUN --out FILE`"
        )
    if len(data) < 8:
        raise InputError(not_one)
    (n,) = struct.unpack("<Q", data[:8])
    if n < 2 or n > _MAX_HEADER:
        raise InputError(not_one)
    if 8 + n > len(data):
        raise InputError(f"model file {p} is truncated or damaged (its header is cut off)")
    try:
        header = json.loads(data[8 : 8 + n].decode("utf-8"))
    except (UnicodeDecodeError, ValueError):
        raise InputError(not_one) from None
    if not isinstance(header, dict):
        raise InputError(not_one)
    return header


def load_file(path: str | os.PathLike) -> Model:
    """A model exported by :func:`export`, checked (see the module docstring).

    Raises:
      InputError: unreadable, foreign, damaged, truncated, newer or inconsistent (one line).
    """
    from safetensors import SafetensorError
    from safetensors.numpy import load as st_load

    p = Path(path)
    try:
        data = p.read_bytes()
    except OSError as e:
        raise InputError(f"model file {p}: cannot read it ({e.strerror or e})") from None
    header = _read_header(p, data)
    meta = header.get("__metadata__") or {}
    foreign = InputError(
        f"model file {p} is not an imsyn model (a safetensors file without imsyn's record); "
        "export one with `python -m imsyn export`"
    )
    if not isinstance(meta, dict) or "imsyn" not in meta:
        raise foreign
    try:
        record = json.loads(meta["imsyn"])
    except ValueError:
        raise InputError(f"model file {p} is damaged: its imsyn record is unreadable") from None
    if not isinstance(record, dict) or record.get("format") != FORMAT:
        raise foreign
    try:
        version = int(record["format_version"])
        task = record["task"]
        arch, want, step = record["arch"], record["sha256"], int(record["step"])
        config = ml_collections.ConfigDict(record["config"])
    except (ValueError, KeyError, TypeError):
        raise InputError(f"model file {p} is damaged: its imsyn record is unreadable") from None
    if version > FORMAT_VERSION:
        raise InputError(
            f"model file {p} has format version {version}; this imsyn reads up to "
            f"{FORMAT_VERSION}: update imsyn"
        )
    if task not in NETWORKS:
        raise InputError(f"model file {p} holds a {task!r} model, which imsyn cannot use")
    try:
        arrays = st_load(data)
    except (SafetensorError, ValueError, OSError) as e:
        raise InputError(f"model file {p} is truncated or damaged ({e})") from None
    if arrays_digest(arrays) != want:
        raise InputError(f"model file {p} is damaged: its arrays do not match their checksum")
    config = complete_config(task, config)
    mod = _task_module(task)
    try:
        now = _jsonable(mod.arch(config))
        abstract = _abstract_states(task, config)
    except Exception as e:  # noqa: BLE001 - a record that does not rebuild a network
        raise InputError(f"model file {p}: its architecture record is invalid ({e})") from None
    if not _same_arch(task, arch, now):
        raise InputError(f"model file {p} is damaged: its config and architecture disagree")
    states = {}
    for net, abs_state in abstract.items():
        leaves, treedef = jax.tree_util.tree_flatten_with_path(abs_state)
        values = []
        for kp, leaf in leaves:
            name = f"{net}.{_key_name(kp)}"
            a = arrays.pop(name, None)
            if a is None or a.shape != tuple(leaf.shape) or a.dtype != leaf.dtype:
                got = "missing" if a is None else f"{a.dtype}{list(a.shape)}"
                raise InputError(
                    f"model file {p} does not match the architecture it records "
                    f"({name}: {got}, expected {leaf.dtype}{list(leaf.shape)})"
                )
            values.append(jnp.asarray(a))
        states[net] = jax.tree_util.tree_unflatten(treedef, values)
    if arrays:
        extra = sorted(arrays)[0]
        raise InputError(f"model file {p} holds an array its architecture lacks ({extra})")
    return Model(task, config, now, step, states, str(p))


# --------------------------------------------------------------------------- export


def record(model: Model, arrays: dict[str, np.ndarray]) -> dict:
    """The JSON record an exported file carries (see the module docstring)."""
    import imsyn

    return {
        "format": FORMAT,
        "format_version": FORMAT_VERSION,
        "task": model.task,
        "networks": list(NETWORKS[model.task]),
        "arch": model.arch,
        "image_size": int(model.config.image_size),
        "step": int(model.step),
        "config": _jsonable(model.config.to_dict()),
        "sha256": arrays_digest(arrays),
        "imsyn_version": imsyn.__version__,
    }


def export(model: Model, out: str | os.PathLike) -> Path:
    """Writes ``model``'s generators and record to one safetensors file, atomically.

    Returns:
      The path written.
    """
    from safetensors.numpy import save as st_save

    from imsyn.image import write_bytes

    arrays = _flat(model.states)
    rec = record(model, arrays)
    # one metadata entry: safetensors writes several in no fixed order
    data = st_save(arrays, metadata={"imsyn": json.dumps(rec, sort_keys=True)})
    return write_bytes(out, data)


# --------------------------------------------------------------------------- use


def pad_amounts(size: int, multiple: int = MULTIPLE) -> tuple[int, int]:
    """(before, after): the padding that takes ``size`` to the next multiple of ``multiple``."""
    total = -size % multiple
    return total // 2, total - total // 2


def pad_image(img: np.ndarray, multiple: int = MULTIPLE) -> tuple[np.ndarray, tuple]:
    """Reflect-pads ``float[H, W, C]`` to multiples of ``multiple``; returns it and the crop
    (``(top, left, H, W)``) that takes the result back to the input's size."""
    h, w = img.shape[:2]
    (t, b), (le, r) = pad_amounts(h, multiple), pad_amounts(w, multiple)
    if t or b or le or r:
        img = np.pad(img, ((t, b), (le, r), (0, 0)), mode="reflect")
    return img, (t, le, h, w)


def translate_images(
    g_def: nnx.GraphDef, g_state: nnx.State, images: list[np.ndarray]
) -> list[np.ndarray]:
    """One CycleGAN generator on images of one padded size (see :func:`pad_image`).

    Args:
      g_def, g_state: the generator (:meth:`Model.generator`).
      images: ``float32[H, W, 3]`` in [0, 1], all of the same size.

    Returns:
      The translations, ``float32[H, W, 3]`` in [0, 1], each of its input's size.
    """
    from imsyn import gan
    from imsyn.image import from_network, to_network

    padded, crops = zip(*(pad_image(np.asarray(im, np.float32)) for im in images), strict=True)
    x = to_network(np.stack(padded))
    y = np.asarray(from_network(gan.translate(g_def, g_state, x)))
    return [y[i, t : t + h, le : le + w] for i, (t, le, h, w) in enumerate(crops)]


def latents(seed: int, indices, z_dim: int) -> np.ndarray:
    """``float32[len(indices), z_dim]``: latent ``i`` is ``normal(fold_in(key(seed), i))``,
    so a sample depends on its seed and index only (not on how many are drawn, nor the
    batch size)."""
    base = jax.random.key(seed)
    idx = jnp.asarray(list(indices), jnp.uint32)
    keys = jax.vmap(lambda i: jax.random.fold_in(base, i))(idx)
    return np.asarray(jax.vmap(lambda k: jax.random.normal(k, (z_dim,)))(keys), np.float32)

"""CycleGAN experiment (``config.task == "cyclegan"``): config -> run -> outputs.

``train(config, workdir)`` / ``evaluate(config, workdir)`` are what ``train.py`` and
``eval.py`` call (via :mod:`imsyn.experiments`); :class:`CycleGANTask` is the
:class:`imsyn.training.loop.Task` they hand to the generic loop. The algorithm (networks,
the pure step, the image pool, the colour-statistics baseline, paired metrics) is the
CycleGAN section of :mod:`imsyn.gan`.

Config: :data:`FIELDS`, every field's default, rule and meaning (the common training
fields of :data:`imsyn.training.loop.COMMON_FIELDS`, ``data`` being domain X, and the
CycleGAN's own, ``data_y`` domain Y), checked by :func:`check` before any compute
(unknown fields refused; the memory one step needs is estimated against the device's).
Data-source options travel in the specs (``emoji:twemoji?category=faces``).

``config.dtype = "bfloat16"`` trains in mixed precision (bfloat16 compute; float32
parameters, optimizer state, image pool and losses; :func:`imsyn.gan.make_cyclegan_step`);
evaluation translates with the float32 generators.

Training state: see :func:`imsyn.gan.init_cyclegan_state` (``nnx.State`` of the four
networks, two optax states, the image pool when ``pool_size`` > 0).

Evaluation translates the held-out test split both ways. When X and Y are the two emoji
styles with the same options (category, limit), the test emoji pair up by code point and
each translation is compared with its true counterpart (L1, PSNR, SSIM in ``[0, 1]``, and
LPIPS v0.1 when ``lpips_vgg16`` is fetched) next to two baselines — identity (output =
input) and global colour-statistics transfer (per-channel mean/std of the training
domains) — and the cycle-reconstruction error. FID and KID per direction compare the
translations (and the baselines' outputs: identity is the untouched input) with the real
target-domain test images (unpaired folders: every image of the target domain, training and
held-out, as the held-out split of a small folder is too small a reference), on the
features of ``config.features`` (``"auto"``: the real TF-FID Inception-v3 when
``inception_fid`` is fetched, else the offline ``random_conv_v1``; the resolved name is
recorded) and on a fixed random subset of at most ``config.fid_max_images`` test images per
domain (Inception-v3 at 299 px is slow on a CPU).
"""

from __future__ import annotations

import functools
import html
import json
from pathlib import Path
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
import optax
from flax import nnx

from imsyn import gan, losses, metrics
from imsyn.errors import ConfigError
from imsyn.image import from_network, make_grid, to_float, to_network, write_image
from imsyn.models.cyclegan import ALIGNS, SKIPS
from imsyn.models.layers import DTYPES, NORMS
from imsyn.runtime import available_bytes
from imsyn.training import loop
from imsyn.validate import Decl, boolean, custom, existing_file, integer, number, one_of, string

_SAMPLES = 8  # fixed test images per direction in the sample grids


def _ema_decay(v):
    if isinstance(v, bool) or not isinstance(v, (int, float)):
        raise ValueError
    if not (v == 0 or 0.9 <= v < 1):
        raise ValueError
    return float(v)


def _fid_images(v):
    if isinstance(v, bool) or not isinstance(v, int) or not (v == 0 or v >= 2):
        raise ValueError
    return v


#: every field of a CycleGAN config, declared once: default, rule, meaning (``configs/cyclegan.py``
#: builds on these defaults; its presets change some, and set decay_start per preset)
FIELDS = loop.training_fields(
    defaults={
        "task": "cyclegan",
        "name": "cyclegan_emoji",
        "data": "emoji:twemoji",  # domain X
        "image_size": 32,
        # no colour jitter: it blinds the discriminators to a wrong palette (docs/cyclegan.md)
        "diffaug": "translation",
        "num_steps": 4000,
        "batch_size": 8,
        "lr": 6e-4,  # 3x the course's 2e-4: what 4000 steps of batch 8 learn (docs/cyclegan.md)
        "lr_schedule": "linear_decay",
        "log_every": 25,
        "checkpoint_every": 500,
        "keep_checkpoints": 2,
        "sample_every": lambda c: (c.get_ref("num_steps") + 15) // 16,  # follows num_steps
    },
    rules={"loss": one_of(*losses.GAN_LOSSES)},
    fields={
        "data_y": Decl(
            "emoji:openmoji",
            string(nonempty=True, expect="a data spec such as 'emoji:openmoji'"),
            "domain Y (data is domain X); emoji styles with the same options pair up for eval",
        ),
        "g_conv_dim": Decl(32, integer(min=1), "generator width (channels of the first conv)"),
        "d_conv_dim": Decl(64, integer(min=1), "discriminator width"),
        "n_blocks": Decl(3, integer(min=0), "residual blocks at the generator's bottleneck"),
        "block_convs": Decl(2, one_of(1, 2), "convolutions per residual block"),
        "g_skip": Decl(
            "unet_full",
            one_of(*SKIPS),
            "unet: half-resolution features skip the bottleneck (pix2pix); unet_full: the input "
            "too, at full resolution; none: the course's",
        ),
        "g_align": Decl(
            "zoom",
            one_of(*ALIGNS),
            "zoom: G zooms its input by the domains' measured framing ratio, F by the inverse",
        ),
        "ema_decay": Decl(
            0.999,
            custom(_ema_decay, "0 (off) or a number in [0.9, 1)"),
            "translate with moving averages of the generators' parameters (0: off)",
        ),
        "norm": Decl("instance", one_of(*NORMS), "normalization of both networks"),
        "padding_mode": Decl("reflect", one_of("zeros", "reflect"), "padding of the convs"),
        "discriminator": Decl(
            "patch",
            one_of(*gan.DISCRIMINATORS),
            "patch (4x4 logits at 64 px), patch70 (pix2pix 70x70), patch16 (pix2pix 16x16: "
            "local logits) or dc (one logit)",
        ),
        "spectral_norm": Decl(False, boolean(), "spectral normalization in the discriminators"),
        "lambda_cycle": Decl(10.0, number(min=0), "weight of the cycle loss (0: off)"),
        "lambda_identity": Decl(
            0.5, number(min=0), "identity loss weight, relative to lambda_cycle (0: off)"
        ),
        "pool_size": Decl(50, integer(min=0), "fakes in the image pool for D (0: off)"),
        "memory_check": Decl(True, boolean(), "refuse a batch that will not fit the device"),
        "features": Decl(
            "auto",
            one_of(*metrics.NAMES),
            "FID/KID features; auto: Inception-v3 once fetched, else random_conv_v1",
        ),
        "features_path": Decl("", existing_file(), "an Inception weights file ('' = the cache)"),
        "fid_max_images": Decl(
            200,
            custom(_fid_images, "0 (all test images) or an integer >= 2"),
            "test images per domain for FID/KID (Inception is slow on a CPU)",
        ),
        "dtype": Decl(
            "float32",
            one_of(*DTYPES),
            "compute dtype; bfloat16: mixed precision (docs/training.md)",
        ),
    },
)


def check(config) -> None:
    """The schema, cross-field rules and memory check of a CycleGAN config (not the data).

    Raises:
      ConfigError: one line naming the field.
    """
    if "data_category" in config:
        raise ConfigError(
            "config.data_category is no longer a field: give the category in the data specs, "
            "e.g. config.data = 'emoji:twemoji?category=faces' and "
            "config.data_y = 'emoji:openmoji?category=faces'"
        )
    loop.check_config(config, FIELDS)
    try:
        metrics.resolve_features(config.features, config.features_path or None)
    except ConfigError as e:
        raise ConfigError(f"config.features: {e}") from None
    s = config.image_size
    need = {"patch": 16, "patch70": 32, "patch16": 16, "dc": 32}[config.discriminator]
    if s % 16 or s < need:
        raise ConfigError(
            f"config.image_size must be a multiple of 16 and >= {need} for the "
            f"{config.discriminator!r} discriminator, got {s}"
        )
    if config.discriminator == "dc" and s not in (32, 64):
        raise ConfigError(f"config.image_size must be 32 or 64 for discriminator='dc', got {s}")
    if config.memory_check:
        check_memory(config)


# --------------------------------------------------------------------------- memory


def estimate_step_bytes(config) -> int:
    """A generous estimate of the memory one training step needs (activations + state).

    Counts the activations a generator pass keeps for the backward pass (conv, norm and
    activation outputs at each resolution) times the passes per step (2 translations, 2
    cycles, 2 identities), plus the discriminators' (real and fake, twice), plus parameters,
    gradients and Adam moments, times a safety factor of 2 for XLA temporaries.
    """
    s, d, b = config.image_size, config.g_conv_dim, config.batch_size
    half, quarter = (s // 2) ** 2, (s // 4) ** 2
    gen = 3 * (half * d + quarter * 2 * d)  # encoder: conv, norm, relu
    gen += 3 * config.n_blocks * config.block_convs * quarter * 2 * d
    gen += 3 * (half * 2 * d + s * s * d) + 3 * (s * s * d + s * s * 3)  # up-convs
    passes = 2 + (2 if config.lambda_cycle > 0 else 0) + (2 if config.lambda_identity > 0 else 0)
    dd = config.d_conv_dim
    disc = 3 * sum((s >> k) ** 2 * dd * 2 ** (k - 1) for k in range(1, 5))
    acts = b * (gen * passes + disc * 2 * 2 * 2)
    gp = 2 * (d * d * (16 * 2 + 9 * 2 * 2 * 2 * config.n_blocks * config.block_convs) + d * 100)
    dp = 2 * (dd * dd * 16 * (2 + 8 + 32) + dd * 100)
    params = (gp + dp) * 4  # params, grads, two Adam moments
    pool = 2 * config.pool_size * s * s * 3
    return int(2 * 4 * (acts + params + pool))


def check_memory(config) -> None:
    """Refuses a batch whose step would not fit the device (the message suggests one that fits)."""
    avail = available_bytes()
    if avail is None:
        return
    need = estimate_step_bytes(config)
    if need > 0.8 * avail:
        per = need / config.batch_size
        fit = max(int(0.8 * avail / per), 0)
        hint = (
            f"use --config.batch_size={fit} or smaller"
            if fit >= 1
            else "use a smaller image_size or g_conv_dim"
        )
        raise ConfigError(
            f"config.batch_size={config.batch_size} at {config.image_size} px needs about "
            f"{need / 2**30:.1f} GiB, this {jax.devices()[0].platform} has "
            f"{avail / 2**30:.1f} GiB available; {hint} (--config.memory_check=False skips "
            "this check)"
        )


# --------------------------------------------------------------------------- data


def _split(spec: str, split: str, dom: str) -> str:
    """TFDS CycleGAN datasets name their splits trainA/testA (X) and trainB/testB (Y)."""
    if spec.startswith("tfds:"):
        return f"{split}{'A' if dom == 'x' else 'B'}"
    return split


def load_sources(config) -> dict:
    """``{(domain, split): Source}`` for domains "x"/"y" and splits "train"/"test"."""
    from imsyn.data import get_source

    out = {}
    for dom, field in (("x", "data"), ("y", "data_y")):
        spec = config[field]
        for split in ("train", "test"):
            try:
                out[dom, split] = get_source(
                    spec, image_size=config.image_size, split=_split(spec, split, dom)
                )
            except ConfigError as e:
                raise ConfigError(f"config.{field}: {e}") from None
    return out


def check_domains(sources: dict, *, batch_size: int) -> None:
    """Checks the ``{(domain, split): Source}`` of both domains before training.

    Raises:
      ConfigError: a domain's training split is smaller than one batch, its test split
        has fewer than 2 images, or the two domains deliver images of different shapes.
    """
    names = {"x": "config.data", "y": "config.data_y"}
    shapes = {}
    for (dom, split), src in sorted(sources.items()):
        n = len(src)
        if n == 0:
            raise ConfigError(f"{names[dom]} ({src.name}): the {split} split is empty")
        if split == "test" and n < 2:
            raise ConfigError(
                f"{names[dom]} ({src.name}): the test split has 1 image; FID/KID need at least 2"
            )
        if split == "train" and n < batch_size:  # the evaluation translates any number
            raise ConfigError(
                f"{names[dom]} ({src.name}): the {split} split has {n} images, fewer than "
                f"one batch (batch_size={batch_size})"
            )
        shapes[dom, split] = tuple(np.shape(src[0]))
    if len(set(shapes.values())) > 1:
        detail = ", ".join(f"{names[d]} {s}: {shape}" for (d, s), shape in sorted(shapes.items()))
        raise ConfigError(f"the two domains deliver images of different shapes ({detail})")


def emoji_pairing(config) -> dict | None:
    """The :func:`imsyn.data.emoji_pairs` options when X and Y pair up by code point.

    That is when one domain is ``emoji:twemoji`` and the other ``emoji:openmoji``, with the
    same options (category, limit, cache folder): their test splits hold the same code points.

    Returns:
      The shared options (``{}`` when none, e.g. ``{"category": "faces"}``), or None.
    """
    from imsyn.data.sources import parse_spec

    (bx, ox), (by, oy) = parse_spec(config.data), parse_spec(config.data_y)
    if {bx, by} != {"emoji:twemoji", "emoji:openmoji"} or ox != oy:
        return None
    return ox


class UnpairedData:
    """Two domain loaders as one iterator of ``{"x": [N,H,W,3], "y": [N,H,W,3]}`` in [-1, 1]."""

    def __init__(self, loaders: dict):
        self.loaders = loaders

    def __iter__(self):
        return self

    def __next__(self) -> dict:
        return {dom: next(it)["image"] for dom, it in self.loaders.items()}

    def get_state(self) -> dict:
        return {dom: it.get_state() for dom, it in self.loaders.items()}

    def set_state(self, state: dict) -> None:
        for dom, it in self.loaders.items():
            it.set_state(state[dom])

    def close(self) -> None:
        for it in self.loaders.values():
            if hasattr(it, "close"):
                it.close()


# --------------------------------------------------------------------------- models and step


def arch(config) -> dict:
    """The architecture fields a checkpoint records (a run of another arch is refused).

    ``state_format`` marks the ``nnx.State`` layout of :func:`imsyn.gan.init_cyclegan_state`:
    checkpoints of the earlier layout (nested ``{"params", "rest"}`` dicts) are refused.
    ``config.dtype`` is not recorded: parameters, optimizer state and the image pool are
    float32 in either dtype, so a run may be resumed in the other one (a run's dtype is in
    its ``config.json`` and in ``eval/metrics.json``).
    """
    return {
        "model": "cyclegan",
        "state_format": "nnx.State",
        "image_size": config.image_size,
        "g_conv_dim": config.g_conv_dim,
        "d_conv_dim": config.d_conv_dim,
        "n_blocks": config.n_blocks,
        "block_convs": config.block_convs,
        "norm": config.norm,
        "padding_mode": config.padding_mode,
        "discriminator": config.discriminator,
        "spectral_norm": config.spectral_norm,
        "pool_size": config.pool_size,
        # recorded when not the course's, so runs from before the field still match
        **({"g_skip": config.g_skip} if config.g_skip != "none" else {}),
        **({"g_align": config.g_align} if config.g_align != "none" else {}),
        **({"ema": True} if config.ema_decay else {}),
    }


def build_models(config, key) -> gan.CycleGAN:
    """The four networks of a config (:func:`imsyn.gan.make_cyclegan`)."""
    return gan.make_cyclegan(
        image_size=config.image_size,
        g_conv_dim=config.g_conv_dim,
        d_conv_dim=config.d_conv_dim,
        n_blocks=config.n_blocks,
        block_convs=config.block_convs,
        norm=config.norm,
        padding_mode=config.padding_mode,
        g_skip=config.g_skip,
        g_align=config.g_align,
        discriminator=config.discriminator,
        spectral_norm=config.spectral_norm,
        key=key,
    )


@functools.lru_cache(maxsize=8)
def _graphdefs(arch_json: str) -> gan.CycleGAN:
    cfg = json.loads(arch_json)
    for k in ("model", "state_format", "pool_size", "ema"):
        cfg.pop(k, None)
    cfg.setdefault("g_skip", "none")
    nets = nnx.eval_shape(lambda: gan.make_cyclegan(**cfg, key=jax.random.key(0)))
    return gan.CycleGAN(*(nnx.graphdef(m) for m in nets))


def graphdefs(config) -> gan.CycleGAN:
    """The graphdefs of the four networks (built abstractly, no parameters allocated)."""
    return _graphdefs(json.dumps(arch(config), sort_keys=True))


def optimizer(config) -> optax.GradientTransformation:
    """Adam(lr schedule, beta1, beta2), the same for the generators and discriminators."""
    return optax.adam(loop.lr_schedule(config), b1=config.beta1, b2=config.beta2)


def make_step(config) -> gan.Step:
    """The pure step ``(state, batch, key) -> (state, metrics)`` of a config."""
    opt = optimizer(config)
    return gan.make_cyclegan_step(
        graphdefs(config),
        opt,
        opt,
        loss=config.loss,
        lambda_cycle=float(config.lambda_cycle),
        lambda_identity=float(config.lambda_identity),
        diffaug=config.diffaug,
        dtype=config.get("dtype", "float32"),
        ema_decay=float(config.ema_decay),
    )


def init_state(config, key) -> dict:
    """The initial state (see :func:`imsyn.gan.init_cyclegan_state`)."""
    opt = optimizer(config)
    return gan.init_cyclegan_state(
        build_models(config, key),
        opt,
        opt,
        pool_size=config.pool_size,
        image_shape=(config.image_size, config.image_size, 3),
        ema=bool(config.ema_decay),
    )


def set_zoom(state: dict, scale: float) -> dict:
    """``{"g_xy", "g_yx"}`` of ``state`` with G zooming its input by ``scale`` and F by
    ``1 / scale`` (so the cycle F(G(x)) undoes the zoom)."""

    def with_zoom(gen, value):
        out = jax.tree.map(lambda a: a, gen)  # a new tree, the same structure
        out["zoom"] = out["zoom"].replace(jnp.asarray(value, jnp.float32))
        return out

    t = float(np.log(scale))
    return {"g_xy": with_zoom(state["g_xy"], t), "g_yx": with_zoom(state["g_yx"], -t)}


# --------------------------------------------------------------------------- the task


class CycleGANTask:
    """The CycleGAN :class:`imsyn.training.loop.Task` of ``config``.

    ``train_step`` and ``samples`` belong to the config given here (the step is built once,
    on first use, and is a pure function of its arguments); the other methods take theirs as
    an argument, as the loop passes it.
    """

    def __init__(self, config=None):
        self.config = config
        self._sources: dict = {}
        self._sources_key = None

    def _bound(self):
        if self.config is None:
            raise ConfigError("CycleGANTask() has no config: create it as CycleGANTask(config)")
        return self.config

    def validate(self, config) -> None:
        check(config)
        # bad data specs, empty or too small domains fail here, before anything is written
        check_domains(self.sources(config), batch_size=config.batch_size)

    def sources(self, config) -> dict:
        """Both domains' train and test sources, built once per (specs, image size)."""
        key = (config.data, config.data_y, config.image_size)
        if self._sources_key != key:
            self._sources = load_sources(config)
            self._sources_key = key
        return self._sources

    def arch(self, config) -> dict:
        return arch(config)

    def init_state(self, config, key) -> dict:
        state = init_state(config, key)
        if config.g_align == "zoom":  # the domains' measured framing
            sources = self.sources(config)
            try:
                fx, fy = (gan.framing(_chunks(sources[d, "train"])) for d in ("x", "y"))
            except ValueError:  # no background anywhere: nothing to measure, start at 1
                fx = fy = 1.0
            state = {**state, **set_zoom(state, fy / fx)}
            print(
                f"zoom: G scales its input by {fy / fx:.3f} (framing of Y / X: {fy:.3f} / {fx:.3f})"
            )
        return state

    def make_data(self, config, *, seed: int) -> UnpairedData:
        from imsyn.data import make_loader
        from imsyn.data.sharding import local_batch_size

        sources = self.sources(config)
        loaders = {
            dom: make_loader(
                sources[dom, "train"],
                batch_size=local_batch_size(config.batch_size),
                seed=seed + i,
                augment=config.augment,
                image_size=config.image_size,
                worker_count=config.data_workers,
                shard_index=jax.process_index(),
                shard_count=jax.process_count(),
            )
            for i, dom in enumerate(("x", "y"))
        }
        return UnpairedData(loaders)

    @functools.cached_property
    def train_step(self) -> gan.Step:
        """One D update then one G update (:func:`imsyn.gan.make_cyclegan_step`); pure."""
        return make_step(self._bound())

    def translate(self, state, images_uint8, *, direction: str, batch: int = 64, config=None):
        """uint8 [N,H,W,3] -> (translated, reconstructed) float32 [N,H,W,3] in [0, 1].

        ``direction`` "x2y" applies G then F (the reconstruction), "y2x" F then G.
        """
        defs = graphdefs(config if config is not None else self._bound())
        there, back = ("g_xy", "g_yx") if direction == "x2y" else ("g_yx", "g_xy")
        gens = gan.cyclegan_generators(state)
        outs, recs = [], []
        for i in range(0, len(images_uint8), batch):
            x = jnp.asarray(to_network(to_float(images_uint8[i : i + batch])))
            t = gan.translate(getattr(defs, there), gens[there], x)
            r = gan.translate(getattr(defs, back), gens[back], t)
            outs.append(np.asarray(from_network(t)))
            recs.append(np.asarray(from_network(r)))
        return np.concatenate(outs), np.concatenate(recs)

    def samples(self, state) -> dict[str, np.ndarray]:
        config = self._bound()
        sources = self.sources(config)
        out = {}
        for dom, direction in (("x", "x2y"), ("y", "y2x")):
            src = sources[dom, "test"]
            imgs = np.stack([src[i] for i in range(min(_SAMPLES, len(src)))])
            t, r = self.translate(state, imgs, direction=direction, config=config)
            out[direction] = _triptych(to_float(imgs), t, r, None)
        return out

    def evaluate(self, state, config, workdir) -> dict:
        return evaluate_translations(self, state, config, Path(workdir) / "eval")

    def report_sections(self, config, workdir) -> list[tuple[str, str]]:
        from imsyn.report import _read_json

        m = _read_json(Path(workdir) / "eval" / "metrics.json") or {}
        if m.get("paired"):
            return [("Paired translation metrics (held-out test split)", metrics_html(m))]
        if "features" in m:
            return [("Translation metrics (held-out test split)", metrics_html(m))]
        return []


# --------------------------------------------------------------------------- evaluation


def evaluate_translations(task: CycleGANTask, state, config, eval_dir: Path) -> dict:
    """The content of ``eval/metrics.json`` (see the module docstring); writes the grids."""
    from imsyn.data import emoji_pairs
    from imsyn.models import lpips as lpips_lib

    sources = task.sources(config)
    pairing = emoji_pairing(config)
    paired = pairing is not None
    if paired:
        pairs = emoji_pairs(image_size=config.image_size, split="test", **pairing)
        twemoji_x = config.data.partition("?")[0] == "emoji:twemoji"
        x_u8, y_u8 = (pairs.x, pairs.y) if twemoji_x else (pairs.y, pairs.x)
    else:
        x_u8, y_u8 = _all(sources["x", "test"]), _all(sources["y", "test"])
    stats = {dom: gan.channel_stats(_chunks(sources[dom, "train"])) for dom in ("x", "y")}
    lpips = lpips_lib.LPIPS.load() if paired else None
    extractor = metrics.get_extractor(config.features, config.features_path or None)
    real = {"x": to_float(x_u8), "y": to_float(y_u8)}
    # FID/KID: a fixed random subset of each domain's test images (the same indices for
    # the translations and baselines of that domain), against the reference of the target
    # domain: its paired test images, or, unpaired, every image of the domain (training
    # and held-out; small folders give too few test images for a stable reference)
    subset = {
        dom: _subset(len(real[dom]), config.fid_max_images, seed=config.seed) for dom in ("x", "y")
    }
    real_feats = {dom: _features(extractor, real[dom][subset[dom]]) for dom in ("x", "y")}
    ref_feats = (
        real_feats
        if paired
        else {
            dom: _domain_features(
                extractor, sources, dom, limit=config.fid_max_images, seed=config.seed
            )
            for dom in ("x", "y")
        }
    )
    result: dict[str, Any] = {}
    cyc = {}
    for dom, other, direction in (("x", "y", "x2y"), ("y", "x", "y2x")):
        src_u8 = x_u8 if dom == "x" else y_u8
        src = real[dom]
        pred, rec = task.translate(state, src_u8, direction=direction, config=config)
        colour = gan.color_transfer(src, stats[dom], stats[other])
        cyc[dom] = float(np.mean(np.abs(rec - src)))
        entry: dict[str, Any] = {"n": int(len(src))}
        tgt = real[other] if paired else None
        ident: dict[str, Any] = {}
        col: dict[str, Any] = {}
        if paired:
            entry.update(gan.paired_metrics(pred, tgt, lpips=lpips))
            ident.update(gan.paired_metrics(src, tgt, lpips=lpips))
            col.update(gan.paired_metrics(colour, tgt, lpips=lpips))
            if lpips is None:
                entry["lpips"] = ident["lpips"] = col["lpips"] = None
        ref = ref_feats[other]
        sub = subset[dom]
        entry.update(_distances(_features(extractor, pred[sub]), ref))
        ident.update(_distances(real_feats[dom], ref))
        col.update(_distances(_features(extractor, colour[sub]), ref))
        entry["baseline_identity"] = ident
        entry["baseline_color"] = col
        if paired:
            entry["beats_baselines"] = bool(
                entry["l1"] < entry["baseline_identity"]["l1"]
                and entry["l1"] < entry["baseline_color"]["l1"]
            )
        entry["cycle_l1"] = cyc[dom]
        result[direction] = entry
        k = min(16, len(src))
        grid = _triptych(src[:k], pred[:k], rec[:k], None if tgt is None else tgt[:k])
        write_image(eval_dir / f"{direction}.png", grid)
    result["cycle_l1"] = float(np.mean(list(cyc.values())))
    for direction in ("x2y", "y2x"):  # flat copies for tables (sweep comparison pages)
        for k in ("l1", "psnr", "ssim", "lpips", "fid", "kid"):
            if k in result[direction]:
                result[f"{direction}_{k}"] = result[direction][k]
    result["paired"] = paired
    # a folder without a test split is evaluated on its training images: say so
    reused = [d for d in ("x", "y") if getattr(sources[d, "test"], "test_is_train", False)]
    if reused:
        result["test_is_train"] = reused
        result["test_note"] = (
            f"domain(s) {', '.join(reused)} have no test split: their 'test' images are the "
            "training images (give a folder with train/ and test/, or ?test_fraction=)"
        )
    category = (pairing or {}).get("category") or ""
    result["data"] = {"x": config.data, "y": config.data_y, "split": "test", "category": category}
    result["metric_range"] = (
        "images in [0, 1]; L1 mean absolute error, PSNR dB, SSIM; LPIPS v0.1 (VGG-16) on "
        "[-1, 1]; FID/KID of each method's outputs against the real target-domain test images"
    )
    if paired:
        result["lpips"] = (
            {"net": lpips.name, "weights": lpips.path}
            if lpips is not None
            else lpips_lib.UNAVAILABLE
        )
    result["features"] = extractor.name
    result["dtype"] = config.get("dtype", "float32")  # of training; translations are float32
    result["features_resize"] = extractor.resize
    note = getattr(extractor, "note", None)
    if note:
        result["features_note"] = note
    counts = {dom: int(len(subset[dom])) for dom in ("x", "y")}
    refs = {dom: int(len(ref_feats[dom])) for dom in ("x", "y")}
    result["fid_images"] = {
        **counts,
        "of": {dom: len(real[dom]) for dom in ("x", "y")},
        "reference": refs,
    }
    reference = (
        "the real target-domain images of the subset"
        if paired
        else f"{refs['y']} real Y / {refs['x']} real X images (the whole domain: training and "
        "held-out images)"
    )
    result["fid_note"] = (
        f"FID/KID on a fixed random subset of {counts['x']} of {len(real['x'])} X and "
        f"{counts['y']} of {len(real['y'])} Y test images (config.fid_max_images="
        f"{config.fid_max_images}; 0 = all): each method's outputs for the subset (identity: "
        f"the inputs themselves) against {reference}. FID from a few hundred images is "
        "biased upwards: compare the rows of this table, not published (50k-image) FIDs."
    )
    return result


def _subset(n: int, limit: int, *, seed: int) -> np.ndarray:
    """Sorted indices of a fixed random subset of ``min(n, limit)`` of ``range(n)`` (0: all)."""
    if limit == 0 or n <= limit:
        return np.arange(n)
    return np.sort(np.random.default_rng(seed).choice(n, limit, replace=False))


def _domain_features(extractor, sources: dict, dom: str, *, limit: int, seed: int) -> np.ndarray:
    """Features of a fixed random subset of at most ``limit`` (0: all) of every image of
    domain ``dom``: its training images and, when held out, its test images."""
    parts = [sources[dom, "train"]]
    if not getattr(sources[dom, "test"], "test_is_train", False):
        parts.append(sources[dom, "test"])
    pick = _subset(sum(len(p) for p in parts), limit, seed=seed)  # over the parts in order
    feats, start = [], 0
    for p in parts:
        own = pick[(pick >= start) & (pick < start + len(p))] - start
        if len(own):
            feats.append(metrics.source_features(extractor, p, own))
        start += len(p)
    return np.concatenate(feats)


def _features(extractor, images01: np.ndarray) -> np.ndarray:
    """Features ``[N, D]`` of images in [0, 1] (the extractors take [-1, 1])."""
    return np.asarray(extractor(to_network(np.asarray(images01, np.float32))))


def _distances(feats: np.ndarray, ref: np.ndarray) -> dict:
    return {"fid": metrics.fid(feats, ref), "kid": metrics.kid(feats, ref)}


def _all(src) -> np.ndarray:
    return np.stack([src[i] for i in range(len(src))])


def _chunks(src, *, size: int = 256, limit: int = 4096):
    n = min(len(src), limit)
    for i in range(0, n, size):
        yield to_float(np.stack([src[j] for j in range(i, min(i + size, n))]))


def _triptych(src, pred, rec, target) -> np.ndarray:
    """Grid with one row per image: input | translation | reconstruction [| ground truth]."""
    cols = [src, pred, rec] + ([target] if target is not None else [])
    tiles = np.stack(cols, axis=1).reshape(-1, *src.shape[1:])
    scale = max(1, 96 // src.shape[1])  # small emoji: enlarge (nearest) so they can be seen
    if scale > 1:
        tiles = tiles.repeat(scale, axis=1).repeat(scale, axis=2)
    return make_grid(tiles, ncol=len(cols))


_COLUMNS = (
    ("l1", "L1 ↓", "{:.4f}"),
    ("psnr", "PSNR ↑", "{:.2f}"),
    ("ssim", "SSIM ↑", "{:.4f}"),
    ("lpips", "LPIPS ↓", "{:.4f}"),
    ("fid", "FID ↓", "{:.2f}"),
    ("kid", "KID ↓", "{:.4f}"),
)


def metrics_html(m: dict) -> str:
    """The paired-metrics table of ``eval/metrics.json`` as HTML."""
    rows = []
    cols = [c for c in _COLUMNS if any(c[0] in (m.get(d) or {}) for d in ("x2y", "y2x"))]
    for direction, label in (("x2y", "X → Y"), ("y2x", "Y → X")):
        e = m.get(direction) or {}
        for name, vals in (
            ("CycleGAN", e),
            ("identity", e.get("baseline_identity", {})),
            ("colour transfer", e.get("baseline_color", {})),
        ):
            cells = "".join(
                f"<td>{fmt.format(vals[k])}</td>"
                if isinstance(vals.get(k), int | float)
                else "<td>–</td>"
                for k, _, fmt in cols
            )
            rows.append(f"<tr><td>{label}</td><td>{name}</td>{cells}</tr>")
    head = "".join(f"<th>{h}</th>" for _, h, _ in cols)
    head = f"<tr><th>direction</th><th>method</th>{head}</tr>"
    cyc = f"<p>cycle-reconstruction L1: {m.get('cycle_l1', float('nan')):.4f}</p>"
    notes = []
    lp = m.get("lpips")
    if isinstance(lp, dict):
        notes.append(f"LPIPS: {lp.get('net')} ({lp.get('weights')})")
    elif lp:
        notes.append(f"LPIPS: {lp}")
    if "features" in m:
        notes.append(f"FID/KID features: {m['features']} ({m.get('features_resize', '')})")
    for k in ("features_note", "fid_note"):
        if m.get(k):
            notes.append(m[k])
    notes.append(
        "Columns of eval/x2y.png / eval/y2x.png: input, translation, reconstruction, "
        "ground-truth counterpart."
    )
    text = "".join(f"<p>{html.escape(n)}</p>" for n in notes)
    return f"<table>{head}{''.join(rows)}</table>{cyc}{text}"


# --------------------------------------------------------------------------- entry points


def validate(config) -> None:
    """Checks a CycleGAN config (fields, values, memory, both data sources) without training."""
    CycleGANTask(config).validate(config)


def train(config, workdir):
    """train.py entry point: trains (or resumes) a CycleGAN run, then evaluates it."""
    return loop.fit(config, workdir, CycleGANTask(config))


def evaluate(config, workdir):
    """eval.py entry point: restores the latest checkpoint and (re)writes eval/ and report.html."""
    return loop.evaluate_run(config, workdir, CycleGANTask(config))

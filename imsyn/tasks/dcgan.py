"""DCGAN experiment (``config.task == "dcgan"``): config -> run -> outputs.

``train(config, workdir)`` / ``evaluate(config, workdir)`` are what ``train.py`` and
``eval.py`` call (via :mod:`imsyn.experiments`); :class:`DCGANTask` is the
:class:`imsyn.training.loop.Task` they hand to the generic loop. The algorithm (models,
the pure step, sampling, slerp) is :mod:`imsyn.gan`.

Config: :data:`FIELDS`, every field's default, rule and meaning (the common training fields
of :data:`imsyn.training.loop.COMMON_FIELDS` and the DCGAN's own), checked by
:func:`validate` before any compute (unknown fields refused). Data-source options travel
in ``config.data`` (``emoji:twemoji?category=faces``).

``config.dtype = "bfloat16"`` trains in mixed precision (bfloat16 compute, float32
parameters, optimizer state and losses; :func:`imsyn.gan.make_dcgan_step`); samples and
evaluation run the float32 generator.

Evaluation writes ``eval/samples.png`` (fixed noise), ``eval/interpolation.png``
(spherical interpolation between random latents, one row per pair) and returns KID/FID
of ``eval_samples`` generated images against the training images (all of them, as the
DiffAugment paper's low-shot protocol; ``eval_real`` caps them), on the features
named by ``config.features`` (``"auto"``: the real TF-FID Inception-v3 when
``inception_fid`` is cached, else the offline ``random_conv_v1``; the resolved name is
written next to the numbers, with a note for the fallback).
"""

from __future__ import annotations

import functools
import json
from pathlib import Path

import jax
import numpy as np
import optax
from flax import nnx

from imsyn import gan, losses, metrics
from imsyn.errors import ConfigError
from imsyn.image import make_grid, to_network, write_image
from imsyn.models.dcgan import IMAGE_SIZES, Z_DIM
from imsyn.models.layers import DTYPES, NORMS
from imsyn.training import loop
from imsyn.validate import Decl, boolean, existing_file, integer, one_of

# Latent streams of the outputs: fold_in(key(seed), stream).
SAMPLES_STREAM, EVAL_STREAM, INTERPOLATION_STREAM = 1_000_003, 2_000_003, 3_000_017


#: every field of a DCGAN config, declared once: default, rule, meaning (``configs/dcgan.py``
#: builds on these defaults; its presets change some)
FIELDS = loop.training_fields(
    defaults={
        "task": "dcgan",
        "name": "dcgan",
        "data": "emoji:twemoji",
        "image_size": 64,
        "num_steps": 20000,
        "batch_size": 16,
        "log_every": 50,
        "checkpoint_every": 1000,
        "keep_checkpoints": 3,
        "sample_every": lambda c: (c.get_ref("num_steps") + 39) // 40,  # follows num_steps
    },
    rules={"image_size": one_of(*IMAGE_SIZES), "loss": one_of(*losses.GAN_LOSSES)},
    fields={
        "generator": Decl(
            "dcgan_generator",
            one_of(*gan.GENERATORS),
            "style_generator: mapping net and modulated convs (z, w, w+ for configs/editing.py)",
        ),
        "conv_dim": Decl(32, integer(min=1), "width of both networks"),
        "norm": Decl("instance", one_of(*NORMS), "normalization of both networks"),
        "spectral_norm": Decl(False, boolean(), "spectral normalization in the discriminator"),
        "dtype": Decl(
            "float32",
            one_of(*DTYPES),
            "compute dtype; bfloat16: mixed precision (docs/training.md)",
        ),
        "num_sample_images": Decl(64, integer(min=2), "images in each sample grid"),
        "eval_samples": Decl(500, integer(min=2), "generated images for KID/FID"),
        "eval_real": Decl(
            0,
            integer(min=0),
            "training images KID/FID compare against (0 = all, the DiffAugment paper's protocol)",
        ),
        "features": Decl(
            "auto",
            one_of(*metrics.NAMES),
            "FID/KID features; auto: Inception-v3 once fetched, else random_conv_v1",
        ),
        "features_path": Decl("", existing_file(), "an Inception weights file ('' = the cache)"),
    },
)


def check(config) -> None:
    """The schema and cross-field rules of a DCGAN config (not the data source).

    Raises:
      ConfigError: one line naming the field.
    """
    if "data_category" in config:
        raise ConfigError(
            "config.data_category is no longer a field: give the category in the data spec, "
            "e.g. config.data = 'emoji:twemoji?category=faces'"
        )
    loop.check_config(config, FIELDS)
    try:
        metrics.resolve_features(config.features, config.features_path or None)
    except ConfigError as e:
        raise ConfigError(f"config.features: {e}") from None


def load_source(config):
    """The training images of ``config.data`` (an :mod:`imsyn.data` source)."""
    from imsyn.data import get_source

    try:
        return get_source(config.data, image_size=config.image_size)
    except ConfigError as e:
        raise ConfigError(f"config.data: {e}") from None


def arch(config) -> dict:
    """The architecture fields a checkpoint records (a run of another arch is refused).

    ``config.dtype`` is not one of them: the parameters and optimizer state are float32 in
    either dtype, so a run may be resumed in the other one (the dtype of a run is in its
    ``config.json``, and :meth:`DCGANTask.evaluate` records it in ``eval/metrics.json``).
    """
    out = {
        "model": "dcgan",
        "image_size": config.image_size,
        "conv_dim": config.conv_dim,
        "norm": config.norm,
        "spectral_norm": config.spectral_norm,
        "z_dim": Z_DIM,
    }
    generator = config.get("generator", "dcgan_generator")  # absent from early runs
    if generator != "dcgan_generator":
        out["generator"] = generator
    return out


def build_models(config, key) -> tuple[nnx.Module, nnx.Module]:
    """G and D of a config (:func:`imsyn.gan.make_dcgan`)."""
    return gan.make_dcgan(
        image_size=config.image_size,
        conv_dim=config.conv_dim,
        norm=config.norm,
        spectral_norm=config.spectral_norm,
        generator=config.get("generator", "dcgan_generator"),
        key=key,
    )


@functools.lru_cache(maxsize=8)
def _graphdefs(arch_json: str) -> tuple[nnx.GraphDef, nnx.GraphDef]:
    cfg = json.loads(arch_json)
    cfg.setdefault("generator", "dcgan_generator")
    g, d = nnx.eval_shape(
        lambda: gan.make_dcgan(
            image_size=cfg["image_size"],
            conv_dim=cfg["conv_dim"],
            norm=cfg["norm"],
            spectral_norm=cfg["spectral_norm"],
            generator=cfg["generator"],
            key=jax.random.key(0),
        )
    )
    return nnx.graphdef(g), nnx.graphdef(d)


def graphdefs(config) -> tuple[nnx.GraphDef, nnx.GraphDef]:
    """The graphdefs of G and D (built abstractly, no parameters allocated)."""
    return _graphdefs(json.dumps(arch(config), sort_keys=True))


def optimizer(config) -> optax.GradientTransformation:
    """Adam(lr schedule, beta1, beta2), the same for G and D."""
    return optax.adam(loop.lr_schedule(config), b1=config.beta1, b2=config.beta2)


def make_step(config) -> gan.Step:
    """The pure step ``(state, batch, key) -> (state, metrics)`` of a config."""
    g_def, d_def = graphdefs(config)
    opt = optimizer(config)
    return gan.make_dcgan_step(
        g_def,
        d_def,
        opt,
        opt,
        loss=config.loss,
        diffaug=config.diffaug,
        dtype=config.get("dtype", "float32"),
    )


def init_state(config, key) -> dict:
    """``{"g", "d", "g_opt", "d_opt"}`` (see :func:`imsyn.gan.init_dcgan_state`)."""
    g, d = build_models(config, key)
    opt = optimizer(config)
    return gan.init_dcgan_state(g, d, opt, opt)


def _noise(seed: int, stream: int, n: int) -> np.ndarray:
    key = jax.random.fold_in(jax.random.key(seed), stream)
    return np.asarray(jax.random.normal(key, (n, Z_DIM)))


class DCGANTask:
    """The DCGAN :class:`imsyn.training.loop.Task` of ``config``.

    ``train_step`` and ``samples`` belong to the config given here (the step is built once,
    on first use, and is a pure function of its arguments); ``validate``, ``init_state``,
    ``arch`` and ``evaluate`` take theirs as an argument, as the loop passes it. Without a
    config only those four are available (e.g. to restore a run's generator).
    """

    def __init__(self, config=None):
        self.config = config
        self._source = None
        self._source_key = None

    def _bound(self):
        if self.config is None:
            raise ConfigError("DCGANTask() has no config: create it as DCGANTask(config)")
        return self.config

    def validate(self, config) -> None:
        check(config)
        self.source(config)  # a bad data spec fails here, before anything is written

    def source(self, config):
        """The training images, built once per (data spec, image size)."""
        key = (config.data, config.image_size)
        if self._source_key != key:
            self._source = load_source(config)
            self._source_key = key
        return self._source

    def arch(self, config) -> dict:
        return arch(config)

    def init_state(self, config, key) -> dict:
        return init_state(config, key)

    def make_data(self, config, *, seed: int):
        from imsyn.data import make_loader
        from imsyn.data.sharding import local_batch_size

        return make_loader(
            self.source(config),
            batch_size=local_batch_size(config.batch_size),
            seed=seed,
            augment=config.augment,
            image_size=config.image_size,
            worker_count=config.data_workers,
            shard_index=jax.process_index(),
            shard_count=jax.process_count(),
        )

    @functools.cached_property
    def train_step(self) -> gan.Step:
        """One D update then one G update (:func:`imsyn.gan.make_dcgan_step`); pure."""
        return make_step(self._bound())

    def generate(self, state, z, config=None) -> np.ndarray:
        """Images float32[N, S, S, 3] in [0, 1] from latents z[N, 100] (G in eval mode)."""
        g_def, _ = graphdefs(config if config is not None else self._bound())
        return gan.generate(g_def, state["g"], z)

    def samples(self, state) -> dict[str, np.ndarray]:
        config = self._bound()
        z = _noise(config.seed, SAMPLES_STREAM, config.num_sample_images)
        return {"samples": make_grid(self.generate(state, z))}

    def evaluate(self, state, config, workdir) -> dict:
        workdir = Path(workdir)
        n_grid = config.num_sample_images
        grid = self.generate(state, _noise(config.seed, SAMPLES_STREAM, n_grid), config)
        write_image(workdir / "eval" / "samples.png", make_grid(grid))
        rows, cols = 4, 10
        key = jax.random.fold_in(jax.random.key(config.seed), INTERPOLATION_STREAM)
        z = gan.interpolation_latents(key, rows=rows, cols=cols)
        write_image(
            workdir / "eval" / "interpolation.png",
            make_grid(self.generate(state, z, config), ncol=cols),
        )
        extractor = metrics.get_extractor(config.features, config.features_path or None)
        source = self.source(config)
        n_real = len(source) if config.eval_real == 0 else min(config.eval_real, len(source))
        picks = np.sort(np.random.default_rng(config.seed).choice(len(source), n_real, False))
        n_fake = config.eval_samples
        f_real = metrics.source_features(extractor, source, picks)
        f_fake = extractor(
            to_network(self.generate(state, _noise(config.seed, EVAL_STREAM, n_fake), config))
        )
        out = {
            "kid": metrics.kid(f_real, f_fake),
            "fid": metrics.fid(f_real, f_fake),
            "features": extractor.name,
            "features_resize": extractor.resize,
            "num_real": int(n_real),
            "num_fake": int(n_fake),
            "protocol": (
                f"{n_fake} generated images against {n_real} of the {len(source)} training "
                f"images at {config.image_size} px, both resized for the features "
                f"({extractor.resize})"
            ),
            "dtype": config.get("dtype", "float32"),  # of training; samples are float32
        }
        note = getattr(extractor, "note", None)
        if note:
            out["features_note"] = note
        return out


def validate(config) -> None:
    """Checks a DCGAN config (fields, values, data source) without training."""
    check(config)
    load_source(config)


def train(config, workdir):
    """train.py entry point: trains (or resumes) a DCGAN run, then evaluates it."""
    return loop.fit(config, workdir, DCGANTask(config))


def evaluate(config, workdir):
    """eval.py entry point: restores the latest checkpoint and (re)writes eval/ and report.html."""
    return loop.evaluate_run(config, workdir, DCGANTask(config))

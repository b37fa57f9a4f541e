"""DCGAN as a task of the generic training loop (``config.task == "dcgan"``).

``train(config, workdir)`` / ``evaluate(config, workdir)`` are what ``train.py``
and ``eval.py`` call (via :mod:`imsyn.experiments`). One training step is a
discriminator update followed by a generator update (fresh noise for each),
both with Adam; DiffAugment (``config.diffaug``) is applied to real and fake
images alike before D, in both updates, as Zhao et al. prescribe.

State (a pytree, checkpointed as is)::

    {"g": nnx.State, "d": nnx.State, "g_opt": optax state, "d_opt": optax state}

Evaluation writes ``eval/samples.png`` (fixed noise), ``eval/interpolation.png``
(spherical interpolation between random latents, one row per pair) and returns
KID/FID of ``eval_samples`` generated images against as many training images,
on the features named by ``config.features`` (``"auto"``: the real TF-FID
Inception-v3 when ``inception_fid`` is cached, else the offline ``random_conv_v1``;
the resolved name is written next to the numbers, with a note for the fallback).
"""

from __future__ import annotations

import math
import os

import jax
import jax.numpy as jnp
import numpy as np
import optax
from flax import nnx

from imsyn import losses, metrics, models
from imsyn.augment import diff_augment, parse_policy
from imsyn.errors import ConfigError
from imsyn.image import from_network, make_grid, to_float, to_network, write_image
from imsyn.models.dcgan import IMAGE_SIZES, Z_DIM
from imsyn.models.layers import NORMS
from imsyn.training import loop

GENERATORS = ("dcgan_generator", "style_generator")
DCGAN_FIELDS = (
    "generator",
    "data_category",
    "conv_dim",
    "norm",
    "spectral_norm",
    "eval_samples",
    "features",
    "features_path",
    "num_sample_images",
)


class DCGANTask:
    """The DCGAN :class:`imsyn.training.loop.Task`."""

    def __init__(self):
        self._source = None
        self._source_key = None
        self._defs = None
        self._cfg = None

    # ----------------------------------------------------------------- config
    def validate(self, config) -> None:
        loop.check_fields(config, loop.COMMON_FIELDS + DCGAN_FIELDS)
        loop.check_common(config)
        if config.image_size not in IMAGE_SIZES:
            raise ConfigError(
                f"config.image_size must be one of {IMAGE_SIZES} for DCGAN, got {config.image_size}"
            )
        if config.loss not in losses.GAN_LOSSES:
            raise ConfigError(
                f"config.loss must be one of {losses.GAN_LOSSES}, got {config.loss!r}"
            )
        if config.get("generator", "dcgan_generator") not in GENERATORS:
            raise ConfigError(
                f"config.generator must be one of {GENERATORS}, got {config.generator!r}"
            )
        if config.norm not in NORMS:
            raise ConfigError(f"config.norm must be one of {NORMS}, got {config.norm!r}")
        if (
            not isinstance(config.conv_dim, int)
            or isinstance(config.conv_dim, bool)
            or (config.conv_dim < 1)
        ):
            raise ConfigError(f"config.conv_dim must be an integer >= 1, got {config.conv_dim!r}")
        if not isinstance(config.spectral_norm, bool):
            raise ConfigError(
                f"config.spectral_norm must be True or False, got {config.spectral_norm!r}"
            )
        try:
            parse_policy(config.diffaug)
        except ConfigError as e:
            raise ConfigError(f"config.diffaug: {e}") from None
        for f in ("eval_samples", "num_sample_images"):
            v = config[f]
            if not isinstance(v, int) or isinstance(v, bool) or v < 2:
                raise ConfigError(f"config.{f} must be an integer >= 2, got {v!r}")
        if config.features_path and not os.path.isfile(config.features_path):
            raise ConfigError(
                f"config.features_path must be an existing weights file, "
                f"got {config.features_path!r}"
            )
        try:
            metrics.resolve_features(config.features, config.features_path or None)
        except ConfigError as e:
            raise ConfigError(f"config.features: {e}") from None
        self.source(config)  # a bad data spec fails here, before anything is written

    def source(self, config):
        """The training images (``imsyn.data`` source), built once per data spec."""
        from imsyn.data import get_source

        key = (config.data, config.image_size, config.data_category)
        if self._source_key != key:
            opts = {"category": config.data_category} if config.data_category else {}
            try:
                self._source = get_source(config.data, image_size=config.image_size, **opts)
            except ConfigError as e:
                raise ConfigError(f"config.data: {e}") from None
            self._source_key = key
        return self._source

    def arch(self, config) -> dict:
        return {
            "model": "dcgan",
            "image_size": config.image_size,
            "conv_dim": config.conv_dim,
            "norm": config.norm,
            "spectral_norm": config.spectral_norm,
            "z_dim": Z_DIM,
        } | (
            {"generator": config.generator}
            if config.get("generator", "dcgan_generator") != "dcgan_generator"
            else {}
        )

    # ----------------------------------------------------------------- state
    def _models(self, config, key):
        kg, kd = jax.random.split(key)
        name = config.get("generator", "dcgan_generator")
        kwargs = {"norm": config.norm} if name == "dcgan_generator" else {}
        g = models.get(name)(
            image_size=config.image_size,
            conv_dim=config.conv_dim,
            rngs=nnx.Rngs(params=kg),
            **kwargs,
        )
        d = models.get("dc_discriminator")(
            image_size=config.image_size,
            conv_dim=config.conv_dim,
            norm=config.norm,
            spectral_norm=config.spectral_norm,
            rngs=nnx.Rngs(params=kd),
        )
        return g, d

    def init_state(self, config, key):
        g, d = self._models(config, key)
        g_def, g_state = nnx.split(g)
        d_def, d_state = nnx.split(d)
        schedule = loop.lr_schedule(config)
        self._opt = optax.adam(schedule, b1=config.beta1, b2=config.beta2)
        self._defs = (g_def, d_def)
        self._cfg = {
            "loss": config.loss,
            "diffaug": config.diffaug,
            "seed": config.seed,
            "num_sample_images": config.num_sample_images,
        }
        return {
            "g": g_state,
            "d": d_state,
            "g_opt": self._opt.init(nnx.state(g, nnx.Param)),
            "d_opt": self._opt.init(nnx.state(d, nnx.Param)),
        }

    # ----------------------------------------------------------------- data
    def make_data(self, config, *, seed: int):
        from imsyn.data import make_loader
        from imsyn.data.sharding import local_batch_size

        return make_loader(
            self.source(config),
            batch_size=local_batch_size(config.batch_size),
            seed=seed,
            augment=config.augment,
            image_size=config.image_size,
            shard_index=jax.process_index(),
            shard_count=jax.process_count(),
        )

    # ----------------------------------------------------------------- step
    def _augment(self, x, key):
        if not self._cfg["diffaug"]:
            return x
        return diff_augment(x, key, self._cfg["diffaug"])

    def train_step(self, state, batch, key):
        """One D update then one G update. Pure: ``(state, batch, key) -> (state, metrics)``.

        The non-differentiated states enter ``value_and_grad`` as plain arrays
        (``nnx.as_pure``): batch-norm statistics and spectral-norm vectors are then
        updated inside the gradient trace and returned as auxiliary outputs.
        """
        g_def, d_def = self._defs
        kind = self._cfg["loss"]
        real = batch["image"]
        n = real.shape[0]
        kz_d, kz_g, ka_r, ka_f, ka_g = jax.random.split(key, 5)

        def d_loss_fn(d_params, d_rest, g_state):
            g = nnx.merge(g_def, g_state)
            d = nnx.merge(d_def, d_params, d_rest)
            fake = jax.lax.stop_gradient(g(jax.random.normal(kz_d, (n, Z_DIM))))
            real_logits = d(self._augment(real, ka_r))
            fake_logits = d(self._augment(fake, ka_f))
            loss = jnp.mean(losses.gan_d_loss(real_logits, fake_logits, kind=kind))
            aux = (nnx.state(d, nnx.Not(nnx.Param)), nnx.state(g), real_logits, fake_logits)
            return loss, aux

        d_params, d_rest = nnx.split_state(state["d"], nnx.Param, ...)
        (d_loss, (d_rest, g_state, real_logits, fake_logits)), d_grads = jax.value_and_grad(
            d_loss_fn, has_aux=True
        )(d_params, nnx.as_pure(d_rest), nnx.as_pure(state["g"]))
        updates, d_opt = self._opt.update(d_grads, state["d_opt"], d_params)
        d_params = optax.apply_updates(d_params, updates)

        def g_loss_fn(g_params, g_rest, d_state):
            g = nnx.merge(g_def, g_params, g_rest)
            d = nnx.merge(d_def, d_state)
            fake = g(jax.random.normal(kz_g, (n, Z_DIM)))
            loss = jnp.mean(losses.gan_g_loss(d(self._augment(fake, ka_g)), kind=kind))
            return loss, (nnx.state(g, nnx.Not(nnx.Param)), nnx.state(d, nnx.Not(nnx.Param)))

        g_params, g_rest = nnx.split_state(g_state, nnx.Param, ...)
        d_state = nnx.merge_state(d_params, d_rest)
        (g_loss, (g_rest, d_rest)), g_grads = jax.value_and_grad(g_loss_fn, has_aux=True)(
            g_params, nnx.as_pure(g_rest), nnx.as_pure(d_state)
        )
        updates, g_opt = self._opt.update(g_grads, state["g_opt"], g_params)
        g_params = optax.apply_updates(g_params, updates)

        new_state = {
            "g": nnx.merge_state(g_params, g_rest),
            "d": nnx.merge_state(d_params, d_rest),
            "g_opt": g_opt,
            "d_opt": d_opt,
        }
        out = {
            "d_loss": d_loss,
            "g_loss": g_loss,
            "d_real": jnp.mean(real_logits),
            "d_fake": jnp.mean(fake_logits),
        }
        return new_state, out

    # ----------------------------------------------------------------- outputs
    def generate(self, state, z) -> np.ndarray:
        """Images float32[N, S, S, 3] in [0, 1] from latents z[N, 100] (G in eval mode)."""
        g = nnx.merge(self._defs[0], state["g"])
        g.eval()
        return np.asarray(_generate(g, jnp.asarray(z, jnp.float32)))

    def _fixed_noise(self, n: int) -> np.ndarray:
        key = jax.random.fold_in(jax.random.key(self._cfg["seed"]), 1_000_003)
        return np.asarray(jax.random.normal(key, (n, Z_DIM)))

    def samples(self, state) -> dict[str, np.ndarray]:
        n = self._cfg["num_sample_images"]
        return {"samples": make_grid(self.generate(state, self._fixed_noise(n)))}

    def evaluate(self, state, config, workdir) -> dict:
        from pathlib import Path

        workdir = Path(workdir)
        write_image(workdir / "eval" / "samples.png", self.samples(state)["samples"])
        write_image(workdir / "eval" / "interpolation.png", self._interpolation(state, config))
        extractor = metrics.get_extractor(config.features, config.features_path or None)
        source = self.source(config)
        n = min(config.eval_samples, len(source))
        rows = np.random.default_rng(config.seed).choice(len(source), n, replace=False)
        real = np.stack([to_network(to_float(source[int(i)])) for i in rows])
        key = jax.random.fold_in(jax.random.key(config.seed), 2_000_003)
        z = np.asarray(jax.random.normal(key, (n, Z_DIM)))
        fake = np.concatenate(
            [self.generate(state, z[i : i + 64]) for i in range(0, n, 64)], axis=0
        )
        f_real = extractor(real)
        f_fake = extractor(to_network(fake))
        out = {
            "kid": metrics.kid(f_real, f_fake),
            "fid": metrics.fid(f_real, f_fake),
            "features": extractor.name,
            "features_resize": extractor.resize,
            "num_real": int(n),
            "num_fake": int(n),
        }
        note = getattr(extractor, "note", None)
        if note:
            out["features_note"] = note
        return out

    def _interpolation(self, state, config, *, rows: int = 4, cols: int = 10) -> np.ndarray:
        key = jax.random.fold_in(jax.random.key(config.seed), 3_000_017)
        ends = np.asarray(jax.random.normal(key, (rows, 2, Z_DIM)), np.float64)
        t = np.linspace(0.0, 1.0, cols)
        z = np.stack([slerp(a, b, t) for a, b in ends]).reshape(rows * cols, Z_DIM)
        return make_grid(self.generate(state, z), ncol=cols)


@nnx.jit
def _generate(g, z):
    return from_network(g(z))


def slerp(a: np.ndarray, b: np.ndarray, t: np.ndarray) -> np.ndarray:
    """Spherical interpolation between latents a[D] and b[D] at fractions t[T] -> [T, D]."""
    cos = np.dot(a, b) / (np.linalg.norm(a) * np.linalg.norm(b))
    omega = math.acos(float(np.clip(cos, -1.0, 1.0)))
    if omega < 1e-6:
        return np.outer(1 - t, a) + np.outer(t, b)
    s = math.sin(omega)
    return (np.outer(np.sin((1 - t) * omega), a) + np.outer(np.sin(t * omega), b)) / s


def validate(config) -> None:
    """Checks a DCGAN config (fields, values, data source) without training."""
    DCGANTask().validate(config)


def train(config, workdir):
    """train.py entry point: trains (or resumes) a DCGAN run, then evaluates it."""
    return loop.fit(config, workdir, DCGANTask())


def evaluate(config, workdir):
    """eval.py entry point: restores the latest checkpoint and (re)writes eval/ and report.html."""
    return loop.evaluate_run(config, workdir, DCGANTask())

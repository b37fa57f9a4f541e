"""A3 of the write-up: the GANs, run by :mod:`imsyn.tasks.dcgan` and
:mod:`imsyn.tasks.cyclegan` on the nested configs (DCGAN augmentation settings on the grumpy
cats, CycleGAN variants on the cats, the emoji CycleGAN)."""

from __future__ import annotations

from pathlib import Path

from imsyn import validate
from imsyn.tasks.writeup.records import Exp, split
from imsyn.tasks.writeup.runs import gan_render, task_config, task_exp, task_field
from imsyn.validate import Decl

TITLE = "A3 · GANs: DCGAN and CycleGAN with DiffAugment"
#: the DCGAN runs (``config.a3.dcgan_settings`` picks them): changes to ``config.a3.dcgan``
DCGAN_SETTINGS = {
    "basic": {"augment": "basic", "diffaug": ""},
    "deluxe": {"augment": "deluxe", "diffaug": ""},
    "deluxe_diffaug": {"augment": "deluxe", "diffaug": "color,translation,cutout"},
}
#: the CycleGAN runs on the cats (``config.a3.cyclegan_variants``): changes to
#: ``config.a3.cyclegan``
CYCLEGAN_VARIANTS = {
    "patch_cycle": {"discriminator": "patch"},
    "patch_nocycle": {"discriminator": "patch", "lambda_cycle": 0.0},
    "dc_cycle": {"discriminator": "dc"},
}


def _names(v, known) -> str:
    if not isinstance(v, str) or not split(v) or any(n not in known for n in split(v)):
        raise ValueError
    return v


#: ``config.a3``
FIELDS = {
    "dcgan_settings": Decl(
        "basic,deluxe,deluxe_diffaug",
        validate.custom(
            lambda v: _names(v, DCGAN_SETTINGS), f"a comma list of {', '.join(DCGAN_SETTINGS)}"
        ),
        "the DCGAN runs: augment/diffaug settings of DCGAN_SETTINGS",
    ),
    "cyclegan_variants": Decl(
        "patch_cycle,patch_nocycle,dc_cycle",
        validate.custom(
            lambda v: _names(v, CYCLEGAN_VARIANTS),
            f"a comma list of {', '.join(CYCLEGAN_VARIANTS)}",
        ),
        "the CycleGAN runs on the cats: variants of CYCLEGAN_VARIANTS",
    ),
    "dcgan": task_field(
        "a DCGAN config", "dcgan:grumpy", "the grumpy-cat DCGAN (the settings vary it)"
    ),
    "cyclegan": task_field(
        "a CycleGAN config", "cyclegan:cats_cpu", "the cats CycleGAN (the variants vary it)"
    ),
    "emoji": task_field("a CycleGAN config", "cyclegan", "the main job (emoji)"),
}
#: data it reads, relative to ``config.data_root``
DATA = ("gan/grumpifyAprocessed", "gan/grumpifyBprocessed")
#: the pretrained networks it needs (the page says when one is missing)
NETWORKS = ("inception_fid", "lpips_vgg16")
#: the page's heading of each group of experiments
GROUPS = {
    "dcgan": "DCGAN on the grumpy cats: basic vs deluxe augmentation vs deluxe + DiffAugment",
    "cyclegan": "CycleGAN, Russian blue (X) ↔ grumpy (Y) cats: cycle loss and discriminator",
    "emoji": "CycleGAN, Twemoji (X) ↔ OpenMoji (Y): the main job, paired metrics",
}

#: what the ``quick`` page says under a group's heading: its runs are too short to show the
#: recipe's result, so the measured numbers of the full-length runs (docs/cyclegan.md,
#: docs/benchmarks.md) stand beside them
QUICK_NOTES = {
    "dcgan": (
        "quick trains these at 32 px with 16-wide networks for 1200 steps and one seed, which "
        "cannot rank them: even at 64 px and 3000 steps three seeds do not (each setting's "
        "seeds spread wider than the settings' means). There (python train.py "
        "--config=configs/dcgan.py:grumpy --config.num_steps=3000), seeds 0-2, FID of 500 "
        "generated against all 204 training images: basic 263.7 ± 17.6, deluxe "
        "254.3 ± 11.5, deluxe + DiffAugment 261.8 ± 22.9. Measured 2026-12-07 "
        "(docs/benchmarks.md)."
    ),
    "cyclegan": (
        "quick trains these at 32 px with 16-wide networks for 600 steps: a check that the "
        "recipe runs, not its result. Its CPU preset (python train.py "
        "--config=configs/cyclegan.py:cats_cpu, 64 px, 4500 steps, 27 min on a 2-core CPU) "
        "reaches, for the 16 / 33 held-out cats against every image of the target domain: "
        "Russian blue → grumpy FID 136.1, KID 0.077 (the untouched input: 146.4, 0.118); "
        "grumpy → Russian blue FID 158.7, KID 0.110 (the untouched input: 166.4, 0.137). "
        "Measured 2026-12-07, seed 0 (docs/cyclegan.md)."
    ),
}


def experiments(config, root: Path, earlier: list[Exp]) -> list[Exp]:
    a3, exps = config.a3, []

    def cats(folder: str, preset_spec: str) -> str:
        # the cat folder under data_root, with the options of the preset's spec (its
        # held-out test fraction)
        _, sep, options = preset_spec.partition("?")
        return f"folder:{root / 'gan' / folder}{sep}{options}"

    for name in split(a3.dcgan_settings):
        changes = DCGAN_SETTINGS[name]
        data = cats("grumpifyBprocessed", a3.dcgan.data)
        cfg = task_config(a3.dcgan, f"dcgan_{name}", data=data, **changes)
        exps.append(task_exp(f"a3/dcgan_{name}", f"DCGAN, {name}", "dcgan", cfg, gan_render))
    cats_a = cats("grumpifyAprocessed", a3.cyclegan.data)
    cats_b = cats("grumpifyBprocessed", a3.cyclegan.data_y)
    for name in split(a3.cyclegan_variants):
        changes = CYCLEGAN_VARIANTS[name]
        cfg = task_config(a3.cyclegan, f"cyclegan_{name}", data=cats_a, data_y=cats_b, **changes)
        exps.append(
            task_exp(f"a3/cyclegan_{name}", f"CycleGAN cats, {name}", "cyclegan", cfg, gan_render)
        )
    cfg = task_config(a3.emoji, "cyclegan_emoji")
    exps.append(task_exp("a3/emoji", "CycleGAN emoji (the main job)", "emoji", cfg, gan_render))
    return exps

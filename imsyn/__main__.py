"""``python -m imsyn <task> ...`` (also the ``imsyn`` console script).

Each task lives in ``imsyn/cli/<module>.py`` and provides
``add_arguments(parser)`` and ``run(args) -> int``. User errors
(:class:`imsyn.errors.ImsynError`) print one line and exit with status 2.
``imsyn train|eval|sweep`` are train.py, eval.py and sweep.py for an installed imsyn;
``imsyn --version`` prints the version.
"""

from __future__ import annotations

import argparse
import importlib
import sys

# task name -> (module under imsyn.cli, one-line help)
TASKS = {
    "colorize": ("colorize", "A1: align and colorize Prokudin-Gorskii glass plates"),
    "blend": ("gradient", "A2: Poisson / mixed-gradient blending of a source into a target"),
    "color2gray": ("gradient", "A2: contrast-preserving colour-to-gray conversion"),
    "toy": ("gradient", "A2: reconstruct an image from its gradients and one pixel"),
    "mono-transfer": ("gradient", "A2: monochrome transfer (source luminance into target)"),
    "flatten": ("gradient", "A2: texture flattening inside a mask"),
    "illumination": ("gradient", "A2: local illumination change inside a mask"),
    "recolor": ("gradient", "A2: local colour change inside a mask"),
    "stylize": ("stylize", "A4: neural style transfer (Gatys et al.) on VGG-19"),
    "convert-weights": ("convert_weights", "A4: convert torchvision/Keras VGG-19 weights"),
    "edit": ("edit", "A5: GAN photo editing: project, interpolate, draw"),
    "fid": ("fid", "FID and KID between two image folders (Inception-v3 when fetched)"),
    "translate": ("trained", "apply a trained CycleGAN to image files and folders"),
    "sample": ("trained", "write samples (and interpolation frames) of a trained DCGAN"),
    "export": ("trained", "a trained model's generators in one shareable file"),
    "weights": ("weights", "pretrained networks: list, fetch (sha256-checked) into the cache"),
    "data": ("data", "the course's images: list, fetch (sha256-checked) into the cache"),
    "info": ("info", "versions, backend, devices, caches, what is fetched (for bug reports)"),
}

#: the entry points of config-driven runs (train.py, eval.py, sweep.py in a clone)
RUNS = {
    "train": "train an experiment from a config (as train.py): --config=NAME[:preset]",
    "eval": "evaluate a run or build the write-up (as eval.py): --config=NAME[:preset]",
    "sweep": "train a config's sweep and compare the runs (as sweep.py)",
}

#: task name -> one example command line, shown by ``python -m imsyn <task> --help``
EXAMPLES = {
    "colorize": "python -m imsyn colorize plate.tif --out-dir out/",
    "blend": "python -m imsyn blend --source penguin.jpg --target snow.jpg --mask mask.png "
    "--offset 120,80 --out blend.png",
    "color2gray": "python -m imsyn color2gray colorblind_test.png --out gray.png",
    "toy": "python -m imsyn toy toy_problem.png --out toy.png",
    "mono-transfer": "python -m imsyn mono-transfer --source a.jpg --target b.jpg "
    "--mask m.png --out out.png",
    "flatten": "python -m imsyn flatten face.jpg --mask m.png --out flat.png",
    "illumination": "python -m imsyn illumination fruit.jpg --mask m.png --out lit.png",
    "recolor": "python -m imsyn recolor flower.jpg --mask m.png --out recolored.png",
    "stylize": "python -m imsyn stylize content.jpg style.jpg --out styled.png",
    "convert-weights": "python -m imsyn convert-weights vgg19.pth --out vgg19.npz",
    "edit": "python -m imsyn edit project --model runs/dcgan a.png b.png --out runs/proj",
    "fid": "python -m imsyn fid real/ generated/",
    "weights": "python -m imsyn weights fetch all",
    "data": "python -m imsyn data fetch course",
    "info": "python -m imsyn info",
    "translate": "python -m imsyn translate --model runs/cyclegan photos/ --out-dir translated/",
    "sample": "python -m imsyn sample --model runs/dcgan --num 1000 --out-dir samples/ --seed 0",
    "export": "python -m imsyn export --model runs/cyclegan --out cyclegan.safetensors",
}


class HelpFormatter(argparse.RawDescriptionHelpFormatter):
    """Help with each option's default (when it has a telling one and does not say it
    already), descriptions and the example kept as written."""

    def _get_help_string(self, action):
        text = action.help or ""
        default = action.default
        if (
            "%(default)" in text
            or "default" in text.lower()
            or not action.option_strings
            or default is None
            or default is False
            or default == ""
            or default == argparse.SUPPRESS
            or isinstance(default, list | tuple)
            or f"({default}" in text
        ):
            return text
        return f"{text} (default: %(default)s)"


def _build_parser(task: str | None = None) -> argparse.ArgumentParser:
    """The CLI parser; only ``task``'s module is imported (the others are just listed).

    A bad command line is one line on stderr with exit status 2 (no usage block).
    """
    import imsyn
    from imsyn.validate import one_line_errors

    parser = argparse.ArgumentParser(prog="imsyn", description=__doc__.splitlines()[0])
    one_line_errors(parser)
    parser.add_argument("--version", action="version", version=f"imsyn {imsyn.__version__}")
    sub = parser.add_subparsers(dest="task", metavar="TASK")
    for name, help_text in RUNS.items():  # listed here, run by main() before parsing
        sub.add_parser(name, help=help_text, add_help=False)
    for name, (mod_name, help_text) in TASKS.items():
        p = sub.add_parser(
            name,
            help=help_text,
            description=help_text,
            epilog=f"example:\n  {EXAMPLES[name]}" if name in EXAMPLES else None,
            formatter_class=HelpFormatter,
        )
        one_line_errors(p)
        if name != task:
            continue
        mod = importlib.import_module(f"imsyn.cli.{mod_name}")
        if hasattr(mod, "add_task_arguments"):
            mod.add_task_arguments(name, p)
        else:
            mod.add_arguments(p)
        p.set_defaults(_module=mod)
        for action in p._actions:  # nested modes (edit project, weights fetch, ...)
            if isinstance(action, argparse._SubParsersAction):
                for nested in action.choices.values():
                    one_line_errors(nested)
                    nested.formatter_class = HelpFormatter
    return parser


def run_experiment(mode: str, argv: list[str]) -> int:
    """``imsyn train|eval|sweep --config=NAME[:preset] ...``: train.py, eval.py and sweep.py
    of a clone, for an installed imsyn (``--config=cyclegan`` names a config shipped in the
    package; see :func:`imsyn.experiments.resolve_config_arg`)."""
    from imsyn.runtime import keep_freed_memory

    keep_freed_memory()  # if IMSYN_KEEP_FREED_MEMORY=1; before anything allocates
    if mode == "sweep":
        from imsyn.training.sweep import main as sweep_main

        return sweep_main(["imsyn sweep", *argv])
    from imsyn.experiments import main as experiment_main

    return experiment_main([f"imsyn {mode}", *argv], mode)


def main(argv: list[str] | None = None) -> int:
    import signal

    from imsyn.errors import ImsynError
    from imsyn.runtime import interrupt_on_sigterm

    argv = sys.argv[1:] if argv is None else list(argv)
    if argv and argv[0] in RUNS:
        return run_experiment(argv[0], argv[1:])
    # SIGTERM stops every task as Ctrl-C does: cleanup runs, one line, exit 130
    old_term = interrupt_on_sigterm()
    task = next((a for a in argv if not a.startswith("-")), None)
    try:
        parser = _build_parser(task if task in TASKS else None)
        args = parser.parse_args(argv)
        if not getattr(args, "task", None):
            parser.print_help()
            return 2
        from imsyn.runtime import enable_compilation_cache

        enable_compilation_cache()
        return int(args._module.run(args) or 0)
    except ImsynError as e:
        print(f"imsyn{' ' + task if task else ''}: error: {e}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print(f"imsyn{' ' + task if task else ''}: interrupted", file=sys.stderr)
        return 130
    finally:
        if old_term is not None:
            signal.signal(signal.SIGTERM, old_term)


if __name__ == "__main__":
    sys.exit(main())

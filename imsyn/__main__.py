"""``python -m imsyn <task> ...`` (also the ``imsyn`` console script).

Each task lives in ``imsyn/cli/<module>.py`` and provides
``add_arguments(parser)`` and ``run(args) -> int``. User errors
(:class:`imsyn.errors.ImsynError`) print one line and exit with status 2.
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
    "weights": ("weights", "pretrained networks: list, fetch (sha256-checked) into the cache"),
}


def _build_parser(task: str | None = None) -> argparse.ArgumentParser:
    """The CLI parser; only ``task``'s module is imported (the others are just listed).

    A bad command line is one line on stderr with exit status 2 (no usage block).
    """
    from imsyn.validate import one_line_errors

    parser = argparse.ArgumentParser(prog="imsyn", description=__doc__.splitlines()[0])
    one_line_errors(parser)
    sub = parser.add_subparsers(dest="task", metavar="TASK")
    for name, (mod_name, help_text) in TASKS.items():
        p = sub.add_parser(name, help=help_text, description=help_text)
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
    return parser


def main(argv: list[str] | None = None) -> int:
    from imsyn.errors import ImsynError

    argv = sys.argv[1:] if argv is None else list(argv)
    task = next((a for a in argv if not a.startswith("-")), None)
    parser = _build_parser(task if task in TASKS else None)
    args = parser.parse_args(argv)
    if not getattr(args, "task", None):
        parser.print_help()
        return 2
    from imsyn.runtime import enable_compilation_cache

    enable_compilation_cache()
    try:
        return int(args._module.run(args) or 0)
    except ImsynError as e:
        print(f"imsyn {args.task}: error: {e}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print(f"imsyn {args.task}: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())

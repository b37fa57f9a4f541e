"""``python -m imsyn convert-weights IN --out OUT.npz [--format auto|torchvision|keras]``.

Converts torchvision (``vgg19-*.pth``, ``.safetensors``) or Keras
(``vgg19_weights_tf_dim_ordering_tf_kernels(_notop).h5``) VGG-19 weights into an
imsyn ``.npz`` weights file, which later runs load with numpy alone. The file
also holds each conv layer's mean activation on the reference set (the
normalization scales, see :mod:`imsyn.models.vgg`).
"""

from __future__ import annotations

import argparse
from pathlib import Path

from imsyn.errors import InputError


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("input", metavar="IN", help="torchvision .pth/.safetensors or Keras .h5")
    parser.add_argument("--out", required=True, metavar="OUT", help="imsyn weights file (.npz)")
    parser.add_argument(
        "--format",
        default="auto",
        choices=("auto", "torchvision", "keras"),
        help="layout of IN (auto: by suffix; .h5 is Keras, .pth/.pt/.safetensors torchvision)",
    )


def run(args: argparse.Namespace) -> int:
    from imsyn.models import vgg
    from imsyn.outputs import check_outputs

    src, out = Path(args.input), Path(args.out)
    if src.is_dir():
        raise InputError(f"{src}: is a directory, not a weights file")
    if out.suffix.lower() != ".npz":
        raise InputError(f"{out}: the output must be an .npz file")
    if out.is_dir():
        raise InputError(f"{out}: is a directory; give the .npz file to write")
    check_outputs([out], inputs=[src])
    vgg.convert_weights(args.input, out, fmt=args.format)
    print(
        f"wrote {out} (VGG-19, 16 conv layers, from {Path(args.input).name}, with the "
        f"normalization scales measured on {vgg.REFERENCE_FILE})"
    )
    return 0

"""What the command lines need before parsing, without Keras.

The registry's names, for `--help`, and the parser of
`keras-blurpool-convert`. This module imports nothing of the project, nor
Keras or TensorFlow: `keras_blurpool.convert`, `recipes.train` and
`recipes.evaluate` build their parsers from it, so that `--help` answers
at once (see the package's docstring).
"""

from __future__ import annotations

import argparse

# The names of `keras_blurpool.applications.registry.ARCHITECTURES`, in
# its order, for `--help` without Keras (tests/test_cli.py checks that
# they agree: add a new architecture here too).
ZOO_ARCHITECTURES = (
    "alexnet",
    "convnext_afc_tiny",
    "convnext_circular_tiny",
    "convnext_aps_tiny",
    "densenet121",
    "densenet161",
    "densenet169",
    "densenet201",
    "mobilenet_v2",
    "resnet18",
    "resnet34",
    "resnet50",
    "resnet101",
    "resnet152",
    "resnext50_32x4d",
    "resnext101_32x8d",
    "wide_resnet50_2",
    "wide_resnet101_2",
    "resnetblur18",
    "resnetblur50",
    "resnetblur50d",
    "resnetblur101d",
    "resnetaa34d",
    "resnetaa50",
    "resnetaa50d",
    "resnetaa101d",
    "seresnetaa50d",
    "seresnextaa101d_32x8d",
    "seresnextaa201d_32x8d",
    "vgg11",
    "vgg11_bn",
    "vgg13",
    "vgg13_bn",
    "vgg16",
    "vgg16_bn",
    "vgg19",
    "vgg19_bn",
)

# `keras_blurpool.applications.registry.INTERPOLATIONS` (checked too).
INTERPOLATIONS = ("bilinear", "bicubic")


def convert_parser() -> argparse.ArgumentParser:
    """The command line of `keras-blurpool-convert` (`keras_blurpool.convert`)."""
    parser = argparse.ArgumentParser(
        prog="keras-blurpool-convert",
        description=(
            "Convert a checkpoint of the PyTorch antialiased_cnns reference "
            "(or a torchvision one) into a Keras `.weights.h5` file."
        ),
    )
    parser.add_argument(
        "arch",
        help="architecture name: " + ", ".join(ZOO_ARCHITECTURES),
    )
    parser.add_argument(
        "checkpoint", help="the .pth / .pth.tar / .safetensors file"
    )
    parser.add_argument("output", help="the .weights.h5 file to write")
    parser.add_argument(
        "--filter-size",
        type=int,
        default=None,
        help="BlurPool filter size (default: read from the checkpoint)",
    )
    parser.add_argument(
        "--no-compare",
        action="store_true",
        help="skip the comparison with the PyTorch reference",
    )
    add_allow_nonfinite(parser)
    return parser


def add_allow_nonfinite(parser: argparse.ArgumentParser) -> None:
    """`--allow-nonfinite`, as the converter and the recipes take it."""
    parser.add_argument(
        "--allow-nonfinite",
        action="store_true",
        help="load weights holding NaN or infinite values or negative "
        "BatchNorm variances (refused by default: the network's outputs "
        "would be NaN or meaningless)",
    )

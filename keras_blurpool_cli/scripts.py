"""The console scripts: parse first, then import what runs.

Each sets `TF_CPP_MIN_LOG_LEVEL=2`, unless the user set it, before
TensorFlow is imported, and imports Keras (and TensorFlow) only once its
command line is parsed: `--help` and usage errors answer without them.
"""

from __future__ import annotations

import os

from keras_blurpool_cli import parsers


def _quiet_tensorflow() -> None:
    """TensorFlow's C++ INFO and WARNING lines off, unless the user chose."""
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")


def convert(argv: list[str] | None = None) -> int:
    """`keras-blurpool-convert`: `python -m keras_blurpool.convert`."""
    _quiet_tensorflow()
    parser = parsers.convert_parser()
    args = parser.parse_args(argv)
    from keras_blurpool import convert as converter

    return converter.run(parser, args)


def train(argv: list[str] | None = None) -> int:
    """`keras-blurpool-train`: `python -m recipes.train` of a clone."""
    _quiet_tensorflow()
    # Imports neither Keras nor TensorFlow until it has parsed.
    from keras_blurpool_recipes import train as recipe

    return recipe.main(argv, prog="keras-blurpool-train")


def evaluate(argv: list[str] | None = None) -> int:
    """`keras-blurpool-evaluate`: `python -m recipes.evaluate` of a clone."""
    _quiet_tensorflow()
    from keras_blurpool_recipes import evaluate as recipe

    return recipe.main(argv, prog="keras-blurpool-evaluate")

"""argparse types and names shared by the command lines of the recipes.

Imported when the command lines build their parsers, so it imports
neither Keras nor TensorFlow (nor `keras_blurpool`, which imports Keras):
`--help` answers without them.
"""

from __future__ import annotations

import argparse
import math

# The `tf.distribute` strategies of `--strategy` (`strategy.make_strategy`).
STRATEGIES = ("auto", "one_device", "mirrored", "multi_worker", "tpu")

# Prefix of the names of keras.applications models, e.g. "keras.ResNet50".
KERAS_PREFIX = "keras."


def filter_size(text: str):
    """1-7 (the zoo's range), or None for 'none'/'baseline' (plain)."""
    from keras_blurpool.applications.arguments import MAX_BUILDER_FILTER_SIZE
    from keras_blurpool.applications.arguments import MIN_BUILDER_FILTER_SIZE
    from keras_blurpool.applications.arguments import check_filter_size

    if text.lower() in ("none", "baseline"):
        return None
    try:
        value = int(text)
        check_filter_size(value)
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"expected an int from {MIN_BUILDER_FILTER_SIZE} to {MAX_BUILDER_FILTER_SIZE} "
            f"or 'none', got {text!r}"
        ) from None
    return value


def _number(cast, minimum, inclusive: bool, wording: str):
    """An argparse type: `cast(text)`, at least (or above) `minimum`."""

    def parse(text: str):
        try:
            value = cast(text)
        except ValueError:
            value = math.nan
        if math.isnan(value) or math.isinf(value) or not (
            value >= minimum if inclusive else value > minimum
        ):
            raise argparse.ArgumentTypeError(f"expected {wording}, got {text!r}")
        return value

    return parse


positive_int = _number(int, 0, False, "a positive int")
non_negative_int = _number(int, 0, True, "an int >= 0")
positive_float = _number(float, 0, False, "a positive number")
non_negative_float = _number(float, 0, True, "a number >= 0")

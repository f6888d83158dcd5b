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


# Every int flag fits TensorFlow's int64 (step counters, batch sizes and
# seeds become int64 tensors); some flags have tighter bounds, below.
INT64_MAX = 2**63 - 1

MAX_SEED = 2**32 - 1
"""Largest `--seed`: `keras.utils.set_random_seed` seeds NumPy's legacy
generator, whose seeds are 32-bit."""

MAX_EPOCHS = 2**24
"""Largest `--epochs` (and schedule length): the learning-rate schedule
counts epochs in float32, exact for integers up to 2**24."""

MAX_PASSES = 1000
"""Largest `--passes` of `recipes.evaluate`: the class scores of every
pass over a batch are held at once (8 x passes x batch x classes bytes:
256 MB at 1000 passes of 32 images of 1000 classes); the reference uses 5."""

MAX_CPU_DEVICES = 1024
"""Largest `--cpu-devices`: logical CPU devices for mirrored training
without GPUs, each a replica holding a copy of the model."""

DEFAULT_MAX_IMAGE_PIXELS = 89_478_485
"""Default `--max-image-pixels`: Pillow's `Image.MAX_IMAGE_PIXELS`
(a quarter GiB of RGB bytes, 268 MB decoded). No image is decoded or made
(resized, cropped) with more pixels than the bound."""

# Text longer than this is abbreviated in error messages.
_SHOWN_CHARACTERS = 40


def _shown(text: str) -> str:
    """`repr(text)`, abbreviated when long (a 400-digit number)."""
    if len(text) <= _SHOWN_CHARACTERS:
        return repr(text)
    return f"{text[:_SHOWN_CHARACTERS // 2]!r}... ({len(text)} characters)"


def _number(cast, minimum, inclusive: bool, wording: str):
    """An argparse type: `cast(text)`, at least (or above) `minimum`.

    For floats; an int type is `_int`, which also bounds from above.
    """

    def parse(text: str):
        try:
            value = cast(text)
        except ValueError:
            value = math.nan
        if math.isnan(value) or math.isinf(value) or not (
            value >= minimum if inclusive else value > minimum
        ):
            raise argparse.ArgumentTypeError(
                f"expected {wording}, got {_shown(text)}"
            )
        return value

    return parse


def _int(minimum: int, maximum: int, wording: str, why: str):
    """An argparse type: an int from `minimum` to `maximum`.

    The message says `wording` (e.g. "a positive int") and the bound with
    its reason `why`. The value is compared as a Python int, never as a
    float: 400 digits are refused, not an `OverflowError`.
    """

    def parse(text: str):
        try:
            value = int(text)
        except ValueError:  # not an int, or over Python's 4300 digits
            value = None
        if value is None or not minimum <= value <= maximum:
            raise argparse.ArgumentTypeError(
                f"expected {wording}, at most {maximum} ({why}), got "
                f"{_shown(text)}"
            )
        return value

    return parse


_INT64 = "TensorFlow's int64"
positive_int = _int(1, INT64_MAX, "a positive int", _INT64)
non_negative_int = _int(0, INT64_MAX, "an int >= 0", _INT64)
seed = _int(
    0, MAX_SEED, "an int >= 0",
    "2**32 - 1: keras.utils.set_random_seed seeds NumPy, whose seeds are "
    "32-bit",
)
epochs = _int(
    1, MAX_EPOCHS, "a positive int",
    "2**24: the learning-rate schedule counts epochs in float32",
)
passes = _int(
    1, MAX_PASSES, "a positive int",
    "the scores of every pass over a batch are held at once",
)
cpu_devices = _int(
    1, MAX_CPU_DEVICES, "a positive int",
    "each logical device is a replica holding a copy of the model",
)
max_image_pixels = _int(1, INT64_MAX, "a positive int", _INT64)
positive_float = _number(float, 0, False, "a positive number")
non_negative_float = _number(float, 0, True, "a number >= 0")


def pixel_bound_error(flag: str, value: int, max_image_pixels: int,
                      side: int | None = None, what: str = "crops") -> str | None:
    """The argparse message for square images over `--max-image-pixels`.

    Args:
        flag: the flag whose value sets the side, e.g. `"--image-size"`.
        value: the flag's value.
        max_image_pixels: the bound on the pixels of any image.
        side: the side of the square images the value makes (e.g. the
            resize before a centre crop); `value` by default.
        what: what those images are, for the message.

    Returns:
        None when `side * side <= max_image_pixels`, else the message.

    Example:

    >>> pixel_bound_error("--image-size", 224, 89_478_485) is None
    True
    >>> print(pixel_bound_error("--image-size", 100, 5000))
    ... # doctest: +NORMALIZE_WHITESPACE
    argument --image-size: 100 makes crops of 100x100 = 10,000 pixels,
    more than --max-image-pixels 5,000 (the bound on the pixels of every
    image decoded or made); expected at most 70, or raise
    --max-image-pixels
    """
    side = value if side is None else side
    if side * side <= max_image_pixels:
        return None
    if side == value:
        expected = f"expected at most {math.isqrt(max_image_pixels)}"
    else:
        expected = f"give a smaller {flag}"
    return (
        f"argument {flag}: {value} makes {what} of {side}x{side} = "
        f"{side * side:,} pixels, more than --max-image-pixels "
        f"{max_image_pixels:,} (the bound on the pixels of every image "
        f"decoded or made); {expected}, or raise --max-image-pixels"
    )

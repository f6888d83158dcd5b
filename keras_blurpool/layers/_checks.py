"""Argument checks every layer module shares.

Strides, data formats, the filter size bound and the channel count known
at build are checked here once, so that every layer refuses a bad value
with the same wording ("... Received: name=value").
"""

from __future__ import annotations

import keras

from keras_blurpool._utils import check_int
from keras_blurpool._utils import is_int

DATA_FORMATS = ("channels_last", "channels_first")

# The taps are C(k-1, i) / 2**(k-1). Up to 64 taps each is within one
# float64 rounding of the exact fraction (exact up to 57 taps), and the
# smallest, 2**-63, is still a normal float32. That is far beyond any
# useful blur (the paper uses 1-7); unbounded, 1,000 taps ran for a long
# while before overflowing float64. The zoo's builders have their own,
# smaller bound (`MAX_BUILDER_FILTER_SIZE` in applications/arguments.py).
MAX_LAYER_FILTER_SIZE = 64


def check_filter_size(filter_size) -> int:
    """`filter_size` as an int from 1 to `MAX_LAYER_FILTER_SIZE`, or raises.

    Args:
        filter_size: taps of a binomial filter per axis.

    Returns:
        `int(filter_size)`.

    Raises:
        ValueError: `"`filter_size` must be an int from 1 to 64. Received:
            filter_size=..."`.
    """
    return check_int("filter_size", filter_size, 1, MAX_LAYER_FILTER_SIZE)


def standardize_strides(
    strides, rank: int, name: str = "strides", maximum: int | None = None
) -> tuple:
    """`rank` ints >= 1 from an int or a tuple of `rank` ints, or raises.

    Args:
        strides: an int (the same on every axis) or a tuple/list of one
            or `rank` ints.
        rank: the number of spatial axes.
        name: the argument's name, quoted in the message (`"size"` for
            `BlurUpSampling2D`).
        maximum: the largest allowed int, or None for no bound.

    Returns:
        A tuple of `rank` Python ints.

    Raises:
        ValueError: naming `name` and the value.

    Example:

    >>> standardize_strides(2, 2)
    (2, 2)
    """
    values = strides if isinstance(strides, (tuple, list)) else (strides,)
    if len(values) == 1:
        values = tuple(values) * rank
    if len(values) != rank or not all(
        is_int(s) and 1 <= s <= (maximum or s) for s in values
    ):
        allowed = ">= 1" if maximum is None else f"from 1 to {maximum}"
        raise ValueError(
            f"`{name}` must be an int {allowed} or a tuple of {rank} ints "
            f"{allowed}. Received: {name}={strides!r}"
        )
    return tuple(int(s) for s in values)


def standardize_data_format(data_format) -> str:
    """`"channels_last"` or `"channels_first"`; None is Keras's default.

    Args:
        data_format: `"channels_last"`, `"channels_first"` or None
            (`keras.config.image_data_format()`).

    Returns:
        The data format.

    Raises:
        ValueError: for any other value.
    """
    if data_format is None:
        data_format = keras.config.image_data_format()
    if data_format not in DATA_FORMATS:
        raise ValueError(
            f"`data_format` must be one of {DATA_FORMATS} or None. "
            f"Received: data_format={data_format!r}"
        )
    return data_format


def known_channels(layer, input_shape) -> int:
    """The channels of `input_shape` at `layer._channel_axis`; known or raise.

    Args:
        layer: the layer being built (its class and name are quoted).
        input_shape: the shape it is built for.

    Returns:
        The channel count.

    Raises:
        ValueError: if the channel dimension is None.
    """
    channels = input_shape[layer._channel_axis]
    if channels is None:
        raise ValueError(
            f"{type(layer).__name__} '{layer.name}' needs a known channel "
            f"dimension. Received input_shape={tuple(input_shape)}"
        )
    return channels

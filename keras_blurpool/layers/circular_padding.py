"""Circular padding: the map wraps around, as PyTorch's "circular" mode."""

from __future__ import annotations

import keras

from keras_blurpool.layers._checks import standardize_data_format
from keras_blurpool.layers._padding import circular_pad


def _standardize_padding(padding) -> tuple:
    """`((top, bottom), (left, right))` from an int, a pair, or pairs."""
    message = (
        "`padding` must be an int >= 0, a tuple of 2 ints >= 0 (height, "
        "width) or a tuple of 2 (before, after) tuples of ints >= 0. "
        f"Received: padding={padding!r}"
    )

    def check(value):
        if isinstance(value, bool) or not isinstance(value, int) or value < 0:
            raise ValueError(message)
        return int(value)

    if isinstance(padding, (tuple, list)):
        if len(padding) != 2:
            raise ValueError(message)
        pairs = []
        for side in padding:
            if isinstance(side, (tuple, list)):
                if len(side) != 2:
                    raise ValueError(message)
                pairs.append((check(side[0]), check(side[1])))
            else:
                pairs.append((check(side), check(side)))
        return tuple(pairs)
    value = check(padding)
    return ((value, value), (value, value))


@keras.saving.register_keras_serializable(package="keras_blurpool")
class CircularPadding2D(keras.layers.Layer):
    """Circular padding of the rows and columns of a 4-D feature map.

    Each pad copies the opposite border, as PyTorch's
    `padding_mode="circular"`: a convolution after it is exactly
    equivariant to circular shifts of its input, which APS and LPS
    networks need for exact shift invariance. The `ZeroPadding2D` of
    circular padding.

    Args:
        padding: int (the same on every side), tuple of 2 ints (height,
            width), or tuple of 2 `(before, after)` tuples; each at most
            the size of its axis.
        data_format: `"channels_last"` or `"channels_first"`; defaults to
            `keras.config.image_data_format()`.
        **kwargs: base layer arguments (`name`, `dtype`, ...).

    Input shape:
        `(batch, height, width, channels)` (channels_last) or `(batch,
        channels, height, width)`.

    Output shape:
        `(batch, height + top + bottom, width + left + right, channels)`,
        or its channels_first layout.

    Example:

    >>> x = keras.ops.reshape(keras.ops.arange(4.0), (1, 1, 4, 1))
    >>> keras.ops.convert_to_numpy(CircularPadding2D(((0, 0), (1, 1)))(x))[0, 0, :, 0]
    array([3., 0., 1., 2., 3., 0.], dtype=float32)
    """

    def __init__(self, padding=1, data_format=None, **kwargs):
        super().__init__(**kwargs)
        self.padding = _standardize_padding(padding)
        self.data_format = standardize_data_format(data_format)
        self.input_spec = keras.layers.InputSpec(ndim=4)

    @property
    def _spatial_axes(self):
        return (1, 2) if self.data_format == "channels_last" else (2, 3)

    def _check_sizes(self, shape):
        for axis, (before, after) in zip(self._spatial_axes, self.padding):
            n = shape[axis]
            if n is not None and max(before, after) > n:
                raise ValueError(
                    f"CircularPadding2D '{self.name}' cannot pad a "
                    f"{shape[self._spatial_axes[0]]}x"
                    f"{shape[self._spatial_axes[1]]} feature map by "
                    f"padding={self.padding}: circular padding needs every "
                    "spatial size to be at least its padding"
                )

    def build(self, input_shape):
        self._check_sizes(input_shape)

    def call(self, inputs):
        self._check_sizes(inputs.shape)
        return circular_pad(inputs, dict(zip(self._spatial_axes, self.padding)))

    def compute_output_shape(self, input_shape):
        shape = list(input_shape)
        for axis, (before, after) in zip(self._spatial_axes, self.padding):
            if shape[axis] is not None:
                shape[axis] += before + after
        return tuple(shape)

    def get_config(self):
        config = super().get_config()
        config.update({"padding": self.padding, "data_format": self.data_format})
        return config

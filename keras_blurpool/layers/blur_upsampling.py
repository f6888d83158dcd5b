"""Anti-aliased upsampling: zero insertion, then a binomial low-pass filter.

`UpSampling2D` repeats pixels (a box filter) and a strided
`Conv2DTranspose` inserts zeros and then learns its filter: both leave
the spectral images of the zero insertion in the output, the upsampling
counterpart of the aliasing BlurPool removes when downsampling (the
checkerboard artefacts of transposed convolutions). `BlurUpSampling2D`
inserts zeros and filters with a fixed binomial kernel, rescaled so that
every output phase gets weights summing to 1.
"""

from __future__ import annotations

import math

import keras
import numpy as np
from keras import ops

from keras_blurpool.layers._checks import check_filter_size
from keras_blurpool.layers._checks import known_channels
from keras_blurpool.layers._checks import standardize_data_format
from keras_blurpool.layers._checks import standardize_strides
from keras_blurpool.layers._padding import check_pad_fits
from keras_blurpool.layers._padding import pad_axes
from keras_blurpool.layers._padding import standardize_pad_type
from keras_blurpool.layers.blur_pool import binomial_filter


def _phase_normalised_taps(filter_size: int, size: int) -> np.ndarray:
    """Binomial taps scaled so that each group {w_j : j = q mod s} sums to 1."""
    taps = binomial_filter(filter_size)
    for phase in range(size):
        taps[phase::size] /= taps[phase::size].sum()
    return taps


@keras.saving.register_keras_serializable(package="keras_blurpool")
class BlurUpSampling2D(keras.layers.Layer):
    """Anti-aliased 2-D upsampling: insert zeros, binomial low-pass filter.

    The anti-aliased replacement for `UpSampling2D` or a strided
    `Conv2DTranspose`: each spatial size `n` becomes `n * size`. Per axis,
    with `s = size`, `k = filter_size`, taps `w = binomial_filter(k)` and
    `c = (k + s - 2) // 2`, let `U` be the input, edge-extended by
    `pad_type`, with `s - 1` zeros inserted after each pixel (`x[i]` at
    `U[i * s]`). Then

        y[t] = sum_j w'_j * U[t - c + j],   t = 0 .. n * s - 1,

    where `w'` is `w` rescaled so that each phase group
    `{w_j : j = q (mod s)}` sums to 1: for `s = 2` this is `2 * w`, and a
    constant input stays constant for every `s`. The 2-D filter is
    `outer(w'_H, w'_W)`. The alignment is half-pixel: `filter_size=2`,
    `size=2` is nearest-neighbour `UpSampling2D`; `filter_size=4`,
    `size=2` gives `y[2i] = 0.25 x[i-1] + 0.75 x[i]` and
    `y[2i+1] = 0.75 x[i] + 0.25 x[i+1]` (bilinear-like); larger filters
    are smoother.

    Args:
        size: int or tuple of 2 ints >= 1, the upsampling factor per axis.
        filter_size: taps of the binomial filter per axis, 1 to 64; at
            least every factor of `size` (a smaller filter leaves an
            output phase without taps).
        pad_type: how the input is extended beyond its border:
            `"replicate"` (alias `"repl"`, default), `"reflect"`
            (`"refl"`), `"zero"` or `"circular"`.
        data_format: `"channels_last"` or `"channels_first"`; defaults to
            `keras.config.image_data_format()`.
        **kwargs: base layer arguments (`name`, `dtype`, ...).

    Input shape:
        4-D tensor `(batch, H, W, C)` or `(batch, C, H, W)` with a known
        channel count.

    Output shape:
        `(batch, H * size_h, W * size_w, C)` or
        `(batch, C, H * size_h, W * size_w)`.

    Raises:
        ValueError: for an argument outside the ranges above or a
            `filter_size` below a factor of `size`; at build or call, for
            an unknown channel count or, with reflect padding, a spatial
            size not larger than the padding
            `ceil(max(c, k - 1 - c) / s)`.

    Example:

    >>> x = keras.ops.ones((1, 3, 5, 2))
    >>> y = keras_blurpool.BlurUpSampling2D(size=2)(x)
    >>> tuple(y.shape), float(keras.ops.max(keras.ops.abs(y - 1.0)))
    ((1, 6, 10, 2), 0.0)
    """

    def __init__(
        self,
        size=2,
        filter_size=4,
        pad_type="replicate",
        data_format=None,
        **kwargs,
    ):
        super().__init__(**kwargs)
        self.size = standardize_strides(size, 2, name="size")
        self.filter_size = check_filter_size(filter_size)
        if self.filter_size < max(self.size):
            raise ValueError(
                f"`filter_size` must be at least every factor of `size`, or "
                f"an output phase has no filter taps. Received: "
                f"filter_size={filter_size!r}, size={size!r}"
            )
        self.pad_type = standardize_pad_type(pad_type)
        self.data_format = standardize_data_format(data_format)
        k = self.filter_size
        self._taps = tuple(_phase_normalised_taps(k, s) for s in self.size)
        self._offsets = tuple((k + s - 2) // 2 for s in self.size)
        self._pads = tuple(
            math.ceil(max(c, k - 1 - c) / s)
            for c, s in zip(self._offsets, self.size)
        )
        self.input_spec = keras.layers.InputSpec(ndim=4)

    @property
    def _spatial_axes(self):
        return (1, 2) if self.data_format == "channels_last" else (2, 3)

    @property
    def _channel_axis(self):
        return -1 if self.data_format == "channels_last" else 1

    @property
    def filter(self) -> np.ndarray:
        """The phase-normalised 2-D filter `outer(w'_H, w'_W)`."""
        return np.multiply.outer(*self._taps)

    def build(self, input_shape):
        channels = known_channels(self, input_shape)
        self._check_spatial_sizes(input_shape)
        self.input_spec = keras.layers.InputSpec(
            ndim=4, axes={self._channel_axis: channels}
        )

    def _check_spatial_sizes(self, shape):
        check_pad_fits(
            self, shape, self._pads, self._pads,
            f"filter_size={self.filter_size}, size={self.size}",
        )

    def compute_output_shape(self, input_shape):
        shape = list(input_shape)
        for axis, s in zip(self._spatial_axes, self.size):
            shape[axis] = None if shape[axis] is None else shape[axis] * s
        return tuple(shape)

    def call(self, inputs):
        self._check_spatial_sizes(inputs.shape)
        x = pad_axes(
            inputs,
            self.pad_type,
            {a: (p, p) for a, p in zip(self._spatial_axes, self._pads)},
        )
        k = self.filter_size
        for axis, s, c, p in zip(
            self._spatial_axes, self.size, self._offsets, self._pads
        ):
            if s > 1:
                # Zero insertion: a new axis of s - 1 zeros after each
                # pixel, merged into `axis`.
                x = ops.expand_dims(x, axis + 1)
                widths = [[0, 0]] * 5
                widths[axis + 1] = [0, s - 1]
                x = ops.pad(x, widths)
                shape = list(ops.shape(x))
                merged = shape[:axis] + [shape[axis] * s] + shape[axis + 2 :]
                merged[0] = -1
                x = ops.reshape(x, merged)
            # Keep the n * s + k - 1 samples the "valid" convolution needs
            # for the n * s outputs; output t reads U[t - c .. t - c + k - 1]
            # and U[m] sits at m + p * s here.
            start = p * s - c
            end = p * s + c - k + 1  # samples dropped at the far end
            index = [slice(None)] * 4
            index[axis] = slice(start, -end if end else None)
            x = x[tuple(index)]
        channels = inputs.shape[self._channel_axis]
        kernel = np.broadcast_to(
            self.filter[..., None, None], (k, k, channels, 1)
        )
        kernel = ops.convert_to_tensor(kernel, dtype=self.compute_dtype)
        return ops.depthwise_conv(
            x, kernel, strides=1, padding="valid", data_format=self.data_format
        )

    def get_config(self):
        config = super().get_config()
        config.update(
            {
                "size": self.size,
                "filter_size": self.filter_size,
                "pad_type": self.pad_type,
                "data_format": self.data_format,
            }
        )
        return config

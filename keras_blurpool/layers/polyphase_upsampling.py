"""Adaptive polyphase upsampling (APS-U): the inverse of `APSPool2D`.

An encoder-decoder of circularly padded convolutions is exactly
equivariant to circular shifts of its input only if its upsamplings undo
the polyphase choices of its downsamplings: `UpSampling2D` or a strided
`Conv2DTranspose` always put the input back at offset `(0, 0)`, while
`APSPool2D` kept the component at some offset `(i, j)` that a shift of
the input moves. `APSUpSampling2D` (Chaman & Dokmanić, "Truly
shift-invariant convolutional neural networks", CVPR 2021, their "APS-U")
places its input at the offset its paired `APSPool2D` chose, zeros
elsewhere, and optionally blurs: `APSUpSampling2D(APSPool2D(x))` with the
same index shifts by `(dy, dx)` when `x` does, exactly.
"""

from __future__ import annotations

import keras
from keras import ops

from keras_blurpool.layers._checks import check_filter_size
from keras_blurpool.layers._checks import known_channels
from keras_blurpool.layers._checks import standardize_data_format
from keras_blurpool.layers._checks import standardize_strides
from keras_blurpool.layers._padding import standardize_pad_type
from keras_blurpool.layers.blur_pool import BlurPool2D
from keras_blurpool.layers.polyphase import MAX_POLYPHASE_STRIDE
from keras_blurpool.layers.polyphase import check_polyphase_index
from keras_blurpool.layers.polyphase import choose_component


def place_components(stacked, strides, data_format):
    """The inverse of `polyphase.polyphase_components`.

    `stacked` is `(batch, s_h * s_w, h, w, c)` (channels_last; `(batch,
    P, c, h, w)` channels_first); component `k` goes to offset
    `(k // s_w, k % s_w)` of the `(h * s_h, w * s_w)` map:
    `y[:, i::s_h, j::s_w, :] == stacked[:, i * s_w + j]`.
    """
    sh, sw = strides
    dynamic = ops.shape(stacked)
    dims = [d if d is not None else dynamic[i] for i, d in enumerate(stacked.shape)]
    if data_format == "channels_last":
        _, _, h, w, c = dims
        x = ops.reshape(stacked, (-1, sh, sw, h, w, c))
        x = ops.transpose(x, (0, 3, 1, 4, 2, 5))
        return ops.reshape(x, (-1, h * sh, w * sw, c))
    _, _, c, h, w = dims
    x = ops.reshape(stacked, (-1, sh, sw, c, h, w))
    x = ops.transpose(x, (0, 3, 4, 1, 5, 2))
    return ops.reshape(x, (-1, c, h * sh, w * sw))


@keras.saving.register_keras_serializable(package="keras_blurpool")
class APSUpSampling2D(keras.layers.Layer):
    """Adaptive polyphase upsampling (APS-U; Chaman & Dokmanić, CVPR 2021).

    The decoder's counterpart of `APSPool2D`: given its input and the
    polyphase index `k` that the paired `APSPool2D` chose for each sample
    (component `k` at offset `(i, j) = (k // s_w, k % s_w)`), it writes the
    input to that offset of a `strides` times larger map, zeros elsewhere,

        y[:, i::s_h, j::s_w, :] = x,   every other pixel 0,

    then, with `filter_size` > 1, blurs it with the binomial filter of
    `filter_size` taps at stride 1 (padded as `pad_type` says, as
    `BlurPool2D(filter_size, strides=1)`) times `s_h * s_w`, so that the
    filter's gain makes up for the zeros: a constant input gives the same
    constant (the authors' filter sums to 1 instead, a factor the next
    convolution absorbs). Because the paired `APSPool2D`'s index moves with
    circular shifts of its input, `APSUpSampling2D()(APSPool2D()(x),
    index)` with `pad_type="circular"` shifts by exactly `(dy, dx)` when `x`
    shifts circularly by `(dy, dx)`: an encoder-decoder (U-Net) of
    circularly padded convolutions, `APSPool2D` and `APSUpSampling2D` is
    exactly equivariant to circular shifts (see
    `examples/equivariant_unet.py`).

    Args:
        filter_size: taps of the binomial blur after the placement, 1 to
            64, or None (1 and None: no blur, the input placed as is, the
            authors' `filt_size=1`).
        strides: int or tuple of 2 ints, the upsampling factor, 1 to
            `MAX_POLYPHASE_STRIDE` (16); the paired `APSPool2D`'s
            `strides`.
        pad_type: padding of the blur: `"circular"` (default; exact
            equivariance), `"reflect"` (`"refl"`), `"replicate"`
            (`"repl"`) or `"zero"`.
        data_format: `"channels_last"` or `"channels_first"`; defaults to
            `keras.config.image_data_format()`.
        **kwargs: base layer arguments (`name`, `dtype`, ...).

    Call arguments:
        inputs: a 4-D tensor.
        index: the paired downsampler's choice: int `(batch,)` component
            numbers from 0 to `s_h * s_w - 1` (`APSPool2D(...,
            return_index=True)`'s), or float `(batch, s_h * s_w)` weights
            (`LPSPool2D(..., return_index=True)`'s: while training the
            input is placed at every offset times its weight, otherwise at
            the offset of the largest). A number out of range is a
            ValueError when its value is known at the call (a list, an
            int, a NumPy array); in a tensor it gives that sample a NaN
            output, on every backend (as `APSPool2D`'s `index=`).
        training: whether the call is a training one (float weights only).

    Input shape:
        `(batch, height, width, channels)` (channels_last) or `(batch,
        channels, height, width)`.

    Output shape:
        `(batch, height * s_h, width * s_w, channels)`, or its
        channels_first layout. (An `APSPool2D` pads an odd side `n` to a
        multiple of its stride: crop the output back to `n` where needed;
        exact equivariance needs sides divisible by the strides.)

    Example:

    >>> x = keras.random.normal((2, 8, 8, 4))
    >>> y, index = keras_blurpool.APSPool2D(return_index=True)(x)
    >>> up = keras_blurpool.APSUpSampling2D()(y, index)
    >>> tuple(up.shape)
    (2, 8, 8, 4)
    """

    def __init__(
        self,
        filter_size=None,
        strides=2,
        pad_type="circular",
        data_format=None,
        **kwargs,
    ):
        super().__init__(**kwargs)
        if filter_size is not None:
            filter_size = check_filter_size(filter_size)
        self.filter_size = filter_size
        self.strides = standardize_strides(
            strides, 2, maximum=MAX_POLYPHASE_STRIDE
        )
        self.pad_type = standardize_pad_type(pad_type)
        self.data_format = standardize_data_format(data_format)
        self.num_components = self.strides[0] * self.strides[1]
        self._blur = None
        if filter_size is not None and filter_size > 1:
            self._blur = BlurPool2D(
                filter_size,
                strides=1,
                pad_type=self.pad_type,
                data_format=self.data_format,
                dtype=self.dtype_policy,
                name="blur",
            )
        self.input_spec = keras.layers.InputSpec(ndim=4)

    @property
    def blur_layer(self) -> BlurPool2D | None:
        """The stride-1 `BlurPool2D` after the placement, or None."""
        return self._blur

    @property
    def _spatial_axes(self):
        return (1, 2) if self.data_format == "channels_last" else (2, 3)

    @property
    def _channel_axis(self):
        return -1 if self.data_format == "channels_last" else 1

    def __call__(self, inputs, index=None, *args, **kwargs):
        # Checked before Keras turns a list or NumPy array into a tensor,
        # whose values are then known only when the graph runs.
        if index is None:
            raise ValueError(
                f"APSUpSampling2D '{self.name}' needs `index`, the choice "
                "of its paired downsampler: `y, index = APSPool2D("
                "return_index=True)(x)`, then `APSUpSampling2D()(y, "
                "index)`. Received: index=None"
            )
        index = check_polyphase_index(self, index)
        p = self.num_components
        if len(index.shape) == 2 and index.shape[1] not in (None, p):
            raise ValueError(
                f"APSUpSampling2D '{self.name}': `index` weights must have "
                f"{p} columns (one per polyphase component of strides="
                f"{self.strides}). Received: index of shape "
                f"{tuple(index.shape)}"
            )
        return super().__call__(inputs, index, *args, **kwargs)

    def build(self, input_shape):
        channels = known_channels(self, input_shape)
        if self._blur is not None:
            self._blur.build(self.compute_output_shape(input_shape))
        self.input_spec = keras.layers.InputSpec(
            ndim=4, axes={self._channel_axis: channels}
        )

    def compute_output_shape(self, input_shape, index_shape=None):
        shape = list(input_shape)
        for axis, s in zip(self._spatial_axes, self.strides):
            shape[axis] = None if shape[axis] is None else shape[axis] * s
        return tuple(shape)

    def compute_output_spec(self, inputs, index, training=None):
        shape = self.compute_output_shape(inputs.shape)
        if self._blur is not None:
            self._blur.compute_output_shape(shape)  # checks its padding
        return keras.KerasTensor(shape, dtype=self.compute_dtype)

    def call(self, inputs, index, training=None):
        p = self.num_components
        x = ops.expand_dims(inputs, 1)  # (batch, 1, ...)
        if len(index.shape) == 2 and training:
            # LPS while training: every offset, times its weight.
            weights = ops.cast(index, x.dtype)
            stacked = x * weights[:, :, None, None, None]
            valid = None
        else:
            if len(index.shape) == 2:
                index = choose_component(index)
            index = ops.cast(index, "int32")
            valid = ops.logical_and(
                ops.greater_equal(index, 0), ops.less(index, p)
            )
            chosen = ops.equal(
                ops.arange(p, dtype="int32")[None, :], index[:, None]
            )
            # A select, not a product: an inf stays where it was placed.
            stacked = ops.where(
                chosen[:, :, None, None, None], x, ops.zeros_like(x)
            )
        outputs = place_components(stacked, self.strides, self.data_format)
        if self._blur is not None:
            outputs = self._blur(outputs) * ops.cast(p, outputs.dtype)
        if valid is not None:
            # An index outside 0..p-1 in a tensor: that sample is NaN.
            valid = ops.reshape(valid, (-1, 1, 1, 1))
            outputs = ops.where(
                valid, outputs, ops.cast(float("nan"), outputs.dtype)
            )
        return outputs

    def get_config(self):
        config = super().get_config()
        config.update(
            {
                "filter_size": self.filter_size,
                "strides": self.strides,
                "pad_type": self.pad_type,
                "data_format": self.data_format,
            }
        )
        return config

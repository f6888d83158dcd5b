"""Alias-free layer normalization (AFC's `CHW2`).

ConvNeXt's LayerNorm divides each pixel by the standard deviation of its
own channels: a per-pixel gain, i.e. a multiplication by a map of
unbounded bandwidth, which aliases. AFC keeps the per-pixel mean (a
linear, pointwise operation) but takes the variance over channels *and*
space, so the division is by one number per sample: shift-equivariant for
any (also fractional) circular shift.
"""

from __future__ import annotations

import keras
from keras import ops

from keras_blurpool.layers._checks import known_channels
from keras_blurpool.layers._checks import standardize_data_format


@keras.saving.register_keras_serializable(package="keras_blurpool")
class AliasFreeLayerNormalization(keras.layers.Layer):
    """LayerNorm with the mean over channels, the variance over C, H, W.

    `mu[b, h, w] = mean_c x[b, c, h, w]`, `var[b] = mean_{c,h,w} (x -
    mu) ** 2`, then `gamma[c] * (x - mu) / sqrt(var + epsilon) + beta[c]`
    (the authors' normalization type `CHW2`).

    Args:
        epsilon: added to the variance, a number >= 0 (AFC: 1e-6).
        data_format: `"channels_last"` or `"channels_first"`; defaults to
            `keras.config.image_data_format()`.
        **kwargs: base layer arguments (`name`, `dtype`, ...).

    Input shape:
        `(batch, height, width, channels)` (channels_last) or `(batch,
        channels, height, width)`, channels known.

    Output shape:
        Same as the input.

    Example:

    >>> tuple(AliasFreeLayerNormalization()(keras.random.normal((2, 4, 4, 3))).shape)
    (2, 4, 4, 3)
    """

    def __init__(self, epsilon=1e-6, data_format=None, **kwargs):
        super().__init__(**kwargs)
        if (
            isinstance(epsilon, bool)
            or not isinstance(epsilon, (int, float))
            or not 0 <= epsilon < float("inf")
        ):
            raise ValueError(
                f"`epsilon` must be a finite number >= 0. Received: epsilon={epsilon!r}"
            )
        self.epsilon = float(epsilon)
        self.data_format = standardize_data_format(data_format)
        self.input_spec = keras.layers.InputSpec(ndim=4)

    @property
    def _channel_axis(self) -> int:
        return -1 if self.data_format == "channels_last" else 1

    def build(self, input_shape):
        channels = known_channels(self, input_shape)
        self.gamma = self.add_weight(shape=(channels,), initializer="ones", name="gamma")
        self.beta = self.add_weight(shape=(channels,), initializer="zeros", name="beta")

    def call(self, inputs):
        x = ops.cast(inputs, "float32")
        mean = ops.mean(x, axis=self._channel_axis, keepdims=True)
        centred = x - mean
        variance = ops.mean(ops.square(centred), axis=(1, 2, 3), keepdims=True)
        y = centred * ops.rsqrt(variance + self.epsilon)
        gamma, beta = ops.cast(self.gamma, "float32"), ops.cast(self.beta, "float32")
        if self.data_format == "channels_first":
            gamma, beta = ops.reshape(gamma, (-1, 1, 1)), ops.reshape(beta, (-1, 1, 1))
        return ops.cast(gamma * y + beta, self.compute_dtype)

    def compute_output_shape(self, input_shape):
        return tuple(input_shape)

    def get_config(self):
        config = super().get_config()
        config.update({"epsilon": self.epsilon, "data_format": self.data_format})
        return config

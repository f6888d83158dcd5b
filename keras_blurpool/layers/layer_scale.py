"""A trainable per-channel (or single) multiplier: ConvNeXt's layer scale."""

from __future__ import annotations

import keras
from keras import ops

from keras_blurpool.layers._checks import standardize_data_format


@keras.saving.register_keras_serializable(package="keras_blurpool")
class LayerScale(keras.layers.Layer):
    """Multiplies the input by a trainable `gamma`, per channel or one.

    ConvNeXt scales each block's residual branch by a per-channel `gamma`
    initialised small (1e-6); AFC's stem scales its residual activation by
    one `gamma` initialised to 0.

    Args:
        init_value: the initial value of `gamma`, a finite number.
        per_channel: True: one `gamma` per channel; False: one in all.
        data_format: `"channels_last"` or `"channels_first"` (where the
            channels are for `per_channel`); defaults to
            `keras.config.image_data_format()`.
        **kwargs: base layer arguments (`name`, `dtype`, ...).

    Input shape:
        Any, channels known when `per_channel` (the last axis, or axis 1
        channels_first).

    Output shape:
        Same as the input.

    Example:

    >>> tuple(LayerScale(0.5)(keras.ops.ones((1, 2, 2, 3))).shape)
    (1, 2, 2, 3)
    """

    def __init__(self, init_value=1e-6, per_channel=True, data_format=None, **kwargs):
        super().__init__(**kwargs)
        if (
            isinstance(init_value, bool)
            or not isinstance(init_value, (int, float))
            or init_value != init_value
            or abs(init_value) == float("inf")
        ):
            raise ValueError(
                f"`init_value` must be a finite number. Received: init_value={init_value!r}"
            )
        if not isinstance(per_channel, bool):
            raise ValueError(
                f"`per_channel` must be a bool. Received: per_channel={per_channel!r}"
            )
        self.init_value = float(init_value)
        self.per_channel = per_channel
        self.data_format = standardize_data_format(data_format)

    def build(self, input_shape):
        if self.per_channel:
            axis = -1 if self.data_format == "channels_last" else 1
            channels = input_shape[axis]
            if channels is None:
                raise ValueError(
                    f"LayerScale '{self.name}' needs a known channel dimension. "
                    f"Received input_shape={tuple(input_shape)}"
                )
            shape = (channels,)
        else:
            shape = (1,)
        self.gamma = self.add_weight(
            shape=shape,
            initializer=keras.initializers.Constant(self.init_value),
            name="gamma",
        )

    def call(self, inputs):
        gamma = ops.cast(self.gamma, inputs.dtype)
        if self.per_channel and self.data_format == "channels_first":
            gamma = ops.reshape(gamma, (-1,) + (1,) * (len(inputs.shape) - 2))
        return inputs * gamma

    def compute_output_shape(self, input_shape):
        return tuple(input_shape)

    def get_config(self):
        config = super().get_config()
        config.update(
            {
                "init_value": self.init_value,
                "per_channel": self.per_channel,
                "data_format": self.data_format,
            }
        )
        return config

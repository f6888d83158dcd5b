"""MaxBlurPool2D: the paper's anti-aliased replacement for MaxPool."""

from __future__ import annotations

import keras
from keras import ops

from keras_blurpool._utils import check_int
from keras_blurpool.layers.blur_pool import BlurPool2D


@keras.saving.register_keras_serializable(package="keras_blurpool")
class MaxBlurPool2D(keras.layers.Layer):
    """Max-pool densely (stride 1), then downsample with `BlurPool2D`.

    Replaces `MaxPooling2D(pool_size, strides)`: the max is evaluated at
    every position, and only the blurred result is subsampled, as in
    `[nn.MaxPool2d(pool_size, stride=1), antialiased_cnns.BlurPool(...)]`.

    Args:
        pool_size: int, the max-pool window (valid padding, stride 1).
        filter_size: taps of the binomial filter of the BlurPool.
        strides: int or tuple of 2 ints, the subsampling factor.
        pad_type: padding of the BlurPool: `"reflect"`, `"replicate"`,
            `"zero"` or `"circular"` (and the reference's aliases `"refl"`, `"repl"`).
        data_format: `"channels_last"` or `"channels_first"`.
        implementation: the BlurPool's `"auto"`, `"padded"`, `"same"` or
            `"slices"` route, see `BlurPool2D`.
        **kwargs: base layer arguments (`name`, `dtype`, ...).

    Raises:
        ValueError: for a bad argument; at build or call, for a feature
            map smaller than `pool_size` (or too small for the BlurPool's
            padding).

    Example:

    >>> x = keras.random.normal((1, 32, 32, 8))
    >>> tuple(keras_blurpool.MaxBlurPool2D()(x).shape)
    (1, 16, 16, 8)
    """

    def __init__(
        self,
        pool_size=2,
        filter_size=4,
        strides=2,
        pad_type="reflect",
        data_format=None,
        implementation="auto",
        **kwargs,
    ):
        super().__init__(**kwargs)
        self.pool_size = check_int("pool_size", pool_size)
        self.blur = BlurPool2D(
            filter_size=filter_size,
            strides=strides,
            pad_type=pad_type,
            data_format=data_format,
            implementation=implementation,
            dtype=self.dtype_policy,
            name="blur",
        )
        self.data_format = self.blur.data_format
        self.input_spec = keras.layers.InputSpec(ndim=4)

    def build(self, input_shape):
        self._check_spatial_sizes(input_shape)
        self.blur.build(self._pooled_shape(input_shape))

    def _check_spatial_sizes(self, shape):
        # A "valid" max pool over a map smaller than its window has no
        # output; TensorFlow's kernel dies of a division by zero on it.
        sizes = [shape[a] for a in self.blur._spatial_axes]
        if any(n is not None and n < self.pool_size for n in sizes):
            size = "x".join(str(n) for n in sizes)
            raise ValueError(
                f"{type(self).__name__} '{self.name}' cannot max-pool a "
                f"{size} feature map with pool_size={self.pool_size}: every "
                "spatial size must be at least pool_size. Use a smaller "
                "pool_size or a larger input."
            )

    def _pooled_shape(self, input_shape):
        shape = list(input_shape)
        for axis in self.blur._spatial_axes:
            if shape[axis] is not None:
                shape[axis] = shape[axis] - self.pool_size + 1
        return tuple(shape)

    def call(self, inputs):
        self._check_spatial_sizes(inputs.shape)
        pooled = ops.max_pool(
            inputs,
            pool_size=self.pool_size,
            strides=1,
            padding="valid",
            data_format=self.data_format,
        )
        return self.blur(pooled)

    def compute_output_shape(self, input_shape):
        return self.blur.compute_output_shape(self._pooled_shape(input_shape))

    def get_config(self):
        config = super().get_config()
        config.update(
            {
                "pool_size": self.pool_size,
                "filter_size": self.blur.filter_size,
                "strides": self.blur.strides,
                "pad_type": self.blur.pad_type,
                "data_format": self.data_format,
                "implementation": self.blur.implementation,
            }
        )
        return config

"""Adaptive average pooling with PyTorch's windows, on every backend.

torchvision's VGG and AlexNet end their feature extractor with
`nn.AdaptiveAvgPool2d`: output cell `i` of an axis of `n` inputs and `o`
outputs averages inputs `floor(i * n / o)` to `ceil((i + 1) * n / o) - 1`.
Keras's `AdaptiveAveragePooling2D` computes those edges in floating point
on JAX, where `ceil(7 * 7 / 7)` can round up to 8: the window then runs
past the map and the output is NaN (see "Known issues" in docs/zoo.md).
Here the edges are integer arithmetic (NumPy's for a known side,
`keras.ops`' for a dynamic one), so every backend gives PyTorch's windows.
"""

from __future__ import annotations

import keras
import numpy as np

from keras_blurpool.layers._checks import standardize_data_format
from keras_blurpool.layers._checks import standardize_strides


def window_matrix(size, output_size: int, dtype):
    """The `(output_size, size)` 0/1 matrix of PyTorch's adaptive windows.

    Row `i` is 1 from `floor(i * size / output_size)` to
    `ceil((i + 1) * size / output_size) - 1`, in integer arithmetic: NumPy's
    for a known `size` (a constant of the graph), `keras.ops`' int32 for a
    dynamic one.

    Args:
        size: the input side, an int or a scalar int tensor (a dynamic
            shape).
        output_size: the output side, an int >= 1.
        dtype: the matrix's dtype.

    Returns:
        A `(output_size, size)` tensor of `dtype`.

    Example:

    >>> keras.ops.convert_to_numpy(window_matrix(3, 2, "float32"))
    array([[1., 1., 0.],
           [0., 1., 1.]], dtype=float32)
    """
    if isinstance(size, (int, np.integer)):
        cells = np.arange(output_size)[:, None]
        positions = np.arange(size)[None, :]
        start = cells * size // output_size
        stop = ((cells + 1) * size + output_size - 1) // output_size
        inside = (positions >= start) & (positions < stop)
        return keras.ops.convert_to_tensor(inside, dtype=dtype)
    ops = keras.ops
    size = ops.cast(size, "int32")
    cells = ops.arange(output_size, dtype="int32")[:, None]
    positions = ops.arange(size, dtype="int32")[None, :]
    start = ops.floor_divide(cells * size, output_size)
    stop = ops.floor_divide((cells + 1) * size + output_size - 1, output_size)
    inside = ops.logical_and(
        ops.greater_equal(positions, start), ops.less(positions, stop)
    )
    return ops.cast(inside, dtype)


@keras.saving.register_keras_serializable(package="keras_blurpool")
class AdaptiveAvgPool2D(keras.layers.Layer):
    """Adaptive average pooling to a fixed output size, as PyTorch's.

    Equals `torch.nn.functional.adaptive_avg_pool2d` (PyTorch's
    `nn.AdaptiveAvgPool2d`) on TensorFlow, JAX and PyTorch: output cell
    `(i, j)` is the mean of rows `floor(i * H / out_h)` to
    `ceil((i + 1) * H / out_h) - 1` and the same columns' range, windows
    that overlap where the sizes do not divide and repeat inputs where the
    output is larger than the input. The window edges are integer
    arithmetic, so no input size gives a window off the map (Keras's
    `AdaptiveAveragePooling2D` does on JAX, with NaN outputs; see "Known
    issues" in the zoo's docs). The VGG and AlexNet builders use it as
    torchvision's classifier's first layer.

    Each window is summed (two matrix products with 0/1 window matrices)
    and divided by its area, as PyTorch does.

    Args:
        output_size: int (the same for height and width) or tuple of 2
            ints `(out_h, out_w)`, each >= 1.
        data_format: `"channels_last"` or `"channels_first"`; defaults to
            `keras.config.image_data_format()`.
        **kwargs: base layer arguments (`name`, `dtype`, ...).

    Input shape:
        `(batch, height, width, channels)` (channels_last) or `(batch,
        channels, height, width)`, any height and width >= 1 (known or
        not).

    Output shape:
        `(batch, out_h, out_w, channels)`, or its channels_first layout.

    Example:

    >>> x = keras.ops.reshape(keras.ops.arange(9.0), (1, 3, 3, 1))
    >>> y = AdaptiveAvgPool2D(2)(x)
    >>> keras.ops.convert_to_numpy(y)[0, :, :, 0]
    array([[2., 3.],
           [5., 6.]], dtype=float32)
    """

    def __init__(self, output_size, data_format=None, **kwargs):
        super().__init__(**kwargs)
        self.output_size = standardize_strides(output_size, 2, name="output_size")
        self.data_format = standardize_data_format(data_format)
        self.input_spec = keras.layers.InputSpec(ndim=4)

    @property
    def _spatial_axes(self):
        return (1, 2) if self.data_format == "channels_last" else (2, 3)

    def _check_sizes(self, shape):
        sides = [shape[axis] for axis in self._spatial_axes]
        if any(side is not None and side < 1 for side in sides):
            raise ValueError(
                f"AdaptiveAvgPool2D '{self.name}' needs a feature map of at "
                f"least 1x1. Received: input_shape={tuple(shape)}"
            )

    def build(self, input_shape):
        self._check_sizes(input_shape)

    def call(self, inputs):
        ops = keras.ops
        self._check_sizes(inputs.shape)
        height_axis, width_axis = self._spatial_axes
        out_h, out_w = self.output_size
        rows = window_matrix(ops.shape(inputs)[height_axis], out_h, inputs.dtype)
        cols = window_matrix(ops.shape(inputs)[width_axis], out_w, inputs.dtype)
        if self.data_format == "channels_last":
            sums = ops.einsum("ih,bhwc->biwc", rows, inputs)
            sums = ops.einsum("jw,biwc->bijc", cols, sums)
            area = ops.sum(rows, axis=1)[:, None, None] * ops.sum(cols, axis=1)[
                None, :, None
            ]
        else:
            sums = ops.einsum("ih,bchw->bciw", rows, inputs)
            sums = ops.einsum("jw,bciw->bcij", cols, sums)
            area = ops.sum(rows, axis=1)[:, None] * ops.sum(cols, axis=1)[None, :]
        return sums / area

    def compute_output_shape(self, input_shape):
        shape = list(input_shape)
        for axis, size in zip(self._spatial_axes, self.output_size):
            shape[axis] = size
        return tuple(shape)

    def get_config(self):
        config = super().get_config()
        config.update(
            {"output_size": self.output_size, "data_format": self.data_format}
        )
        return config

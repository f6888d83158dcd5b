"""Ideal (Fourier-domain) low-pass filtering, downsampling and upsampling.

The alias-free ConvNets of Michaeli, Michaeli & Soudry (CVPR 2023)
subsample only after an ideal low-pass filter: the 2-D discrete Fourier
transform of each channel is multiplied by a rectangle that keeps the
frequencies below the new Nyquist frequency, and the inverse transform is
subsampled. Upsampling inserts zeros and keeps the original band. Both are
circular (periodic) operations: a circular shift of the input, by any
amount the output grid can represent, shifts the output the same way.

The rectangles follow the authors' rule. Along an axis of `n` samples and
a cutoff `c` (a fraction of the Nyquist frequency), the bins `k` with
`min(k, n - k) <= floor(n * c / 2)` are kept; when `n` is a multiple of 4
the two edge bins `floor(n * c / 2)` and `n - floor(n * c / 2)` (the
subsampled map's Nyquist frequency) are dropped by the low-pass filter and
halved by the reconstruction filter of upsampling. Every operation is
`keras.ops` (`fft2` / `ifft2`), so it runs on every backend; it computes
in float32 and returns the layer's compute dtype.
"""

from __future__ import annotations

import keras
import numpy as np
from keras import ops

from keras_blurpool._utils import is_int
from keras_blurpool.layers._checks import standardize_data_format


def _check_cutoff(cutoff) -> float:
    if (
        isinstance(cutoff, bool)
        or not isinstance(cutoff, (int, float))
        or not 0 < cutoff <= 1
    ):
        raise ValueError(
            "`cutoff` must be a number in (0, 1], a fraction of the Nyquist "
            f"frequency. Received: cutoff={cutoff!r}"
        )
    return float(cutoff)


def _check_factor(factor, name: str) -> int:
    if not is_int(factor) or not 1 <= factor <= 16:
        raise ValueError(
            f"`{name}` must be an int from 1 to 16. Received: {name}={factor!r}"
        )
    return int(factor)


def lowpass_mask(n: int, cutoff: float) -> np.ndarray:
    """The authors' 1-D low-pass rectangle over the `n` DFT bins.

    Args:
        n: samples along the axis.
        cutoff: fraction of the Nyquist frequency kept, in (0, 1].

    Returns:
        float32 `(n,)`: 1 for kept bins, 0 otherwise.

    Raises:
        ValueError: if `n * cutoff < 2` (no band beyond the mean would be
            defined).

    Example:

    >>> lowpass_mask(8, 0.5)
    array([1., 1., 0., 0., 0., 0., 0., 1.], dtype=float32)
    """
    return _rectangle(n, cutoff, edge=0.0)


def reconstruction_mask(n: int, cutoff: float) -> np.ndarray:
    """The authors' 1-D reconstruction rectangle of ideal upsampling.

    As `lowpass_mask`, but the two edge bins are halved (not dropped) when
    `n` is a multiple of 4.

    Args:
        n: samples along the (upsampled) axis.
        cutoff: fraction of the Nyquist frequency kept, in (0, 1].

    Returns:
        float32 `(n,)`.

    Example:

    >>> reconstruction_mask(8, 0.5)
    array([1. , 1. , 0.5, 0. , 0. , 0. , 0.5, 1. ], dtype=float32)
    """
    return _rectangle(n, cutoff, edge=0.5)


def _rectangle(n: int, cutoff: float, edge: float) -> np.ndarray:
    low = int((n * cutoff) // 2)
    if low < 1:
        raise ValueError(
            f"An ideal low-pass filter of cutoff {cutoff} needs at least "
            f"{int(np.ceil(2 / cutoff))} samples along each spatial axis "
            f"(it keeps the bins up to n * cutoff / 2). Received: n={n}"
        )
    high = n - low
    rect = np.ones(n, "float32")
    rect[low + 1 : high] = 0.0
    if n % 4 == 0:
        rect[low] = edge
        rect[high] = edge
    return rect


def _to_planes(x, data_format: str):
    """`(batch, channels, height, width)` float32."""
    x = ops.cast(x, "float32")
    if data_format == "channels_last":
        x = ops.transpose(x, (0, 3, 1, 2))
    return x


def _from_planes(x, data_format: str, dtype):
    if data_format == "channels_last":
        x = ops.transpose(x, (0, 2, 3, 1))
    return ops.cast(x, dtype)


def _masked(planes, mask: np.ndarray):
    """`real(ifft2(fft2(planes) * mask))` over the last two axes."""
    real, imag = ops.fft2((planes, ops.zeros_like(planes)))
    mask = ops.convert_to_tensor(mask, "float32")
    return ops.ifft2((real * mask, imag * mask))[0]


def _spatial(shape, data_format: str) -> tuple:
    return tuple(shape[1:3]) if data_format == "channels_last" else tuple(shape[2:4])


def ideal_lowpass(x, cutoff: float, data_format: str | None = None):
    """The ideal low-pass filter of a 4-D map, same size out.

    Args:
        x: `(batch, height, width, channels)` (channels_last) or its
            channels_first layout, with known height and width.
        cutoff: fraction of the Nyquist frequency kept, in (0, 1].
        data_format: `"channels_last"` or `"channels_first"`; defaults to
            `keras.config.image_data_format()`.

    Returns:
        The filtered map, shaped and typed as `x`.

    Example:

    >>> x = np.ones((1, 8, 8, 2), "float32")
    >>> bool(np.allclose(keras.ops.convert_to_numpy(ideal_lowpass(x, 0.5)), 1))
    True
    """
    cutoff = _check_cutoff(cutoff)
    data_format = standardize_data_format(data_format)
    height, width = _spatial(x.shape, data_format)
    mask = np.outer(lowpass_mask(height, cutoff), lowpass_mask(width, cutoff))
    dtype = keras.backend.standardize_dtype(x.dtype)
    return _from_planes(_masked(_to_planes(x, data_format), mask), data_format, dtype)


class _FourierLayer(keras.layers.Layer):
    """Shared checks of the ideal sampling layers."""

    def __init__(self, factor, cutoff, data_format, name_of_factor, **kwargs):
        super().__init__(**kwargs)
        self.factor = _check_factor(factor, name_of_factor)
        self.cutoff = _check_cutoff(1.0 / self.factor if cutoff is None else cutoff)
        self.data_format = standardize_data_format(data_format)
        self.input_spec = keras.layers.InputSpec(ndim=4)

    def _sides(self, shape) -> tuple:
        sides = _spatial(shape, self.data_format)
        if None in sides:
            raise ValueError(
                f"{type(self).__name__} '{self.name}' needs a known height and "
                "width (its Fourier masks depend on them). Received "
                f"input_shape={tuple(shape)}"
            )
        return sides

    def get_config(self):
        config = super().get_config()
        config.update({"cutoff": self.cutoff, "data_format": self.data_format})
        return config


@keras.saving.register_keras_serializable(package="keras_blurpool")
class IdealDownsampling2D(_FourierLayer):
    """Ideal low-pass filter, then subsampling by `strides` (AFC's BlurPool).

    Each channel's 2-D DFT is multiplied by the rectangle of
    `lowpass_mask` along each axis (the bins past `cutoff` times the
    Nyquist frequency, and, on sides that are multiples of 4, the edge
    bins, removed), transformed back, and every `strides`-th row and
    column kept, from the first. With `cutoff = 1 / strides` nothing
    aliases: the output is the band-limited signal sampled on a coarser
    grid, so a circular shift of the input by a multiple of `strides`
    shifts the output, and any other shift (integer or fractional) moves
    it by a fraction of a pixel without changing its spectrum's
    magnitude.

    Args:
        strides: int from 1 to 16, the subsampling factor along both
            axes (1: the low-pass filter alone).
        cutoff: fraction of the Nyquist frequency kept, in (0, 1];
            defaults to `1 / strides`. AFC's stem uses `strides=4,
            cutoff=0.25`, its other downsampling layers `strides=2`.
        data_format: `"channels_last"` or `"channels_first"`; defaults to
            `keras.config.image_data_format()`.
        **kwargs: base layer arguments (`name`, `dtype`, ...).

    Input shape:
        `(batch, height, width, channels)` (channels_last) or `(batch,
        channels, height, width)`; height and width known, multiples of
        `strides`, and at least `2 / cutoff`.

    Output shape:
        `(batch, height / strides, width / strides, channels)`, or its
        channels_first layout.

    Example:

    >>> x = keras.random.normal((2, 8, 8, 3))
    >>> tuple(IdealDownsampling2D(2)(x).shape)
    (2, 4, 4, 3)
    """

    def __init__(self, strides=2, cutoff=None, data_format=None, **kwargs):
        super().__init__(strides, cutoff, data_format, "strides", **kwargs)

    @property
    def strides(self) -> int:
        return self.factor

    def _mask(self, shape) -> np.ndarray:
        sides = self._sides(shape)
        for side in sides:
            if side % self.factor:
                raise ValueError(
                    f"IdealDownsampling2D '{self.name}' needs height and width "
                    f"that are multiples of strides={self.factor} (the "
                    "authors' filter and subsampling assume it). Received "
                    f"input_shape={tuple(shape)}"
                )
        try:
            masks = [lowpass_mask(side, self.cutoff) for side in sides]
        except ValueError as error:
            raise ValueError(
                f"IdealDownsampling2D '{self.name}': {error}. Received "
                f"input_shape={tuple(shape)}"
            ) from None
        return np.outer(*masks)

    def build(self, input_shape):
        self._mask(input_shape)

    def call(self, inputs):
        mask = self._mask(inputs.shape)
        out = _masked(_to_planes(inputs, self.data_format), mask)
        s = self.factor
        out = out[:, :, ::s, ::s]
        return _from_planes(out, self.data_format, self.compute_dtype)

    def compute_output_shape(self, input_shape):
        shape = list(input_shape)
        axes = (1, 2) if self.data_format == "channels_last" else (2, 3)
        for axis in axes:
            if shape[axis] is not None:
                shape[axis] //= self.factor
        return tuple(shape)

    def get_config(self):
        config = super().get_config()
        config["strides"] = self.factor
        return config


@keras.saving.register_keras_serializable(package="keras_blurpool")
class IdealUpsampling2D(_FourierLayer):
    """Ideal (band-limited, periodic) upsampling by `size`.

    Inserts `size - 1` zeros after every sample along both axes, then
    multiplies the 2-D DFT by the rectangle of `reconstruction_mask`
    (cutoff `1 / size` of the new Nyquist frequency; the edge bins halved
    on sides that are multiples of 4) and by `size ** 2`: the trigonometric
    interpolation of the periodic input. The input's samples are kept
    (`outputs[:, ::size, ::size] == inputs` when the input has no energy
    at its own Nyquist frequency).

    Args:
        size: int from 1 to 16, the upsampling factor along both axes.
        data_format: `"channels_last"` or `"channels_first"`; defaults to
            `keras.config.image_data_format()`.
        **kwargs: base layer arguments (`name`, `dtype`, ...).

    Input shape:
        `(batch, height, width, channels)` (channels_last) or `(batch,
        channels, height, width)`, height and width known and at least 2.

    Output shape:
        `(batch, height * size, width * size, channels)`, or its
        channels_first layout.

    Example:

    >>> x = keras.random.normal((2, 4, 4, 3))
    >>> tuple(IdealUpsampling2D(2)(x).shape)
    (2, 8, 8, 3)
    """

    def __init__(self, size=2, data_format=None, **kwargs):
        super().__init__(size, None, data_format, "size", **kwargs)

    @property
    def size(self) -> int:
        return self.factor

    def _mask(self, shape) -> np.ndarray:
        sides = self._sides(shape)
        if min(sides) < 2:
            raise ValueError(
                f"IdealUpsampling2D '{self.name}' needs height and width of at "
                f"least 2. Received input_shape={tuple(shape)}"
            )
        masks = [reconstruction_mask(side * self.factor, self.cutoff) for side in sides]
        return np.outer(*masks) * float(self.factor**2)

    def build(self, input_shape):
        self._mask(input_shape)

    def call(self, inputs):
        mask = self._mask(inputs.shape)
        planes = _to_planes(inputs, self.data_format)
        s = self.factor
        if s > 1:
            channels, height, width = planes.shape[1:]
            planes = ops.reshape(planes, (-1, channels, height, 1, width, 1))
            planes = ops.pad(
                planes, ((0, 0), (0, 0), (0, 0), (0, s - 1), (0, 0), (0, s - 1))
            )
            planes = ops.reshape(planes, (-1, channels, height * s, width * s))
        out = _masked(planes, mask)
        return _from_planes(out, self.data_format, self.compute_dtype)

    def compute_output_shape(self, input_shape):
        shape = list(input_shape)
        axes = (1, 2) if self.data_format == "channels_last" else (2, 3)
        for axis in axes:
            if shape[axis] is not None:
                shape[axis] *= self.factor
        return tuple(shape)

    def get_config(self):
        config = super().get_config()
        del config["cutoff"]
        config["size"] = self.factor
        return config

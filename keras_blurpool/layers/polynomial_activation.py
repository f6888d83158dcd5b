"""Polynomial activations of the alias-free ConvNets (AFC).

A polynomial of degree 2 doubles the bandwidth of a band-limited map at
most, so evaluating it on a map upsampled by 2 (ideally) and low-pass
filtering the result back to the original band (then subsampling) creates
no aliasing, unlike GELU or ReLU, whose spectra are unbounded. AFC uses a
per-channel quadratic with trainable coefficients (initialised to a fit of
GELU) and trainable input / output scales:

    y = out_scale * (c0[ch] + c1[ch] * (in_scale * x) + c2[ch] * (in_scale * x) ** 2)

`PolynomialActivation(upsampling=2)` is the authors' `up_poly_per_channel`
(upsample, polynomial, low-pass, subsample); `upsampling=1` is the
polynomial alone (their `poly_per_channel`), which the ConvNeXt-AFC block
uses between its own upsampling and low-pass layers.
`LowpassPolynomialActivation` is the stem's `lpf_poly_per_channel`: the
square is replaced by `x * lowpass(x)`, so the product stays within
`1 + cutoff` times the band of `x` (the stem subsamples by 4 after it).
"""

from __future__ import annotations

import keras
from keras import ops

from keras_blurpool.layers._checks import known_channels
from keras_blurpool.layers._checks import standardize_data_format
from keras_blurpool.layers.ideal_sampling import IdealDownsampling2D
from keras_blurpool.layers.ideal_sampling import IdealUpsampling2D
from keras_blurpool.layers.ideal_sampling import _check_cutoff
from keras_blurpool.layers.ideal_sampling import _check_factor
from keras_blurpool.layers.ideal_sampling import ideal_lowpass

# The authors' initial coefficients: a quadratic fit of GELU.
GELU_QUADRATIC = (0.0169394634313126, 0.5, 0.3078363963999393)


def _check_coefficients(coefficients) -> tuple:
    try:
        values = tuple(float(c) for c in coefficients)
    except (TypeError, ValueError):
        values = ()
    if len(values) != 3 or any(v != v or v in (float("inf"), float("-inf")) for v in values):
        raise ValueError(
            "`coefficients` must be 3 finite numbers (c0, c1, c2) of the "
            f"quadratic. Received: coefficients={coefficients!r}"
        )
    return values


def _check_scale(value, name: str) -> float:
    if (
        isinstance(value, bool)
        or not isinstance(value, (int, float))
        or not 0 < value < float("inf")
    ):
        raise ValueError(
            f"`{name}` must be a finite number > 0. Received: {name}={value!r}"
        )
    return float(value)


class _Quadratic(keras.layers.Layer):
    """The per-channel coefficients and the two scales."""

    def __init__(
        self,
        coefficients=GELU_QUADRATIC,
        in_scale=1.0,
        out_scale=1.0,
        train_scale=False,
        data_format=None,
        **kwargs,
    ):
        super().__init__(**kwargs)
        self.coefficients = _check_coefficients(coefficients)
        self.in_scale = _check_scale(in_scale, "in_scale")
        self.out_scale = _check_scale(out_scale, "out_scale")
        if not isinstance(train_scale, bool):
            raise ValueError(
                f"`train_scale` must be a bool. Received: train_scale={train_scale!r}"
            )
        self.train_scale = train_scale
        self.data_format = standardize_data_format(data_format)
        self.input_spec = keras.layers.InputSpec(ndim=4)

    @property
    def _channel_axis(self) -> int:
        return -1 if self.data_format == "channels_last" else 1

    def _build_quadratic(self, input_shape):
        channels = known_channels(self, input_shape)
        self.coefficient_variable = self.add_weight(
            shape=(channels, 3),
            initializer=keras.initializers.Constant(
                [list(self.coefficients)] * channels
            ),
            name="coefficients",
        )
        # As the authors: a scale of 1 that is not trained is no weight.
        self.in_scale_variable = self._scale_weight("in_scale", self.in_scale)
        self.out_scale_variable = self._scale_weight("out_scale", self.out_scale)

    def _scale_weight(self, name, value):
        if not self.train_scale and value == 1.0:
            return None
        return self.add_weight(
            shape=(1,),
            initializer=keras.initializers.Constant(value),
            trainable=self.train_scale,
            name=name,
        )

    def _per_channel(self, k: int):
        c = self.coefficient_variable[:, k]
        if self.data_format == "channels_first":
            c = ops.reshape(c, (-1, 1, 1))
        return ops.cast(c, self.compute_dtype)

    def _scaled_input(self, x):
        if self.in_scale_variable is not None:
            x = ops.cast(self.in_scale_variable, x.dtype) * x
        return x

    def _scaled_output(self, y):
        if self.out_scale_variable is not None:
            y = ops.cast(self.out_scale_variable, y.dtype) * y
        return y

    def get_config(self):
        config = super().get_config()
        config.update(
            {
                "coefficients": list(self.coefficients),
                "in_scale": self.in_scale,
                "out_scale": self.out_scale,
                "train_scale": self.train_scale,
                "data_format": self.data_format,
            }
        )
        return config


@keras.saving.register_keras_serializable(package="keras_blurpool")
class PolynomialActivation(_Quadratic):
    """Per-channel trainable quadratic, optionally alias-free (AFC).

    `y = out_scale * (c0 + c1 * u + c2 * u ** 2)` with `u = in_scale * x`
    and `(c0, c1, c2)` trainable per channel. With `upsampling=s > 1` the
    input is first upsampled ideally by `s` (`IdealUpsampling2D`), the
    polynomial applied, and the result low-pass filtered at `1 / s` and
    subsampled by `s` (`IdealDownsampling2D`): with `s = 2` the squared
    band fits the upsampled grid, so nothing aliases (the authors'
    `up_poly_per_channel`).

    Args:
        coefficients: the initial `(c0, c1, c2)` of every channel; the
            default is the authors' quadratic fit of GELU.
        in_scale: the initial input scale, a number > 0 (AFC: 7).
        out_scale: the initial output scale, a number > 0 (AFC: 7).
        train_scale: whether the two scales are trainable weights (AFC:
            True); if False, a scale of 1 is no weight at all and another
            is a non-trainable one.
        upsampling: int from 1 to 16; 1 applies the polynomial alone.
        data_format: `"channels_last"` or `"channels_first"`; defaults to
            `keras.config.image_data_format()`.
        **kwargs: base layer arguments (`name`, `dtype`, ...).

    Input shape:
        `(batch, height, width, channels)` (channels_last) or `(batch,
        channels, height, width)`, channels known; with `upsampling > 1`
        also height and width, at least 2.

    Output shape:
        Same as the input.

    Example:

    >>> layer = PolynomialActivation(upsampling=2, in_scale=7, out_scale=7,
    ...                              train_scale=True)
    >>> tuple(layer(keras.random.normal((2, 8, 8, 4))).shape)
    (2, 8, 8, 4)
    """

    def __init__(
        self,
        coefficients=GELU_QUADRATIC,
        in_scale=1.0,
        out_scale=1.0,
        train_scale=False,
        upsampling=1,
        data_format=None,
        **kwargs,
    ):
        super().__init__(
            coefficients, in_scale, out_scale, train_scale, data_format, **kwargs
        )
        self.upsampling = _check_factor(upsampling, "upsampling")
        if self.upsampling > 1:
            self.upsample = IdealUpsampling2D(
                self.upsampling, data_format=self.data_format, name="upsample"
            )
            self.downsample = IdealDownsampling2D(
                self.upsampling, data_format=self.data_format, name="lowpass"
            )

    def build(self, input_shape):
        self._build_quadratic(input_shape)
        if self.upsampling > 1:
            self.upsample.build(input_shape)
            up_shape = self.upsample.compute_output_shape(input_shape)
            self.downsample.build(up_shape)

    def _polynomial(self, x):
        u = self._scaled_input(x)
        y = self._per_channel(0) + self._per_channel(1) * u + self._per_channel(2) * (u * u)
        return self._scaled_output(y)

    def call(self, inputs):
        if self.upsampling == 1:
            return self._polynomial(inputs)
        return self.downsample(self._polynomial(self.upsample(inputs)))

    def compute_output_shape(self, input_shape):
        return tuple(input_shape)

    def get_config(self):
        config = super().get_config()
        config["upsampling"] = self.upsampling
        return config


@keras.saving.register_keras_serializable(package="keras_blurpool")
class LowpassPolynomialActivation(_Quadratic):
    """AFC's stem activation: `c0 + c1 * u + c2 * u * lowpass(u)`.

    `u = in_scale * x`; `lowpass` is the ideal low-pass filter of cutoff
    `cutoff` (`ideal_lowpass`, same size out), the result is multiplied
    by `out_scale`. The product of `u` with its low-passed self has at
    most `1 + cutoff` times the band of `u`, which the stem's subsampling
    by 4 (cutoff 1/4) then cuts cleanly (the authors'
    `lpf_poly_per_channel`).

    Args:
        cutoff: fraction of the Nyquist frequency the inner low-pass
            filter keeps, in (0, 1] (AFC: 0.75).
        coefficients: the initial `(c0, c1, c2)` of every channel.
        in_scale: the initial input scale, a number > 0 (AFC: 7).
        out_scale: the initial output scale, a number > 0 (AFC: 7).
        train_scale: whether the two scales are trainable (AFC: True).
        data_format: `"channels_last"` or `"channels_first"`; defaults to
            `keras.config.image_data_format()`.
        **kwargs: base layer arguments (`name`, `dtype`, ...).

    Input shape:
        `(batch, height, width, channels)` (channels_last) or `(batch,
        channels, height, width)`, all but the batch known, each side at
        least `2 / cutoff`.

    Output shape:
        Same as the input.

    Example:

    >>> layer = LowpassPolynomialActivation(cutoff=0.75)
    >>> tuple(layer(keras.random.normal((2, 8, 8, 4))).shape)
    (2, 8, 8, 4)
    """

    def __init__(
        self,
        cutoff=0.75,
        coefficients=GELU_QUADRATIC,
        in_scale=1.0,
        out_scale=1.0,
        train_scale=False,
        data_format=None,
        **kwargs,
    ):
        super().__init__(
            coefficients, in_scale, out_scale, train_scale, data_format, **kwargs
        )
        self.cutoff = _check_cutoff(cutoff)

    def build(self, input_shape):
        self._build_quadratic(input_shape)
        sides = input_shape[1:3] if self.data_format == "channels_last" else input_shape[2:4]
        for side in sides:
            if side is None or side * self.cutoff < 2:
                raise ValueError(
                    f"LowpassPolynomialActivation '{self.name}' needs a known "
                    f"height and width of at least {2 / self.cutoff:g} (its "
                    f"low-pass filter of cutoff {self.cutoff}). Received "
                    f"input_shape={tuple(input_shape)}"
                )

    def call(self, inputs):
        u = self._scaled_input(inputs)
        low = ideal_lowpass(u, self.cutoff, self.data_format)
        y = self._per_channel(0) + self._per_channel(1) * u + self._per_channel(2) * (u * low)
        return self._scaled_output(y)

    def compute_output_shape(self, input_shape):
        return tuple(input_shape)

    def get_config(self):
        config = super().get_config()
        config["cutoff"] = self.cutoff
        return config

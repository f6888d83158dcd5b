"""Polyphase sampling: exactly shift-invariant downsampling (APS, LPS).

A stride-`s` subsampling keeps one of the `s * s` polyphase components
`x[:, i::s, j::s, :]` of its input, always the one at `(0, 0)`; shift the
input by one pixel and it keeps another component, so the output changes
by more than a shift. Adaptive polyphase sampling (APS; Chaman & Dokmanić,
"Truly shift-invariant convolutional neural networks", CVPR 2021) keeps
instead the component of largest norm, which a circular shift of the input
only moves: the output is a circular shift of the unshifted one. Learnable
polyphase sampling (LPS; Rojas-Gomez et al., NeurIPS 2022) scores each
component with a small network and keeps the best-scoring one at
inference (a Gumbel-softmax mixture while training). With circular
padding everywhere before the global pooling, a network of such layers is
exactly invariant to circular shifts of its input.

Components are numbered row-offset first: component `k` is the one at
offset `(k // s_w, k % s_w)`. A residual block must keep the same
component in its shortcut as in its main branch; the layers return their
choice (`return_index=True`) and take one (`index=`) for that.
"""

from __future__ import annotations

import warnings

import keras
import numpy as np
from keras import ops

from keras_blurpool._utils import check_int
from keras_blurpool.layers._checks import check_filter_size
from keras_blurpool.layers._checks import known_channels
from keras_blurpool.layers._checks import standardize_data_format
from keras_blurpool.layers._checks import standardize_strides
from keras_blurpool.layers._padding import pad_axes
from keras_blurpool.layers._padding import standardize_pad_type
from keras_blurpool.layers.blur_pool import BlurPool2D

NORMS = ("l1", "l2", "linf")

# Networks subsample by 2 (at most 4); a polyphase layer keeps one of
# `s_h * s_w` components and pads each side up to a multiple of its
# stride, so its memory grows with the stride. Unbounded, a stride of
# 20,000 asked the backend for gigabytes before failing.
MAX_POLYPHASE_STRIDE = 16

# The smallest Gumbel-softmax temperature. `softmax((logits + g) / tau)`
# is computed as `softmax((logits + g - max) / tau)`: finite for any
# normal float32 `tau`, and its gradient scales as `1 / tau`. Below 1e-4
# the weights are one-hot already for logit gaps of 1e-2 (the authors
# anneal to 0.025); a `tau` of 1e-50 was stored as float32 0.0 and every
# training output was NaN.
MIN_TAU = 1e-4


def check_tau(tau, name: str = "tau") -> float:
    """`tau` as a float from `MIN_TAU` to float32's largest, or raises.

    Args:
        tau: a Gumbel-softmax temperature.
        name: how the message names it (`"tau"`, a scheduler's return
            value, a checkpoint key).

    Returns:
        `float(tau)`.

    Raises:
        ValueError: `"`tau` must be a finite float from 0.0001 to ...
            Received: tau=..."`.

    Example:

    >>> check_tau(0.5)
    0.5
    """
    largest = float(np.finfo("float32").max)
    if (
        isinstance(tau, bool)
        or not isinstance(tau, (int, float, np.integer, np.floating))
        or not MIN_TAU <= tau <= largest
    ):
        raise ValueError(
            f"`{name}` must be a finite float from {MIN_TAU:g} to {largest:g} "
            "(the Gumbel-softmax temperature, stored in float32; training "
            f"is finite down to {MIN_TAU:g}). Received: {name}={tau!r}"
        )
    return float(tau)


class _Default(str):
    """A default argument value, told apart from the same value passed."""


# `pad_type`'s default: a `pad_type` passed together with the deprecated
# `padding` is an error, even when it is "circular".
_DEFAULT_PAD_TYPE = _Default("circular")


def _pad_type_from_padding(pad_type, kwargs) -> tuple:
    """`(pad_type, deprecated)`: the deprecated `padding` keyword's value
    when `kwargs` has one (removed from `kwargs`), else `pad_type`.

    Raises:
        ValueError: if both `pad_type` and `padding` were passed.
    """
    if "padding" not in kwargs:
        return pad_type, False
    padding = kwargs.pop("padding")
    if not isinstance(pad_type, _Default):
        raise ValueError(
            "`padding` is a deprecated alias of `pad_type`; pass `pad_type` "
            f"only. Received: pad_type={pad_type!r}, padding={padding!r}"
        )
    return padding, True


_PADDING_DEPRECATED = (
    "The `padding` argument of APSPool2D and LPSPool2D is deprecated; use "
    "`pad_type` (same values, as every other layer of keras_blurpool)."
)


def _dims(x) -> list:
    """The shape of `x`, static where known, else the run-time value."""
    dynamic = ops.shape(x)
    return [d if d is not None else dynamic[i] for i, d in enumerate(x.shape)]


def polyphase_components(x, strides, data_format):
    """The polyphase components of `x`, stacked: `(batch, s_h * s_w, ...)`.

    Component `k` (at offset `(k // s_w, k % s_w)`) is
    `[:, k] == x[:, i::s_h, j::s_w, :]` (channels_last; `(batch, P, C, h,
    w)` channels_first). One reshape and one transpose, whose gradient is
    one transpose back, where `s_h * s_w` strided slices would each write
    a full-size gradient. `x` must have spatial sizes divisible by the
    strides.
    """
    sh, sw = strides
    if data_format == "channels_last":
        b, height, width, c = _dims(x)
        x = ops.reshape(x, (b, height // sh, sh, width // sw, sw, c))
        x = ops.transpose(x, (0, 2, 4, 1, 3, 5))
        return ops.reshape(x, (b, sh * sw, height // sh, width // sw, c))
    b, c, height, width = _dims(x)
    x = ops.reshape(x, (b, c, height // sh, sh, width // sw, sw))
    x = ops.transpose(x, (0, 3, 5, 1, 2, 4))
    return ops.reshape(x, (b, sh * sw, c, height // sh, width // sw))


def accumulation_dtype() -> str:
    """float64 where the backend has it (JAX only with x64 enabled).

    A circular shift reorders the values a norm or a mean sums; in float32
    the sum then moves in its last bits, enough to flip the choice between
    two nearly tied components (seen on random ResNets at 64x64). Summed
    in float64, the choice moves only for ties closer than about 1e-16.
    """
    if keras.backend.backend() == "jax":
        import jax

        if not jax.config.jax_enable_x64:
            return "float32"
    return "float64"


def component_norms(components, norm: str):
    """`(batch, P)` norms of stacked components (the l2 one squared).

    Summed in `accumulation_dtype()`, never in the input's float16 (whose
    sum of squares overflows). Squaring the l2 norm keeps its order and
    saves a root.
    """
    c = ops.cast(components, accumulation_dtype())
    if norm == "l1":
        return ops.sum(ops.abs(c), axis=(2, 3, 4))
    if norm == "l2":
        return ops.sum(ops.square(c), axis=(2, 3, 4))
    # A NaN makes a sum NaN on every backend, but a maximum only on some
    # (TensorFlow's skips it): say so explicitly.
    largest = ops.max(ops.abs(c), axis=(2, 3, 4))
    has_nan = ops.any(ops.isnan(c), axis=(2, 3, 4))
    return ops.where(has_nan, ops.cast(float("nan"), largest.dtype), largest)


def choose_component(scores):
    """Per sample, the number of the best component: int32 `(batch,)`.

    The largest of the `(batch, P)` `scores` (the first of ties), except
    that a NaN score wins over every number (the first NaN): a component
    holding a NaN is kept, so the NaN reaches the output on every backend,
    as NumPy's `argmax` would choose. (TensorFlow's own argmax skips NaNs,
    JAX's and PyTorch's take them.)
    """
    is_nan = ops.isnan(scores)
    first_nan = ops.argmax(ops.cast(is_nan, "int32"), axis=1)
    finite = ops.where(is_nan, ops.cast(-float("inf"), scores.dtype), scores)
    best = ops.where(
        ops.any(is_nan, axis=1), first_nan, ops.argmax(finite, axis=1)
    )
    return ops.cast(best, "int32")


def select_component(components, index):
    """Per sample, the stacked component numbered `index` (int `(batch,)`).

    A gather: exact, and the gradient reaches the chosen component only.
    """
    dims = _dims(components)
    b, p = dims[0], dims[1]
    flat = ops.reshape(components, (-1, *dims[2:]))
    rows = ops.arange(b, dtype="int32") * p + ops.cast(index, "int32")
    return ops.take(flat, rows, axis=0)


def select_given_component(components, index, num_components: int):
    """`select_component` for an `index` given by the caller.

    Its values are known only when the graph runs: a number outside
    `[0, num_components)` cannot raise there on every backend (XLA has no
    errors), and a clamped or wrapped one would silently take another
    component or another sample's. Such a sample's output is NaN instead,
    on every backend. (Values known at the call, a list or a NumPy array,
    are checked there and refused with a ValueError.)
    """
    valid = ops.logical_and(
        ops.greater_equal(index, 0), ops.less(index, num_components)
    )
    safe = ops.cast(ops.where(valid, index, ops.zeros_like(index)), "int32")
    outputs = select_component(components, safe)
    valid = ops.reshape(valid, (-1,) + (1,) * (len(outputs.shape) - 1))
    return ops.where(valid, outputs, ops.cast(float("nan"), outputs.dtype))


def mix_components(components, weights):
    """Per sample, `sum_k weights[:, k] * component_k` (`weights` `(batch, P)`)."""
    weights = ops.cast(weights, components.dtype)
    return ops.sum(components * weights[:, :, None, None, None], axis=1)


def check_polyphase_index(layer, index):
    """`index` (a NumPy array if it was no tensor), or a ValueError.

    The index a polyphase layer (`APSPool2D`, `APSUpSampling2D`) is called
    with; `layer` has `name`, `strides` and `num_components`.

    Shapes and dtypes are checked on every index; the values of one
    known at the call (a Python list or int, a NumPy array) too. A
    tensor's values are known only when the graph runs: out-of-range
    numbers then give NaN outputs (`select_given_component`).
    """
    if index is None:
        return None
    p = layer.num_components
    if ops.is_tensor(index) or isinstance(index, keras.KerasTensor):
        values = None
        shape = tuple(index.shape)
        dtype = keras.backend.standardize_dtype(index.dtype)
    else:
        try:
            values = np.asarray(index)
        except (TypeError, ValueError, OverflowError):
            values = np.asarray(None)  # an object array: refused below
        shape, dtype = values.shape, values.dtype.name
    shown = index if values is None else np.array2string(
        values, threshold=8, separator=", "
    )
    allowed = (
        f"int component numbers from 0 to {p - 1} of shape (batch,) "
        f"(strides={layer.strides} has {p} polyphase components), or "
        f"float mixing weights of shape (batch, {p})"
    )
    integer = dtype.startswith(("int", "uint"))
    if len(shape) == 1 and not integer or (
        len(shape) == 2 and not dtype.startswith(("float", "bfloat"))
    ) or len(shape) not in (1, 2):
        raise ValueError(
            f"{type(layer).__name__} '{layer.name}': `index` must be "
            f"{allowed}. Received: index={shown} (shape {shape}, "
            f"dtype {dtype})"
        )
    if values is not None and len(shape) == 1 and values.size and (
        values.min() < 0 or values.max() >= p
    ):
        raise ValueError(
            f"{type(layer).__name__} '{layer.name}': `index` must be "
            f"{allowed}; a number outside 0..{p - 1} would take another "
            f"sample's component. Received: index={shown}"
        )
    return index if values is None else values


class _PolyphasePool(keras.layers.Layer):
    """What APSPool2D and LPSPool2D share: blur, padding, selection."""

    def __init__(
        self,
        filter_size=None,
        strides=2,
        pad_type="circular",
        return_index=False,
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
        if not isinstance(return_index, bool):
            raise ValueError(
                "`return_index` must be True or False. Received: "
                f"return_index={return_index!r}"
            )
        self.return_index = return_index
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
        """The stride-1 `BlurPool2D` before the selection, or None."""
        return self._blur

    @property
    def _spatial_axes(self):
        return (1, 2) if self.data_format == "channels_last" else (2, 3)

    @property
    def _channel_axis(self):
        return -1 if self.data_format == "channels_last" else 1

    def build(self, input_shape):
        channels = known_channels(self, input_shape)
        self._check_spatial_sizes(input_shape)
        if self._blur is not None:
            self._blur.build(input_shape)
        self.input_spec = keras.layers.InputSpec(
            ndim=4, axes={self._channel_axis: channels}
        )

    def _check_spatial_sizes(self, shape):
        """Raises unless each known spatial size can be padded to a
        multiple of its stride the layer's way.

        Circular padding wraps around as often as needed (a 1x1 map at
        stride 3 is repeated, as NumPy's "wrap"); zero and replicate
        padding fit any size; reflect padding needs a size larger than
        the padding, `s - n % s`.
        """
        if self.pad_type != "reflect":
            return
        for axis, s in zip(self._spatial_axes, self.strides):
            n = shape[axis]
            if n is not None and n % s and s - n % s >= n:
                size = "x".join(str(shape[a]) for a in self._spatial_axes)
                raise ValueError(
                    f"{type(self).__name__} '{self.name}' cannot reflect-pad "
                    f"a {size} feature map to a multiple of strides="
                    f"{self.strides}: it would pad {s - n % s} pixel(s) to a "
                    f"side of {n}, and reflect padding needs a side larger "
                    "than its padding. Use pad_type='circular', 'zero' or "
                    "'replicate', or smaller strides."
                )

    def _padded_sizes(self, shape):
        """Spatial sizes after padding up to multiples of the strides."""
        return [
            None if shape[a] is None else -(-shape[a] // s) * s
            for a, s in zip(self._spatial_axes, self.strides)
        ]

    def _prepare(self, inputs):
        """Blurs `inputs` and pads odd sizes; returns the components."""
        x = inputs if self._blur is None else self._blur(inputs)
        widths = {}
        for axis, s in zip(self._spatial_axes, self.strides):
            n = x.shape[axis]
            if n is None:
                # Only in a TensorFlow graph traced with relaxed shapes:
                # the padding is computed when it runs.
                x = self._pad_unknown(x, axis, s)
            elif n % s:
                # As APS: the missing rows/columns at the end, padded
                # the layer's way (circular keeps the invariance).
                widths[axis] = (0, s - n % s)
        if widths:
            x = pad_axes(x, self.pad_type, widths)
        return polyphase_components(x, self.strides, self.data_format)

    def _pad_unknown(self, x, axis, s):
        """Pads an axis of unknown size up to a multiple of `s`."""
        if s == 1:
            return x
        if self.pad_type not in ("circular", "zero"):
            raise ValueError(
                f"{type(self).__name__} '{self.name}' with pad_type="
                f"'{self.pad_type}' needs known spatial sizes when it is "
                "called (it pads odd sizes to multiples of strides="
                f"{self.strides}); 'circular' and 'zero' take unknown ones. "
                f"Received a tensor of shape {tuple(x.shape)}"
            )
        n = ops.shape(x)[axis]
        missing = (s - n % s) % s
        # Rows 0, 1, ... wrapping around: a side smaller than the padding
        # is repeated, as with known sizes.
        head = ops.take(x, ops.arange(missing) % n, axis=axis)
        if self.pad_type == "zero":
            head = ops.zeros_like(head)
        return ops.concatenate([x, head], axis=axis)

    def _apply_index(self, components, index, training):
        """The output for a given choice: an index, or mixing weights."""
        if len(index.shape) == 2:
            if index.shape[1] is not None and index.shape[1] != self.num_components:
                raise ValueError(
                    f"{type(self).__name__} '{self.name}': `index` weights "
                    f"must have {self.num_components} columns (one per polyphase "
                    f"component). Received shape {tuple(index.shape)}"
                )
            if training:
                return mix_components(components, index)
            return select_component(components, choose_component(index))
        if len(index.shape) != 1:
            raise ValueError(
                f"{type(self).__name__} '{self.name}': `index` must be int "
                "indices of shape (batch,) or mixing weights of shape "
                f"(batch, {self.num_components}). Received shape "
                f"{tuple(index.shape)}"
            )
        return select_given_component(components, index, self.num_components)

    def compute_output_spec(self, inputs, index=None, training=None):
        shape = self.compute_output_shape(inputs.shape)
        outputs = keras.KerasTensor(shape, dtype=self.compute_dtype)
        if not self.return_index:
            return outputs
        return outputs, self._choice_spec(inputs, index)

    def compute_output_shape(self, input_shape, index_shape=None):
        self._check_spatial_sizes(input_shape)
        if self._blur is not None:
            self._blur.compute_output_shape(input_shape)  # checks its padding
        shape = list(input_shape)
        for axis, size, s in zip(
            self._spatial_axes, self._padded_sizes(input_shape), self.strides
        ):
            shape[axis] = None if size is None else size // s
        return tuple(shape)

    def get_config(self):
        config = super().get_config()
        config.update(
            {
                "filter_size": self.filter_size,
                "strides": self.strides,
                "pad_type": self.pad_type,
                "return_index": self.return_index,
                "data_format": self.data_format,
            }
        )
        return config

    @classmethod
    def from_config(cls, config):
        # Configs saved before `padding` became `pad_type` load silently.
        if "padding" in config and "pad_type" not in config:
            config = dict(config)
            config["pad_type"] = config.pop("padding")
        return super().from_config(config)


@keras.saving.register_keras_serializable(package="keras_blurpool")
class APSPool2D(_PolyphasePool):
    """Adaptive polyphase sampling (Chaman & Dokmanić, CVPR 2021).

    Optionally blurs the input with a binomial filter (stride 1, padded as
    `pad_type` says), then keeps, for each sample, the polyphase component
    `x[:, i::s, j::s, :]` of largest norm over channels and space. A
    circular shift of the input shifts the output circularly and nothing
    else, so a network of circularly padded convolutions and APS layers
    followed by global pooling is exactly invariant to circular shifts.
    Sizes that are no multiple of the strides are first padded at the end
    (circularly by default, as APS does; a map smaller than the strides
    wraps around more than once, and reflect padding, which cannot, is
    refused at build). Gradients flow through the chosen component.

    In a residual block the shortcut must keep the same component as the
    main branch: build the main branch's layer with `return_index=True`,
    and call the shortcut's with `index=` that index.

    Args:
        filter_size: taps of the binomial blur before the selection, 1 to
            64, or None (1 and None: no blur; APS's default is 3).
        strides: int or tuple of 2 ints, the subsampling factor, 1 to
            `MAX_POLYPHASE_STRIDE` (16).
        norm: how components are compared: `"l2"` (default), `"l1"` or
            `"linf"` (largest absolute value). A component holding a NaN
            counts as the largest (the first such): it is kept, and the
            NaN reaches the output, on every backend.
        pad_type: padding of the blur and of odd sizes: `"circular"`
            (default; exact invariance), `"reflect"` (`"refl"`),
            `"replicate"` (`"repl"`) or `"zero"`. The keyword `padding` is
            a deprecated alias (it warns).
        return_index: if True, the layer returns `(outputs, index)`, with
            `index` the int32 `(batch,)` numbers of the chosen components
            (component `k` is at offset `(k // s_w, k % s_w)`).
        data_format: `"channels_last"` or `"channels_first"`; defaults to
            `keras.config.image_data_format()`.
        **kwargs: base layer arguments (`name`, `dtype`, ...).

    Call arguments:
        inputs: a 4-D tensor.
        index: optional choice to apply instead of choosing: int `(batch,)`
            component numbers from 0 to `s_h * s_w - 1` (an `APSPool2D`'s
            `return_index`), or float `(batch, s_h * s_w)` mixing weights
            (an `LPSPool2D`'s: mixed while training, their argmax
            otherwise). A number out of range is a ValueError when its
            value is known at the call (a list, an int, a NumPy array);
            in a tensor it gives that sample a NaN output, on every
            backend (a graph cannot raise on its values).
        training: whether the call is a training one (mixing weights only).

    Input shape:
        `(batch, height, width, channels)` (channels_last) or `(batch,
        channels, height, width)`.

    Output shape:
        `(batch, ceil(height / s_h), ceil(width / s_w), channels)`, or its
        channels_first layout.

    Example:

    >>> x = keras.random.normal((2, 8, 8, 4))
    >>> y, index = APSPool2D(return_index=True)(x)
    >>> tuple(y.shape), tuple(index.shape)
    ((2, 4, 4, 4), (2,))
    >>> shortcut = APSPool2D()(x, index=index)
    """

    def __init__(
        self,
        filter_size=None,
        strides=2,
        norm="l2",
        pad_type=_DEFAULT_PAD_TYPE,
        return_index=False,
        data_format=None,
        **kwargs,
    ):
        pad_type, deprecated = _pad_type_from_padding(pad_type, kwargs)
        if deprecated:
            warnings.warn(_PADDING_DEPRECATED, DeprecationWarning, stacklevel=2)
        if not isinstance(norm, str) or norm not in NORMS:
            raise ValueError(
                f"`norm` must be one of {NORMS}. Received: norm={norm!r}"
            )
        super().__init__(
            filter_size=filter_size,
            strides=strides,
            pad_type=pad_type,
            return_index=return_index,
            data_format=data_format,
            **kwargs,
        )
        self.norm = norm

    def __call__(self, *args, **kwargs):
        # Checked before Keras turns a list or NumPy array into a tensor,
        # whose values are then known only when the graph runs.
        if len(args) > 1:
            args = (args[0], self._check_index(args[1]), *args[2:])
        elif "index" in kwargs:
            kwargs["index"] = self._check_index(kwargs["index"])
        return super().__call__(*args, **kwargs)

    def _check_index(self, index):
        """`index` (a NumPy array if it was no tensor), or a ValueError
        (`check_polyphase_index`)."""
        return check_polyphase_index(self, index)

    def call(self, inputs, index=None, training=None):
        components = self._prepare(inputs)
        if index is None:
            index = choose_component(component_norms(components, self.norm))
            outputs = select_component(components, index)
        else:
            outputs = self._apply_index(components, index, training)
        if self.return_index:
            return outputs, index
        return outputs

    def _choice_spec(self, inputs, index=None):
        if index is not None:
            return keras.KerasTensor(index.shape, dtype=index.dtype)
        return keras.KerasTensor((inputs.shape[0],), dtype="int32")

    def get_config(self):
        config = super().get_config()
        config["norm"] = self.norm
        return config


@keras.saving.register_keras_serializable(package="keras_blurpool")
class LPSPool2D(_PolyphasePool):
    """Learnable polyphase sampling (Rojas-Gomez et al., NeurIPS 2022).

    Optionally blurs the input (as `APSPool2D`), splits it into its
    `s_h * s_w` polyphase components and scores each with a small network
    shared by all components: a 3x3 convolution to `hidden_channels`,
    ReLU, a second 3x3 convolution (both with bias and circular padding),
    and the mean over channels and space, one logit per component. At
    inference it keeps the component of highest logit (a NaN logit counts
    as the highest, as APS's NaN norms): that choice moves
    with the input under circular shifts, so the layer is exactly
    equivariant, as APS. While training it mixes the components with
    Gumbel-softmax weights `softmax((logits + g) / tau)` (the authors'
    soft relaxation, computed with the largest score subtracted first, so
    that it is finite for every allowed `tau`), so the scoring network
    learns.

    `tau` is a non-trainable variable: set it (`layer.tau.assign(0.5)`),
    or lower it over training with
    `keras_blurpool.callbacks.LPSTemperatureScheduler`.

    In a residual block the shortcut must sample as the main branch: build
    the main branch's layer with `return_index=True` and pass the weights
    it returns to the shortcut's `APSPool2D(...)(x, index=weights)`; during
    training that is the same Gumbel sample, at inference the same
    component.

    Args:
        filter_size: taps of the binomial blur before the split, 1 to 64,
            or None (1 and None: no blur).
        strides: int or tuple of 2 ints, the subsampling factor, 1 to
            `MAX_POLYPHASE_STRIDE` (16).
        hidden_channels: channels of the scoring network; None (default)
            takes the input's channels, as the authors do.
        pad_type: padding of the blur, of odd sizes and of the scoring
            convolutions: `"circular"` (default; exact invariance),
            `"reflect"` (`"refl"`), `"replicate"` (`"repl"`) or `"zero"`.
            The keyword `padding` is a deprecated alias (it warns).
        tau: initial Gumbel-softmax temperature, a float from `MIN_TAU`
            (1e-4) to float32's largest.
        return_index: if True, the layer returns `(outputs, weights)`:
            float32 `(batch, s_h * s_w)` mixing weights, the Gumbel-softmax
            sample while training and the one-hot choice at inference.
        seed: int seed of the Gumbel noise, or None.
        data_format: `"channels_last"` or `"channels_first"`; defaults to
            `keras.config.image_data_format()`.
        **kwargs: base layer arguments (`name`, `dtype`, ...).

    Call arguments:
        inputs: a 4-D tensor.
        training: whether to mix with Gumbel-softmax weights (True) or keep
            the best-scoring component.

    Input shape:
        `(batch, height, width, channels)` (channels_last) or `(batch,
        channels, height, width)`.

    Output shape:
        `(batch, ceil(height / s_h), ceil(width / s_w), channels)`, or its
        channels_first layout.

    Example:

    >>> x = keras.random.normal((2, 8, 8, 4))
    >>> layer = LPSPool2D(return_index=True)
    >>> y, weights = layer(x)
    >>> tuple(y.shape), tuple(weights.shape)
    ((2, 4, 4, 4), (2, 4))
    """

    def __init__(
        self,
        filter_size=None,
        strides=2,
        hidden_channels=None,
        pad_type=_DEFAULT_PAD_TYPE,
        tau=1.0,
        return_index=False,
        seed=None,
        data_format=None,
        **kwargs,
    ):
        pad_type, deprecated = _pad_type_from_padding(pad_type, kwargs)
        if deprecated:
            warnings.warn(_PADDING_DEPRECATED, DeprecationWarning, stacklevel=2)
        super().__init__(
            filter_size=filter_size,
            strides=strides,
            pad_type=pad_type,
            return_index=return_index,
            data_format=data_format,
            **kwargs,
        )
        if hidden_channels is not None:
            hidden_channels = check_int("hidden_channels", hidden_channels)
        tau = check_tau(tau)
        if seed is not None:
            seed = check_int("seed", seed, minimum=0)
        self.hidden_channels = hidden_channels
        self.initial_tau = float(tau)
        self.seed = seed
        self.seed_generator = keras.random.SeedGenerator(seed)
        self._score_convs = []

    def build(self, input_shape):
        super().build(input_shape)
        channels = input_shape[self._channel_axis]
        hidden = self.hidden_channels or channels
        shape = list(input_shape)
        for axis in self._spatial_axes:
            # The kernels do not depend on the sizes; the components are
            # smaller than the input (1x1 for a map of side <= strides).
            shape[axis] = None
        for i in (1, 2):
            conv = keras.layers.Conv2D(
                hidden,
                3,
                data_format=self.data_format,
                dtype=self.dtype_policy,
                name=f"score_conv{i}",
            )
            shape[self._channel_axis] = channels if i == 1 else hidden
            conv.build(tuple(shape))
            self._score_convs.append(conv)
        self.tau = self.add_weight(
            shape=(),
            initializer=keras.initializers.Constant(self.initial_tau),
            trainable=False,
            name="tau",
        )

    @property
    def scoring_layers(self) -> list:
        """The two `Conv2D` layers of the scoring network (once built)."""
        return list(self._score_convs)

    def component_logits(self, components):
        """`(batch, P)` scores of stacked `(batch, P, ...)` components.

        float64 where the backend has it (`accumulation_dtype`), so that
        the inference choice moves with circular shifts of the input.
        """
        dims = _dims(components)
        # Every component of every sample through the same network.
        x = ops.reshape(components, (-1, *dims[2:]))
        one = {a: (1, 1) for a in self._spatial_axes}
        for i, conv in enumerate(self._score_convs):
            x = conv(pad_axes(x, self.pad_type, one))
            if i == 0:
                x = ops.relu(x)
        # In float64 where it can (see `accumulation_dtype`).
        scores = ops.mean(ops.cast(x, accumulation_dtype()), axis=(1, 2, 3))
        return ops.reshape(scores, (dims[0], dims[1]))

    def call(self, inputs, training=None):
        components = self._prepare(inputs)
        logits = self.component_logits(components)
        if training:
            logits = ops.cast(logits, "float32")
            uniform = keras.random.uniform(
                ops.shape(logits),
                minval=1e-20,
                maxval=1.0,
                dtype="float32",
                seed=self.seed_generator,
            )
            gumbel = -ops.log(-ops.log(uniform))
            scores = logits + gumbel
            # Shifted before the division, the scores stay finite for any
            # tau >= MIN_TAU (the best one is 0); softmax ignores shifts.
            scores = scores - ops.stop_gradient(
                ops.max(scores, axis=1, keepdims=True)
            )
            weights = ops.softmax(scores / self.tau, axis=1)
            outputs = mix_components(components, weights)
        else:
            index = choose_component(logits)
            outputs = select_component(components, index)
            weights = ops.one_hot(index, self.num_components, dtype="float32")
        if self.return_index:
            return outputs, weights
        return outputs

    def _choice_spec(self, inputs, index=None):
        return keras.KerasTensor(
            (inputs.shape[0], self.num_components), dtype="float32"
        )

    def get_config(self):
        config = super().get_config()
        config.update(
            {
                "hidden_channels": self.hidden_channels,
                "tau": self.initial_tau,
                "seed": self.seed,
            }
        )
        return config

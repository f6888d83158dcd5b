"""BlurPool: low-pass filter, then subsample (Zhang, ICML 2019).

Strided convolutions and pools alias: a one-pixel shift of the input can
change the subsampled output completely. BlurPool blurs with a fixed,
normalised binomial kernel before subsampling, which suppresses the
frequencies that alias. The layers here equal `antialiased_cnns.BlurPool`
and `antialiased_cnns.BlurPool1D` of the PyTorch reference, with the
channel count taken from the input instead of a constructor argument.
"""

from __future__ import annotations

import math

import keras
import numpy as np
from keras import ops

from keras_blurpool._utils import is_int
from keras_blurpool.layers import _same_padding
from keras_blurpool.layers import _slices
from keras_blurpool.layers._checks import check_filter_size
from keras_blurpool.layers._checks import known_channels
from keras_blurpool.layers._checks import standardize_data_format
from keras_blurpool.layers._checks import standardize_strides
from keras_blurpool.layers._padding import check_pad_fits
from keras_blurpool.layers._padding import pad_axes
from keras_blurpool.layers._padding import standardize_pad_type

_IMPLEMENTATIONS = ("auto", "padded", "same", "slices")
# BlurPool1D has no "same" route (it is 2-D), BlurPool3D only pads.
_IMPLEMENTATIONS_BY_RANK = {
    1: ("auto", "padded", "slices"),
    2: _IMPLEMENTATIONS,
    3: ("auto", "padded"),
}


def binomial_filter(filter_size: int) -> np.ndarray:
    """Normalised 1-D binomial taps, e.g. `[1, 3, 3, 1] / 8` for size 4.

    Args:
        filter_size: number of taps, an int from 1 to `MAX_LAYER_FILTER_SIZE`
            (64).

    Returns:
        float64 NumPy array of `filter_size` taps summing to 1.

    Raises:
        ValueError: if `filter_size` is not an int in that range.

    Example:

    >>> binomial_filter(4).tolist()
    [0.125, 0.375, 0.375, 0.125]
    """
    filter_size = check_filter_size(filter_size)
    taps = np.array(
        [math.comb(filter_size - 1, i) for i in range(filter_size)],
        dtype="float64",
    )
    return taps / taps.sum()


def _torch_is_tracing() -> bool:
    """Whether PyTorch is tracing, compiling or exporting (torch backend)."""
    import torch

    return bool(
        torch.jit.is_tracing()
        or torch.compiler.is_compiling()
        or torch.onnx.is_in_onnx_export()
    )


def _torch_same_fits(layer, shape) -> bool:
    from keras_blurpool.layers import _torch_blur

    sizes = [shape[a] for a in layer._spatial_axes]
    return _torch_blur.same_route_fits(
        sizes, layer._taps, layer.strides, layer._pads
    )


class _BlurPool(keras.layers.Layer):
    """Shared implementation of BlurPool1D, BlurPool2D and BlurPool3D."""

    _rank = None  # number of spatial axes, set by subclasses

    def __init__(
        self,
        filter_size,
        strides=2,
        pad_type="reflect",
        pad_off=0,
        data_format=None,
        implementation="auto",
        **kwargs,
    ):
        super().__init__(**kwargs)
        check_filter_size(filter_size)
        pad_type = standardize_pad_type(pad_type)
        if not is_int(pad_off) or pad_off < 0:
            raise ValueError(
                "`pad_off` must be an int >= 0. "
                f"Received: pad_off={pad_off!r}"
            )
        data_format = standardize_data_format(data_format)
        allowed = _IMPLEMENTATIONS_BY_RANK[self._rank]
        if not isinstance(implementation, str) or implementation not in allowed:
            raise ValueError(
                f"`implementation` must be one of {allowed} for "
                f"{type(self).__name__}. Received: "
                f"implementation={implementation!r}"
            )
        self.filter_size = int(filter_size)
        self.implementation = implementation
        self.strides = standardize_strides(strides, self._rank)
        self.pad_type = pad_type
        self.pad_off = int(pad_off)
        self.data_format = data_format
        # The reference pads floor((k-1)/2) before and ceil((k-1)/2) after.
        self._pads = (
            (filter_size - 1) // 2 + self.pad_off,
            filter_size // 2 + self.pad_off,
        )
        taps = binomial_filter(self.filter_size)
        self._taps = taps
        kernel = taps
        for _ in range(self._rank - 1):
            kernel = np.multiply.outer(kernel, taps)
        self._kernel_2d = kernel  # spatial kernel, (k,) * rank
        self.input_spec = keras.layers.InputSpec(ndim=self._rank + 2)

    @property
    def _spatial_axes(self):
        first = 1 if self.data_format == "channels_last" else 2
        return tuple(range(first, first + self._rank))

    @property
    def _channel_axis(self):
        return -1 if self.data_format == "channels_last" else 1

    @property
    def filter(self) -> np.ndarray:
        """The normalised spatial filter, shape `(k,)`, `(k, k)` or `(k, k, k)`."""
        return self._kernel_2d.copy()

    def build(self, input_shape):
        channels = known_channels(self, input_shape)
        self._check_spatial_sizes(input_shape)
        if all(input_shape[a] is not None for a in self._spatial_axes):
            self._same_padding_plan(input_shape)  # checks "same" early
        self.input_spec = keras.layers.InputSpec(
            ndim=self._rank + 2, axes={self._channel_axis: channels}
        )

    def _check_spatial_sizes(self, shape):
        pad = max(self._pads)
        check_pad_fits(
            self, shape, [pad] * len(self._spatial_axes), pad,
            f"filter_size={self.filter_size}, pad_off={self.pad_off}",
        )

    def _output_length(self, n, axis_index):
        if n is None:
            return None
        before, after = self._pads
        return (n + before + after - self.filter_size) // self.strides[
            axis_index
        ] + 1

    def compute_output_shape(self, input_shape):
        # Refuses what build and call refuse (a map too small for the
        # padding): shape inference at a given size then says whether the
        # layer takes it (antialias_model's minimum input size).
        self._check_spatial_sizes(input_shape)
        shape = list(input_shape)
        for i, axis in enumerate(self._spatial_axes):
            shape[axis] = self._output_length(shape[axis], i)
        return tuple(shape)

    def _same_padding_is_exact(self, shape):
        """Whether the backend's "same" zero padding equals ours.

        It then pads inside the convolution and no padded copy of the input
        is made, which is most of the cost of the layer.
        """
        if self.pad_type != "zero" or self.implementation == "padded":
            return False
        return all(
            shape[axis] is not None
            and _same_padding.same_is_aligned(
                shape[axis], self.filter_size, self.strides[i], self._pads
            )
            for i, axis in enumerate(self._spatial_axes)
        )

    def _same_padding_plan(self, shape):
        """How to run on the backend's "same" convolution, or None.

        See `_same_padding`: it avoids writing a padded copy of the input
        and folding the copy's gradient back, the costly part of the layer.
        None with `implementation="padded"`; with `"same"`, an error where
        no exact plan exists for `shape`.
        """
        if self._rank != 2 or self.implementation == "padded":
            return None
        sizes = [shape[a] for a in self._spatial_axes]
        plan = _same_padding.plan_2d(
            sizes, self._taps, self.strides, self._pads, self.pad_type
        )
        if plan is None and self.implementation == "same":
            size = "x".join(str(n) for n in sizes)
            raise ValueError(
                f"{type(self).__name__} '{self.name}' with "
                f"implementation='same' has no exact \"same\"-convolution "
                f"route for a {size} feature map (filter_size="
                f"{self.filter_size}, strides={self.strides}, pad_type="
                f"'{self.pad_type}', pad_off={self.pad_off}). It needs "
                "known spatial sizes on which the backend's \"same\" "
                "padding starts the windows where the layer's does, e.g. "
                "filter_size 2 or 4 at stride 2 on even sizes, 3 at stride "
                "2 on odd sizes, pad_off=0. Use implementation='auto' (this "
                "route where it is exact, explicit padding elsewhere) or "
                "'padded'."
            )
        return plan

    def _read_pads(self, shape):
        """Per spatial axis, the `(before, after)` padding its windows read.

        `after` is cut to what the last window reaches: filter 4 at
        stride 2 on an even map reads one line after it, not two, and
        padding no window reads is work (TensorFlow's MirrorPad is a
        fifth faster on 58x58 than on 59x59). Unknown sizes keep it all.
        """
        before, after = self._pads
        pads = []
        for i, axis in enumerate(self._spatial_axes):
            n = shape[axis]
            if n is None:
                pads.append((before, after))
                continue
            out = self._output_length(n, i)
            reach = (out - 1) * self.strides[i] + self.filter_size - before - n
            pads.append((before, max(0, min(after, reach))))
        return pads

    def _pad(self, x):
        pads = self._read_pads(x.shape)
        return pad_axes(x, self.pad_type, dict(zip(self._spatial_axes, pads)))

    def _route(self, shape, training=None) -> str:
        """The route a call on `shape` runs: `"padded"`, `"same"` or
        `"slices"`.

        An explicit `implementation` is that route (`"same"` raises where
        it is not exact, `"slices"` where a spatial size is unknown).
        `"auto"` picks per backend, for the fastest route that runs
        (measured, docs/benchmarks.md, "BlurPool2D on every backend"):

        - JAX: `"slices"` (XLA fuses the slices into one pass; its
          depthwise convolution is many times slower on a CPU).
        - PyTorch: `"same"` where it is exact, in PyTorch's own
          operations (`F.conv2d` on the input as it lies in memory, no
          padded copy, the border lines recomputed in place) for
          training and inference calls alike; `"padded"` (`F.pad`,
          `F.conv2d`: two operations) elsewhere and while PyTorch traces,
          compiles or exports the model, so that an exported graph
          stays two operations per layer.
        - TensorFlow and others: `"same"` for training calls
          (`training=True`) where it is exact, `"padded"` elsewhere:
          inference and export are then two operations (pad,
          convolution) that every converter and delegate supports.
        """
        implementation = self.implementation
        sizes = [shape[a] for a in self._spatial_axes]
        known = all(n is not None for n in sizes)
        if implementation == "slices":
            if not known:
                size = "x".join(str(n) for n in sizes)
                raise ValueError(
                    f"{type(self).__name__} '{self.name}' with "
                    "implementation='slices' needs known spatial sizes; "
                    f"the input's are {size} (e.g. a TensorFlow graph "
                    "traced with None sizes). Use implementation='auto' "
                    "(this route where the sizes are known) or 'padded'. "
                    f"Received: input shape={tuple(shape)}"
                )
            return "slices"
        if implementation != "auto":
            if implementation == "same":
                self._same_padding_plan(shape)  # raises where not exact
            return implementation
        backend = keras.backend.backend()
        if backend == "jax":
            return "slices" if known else "padded"
        if backend == "torch":
            if self._rank == 2 and known and not _torch_is_tracing():
                plan = self._same_padding_plan(shape)
                if plan is not None and _torch_same_fits(self, shape):
                    return "same"
            return "padded"
        if self._rank == 2 and training is True:
            if self._same_padding_plan(shape) is not None:
                return "same"
        return "padded"

    def _kernel(self, channels):
        kernel = np.broadcast_to(
            self._kernel_2d[..., None, None],
            self._kernel_2d.shape + (channels, 1),
        )
        # A constant, not a weight: it is never trained and gets no gradient.
        return ops.convert_to_tensor(kernel, dtype=self.compute_dtype)

    def call(self, inputs, training=None):
        self._check_spatial_sizes(inputs.shape)
        route = self._route(inputs.shape, training)
        if route == "slices":
            sizes = [inputs.shape[a] for a in self._spatial_axes]
            plans = _slices.plans_for(
                sizes, self._taps, self.strides, self._pads, self.pad_type
            )
            return _slices.blur_slices(inputs, plans, self._spatial_axes)
        if self._rank == 2 and keras.backend.backend() == "torch":
            out = self._call_torch(inputs, route)
            if out is not None:
                return out
        channels = inputs.shape[self._channel_axis]
        kernel = self._kernel(channels)
        if route == "same":
            return _same_padding.blur_same_2d(
                inputs, kernel, self.strides, self.data_format,
                self._same_padding_plan(inputs.shape),
            )
        if self._same_padding_is_exact(inputs.shape):
            x, padding = inputs, "same"
        else:
            x, padding = self._pad(inputs), "valid"
        return ops.depthwise_conv(
            x,
            kernel,
            strides=self.strides,
            padding=padding,
            data_format=self.data_format,
        )

    def _call_torch(self, inputs, route):
        """PyTorch's own convolution on the input as it lies in memory
        (`_torch_blur`), or None where that route does not apply."""
        from keras_blurpool.layers import _torch_blur

        if route == "padded":
            return _torch_blur.blur_padded(
                inputs, self._taps, self.strides,
                self._read_pads(inputs.shape), self.pad_type,
                self.data_format,
            )
        sizes = [inputs.shape[a] for a in self._spatial_axes]
        if not _torch_blur.same_route_fits(
            sizes, self._taps, self.strides, self._pads
        ):
            return None  # the generic "same" route below
        plans = _slices.plans_for(
            sizes, self._taps, self.strides, self._pads, self.pad_type
        )
        return _torch_blur.blur_same(
            inputs, self._taps, self.strides, self._pads,
            self.data_format, plans,
        )

    def get_config(self):
        config = super().get_config()
        config.update(
            {
                "filter_size": self.filter_size,
                "strides": self.strides,
                "pad_type": self.pad_type,
                "pad_off": self.pad_off,
                "data_format": self.data_format,
                "implementation": self.implementation,
            }
        )
        return config


@keras.saving.register_keras_serializable(package="keras_blurpool")
class BlurPool2D(_BlurPool):
    """Anti-aliased 2-D downsampling: pad, binomial blur, subsample.

    Equals `antialiased_cnns.BlurPool(channels, pad_type, filt_size, stride,
    pad_off)`; the channel count comes from the input. Use it in place of a
    stride: evaluate the layer before it at stride 1, then `BlurPool2D`.

    Args:
        filter_size: taps of the binomial filter per axis, 1 to 64 (1 = no
            blur, plain subsampling; the paper's default is 4 for even
            maps).
        strides: int or tuple of 2 ints, the subsampling factor.
        pad_type: `"reflect"` (alias `"refl"`), `"replicate"` (`"repl"`),
            `"zero"` or `"circular"` (wraps around; exact equivariance to
            circular shifts). Pads `floor((k-1)/2) + pad_off` before and
            `ceil((k-1)/2) + pad_off` after on each spatial axis.
        pad_off: extra padding on each side, an int >= 0.
        data_format: `"channels_last"` or `"channels_first"`; defaults to
            `keras.config.image_data_format()`.
        implementation: how the layer is computed; the outputs and
            gradients are the same. `"padded"` writes a padded copy of the
            input and runs a "valid" convolution. `"same"` runs the
            backend's "same" convolution on the unpadded input and corrects
            the few border rows and columns; it is exact only for some
            sizes (filter_size 2 or 4 at stride 2 on even maps, 3 at
            stride 2 on odd maps, `pad_off=0`) and raises elsewhere, at
            build for known spatial sizes, else at call. `"slices"` sums
            strided slices of the input, one per tap and axis, with the
            border outputs from the few input lines they read (one fused
            pass under XLA); it needs known spatial sizes and raises at
            call without them. `"auto"` (default) picks per backend:
            on TensorFlow `"same"` for training calls (`training=True`,
            as in `model.fit`) where it is exact and `"padded"` elsewhere,
            inference and export included (two operations per layer,
            which every converter supports); on JAX `"slices"`; on
            PyTorch `"same"` where it is exact (`"padded"` elsewhere and
            while PyTorch traces or exports), in PyTorch's own
            operations.
        **kwargs: base layer arguments (`name`, `dtype`, ...).

    Raises:
        ValueError: for an argument outside the ranges above; at build or
            call, for a map too small for reflect padding, one with no
            exact `"same"` route under `implementation="same"`, or
            unknown spatial sizes under `implementation="slices"`.

    Example:

    >>> x = keras.random.normal((1, 32, 32, 8))
    >>> tuple(keras_blurpool.BlurPool2D(filter_size=4)(x).shape)
    (1, 16, 16, 8)
    """

    _rank = 2

    def __init__(
        self,
        filter_size=4,
        strides=2,
        pad_type="reflect",
        pad_off=0,
        data_format=None,
        implementation="auto",
        **kwargs,
    ):
        super().__init__(
            filter_size=filter_size,
            strides=strides,
            pad_type=pad_type,
            pad_off=pad_off,
            data_format=data_format,
            implementation=implementation,
            **kwargs,
        )


@keras.saving.register_keras_serializable(package="keras_blurpool")
class BlurPool1D(_BlurPool):
    """Anti-aliased 1-D downsampling: pad, binomial blur, subsample.

    Equals `antialiased_cnns.BlurPool1D`; the channel count comes from the
    input. Inputs are `(batch, steps, channels)` for `"channels_last"`.

    Args:
        filter_size: taps of the binomial filter, 1 to 64 (1 = plain
            subsampling).
        strides: int (or tuple of 1 int), the subsampling factor.
        pad_type: `"reflect"`/`"refl"`, `"replicate"`/`"repl"`, `"zero"`
            or `"circular"`.
        pad_off: extra padding on each side, an int >= 0.
        data_format: `"channels_last"` or `"channels_first"`; defaults to
            `keras.config.image_data_format()`.
        implementation: `"auto"` (default: `"slices"` on JAX; elsewhere
            the backend's "same" convolution where its zero padding is the
            layer's, explicit padding elsewhere), `"padded"` (always
            explicit) or `"slices"` (strided slices, see `BlurPool2D`).
            The border-corrected `"same"` route of `BlurPool2D` has no
            1-D version.
        **kwargs: base layer arguments (`name`, `dtype`, ...).

    Raises:
        ValueError: for an argument outside the ranges above, or a map too
            small for reflect padding.

    Example:

    >>> x = keras.random.normal((2, 100, 4))
    >>> tuple(keras_blurpool.BlurPool1D(filter_size=3)(x).shape)
    (2, 50, 4)
    """

    _rank = 1

    def __init__(
        self,
        filter_size=3,
        strides=2,
        pad_type="reflect",
        pad_off=0,
        data_format=None,
        implementation="auto",
        **kwargs,
    ):
        super().__init__(
            filter_size=filter_size,
            strides=strides,
            pad_type=pad_type,
            pad_off=pad_off,
            data_format=data_format,
            implementation=implementation,
            **kwargs,
        )


def _depthwise_conv_subsample(x, kernel, strides):
    """A "valid" channels_last depthwise convolution at `strides` (2 ints).

    TensorFlow's native depthwise kernel (float16, or any dtype without
    oneDNN) refuses unequal strides, so those run at stride 1 and are
    subsampled by slicing: the same values.
    """
    equal = strides[0] == strides[1]
    x = ops.depthwise_conv(
        x,
        kernel,
        strides=strides if equal else 1,
        padding="valid",
        data_format="channels_last",
    )
    if equal:
        return x
    return x[:, :: strides[0], :: strides[1]]


@keras.saving.register_keras_serializable(package="keras_blurpool")
class BlurPool3D(_BlurPool):
    """Anti-aliased 3-D downsampling: pad, binomial blur, subsample.

    The volumetric `BlurPool2D` (video, medical volumes): pads each of the
    three spatial axes by `floor((k-1)/2) + pad_off` before and
    `ceil((k-1)/2) + pad_off` after, correlates with the normalised
    `k`x`k`x`k` binomial kernel `outer(w, w, w)` (`w = binomial_filter(k)`)
    per channel, and keeps every `strides`-th output per axis. The kernel
    is an outer product, so the layer runs it as a 2-D blur over (H, W)
    then a 1-D blur over D, each followed by its subsampling: the same
    result as the 3-D correlation (to float rounding), at `2k` instead of
    `k**3` multiplies per output and with only 2-D convolutions, which
    every backend has.

    Args:
        filter_size: taps of the binomial filter per axis, 1 to 64 (1 =
            plain subsampling).
        strides: int or tuple of 3 ints, the subsampling factor per axis
            (D, H, W).
        pad_type: `"reflect"` (alias `"refl"`), `"replicate"` (`"repl"`),
            `"zero"` or `"circular"`.
        pad_off: extra padding on each side, an int >= 0.
        data_format: `"channels_last"` (inputs `(batch, D, H, W, C)`) or
            `"channels_first"` (`(batch, C, D, H, W)`); defaults to
            `keras.config.image_data_format()`.
        implementation: `"auto"` (default) or `"padded"`; both pad
            explicitly (the border-corrected `"same"` route of
            `BlurPool2D` has no 3-D version). Accepted for symmetry with
            the other BlurPool layers.
        **kwargs: base layer arguments (`name`, `dtype`, ...).

    Input shape:
        5-D tensor `(batch, D, H, W, C)` or `(batch, C, D, H, W)`, with a
        known channel count.

    Output shape:
        The same layout with each spatial size `n` replaced by
        `(n + 2 * pad_off - 1) // s + 1`, i.e. `ceil(n / s)` for
        `pad_off=0`.

    Raises:
        ValueError: for an argument outside the ranges above; at build or
            call, for an unknown channel count or a map too small for
            reflect padding (every spatial size must exceed the padding).

    Example:

    >>> x = keras.random.normal((1, 8, 16, 16, 3))
    >>> tuple(keras_blurpool.BlurPool3D()(x).shape)
    (1, 4, 8, 8, 3)
    """

    _rank = 3

    def __init__(
        self,
        filter_size=4,
        strides=2,
        pad_type="reflect",
        pad_off=0,
        data_format=None,
        implementation="auto",
        **kwargs,
    ):
        super().__init__(
            filter_size=filter_size,
            strides=strides,
            pad_type=pad_type,
            pad_off=pad_off,
            data_format=data_format,
            implementation=implementation,
            **kwargs,
        )

    def call(self, inputs):
        self._check_spatial_sizes(inputs.shape)
        shape = ops.shape(inputs)
        channels_last = self.data_format == "channels_last"
        if channels_last:
            depth, height, width = shape[1], shape[2], shape[3]
            channels = inputs.shape[-1]
        else:
            depth, height, width = shape[2], shape[3], shape[4]
            channels = inputs.shape[1]
        # channels_first runs one channel per batch row, so that every
        # reshape below only merges adjacent axes (no transposes).
        groups = channels if channels_last else 1
        taps = self._taps
        kernel_hw = np.broadcast_to(
            np.multiply.outer(taps, taps)[..., None, None],
            (self.filter_size, self.filter_size, groups, 1),
        )
        kernel_d = np.broadcast_to(
            taps[:, None, None, None], (self.filter_size, 1, groups, 1)
        )
        kernel_hw = ops.convert_to_tensor(kernel_hw, dtype=self.compute_dtype)
        kernel_d = ops.convert_to_tensor(kernel_d, dtype=self.compute_dtype)
        stride_d, stride_h, stride_w = self.strides

        # Padding 4-D tensors keeps reflect padding within what PyTorch's
        # pad supports (at most the last 3 axes of a 4-D or 5-D tensor).
        x = ops.reshape(inputs, (-1, height, width, groups))
        x = pad_axes(x, self.pad_type, {1: self._pads, 2: self._pads})
        x = _depthwise_conv_subsample(x, kernel_hw, (stride_h, stride_w))
        out_shape = ops.shape(x)
        out_h, out_w = out_shape[1], out_shape[2]
        x = ops.reshape(x, (-1, depth, out_h * out_w, groups))
        x = pad_axes(x, self.pad_type, {1: self._pads})
        x = _depthwise_conv_subsample(x, kernel_d, (stride_d, 1))
        out_d = ops.shape(x)[1]
        if channels_last:
            return ops.reshape(x, (-1, out_d, out_h, out_w, channels))
        return ops.reshape(x, (-1, channels, out_d, out_h, out_w))

"""BlurPool2D in PyTorch's own operations (the torch backend's routes).

Keras's `ops.depthwise_conv` on the torch backend copies a channels-last
input to a contiguous channels-first tensor, converts it back to
PyTorch's channels-last memory format for oneDNN, and transposes the
result: three full-size copies around one convolution. Here a
channels-last input is handed to `torch.nn.functional.conv2d` as the
channels-first *view* it already is (`permute`, no copy), which oneDNN
reads in place.

Two routes, as in `blur_pool.py`:

- `padded`: `F.pad` with the layer's padding, then a "valid" depthwise
  convolution.
- `same`: the convolution zero-pads by itself (`padding=before`, no
  padded copy); the few output lines whose window reaches into the
  padding are then recomputed exactly from thin slabs of the input and
  written in place. The gradient (`_SameBlur.backward`) is the
  convolution's input gradient of the output gradient with those lines
  zeroed, plus the slabs' own small gradients added in place.

Only imported on the torch backend.
"""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F

from keras_blurpool.layers import _slices

_TORCH_MODES = {"reflect": "reflect", "replicate": "replicate",
                "circular": "circular", "zero": "constant"}


def _to_nchw(x, data_format):
    # A channels-last tensor viewed as NCHW: PyTorch's channels_last memory
    # format, no copy.
    return x.permute(0, 3, 1, 2) if data_format == "channels_last" else x


def _from_nchw(y, data_format):
    return y.permute(0, 2, 3, 1) if data_format == "channels_last" else y


def _kernel(taps_h, taps_w, channels, like):
    kernel = np.multiply.outer(taps_h, taps_w)
    kernel = torch.as_tensor(kernel, dtype=like.dtype, device=like.device)
    # contiguous: oneDNN is slower on a broadcast (stride 0) weight
    return kernel.expand(channels, 1, *kernel.shape).contiguous()


def blur_padded(x, taps, strides, pads, pad_type, data_format):
    """Explicit padding, then a "valid" depthwise convolution.

    `pads` is `((before, after), (before, after))` for H and W.
    """
    x = _to_nchw(x, data_format)
    (top, bottom), (left, right) = pads
    if top or bottom or left or right:
        mode = _TORCH_MODES[pad_type]
        x = F.pad(x, (left, right, top, bottom), mode=mode)
    y = F.conv2d(x, _kernel(taps, taps, x.shape[1], x), stride=strides,
                 groups=x.shape[1])
    return _from_nchw(y, data_format)


def same_route_fits(sizes, taps, strides, pads):
    """Whether the zero-padded convolution has an output to start from.

    It pads `before` on both sides; where the layer pads more after, its
    output lacks the last line(s) (border lines, recomputed anyway).
    """
    k, before = len(taps), pads[0]
    return all(n + 2 * before >= k for n in sizes)


def blur_same(x, taps, strides, pads, data_format, plans):
    """Zero-padded convolution with exact border lines (see module doc).

    `plans` are the two `_slices.AxisPlan`s: interior outputs `[i0, i1)`
    read no padding; the border ones are recomputed as products with
    rows of the axes' matrices (`_slices.dense_matrix`).
    """
    spec = _SameSpec(np.asarray(taps, "float64"), tuple(strides), pads[0],
                     data_format, plans)
    return _SameBlur.apply(x, spec)


class _SameSpec:
    """What `_SameBlur` needs besides the input (no tensors)."""

    def __init__(self, taps, strides, before, data_format, plans):
        self.taps = taps
        self.strides = strides
        self.before = before
        self.data_format = data_format
        self.plans = plans
        plan_h, plan_w = plans
        a_h, a_w = (_slices.dense_matrix(plan) for plan in plans)
        # Border output lines per axis, and the input lines they read.
        self.rows = _border(plan_h)
        self.cols = _border(plan_w)
        self.rows_read = np.flatnonzero(a_h[self.rows].any(axis=0))
        self.cols_read = np.flatnonzero(a_w[self.cols].any(axis=0))
        self.a_rows = a_h[np.ix_(self.rows, self.rows_read)]  # H block
        self.a_cols = a_w[np.ix_(self.cols, self.cols_read)]  # W block
        self.a_w = a_w  # all of W, for whole border rows
        self.a_h_inner = a_h[plan_h.i0:plan_h.i1]  # interior rows of H
        self.axes = (1, 2) if data_format == "channels_last" else (2, 3)

    def short(self):
        """Output lines per axis that the symmetric convolution lacks."""
        k = len(self.taps)
        return tuple(
            plan.out - ((plan.n + 2 * self.before - k) // s + 1)
            for plan, s in zip(self.plans, self.strides)
        )

    def border_rows(self, x, m):
        """Whole border output rows: `a_rows @ x` along H, then `A_w`."""
        h, w = self.axes
        t = _block(x, h, self.a_rows, self.rows_read)
        return _along(t, w, m(self.a_w), self.data_format)

    def border_cols(self, x, m):
        """Border columns of the interior rows: `a_cols` along W, then the
        interior rows of `A_h`."""
        h, w = self.axes
        t = _block(x, w, self.a_cols, self.cols_read)
        return _along(t, h, m(self.a_h_inner), self.data_format)

    def rows_adjoint(self, g, m):
        h, w = self.axes
        t = _along(g, w, m(self.a_w).T, self.data_format)
        return _block(t, h, self.a_rows.T, range(len(self.rows)))

    def cols_adjoint(self, g, m):
        h, w = self.axes
        t = _along(g, h, m(self.a_h_inner).T, self.data_format)
        return _block(t, w, self.a_cols.T, range(len(self.cols)))

    def runs(self, lines):
        """`(first, count)` of the contiguous runs of `lines`."""
        runs = []
        for i in lines:
            if runs and i == runs[-1][0] + runs[-1][1]:
                runs[-1][1] += 1
            else:
                runs.append([i, 1])
        return runs


def _block(x, axis, matrix, lines):
    """`matrix @ x[lines]` along `axis`, as weighted sums of single lines.

    A few lines: a matrix product of this shape is many times slower
    (oneDNN/MKL thread badly over a 2 x 6 matrix).
    """
    picked = [x.narrow(axis, int(q), 1) for q in lines]
    rows = []
    for row in matrix:
        total = None
        for weight, line in zip(row, picked):
            if weight != 0:
                term = line * float(weight)
                total = term if total is None else total + term
        if total is None:  # a window wholly in zero padding
            shape = list(x.shape)
            shape[axis] = 1
            total = x.new_zeros(shape)
        rows.append(total)
    if not rows:
        return x.narrow(axis, 0, 0)
    return rows[0] if len(rows) == 1 else torch.cat(rows, axis)


def _along(x, axis, matrix, data_format):
    """`matrix` applied along spatial `axis` of `x` (a matrix product)."""
    last = data_format == "channels_last"
    n, a, b, c = x.shape
    if last and axis == 1:  # (n, h, w, c): matrix @ (n, h, w*c)
        y = torch.matmul(matrix, x.reshape(n, a, b * c))
        return y.reshape(n, -1, b, c)
    if last:  # (n, h, w, c): matrix @ (n*h, w, c)
        y = torch.matmul(matrix, x.reshape(n * a, b, c))
        return y.reshape(n, a, -1, c)
    if axis == 2:  # (n, c, h, w): matrix @ (n, c, h, w)
        return torch.matmul(matrix, x)
    return torch.matmul(x, matrix.T)  # (n, c, h, w) @ matrix.T


def _border(plan):
    """The output lines of `plan` whose window reads padding."""
    return np.array(list(range(plan.i0)) + list(range(plan.i1, plan.out)),
                    dtype="int64")


def _lines(x, axis, lines, spec):
    """`x`'s `lines` along `axis`: narrow runs, concatenated."""
    runs = [x.narrow(axis, first, count) for first, count in spec.runs(lines)]
    if not runs:  # no lines: windows wholly in zero padding
        return x.narrow(axis, 0, 0)
    return runs[0] if len(runs) == 1 else torch.cat(runs, axis)


def _matrices(like):
    cache = {}

    def m(array):
        key = id(array)
        if key not in cache:
            cache[key] = torch.tensor(array, dtype=like.dtype,
                                         device=like.device)
        return cache[key]

    return m


def _write(y, axis, lines, values, spec, other=None):
    """`y[lines] = values` along `axis`, one narrow copy per run; with
    `other = (axis2, first, count)` only that range of the other axis."""
    offset = 0
    for first, count in spec.runs(lines):
        target = y.narrow(axis, first, count)
        if other is not None:
            target = target.narrow(*other)
        target.copy_(values.narrow(axis, offset, count))
        offset += count


def _add_lines(dx, axis, lines, g):
    """`dx[lines] += g` along `axis`, in place, one line at a time
    (`index_add_` off the first axis is many times slower)."""
    for i, q in enumerate(lines):
        dx.narrow(axis, int(q), 1).add_(g.narrow(axis, i, 1))


def _zero(y, axis, lines, spec, other=None):
    for first, count in spec.runs(lines):
        target = y.narrow(axis, first, count)
        if other is not None:
            target = target.narrow(*other)
        target.zero_()


class _SameBlur(torch.autograd.Function):
    @staticmethod
    def forward(ctx, x, spec):
        fmt = spec.data_format
        xc = _to_nchw(x, fmt)
        channels = xc.shape[1]
        kernel = _kernel(spec.taps, spec.taps, channels, x)
        y = F.conv2d(xc, kernel, stride=spec.strides, padding=spec.before,
                     groups=channels)
        short = spec.short()
        if any(short):  # room for the last (border) lines
            y = F.pad(y, (0, short[1], 0, short[0]))
        y = _from_nchw(y, fmt)
        _fix_borders(y, x, spec, _matrices(x))
        ctx.spec = spec
        ctx.save_for_backward(x)
        return y

    @staticmethod
    def backward(ctx, dy):
        (x,) = ctx.saved_tensors
        spec = ctx.spec
        fmt = spec.data_format
        xc = _to_nchw(x, fmt)
        channels = xc.shape[1]
        kernel = _kernel(spec.taps, spec.taps, channels, x)
        (h, w), (plan_h, _) = spec.axes, spec.plans
        inner = dy.clone()
        inner_rows = (h, plan_h.i0, plan_h.i1 - plan_h.i0)
        _zero(inner, h, spec.rows, spec)
        if plan_h.i1 > plan_h.i0:
            _zero(inner, w, spec.cols, spec, other=inner_rows)
        inner = _to_nchw(inner, fmt)
        short = spec.short()
        if any(short):  # lines the convolution did not compute
            inner = inner[:, :, :inner.shape[2] - short[0],
                          :inner.shape[3] - short[1]]
        # The input itself (not an empty stand-in, as in
        # torch.nn.grad.conv2d_input) keeps oneDNN in the channels-last
        # layout: no full-size copies in, and a gradient that needs none.
        dx = torch.ops.aten.convolution_backward(
            inner, xc, kernel, None, list(spec.strides),
            [spec.before] * 2, [1, 1], False, [0, 0], channels,
            (True, False, False))[0]
        dx = _from_nchw(dx, fmt)
        m = _matrices(x)
        if len(spec.rows):
            g = spec.rows_adjoint(_lines(dy, h, spec.rows, spec), m)
            _add_lines(dx, h, spec.rows_read, g)
        if len(spec.cols) and plan_h.i1 > plan_h.i0:
            g = _lines(dy.narrow(*inner_rows), w, spec.cols, spec)
            g = spec.cols_adjoint(g, m)
            _add_lines(dx, w, spec.cols_read, g)
        return dx, None


def _fix_borders(y, x, spec, m):
    """Writes the exact border lines into the convolution's output `y`."""
    (h, w), (plan_h, _) = spec.axes, spec.plans
    if len(spec.rows):
        _write(y, h, spec.rows, spec.border_rows(x, m), spec)
    if len(spec.cols) and plan_h.i1 > plan_h.i0:
        _write(y, w, spec.cols, spec.border_cols(x, m), spec,
               other=(h, plan_h.i0, plan_h.i1 - plan_h.i0))

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
  padding are then recomputed exactly, one small convolution per side of
  a slab of the padded input (views of the lines it copies, joined), and
  written in place: a dozen operations. The gradient
  (`_SameBlur.backward`) is the convolution's input gradient of the
  output gradient with those lines zeroed, plus each slab's gradient
  folded back onto the lines it copies, in place.

Only imported on the torch backend.
"""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F

from keras_blurpool.layers._padding import padded_source

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
    read no padding; each side's border outputs are recomputed by one
    small convolution of a slab of the padded input, built from views of
    the input lines it copies (`_Slab`).
    """
    spec = _SameSpec(np.asarray(taps, "float64"), tuple(strides), pads[0],
                     data_format, plans)
    return _SameBlur.apply(x, spec)


def _runs(positions, n, pad_type):
    """Padded `positions` (consecutive) as runs: `(q, count)` for input
    lines `q ... q + count - 1`, `(None, count)` for zero lines."""
    runs = []
    for p in positions:
        q = p if 0 <= p < n else padded_source(p, n, pad_type)
        last = runs[-1] if runs else None
        if last is not None and (
                (q is None and last[0] is None)
                or (q is not None and last[0] is not None
                    and q == last[0] + last[1])):
            last[1] += 1
        else:
            runs.append([q, 1])
    return [tuple(run) for run in runs]


def _build(t, axis, runs):
    """The padded lines `runs` of `t` along `axis`: views, concatenated."""
    parts = []
    for q, count in runs:
        if q is None:
            shape = list(t.shape)
            shape[axis] = count
            parts.append(t.new_zeros(shape))
        else:
            parts.append(t.narrow(axis, q, count))
    return parts[0] if len(parts) == 1 else torch.cat(parts, axis)


def _fold(g, axis, runs, into):
    """Adds the gradient `g` of `_build(t, axis, runs)` into `into` (the
    gradient of `t`), in place: one add per run of input lines."""
    offset = 0
    for q, count in runs:
        if q is not None:
            into.narrow(axis, q, count).add_(g.narrow(axis, offset, count))
        offset += count


class _Slab:
    """One side's border outputs: `out` (an index of the output) from the
    padded lines `runs_h` x `runs_w` of the input."""

    def __init__(self, out, runs_h, runs_w):
        self.out = out
        self.runs_h = runs_h
        self.runs_w = runs_w


class _SameSpec:
    """What `_SameBlur` needs besides the input (no tensors)."""

    def __init__(self, taps, strides, before, data_format, plans):
        self.taps = taps
        self.strides = strides
        self.before = before
        self.data_format = data_format
        self.plans = plans
        self.axes = (1, 2) if data_format == "channels_last" else (2, 3)
        (plan_h, plan_w), (h, w) = plans, self.axes
        k = len(taps)

        def positions(plan, first, last):
            # padded positions that outputs [first, last) read
            return range(first * plan.stride - plan.before,
                         (last - 1) * plan.stride - plan.before + k)

        def runs(plan, first, last):
            return _runs(positions(plan, first, last), plan.n, plan.pad_type)

        self.slabs = []
        # Whole border rows, then the border columns of the interior rows.
        all_w = runs(plan_w, 0, plan_w.out)
        for first, last in ((0, plan_h.i0), (plan_h.i1, plan_h.out)):
            if last > first:
                out = [slice(None)] * 4
                out[h] = slice(first, last)
                self.slabs.append(_Slab(tuple(out),
                                        runs(plan_h, first, last), all_w))
        if plan_h.i1 > plan_h.i0:
            inner_h = runs(plan_h, plan_h.i0, plan_h.i1)
            for first, last in ((0, plan_w.i0), (plan_w.i1, plan_w.out)):
                if last > first:
                    out = [slice(None)] * 4
                    out[h] = slice(plan_h.i0, plan_h.i1)
                    out[w] = slice(first, last)
                    self.slabs.append(_Slab(tuple(out), inner_h,
                                            runs(plan_w, first, last)))

    def short(self):
        """Output lines per axis that the symmetric convolution lacks."""
        k = len(self.taps)
        return tuple(
            plan.out - ((plan.n + 2 * self.before - k) // s + 1)
            for plan, s in zip(self.plans, self.strides)
        )

    def slab_outputs(self, x, slab, kernel):
        h, w = self.axes
        t = _build(_build(x, h, slab.runs_h), w, slab.runs_w)
        t = _to_nchw(t, self.data_format)
        y = F.conv2d(t, kernel, stride=self.strides, groups=t.shape[1])
        return _from_nchw(y, self.data_format)

    def add_slab_gradient(self, dx, x, slab, kernel, dy_part):
        """Adds to `dx`, in place, the gradient of one slab's outputs."""
        (h, w), fmt = self.axes, self.data_format
        shape = list(x.shape)
        shape[h] = sum(count for _, count in slab.runs_h)
        shape[w] = sum(count for _, count in slab.runs_w)
        # The slab itself is not needed, only its shape and layout.
        stand_in = _to_nchw(x.new_empty(shape), fmt)
        g = torch.ops.aten.convolution_backward(
            _to_nchw(dy_part, fmt), stand_in, kernel, None,
            list(self.strides), [0, 0], [1, 1], False, [0, 0],
            stand_in.shape[1], (True, False, False))[0]
        g = _from_nchw(g, fmt)
        # Fold the padded lines back onto the input lines they copy: one
        # in-place add per (row run, column run), never a full-size buffer.
        row_offset = 0
        for q_h, count_h in slab.runs_h:
            if q_h is not None:
                rows = g.narrow(h, row_offset, count_h)
                _fold(rows, w, slab.runs_w, dx.narrow(h, q_h, count_h))
            row_offset += count_h


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
        for slab in spec.slabs:
            y[slab.out] = spec.slab_outputs(x, slab, kernel)
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
        inner = dy.clone()
        for slab in spec.slabs:
            inner[slab.out] = 0
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
        for slab in spec.slabs:
            spec.add_slab_gradient(dx, x, slab, kernel, dy[slab.out])
        return dx, None

"""BlurPool as strided slices: the "slices" implementation.

Per spatial axis the layer is a linear map `y = A x`, `A` the (outputs x
inputs) matrix of pad, blur and subsample. Away from the borders row `i`
of `A` is the taps at columns `i*s - before ... i*s - before + k - 1`, so

    y[i0:i1] = sum_t taps[t] * x[i0*s - before + t :: s]      (k slices)

and only the few outputs whose window leaves the input (`[0, i0)` and
`[i1, out)`) read padded positions: they are weighted sums of a few input
lines, taken from `A`'s rows, and concatenated around the interior. No
padded copy of the input is written, and no convolution runs: under a
compiler that fuses elementwise work (XLA: JAX, TensorFlow with
`jit_compile=True`) the whole axis is one pass over the input, where the
backends' depthwise convolutions are many times slower on a CPU.

The gradient is the adjoint `A.T`, written the same way (`adjoint`)
under `keras.ops.custom_gradient`: per output phase `r` (input lines
`q = m*s + r`) a sum of shifted slices of the output gradient, the phases
interleaved by a stack and a reshape, the border lines' few terms added
in. Autodiff of the slices would instead pad the gradient once per tap,
several full-size passes.

Plans hold only the border rows (`_Block`), so their size does not grow
with the map; they are cached per axis length.
"""

from __future__ import annotations

import dataclasses
import functools

import keras
import numpy as np
from keras import ops

from keras_blurpool.layers._padding import padded_source

# Border blocks with more nonzeros than this are applied as one
# tensordot instead of a sum of weighted lines (large filters at stride 1).
_MAX_TERMS = 64


@dataclasses.dataclass(frozen=True)
class _Block:
    """Rows of `A` for a few border outputs: `matrix[:, j]` reads `cols[j]`."""

    cols: tuple
    matrix: np.ndarray  # (outputs, len(cols)), float64


@dataclasses.dataclass(frozen=True)
class AxisPlan:
    """One spatial axis of the layer: interior slices and border blocks."""

    n: int  # input length
    out: int  # output length
    stride: int
    before: int  # padding before the first input line
    after: int  # padding after the last one
    pad_type: str
    taps: tuple  # the 1-D taps, float64
    i0: int  # interior outputs are [i0, i1)
    i1: int
    lo: _Block | None  # outputs [0, i0)
    hi: _Block | None  # outputs [i1, out)


@functools.lru_cache(maxsize=256)
def axis_plan(n, taps, stride, pads, pad_type):
    """The `AxisPlan` of a length-`n` axis (all arguments hashable)."""
    k, (before, after) = len(taps), pads
    out = (n + before + after - k) // stride + 1
    i0 = min(out, -(-before // stride))
    i1 = max(i0, min(out, (n - k + before) // stride + 1))

    def block(outputs):
        if not outputs:
            return None
        entries = {}
        for row, i in enumerate(outputs):
            for t, w in enumerate(taps):
                p = i * stride + t - before
                q = p if 0 <= p < n else padded_source(p, n, pad_type)
                if q is not None:
                    entries[row, q] = entries.get((row, q), 0.0) + w
        cols = tuple(sorted({q for _, q in entries}))
        matrix = np.zeros((len(outputs), len(cols)))
        for (row, q), w in entries.items():
            matrix[row, cols.index(q)] = w
        return _Block(cols, matrix)

    return AxisPlan(
        n=n, out=out, stride=stride, before=before, after=after,
        pad_type=pad_type, taps=taps,
        i0=i0, i1=i1,
        lo=block(list(range(i0))), hi=block(list(range(i1, out))),
    )


@functools.lru_cache(maxsize=64)
def _dense(n, taps, stride, pads, pad_type):
    plan = axis_plan(n, taps, stride, pads, pad_type)
    k, before = len(taps), plan.before
    matrix = np.zeros((plan.out, n))
    for i in range(plan.i0, plan.i1):
        start = i * stride - before
        matrix[i, start:start + k] = taps
    for block, first in ((plan.lo, 0), (plan.hi, plan.i1)):
        if block is not None:
            rows = range(first, first + len(block.matrix))
            matrix[np.ix_(rows, block.cols)] = block.matrix
    matrix.setflags(write=False)
    return matrix


def dense_matrix(plan):
    """`A` of `plan` as a dense (out, n) float64 array (cached, read-only).

    For small maps, where applying it as a matrix product is one
    operation; its size grows with the map's, unlike the plan's.
    """
    return _dense(plan.n, plan.taps, plan.stride,
                  (plan.before, plan.after), plan.pad_type)


def plans_for(sizes, taps, strides, pads, pad_type):
    """One `AxisPlan` per spatial axis, or None if a size is unknown."""
    if any(n is None for n in sizes):
        return None
    taps = tuple(float(t) for t in taps)
    return tuple(
        axis_plan(int(n), taps, int(s), tuple(int(p) for p in pads), pad_type)
        for n, s in zip(sizes, strides)
    )


def blur_slices(x, plans, axes):
    """The layer's output: each axis of `axes` through its `AxisPlan`."""

    @ops.custom_gradient
    def blur(x):
        y = x
        for plan, axis in zip(plans, axes):
            y = forward_axis(y, plan, axis)

        def grad(*args, upstream=None):
            if upstream is None:
                (upstream,) = args
            if len(plans) == 2:
                return adjoint_2d(upstream, plans, axes)
            g = upstream
            for plan, axis in reversed(tuple(zip(plans, axes))):
                g = adjoint(g, plan, axis)
            return g

        return y, grad

    return blur(x)


def _take(x, axis, start, count, step=1):
    """`count` lines of `x` along `axis` from `start`, every `step`."""
    index = [slice(None)] * len(x.shape)
    index[axis] = slice(start, start + (count - 1) * step + 1, step)
    return x[tuple(index)]


def _weighted_sum(terms):
    """`sum(w * t)` over `(w, t)` pairs, weights as Python floats; terms
    that are None are left out, and so is the sum (None) of none."""
    total = None
    for w, t in terms:
        if t is None:
            continue
        term = t if w == 1 else t * w
        total = term if total is None else total + term
    return total


def _concat(parts, axis):
    return parts[0] if len(parts) == 1 else ops.concatenate(parts, axis=axis)


def forward_axis(x, plan, axis):
    """`A @ x` along `axis`: the layer along one spatial axis."""
    parts = []
    if plan.lo is not None:
        parts.append(apply_block(x, plan.lo, axis))
    if plan.i1 > plan.i0:
        parts.append(interior(x, plan, axis))
    if plan.hi is not None:
        parts.append(apply_block(x, plan.hi, axis))
    return _concat(parts, axis)


def interior(x, plan, axis):
    """The interior outputs `[i0, i1)` along `axis`: the k strided slices."""
    start = plan.i0 * plan.stride - plan.before
    count = plan.i1 - plan.i0
    return _weighted_sum(
        (w, _take(x, axis, start + t, count, plan.stride))
        for t, w in enumerate(plan.taps) if w != 0
    )


def apply_block(x, block, axis):
    """`block.matrix @ x[cols]` along `axis`: a few output lines."""
    matrix = block.matrix
    if np.count_nonzero(matrix) > _MAX_TERMS:
        return _tensordot(ops.take(x, block.cols, axis=axis), matrix, axis)
    lines = [_take(x, axis, q, 1) for q in block.cols]
    rows = [_weighted_sum((float(w), line) for w, line in zip(row, lines)
                          if w != 0) for row in matrix]
    # A window wholly in zero padding reads nothing: a zero line.
    rows = [ops.zeros_like(_take(x, axis, 0, 1)) if row is None else row
            for row in rows]
    return _concat(rows, axis)


def _tensordot(x, matrix, axis):
    """`matrix` applied along `axis` of `x` (its columns to that axis)."""
    m = ops.convert_to_tensor(matrix, dtype=x.dtype)
    y = ops.tensordot(x, m, axes=[[axis], [1]])  # new axis last
    return ops.moveaxis(y, -1, axis)


def adjoint(g, plan, axis, interior_only=False):
    """`A.T @ g` along `axis`, `g` holding all `out` output lines; with
    `interior_only`, `g` holds the interior outputs `[i0, i1)` only and
    the border rows of `A` are left out (the gradient of `interior`)."""
    n, s = plan.n, plan.stride
    length = -(-n // s)  # lines per phase (the last phases may overhang)
    phases = [[] for _ in range(s)]  # (weight, tensor) terms per phase
    pads = [[] for _ in range(s)]  # (first line, tensor) border terms
    count = plan.i1 - plan.i0
    if count > 0:
        interior = g if interior_only else _take(g, axis, plan.i0, count)
        # Input line q = m*s + r reads output i with tap t = q - i*s +
        # before, i.e. i = m - j for t = j*s + r + before.
        for r, j, w in _phase_terms(plan):
            # phase line m reads interior[m - j - i0], zero outside it
            phases[r].append((w, _shifted(interior, axis, j + plan.i0, length)))
    for block, first in ((plan.lo, 0), (plan.hi, plan.i1)):
        if block is None or interior_only:
            continue
        rows = _take(g, axis, first, len(block.matrix))
        for q, column in block_adjoint(rows, block, axis):
            pads[q % s].append((q // s, column))
    lines = []
    for r in range(s):
        total = _weighted_sum(phases[r])
        for m, column in _runs(pads[r], axis):
            widths = [(0, 0)] * len(g.shape)
            widths[axis] = (m, length - m - column.shape[axis])
            column = ops.pad(column, widths)
            total = column if total is None else total + column
        if total is None:
            total = ops.zeros_like(_take(g, axis, 0, 1))
            widths = [(0, 0)] * len(g.shape)
            widths[axis] = (0, length - 1)
            total = ops.pad(total, widths)
        lines.append(total)
    if s == 1:
        return lines[0] if length == n else _take(lines[0], axis, 0, n)
    stacked = ops.stack(lines, axis=axis + 1)
    shape = [-1 if d is None else d for d in stacked.shape]
    shape[axis:axis + 2] = [length * s]
    dx = ops.reshape(stacked, shape)
    return dx if length * s == n else _take(dx, axis, 0, n)


def _phase_terms(plan):
    """`(r, j, tap)`: input line `q = m*s + r` reads interior output
    `m - j` with that tap (`t = j*s + r + before`)."""
    s, k = plan.stride, len(plan.taps)
    terms = []
    for r in range(s):
        for j in range(-((r + plan.before) // s) - 1, k // s + 2):
            t = j * s + r + plan.before
            if 0 <= t < k and plan.taps[t] != 0:
                terms.append((r, j, plan.taps[t]))
    return terms


def adjoint_2d(g, plans, axes):
    """`A_h.T @ g @ A_w` over two axes at once: the gradient of the 2-D
    layer, written by one pass over the input's size.

    Applying the two 1-D adjoints in turn writes an intermediate of half
    the input's size and reads it back; here the interior outputs' part
    is one sum per input phase `(r_h, r_w)` of 2-D shifted slices of the
    output gradient, the phases interleaved by two stacks and a reshape,
    and the border outputs' parts (thin) are padded and added.
    """
    (plan_h, plan_w), (h, w) = plans, axes
    count_h, count_w = plan_h.i1 - plan_h.i0, plan_w.i1 - plan_w.i0
    if count_h <= 0 or count_w <= 0:  # no interior: small maps
        return adjoint(adjoint(g, plan_w, w), plan_h, h)
    length_h = -(-plan_h.n // plan_h.stride)
    length_w = -(-plan_w.n // plan_w.stride)
    terms_h, terms_w = _phase_terms(plan_h), _phase_terms(plan_w)
    inner = _take(_take(g, h, plan_h.i0, count_h), w, plan_w.i0, count_w)
    # One zero-padded copy of the interior gradient (a quarter of the
    # input's size at stride 2) that every term slices.
    widths = [(0, 0)] * len(g.shape)
    margins = {}
    for axis, terms, plan, count, length in (
            (h, terms_h, plan_h, count_h, length_h),
            (w, terms_w, plan_w, count_w, length_w)):
        shifts = [j + plan.i0 for _, j, _ in terms]
        lo = max(0, max(shifts))
        hi = max(0, length - min(shifts) - count)
        widths[axis] = (lo, hi)
        margins[axis] = lo
    padded = ops.pad(inner, widths) if any(map(any, widths)) else inner
    rows = []
    for r_h in range(plan_h.stride):
        phases = []
        for r_w in range(plan_w.stride):
            total = None
            for rh, jh, wh in terms_h:
                for rw, jw, ww in terms_w:
                    if rh != r_h or rw != r_w:
                        continue
                    term = _take(padded, h, margins[h] - jh - plan_h.i0,
                                 length_h)
                    term = _take(term, w, margins[w] - jw - plan_w.i0,
                                 length_w) * (wh * ww)
                    total = term if total is None else total + term
            phases.append(total)
        rows.append(phases)
    some = next(t for phases in rows for t in phases if t is not None)
    rows = [[ops.zeros_like(some) if t is None else t for t in phases]
            for phases in rows]
    stacked = ops.stack([ops.stack(phases, axis=w + 1) for phases in rows],
                        axis=h + 1)
    shape = [-1 if d is None else d for d in stacked.shape]
    shape[w + 1:w + 3] = [length_w * plan_w.stride]
    shape[h:h + 2] = [length_h * plan_h.stride]
    dx = ops.reshape(stacked, shape)
    if length_h * plan_h.stride != plan_h.n:
        dx = _take(dx, h, 0, plan_h.n)
    if length_w * plan_w.stride != plan_w.n:
        dx = _take(dx, w, 0, plan_w.n)
    # Border output rows (whole rows), then border output columns of the
    # interior rows: thin, each padded to full size and added.
    for block, first in ((plan_h.lo, 0), (plan_h.hi, plan_h.i1)):
        if block is None:
            continue
        lines = adjoint(_take(g, h, first, len(block.matrix)), plan_w, w)
        dx = _add_runs(dx, block_adjoint(lines, block, h), h, plan_h.n)
    for block, first in ((plan_w.lo, 0), (plan_w.hi, plan_w.i1)):
        if block is None:
            continue
        cols = _take(_take(g, h, plan_h.i0, count_h), w, first,
                     len(block.matrix))
        lines = [(q, adjoint(col, plan_h, h, interior_only=True))
                 for q, col in block_adjoint(cols, block, w)]
        dx = _add_runs(dx, lines, w, plan_w.n)
    return dx


def _add_runs(x, lines, axis, n):
    """`x` plus the `(q, line)` lines at `q` along `axis` (length `n`).

    Each run is a slice update: XLA updates the buffer in place, where
    adding a padded run would make the whole pass select per element
    (twice the time of the whole gradient on a CPU). Under a
    `keras.distribution` (a batch sharded over devices) the runs are
    padded and added instead: there the slice updates gave gradients
    that differed from one device's by more than rounding
    (tests/test_jax_data_parallel.py).
    """
    in_place = keras.distribution.distribution() is None
    for q, run in _runs(lines, axis):
        if in_place:
            start = [0] * len(x.shape)
            start[axis] = q
            current = _take(x, axis, q, run.shape[axis])
            x = ops.slice_update(x, start, current + run)
        else:
            widths = [(0, 0)] * len(x.shape)
            widths[axis] = (q, n - q - run.shape[axis])
            x = x + ops.pad(run, widths)
    return x


def _shifted(x, axis, shift, length):
    """`length` lines `m` of `x[m - shift]` along `axis`, zero outside `x`.

    Each term is cut and padded on its own, so that a compiler fuses the
    padding into the sum instead of writing a padded copy shared by all.
    """
    n = x.shape[axis]
    first, last = max(0, shift), min(length, n + shift)  # lines of x used
    if last <= first:
        return None
    part = _take(x, axis, first - shift, last - first)
    if first == 0 and last == length:
        return part
    widths = [(0, 0)] * len(x.shape)
    widths[axis] = (first, length - last)
    return ops.pad(part, widths)


def block_adjoint(rows, block, axis):
    """`(q, block.matrix[:, j] @ rows)` for each column `q = cols[j]`:
    the gradient of `apply_block`, one input line at a time."""
    matrix = block.matrix
    if np.count_nonzero(matrix) > _MAX_TERMS:
        y = _tensordot(rows, matrix.T, axis)
        return [(q, _take(y, axis, j, 1)) for j, q in enumerate(block.cols)]
    lines = [_take(rows, axis, i, 1) for i in range(len(matrix))]
    return [(q, _weighted_sum((float(w), line) for w, line
                              in zip(matrix[:, j], lines) if w != 0))
            for j, q in enumerate(block.cols)]


def _runs(items, axis):
    """`(m, tensor)` line terms merged: sums per line, runs concatenated."""
    by_line = {}
    for m, t in items:
        by_line[m] = t if m not in by_line else by_line[m] + t
    runs, current = [], []
    for m in sorted(by_line):
        if current and m != current[-1][0] + 1:
            runs.append(current)
            current = []
        current.append((m, by_line[m]))
    if current:
        runs.append(current)
    return [(run[0][0], _concat([t for _, t in run], axis)) for run in runs]

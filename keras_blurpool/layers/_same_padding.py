"""BlurPool2D on the backend's "same" convolution, with exact borders.

Padding the input (reflect or replicate) writes a padded copy of the whole
feature map, and the gradient of the padding folds that copy back; on
TensorFlow's CPU kernels these passes cost more than the convolution
itself. When the backend's "same" zero padding starts where the layer's
padding does, the layer convolves the unpadded input instead. Per spatial
axis, with `same` and `true` the (outputs x inputs) matrices of that
convolution and of the layer, `d = true - same` is nonzero on the few
outputs whose window reaches into the padding, so

    true_h x true_w.T - same_h x same_w.T
        = d_h x same_w.T + same_h x d_w.T + d_h x d_w.T

is nonzero on a few output rows and columns, and reads a few input rows and
columns. It is computed on those thin slabs and added in with one scatter.

The gradient: a padded pixel copies an input pixel. When each copy feeds
exactly the outputs that one input pixel `r` feeds, in the same proportion,
`true == same @ fold` with `fold` the identity plus a few entries. The input
gradient is then `fold.T` applied to the "same" convolution's own input
gradient, a correction on a few rows and columns again, written with one
scatter under `keras.ops.custom_gradient`. This holds for the paper's
filter 4 at stride 2 on even maps; where the "same" padding starts
elsewhere or no such `fold` exists (filter 4 on odd maps, filters 5 and 6
at stride 2), `plan_2d` returns None and the layer pads explicitly (or,
with `implementation="same"`, refuses).

Only the border lines enter a plan (`_Rows`), so planning takes the same
time and memory for any input size, and the plan cache stays small.
"""

from __future__ import annotations

import dataclasses
import functools

import numpy as np
from keras import ops

from keras_blurpool.layers._padding import padded_source


@dataclasses.dataclass(frozen=True)
class _Rows:
    """A matrix that is zero outside a few rows and the columns they read.

    Only the block `matrix[rows][:, cols]` is stored: its size depends on
    the filter and the stride, not on the feature map, so a cached plan
    stays a few hundred bytes for any input size (a dense matrix per axis
    made a plan for 2048² cost ~170 MB and ~1 s to build).
    """

    size: int  # rows of the whole matrix
    rows: tuple  # its nonzero rows, ascending
    cols: tuple  # the columns they read, ascending
    block: np.ndarray  # (len(rows), len(cols))

    @classmethod
    def from_entries(cls, size, entries):
        """From `{(row, col): value}`; zero values are left out."""
        entries = {key: v for key, v in entries.items() if v != 0}
        rows = tuple(sorted({i for i, _ in entries}))
        cols = tuple(sorted({j for _, j in entries}))
        block = np.zeros((len(rows), len(cols)))
        for (i, j), v in entries.items():
            block[rows.index(i), cols.index(j)] = v
        return cls(size, rows, cols, block)

    @property
    def nbytes(self):
        return self.block.nbytes + 8 * (len(self.rows) + len(self.cols))


@dataclasses.dataclass(frozen=True)
class _AxisPlan:
    """One spatial axis: where the layer and the "same" convolution differ.

    With `same` and `true` the (outputs x inputs) matrices of the module
    doc, `diff = true - same` and `fold = I + extra` with
    `same @ fold == true`; `extra` is kept transposed, as the gradient
    applies it.
    """

    diff: _Rows  # (outputs x inputs)
    extra_t: _Rows  # (inputs x inputs)


def same_is_aligned(n, filter_size, stride, pads):
    """Whether "same" padding gives the layer's windows on a length-`n` axis.

    That is, the same number of outputs, the first window starting
    `pads[0]` pixels before the input (TensorFlow, JAX and Keras's PyTorch
    backend all put the smaller half of "same" padding first).
    """
    before, after = pads
    out = (n + before + after - filter_size) // stride + 1
    same_out = -(-n // stride)
    same_before = max((same_out - 1) * stride + filter_size - n, 0) // 2
    return out == same_out and same_before == before


def _same_column(r, n, taps, stride, before):
    """Column `r` of the "same" matrix, as `{output: weight}`."""
    k = len(taps)
    out = -(-n // stride)
    first = max(0, -(-(r + before - k + 1) // stride))
    last = min(out - 1, (r + before) // stride)
    return {i: taps[r + before - i * stride] for i in range(first, last + 1)}


@functools.lru_cache(maxsize=256)
def _axis_plan(n, taps, stride, pads, pad_type):
    # Only the outputs whose window leaves the input differ between the
    # two matrices, and only on the input lines the padding copies: the
    # plan is built from those few lines, in time and memory independent
    # of `n`.
    k = len(taps)
    if not same_is_aligned(n, k, stride, pads):
        return None
    before = pads[0]
    out = -(-n // stride)
    border = sorted(
        set(range(min(out, -(-before // stride))))
        | set(range(max(0, (n - k + before) // stride + 1), out))
    )
    true, same = {}, {}
    for i in border:
        for t, w in enumerate(taps):
            q = i * stride + t - before
            if 0 <= q < n:
                same[i, q] = same.get((i, q), 0.0) + w
                true[i, q] = true.get((i, q), 0.0) + w
            elif (src := padded_source(q, n, pad_type)) is not None:
                true[i, src] = true.get((i, src), 0.0) + w
    diff = _Rows.from_entries(
        out, {key: v - same.get(key, 0.0) for key, v in true.items()}
    )
    extra_t = {}
    for j, c in enumerate(diff.cols):
        column = {i: diff.block[m, j] for m, i in enumerate(diff.rows)}
        column = {i: v for i, v in column.items() if v != 0}
        r = _proportional_column(column, n, taps, stride, before)
        if r is None:
            return None
        same_r = _same_column(r, n, taps, stride, before)
        scale = column[min(column)] / same_r[min(column)]
        # same @ fold == true, checked on the column that fold changes.
        if any(abs(same_r[i] * scale - v) > 1e-12 for i, v in column.items()):
            return None
        extra_t[c, r] = scale
    return _AxisPlan(diff=diff, extra_t=_Rows.from_entries(n, extra_t))


def _proportional_column(column, n, taps, stride, before):
    """The first "same" column proportional to `column`, or None.

    A proportional column has the same support, so it is read by the
    first output of `column`: only the filter's width of candidates.
    """
    support = sorted(column)
    i0 = support[0]
    for r in range(max(0, i0 * stride - before),
                   min(n, i0 * stride - before + len(taps))):
        candidate = _same_column(r, n, taps, stride, before)
        if sorted(candidate) == support:
            ratio = np.array([column[i] / candidate[i] for i in support])
            if np.allclose(ratio, ratio[0], rtol=1e-12, atol=0):
                return r
    return None


@dataclasses.dataclass(frozen=True)
class _Lines:
    """A correction that is nonzero on a few rows and columns only.

    With `r = sparse_h @ x` (a few rows, read from a few rows of `x`) and
    `c = x @ sparse_w.T` (a few columns), per image and channel:

        r @ blur_w.T  +  blur_h @ c  +  r @ sparse_w.T

    where `blur_*` is the 1-D "same" blur along that axis (forward pass)
    or the identity (backward pass). The first term fills whole rows, the
    second whole columns, the third only where they cross.
    """

    sparse_h: _Rows  # (out_h, n_h)
    sparse_w: _Rows  # (out_w, n_w)
    blur_h: tuple | None = None  # (taps, stride) of the blur along H
    blur_w: tuple | None = None

    @property
    def rows(self):
        return list(self.sparse_h.rows)

    @property
    def cols(self):
        return list(self.sparse_w.rows)

    @property
    def nbytes(self):
        return self.sparse_h.nbytes + self.sparse_w.nbytes

    def is_zero(self):
        return not (self.rows or self.cols)


@dataclasses.dataclass(frozen=True)
class Plan2D:
    """How BlurPool2D runs on the "same" convolution for one input size."""

    forward: _Lines  # layer output - "same" convolution output
    backward: _Lines  # input gradient - "same" convolution input gradient

    @property
    def nbytes(self):
        """Bytes of the arrays the plan holds (independent of the size)."""
        return self.forward.nbytes + self.backward.nbytes


def plan_2d(spatial_shape, taps, strides, pads, pad_type):
    """A `Plan2D` when the "same" route is exact for this input, else None."""
    if any(n is None for n in spatial_shape):
        return None
    return _plan_2d(
        tuple(int(n) for n in spatial_shape),
        tuple(float(t) for t in taps),
        tuple(int(s) for s in strides),
        tuple(int(p) for p in pads),
        pad_type,
    )


# Plans are a few hundred bytes whatever the input size (see `_Rows`), so
# 256 of them stay well under a megabyte.
@functools.lru_cache(maxsize=256)
def _plan_2d(spatial_shape, taps, strides, pads, pad_type):
    h, w = (
        _axis_plan(n, taps, s, pads, pad_type)
        for n, s in zip(spatial_shape, strides)
    )
    if h is None or w is None:
        return None
    # With d = true - same per axis:
    #   true_h x true_w.T - same_h x same_w.T
    #     = d_h x same_w.T + same_h x d_w.T + d_h x d_w.T
    forward = _Lines(
        h.diff,
        w.diff,
        blur_h=(taps, strides[0]),
        blur_w=(taps, strides[1]),
    )
    # With e = fold - I per axis:
    #   fold_h.T g fold_w - g = e_h.T g + g e_w + e_h.T g e_w
    backward = _Lines(h.extra_t, w.extra_t)
    return Plan2D(forward=forward, backward=backward)


def blur_same_2d(x, kernel, strides, data_format, plan):
    """The layer's output via the "same" convolution and exact borders."""
    if not plan.backward.is_zero():
        x_in = _identity_with_corrected_gradient(x, plan.backward, data_format)
    else:
        x_in = x
    z = ops.depthwise_conv(
        x_in, kernel, strides=strides, padding="same", data_format=data_format
    )
    if plan.forward.is_zero():
        return z
    indices, values = _lines(ops.stop_gradient(x), plan.forward, data_format)
    return _add_lines(z, indices, values)


def _identity_with_corrected_gradient(x, correction, data_format):
    """`x` unchanged; its gradient gets `correction` of itself added."""

    @ops.custom_gradient
    def identity(x):
        def grad(*args, upstream=None):
            if upstream is None:
                (upstream,) = args
            indices, values = _lines(upstream, correction, data_format)
            return _scatter_add(upstream, indices, values)

        return x, grad

    return identity(x)


def _add_lines(z, indices, values):
    """`z` plus `values` at `indices`; the gradient passes to `z` whole.

    The corrected outputs depend on the input through the correction too;
    `_identity_with_corrected_gradient` accounts for that part.
    """

    @ops.custom_gradient
    def add_lines(z, values):
        def grad(*args, upstream=None):
            if upstream is None:
                (upstream,) = args
            return upstream, ops.zeros_like(values)

        return _scatter_add(z, indices, values), grad

    return add_lines(z, values)


def _scatter_add(x, flat_indices, values):
    """`x` with `values` added at `flat_indices` of its (rows, last) view.

    Positions are distinct, so a gather, an add and a `scatter_update` do
    it (`scatter_update(reduction=...)` needs Keras 3.14).
    """
    shape = ops.shape(x)
    flat = ops.reshape(x, (-1,) + tuple(values.shape[1:]))
    current = ops.take(flat, flat_indices, axis=0)
    flat = ops.scatter_update(
        flat, ops.expand_dims(flat_indices, -1), current + values
    )
    return ops.reshape(flat, shape)


def _lines(x, lines, data_format):
    """`lines` applied to `x`: flat indices and values of its nonzeros.

    Indices are into the channels-last (pixels, channels) view or the
    channels-first (elements,) view of the result; each position once.
    """
    channels_last = data_format == "channels_last"
    h_axis, w_axis = (1, 2) if channels_last else (2, 3)
    rows, cols = lines.rows, lines.cols
    out_h, out_w = lines.sparse_h.size, lines.sparse_w.size
    other_rows = [i for i in range(out_h) if i not in rows]
    other_cols = [j for j in range(out_w) if j not in cols]
    blocks, positions = [], []
    if rows:
        r = _sparse(x, lines.sparse_h, h_axis, channels_last)
        row_block = _blur(r, lines.blur_w, w_axis, data_format)
    if cols:
        c = _sparse(x, lines.sparse_w, w_axis, channels_last)
        col_block = _blur(c, lines.blur_h, h_axis, data_format)
    if rows and cols:
        corners = (
            ops.take(row_block, cols, axis=w_axis)
            + _sparse(r, lines.sparse_w, w_axis, channels_last)
            + ops.take(col_block, rows, axis=h_axis)
        )
        blocks.append(corners)
        positions += [(i, j) for i in rows for j in cols]
    if rows and other_cols:
        if cols:
            row_block = ops.take(row_block, other_cols, axis=w_axis)
        blocks.append(row_block)
        positions += [(i, j) for i in rows for j in other_cols]
    if cols and other_rows:
        if rows:
            col_block = ops.take(col_block, other_rows, axis=h_axis)
        blocks.append(col_block)
        positions += [(i, j) for i in other_rows for j in cols]
    positions = np.asarray(positions, dtype="int64")
    pixel = positions[:, 0] * out_w + positions[:, 1]
    if channels_last:  # (batch, lines, lines, channels) -> (batch * P, channels)
        channels = x.shape[-1]
        blocks = [ops.reshape(b, (-1, b.shape[1] * b.shape[2], channels))
                  for b in blocks]
        values = ops.concatenate(blocks, axis=1) if len(blocks) > 1 else blocks[0]
        values = ops.reshape(values, (-1, channels))
        per_image, stride = pixel, out_h * out_w
    else:  # (batch, channels, lines, lines) -> (batch * channels * P,)
        channels = x.shape[1]
        blocks = [ops.reshape(b, (-1, channels, b.shape[2] * b.shape[3]))
                  for b in blocks]
        values = ops.concatenate(blocks, axis=2) if len(blocks) > 1 else blocks[0]
        values = ops.reshape(values, (-1,))
        plane = out_h * out_w
        per_image = (np.arange(channels)[:, None] * plane + pixel).reshape(-1)
        stride = channels * plane
    return _per_batch(per_image, stride, ops.shape(x)[0]), values


def _sparse(x, rows, axis, channels_last):
    """The nonzero rows of a `_Rows` matrix (new, old) along data `axis`."""
    support = list(rows.cols)
    x = ops.take(x, support, axis=axis)
    matrix = rows.block
    if np.all(np.count_nonzero(matrix, axis=1) == 1):
        # Each new line is a multiple of one old line.
        which = np.argmax(matrix != 0, axis=1)
        if not np.array_equal(which, np.arange(len(support))):
            x = ops.take(x, which, axis=axis)
        scale = matrix[np.arange(len(matrix)), which]
        if np.all(scale == 1):
            return x
        shape = [1, 1, 1, 1]
        shape[axis] = len(scale)
        return x * ops.convert_to_tensor(scale.reshape(shape), dtype=x.dtype)
    m = ops.convert_to_tensor(matrix, dtype=x.dtype)
    if not channels_last:
        return ops.matmul(m, x) if axis == 2 else ops.matmul(x, ops.transpose(m))
    _, h, w, c = x.shape
    if axis == 1:  # (batch, h, w * c)
        y = ops.matmul(m, ops.reshape(x, (-1, h, w * c)))
        return ops.reshape(y, (-1, len(matrix), w, c))
    y = ops.matmul(m, ops.reshape(x, (-1, w, c)))  # (batch * h, w, c)
    return ops.reshape(y, (-1, h, len(matrix), c))


def _blur(x, blur, axis, data_format):
    """The 1-D "same" blur `blur = (taps, stride)` along data `axis`.

    The thin axis across the blur is folded into the batch or the channels
    first: TensorFlow's CPU kernel needs equal strides on both spatial axes.
    """
    if blur is None:
        return x
    taps, stride = blur
    channels_last = data_format == "channels_last"
    along_h = axis == (1 if channels_last else 2)
    if not channels_last and along_h:
        x = ops.swapaxes(x, 2, 3)  # blur along the last axis instead
    if channels_last and along_h:  # (n, h, l, c) -> (n, h, 1, l * c)
        n, length, lines, c = x.shape
        flat = ops.reshape(x, (-1, length, 1, lines * c))
    elif channels_last:  # (n, l, w, c) -> (n * l, 1, w, c)
        n, lines, length, c = x.shape
        flat = ops.reshape(x, (-1, 1, length, c))
    else:  # (n, c, l, w) -> (n, c * l, 1, w)
        n, c, lines, length = x.shape
        flat = ops.reshape(x, (-1, c * lines, 1, length))
    shape = (len(taps), 1) if channels_last and along_h else (1, len(taps))
    channels = flat.shape[-1 if channels_last else 1]
    kernel = np.broadcast_to(
        np.asarray(taps).reshape(shape + (1, 1)), shape + (channels, 1)
    )
    y = ops.depthwise_conv(
        flat,
        ops.convert_to_tensor(kernel, dtype=x.dtype),
        strides=stride,
        padding="same",
        data_format=data_format,
    )
    out = -(-length // stride)
    if channels_last and along_h:
        return ops.reshape(y, (-1, out, lines, c))
    if channels_last:
        return ops.reshape(y, (-1, lines, out, c))
    y = ops.reshape(y, (-1, c, lines, out))
    return ops.swapaxes(y, 2, 3) if along_h else y


def _per_batch(per_image, stride, batch):
    """`per_image` offsets repeated for every image of the batch."""
    count = len(per_image)
    if isinstance(batch, int):  # a static batch: one constant
        offsets = np.arange(batch, dtype="int64")[:, None] * stride
        return ops.convert_to_tensor((offsets + per_image).reshape(-1).astype("int32"))
    flat = ops.arange(batch * count, dtype="int32")
    table = ops.convert_to_tensor(per_image.astype("int32"))
    return (flat // count) * stride + ops.take(table, flat % count, axis=0)

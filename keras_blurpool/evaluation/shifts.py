"""One implementation of each shift the metrics apply to a batch.

A *view* of an image is a row `(crop_y, crop_x, roll_y, roll_x)`: the
`size` x `size` crop of the (larger, square) image starting at
`(crop_y, crop_x)`, then rolled circularly (`np.roll`) by
`(roll_y, roll_x)`. Integer views are cut with one gather
(`crop_views`). Sub-pixel views (`subpixel_views`) move the crop, or roll
it, by real amounts, either by linear interpolation between the integer
views around it (`"bilinear"`) or by the exact band-limited shift of the
Fourier transform (`"fourier"`, `fourier_shift`). All are `keras.ops`, so
they run inside the model step on every backend.
"""

from __future__ import annotations

import math

from keras import ops

# Columns of a view: where its crop starts, and how far it is then rolled.
CROP_Y, CROP_X, ROLL_Y, ROLL_X = range(4)

METHODS = ("fourier", "bilinear")
MODES = ("crop", "circular")


def crop_views(images, views, size: int):
    """One `size` x `size` view of each image: crop, then circular roll.

    Args:
        images: `(batch, S, S, channels)`.
        views: `(batch, 4)` integer rows `(crop_y, crop_x, roll_y, roll_x)`.
        size: side of the view.

    Returns:
        `(batch, size, size, channels)`; pixel `(i, j)` of a view is
        `images[b, crop_y + (i - roll_y) % size, crop_x + (j - roll_x) % size]`,
        which is `np.roll` of the crop.

    Example:

    >>> crop_views(images, [[4, 4, 0, 0]], 32).shape  # doctest: +SKIP
    (1, 32, 32, 3)
    """
    square = images.shape[1]
    channels = images.shape[-1]
    views = ops.cast(views, "int32")
    steps = ops.arange(size, dtype="int32")[None, :]
    rows = views[:, CROP_Y : CROP_Y + 1] + ops.mod(
        steps - views[:, ROLL_Y : ROLL_Y + 1], size
    )
    cols = views[:, CROP_X : CROP_X + 1] + ops.mod(
        steps - views[:, ROLL_X : ROLL_X + 1], size
    )
    batch = ops.arange(ops.shape(images)[0], dtype="int32")
    flat = (batch[:, None, None] * square + rows[:, :, None]) * square
    flat = flat + cols[:, None, :]
    pixels = ops.reshape(images, (-1, channels))
    return ops.take(pixels, flat, axis=0)


def _frequencies(n: int):
    """`np.fft.fftfreq(n) * n`: 0, 1, ..., then the negative ones."""
    k = ops.arange(n, dtype="float32")
    return ops.where(k < (n + 1) // 2, k, k - n)


def fourier_shift(images, shift_y, shift_x):
    """The band-limited circular shift of each image by real amounts.

    Multiplies the 2-D discrete Fourier transform by the phase ramp
    `exp(-2 pi i (k_y shift_y / H + k_x shift_x / W))` and keeps the real
    part of the inverse: for an integer shift that is `np.roll(image,
    (shift_y, shift_x), axis=(0, 1))`; for a fractional one, the
    trigonometric (sinc) interpolation of the periodic image. On a side
    of even length the Nyquist frequency cannot move by a fraction of a
    pixel and stay real: it is scaled by `cos(pi * shift)` (0 at half a
    pixel), so two half-pixel shifts equal a one-pixel roll exactly on
    images without that frequency (and on every image of odd size).

    Args:
        images: `(batch, height, width, channels)`.
        shift_y: `(batch,)` downward shifts in pixels (may be fractional).
        shift_x: `(batch,)` rightward shifts in pixels.

    Returns:
        `(batch, height, width, channels)` float32.

    Example:

    >>> x = np.random.rand(2, 8, 8, 3).astype("float32")
    >>> y = fourier_shift(x, np.array([1.0, 2.0]), np.array([0.0, 3.0]))
    >>> y = keras.ops.convert_to_numpy(y)
    >>> bool(np.allclose(y[1], np.roll(x[1], (2, 3), axis=(0, 1)), atol=1e-5))
    True
    """
    images = ops.cast(images, "float32")
    height, width = images.shape[1], images.shape[2]
    planes = ops.transpose(images, (0, 3, 1, 2))  # FFT over the last two axes
    real, imag = ops.fft2((planes, ops.zeros_like(planes)))
    shift_y = ops.cast(ops.reshape(shift_y, (-1, 1)), "float32")
    shift_x = ops.cast(ops.reshape(shift_x, (-1, 1)), "float32")
    # Turns, reduced modulo 1 before the multiplication by 2 pi, so that
    # an integer shift's phases are exact multiples of 2 pi / n.
    turns_y = ops.mod(shift_y * _frequencies(height)[None], height) / height
    turns_x = ops.mod(shift_x * _frequencies(width)[None], width) / width
    angle = -2.0 * math.pi * (turns_y[:, None, :, None] + turns_x[:, None, None, :])
    cos, sin = ops.cos(angle), ops.sin(angle)
    shifted = ops.ifft2((real * cos - imag * sin, real * sin + imag * cos))[0]
    return ops.transpose(shifted, (0, 2, 3, 1))


def subpixel_views(images, views, size: int, *, method: str, mode: str):
    """Views whose crop (mode `"crop"`) or roll (`"circular"`) is real.

    Mode `"crop"`: the crop starts at a real `(crop_y, crop_x)` (rolls
    must be zero); `"bilinear"` interpolates linearly between the four
    integer crops around it, so it reads the image's own pixels and needs
    no padding; `"fourier"` shifts the whole square band-limitedly by the
    fractional part (circular on the square), then crops at the integer
    part. Mode `"circular"`: the crop starts at integers and is rolled by
    a real `(roll_y, roll_x)`; `"bilinear"` interpolates between the
    integer rolls around it (wrapping around), `"fourier"` rolls by the
    integer part and shifts band-limitedly by the fractional part. For
    integer views every combination gives `crop_views` (Fourier to
    rounding error).

    Args:
        images: `(batch, S, S, channels)`.
        views: `(batch, 4)` float rows `(crop_y, crop_x, roll_y, roll_x)`.
        size: side of the view.
        method: `"fourier"` or `"bilinear"`.
        mode: `"crop"` or `"circular"`.

    Returns:
        `(batch, size, size, channels)` float32.
    """
    if method not in METHODS or mode not in MODES:
        raise ValueError(
            f"`method` must be one of {METHODS} and `mode` one of {MODES}. "
            f"Received: method={method!r}, mode={mode!r}"
        )
    views = ops.cast(views, "float32")
    moved = (CROP_Y, CROP_X) if mode == "crop" else (ROLL_Y, ROLL_X)
    base = ops.floor(views)
    frac_y = views[:, moved[0]] - base[:, moved[0]]
    frac_x = views[:, moved[1]] - base[:, moved[1]]
    base = ops.cast(base, "int32")
    if method == "fourier":
        if mode == "crop":
            images = fourier_shift(images, -frac_y, -frac_x)
            return crop_views(images, base, size)
        return fourier_shift(crop_views(images, base, size), frac_y, frac_x)
    limit = images.shape[1] - size  # the last crop offset of the square
    one_y = ops.one_hot(moved[0], 4, dtype="int32")[None]
    one_x = ops.one_hot(moved[1], 4, dtype="int32")[None]
    total = 0.0
    for dy, weight_y in ((0, 1.0 - frac_y), (1, frac_y)):
        for dx, weight_x in ((0, 1.0 - frac_x), (1, frac_x)):
            corner = base + dy * one_y + dx * one_x
            if mode == "crop":
                # A corner past the square has weight 0: read the last one.
                corner = ops.minimum(corner, limit)
            weight = ops.reshape(weight_y * weight_x, (-1, 1, 1, 1))
            view = ops.cast(crop_views(images, corner, size), "float32")
            total = total + weight * view
    return total

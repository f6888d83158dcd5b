"""An image file's size, read from its header before it is decoded.

A PNG of 20000x20000 pixels compresses to 48 KB and decodes to 1.2 GB:
the folder source reads each file's height and width from its header
first, so that `recipes.data.bad_images` refuses (or skips) one with
more pixels than `max_image_pixels` without decoding it. The folder
source reads the formats its file extensions name, JPEG and PNG: the
JPEG header is read by `tf.image.extract_jpeg_shape` (libjpeg's header
parser, as the decoder's), the PNG one from its IHDR chunk. Other bytes
(GIF, BMP, WebP, JPEG XL files under a `.jpg` or `.png` name, which
`tf.io.decode_image` would decode, GIF's frames all at once) are not
decoded at all.
"""

from __future__ import annotations

import tensorflow as tf

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
JPEG_SIGNATURE = b"\xff\xd8\xff"
# A PNG's first chunk is IHDR: length (4 bytes), type "IHDR", then the
# width and height, 4 bytes each, big-endian.
_PNG_IHDR = b"IHDR"
_HEAD_BYTES = 24


def image_format(head: bytes) -> str | None:
    """`"jpeg"` or `"png"` from a file's first bytes; None for others.

    A PNG must begin with its signature and its IHDR chunk, as
    `header_size` requires.

    Args:
        head: the file's first bytes (24 suffice).

    Returns:
        The format, or None when the bytes are neither.

    Example:

    >>> image_format(b"\\xff\\xd8\\xff\\xe0")
    'jpeg'
    >>> image_format(b"GIF89a") is None
    True
    """
    if head.startswith(JPEG_SIGNATURE):
        return "jpeg"
    if head.startswith(PNG_SIGNATURE) and head[12:16] == _PNG_IHDR and (
        len(head) >= _HEAD_BYTES
    ):
        return "png"
    return None


def header_size(contents: tf.Tensor) -> tuple[tf.Tensor, tf.Tensor]:
    """`(height, width)` of a JPEG or PNG, from its header alone.

    TensorFlow ops, for `tf.data` maps (and eager use): nothing is
    decoded, whatever the size the header declares.

    Args:
        contents: a scalar string tensor, the file's bytes.

    Returns:
        `(height, width)`, int64 scalars; `(-1, -1)` for bytes that are
        neither a JPEG nor a PNG (see `image_format`).

    Raises:
        tf.errors.InvalidArgumentError: for a JPEG whose header libjpeg
            cannot read (when run; inside `tf.data`, an element error).

    Example:

    >>> png = tf.io.encode_png(tf.zeros([5, 7, 3], tf.uint8))
    >>> [int(side) for side in header_size(png)]
    [5, 7]
    """
    contents = tf.convert_to_tensor(contents, tf.string)
    head = tf.strings.substr(contents, 0, _HEAD_BYTES)
    padding = tf.constant(b"\0" * _HEAD_BYTES)
    head = tf.strings.substr(tf.strings.join([head, padding]), 0, _HEAD_BYTES)
    head = tf.cast(tf.io.decode_raw(head, tf.uint8), tf.int64)

    def starts_with(offset, expected):
        expected = tf.constant(list(expected), tf.int64)
        return tf.reduce_all(head[offset : offset + len(expected)] == expected)

    # A PNG needs all 24 bytes (padding would read as a size of 0).
    is_png = (
        starts_with(0, PNG_SIGNATURE)
        & starts_with(12, _PNG_IHDR)
        & (tf.strings.length(contents) >= _HEAD_BYTES)
    )
    is_jpeg = starts_with(0, JPEG_SIGNATURE)

    def big_endian(offset):
        value = tf.constant(0, tf.int64)
        for byte in range(offset, offset + 4):
            value = value * 256 + head[byte]
        return value

    def png():
        return big_endian(20), big_endian(16)

    def jpeg():
        shape = tf.cast(tf.image.extract_jpeg_shape(contents), tf.int64)
        return shape[0], shape[1]

    def other():
        return tf.constant(-1, tf.int64), tf.constant(-1, tf.int64)

    return tf.cond(
        is_png, png, lambda: tf.cond(is_jpeg, jpeg, other)
    )


def fits(height, width, max_image_pixels: int,
         short_side: int | None = None) -> tf.Tensor:
    """Whether a `header_size` is a JPEG or PNG within `max_image_pixels`.

    Computed without overflow (a PNG's sides go up to 2**32 - 1).

    Args:
        height: from `header_size`, int64.
        width: from `header_size`, int64.
        max_image_pixels: the bound, a positive int.
        short_side: the image will be resized so that its shorter side is
            this (torchvision's `Resize`): the resized image is held to the
            bound too (a 20000x2 image resized to a short side of 256 is
            256x2,560,000). None: no resize.

    Returns:
        A bool scalar tensor: `0 <= height * width <= max_image_pixels`,
        and `resized_pixels(height, width, short_side) <= max_image_pixels`.
    """
    bound = tf.constant(max_image_pixels, tf.int64)
    ok = (
        (height >= 0)
        & (width >= 0)
        & (width <= bound // tf.maximum(height, 1))
        & (height <= bound)
    )
    if short_side is not None:
        resized = resized_pixels(height, width, short_side)
        ok = ok & (resized <= tf.constant(max_image_pixels, tf.float64))
    return ok


def resized_pixels(height, width, short_side: int):
    """The pixels of an image resized to a shorter side of `short_side`.

    As `keras_blurpool.evaluation.resize_short_side` (and torchvision's
    `Resize`): the longer side scaled alike and rounded down. float64, so
    that huge sides do not overflow.

    Args:
        height: the image's height (int or tensor).
        width: its width.
        short_side: the shorter side after resizing.

    Returns:
        `short_side * floor(long * short_side / short)`, a float64 tensor.

    Example:

    >>> float(resized_pixels(2, 20000, 256))
    655360000.0
    """
    height = tf.cast(height, tf.float64)
    width = tf.cast(width, tf.float64)
    short = tf.maximum(tf.minimum(height, width), 1.0)
    long = tf.maximum(height, width)
    return short_side * tf.floor(long * short_side / short)

"""Image files and folders for the tests of `recipes.data`.

Shared by the tests of the folder source, the bad-image handling and the
label alignment; the TFDS and load tests share the spec error message.
"""

import os
import struct
import zlib

import numpy as np
import tensorflow as tf

SPEC_HELP = r"expected 'tfds:NAME\[:SPLIT\]', a folder, or 'demo'"
"""The regex of the error message of a malformed data spec."""


def write_image(path, array):
    """Writes `array` (uint8, 2-D gray or 3-D) as a PNG or a JPEG by extension."""
    array = np.asarray(array, "uint8")
    if array.ndim == 2:
        array = array[..., None]
    ext = os.path.splitext(path)[1].lower()
    encoded = (
        tf.io.encode_png(array)
        if ext == ".png"
        else tf.io.encode_jpeg(array, quality=100)
    )
    os.makedirs(os.path.dirname(path), exist_ok=True)
    tf.io.write_file(str(path), encoded)


def make_folder(root, classes, per_class=2, ext=".png", value0=0):
    """`root/CLASS/i.ext`: flat images whose value numbers the file."""
    value = value0
    for name in classes:
        for i in range(per_class):
            write_image(
                os.path.join(root, name, f"{i}{ext}"),
                np.full((6 + i, 8, 3), value),
            )
            value += 1


def values_and_labels(source):
    """Sorted `(first pixel value, label)` of every image of `source`."""
    return sorted(
        (int(image.numpy()[0, 0, 0]), int(label))
        for image, label in source.dataset
    )


def _png_chunk(kind: bytes, data: bytes) -> bytes:
    crc = zlib.crc32(kind + data) & 0xFFFFFFFF
    return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", crc)


def write_png_bomb(path, width, height=None):
    """A valid 1-bit gray PNG of zeros: 20000x20000 is 48 KB, 1.2 GB as RGB.

    Written row block by row block, never held decoded.
    """
    height = width if height is None else height
    row = b"\0" * (1 + (width + 7) // 8)  # filter byte, packed bits
    compressor = zlib.compressobj(9)
    parts = []
    for start in range(0, height, 256):
        parts.append(compressor.compress(row * min(256, height - start)))
    parts.append(compressor.flush())
    header = struct.pack(">IIBBBBB", width, height, 1, 0, 0, 0, 0)
    with open(path, "wb") as f:
        f.write(
            b"\x89PNG\r\n\x1a\n" + _png_chunk(b"IHDR", header)
            + _png_chunk(b"IDAT", b"".join(parts)) + _png_chunk(b"IEND", b"")
        )


def write_png_header(path, width, height):
    """A PNG header declaring any size (up to 2**32 - 1 a side), no pixels."""
    header = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    with open(path, "wb") as f:
        f.write(
            b"\x89PNG\r\n\x1a\n" + _png_chunk(b"IHDR", header)
            + _png_chunk(b"IEND", b"")
        )

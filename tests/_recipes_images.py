"""Image files and folders for the tests of `recipes.data`.

Shared by the tests of the folder source, the bad-image handling and the
label alignment; the TFDS and load tests share the spec error message.
"""

import os

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

"""The reference's validation preprocessing, as TensorFlow image ops.

torchvision's `Resize(size)` (short side, bilinear with antialiasing, or
bicubic as timm validates its networks) and `CenterCrop(size)`, used by
the metrics of this package and by the input pipelines of `recipes/`.
"""

from __future__ import annotations

import tensorflow as tf

from keras_blurpool.applications.registry import INTERPOLATIONS
from keras_blurpool.evaluation._checks import check_positive_int


def check_interpolation(interpolation) -> str:
    """Raises unless `interpolation` is `"bilinear"` or `"bicubic"`."""
    if not isinstance(interpolation, str) or interpolation not in INTERPOLATIONS:
        raise ValueError(
            f"`interpolation` must be one of {INTERPOLATIONS}. Received: "
            f"interpolation={interpolation!r}"
        )
    return interpolation


def resize_short_side(
    image, size: int, interpolation: str = "bilinear"
) -> tf.Tensor:
    """Resizes an image so that its shorter side is `size` pixels.

    Like torchvision's `Resize(size)` on PIL images: bilinear (or bicubic)
    with antialiasing, the longer side scaled by the same factor and rounded
    down, and the image returned unchanged (as float32) when its shorter
    side already is `size`.

    Args:
        image: `[height, width, channels]` image (or a batch of equally
            sized images, `[batch, height, width, channels]`).
        size: the new shorter side, a positive int.
        interpolation: `"bilinear"` (the reference's) or `"bicubic"`
            (timm's networks).

    Returns:
        The resized image(s), float32.

    Example:

    >>> resize_short_side(tf.zeros([300, 400, 3], "uint8"), 256).shape
    TensorShape([256, 341, 3])
    """
    check_positive_int("size", size)
    check_interpolation(interpolation)
    image = tf.convert_to_tensor(image)
    shape = tf.shape(image, out_type=tf.int64)
    height, width = shape[-3], shape[-2]
    short, long = tf.minimum(height, width), tf.maximum(height, width)
    new_long = size * long // short
    new_shape = tf.cast(
        tf.where(
            height <= width,
            tf.stack([size, new_long]),
            tf.stack([new_long, size]),
        ),
        tf.int32,
    )
    return tf.cond(
        tf.equal(short, size),
        lambda: tf.cast(image, tf.float32),
        lambda: tf.image.resize(
            image, new_shape, method=interpolation, antialias=True
        ),
    )


def center_crop(image, size: int) -> tf.Tensor:
    """Crops the central `size` x `size` square of an image.

    Like torchvision's `CenterCrop`: the offset is half the surplus,
    rounded half to even. The image must be at least `size` on both sides.

    Args:
        image: `[height, width, channels]` image (or a batch,
            `[batch, height, width, channels]`).
        size: side of the crop, a positive int.

    Returns:
        The crop, with the dtype of `image`.

    Example:

    >>> center_crop(tf.zeros([256, 341, 3]), 224).shape
    TensorShape([224, 224, 3])
    """
    check_positive_int("size", size)
    image = tf.convert_to_tensor(image)
    shape = tf.shape(image)
    top = _half_even(shape[-3] - size)
    left = _half_even(shape[-2] - size)
    return tf.image.crop_to_bounding_box(image, top, left, size, size)


def _half_even(surplus):
    # tf.round rounds half to even, as Python's round() in torchvision.
    return tf.cast(tf.round(tf.cast(surplus, tf.float32) / 2), tf.int32)

"""The demo dataset: procedurally drawn shapes and patterns, in memory.

10 classes of 40x40 RGB images (disks, rings, squares, diamonds,
triangles, plus signs, diagonal crosses, horizontal and vertical
stripes, checkerboards), generated deterministically in about a second,
so that the recipes run on a fresh machine without a download and still
exercise aliasing: hard edges and stripes of 2.5-4.5 pixel periods carry
the high frequencies that strided downsampling folds over
(`recipes.data.load_images` describes the data in full).
"""

from __future__ import annotations

import functools

import numpy as np
import tensorflow as tf

from .labels import align_labels
from .source import ImageSource
from .source import UnknownSplitError
from .source import shuffle_and_shard

_DEMO_CLASSES = (
    "disk",
    "ring",
    "square",
    "diamond",
    "triangle",
    "plus",
    "cross",
    "horizontal_stripes",
    "vertical_stripes",
    "checkerboard",
)
_DEMO_SIZE = 40
_DEMO_CROP = 32
# split -> (number of images, generator seed)
_DEMO_SPLITS = {"train": (6000, 20190609), "validation": (1000, 20190610)}
_DEMO_SPLIT_ALIASES = {
    "train": "train",
    "validation": "validation",
    "val": "validation",
    "test": "validation",
}


def load_demo(
    split: str,
    input_context: tf.distribute.InputContext | None,
    shuffle_seed: int | None,
    class_names: tuple[str, ...] | None = None,
) -> ImageSource:
    """Opens a split of the demo data.

    Args:
        split: `"train"` (6000 images) or `"validation"` (1000, also
            `"val"` and `"test"`).
        input_context: keep only this input pipeline's share of images.
        shuffle_seed: shuffle the images with this seed, or None.
        class_names: label by these names (the training split's).

    Returns:
        An `ImageSource` of 40x40 images with 32x32 crops and the `"crop"`
        augmentation.

    Raises:
        UnknownSplitError: for another split.
    """
    if split not in _DEMO_SPLIT_ALIASES:
        raise UnknownSplitError(
            f"split={split!r}: data='demo' has splits "
            f"{', '.join(repr(name) for name in _DEMO_SPLIT_ALIASES)}"
        )
    images, labels = _demo_arrays(_DEMO_SPLIT_ALIASES[split])
    num_examples = len(labels)
    table, class_names = align_labels(_DEMO_CLASSES, class_names, "data='demo'")
    if table is not None:
        labels = table[labels]
    images, labels = shuffle_and_shard(images, labels, shuffle_seed, input_context)
    return ImageSource(
        dataset=tf.data.Dataset.from_tensor_slices((images, labels)),
        num_classes=len(class_names),
        class_names=class_names,
        num_examples=num_examples,
        image_size=_DEMO_CROP,
        resize_size=_DEMO_SIZE,
        augment="crop",
    )


@functools.cache
def _demo_arrays(split):
    """`(images, labels)` of a demo split: uint8 `[n, 40, 40, 3]`, int32."""
    count, seed = _DEMO_SPLITS[split]
    images, labels = _draw_demo_images(count, np.random.default_rng(seed))
    # The arrays are shared by every caller through the cache.
    images.flags.writeable = False
    labels.flags.writeable = False
    return images, labels


def _draw_demo_images(count, rng):
    f32 = np.float32
    num_classes = len(_DEMO_CLASSES)
    labels = rng.permutation(np.arange(count) % num_classes).astype("int32")

    def draw(low, high):
        return rng.uniform(low, high, count).astype(f32)[:, None, None]

    center_x, center_y = draw(12, 28), draw(12, 28)
    radius = draw(6, 11)
    angle = draw(-0.3, 0.3)
    # Stripe periods of 2.5-4.5 pixels: fine enough to alias after one
    # stride-2 downsampling, coarse enough to learn. In units of radius.
    period = draw(2.5, 4.5) / radius
    phase = draw(0, 1)

    rows, cols = np.mgrid[0:_DEMO_SIZE, 0:_DEMO_SIZE].astype(f32) + 0.5
    mask = np.empty((count, _DEMO_SIZE, _DEMO_SIZE), bool)
    for k in range(num_classes):
        i = np.flatnonzero(labels == k)
        dx, dy = cols - center_x[i], rows - center_y[i]
        cos, sin = np.cos(angle[i]), np.sin(angle[i])
        # Coordinates in the shape's frame, its radius being 1.
        u = (cos * dx + sin * dy) / radius[i]
        v = (cos * dy - sin * dx) / radius[i]
        mask[i] = _demo_shape(k, u, v, period[i], phase[i])

    foreground = rng.uniform(0, 255, (count, 1, 1, 3)).astype(f32)
    background = rng.uniform(0, 255, (count, 1, 1, 3)).astype(f32)
    # Push the colours apart where they nearly match, so that every shape
    # stays visible under the noise.
    difference = foreground - background
    contrast = np.linalg.norm(difference, axis=-1, keepdims=True)
    min_contrast = 40.0
    foreground = np.where(
        contrast < min_contrast,
        background + difference / np.maximum(contrast, 1e-3) * min_contrast,
        foreground,
    )
    images = np.where(mask[..., None], foreground, background)
    images += rng.standard_normal(images.shape, dtype=f32) * 28.0
    return np.clip(images, 0, 255).round().astype("uint8"), labels


def _demo_shape(k, u, v, period, phase):
    """Mask of demo class `k` in shape coordinates `u, v` (radius 1)."""
    abs_u, abs_v = np.abs(u), np.abs(v)
    radius = np.sqrt(u * u + v * v)
    square = np.maximum(abs_u, abs_v)
    name = _DEMO_CLASSES[k]
    if name == "disk":
        return radius <= 1.0
    if name == "ring":
        return (radius <= 1.0) & (radius >= 0.55)
    if name == "square":
        return square <= 0.8
    if name == "diamond":
        return abs_u + abs_v <= 1.1
    if name == "triangle":
        return (v <= 0.75) & (abs_u <= (v + 1.0) * 0.6)
    if name == "plus":
        return ((abs_u <= 0.28) & (abs_v <= 1.0)) | (
            (abs_v <= 0.28) & (abs_u <= 1.0)
        )
    if name == "cross":
        diagonals = (np.abs(u - v) <= 0.4) | (np.abs(u + v) <= 0.4)
        return diagonals & (radius <= 1.1)
    if name == "horizontal_stripes":
        return (square <= 0.9) & (np.mod(v / period + phase, 1.0) < 0.5)
    if name == "vertical_stripes":
        return (square <= 0.9) & (np.mod(u / period + phase, 1.0) < 0.5)
    cells = np.floor(u / period + phase) + np.floor(v / period + phase)
    return (square <= 0.9) & (cells % 2 == 0)

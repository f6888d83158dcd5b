"""What every image source gives and shares: `ImageSource` and its helpers.

The TFDS, folder and demo sources (`recipes.data.tfds`, `.folder`,
`.demo`) each return an `ImageSource`; they share the split error and the
`val`/`validation` aliases, seeded shuffling and sharding of in-memory
lists, and deterministic `tf.data` options, all defined here.
"""

from __future__ import annotations

import dataclasses
from typing import TYPE_CHECKING

import numpy as np
import tensorflow as tf

from keras_blurpool._utils import check_int

if TYPE_CHECKING:
    from .bad_images import BadImages

SPEC_HELP = "expected 'tfds:NAME[:SPLIT]', a folder, or 'demo'"
"""What a data spec may be, for error messages."""

SPLIT_ALIASES = {"val": ("validation",), "validation": ("val",)}
"""Split names that stand for each other where a dataset has only one."""

_AUGMENTATIONS = ("imagenet", "crop")


class UnknownSplitError(ValueError):
    """The dataset has no split of the requested name."""


@dataclasses.dataclass(frozen=True)
class ImageSource:
    """A labelled image dataset, before batching and augmentation.

    Attributes:
        dataset: unbatched `tf.data.Dataset` of `(image, label)`: `uint8`
            RGB images `[height, width, 3]` of any size and `int32` scalar
            labels.
        num_classes: number of classes, i.e. of model outputs.
        class_names: the `num_classes` class names, in label order.
        num_examples: examples in the whole split (all shards together),
            or `None` when unknown.
        image_size: suggested side of the square training and evaluation
            crops.
        resize_size: suggested side the shorter image side is resized to
            before evaluation's center crop (and the "crop" augmentation's
            random crop).
        augment: training augmentation, `"imagenet"` (random-resized crop
            and horizontal flip) or `"crop"` (random crop only).
        bad_images: for folder sources, the `BadImages` record of the
            files that cannot be decoded; None for other sources.
    """

    dataset: tf.data.Dataset
    num_classes: int
    class_names: tuple[str, ...]
    num_examples: int | None
    image_size: int
    resize_size: int
    augment: str
    bad_images: BadImages | None = None

    def __post_init__(self):
        if self.augment not in _AUGMENTATIONS:
            raise ValueError(
                f"augment={self.augment!r}: expected one of {_AUGMENTATIONS}"
            )
        check_int("num_classes", self.num_classes)
        if len(self.class_names) != self.num_classes:
            raise ValueError(
                f"class_names has {len(self.class_names)} names but "
                f"num_classes={self.num_classes}; expected one name per class"
            )
        if self.num_examples is not None:
            check_int("num_examples", self.num_examples, minimum=0)
        check_int("image_size", self.image_size)
        check_int("resize_size", self.resize_size)

    def resize_size_for(self, image_size: int) -> int:
        """The resize side for another crop size, at the suggested ratio.

        E.g. 256 for 224 and 146 for 128 on ImageNet-like data.

        Args:
            image_size: side of the square crops.

        Returns:
            `round(image_size * resize_size / self.image_size)`.
        """
        return round(image_size * self.resize_size / self.image_size)



def shuffle_and_shard(
    items: np.ndarray,
    labels: np.ndarray,
    shuffle_seed: int | None,
    input_context: tf.distribute.InputContext | None,
) -> tuple[np.ndarray, np.ndarray]:
    """A seeded permutation, then this input pipeline's every n-th item.

    Args:
        items: the examples (file paths, images), first axis the example.
        labels: their labels, as long as `items`.
        shuffle_seed: seed of the permutation, or None to keep the order.
        input_context: keep only the items of this input pipeline, or
            None for all.

    Returns:
        `(items, labels)`, permuted and sharded alike.

    Example:

    >>> context = tf.distribute.InputContext(2, 1, 2)
    >>> shuffle_and_shard(np.arange(5), np.arange(5), None, context)
    (array([1, 3]), array([1, 3]))
    """
    if shuffle_seed is not None:
        order = np.random.default_rng(shuffle_seed).permutation(len(labels))
        items, labels = items[order], labels[order]
    if input_context is not None:
        shard = slice(
            input_context.input_pipeline_id,
            None,
            input_context.num_input_pipelines,
        )
        items, labels = items[shard], labels[shard]
    return items, labels


def deterministic(dataset: tf.data.Dataset) -> tf.data.Dataset:
    """`dataset` with `tf.data.Options.deterministic` set.

    Args:
        dataset: any `tf.data.Dataset`.

    Returns:
        The dataset, whose elements keep their order whatever the
        parallelism of its maps.
    """
    options = tf.data.Options()
    options.deterministic = True
    return dataset.with_options(options)

"""From an `ImageSource` to batches: augmentation, cropping, normalisation.

`train_dataset` and `eval_dataset` augment or center-crop, batch and
normalise an `ImageSource` as the reference's torchvision pipelines do.
Training batches are a pure function of `(seed, epoch)`, so a trainer can
resume mid-epoch by skipping the batches it has already seen.
"""

from __future__ import annotations

import functools
import math

import numpy as np
import tensorflow as tf

from keras_blurpool._utils import check_int
from keras_blurpool.applications.imagenet_utils import IMAGENET_MEAN
from keras_blurpool.applications.imagenet_utils import IMAGENET_STD
from keras_blurpool.evaluation.preprocessing import center_crop
from keras_blurpool.evaluation.preprocessing import resize_short_side

from .source import ImageSource
from .source import deterministic

_SHUFFLE_BUFFER = 10_000


def train_dataset(
    source: ImageSource,
    batch_size: int,
    *,
    image_size: int | None = None,
    resize_size: int | None = None,
    seed: int = 0,
    epoch: int = 0,
) -> tf.data.Dataset:
    """One epoch of shuffled, augmented, normalised training batches.

    Elements are shuffled (in a buffer of up to 10,000) with a seed drawn
    from `(seed, epoch)`, then augmented with stateless random ops seeded
    by `(seed, epoch, position in the epoch)`, so the same `(seed, epoch)`
    gives the same batches in every run (with the same global TF seed)
    and `.skip(k)` resumes an epoch after `k` batches. The augmentation
    is `source.augment`:

    * `"imagenet"`: torchvision's `RandomResizedCrop(image_size)` — a
      crop of 8%-100% of the area and aspect ratio 3/4-4/3 (log-uniform),
      resized bilinearly, with antialiasing as PIL does — then a random
      horizontal flip.
    * `"crop"`: the shorter side resized to `resize_size`, then a
      random `image_size` square crop (offsets 0 to
      `resize_size - image_size`, both included); no flip, which would
      change the class of mirror-asymmetric patterns.

    Args:
        source: the training split, from `load_images`.
        batch_size: images per batch of this input pipeline (with
            `tf.distribute`, `input_context.get_per_replica_batch_size`).
            The last partial batch is dropped.
        image_size: side of the square crops; default `source.image_size`.
        resize_size: the shorter side before a `"crop"` augmentation, at
            least `image_size`; default `source.resize_size`.
        seed: the run's random seed, an int >= 0.
        epoch: the epoch's index, an int >= 0.

    Returns:
        A `tf.data.Dataset` of `(images, labels)`: float32
        `[batch_size, image_size, image_size, 3]` normalised like
        `keras_blurpool.applications.preprocess_input`, and int32
        `[batch_size]`.

    Example:

    >>> from recipes.data import load_images
    >>> source = load_images("demo", "train")
    >>> images, labels = next(iter(train_dataset(source, 64, epoch=3)))
    >>> images.shape, labels.shape
    (TensorShape([64, 32, 32, 3]), TensorShape([64]))
    """
    _check_source(source)
    check_int("batch_size", batch_size)
    image_size = source.image_size if image_size is None else image_size
    check_int("image_size", image_size)
    resize_size = source.resize_size if resize_size is None else resize_size
    check_int("resize_size", resize_size)
    check_int("seed", seed, minimum=0)
    check_int("epoch", epoch, minimum=0)
    if source.augment == "crop" and image_size > resize_size:
        raise ValueError(
            f"image_size={image_size}: the 'crop' augmentation crops from "
            f"images resized to resize_size={resize_size}; expected "
            f"image_size <= {resize_size}"
        )
    # SeedSequence mixes (seed, epoch) into unrelated streams, unlike
    # `seed + epoch`, which would replay epoch 1 of seed 0 as epoch 0 of
    # seed 1.
    epoch_seed = int(
        np.random.SeedSequence([seed, epoch]).generate_state(1, np.uint32)[0]
    )
    buffer_size = _SHUFFLE_BUFFER
    if source.num_examples:
        buffer_size = min(buffer_size, source.num_examples)
    dataset = source.dataset.shuffle(
        buffer_size, seed=epoch_seed, reshuffle_each_iteration=False
    )
    if source.augment == "imagenet":
        augment = functools.partial(_imagenet_augment, size=image_size)
    else:
        augment = functools.partial(
            _crop_augment, size=image_size, resize_size=resize_size
        )

    def augment_element(index, element):
        image, label = element
        element_seed = tf.stack([tf.constant(epoch_seed, tf.int64), index])
        return augment(image, element_seed), label

    dataset = dataset.enumerate().map(
        augment_element, num_parallel_calls=tf.data.AUTOTUNE, deterministic=True
    )
    return _batch_and_normalize(dataset, batch_size, drop_remainder=True)


def eval_dataset(
    source: ImageSource,
    batch_size: int,
    *,
    image_size: int | None = None,
    resize_size: int | None = None,
) -> tf.data.Dataset:
    """Center-cropped, normalised evaluation batches, in source order.

    The shorter image side is resized to `resize_size` (bilinear with
    antialiasing, like torchvision's `Resize` on PIL images), then the
    center `image_size` square is cropped: torchvision's
    `Resize(256), CenterCrop(224)` with the defaults of ImageNet sources.

    Args:
        source: the evaluation split, from `load_images`.
        batch_size: images per batch; the last batch may be smaller.
        image_size: side of the center crop; default `source.image_size`.
        resize_size: the shorter side before cropping, at least
            `image_size`; default `source.resize_size`.

    Returns:
        A `tf.data.Dataset` of `(images, labels)`: float32
        `[batch, image_size, image_size, 3]` normalised like
        `keras_blurpool.applications.preprocess_input`, and int32 `[batch]`.

    Example:

    >>> from recipes.data import load_images
    >>> source = load_images("demo", "validation")
    >>> images, labels = next(iter(eval_dataset(source, 100)))
    >>> images.shape
    TensorShape([100, 32, 32, 3])
    """
    _check_source(source)
    check_int("batch_size", batch_size)
    image_size = source.image_size if image_size is None else image_size
    resize_size = source.resize_size if resize_size is None else resize_size
    check_int("image_size", image_size)
    check_int("resize_size", resize_size)
    if resize_size < image_size:
        raise ValueError(
            f"resize_size={resize_size}: the center crop of "
            f"image_size={image_size} needs resize_size >= {image_size}"
        )

    def crop(image, label):
        image = center_crop(resize_short_side(image, resize_size), image_size)
        return image, label

    dataset = source.dataset.map(
        crop, num_parallel_calls=tf.data.AUTOTUNE, deterministic=True
    )
    return _batch_and_normalize(dataset, batch_size, drop_remainder=False)


def normalize(images) -> tf.Tensor:
    """Normalises RGB values in [0, 255] with the ImageNet mean and std.

    The TensorFlow counterpart of
    `keras_blurpool.applications.preprocess_input` (channels last), for
    use inside `tf.data` pipelines whatever the Keras backend.

    Args:
        images: RGB image or images, channels last, any real dtype.

    Returns:
        float32 tensor of the same shape, `(images / 255 - mean) / std`.

    Example:

    >>> normalize(tf.fill([2, 2, 3], 255.0))[0, 0].numpy().round(3)
    array([2.249, 2.429, 2.64 ], dtype=float32)
    """
    images = tf.convert_to_tensor(images)
    if images.shape.rank is not None and images.shape[-1] != 3:
        raise ValueError(
            "normalize expects RGB images with 3 channels last. Received "
            f"images of shape {images.shape}"
        )
    # The same float32 constants and arithmetic as `preprocess_input`, so
    # that both give bit-identical results.
    mean = np.array(IMAGENET_MEAN, "float32") * 255
    scale = 1 / (np.array(IMAGENET_STD, "float32") * 255)
    return (tf.cast(images, tf.float32) - mean) * scale


def _batch_and_normalize(dataset, batch_size, drop_remainder):
    # Normalising whole batches is one vectorised op instead of one per
    # image.
    dataset = dataset.batch(batch_size, drop_remainder=drop_remainder)
    dataset = dataset.map(
        lambda images, labels: (normalize(images), labels),
        num_parallel_calls=tf.data.AUTOTUNE,
        deterministic=True,
    )
    return deterministic(dataset.prefetch(tf.data.AUTOTUNE))



def _imagenet_augment(image, seed, size):
    crop_seed, flip_seed = tf.unstack(
        tf.random.experimental.stateless_split(seed, 2)
    )
    top, left, height, width = _random_resized_crop_window(
        tf.shape(image)[0], tf.shape(image)[1], crop_seed
    )
    image = tf.image.crop_to_bounding_box(image, top, left, height, width)
    image = tf.image.resize(
        image, [size, size], method="bilinear", antialias=True
    )
    return tf.image.stateless_random_flip_left_right(image, flip_seed)


def _random_resized_crop_window(
    height, width, seed, scale=(0.08, 1.0), ratio=(3 / 4, 4 / 3), attempts=10
):
    """torchvision's `RandomResizedCrop.get_params` with stateless ops.

    Draws `attempts` crops of `scale` of the area and log-uniform aspect
    `ratio` at once and keeps the first that fits, else falls back to the
    largest center crop whose aspect ratio is within `ratio`.
    """
    area_seed, ratio_seed, top_seed, left_seed = tf.unstack(
        tf.random.experimental.stateless_split(seed, 4)
    )
    height_f = tf.cast(height, tf.float32)
    width_f = tf.cast(width, tf.float32)
    fraction = tf.random.stateless_uniform(
        [attempts], area_seed, scale[0], scale[1]
    )
    area = height_f * width_f * fraction
    aspect = tf.exp(
        tf.random.stateless_uniform(
            [attempts], ratio_seed, math.log(ratio[0]), math.log(ratio[1])
        )
    )
    crop_w = tf.round(tf.sqrt(area * aspect))
    crop_h = tf.round(tf.sqrt(area / aspect))
    fits = (
        (crop_w > 0) & (crop_w <= width_f) & (crop_h > 0) & (crop_h <= height_f)
    )
    first = tf.argmax(tf.cast(fits, tf.int32), output_type=tf.int32)

    image_ratio = width_f / height_f
    fallback_w = tf.where(
        image_ratio > ratio[1], tf.round(height_f * ratio[1]), width_f
    )
    fallback_h = tf.where(
        image_ratio < ratio[0], tf.round(width_f / ratio[0]), height_f
    )
    found = tf.reduce_any(fits)
    crop_h = tf.cast(tf.where(found, crop_h[first], fallback_h), tf.int32)
    crop_w = tf.cast(tf.where(found, crop_w[first], fallback_w), tf.int32)
    top = tf.where(
        found,
        tf.random.stateless_uniform(
            [], top_seed, 0, height - crop_h + 1, dtype=tf.int32
        ),
        (height - crop_h) // 2,
    )
    left = tf.where(
        found,
        tf.random.stateless_uniform(
            [], left_seed, 0, width - crop_w + 1, dtype=tf.int32
        ),
        (width - crop_w) // 2,
    )
    return top, left, crop_h, crop_w


def _crop_augment(image, seed, size, resize_size):
    image = resize_short_side(image, resize_size)
    return tf.image.stateless_random_crop(image, [size, size, 3], seed)


def _check_source(source):
    if not isinstance(source, ImageSource):
        raise ValueError(
            f"source={source!r}: expected an ImageSource from load_images()"
        )

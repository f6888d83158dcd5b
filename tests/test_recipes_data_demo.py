"""Tests of the demo data, `recipes/data/demo.py`."""

import numpy as np
import tensorflow as tf

from recipes import data
from recipes.data import demo


def test_demo_shapes_balance_and_splits():
    train = data.load_images("demo", "train")
    assert train.num_examples == 6000
    assert train.num_classes == len(train.class_names) == 10
    assert (train.image_size, train.resize_size, train.augment) == (
        32,
        40,
        "crop",
    )
    images, labels = demo._demo_arrays("train")
    assert images.shape == (6000, 40, 40, 3) and images.dtype == np.uint8
    assert labels.dtype == np.int32
    np.testing.assert_array_equal(np.bincount(labels), [600] * 10)
    image, label = next(iter(train.dataset))
    assert image.shape == (40, 40, 3) and image.dtype == tf.uint8
    assert label.dtype == tf.int32

    for alias in ("validation", "val", "test"):
        source = data.load_images("demo", alias)
        assert source.num_examples == 1000
    val_images, val_labels = demo._demo_arrays("validation")
    np.testing.assert_array_equal(np.bincount(val_labels), [100] * 10)
    # Not the training images again.
    assert not np.array_equal(val_images, images[:1000])
    # Not blank: shapes and noise use the whole range.
    assert images.std() > 30


def test_demo_is_deterministic():
    images, labels = demo._draw_demo_images(50, np.random.default_rng(3))
    again, again_labels = demo._draw_demo_images(50, np.random.default_rng(3))
    np.testing.assert_array_equal(images, again)
    np.testing.assert_array_equal(labels, again_labels)
    other, _ = demo._draw_demo_images(50, np.random.default_rng(4))
    assert not np.array_equal(images, other)
    # Cached, and read-only because the cache shares it.
    assert demo._demo_arrays("train")[0] is demo._demo_arrays("train")[0]
    assert not demo._demo_arrays("train")[0].flags.writeable


def test_demo_shuffle_and_shards():
    images, labels = demo._demo_arrays("validation")
    shuffled = data.load_images("demo", "val", shuffle_seed=5)
    again = data.load_images("demo", "val", shuffle_seed=5)
    first = [
        label for _, label in shuffled.dataset.take(20).as_numpy_iterator()
    ]
    second = [label for _, label in again.dataset.take(20).as_numpy_iterator()]
    assert first == second
    assert first != labels[:20].tolist()

    shards = [
        data.load_images(
            "demo", "val", input_context=tf.distribute.InputContext(2, i, 2)
        )
        for i in range(2)
    ]
    sizes = [int(s.dataset.cardinality()) for s in shards]
    assert sizes == [500, 500]
    assert all(s.num_examples == 1000 for s in shards)

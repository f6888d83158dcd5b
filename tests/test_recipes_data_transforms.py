"""Tests of augmentation, cropping and batching, `recipes/data/transforms.py`."""

import numpy as np
import pytest
import tensorflow as tf

from keras_blurpool.applications import preprocess_input
from keras_blurpool.evaluation.preprocessing import center_crop
from keras_blurpool.evaluation.preprocessing import resize_short_side
from recipes import data
from recipes.data import transforms


def _source(images, labels, *, image_size, resize_size, augment="crop"):
    """An `ImageSource` of given uint8 images (one array or a list)."""
    if isinstance(images, list):
        dataset = tf.data.Dataset.from_generator(
            lambda: zip(images, labels),
            output_signature=(
                tf.TensorSpec([None, None, 3], tf.uint8),
                tf.TensorSpec([], tf.int32),
            ),
        )
    else:
        dataset = tf.data.Dataset.from_tensor_slices(
            (images, np.asarray(labels, "int32"))
        )
    return data.ImageSource(
        dataset=dataset,
        num_classes=10,
        class_names=tuple(str(k) for k in range(10)),
        num_examples=len(labels),
        image_size=image_size,
        resize_size=resize_size,
        augment=augment,
    )


def _batches(dataset):
    return [(x.numpy(), y.numpy()) for x, y in dataset]


def test_train_dataset_is_deterministic_per_seed_and_epoch():
    source = data.load_images("demo", "validation")

    def first(**kwargs):
        return _batches(data.train_dataset(source, 16, **kwargs).take(3))

    reference = first(seed=1, epoch=2)
    again = first(seed=1, epoch=2)
    for (x, y), (x2, y2) in zip(reference, again):
        np.testing.assert_array_equal(x, x2)
        np.testing.assert_array_equal(y, y2)
    for other in (first(seed=1, epoch=3), first(seed=2, epoch=2)):
        assert not np.array_equal(reference[0][0], other[0][0])
        assert not np.array_equal(reference[0][1], other[0][1])
    # Resuming after two batches gives the third.
    resumed = _batches(
        data.train_dataset(source, 16, seed=1, epoch=2).skip(2).take(1)
    )
    np.testing.assert_array_equal(resumed[0][0], reference[2][0])


def test_train_dataset_shapes_and_range():
    source = data.load_images("demo", "validation")
    dataset = data.train_dataset(source, 64)
    assert dataset.element_spec[0].shape.as_list() == [64, 32, 32, 3]
    batches = _batches(dataset)
    assert len(batches) == 1000 // 64  # The partial batch is dropped.
    images, labels = batches[0]
    assert images.dtype == np.float32 and labels.dtype == np.int32
    low = preprocess_input(np.zeros((1, 1, 1, 3), "uint8"))
    high = preprocess_input(np.full((1, 1, 1, 3), 255, "uint8"))
    assert np.all(images >= low - 1e-5) and np.all(images <= high + 1e-5)
    assert len(set(np.concatenate([y for _, y in batches]).tolist())) == 10


def test_crop_augmentation_is_a_plain_crop():
    # Pixel values code their coordinates, so each crop can be located.
    rows, cols = np.mgrid[0:40, 0:40]
    image = np.stack([rows * 6, cols * 6, np.zeros_like(rows)], -1).astype(
        "uint8"
    )
    source = _source(
        image[None].repeat(20, 0), [0] * 20, image_size=32, resize_size=40
    )
    mean = np.array([0.485, 0.456, 0.406]) * 255
    std = np.array([0.229, 0.224, 0.225]) * 255
    offsets = set()
    for images, _ in _batches(data.train_dataset(source, 10)):
        pixels = np.round(images * std + mean)
        for crop in pixels:
            top, left = int(crop[0, 0, 0]) // 6, int(crop[0, 0, 1]) // 6
            np.testing.assert_array_equal(
                crop, image[top : top + 32, left : left + 32]
            )
            offsets.add((top, left))
    assert len(offsets) > 5
    assert all(0 <= t <= 8 and 0 <= left <= 8 for t, left in offsets)


def test_imagenet_augmentation_on_images_of_any_shape():
    rng = np.random.default_rng(0)
    images = [
        rng.integers(0, 256, shape, dtype="uint8")
        for shape in [(30, 40, 3), (7, 200, 3), (200, 7, 3), (16, 16, 3)]
    ]
    source = _source(
        images, [0, 1, 2, 3], image_size=24, resize_size=28, augment="imagenet"
    )
    ((batch, labels),) = _batches(data.train_dataset(source, 4))
    assert batch.shape == (4, 24, 24, 3)
    assert sorted(labels.tolist()) == [0, 1, 2, 3]


def test_random_resized_crop_window():
    def window(height, width, i):
        top, left, h, w = transforms._random_resized_crop_window(
            height, width, tf.constant([i, 7], tf.int64)
        )
        return int(top), int(left), int(h), int(w)

    fractions, ratios = [], []
    for i in range(200):
        top, left, h, w = window(100, 120, i)
        assert 0 <= top <= 100 - h and 0 <= left <= 120 - w
        fractions.append(h * w / 12000)
        ratios.append(w / h)
    assert 0.07 < min(fractions) and max(fractions) <= 1
    assert np.ptp(fractions) > 0.7
    assert 0.7 < min(ratios) < 0.8 and 1.25 < max(ratios) < 1.4
    # Too elongated for any attempt: the central crop of ratio 4/3.
    assert window(10, 1000, 0) == (0, 493, 10, 13)
    assert window(1000, 10, 0) == (493, 0, 13, 10)


def test_train_dataset_errors():
    source = data.load_images("demo", "validation")
    with pytest.raises(ValueError, match="`batch_size` must be a positive int.*batch_size=0"):
        data.train_dataset(source, 0)
    with pytest.raises(ValueError, match="`seed` must be an int >= 0.*seed=-1"):
        data.train_dataset(source, 8, seed=-1)
    with pytest.raises(ValueError, match="`epoch` must be an int >= 0.*epoch=1.5"):
        data.train_dataset(source, 8, epoch=1.5)
    with pytest.raises(ValueError, match="image_size=48.*image_size <= 40"):
        data.train_dataset(source, 8, image_size=48)
    with pytest.raises(
        ValueError, match="source='demo': expected an ImageSource"
    ):
        data.train_dataset("demo", 8)


def test_eval_dataset_center_crop_is_exact():
    rows, cols = np.mgrid[0:40, 0:47]
    image = np.stack([rows * 5, cols * 5, rows + cols], -1).astype("uint8")
    source = _source(
        image[None].repeat(3, 0), [4, 5, 6], image_size=32, resize_size=40
    )
    batches = _batches(data.eval_dataset(source, 2))
    assert [y.tolist() for _, y in batches] == [[4, 5], [6]]  # No drop.
    # Surplus 8 rows, 15 columns: offsets 4 and round(7.5) = 8.
    expected = preprocess_input(image[None, 4:36, 8:40])
    np.testing.assert_array_equal(batches[0][0][:1], expected)


def test_eval_dataset_resizes_short_side():
    image = np.full((60, 90, 3), 128, "uint8")
    source = _source(image[None], [0], image_size=32, resize_size=40)
    ((batch, _),) = _batches(data.eval_dataset(source, 1))
    assert batch.shape == (1, 32, 32, 3)
    np.testing.assert_allclose(
        batch, preprocess_input(image[None, :32, :32]), atol=1e-5
    )
    ((batch, _),) = _batches(
        data.eval_dataset(source, 1, image_size=16, resize_size=20)
    )
    assert batch.shape == (1, 16, 16, 3)
    with pytest.raises(
        ValueError, match="resize_size=20.*image_size=32.*>= 32"
    ):
        data.eval_dataset(source, 1, resize_size=20)
    with pytest.raises(ValueError, match="batch_size=-1"):
        data.eval_dataset(source, -1)


def test_normalize_matches_preprocess_input():
    images = np.random.default_rng(0).integers(
        0, 256, (2, 5, 5, 3), dtype="uint8"
    )
    np.testing.assert_array_equal(
        data.normalize(images).numpy(), preprocess_input(images)
    )
    with pytest.raises(ValueError, match="3 channels.*shape \\(2, 2, 4\\)"):
        data.normalize(np.zeros((2, 2, 4)))


def test_resize_short_side():
    assert resize_short_side(
        tf.zeros([300, 400, 3], "uint8"), 256
    ).shape == (256, 341, 3)
    assert resize_short_side(tf.zeros([400, 300, 3]), 256).shape == (
        341,
        256,
        3,
    )
    assert resize_short_side(tf.zeros([2, 20, 10, 3]), 5).shape == (
        2,
        10,
        5,
        3,
    )
    image = np.random.default_rng(0).integers(
        0, 256, (40, 50, 3), dtype="uint8"
    )
    same = resize_short_side(image, 40)
    assert same.dtype == tf.float32
    np.testing.assert_array_equal(same.numpy(), image)
    with pytest.raises(ValueError, match=r"`size` must be a positive int. Received: size=0"):
        resize_short_side(image, 0)


def test_center_crop_rounds_half_to_even():
    rows, cols = np.mgrid[0:37, 0:39]
    image = np.stack([rows, cols, rows], -1)
    crop = center_crop(image, 32).numpy()
    # Surplus 5 -> round(2.5) = 2 and 7 -> round(3.5) = 4, as Python rounds.
    assert (crop[0, 0, 0], crop[0, 0, 1]) == (2, 4)
    assert crop.shape == (32, 32, 3)

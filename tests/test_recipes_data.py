"""Tests of the recipes' input pipelines, `recipes/data.py`."""

import os

import numpy as np
import pytest
import tensorflow as tf

from keras_blurpool.applications import preprocess_input
from recipes import data

SPEC_HELP = r"expected 'tfds:NAME\[:SPLIT\]', a folder, or 'demo'"


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


def _write_image(path, array):
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


def _make_folder(root, classes, per_class=2, ext=".png", value0=0):
    """`root/CLASS/i.ext`: flat images whose value numbers the file."""
    value = value0
    for name in classes:
        for i in range(per_class):
            _write_image(
                os.path.join(root, name, f"{i}{ext}"),
                np.full((6 + i, 8, 3), value),
            )
            value += 1


def _values_and_labels(source):
    return sorted(
        (int(image.numpy()[0, 0, 0]), int(label))
        for image, label in source.dataset
    )


# Demo data --------------------------------------------------------------


def test_demo_shapes_balance_and_splits():
    train = data.load_images("demo", "train")
    assert train.num_examples == 6000
    assert train.num_classes == len(train.class_names) == 10
    assert (train.image_size, train.resize_size, train.augment) == (
        32,
        40,
        "crop",
    )
    images, labels = data._demo_arrays("train")
    assert images.shape == (6000, 40, 40, 3) and images.dtype == np.uint8
    assert labels.dtype == np.int32
    np.testing.assert_array_equal(np.bincount(labels), [600] * 10)
    image, label = next(iter(train.dataset))
    assert image.shape == (40, 40, 3) and image.dtype == tf.uint8
    assert label.dtype == tf.int32

    for alias in ("validation", "val", "test"):
        source = data.load_images("demo", alias)
        assert source.num_examples == 1000
    val_images, val_labels = data._demo_arrays("validation")
    np.testing.assert_array_equal(np.bincount(val_labels), [100] * 10)
    # Not the training images again.
    assert not np.array_equal(val_images, images[:1000])
    # Not blank: shapes and noise use the whole range.
    assert images.std() > 30


def test_demo_is_deterministic():
    images, labels = data._draw_demo_images(50, np.random.default_rng(3))
    again, again_labels = data._draw_demo_images(50, np.random.default_rng(3))
    np.testing.assert_array_equal(images, again)
    np.testing.assert_array_equal(labels, again_labels)
    other, _ = data._draw_demo_images(50, np.random.default_rng(4))
    assert not np.array_equal(images, other)
    # Cached, and read-only because the cache shares it.
    assert data._demo_arrays("train")[0] is data._demo_arrays("train")[0]
    assert not data._demo_arrays("train")[0].flags.writeable


def test_demo_shuffle_and_shards():
    images, labels = data._demo_arrays("validation")
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


# Folders ------------------------------------------------------------------


def test_folder_labels_are_sorted_class_indices(tmp_path):
    _make_folder(tmp_path / "b_dog", [""], per_class=1, value0=10)
    _make_folder(tmp_path, ["c_fish", "a_cat"], per_class=2)
    # Extensions in any case; other files are not images.
    _write_image(
        str(tmp_path / "a_cat" / "upper.JPEG"), np.full((5, 5, 3), 200)
    )
    _write_image(
        str(tmp_path / "c_fish" / "mixed.Png"), np.full((5, 5, 3), 201)
    )
    (tmp_path / "a_cat" / "notes.txt").write_text("not an image")
    (tmp_path / ".hidden").mkdir()

    source = data.load_images(tmp_path, "train")  # A path-like works too.
    assert source.class_names == ("a_cat", "b_dog", "c_fish")
    assert source.num_classes == 3 and source.num_examples == 7
    assert (source.image_size, source.resize_size, source.augment) == (
        224,
        256,
        "imagenet",
    )
    got = _values_and_labels(source)
    # c_fish holds values 0, 1; a_cat 2, 3 (then 200 = upper.JPEG).
    assert got[:3] == [(0, 2), (1, 2), (2, 0)]
    assert (3, 0) in got and (10, 1) in got
    assert any(value > 190 and label == 0 for value, label in got)
    assert any(value > 190 and label == 2 for value, label in got)
    # Sorted, deterministic order: class by class, file by file.
    labels = [int(label) for _, label in source.dataset]
    assert labels == sorted(labels)


def test_folder_grayscale_and_any_size_become_rgb(tmp_path):
    _write_image(str(tmp_path / "gray" / "a.png"), np.full((9, 7), 77))
    _write_image(str(tmp_path / "gray" / "b.jpg"), np.full((5, 11), 90))
    source = data.load_images(str(tmp_path), "train")
    shapes = sorted(image.shape.as_list() for image, _ in source.dataset)
    assert shapes == [[5, 11, 3], [9, 7, 3]]
    image, _ = next(iter(source.dataset))
    assert image.dtype == tf.uint8
    np.testing.assert_array_equal(image.numpy(), 77)


def test_folder_split_subfolders_and_aliases(tmp_path):
    _make_folder(tmp_path / "train", ["x", "y"], per_class=1, value0=0)
    _make_folder(tmp_path / "validation", ["x", "y"], per_class=1, value0=50)
    train = data.load_images(str(tmp_path), "train")
    assert _values_and_labels(train) == [(0, 0), (1, 1)]
    for split in ("validation", "val"):
        val = data.load_images(str(tmp_path), split)
        assert _values_and_labels(val) == [(50, 0), (51, 1)]
    with pytest.raises(ValueError, match="split='test'.*train, validation"):
        data.load_images(str(tmp_path), "test")

    # And the other way round: a val/ folder serves split="validation".
    _make_folder(tmp_path / "other" / "val", ["z"], per_class=1, value0=70)
    val = data.load_images(str(tmp_path / "other"), "validation")
    assert _values_and_labels(val) == [(70, 0)]
    # A folder of classes serves any split.
    flat = data.load_images(str(tmp_path / "train"), "validation")
    assert _values_and_labels(flat) == [(0, 0), (1, 1)]


def test_folder_imagenet_labels(tmp_path):
    golden = data.IMAGENET_WNIDS[207]
    assert len(data.IMAGENET_WNIDS) == 1000
    assert data.IMAGENET_WNIDS[:2] == ("n01440764", "n01443537")
    _make_folder(tmp_path, ["n01443537", golden], per_class=1)

    plain = data.load_images(str(tmp_path), "val")
    assert plain.num_classes == 2
    assert _values_and_labels(plain) == [(0, 0), (1, 1)]

    source = data.load_images(str(tmp_path), "val", imagenet_labels=True)
    assert source.num_classes == 1000
    assert source.class_names == data.IMAGENET_WNIDS
    assert _values_and_labels(source) == [(0, 1), (1, 207)]

    # Classes that are not WordNet ids keep their own labels.
    _make_folder(tmp_path / "other", ["cat", "dog"], per_class=1)
    other = data.load_images(
        str(tmp_path / "other"), "val", imagenet_labels=True
    )
    assert other.class_names == ("cat", "dog")


def test_folder_shards_are_disjoint_and_complete(tmp_path):
    _make_folder(tmp_path, ["a", "b", "c"], per_class=3)
    for seed in (None, 1):
        everything = _values_and_labels(
            data.load_images(str(tmp_path), "train", shuffle_seed=seed)
        )
        shards = [
            _values_and_labels(
                data.load_images(
                    str(tmp_path),
                    "train",
                    shuffle_seed=seed,
                    input_context=tf.distribute.InputContext(2, i, 2),
                )
            )
            for i in range(2)
        ]
        assert len(shards[0]) + len(shards[1]) == 9
        assert not set(shards[0]) & set(shards[1])
        assert sorted(shards[0] + shards[1]) == everything


def test_folder_shuffle_seed_is_a_fixed_order(tmp_path):
    _make_folder(tmp_path, ["a", "b"], per_class=4)

    def order(seed):
        source = data.load_images(str(tmp_path), "train", shuffle_seed=seed)
        # Twice through the same dataset: the same order both times.
        passes = [
            [int(image[0, 0, 0]) for image, _ in source.dataset]
            for _ in range(2)
        ]
        assert passes[0] == passes[1]
        return passes[0]

    assert order(None) == list(range(8))
    assert order(3) == order(3)
    assert sorted(order(3)) == list(range(8))
    assert order(3) != order(None)


def test_folder_errors(tmp_path):
    missing = str(tmp_path / "nowhere")
    with pytest.raises(FileNotFoundError, match="nowhere.*no such folder"):
        data.load_images(missing, "train")
    with pytest.raises(
        ValueError, match=r"no class folders.*\.jpg, \.jpeg, \.png"
    ):
        data.load_images(str(tmp_path), "train")
    _make_folder(tmp_path, ["a"], per_class=1)
    (tmp_path / "empty").mkdir()
    (tmp_path / "empty" / "readme.txt").write_text("")
    with pytest.raises(
        ValueError, match=r"'.*empty' has no images.*\.jpg, \.jpeg, \.png"
    ):
        data.load_images(str(tmp_path), "train")


def test_validation_labels_follow_the_training_classes_by_name(tmp_path):
    """A split lacking a class keeps the labels of the others (issue 11)."""
    _make_folder(tmp_path / "train", ["cat", "dog", "owl"], per_class=1)
    _make_folder(tmp_path / "val", ["cat", "owl"], per_class=1, value0=10)
    classes = data.load_images(str(tmp_path), "train").class_names
    with pytest.warns(UserWarning, match=r"val' lacks 1 of the 3 .*: dog"):
        val = data.load_images(str(tmp_path), "val", class_names=classes)
    assert val.class_names == ("cat", "dog", "owl") and val.num_classes == 3
    # Alone, val/ would label owl 1 (its second folder); by name it is 2.
    assert _values_and_labels(val) == [(10, 0), (11, 2)]
    _make_folder(tmp_path / "val", ["emu"], per_class=1)
    with pytest.raises(ValueError, match="class\\(es\\) 'emu' that the training"):
        data.load_images(str(tmp_path), "val", class_names=classes)
    with pytest.raises(ValueError, match="class_names='cat': expected"):
        data.load_images(str(tmp_path), "val", class_names="cat")
    # The demo data by name too: the same list changes nothing.
    demo = data.load_images("demo", "val", class_names=data._DEMO_CLASSES)
    assert demo.class_names == data._DEMO_CLASSES


def _write_bad_images(folder):
    """A truncated JPEG, garbage with a .png name and an empty file."""
    good = tf.io.encode_jpeg(np.full((8, 8, 3), 50, "uint8")).numpy()
    bad = {
        "truncated.jpg": good[: len(good) // 2],
        "garbage.png": b"this is not a PNG" * 10,
        "zzz_empty.jpg": b"",  # Sorted last: found by the end sentinel.
    }
    for name, content in bad.items():
        (folder / name).write_bytes(content)
    return sorted(str(folder / name) for name in bad)


def test_bad_images_are_named_or_skipped_and_counted(tmp_path):
    _make_folder(tmp_path, ["a", "b"], per_class=2)
    bad = _write_bad_images(tmp_path / "b")
    source = data.load_images(str(tmp_path), "train")
    # The error names the first bad file in the (sorted) order.
    with pytest.raises(
        tf.errors.InvalidArgumentError,
        match=r"cannot read image file\] \[.*garbage\.png\].*--skip-bad-images",
    ):
        list(source.dataset)
    assert source.bad_images.error().startswith(
        f"cannot read image file {bad[0]!r} (Unknown image file format"
    )
    assert source.dataset.cardinality() == 7  # known without skipping

    skipping = data.load_images(str(tmp_path), "train", skip_bad_images=True)
    assert _values_and_labels(skipping) == [(0, 0), (1, 0), (2, 1), (3, 1)]
    assert skipping.bad_images.paths == bad and skipping.bad_images.count == 3
    assert "truncated" not in skipping.bad_images.reason(bad[0])
    assert "Invalid JPEG data" in skipping.bad_images.reason(bad[1])
    assert "empty" in skipping.bad_images.reason(bad[2])
    # A second pass (and training batches) count each file once.
    batches = list(data.train_dataset(skipping, 2, image_size=4))
    assert len(batches) == 2 and skipping.bad_images.count == 3
    assert "3 unreadable image file(s) skipped" in skipping.bad_images.summary()


# TFDS -------------------------------------------------------------------


@pytest.fixture
def tfds():
    return pytest.importorskip("tensorflow_datasets")


def test_tfds_rgb_images_of_any_size(tfds, tmp_path):
    with tfds.testing.mock_data(num_examples=4):
        source = data.load_images(
            "tfds:imagenet2012", "validation", manual_dir=str(tmp_path)
        )
        examples = list(source.dataset)
    assert source.num_classes == 1000
    # TFDS labels ImageNet by WordNet id, in the models' order.
    assert source.class_names == data.IMAGENET_WNIDS
    assert (source.image_size, source.resize_size, source.augment) == (
        224,
        256,
        "imagenet",
    )
    assert len(examples) == 4
    for image, label in examples:
        assert image.dtype == tf.uint8 and image.shape[-1] == 3
        assert label.dtype == tf.int32 and 0 <= int(label) < 1000


def test_tfds_grayscale_and_split_from_spec(tfds):
    calls = []

    def as_dataset(
        self, split, read_config=None, shuffle_files=False, **kwargs
    ):
        calls.append((split, shuffle_files, read_config))
        return tf.data.Dataset.from_tensor_slices(
            {
                "image": np.arange(3 * 28 * 28, dtype="uint8").reshape(
                    3, 28, 28, 1
                ),
                "label": np.array([7, 1, 3], "int64"),
            }
        )

    context = tf.distribute.InputContext(2, 1, 2)
    with tfds.testing.mock_data(as_dataset_fn=as_dataset):
        source = data.load_images(
            "tfds:mnist:test", "train", input_context=context, shuffle_seed=4
        )
        plain = data.load_images("tfds:mnist", "train")
        examples = list(source.dataset)
    assert [split for split, _, _ in calls] == ["test", "train"]
    (_, shuffle_files, read_config), (_, plain_shuffle, _) = calls
    assert shuffle_files and not plain_shuffle
    assert read_config.shuffle_seed == 4
    assert read_config.input_context is context

    assert source.num_classes == 10
    assert source.class_names == tuple(str(k) for k in range(10))
    assert plain.num_examples is None  # Mocked TFDS knows no split sizes.
    assert [int(label) for _, label in examples] == [7, 1, 3]
    image = examples[0][0].numpy()
    assert image.shape == (28, 28, 3)
    # The gray channel, three times.
    np.testing.assert_array_equal(image[..., 0], image[..., 2])
    np.testing.assert_array_equal(image[..., 1].ravel(), np.arange(784) % 256)


def test_tfds_imagenet_labels_by_wnid(tfds):
    with tfds.testing.mock_data(num_examples=6):
        own = data.load_images("tfds:imagenette", "train")
        mapped = data.load_images(
            "tfds:imagenette", "train", imagenet_labels=True
        )
        own_labels = [int(label) for _, label in own.dataset]
        mapped_labels = [int(label) for _, label in mapped.dataset]
    assert own.num_classes == 10
    assert mapped.num_classes == 1000
    assert mapped.class_names == data.IMAGENET_WNIDS
    expected = [
        data.IMAGENET_WNIDS.index(own.class_names[k]) for k in own_labels
    ]
    assert mapped_labels == expected


def test_tfds_split_aliases():
    splits = {"train": None, "validation": None}
    assert data._tfds_split("tfds:x", "val", splits) == "validation"
    assert data._tfds_split("tfds:x", "train[:10%]", splits) == "train[:10%]"
    assert data._tfds_split("tfds:x", "anything", {}) == "anything"
    with pytest.raises(ValueError, match="split='tset'.*train, validation"):
        data._tfds_split("tfds:x", "tset", splits)


def test_tfds_spec_parsing():
    match = data._TFDS_SPEC.fullmatch(
        "tfds:imagenette/320px-v2:1.0.0:train[:5]"
    )
    assert match["name"] == "imagenette/320px-v2:1.0.0"
    assert match["split"] == "train[:5]"
    match = data._TFDS_SPEC.fullmatch("tfds:mnist")
    assert (match["name"], match["split"]) == ("mnist", None)


def test_tfds_errors(tfds, tmp_path):
    for spec in ("tfds:", "tfds::train", "tfds:mnist:"):
        with pytest.raises(ValueError, match=f"data='{spec}': {SPEC_HELP}"):
            data.load_images(spec, "train")
    with tfds.testing.mock_data():
        with pytest.raises(ValueError, match="no dataset 'no_such_set'"):
            data.load_images("tfds:no_such_set", "train")
        with pytest.raises(
            ValueError,
            match="imdb_reviews': expected a dataset with an Image and a",
        ):
            data.load_images("tfds:imdb_reviews", "train")
    with pytest.raises(FileNotFoundError, match="manual_dir=.*absent.*no such"):
        data.load_images(
            "tfds:imagenet2012", "train", manual_dir=str(tmp_path / "absent")
        )


def test_load_images_argument_errors():
    for bad in ("", None, 3):
        with pytest.raises(ValueError, match=f"data={bad!r}: {SPEC_HELP}"):
            data.load_images(bad, "train")
    with pytest.raises(FileNotFoundError, match=f"data='dmeo'.*{SPEC_HELP}"):
        data.load_images("dmeo", "train")
    with pytest.raises(ValueError, match="split=''"):
        data.load_images("demo", "")
    with pytest.raises(ValueError, match="split='dev'.*'train'.*'validation'"):
        data.load_images("demo", "dev")
    with pytest.raises(ValueError, match="input_context=2: expected"):
        data.load_images("demo", "train", input_context=2)
    with pytest.raises(ValueError, match="shuffle_seed='1': expected an int"):
        data.load_images("demo", "train", shuffle_seed="1")


# Training batches ---------------------------------------------------------


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
        top, left, h, w = data._random_resized_crop_window(
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


# Evaluation batches -------------------------------------------------------


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


# Helpers ------------------------------------------------------------------


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
    assert data.resize_short_side(
        tf.zeros([300, 400, 3], "uint8"), 256
    ).shape == (256, 341, 3)
    assert data.resize_short_side(tf.zeros([400, 300, 3]), 256).shape == (
        341,
        256,
        3,
    )
    assert data.resize_short_side(tf.zeros([2, 20, 10, 3]), 5).shape == (
        2,
        10,
        5,
        3,
    )
    image = np.random.default_rng(0).integers(
        0, 256, (40, 50, 3), dtype="uint8"
    )
    same = data.resize_short_side(image, 40)
    assert same.dtype == tf.float32
    np.testing.assert_array_equal(same.numpy(), image)
    with pytest.raises(ValueError, match=r"`size` must be a positive int. Received: size=0"):
        data.resize_short_side(image, 0)


def test_center_crop_rounds_half_to_even():
    rows, cols = np.mgrid[0:37, 0:39]
    image = np.stack([rows, cols, rows], -1)
    crop = data.center_crop(image, 32).numpy()
    # Surplus 5 -> round(2.5) = 2 and 7 -> round(3.5) = 4, as Python rounds.
    assert (crop[0, 0, 0], crop[0, 0, 1]) == (2, 4)
    assert crop.shape == (32, 32, 3)


def test_image_source_checks_its_fields():
    dataset = tf.data.Dataset.range(1)
    with pytest.raises(ValueError, match="augment='flip'.*'imagenet', 'crop'"):
        data.ImageSource(dataset, 2, ("a", "b"), None, 32, 40, "flip")
    with pytest.raises(
        ValueError, match="class_names has 1 names but num_classes=2"
    ):
        data.ImageSource(dataset, 2, ("a",), None, 32, 40, "crop")
    with pytest.raises(ValueError, match="resize_size=0"):
        data.ImageSource(dataset, 2, ("a", "b"), None, 32, 0, "crop")

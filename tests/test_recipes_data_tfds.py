"""Tests of the TensorFlow Datasets source, `recipes/data/tfds.py`."""

import numpy as np
import pytest
import tensorflow as tf

from recipes import data
from recipes.data import tfds as tfds_source
from tests._recipes_images import SPEC_HELP


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
    assert tfds_source._tfds_split("tfds:x", "val", splits) == "validation"
    assert tfds_source._tfds_split("tfds:x", "train[:10%]", splits) == "train[:10%]"
    assert tfds_source._tfds_split("tfds:x", "anything", {}) == "anything"
    with pytest.raises(ValueError, match="split='tset'.*train, validation"):
        tfds_source._tfds_split("tfds:x", "tset", splits)


def test_tfds_spec_parsing():
    match = tfds_source._TFDS_SPEC.fullmatch(
        "tfds:imagenette/320px-v2:1.0.0:train[:5]"
    )
    assert match["name"] == "imagenette/320px-v2:1.0.0"
    assert match["split"] == "train[:5]"
    match = tfds_source._TFDS_SPEC.fullmatch("tfds:mnist")
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

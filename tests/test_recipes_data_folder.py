"""Tests of the folder source, `recipes/data/folder.py`."""

import numpy as np
import pytest
import tensorflow as tf

from recipes import data
from tests._recipes_images import make_folder
from tests._recipes_images import values_and_labels
from tests._recipes_images import write_image


def test_folder_labels_are_sorted_class_indices(tmp_path):
    make_folder(tmp_path / "b_dog", [""], per_class=1, value0=10)
    make_folder(tmp_path, ["c_fish", "a_cat"], per_class=2)
    # Extensions in any case; other files are not images.
    write_image(
        str(tmp_path / "a_cat" / "upper.JPEG"), np.full((5, 5, 3), 200)
    )
    write_image(
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
    got = values_and_labels(source)
    # c_fish holds values 0, 1; a_cat 2, 3 (then 200 = upper.JPEG).
    assert got[:3] == [(0, 2), (1, 2), (2, 0)]
    assert (3, 0) in got and (10, 1) in got
    assert any(value > 190 and label == 0 for value, label in got)
    assert any(value > 190 and label == 2 for value, label in got)
    # Sorted, deterministic order: class by class, file by file.
    labels = [int(label) for _, label in source.dataset]
    assert labels == sorted(labels)


def test_folder_grayscale_and_any_size_become_rgb(tmp_path):
    write_image(str(tmp_path / "gray" / "a.png"), np.full((9, 7), 77))
    write_image(str(tmp_path / "gray" / "b.jpg"), np.full((5, 11), 90))
    source = data.load_images(str(tmp_path), "train")
    shapes = sorted(image.shape.as_list() for image, _ in source.dataset)
    assert shapes == [[5, 11, 3], [9, 7, 3]]
    image, _ = next(iter(source.dataset))
    assert image.dtype == tf.uint8
    np.testing.assert_array_equal(image.numpy(), 77)


def test_folder_split_subfolders_and_aliases(tmp_path):
    make_folder(tmp_path / "train", ["x", "y"], per_class=1, value0=0)
    make_folder(tmp_path / "validation", ["x", "y"], per_class=1, value0=50)
    train = data.load_images(str(tmp_path), "train")
    assert values_and_labels(train) == [(0, 0), (1, 1)]
    for split in ("validation", "val"):
        val = data.load_images(str(tmp_path), split)
        assert values_and_labels(val) == [(50, 0), (51, 1)]
    with pytest.raises(ValueError, match="split='test'.*train, validation"):
        data.load_images(str(tmp_path), "test")

    # And the other way round: a val/ folder serves split="validation".
    make_folder(tmp_path / "other" / "val", ["z"], per_class=1, value0=70)
    val = data.load_images(str(tmp_path / "other"), "validation")
    assert values_and_labels(val) == [(70, 0)]
    # A folder of classes serves any split.
    flat = data.load_images(str(tmp_path / "train"), "validation")
    assert values_and_labels(flat) == [(0, 0), (1, 1)]


def test_folder_shards_are_disjoint_and_complete(tmp_path):
    make_folder(tmp_path, ["a", "b", "c"], per_class=3)
    for seed in (None, 1):
        everything = values_and_labels(
            data.load_images(str(tmp_path), "train", shuffle_seed=seed)
        )
        shards = [
            values_and_labels(
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
    make_folder(tmp_path, ["a", "b"], per_class=4)

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
    make_folder(tmp_path, ["a"], per_class=1)
    (tmp_path / "empty").mkdir()
    (tmp_path / "empty" / "readme.txt").write_text("")
    with pytest.raises(
        ValueError, match=r"'.*empty' has no images.*\.jpg, \.jpeg, \.png"
    ):
        data.load_images(str(tmp_path), "train")

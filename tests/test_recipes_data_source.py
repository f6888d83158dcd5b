"""Tests of `ImageSource`, `recipes/data/source.py`."""

import pytest
import tensorflow as tf

from recipes import data


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

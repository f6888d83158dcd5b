"""Tests of the label alignment, `recipes/data/labels.py`.

Through the folder and demo sources, which map their labels with it.
"""

import pytest

from recipes import data
from recipes.data import demo
from tests._recipes_images import make_folder
from tests._recipes_images import values_and_labels


def test_folder_imagenet_labels(tmp_path):
    golden = data.IMAGENET_WNIDS[207]
    assert len(data.IMAGENET_WNIDS) == 1000
    assert data.IMAGENET_WNIDS[:2] == ("n01440764", "n01443537")
    make_folder(tmp_path, ["n01443537", golden], per_class=1)

    plain = data.load_images(str(tmp_path), "val")
    assert plain.num_classes == 2
    assert values_and_labels(plain) == [(0, 0), (1, 1)]

    source = data.load_images(str(tmp_path), "val", imagenet_labels=True)
    assert source.num_classes == 1000
    assert source.class_names == data.IMAGENET_WNIDS
    assert values_and_labels(source) == [(0, 1), (1, 207)]

    # Classes that are not WordNet ids keep their own labels.
    make_folder(tmp_path / "other", ["cat", "dog"], per_class=1)
    other = data.load_images(
        str(tmp_path / "other"), "val", imagenet_labels=True
    )
    assert other.class_names == ("cat", "dog")


def test_validation_labels_follow_the_training_classes_by_name(tmp_path):
    """A split lacking a class keeps the labels of the others (issue 11)."""
    make_folder(tmp_path / "train", ["cat", "dog", "owl"], per_class=1)
    make_folder(tmp_path / "val", ["cat", "owl"], per_class=1, value0=10)
    classes = data.load_images(str(tmp_path), "train").class_names
    with pytest.warns(UserWarning, match=r"val' lacks 1 of the 3 .*: dog"):
        val = data.load_images(str(tmp_path), "val", class_names=classes)
    assert val.class_names == ("cat", "dog", "owl") and val.num_classes == 3
    # Alone, val/ would label owl 1 (its second folder); by name it is 2.
    assert values_and_labels(val) == [(10, 0), (11, 2)]
    make_folder(tmp_path / "val", ["emu"], per_class=1)
    with pytest.raises(ValueError, match="class\\(es\\) 'emu' that the training"):
        data.load_images(str(tmp_path), "val", class_names=classes)
    with pytest.raises(ValueError, match="class_names='cat': expected"):
        data.load_images(str(tmp_path), "val", class_names="cat")
    # The demo data by name too: the same list changes nothing.
    demo_source = data.load_images("demo", "val", class_names=demo._DEMO_CLASSES)
    assert demo_source.class_names == demo._DEMO_CLASSES

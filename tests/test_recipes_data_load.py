"""Tests of `load_images`'s argument checks, `recipes/data/load.py`."""

import pytest

from recipes import data
from tests._recipes_images import SPEC_HELP


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

"""Tests of the bad-image handling of folders, `recipes/data/bad_images.py`."""

import numpy as np
import pytest
import tensorflow as tf

from recipes import data
from tests._recipes_images import make_folder
from tests._recipes_images import values_and_labels


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
    make_folder(tmp_path, ["a", "b"], per_class=2)
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
    assert values_and_labels(skipping) == [(0, 0), (1, 0), (2, 1), (3, 1)]
    assert skipping.bad_images.paths == bad and skipping.bad_images.count == 3
    assert "truncated" not in skipping.bad_images.reason(bad[0])
    assert "Invalid JPEG data" in skipping.bad_images.reason(bad[1])
    assert "empty" in skipping.bad_images.reason(bad[2])
    # A second pass (and training batches) count each file once.
    batches = list(data.train_dataset(skipping, 2, image_size=4))
    assert len(batches) == 2 and skipping.bad_images.count == 3
    assert "3 unreadable image file(s) skipped" in skipping.bad_images.summary()

"""Tests of the bad-image handling of folders, `recipes/data/bad_images.py`."""

import json

import numpy as np
import pytest
import tensorflow as tf

from recipes import data
from tests._recipes_images import make_folder
from tests._recipes_images import values_and_labels
from tests._recipes_images import write_image
from tests._recipes_images import write_png_bomb
from tests._recipes_images import write_png_header
from tests._recipes_training import run_python


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
        f"cannot read image file {bad[0]!r} (not a JPEG or PNG image)"
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


def test_images_over_max_image_pixels_are_named_or_skipped(tmp_path):
    """Sized from their headers: a JPEG, a PNG, a forged 2**32-1 side."""
    make_folder(tmp_path, ["a", "b"], per_class=2)  # 6x8 and 7x8 images
    write_image(str(tmp_path / "a" / "big.jpg"), np.zeros((9, 12, 3)))
    write_png_header(tmp_path / "b" / "huge.png", 2**32 - 1, 2**32 - 1)
    big, huge = str(tmp_path / "a" / "big.jpg"), str(tmp_path / "b" / "huge.png")

    source = data.load_images(str(tmp_path), "train", max_image_pixels=100)
    with pytest.raises(tf.errors.InvalidArgumentError, match="big.jpg"):
        list(source.dataset)
    assert source.bad_images.error() == (
        f"cannot read image file {big!r} (12x9 = 108 pixels, over "
        "max_image_pixels (--max-image-pixels) = 100); remove or replace it, "
        "or skip such files with --skip-bad-images"
    )
    skipping = data.load_images(
        str(tmp_path), "train", max_image_pixels=100, skip_bad_images=True
    )
    assert values_and_labels(skipping) == [(0, 0), (1, 0), (2, 1), (3, 1)]
    assert skipping.bad_images.paths == [big, huge]
    side = f"{2**32 - 1}"
    assert skipping.bad_images.reason(huge).startswith(f"{side}x{side} = ")
    # 108 pixels fit the default bound, Pillow's MAX_IMAGE_PIXELS.
    default = data.load_images(str(tmp_path), "train", skip_bad_images=True)
    assert len(list(default.dataset)) == 5 and default.bad_images.paths == [huge]
    assert "89,478,485" in default.bad_images.reason(huge)
    for bad in (0, -1, 2.5, True, "100"):
        with pytest.raises(ValueError, match="max_image_pixels"):
            data.load_images(str(tmp_path), "train", max_image_pixels=bad)


def test_a_resize_beyond_max_image_pixels_is_a_bad_file(tmp_path):
    """A 20000x2 PNG has 40,000 pixels, but 655 million once resized to a
    short side of 256, as evaluation does (8.4 GiB of peak memory)."""
    make_folder(tmp_path, ["a"], per_class=2)  # 6x8 and 7x8
    thin = tmp_path / "a" / "thin.png"
    write_png_bomb(thin, 20000, 2)
    source = data.load_images(str(tmp_path), "val", skip_bad_images=True,
                              short_side=256)
    assert values_and_labels(source) == [(0, 0), (1, 0)]
    assert source.bad_images.reason(str(thin)) == (
        "20000x2, resized to a short side of 256, makes 256x2560000 = "
        "655,360,000 pixels, over max_image_pixels (--max-image-pixels) = "
        "89,478,485"
    )
    images, _ = next(iter(data.eval_dataset(source, 2, image_size=224,
                                            resize_size=256)))
    assert images.shape == (2, 224, 224, 3)
    # Not resized, it fits: 40,000 pixels.
    plain = data.load_images(str(tmp_path), "val", skip_bad_images=True)
    assert len(list(plain.dataset)) == 3 and plain.bad_images.count == 0
    # The small images resized to 256: 256x341 and 256x292 pixels.
    bounded = data.load_images(str(tmp_path), "val", skip_bad_images=True,
                               max_image_pixels=90_000, short_side=256)
    assert len(list(bounded.dataset)) == 2
    tighter = data.load_images(str(tmp_path), "val", skip_bad_images=True,
                               max_image_pixels=80_000, short_side=256)
    assert values_and_labels(tighter) == [(1, 0)]  # the 7x8 one
    with pytest.raises(ValueError, match="short_side"):
        data.load_images(str(tmp_path), "val", short_side=0)


def test_other_formats_under_image_names_are_not_decoded(tmp_path):
    """GIF, BMP and WebP named .png/.jpg: tf.io.decode_image would take them
    (a GIF's frames all at once), so they are bad files, never decoded."""
    image_module = pytest.importorskip("PIL.Image")  # matplotlib's dependency
    make_folder(tmp_path, ["a"], per_class=2)
    picture = image_module.fromarray(np.zeros((5, 7, 3), np.uint8))
    disguised = []
    for kind, name in (("GIF", "g.png"), ("BMP", "b.jpg"), ("WEBP", "w.jpeg")):
        picture.save(tmp_path / "a" / name, kind)
        disguised.append(str(tmp_path / "a" / name))
    source = data.load_images(str(tmp_path), "train", skip_bad_images=True)
    assert values_and_labels(source) == [(0, 0), (1, 0)]
    assert source.bad_images.paths == sorted(disguised)
    for path in disguised:
        assert source.bad_images.reason(path) == "not a JPEG or PNG image"


_PEAK_MEMORY = """
import json, resource, sys
from recipes import data

def peak_mb():
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024

def read(folder):
    source = data.load_images(folder, "train", skip_bad_images=True)
    return sum(1 for _ in source.dataset), source.bad_images.paths

clean = read(sys.argv[1])  # also warms up TensorFlow's runtime
before = peak_mb()
bombed = read(sys.argv[2])
print(json.dumps({"clean": clean, "bombed": bombed, "growth_mb": peak_mb() - before}))
"""


def test_a_48_kb_png_of_20000x20000_pixels_leaves_the_peak_memory_alone(
    tmp_path,
):
    """Issue 30: one such PNG among 16 images raised the peak by 1.2 GB.

    Measured in a subprocess (its peak resident memory, `ru_maxrss`): the
    file is refused from its header, never decoded.
    """
    make_folder(tmp_path / "clean", ["a", "b"], per_class=8)
    make_folder(tmp_path / "bombed", ["a", "b"], per_class=8)
    bomb = tmp_path / "bombed" / "b" / "bomb.png"
    write_png_bomb(bomb, 20000)
    assert bomb.stat().st_size < 50_000  # 1.2 GB decoded as RGB
    got = json.loads(run_python(
        _PEAK_MEMORY, str(tmp_path / "clean"), str(tmp_path / "bombed"),
        timeout=300,
    ).strip().splitlines()[-1])
    assert got["growth_mb"] < 300, got  # MiB; decoding it adds 1200
    assert got["clean"] == [16, []]
    assert got["bombed"] == [16, [str(bomb)]]

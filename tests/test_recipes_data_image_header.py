"""Tests of the image sizes read from headers, `recipes/data/image_header.py`."""

import io

import numpy as np
import pytest
import tensorflow as tf

from recipes.data.image_header import fits
from recipes.data.image_header import header_size
from recipes.data.image_header import image_format
from tests._recipes_images import write_png_bomb
from tests._recipes_images import write_png_header


def _jpeg_and_png_files():
    """JPEGs and PNGs of odd sizes in the variants TensorFlow writes."""
    rng = np.random.default_rng(0)
    rgb = rng.integers(0, 256, (13, 29, 3), dtype=np.uint8)
    gray = rng.integers(0, 256, (31, 7, 1), dtype=np.uint8)
    return {
        "jpeg rgb": tf.io.encode_jpeg(rgb).numpy(),
        "jpeg gray": tf.io.encode_jpeg(gray).numpy(),
        "jpeg progressive 4:4:4": tf.io.encode_jpeg(
            rgb, progressive=True, chroma_downsampling=False
        ).numpy(),
        "png rgb": tf.io.encode_png(rgb).numpy(),
        "png gray": tf.io.encode_png(gray).numpy(),
        "png rgba 16-bit": tf.io.encode_png(
            rng.integers(0, 65536, (5, 3, 4)).astype(np.uint16)
        ).numpy(),
    }


@pytest.mark.parametrize("name", list(_jpeg_and_png_files()))
def test_header_size_is_the_decoded_size(name):
    contents = _jpeg_and_png_files()[name]
    decoded = tf.io.decode_image(contents, channels=3, expand_animations=False)
    height, width = header_size(contents)
    assert (int(height), int(width)) == tuple(decoded.shape[:2])
    assert image_format(contents[:24]) == name.split()[0]
    # The same in a tf.data map, as the folder source runs it.
    mapped = tf.data.Dataset.from_tensors(contents).map(header_size)
    assert [tuple(map(int, size)) for size in mapped] == [tuple(decoded.shape[:2])]


def test_a_1_bit_png_bomb_is_sized_without_decoding(tmp_path):
    path = tmp_path / "bomb.png"
    write_png_bomb(path, 20000)
    assert path.stat().st_size < 100_000  # 1.2 GB once decoded as RGB
    height, width = header_size(tf.io.read_file(str(path)))
    assert (int(height), int(width)) == (20000, 20000)
    small = tmp_path / "small.png"
    write_png_bomb(small, 37, 11)  # the same writer, decodable here
    image = tf.io.decode_image(tf.io.read_file(str(small)), channels=3)
    assert image.shape == (11, 37, 3)
    assert [int(side) for side in header_size(tf.io.read_file(str(small)))] == [11, 37]


def test_other_formats_and_short_files_have_no_size():
    """GIF, BMP, WebP (which tf.io.decode_image decodes) and short bytes."""
    image_module = pytest.importorskip("PIL.Image")  # matplotlib's dependency
    picture = image_module.fromarray(np.zeros((5, 7, 3), np.uint8))
    others = {}
    for kind in ("GIF", "BMP", "WEBP"):
        buffer = io.BytesIO()
        picture.save(buffer, kind)
        others[kind] = buffer.getvalue()
        decoded = tf.io.decode_image(others[kind], expand_animations=False)
        assert decoded.shape[:2] == (5, 7)  # TensorFlow would decode it
    png = tf.io.encode_png(np.zeros((5, 7, 3), np.uint8)).numpy()
    others.update({
        "empty": b"",
        "png signature only": png[:8],
        "png cut inside IHDR": png[:23],
        "jpeg xl codestream": b"\xff\x0a" + bytes(30),
    })
    for name, contents in others.items():
        assert image_format(contents[:24]) is None, name
        assert [int(side) for side in header_size(contents)] == [-1, -1], name


def test_fits_bounds_the_product_without_overflow(tmp_path):
    path = tmp_path / "huge.png"
    side = 2**32 - 1  # height * width overflows int64
    write_png_header(path, side, side)
    height, width = header_size(tf.io.read_file(str(path)))
    assert (int(height), int(width)) == (side, side)
    assert not bool(fits(height, width, 2**63 - 1))
    for (h, w), bound, expected in [
        ((100, 50), 5000, True), ((100, 51), 5000, False),
        ((5001, 1), 5000, False), ((1, 5001), 5000, False),
        ((-1, -1), 5000, False), ((0, 7), 5000, True),
    ]:
        got = fits(tf.constant(h, tf.int64), tf.constant(w, tf.int64), bound)
        assert bool(got) is expected, (h, w, bound)

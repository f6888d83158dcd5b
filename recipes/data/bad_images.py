"""Decoding a list of image files, with a record of those that fail.

A folder of a million images has a few truncated, corrupt or empty files
(or non-images with an image extension), and a folder from elsewhere may
hold a decompression bomb (a 48 KB PNG of 20000x20000 pixels).
`decode_files` turns the file list into `(image, label)` elements,
refusing before decoding any file that is not a JPEG or PNG or whose
header declares more than `max_image_pixels` pixels
(`recipes.data.image_header`), and either skips bad files or stops at the
first with an error that names it; `BadImages` records them (each once,
however many passes see it) for the command lines to report.
"""

from __future__ import annotations

import re
import threading

import numpy as np
import tensorflow as tf

from .._args import DEFAULT_MAX_IMAGE_PIXELS
from .image_header import fits
from .image_header import header_size
from .image_header import image_format
from .source import deterministic


class BadImages:
    """The image files of a folder source that cannot be read or decoded.

    A source fills it while its dataset is iterated (truncated, corrupt or
    empty files, files that are not JPEG or PNG images, images of more
    than `max_image_pixels` pixels), each file once however many passes
    see it. With `skip=True` such files are left out of the dataset;
    otherwise the first one stops the iteration with a
    `tf.errors.InvalidArgumentError` naming it, and `error()` gives the
    message a command line prints instead.

    Attributes:
        skip: whether bad files are skipped rather than an error.
        max_image_pixels: the most pixels (height x width, as the file's
            header declares them) of an image that is decoded, or that the
            resize to `short_side` makes.
        short_side: the shorter side the images are resized to
            downstream (evaluation's resize), or None.
    """

    def __init__(self, skip: bool,
                 max_image_pixels: int = DEFAULT_MAX_IMAGE_PIXELS,
                 short_side: int | None = None):
        self.skip = skip
        self.max_image_pixels = max_image_pixels
        self.short_side = short_side
        self._lock = threading.Lock()
        self._reasons: dict[str, str] = {}

    @property
    def paths(self) -> list[str]:
        """The bad files seen so far, sorted."""
        with self._lock:
            return sorted(self._reasons)

    @property
    def count(self) -> int:
        """How many bad files were seen so far."""
        with self._lock:
            return len(self._reasons)

    def reason(self, path: str) -> str:
        """Why `path` could not be read, as TensorFlow put it."""
        with self._lock:
            return self._reasons[path]

    def error(self) -> str | None:
        """The message for the first bad file, or None if there is none."""
        paths = self.paths
        if not paths:
            return None
        return (
            f"cannot read image file {paths[0]!r} ({self.reason(paths[0])}); "
            "remove or replace it, or skip such files with --skip-bad-images"
        )

    def summary(self, limit: int = 5) -> str:
        """`"N unreadable image file(s) skipped: a, b, ..."`."""
        paths = self.paths
        shown = ", ".join(paths[:limit]) + (", ..." if len(paths) > limit else "")
        return f"{len(paths)} unreadable image file(s) skipped: {shown}"

    def _record(self, paths) -> None:
        # Runs in a tf.py_function, only when files were dropped: checking
        # each again here gives the reason that ignore_errors discarded.
        for path in paths.numpy():
            path = path.decode("utf-8", "replace")
            try:
                reason = self._why(tf.io.read_file(path))
            except tf.errors.OpError as error:
                reason = _op_error_text(error)
            with self._lock:
                self._reasons.setdefault(path, reason)
        return len(paths)

    def _why(self, contents) -> str:
        """Why `contents` was dropped; decodes only what `decode_files` would."""
        head = contents.numpy()[:32]
        if not head:
            return "empty file"
        if image_format(head) is None:
            return "not a JPEG or PNG image"
        height, width = (int(side) for side in header_size(contents))
        bound = (
            "over max_image_pixels (--max-image-pixels) = "
            f"{self.max_image_pixels:,}"
        )
        if height * width > self.max_image_pixels:
            return f"{width}x{height} = {width * height:,} pixels, {bound}"
        side = self.short_side
        if side is not None:
            long = max(height, width) * side // max(min(height, width), 1)
            if side * long > self.max_image_pixels:
                return (
                    f"{width}x{height}, resized to a short side of {side}, "
                    f"makes {side}x{long} = {side * long:,} pixels, {bound}"
                )
        tf.io.decode_image(contents, channels=3, expand_animations=False)
        return "unreadable"


def _op_error_text(error: tf.errors.OpError) -> str:
    """TensorFlow's message without its node and op decorations."""
    text = error.message.strip().splitlines()[0]
    text = re.sub(r"^\{\{function_node [^}]*\}\}\s*", "", text)
    return re.sub(r"\s*\[Op:\w+\].*$", "", text)



def decode_files(
    paths: np.ndarray, labels: np.ndarray, bad_images: BadImages
) -> tf.data.Dataset:
    """`(image, label)` of each file, bad files skipped or named.

    A file is decoded only when it is a JPEG or PNG whose header declares
    at most `bad_images.max_image_pixels` pixels (so that memory stays
    bounded whatever the files); other files are bad files. A decoding
    error inside `tf.data` names no file, so every element
    carries its index: errors are dropped (`ignore_errors`) and a gap in
    the indices that come out is a bad file, recorded in `bad_images` and,
    unless skipping, an error that names it. A sentinel after the last
    file finds a bad file at the end. The checks run only on a gap, so
    good files cost one comparison.

    Args:
        paths: the image files (JPEG, PNG...), in dataset order.
        labels: their int32 labels.
        bad_images: where the bad files are recorded; its `skip` says
            whether they are left out or stop the iteration, its
            `max_image_pixels` the largest image decoded (or made by the
            resize to its `short_side`).

    Returns:
        A deterministic `tf.data.Dataset` of `(image, label)`: uint8 RGB
        `[height, width, 3]` and int32. Without skipping, its cardinality
        is `len(paths)`.
    """
    count = len(paths)
    path_table = tf.constant(np.asarray(paths, dtype=object).astype(str))
    dataset = tf.data.Dataset.from_tensor_slices(
        (paths, labels, np.arange(count, dtype="int64"))
    )
    max_image_pixels = bad_images.max_image_pixels
    short_side = bad_images.short_side

    def read_image(path, label, index):
        contents = tf.io.read_file(path)
        height, width = header_size(contents)
        # Raised before decoding; dropped by ignore_errors, then named.
        checked = tf.debugging.Assert(
            fits(height, width, max_image_pixels, short_side),
            ["not a JPEG or PNG image, or more pixels than max_image_pixels"],
        )
        with tf.control_dependencies([checked]):
            image = tf.io.decode_image(
                contents, channels=3, expand_animations=False
            )
        image.set_shape([None, None, 3])
        return image, label, index

    dataset = dataset.map(
        read_image, num_parallel_calls=tf.data.AUTOTUNE, deterministic=True
    )
    dataset = dataset.ignore_errors().concatenate(
        tf.data.Dataset.from_tensors(
            (tf.zeros([0, 0, 3], tf.uint8), tf.constant(-1, tf.int32),
             tf.constant(count, tf.int64))
        )
    )

    def check(expected, element):
        image, label, index = element

        def report():
            missing = path_table[expected:index]
            if not bad_images.skip:
                # The first is the error; the state stays at it, so that
                # elements read ahead after the error would seem missing.
                missing = missing[:1]
            recorded = tf.py_function(bad_images._record, [missing], tf.int64)
            if bad_images.skip:
                return recorded
            failed = tf.debugging.Assert(
                False,
                [
                    "cannot read image file",
                    missing[0],
                    "(truncated, corrupt, empty, not a JPEG or PNG image, "
                    "or more pixels than --max-image-pixels); "
                    "--skip-bad-images skips such files",
                ],
            )
            with tf.control_dependencies([recorded, failed]):
                return tf.identity(recorded)

        done = tf.cond(
            index > expected, report, lambda: tf.constant(0, tf.int64)
        )
        with tf.control_dependencies([done]):
            index = tf.identity(index)
        return index + 1, (image, label, index)

    dataset = dataset.scan(tf.constant(0, tf.int64), check)
    dataset = dataset.filter(lambda image, label, index: index < count)
    dataset = dataset.map(lambda image, label, index: (image, label))
    if not bad_images.skip:
        # Nothing is dropped without an error: the length stays known, so
        # that trainers can skip within a pass (`dataset.cardinality()`).
        dataset = dataset.apply(tf.data.experimental.assert_cardinality(count))
    return deterministic(dataset)


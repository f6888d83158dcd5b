"""Decoding a list of image files, with a record of those that fail.

A folder of a million images has a few truncated, corrupt or empty files
(or non-images with an image extension). `decode_files` turns the file
list into `(image, label)` elements and either skips such files or stops
at the first with an error that names it; `BadImages` records them (each
once, however many passes see it) for the command lines to report.
"""

from __future__ import annotations

import re
import threading

import numpy as np
import tensorflow as tf

from .source import deterministic


class BadImages:
    """The image files of a folder source that cannot be read or decoded.

    A source fills it while its dataset is iterated (truncated, corrupt or
    empty files, non-images with an image extension), each file once
    however many passes see it. With `skip=True` such files are left out
    of the dataset; otherwise the first one stops the iteration with a
    `tf.errors.InvalidArgumentError` naming it, and `error()` gives the
    message a command line prints instead.

    Attributes:
        skip: whether bad files are skipped rather than an error.
    """

    def __init__(self, skip: bool):
        self.skip = skip
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
        # Runs in a tf.py_function, only when files were dropped: decoding
        # each again here gives the reason that ignore_errors discarded.
        for path in paths.numpy():
            path = path.decode("utf-8", "replace")
            try:
                tf.io.decode_image(
                    tf.io.read_file(path), channels=3, expand_animations=False
                )
                reason = "unreadable"
            except tf.errors.OpError as error:
                reason = _op_error_text(error)
            with self._lock:
                self._reasons.setdefault(path, reason)
        return len(paths)


def _op_error_text(error: tf.errors.OpError) -> str:
    """TensorFlow's message without its node and op decorations."""
    text = error.message.strip().splitlines()[0]
    text = re.sub(r"^\{\{function_node [^}]*\}\}\s*", "", text)
    return re.sub(r"\s*\[Op:\w+\].*$", "", text)



def decode_files(
    paths: np.ndarray, labels: np.ndarray, bad_images: BadImages
) -> tf.data.Dataset:
    """`(image, label)` of each file, bad files skipped or named.

    A decoding error inside `tf.data` names no file, so every element
    carries its index: errors are dropped (`ignore_errors`) and a gap in
    the indices that come out is a bad file, recorded in `bad_images` and,
    unless skipping, an error that names it. A sentinel after the last
    file finds a bad file at the end. The checks run only on a gap, so
    good files cost one comparison.

    Args:
        paths: the image files (JPEG, PNG...), in dataset order.
        labels: their int32 labels.
        bad_images: where the bad files are recorded; its `skip` says
            whether they are left out or stop the iteration.

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
    dataset = dataset.map(
        _read_image, num_parallel_calls=tf.data.AUTOTUNE, deterministic=True
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
                    "(truncated, corrupt, empty or not an image); "
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


def _read_image(path, label, index):
    image = tf.io.decode_image(
        tf.io.read_file(path), channels=3, expand_animations=False
    )
    image.set_shape([None, None, 3])
    return image, label, index

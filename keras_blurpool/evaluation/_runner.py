"""Streams a dataset through a model, several views of each image.

Every metric of the paper is a set of *views* of one square image per
example: crops at given offsets, optionally rolled circularly. The input
pipeline resizes each image once (short side to `square_size`, centre
crop) and attaches the views' offsets, drawn per image from a stateless
seed so that the figures do not depend on batch size, order of batches or
number of replicas. The model step then cuts one view out of every image
of the batch with a single gather and returns the model's scores, which
the host reduces to a few numbers per image. Memory therefore depends on
the batch, not on the dataset.
"""

from __future__ import annotations

import math
from typing import Callable
from typing import Iterator

import keras
import numpy as np
import tensorflow as tf
from keras import ops

from keras_blurpool.applications.imagenet_utils import preprocess_input
from keras_blurpool.evaluation._checks import check_positive_int
from keras_blurpool.evaluation.preprocessing import center_crop
from keras_blurpool.evaluation.preprocessing import check_interpolation
from keras_blurpool.evaluation.preprocessing import resize_short_side
from keras_blurpool.evaluation.shifts import crop_views
from keras_blurpool.evaluation.shifts import subpixel_views

_DEFAULT = object()


def resolve_image_size(model, image_size) -> int:
    """The crop size: given, or the model's static square input size."""
    if image_size is not None:
        return check_positive_int("image_size", image_size)
    shape = None
    try:
        shape = model.input_shape
    except (AttributeError, ValueError):
        pass
    if isinstance(shape, (list, tuple)) and shape and isinstance(shape[0], tuple):
        shape = shape[0] if len(shape) == 1 else None
    if (
        isinstance(shape, tuple)
        and len(shape) == 4
        and shape[1] is not None
        and shape[1] == shape[2]
    ):
        return int(shape[1])
    raise ValueError(
        "Cannot read a square input size from the model (input_shape="
        f"{shape}). Pass `image_size`, e.g. image_size=224."
    )


def validation_square(image_size: int, resize_size) -> tuple[int, int]:
    """`(resize_size, centre)`: the square, and where its centre crop starts.

    `resize_size` defaults to `round(image_size / 0.875)` (256 for 224);
    the centre crop starts at torchvision's `CenterCrop` offset.
    """
    if resize_size is None:
        resize_size = int(round(image_size / 0.875))
    resize_size = check_positive_int("resize_size", resize_size, image_size)
    return resize_size, int(round((resize_size - image_size) / 2.0))


def resolve_preprocess(preprocess) -> Callable:
    if preprocess is _DEFAULT:
        return preprocess_input
    if preprocess is None:
        return lambda x: x
    if not callable(preprocess):
        raise ValueError(
            "`preprocess` must be a callable on float32 RGB batches, or None."
            f" Received: preprocess={preprocess!r}"
        )
    return preprocess


def examples(dataset) -> tf.data.Dataset:
    """Unbatched `(image, label)` examples from what a user may pass.

    Accepts a `tf.data.Dataset` of `(image, label)` tuples or of
    `{"image": ..., "label": ...}` dicts (TFDS), batched or not, or a
    tuple of NumPy arrays `(images, labels)`. One-hot labels become
    indices.
    """
    if isinstance(dataset, tuple) and len(dataset) == 2:
        dataset = tf.data.Dataset.from_tensor_slices(dataset)
    if not isinstance(dataset, tf.data.Dataset):
        raise ValueError(
            "`dataset` must be a tf.data.Dataset of (image, label) or a tuple"
            f" (images, labels) of arrays. Received: {type(dataset).__name__}"
        )
    spec = dataset.element_spec
    if isinstance(spec, dict):
        if "image" not in spec or "label" not in spec:
            raise ValueError(
                "A dataset of dicts needs 'image' and 'label' keys. Received "
                f"keys: {sorted(spec)}"
            )
        dataset = dataset.map(lambda e: (e["image"], e["label"]))
        spec = dataset.element_spec
    if not isinstance(spec, tuple) or len(spec) < 2:
        raise ValueError(
            "`dataset` elements must be (image, label) pairs. Received "
            f"element_spec={spec}"
        )
    if len(spec) > 2:
        dataset = dataset.map(lambda image, label, *rest: (image, label))
        spec = dataset.element_spec
    rank = spec[0].shape.rank
    if rank == 4:
        dataset = dataset.unbatch()
        spec = dataset.element_spec
    elif rank != 3:
        raise ValueError(
            "Images must be (height, width, channels), or batches of them. "
            f"Received images of shape {spec[0].shape}"
        )
    if spec[1].shape.rank == 1:  # one-hot
        dataset = dataset.map(lambda image, label: (image, tf.argmax(label)))
    elif spec[1].shape.rank not in (0, None):
        raise ValueError(
            "Labels must be class indices or one-hot vectors. Received labels "
            f"of shape {spec[1].shape}"
        )
    return dataset.map(lambda image, label: (image, tf.cast(label, "int32")))


def resize_square(image, size: int, interpolation: str = "bilinear"):
    """Short side to `size` (torchvision's `Resize`), then centre crop.

    uint8 images are rounded back to uint8 after resizing, as PIL does in
    the reference's pipeline; float images stay float.
    """
    square = center_crop(resize_short_side(image, size, interpolation), size)
    square = tf.ensure_shape(square, (size, size, None))
    if image.dtype == tf.uint8:
        return tf.cast(tf.round(tf.clip_by_value(square, 0, 255)), "uint8")
    return square


class ViewRunner:
    """Runs a model on views of every image of a dataset.

    Args:
        model: a Keras classification model, one output of class scores.
        image_size: side of the model's input (the view).
        square_size: side of the square every image is first brought to.
        view_fn: `(index, seed) -> (num_views, 4) int32` views of the
            example at `index` (a scalar tensor), for a given seed; run in
            the input pipeline, so it must use TF ops.
        num_views: how many views `view_fn` gives.
        preprocess: callable on float32 batches in the image's range.
        batch_size: examples per batch (global, across replicas).
        verbose: 1 shows a progress bar.
        seed: seed of the views.
        interpolation: of the resize, `"bilinear"` or `"bicubic"`.
        shift: `(images, views, size) -> views` cutting one view of each
            image; default `shifts.crop_views` (integer views). Sub-pixel
            metrics pass `shifts.subpixel_views` with their method.
    """

    def __init__(
        self,
        model,
        *,
        image_size: int,
        square_size: int,
        view_fn: Callable,
        num_views: int,
        preprocess: Callable,
        batch_size: int,
        verbose: int,
        seed: int = 0,
        interpolation: str = "bilinear",
        shift: Callable = crop_views,
    ):
        self.model = model
        self.shift = shift
        self.num_classes = None
        self._reduce = None
        self.image_size = image_size
        self.square_size = square_size
        self.view_fn = view_fn
        self.num_views = num_views
        self.preprocess = preprocess
        self.batch_size = check_positive_int("batch_size", batch_size)
        self.verbose = verbose
        self.seed = int(seed)
        self.interpolation = check_interpolation(interpolation)

    def _pipeline(self, dataset) -> tf.data.Dataset:
        dataset = examples(dataset)
        size, seed, view_fn = self.square_size, self.seed, self.view_fn
        interpolation = self.interpolation

        def prepare(index, example):
            image, label = example
            square = resize_square(image, size, interpolation)
            return square, view_fn(index, seed), label

        dataset = dataset.enumerate().map(
            prepare, num_parallel_calls=tf.data.AUTOTUNE, deterministic=True
        )
        dataset = dataset.batch(self.batch_size).prefetch(tf.data.AUTOTUNE)
        options = tf.data.Options()
        # Generated or in-memory data has no files to shard by.
        options.experimental_distribute.auto_shard_policy = (
            tf.data.experimental.AutoShardPolicy.DATA
        )
        return dataset.with_options(options)

    def _step(self, images, views, view_index):
        view = self.shift(images, ops.take(views, view_index, axis=1), self.image_size)
        inputs = self.preprocess(ops.cast(view, "float32"))
        scores = self.model(inputs, training=False)
        if isinstance(scores, (list, tuple, dict)):
            raise ValueError(
                "The model must have one output of class scores. Received "
                f"{type(scores).__name__} outputs."
            )
        return ops.cast(scores, "float32")

    def run(
        self, dataset, reduce: Callable | None = None
    ) -> Iterator[tuple[np.ndarray, np.ndarray]]:
        """Yields `(scores, labels)` per batch: `(views, batch, classes)`.

        With `reduce`, each view's `(batch, classes)` scores are replaced
        by `reduce(scores)` as soon as they arrive (e.g. the top-1 class),
        so that a grid of many views holds one view's scores at a time;
        `num_classes` then records the width of the scores.
        """
        pipeline = self._pipeline(dataset)
        self._reduce = reduce
        total = _num_batches(dataset, self.batch_size)
        bar = keras.utils.Progbar(total, verbose=self.verbose, unit_name="batch")
        if keras.backend.backend() == "tensorflow":
            batches = self._run_tensorflow(pipeline)
        else:
            batches = self._run_eager(pipeline)
        seen = step = 0
        for step, (scores, labels) in enumerate(batches, start=1):
            seen += len(labels)
            bar.update(step)
            yield scores, labels
        if total is None:
            bar.update(step, finalize=True)
        if seen == 0:
            raise ValueError("`dataset` is empty: nothing to evaluate.")

    def _run_eager(self, pipeline):
        for images, views, labels in pipeline.as_numpy_iterator():
            scores = [
                self._host(ops.convert_to_numpy(self._step(images, views, v)))
                for v in range(self.num_views)
            ]
            yield np.stack(scores), labels

    def _run_tensorflow(self, pipeline):
        strategy = tf.distribute.get_strategy()
        if tf.distribute.has_strategy():
            pipeline = strategy.experimental_distribute_dataset(pipeline)

            # Gathering inside the function: one trace, not one per call.
            @tf.function(reduce_retracing=True)
            def step(images, views, v):
                scores = strategy.run(self._step, args=(images, views, v))
                return strategy.gather(scores, axis=0)

            @tf.function(reduce_retracing=True)
            def gather(labels):
                return strategy.gather(labels, axis=0)

        else:
            step = tf.function(self._step, reduce_retracing=True)

            def gather(labels):
                return labels

        def run(images, views, v):
            return self._host(step(images, views, v).numpy())

        view_indices = [tf.constant(v, "int32") for v in range(self.num_views)]
        for images, views, labels in pipeline:
            scores = [run(images, views, v) for v in view_indices]
            yield np.stack(scores), gather(labels).numpy()

    def _host(self, scores: np.ndarray) -> np.ndarray:
        self.num_classes = scores.shape[-1]
        return scores if self._reduce is None else self._reduce(scores)


def _num_batches(dataset, batch_size: int) -> int | None:
    if not isinstance(dataset, tf.data.Dataset):
        return math.ceil(len(dataset[1]) / batch_size)
    spec = dataset.element_spec
    image_spec = spec["image"] if isinstance(spec, dict) else spec[0]
    count = int(dataset.cardinality())
    if count < 0 or image_spec.shape.rank != 3:
        return None
    return math.ceil(count / batch_size)


def uniform_offsets(index, seed: int, shape, maxval: int):
    """Offsets in [0, maxval), a pure function of (seed, example index)."""
    if maxval <= 0:
        return tf.zeros(shape, "int32")
    key = tf.stack([tf.cast(seed, "int64"), tf.cast(index, "int64")])
    return tf.random.stateless_uniform(
        shape, seed=key, minval=0, maxval=maxval, dtype="int32"
    )


def check_labels(labels: np.ndarray, num_classes: int) -> None:
    """Labels must index the model's classes."""
    if len(labels) and (labels.min() < 0 or labels.max() >= num_classes):
        bad = labels[(labels < 0) | (labels >= num_classes)][0]
        raise ValueError(
            f"The dataset has label {bad}, but the model has {num_classes} "
            f"classes (labels 0 to {num_classes - 1}). Is the dataset labelled "
            "as the model was trained? (Folders of ImageNet classes should be "
            "named by WordNet id, e.g. n01440764.)"
        )


class Probabilities:
    """Softmax of logits; probabilities pass through.

    With `from_logits=None` the first batch decides: scores that are
    non-negative and sum to one per row are a softmax head's
    probabilities, anything else is logits.
    """

    def __init__(self, from_logits: bool | None):
        if from_logits not in (None, True, False):
            raise ValueError(
                "`from_logits` must be True, False or None (decide from the "
                f"outputs). Received: from_logits={from_logits!r}"
            )
        self.from_logits = from_logits

    def __call__(self, scores: np.ndarray) -> np.ndarray:
        if self.from_logits is None:
            sums = scores.sum(axis=-1)
            self.from_logits = not (
                scores.min() >= 0 and np.allclose(sums, 1, atol=1e-3)
            )
        if not self.from_logits:
            return scores
        exp = np.exp(scores - scores.max(axis=-1, keepdims=True))
        return exp / exp.sum(axis=-1, keepdims=True)


def top_classes_of_views(
    model,
    dataset,
    views: np.ndarray,
    *,
    image_size: int,
    square_size: int,
    mode: str,
    method: str,
    preprocess,
    batch_size: int,
    verbose: int,
    interpolation: str,
    k: int = 1,
) -> Iterator[tuple[np.ndarray, np.ndarray, int]]:
    """The k best classes of every image under each of a fixed list of views.

    Integer views are cut with `shifts.crop_views`; as soon as one view
    is fractional, all go through `shifts.subpixel_views(method, mode)`.
    Each view costs one forward pass of the batch, and only its k best
    classes are kept (ties broken by class index, as a stable sort).

    Yields:
        `(top, labels, num_classes)` per batch, `top` of shape
        `(num_views, batch, min(k, num_classes))`, best first.
    """
    views = np.asarray(views, "float64")
    if np.array_equal(views, np.round(views)):
        table = tf.constant(views.astype("int32"))
        shift = crop_views
    else:
        table = tf.constant(views.astype("float32"))

        def shift(images, rows, size):
            return subpixel_views(images, rows, size, method=method, mode=mode)

    runner = ViewRunner(
        model,
        image_size=image_size,
        square_size=square_size,
        view_fn=lambda index, seed: table,
        num_views=len(views),
        preprocess=resolve_preprocess(preprocess),
        batch_size=batch_size,
        verbose=verbose,
        interpolation=interpolation,
        shift=shift,
    )

    def best(scores):
        if k == 1:
            return scores.argmax(axis=-1)[:, None]
        return np.argsort(-scores, axis=-1, kind="stable")[:, :k]

    for top, labels in runner.run(dataset, reduce=best):
        yield top, labels, runner.num_classes

"""Predictions along a diagonal shift of the crop, and their plot."""

from __future__ import annotations

import dataclasses
import os
from typing import Mapping

import numpy as np
import tensorflow as tf

from keras_blurpool import _utils
from keras_blurpool.evaluation import _runner


@dataclasses.dataclass(frozen=True)
class DiagonalShiftResult:
    """Per-image predictions of crops at offsets `(o, o)`.

    Attributes:
        offsets: `(num_offsets,)` the offsets o, 0 to `max_shift`.
        labels: `(num_images,)` true classes.
        probability: `(num_images, num_offsets)` probability of the true
            class.
        correct: `(num_images, num_offsets)` whether top-1 is the true class.
        predicted: `(num_images, num_offsets)` the top-1 class.
    """

    offsets: np.ndarray
    labels: np.ndarray
    probability: np.ndarray
    correct: np.ndarray
    predicted: np.ndarray

    @property
    def mean_probability(self) -> np.ndarray:
        """Mean probability of the true class at each offset."""
        return self.probability.mean(axis=0)

    @property
    def accuracy(self) -> np.ndarray:
        """Top-1 accuracy in percent at each offset."""
        return 100.0 * self.correct.mean(axis=0)

    def save(self, path: str) -> str:
        """Writes the arrays (and the two curves) to a `.npz` file."""
        with _utils.atomic_path(path, create_dir=True) as partial:
            with open(partial, "wb") as f:
                np.savez(
                    f,
                    mean_probability=self.mean_probability,
                    accuracy=self.accuracy,
                    **dataclasses.asdict(self),
                )
        return os.fspath(path)

    @classmethod
    def load(cls, path: str) -> "DiagonalShiftResult":
        """Reads a file written by `save`."""
        with np.load(path) as data:
            return cls(**{f.name: data[f.name] for f in dataclasses.fields(cls)})


def diagonal_shift(
    model,
    dataset,
    *,
    max_shift: int = 32,
    image_size: int | None = None,
    from_logits: bool | None = None,
    batch_size: int = 32,
    preprocess=_runner._DEFAULT,
    verbose: int = 1,
    interpolation: str = "bilinear",
) -> DiagonalShiftResult:
    """Crops at offsets `(o, o)`, o = 0 ... max_shift, of every image.

    As the reference's diagonal evaluation: each image is resized to
    `image_size + max_shift` (short side) and centre-cropped to that
    square, then an `image_size` crop is taken at each diagonal offset.

    Args:
        model: a Keras classification model (logits or probabilities).
        dataset: as for `accuracy`.
        max_shift: the largest offset (inclusive).
        image_size: the crop; default: the model's input size.
        from_logits: whether the model outputs logits; None decides from
            its first outputs (rows that are non-negative and sum to 1 are
            probabilities).
        batch_size: images per batch (global across replicas).
        preprocess: as for `accuracy`.
        verbose: 1 shows a progress bar, 0 is silent.
        interpolation: of the resize, `"bilinear"` (the reference's) or
            `"bicubic"` (timm's networks; see `eval_settings`).

    Returns:
        A `DiagonalShiftResult`; `plot_diagonal_shift` draws it.

    Example:

    >>> result = diagonal_shift(model, val)  # doctest: +SKIP
    >>> result.accuracy.shape  # doctest: +SKIP
    (33,)
    """
    image_size = _runner.resolve_image_size(model, image_size)
    max_shift = _runner.check_positive_int("max_shift", max_shift, 0)
    offsets = np.arange(max_shift + 1, dtype="int32")
    views = tf.constant(
        np.stack([offsets, offsets, 0 * offsets, 0 * offsets], axis=1)
    )
    runner = _runner.ViewRunner(
        model,
        image_size=image_size,
        square_size=image_size + max_shift,
        view_fn=lambda index, seed: views,
        num_views=len(offsets),
        preprocess=_runner.resolve_preprocess(preprocess),
        batch_size=batch_size,
        verbose=verbose,
        interpolation=interpolation,
    )
    to_probabilities = _runner.Probabilities(from_logits)
    labels, probability, predicted = [], [], []
    for scores, batch_labels in runner.run(dataset):
        _runner.check_labels(batch_labels, scores.shape[-1])
        probs = to_probabilities(scores)  # (offsets, batch, classes)
        rows = np.arange(len(batch_labels))
        probability.append(probs[:, rows, batch_labels].T)
        predicted.append(scores.argmax(axis=-1).T)
        labels.append(batch_labels)
    labels = np.concatenate(labels).astype("int32")
    predicted = np.concatenate(predicted).astype("int32")
    return DiagonalShiftResult(
        offsets=offsets,
        labels=labels,
        probability=np.concatenate(probability).astype("float32"),
        correct=predicted == labels[:, None],
        predicted=predicted,
    )


def plot_diagonal_shift(
    results: DiagonalShiftResult | Mapping[str, DiagonalShiftResult],
    path: str,
    *,
    title: str | None = None,
) -> str:
    """Draws probability of the true class and accuracy against offset.

    Args:
        results: one result, or several by label (e.g. `{"baseline": ...,
            "antialiased": ...}`), drawn as curves on the same axes.
        path: the PNG to write (atomically).
        title: figure title.

    Returns:
        `path`.
    """
    # The object API draws without pyplot's global state or a display.
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    if isinstance(results, DiagonalShiftResult):
        results = {"model": results}
    if not results or not all(
        isinstance(r, DiagonalShiftResult) for r in results.values()
    ):
        raise ValueError(
            "`results` must be a DiagonalShiftResult or a non-empty mapping "
            f"of labels to them. Received: {results!r}"
        )
    figure = Figure(figsize=(10, 4))
    FigureCanvasAgg(figure)
    prob_axes, acc_axes = figure.subplots(1, 2)
    for label, result in results.items():
        prob_axes.plot(result.offsets, result.mean_probability, label=label)
        acc_axes.plot(result.offsets, result.accuracy, label=label)
    prob_axes.set_ylabel("probability of the correct class")
    acc_axes.set_ylabel("top-1 accuracy (%)")
    for axes in (prob_axes, acc_axes):
        axes.set_xlabel("diagonal shift (pixels)")
        axes.grid(alpha=0.3)
        axes.legend()
    if title:
        figure.suptitle(title)
    figure.tight_layout()
    with _utils.atomic_path(path, create_dir=True) as partial:
        figure.savefig(partial, format="png", dpi=100)
    return os.fspath(path)

"""Shift-consistency: does the top-1 class survive a shift of the input?"""

from __future__ import annotations

import numpy as np
import tensorflow as tf

from keras_blurpool.evaluation import _runner


def shift_consistency(
    model,
    dataset,
    *,
    image_size: int | None = None,
    max_shift: int = 32,
    passes: int = 5,
    seed: int = 0,
    batch_size: int = 32,
    preprocess=_runner._DEFAULT,
    verbose: int = 1,
    interpolation: str = "bilinear",
) -> dict:
    """How often two random crops of an image get the same top-1 class.

    The paper's protocol: each image is resized to `image_size +
    max_shift` (short side) and centre-cropped to a square of that size
    (256 for ImageNet), then two `image_size` crops are taken at offsets
    drawn uniformly from `[0, max_shift)` on each axis, and the top-1
    predictions compared. Repeated for `passes` passes (the reference
    uses 5). The offsets are a function of `seed` and the example's
    position in the dataset, so the figure is reproducible and does not
    depend on batch size or replicas. All passes share one read of the
    data.

    Args:
        model: a Keras classification model (logits or probabilities).
        dataset: `(image, label)` examples as for `accuracy`; labels are
            not used.
        image_size: the crop; default: the model's input size.
        max_shift: offsets are drawn from `[0, max_shift)`.
        passes: independent pairs of crops per image.
        seed: seed of the offsets.
        batch_size: images per batch (global across replicas).
        preprocess: as for `accuracy`.
        verbose: 1 shows a progress bar, 0 is silent.
        interpolation: of the resize, `"bilinear"` (the reference's) or
            `"bicubic"` (timm's networks; see `eval_settings`).

    Returns:
        `{"consistency": mean percent, "std": spread across passes (sample
        standard deviation), "per_pass": [percent, ...], "num_images": n}`.

    Example:

    >>> shift_consistency(model, val, passes=5)  # doctest: +SKIP
    {'consistency': 91.3, 'std': 0.07, 'per_pass': [...], 'num_images': 50000}
    """
    image_size = _runner.resolve_image_size(model, image_size)
    max_shift = _runner.check_positive_int("max_shift", max_shift)
    passes = _runner.check_positive_int("passes", passes)

    def views(index, seed):
        return crop_pair_views(index, seed, passes=passes, max_shift=max_shift)

    return _agreement(
        model,
        dataset,
        image_size=image_size,
        square_size=image_size + max_shift,
        views=views,
        passes=passes,
        seed=seed,
        batch_size=batch_size,
        preprocess=preprocess,
        verbose=verbose,
        interpolation=interpolation,
    )


def circular_shift_consistency(
    model,
    dataset,
    *,
    image_size: int | None = None,
    resize_size: int | None = None,
    max_shift: int = 32,
    passes: int = 5,
    seed: int = 0,
    batch_size: int = 32,
    preprocess=_runner._DEFAULT,
    verbose: int = 1,
    interpolation: str = "bilinear",
) -> dict:
    """Agreement of top-1 under random circular shifts of the input.

    Each image is preprocessed as for validation (short side to
    `resize_size`, centre crop `image_size`), then rolled twice
    (`np.roll` on both spatial axes) by amounts drawn uniformly from
    `[0, max_shift)`, and the top-1 predictions compared. Nothing leaves
    or enters the frame, so a truly shift-invariant network (e.g. 1x1
    convolutions and global average pooling) scores 100.

    Args:
        model: a Keras classification model (logits or probabilities).
        dataset: as for `accuracy`.
        image_size: the model's input size; default read from the model.
        resize_size: short side before the centre crop; default
            `round(image_size / 0.875)`.
        max_shift: roll amounts are drawn from `[0, max_shift)`.
        passes: independent pairs of shifts per image.
        seed: seed of the shifts.
        batch_size: images per batch (global across replicas).
        preprocess: as for `accuracy`.
        verbose: 1 shows a progress bar, 0 is silent.
        interpolation: of the resize, `"bilinear"` (the reference's) or
            `"bicubic"` (timm's networks; see `eval_settings`).

    Returns:
        The same keys as `shift_consistency`.
    """
    image_size = _runner.resolve_image_size(model, image_size)
    max_shift = _runner.check_positive_int("max_shift", max_shift)
    passes = _runner.check_positive_int("passes", passes)
    resize_size, center = _runner.validation_square(image_size, resize_size)

    def views(index, seed):
        return roll_pair_views(
            index, seed, passes=passes, max_shift=max_shift, center=center
        )

    return _agreement(
        model,
        dataset,
        image_size=image_size,
        square_size=resize_size,
        views=views,
        passes=passes,
        seed=seed,
        batch_size=batch_size,
        preprocess=preprocess,
        verbose=verbose,
        interpolation=interpolation,
    )


def crop_pair_views(index, seed: int, *, passes: int, max_shift: int):
    """`(2 * passes, 4)` views: pass p compares rows 2p and 2p + 1.

    Crop offsets uniform in `[0, max_shift)` per axis, no roll.
    """
    offsets = _runner.uniform_offsets(index, seed, (2 * passes, 2), max_shift)
    return tf.concat([offsets, tf.zeros_like(offsets)], axis=1)


def roll_pair_views(index, seed: int, *, passes: int, max_shift: int, center: int):
    """`(2 * passes, 4)` views: the centre crop, rolled by `[0, max_shift)`."""
    rolls = _runner.uniform_offsets(index, seed, (2 * passes, 2), max_shift)
    return tf.concat([tf.fill(tf.shape(rolls), center), rolls], axis=1)


def _agreement(model, dataset, *, passes, views, **kwargs) -> dict:
    runner = _runner.ViewRunner(
        model,
        view_fn=views,
        num_views=2 * passes,
        preprocess=_runner.resolve_preprocess(kwargs.pop("preprocess")),
        **kwargs,
    )
    agree = np.zeros(passes, "int64")
    count = 0
    for scores, labels in runner.run(dataset):
        top1 = scores.argmax(axis=-1).reshape(passes, 2, -1)
        agree += (top1[:, 0] == top1[:, 1]).sum(axis=-1)
        count += len(labels)
    per_pass = 100.0 * agree / count
    return {
        "consistency": float(per_pass.mean()),
        "std": float(per_pass.std(ddof=1)) if passes > 1 else 0.0,
        "per_pass": [float(p) for p in per_pass],
        "num_images": count,
    }

"""Top-k accuracy, with the reference's validation preprocessing."""

from __future__ import annotations

from typing import Sequence

import numpy as np
import tensorflow as tf

from keras_blurpool.evaluation import _runner


def accuracy(
    model,
    dataset,
    top_k: Sequence[int] = (1, 5),
    *,
    image_size: int | None = None,
    resize_size: int | None = None,
    batch_size: int = 32,
    preprocess=_runner._DEFAULT,
    verbose: int = 1,
    interpolation: str = "bilinear",
) -> dict:
    """Top-k accuracy of a classifier, in percent.

    Each image is resized so that its short side is `resize_size`,
    centre-cropped to `image_size` (ImageNet: 256 then 224, as the
    reference validates) and scaled by `preprocess`. The dataset is
    streamed in batches; inside a `tf.distribute` strategy's scope the
    batches are split across its replicas.

    Args:
        model: a Keras classification model (logits or probabilities).
        dataset: `tf.data.Dataset` of `(image, label)` (or TFDS dicts),
            batched or not, images RGB in [0, 255] of any size; or a tuple
            `(images, labels)` of arrays.
        top_k: the k to report.
        image_size: the crop fed to the model; default: the model's input.
        resize_size: short side before cropping; default
            `round(image_size / 0.875)` (256 for 224).
        batch_size: images per batch (global across replicas).
        preprocess: callable on float32 batches of [0, 255] RGB; default
            `keras_blurpool.applications.preprocess_input` (ImageNet mean
            and std); None feeds the pixels unchanged.
        verbose: 1 shows a progress bar, 0 is silent.
        interpolation: of the resize, `"bilinear"` (the reference's) or
            `"bicubic"` (timm's networks; see `eval_settings`).

    Returns:
        `{"top1": ..., "top5": ..., "num_images": n}`.

    Example:

    >>> model = keras_blurpool.applications.ResNet50(weights="imagenet")  # doctest: +SKIP
    >>> val = tfds.load("imagenet2012", split="validation", as_supervised=True)  # doctest: +SKIP
    >>> accuracy(model, val)  # doctest: +SKIP
    {'top1': 77.4, 'top5': 93.6, 'num_images': 50000}
    >>> timm_model = keras_blurpool.applications.ResNetAA50D(weights="imagenet")  # doctest: +SKIP
    >>> from keras_blurpool.evaluation import eval_settings  # doctest: +SKIP
    >>> accuracy(timm_model, val, **eval_settings("resnetaa50d"))  # doctest: +SKIP
    """
    if isinstance(top_k, int):
        top_k = (top_k,)
    top_k = tuple(_runner.check_positive_int("top_k", k) for k in top_k)
    if not top_k:
        raise ValueError("`top_k` must name at least one k, e.g. top_k=(1, 5).")
    image_size = _runner.resolve_image_size(model, image_size)
    resize_size, center = _runner.validation_square(image_size, resize_size)
    view = tf.constant([[center, center, 0, 0]], "int32")

    runner = _runner.ViewRunner(
        model,
        image_size=image_size,
        square_size=resize_size,
        view_fn=lambda index, seed: view,
        num_views=1,
        preprocess=_runner.resolve_preprocess(preprocess),
        batch_size=batch_size,
        verbose=verbose,
        interpolation=interpolation,
    )
    largest = max(top_k)
    hits = dict.fromkeys(top_k, 0)
    count = 0
    for scores, labels in runner.run(dataset):
        scores = scores[0]
        if largest > scores.shape[-1]:
            raise ValueError(
                f"`top_k` asks for top-{largest} of a model with "
                f"{scores.shape[-1]} classes. Received: top_k={top_k}"
            )
        _runner.check_labels(labels, scores.shape[-1])
        # Ranks of the true class: how many classes score higher.
        true = scores[np.arange(len(labels)), labels]
        rank = (scores > true[:, None]).sum(axis=-1)
        for k in top_k:
            hits[k] += int((rank < k).sum())
        count += len(labels)
    result = {f"top{k}": 100.0 * hits[k] / count for k in top_k}
    result["num_images"] = count
    return result

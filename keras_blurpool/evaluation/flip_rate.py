"""Translation flip rate: ImageNet-P's flip probability along a translation."""

from __future__ import annotations

import numpy as np

from keras_blurpool.evaluation import _checks
from keras_blurpool.evaluation import _runner
from keras_blurpool.evaluation.shifts import MODES

DIRECTIONS = ("horizontal", "vertical")
TOP = 5


def top_distance(before: np.ndarray, after: np.ndarray) -> np.ndarray:
    """ImageNet-P's top-5 distance between two rankings, from their top k.

    For the class ranked i-th (0-based) before, let r be its rank after,
    capped at k: the distance is `sum_{i < k} |i - min(r, k)|` (0 when
    the k best classes keep their order). `k = 5` gives Hendrycks &
    Dietterich's, computed there from full rankings.

    Args:
        before: `(..., k)` the k best classes, best first.
        after: `(..., k)` the same of the next frame.

    Returns:
        `(...)` the distances.
    """
    k = before.shape[-1]
    # where[..., i, j]: class i of before is class j of after.
    where = before[..., :, None] == after[..., None, :]
    rank = np.where(where.any(axis=-1), where.argmax(axis=-1), k)
    return np.abs(np.arange(k) - rank).sum(axis=-1)


def translation_flip_rate(
    model,
    dataset,
    *,
    length: int | None = None,
    mode: str = "crop",
    direction: str = "horizontal",
    image_size: int | None = None,
    resize_size: int | None = None,
    batch_size: int = 32,
    preprocess=_runner._DEFAULT,
    verbose: int = 1,
    interpolation: str = "bilinear",
) -> dict:
    """How often the top-1 class changes between consecutive frames.

    Hendrycks & Dietterich's flip probability (ImageNet-P) on a
    translation sequence: each image is resized as for validation (short
    side to `resize_size`, then the centre square), and frame t = 0 ...
    `length - 1` is that image moved t pixels:

    - `mode="crop"`: the `image_size` crop starting at column t
      (`direction="horizontal"`) or row t (`"vertical"`), centred on the
      other axis: the window slides one pixel per frame over the crop's
      margin, so `length - 1 <= resize_size - image_size`.
    - `mode="circular"`: the centre crop rolled (`np.roll`) by t pixels;
      `length <= image_size + 1` (the last frame is the first again).

    The flip rate is the percentage of consecutive pairs of frames, over
    all images, whose top-1 classes differ: `100 / (n (L - 1)) * sum_i
    sum_t [top1(x_i,t) != top1(x_i,t-1)]`. Alongside, ImageNet-P's top-5
    distance between consecutive frames (`top_distance`), averaged the
    same way. Costs `length` forward passes per image.

    Args:
        model: a Keras classification model (logits or probabilities).
        dataset: as for `accuracy`; labels are not used.
        length: frames per sequence, >= 2; default `resize_size -
            image_size + 1` (33 at 224 from 256) in both modes.
        mode: `"crop"` or `"circular"`.
        direction: `"horizontal"` or `"vertical"`.
        image_size: the model's input size; default read from the model.
        resize_size: short side before the centre crop; default
            `round(image_size / 0.875)`.
        batch_size: images per batch (global across replicas).
        preprocess: as for `accuracy`.
        verbose: 1 shows a progress bar, 0 is silent.
        interpolation: of the resize, `"bilinear"` or `"bicubic"`.

    Returns:
        `{"flip_rate": percent, "per_step": [percent of images flipping
        between frames t - 1 and t, for t = 1 ... length - 1],
        "top5_distance": mean top-5 distance of consecutive frames (top
        k of a model with k < 5 classes), "length", "mode", "direction",
        "num_images"}`.

    Example:

    >>> translation_flip_rate(model, val)  # doctest: +SKIP
    {'flip_rate': 3.1, 'per_step': [...], 'length': 33, ...}
    """
    mode = _checks.check_choice("mode", mode, MODES)
    direction = _checks.check_choice("direction", direction, DIRECTIONS)
    image_size = _runner.resolve_image_size(model, image_size)
    resize_size, center = _runner.validation_square(image_size, resize_size)
    margin = resize_size - image_size
    longest = margin + 1 if mode == "crop" else image_size + 1
    if length is None:
        length = margin + 1
        if length < 2:
            raise ValueError(
                f"resize_size == image_size ({image_size}) leaves no margin: "
                "pass `length` (circular mode) or a larger `resize_size`. "
                f"Received: resize_size={resize_size}"
            )
    if not (
        _checks.is_int(length) and 2 <= length <= longest
    ):
        why = (
            f"the crop's margin + 1 (resize_size - image_size + 1 = "
            f"{resize_size} - {image_size} + 1)" if mode == "crop"
            else f"image_size + 1 (image_size={image_size})"
        )
        raise ValueError(
            f"`length` must be an int from 2 to {longest}, {why}, in {mode} "
            f"mode: the model's input cannot hold a longer sequence. "
            f"Received: length={length!r}"
        )
    frames = np.arange(length)
    views = np.zeros((length, 4), "int32")
    if mode == "crop":
        moving, fixed = (1, 0) if direction == "horizontal" else (0, 1)
        views[:, moving] = frames
        views[:, fixed] = center
    else:
        views[:, :2] = center
        views[:, 3 if direction == "horizontal" else 2] = frames

    flips = np.zeros(length - 1, "int64")
    distance = 0.0
    count = 0
    for top, labels, _ in _runner.top_classes_of_views(
        model, dataset, views, image_size=image_size, square_size=resize_size,
        mode=mode, method="bilinear", preprocess=preprocess,
        batch_size=batch_size, verbose=verbose, interpolation=interpolation,
        k=TOP,
    ):
        flips += (top[1:, :, 0] != top[:-1, :, 0]).sum(axis=1)
        distance += float(top_distance(top[:-1], top[1:]).sum())
        count += len(labels)
    per_step = 100.0 * flips / count
    return {
        "flip_rate": float(per_step.mean()),
        "per_step": [float(p) for p in per_step],
        "top5_distance": distance / (count * (length - 1)),
        "length": int(length),
        "mode": mode,
        "direction": direction,
        "num_images": count,
    }

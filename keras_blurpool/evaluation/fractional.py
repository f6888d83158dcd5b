"""Sub-pixel shift consistency: does the top-1 class survive a fraction of a pixel?"""

from __future__ import annotations

from typing import Sequence

import numpy as np

from keras_blurpool.evaluation import _checks
from keras_blurpool.evaluation import _runner
from keras_blurpool.evaluation.shifts import METHODS
from keras_blurpool.evaluation.shifts import MODES

HALF_PIXEL = ((0.5, 0.0), (0.0, 0.5), (0.5, 0.5))


def fractional_shift_consistency(
    model,
    dataset,
    *,
    shifts: Sequence = HALF_PIXEL,
    method: str = "fourier",
    mode: str = "circular",
    image_size: int | None = None,
    resize_size: int | None = None,
    batch_size: int = 32,
    preprocess=_runner._DEFAULT,
    verbose: int = 1,
    interpolation: str = "bilinear",
) -> dict:
    """How often the top-1 class is unchanged under sub-pixel shifts.

    Each image is preprocessed as for validation (short side to
    `resize_size`, centre crop `image_size`), and its top-1 class
    compared with that of the same view shifted by each `(dy, dx)` of
    `shifts` (down, right; fractions of a pixel allowed):

    - `method="fourier"`: the exact band-limited shift, through the FFT
      (`shifts.fourier_shift`); with `mode="circular"` the crop itself is
      shifted periodically (nothing leaves the frame), with `mode="crop"`
      the resized square is, then cropped.
    - `method="bilinear"`: linear interpolation between the integer
      shifts around `(dy, dx)`. No padding either way: `mode="circular"`
      wraps around, `mode="crop"` reads the square's pixels beyond the
      crop (so `|dy|, |dx|` must fit in the crop's margin).

    Costs `len(shifts) + 1` forward passes per image.

    Args:
        model: a Keras classification model (logits or probabilities).
        dataset: as for `accuracy`; labels are not used.
        shifts: `(dy, dx)` pairs, finite numbers; a bare number d means
            `(d, d)`. Default: half a pixel down, right, and diagonally.
        method: `"fourier"` or `"bilinear"`.
        mode: `"circular"` or `"crop"`.
        image_size: the model's input size; default read from the model.
        resize_size: short side before the centre crop; default
            `round(image_size / 0.875)`.
        batch_size: images per batch (global across replicas).
        preprocess: as for `accuracy`.
        verbose: 1 shows a progress bar, 0 is silent.
        interpolation: of the resize, `"bilinear"` or `"bicubic"`.

    Returns:
        `{"consistency": mean over the shifts, in percent, "all": percent
        unchanged under every shift, "per_shift": [percent, ...],
        "shifts": [[dy, dx], ...], "method", "mode", "num_images"}`.

    Example:

    >>> fractional_shift_consistency(model, val)  # doctest: +SKIP
    {'consistency': 93.8, 'all': 90.1, 'per_shift': [...], ...}
    """
    method = _checks.check_choice("method", method, METHODS)
    mode = _checks.check_choice("mode", mode, MODES)
    pairs = _pairs(shifts)
    image_size = _runner.resolve_image_size(model, image_size)
    resize_size, center = _runner.validation_square(image_size, resize_size)
    if mode == "crop":
        low, high = -center, resize_size - image_size - center
        outside = [p for p in pairs if min(p) < low or max(p) > high]
        if outside:
            raise ValueError(
                f"In crop mode every shift must lie in [{low}, {high}], the "
                f"margin of the centre crop ({image_size} of {resize_size}); "
                "use a larger `resize_size` or mode='circular'. Received: "
                f"shifts={[list(p) for p in outside]}"
            )
        views = [(center + dy, center + dx, 0.0, 0.0) for dy, dx in pairs]
    else:
        views = [(center, center, dy % image_size, dx % image_size) for dy, dx in pairs]
    views = [(center, center, 0.0, 0.0)] + views

    agree = np.zeros(len(pairs), "int64")
    unchanged = count = 0
    for top, labels, _ in _runner.top_classes_of_views(
        model, dataset, np.array(views), image_size=image_size,
        square_size=resize_size, mode=mode, method=method,
        preprocess=preprocess, batch_size=batch_size, verbose=verbose,
        interpolation=interpolation,
    ):
        top1 = top[..., 0]
        same = top1[1:] == top1[:1]  # (shifts, batch)
        agree += same.sum(axis=1)
        unchanged += int(same.all(axis=0).sum())
        count += len(labels)
    per_shift = 100.0 * agree / count
    return {
        "consistency": float(per_shift.mean()),
        "all": 100.0 * unchanged / count,
        "per_shift": [float(p) for p in per_shift],
        "shifts": [list(p) for p in pairs],
        "method": method,
        "mode": mode,
        "num_images": count,
    }


def _pairs(shifts) -> list[tuple[float, float]]:
    if isinstance(shifts, (str, bytes)) or not hasattr(shifts, "__len__") or not len(shifts):
        raise ValueError(
            "`shifts` must be a non-empty sequence of (dy, dx) pairs or numbers. "
            f"Received: shifts={shifts!r}"
        )
    pairs = []
    for shift in shifts:
        if isinstance(shift, (tuple, list, np.ndarray)):
            if len(shift) != 2:
                raise ValueError(
                    "Each of `shifts` must be a (dy, dx) pair or a number. "
                    f"Received: shifts={shifts!r}"
                )
            pair = tuple(_checks.check_number("shifts", s) for s in shift)
        else:
            number = _checks.check_number("shifts", shift)
            pair = (number, number)
        pairs.append(pair)
    return pairs

"""Worst-case accuracy over a grid of shifts, and its plot."""

from __future__ import annotations

import os
from typing import Mapping
from typing import Sequence

import numpy as np

from keras_blurpool import _utils
from keras_blurpool.evaluation import _checks
from keras_blurpool.evaluation import _runner
from keras_blurpool.evaluation.shifts import METHODS
from keras_blurpool.evaluation.shifts import MODES


def adversarial_shift_accuracy(
    model,
    dataset,
    *,
    max_shift: int | None = None,
    mode: str = "crop",
    step: float = 1,
    offsets: Sequence[float] | None = None,
    method: str | None = None,
    image_size: int | None = None,
    resize_size: int | None = None,
    batch_size: int = 32,
    preprocess=_runner._DEFAULT,
    verbose: int = 1,
    interpolation: str = "bilinear",
) -> dict:
    """The fraction of images classified correctly under every shift of a grid.

    The "adversarial grid" of the alias-free ConvNets' evaluation: an
    image counts only if its top-1 class is right for the clean
    validation view *and* for each of the `len(offsets) ** 2` shifted
    views. Each image is resized as for validation (short side to
    `resize_size`, then the centre square), and the views are, with
    `(o_y, o_x)` running over `offsets` x `offsets`:

    - `mode="crop"`: the `image_size` crop of that square starting at
      `(o_y, o_x)`, so offsets run over the crop's margin,
      `0 <= o <= resize_size - image_size`; the clean view is the centre
      crop (what `accuracy` scores).
    - `mode="circular"`: the centre crop rolled (`np.roll`) by
      `(o_y, o_x)`; offsets `0 <= o < image_size`.

    `offsets` defaults to `0, step, 2 * step, ...` up to `max_shift`.
    A fractional offset (`step=0.5`: the half-pixel grid) is a sub-pixel
    shift by `method` (see `shifts.subpixel_views`): `"bilinear"`
    (default in crop mode; it reads the image's own pixels beyond the
    crop, no padding) or `"fourier"` (default in circular mode; the
    exact band-limited shift). A grid of S shifts costs S + 1 forward
    passes per image (S when the clean view is on the grid); only the
    top-1 class of each view is kept.

    Args:
        model: a Keras classification model (logits or probabilities).
        dataset: as for `accuracy`.
        max_shift: the largest offset; default `resize_size - image_size`
            (32 at 224 from 256). Crop mode allows up to that margin,
            circular mode up to `image_size - 1`.
        mode: `"crop"` or `"circular"`.
        step: spacing of the default offsets, a finite number > 0.
        offsets: the offsets per axis instead of `max_shift` and `step`.
        method: of fractional offsets, `"bilinear"` or `"fourier"`;
            default by mode as above.
        image_size: the model's input size; default read from the model.
        resize_size: short side before the centre crop; default
            `round(image_size / 0.875)`.
        batch_size: images per batch (global across replicas).
        preprocess: as for `accuracy`.
        verbose: 1 shows a progress bar, 0 is silent.
        interpolation: of the resize, `"bilinear"` or `"bicubic"`.

    Returns:
        A dict, accuracies in percent:
        `{"adversarial": correct under every shift (and the clean view),
        "clean": of the clean view, "mean": over the grid's views,
        "curve": {"range": [r, ...], "adversarial": [...]}: the worst
        case over the grid's shifts within r pixels (Chebyshev, circular
        distance in circular mode) of the clean view, from 0 (the clean
        accuracy) to all of them, "offsets": [...], "num_shifts": S,
        "mode", "method", "num_images"}`. `plot_adversarial_shift` draws
        the curves of several models.

    Example:

    >>> adversarial_shift_accuracy(model, val, max_shift=8)  # doctest: +SKIP
    {'adversarial': 61.2, 'clean': 76.1, 'mean': 75.4, 'curve': {...}, ...}
    """
    mode = _checks.check_choice("mode", mode, MODES)
    if method is None:
        method = "bilinear" if mode == "crop" else "fourier"
    method = _checks.check_choice("method", method, METHODS)
    image_size = _runner.resolve_image_size(model, image_size)
    resize_size, center = _runner.validation_square(image_size, resize_size)
    margin = resize_size - image_size
    limit = margin if mode == "crop" else image_size - 1
    offsets = grid_offsets(
        max_shift, step, offsets, limit=limit, default=margin, mode=mode,
        image_size=image_size, resize_size=resize_size,
    )
    grid = [(oy, ox) for oy in offsets for ox in offsets]
    clean = (center, center, 0, 0)
    if mode == "crop":
        rows = [(oy, ox, 0.0, 0.0) for oy, ox in grid]
    else:
        rows = [(center, center, oy, ox) for oy, ox in grid]
    views = [clean] + [r for r in rows if r != clean]
    on_grid = np.array([clean in rows] + [True] * (len(views) - 1))
    distance = np.array([_distance(v, mode, center, image_size) for v in views])
    ranges = np.unique(distance)

    clean_hits = grid_hits = adversarial = count = 0
    survived = np.zeros(len(ranges), "int64")  # right within each range
    for top, labels, classes in _runner.top_classes_of_views(
        model, dataset, np.array(views), image_size=image_size,
        square_size=resize_size, mode=mode, method=method,
        preprocess=preprocess, batch_size=batch_size, verbose=verbose,
        interpolation=interpolation,
    ):
        top1 = top[..., 0]
        _runner.check_labels(labels, classes)
        correct = top1 == labels[None]  # (views, batch)
        clean_hits += int(correct[0].sum())
        grid_hits += int(correct[on_grid].sum())
        adversarial += int(correct.all(axis=0).sum())
        # The nearest wrong view of each image (inf: none).
        wrong = np.where(correct, np.inf, distance[:, None]).min(axis=0)
        survived += (wrong[None] > ranges[:, None]).sum(axis=1)
        count += len(labels)
    return {
        "adversarial": 100.0 * adversarial / count,
        "clean": 100.0 * clean_hits / count,
        "mean": 100.0 * grid_hits / (count * int(on_grid.sum())),
        "curve": {
            "range": [float(r) for r in ranges],
            "adversarial": [100.0 * s / count for s in survived],
        },
        "offsets": [float(o) for o in offsets],
        "num_shifts": len(grid),
        "mode": mode,
        "method": method,
        "num_images": count,
    }


def grid_offsets(
    max_shift, step, offsets, *, limit: int, default: int, mode: str,
    image_size: int, resize_size: int,
) -> list[float]:
    """The offsets per axis, checked against what the input can hold."""
    where = (
        f"the crop's margin (resize_size - image_size = {resize_size} - "
        f"{image_size})" if mode == "crop"
        else f"image_size - 1 (image_size={image_size})"
    )
    if offsets is not None:
        if max_shift is not None or step != 1:
            raise ValueError(
                "Pass either `offsets` or `max_shift` and `step`, not both. "
                f"Received: offsets={offsets!r}, max_shift={max_shift!r}, "
                f"step={step!r}"
            )
        if isinstance(offsets, (str, bytes)) or not hasattr(offsets, "__len__"):
            raise ValueError(
                "`offsets` must be a sequence of numbers. Received: "
                f"offsets={offsets!r}"
            )
        values = sorted({_checks.check_number("offsets", o) for o in offsets})
        if not values:
            raise ValueError(
                f"`offsets` must hold at least one number. Received: offsets={offsets!r}"
            )
        if values[0] < 0 or values[-1] > limit:
            raise ValueError(
                f"`offsets` must lie in [0, {limit}], {where}, in {mode} mode. "
                f"Received: offsets={list(offsets)!r}"
            )
        return values
    step = _checks.check_number("step", step, positive=True)
    if max_shift is None:
        max_shift = default
        if max_shift == 0:
            raise ValueError(
                f"resize_size == image_size ({image_size}) leaves no margin to "
                "shift a crop in: pass `max_shift` (circular mode) or a larger "
                f"`resize_size`. Received: resize_size={resize_size}"
            )
    max_shift = _checks.check_positive_int("max_shift", max_shift)
    if max_shift > limit:
        raise ValueError(
            f"`max_shift` must be at most {limit}, {where}, in {mode} mode: the "
            "model's input cannot hold a larger shift grid. Received: "
            f"max_shift={max_shift}"
        )
    if step > max_shift:
        raise ValueError(
            f"`step` must be at most max_shift={max_shift}. Received: step={step}"
        )
    count = int(np.floor(max_shift / step + 1e-9)) + 1
    return [float(k * step) for k in range(count)]


def _distance(view, mode: str, center: int, size: int) -> float:
    """How far a view is shifted from the clean view, in pixels."""
    if mode == "crop":
        return max(abs(view[0] - center), abs(view[1] - center))
    return max(min(r % size, size - r % size) for r in view[2:])


def plot_adversarial_shift(
    results: Mapping[str, dict], path: str, *, title: str | None = None
) -> str:
    """Draws worst-case accuracy against the shift range, one curve per model.

    Args:
        results: `adversarial_shift_accuracy` results by label, e.g.
            `{"baseline": ..., "blur": ..., "APS": ...}`.
        path: the PNG to write (atomically).
        title: figure title.

    Returns:
        `path`.

    Example:

    >>> plot_adversarial_shift({"plain": a, "blur": b}, "worst.png")  # doctest: +SKIP
    'worst.png'
    """
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    if (
        not isinstance(results, Mapping)
        or not results
        or not all(isinstance(r, dict) and "curve" in r for r in results.values())
    ):
        raise ValueError(
            "`results` must be a non-empty mapping of labels to "
            "adversarial_shift_accuracy results. Received: "
            f"{results!r}"
        )
    figure = Figure(figsize=(6, 4))
    FigureCanvasAgg(figure)
    axes = figure.subplots()
    for label, result in results.items():
        curve = result["curve"]
        axes.plot(curve["range"], curve["adversarial"], marker="o", label=label)
    modes = sorted({r["mode"] for r in results.values()})
    axes.set_xlabel(f"largest shift from the clean view (pixels, {', '.join(modes)})")
    axes.set_ylabel("accuracy under every shift (%)")
    axes.grid(alpha=0.3)
    axes.legend()
    if title:
        axes.set_title(title)
    figure.tight_layout()
    with _utils.atomic_path(path, create_dir=True) as partial:
        figure.savefig(partial, format="png", dpi=100)
    return os.fspath(path)

"""How each architecture's released weights were validated.

`eval_settings(arch, tag)` turns the registry's `Preprocessing` of a
network (timm's eval config for timm's networks, the reference's 256 ->
224 bilinear for the reference's) into the keyword arguments of
`accuracy` and `circular_shift_consistency`, so that accuracy measured
here matches how its authors measured it.
"""

from __future__ import annotations

from typing import Callable

import numpy as np
from keras import ops

from keras_blurpool.applications import registry
from keras_blurpool.applications.imagenet_utils import IMAGENET_MEAN
from keras_blurpool.applications.imagenet_utils import IMAGENET_STD
from keras_blurpool.applications.imagenet_utils import preprocess_input


def _normalizer(mean, std) -> Callable:
    """`(x / 255 - mean) / std` per channel, on channels-last batches."""
    if tuple(mean) == IMAGENET_MEAN and tuple(std) == IMAGENET_STD:
        return preprocess_input
    offset = np.array(mean, "float32") * 255
    scale = 1 / (np.array(std, "float32") * 255)

    def normalize(x):
        return (ops.cast(x, "float32") - offset) * scale

    return normalize


def eval_settings(
    arch: str, tag: str | None = None, *, test_size: bool = False
) -> dict:
    """The validation preprocessing of an architecture's released weights.

    Args:
        arch: a registry name, e.g. `"resnetaa50d"` or `"resnet50"`.
        tag: for timm's networks, the released weights' tag (default: the
            architecture's default tag); None for the reference's.
        test_size: use timm's larger `test_input_size` (and
            `test_crop_pct`) where it records one.

    Returns:
        `{"image_size", "resize_size", "interpolation", "preprocess"}`:
        keyword arguments of `accuracy` and `circular_shift_consistency`.
        `shift_consistency` and `diagonal_shift` follow the paper's
        protocol (resize to `image_size + max_shift`): pass them
        `image_size`, `interpolation` and `preprocess`.

    Raises:
        ValueError: for an unknown architecture or tag.

    Example:

    >>> settings = eval_settings("resnetaa50d")
    >>> settings["image_size"], settings["resize_size"], settings["interpolation"]
    (224, 235, 'bicubic')
    >>> eval_settings("resnet50")["resize_size"]
    256
    """
    config = registry.get(arch).preprocessing_for(tag)
    if test_size:
        config = config.at_test_size()
    return {
        "image_size": config.input_size,
        "resize_size": config.resize_size(),
        "interpolation": config.interpolation,
        "preprocess": _normalizer(config.mean, config.std),
    }

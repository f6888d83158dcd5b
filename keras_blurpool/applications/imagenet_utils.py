"""ImageNet input preprocessing and prediction decoding.

The reference trains on RGB in [0, 1] normalised with the ImageNet mean
and standard deviation (torchvision's `ToTensor` + `Normalize`).
"""

from __future__ import annotations

import functools
import importlib.resources

import keras
import numpy as np
from keras import ops

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


def preprocess_input(x, data_format: str | None = None):
    """Scales RGB pixels in [0, 255] as the reference's training did.

    `x / 255`, then per-channel `(x - mean) / std` with the ImageNet
    statistics, which is `mode="torch"` of `keras.applications`.

    Args:
        x: RGB images, values in [0, 255]; NumPy array or tensor, float or
            uint8, with channels last or first (see `data_format`).
        data_format: `"channels_last"` or `"channels_first"`; None (the
            default) follows `keras.config.image_data_format()`, as the
            builders do.

    Returns:
        float32 array (a NumPy array when `x` is one) of the same shape.

    Example:

    >>> images = np.random.randint(0, 256, (2, 224, 224, 3), "uint8")
    >>> preprocess_input(images).shape
    (2, 224, 224, 3)
    """
    if data_format not in (None, "channels_last", "channels_first"):
        raise ValueError(
            "`data_format` must be None, 'channels_last' or 'channels_first'."
            f" Received: data_format={data_format!r}"
        )
    if data_format is None:
        data_format = keras.config.image_data_format()
    channel_axis = 1 if data_format == "channels_first" else -1
    if x.shape[channel_axis] != 3:
        raise ValueError(
            "preprocess_input expects 3 RGB channels on axis "
            f"{channel_axis}. Received an input of shape {tuple(x.shape)}"
        )
    shape = [1] * len(x.shape)
    shape[channel_axis] = 3
    mean = np.reshape(np.array(IMAGENET_MEAN, "float32") * 255, shape)
    scale = np.reshape(1 / (np.array(IMAGENET_STD, "float32") * 255), shape)
    if isinstance(x, np.ndarray):
        return ((x.astype("float32") - mean) * scale).astype("float32")
    x = ops.cast(x, "float32")
    return (x - mean) * scale


@functools.cache
def imagenet_classes() -> tuple[tuple[str, str], ...]:
    """The 1000 `(wordnet_id, name)` pairs in the models' output order."""
    text = importlib.resources.files(__package__).joinpath(
        "imagenet_classes.txt"
    ).read_text()
    pairs = (line.split("\t", 1) for line in text.splitlines() if line)
    # The file keeps every WordNet lemma; the first is the common name.
    return tuple((wnid, lemmas.split(", ")[0]) for wnid, lemmas in pairs)


def decode_predictions(preds, top: int = 5) -> list[list[tuple]]:
    """Top classes of ImageNet predictions, as keras.applications returns.

    Args:
        preds: `(batch, 1000)` probabilities or logits.
        top: how many classes per sample.

    Returns:
        For each sample, a list of `(wordnet_id, name, score)`, best first.
    """
    preds = np.asarray(ops.convert_to_numpy(preds))
    if preds.ndim != 2 or preds.shape[1] != 1000:
        raise ValueError(
            "`decode_predictions` expects a batch of 1000 ImageNet scores, "
            f"shape (batch, 1000). Received: shape {preds.shape}"
        )
    if isinstance(top, bool) or not isinstance(top, int) or not 1 <= top <= 1000:
        raise ValueError(f"`top` must be an int from 1 to 1000. Received: top={top!r}")
    classes = imagenet_classes()
    results = []
    for row in preds:
        best = np.argsort(row)[::-1][:top]
        results.append([(*classes[i], float(row[i])) for i in best])
    return results

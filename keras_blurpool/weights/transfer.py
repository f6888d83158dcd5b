"""Fine-tuning an antialiased model from its baseline's weights."""

from __future__ import annotations

import keras
import numpy as np


def _weighted_layers(model) -> dict[str, keras.layers.Layer]:
    return {layer.name: layer for layer in model.layers if layer.weights}


def transfer_weights(source: keras.Model, target: keras.Model) -> keras.Model:
    """Copies every weight of `source` into the same-named layers of `target`.

    Anti-aliasing adds no parameters, so a plain model (`filter_size=None`)
    and an antialiased model of the same architecture have the same layers
    with weights, under the same names: this is how the paper fine-tunes
    antialiased networks from baseline ones (the reference's
    `copy_params_buffers`). It works in both directions, and between any
    two models whose weighted layers match by name and shape. BatchNorm
    moving statistics are copied too. Nothing is copied unless all fit.

    Args:
        source: the model to copy from, e.g. `ResNet50(filter_size=None)`.
        target: the model to copy into, e.g. `ResNet50(filter_size=4)`.

    Returns:
        `target`.

    Raises:
        ValueError: listing every layer missing on either side and every
            weight whose shape differs.

    Example:

    >>> baseline = keras_blurpool.applications.ResNet18(filter_size=None)
    >>> model = keras_blurpool.applications.ResNet18(filter_size=4)
    >>> model = keras_blurpool.transfer_weights(baseline, model)
    """
    for argument, value in (("source", source), ("target", target)):
        if not isinstance(value, keras.Model):
            raise ValueError(
                f"`{argument}` must be a keras.Model. "
                f"Received: {type(value).__name__}"
            )
    src, dst = _weighted_layers(source), _weighted_layers(target)
    problems = [f"layer '{n}' has weights only in the source" for n in src if n not in dst]
    problems += [f"layer '{n}' has weights only in the target" for n in dst if n not in src]
    pairs = []
    for name in src.keys() & dst.keys():
        src_weights, dst_weights = src[name].weights, dst[name].weights
        if len(src_weights) != len(dst_weights):
            problems.append(
                f"layer '{name}' has {len(src_weights)} weights in the source "
                f"and {len(dst_weights)} in the target"
            )
            continue
        for a, b in zip(src_weights, dst_weights):
            if tuple(a.shape) != tuple(b.shape):
                problems.append(
                    f"'{a.path}' has shape {tuple(a.shape)} in the source and "
                    f"{tuple(b.shape)} in the target"
                )
            else:
                pairs.append((a, b))
    if problems:
        listing = "\n  ".join(sorted(problems))
        raise ValueError(
            f"Cannot transfer weights from '{source.name}' to '{target.name}' "
            f"({len(problems)} problem(s)); nothing was copied:\n  {listing}"
        )
    for a, b in pairs:
        b.assign(np.asarray(keras.ops.convert_to_numpy(a), dtype=b.dtype))
    return target

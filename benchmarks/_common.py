"""Shared by the benchmarks: interleaved timing, and a model on the padded route."""

import time

import keras
import numpy as np

from keras_blurpool import BlurPool2D
from keras_blurpool import MaxBlurPool2D


def interleaved_medians(calls, repeats, warmups=1):
    """Median milliseconds of each call; rounds interleave the calls.

    Interleaving spreads the machine's drift over every candidate instead
    of favouring whichever ran first.
    """
    for call in calls.values():  # trace, allocate
        for _ in range(warmups):
            call()
    times = {name: [] for name in calls}
    for _ in range(repeats):
        for name, call in calls.items():
            start = time.perf_counter()
            call()
            times[name].append(time.perf_counter() - start)
    return {name: 1e3 * float(np.median(t)) for name, t in times.items()}


def on_padded_route(model):
    """A copy of `model`, same weights, whose BlurPools pad explicitly.

    Every `BlurPool2D` / `MaxBlurPool2D` is rebuilt from its config with
    `implementation="padded"` (explicit pad + "valid" convolution).
    """

    def clone(layer):
        config = layer.get_config()
        if isinstance(layer, (BlurPool2D, MaxBlurPool2D)):
            config["implementation"] = "padded"
        return layer.__class__.from_config(config)

    copy = keras.models.clone_model(model, clone_function=clone)
    copy.set_weights(model.get_weights())
    return copy

"""Shared by the benchmarks: interleaved timing, compiled passes of a layer,
and a model on a chosen route."""

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


def synced(fn, args, inner=1):
    """A call of `fn(*args)` `inner` times back to back, then one device wait.

    Waits without copying results to NumPy, and lets a GPU queue `inner`
    calls so that the host's dispatch does not set the pace.
    """
    import tensorflow as tf

    def call():
        for _ in range(inner):
            fn(*args)
        tf.test.experimental.sync_devices()

    return call


def tf_passes(layer, jit_compile=False):
    """`(forward(x), forward_backward(x, dy))` of `layer` as tf.functions.

    Training calls (`training=True`), so that `implementation="auto"` runs
    the route it trains on. `x` and the output gradient are arguments, not
    captured constants, which XLA would constant-fold.
    """
    import tensorflow as tf

    @tf.function(jit_compile=jit_compile)
    def forward(x):
        return layer(x, training=True)

    @tf.function(jit_compile=jit_compile)
    def forward_backward(x, dy):
        with tf.GradientTape() as tape:
            tape.watch(x)
            y = layer(x, training=True)
        # Returning y keeps the forward in the graph: the gradient alone
        # does not need its values and grappler would prune it.
        return y, tape.gradient(y, x, output_gradients=dy)

    return forward, forward_backward


def on_route(model, implementation="padded"):
    """A copy of `model`, same weights, whose BlurPools take one route.

    Every `BlurPool2D` / `MaxBlurPool2D` of `model` (a functional model of
    `"auto"` layers) is rebuilt from its config with `implementation`:
    `"padded"` (explicit pad + "valid" convolution) everywhere, or `"same"`
    (the "same" convolution plus the border correction) wherever it is
    exact for the layer's input size, `"padded"` elsewhere — the routes
    `"auto"` picks for a training call.
    """

    def route(layer):
        if implementation != "same":
            return implementation
        blur, shape = layer, layer.input.shape
        if isinstance(layer, MaxBlurPool2D):
            blur, shape = layer.blur, layer._pooled_shape(shape)
        return "same" if blur._same_padding_plan(shape) is not None else "padded"

    def clone(layer):
        config = layer.get_config()
        if isinstance(layer, (BlurPool2D, MaxBlurPool2D)):
            config["implementation"] = route(layer)
        return layer.__class__.from_config(config)

    copy = keras.models.clone_model(model, clone_function=clone)
    copy.set_weights(model.get_weights())
    return copy

"""What the invariance tests of `antialias_model(antialias="aps"|"lps")` share."""

import keras
import numpy as np

# Every offset of an 8x8 grid, and a few large ones.
GRID_SHIFTS = [(dy, dx) for dy in range(8) for dx in range(8)] + [
    (17, 33), (31, 5), (45, 50),
]


def randomize_batchnorm(model, seed=0, calibration=None):
    """Random BN statistics and affine terms in every BatchNormalization of
    `model` (nested ones too), so that no BN is the identity.

    With `calibration` images the moving statistics are first set to each
    layer's batch statistics on them (one training-mode call with momentum
    0), then perturbed: the signal then keeps its scale through depth, as
    in a trained network, and the output depends on the input.
    """
    rng = np.random.default_rng(seed)
    layers = [x for x in model._flatten_layers()
              if isinstance(x, keras.layers.BatchNormalization)]
    for layer in layers:
        for weight in layer.weights:
            shape = tuple(weight.shape)
            if weight.path.endswith("gamma"):
                weight.assign(rng.uniform(0.5, 1.5, shape).astype(weight.dtype))
            elif weight.path.endswith("beta"):
                weight.assign(rng.normal(0.0, 0.2, shape).astype(weight.dtype))
    if calibration is not None:
        momenta = [layer.momentum for layer in layers]
        for layer in layers:
            layer.momentum = 0.0
        model(calibration, training=True)
        for layer, momentum in zip(layers, momenta):
            layer.momentum = momentum
    for layer in layers:
        mean, variance = layer.moving_mean, layer.moving_variance
        std = np.sqrt(np.asarray(keras.ops.convert_to_numpy(variance)))
        shape = tuple(mean.shape)
        mean.assign(mean + (rng.normal(0.0, 0.2, shape) * std).astype(mean.dtype))
        # A floor: a channel nearly constant on the calibration images
        # would divide float32 rounding noise by a tiny deviation.
        var = np.asarray(keras.ops.convert_to_numpy(variance))
        var = (var + 0.1 * np.median(var) + 1e-3) * rng.uniform(0.5, 2.0, shape)
        variance.assign(var.astype(variance.dtype))


def randomize_kernels(model, seed=0):
    """He-normal kernels in every conv and Dense of `model`, so that the
    signal keeps its scale through depth and the output depends on the
    input (with Glorot kernels and random BN statistics a deep random
    network's pooled features barely do)."""
    rng = np.random.default_rng(seed)
    for weight in model.weights:
        name = weight.path.rsplit("/", 1)[-1]
        shape = tuple(weight.shape)
        if name == "depthwise_kernel":
            fan_in = int(np.prod(shape[:-2]))
        elif name in ("kernel", "pointwise_kernel") and len(shape) >= 2:
            fan_in = int(np.prod(shape[:-1]))
        else:
            continue
        value = rng.normal(0.0, np.sqrt(2.0 / fan_in), shape)
        weight.assign(value.astype(weight.dtype))


def shift_changes(model, image, shifts=GRID_SHIFTS):
    """Per shift, max |f(roll(x)) - f(x)| / max |f(x)|: all shifted copies
    of `image` (`(H, W, C)`) in one batch, one call.

    Asserts that the output depends on the input (a flipped image, no
    circular shift of it, changes it by over 0.1%): a network that ignores
    its input is trivially invariant.
    """
    batch = np.stack(
        [image]
        + [np.roll(image, shift, axis=(0, 1)) for shift in shifts]
        + [image[::-1, ::-1] * 0.5]
    )
    out = np.asarray(keras.ops.convert_to_numpy(model(batch, training=False)))
    out = out.reshape(len(batch), -1)
    scale = np.abs(out[0]).max()
    sensitivity = np.abs(out[-1] - out[0]).max() / scale
    assert sensitivity > 1e-3, f"output ignores the input: {sensitivity:.3g}"
    return np.abs(out[1:-1] - out[0]).max(axis=1) / scale


def random_image(size, channels=3, seed=0, scale=1.0):
    """A random image with pixel values uniform in [-scale, scale]."""
    rng = np.random.default_rng(seed)
    return rng.uniform(-scale, scale, (size, size, channels)).astype("float32")

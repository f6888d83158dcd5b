"""What the invariance tests of `antialias_model(antialias="aps"|"lps")` share."""

import keras
import numpy as np

# Every offset of an 8x8 grid, and a few large ones.
GRID_SHIFTS = [(dy, dx) for dy in range(8) for dx in range(8)] + [
    (17, 33), (31, 5), (45, 50),
]


def randomize_batchnorm(model, seed=0):
    """Random moving statistics and affine terms in every BatchNormalization
    of `model` (nested ones too), so that no BN is the identity."""
    rng = np.random.default_rng(seed)
    for layer in model._flatten_layers():
        if not isinstance(layer, keras.layers.BatchNormalization):
            continue
        values = []
        for weight, value in zip(layer.weights, layer.get_weights()):
            path = weight.path
            if path.endswith("moving_variance"):
                value = rng.uniform(0.5, 2.0, value.shape)
            elif path.endswith("moving_mean"):
                value = rng.normal(0.0, 0.5, value.shape)
            elif path.endswith("gamma"):
                value = rng.uniform(0.5, 1.5, value.shape)
            elif path.endswith("beta"):
                value = rng.normal(0.0, 0.2, value.shape)
            values.append(np.asarray(value, dtype=weight.dtype))
        layer.set_weights(values)


def shift_changes(model, image, shifts=GRID_SHIFTS):
    """Per shift, max |f(roll(x)) - f(x)| / max |f(x)|: all shifted copies
    of `image` (`(H, W, C)`) in one batch, one call."""
    batch = np.stack(
        [image] + [np.roll(image, shift, axis=(0, 1)) for shift in shifts]
    )
    out = np.asarray(keras.ops.convert_to_numpy(model(batch, training=False)))
    out = out.reshape(len(batch), -1)
    return np.abs(out[1:] - out[0]).max(axis=1) / np.abs(out[0]).max()


def random_image(size, channels=3, seed=0):
    """A random image with pixel values in [0, 255]."""
    rng = np.random.default_rng(seed)
    return rng.uniform(0.0, 255.0, (size, size, channels)).astype("float32")

"""antialias="aps"|"lps" with padding="circular" in every builder family.

One member of each family at 64 px (DenseNet121 at 32) (random weights, randomised BatchNorm
statistics): every circular shift in a 4x4 grid and two large ones leave
the logits (or the pooled features, for the Flatten classifiers of VGG
and AlexNet) unchanged within 1e-5 relative. One batched predict each.
"""

import warnings

import keras
import numpy as np
import pytest

from keras_blurpool import APSPool2D
from keras_blurpool import LPSPool2D
from keras_blurpool import applications

SIZE = 64
SHIFTS = [(a, b) for a in range(4) for b in range(4)] + [(17, 33), (33, 17)]
# The Flatten classifier of these is not invariant: their pooled features.
HEADLESS = ("VGG11", "VGG11BN", "AlexNet")


def _build(name, antialias, size=SIZE, **kwargs):
    keras.utils.set_random_seed(0)
    if name in HEADLESS:
        kwargs.update(include_top=False, pooling="avg")
    else:
        kwargs.update(classes=10, classifier_activation=None)
    model = getattr(applications, name)(
        antialias=antialias, padding="circular", input_shape=(size, size, 3),
        **kwargs,
    )
    norms = [layer for layer in model.layers
             if isinstance(layer, keras.layers.BatchNormalization)]
    rng = np.random.default_rng(1)
    if name == "MobileNetV2":
        # Statistics of random images (one training-mode pass at momentum
        # 0): with the default ones its signal vanishes at random weights
        # and its logits do not depend on the image at all.
        for layer in norms:
            layer.momentum = 0.0
        model(rng.uniform(0, 1, (4, size, size, 3)).astype("float32"),
              training=True)
        for layer in norms:
            layer.momentum = 0.9
    else:
        # Non-trivial statistics and scales (timm's zero-initialised last
        # scales would make every block the identity), as after training.
        for layer in norms:
            n = layer.gamma.shape[0]
            layer.gamma.assign(rng.uniform(0.5, 1.5, n))
            layer.moving_mean.assign(rng.normal(0, 0.1, n))
            layer.moving_variance.assign(rng.uniform(0.5, 1.5, n))
    return model


def _outputs(model, size=SIZE):
    rng = np.random.default_rng(2)
    image, other = rng.uniform(0, 1, (2, size, size, 3)).astype("float32")
    batch = np.stack([np.roll(image, s, axis=(0, 1)) for s in SHIFTS] + [other])
    return np.asarray(model.predict(batch, batch_size=len(batch), verbose=0))


@pytest.mark.parametrize(
    "name,antialias,size",
    [
        ("VGG11BN", "aps", SIZE),
        # The deepest network at its smallest size (total stride 32, 1x1
        # at the end; np.roll wraps the large shifts): CI time.
        ("DenseNet121", "aps", 32),
        ("MobileNetV2", "aps", SIZE),
        ("AlexNet", "lps", SIZE),
        ("ResNetBlur18", "lps", SIZE),  # timm's 7x7 stem
        ("ResNetAA34D", "aps", SIZE),  # timm's deep stem and avg_down shortcut
    ],
)
def test_every_family_is_invariant_to_circular_shifts(name, antialias, size):
    model = _build(name, antialias, size)
    kind = APSPool2D if antialias == "aps" else LPSPool2D
    assert any(isinstance(layer, kind) for layer in model.layers)
    # Convolutions and pools all run at stride 1: only the polyphase
    # layers subsample.
    for layer in model.layers:
        if isinstance(layer, (keras.layers.Conv2D, keras.layers.MaxPooling2D,
                              keras.layers.AveragePooling2D)):
            assert tuple(layer.strides) == (1, 1), layer.name
    out = _outputs(model, size)
    scale = np.abs(out[0]).max()
    shifted = np.abs(out[1:-1] - out[0]).max() / scale
    assert shifted <= 1e-5, shifted
    # Not a constant network: another image changes the output by far
    # more than the tolerance.
    assert np.abs(out[-1] - out[0]).max() / scale > 1e-4


def test_blur_control_changes_under_shifts():
    out = _outputs(_build("VGG11", "blur"))
    shifted = np.abs(out[1:-1] - out[0]).max() / np.abs(out[0]).max()
    assert shifted > 1e-3, shifted


@pytest.mark.parametrize("name", ["AlexNet"])  # VGG's head is the same
def test_the_flatten_classifier_warns(name):
    keras.utils.set_random_seed(0)
    with pytest.warns(UserWarning, match="not invariant"):
        getattr(applications, name)(
            antialias="aps", padding="circular", input_shape=(SIZE, SIZE, 3),
            classes=10,
        )
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        getattr(applications, name)(
            antialias="aps", padding="circular", input_shape=(SIZE, SIZE, 3),
            include_top=False, pooling="avg",
        )


@pytest.mark.parametrize(
    "name", ["VGG11", "DenseNet121", "MobileNetV2", "AlexNet", "ResNetAA50"]
)
def test_padding_is_checked(name):
    with pytest.raises(ValueError, match="Received: padding='reflect'"):
        getattr(applications, name)(padding="reflect", weights=None)

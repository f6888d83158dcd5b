"""Exact invariance to circular shifts: APS and LPS ResNets (issue 15).

Every circular shift of a 64x64 input, through a ResNet-18 with circular
padding and random weights: APS and LPS (at inference) give the same
logits for all 4096 (with --zoo, as CI runs); BlurPool does not.
"""

import keras
import numpy as np
import pytest

from keras_blurpool import applications

SIZE = 64


def _resnet18(antialias):
    keras.utils.set_random_seed(0)
    model = applications.ResNet18(
        antialias=antialias,
        padding="circular",
        input_shape=(SIZE, SIZE, 3),
        classes=10,
        classifier_activation=None,
    )
    rng = np.random.default_rng(1)
    for layer in model.layers:
        if isinstance(layer, keras.layers.BatchNormalization):
            # Non-trivial statistics, as after training.
            n = layer.gamma.shape[0]
            layer.moving_mean.assign(rng.normal(0, 0.1, n))
            layer.moving_variance.assign(rng.uniform(0.5, 1.5, n))
    return model


def _logits_of_every_shift(model, step=1):
    image = np.random.default_rng(2).uniform(0, 1, (SIZE, SIZE, 3))
    image = image.astype("float32")
    shifts = [(a, b) for a in range(0, SIZE, step) for b in range(0, SIZE, step)]
    batch = np.stack([np.roll(image, s, axis=(0, 1)) for s in shifts])
    return np.asarray(model.predict(batch, batch_size=256, verbose=0))


@pytest.mark.zoo  # 4096 ResNet-18 passes each, about 1.5 CPU minutes
@pytest.mark.parametrize("antialias", ["aps", "lps"])
def test_polyphase_resnet18_is_invariant_to_every_circular_shift(antialias):
    logits = _logits_of_every_shift(_resnet18(antialias))
    relative = np.abs(logits - logits[0]).max() / np.abs(logits[0]).max()
    assert relative <= 1e-5, relative
    assert (logits.argmax(1) == logits[0].argmax()).all()


def test_blurpool_resnet18_is_not():
    logits = _logits_of_every_shift(_resnet18("blur"), step=13)  # 25 shifts
    relative = np.abs(logits - logits[0]).max() / np.abs(logits[0]).max()
    assert relative > 1e-3, relative

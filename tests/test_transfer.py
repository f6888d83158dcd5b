"""transfer_weights: fine-tuning an antialiased model from its baseline."""

import keras
import numpy as np
import pytest

import keras_blurpool
from keras_blurpool import applications


@pytest.mark.parametrize("builder", [applications.ResNet18,
                                     applications.MobileNetV2,
                                     applications.VGG11BN])
def test_baseline_to_antialiased_copies_every_weight(builder):
    keras.utils.set_random_seed(1)
    baseline = builder(filter_size=None, input_shape=(96, 96, 3), include_top=False)
    keras.utils.set_random_seed(2)
    model = builder(filter_size=4, input_shape=(96, 96, 3), include_top=False)
    assert len(baseline.weights) == len(model.weights)
    keras_blurpool.transfer_weights(baseline, model)
    by_path = {w.path: w for w in model.weights}
    for w in baseline.weights:
        np.testing.assert_array_equal(np.asarray(by_path[w.path]), np.asarray(w))


def test_mismatch_is_one_error_and_copies_nothing():
    source = applications.ResNet18(filter_size=None, classes=10)
    target = applications.ResNet34(filter_size=4, classes=10)
    before = [np.asarray(w).copy() for w in target.weights]
    with pytest.raises(ValueError) as info:
        keras_blurpool.transfer_weights(source, target)
    assert "conv2_block3_1_conv' has weights only in the target" in str(info.value)
    assert "nothing was copied" in str(info.value)
    for w, b in zip(target.weights, before):
        np.testing.assert_array_equal(np.asarray(w), b)
    other_classes = applications.ResNet18(filter_size=4, classes=5)
    with pytest.raises(ValueError, match=r"predictions/kernel' has shape \(512, 10\)"):
        keras_blurpool.transfer_weights(source, other_classes)
    with pytest.raises(ValueError, match="`source` must be a keras.Model"):
        keras_blurpool.transfer_weights({}, target)

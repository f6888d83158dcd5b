"""`load_torch_weights` assigns nothing unless every value fits, kind included."""

import numpy as np
import pytest

import keras_blurpool
from keras_blurpool import applications
from tests.conftest import numpy_state_dict
from tests.conftest import randomize_batchnorm


@pytest.mark.parametrize(
    "key,bad,match",
    [
        # Right shape, wrong kind: a string array (the last weighted layer,
        # so that every other variable was overwritten before the fix).
        ("fc.weight", None, r"'fc\.weight' has dtype <U3, expected a real numeric"),
        ("conv1.weight", "object", r"'conv1\.weight' has dtype object"),
        ("bn1.running_var", "bool", r"'bn1\.running_var' has dtype bool"),
        ("layer1.0.conv1.weight", "complex", r"has dtype complex64"),
    ],
)
def test_wrong_kind_of_value_loads_nothing(reference, key, bad, match):
    torch, aa = reference
    state = numpy_state_dict(randomize_batchnorm(torch, aa.resnet18(filter_size=4)))
    model = applications.ResNet18(filter_size=4)
    before = [variable.numpy().copy() for variable in model.weights]
    shape = state[key].shape
    if bad is None:
        state[key] = np.full(shape, "abc")
    elif bad == "object":
        state[key] = np.full(shape, None, dtype=object)
    elif bad == "bool":
        state[key] = np.ones(shape, dtype=bool)
    else:
        state[key] = state[key] + 1j
    with pytest.raises(ValueError, match=match) as info:
        keras_blurpool.load_torch_weights(model, state)
    assert "nothing was loaded" in str(info.value)
    for variable, value in zip(model.weights, before):
        np.testing.assert_array_equal(variable.numpy(), value, err_msg=variable.path)
    # The same state dict, repaired, loads.
    state[key] = numpy_state_dict(aa.resnet18(filter_size=4))[key]
    keras_blurpool.load_torch_weights(model, state)
    np.testing.assert_array_equal(
        model.get_layer("predictions").kernel.numpy(), state["fc.weight"].T
    )

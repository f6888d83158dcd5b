"""AdaptiveAvgPool2D against PyTorch's adaptive_avg_pool2d, on every backend.

CI runs this file on TensorFlow, JAX and PyTorch. Every input side 1-64
to outputs 6 (AlexNet's) and 7 (VGG's), where Keras's own
AdaptiveAveragePooling2D gives NaN on JAX for many sides.
"""

import keras
import numpy as np
import pytest

import keras_blurpool
from keras_blurpool.layers import AdaptiveAvgPool2D
from keras_blurpool.layers.adaptive_pooling import window_matrix

SIDES = range(1, 65)


def _torch_pool(torch, x, output_size):
    """`torch.nn.functional.adaptive_avg_pool2d` of channels_last `x`."""
    with torch.no_grad():
        y = torch.nn.functional.adaptive_avg_pool2d(
            torch.from_numpy(x.transpose(0, 3, 1, 2)), output_size
        )
    return y.numpy().transpose(0, 2, 3, 1)


def _assert_equal(got, expected):
    assert got.shape == expected.shape
    assert np.isfinite(got).all()
    np.testing.assert_allclose(got, expected, rtol=1e-6, atol=1e-6)


def test_every_side_equals_torch(reference):
    torch, _ = reference
    inputs = keras.Input((None, None, 3))
    model = keras.Model(
        inputs, [AdaptiveAvgPool2D(6)(inputs), AdaptiveAvgPool2D(7)(inputs)]
    )
    # Compiled on JAX, whose eager ops would each compile for every shape.
    run = model.predict_on_batch if keras.backend.backend() == "jax" else model
    rng = np.random.default_rng(0)
    for side in SIDES:
        # Height `side` and width `65 - side`: each axis meets every side.
        x = rng.standard_normal((2, side, 65 - side, 3)).astype("float32")
        for output_size, got in zip((6, 7), run(x)):
            _assert_equal(
                keras.ops.convert_to_numpy(got), _torch_pool(torch, x, output_size)
            )


def test_rectangular_output_and_channels_first(reference):
    torch, _ = reference
    x = np.random.default_rng(1).standard_normal((2, 13, 29, 4)).astype("float32")
    expected = _torch_pool(torch, x, (6, 7))
    got = AdaptiveAvgPool2D((6, 7))(x)
    _assert_equal(keras.ops.convert_to_numpy(got), expected)
    first = AdaptiveAvgPool2D((6, 7), data_format="channels_first")
    got = keras.ops.convert_to_numpy(first(x.transpose(0, 3, 1, 2)))
    _assert_equal(got.transpose(0, 2, 3, 1), expected)


def test_unknown_input_size_in_a_model(reference):
    torch, _ = reference
    inputs = keras.Input((None, None, 3))
    model = keras.Model(inputs, AdaptiveAvgPool2D(7)(inputs))
    assert model.output_shape == (None, 7, 7, 3)
    rng = np.random.default_rng(2)
    for side in (7, 23, 50):
        x = rng.standard_normal((1, side, side, 3)).astype("float32")
        got = keras.ops.convert_to_numpy(model.predict(x, verbose=0))
        _assert_equal(got, _torch_pool(torch, x, 7))


@pytest.mark.skipif(
    keras.backend.backend() != "tensorflow",
    reason="a graph with unknown sides (SavedModel export) is TensorFlow's",
)
def test_unknown_sides_in_a_tensorflow_graph(reference):
    import tensorflow as tf

    torch, _ = reference
    layer = AdaptiveAvgPool2D(7)
    graph = tf.function(
        layer, input_signature=[tf.TensorSpec((None, None, None, 3), "float32")]
    )
    rng = np.random.default_rng(4)
    for side in (3, 7, 43):
        x = rng.standard_normal((1, side, side + 1, 3)).astype("float32")
        _assert_equal(graph(x).numpy(), _torch_pool(torch, x, 7))


def test_one_training_step_equals_torch(reference):
    # The gradient through the pool: a conv kernel after one SGD step of
    # conv -> AdaptiveAvgPool2D -> dense, against PyTorch's autograd.
    torch, _ = reference
    rng = np.random.default_rng(5)
    x = rng.standard_normal((2, 13, 29, 3)).astype("float32")
    target = rng.standard_normal((2, 5)).astype("float32")
    kernel = rng.standard_normal((3, 3, 3, 4)).astype("float32") * 0.3
    dense = rng.standard_normal((6 * 7 * 4, 5)).astype("float32") * 0.1
    inputs = keras.Input((13, 29, 3))
    y = keras.layers.Conv2D(4, 3, use_bias=False, name="conv")(inputs)
    y = AdaptiveAvgPool2D((6, 7))(y)
    y = keras.layers.Dense(5, use_bias=False)(keras.layers.Flatten()(y))
    model = keras.Model(inputs, y)
    model.set_weights([kernel, dense])
    model.compile(keras.optimizers.SGD(0.1), "mse")
    model.train_on_batch(x, target)
    got = keras.ops.convert_to_numpy(model.get_layer("conv").kernel)

    weight = torch.tensor(kernel.transpose(3, 2, 0, 1), requires_grad=True)
    out = torch.nn.functional.conv2d(torch.from_numpy(x.transpose(0, 3, 1, 2)), weight)
    out = torch.nn.functional.adaptive_avg_pool2d(out, (6, 7))
    out = out.permute(0, 2, 3, 1).flatten(1) @ torch.from_numpy(dense)
    torch.nn.functional.mse_loss(out, torch.from_numpy(target)).backward()
    expected = kernel - 0.1 * weight.grad.numpy().transpose(2, 3, 1, 0)
    assert np.isfinite(got).all()
    np.testing.assert_allclose(got, expected, rtol=1e-5, atol=1e-6)
    assert np.abs(got - kernel).max() > 1e-3  # the step moved the kernel


def test_windows_follow_the_integer_formula():
    # floor(i * n / o) to ceil((i + 1) * n / o) - 1, from Python's integers;
    # a known side (NumPy) and a dynamic one (a keras.ops int tensor).
    for size in (1, 3, 7, 14, 43, 64):
        for output_size in (1, 7, 70):
            expected = np.zeros((output_size, size), "float32")
            for i in range(output_size):
                start = i * size // output_size
                stop = -(-(i + 1) * size // output_size)
                expected[i, start:stop] = 1
            for given in (size, keras.ops.convert_to_tensor(size, "int32")):
                got = window_matrix(given, output_size, "float32")
                np.testing.assert_array_equal(keras.ops.convert_to_numpy(got), expected)


def test_config_round_trip_and_keras_file(tmp_path):
    layer = AdaptiveAvgPool2D((6, 7), data_format="channels_first", name="pool")
    again = AdaptiveAvgPool2D.from_config(layer.get_config())
    assert again.output_size == (6, 7)
    assert again.data_format == "channels_first"
    inputs = keras.Input((3, 20, 9))
    model = keras.Model(inputs, layer(inputs))
    path = tmp_path / "pool.keras"
    model.save(path)
    loaded = keras.saving.load_model(path)
    assert isinstance(loaded.get_layer("pool"), keras_blurpool.AdaptiveAvgPool2D)
    x = np.random.default_rng(3).standard_normal((2, 3, 20, 9)).astype("float32")
    np.testing.assert_array_equal(
        keras.ops.convert_to_numpy(loaded(x)), keras.ops.convert_to_numpy(model(x))
    )


def test_mixed_precision_output_is_finite():
    layer = AdaptiveAvgPool2D(7, dtype="mixed_float16")
    y = layer(np.ones((1, 63, 63, 2), "float32"))
    assert keras.backend.standardize_dtype(y.dtype) == "float16"
    np.testing.assert_array_equal(keras.ops.convert_to_numpy(y), 1)


@pytest.mark.parametrize("output_size", [0, -1, (7, 0), (7, 7, 7), 7.0, "7", True])
def test_bad_output_size(output_size):
    with pytest.raises(ValueError) as info:
        AdaptiveAvgPool2D(output_size)
    assert "`output_size` must be" in str(info.value)
    assert f"Received: output_size={output_size!r}" in str(info.value)


def test_bad_input():
    with pytest.raises(ValueError, match="data_format='NHWC'"):
        AdaptiveAvgPool2D(7, data_format="NHWC")
    with pytest.raises(ValueError, match="at least 1x1"):
        AdaptiveAvgPool2D(7)(np.zeros((1, 0, 5, 3), "float32"))
    with pytest.raises(ValueError, match="ndim=4"):
        AdaptiveAvgPool2D(7)(np.zeros((1, 5, 3), "float32"))


@pytest.mark.skipif(
    keras.backend.backend() != "jax", reason="Keras's bug is on JAX only"
)
def test_keras_own_layer_is_still_wrong_on_jax():
    # The upstream bug of docs/zoo.md's "Known issues", the reason for
    # AdaptiveAvgPool2D. If this fails, Keras has fixed it: update the docs.
    y = keras.layers.AdaptiveAveragePooling2D(7)(np.ones((1, 7, 7, 1), "float32"))
    assert np.isnan(keras.ops.convert_to_numpy(y)).sum() == 13
    ours = AdaptiveAvgPool2D(7)(np.ones((1, 7, 7, 1), "float32"))
    np.testing.assert_array_equal(keras.ops.convert_to_numpy(ours), 1)

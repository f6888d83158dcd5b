"""APSUpSampling2D against a NumPy formula, and its equivariance with APSPool2D."""

import itertools

import keras
import numpy as np
import pytest

from keras_blurpool import APSPool2D
from keras_blurpool import APSUpSampling2D
from keras_blurpool import LPSPool2D
from keras_blurpool import is_antialiasing
from tests.test_layers import to_numpy
from tests.test_polyphase import _blur
from tests.test_polyphase import numpy_aps
from tests.test_polyphase import random_input

MODES = {"circular": "wrap", "zero": "constant", "reflect": "reflect",
         "replicate": "edge"}


def numpy_aps_up(x, index, filter_size=None, strides=(2, 2),
                 pad_type="circular"):
    """channels_last: `x[n]` written at offset `(k // s_w, k % s_w)` of a
    zero map `strides` times larger, then the binomial blur times
    `s_h * s_w`."""
    sh, sw = strides
    b, h, w, c = x.shape
    out = np.zeros((b, h * sh, w * sw, c), "float64")
    for n, k in enumerate(index):
        out[n, k // sw::sh, k % sw::sw] = x[n]
    if filter_size and filter_size > 1:
        out = _blur(out, filter_size, MODES[pad_type]) * (sh * sw)
    return out


UP_GRID = list(itertools.product(
    [None, 1, 2, 3, 4], [2, 3, (2, 1)], [(4, 4), (3, 5)],
    ["channels_last", "channels_first"]))


@pytest.mark.parametrize("filter_size,strides,hw,data_format", UP_GRID)
def test_aps_upsampling_matches_numpy(filter_size, strides, hw, data_format):
    pair = strides if isinstance(strides, tuple) else (strides, strides)
    x = random_input((3, *hw, 2), seed=hw[0] + 7 * hw[1])
    index = np.array([0, pair[0] * pair[1] - 1, 1 % (pair[0] * pair[1])])
    layer = APSUpSampling2D(filter_size, strides=strides,
                            data_format=data_format)
    inputs = x if data_format == "channels_last" else np.moveaxis(x, -1, 1)
    got = to_numpy(layer(inputs, index.astype("int32")))
    assert got.shape == layer.compute_output_shape(inputs.shape)
    if data_format == "channels_first":
        got = np.moveaxis(got, 1, -1)
    expected = numpy_aps_up(x, index, filter_size, pair)
    np.testing.assert_allclose(got, expected, atol=1e-5)


@pytest.mark.parametrize("pad_type", ["zero", "reflect", "replicate"])
def test_aps_upsampling_other_paddings_match_numpy(pad_type):
    x = random_input((2, 5, 4, 3))
    index = np.array([3, 2], "int32")
    got = APSUpSampling2D(3, pad_type=pad_type)(x, index)
    np.testing.assert_allclose(
        to_numpy(got), numpy_aps_up(x, index, 3, pad_type=pad_type), atol=1e-5
    )


@pytest.mark.parametrize("filter_size", [None, 3])
def test_downsample_upsample_with_the_chosen_index_is_equivariant(filter_size):
    # APSPool2D's own output and index, for every circular shift of x:
    # the upsampled map moves exactly with x.
    x = random_input((2, 8, 12, 3))
    pool = APSPool2D(filter_size, return_index=True)
    up = APSUpSampling2D(filter_size)
    shifts = list(itertools.product(range(8), range(12)))
    batch = np.concatenate([np.roll(x, s, axis=(1, 2)) for s in shifts])
    got = to_numpy(up(*pool(batch))).reshape(len(shifts), *x.shape)
    reference = got[0]  # shift (0, 0)
    for shift, out in zip(shifts, got):
        np.testing.assert_allclose(
            out, np.roll(reference, shift, axis=(1, 2)), rtol=0, atol=1e-5,
            err_msg=f"shift {shift}",
        )
    # The NumPy formula too, on the index NumPy's APS chooses.
    y, index = numpy_aps(x, filter_size)
    np.testing.assert_allclose(reference, numpy_aps_up(y, index, filter_size),
                               atol=1e-5)


def test_channels_first_equals_channels_last():
    x = random_input((2, 6, 4, 3))
    index = np.array([1, 2], "int32")
    last = to_numpy(APSUpSampling2D(4)(x, index))
    first = to_numpy(APSUpSampling2D(4, data_format="channels_first")(
        np.moveaxis(x, -1, 1), index))
    np.testing.assert_allclose(np.moveaxis(first, 1, -1), last, atol=1e-6)


def test_constant_input_stays_constant_with_a_blur():
    x = np.full((1, 4, 4, 2), 3.0, "float32")
    got = to_numpy(APSUpSampling2D(3)(x, np.array([2], "int32")))
    np.testing.assert_allclose(got, 3.0, atol=1e-5)


def test_lps_weights_place_at_every_offset_while_training():
    x = random_input((2, 3, 3, 2))
    weights = np.array([[0.1, 0.2, 0.3, 0.4], [0.0, 0.0, 1.0, 0.0]], "float32")
    layer = APSUpSampling2D()
    trained = to_numpy(layer(x, weights, training=True))
    expected = sum(
        weights[:, k, None, None, None] * numpy_aps_up(x, [k, k])
        for k in range(4)
    )
    np.testing.assert_allclose(trained, expected, atol=1e-6)
    # At inference: the offset of the largest weight.
    inferred = to_numpy(layer(x, weights, training=False))
    np.testing.assert_allclose(inferred, numpy_aps_up(x, [3, 2]), atol=1e-6)


def test_lps_encoder_decoder_is_equivariant_at_inference():
    x = random_input((1, 8, 8, 3))
    pool = LPSPool2D(return_index=True, seed=1)
    up = APSUpSampling2D(3)
    shifts = [(0, 0), (1, 0), (0, 1), (3, 5), (7, 7)]
    batch = np.concatenate([np.roll(x, s, axis=(1, 2)) for s in shifts])
    got = to_numpy(up(*pool(batch, training=False), training=False))
    for shift, out in zip(shifts, got):
        np.testing.assert_allclose(out, np.roll(got[0], shift, axis=(0, 1)),
                                   atol=1e-5, err_msg=f"shift {shift}")


def test_in_a_functional_model_and_a_keras_file(tmp_path):
    inputs = keras.Input((8, 8, 4))
    y, index = APSPool2D(3, return_index=True, name="down")(inputs)
    y = keras.layers.Conv2D(4, 1, name="mix")(y)
    outputs = APSUpSampling2D(3, name="up")(y, index)
    model = keras.Model(inputs, outputs)
    assert model.output_shape == (None, 8, 8, 4)
    x = random_input((2, 8, 8, 4))
    path = str(tmp_path / "unet.keras")
    model.save(path)
    loaded = keras.saving.load_model(path)
    np.testing.assert_allclose(to_numpy(loaded(x)), to_numpy(model(x)),
                               atol=1e-6)
    assert loaded.get_layer("up").get_config()["filter_size"] == 3


def test_config_round_trip():
    layer = APSUpSampling2D(5, strides=(2, 3), pad_type="refl",
                            data_format="channels_first", name="u")
    config = layer.get_config()
    assert config["strides"] == (2, 3) and config["pad_type"] == "reflect"
    clone = APSUpSampling2D.from_config(config)
    assert clone.get_config() == config
    assert is_antialiasing(clone)  # as BlurUpSampling2D


def test_gradient_reaches_the_input():
    x = keras.Variable(random_input((1, 4, 4, 1)))
    layer = APSUpSampling2D()
    if keras.backend.backend() == "tensorflow":
        import tensorflow as tf

        with tf.GradientTape() as tape:
            loss = keras.ops.sum(layer(x.value, np.array([1], "int32")))
        grad = to_numpy(tape.gradient(loss, x.value))
    elif keras.backend.backend() == "jax":
        import jax

        grad = np.asarray(jax.grad(lambda v: layer(v, np.array([1], "int32")).sum())(
            x.value))
    else:
        import torch

        v = torch.tensor(to_numpy(x.value), requires_grad=True)
        layer(v, np.array([1], "int32")).sum().backward()
        grad = v.grad.numpy()
    np.testing.assert_allclose(grad, 1.0)


@pytest.mark.parametrize(
    "kwargs,message",
    [
        ({"filter_size": 0}, "filter_size"),
        ({"filter_size": 2.5}, "filter_size"),
        ({"strides": 0}, "strides"),
        ({"strides": 17}, "strides"),
        ({"strides": (2, 2, 2)}, "strides"),
        ({"pad_type": "mirror"}, "pad_type"),
        ({"data_format": "NHWC"}, "data_format"),
    ],
)
def test_bad_arguments_raise_early(kwargs, message):
    with pytest.raises(ValueError, match=message) as info:
        APSUpSampling2D(**kwargs)
    assert "Received" in str(info.value)


@pytest.mark.parametrize(
    "index,message",
    [
        (None, "needs `index`"),
        (np.array([0, 4]), r"0\.\.3"),
        (np.array([-1, 0]), r"0\.\.3"),
        (np.array([0.5, 1.0]), "int component numbers"),
        (np.zeros((2, 3), "float32"), "4 columns"),
        (np.zeros((2, 4), "int32"), "int component numbers"),
    ],
)
def test_bad_index_is_a_clear_error(index, message):
    x = random_input((2, 4, 4, 1))
    with pytest.raises(ValueError, match=message) as info:
        APSUpSampling2D()(x, index)
    assert "Received" in str(info.value)


def test_weights_of_the_wrong_width_in_a_tensor_are_refused():
    x = random_input((2, 4, 4, 1))
    weights = keras.ops.convert_to_tensor(np.zeros((2, 3), "float32"))
    with pytest.raises(ValueError, match="4 columns"):
        APSUpSampling2D()(x, weights)


def test_index_out_of_range_in_a_tensor_gives_nan():
    x = random_input((3, 4, 4, 2))
    index = keras.ops.convert_to_tensor(np.array([1, 7, -2], "int32"))
    got = to_numpy(APSUpSampling2D(3)(x, index))
    assert np.isnan(got[1:]).all()
    np.testing.assert_allclose(got[0], numpy_aps_up(x[:1], [1], 3)[0],
                               atol=1e-5)


def test_unknown_spatial_sizes_and_mixed_precision():
    inputs = keras.Input((None, None, 4))
    y, index = APSPool2D(3, return_index=True)(inputs)
    up = APSUpSampling2D(3, dtype="mixed_float16")(y, index)
    model = keras.Model(inputs, up)
    assert model.output_shape == (None, None, None, 4)
    for hw in ((8, 8), (6, 10)):
        x = random_input((2, *hw, 4))
        got = model.predict(x, verbose=0)
        assert got.shape == (2, *hw, 4) and got.dtype == np.float16
        expected = numpy_aps_up(*numpy_aps(x, 3), 3)
        np.testing.assert_allclose(got.astype("float64"), expected, atol=2e-2)

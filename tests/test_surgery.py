"""`keras_blurpool.antialias_model`: anti-aliasing any Keras model."""

import os
import pathlib
import subprocess
import sys
import textwrap
import warnings

import keras
import numpy as np
import pytest

import keras_blurpool
from keras_blurpool import antialias_model

REPO = pathlib.Path(__file__).resolve().parent.parent


def _np(x):
    return np.asarray(keras.ops.convert_to_numpy(x))


def _inbound_layer(model, layer_name):
    """The layer whose output `layer_name` is called on."""
    node = model.get_layer(layer_name)._inbound_nodes[0]
    return node.input_tensors[0]._keras_history.operation.name


def _shift_change(model, images, shifts=(1, 2, 3)):
    """Mean relative output change under circular shifts of the input."""
    base = _np(model(images, training=False))
    changes = []
    for dy, dx in ((s, 0) for s in shifts):
        shifted = np.roll(images, (dy, dx), axis=(1, 2))
        out = _np(model(shifted, training=False))
        changes.append(np.abs(out - base).mean() / np.abs(base).mean())
    return float(np.mean(changes))


def _smooth_images(n, size, seed=0):
    """Low-frequency images: bilinear upsampling of 8x8 noise."""
    rng = np.random.default_rng(seed)
    small = rng.normal(size=(n, 8, 8, 3)).astype("float32")
    return _np(keras.ops.image.resize(small, (size, size)))


def _small_cnn(data_format="channels_last", channels=16):
    shape = (32, 32, 3) if data_format == "channels_last" else (3, 32, 32)
    axis = -1 if data_format == "channels_last" else 1
    inputs = keras.Input(shape, name="images")
    x = keras.layers.Conv2D(channels, 3, padding="same", name="stem",
                            data_format=data_format)(inputs)
    x = keras.layers.Conv2D(channels, 3, strides=2, padding="same", name="down",
                            use_bias=False, data_format=data_format)(x)
    x = keras.layers.BatchNormalization(axis=axis, name="down_bn")(x)
    x = keras.layers.ReLU(name="down_relu")(x)
    x = keras.layers.MaxPooling2D(3, strides=2, name="pool",
                                  data_format=data_format)(x)
    x = keras.layers.AveragePooling2D(2, name="avg", data_format=data_format)(x)
    x = keras.layers.GlobalAveragePooling2D(data_format=data_format, name="gap")(x)
    outputs = keras.layers.Dense(5, name="head")(x)
    return keras.Model(inputs, outputs, name="small")


# --- placement and bookkeeping ------------------------------------------------


def test_blur_goes_after_bn_and_activation_and_weights_are_kept():
    model = _small_cnn()
    new, report = antialias_model(model, return_report=True)
    assert report.replaced == {
        "conv": ["down"], "max_pool": ["pool"], "avg_pool": ["avg"],
        "upsampling": [],
    }
    assert report.left_alone == {}
    # conv -> BN -> ReLU -> blur, as in the paper.
    assert _inbound_layer(new, "down_blur") == "down_relu"
    assert _inbound_layer(new, "down_bn") == "down"
    assert _inbound_layer(new, "pool_blur") == "pool"
    assert new.get_layer("down").strides == (1, 1)
    assert new.get_layer("pool").strides == (1, 1)
    assert isinstance(new.get_layer("down_blur"), keras_blurpool.BlurPool2D)
    assert new.get_layer("down_blur").strides == (2, 2)
    assert new.count_params() == model.count_params()
    assert new.output.shape == model.output.shape
    # Weights are copied; the original is untouched.
    for layer in model.layers:
        for a, b in zip(layer.get_weights(), new.get_layer(layer.name).get_weights()):
            np.testing.assert_array_equal(a, b)
    assert model.get_layer("down").strides == (2, 2)
    assert "down_blur" not in [layer.name for layer in model.layers]


def test_blur_goes_before_an_activation_shared_by_two_branches():
    inputs = keras.Input((16, 16, 16))
    x = keras.layers.Conv2D(16, 3, strides=2, padding="same", name="down")(inputs)
    y = keras.layers.BatchNormalization(name="bn")(x)
    a = keras.layers.ReLU(name="a")(y)
    b = keras.layers.Activation("sigmoid", name="b")(y)
    model = keras.Model(inputs, keras.layers.Multiply()([a, b]))
    new = antialias_model(model)
    # BN's output has two consumers: the chain stops at BN.
    assert _inbound_layer(new, "down_blur") == "bn"
    assert _inbound_layer(new, "a") == "down_blur"
    assert new.output.shape == model.output.shape



def test_projection_shortcut_blurs_before_its_1x1_conv():
    inputs = keras.Input((16, 16, 16))
    x = keras.layers.Conv2D(16, 3, padding="same", name="stem")(inputs)
    main = keras.layers.Conv2D(32, 1, strides=2, name="main")(x)
    main = keras.layers.BatchNormalization(name="main_bn")(main)
    main = keras.layers.ReLU(name="main_relu")(main)
    short = keras.layers.Conv2D(32, 1, strides=2, name="short")(x)
    short = keras.layers.BatchNormalization(name="short_bn")(short)
    outputs = keras.layers.Add(name="add")([main, short])
    model = keras.Model(inputs, outputs)
    for bn in ("main_bn", "short_bn"):  # BN that is no identity
        layer = model.get_layer(bn)
        rng = np.random.default_rng(len(bn))
        layer.set_weights([rng.uniform(0.5, 2, w.shape).astype("float32")
                           for w in layer.get_weights()])
    new = antialias_model(model)
    # A nonlinearity in the chain: after it, as the paper places it.
    assert _inbound_layer(new, "main_blur") == "main_relu"
    # A pointwise affine chain (conv1x1 -> BN): before the conv, as the
    # reference's ResNet shortcut, where the conv is cheap ...
    assert _inbound_layer(new, "short") == "short_blur"
    assert _inbound_layer(new, "short_blur") == "stem"
    assert new.get_layer("short").strides == (1, 1)
    assert new.output.shape == model.output.shape
    # ... and where it equals the blur after the BN (inference).
    x = np.random.default_rng(0).normal(size=(2, 16, 16, 16)).astype("float32")
    stem = _np(model.get_layer("stem")(x))
    conv = model.get_layer("short")
    dense = keras.ops.conv(stem, conv.kernel, strides=1) + conv.bias
    after = keras_blurpool.BlurPool2D(4)(
        model.get_layer("short_bn")(dense, training=False))
    short_new = keras.Model(new.input, new.get_layer("short_bn").output)
    np.testing.assert_allclose(_np(short_new(x)), _np(after), rtol=1e-4, atol=1e-4)



def test_equals_the_hand_built_paper_network():
    """The demo CNN anti-aliased by surgery is its hand-built LPF twin."""
    from recipes.models import demo_cnn

    keras.utils.set_random_seed(0)
    plain = demo_cnn(None)
    new = antialias_model(plain)
    built = demo_cnn(4)  # conv -> BN -> ReLU -> BlurPool2D, MaxBlurPool2D
    keras_blurpool.transfer_weights(plain, built)
    x = np.random.default_rng(0).normal(size=(2, 32, 32, 3)).astype("float32")
    np.testing.assert_allclose(_np(new(x, training=False)),
                               _np(built(x, training=False)), rtol=1e-6, atol=1e-6)


def test_original_weights_load_and_keras_round_trip(tmp_path):
    model = _small_cnn()
    model.save_weights(tmp_path / "plain.weights.h5")
    new = antialias_model(_small_cnn())  # other random weights
    new.load_weights(tmp_path / "plain.weights.h5")
    for layer in model.layers:
        for a, b in zip(layer.get_weights(), new.get_layer(layer.name).get_weights()):
            np.testing.assert_array_equal(a, b)
    x = np.random.default_rng(0).normal(size=(2, 32, 32, 3)).astype("float32")
    new.save(tmp_path / "aa.keras")
    loaded = keras.saving.load_model(tmp_path / "aa.keras")
    np.testing.assert_allclose(_np(loaded(x)), _np(new(x)), rtol=1e-5, atol=1e-5)


def test_sequential_stays_sequential():
    model = keras.Sequential([
        keras.Input((32, 32, 3)),
        keras.layers.Conv2D(16, 3, padding="same", name="c1"),
        keras.layers.Conv2D(16, 3, strides=2, name="c2"),
        keras.layers.BatchNormalization(name="bn"),
        keras.layers.Activation("relu", name="act"),
        keras.layers.MaxPooling2D(name="pool"),
        keras.layers.Flatten(name="flat"),
        keras.layers.Dense(3, name="head"),
    ], name="seq")
    new = antialias_model(model)
    assert isinstance(new, keras.Sequential)
    assert [layer.name for layer in new.layers] == [
        "c1", "c2", "bn", "act", "c2_blur", "pool", "pool_blur", "flat",
        "head",
    ]
    assert new.outputs[0].shape == model.outputs[0].shape
    assert new.count_params() == model.count_params()


def test_nested_model_multi_io_and_shared_layers():
    backbone = keras.applications.MobileNetV2(
        weights=None, include_top=False, input_shape=(64, 64, 3), pooling="avg"
    )
    shared = keras.layers.Conv2D(16, 3, strides=2, padding="same", name="shared")
    a = keras.Input((64, 64, 3), name="a")
    b = keras.Input((32, 32, 16), name="b")
    features = backbone(a)
    s1 = shared(keras.layers.Conv2D(16, 1, name="lift")(a))
    s2 = shared(b)
    out1 = keras.layers.Dense(4, name="head")(features)
    out2 = keras.layers.GlobalAveragePooling2D()(s1)
    out3 = keras.layers.GlobalAveragePooling2D()(s2)
    model = keras.Model([a, b], [out1, out2, out3])
    new, report = antialias_model(model, return_report=True)
    assert new.count_params() == model.count_params()
    assert [t.shape for t in new.outputs] == [t.shape for t in model.outputs]
    assert "shared" in report.replaced["conv"]
    assert "mobilenetv2_1.00_64/block_1_depthwise" in report.replaced["conv"]
    inner = new.get_layer(backbone.name)
    assert isinstance(inner, keras.Model) and inner is not backbone
    assert any(layer.name == "block_1_depthwise_blur" for layer in inner.layers)
    # The shared conv stays one layer, with one blur after each call.
    assert len(new.get_layer("shared")._inbound_nodes) == 2
    assert len(new.get_layer("shared_blur")._inbound_nodes) == 2
    rng = np.random.default_rng(0)
    xa = rng.normal(size=(1, 64, 64, 3)).astype("float32")
    xb = rng.normal(size=(1, 32, 32, 16)).astype("float32")
    assert [o.shape for o in new([xa, xb])] == [o.shape for o in model([xa, xb])]


def test_options_skip_min_channels_and_kinds():
    model = _small_cnn()
    _, report = antialias_model(model, skip=["pool"], return_report=True)
    assert report.replaced["max_pool"] == [] and report.left_alone == {
        "pool": "in `skip`"
    }
    _, report = antialias_model(
        model, skip=lambda layer: layer.name == "down", return_report=True
    )
    assert report.replaced["conv"] == []
    with pytest.warns(UserWarning, match="no strided layer"):
        _, report = antialias_model(model, min_channels=17, return_report=True)
    assert report.total == 0
    assert "min_channels=17" in report.left_alone["down"]
    _, report = antialias_model(
        model, convs=False, avg_pools=False, return_report=True
    )
    assert report.counts == {
        "conv": 0, "max_pool": 1, "avg_pool": 0, "upsampling": 0
    }
    assert "anti-aliased 1 layer(s): 1 max_pool" in str(report)


def test_blur_first_avg_and_callable():
    model = _small_cnn()
    new = antialias_model(model, blur_first=True)
    # Blur at stride 1 before the conv, which keeps its stride.
    assert _inbound_layer(new, "down") == "down_blur"
    assert new.get_layer("down").strides == (2, 2)
    assert new.get_layer("down_blur").strides == (1, 1)
    assert new.get_layer("pool").strides == (1, 1)  # pools as without it
    assert new.output.shape == model.output.shape

    new = antialias_model(model, antialias="avg")
    assert isinstance(new.get_layer("down_blur"), keras_blurpool.AntialiasAvgPool2D)
    assert new.output.shape == model.output.shape

    calls = []

    def make(channels, strides, name):
        calls.append((channels, strides, name))
        return keras_blurpool.BlurPool2D(filter_size=2, strides=strides, name=name)

    new = antialias_model(model, antialias=make)
    assert calls == [(16, 2, "down_blur"), (16, 2, "pool_blur"), (16, 2, "avg_blur")]
    assert new.get_layer("down_blur").filter_size == 2


def test_lower_output_change_under_shifts():
    model = _small_cnn()
    new = antialias_model(model)
    images = _smooth_images(4, 32)
    assert _shift_change(new, images) < _shift_change(model, images)


# --- other ranks, formats and shapes -----------------------------------------


def test_conv1d_and_dilated_depthwise():
    inputs = keras.Input((64, 16))
    x = keras.layers.Conv1D(16, 3, strides=2, name="c1d")(inputs)
    x = keras.layers.MaxPooling1D(2, name="p1d")(x)
    model = keras.Model(inputs, x)
    new = antialias_model(model)
    assert isinstance(new.get_layer("c1d_blur"), keras_blurpool.BlurPool1D)
    assert new.output.shape == model.output.shape

    inputs = keras.Input((33, 33, 16))
    x = keras.layers.DepthwiseConv2D(3, strides=2, dilation_rate=2, name="dw")(inputs)
    model = keras.Model(inputs, x)
    new = antialias_model(model)
    assert new.get_layer("dw").dilation_rate == (2, 2)
    assert new.output.shape == model.output.shape


@pytest.mark.parametrize("size", [31, 32, 33])
@pytest.mark.parametrize("padding", ["valid", "same"])
def test_output_shapes_kept_for_odd_and_even_maps(size, padding):
    inputs = keras.Input((size, size, 16))
    x = keras.layers.Conv2D(16, 3, strides=2, padding=padding, name="c")(inputs)
    x = keras.layers.MaxPooling2D(3, strides=2, padding=padding, name="m")(x)
    x = keras.layers.AveragePooling2D(2, padding=padding, name="a")(x)
    model = keras.Model(inputs, x)
    new = antialias_model(model)
    assert new.output.shape == model.output.shape
    x = np.zeros((1, size, size, 16), "float32")
    assert new(x).shape == model(x).shape


def test_unknown_spatial_sizes():
    inputs = keras.Input((None, None, 16))
    x = keras.layers.Conv2D(16, 3, strides=2, padding="same", name="c")(inputs)
    model = keras.Model(inputs, x)
    with pytest.warns(UserWarning, match="only from 3 px"):
        new = antialias_model(model)
    out = new(np.zeros((1, 20, 20, 16), "float32"))
    assert tuple(out.shape) == (1, 10, 10, 16)


def test_unknown_sizes_say_the_new_smallest_input():
    # Two valid 3x3 stride-2 convs take any side from 7; anti-aliased, each
    # filter-4 reflect blur needs a map of 3, so small inputs the original
    # took would be refused only when the model is called.
    inputs = keras.Input((None, None, 16))
    x = keras.layers.Conv2D(16, 3, strides=2, name="c1")(inputs)
    x = keras.layers.Conv2D(16, 3, strides=2, name="c2")(x)
    model = keras.Model(inputs, keras.layers.GlobalAveragePooling2D()(x))
    with pytest.warns(UserWarning, match=r"the original takes sides from 7 "
                      r"px, the anti-aliased model only from (\d+) px.*'c2_blur'"
                      ) as record:
        new, report = antialias_model(model, return_report=True)
    old_side, side = report.min_input_size
    assert old_side == 7 and side > 7
    (message,) = [str(w.message) for w in record
                  if "antialias_model" in str(w.message)]
    assert f"only from {side} px" in message
    assert f"smallest input side {side} px (was 7)" in str(report)
    model(np.zeros((1, 7, 7, 16), "float32"))
    model(np.zeros((1, side - 1, side - 1, 16), "float32"))
    assert new(np.zeros((1, side, side, 16), "float32")).shape == (1, 16)
    with pytest.raises(ValueError, match="c2_blur"):
        new(np.zeros((1, side - 1, side - 1, 16), "float32"))
    # Zero padding fits any map: the same smallest side, no warning.
    with warnings.catch_warnings():
        warnings.simplefilter("error", UserWarning)
        _, report = antialias_model(model, pad_type="zero", return_report=True)
        assert report.min_input_size == (7, 7)
        _, report = antialias_model(_small_cnn(), return_report=True)
        assert report.min_input_size is None  # fixed sizes


def test_causal_strided_conv_is_left_alone_and_reported():
    # A symmetric blur after a causal conv lets each output see later steps.
    inputs = keras.Input((32, 16))
    x = keras.layers.Conv1D(16, 3, strides=2, padding="causal", name="causal")(
        inputs)
    model = keras.Model(inputs, x)
    with pytest.warns(UserWarning, match="Causal convs stay as they are.*causal"):
        new, report = antialias_model(model, return_report=True)
    assert "causal conv" in report.left_alone["causal"]
    x = np.random.default_rng(0).normal(size=(2, 32, 16)).astype("float32")
    later = x.copy()
    later[:, 20:] += 10.0  # output t sees steps up to 2t
    before, after = _np(new(x)), _np(new(later))
    np.testing.assert_array_equal(before[:, :10], after[:, :10])
    np.testing.assert_array_equal(before, _np(model(x)))
    # Beside it, other strided layers are anti-aliased as usual.
    y = keras.layers.Conv1D(16, 3, strides=2, padding="same", name="same")(
        model.output)
    _, report = antialias_model(keras.Model(inputs, y), return_report=True)
    assert report.replaced["conv"] == ["same"]
    assert list(report.left_alone) == ["causal"]


def test_layers_called_with_a_keyword_input():
    def build(keyword):
        inputs = keras.Input((16, 16, 32))
        call = (lambda layer, t: layer(inputs=t)) if keyword else (
            lambda layer, t: layer(t))
        a = call(keras.layers.Conv2D(32, 1, strides=2, name="proj"), inputs)
        b = call(keras.layers.Conv2D(32, 3, strides=2, padding="same",
                                     name="main"), inputs)
        return keras.Model(inputs, keras.layers.Add(name="add")([a, b]))

    keyword, positional = build(True), build(False)
    positional.set_weights(keyword.get_weights())
    new = antialias_model(keyword)
    reference = antialias_model(positional)
    assert _inbound_layer(new, "proj") == "proj_blur"  # before a 1x1 conv
    assert _inbound_layer(new, "main_blur") == "main"  # after a 3x3 conv
    x = np.random.default_rng(0).normal(size=(2, 16, 16, 32)).astype("float32")
    np.testing.assert_allclose(_np(new(x)), _np(reference(x)), atol=1e-6)


def test_lambda_layers_are_reused():
    # A Python lambda does not survive get_config/from_config (Keras's
    # safe mode refuses it); it has no stride to change, so the new model
    # calls the same layer object.
    inputs = keras.Input((16, 16, 16))
    x = keras.layers.Lambda(lambda t: t * 2.0, name="double")(inputs)
    x = keras.layers.Conv2D(16, 3, strides=2, padding="same", name="c")(x)
    model = keras.Model(inputs, x)
    new = antialias_model(model)
    assert new.get_layer("double") is model.get_layer("double")
    plain = keras.Sequential([
        keras.Input((16, 16, 16)),
        keras.layers.Conv2D(16, 3, strides=2, padding="same", name="c")])
    plain.set_weights(model.get_weights())
    x = np.random.default_rng(0).normal(size=(2, 16, 16, 16)).astype("float32")
    np.testing.assert_allclose(
        _np(new(x)), _np(antialias_model(plain)(2.0 * x)), atol=1e-5)
    assert new.count_params() == model.count_params()
    sequential = keras.Sequential([keras.Input((16, 16, 16)),
                                   model.get_layer("double"), plain.layers[0]])
    new = antialias_model(sequential)
    assert [layer.name for layer in new.layers] == ["double", "c", "c_blur"]
    assert new.get_layer("double") is model.get_layer("double")


def test_channels_first_model():
    model = _small_cnn("channels_first")
    new = antialias_model(model)
    assert new.get_layer("down_blur").data_format == "channels_first"
    assert new.output.shape == model.output.shape
    assert new.count_params() == model.count_params()


# --- bad input ----------------------------------------------------------------


def test_no_strided_layer_warns_and_copies():
    inputs = keras.Input((8, 8, 16))
    model = keras.Model(inputs, keras.layers.Conv2D(4, 3, name="c")(inputs))
    with pytest.warns(UserWarning, match="no strided layer"):
        new = antialias_model(model)
    assert new is not model
    np.testing.assert_array_equal(
        new.get_layer("c").get_weights()[0], model.get_layer("c").get_weights()[0]
    )



def test_custom_layer_with_strided_layers_inside_is_reported():
    class Down(keras.layers.Layer):
        def __init__(self, **kwargs):
            super().__init__(**kwargs)
            self.conv = keras.layers.Conv2D(16, 3, strides=2, padding="same",
                                            name="inner_conv")

        def call(self, x):
            return self.conv(x)

    inputs = keras.Input((16, 16, 16))
    model = keras.Model(inputs, Down(name="down")(inputs))
    with pytest.warns(UserWarning, match="Custom layers hold strided layers.*down"):
        _, report = antialias_model(model, return_report=True)
    assert report.total == 0
    assert "inner_conv" in report.left_alone["down"]
    assert "call() cannot be rewritten" in report.left_alone["down"]


def test_subclassed_model_is_a_clear_error():
    class Net(keras.Model):
        def __init__(self):
            super().__init__()
            self.conv = keras.layers.Conv2D(4, 3, strides=2)

        def call(self, x):
            return self.conv(x)

    net = Net()
    net(np.zeros((1, 8, 8, 3), "float32"))
    with pytest.raises(ValueError, match="subclassed Net.*functional API"):
        antialias_model(net)
    with pytest.raises(ValueError, match="must be a keras.Model"):
        antialias_model(keras.layers.Dense(3))
    with pytest.raises(ValueError, match="not built"):
        antialias_model(keras.Sequential([keras.layers.Dense(3)]))


def test_map_too_small_names_the_layer():
    inputs = keras.Input((2, 2, 16))
    model = keras.Model(
        inputs, keras.layers.MaxPooling2D(2, name="tiny")(inputs)
    )
    with pytest.raises(ValueError, match="'tiny_blur'.*reflect"):
        antialias_model(model)
    # Zero padding fits any map.
    assert antialias_model(model, pad_type="zero").output.shape == model.output.shape


@pytest.mark.parametrize(
    "kwargs, match",
    [
        ({"antialias": None}, "antialias=None"),
        ({"antialias": "gauss"}, "antialias='gauss'"),
        ({"antialias": "aps", "padding": "same"}, "padding='same'"),
        ({"antialias": "lps", "pad_type": "zero"}, "pad_type='zero'"),
        ({"filter_size": 0}, "filter_size"),
        ({"min_channels": -1}, "min_channels"),
        ({"convs": "yes"}, "convs='yes'"),
        ({"skip": 3}, "skip=3"),
        ({"pad_type": "wrap"}, "pad_type='wrap'"),
        ({"antialias": "avg", "blur_first": True}, "blur_first=True"),
        ({"antialias": lambda channels, strides, name: None},
         "must return a keras.layers.Layer"),
    ],
)
def test_bad_arguments(kwargs, match):
    with pytest.raises(ValueError, match=match):
        antialias_model(_small_cnn(), **kwargs)


# --- upsampling and 3-D -------------------------------------------------------


def test_upsampling_layers():
    inputs = keras.Input((8, 8, 16))
    x = keras.layers.UpSampling2D(name="up")(inputs)
    x = keras.layers.Conv2DTranspose(16, 3, strides=2, padding="same", name="tc")(x)
    y = keras.layers.Conv2DTranspose(16, 3, strides=2, name="tv")(inputs)
    model = keras.Model(inputs, [x, y])
    new, report = antialias_model(model, upsampling=True, return_report=True)
    assert report.replaced["upsampling"] == ["up", "tc"]
    assert "padding='valid'" in report.left_alone["tv"]
    assert isinstance(new.get_layer("up"), keras_blurpool.BlurUpSampling2D)
    assert _inbound_layer(new, "tc") == "tc_blur"
    assert new.get_layer("tc").strides == (1, 1)
    assert [t.shape for t in new.outputs] == [t.shape for t in model.outputs]
    assert new.count_params() == model.count_params()
    # Off by default: nothing else here is strided, so nothing changes.
    with pytest.warns(UserWarning, match="no strided layer"):
        _, report = antialias_model(model, return_report=True)
    assert report.total == 0


def test_conv3d_and_maxpool3d():
    inputs = keras.Input((8, 16, 16, 16))
    x = keras.layers.Conv3D(16, 3, strides=2, padding="same", name="c3")(inputs)
    x = keras.layers.MaxPooling3D(2, name="p3")(x)
    model = keras.Model(inputs, x)
    new = antialias_model(model)
    assert isinstance(new.get_layer("c3_blur"), keras_blurpool.BlurPool3D)
    assert new.output.shape == model.output.shape
    out = new(np.zeros((1, 8, 16, 16, 16), "float32"))
    assert tuple(out.shape)[1:] == tuple(model.output.shape[1:])


# --- keras.applications coverage ----------------------------------------------

# (name, input side): the smallest sides each accepts with room for the blur.
# RegNet is not in keras.applications of Keras 3 (it was in tf.keras 2).
APPLICATIONS = [
    ("ResNet50", 64), ("ResNet50V2", 64), ("MobileNet", 64),
    ("MobileNetV2", 64), ("MobileNetV3Small", 64), ("MobileNetV3Large", 64),
    ("EfficientNetB0", 64), ("EfficientNetV2B0", 64), ("DenseNet121", 64),
    ("ConvNeXtTiny", 64), ("VGG16", 64), ("Xception", 96),
    ("InceptionV3", 128), ("NASNetMobile", 64),
]


@pytest.mark.parametrize("name, size", APPLICATIONS, ids=[a for a, _ in APPLICATIONS])
def test_keras_applications(name, size, tmp_path):
    kwargs = dict(weights=None, input_shape=(size, size, 3), include_top=False,
                  pooling="avg")
    if name.startswith("MobileNetV3"):
        kwargs["include_preprocessing"] = False
    keras.utils.set_random_seed(0)
    model = getattr(keras.applications, name)(**kwargs)
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # a model with nothing replaced warns
        new, report = antialias_model(model, return_report=True)
    assert report.total > 0
    assert new.output.shape == model.output.shape
    assert new.count_params() == model.count_params()
    # The original's weights load: from its .weights.h5 file, which holds
    # layers by class and position; NASNet's parallel branches come out of
    # the rebuilt graph in another order, so it takes them by name.
    model.save_weights(tmp_path / "plain.weights.h5")
    if name == "NASNetMobile":
        with pytest.raises(ValueError):
            new.load_weights(tmp_path / "plain.weights.h5")
        keras_blurpool.transfer_weights(model, new)
    else:
        new.load_weights(tmp_path / "plain.weights.h5")
    for layer in model.layers:
        for a, b in zip(layer.get_weights(), new.get_layer(layer.name).get_weights()):
            np.testing.assert_array_equal(a, b)
    images = _smooth_images(2, size)
    # .keras round trip.
    new.save(tmp_path / "aa.keras")
    loaded = keras.saving.load_model(tmp_path / "aa.keras")
    out = _np(new(images, training=False))
    np.testing.assert_allclose(_np(loaded(images, training=False)), out,
                               rtol=1e-4, atol=1e-4)
    assert _shift_change(new, images) < _shift_change(model, images)


# --- KerasHub backbones -------------------------------------------------------

# Small configurations of the KerasHub image backbones that are Functional
# graphs of standard layers; the blur lands where keras.applications' does.
KERAS_HUB_BACKBONES = {
    "ResNetBackbone": dict(
        input_conv_filters=[64], input_conv_kernel_sizes=[7],
        stackwise_num_filters=[64, 128], stackwise_num_blocks=[2, 2],
        stackwise_num_strides=[1, 2], block_type="bottleneck_block",
        use_pre_activation=False),
    "CSPNetBackbone": dict(
        stem_filters=32, stem_kernel_size=3, stem_strides=1,
        stackwise_depth=[1, 2, 2], stackwise_strides=[1, 2, 2],
        stackwise_num_filters=[32, 64, 128], block_type="dark_block",
        stage_type="dark"),
    "DenseNetBackbone": dict(stackwise_num_repeats=[2, 2, 2]),
    "VGGBackbone": dict(stackwise_num_repeats=[1, 1, 1],
                        stackwise_num_filters=[16, 32, 64]),
}


@pytest.mark.parametrize("name", sorted(KERAS_HUB_BACKBONES))
def test_keras_hub_backbones(name, tmp_path):
    keras_hub = pytest.importorskip("keras_hub", reason="keras-hub not installed")
    keras.utils.set_random_seed(0)
    backbone = getattr(keras_hub.models, name)(
        **KERAS_HUB_BACKBONES[name], image_shape=(64, 64, 3))
    new, report = antialias_model(backbone, return_report=True)
    assert report.total > 0
    assert new.output.shape == backbone.output.shape
    assert new.count_params() == backbone.count_params()
    backbone.save_weights(tmp_path / "plain.weights.h5")
    new.load_weights(tmp_path / "plain.weights.h5")
    for layer in backbone.layers:
        for a, b in zip(layer.get_weights(), new.get_layer(layer.name).get_weights()):
            np.testing.assert_array_equal(a, b)
    images = _smooth_images(2, 64)
    assert _shift_change(new, images) < _shift_change(backbone, images)


# --- other backends -----------------------------------------------------------


@pytest.mark.parametrize("backend", ["jax", "torch"])
def test_other_backends(backend):
    code = textwrap.dedent(
        """
        import keras, numpy as np
        from keras_blurpool import antialias_model
        inputs = keras.Input((16, 16, 16))
        x = keras.layers.Conv2D(16, 3, strides=2, padding="same", name="c")(inputs)
        x = keras.layers.BatchNormalization(name="bn")(x)
        x = keras.layers.ReLU(name="r")(x)
        x = keras.layers.MaxPooling2D(name="m")(x)
        model = keras.Model(inputs, x)
        new = antialias_model(model)
        out = new(np.ones((1, 16, 16, 16), "float32"))
        assert tuple(out.shape) == (1, 4, 4, 16), out.shape
        assert new.count_params() == model.count_params()
        print("OK", keras.backend.backend())
        """
    )
    if backend == "torch":
        pytest.importorskip("torch", reason="torch not installed")
    env = {**os.environ, "KERAS_BACKEND": backend, "PYTHONPATH": str(REPO)}
    result = subprocess.run([sys.executable, "-c", code], env=env, cwd=REPO,
                            capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr[-3000:]
    assert f"OK {backend}" in result.stdout

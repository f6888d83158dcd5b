"""`antialias_model(model, antialias="aps"|"lps")` on small graphs: the
rewrite's rules, what it reports, and its errors. (keras.applications
models: tests/test_surgery_invariance.py.)"""

import re
import warnings

import keras
import numpy as np
import pytest

import keras_blurpool
from keras_blurpool import antialias_model
from tests._invariance import random_image as make_image
from tests._invariance import randomize_batchnorm
from tests._invariance import shift_changes

SHIFTS = [(dy, dx) for dy in range(4) for dx in range(4)] + [(9, 21)]


def _np(x):
    return np.asarray(keras.ops.convert_to_numpy(x))


def _branchy(size=32, merge="add"):
    """Two branches that each subsample twice, with different layers, then
    merge; then a strided stage of the merged map and a global pool."""
    inputs = keras.Input((size, size, 3), name="images")
    x = keras.layers.Conv2D(8, 3, padding="same", name="stem")(inputs)
    a = keras.layers.Conv2D(8, 3, strides=2, padding="same", name="a1")(x)
    a = keras.layers.BatchNormalization(name="a1_bn")(a)
    a = keras.layers.ReLU(name="a1_relu")(a)
    a = keras.layers.Conv2D(8, 3, strides=2, padding="same", name="a2")(a)
    b = keras.layers.MaxPooling2D(2, name="b1")(x)
    b = keras.layers.ZeroPadding2D(((0, 1), (0, 1)), name="b2_pad")(b)
    b = keras.layers.DepthwiseConv2D(3, strides=2, name="b2")(b)
    b = keras.layers.Conv2D(8, 1, name="b3")(b)
    merged = {
        "add": keras.layers.Add,
        "concat": keras.layers.Concatenate,
        "multiply": keras.layers.Multiply,
        "subtract": keras.layers.Subtract,
        "average": keras.layers.Average,
    }[merge](name="merge")([a, b])
    y = keras.layers.Conv2D(8, 3, strides=2, padding="same", name="c1")(merged)
    y = keras.layers.AveragePooling2D(2, padding="same", name="c2")(y)
    y = keras.layers.GlobalAveragePooling2D(name="gap")(y)
    return keras.Model(inputs, keras.layers.Dense(5, name="head")(y), name="branchy")


@pytest.mark.parametrize("merge", ["add", "concat", "multiply", "subtract", "average"])
def test_branches_that_meet_share_their_choices(merge):
    model = _branchy(merge=merge)
    new, report = antialias_model(model, "aps", return_report=True)
    assert report.not_invariant == {}
    assert sorted(report.replaced["conv"]) == ["a1", "a2", "b2", "c1"]
    assert report.replaced["max_pool"] == ["b1"]
    assert report.replaced["avg_pool"] == ["c2"]
    # The deep pairs (a1, b1) and (a2, b2) each share one choice: one
    # layer of each pair chooses, the other takes its index.
    followers = {
        layer.name
        for layer in new.layers
        if isinstance(layer, keras_blurpool.APSPool2D)
        and len(layer._inbound_nodes[0].input_tensors) == 2
    }
    assert len(followers & {"a1_aps", "b1_aps"}) == 1
    assert len(followers & {"a2_aps", "b2_aps"}) == 1
    assert not followers & {"c1_aps", "c2_aps"}  # alone: no index
    changes = shift_changes(new, make_image(32), SHIFTS)
    assert changes.max() <= 1e-5, changes


def _two_shifted_branches():
    """Branch b is branch a shifted by one column; their product's mean is
    invariant only if both keep the same polyphase component."""
    inputs = keras.Input((8, 8, 1))
    a = keras.layers.Conv2D(1, 3, strides=2, padding="same", use_bias=False,
                            name="a")(inputs)
    b = keras.layers.Conv2D(1, 3, strides=2, padding="same", use_bias=False,
                            name="b")(inputs)
    product = keras.layers.Multiply(name="product")([a, b])
    outputs = keras.layers.Concatenate(name="out")([
        keras.layers.GlobalAveragePooling2D(name="gap_product")(product),
        keras.layers.GlobalAveragePooling2D(name="gap_a")(a),
    ])
    model = keras.Model(inputs, outputs)
    identity = np.zeros((3, 3, 1, 1), "float32")
    identity[1, 1] = 1.0
    shift = np.zeros((3, 3, 1, 1), "float32")
    shift[1, 0] = 1.0  # b[i, j] = x[i, j - 1]
    model.get_layer("a").set_weights([identity])
    model.get_layer("b").set_weights([shift])
    return model


def test_independent_choices_would_not_be_invariant():
    # The control of the sharing: a polyphase choice per branch keeps, for
    # this image, component (0, 0) in one branch and (0, 1) in the other;
    # a one-column shift swaps which branch wraps around, and the product
    # changes. With the shared choice it cannot.
    image = np.zeros((8, 8, 1), "float32")
    image[0, 0], image[0, 1] = 1.0, 0.5
    new = antialias_model(_two_shifted_branches(), "aps", filter_size=1)
    assert shift_changes(new, image, SHIFTS).max() <= 1e-6

    def call_function(layer, *args, **kwargs):
        kwargs.pop("index", None)  # followers choose for themselves
        return layer(*args, **kwargs)

    independent = keras.models.clone_model(new, call_function=call_function)
    independent.set_weights(new.get_weights())
    assert shift_changes(independent, image, SHIFTS).max() > 0.5


def test_lps_is_invariant_and_its_choice_is_followed():
    new = antialias_model(_branchy(), "lps")
    lps = [x for x in new.layers if isinstance(x, keras_blurpool.LPSPool2D)]
    assert len(lps) == 4  # a pair's leader and the two lone layers
    assert shift_changes(new, make_image(32), SHIFTS).max() <= 1e-5


def test_padding_and_names():
    model = _branchy()
    new, report = antialias_model(model, "aps", return_report=True)
    # Every original layer keeps its name; weights are the same arrays.
    for layer in model.layers:
        twin = new.get_layer(layer.name)
        for a, b in zip(layer.get_weights(), twin.get_weights()):
            np.testing.assert_array_equal(a, b)
    # The ZeroPadding2D before the valid depthwise conv becomes circular
    # padding of k - 1 = 2 under its own name, as many pixels first.
    pad = new.get_layer("b2_pad")
    assert isinstance(pad, keras_blurpool.CircularPadding2D)
    assert pad.padding == ((0, 2), (0, 2))
    assert new.get_layer("stem_pad").padding == ((1, 1), (1, 1))
    assert new.get_layer("a1").strides == (1, 1)
    assert new.get_layer("a1").padding == "valid"
    assert "stem" in report.circular and "b3" not in report.circular
    # The polyphase layer goes after the BN and ReLU of its conv.
    node = new.get_layer("a1_aps")._inbound_nodes[0]
    assert node.input_tensors[0]._keras_history.operation.name == "a1_relu"
    assert new.count_params() == model.count_params()


def test_circular_padding_computes_a_circular_convolution():
    # Stride 1 everywhere: the rewritten conv equals NumPy's circular
    # convolution (a wrap-padded valid correlation).
    inputs = keras.Input((6, 7, 2))
    outputs = keras.layers.Conv2D(3, (3, 4), padding="same", name="c")(inputs)
    model = keras.Model(inputs, outputs)
    new = antialias_model(model, "aps")
    x = np.random.default_rng(0).normal(size=(1, 6, 7, 2)).astype("float32")
    kernel, bias = model.get_layer("c").get_weights()
    padded = np.pad(x, ((0, 0), (1, 1), (1, 2), (0, 0)), mode="wrap")
    expected = np.zeros((1, 6, 7, 3), "float32") + bias
    for i in range(6):
        for j in range(7):
            patch = padded[0, i:i + 3, j:j + 4]
            expected[0, i, j] += np.einsum("hwc,hwco->o", patch, kernel)
    np.testing.assert_allclose(_np(new(x)), expected, rtol=1e-5, atol=1e-5)


def test_sequential_model():
    model = keras.Sequential(
        [
            keras.Input((16, 16, 3)),
            keras.layers.Conv2D(8, 3, strides=2, padding="same", name="c1"),
            keras.layers.BatchNormalization(name="bn"),
            keras.layers.MaxPooling2D(2, name="p"),
            keras.layers.GlobalMaxPooling2D(name="g"),
        ],
        name="seq",
    )
    randomize_batchnorm(model)
    new = antialias_model(model, "aps")
    assert isinstance(new, keras.Sequential) and new.name == "seq"
    assert shift_changes(new, make_image(16), SHIFTS).max() <= 1e-5


@pytest.mark.parametrize("antialias", ["aps", "lps"])
def test_weights_file_loads_and_keras_round_trip(tmp_path, antialias):
    model = _branchy()
    new = antialias_model(model, antialias)
    x = make_image(32)[None]
    if antialias == "aps":  # LPS adds its scoring networks' weights
        model.save_weights(tmp_path / "original.weights.h5")
        fresh = antialias_model(_branchy(), antialias)
        fresh.load_weights(tmp_path / "original.weights.h5")
        np.testing.assert_allclose(
            _np(fresh(x)), _np(new(x)), rtol=1e-6, atol=1e-6
        )
    new.save(tmp_path / "new.keras")
    loaded = keras.saving.load_model(tmp_path / "new.keras")
    np.testing.assert_allclose(_np(loaded(x)), _np(new(x)), rtol=1e-6, atol=1e-6)
    assert shift_changes(loaded, make_image(32), SHIFTS).max() <= 1e-5


def test_nested_model_is_rewritten_inside():
    inner = _branchy()
    inputs = keras.Input((32, 32, 3))
    x = keras.layers.Rescaling(1 / 255.0, name="scale")(inputs)
    outer = keras.Model(inputs, keras.layers.Dense(2, name="top")(inner(x)))
    new, report = antialias_model(outer, "aps", return_report=True)
    assert "branchy/a1" in report.replaced["conv"]
    assert report.not_invariant == {}
    assert shift_changes(new, make_image(32), SHIFTS).max() <= 1e-5


# --- what cannot be made invariant ---------------------------------------------


def _with_head(head):
    inputs = keras.Input((16, 16, 3))
    x = keras.layers.Conv2D(4, 3, strides=2, padding="same", name="down")(inputs)
    return keras.Model(inputs, head(x))


class PositionalEmbedding(keras.layers.Layer):
    def build(self, input_shape):
        self.table = self.add_weight(shape=tuple(input_shape[1:]), name="table")

    def call(self, x):
        return x + self.table


class StridedInside(keras.layers.Layer):
    def __init__(self, **kwargs):
        super().__init__(**kwargs)
        self.conv = keras.layers.Conv2D(4, 3, strides=2, padding="same")

    def call(self, x):
        return self.conv(x)


class PaddedInside(keras.layers.Layer):
    """A stride-1 "same" conv inside a custom layer: zero padding that the
    rewrite cannot reach."""

    def __init__(self, **kwargs):
        super().__init__(**kwargs)
        self.conv = keras.layers.Conv2D(4, 3, padding="same")

    def call(self, x):
        return self.conv(x)


@pytest.mark.parametrize(
    "head, layer, reason",
    [
        (lambda x: keras.layers.GlobalAveragePooling2D()(
            PaddedInside(name="custom")(x)), "custom", "zero-padded layers"),
        (lambda x: keras.layers.Dense(2, name="fc")(
            keras.layers.Flatten(name="flat")(x)), "flat", "Flatten"),
        (lambda x: keras.layers.GlobalAveragePooling2D()(
            PositionalEmbedding(name="pos")(x)), "pos", "positional embedding"),
        (lambda x: keras.layers.GlobalAveragePooling2D()(
            StridedInside(name="custom")(x)), "custom", "strided layers"),
        (lambda x: keras.layers.GlobalAveragePooling2D()(
            keras.layers.UpSampling2D(3, name="up")(x)), "up",
         "no polyphase choice of the same factor"),
        (lambda x: keras.layers.GlobalAveragePooling2D()(
            keras.layers.Conv2DTranspose(4, 3, strides=2, name="tc")(x)), "tc",
         "not its input"),
        (lambda x: keras.layers.GlobalAveragePooling2D()(
            keras.layers.Cropping2D(1, name="crop")(x)), "crop",
         "changes the map's size"),
        (lambda x: keras.layers.GlobalAveragePooling2D()(
            keras.layers.ZeroPadding2D(1, name="zp")(x)), "zp", "zero padding"),
    ],
)
def test_not_invariant_layers_are_reported_and_warned(head, layer, reason):
    model = _with_head(head)
    with pytest.warns(UserWarning, match=f"'{layer}': .*{reason}"):
        new, report = antialias_model(model, "aps", return_report=True)
    assert list(report.not_invariant) == [layer]
    assert reason in report.not_invariant[layer]
    with pytest.raises(ValueError, match=f"'{layer}'.*strict=True"):
        antialias_model(model, "aps", strict=True)


def test_flatten_head_really_is_not_invariant():
    model = _with_head(lambda x: keras.layers.Dense(2, name="fc")(
        keras.layers.Flatten(name="flat")(x)))
    with pytest.warns(UserWarning):
        new = antialias_model(model, "aps")
    assert shift_changes(new, make_image(16), SHIFTS).max() > 1e-3


def test_zero_padding_inside_a_custom_layer_really_is_not_invariant():
    model = _with_head(lambda x: keras.layers.GlobalAveragePooling2D()(
        PaddedInside(name="custom")(x)))
    with pytest.warns(UserWarning, match="'custom'"):
        new = antialias_model(model, "aps")
    assert shift_changes(new, make_image(16), SHIFTS).max() > 1e-4


def test_side_not_divisible_by_the_total_stride():
    inputs = keras.Input((18, 18, 3))
    x = keras.layers.Conv2D(4, 3, strides=2, padding="same", name="d1")(inputs)
    x = keras.layers.Conv2D(4, 3, strides=2, padding="same", name="d2")(x)
    model = keras.Model(inputs, keras.layers.GlobalAveragePooling2D()(x))
    with pytest.warns(UserWarning, match="'d2': its map is 9x9, not divisible"):
        new, report = antialias_model(model, "aps", return_report=True)
    assert list(report.not_invariant) == ["d2"]
    # And it is not: a one-pixel shift changes the output.
    assert shift_changes(new, make_image(18), SHIFTS).max() > 1e-4


def test_an_invariant_model_does_not_warn():
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        antialias_model(_branchy(), "aps")


# --- errors ---------------------------------------------------------------------


@pytest.mark.parametrize(
    "kwargs, match",
    [
        ({"padding": "same"}, r"needs padding='circular'.*Received: padding='same'"),
        ({"padding": "zero"}, r"Received: padding='zero'"),
        ({"pad_type": "reflect"}, r"Received: pad_type='reflect'"),
        ({"upsampling": True}, r"Received: upsampling=True"),
        ({"blur_first": True}, r"Received: blur_first=True"),
        ({"strict": "yes"}, r"Received: strict='yes'"),
        ({"filter_size": 0}, r"filter_size"),
    ],
)
def test_bad_polyphase_arguments(kwargs, match):
    with pytest.raises(ValueError, match=match):
        antialias_model(_branchy(), "aps", **kwargs)


@pytest.mark.parametrize(
    "kwargs, match",
    [
        ({"padding": "circular"}, r"Received: padding='circular'"),
        ({"strict": True}, r"Received: strict=True"),
    ],
)
def test_polyphase_only_arguments_refused_with_blur(kwargs, match):
    with pytest.raises(ValueError, match=match):
        antialias_model(_branchy(), "blur", **kwargs)


@pytest.mark.parametrize("rank", [1, 3])
def test_models_without_an_image_input_are_refused(rank):
    # 1-D and 3-D models have no polyphase rewrite: refused, not returned
    # with their strided layers left as they were.
    conv, pool = {1: (keras.layers.Conv1D, keras.layers.GlobalAveragePooling1D),
                  3: (keras.layers.Conv3D, keras.layers.GlobalAveragePooling3D)}[rank]
    inputs = keras.Input((16,) * rank + (3,))
    x = conv(4, 3, strides=2, padding="same", name="down")(inputs)
    model = keras.Model(inputs, pool()(x))
    shape = (None,) + (16,) * rank + (3,)
    with pytest.raises(ValueError, match=re.escape(
        f"has no such input, and its 1-D or 3-D layers would be left as they "
        f"are. Use antialias='blur' for 1-D and 3-D models. Received: input "
        f"shapes [{shape}]"
    )):
        antialias_model(model, "aps")
    # The blur surgery handles them.
    blurred = antialias_model(model, "blur", min_channels=0)
    assert blurred.get_layer("down").strides == (1,) * rank


def test_unknown_sizes_name_the_layer():
    inputs = keras.Input((None, None, 3))
    x = keras.layers.Conv2D(4, 3, padding="same", name="stem")(inputs)
    x = keras.layers.Conv2D(4, 3, strides=2, padding="same", name="down")(x)
    model = keras.Model(inputs, keras.layers.GlobalAveragePooling2D()(x))
    with pytest.raises(ValueError, match="layer 'down' subsamples a map of "
                                         "unknown size.*Received"):
        antialias_model(model, "aps")


def test_subclassed_model_is_refused():
    class Net(keras.Model):
        def __init__(self):
            super().__init__()
            self.conv = keras.layers.Conv2D(4, 3, strides=2)

        def call(self, x):
            return self.conv(x)

    net = Net()
    net(np.zeros((1, 8, 8, 3), "float32"))
    with pytest.raises(ValueError, match="subclassed"):
        antialias_model(net, "aps")


def test_map_too_small_for_the_circular_padding_names_the_layer():
    inputs = keras.Input((4, 4, 3))
    x = keras.layers.Conv2D(4, 3, strides=2, padding="same", name="d")(inputs)
    x = keras.layers.DepthwiseConv2D(7, padding="same", name="dw")(x)
    model = keras.Model(inputs, x)
    with pytest.raises(ValueError, match="'dw_pad' does not fit its input"):
        antialias_model(model, "aps")

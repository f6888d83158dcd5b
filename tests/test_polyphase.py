"""APSPool2D, LPSPool2D and CircularPadding2D against NumPy formulas."""

import itertools
import math
import os
import re

import keras
import numpy as np
import pytest
from keras import ops

from keras_blurpool import APSPool2D
from keras_blurpool import CircularPadding2D
from keras_blurpool import LPSPool2D
from keras_blurpool import is_antialiasing
from keras_blurpool.callbacks import LPSTemperatureScheduler
from keras_blurpool.layers.polyphase import MAX_POLYPHASE_STRIDE
from keras_blurpool.layers.polyphase import MIN_TAU
from tests.test_layers import to_numpy

BACKEND = keras.backend.backend()


# --- NumPy formulas ---------------------------------------------------------


def numpy_prepare(x, filter_size, strides, pad_type):
    """Blur (stride 1), pad odd sizes at the end, split: `[P, B, h, w, C]`."""
    mode = {"circular": "wrap", "zero": "constant", "reflect": "reflect",
            "replicate": "edge"}
    if filter_size and filter_size > 1:
        x = _blur(x, filter_size, mode[pad_type])
    sh, sw = strides
    widths = [(0, 0), (0, -x.shape[1] % sh), (0, -x.shape[2] % sw), (0, 0)]
    x = np.pad(x.astype("float64"), widths, mode=mode[pad_type])
    return np.stack(
        [x[:, i::sh, j::sw] for i in range(sh) for j in range(sw)]
    )


def _blur(x, k, mode):
    """Depthwise binomial blur at stride 1, 'same' size, NumPy padding."""
    taps = np.array([math.comb(k - 1, i) for i in range(k)], "float64")
    taps /= taps.sum()
    before, after = (k - 1) // 2, k // 2
    x = np.pad(x.astype("float64"), [(0, 0), (before, after), (before, after),
                                     (0, 0)], mode=mode)
    for axis in (1, 2):
        n = x.shape[axis] - k + 1
        x = sum(taps[t] * np.take(x, range(t, t + n), axis=axis)
                for t in range(k))
    return x


def numpy_aps(x, filter_size=None, strides=(2, 2), norm="l2",
              pad_type="circular"):
    components = numpy_prepare(x, filter_size, strides, pad_type)
    flat = np.abs(components.reshape(components.shape[0],
                                     components.shape[1], -1))
    scores = {"l1": flat.sum(-1), "l2": np.sqrt((flat ** 2).sum(-1)),
              "linf": flat.max(-1)}[norm]
    index = scores.argmax(0)  # first of ties, as torch.argmax
    return components[index, np.arange(x.shape[0])], index


def numpy_conv3x3_circular(x, kernel, bias):
    """`[B, h, w, I]` * `[3, 3, I, O]` + bias, circular padding."""
    x = np.pad(x, [(0, 0), (1, 1), (1, 1), (0, 0)], mode="wrap")
    h, w = x.shape[1] - 2, x.shape[2] - 2
    out = np.zeros(x.shape[:1] + (h, w, kernel.shape[-1]))
    for a in range(3):
        for b in range(3):
            out += x[:, a:a + h, b:b + w] @ kernel[a, b]
    return out + bias


def numpy_lps_logits(layer, components):
    (k1, b1), (k2, b2) = [
        [to_numpy(v).astype("float64") for v in conv.weights]
        for conv in layer.scoring_layers
    ]
    logits = []
    for c in components:
        hidden = np.maximum(numpy_conv3x3_circular(c, k1, b1), 0)
        logits.append(numpy_conv3x3_circular(hidden, k2, b2).mean((1, 2, 3)))
    return np.stack(logits, axis=1)


def random_input(shape, seed=0):
    return np.random.default_rng(seed).standard_normal(shape).astype("float32")


# --- APSPool2D --------------------------------------------------------------


APS_GRID = list(itertools.product(
    [None, 1, 2, 3, 4], [2, 3, (2, 1)], ["l1", "l2", "linf"],
    [(8, 8), (9, 7)]))


@pytest.mark.parametrize("filter_size,strides,norm,hw", APS_GRID)
def test_aps_matches_numpy(filter_size, strides, norm, hw):
    x = random_input((3, *hw, 5), seed=hw[0] * 10 + hw[1])
    layer = APSPool2D(filter_size, strides=strides, norm=norm,
                      return_index=True)
    got, index = layer(x)
    pair = strides if isinstance(strides, tuple) else (strides, strides)
    expected, expected_index = numpy_aps(x, filter_size, pair, norm)
    np.testing.assert_array_equal(to_numpy(index), expected_index)
    np.testing.assert_allclose(to_numpy(got), expected, atol=1e-5)
    assert tuple(got.shape) == layer.compute_output_shape(x.shape)


@pytest.mark.parametrize("pad_type", ["zero", "reflect"])
def test_aps_other_paddings_match_numpy(pad_type):
    x = random_input((2, 9, 11, 3))
    got = APSPool2D(3, pad_type=pad_type)(x)
    expected, _ = numpy_aps(x, 3, (2, 2), "l2", pad_type)
    np.testing.assert_allclose(to_numpy(got), expected, atol=1e-5)


def test_aps_channels_first_equals_channels_last():
    x = random_input((2, 10, 10, 4))
    last = APSPool2D(3)(x)
    first = APSPool2D(3, data_format="channels_first")(np.moveaxis(x, -1, 1))
    np.testing.assert_allclose(np.moveaxis(to_numpy(first), 1, -1),
                               to_numpy(last), atol=1e-6)


@pytest.mark.parametrize("filter_size", [None, 3])
def test_aps_output_moves_with_every_circular_shift(filter_size):
    x = random_input((2, 8, 8, 3))
    layer = APSPool2D(filter_size)
    y = to_numpy(layer(x))
    for shift in itertools.product(range(8), range(8)):
        ys = to_numpy(layer(np.roll(x, shift, axis=(1, 2))))
        for n in range(2):
            best = min(
                np.abs(np.roll(y[n], (a, b), axis=(0, 1)) - ys[n]).max()
                for a in range(4) for b in range(4)
            )
            assert best < 1e-5, (shift, n, best)


def test_aps_given_index_and_weights():
    x = random_input((3, 8, 8, 2))
    components = numpy_prepare(x, None, (2, 2), "circular")
    index = np.array([3, 0, 2], "int32")
    got = APSPool2D()(x, index=index)
    np.testing.assert_allclose(to_numpy(got),
                               components[index, np.arange(3)], atol=0)
    weights = np.random.default_rng(1).dirichlet(np.ones(4), 3).astype(
        "float32")
    mixed = APSPool2D()(x, index=weights, training=True)
    np.testing.assert_allclose(
        to_numpy(mixed), np.einsum("bk,kbhwc->bhwc", weights, components),
        atol=1e-5)
    # At inference, mixing weights pick their argmax.
    picked = APSPool2D()(x, index=weights, training=False)
    np.testing.assert_allclose(
        to_numpy(picked), components[weights.argmax(1), np.arange(3)], atol=0)


def test_aps_gradient_reaches_the_chosen_component_only():
    x = random_input((2, 6, 6, 3))
    layer = APSPool2D(return_index=True)
    _, index = layer(x)
    w = random_input((2, 3, 3, 3), seed=1)
    grad = _input_gradient(lambda t: layer(t)[0], x, w)
    expected = np.zeros_like(x)
    for n, k in enumerate(to_numpy(index)):
        expected[n, k // 2::2, k % 2::2] = w[n]
    np.testing.assert_allclose(grad, expected, atol=1e-6)


def _input_gradient(fn, x, w):
    if BACKEND == "tensorflow":
        import tensorflow as tf

        t = tf.constant(x)
        with tf.GradientTape() as tape:
            tape.watch(t)
            loss = tf.reduce_sum(fn(t) * w)
        return tape.gradient(loss, t).numpy()
    if BACKEND == "jax":
        import jax

        return np.asarray(jax.grad(lambda t: (fn(t) * w).sum())(x))
    import torch

    t = torch.tensor(x, requires_grad=True)
    (fn(t) * torch.tensor(w)).sum().backward()
    return t.grad.numpy()


def test_aps_in_a_compiled_model_with_shared_index(tmp_path):
    inputs = keras.Input((None, None, 4))
    y, index = APSPool2D(3, return_index=True, name="main")(inputs)
    shortcut = APSPool2D(3, name="shortcut")(inputs, index=index)
    model = keras.Model(inputs, [y, shortcut])
    x = random_input((2, 10, 10, 4))
    eager = [to_numpy(t) for t in model(x)]
    np.testing.assert_array_equal(eager[0], eager[1])
    if BACKEND != "torch":  # XLA on TensorFlow, jit on JAX
        model.compile(jit_compile=True)
    jit = model.predict(x, verbose=0)
    for a, b in zip(jit, eager):
        np.testing.assert_allclose(a, b, atol=1e-6)
    path = os.path.join(tmp_path, "aps.keras")
    model.save(path)
    loaded = keras.saving.load_model(path)  # no custom_objects
    for a, b in zip(loaded(x), eager):
        np.testing.assert_allclose(to_numpy(a), b, atol=0)


@pytest.mark.parametrize("policy", ["mixed_float16", "mixed_bfloat16"])
def test_polyphase_layers_under_mixed_precision(policy):
    x = random_input((2, 8, 8, 4)) * 300  # a float16 sum of squares overflows
    expected, _ = numpy_aps(x, 3, (2, 2), "l2")
    for layer_class in (APSPool2D, LPSPool2D):
        layer = layer_class(3, dtype=policy)
        got = to_numpy(layer(x))
        assert str(got.dtype) == policy.split("_")[1]
        if layer_class is APSPool2D:
            np.testing.assert_allclose(got.astype("float32"), expected,
                                       rtol=1e-2, atol=1)
        assert np.isfinite(to_numpy(layer(x, training=True))).all()


@pytest.mark.parametrize("kwargs,message", [
    ({"norm": "l3"}, "norm='l3'"),
    ({"strides": 0}, "strides=0"),
    ({"pad_type": "wrap"}, "pad_type='wrap'"),
    ({"filter_size": 0}, "filter_size=0"),
    ({"return_index": "yes"}, "return_index='yes'"),
])
def test_aps_bad_arguments_raise_early(kwargs, message):
    with pytest.raises(ValueError, match=message.replace("(", r"\(")):
        APSPool2D(**kwargs)


# --- `padding`, the deprecated alias of `pad_type` --------------------------


def _lps(**kwargs):
    return LPSPool2D(3, hidden_channels=2, seed=1, **kwargs)


@pytest.mark.parametrize("make", [APSPool2D, _lps], ids=["aps", "lps"])
def test_padding_is_a_deprecated_alias_of_pad_type(make):
    with pytest.warns(DeprecationWarning, match="use `pad_type`") as record:
        old = make(padding="zero")
    assert len(record) == 1
    # stacklevel=2: the warning points at the construction, not the library.
    assert record[0].filename == __file__
    new = make(pad_type="zero")
    assert old.pad_type == new.pad_type == "zero"
    assert old.get_config() == {**new.get_config(), "name": old.name}
    assert "padding" not in old.get_config()
    x = random_input((2, 9, 7, 4))
    if isinstance(old, LPSPool2D):
        old.build(x.shape)
        new.build(x.shape)
        new.set_weights(old.get_weights())
    np.testing.assert_array_equal(to_numpy(old(x)), to_numpy(new(x)))


@pytest.mark.parametrize("layer_class", [APSPool2D, LPSPool2D])
@pytest.mark.parametrize("pad_type", ["circular", "zero"])
def test_pad_type_and_padding_together_raise(layer_class, pad_type):
    # Even when `pad_type` is its default value, passed explicitly.
    with pytest.raises(ValueError, match="Received: pad_type=.*, padding='zero'"):
        layer_class(pad_type=pad_type, padding="zero")


def test_padding_alias_refuses_bad_values_as_pad_type():
    with pytest.warns(DeprecationWarning):
        with pytest.raises(ValueError, match="pad_type='wrap'"):
            APSPool2D(padding="wrap")


@pytest.mark.parametrize("layer_class", [APSPool2D, LPSPool2D])
def test_configs_saved_with_padding_load_silently(layer_class, recwarn):
    layer = layer_class(3, pad_type="reflect", name="pool")
    config = layer.get_config()
    old = {k: v for k, v in config.items() if k != "pad_type"}
    old["padding"] = "refl"  # as saved before the rename (any alias)
    restored = layer_class.from_config(old)
    assert restored.pad_type == "reflect"
    assert restored.get_config() == config
    serialized = keras.saving.serialize_keras_object(layer)
    assert serialized["registered_name"] == f"keras_blurpool>{layer_class.__name__}"
    serialized["config"] = old
    again = keras.saving.deserialize_keras_object(serialized)
    assert type(again) is layer_class
    assert again.get_config() == config
    assert not [w for w in recwarn if issubclass(w.category, DeprecationWarning)]


def test_aps_bad_index_shape_is_a_clear_error():
    x = random_input((2, 8, 8, 3))
    with pytest.raises(ValueError, match="4 columns"):
        APSPool2D()(x, index=np.ones((2, 3), "float32"))
    with pytest.raises(ValueError, match="index"):
        APSPool2D()(x, index=np.ones((2, 2, 2), "int32"))


@pytest.mark.parametrize("index", [[4, 0], [-1, 0], np.array([0, 9]), 3,
                                   [1.0, 2.0], [True, False], ["0", "1"]],
                         ids=["4", "-1", "numpy-9", "scalar", "float",
                              "bool", "str"])
def test_aps_index_known_at_the_call_is_checked(index):
    # Rows are computed as b * P + index: 4 would take the next sample's
    # component 0, -1 the previous sample's last component.
    x = random_input((2, 8, 8, 3))
    with pytest.raises(ValueError, match=r"`index` must be int component "
                       r"numbers from 0 to 3.*Received: index="):
        APSPool2D(name="shortcut")(x, index=index)


def test_aps_index_out_of_range_in_a_tensor_gives_nan():
    # A tensor's values are known only when the graph runs, where no
    # backend can raise: those samples' outputs are NaN, the others exact.
    x = random_input((3, 8, 8, 2))
    components = numpy_prepare(x, None, (2, 2), "circular")
    index = np.array([3, 4, -1], "int32")
    eager = to_numpy(APSPool2D()(x, index=ops.convert_to_tensor(index)))
    inputs = keras.Input((8, 8, 2))
    choice = keras.Input((), dtype="int32")
    model = keras.Model([inputs, choice], APSPool2D()(inputs, index=choice))
    compiled = model.predict([x, index], verbose=0)  # traced (jit / graph)
    for got in (eager, compiled):
        np.testing.assert_array_equal(got[0], components[3, 0])
        assert np.isnan(got[1:]).all()
    with pytest.raises(ValueError, match="int component numbers"):
        APSPool2D()(inputs, index=keras.Input((), dtype="float32"))


@pytest.mark.parametrize("strides", [MAX_POLYPHASE_STRIDE + 1, 1000, 2 ** 63,
                                     (2, 20000)])
@pytest.mark.parametrize("layer_class", [APSPool2D, LPSPool2D])
def test_strides_are_bounded(layer_class, strides):
    with pytest.raises(ValueError, match=r"`strides` must be an int from 1 "
                       f"to {MAX_POLYPHASE_STRIDE}.*Received: strides="):
        layer_class(strides=strides)


@pytest.mark.parametrize("pad_type", ["circular", "zero", "replicate"])
@pytest.mark.parametrize("hw,strides", [((1, 1), 3), ((2, 5), 4),
                                        ((8, 8), MAX_POLYPHASE_STRIDE)])
def test_maps_smaller_than_the_strides_match_numpy(hw, strides, pad_type):
    # The padding to a multiple of the strides is larger than the map:
    # circular padding wraps around more than once, as NumPy's "wrap".
    x = random_input((2, *hw, 3))
    layer = APSPool2D(strides=strides, pad_type=pad_type, return_index=True)
    got, index = layer(x)
    expected, expected_index = numpy_aps(x, None, (strides, strides), "l2",
                                         pad_type)
    np.testing.assert_array_equal(to_numpy(index), expected_index)
    np.testing.assert_allclose(to_numpy(got), expected, atol=1e-6)
    assert tuple(got.shape) == layer.compute_output_shape(x.shape)
    lps = LPSPool2D(strides=strides, pad_type=pad_type, hidden_channels=2)
    assert tuple(lps(x).shape) == tuple(got.shape)


def test_reflect_padding_larger_than_the_map_is_refused_early():
    layer = APSPool2D(strides=3, pad_type="reflect", name="down")
    message = (r"'down' cannot reflect-pad a 1x1 feature map to a multiple "
               r"of strides=\(3, 3\).*pad_type='circular'")
    with pytest.raises(ValueError, match=message):
        layer.compute_output_shape((2, 1, 1, 3))
    with pytest.raises(ValueError, match=message):
        layer(random_input((2, 1, 1, 3)))
    with pytest.raises(ValueError, match=message):
        layer(keras.Input((1, 1, 3)))
    # 3x3 -> pads 1 to 4x4 at stride 2: fits.
    assert tuple(APSPool2D(pad_type="reflect")(random_input(
        (1, 3, 3, 1))).shape) == (1, 2, 2, 1)


def _with_nan(x, sample, component, strides=2):
    """`x` with a NaN in `component` of `sample` (numbered as the layers)."""
    x = x.copy()
    x[sample, component // strides + strides, component % strides, 0] = np.nan
    return x


@pytest.mark.parametrize("norm", ["l1", "l2", "linf"])
def test_a_component_holding_nan_is_kept_on_every_backend(norm):
    # TensorFlow's argmax skips NaNs, JAX's and PyTorch's take them: the
    # layers take them everywhere (the first such component), as NumPy.
    x = _with_nan(_with_nan(random_input((3, 8, 8, 2)), 0, 2), 0, 3)
    x = _with_nan(x, 1, 1)
    got, index = APSPool2D(norm=norm, return_index=True)(x)
    _, expected = numpy_aps(np.nan_to_num(x[2:], nan=0.0), norm=norm)
    np.testing.assert_array_equal(to_numpy(index), [2, 1, expected[0]])
    got = to_numpy(got)
    assert np.isnan(got[0]).any() and np.isnan(got[1]).any()
    assert not np.isnan(got[2]).any()


def test_lps_keeps_a_component_holding_nan_at_inference():
    x = _with_nan(random_input((2, 8, 8, 3)), 0, 1)
    layer = LPSPool2D(hidden_channels=3, return_index=True, seed=0)
    got, weights = layer(x)
    weights = to_numpy(weights)
    assert weights[0].argmax() == 1 and np.isnan(to_numpy(got)[0]).any()
    clean = np.argmax(to_numpy(layer.component_logits(np.moveaxis(
        numpy_prepare(x[1:], None, (2, 2), "circular"), 0, 1).astype(
            "float32"))), axis=1)
    assert weights[1].argmax() == clean[0]
    # A NaN mixing weight counts as the largest too (the shortcut's choice).
    mixing = np.array([[0.1, np.nan, 0.9, 0.0], [0.1, 0.2, 0.6, 0.1]],
                      "float32")
    picked = to_numpy(APSPool2D()(x, index=mixing, training=False))
    components = numpy_prepare(x, None, (2, 2), "circular")
    np.testing.assert_array_equal(picked[1], components[2, 1])
    assert np.isnan(picked[0]).any()  # component 1 of sample 0


# --- LPSPool2D --------------------------------------------------------------


@pytest.mark.parametrize("filter_size,hw", [(None, (8, 8)), (3, (9, 7))])
def test_lps_inference_matches_numpy(filter_size, hw):
    x = random_input((3, *hw, 4))
    layer = LPSPool2D(filter_size, hidden_channels=5, return_index=True)
    layer.build(x.shape)
    for conv in layer.scoring_layers:  # non-trivial biases
        conv.bias.assign(random_input(tuple(conv.bias.shape), seed=2))
    got, weights = layer(x)
    components = numpy_prepare(x, filter_size, (2, 2), "circular")
    logits = numpy_lps_logits(layer, components)
    np.testing.assert_allclose(
        to_numpy(layer.component_logits(
            np.moveaxis(components, 0, 1).astype("float32"))),
        logits, rtol=1e-4, atol=1e-5)
    index = logits.argmax(1)
    np.testing.assert_array_equal(to_numpy(weights), np.eye(4)[index])
    np.testing.assert_allclose(to_numpy(got),
                               components[index, np.arange(3)], atol=1e-5)


def test_lps_training_mixes_with_a_gumbel_softmax_sample():
    # Gumbel-max: argmax(logits + g) is distributed as softmax(logits); the
    # softmax of (logits + g) / tau tends to that one-hot as tau -> 0.
    x = np.repeat(random_input((1, 8, 8, 3)), 4000, axis=0)
    layer = LPSPool2D(hidden_channels=4, tau=0.05, return_index=True, seed=3)
    layer.build(x.shape)
    layer.scoring_layers[1].kernel.assign(
        to_numpy(layer.scoring_layers[1].kernel) * 20)
    components = numpy_prepare(x[:1], None, (2, 2), "circular")
    logits = numpy_lps_logits(layer, components)[0]
    out, weights = layer(x, training=True)
    weights = to_numpy(weights)
    np.testing.assert_allclose(weights.sum(1), 1, atol=1e-5)
    np.testing.assert_allclose(
        to_numpy(out)[:5],
        np.einsum("bk,khwc->bhwc", weights[:5], components[:, 0]), atol=1e-4)
    frequencies = np.bincount(weights.argmax(1), minlength=4) / len(x)
    probabilities = np.exp(logits - logits.max())
    probabilities /= probabilities.sum()
    assert probabilities.max() < 0.97  # a test that could fail
    np.testing.assert_allclose(frequencies, probabilities, atol=0.03)
    assert (weights.max(1) > 0.9).mean() > 0.9  # nearly hard at tau=0.05


def test_lps_is_equivariant_at_inference_and_trains():
    x = random_input((2, 8, 8, 3))
    layer = LPSPool2D(2, hidden_channels=4, return_index=True)
    _, weights = layer(x)
    for shift in [(0, 1), (1, 0), (1, 1), (5, 2)]:
        _, shifted = layer(np.roll(x, shift, axis=(1, 2)))
        # The chosen component moves with the shift, component by component.
        chosen = to_numpy(weights).argmax(1)
        moved = to_numpy(shifted).argmax(1)
        a, b = shift
        expected = [((k // 2 + a) % 2) * 2 + (k % 2 + b) % 2 for k in chosen]
        np.testing.assert_array_equal(moved, expected)
    inputs = keras.Input((8, 8, 3))
    y = LPSPool2D(hidden_channels=4, name="lps")(inputs)
    outputs = keras.layers.Dense(1)(keras.layers.GlobalAveragePooling2D()(y))
    model = keras.Model(inputs, outputs)
    model.compile("sgd", "mse", jit_compile=BACKEND != "torch")
    lps = model.get_layer("lps")
    before = to_numpy(lps.scoring_layers[0].kernel).copy()
    model.fit(x, np.ones((2, 1)), epochs=1, verbose=0)
    assert np.abs(to_numpy(lps.scoring_layers[0].kernel) - before).max() > 0


def test_lps_temperature_scheduler_sets_every_lps_layer():
    inputs = keras.Input((8, 8, 3))
    y = LPSPool2D(hidden_channels=2, name="a")(inputs)
    y = LPSPool2D(hidden_channels=2, tau=3.0, name="b")(y)
    outputs = keras.layers.Dense(1)(keras.layers.GlobalAveragePooling2D()(y))
    model = keras.Model(inputs, outputs)
    model.compile("sgd", "mse")
    seen = []
    record = keras.callbacks.LambdaCallback(
        on_epoch_end=lambda epoch, logs: seen.append(
            [float(to_numpy(model.get_layer(n).tau)) for n in "ab"]))
    scheduler = LPSTemperatureScheduler(lambda epoch: 1.0 * 0.5 ** epoch)
    model.fit(random_input((4, 8, 8, 3)), np.ones((4, 1)), epochs=3,
              verbose=0, callbacks=[scheduler, record])
    np.testing.assert_allclose(seen, [[1, 1], [0.5, 0.5], [0.25, 0.25]])
    with pytest.raises(ValueError, match="returned 0.0 for epoch 0"):
        model.fit(random_input((4, 8, 8, 3)), np.ones((4, 1)), verbose=0,
                  callbacks=[LPSTemperatureScheduler(lambda epoch: 0.0)])
    plain = keras.Sequential([keras.Input((2,)), keras.layers.Dense(1)])
    plain.compile("sgd", "mse")
    with pytest.raises(ValueError, match="no LPSPool2D"):
        plain.fit(np.ones((2, 2)), np.ones((2, 1)), verbose=0,
                  callbacks=[LPSTemperatureScheduler(lambda epoch: 1.0)])


def test_lps_serializes(tmp_path):
    inputs = keras.Input((8, 8, 3))
    y, weights = LPSPool2D(3, hidden_channels=4, tau=0.5, return_index=True,
                           name="lps")(inputs)
    shortcut = APSPool2D(3, name="shortcut")(inputs, index=weights)
    model = keras.Model(inputs, [y, shortcut])
    x = random_input((2, 8, 8, 3))
    expected = [to_numpy(t) for t in model(x)]
    np.testing.assert_array_equal(expected[0], expected[1])
    path = os.path.join(tmp_path, "lps.keras")
    model.save(path)
    loaded = keras.saving.load_model(path)
    for a, b in zip(loaded(x), expected):
        np.testing.assert_allclose(to_numpy(a), b, atol=0)
    assert float(to_numpy(loaded.get_layer("lps").tau)) == 0.5
    assert is_antialiasing(loaded.get_layer("lps"))
    assert is_antialiasing(loaded.get_layer("shortcut"))


def test_lps_trains_finitely_at_the_smallest_tau():
    # Scores of 1e36 divided by tau=1e-4 overflowed float32 before the
    # softmax (NaN weights); shifted by their maximum first, they do not.
    x = random_input((2, 8, 8, 3))
    layer = LPSPool2D(hidden_channels=3, tau=MIN_TAU, return_index=True,
                      seed=0)
    layer.build(x.shape)
    first, second = layer.scoring_layers
    first.kernel.assign(to_numpy(first.kernel) * 1e35)  # 1e34 apart
    second.bias.assign(np.full(second.bias.shape, 1e36, "float32"))
    logits = to_numpy(layer.component_logits(np.moveaxis(
        numpy_prepare(x, None, (2, 2), "circular"), 0, 1).astype("float32")))
    # Finite, but not once divided by tau.
    assert np.isfinite(logits).all()
    assert np.abs(logits).max() / MIN_TAU > np.finfo("float32").max
    out, weights = layer(x, training=True)
    # The Gumbel noise (|g| < 50) cannot reorder scores this far apart.
    np.testing.assert_array_equal(to_numpy(weights),
                                  np.eye(4)[logits.argmax(1)])
    assert np.isfinite(to_numpy(out)).all()
    w = random_input((2, 4, 4, 3), seed=1)
    grad = _input_gradient(lambda t: layer(t, training=True)[0], x, w)
    assert np.isfinite(grad).all() and np.abs(grad).max() > 0


def test_tau_below_the_bound_is_refused_everywhere():
    # 1e-50 was stored as float32 0.0: every training output was NaN.
    for tau in (1e-50, MIN_TAU / 2, float("nan"), 1e39):
        with pytest.raises(ValueError, match=re.escape(f"Received: tau={tau!r}")):
            LPSPool2D(tau=tau)
    inputs = keras.Input((8, 8, 3))
    y = LPSPool2D(hidden_channels=2)(inputs)
    model = keras.Model(inputs, keras.layers.GlobalAveragePooling2D()(y))
    model.compile("sgd", "mse")
    with pytest.raises(ValueError, match="returned 1e-50 for epoch 0"):
        model.fit(random_input((2, 8, 8, 3)), np.ones((2, 3)), verbose=0,
                  callbacks=[LPSTemperatureScheduler(lambda epoch: 1e-50)])
    assert LPSPool2D(tau=MIN_TAU).initial_tau == MIN_TAU


@pytest.mark.parametrize("kwargs,message", [
    ({"tau": 0}, "tau=0"),
    ({"tau": float("inf")}, "tau=inf"),
    ({"hidden_channels": 0}, "hidden_channels=0"),
    ({"seed": -1}, "seed=-1"),
])
def test_lps_bad_arguments_raise_early(kwargs, message):
    with pytest.raises(ValueError, match=message):
        LPSPool2D(**kwargs)


# --- CircularPadding2D ------------------------------------------------------


@pytest.mark.parametrize("padding", [1, (2, 0), ((0, 1), (3, 2))])
@pytest.mark.parametrize("data_format", ["channels_last", "channels_first"])
def test_circular_padding_matches_numpy_wrap(padding, data_format):
    x = random_input((2, 5, 4, 3))
    layer = CircularPadding2D(padding, data_format=data_format)
    pairs = layer.padding
    if data_format == "channels_first":
        got = np.moveaxis(to_numpy(layer(np.moveaxis(x, -1, 1))), 1, -1)
    else:
        got = to_numpy(layer(x))
    expected = np.pad(x, [(0, 0), *pairs, (0, 0)], mode="wrap")
    np.testing.assert_array_equal(got, expected)
    config = CircularPadding2D.from_config(layer.get_config()).get_config()
    assert config == layer.get_config()


def test_circular_padding_bad_input():
    with pytest.raises(ValueError, match="padding=-1"):
        CircularPadding2D(-1)
    with pytest.raises(ValueError, match="at least its padding"):
        CircularPadding2D(3)(random_input((1, 2, 2, 1)))


def test_ops_only():
    # The layers use keras.ops only: they run on the current backend.
    x = ops.convert_to_tensor(random_input((1, 4, 4, 1)))
    assert tuple(APSPool2D()(x).shape) == (1, 2, 2, 1)


@pytest.mark.skipif(BACKEND != "tensorflow", reason="a TensorFlow benchmark")
def test_benchmark_runs_at_a_tiny_size():
    """benchmarks/polyphase_speed.py prints its whole table (CPU, tiny)."""
    import subprocess
    import sys
    from pathlib import Path

    root = Path(__file__).parents[1]
    env = dict(os.environ, KERAS_BACKEND="tensorflow", TF_CPP_MIN_LOG_LEVEL="2")
    run = subprocess.run(
        [sys.executable, str(root / "benchmarks" / "polyphase_speed.py"),
         "--repeats", "1", "--shape", "2,8,8,4", "--model-batch", "1",
         "--model-size", "64", "--model-repeats", "1"],
        cwd=root, env=env, capture_output=True, text=True, timeout=300,
    )
    assert run.returncode == 0, run.stdout + run.stderr[-3000:]
    for name in ("subsample", "BlurPool2D(4)", "APSPool2D()", "APSPool2D(4)",
                 "LPSPool2D(4)"):
        assert any(line.split()[:1] == [name] for line in
                   run.stdout.splitlines()), run.stdout
    assert "APS / blur" in run.stdout


@pytest.mark.skipif(BACKEND != "tensorflow",
                    reason="unknown sizes at run time exist in TF graphs only")
@pytest.mark.parametrize("pad_type", ["circular", "zero"])
def test_unknown_spatial_sizes_in_a_relaxed_tf_graph(pad_type):
    import tensorflow as tf

    for layer in (APSPool2D(3, pad_type=pad_type),
                  LPSPool2D(3, pad_type=pad_type, hidden_channels=2)):
        traced = tf.function(
            lambda t, layer=layer: layer(t),
            input_signature=[tf.TensorSpec([None, None, None, 4])])
        for hw in [(9, 7), (8, 8)]:
            x = random_input((2, *hw, 4))
            np.testing.assert_array_equal(traced(x).numpy(),
                                          to_numpy(layer(x)))
    # Maps smaller than the strides: the padding wraps around, as with
    # known sizes.
    small = APSPool2D(strides=3, pad_type=pad_type)
    traced = tf.function(lambda t: small(t), input_signature=[
        tf.TensorSpec([None, None, None, 4])])
    for hw in [(1, 1), (2, 1), (1, 4)]:
        x = random_input((2, *hw, 4))
        np.testing.assert_array_equal(traced(x).numpy(), to_numpy(small(x)))
    reflect = APSPool2D(3, pad_type="reflect")
    traced = tf.function(lambda t: reflect(t), input_signature=[
        tf.TensorSpec([None, None, None, 4])])
    with pytest.raises(ValueError, match="needs known spatial sizes"):
        traced(random_input((1, 9, 9, 4)))

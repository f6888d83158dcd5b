"""BlurPool1D / BlurPool2D / MaxBlurPool2D: formula, reference, Keras life.

Backend-agnostic: also run with KERAS_BACKEND=jax and KERAS_BACKEND=torch.
"""

import itertools
import os
import subprocess
import sys
import textwrap
import time
import tracemalloc

import keras
import numpy as np
import pytest
from keras import ops

import keras_blurpool
from keras_blurpool import BlurPool1D
from keras_blurpool import BlurPool2D
from keras_blurpool import MaxBlurPool2D
from keras_blurpool.layers import _same_padding
from keras_blurpool.layers import _slices

REPO_ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

PAD_TYPES = ["reflect", "refl", "replicate", "repl", "zero"]
NP_MODES = {"reflect": "reflect", "refl": "reflect", "replicate": "edge",
            "repl": "edge", "zero": "constant", "circular": "wrap"}


def pascal_taps(k):
    """Binomial taps built row by row (independent of math.comb)."""
    row = [1.0]
    for _ in range(k - 1):
        row = [a + b for a, b in zip([0.0] + row, row + [0.0])]
    row = np.array(row)
    return row / row.sum()


def numpy_blurpool(x, k, s, pad_type, pad_off, rank):
    """Channels-last NumPy implementation of the documented formula."""
    before, after = (k - 1) // 2 + pad_off, -(-(k - 1) // 2) + pad_off
    widths = [(0, 0)] + [(before, after)] * rank + [(0, 0)]
    x = np.pad(x.astype("float64"), widths, mode=NP_MODES[pad_type])
    taps = pascal_taps(k)
    for axis in range(1, rank + 1):
        n = x.shape[axis]
        starts = range(0, n - k + 1, s)
        x = np.stack(
            [np.tensordot(np.take(x, range(i, i + k), axis=axis), taps,
                          axes=([axis], [0])) for i in starts],
            axis=axis,
        )
    return x


def to_numpy(x):
    return np.asarray(ops.convert_to_numpy(x))


GRID_2D = list(itertools.product(
    range(1, 8), PAD_TYPES, [1, 2, 3], [0, 1], [(9, 9), (10, 7), (8, 12)]))


@pytest.mark.parametrize("k,pad_type,s,pad_off,hw", GRID_2D)
def test_blurpool2d_matches_numpy_formula(k, pad_type, s, pad_off, hw):
    x = np.random.default_rng(k * 100 + s).standard_normal((2, *hw, 3))
    x = x.astype("float32")
    layer = BlurPool2D(k, strides=s, pad_type=pad_type, pad_off=pad_off)
    got = to_numpy(layer(x))
    expected = numpy_blurpool(x, k, s, pad_type, pad_off, rank=2)
    assert got.shape == expected.shape
    assert got.shape == layer.compute_output_shape(x.shape)
    np.testing.assert_allclose(got, expected, atol=1e-5)


@pytest.mark.parametrize("k,s,pad_off,hw", list(itertools.product(
    range(1, 8), [1, 2, 3], [0, 1], [(9, 9), (10, 7)])))
def test_blurpool2d_circular_matches_numpy_formula(k, s, pad_off, hw):
    # Not in the reference (no circular padding): the NumPy "wrap" formula.
    x = np.random.default_rng(k * 10 + s).standard_normal((2, *hw, 3))
    x = x.astype("float32")
    for training in (False, True):  # both routes
        layer = BlurPool2D(k, strides=s, pad_type="circular", pad_off=pad_off)
        got = to_numpy(layer(x, training=training))
        expected = numpy_blurpool(x, k, s, "circular", pad_off, rank=2)
        assert got.shape == expected.shape
        np.testing.assert_allclose(got, expected, atol=1e-5)


@pytest.mark.parametrize("k,pad_type,s,pad_off,n", list(itertools.product(
    range(1, 8), PAD_TYPES, [1, 2, 3], [0, 1], [9, 10])))
def test_blurpool1d_matches_numpy_formula(k, pad_type, s, pad_off, n):
    x = np.random.default_rng(n + k).standard_normal((2, n, 3)).astype("float32")
    layer = BlurPool1D(k, strides=s, pad_type=pad_type, pad_off=pad_off)
    got = to_numpy(layer(x))
    expected = numpy_blurpool(x, k, s, pad_type, pad_off, rank=1)
    assert got.shape == expected.shape == layer.compute_output_shape(x.shape)
    np.testing.assert_allclose(got, expected, atol=1e-5)


def _reference_grid(rank):
    sizes = [(9, 9), (10, 7), (16, 16)] if rank == 2 else [(9,), (10,), (16,)]
    return list(itertools.product(range(1, 8), PAD_TYPES, [1, 2, 3], [0, 1],
                                  sizes, ["channels_last", "channels_first"]))


def _compare_with_reference(torch, module, layer, x_nc):
    with torch.no_grad():
        expected = module(torch.from_numpy(x_nc)).numpy()
    if layer.data_format == "channels_last":
        got = to_numpy(layer(np.moveaxis(x_nc, 1, -1)))
        got = np.moveaxis(got, -1, 1)
    else:
        got = to_numpy(layer(x_nc))
    assert got.shape == expected.shape
    np.testing.assert_allclose(got, expected, atol=1e-5, rtol=0)


@pytest.mark.parametrize("k,pad_type,s,pad_off,hw,data_format",
                         _reference_grid(2))
def test_blurpool2d_equals_reference(reference, k, pad_type, s, pad_off, hw,
                                     data_format):
    torch, aa = reference
    x = np.random.default_rng(k + s).standard_normal((2, 4, *hw))
    module = aa.BlurPool(4, pad_type=pad_type, filt_size=k, stride=s,
                         pad_off=pad_off)
    layer = BlurPool2D(k, s, pad_type, pad_off, data_format=data_format)
    _compare_with_reference(torch, module, layer, x.astype("float32"))


@pytest.mark.parametrize("k,pad_type,s,pad_off,n,data_format",
                         _reference_grid(1))
def test_blurpool1d_equals_reference(reference, k, pad_type, s, pad_off, n,
                                     data_format):
    torch, aa = reference
    x = np.random.default_rng(k + s).standard_normal((2, 4, *n))
    module = aa.BlurPool1D(4, pad_type=pad_type, filt_size=k, stride=s,
                           pad_off=pad_off)
    layer = BlurPool1D(k, s, pad_type, pad_off, data_format=data_format)
    _compare_with_reference(torch, module, layer, x.astype("float32"))


def axis_matrix(n, k, s, pad_type, pad_off):
    """(outputs, inputs) matrix of the 1-D formula, from the identity."""
    basis = np.eye(n)[:, :, None]  # n one-hot signals of length n
    return numpy_blurpool(basis, k, s, pad_type, pad_off, rank=1)[:, :, 0].T


def input_gradient(layer, x, w):
    """d sum(layer(x) * w) / dx with the running backend's autodiff."""
    backend = keras.backend.backend()
    if backend == "tensorflow":
        import tensorflow as tf
        x = tf.constant(x)
        with tf.GradientTape() as tape:
            tape.watch(x)
            loss = tf.reduce_sum(tf.cast(layer(x), "float32") * w)
        return tape.gradient(loss, x).numpy()
    if backend == "jax":
        import jax
        return np.asarray(jax.grad(
            lambda v: (ops.cast(layer(v), "float32") * w).sum())(x))
    import torch
    x = torch.tensor(x, requires_grad=True)
    (layer(x).float() * torch.tensor(w)).sum().backward()
    return x.grad.numpy()


GRAD_GRID = list(itertools.product(
    range(1, 8), ["reflect", "replicate", "zero"], [1, 2, 3], [0, 1],
    [(9, 10), (16, 12)], ["channels_last", "channels_first"]))


@pytest.mark.parametrize("k,pad_type,s,pad_off,hw,data_format", GRAD_GRID)
def test_blurpool2d_gradient_is_the_adjoint(k, pad_type, s, pad_off, hw,
                                            data_format):
    # The layer is linear, y = A_h x A_w^T per channel, so the input
    # gradient of sum(y * w) is A_h^T w A_w.
    rng = np.random.default_rng(k * 10 + s)
    x = rng.standard_normal((2, *hw, 3)).astype("float32")
    a_h, a_w = (axis_matrix(n, k, s, pad_type, pad_off) for n in hw)
    w = rng.standard_normal((2, len(a_h), len(a_w), 3)).astype("float32")
    expected = np.einsum("ih,jw,nijc->nhwc", a_h, a_w, w)
    layer = BlurPool2D(k, s, pad_type, pad_off, data_format=data_format)
    if data_format == "channels_first":
        got = input_gradient(layer, np.moveaxis(x, -1, 1).copy(),
                             np.moveaxis(w, -1, 1).copy())
        got = np.moveaxis(got, 1, -1)
    else:
        got = input_gradient(layer, x, w)
    np.testing.assert_allclose(got, expected, atol=1e-5)


@pytest.mark.parametrize("k,pad_type,s,pad_off,hw,data_format",
                         list(itertools.product(
                             [3, 4], PAD_TYPES, [1, 2, 3], [0, 1],
                             [(10, 7), (16, 16)],
                             ["channels_last", "channels_first"])))
def test_blurpool2d_gradient_equals_reference(reference, k, pad_type, s,
                                              pad_off, hw, data_format):
    torch, aa = reference
    rng = np.random.default_rng(k + s)
    x = rng.standard_normal((2, 4, *hw)).astype("float32")
    module = aa.BlurPool(4, pad_type=pad_type, filt_size=k, stride=s,
                         pad_off=pad_off)
    x_t = torch.tensor(x, requires_grad=True)
    y_t = module(x_t)
    w = rng.standard_normal(tuple(y_t.shape)).astype("float32")
    (y_t * torch.from_numpy(w)).sum().backward()
    layer = BlurPool2D(k, s, pad_type, pad_off, data_format=data_format)
    if data_format == "channels_last":
        got = input_gradient(layer, np.moveaxis(x, 1, -1).copy(),
                             np.moveaxis(w, 1, -1).copy())
        got = np.moveaxis(got, -1, 1)
    else:
        got = input_gradient(layer, x, w)
    np.testing.assert_allclose(got, x_t.grad.numpy(), atol=1e-5, rtol=0)


@pytest.mark.parametrize("k,pad_type,s,hw", [
    (4, "reflect", 2, (56, 56)), (3, "reflect", 2, (15, 9)),
    (4, "replicate", 2, (28, 30)), (2, "reflect", 2, (13, 12)),
    (4, "zero", 2, (8, 8)), (6, "zero", 2, (12, 12)),
    # two padded lines in one window: the correction mixes input lines
    (6, "reflect", 3, (14, 11)), (4, "replicate", 3, (10, 13)),
    (4, "circular", 2, (16, 16)), (2, "circular", 2, (12, 10)),
])
@pytest.mark.parametrize("data_format", ["channels_last", "channels_first"])
def test_same_padding_route_equals_the_padded_route(k, pad_type, s, hw,
                                                    data_format):
    layer = BlurPool2D(k, s, pad_type=pad_type, data_format=data_format)
    shape = (2, *hw, 5) if data_format == "channels_last" else (2, 5, *hw)
    assert layer._same_padding_plan(shape) is not None
    padded = BlurPool2D(k, s, pad_type=pad_type, data_format=data_format,
                        implementation="padded")
    assert padded._same_padding_plan(shape) is None
    rng = np.random.default_rng(0)
    x = rng.standard_normal(shape).astype("float32")
    np.testing.assert_allclose(to_numpy(layer(x)), to_numpy(padded(x)),
                               atol=1e-5)
    w = rng.standard_normal(
        layer.compute_output_shape(shape)).astype("float32")
    np.testing.assert_allclose(input_gradient(layer, x, w),
                               input_gradient(padded, x, w), atol=1e-5)
    np.testing.assert_allclose(  # and both equal the formula
        to_numpy(padded(x)) if data_format == "channels_last" else
        np.moveaxis(to_numpy(padded(x)), 1, -1),
        numpy_blurpool(x if data_format == "channels_last" else
                       np.moveaxis(x, 1, -1), k, s, pad_type, 0, rank=2),
        atol=1e-5)


def test_same_padding_route_only_where_exact():
    def plan(k, pad_type="reflect", hw=(16, 16), **kwargs):
        return BlurPool2D(k, pad_type=pad_type, **kwargs)._same_padding_plan(
            (1, *hw, 3))
    # The paper's layer (filter 4, stride 2) on even maps; filter 3 on odd.
    assert plan(4) is not None and plan(4, "replicate") is not None
    assert plan(3, hw=(15, 17)) is not None
    # Elsewhere "same" padding starts one pixel off (filter 4 on odd maps,
    # filter 3 on even ones), or a wide reflect border has no input line
    # that feeds exactly its outputs (filters 5 and 6 at stride 2).
    assert plan(4, hw=(15, 17)) is None and plan(3) is None
    assert plan(5) is None and plan(6) is None
    assert plan(4, pad_off=1) is None
    assert plan(4, hw=(None, 16)) is None
    assert BlurPool1D(4)._same_padding_plan((1, 16, 3)) is None


@pytest.mark.parametrize("policy", ["mixed_float16", "mixed_bfloat16"])
def test_mixed_precision_gradient(policy):
    rng = np.random.default_rng(0)
    x = rng.standard_normal((2, 16, 16, 3)).astype("float32")
    w = rng.standard_normal((2, 8, 8, 3)).astype("float32")
    exact = input_gradient(BlurPool2D(4), x, w)
    got = input_gradient(BlurPool2D(4, dtype=policy), x, w)
    tol = 1e-2 if policy == "mixed_float16" else 5e-2
    np.testing.assert_allclose(got, exact, atol=tol)


@pytest.mark.parametrize("jit_compile", [False, "auto"])
def test_model_with_unknown_batch_trains_to_the_exact_gradient(jit_compile):
    # A compiled train step sees an unknown batch size; SGD on the input
    # layer's weights must match the analytic adjoint.
    rng = np.random.default_rng(0)
    x = rng.standard_normal((6, 12, 12, 2)).astype("float32")
    w = rng.standard_normal((6, 6, 6, 2)).astype("float32")
    inputs = keras.Input((12, 12, 2))
    shift = keras.layers.Dense(2, use_bias=False, kernel_initializer="identity")
    outputs = BlurPool2D(4)(shift(inputs))
    model = keras.Model(inputs, outputs)
    model.compile(keras.optimizers.SGD(1.0),
                  loss=lambda y_true, y_pred: ops.sum(y_true * y_pred) / 6.0,
                  jit_compile=jit_compile)
    model.fit(x, w, batch_size=6, epochs=1, verbose=0, shuffle=False)
    a = axis_matrix(12, 4, 2, "reflect", 0)
    grad_in = np.einsum("ih,jw,nijc->nhwc", a, a, w) / 6.0
    expected = np.eye(2) - np.einsum("nhwc,nhwd->cd", x, grad_in)
    np.testing.assert_allclose(to_numpy(shift.kernel), expected, atol=1e-4)


@pytest.mark.parametrize("data_format", ["channels_last", "channels_first"])
def test_max_blur_pool_equals_reference_composite(reference, data_format):
    torch, aa = reference
    x = np.random.default_rng(0).standard_normal((2, 5, 15, 12)).astype("float32")
    module = torch.nn.Sequential(torch.nn.MaxPool2d(2, stride=1),
                                 aa.BlurPool(5, filt_size=3, stride=2))
    layer = MaxBlurPool2D(2, filter_size=3, data_format=data_format)
    _compare_with_reference(torch, module, layer, x)


def test_reference_filter_equals_binomial(reference):
    _, aa = reference
    for k in range(1, 8):
        filt = aa.BlurPool(2, filt_size=k).filt.numpy()[0, 0]
        np.testing.assert_allclose(BlurPool2D(k).filter, filt, atol=1e-7)


def test_binomial_filter_uses_pascal_rows():
    for k in range(1, 10):
        np.testing.assert_allclose(keras_blurpool.binomial_filter(k),
                                   pascal_taps(k))


def test_anisotropic_strides():
    x = np.random.default_rng(1).standard_normal((1, 12, 12, 2)).astype("float32")
    got = to_numpy(BlurPool2D(3, strides=(1, 2), pad_type="zero")(x))
    full = numpy_blurpool(x, 3, 1, "zero", 0, rank=2)
    np.testing.assert_allclose(got, full[:, :, ::2], atol=1e-5)


def test_no_weights_and_no_kernel_gradient():
    layer = BlurPool2D()
    layer.build((None, 8, 8, 3))
    assert layer.weights == [] and layer.trainable_weights == []
    model = keras.Sequential([keras.Input((8, 8, 3)),
                              keras.layers.Conv2D(4, 3, padding="same"),
                              BlurPool2D()])
    assert len(model.trainable_weights) == 2  # the conv's kernel and bias


def test_model_trains_through_blurpool():
    rng = np.random.default_rng(0)
    x = rng.standard_normal((16, 8, 8, 3)).astype("float32")
    y = rng.standard_normal((16, 4, 4, 4)).astype("float32")
    model = keras.Sequential([keras.Input((8, 8, 3)),
                              keras.layers.Conv2D(4, 3, padding="same"),
                              BlurPool2D(4)])
    model.compile("sgd", "mse")
    before = to_numpy(model.layers[0].kernel).copy()
    model.fit(x, y, epochs=1, verbose=0)
    assert not np.allclose(before, to_numpy(model.layers[0].kernel))


@pytest.mark.parametrize("layer", [
    BlurPool2D(5, strides=(2, 3), pad_type="repl", pad_off=1),
    BlurPool2D(4, implementation="padded"),
    BlurPool2D(4, implementation="same"),
    BlurPool1D(4, pad_type="zero", data_format="channels_first"),
    BlurPool1D(3, implementation="padded"),
    MaxBlurPool2D(3, filter_size=2, pad_type="zero"),
    MaxBlurPool2D(implementation="padded"),
])
def test_get_config_round_trip(layer):
    clone = type(layer).from_config(layer.get_config())
    assert clone.get_config() == layer.get_config()
    assert clone.get_config()["implementation"] == layer.get_config().get(
        "implementation", "auto")
    if isinstance(layer, MaxBlurPool2D):
        assert clone.blur.implementation == layer.blur.implementation


def test_keras_file_round_trip_without_custom_objects(tmp_path):
    inputs = keras.Input((None, None, 3))
    x = keras.layers.Conv2D(4, 3)(inputs)
    x = BlurPool2D(5, pad_type="replicate", name="bp")(x)
    x = MaxBlurPool2D(name="mbp")(x)
    outputs = keras.layers.Conv1D(2, 1)(keras.layers.Reshape((-1, 4))(x))
    outputs = BlurPool1D(3)(outputs)
    model = keras.Model(inputs, outputs)
    x = np.random.default_rng(0).standard_normal((2, 37, 41, 3)).astype("float32")
    path = tmp_path / "model.keras"
    model.save(path)
    loaded = keras.saving.load_model(path)
    np.testing.assert_array_equal(to_numpy(model(x)), to_numpy(loaded(x)))
    assert isinstance(loaded.get_layer("bp"), BlurPool2D)


@pytest.mark.parametrize("policy", ["mixed_float16", "mixed_bfloat16"])
def test_mixed_precision(policy):
    x = np.random.default_rng(0).standard_normal((2, 16, 16, 3)).astype("float32")
    exact = numpy_blurpool(x, 4, 2, "reflect", 0, rank=2)
    layer = BlurPool2D(4, dtype=policy)
    out = layer(x)
    assert keras.backend.standardize_dtype(out.dtype) == layer.compute_dtype
    assert layer.compute_dtype == policy.split("_")[1]
    tol = 1e-2 if policy == "mixed_float16" else 5e-2
    np.testing.assert_allclose(to_numpy(ops.cast(out, "float32")), exact,
                               atol=tol)


def test_global_mixed_policy_in_a_model():
    keras.mixed_precision.set_global_policy("mixed_float16")
    try:
        model = keras.Sequential([keras.Input((16, 16, 3)),
                                  keras.layers.Conv2D(4, 3), MaxBlurPool2D()])
        out = model(np.ones((1, 16, 16, 3), "float32"))
    finally:
        keras.mixed_precision.set_global_policy("float32")
    assert keras.backend.standardize_dtype(out.dtype) == "float16"


def test_unknown_batch_and_spatial_dims():
    inputs = keras.Input((None, None, 6))
    layer = BlurPool2D(4, strides=3)
    outputs = layer(inputs)
    assert tuple(outputs.shape) == (None, None, None, 6)
    model = keras.Model(inputs, outputs)
    for hw in [(9, 9), (14, 11)]:
        x = np.random.default_rng(0).standard_normal((3, *hw, 6)).astype("float32")
        got = to_numpy(model(x))
        np.testing.assert_allclose(
            got, numpy_blurpool(x, 4, 3, "reflect", 0, rank=2), atol=1e-5)


def test_static_output_shape():
    assert BlurPool2D(4).compute_output_shape((None, 57, 56, 8)) == (None, 29, 28, 8)
    assert BlurPool2D(3, 3, pad_off=1, data_format="channels_first") \
        .compute_output_shape((4, 8, None, 10)) == (4, 8, None, 4)
    assert BlurPool1D(7).compute_output_shape((None, 5, 2)) == (None, 3, 2)
    assert MaxBlurPool2D().compute_output_shape((None, 32, 32, 3)) == (None, 16, 16, 3)


@pytest.mark.parametrize("kwargs,argument", [
    ({"filter_size": 0}, "filter_size=0"),
    ({"filter_size": 2.5}, "filter_size=2.5"),
    ({"filter_size": True}, "filter_size=True"),
    ({"filter_size": "4"}, "filter_size='4'"),
    ({"strides": 0}, "strides=0"),
    ({"strides": (2, -1)}, "strides=(2, -1)"),
    ({"strides": (2, 2, 2)}, "strides=(2, 2, 2)"),
    ({"pad_type": "wrap"}, "pad_type='wrap'"),
    ({"pad_off": -1}, "pad_off=-1"),
    ({"data_format": "NHWC"}, "data_format='NHWC'"),
    ({"filter_size": 65}, "filter_size=65"),
    ({"filter_size": 20000}, "filter_size=20000"),
    ({"implementation": "fast"}, "implementation='fast'"),
    ({"implementation": None}, "implementation=None"),
    ({"pad_type": ["zero"]}, "pad_type=['zero']"),
])
def test_bad_arguments_raise_early(kwargs, argument):
    with pytest.raises(ValueError) as info:
        BlurPool2D(**kwargs)
    assert argument in str(info.value)
    assert "must be" in str(info.value)


def test_bad_max_blur_pool_arguments():
    with pytest.raises(ValueError, match="pool_size=0"):
        MaxBlurPool2D(pool_size=0)
    with pytest.raises(ValueError, match="pad_type='mirror'"):
        MaxBlurPool2D(pad_type="mirror")
    with pytest.raises(ValueError, match="strides=0"):
        BlurPool1D(strides=0)


def test_too_small_map_for_reflect_is_a_clear_error():
    layer = BlurPool2D(4, name="tiny")
    with pytest.raises(ValueError) as info:
        layer(np.zeros((1, 2, 2, 3), "float32"))
    message = str(info.value)
    for part in ["'tiny'", "2x2", "replicate", "zero", "smaller filter_size"]:
        assert part in message
    with pytest.raises(ValueError, match="2x2"):
        keras.Sequential([keras.Input((2, 2, 3)), BlurPool2D(4)])
    # The suggested fixes do work on the same map.
    ones = np.ones((1, 2, 2, 3), "float32")
    out = BlurPool2D(4, pad_type="replicate")(ones)
    np.testing.assert_allclose(to_numpy(out), np.ones((1, 1, 1, 3)), atol=1e-6)
    out = BlurPool2D(4, pad_type="zero")(ones)  # taps [0, 1, 1, 0] of [1,3,3,1]/8
    np.testing.assert_allclose(to_numpy(out), np.full((1, 1, 1, 3), 0.75**2),
                               atol=1e-6)


# --- filter-size bound (issue 11) -----------------------------------------


def test_filter_size_bound_is_early_and_clear():
    start = time.perf_counter()
    for make in [lambda: BlurPool2D(1000), lambda: BlurPool1D(20000),
                 lambda: MaxBlurPool2D(filter_size=1000),
                 lambda: keras_blurpool.binomial_filter(1000)]:
        with pytest.raises(ValueError, match="from 1 to 64") as info:
            make()
        assert "filter_size=" in str(info.value)
    assert time.perf_counter() - start < 5
    # The bound itself still works: exact to float64 rounding, sums to 1.
    taps = keras_blurpool.binomial_filter(64)
    np.testing.assert_allclose(taps, pascal_taps(64), rtol=1e-12, atol=0)
    assert abs(taps.sum() - 1) < 1e-12 and taps.min() > 0
    x = np.random.default_rng(0).standard_normal((1, 70, 70, 2))
    got = to_numpy(BlurPool2D(64, pad_type="zero")(x.astype("float32")))
    np.testing.assert_allclose(
        got, numpy_blurpool(x, 64, 2, "zero", 0, rank=2), atol=1e-5)


# --- MaxBlurPool2D on maps smaller than its pool (issue 11) ---------------


def test_max_blur_pool_too_small_map_is_a_clear_error_at_build():
    with pytest.raises(ValueError) as info:
        keras.Sequential([keras.Input((1, 1, 3)),
                          MaxBlurPool2D(pad_type="zero", name="mbp")])
    for part in ["'mbp'", "1x1", "pool_size=2", "at least pool_size"]:
        assert part in str(info.value)


def test_max_blur_pool_too_small_map_is_a_clear_error_at_call():
    # TensorFlow's MaxPool killed the process (SIGFPE) on these, so they
    # run in a child process: a crash fails the test instead of pytest.
    script = textwrap.dedent("""
        import keras, numpy as np
        from keras_blurpool import MaxBlurPool2D
        for pad_type in ["zero", "replicate"]:
            try:
                MaxBlurPool2D(pad_type=pad_type, name="eager")(
                    np.zeros((1, 1, 1, 3), "float32"))
            except ValueError as error:
                print("eager:", str(error).replace("\\n", " "))
        inputs = keras.Input((None, None, 3))
        model = keras.Model(inputs, MaxBlurPool2D(pad_type="zero",
                                                  name="late")(inputs))
        try:
            model(np.zeros((1, 1, 5, 3), "float32"))
        except ValueError as error:
            print("late:", str(error).replace("\\n", " "))
    """)
    env = dict(os.environ, PYTHONPATH=REPO_ROOT, TF_CPP_MIN_LOG_LEVEL="3")
    result = subprocess.run([sys.executable, "-c", script], check=False,
                            cwd=REPO_ROOT,
                            env=env, capture_output=True, text=True,
                            timeout=300)
    assert result.returncode == 0, (result.returncode, result.stderr[-2000:])
    lines = result.stdout.splitlines()
    eager = [line for line in lines if line.startswith("eager:")]
    late = [line for line in lines if line.startswith("late:")]
    assert len(eager) == 2 and len(late) == 1, result.stdout
    assert all("'eager'" in line and "1x1" in line and "pool_size=2" in line
               for line in eager)
    assert "'late'" in late[0] and "1x5" in late[0]
    # A map of exactly pool_size still works.
    out = MaxBlurPool2D(pad_type="zero")(np.ones((1, 2, 2, 3), "float32"))
    assert tuple(out.shape) == (1, 1, 1, 3)


# --- the "same"-padding plan: sparse, bounded (issue 11) ------------------


def _plan_for(n, k=4, s=2, pad_type="reflect", pad_off=0):
    pads = ((k - 1) // 2 + pad_off, k // 2 + pad_off)
    return _same_padding.plan_2d((n, n), keras_blurpool.binomial_filter(k),
                                 (s, s), pads, pad_type)


def _clear_plan_caches():
    _same_padding._plan_2d.cache_clear()
    _same_padding._axis_plan.cache_clear()


def test_planning_a_large_map_is_fast_and_small():
    _clear_plan_caches()
    tracemalloc.start()
    try:
        start = time.perf_counter()
        plan = _plan_for(4096)
        seconds = time.perf_counter() - start
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert plan is not None and not plan.forward.is_zero()
    # Dense (n x n) matrices took ~770 MiB and seconds here.
    assert peak < 5 * 2**20, peak
    assert plan.nbytes < 4096, plan.nbytes
    assert seconds < 5


def test_plan_cache_retains_bounded_bytes():
    _clear_plan_caches()
    tracemalloc.start()
    try:
        plans = [_plan_for(n) for n in range(1024, 1084, 2)]  # 30 sizes
        del plans  # only the caches hold them now
        retained, _ = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert _same_padding._plan_2d.cache_info().currsize == 30
    assert retained < 2 * 2**20, retained  # dense plans: ~40 MB each


@pytest.mark.parametrize("k,s,pad_off", [(2, 2, 0), (3, 2, 0), (4, 2, 0),
                                         (4, 3, 0), (6, 3, 0), (3, 1, 1),
                                         (1, 2, 0)])
@pytest.mark.parametrize("pad_type", ["reflect", "replicate", "zero",
                                      "circular"])
@pytest.mark.parametrize("n", [7, 8, 15, 16])
def test_sparse_plan_equals_the_dense_matrices(k, s, pad_off, pad_type, n):
    plan = _plan_for(n, k, s, pad_type, pad_off)
    if plan is None:
        return  # where plans exist: test_same_padding_route_only_where_exact
    true = axis_matrix(n, k, s, pad_type, pad_off)
    same = axis_matrix(n, k, s, "zero", pad_off)  # aligned: same windows

    def dense(rows, columns):
        m = np.zeros((rows.size, columns))
        m[np.ix_(rows.rows, rows.cols)] = rows.block
        return m

    np.testing.assert_allclose(dense(plan.forward.sparse_h, n), true - same,
                               atol=1e-12)
    fold = np.eye(n) + dense(plan.backward.sparse_h, n).T
    np.testing.assert_allclose(same @ fold, true, atol=1e-12)


# --- implementation="auto" | "padded" | "same" | "slices" (issues 12, 26) --


def _patch_routes(monkeypatch):
    """Records the route each layer call runs: "same" (the generic
    gather/scatter one or PyTorch's own), "slices", else "padded"."""
    calls = []

    def recording(module, name, route):
        original = getattr(module, name)

        def recorded(*args, **kwargs):
            calls.append(route)
            return original(*args, **kwargs)

        monkeypatch.setattr(module, name, recorded)

    recording(_same_padding, "blur_same_2d", "same")
    recording(_slices, "blur_slices", "slices")
    if keras.backend.backend() == "torch":
        from keras_blurpool.layers import _torch_blur
        recording(_torch_blur, "blur_same", "same")
        recording(_torch_blur, "blur_padded", "padded")
    return calls


@pytest.fixture
def same_route_calls(monkeypatch):
    """The calls that took the "same"-convolution route (one entry each)."""

    return _SameCalls(_patch_routes(monkeypatch))


class _SameCalls:
    """`len()`: how many layer calls ran the "same" route."""

    def __init__(self, routes):
        self.routes = routes

    def __len__(self):
        return self.routes.count("same")


@pytest.fixture
def routes_run(monkeypatch):
    """The routes the layer calls ran, in order ("padded" where neither
    "same" nor "slices" ran)."""
    return _patch_routes(monkeypatch)


# What "auto" runs per backend: TensorFlow the "same" route for training
# calls only, never in inference or export; JAX the slices; PyTorch its
# own "same" route where exact (training and inference), else padded.
AUTO_ROUTES = {
    "tensorflow": {((16, 16), True): "same", ((16, 16), False): "padded",
                   ((16, 16), None): "padded", ((15, 15), True): "padded"},
    "jax": {((16, 16), True): "slices", ((16, 16), False): "slices",
            ((16, 16), None): "slices", ((15, 15), True): "slices"},
    "torch": {((16, 16), True): "same", ((16, 16), False): "same",
              ((16, 16), None): "same", ((15, 15), True): "padded"},
}


@pytest.mark.parametrize("implementation,hw,training", [
    ("auto", (16, 16), True),
    ("auto", (16, 16), False), ("auto", (16, 16), None),
    ("auto", (15, 15), True),
    ("padded", (16, 16), True),
    ("same", (16, 16), True), ("same", (16, 16), False),
    ("slices", (16, 16), True), ("slices", (15, 15), None),
])
def test_implementation_picks_the_route(routes_run, implementation, hw,
                                        training):
    x = np.random.default_rng(0).standard_normal((2, *hw, 3))
    layer = BlurPool2D(4, implementation=implementation)
    expected = implementation
    if implementation == "auto":
        expected = AUTO_ROUTES[keras.backend.backend()][hw, training]
    assert layer._route((2, *hw, 3), training) == expected
    got = to_numpy(layer(x.astype("float32"), training=training))
    assert (routes_run or ["padded"]) == [expected]
    np.testing.assert_allclose(
        got, numpy_blurpool(x, 4, 2, "reflect", 0, rank=2), atol=1e-5)


def test_torch_pads_while_tracing(routes_run):
    """Under PyTorch's tracer (as in ONNX export) "auto" takes the padded
    route: two operations per layer in the exported graph."""
    if keras.backend.backend() != "torch":
        pytest.skip("PyTorch's tracer: the torch backend only")
    import torch

    layer = BlurPool2D(4)
    x = np.random.default_rng(0).standard_normal((2, 16, 16, 3))
    x = torch.as_tensor(x.astype("float32"))
    traced = torch.jit.trace(lambda v: layer(v, training=False), (x,),
                             check_trace=False)
    assert routes_run == ["padded"]
    graph_ops = [n.kind() for n in traced.graph.nodes()]
    assert graph_ops.count("aten::_convolution") == 1, graph_ops
    np.testing.assert_allclose(
        to_numpy(traced(x)), numpy_blurpool(x.numpy(), 4, 2, "reflect", 0,
                                            rank=2), atol=1e-5)
    assert to_numpy(layer(x)).shape == (2, 8, 8, 3)
    assert routes_run == ["padded", "same"]


# Every route on every backend equals the NumPy formula, output and input
# gradient: the routes equal one another, and the backends too.
ROUTE_GRID = list(itertools.product(
    range(1, 8), ["reflect", "replicate", "zero", "circular"], [1, 2, 3],
    [0, 1], [(9, 10), (16, 12)]))


@pytest.mark.parametrize("k,pad_type,s,pad_off,hw", ROUTE_GRID)
@pytest.mark.parametrize("data_format", ["channels_last", "channels_first"])
def test_every_route_equals_the_formula(k, pad_type, s, pad_off, hw,
                                        data_format):
    rng = np.random.default_rng(k * 10 + s)
    x = rng.standard_normal((2, *hw, 3)).astype("float32")
    expected = numpy_blurpool(x, k, s, pad_type, pad_off, rank=2)
    w = rng.standard_normal(expected.shape).astype("float32")
    a_h, a_w = (axis_matrix(n, k, s, pad_type, pad_off) for n in hw)
    expected_grad = np.einsum("ih,jw,nijc->nhwc", a_h, a_w, w)
    first = data_format == "channels_first"
    x_in, w_in = (np.moveaxis(v, -1, 1).copy() if first else v for v in (x, w))
    routes = ["padded", "slices"]
    if BlurPool2D(k, s, pad_type, pad_off)._same_padding_plan(
            (2, *hw, 3)) is not None:
        routes.append("same")
    for route in routes:
        layer = BlurPool2D(k, s, pad_type, pad_off, data_format=data_format,
                           implementation=route)
        got = to_numpy(layer(x_in))
        grad = input_gradient(layer, x_in, w_in)
        if first:
            got, grad = np.moveaxis(got, 1, -1), np.moveaxis(grad, 1, -1)
        np.testing.assert_allclose(got, expected, atol=1e-5, err_msg=route)
        np.testing.assert_allclose(grad, expected_grad, atol=1e-5,
                                   err_msg=route)


@pytest.mark.parametrize("pad_type", ["replicate", "zero"])
def test_same_route_on_a_map_smaller_than_the_filter(pad_type):
    # PyTorch's own "same" route needs the convolution's padding to cover
    # the filter; on a 1x1 map it does not, and the generic route runs.
    rng = np.random.default_rng(0)
    x = rng.standard_normal((2, 1, 1, 3)).astype("float32")
    w = rng.standard_normal((2, 1, 1, 3)).astype("float32")
    layer = BlurPool2D(4, pad_type=pad_type, implementation="same")
    np.testing.assert_allclose(
        to_numpy(layer(x)), numpy_blurpool(x, 4, 2, pad_type, 0, rank=2),
        atol=1e-6)
    a = axis_matrix(1, 4, 2, pad_type, 0)
    np.testing.assert_allclose(input_gradient(layer, x, w),
                               np.einsum("ih,jw,nijc->nhwc", a, a, w),
                               atol=1e-6)


def test_slices_route_needs_known_sizes():
    layer = BlurPool2D(4, implementation="slices", name="sl")
    with pytest.raises(ValueError) as info:
        layer._route((1, None, 16, 3))
    message = str(info.value)
    for part in ["'sl'", "implementation='slices'", "Nonex16",
                 "implementation='auto'", "'padded'", "Received:"]:
        assert part in message
    # "auto" falls back to the padded route there, on every backend.
    assert BlurPool2D(4)._route((1, None, 16, 3), True) == "padded"


def test_slices_route_under_a_compiler():
    """Compiled (jax.jit, tf.function with XLA, or eager PyTorch), the
    slices route's output and input gradient equal the formula's."""
    rng = np.random.default_rng(0)
    x = rng.standard_normal((2, 16, 12, 5)).astype("float32")
    dy = rng.standard_normal((2, 8, 6, 5)).astype("float32")
    layer = BlurPool2D(4, implementation="slices")
    backend = keras.backend.backend()
    if backend == "jax":
        import jax

        @jax.jit
        def step(v, g):
            y, vjp = jax.vjp(layer, v)
            return y, vjp(g)[0]
    elif backend == "tensorflow":
        import tensorflow as tf

        @tf.function(jit_compile=True)
        def step(v, g):
            with tf.GradientTape() as tape:
                tape.watch(v)
                y = layer(v)
            return y, tape.gradient(y, v, output_gradients=g)
    else:
        import torch

        def step(v, g):
            v = torch.tensor(v, requires_grad=True)
            y = layer(v)
            y.backward(torch.tensor(g))
            return y.detach(), v.grad

    y, dx = step(x, dy)
    a_h, a_w = (axis_matrix(n, 4, 2, "reflect", 0) for n in (16, 12))
    np.testing.assert_allclose(
        to_numpy(y), numpy_blurpool(x, 4, 2, "reflect", 0, rank=2), atol=1e-5)
    np.testing.assert_allclose(
        to_numpy(dx), np.einsum("ih,jw,nijc->nhwc", a_h, a_w, dy), atol=1e-5)


@pytest.mark.skipif(keras.backend.backend() != "tensorflow",
                    reason="tf.function(jit_compile=True) is TensorFlow's XLA")
def test_same_route_trains_under_xla(same_route_calls):
    """Under XLA (model.fit's jit_compile) "auto" trains on the "same"
    route: its output and input gradient equal the padded route's."""
    import tensorflow as tf

    rng = np.random.default_rng(0)
    x = tf.constant(rng.standard_normal((2, 16, 16, 3)), "float32")
    dy = tf.constant(rng.standard_normal((2, 8, 8, 3)), "float32")

    def compiled(layer):
        @tf.function(jit_compile=True)
        def step(v):
            with tf.GradientTape() as tape:
                tape.watch(v)
                y = layer(v, training=True)
            return y, tape.gradient(y, v, output_gradients=dy)

        return step

    y_auto, dx_auto = compiled(BlurPool2D(4))(x)
    assert len(same_route_calls) == 1
    y_padded, dx_padded = compiled(BlurPool2D(4, implementation="padded"))(x)
    assert len(same_route_calls) == 1
    np.testing.assert_allclose(to_numpy(y_auto), to_numpy(y_padded), atol=1e-5)
    np.testing.assert_allclose(to_numpy(dx_auto), to_numpy(dx_padded),
                               atol=1e-5)


def test_max_blur_pool_forwards_implementation(same_route_calls):
    x = np.random.default_rng(0).standard_normal((1, 17, 17, 3))
    x = x.astype("float32")
    padded = MaxBlurPool2D(implementation="padded")
    same = MaxBlurPool2D(implementation="same")
    assert padded.blur.implementation == "padded"
    np.testing.assert_allclose(to_numpy(padded(x)), to_numpy(same(x)),
                               atol=1e-6)
    assert len(same_route_calls) == 1  # the 16x16 pooled map, "same" only
    with pytest.raises(ValueError, match="implementation='same'"):
        MaxBlurPool2D(implementation="same")(x[:, :16, :16])  # 15x15


def test_same_implementation_without_a_plan_fails_at_build():
    with pytest.raises(ValueError) as info:
        keras.Sequential([keras.Input((16, 16, 3)),
                          BlurPool2D(5, implementation="same", name="b5")])
    message = str(info.value)
    for part in ["'b5'", "implementation='same'", "16x16", "filter_size=5",
                 "implementation='auto'", "'padded'"]:
        assert part in message
    with pytest.raises(ValueError, match="15x17"):
        BlurPool2D(4, implementation="same")(np.zeros((1, 15, 17, 2), "float32"))


def test_same_implementation_with_unknown_sizes_checks_at_call():
    inputs = keras.Input((None, None, 3))
    model = keras.Model(inputs, BlurPool2D(4, implementation="same",
                                           name="late")(inputs))
    x = np.random.default_rng(0).standard_normal((1, 16, 12, 3))
    np.testing.assert_allclose(
        to_numpy(model(x.astype("float32"))),
        numpy_blurpool(x, 4, 2, "reflect", 0, rank=2), atol=1e-5)
    with pytest.raises(ValueError, match="'late'.*15x12"):
        model(np.zeros((1, 15, 12, 3), "float32"))


def test_blurpool1d_implementation():
    with pytest.raises(ValueError, match="implementation='same'") as info:
        BlurPool1D(implementation="same")
    assert "('auto', 'padded', 'slices')" in str(info.value)
    x = np.random.default_rng(0).standard_normal((2, 16, 3))
    for implementation in ["auto", "padded", "slices"]:
        layer = BlurPool1D(4, pad_type="zero", implementation=implementation)
        np.testing.assert_allclose(
            to_numpy(layer(x.astype("float32"))),
            numpy_blurpool(x, 4, 2, "zero", 0, rank=1), atol=1e-5)

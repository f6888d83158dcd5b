"""BlurPool3D and BlurUpSampling2D against NumPy implementations of their
formulas, Keras's own layers, serialization, dtypes and bad input.

Runs on the default (TensorFlow) backend; `test_jax_and_torch_backends`
runs the NumPy comparison under JAX and PyTorch in subprocesses.
"""

import importlib.util
import os
import subprocess
import sys

import keras
import numpy as np
import pytest

import keras_blurpool
from keras_blurpool import BlurPool2D
from keras_blurpool import BlurPool3D
from keras_blurpool import BlurUpSampling2D
from keras_blurpool import binomial_filter

_NP_MODES = {"reflect": "reflect", "replicate": "edge", "zero": "constant"}


def _np_blurpool3d(x, filter_size, strides, pad_type, pad_off=0):
    """Direct 3-D pad, correlate with outer(w, w, w), subsample.

    `x` is channels_last `(batch, D, H, W, C)`.
    """
    k = filter_size
    strides = (strides,) * 3 if isinstance(strides, int) else strides
    before, after = (k - 1) // 2 + pad_off, k // 2 + pad_off
    widths = [(0, 0), (before, after), (before, after), (before, after), (0, 0)]
    xp = np.pad(x.astype("float64"), widths, mode=_NP_MODES[pad_type])
    w = binomial_filter(k)
    kernel = np.einsum("i,j,l->ijl", w, w, w)
    windows = np.lib.stride_tricks.sliding_window_view(xp, (k, k, k), axis=(1, 2, 3))
    out = np.einsum("bdhwcijl,ijl->bdhwc", windows, kernel)
    sd, sh, sw = strides
    return out[:, ::sd, ::sh, ::sw]


def _np_extended_index(i, n, pad_type):
    """Index of the input pixel at position i of the extended axis, or None."""
    if 0 <= i < n:
        return i
    if pad_type == "zero":
        return None
    if pad_type == "replicate":
        return min(max(i, 0), n - 1)
    return -i if i < 0 else 2 * (n - 1) - i  # reflect (one bounce suffices)


def _np_blur_upsampling2d(x, size, filter_size, pad_type):
    """y[t, u] = sum_{j, l} w'_j w'_l U[t - c + j, u - c + l], by loops.

    `x` is channels_last `(batch, H, W, C)`; U is the edge-extended input
    with s - 1 zeros inserted after each pixel.
    """
    sizes = (size, size) if isinstance(size, int) else size
    k = filter_size
    taps, offsets = [], []
    for s in sizes:
        w = binomial_filter(k)
        for q in range(s):
            w[q::s] /= w[q::s].sum()
        taps.append(w)
        offsets.append((k + s - 2) // 2)
    batch, height, width, channels = x.shape
    (sh, sw), (ch, cw) = sizes, offsets
    y = np.zeros((batch, height * sh, width * sw, channels))
    x = x.astype("float64")
    for t in range(height * sh):
        for u in range(width * sw):
            for j in range(k):
                m = t - ch + j
                i = _np_extended_index(m // sh, height, pad_type)
                if m % sh or i is None:
                    continue
                for jj in range(k):
                    mm = u - cw + jj
                    ii = _np_extended_index(mm // sw, width, pad_type)
                    if mm % sw or ii is None:
                        continue
                    y[:, t, u] += taps[0][j] * taps[1][jj] * x[:, i, ii]
    return y


def _to_format(x, data_format):
    return x if data_format == "channels_last" else np.moveaxis(x, -1, 1)


def _from_format(y, data_format):
    y = keras.ops.convert_to_numpy(y)
    return y if data_format == "channels_last" else np.moveaxis(y, 1, -1)


# (filter_size, strides, pad_type, pad_off, data_format, (D, H, W))
_POOL3D_CASES = [
    (4, 2, "reflect", 0, "channels_last", (6, 8, 8)),
    (4, 2, "reflect", 0, "channels_first", (5, 7, 9)),
    (3, 2, "replicate", 0, "channels_last", (5, 6, 7)),
    (3, (1, 2, 3), "zero", 0, "channels_first", (4, 9, 10)),
    (5, 2, "zero", 1, "channels_last", (7, 6, 5)),
    (2, (2, 1, 2), "refl", 0, "channels_last", (3, 4, 5)),
    (1, 2, "repl", 0, "channels_first", (5, 4, 3)),
    (7, 3, "replicate", 0, "channels_last", (4, 5, 11)),
]

# (size, filter_size, pad_type, data_format, (H, W))
_UP_CASES = [
    (2, 4, "replicate", "channels_last", (5, 6)),
    (2, 4, "reflect", "channels_first", (4, 7)),
    (2, 3, "zero", "channels_last", (3, 4)),
    (3, 3, "replicate", "channels_last", (4, 3)),
    (3, 5, "reflect", "channels_first", (5, 4)),
    ((2, 3), 6, "zero", "channels_last", (3, 5)),
    ((1, 2), 4, "refl", "channels_last", (4, 4)),
    (2, 7, "replicate", "channels_first", (3, 3)),
    (4, 4, "repl", "channels_last", (2, 3)),
]


def _rng_input(shape, seed=0):
    return np.random.default_rng(seed).standard_normal(shape).astype("float32")


def check_against_numpy():
    """Every case above against NumPy, on the current backend (also run in
    subprocesses under JAX and PyTorch)."""
    for k, strides, pad_type, pad_off, data_format, spatial in _POOL3D_CASES:
        x = _rng_input((2, *spatial, 3))
        layer = BlurPool3D(k, strides, pad_type, pad_off, data_format)
        y = _from_format(layer(_to_format(x, data_format)), data_format)
        canonical = keras_blurpool.layers.standardize_pad_type(pad_type)
        expected = _np_blurpool3d(x, k, strides, canonical, pad_off)
        assert y.shape == expected.shape, (k, strides, y.shape, expected.shape)
        np.testing.assert_allclose(y, expected, atol=1e-5, err_msg=str((k, strides)))
    for size, k, pad_type, data_format, spatial in _UP_CASES:
        x = _rng_input((2, *spatial, 2), seed=1)
        layer = BlurUpSampling2D(size, k, pad_type, data_format)
        y = _from_format(layer(_to_format(x, data_format)), data_format)
        canonical = keras_blurpool.layers.standardize_pad_type(pad_type)
        expected = _np_blur_upsampling2d(x, size, k, canonical)
        assert y.shape == expected.shape, (size, k, y.shape, expected.shape)
        np.testing.assert_allclose(y, expected, atol=1e-5, err_msg=str((size, k)))


def test_both_layers_equal_numpy():
    check_against_numpy()


def test_numpy_reference_is_not_trivial():
    # The upsampling reference itself: k=4, s=2 is the documented
    # y[2i] = .25 x[i-1] + .75 x[i] in the interior.
    x = np.arange(5.0).reshape(1, 5, 1, 1) ** 2
    y = _np_blur_upsampling2d(x, (2, 1), 4, "replicate")[0, :, 0, 0]
    v = x[0, :, 0, 0]
    np.testing.assert_allclose(y[4], 0.25 * v[1] + 0.75 * v[2])
    np.testing.assert_allclose(y[5], 0.75 * v[2] + 0.25 * v[3])


def test_blurpool3d_depth_one_equals_blurpool2d():
    x = _rng_input((2, 1, 9, 8, 4))
    y3 = BlurPool3D(4, (1, 2, 2), pad_type="replicate")(x)
    y2 = BlurPool2D(4, 2, pad_type="replicate")(x[:, 0])
    np.testing.assert_allclose(keras.ops.convert_to_numpy(y3)[:, 0], y2, atol=1e-6)


def test_blurpool3d_unknown_sizes_in_a_traced_model():
    inputs = keras.Input((None, None, None, 3))
    model = keras.Model(inputs, BlurPool3D(3, (2, 1, 2), pad_type="reflect")(inputs))
    assert model.output.shape == (None, None, None, None, 3)
    x = _rng_input((2, 5, 6, 7, 3))
    np.testing.assert_allclose(
        model.predict(x, verbose=0),
        _np_blurpool3d(x, 3, (2, 1, 2), "reflect"),
        atol=1e-5,
    )


def test_blur_upsampling_unknown_sizes_in_a_traced_model():
    inputs = keras.Input((3, None, None), batch_size=None)
    layer = BlurUpSampling2D(3, 4, pad_type="reflect", data_format="channels_first")
    model = keras.Model(inputs, layer(inputs))
    assert model.output.shape == (None, 3, None, None)
    x = _rng_input((2, 5, 4, 3))
    y = model.predict(np.moveaxis(x, -1, 1), verbose=0)
    expected = _np_blur_upsampling2d(x, 3, 4, "reflect")
    np.testing.assert_allclose(np.moveaxis(y, 1, -1), expected, atol=1e-5)


@pytest.mark.parametrize("size", [2, 3, (3, 2)])
@pytest.mark.parametrize("pad_type", ["replicate", "reflect", "zero"])
def test_blur_upsampling_keeps_a_constant_constant(size, pad_type):
    x = np.full((1, 8, 7, 2), 3.5, "float32")
    for k in (max(np.atleast_1d(size)), 4, 5):
        y = keras.ops.convert_to_numpy(BlurUpSampling2D(size, k, pad_type)(x))
        if pad_type == "zero":
            # Zero padding darkens the border only (output t reads input
            # pixels (t - c) // s to (t - c + k - 1) // s): the rest is exact.
            y = y[:, k:-k, k:-k]
            assert y.size
        np.testing.assert_allclose(y, 3.5, rtol=1e-6, err_msg=str(k))


@pytest.mark.parametrize("data_format", ["channels_last", "channels_first"])
def test_blur_upsampling_k2_s2_is_nearest_upsampling(data_format):
    x = _to_format(_rng_input((2, 5, 4, 3)), data_format)
    y = BlurUpSampling2D(2, 2, data_format=data_format)(x)
    expected = keras.layers.UpSampling2D(2, data_format=data_format)(x)
    np.testing.assert_allclose(y, expected, atol=1e-6)


def test_blur_upsampling_k4_s2_replicate_is_half_pixel_bilinear():
    # TensorFlow's bilinear resize (half-pixel centres, clamped at the
    # border) is the k=4, s=2 filter on the replicate-extended input.
    if keras.backend.backend() != "tensorflow":
        pytest.skip("bilinear border handling differs between backends")
    x = _rng_input((1, 6, 7, 2))
    y = BlurUpSampling2D(2, 4, pad_type="replicate")(x)
    expected = keras.layers.UpSampling2D(2, interpolation="bilinear")(x)
    np.testing.assert_allclose(y, expected, atol=1e-5)


def test_registered_antialiasing_and_exported():
    assert keras_blurpool.is_antialiasing(BlurPool3D())
    assert keras_blurpool.is_antialiasing(BlurUpSampling2D())
    assert {"BlurPool3D", "BlurUpSampling2D"} <= set(keras_blurpool.__all__)
    assert BlurPool3D().filter.shape == (4, 4, 4)
    np.testing.assert_allclose(BlurUpSampling2D(3, 5).filter.sum(), 9.0)


def test_get_config_round_trip_and_keras_file(tmp_path):
    pool = BlurPool3D(3, (1, 2, 2), "zero", 1, "channels_last", "padded", name="p3")
    up = BlurUpSampling2D((2, 3), 5, "refl", "channels_last", name="up")
    for layer in (pool, up):
        clone = type(layer).from_config(layer.get_config())
        assert clone.get_config() == layer.get_config()
    assert up.get_config()["pad_type"] == "reflect"
    assert up.get_config()["size"] == (2, 3)

    inputs = keras.Input((4, 8, 8, 2))
    x = pool(inputs)
    x = keras.layers.Reshape((6 * 5, 5, 2))(x)  # pad_off=1 keeps 6x5x5
    outputs = up(x)
    model = keras.Model(inputs, outputs)
    path = tmp_path / "model.keras"
    model.save(path)
    loaded = keras.models.load_model(path)
    data = _rng_input((2, 4, 8, 8, 2))
    np.testing.assert_allclose(
        loaded.predict(data, verbose=0), model.predict(data, verbose=0), atol=1e-6
    )
    assert isinstance(loaded.get_layer("p3"), BlurPool3D)
    assert isinstance(loaded.get_layer("up"), BlurUpSampling2D)


@pytest.mark.parametrize("dtype", ["float16", "bfloat16"])
def test_low_precision_dtypes(dtype):
    x = _rng_input((1, 4, 6, 6, 2))
    y = BlurPool3D(dtype=dtype)(keras.ops.cast(x, dtype))
    assert keras.backend.standardize_dtype(y.dtype) == dtype
    expected = _np_blurpool3d(x, 4, 2, "reflect")
    np.testing.assert_allclose(keras.ops.cast(y, "float32"), expected, atol=0.05)

    x = _rng_input((1, 5, 4, 2))
    y = BlurUpSampling2D(dtype=dtype)(keras.ops.cast(x, dtype))
    assert keras.backend.standardize_dtype(y.dtype) == dtype
    expected = _np_blur_upsampling2d(x, 2, 4, "replicate")
    np.testing.assert_allclose(keras.ops.cast(y, "float32"), expected, atol=0.05)


@pytest.mark.parametrize(
    "make, match",
    [
        (lambda: BlurPool3D(strides=(2, 2)), "strides"),
        (lambda: BlurPool3D(filter_size=0), "filter_size"),
        (lambda: BlurPool3D(pad_type="wrap"), "pad_type"),
        (lambda: BlurPool3D(pad_off=-1), "pad_off"),
        (lambda: BlurPool3D(data_format="NDHWC"), "data_format"),
        (lambda: BlurPool3D(implementation="same"), "implementation"),
        (lambda: BlurUpSampling2D(size=0), "size"),
        (lambda: BlurUpSampling2D(size=(2, 2, 2)), "size"),
        (lambda: BlurUpSampling2D(size=2.0), "size"),
        (lambda: BlurUpSampling2D(filter_size=65), "filter_size"),
        (lambda: BlurUpSampling2D(size=3, filter_size=2), "filter_size=2, size=3"),
        (lambda: BlurUpSampling2D(size=(1, 4), filter_size=3), "filter_size"),
        (lambda: BlurUpSampling2D(pad_type="wrap"), "pad_type"),
        (lambda: BlurUpSampling2D(data_format="NCHW"), "data_format"),
    ],
)
def test_bad_arguments(make, match):
    with pytest.raises(ValueError, match=match):
        make()


def test_too_small_maps_and_unknown_channels():
    with pytest.raises(ValueError, match="cannot reflect-pad a 2x8x8"):
        BlurPool3D(4)(np.zeros((1, 2, 8, 8, 1), "float32"))
    with pytest.raises(ValueError, match="cannot reflect-pad a 8x8x2"):
        BlurPool3D(4).build((None, 8, 8, 2, 1))
    # Replicate padding has no such limit.
    assert BlurPool3D(4, pad_type="replicate")(np.zeros((1, 1, 2, 2, 1))).shape == (
        1, 1, 1, 1, 1
    )
    # k=4, s=2: c=2, padding ceil(2 / 2) = 1 per side.
    with pytest.raises(ValueError, match="cannot reflect-pad a 1x5"):
        BlurUpSampling2D(2, 4, "reflect")(np.zeros((1, 1, 5, 1), "float32"))
    assert BlurUpSampling2D(2, 4, "reflect")(np.zeros((1, 2, 2, 1))).shape == (
        1, 4, 4, 1
    )
    with pytest.raises(ValueError, match="known channel"):
        BlurPool3D()(keras.Input((4, 4, 4, None)))
    with pytest.raises(ValueError, match="known channel"):
        BlurUpSampling2D(data_format="channels_first")(keras.Input((None, 4, 4)))


_SUBPROCESS = (
    "import keras, tests.test_layers_nd as t; "
    "assert keras.backend.backend() == '{backend}'; "
    "t.check_against_numpy(); print('OK')"
)


def test_jax_and_torch_backends():
    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    runs = {}
    for backend in ("jax", "torch"):
        if importlib.util.find_spec(backend) is None:
            continue
        env = dict(os.environ, KERAS_BACKEND=backend, PYTHONPATH=root)
        runs[backend] = subprocess.Popen(
            [sys.executable, "-c", _SUBPROCESS.format(backend=backend)],
            cwd=root,
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
    if not runs:
        pytest.skip("neither JAX nor PyTorch is installed")
    for backend, process in runs.items():
        stdout, stderr = process.communicate(timeout=300)
        assert process.returncode == 0 and "OK" in stdout, (backend, stderr[-3000:])


@pytest.mark.parametrize(
    "layer, shape",
    [
        (BlurPool3D(4, (2, 1, 3), "reflect"), (2, 5, 6, 7, 3)),
        (BlurPool3D(3, 2, "replicate", data_format="channels_first"), (1, 2, 5, 4, 6)),
        (BlurUpSampling2D((2, 3), 4, "reflect"), (2, 4, 5, 3)),
        (BlurUpSampling2D(3, 5, "zero", "channels_first"), (1, 2, 3, 4)),
    ],
)
def test_gradient_is_the_adjoint(layer, shape):
    # Both layers are linear maps A: the input gradient of <A x, g> is
    # A^T g, so <A^T g, x> must equal <g, A x> for random x and g.
    tf = pytest.importorskip("tensorflow")
    if keras.backend.backend() != "tensorflow":
        pytest.skip("uses tf.GradientTape")
    x = tf.constant(_rng_input(shape, seed=2), "float64")
    layer = type(layer).from_config({**layer.get_config(), "dtype": "float64"})
    with tf.GradientTape() as tape:
        tape.watch(x)
        y = layer(x)
        g = tf.constant(_rng_input(tuple(y.shape), seed=3), "float64")
        loss = tf.reduce_sum(y * g)
    grad = tape.gradient(loss, x)
    np.testing.assert_allclose(
        tf.reduce_sum(grad * x).numpy(), loss.numpy(), rtol=1e-10
    )

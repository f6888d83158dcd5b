"""AFC's layers equal NumPy implementations of their formulas."""

import keras
import numpy as np
import pytest

from keras_blurpool.layers import AliasFreeLayerNormalization
from keras_blurpool.layers import IdealDownsampling2D
from keras_blurpool.layers import IdealUpsampling2D
from keras_blurpool.layers import LowpassPolynomialActivation
from keras_blurpool.layers import PolynomialActivation
from tests._afc_torch import rect


def _np(x):
    return keras.ops.convert_to_numpy(x)


def _filter(x, mask):
    """NHWC: real(ifft2(fft2 * mask)) per channel, in float64."""
    spectrum = np.fft.fft2(x.astype("float64"), axes=(1, 2))
    return np.real(np.fft.ifft2(spectrum * mask[None, :, :, None], axes=(1, 2)))


def _lowpass(x, cutoff):
    h, w = x.shape[1:3]
    return _filter(x, np.outer(rect(h, cutoff, 0.0), rect(w, cutoff, 0.0)))


def _upsample(x, s):
    b, h, w, c = x.shape
    z = np.zeros((b, h * s, w * s, c))
    z[:, ::s, ::s] = x
    mask = np.outer(rect(h * s, 1 / s, 0.5), rect(w * s, 1 / s, 0.5))
    return _filter(z, mask) * s * s


def _both_formats(layer_cls, x, **kwargs):
    last = _np(layer_cls(data_format="channels_last", **kwargs)(x))
    first = _np(layer_cls(data_format="channels_first", **kwargs)(
        np.transpose(x, (0, 3, 1, 2))))
    np.testing.assert_allclose(np.transpose(first, (0, 2, 3, 1)), last, atol=1e-5)
    return last


@pytest.mark.parametrize("side,strides,cutoff", [(8, 2, None), (12, 2, None),
                                                  (16, 4, 0.25), (10, 2, 0.75)])
def test_ideal_downsampling_is_masked_fft_then_subsampling(side, strides, cutoff):
    x = np.random.default_rng(0).standard_normal((2, side, side, 3)).astype("float32")
    got = _both_formats(IdealDownsampling2D, x, strides=strides, cutoff=cutoff)
    want = _lowpass(x, cutoff or 1 / strides)[:, ::strides, ::strides]
    np.testing.assert_allclose(got, want, atol=1e-5)


@pytest.mark.parametrize("side", [3, 4, 6])
def test_ideal_upsampling_is_zero_insertion_and_reconstruction(side):
    x = np.random.default_rng(1).standard_normal((2, side, side + 2, 3)).astype("float32")
    got = _both_formats(IdealUpsampling2D, x, size=2)
    np.testing.assert_allclose(got, _upsample(x, 2), atol=1e-5)


def test_masks_are_the_authors_nyquist_rule():
    # n % 4 == 0: the edge bins dropped (low-pass) or halved (reconstruction).
    np.testing.assert_array_equal(rect(8, 0.5, 0.0), [1, 1, 0, 0, 0, 0, 0, 1])
    from keras_blurpool.layers.ideal_sampling import lowpass_mask
    from keras_blurpool.layers.ideal_sampling import reconstruction_mask
    for n in (6, 8, 10, 12, 16):
        for cutoff in (0.25, 0.5, 0.75, 1.0):
            if n * cutoff >= 2:
                np.testing.assert_array_equal(lowpass_mask(n, cutoff), rect(n, cutoff, 0.0))
                np.testing.assert_array_equal(reconstruction_mask(n, cutoff), rect(n, cutoff, 0.5))


@pytest.mark.parametrize("upsampling", [1, 2])
def test_polynomial_activation(upsampling):
    rng = np.random.default_rng(2)
    x = rng.standard_normal((2, 6, 6, 4)).astype("float32")
    layer = PolynomialActivation(coefficients=(0.1, 0.5, 0.3), in_scale=7, out_scale=0.5,
                                 train_scale=True, upsampling=upsampling)
    layer.build(x.shape)
    coef = rng.standard_normal((4, 3)).astype("float32")
    layer.coefficient_variable.assign(coef)
    got = _np(layer(x))

    def p(u):
        u = 7 * u
        return 0.5 * (coef[:, 0] + coef[:, 1] * u + coef[:, 2] * u * u)

    want = p(x) if upsampling == 1 else _lowpass(p(_upsample(x, 2)), 0.5)[:, ::2, ::2]
    np.testing.assert_allclose(got, want, rtol=1e-4, atol=1e-3)
    assert {w.name for w in layer.trainable_weights} == {"coefficients", "in_scale", "out_scale"}
    first = PolynomialActivation(coefficients=(0.1, 0.5, 0.3), in_scale=7, out_scale=0.5,
                                 upsampling=upsampling, data_format="channels_first")
    first.build((2, 4, 6, 6))
    first.coefficient_variable.assign(coef)
    np.testing.assert_allclose(
        np.transpose(_np(first(np.transpose(x, (0, 3, 1, 2)))), (0, 2, 3, 1)),
        want, rtol=1e-4, atol=1e-3)


def test_lowpass_polynomial_activation():
    rng = np.random.default_rng(3)
    x = rng.standard_normal((2, 8, 8, 4)).astype("float32")
    got = _both_formats(LowpassPolynomialActivation, x, cutoff=0.75, in_scale=7,
                        out_scale=7, train_scale=True)
    c = (0.0169394634313126, 0.5, 0.3078363963999393)
    u = 7 * x
    want = 7 * (c[0] + c[1] * u + c[2] * u * _lowpass(u, 0.75))
    np.testing.assert_allclose(got, want, rtol=1e-4, atol=1e-3)


def test_alias_free_layer_normalization():
    x = np.random.default_rng(4).standard_normal((2, 5, 6, 3)).astype("float32") * 3 + 1
    got = _both_formats(AliasFreeLayerNormalization, x)
    mu = x.mean(-1, keepdims=True)
    var = ((x - mu) ** 2).mean((1, 2, 3), keepdims=True)
    np.testing.assert_allclose(got, (x - mu) / np.sqrt(var + 1e-6), atol=1e-5)


@pytest.mark.parametrize("make,shape,match", [
    (lambda: IdealDownsampling2D(2), (1, 7, 8, 3), "multiples of strides=2"),
    (lambda: IdealDownsampling2D(4, cutoff=0.25), (1, 4, 4, 3), "needs at least 8"),
    (lambda: IdealUpsampling2D(2), (1, 1, 4, 3), "at least 2"),
    (lambda: LowpassPolynomialActivation(0.5), (1, 2, 8, 3), "at least 4"),
    (lambda: IdealDownsampling2D(2), (1, None, 8, 3), "known height"),
])
def test_bad_sizes_are_refused_early(make, shape, match):
    with pytest.raises(ValueError, match=match) as info:
        make().build(shape)
    assert "Received" in str(info.value)


@pytest.mark.parametrize("make,match", [
    (lambda: IdealDownsampling2D(0), "strides"),
    (lambda: IdealDownsampling2D(2, cutoff=1.5), "cutoff"),
    (lambda: PolynomialActivation(coefficients=(1, 2)), "coefficients"),
    (lambda: PolynomialActivation(in_scale=0), "in_scale"),
    (lambda: AliasFreeLayerNormalization(epsilon=-1), "epsilon"),
])
def test_bad_arguments_are_refused(make, match):
    with pytest.raises(ValueError, match=f"{match}.*Received"):
        make()


def test_configs_round_trip():
    for layer in (IdealDownsampling2D(4, cutoff=0.25), IdealUpsampling2D(2),
                  PolynomialActivation(in_scale=7, out_scale=7, train_scale=True, upsampling=2),
                  LowpassPolynomialActivation(0.75), AliasFreeLayerNormalization()):
        clone = type(layer).from_config(layer.get_config())
        assert clone.get_config() == layer.get_config()

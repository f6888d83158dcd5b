"""`antialias_model(unet, "aps"|"lps")` pairs a U-Net's upsamplers with
their encoder's downsamplers: the rewritten model is exactly equivariant
to circular shifts of its input."""

import os

import keras
import numpy as np
import pytest

from keras_blurpool import APSUpSampling2D
from keras_blurpool import antialias_model

SIZE = 32
# Every shift of an 8x8 grid and a few large ones.
SHIFTS = [(dy, dx) for dy in range(8) for dx in range(8)] + [
    (13, 27), (31, 1), (16, 16), (25, 9),
]


def build_unet(up="upsampling", seed=0):
    """Two levels, built the ordinary way: "same" convs, MaxPooling2D(2),
    UpSampling2D(2) (or Conv2DTranspose(strides=2)), Concatenate skips."""
    keras.utils.set_random_seed(seed)

    def block(x, filters, name):
        return keras.layers.Conv2D(
            filters, 3, padding="same", activation="relu", name=name
        )(x)

    def upsample(x, filters, name):
        if up == "upsampling":
            return keras.layers.UpSampling2D(2, name=name)(x)
        return keras.layers.Conv2DTranspose(
            filters, 3, strides=2, padding="same", name=name
        )(x)

    inputs = keras.Input((SIZE, SIZE, 3))
    skip1 = block(inputs, 4, "enc1")
    x = keras.layers.MaxPooling2D(2, name="pool1")(skip1)
    skip2 = block(x, 8, "enc2")
    x = keras.layers.MaxPooling2D(2, name="pool2")(skip2)
    x = block(x, 8, "bottom")
    x = upsample(x, 8, "up2")
    x = keras.layers.Concatenate(name="cat2")([skip2, x])
    x = block(x, 8, "dec2")
    x = upsample(x, 4, "up1")
    x = keras.layers.Concatenate(name="cat1")([skip1, x])
    x = block(x, 4, "dec1")
    outputs = keras.layers.Conv2D(2, 1, name="logits")(x)
    return keras.Model(inputs, outputs, name="unet")


def equivariance_errors(model, shifts=SHIFTS):
    """Per shift, max |model(roll(x)) - roll(model(x))| / max |model(x)|,
    all shifts in one batch."""
    image = np.random.default_rng(1).uniform(-1, 1, (SIZE, SIZE, 3))
    batch = np.stack(
        [image] + [np.roll(image, s, axis=(0, 1)) for s in shifts]
    ).astype("float32")
    outputs = model.predict(batch, batch_size=len(batch), verbose=0)
    reference = outputs[0]
    scale = np.abs(reference).max()
    assert scale > 0
    return np.array([
        np.abs(out - np.roll(reference, s, axis=(0, 1))).max() / scale
        for s, out in zip(shifts, outputs[1:])
    ])


def test_aps_unet_is_exactly_equivariant_and_names_its_pairs(tmp_path):
    unet = build_unet()
    # The control: the original moves by more than a shift.
    assert equivariance_errors(unet).max() > 1e-2
    model, report = antialias_model(unet, "aps", return_report=True)
    assert report.not_invariant == {}
    assert report.paired == {"up2": "pool2", "up1": "pool1"}
    assert report.replaced["upsampling"] == ["up2", "up1"]
    assert isinstance(model.get_layer("up1"), APSUpSampling2D)
    assert model.get_layer("up1").filter_size == 3  # the surgery's blur
    errors = equivariance_errors(model)
    assert errors.max() <= 1e-5, errors.max()
    # The .keras file round-trips.
    path = os.path.join(tmp_path, "aps_unet.keras")
    model.save(path)
    loaded = keras.saving.load_model(path)
    x = np.random.default_rng(2).uniform(-1, 1, (2, SIZE, SIZE, 3))
    np.testing.assert_allclose(
        loaded.predict(x, verbose=0), model.predict(x, verbose=0),
        rtol=1e-6, atol=1e-6,
    )


def test_lps_unet_is_exactly_equivariant_at_inference():
    model, report = antialias_model(build_unet(), "lps", return_report=True)
    assert report.not_invariant == {}
    assert report.paired == {"up2": "pool2", "up1": "pool1"}
    errors = equivariance_errors(model, SHIFTS[::4])
    assert errors.max() <= 1e-5, errors.max()


def test_conv_transpose_unet_is_exactly_equivariant(tmp_path):
    unet = build_unet(up="transpose")
    assert equivariance_errors(unet).max() > 1e-2
    model, report = antialias_model(unet, "aps", return_report=True)
    assert report.not_invariant == {}
    assert report.paired == {"up2": "pool2", "up1": "pool1"}
    assert "up1" in report.circular
    # Weights and layer names kept: the original's weights file loads.
    assert model.count_params() == unet.count_params()
    path = os.path.join(tmp_path, "unet.weights.h5")
    unet.save_weights(path)
    fresh = antialias_model(build_unet(up="transpose", seed=9), "aps")
    fresh.load_weights(path)
    x = np.random.default_rng(6).uniform(-1, 1, (1, SIZE, SIZE, 3))
    np.testing.assert_allclose(
        fresh.predict(x, verbose=0), model.predict(x, verbose=0),
        rtol=1e-6, atol=1e-6,
    )
    errors = equivariance_errors(model)
    assert errors.max() <= 1e-5, errors.max()


@pytest.mark.parametrize("kernel, padding", [(3, "same"), (4, "same"),
                                             (2, "valid"), (1, "same")])
def test_paired_conv_transpose_is_the_original_on_a_periodic_input(
    kernel, padding
):
    # With index 0 the rewrite (placement, circular padding, stride-1
    # transposed conv, crop) is the original layer run on the periodic
    # extension of its input: the original on 3x3 tiles, centre crop.
    keras.utils.set_random_seed(3)
    inputs = keras.Input((16, 16, 3))
    x = keras.layers.MaxPooling2D(2, name="pool")(inputs)
    x = keras.layers.Conv2DTranspose(
        5, kernel, strides=2, padding=padding, name="up"
    )(x)
    original = keras.Model(inputs, x)
    model, report = antialias_model(original, "aps", return_report=True)
    assert report.paired == {"up": "pool"}
    n = 8
    low = np.random.default_rng(4).normal(size=(2, n, n, 3)).astype("float32")
    y = model.get_layer("up_aps_up")(low, np.zeros(2, "int32"))
    if kernel > 1:
        y = model.get_layer("up_pad")(y)
    y = model.get_layer("up")(y)
    if kernel > 1:
        y = model.get_layer("up_crop")(y)
    tiled = np.tile(low, (1, 3, 3, 1))
    expected = original.get_layer("up")(tiled)
    expected = keras.ops.convert_to_numpy(expected)[:, 2 * n:4 * n, 2 * n:4 * n]
    np.testing.assert_allclose(
        keras.ops.convert_to_numpy(y), expected, rtol=1e-5, atol=1e-5
    )


def test_upsamplers_without_a_partner_stay_reported():
    keras.utils.set_random_seed(5)
    # Nothing subsampled before it: no choice to undo.
    inputs = keras.Input((16, 16, 3))
    x = keras.layers.UpSampling2D(2, name="sr_up")(inputs)
    x = keras.layers.Conv2D(4, 3, padding="same", name="conv")(x)
    x = keras.layers.MaxPooling2D(2, name="pool")(x)
    with pytest.warns(UserWarning, match="sr_up"):
        _, report = antialias_model(
            keras.Model(inputs, x), "aps", return_report=True
        )
    assert report.paired == {}
    assert list(report.not_invariant) == ["sr_up"]
    assert "no downsampler subsampled" in report.not_invariant["sr_up"]
    # Its last downsampler has strides 2, not 4.
    inputs = keras.Input((16, 16, 3))
    x = keras.layers.MaxPooling2D(2, name="pool")(inputs)
    x = keras.layers.UpSampling2D(4, name="up4")(x)
    with pytest.warns(UserWarning, match="up4"):
        _, report = antialias_model(
            keras.Model(inputs, x), "aps", return_report=True
        )
    assert report.paired == {}
    assert list(report.not_invariant) == ["up4"]
    assert "'pool' had strides (2, 2)" in report.not_invariant["up4"]


def test_encoder_decoder_without_skips_is_paired_too():
    # The rule needs no merge: the upsampler undoes its input's last
    # subsampling, skip or not (a Sequential autoencoder).
    keras.utils.set_random_seed(7)
    model = keras.Sequential([
        keras.Input((SIZE, SIZE, 3)),
        keras.layers.Conv2D(4, 3, padding="same", activation="relu",
                            name="enc"),
        keras.layers.MaxPooling2D(2, name="pool"),
        keras.layers.Conv2D(4, 3, padding="same", activation="relu",
                            name="mid"),
        keras.layers.UpSampling2D(2, interpolation="bilinear", name="up"),
        keras.layers.Conv2D(3, 3, padding="same", name="dec"),
    ])
    assert equivariance_errors(model).max() > 1e-2
    new, report = antialias_model(model, "aps", return_report=True)
    # A Sequential cannot pass the index: the result is Functional.
    assert not isinstance(new, keras.Sequential)
    assert new.name == model.name
    assert report.paired == {"up": "pool"} and report.not_invariant == {}
    errors = equivariance_errors(new)
    assert errors.max() <= 1e-5, errors.max()


@pytest.mark.parametrize("kernel, dilation", [(3, 1), (4, 1), (3, 2), (2, 3)])
def test_stride_one_conv_transpose_becomes_circular(kernel, dilation):
    # A stride-1 "same" Conv2DTranspose keeps the map's size: like a conv,
    # its zero padding becomes circular, so the model stays equivariant
    # and the layer computes the original on the input's periodic
    # extension.
    keras.utils.set_random_seed(11)
    inputs = keras.Input((SIZE, SIZE, 3))
    x = keras.layers.Conv2DTranspose(
        4, kernel, padding="same", dilation_rate=dilation, name="tconv"
    )(inputs)
    original = keras.Model(inputs, x)
    assert equivariance_errors(original).max() > 1e-2
    model, report = antialias_model(original, "aps", return_report=True)
    assert report.not_invariant == {}
    assert "tconv" in report.circular
    assert model.count_params() == original.count_params()
    errors = equivariance_errors(model)
    assert errors.max() <= 1e-5, errors.max()
    image = np.random.default_rng(12).normal(size=(2, SIZE, SIZE, 3))
    expected = original.get_layer("tconv")(
        np.tile(image, (1, 3, 3, 1)).astype("float32")
    )
    expected = keras.ops.convert_to_numpy(expected)[
        :, SIZE:2 * SIZE, SIZE:2 * SIZE
    ]
    np.testing.assert_allclose(
        keras.ops.convert_to_numpy(model(image.astype("float32"))), expected,
        rtol=1e-5, atol=1e-5,
    )

"""Every builder under `keras.config.set_image_data_format("channels_first")`.

A channels_first network holds the same weights as its channels_last
twin (Keras kernels do not depend on the data format, and Keras's
`Flatten` moves channels last before flattening), so with the weights of
the twin it must give the same outputs on the transposed input, and the
reference's state_dicts must load into it and give the reference's logits.
"""

import keras
import numpy as np
import pytest

import keras_blurpool
from keras_blurpool import applications
from tests.conftest import numpy_state_dict
from tests.conftest import randomize_batchnorm


@pytest.fixture(autouse=True)
def _restore_data_format():
    previous = keras.config.image_data_format()
    yield
    keras.config.set_image_data_format(previous)


def _numpy(x):
    return np.asarray(keras.ops.convert_to_numpy(x))


def _randomize_batchnorm(model, seed=0):
    """Non-trivial BatchNorm statistics, so that the BN axis matters."""
    rng = np.random.default_rng(seed)
    for layer in model.layers:
        if isinstance(layer, keras.layers.BatchNormalization):
            n = layer.gamma.shape[0]
            layer.set_weights([
                rng.uniform(0.5, 1.5, n).astype("float32"),
                rng.normal(0, 0.1, n).astype("float32"),
                rng.normal(0, 0.1, n).astype("float32"),
                rng.uniform(0.5, 1.5, n).astype("float32"),
            ])


def _twins(builder, size, **kwargs):
    """The channels_last model and its channels_first twin, same weights."""
    keras.config.set_image_data_format("channels_last")
    last = builder(input_shape=(size, size, 3), **kwargs)
    _randomize_batchnorm(last)
    keras.config.set_image_data_format("channels_first")
    first = builder(input_shape=(3, size, size), **kwargs)
    keras_blurpool.transfer_weights(last, first)
    return last, first


def _assert_close(got, expected, tolerance=1e-5):
    assert got.shape == expected.shape
    rel = np.abs(got - expected).max() / np.abs(expected).max()
    assert rel <= tolerance, f"max |diff| / max |output| = {rel:.3g}"


@pytest.mark.parametrize(
    "builder,size,kwargs",
    [
        (applications.ResNet18, 64, {}),
        (applications.ResNet18, 64, {"antialias": "avg"}),
        (applications.ResNet18, 64, {"antialias": None}),
        (applications.ResNeXt50_32x4d, 64, {"pool_only": False}),
        (applications.VGG11BN, 96, {}),
        (applications.VGG11BN, 96, {"antialias": None}),
        (applications.AlexNet, 96, {}),
        (applications.DenseNet121, 64, {}),
        (applications.MobileNetV2, 64, {}),
        (applications.MobileNetV2, 64, {"antialias": None}),
        (applications.ResNetBlur18, 64, {}),
        (applications.SEResNetAA50D, 72, {}),
    ],
    ids=lambda v: getattr(v, "__name__", None) or str(v),
)
def test_channels_first_equals_channels_last(builder, size, kwargs):
    last, first = _twins(
        builder, size, classes=10, classifier_activation=None, **kwargs
    )
    assert first.input_shape == (None, 3, size, size)
    for layer in first.layers:
        if isinstance(layer, keras.layers.BatchNormalization):
            assert layer.axis in (1, [1], (1,)), layer.name
        if hasattr(layer, "data_format"):
            assert layer.data_format == "channels_first", layer.name
    x = np.random.default_rng(1).standard_normal((2, 3, size, size))
    x = x.astype("float32")
    expected = _numpy(last(x.transpose(0, 2, 3, 1), training=False))
    _assert_close(_numpy(first(x, training=False)), expected)


@pytest.mark.parametrize(
    "builder,pooling",
    [(applications.DenseNet121, None), (applications.VGG11, "max")],
    ids=["DenseNet121-features", "VGG11-max"],
)
def test_headless_channels_first(builder, pooling):
    last, first = _twins(builder, 64, include_top=False, pooling=pooling)
    x = np.random.default_rng(2).standard_normal((1, 3, 64, 64))
    x = x.astype("float32")
    expected = _numpy(last(x.transpose(0, 2, 3, 1), training=False))
    got = _numpy(first(x, training=False))
    if pooling is None:  # a feature map: channels on axis 1
        expected = expected.transpose(0, 3, 1, 2)
    _assert_close(got, expected)


def _reference_logits(torch, torch_model, keras_model, size):
    """Loads the reference's state_dict; returns (keras, torch) logits."""
    randomize_batchnorm(torch, torch_model)
    keras_blurpool.load_torch_weights(keras_model, numpy_state_dict(torch_model))
    x = np.random.default_rng(3).standard_normal((2, 3, size, size))
    x = x.astype("float32")
    with torch.no_grad():
        expected = torch_model(torch.from_numpy(x)).numpy()
    return _numpy(keras_model(x, training=False)), expected


@pytest.mark.parametrize(
    "builder,reference_name,size,kwargs",
    [
        (applications.ResNet18, "resnet18", 64, {}),
        (applications.VGG11, "vgg11", 96, {}),
        (applications.AlexNet, "alexnet", 128, {}),
        (applications.MobileNetV2, "mobilenet_v2", 64, {"filter_size": 3}),
    ],
    ids=["ResNet18", "VGG11", "AlexNet", "MobileNetV2"],
)
def test_reference_state_dict_into_channels_first(
    reference, builder, reference_name, size, kwargs
):
    torch, aa = reference
    torch.manual_seed(0)
    torch_model = getattr(aa, reference_name)(**kwargs)
    keras.config.set_image_data_format("channels_first")
    model = builder(
        input_shape=(3, size, size), classifier_activation=None, **kwargs
    )
    got, expected = _reference_logits(torch, torch_model, model, size)
    _assert_close(got, expected, tolerance=1e-4)
    np.testing.assert_array_equal(got.argmax(-1), expected.argmax(-1))


def test_weight_files_into_channels_first(reference, tmp_path):
    """A channels_last `.weights.h5` and a `.pth` both load by `weights=`."""
    torch, aa = reference
    torch.manual_seed(0)
    torch_model = randomize_batchnorm(torch, aa.alexnet(filter_size=4))
    checkpoint = tmp_path / "alexnet.pth"
    torch.save(torch_model.state_dict(), checkpoint)
    keras.config.set_image_data_format("channels_last")
    last = applications.AlexNet(
        input_shape=(96, 96, 3), classifier_activation=None
    )
    keras_blurpool.load_torch_weights(last, numpy_state_dict(torch_model))
    h5 = str(tmp_path / "alexnet.weights.h5")
    last.save_weights(h5)

    keras.config.set_image_data_format("channels_first")
    x = np.random.default_rng(4).standard_normal((1, 3, 96, 96))
    x = x.astype("float32")
    with torch.no_grad():
        expected = torch_model(torch.from_numpy(x)).numpy()
    for weights in (h5, str(checkpoint)):
        model = applications.AlexNet(
            input_shape=(3, 96, 96), classifier_activation=None,
            weights=weights,
        )
        _assert_close(_numpy(model(x, training=False)), expected, 1e-4)


def test_input_shape_follows_the_data_format():
    keras.config.set_image_data_format("channels_first")
    # (224, 224, 3) reads as 224 channels of 224x3: too small, and said why.
    with pytest.raises(ValueError, match=r"at least 35.*looks like \(height, width, channels"):
        applications.ResNet18(input_shape=(224, 224, 3))
    with pytest.raises(ValueError, match="at least 35"):
        applications.ResNet18(input_shape=(3, 34, 64))
    assert applications.VGG11().input_shape == (None, 3, 224, 224)
    assert applications.MobileNetV2(include_top=False).input_shape == (
        None, 3, None, None)
    keras.config.set_image_data_format("channels_last")
    with pytest.raises(ValueError, match=r"at least 35.*looks like \(channels, height, width"):
        applications.ResNet18(input_shape=(3, 224, 224))

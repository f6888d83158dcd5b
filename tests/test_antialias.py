"""Pluggable anti-aliasing: the marker, the factory, the builders' options."""

import inspect
import zipfile

import keras
import numpy as np
import pytest

import keras_blurpool
from keras_blurpool import AntialiasAvgPool2D
from keras_blurpool import Antialiasing
from keras_blurpool import BlurPool2D
from keras_blurpool import applications
from keras_blurpool import create_antialias
from keras_blurpool import is_antialiasing
from keras_blurpool import register_antialiasing
from keras_blurpool.layers import check_antialias
from tests.conftest import numpy_state_dict
from tests.conftest import randomize_batchnorm
from tests.test_resnet import _as_torchvision


def _numpy(x):
    return np.asarray(keras.ops.convert_to_numpy(x))


# --- the factory ------------------------------------------------------------


def test_factory_outputs():
    blur = create_antialias(
        "blur", filter_size=3, strides=2, pad_type="zero", name="b"
    )
    assert isinstance(blur, BlurPool2D)
    assert (blur.filter_size, blur.strides, blur.pad_type, blur.name) == (
        3, (2, 2), "zero", "b")
    avg = create_antialias("avg", strides=3, name="a")
    assert isinstance(avg, AntialiasAvgPool2D)
    assert (avg.pool_size, avg.strides, avg.padding, avg.name) == (
        (3, 3), (3, 3), "same", "a")
    first = create_antialias("avg", data_format="channels_first")
    assert first.data_format == "channels_first"
    assert create_antialias(None, channels=8, name="x") is None

    calls = []

    def make(channels, strides, name):
        calls.append((channels, strides, name))
        return keras.layers.AveragePooling2D(strides, name=name)

    layer = create_antialias(make, channels=8, strides=2, name="c")
    assert calls == [(8, 2, "c")]
    assert isinstance(layer, keras.layers.AveragePooling2D)
    assert layer.name == "c"


@pytest.mark.parametrize(
    "value", ["max", "Blur", 4, True, BlurPool2D, BlurPool2D()],
    ids=["max", "Blur", "4", "True", "class", "instance"],
)
def test_factory_refuses_bad_antialias(value):
    for call in (
        lambda: check_antialias(value),
        lambda: create_antialias(value),
        lambda: applications.ResNet18(antialias=value),
    ):
        with pytest.raises(ValueError) as info:
            call()
        message = str(info.value)
        assert f"antialias={value!r}" in message
        assert "'blur', 'avg', 'aps', 'lps', None, or a callable" in message


def test_callable_must_return_a_layer():
    with pytest.raises(ValueError, match=r"it returned 'oops' \(of type str\)"):
        create_antialias(lambda c, s, n: "oops", channels=4, name="n")
    with pytest.raises(ValueError, match="returned None"):
        applications.ResNet18(antialias=lambda c, s, n: None)


# --- AntialiasAvgPool2D -----------------------------------------------------


@pytest.mark.parametrize("data_format", ["channels_last", "channels_first"])
def test_avg_pool_equals_torch_ceil_mode(reference, data_format):
    torch, _ = reference
    pool = torch.nn.AvgPool2d(2, ceil_mode=True, count_include_pad=False)
    layer = AntialiasAvgPool2D(data_format=data_format)
    x = np.random.default_rng(0).standard_normal((2, 5, 15, 14))
    x = x.astype("float32")
    expected = pool(torch.from_numpy(x)).numpy()  # (2, 5, 8, 7)
    if data_format == "channels_last":
        got = _numpy(layer(x.transpose(0, 2, 3, 1))).transpose(0, 3, 1, 2)
    else:
        got = _numpy(layer(x))
    assert got.shape == expected.shape == (2, 5, 8, 7)
    np.testing.assert_allclose(got, expected, rtol=1e-6, atol=1e-6)


def test_avg_pool_config_round_trip():
    layer = AntialiasAvgPool2D(strides=3, data_format="channels_first", name="p")
    config = layer.get_config()
    assert config["strides"] == 3 and "pool_size" not in config
    again = AntialiasAvgPool2D.from_config(config)
    assert again.get_config() == config
    restored = keras.saving.deserialize_keras_object(
        keras.saving.serialize_keras_object(layer)
    )
    assert type(restored) is AntialiasAvgPool2D
    assert restored.strides == (3, 3) and restored.data_format == "channels_first"
    with pytest.raises(ValueError, match="strides=0"):
        AntialiasAvgPool2D(strides=0)


def test_old_spellings_are_the_same_objects():
    # Deprecated aliases, kept where the names were exported.
    assert keras_blurpool.AntiAliasAvgPool2D is AntialiasAvgPool2D
    assert keras_blurpool.AntiAliasing is Antialiasing
    assert keras_blurpool.layers.AntiAliasAvgPool2D is AntialiasAvgPool2D
    assert keras_blurpool.layers.AntiAliasing is Antialiasing
    assert not hasattr(keras_blurpool.layers.antialias, "AntiAliasChoice")


def test_avg_pool_saved_under_its_old_name_loads():
    # A `.keras` file written before the rename names the layer
    # "keras_blurpool>AntiAliasAvgPool2D".
    layer = AntialiasAvgPool2D(strides=3, name="p")
    serialized = keras.saving.serialize_keras_object(layer)
    assert serialized["registered_name"] == "keras_blurpool>AntialiasAvgPool2D"
    old = {**serialized, "class_name": "AntiAliasAvgPool2D",
           "registered_name": "keras_blurpool>AntiAliasAvgPool2D"}
    restored = keras.saving.deserialize_keras_object(old)
    assert type(restored) is AntialiasAvgPool2D
    assert restored.get_config() == layer.get_config()
    # Saved again, it takes the new name.
    again = keras.saving.serialize_keras_object(restored)
    assert again["registered_name"] == "keras_blurpool>AntialiasAvgPool2D"


def test_keras_file_saved_under_the_old_name_loads(tmp_path):
    inputs = keras.Input((6, 6, 2))
    model = keras.Model(inputs, AntialiasAvgPool2D(name="pool")(inputs))
    model.save(tmp_path / "new.keras")
    # The same file as written before the rename: its config.json names
    # the old class and registered name.
    with zipfile.ZipFile(tmp_path / "new.keras") as new, zipfile.ZipFile(
        tmp_path / "old.keras", "w"
    ) as old:
        for item in new.infolist():
            data = new.read(item)
            if item.filename == "config.json":
                assert b'"keras_blurpool>AntialiasAvgPool2D"' in data
                data = data.replace(b"AntialiasAvgPool2D", b"AntiAliasAvgPool2D")
            old.writestr(item, data)
    loaded = keras.saving.load_model(tmp_path / "old.keras")
    assert type(loaded.get_layer("pool")) is AntialiasAvgPool2D
    assert loaded.get_config() == model.get_config()
    x = np.arange(72, dtype="float32").reshape(1, 6, 6, 2)
    np.testing.assert_array_equal(_numpy(loaded(x)), _numpy(model(x)))


# --- the marker -------------------------------------------------------------


def test_marker():
    assert is_antialiasing(BlurPool2D())
    assert is_antialiasing(keras_blurpool.BlurPool1D())
    assert is_antialiasing(keras_blurpool.MaxBlurPool2D())
    assert is_antialiasing(AntialiasAvgPool2D())
    assert not is_antialiasing(keras.layers.AveragePooling2D(2))
    assert not is_antialiasing(keras.layers.MaxPooling2D())
    assert not is_antialiasing("BlurPool2D")

    class Own(Antialiasing, keras.layers.Layer):
        pass

    assert is_antialiasing(Own())
    with pytest.raises(ValueError, match="subclass of keras.layers.Layer"):
        register_antialiasing(int)
    with pytest.raises(ValueError, match="subclass of keras.layers.Layer"):
        register_antialiasing(BlurPool2D())


def _third_party_class():
    """A fresh avg-pool layer class that does not know about the marker."""

    class ThirdPartyPool(keras.layers.Layer):
        def call(self, x):
            return keras.ops.average_pool(x, 2, 2, padding="same")

        def compute_output_shape(self, shape):
            return (shape[0], (shape[1] + 1) // 2, (shape[2] + 1) // 2, shape[3])

    return ThirdPartyPool


def test_registered_third_party_layer_is_hidden_for_torchvision_names(
    reference,
):
    """Registration alone makes a new anti-aliasing layer load torchvision
    weights: no edit of the name maps."""
    torch, aa = reference
    torch.manual_seed(0)
    tv = randomize_batchnorm(torch, _as_torchvision(torch, aa.resnet18(filter_size=1)))
    state = numpy_state_dict(tv)
    cls = _third_party_class()

    def build():
        return applications.ResNet18(
            antialias=lambda channels, strides, name: cls(name=name),
            input_shape=(64, 64, 3),
        )

    unregistered = build()
    assert not any(is_antialiasing(layer) for layer in unregistered.layers)
    with pytest.raises(ValueError, match="does not fit"):
        keras_blurpool.load_torch_weights(unregistered, state)

    assert register_antialiasing(cls) is cls
    assert is_antialiasing(cls()) and is_antialiasing(type("Sub", (cls,), {})())
    model = build()
    blur_layers = [layer for layer in model.layers if layer.name.endswith("_blur")]
    assert len(blur_layers) == 7 and all(type(layer) is cls for layer in blur_layers)
    keras_blurpool.load_torch_weights(model, state)
    plain = keras_blurpool.load_torch_weights(
        applications.ResNet18(antialias=None), state
    )
    assert _numpy(model.get_layer("conv1_conv").kernel).tobytes() == _numpy(
        plain.get_layer("conv1_conv").kernel).tobytes()


# --- the builders -------------------------------------------------------------


def _avg_reference(torch, aa, **kwargs):
    """The reference's ResNet-18 with every BlurPool an average pool."""
    model = aa.resnet18(filter_size=4, **kwargs)
    for name, module in list(model.named_modules()):
        for child_name, child in list(module.named_children()):
            if isinstance(child, aa.BlurPool):
                setattr(module, child_name, torch.nn.AvgPool2d(
                    2, stride=2, ceil_mode=True, count_include_pad=False))
    return randomize_batchnorm(torch, model)


@pytest.mark.parametrize("pool_only", [True, False])
def test_avg_resnet18_equals_torch_avg_pool_placement(reference, pool_only):
    torch, aa = reference
    torch.manual_seed(0)
    torch_model = _avg_reference(torch, aa, pool_only=pool_only)
    state = numpy_state_dict(torch_model)
    assert not any(key.endswith(".filt") for key in state)
    model = applications.ResNet18(
        antialias="avg", pool_only=pool_only, input_shape=(72, 72, 3),
        classifier_activation=None,
    )
    names = {layer.name for layer in model.layers if isinstance(layer, AntialiasAvgPool2D)}
    assert names == {
        "pool1_blur", "conv3_block1_2_blur", "conv3_block1_0_blur",
        "conv4_block1_2_blur", "conv4_block1_0_blur",
        "conv5_block1_2_blur", "conv5_block1_0_blur",
    } | (set() if pool_only else {"conv1_blur"})
    keras_blurpool.load_torch_weights(model, state)
    # 72 px: stage 4 and 5 average odd maps (ceil mode, padding excluded).
    x = np.random.default_rng(0).standard_normal((2, 3, 72, 72))
    x = x.astype("float32")
    with torch.no_grad():
        expected = torch_model(torch.from_numpy(x)).numpy()
    got = _numpy(model(x.transpose(0, 2, 3, 1), training=False))
    rel = np.abs(got - expected).max() / np.abs(expected).max()
    assert rel < 1e-4, rel


def test_torchvision_weights_into_avg_resnet18(reference):
    torch, aa = reference
    torch.manual_seed(0)
    tv = randomize_batchnorm(torch, _as_torchvision(torch, aa.resnet18(filter_size=1)))
    state = numpy_state_dict(tv)
    avg = keras_blurpool.load_torch_weights(
        applications.ResNet18(antialias="avg"), state
    )
    plain = keras_blurpool.load_torch_weights(
        applications.ResNet18(antialias=None), state
    )
    by_path = {w.path: _numpy(w) for w in avg.weights}
    assert len(by_path) == len(plain.weights)
    for w in plain.weights:
        np.testing.assert_array_equal(by_path[w.path], _numpy(w))


def _zero_padded_reference(torch, aa):
    model = aa.resnet18(filter_size=4)
    for module in model.modules():
        if isinstance(module, aa.BlurPool):
            module.pad = torch.nn.ZeroPad2d(module.pad_sizes)
    return randomize_batchnorm(torch, model)


def test_zero_padded_resnet18_on_cifar_sizes(reference):
    with pytest.raises(ValueError) as info:
        applications.ResNet18(input_shape=(32, 32, 3))
    message = str(info.value)
    assert "at least 35" in message and "pad_type='zero'" in message
    for pad_type in ("zero", "replicate"):
        applications.ResNet18(input_shape=(32, 32, 3), pad_type=pad_type)

    torch, aa = reference
    torch.manual_seed(0)
    torch_model = _zero_padded_reference(torch, aa)
    model = applications.ResNet18(
        input_shape=(32, 32, 3), pad_type="zero", classes=1000,
        classifier_activation=None,
    )
    keras_blurpool.load_torch_weights(model, numpy_state_dict(torch_model))
    x = np.random.default_rng(0).standard_normal((2, 3, 32, 32))
    x = x.astype("float32")
    with torch.no_grad():
        expected = torch_model(torch.from_numpy(x)).numpy()
    got = _numpy(model(x.transpose(0, 2, 3, 1), training=False))
    rel = np.abs(got - expected).max() / np.abs(expected).max()
    assert rel < 1e-4, rel


def test_minimum_sizes_follow_the_padding():
    # The last blur of DenseNet/MobileNet sees ceil(size / 16) pixels.
    with pytest.raises(ValueError, match="at least 49"):
        applications.MobileNetV2(filter_size=7, input_shape=(48, 48, 3))
    applications.MobileNetV2(
        filter_size=7, pad_type="zero", input_shape=(32, 32, 3)
    )
    applications.DenseNet121(
        filter_size=7, antialias="avg", input_shape=(32, 32, 3)
    )
    with pytest.raises(ValueError, match="at least 64"):
        applications.VGG11(include_top=False, input_shape=(63, 63, 3))
    applications.VGG11(include_top=False, pad_type="repl", input_shape=(32, 32, 3))
    with pytest.raises(ValueError, match="at least 32"):
        applications.VGG11(include_top=False, pad_type="zero", input_shape=(31, 31, 3))


_FAMILIES = [
    (applications.ResNet18, {}),
    (applications.ResNet50, {}),
    (applications.VGG11BN, {}),
    (applications.AlexNet, {}),
    (applications.DenseNet121, {}),
    (applications.MobileNetV2, {}),
]


@pytest.mark.parametrize(
    "builder,kwargs", _FAMILIES, ids=[b.__name__ for b, _ in _FAMILIES]
)
def test_every_family_takes_every_antialias(builder, kwargs):
    weighted = None
    for antialias, kind in (("blur", BlurPool2D), ("avg", AntialiasAvgPool2D),
                            (None, None)):
        model = builder(antialias=antialias, pad_type="zero", **kwargs)
        marked = [layer for layer in model.layers if is_antialiasing(layer)]
        named = [layer for layer in model.layers if layer.name.endswith("_blur")]
        assert marked == named
        if kind is None:
            assert not marked
        else:
            assert marked and all(type(layer) is kind for layer in marked)
        names = {layer.name for layer in model.layers if layer.weights}
        assert weighted is None or names == weighted
        weighted = names
    # filter_size=None is an alias of antialias=None.
    plain = builder(filter_size=None, **kwargs)
    assert not any(is_antialiasing(layer) for layer in plain.layers)


def test_every_builder_has_the_options():
    # The reference's and timm's architectures; the alias-free ConvNeXts
    # have no anti-aliasing options (their filters are part of the design).
    builders = [getattr(applications, name) for name in dir(applications)
                if name[0].isupper()
                and getattr(getattr(applications, name), "afc_variant",
                            None) is None]
    assert len(builders) == 23 + 11  # the reference's, then timm's
    for builder in builders:
        parameters = inspect.signature(builder).parameters
        # timm's `aa` networks default to their released average pool.
        released = "avg" if "AA" in builder.__name__ else "blur"
        assert parameters["antialias"].default == released, builder.__name__
        assert parameters["pad_type"].default == "reflect", builder.__name__


@pytest.mark.parametrize("kwargs,expected", [
    ({"pad_type": "wrap"}, "pad_type='wrap'"),
    ({"antialias": "avg", "filter_size": None},
     "antialias='avg', filter_size=None"),
    ({"weights": "imagenet", "antialias": "avg"},
     "the released ImageNet weights are for antialias='blur', "
     "pad_type='reflect'. Received: antialias='avg'"),
    ({"weights": "imagenet", "pad_type": "zero"}, "pad_type='zero'"),
    ({"weights": "imagenet", "antialias": None}, "needs an antialiased network"),
])
def test_builder_argument_errors(kwargs, expected):
    for builder in (applications.ResNet18, applications.VGG11,
                    applications.DenseNet121):
        with pytest.raises(ValueError) as info:
            builder(**kwargs)
        assert expected in str(info.value), builder.__name__


def test_avg_model_round_trips_through_a_keras_file(tmp_path):
    model = applications.ResNet18(
        antialias="avg", input_shape=(64, 64, 3), classes=5
    )
    path = tmp_path / "avg.keras"
    model.save(path)
    loaded = keras.saving.load_model(path)
    assert isinstance(loaded.get_layer("pool1_blur"), AntialiasAvgPool2D)
    x = np.random.default_rng(0).standard_normal((1, 64, 64, 3))
    x = x.astype("float32")
    np.testing.assert_allclose(_numpy(loaded(x)), _numpy(model(x)), atol=1e-6)

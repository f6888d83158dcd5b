"""Behaviour shared by every builder, the loader's errors, ImageNet utils."""

import keras
import numpy as np
import pytest

import keras_blurpool
from keras_blurpool import applications
from keras_blurpool.applications import decode_predictions
from keras_blurpool.applications import preprocess_input
from tests.conftest import numpy_state_dict
from tests.conftest import randomize_batchnorm


def test_keras_file_round_trip_of_a_whole_model(tmp_path):
    model = applications.ResNet18(input_shape=(64, 64, 3), classes=7)
    x = np.random.default_rng(0).standard_normal((2, 64, 64, 3)).astype("float32")
    path = tmp_path / "resnet18.keras"
    model.save(path)
    loaded = keras.saving.load_model(path)
    np.testing.assert_allclose(keras.ops.convert_to_numpy(loaded(x)),
                               keras.ops.convert_to_numpy(model(x)), atol=1e-6)


def test_weights_h5_path(tmp_path):
    model = applications.MobileNetV2(input_shape=(64, 64, 3), classes=5)
    path = str(tmp_path / "m.weights.h5")
    model.save_weights(path)
    again = applications.MobileNetV2(input_shape=(64, 64, 3), classes=5,
                                     weights=path)
    x = np.ones((1, 64, 64, 3), "float32")
    np.testing.assert_allclose(keras.ops.convert_to_numpy(again(x)),
                               keras.ops.convert_to_numpy(model(x)))


def test_mixed_float16_build():
    keras.mixed_precision.set_global_policy("mixed_float16")
    try:
        model = applications.ResNet18(input_shape=(64, 64, 3), classes=10)
        out = model(np.ones((1, 64, 64, 3), "float32"))
    finally:
        keras.mixed_precision.set_global_policy("float32")
    assert model.get_layer("conv1_conv").compute_dtype == "float16"
    # The softmax head stays float32 only if asked; the output is finite.
    assert np.isfinite(keras.ops.convert_to_numpy(out).astype("float32")).all()


@pytest.mark.parametrize("kwargs,argument", [
    ({"filter_size": 8}, "filter_size=8"),
    ({"filter_size": 0}, "filter_size=0"),
    ({"filter_size": "4"}, "filter_size='4'"),
    ({"pooling": "mean", "include_top": False}, "pooling='mean'"),
    ({"classes": 0}, "classes=0"),
    ({"weights": "imagenet21k"}, "weights='imagenet21k'"),
    ({"weights": "/nonexistent/x.weights.h5"}, "weights='/nonexistent/x.weights.h5'"),
    ({"weights": "imagenet", "input_shape": (224, 224, 4)}, "input_shape=(224, 224, 4)"),
])
def test_bad_builder_arguments(kwargs, argument):
    with pytest.raises(ValueError) as info:
        applications.ResNet18(**kwargs)
    assert argument in str(info.value)


def test_loader_lists_every_problem_and_loads_nothing(reference):
    torch, aa = reference
    state = numpy_state_dict(randomize_batchnorm(torch, aa.resnet18(filter_size=4)))
    model = applications.ResNet18(filter_size=4)
    before = [w.numpy().copy() for w in model.weights]
    broken = dict(state)
    broken["layer9.0.conv1.weight"] = np.zeros(3)
    del broken["layer1.0.bn1.running_mean"]
    broken["fc.weight"] = broken["fc.weight"][:10]
    with pytest.raises(ValueError) as info:
        keras_blurpool.load_torch_weights(model, broken)
    message = str(info.value)
    assert "unexpected key 'layer9.0.conv1.weight'" in message
    assert "missing key 'layer1.0.bn1.running_mean'" in message
    assert "'fc.weight' has shape (10, 512)" in message
    assert "nothing was loaded" in message
    for w, b in zip(model.weights, before):
        np.testing.assert_array_equal(w.numpy(), b)


def test_loader_rejects_other_filter_size(reference):
    _, aa = reference
    state = numpy_state_dict(aa.resnet18(filter_size=5))
    with pytest.raises(ValueError, match="filter_size=5"):
        keras_blurpool.load_torch_weights(applications.ResNet18(filter_size=4),
                                          state)


def test_loader_rejects_non_mapping_and_foreign_models():
    with pytest.raises(ValueError, match="mapping"):
        keras_blurpool.load_torch_weights(applications.ResNet18(), [1, 2])
    foreign = keras.Sequential([keras.Input((8, 8, 3)), keras.layers.Conv2D(2, 3)])
    with pytest.raises(ValueError, match="not an architecture"):
        keras_blurpool.load_torch_weights(foreign, {})


def test_preprocess_input_matches_reference_normalisation():
    images = np.random.default_rng(0).integers(0, 256, (2, 5, 5, 3)).astype("uint8")
    mean = np.array([0.485, 0.456, 0.406])
    std = np.array([0.229, 0.224, 0.225])
    expected = (images / 255.0 - mean) / std
    np.testing.assert_allclose(preprocess_input(images), expected, atol=1e-5)
    first = preprocess_input(images.transpose(0, 3, 1, 2), "channels_first")
    np.testing.assert_allclose(first, expected.transpose(0, 3, 1, 2), atol=1e-5)
    tensor = preprocess_input(keras.ops.convert_to_tensor(images))
    np.testing.assert_allclose(keras.ops.convert_to_numpy(tensor), expected, atol=1e-5)
    with pytest.raises(ValueError, match="3 RGB channels"):
        preprocess_input(np.zeros((1, 4, 4, 4)))


def test_decode_predictions():
    preds = np.zeros((2, 1000), "float32")
    preds[0, [0, 1, 2]] = [0.2, 0.7, 0.1]
    preds[1, 999] = 1.0
    decoded = decode_predictions(preds, top=2)
    assert decoded[0] == [("n01443537", "goldfish", pytest.approx(0.7)),
                          ("n01440764", "tench", pytest.approx(0.2))]
    assert decoded[1][0][0] == "n15075141"
    with pytest.raises(ValueError, match="shape"):
        decode_predictions(np.zeros((2, 10)))
    with pytest.raises(ValueError, match="top=0"):
        decode_predictions(preds, top=0)


@pytest.mark.parametrize("builder,weights,suggestion", [
    (applications.ResNet18, "imagnet", "'imagenet'"),
    (applications.VGG11, "Imagenet", "'imagenet'"),
    (applications.ResNetAA50D, "sw_in12k_ft_in1", "'sw_in12k_ft_in1k'"),
])
def test_a_weights_typo_suggests_the_closest_value(builder, weights, suggestion):
    with pytest.raises(ValueError) as info:
        builder(weights=weights)
    assert f"Did you mean {suggestion}?" in str(info.value)
    assert f"weights={weights!r}" in str(info.value)
    with pytest.raises(ValueError) as info:
        builder(weights="no_such_thing_at_all")
    assert "Did you mean" not in str(info.value)


def test_default_input_shape_is_keras_applications():
    # 224x224 with the classifier, any size without; channels_first too.
    assert applications.ResNet18().input_shape == (None, 224, 224, 3)
    assert applications.MobileNetV2().input_shape == (None, 224, 224, 3)
    headless = applications.DenseNet121(include_top=False)
    assert headless.input_shape == (None, None, None, 3)
    keras.config.set_image_data_format("channels_first")
    try:
        assert applications.ResNet18().input_shape == (None, 3, 224, 224)
    finally:
        keras.config.set_image_data_format("channels_last")


@pytest.mark.parametrize("builder", [
    applications.ResNet18, applications.VGG11BN, applications.DenseNet121,
    applications.MobileNetV2, applications.AlexNet, applications.ResNetAA50D,
])
def test_any_channel_count_builds_without_weights(builder):
    model = builder(input_shape=(96, 96, 1), include_top=False, pooling="avg")
    out = model(np.ones((2, 96, 96, 1), "float32"))
    assert out.shape[0] == 2
    assert np.isfinite(keras.ops.convert_to_numpy(out)).all()


def test_released_weights_need_three_channels_early():
    # Refused before anything is fetched: no origin is reachable here.
    with pytest.raises(ValueError) as info:
        applications.ResNet18(weights="imagenet", input_shape=(224, 224, 1))
    assert "3 channels" in str(info.value)
    assert "input_shape=(224, 224, 1)" in str(info.value)
    for bad in [(64, 64), (64, 64, 0), (64, 64, None)]:
        with pytest.raises(ValueError, match="input_shape="):
            applications.ResNet18(input_shape=bad)


def test_a_three_channel_checkpoint_into_another_count_is_named(reference):
    torch, aa = reference
    state = numpy_state_dict(aa.resnet18(filter_size=4))
    model = applications.ResNet18(input_shape=(64, 64, 1), classes=1000)
    with pytest.raises(ValueError) as info:
        keras_blurpool.load_torch_weights(model, state)
    assert "'conv1.weight' has shape (64, 3, 7, 7)" in str(info.value)


def test_preprocess_input_follows_the_image_data_format():
    images = np.random.default_rng(1).integers(0, 256, (1, 3, 4, 4)).astype("uint8")
    keras.config.set_image_data_format("channels_first")
    try:
        first = preprocess_input(images)
    finally:
        keras.config.set_image_data_format("channels_last")
    expected = preprocess_input(images.transpose(0, 2, 3, 1)).transpose(0, 3, 1, 2)
    np.testing.assert_allclose(first, expected, atol=1e-6)

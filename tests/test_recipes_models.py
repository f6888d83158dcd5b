"""Tests of the architectures table, `recipes/models.py`."""

import keras
import numpy as np
import pytest

from recipes import config as config_lib
from recipes import models


def test_architectures_table_and_unknown_arch():
    expected = {
        "alexnet", "resnet18", "resnet34", "resnet50", "resnet101",
        "resnet152", "resnext50_32x4d", "resnext101_32x8d",
        "wide_resnet50_2", "wide_resnet101_2", "densenet121",
        "densenet161", "densenet169", "densenet201", "mobilenet_v2", "demo",
    } | {f"vgg{d}{bn}" for d in (11, 13, 16, 19) for bn in ("", "_bn")} | {
        "resnetblur18", "resnetblur50", "resnetblur50d", "resnetblur101d",
        "resnetaa34d", "resnetaa50", "resnetaa50d", "resnetaa101d",
        "seresnetaa50d", "seresnextaa101d_32x8d", "seresnextaa201d_32x8d",
    } | {"convnext_afc_tiny", "convnext_circular_tiny", "convnext_aps_tiny"}
    assert set(models.ARCHITECTURES) == expected
    assert set(config_lib.RECIPES) == expected
    with pytest.raises(ValueError, match="arch='resnet51'.*resnet50"):
        models.build_model("resnet51", 4)
    with pytest.raises(ValueError, match="filter_size=9"):
        models.build_model("demo", 9, num_classes=10, image_size=32)


def test_demo_cnn_twins_and_logits():
    plain = models.build_model("demo", None, num_classes=10, image_size=32)
    blurred = models.build_model("demo", 4, num_classes=10, image_size=32)
    assert not any("blur" in type(layer).__name__.lower() for layer in plain.layers)
    assert sum(
        type(layer).__name__ in ("BlurPool2D", "MaxBlurPool2D")
        for layer in blurred.layers
    ) == 3
    assert [w.path for w in plain.weights] == [w.path for w in blurred.weights]
    assert blurred.output_shape == (None, 10)
    # Logits, not probabilities.
    x = np.random.default_rng(0).standard_normal((2, 32, 32, 3)).astype("float32")
    out = np.asarray(blurred(x))
    assert not np.allclose(out.sum(-1), 1.0)
    zoo = models.build_model("resnet18", None, num_classes=3, image_size=None)
    assert zoo.layers[-1].activation is keras.activations.linear


@pytest.mark.parametrize("antialias", ["aps", "lps"])
def test_demo_cnn_polyphase_twin_is_circularly_invariant(antialias):
    keras.utils.set_random_seed(0)
    model = models.build_model("demo", 4, num_classes=10, image_size=32,
                               antialias=antialias)
    plain = models.build_model("demo", None, num_classes=10, image_size=32)
    assert model.name == f"demo_cnn_{antialias}4"
    kind = {"aps": "APSPool2D", "lps": "LPSPool2D"}[antialias]
    assert [type(layer).__name__ for layer in model.layers].count(kind) == 3
    # The same trainable convolutions as the plain CNN (LPS adds scorers).
    conv_paths = [w.path for w in plain.weights]
    assert all(path in [w.path for w in model.weights] for path in conv_paths)
    image = np.random.default_rng(0).uniform(0, 1, (32, 32, 3))
    batch = np.stack([np.roll(image, (a, b), axis=(0, 1))
                      for a in range(32) for b in range(32)]).astype("float32")
    logits = np.asarray(model.predict(batch, batch_size=256, verbose=0))
    assert np.abs(logits - logits[0]).max() <= 1e-5 * np.abs(logits[0]).max()
    with pytest.raises(ValueError, match="antialias='max'"):
        models.build_model("demo", 4, image_size=32, antialias="max")
    with pytest.raises(ValueError, match="BlurPool and zero padding only"):
        models.build_model("keras.MobileNetV2", 4, image_size=64,
                           antialias="aps")
    zoo = models.build_model("resnet18", 2, num_classes=3, image_size=64,
                             antialias="aps", padding="circular")
    assert any(type(layer).__name__ == "CircularPadding2D"
               for layer in zoo.layers)


def test_keras_application_arch_is_antialiased_by_surgery():
    plain = models.build_model("keras.MobileNetV2", None, num_classes=5, image_size=64)
    blurred = models.build_model("keras.MobileNetV2", 4, num_classes=5, image_size=64)
    assert plain.count_params() == blurred.count_params()
    assert any(layer.name.endswith("_blur") for layer in blurred.layers)
    assert not any(layer.name.endswith("_blur") for layer in plain.layers)
    assert blurred.output.shape == plain.output.shape == (None, 5)
    # PyTorch's BN momentum, as the reference trains (MobileNetV2's own is
    # 0.999), in both twins.
    for model in (plain, blurred):
        momenta = {layer.momentum for layer in model.layers
                   if isinstance(layer, keras.layers.BatchNormalization)}
        assert momenta == {models.KERAS_BN_MOMENTUM} == {0.9}
    assert config_lib.recipe_for("keras.MobileNetV2") == config_lib.recipe_for("resnet50")
    with pytest.raises(ValueError, match="keras.NoSuchNet.*keras.MobileNetV2"):
        models.build_model("keras.NoSuchNet", 4)

"""VGG (with/without BatchNorm) and AlexNet against the PyTorch reference.

The plain networks (`filter_size=None`) are compared with torchvision-
style baselines built from the reference's own modules: every
(MaxPool stride 1, BlurPool) pair becomes a MaxPool of stride 2, which
also moves the `features.N` indices to torchvision's.
"""

import gc
import importlib

import keras
import numpy as np
import pytest

import keras_blurpool
from keras_blurpool import BlurPool2D
from keras_blurpool.applications import VGG11
from keras_blurpool.applications import VGG11BN
from keras_blurpool.applications import VGG13
from keras_blurpool.applications import VGG13BN
from keras_blurpool.applications import VGG16
from keras_blurpool.applications import VGG16BN
from keras_blurpool.applications import VGG19
from keras_blurpool.applications import VGG19BN
from keras_blurpool.applications import AlexNet
from keras_blurpool.applications import alexnet
from keras_blurpool.applications import layer_specs
from keras_blurpool.applications import vgg
from keras_blurpool.applications.arguments import AntialiasSpec
from tests.conftest import assert_same_logits
from tests.conftest import numpy_state_dict
from tests.conftest import randomize_batchnorm

VGG_CFGS = {11: [1, 1, 2, 2, 2], 13: [2, 2, 2, 2, 2], 16: [2, 2, 3, 3, 3],
            19: [2, 2, 4, 4, 4]}
VGG_REFERENCE_CFGS = {11: "A", 13: "B", 16: "D", 19: "E"}


@pytest.fixture(autouse=True)
def _free_memory():
    yield
    keras.backend.clear_session()
    gc.collect()


def trainable_count(model):
    return sum(int(np.prod(w.shape)) for w in model.trainable_weights)


def torch_count(torch_model):
    return sum(p.numel() for p in torch_model.parameters())


def torchvision_baseline(torch, torch_model, relu_after_conv1=False):
    """The reference model turned into its non-antialiased torchvision twin."""
    modules = []
    for module in torch_model.features:
        if type(module).__name__ == "BlurPool":
            pool = modules.pop()
            modules.append(torch.nn.MaxPool2d(pool.kernel_size, stride=2))
        else:
            modules.append(module)
    if relu_after_conv1:
        modules.insert(1, torch.nn.ReLU(inplace=True))
    torch_model.features = torch.nn.Sequential(*modules)
    return torch_model


def reference_model(torch, aa, ref_name, filter_size, **kwargs):
    """The reference network; filter_size=None gives torchvision's."""
    torch.manual_seed(0)
    if filter_size is not None:
        return getattr(aa, ref_name)(filter_size=filter_size, **kwargs)
    if ref_name == "alexnet":
        # pool_only keeps conv1 at stride 4, but lacks torchvision's ReLU.
        model = aa.alexnet(filter_size=1, pool_only=True, **kwargs)
        return torchvision_baseline(torch, model, relu_after_conv1=True)
    model = getattr(aa, ref_name)(filter_size=1, **kwargs)
    return torchvision_baseline(torch, model)


def compare(reference, builder, ref_name, filter_size, size=224, batch=1,
            classes=1000, **kwargs):
    torch, aa = reference
    torch_model = reference_model(
        torch, aa, ref_name, filter_size, num_classes=classes,
        **{k: v for k, v in kwargs.items() if k == "pool_only"},
    )
    model = builder(
        filter_size=filter_size,
        input_shape=(size, size, 3),
        classes=classes,
        classifier_activation=None,
        **kwargs,
    )
    assert trainable_count(model) == torch_count(torch_model)
    assert_same_logits(torch, torch_model, model, size=size, batch=batch)


# --- reference comparisons (default run) -----------------------------------


def test_vgg11_matches_reference(reference):
    compare(reference, VGG11, "vgg11", 4)


def test_vgg11_bn_matches_reference(reference):
    compare(reference, VGG11BN, "vgg11_bn", 3)


def test_alexnet_matches_reference(reference):
    compare(reference, AlexNet, "alexnet", 4, batch=2)


def test_alexnet_pool_only_odd_size_matches_reference(reference):
    # 193 leaves a 5x5 map: adaptive pooling to 6x6 has overlapping bins.
    compare(reference, AlexNet, "alexnet", 5, size=193, batch=2, classes=10,
            pool_only=True)


def test_plain_alexnet_matches_torchvision(reference):
    compare(reference, AlexNet, "alexnet", None, batch=2)


def reference_vgg_features(reference, depth, use_bn, filter_size):
    """Only the reference's `features` (its classifier is costly to build)."""
    torch, _ = reference
    module = importlib.import_module("antialiased_cnns.vgg")
    torch.manual_seed(0)
    features = torch.nn.Sequential()
    features.features = module.make_layers(
        module.cfg[VGG_REFERENCE_CFGS[depth]],
        batch_norm=use_bn,
        filter_size=filter_size,
    )
    return randomize_batchnorm(torch, features)


@pytest.mark.parametrize("pooling", [None, "avg", "max"])
def test_vgg_without_top_matches_reference_features(reference, pooling):
    torch, _ = reference
    torch_model = reference_vgg_features(reference, 11, True, 2)
    model = VGG11BN(include_top=False, pooling=pooling, filter_size=2)
    assert model.input_shape == (None, None, None, 3)
    keras_blurpool.load_torch_weights(model, numpy_state_dict(torch_model))
    x = np.random.default_rng(1).standard_normal((2, 3, 97, 75))
    x = x.astype("float32")
    with torch.no_grad():
        expected = torch_model.features(torch.from_numpy(x)).numpy()
    expected = expected.transpose(0, 2, 3, 1)
    if pooling == "avg":
        expected = expected.mean(axis=(1, 2))
    elif pooling == "max":
        expected = expected.max(axis=(1, 2))
    got = keras.ops.convert_to_numpy(model(x.transpose(0, 2, 3, 1), training=False))
    assert got.shape == expected.shape
    scale = np.abs(expected).max()
    np.testing.assert_allclose(got, expected, rtol=0, atol=1e-4 * scale)


# --- names, structure, arguments --------------------------------------------


def torchvision_vgg_names(depth, use_bn):
    """torchvision's `features.N` of each conv (and BN) of a VGG."""
    names, index = {}, 0
    for block, convs in enumerate(VGG_CFGS[depth], 1):
        for i in range(1, convs + 1):
            names[f"block{block}_conv{i}"] = f"features.{index}"
            if use_bn:
                names[f"block{block}_bn{i}"] = f"features.{index + 1}"
            index += 3 if use_bn else 2
        index += 1  # MaxPool2d
    return names


@pytest.mark.parametrize("depth", [11, 16, 19])
@pytest.mark.parametrize("use_bn", [False, True])
def test_plain_vgg_has_torchvision_names(depth, use_bn):
    builder = {(11, False): VGG11, (16, False): VGG16, (19, False): VGG19,
               (11, True): VGG11BN, (16, True): VGG16BN,
               (19, True): VGG19BN}[depth, use_bn]
    model = builder(include_top=False, filter_size=None)
    assert vgg._torch_names(model) == torchvision_vgg_names(depth, use_bn)
    assert alexnet._torch_names(model) is None
    assert not any(isinstance(layer, BlurPool2D) for layer in model.layers)


def test_antialiased_names_shift_by_blur_layers(reference):
    model = VGG13BN(include_top=False, filter_size=5)
    names = vgg._torch_names(model)
    state_dict = reference_vgg_features(reference, 13, True, 5).state_dict()
    assert set(names.values()) == {k.rsplit(".", 1)[0] for k in state_dict}
    assert names["block1_pool_blur"] == "features.7"
    assert names["block2_conv1"] == "features.8"


def test_alexnet_names():
    plain = alexnet._torch_names(AlexNet(include_top=False, filter_size=None))
    assert plain == {"conv1": "features.0", "conv2": "features.3",
                     "conv3": "features.6", "conv4": "features.8",
                     "conv5": "features.10"}
    blurred = alexnet._torch_names(AlexNet(classes=3, filter_size=3))
    assert blurred["conv1_blur"] == "features.2"
    assert blurred["conv2"] == "features.5"
    assert blurred["pool3_blur"] == "features.16"
    assert blurred["fc1"] == "classifier.1"
    assert blurred["predictions"] == "classifier.6"
    assert vgg._torch_names(AlexNet(include_top=False)) is None


def test_foreign_models_are_not_claimed():
    inputs = keras.Input((32, 32, 3))
    x = keras.layers.Conv2D(4, 3, name="block1_conv1")(inputs)
    x = keras.layers.Conv2D(4, 3, name="conv1")(x)
    model = keras.Model(inputs, x)
    assert vgg._torch_names(model) is None
    assert alexnet._torch_names(model) is None
    # A VGG with an extra weighted layer on top is not a VGG any more.
    base = VGG11(include_top=False, pooling="avg")
    extended = keras.Model(base.input, keras.layers.Dense(3)(base.output))
    assert vgg._torch_names(extended) is None


def test_default_names_and_output_shapes():
    assert VGG16(include_top=False).name == "vgg16"
    assert VGG16BN(include_top=False).name == "vgg16_bn"
    assert VGG13(include_top=False, name="mine").name == "mine"
    model = AlexNet(classes=7)
    assert model.name == "alexnet"
    assert model.input_shape == (None, 224, 224, 3)
    assert model.output_shape == (None, 7)
    assert AlexNet(include_top=False, pooling="max").output_shape == (None, 256)
    assert VGG11(include_top=False, input_shape=(193, 160, 3)).output_shape == (
        None, 6, 5, 512)


def test_minimum_input_size():
    # The reflect padding of the last blur limits how small inputs can be.
    model = VGG11(include_top=False, filter_size=4, input_shape=(64, 64, 3))
    assert model.output_shape == (None, 2, 2, 512)
    with pytest.raises(ValueError, match="at least 64"):
        VGG11(include_top=False, filter_size=4, input_shape=(63, 63, 3))
    with pytest.raises(ValueError, match="at least 32"):
        VGG11(include_top=False, filter_size=None, input_shape=(31, 31, 3))
    with pytest.raises(ValueError, match="at least 95"):
        AlexNet(include_top=False, input_shape=(94, 94, 3))


def test_minimum_input_size_agrees_with_reference(reference):
    torch, aa = reference
    for filter_size in (1, 7):
        for features, spec in (
            (
                reference_vgg_features(reference, 11, False, filter_size),
                vgg._vgg_features(11, False, AntialiasSpec("blur", filter_size)),
            ),
            (
                aa.alexnet(filter_size=filter_size),
                alexnet._alexnet_features(AntialiasSpec("blur", filter_size), False),
            ),
        ):
            features = features.features
            size = layer_specs.min_input_size(spec)
            with torch.no_grad():
                features(torch.zeros(1, 3, size, size))
                with pytest.raises(RuntimeError):
                    features(torch.zeros(1, 3, size - 1, size - 1))


def test_argument_errors():
    with pytest.raises(ValueError, match="input size must be fixed"):
        VGG11(input_shape=(None, None, 3))
    with pytest.raises(ValueError, match="filter_size"):
        VGG16BN(include_top=False, filter_size=8)
    with pytest.raises(ValueError, match="pooling"):
        AlexNet(include_top=False, pooling="sum")
    with pytest.raises(ValueError, match="pool_only"):
        AlexNet(include_top=False, pool_only="yes")


def test_weights_file_and_config_round_trip(tmp_path):
    model = AlexNet(include_top=False, filter_size=2)
    path = str(tmp_path / "alexnet.weights.h5")
    model.save_weights(path)
    again = AlexNet(include_top=False, filter_size=2, weights=path)
    for a, b in zip(model.weights, again.weights):
        np.testing.assert_array_equal(keras.ops.convert_to_numpy(a), keras.ops.convert_to_numpy(b))
    # The whole model, adaptive pooling and BlurPool2D included.
    model = AlexNet(classes=5, input_shape=(127, 127, 3), filter_size=2)
    clone = keras.Model.from_config(model.get_config())
    clone.set_weights(model.get_weights())
    x = np.random.default_rng(0).standard_normal((1, 127, 127, 3))
    np.testing.assert_allclose(
        keras.ops.convert_to_numpy(clone(x)), keras.ops.convert_to_numpy(model(x)), atol=1e-6
    )


def test_files_saved_with_keras_adaptive_pooling_still_load(tmp_path):
    # The head's pool was keras.layers.AdaptiveAveragePooling2D under the
    # same name, without weights: its .weights.h5 files load into today's
    # builders, and its .keras files still load.
    model = AlexNet(classes=5, input_shape=(96, 96, 3))

    def clone(layer):
        if isinstance(layer, keras_blurpool.AdaptiveAvgPool2D):
            return keras.layers.AdaptiveAveragePooling2D(6, name=layer.name)
        return layer.__class__.from_config(layer.get_config())

    old = keras.models.clone_model(model, clone_function=clone)
    assert isinstance(old.get_layer("adaptive_avg_pool"),
                      keras.layers.AdaptiveAveragePooling2D)
    old.set_weights(model.get_weights())
    path = str(tmp_path / "old.weights.h5")
    old.save_weights(path)
    again = AlexNet(classes=5, input_shape=(96, 96, 3), weights=path)
    assert isinstance(again.get_layer("adaptive_avg_pool"),
                      keras_blurpool.AdaptiveAvgPool2D)
    # AlexNet's 2x2 map to 6x6 is right on every backend with Keras's pool.
    x = np.random.default_rng(0).standard_normal((1, 96, 96, 3)).astype("float32")
    expected = keras.ops.convert_to_numpy(old(x))
    np.testing.assert_allclose(keras.ops.convert_to_numpy(again(x)), expected,
                               rtol=1e-6, atol=1e-7)
    old.save(tmp_path / "old.keras")
    loaded = keras.saving.load_model(tmp_path / "old.keras")
    np.testing.assert_allclose(keras.ops.convert_to_numpy(loaded(x)), expected,
                               rtol=1e-6, atol=1e-7)


def test_mixed_float16_build():
    keras.mixed_precision.set_global_policy("mixed_float16")
    try:
        model = VGG11BN(include_top=False, input_shape=(64, 64, 3))
        out = model(np.ones((1, 64, 64, 3), "float32"))
    finally:
        keras.mixed_precision.set_global_policy("float32")
    assert model.get_layer("block1_pool_blur").compute_dtype == "float16"
    assert np.isfinite(keras.ops.convert_to_numpy(out).astype("float32")).all()


# --- whole table (--zoo) ------------------------------------------------------

ZOO = [
    (VGG11, "vgg11", 2, {}),
    (VGG13, "vgg13", 3, {}),
    (VGG16, "vgg16", 4, {}),
    (VGG19, "vgg19", 5, {}),
    (VGG11BN, "vgg11_bn", 6, {}),
    (VGG13BN, "vgg13_bn", 7, {}),
    (VGG16BN, "vgg16_bn", 1, {}),
    (VGG19BN, "vgg19_bn", 4, {}),
    (VGG11, "vgg11", None, {"size": 160}),
    (VGG16, "vgg16", None, {}),
    (VGG13BN, "vgg13_bn", None, {}),
    (AlexNet, "alexnet", 2, {}),
    (AlexNet, "alexnet", 3, {"pool_only": True}),
    (AlexNet, "alexnet", 7, {}),
]


@pytest.mark.zoo
@pytest.mark.parametrize(
    "builder, ref_name, filter_size, kwargs",
    ZOO,
    ids=[f"{r}-f{f}" + "".join(f"-{k}" for k in kw) for _, r, f, kw in ZOO],
)
def test_zoo_matches_reference(
    reference, builder, ref_name, filter_size, kwargs
):
    compare(reference, builder, ref_name, filter_size, **kwargs)

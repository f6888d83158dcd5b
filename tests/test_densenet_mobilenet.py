"""DenseNet and MobileNetV2 against the PyTorch reference."""

import keras
import numpy as np
import pytest

import keras_blurpool
from keras_blurpool.applications import densenet
from keras_blurpool.applications import mobilenet_v2
from tests.conftest import assert_same_logits
from tests.conftest import numpy_state_dict
from tests.conftest import randomize_batchnorm

# Keras builder -> (module, reference function), the whole table.
TABLE = {
    "DenseNet121": (densenet, "densenet121"),
    "DenseNet161": (densenet, "densenet161"),
    "DenseNet169": (densenet, "densenet169"),
    "DenseNet201": (densenet, "densenet201"),
    "MobileNetV2": (mobilenet_v2, "mobilenet_v2"),
}


def _build(builder, **kwargs):
    module, _ = TABLE[builder]
    kwargs.setdefault("input_shape", (None, None, 3))  # any size
    return getattr(module, builder)(classifier_activation=None, **kwargs)


def _reference(torch, aa, builder, filter_size, **kwargs):
    """The reference model; with `filter_size=None`, torchvision's."""
    _, function = TABLE[builder]
    model = getattr(aa, function)(filter_size=filter_size or 1, **kwargs)
    if filter_size is None:
        if builder == "MobileNetV2":
            return _as_torchvision_mobilenet(torch, aa, model)
        return _as_torchvision_densenet(torch, model)
    return model


def _as_torchvision_densenet(torch, model):
    """torchvision's DenseNet: the module names of the weights do not move."""
    nn = torch.nn
    features = model.features
    features.max0 = nn.MaxPool2d(3, stride=2, padding=1)
    features.pool0 = nn.Identity()
    for name, module in features.named_children():
        if name.startswith("transition"):
            module.pool = nn.AvgPool2d(2, stride=2)
    return model


def _as_torchvision_mobilenet(torch, aa, model):
    """torchvision's MobileNetV2, with its module names.

    Stride-2 blocks stride their depthwise conv and lose the blur, so the
    projection moves from `conv.3`/`conv.4` to `conv.2`/`conv.3`; the
    classifier gets its dropout back (`classifier.1`).
    """
    nn = torch.nn
    for block in model.features[1:-1]:
        if block.stride == 2:
            slots = [m for m in block.conv if not isinstance(m, aa.BlurPool)]
            slots[-3][0].stride = (2, 2)  # the depthwise ConvBNReLU
            block.conv = nn.Sequential(*slots)
    model.classifier = nn.Sequential(nn.Dropout(0.2), model.classifier[0])
    return model


def _trainable_params(model):
    return sum(int(np.prod(w.shape)) for w in model.trainable_weights)


def _torch_params(torch_model):
    return sum(p.numel() for p in torch_model.parameters())


@pytest.mark.parametrize(
    "builder, filter_size, batch",
    [
        ("DenseNet121", 4, 1),
        ("MobileNetV2", 3, 2),
        ("DenseNet121", None, 1),
        ("MobileNetV2", None, 2),
    ],
)
def test_matches_reference_at_224(reference, builder, filter_size, batch):
    torch, aa = reference
    torch_model = _reference(torch, aa, builder, filter_size)
    model = _build(builder, filter_size=filter_size)
    assert _trainable_params(model) == _torch_params(torch_model)
    assert_same_logits(torch, torch_model, model, size=224, batch=batch)


def test_mobilenet_v2_other_sizes_and_classes(reference):
    torch, aa = reference
    torch_model = aa.mobilenet_v2(filter_size=5, num_classes=10)
    model = _build("MobileNetV2", filter_size=5, classes=10)
    assert model.output_shape == (None, 10)
    for size in (160, 193):
        assert_same_logits(torch, torch_model, model, size=size, batch=1)


def _load_features(model, torch_model):
    state_dict = numpy_state_dict(torch_model)
    state_dict = {
        k: v for k, v in state_dict.items() if not k.startswith("classifier")
    }
    keras_blurpool.load_torch_weights(model, state_dict)


@pytest.mark.parametrize(
    "builder, filter_size, pool_only, size",
    [("MobileNetV2", 4, True, 193), ("DenseNet121", 2, False, 97)],
)
def test_feature_extractor(reference, builder, filter_size, pool_only, size):
    torch, aa = reference
    kwargs = {} if builder == "MobileNetV2" else {"pool_only": pool_only}
    torch_model = randomize_batchnorm(
        torch, _reference(torch, aa, builder, filter_size, **kwargs)
    )
    x = np.random.default_rng(1).standard_normal((1, 3, size, size))
    x = x.astype("float32")
    with torch.no_grad():
        expected = torch.relu(torch_model.features(torch.from_numpy(x)))
    expected = expected.numpy().transpose(0, 2, 3, 1)
    reductions = {
        None: expected,
        "avg": expected.mean(axis=(1, 2)),
        "max": expected.max(axis=(1, 2)),
    }
    for pooling, want in reductions.items():
        model = _build(
            builder,
            include_top=False,
            pooling=pooling,
            filter_size=filter_size,
            **kwargs,
        )
        _load_features(model, torch_model)
        got = keras.ops.convert_to_numpy(model(x.transpose(0, 2, 3, 1), training=False))
        assert got.shape == want.shape
        np.testing.assert_allclose(got, want, atol=1e-4 * np.abs(want).max())
        if builder == "DenseNet121":
            break  # one head is enough for the costlier network


@pytest.fixture(scope="module")
def small_models():
    """Models that are only inspected, built once."""
    return (
        densenet.DenseNet121(filter_size=3),
        mobilenet_v2.MobileNetV2(filter_size=3, name="renamed"),
    )


def test_layer_names(small_models):
    model, mobile = small_models
    names = {layer.name for layer in model.layers}
    for name in (
        "conv1_conv", "conv1_bn", "pool1_blur", "conv2_block1_0_bn",
        "conv2_block1_1_conv", "conv2_block6_concat", "pool2_bn",
        "pool2_conv", "pool2_blur", "pool4_blur", "conv5_block16_2_conv",
        "bn", "predictions",
    ):
        assert name in names
    assert "conv1_blur" not in names  # pool_only=True
    names = densenet._torch_names(model)
    assert names["conv2_block1_0_bn"] == (
        "features.denseblock1.denselayer1.norm1"
    )
    assert names["conv5_block16_2_conv"] == (
        "features.denseblock4.denselayer16.conv2"
    )
    assert names["pool3_blur"] == "features.transition2.pool"
    assert names["bn"] == "features.norm5"

    names = {layer.name for layer in mobile.layers}
    for name in (
        "Conv1", "bn_Conv1", "expanded_conv_depthwise", "block_1_expand",
        "block_1_depthwise", "block_1_blur", "block_1_project",
        "block_2_add", "block_13_blur", "Conv_1", "Conv_1_bn", "predictions",
    ):
        assert name in names
    assert "block_2_blur" not in names  # stride-1 block
    names = mobilenet_v2._torch_names(mobile)
    assert names["block_1_project_BN"] == "features.2.conv.4"
    assert names["block_2_project_BN"] == "features.3.conv.3"
    assert names["expanded_conv_project"] == "features.1.conv.1"
    assert names["Conv_1"] == "features.18.0"
    assert names["predictions"] == "classifier.0"


def test_plain_names(reference):
    """filter_size=None uses torchvision's names.

    For DenseNet these are the reference's minus its filters, so the plain
    model compared above also loads the reference's state_dict; for
    MobileNetV2 the stride-2 blocks and the classifier shift.
    """
    torch, aa = reference
    plain = _reference(torch, aa, "DenseNet121", None).state_dict()
    antialiased = aa.densenet121(filter_size=4).state_dict()
    assert set(plain) == {k for k in antialiased if not k.endswith(".filt")}
    plain_model = mobilenet_v2.MobileNetV2(filter_size=None)
    names = mobilenet_v2._torch_names(plain_model)
    assert names["block_1_project_BN"] == "features.2.conv.3"
    assert names["block_2_project_BN"] == "features.3.conv.3"
    assert names["predictions"] == "classifier.1"


def test_torch_names_only_for_own_family(small_models):
    dense, mobile = small_models
    small = keras.Sequential(
        [keras.Input((8, 8, 3)), keras.layers.Conv2D(2, 3, name="Conv1")]
    )
    assert densenet._torch_names(mobile) is None
    assert densenet._torch_names(small) is None
    assert mobilenet_v2._torch_names(dense) is None
    assert mobilenet_v2._torch_names(small) is None
    # Recognised by structure, not by model name.
    assert mobilenet_v2._torch_names(mobile)["Conv1"] == "features.0.0"


def test_arguments():
    with pytest.raises(ValueError, match="filter_size"):
        mobilenet_v2.MobileNetV2(filter_size=8)
    with pytest.raises(ValueError, match="pool_only"):
        densenet.DenseNet121(pool_only="no")
    with pytest.raises(ValueError, match="pooling"):
        mobilenet_v2.MobileNetV2(include_top=False, pooling="sum")
    # The last blur reflect-pads a map of ceil(size / 16) by 3 pixels.
    with pytest.raises(ValueError, match="at least 49"):
        mobilenet_v2.MobileNetV2(filter_size=7, input_shape=(48, 48, 3))
    model = mobilenet_v2.MobileNetV2(
        filter_size=7, input_shape=(49, 49, 3), include_top=False
    )
    assert model.output_shape == (None, 2, 2, 1280)
    model = mobilenet_v2.MobileNetV2(
        filter_size=None, input_shape=(32, 32, 3), include_top=False
    )
    assert model.output_shape == (None, 1, 1, 1280)
    assert model.name == "mobilenet_v2"


def test_input_tensor_and_weights_file(tmp_path):
    inputs = keras.Input((64, 64, 3))
    model = mobilenet_v2.MobileNetV2(
        input_tensor=inputs, include_top=False, pooling="avg"
    )
    assert model.output_shape == (None, 1280)
    path = str(tmp_path / "mobilenet.weights.h5")
    model.save_weights(path)
    again = mobilenet_v2.MobileNetV2(
        weights=path, include_top=False, pooling="avg"
    )
    for a, b in zip(model.weights, again.weights):
        np.testing.assert_array_equal(keras.ops.convert_to_numpy(a), keras.ops.convert_to_numpy(b))


# The whole table; every filter size and the plain networks somewhere.
ZOO = [
    ("DenseNet121", 1, True),
    ("DenseNet121", 7, True),
    ("DenseNet161", 3, True),
    ("DenseNet161", None, True),
    ("DenseNet169", 4, True),
    ("DenseNet169", 6, False),
    ("DenseNet201", 5, True),
    ("DenseNet201", None, True),
    ("MobileNetV2", 1, True),
    ("MobileNetV2", 2, True),
    ("MobileNetV2", 4, True),
    ("MobileNetV2", 5, True),
    ("MobileNetV2", 6, True),
    ("MobileNetV2", 7, True),
]


@pytest.mark.zoo
@pytest.mark.parametrize("builder, filter_size, pool_only", ZOO)
def test_zoo(reference, builder, filter_size, pool_only):
    torch, aa = reference
    kwargs = {} if builder == "MobileNetV2" else {"pool_only": pool_only}
    torch_model = _reference(torch, aa, builder, filter_size, **kwargs)
    model = _build(builder, filter_size=filter_size, **kwargs)
    assert _trainable_params(model) == _torch_params(torch_model)
    assert_same_logits(torch, torch_model, model, size=224, batch=1)

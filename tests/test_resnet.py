"""ResNet / ResNeXt / Wide ResNet against the PyTorch reference."""

import itertools

import keras
import numpy as np
import pytest

import keras_blurpool
from keras_blurpool.applications import resnet
from keras_blurpool.applications.arguments import AntialiasSpec
from tests.conftest import assert_same_logits
from tests.conftest import numpy_state_dict
from tests.conftest import randomize_batchnorm

# Keras builder -> reference function, the whole table.
TABLE = {
    "ResNet18": "resnet18",
    "ResNet34": "resnet34",
    "ResNet50": "resnet50",
    "ResNet101": "resnet101",
    "ResNet152": "resnet152",
    "ResNeXt50_32x4d": "resnext50_32x4d",
    "ResNeXt101_32x8d": "resnext101_32x8d",
    "WideResNet50_2": "wide_resnet50_2",
    "WideResNet101_2": "wide_resnet101_2",
}


def _trainable_params(model):
    return sum(int(np.prod(w.shape)) for w in model.trainable_weights)


def _reference(aa, builder, **kwargs):
    return getattr(aa, TABLE[builder])(**kwargs)


def _as_torchvision(torch, model):
    """The reference's network turned into torchvision's plain ResNet.

    Same parameters; strides go back into the convolutions, the blurs
    disappear and module names become torchvision's (`conv2`, not
    `conv2.1`; `downsample.0`, not `downsample.1`).
    """
    nn = torch.nn
    model.maxpool = nn.MaxPool2d(3, stride=2, padding=1)
    for stage in (model.layer2, model.layer3, model.layer4):
        block = stage[0]
        if hasattr(block, "conv3"):  # bottleneck: the 3x3 conv strides
            block.conv2.stride = (2, 2)
            block.conv3 = block.conv3[1]
        else:
            block.conv1.stride = (2, 2)
            block.conv2 = block.conv2[1]
        shortcut_conv, shortcut_bn = block.downsample[1], block.downsample[2]
        shortcut_conv.stride = (2, 2)
        block.downsample = nn.Sequential(shortcut_conv, shortcut_bn)
    return model


@pytest.mark.parametrize(
    "builder, filter_size, pool_only, size, classes",
    [
        ("ResNet18", 4, True, 224, 1000),
        ("ResNet50", 3, True, 224, 1000),
        # Grouped convs, the anti-aliased stem conv, another size and head.
        ("ResNeXt50_32x4d", 2, False, 160, 10),
    ],
)
def test_matches_reference(
    reference, builder, filter_size, pool_only, size, classes
):
    torch, aa = reference
    torch_model = _reference(
        aa,
        builder,
        filter_size=filter_size,
        pool_only=pool_only,
        num_classes=classes,
    )
    model = getattr(resnet, builder)(
        filter_size=filter_size,
        pool_only=pool_only,
        classes=classes,
        classifier_activation=None,
        input_shape=(None, None, 3),
    )
    assert model.name == TABLE[builder]
    assert _trainable_params(model) == sum(
        p.numel() for p in torch_model.parameters()
    )
    assert_same_logits(torch, torch_model, model, size=size)


@pytest.mark.parametrize(
    "size, pooling, filter_size",
    [(160, "avg", 5), (193, "max", 4), (193, None, 3)],
)
def test_features_match_reference(reference, size, pooling, filter_size):
    torch, aa = reference
    torch_model = aa.resnet18(filter_size=filter_size)
    randomize_batchnorm(torch, torch_model)
    model = resnet.ResNet18(
        include_top=False,
        pooling=pooling,
        filter_size=filter_size,
        input_shape=(size, size, 3),
    )
    state = {
        k: v
        for k, v in numpy_state_dict(torch_model).items()
        if not k.startswith("fc.")
    }
    keras_blurpool.load_torch_weights(model, state)

    x = np.random.default_rng(1).standard_normal((2, 3, size, size))
    x = x.astype("float32")
    with torch.no_grad():
        m = torch_model
        y = m.maxpool(m.relu(m.bn1(m.conv1(torch.from_numpy(x)))))
        y = m.layer4(m.layer3(m.layer2(m.layer1(y)))).numpy()
    y = y.transpose(0, 2, 3, 1)
    if pooling == "avg":
        y = y.mean(axis=(1, 2))
    elif pooling == "max":
        y = y.max(axis=(1, 2))
    got = keras.ops.convert_to_numpy(model(x.transpose(0, 2, 3, 1), training=False))
    assert got.shape == y.shape
    np.testing.assert_allclose(got, y, atol=1e-4 * np.abs(y).max())


@pytest.mark.parametrize("builder", ["ResNet18", "ResNet50"])
def test_plain_network_is_torchvision(reference, builder):
    torch, aa = reference
    torch_model = _as_torchvision(torch, _reference(aa, builder))
    model = getattr(resnet, builder)(
        filter_size=None, classifier_activation=None
    )
    blurs = [
        layer
        for layer in model.layers
        if isinstance(layer, keras_blurpool.BlurPool2D)
    ]
    assert not blurs
    assert _trainable_params(model) == sum(
        p.numel() for p in torch_model.parameters()
    )
    names = resnet._torch_names(model)
    assert {f"{n}.weight" for n in names.values()} == {
        k for k in torch_model.state_dict() if k.endswith(".weight")
    }
    # torchvision strides the first 3x3 conv of a block.
    strided, torch_name = {
        "ResNet18": ("conv3_block1_1_conv", "layer2.0.conv1"),
        "ResNet50": ("conv3_block1_2_conv", "layer2.0.conv2"),
    }[builder]
    assert model.get_layer(strided).strides == (2, 2)
    assert names[strided] == torch_name
    assert names["conv3_block1_0_conv"] == "layer2.0.downsample.0"
    assert names["conv3_block1_0_bn"] == "layer2.0.downsample.1"
    assert_same_logits(torch, torch_model, model, size=224)


def test_torch_names():
    model = resnet.ResNet50(filter_size=4, pool_only=False, name="renamed")
    names = resnet._torch_names(model)
    expected = {
        "conv1_conv": "conv1",
        "conv1_bn": "bn1",
        "conv1_blur": "maxpool.0",
        "pool1_blur": "maxpool.2",
        "conv2_block1_0_conv": "layer1.0.downsample.0",
        "conv2_block1_0_bn": "layer1.0.downsample.1",
        "conv2_block2_3_conv": "layer1.1.conv3",
        "conv3_block1_2_conv": "layer2.0.conv2",
        "conv3_block1_3_blur": "layer2.0.conv3.0",
        "conv3_block1_3_conv": "layer2.0.conv3.1",
        "conv3_block1_3_bn": "layer2.0.bn3",
        "conv3_block1_0_blur": "layer2.0.downsample.0",
        "conv3_block1_0_conv": "layer2.0.downsample.1",
        "conv3_block1_0_bn": "layer2.0.downsample.2",
        "conv5_block3_1_bn": "layer4.2.bn1",
        "predictions": "fc",
    }
    assert {k: names[k] for k in expected} == expected
    assert model.get_layer("conv1_conv").strides == (1, 1)

    basic = resnet.ResNet18(filter_size=1, include_top=False)
    names = resnet._torch_names(basic)
    assert names["pool1_blur"] == "maxpool.1"
    assert names["conv3_block1_2_blur"] == "layer2.0.conv2.0"
    assert names["conv3_block1_2_conv"] == "layer2.0.conv2.1"
    assert names["conv3_block1_1_conv"] == "layer2.0.conv1"
    assert "conv2_block1_0_conv" not in names  # identity shortcut
    assert "predictions" not in names

    # Models of other families are not claimed.
    x = keras.Input((32, 32, 3))
    y = keras.layers.Conv2D(4, 3, use_bias=False, name="conv1_conv")(x)
    y = keras.layers.Conv2D(4, 3, use_bias=False, name="conv2_block1_1_conv")(y)
    assert resnet._torch_names(keras.Model(x, y)) is None
    z = keras.layers.Conv2D(4, 3, use_bias=False, name="block1_conv1")(y)
    z = keras.layers.Add(name="conv2_block1_add")([z, z])
    assert resnet._torch_names(keras.Model(x, z)) is None


@pytest.mark.parametrize("filter_size", [1, 4, 7])
@pytest.mark.parametrize("pool_only", [True, False])
def test_minimum_input_size(reference, filter_size, pool_only):
    torch, aa = reference
    torch_model = aa.resnet18(filter_size=filter_size, pool_only=pool_only)
    torch_model.eval()
    smallest = resnet._min_input_size(AntialiasSpec("blur", filter_size), pool_only)
    with torch.no_grad():
        torch_model(torch.zeros(1, 3, smallest, smallest))
        if smallest > 32:  # the reference cannot reflect-pad below it
            with pytest.raises(RuntimeError):
                torch_model(torch.zeros(1, 3, smallest - 1, smallest - 1))
            with pytest.raises(ValueError, match="at least"):
                resnet.ResNet18(
                    filter_size=filter_size,
                    pool_only=pool_only,
                    input_shape=(smallest - 1, 64, 3),
                )
    model = resnet.ResNet18(
        filter_size=filter_size,
        pool_only=pool_only,
        input_shape=(smallest, smallest, 3),
    )
    assert model.output_shape == (None, 1000)


@pytest.mark.parametrize(
    "kwargs",
    [
        {"filter_size": 8},
        {"filter_size": 0},
        {"pooling": "mean", "include_top": False},
        {"classes": 0},
        {"weights": "imagenet"},
        {"weights": "imagenet", "input_shape": (224, 224, 1)},
    ],
)
def test_invalid_arguments(kwargs):
    with pytest.raises(ValueError):
        resnet.ResNet18(**kwargs)


def test_weights_file_and_input_tensor(tmp_path):
    model = resnet.ResNet18(filter_size=2, classes=7, input_shape=(None, None, 3))
    path = str(tmp_path / "resnet18.weights.h5")
    model.save_weights(path)
    inputs = keras.Input((64, 80, 3))
    again = resnet.ResNet18(
        filter_size=2, classes=7, weights=path, input_tensor=inputs
    )
    assert again.input_shape == (None, 64, 80, 3)
    x = np.random.default_rng(0).random((1, 64, 80, 3)).astype("float32")
    np.testing.assert_allclose(again(x), model(x), rtol=1e-5, atol=1e-6)


# Filter sizes cycle across the table, so that each appears somewhere.
_ZOO = list(zip(TABLE, itertools.cycle([2, 3, 4, 5, 1, 6, 7])))


@pytest.mark.zoo
@pytest.mark.parametrize("builder, filter_size", _ZOO)
def test_zoo(reference, builder, filter_size):
    torch, aa = reference
    torch_model = _reference(aa, builder, filter_size=filter_size)
    model = getattr(resnet, builder)(
        filter_size=filter_size, classifier_activation=None
    )
    assert _trainable_params(model) == sum(
        p.numel() for p in torch_model.parameters()
    )
    assert_same_logits(torch, torch_model, model, size=224)

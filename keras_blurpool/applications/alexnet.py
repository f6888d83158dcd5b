"""Anti-aliased AlexNet (torchvision's variant).

Reference:
- [Making Convolutional Networks Shift-Invariant Again](
    https://arxiv.org/abs/1904.11486) (Zhang, ICML 2019)
- [One weird trick for parallelizing convolutional neural networks](
    https://arxiv.org/abs/1404.5997) (Krizhevsky, 2014)

The 3x3 max pools of stride 2 become max pools of stride 1 followed by a
`BlurPool2D` of stride 2. By default conv1 (11x11, stride 4) is
anti-aliased too: it runs at stride 2, and after its ReLU a `BlurPool2D`
provides the remaining factor 2. `antialias` swaps `BlurPool2D` for
another anti-aliasing layer in the same places. The classifier is torchvision's: adaptive
average pooling to 6x6, then three Dense layers with dropout.

Layers are described by the layer specs of the VGG module, one per module
of the reference's `features` `nn.Sequential`.
"""

from __future__ import annotations

import keras

from keras_blurpool.applications import registry
from keras_blurpool.applications._common import AntiAlias
from keras_blurpool.applications._common import antialias_spec
from keras_blurpool.applications._common import validate_builder_args
from keras_blurpool.applications.vgg import _ANY_ANTIALIAS
from keras_blurpool.applications.vgg import _build
from keras_blurpool.applications.vgg import _conv
from keras_blurpool.applications.vgg import _first_match
from keras_blurpool.applications.vgg import _pool

# Dense layer -> index in the reference's `classifier` nn.Sequential
# (Dropout, Linear, ReLU, Dropout, Linear, ReLU, Linear).
_ALEXNET_HEAD = {"fc1": 1, "fc2": 4, "predictions": 6}


def _relu(name: str):
    return ("relu", f"{name}_relu", {})


def _alexnet_features(aa: AntiAlias | None, pool_only: bool):
    if aa is None:
        first = [_conv("conv1", 64, 11, strides=4, padding=2), _relu("conv1")]
    elif pool_only:
        # The reference has no ReLU after conv1 in this variant.
        first = [_conv("conv1", 64, 11, strides=4, padding=2)]
    else:
        first = [
            _conv("conv1", 64, 11, strides=2, padding=2),
            _relu("conv1"),
            ("blur", "conv1_blur", {"aa": aa}),
        ]
    return (
        first
        + _pool("pool1", 3, aa)
        + [_conv("conv2", 192, 5, padding=2), _relu("conv2")]
        + _pool("pool2", 3, aa)
        + [_conv("conv3", 384, 3, padding=1), _relu("conv3")]
        + [_conv("conv4", 256, 3, padding=1), _relu("conv4")]
        + [_conv("conv5", 256, 3, padding=1), _relu("conv5")]
        + _pool("pool3", 3, aa)
    )


def _torch_names(model) -> dict[str, str] | None:
    """PyTorch names of an AlexNet model of this module, else None."""
    candidates = (
        _alexnet_features(_ANY_ANTIALIAS, False),
        _alexnet_features(_ANY_ANTIALIAS, True),
        _alexnet_features(None, False),
    )
    return _first_match(model, candidates, _ALEXNET_HEAD)


def AlexNet(
    include_top: bool = True,
    weights: str | None = None,
    input_tensor=None,
    input_shape: tuple | None = None,
    pooling: str | None = None,
    classes: int = 1000,
    classifier_activation="softmax",
    antialias="blur",
    filter_size: int | None = 4,
    pad_type: str = "reflect",
    pool_only: bool = False,
    synchronized_batch_norm: bool = False,
    name: str | None = None,
) -> keras.Model:
    """Instantiates the anti-aliased AlexNet architecture.

    Equals `antialiased_cnns.alexnet(filter_size=filter_size,
    pool_only=pool_only)`. Its weights load with
    `keras_blurpool.load_torch_weights`.

    Args:
        include_top: whether to include the classifier (adaptive average
            pooling to 6x6, `dropout1`, `flatten`, `fc1`, `dropout2`,
            `fc2`, `predictions`).
        weights: `None` (random initialization), `"imagenet"` (the
            reference's released ImageNet weights, fetched once, verified and
            cached), or the path of a Keras `.weights.h5` file or a PyTorch
            `.pth`/`.pth.tar` checkpoint.
        input_tensor: optional Keras tensor (output of `keras.Input()`) to
            use as image input.
        input_shape: optional shape tuple `(height, width, 3)`, or `(3,
            height, width)` when `keras.config.image_data_format()` is
            `"channels_first"`. Defaults to 224x224 with `include_top=True`
            (the classifier needs a fixed size) and to any size otherwise.
        pooling: pooling mode with `include_top=False`: `None` (the 4-D
            output of `pool3`), `"avg"` or `"max"` (global pooling).
        classes: number of classes, with `include_top=True`.
        classifier_activation: activation of the `predictions` layer, or
            `None` to return logits.
        antialias: the anti-aliasing layer: `"blur"` (the reference's
            `BlurPool2D`), `"avg"` (2x2 average pool of stride 2), `None`
            (the plain torchvision network; `pool_only` is then ignored) or
            a callable `(channels, strides, name) -> keras.layers.Layer`.
        filter_size: size of the blur filter, 1 to 7; `None` builds the
            plain network (as `antialias=None`).
        pad_type: padding of the blur: `"reflect"` (the reference's),
            `"replicate"` or `"zero"` (these take smaller inputs).
        pool_only: blur only the max pools and keep conv1 at stride 4
            (cheaper). As in the reference, this variant has no ReLU
            after conv1.
        synchronized_batch_norm: accepted for a uniform signature with
            the other builders (`True` makes their BatchNormalization
            compute batch statistics over all replicas of a
            `tf.distribute` strategy; TensorFlow backend only): no effect
            here, this network has no BatchNormalization.
        name: name of the model. Defaults to `"alexnet"`.

    Returns:
        A `keras.Model` instance.

    Example:

    >>> model = keras_blurpool.applications.AlexNet(filter_size=4)
    >>> model.output_shape
    (None, 1000)
    """
    validate_builder_args(
        weights=weights,
        filter_size=filter_size,
        include_top=include_top,
        pooling=pooling,
        classes=classes,
        arch="alexnet",
        pool_only=pool_only,
        antialias=antialias,
        pad_type=pad_type,
        synchronized_batch_norm=synchronized_batch_norm,
    )
    if not isinstance(pool_only, bool):
        raise ValueError(
            f"`pool_only` must be a bool. Received: pool_only={pool_only!r}"
        )
    aa = antialias_spec(antialias, filter_size, pad_type)
    return _build(
        _alexnet_features(aa, pool_only),
        head_pool_size=6,
        dropout_first=True,
        include_top=include_top,
        weights=weights,
        input_tensor=input_tensor,
        input_shape=input_shape,
        pooling=pooling,
        classes=classes,
        classifier_activation=classifier_activation,
        name=name or "alexnet",
        arch="alexnet",
        filter_size=filter_size,
        aa=aa,
        synchronized_batch_norm=synchronized_batch_norm,
    )


registry.register_family(
    {"alexnet": AlexNet},
    # At filter size 4 the network fine-tuned from the baseline.
    weights={
        "alexnet": {
            2: "alexnet_lpf2-da8aca74.pth",
            3: "alexnet_lpf3-f9bbc410.pth",
            4: "alexnet_lpf4_finetune-20598a7a.pth",
            5: "alexnet_lpf5-4fa3706a.pth",
        }
    },
    weights_from_scratch={"alexnet": {4: "alexnet_lpf4-0114fe25.pth"}},
    recipe="vgg",
    torch_names=_torch_names,
    head_prefixes=("classifier.",),
    released_pool_only=False,
)

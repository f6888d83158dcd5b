"""Anti-aliased VGG 11/13/16/19, with and without BatchNorm.

Reference:
- [Making Convolutional Networks Shift-Invariant Again](
    https://arxiv.org/abs/1904.11486) (Zhang, ICML 2019)
- [Very Deep Convolutional Networks for Large-Scale Image Recognition](
    https://arxiv.org/abs/1409.1556) (Simonyan & Zisserman, ICLR 2015)

Every 2x2 max pool of stride 2 becomes a max pool of stride 1 followed by
a `BlurPool2D` of stride 2 (or the builder's `antialias` layer). The
classifier is torchvision's: adaptive
average pooling to 7x7, then three Dense layers with dropout.

The feature extractor is described as a list of layer specs, one per
module of the reference's `features` `nn.Sequential`: the same list builds
the Keras layers and gives every layer its PyTorch index `features.N`.
The AlexNet module builds on the same machinery.
"""

from __future__ import annotations

import keras
from keras import layers

from keras_blurpool.applications import registry
from keras_blurpool.applications._common import AntiAlias
from keras_blurpool.applications._common import anti_alias
from keras_blurpool.applications._common import antialias_spec
from keras_blurpool.applications._common import batch_norm
from keras_blurpool.applications._common import conv
from keras_blurpool.applications._common import finish_model
from keras_blurpool.applications._common import min_size_reason
from keras_blurpool.applications._common import model_input
from keras_blurpool.applications._common import pooling_head
from keras_blurpool.applications._common import spatial_shape
from keras_blurpool.applications._common import validate_builder_args
from keras_blurpool.layers import is_antialiasing

# Convolutions per block (all 3x3) for each depth; block widths below.
_STAGES = {11: (1, 1, 2, 2, 2), 13: (2, 2, 2, 2, 2), 16: (2, 2, 3, 3, 3),
           19: (2, 2, 4, 4, 4)}
_WIDTHS = (64, 128, 256, 512, 512)
# Dense layer -> index in the reference's `classifier` nn.Sequential
# (Linear, ReLU, Dropout, Linear, ReLU, Dropout, Linear).
_VGG_HEAD = {"fc1": 0, "fc2": 3, "predictions": 6}
# Layer spec kinds with a PyTorch counterpart in the state_dict.
_STATEFUL_KINDS = {
    "conv": lambda layer: isinstance(layer, layers.Conv2D),
    "bn": lambda layer: isinstance(layer, layers.BatchNormalization),
    "blur": is_antialiasing,
}
# Stands for "anti-aliased" in the specs matched against a model: names do
# not depend on the kind of anti-aliasing.
_ANY_ANTIALIAS = AntiAlias("blur", 4)


def _pool(name: str, pool_size: int, aa: AntiAlias | None):
    """Specs of a stride-2 max pool, anti-aliased unless `aa` is None."""
    if aa is None:
        return [("maxpool", name, {"pool_size": pool_size, "strides": 2})]
    # Max at stride 1 (dense), then low-pass filter and subsample.
    return [
        ("maxpool", name, {"pool_size": pool_size, "strides": 1}),
        ("blur", f"{name}_blur", {"aa": aa}),
    ]


def _conv(name: str, filters: int, kernel_size: int, *, padding: int,
          strides: int = 1):
    """Spec of a biased Conv2D with PyTorch's symmetric zero padding."""
    return ("conv", name, {"filters": filters, "kernel_size": kernel_size,
                           "strides": strides, "padding": padding})


def _vgg_features(depth: int, use_bn: bool, aa: AntiAlias | None):
    spec = []
    for block, (convs, width) in enumerate(zip(_STAGES[depth], _WIDTHS), 1):
        for i in range(1, convs + 1):
            spec += [_conv(f"block{block}_conv{i}", width, 3, padding=1)]
            if use_bn:
                spec += [("bn", f"block{block}_bn{i}", {})]
            spec += [("relu", f"block{block}_relu{i}", {})]
        spec += _pool(f"block{block}_pool", 2, aa)
    return spec


def _apply_features(x, spec):
    for kind, name, args in spec:
        if kind == "conv":
            x = conv(x, **args, use_bias=True, name=name)
        elif kind == "bn":
            x = batch_norm(x, name=name)
        elif kind == "relu":
            x = layers.Activation("relu", name=name)(x)
        elif kind == "maxpool":
            # "valid" pooling = PyTorch's default floor mode.
            x = layers.MaxPooling2D(**args, name=name)(x)
        else:
            x = anti_alias(x, args["aa"], name=name)
    return x


def _output_size(size: int, spec):
    """Spatial size after `spec`, or None if some layer cannot take it."""
    for kind, _, args in spec:
        if kind == "conv":
            size = (size + 2 * args["padding"] - args["kernel_size"]) // args[
                "strides"
            ] + 1
        elif kind == "maxpool":
            size = (size - args["pool_size"]) // args["strides"] + 1
        elif kind == "blur":
            # E.g. reflect padding by k // 2 needs a larger map (all blurs
            # here have stride 2 and give ceil(size / 2)).
            if size < args["aa"].min_map_size:
                return None
            size = (size - 1) // 2 + 1
        if size < 1:
            return None
    return size


def _min_input_size(spec) -> int:
    size = 1
    while _output_size(size, spec) is None:
        size += 1
    return size


def _classifier(x, *, pool_size: int, dropout_first: bool, classes: int,
                classifier_activation):
    x = layers.AdaptiveAveragePooling2D(pool_size, name="adaptive_avg_pool")(x)
    for i in (1, 2):
        if dropout_first:
            # Element-wise dropout commutes with Flatten; applying it to the
            # map keeps fc1 fed by the Flatten itself, which is how
            # load_torch_weights finds fc1 and reorders its C,H,W columns.
            x = layers.Dropout(0.5, name=f"dropout{i}")(x)
        if i == 1:
            x = layers.Flatten(name="flatten")(x)
        x = layers.Dense(4096, activation="relu", name=f"fc{i}")(x)
        if not dropout_first:
            x = layers.Dropout(0.5, name=f"dropout{i}")(x)
    return layers.Dense(
        classes, activation=classifier_activation, name="predictions"
    )(x)


def _build(features, *, head_pool_size, dropout_first, include_top, weights,
           input_tensor, input_shape, pooling, classes,
           classifier_activation, name, arch, filter_size, aa,
           synchronized_batch_norm=False):
    """The model of a features spec and the torchvision-style classifier."""
    min_size = _min_input_size(features)
    img_input, inputs = model_input(
        input_tensor,
        input_shape,
        min_size=min_size,
        why=min_size_reason(aa, min_size),
        # keras.layers.AdaptiveAveragePooling2D needs a static input size.
        default_size=224 if include_top else None,
    )
    if include_top and None in spatial_shape(img_input):
        raise ValueError(
            "With `include_top=True` the input size must be fixed (the "
            "classifier's adaptive pooling needs it); pass e.g. "
            "`input_shape=(224, 224, 3)`. Received input shape "
            f"{tuple(img_input.shape)[1:]}"
        )
    x = _apply_features(img_input, features)
    if include_top:
        x = _classifier(
            x,
            pool_size=head_pool_size,
            dropout_first=dropout_first,
            classes=classes,
            classifier_activation=classifier_activation,
        )
    else:
        x = pooling_head(
            x,
            include_top=False,
            pooling=pooling,
            classes=classes,
            classifier_activation=classifier_activation,
        )
    return finish_model(
        inputs,
        x,
        name=name,
        weights=weights,
        arch=arch,
        filter_size=filter_size,
        synchronized_batch_norm=synchronized_batch_norm,
    )


def _match_names(model, features, head):
    """`{keras_name: torch_name}` if `model` is exactly this network.

    Every spec layer must be present with its type, and every layer of the
    model with weights (or anti-aliasing) must belong to the spec, so that
    a deeper or differently built network never matches.
    """
    present = {layer.name: layer for layer in model.layers}
    names = {}
    for index, (kind, name, _) in enumerate(features):
        if name not in present:
            return None
        if kind in _STATEFUL_KINDS:
            if not _STATEFUL_KINDS[kind](present[name]):
                return None
            names[name] = f"features.{index}"
    dense = [n for n in head if isinstance(present.get(n), layers.Dense)]
    if dense and len(dense) != len(head):
        return None
    names.update({n: f"classifier.{head[n]}" for n in dense})
    for layer in model.layers:
        if (layer.weights or is_antialiasing(layer)) and (
            layer.name not in names
        ):
            return None
    return names


def _first_match(model, candidates, head):
    for features in candidates:
        names = _match_names(model, features, head)
        if names is not None:
            return names
    return None


def _torch_names(model) -> dict[str, str] | None:
    """PyTorch names of a VGG model of this module, else None."""
    candidates = (
        _vgg_features(depth, use_bn, aa)
        for depth in _STAGES
        for use_bn in (False, True)
        for aa in (_ANY_ANTIALIAS, None)
    )
    return _first_match(model, candidates, _VGG_HEAD)


def _vgg(depth, use_bn, include_top, weights, input_tensor, input_shape,
         pooling, classes, classifier_activation, antialias, filter_size,
         pad_type, synchronized_batch_norm, name):
    validate_builder_args(
        weights=weights,
        filter_size=filter_size,
        include_top=include_top,
        pooling=pooling,
        classes=classes,
        arch=f"vgg{depth}" + ("_bn" if use_bn else ""),
        antialias=antialias,
        pad_type=pad_type,
        synchronized_batch_norm=synchronized_batch_norm,
    )
    aa = antialias_spec(antialias, filter_size, pad_type)
    return _build(
        _vgg_features(depth, use_bn, aa),
        head_pool_size=7,
        dropout_first=False,
        include_top=include_top,
        weights=weights,
        input_tensor=input_tensor,
        input_shape=input_shape,
        pooling=pooling,
        classes=classes,
        classifier_activation=classifier_activation,
        name=name or f"vgg{depth}" + ("_bn" if use_bn else ""),
        arch=f"vgg{depth}" + ("_bn" if use_bn else ""),
        filter_size=filter_size,
        aa=aa,
        synchronized_batch_norm=synchronized_batch_norm,
    )


_DOC = """Instantiates the anti-aliased {title} architecture.

Equals `antialiased_cnns.{reference}(filter_size=filter_size)`: every
max pool runs at stride 1 and is followed by a `BlurPool2D` of stride 2.
Its weights load with `keras_blurpool.load_torch_weights`; those of
torchvision's `{reference}` load too, into any `antialias`.

Args:
    include_top: whether to include the classifier (adaptive average
        pooling to 7x7, `flatten`, `fc1`, `fc2`, `predictions`).
    weights: `None` (random initialization), `"imagenet"` (the
        reference's released ImageNet weights, fetched once, verified and
        cached), or the path of a Keras `.weights.h5` file or a PyTorch
        `.pth`/`.pth.tar` checkpoint.
    input_tensor: optional Keras tensor (output of `keras.Input()`) to use
        as image input.
    input_shape: optional shape tuple `(height, width, 3)`, or `(3,
        height, width)` when `keras.config.image_data_format()` is
        `"channels_first"`. Defaults to 224x224 with `include_top=True`
        (the classifier needs a fixed size) and to any size otherwise.
    pooling: pooling mode with `include_top=False`: `None` (the 4-D output
        of the last block), `"avg"` or `"max"` (global pooling).
    classes: number of classes, with `include_top=True`.
    classifier_activation: activation of the `predictions` layer, or `None`
        to return logits.
    antialias: the layer after each stride-1 max pool: `"blur"` (the
        reference's `BlurPool2D`), `"avg"` (2x2 average pool of stride 2),
        `None` (the plain torchvision network with max pools of stride 2)
        or a callable `(channels, strides, name) -> keras.layers.Layer`.
    filter_size: size of the blur filter, 1 to 7; `None` builds the plain
        network (as `antialias=None`).
    pad_type: padding of the blur: `"reflect"` (the reference's),
        `"replicate"` or `"zero"` (these take smaller inputs).
    synchronized_batch_norm: if `True`, BatchNormalization computes its
        batch statistics over all replicas of a `tf.distribute` strategy
        (Keras's `BatchNormalization(synchronized=True)`; TensorFlow backend
        only), so every replica holds the same moving statistics. See
        docs/training.md, "model.fit on GPUs".{bn_note}
    name: name of the model. Defaults to `"{default_name}"`.

Returns:
    A `keras.Model` instance.

Example:

>>> model = keras_blurpool.applications.{builder}(filter_size=4)
>>> model.output_shape
(None, 1000)
"""


# Appended to `synchronized_batch_norm` in the docstring of the VGGs
# without BatchNorm, which accept the flag like every builder.
_NO_BN_NOTE = """
        No effect on this variant: this network has no BatchNormalization
        (the `BN` variants have)."""


def _builder(builder: str, title: str, depth: int, use_bn: bool):
    """Makes the public builder of one VGG of the table."""
    reference = f"vgg{depth}" + ("_bn" if use_bn else "")

    def build(
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
        synchronized_batch_norm: bool = False,
        name: str | None = None,
    ) -> keras.Model:
        return _vgg(depth, use_bn, include_top, weights, input_tensor,
                    input_shape, pooling, classes, classifier_activation,
                    antialias, filter_size, pad_type,
                    synchronized_batch_norm, name)

    build.__name__ = build.__qualname__ = builder
    build.__doc__ = _DOC.format(
        title=title, reference=reference, default_name=reference,
        builder=builder, bn_note="" if use_bn else _NO_BN_NOTE,
    )
    return build


VGG11 = _builder("VGG11", "VGG11", 11, use_bn=False)
VGG13 = _builder("VGG13", "VGG13", 13, use_bn=False)
VGG16 = _builder("VGG16", "VGG16", 16, use_bn=False)
VGG19 = _builder("VGG19", "VGG19", 19, use_bn=False)
VGG11BN = _builder("VGG11BN", "VGG11 (with BatchNorm)", 11, use_bn=True)
VGG13BN = _builder("VGG13BN", "VGG13 (with BatchNorm)", 13, use_bn=True)
VGG16BN = _builder("VGG16BN", "VGG16 (with BatchNorm)", 16, use_bn=True)
VGG19BN = _builder("VGG19BN", "VGG19 (with BatchNorm)", 19, use_bn=True)


# Released ImageNet checkpoints of the reference, `filter_size -> file`;
# at filter size 4 the network fine-tuned from the torchvision baseline.
_WEIGHTS = {
    "vgg11": {4: "vgg11_lpf4_finetune-35eab449.pth"},
    "vgg11_bn": {4: "vgg11_bn_lpf4_finetune-5d60b5e4.pth"},
    "vgg13": {4: "vgg13_lpf4_finetune-d8ff02c4.pth"},
    "vgg13_bn": {4: "vgg13_bn_lpf4_finetune-45e2a72f.pth"},
    "vgg16": {
        2: "vgg16_lpf2-60268e0c.pth",
        3: "vgg16_lpf3-e9b0ce42.pth",
        4: "vgg16_lpf4_finetune-79c9dff7.pth",
        5: "vgg16_lpf5-1391f70c.pth",
    },
    "vgg16_bn": {
        2: "vgg16_bn_lpf2-2c2052a8.pth",
        3: "vgg16_bn_lpf3-1782878a.pth",
        4: "vgg16_bn_lpf4_finetune-1dd798d1.pth",
        5: "vgg16_bn_lpf5-c500b52f.pth",
    },
    "vgg19": {4: "vgg19_lpf4_finetune-7ab2cf45.pth"},
    "vgg19_bn": {4: "vgg19_bn_lpf4_finetune-d0114293.pth"},
}
_WEIGHTS_FROM_SCRATCH = {
    "vgg16": {4: "vgg16_lpf4-de9267ac.pth"},
    "vgg16_bn": {4: "vgg16_bn_lpf4-a1c3559b.pth"},
}

_BUILDERS = {
    "vgg11": VGG11,
    "vgg11_bn": VGG11BN,
    "vgg13": VGG13,
    "vgg13_bn": VGG13BN,
    "vgg16": VGG16,
    "vgg16_bn": VGG16BN,
    "vgg19": VGG19,
    "vgg19_bn": VGG19BN,
}
registry.register_family(
    _BUILDERS,
    weights=_WEIGHTS,
    weights_from_scratch=_WEIGHTS_FROM_SCRATCH,
    recipe={n: "vgg_bn" if n.endswith("_bn") else "vgg" for n in _BUILDERS},
    torch_names=_torch_names,
    head_prefixes=("classifier.",),
    released_pool_only=None,
)

"""Anti-aliased DenseNet-121, -161, -169 and -201 (Zhang, ICML 2019).

DenseNet-BC of Huang et al. (CVPR 2017) as in `antialiased_cnns.densenet`:
the stem's stride-2 max pool becomes a stride-1 max pool followed by
`BlurPool2D`, and each transition's 2x2 average pool becomes a
`BlurPool2D`. With `pool_only=False` the stride-2 stem convolution is
antialiased as well. `antialias` swaps `BlurPool2D` for another
anti-aliasing layer in the same places; `antialias=None` (or
`filter_size=None`) builds torchvision's plain DenseNet.

Layer names follow `keras.applications.densenet` (`conv1_conv`,
`conv2_block1_0_bn`, `pool2_conv`, `bn`, ...); anti-aliasing layers end
in `_blur`.
"""

from __future__ import annotations

import re

import keras
from keras import layers

from keras_blurpool.applications import registry
from keras_blurpool.applications._common import MIN_INPUT_SIZE
from keras_blurpool.applications._common import AntiAlias
from keras_blurpool.applications._common import anti_alias
from keras_blurpool.applications._common import antialias_spec
from keras_blurpool.applications._common import batch_norm
from keras_blurpool.applications._common import channel_axis
from keras_blurpool.applications._common import channels
from keras_blurpool.applications._common import conv
from keras_blurpool.applications._common import finish_model
from keras_blurpool.applications._common import min_size_reason
from keras_blurpool.applications._common import model_input
from keras_blurpool.applications._common import pooling_head
from keras_blurpool.applications._common import validate_builder_args

_BN_SIZE = 4  # the bottleneck has `_BN_SIZE * growth_rate` channels

# Layers per dense block, growth rate, stem filters.
_VARIANTS = {
    "densenet121": ((6, 12, 24, 16), 32, 64),
    "densenet161": ((6, 12, 36, 24), 48, 96),
    "densenet169": ((6, 12, 32, 32), 32, 64),
    "densenet201": ((6, 12, 48, 32), 32, 64),
}


def _min_input_size(aa: AntiAlias | None) -> int:
    # The last transition anti-aliases the input downsampled 4 times
    # (rounding up), which must be at least `aa.min_map_size` (larger than
    # the pad for reflect padding).
    if aa is None:
        return MIN_INPUT_SIZE
    return max(MIN_INPUT_SIZE, 16 * (aa.min_map_size - 1) + 1)


def _dense_layer(x, growth_rate: int, *, name: str):
    y = batch_norm(x, name=f"{name}_0_bn")
    y = layers.ReLU(name=f"{name}_0_relu")(y)
    y = conv(y, _BN_SIZE * growth_rate, 1, name=f"{name}_1_conv")
    y = batch_norm(y, name=f"{name}_1_bn")
    y = layers.ReLU(name=f"{name}_1_relu")(y)
    y = conv(y, growth_rate, 3, padding=1, name=f"{name}_2_conv")
    return layers.Concatenate(axis=channel_axis(), name=f"{name}_concat")(
        [x, y]
    )


def _transition(x, aa: AntiAlias | None, *, name: str):
    x = batch_norm(x, name=f"{name}_bn")
    x = layers.ReLU(name=f"{name}_relu")(x)
    x = conv(x, channels(x) // 2, 1, name=f"{name}_conv")
    if aa is None:
        return layers.AveragePooling2D(2, strides=2, name=f"{name}_pool")(x)
    return anti_alias(x, aa, name=f"{name}_blur")


def _densenet(
    variant: str,
    *,
    include_top,
    weights,
    input_tensor,
    input_shape,
    pooling,
    classes,
    classifier_activation,
    antialias,
    filter_size,
    pad_type,
    pool_only,
    synchronized_batch_norm,
    name,
):
    validate_builder_args(
        weights=weights,
        filter_size=filter_size,
        include_top=include_top,
        pooling=pooling,
        classes=classes,
        arch=variant,
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
    min_size = _min_input_size(aa)
    img_input, inputs = model_input(
        input_tensor,
        input_shape,
        min_size=min_size,
        why=min_size_reason(aa, min_size),
    )
    blocks, growth_rate, stem_filters = _VARIANTS[variant]
    antialiased = aa is not None
    blur_stem_conv = antialiased and not pool_only

    x = conv(
        img_input,
        stem_filters,
        7,
        strides=1 if blur_stem_conv else 2,
        padding=3,
        name="conv1_conv",
    )
    x = batch_norm(x, name="conv1_bn")
    x = layers.ReLU(name="conv1_relu")(x)
    if blur_stem_conv:
        x = anti_alias(x, aa, name="conv1_blur")
    # Zero padding equals PyTorch's -inf padding here: the input is a ReLU.
    x = layers.ZeroPadding2D(1, name="pool1_pad")(x)
    x = layers.MaxPooling2D(
        3, strides=1 if antialiased else 2, name="pool1"
    )(x)
    if antialiased:
        x = anti_alias(x, aa, name="pool1_blur")

    for stage, num_layers in enumerate(blocks, start=2):
        for i in range(1, num_layers + 1):
            x = _dense_layer(x, growth_rate, name=f"conv{stage}_block{i}")
        if stage <= len(blocks):
            x = _transition(x, aa, name=f"pool{stage}")

    x = batch_norm(x, name="bn")
    x = layers.ReLU(name="relu")(x)
    x = pooling_head(
        x,
        include_top=include_top,
        pooling=pooling,
        classes=classes,
        classifier_activation=classifier_activation,
    )
    return finish_model(
        inputs,
        x,
        name=name or variant,
        weights=weights,
        arch=variant,
        filter_size=filter_size,
        synchronized_batch_norm=synchronized_batch_norm,
    )


_DOC = """Instantiates the anti-aliased {title} architecture.

    Reference:
    - [Making Convolutional Networks Shift-Invariant Again](
        https://arxiv.org/abs/1904.11486) (ICML 2019)
    - [Densely Connected Convolutional Networks](
        https://arxiv.org/abs/1608.06993) (CVPR 2017)

    Equals `antialiased_cnns.{ref}(filter_size=..., pool_only=...)` once
    its weights are loaded with `keras_blurpool.load_torch_weights`
    (PyTorch names such as `features.denseblock1.denselayer1.norm1`;
    the released checkpoints spell these `norm.1`, which the reference's
    `_load_state_dict` renames before loading: do the same).
    Inputs are RGB images normalised as for torchvision, in
    `keras.config.image_data_format()`.

    Args:
        include_top: whether to include the classifier on top.
        weights: `None` (random initialization), `"imagenet"` (the
            reference's released ImageNet weights, fetched once, verified and
            cached), or the path of a Keras `.weights.h5` file or a PyTorch
            `.pth`/`.pth.tar` checkpoint.
        input_tensor: optional Keras tensor to use as the image input.
        input_shape: optional `(height, width, 3)` (`(3, height, width)`
            under channels_first); each size at least 32 (with
            `pad_type="reflect"`, at least 33 for `filter_size` 4 or 5, 49
            for 6 or 7, where the last blur must be able to reflect-pad
            its map).
        pooling: with `include_top=False`: `None` (4-D feature map),
            `"avg"` or `"max"` (global pooling to 2-D).
        classes: number of classes, with `include_top=True`.
        classifier_activation: activation of the `predictions` layer,
            e.g. `"softmax"` or `None` for logits.
        antialias: the anti-aliasing layer: `"blur"` (the reference's
            `BlurPool2D`), `"avg"` (2x2 average pool of stride 2), `None`
            (torchvision's non-antialiased DenseNet: stride-2 max pool,
            2x2 average pools) or a callable
            `(channels, strides, name) -> keras.layers.Layer`.
        filter_size: 1-7, taps of the binomial blur filter (1 = plain
            subsampling), or `None` for the plain network (as
            `antialias=None`).
        pad_type: padding of the blur: `"reflect"` (the reference's),
            `"replicate"` or `"zero"` (these take smaller inputs).
        pool_only: `True` antialiases the pools only. `False` also
            evaluates the 7x7 stem convolution at stride 1 and blurs
            after it (costly). Ignored by the plain network.
        synchronized_batch_norm: if `True`, BatchNormalization computes
            its batch statistics over all replicas of a `tf.distribute`
            strategy (Keras's `BatchNormalization(synchronized=True)`;
            TensorFlow backend only), so every replica holds the same
            moving statistics. See docs/training.md, "model.fit on GPUs".
        name: model name, `"{ref}"` by default.

    Returns:
        A `keras.Model`.

    Example:

    >>> model = keras_blurpool.applications.{func}(filter_size=4)
    >>> model.output_shape
    (None, 1000)
"""


def _builder(builder: str, title: str):
    """Makes the public builder of one DenseNet of the table."""
    variant = builder.lower()

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
        pool_only: bool = True,
        synchronized_batch_norm: bool = False,
        name: str | None = None,
    ) -> keras.Model:
        return _densenet(
            variant,
            include_top=include_top,
            weights=weights,
            input_tensor=input_tensor,
            input_shape=input_shape,
            pooling=pooling,
            classes=classes,
            classifier_activation=classifier_activation,
            antialias=antialias,
            filter_size=filter_size,
            pad_type=pad_type,
            pool_only=pool_only,
            synchronized_batch_norm=synchronized_batch_norm,
            name=name,
        )

    build.__name__ = build.__qualname__ = builder
    build.__doc__ = _DOC.format(title=title, ref=variant, func=builder)
    return build


DenseNet121 = _builder("DenseNet121", "DenseNet-121")
DenseNet161 = _builder("DenseNet161", "DenseNet-161")
DenseNet169 = _builder("DenseNet169", "DenseNet-169")
DenseNet201 = _builder("DenseNet201", "DenseNet-201")


_FIXED_NAMES = {
    "conv1_conv": "features.conv0",
    "conv1_bn": "features.norm0",
    "conv1_blur": "features.ds0",
    "pool1_blur": "features.pool0",
    "bn": "features.norm5",
    "predictions": "classifier",
}
_DENSE_LAYER_PARTS = {
    "0_bn": "norm1",
    "1_conv": "conv1",
    "1_bn": "norm2",
    "2_conv": "conv2",
}
_TRANSITION_PARTS = {"bn": "norm", "conv": "conv", "blur": "pool"}


def _torch_name(layer_name: str) -> str | None:
    if layer_name in _FIXED_NAMES:
        return _FIXED_NAMES[layer_name]
    # Keras stages count from conv1 (the stem); PyTorch blocks from 1.
    match = re.fullmatch(r"conv(\d+)_block(\d+)_(\d_\w+)", layer_name)
    if match and match[3] in _DENSE_LAYER_PARTS:
        return (
            f"features.denseblock{int(match[1]) - 1}."
            f"denselayer{match[2]}.{_DENSE_LAYER_PARTS[match[3]]}"
        )
    match = re.fullmatch(r"pool(\d+)_(\w+)", layer_name)
    if match and match[2] in _TRANSITION_PARTS:
        return (
            f"features.transition{int(match[1]) - 1}."
            f"{_TRANSITION_PARTS[match[2]]}"
        )
    return None


def _torch_names(model) -> dict[str, str] | None:
    """PyTorch module names of a DenseNet's layers, else None.

    The reference and torchvision name the weighted modules alike (the
    reference's BlurPools take the names of the pools they replace), so
    one mapping serves both `filter_size=None` and antialiased models.
    """
    names = [layer.name for layer in getattr(model, "layers", ())]
    if not {"conv1_conv", "conv2_block1_concat", "pool2_conv"} <= set(names):
        return None
    return {
        name: torch_name
        for name in names
        if (torch_name := _torch_name(name)) is not None
    }


# Old DenseNet checkpoints (all the reference's, and torchvision's own
# released ones) spell `norm.1` where the modules are now `norm1`; rename
# them as torchvision's `_load_state_dict` does.
_OLD_KEY = re.compile(
    r"^(.*denselayer\d+\.(?:norm|relu|conv))\."
    r"((?:[12])\.(?:weight|bias|running_mean|running_var))$"
)


def _fix_state_dict(state_dict: dict) -> dict:
    """Renames old-style DenseNet keys; leaves every other key alone."""
    fixed = {}
    for key, value in state_dict.items():
        match = _OLD_KEY.match(key)
        fixed[match.group(1) + match.group(2) if match else key] = value
    return fixed


# Released ImageNet checkpoints of the reference, `filter_size -> file`;
# at filter size 4 the network fine-tuned from the torchvision baseline.
_WEIGHTS = {
    "densenet121": {
        2: "densenet121_lpf2-7da7d4cd.pth",
        3: "densenet121_lpf3-0f267ad8.pth",
        4: "densenet121_lpf4_finetune-eceaa619.pth",
        5: "densenet121_lpf5-ebc7880c.pth",
    },
    "densenet161": {4: "densenet161_lpf4_finetune-a5e0f328.pth"},
    "densenet169": {4: "densenet169_lpf4_finetune-992131e6.pth"},
    "densenet201": {4: "densenet201_lpf4_finetune-736979b2.pth"},
}

registry.register_family(
    {
        "densenet121": DenseNet121,
        "densenet161": DenseNet161,
        "densenet169": DenseNet169,
        "densenet201": DenseNet201,
    },
    weights=_WEIGHTS,
    weights_from_scratch={"densenet121": {4: "densenet121_lpf4-edeaab00.pth"}},
    torch_names=_torch_names,
    head_prefixes=("classifier.",),
    fix_state_dict=_fix_state_dict,
)

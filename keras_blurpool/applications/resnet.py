"""Anti-aliased ResNet, ResNeXt and Wide ResNet (Zhang, ICML 2019).

Reference:
- [Making Convolutional Networks Shift-Invariant Again](
    https://arxiv.org/abs/1904.11486) (ICML 2019)
- [Deep Residual Learning for Image Recognition](
    https://arxiv.org/abs/1512.03385) (CVPR 2015)

The networks are torchvision's ResNet "v1.5" (the stride of a bottleneck
block sits in its 3x3 convolution). Anti-aliasing moves every stride out
of its layer into a `BlurPool2D` placed just before the following
convolution: the strided layer is evaluated densely, then blurred and
subsampled. In the stem, `pool_only=True` keeps the strided 7x7
convolution and only anti-aliases the max pool. `antialias="avg"` puts a
2x2 average pool of stride 2 in the same places (the `aa_layer` of timm's
`resnetaa` models; on the shortcut it is ResNet-D's average-pool
downsampling), and `antialias=None` or `filter_size=None` builds the plain
torchvision network.

Layer names follow `keras.applications.ResNet50` (`conv1_conv`,
`conv2_block1_1_conv`, `conv2_block1_0_conv` for the projection
shortcut, ...); blur layers are named after the convolution they precede
(`conv3_block1_2_blur`, `conv3_block1_0_blur`, `pool1_blur`), whatever
their kind.
"""

from __future__ import annotations

import dataclasses
import re

import keras
from keras import layers

from keras_blurpool.applications import registry
from keras_blurpool.applications._common import MIN_INPUT_SIZE
from keras_blurpool.applications._common import AntiAlias
from keras_blurpool.applications._common import anti_alias
from keras_blurpool.applications._common import antialias_spec
from keras_blurpool.applications._common import batch_norm
from keras_blurpool.applications._common import channels
from keras_blurpool.applications._common import conv
from keras_blurpool.applications._common import finish_model
from keras_blurpool.applications._common import follow_choice
from keras_blurpool.applications._common import min_size_reason
from keras_blurpool.applications._common import model_input
from keras_blurpool.applications._common import pooling_head
from keras_blurpool.applications._common import validate_builder_args
from keras_blurpool.layers import CircularPadding2D
from keras_blurpool.layers import is_antialiasing

_STAGE_FILTERS = (64, 128, 256, 512)
_BOTTLENECK_EXPANSION = 4


def _residual_block(
    x,
    planes: int,
    *,
    strides: int,
    bottleneck: bool,
    groups: int,
    width_per_group: int,
    aa: AntiAlias | None,
    circular: bool,
    name: str,
):
    """A basic (two 3x3) or bottleneck (1x1, 3x3, 1x1) residual block."""
    if bottleneck:
        width = int(planes * (width_per_group / 64.0)) * groups
        out_channels = planes * _BOTTLENECK_EXPANSION
        # (kernel size, filters, groups) of each convolution.
        convs = ((1, width, 1), (3, width, groups), (1, out_channels, 1))
        strided = 2  # torchvision strides the 3x3 conv (ResNet v1.5)
    else:
        out_channels = planes
        convs = ((3, planes, 1), (3, planes, 1))
        strided = 1
    antialiased = aa is not None and strides > 1

    # Anti-aliased, conv `strided` runs at stride 1 and its activated output
    # is blurred and subsampled just before the next conv.
    y, choice = x, None
    for i, (kernel_size, filters, conv_groups) in enumerate(convs, start=1):
        if antialiased and i == strided + 1:
            y = anti_alias(
                y,
                aa,
                strides=strides,
                name=f"{name}_{i}_blur",
                return_index=aa.polyphase,
            )
            if aa.polyphase:
                y, choice = y
        y = conv(
            y,
            filters,
            kernel_size,
            strides=strides if i == strided and not antialiased else 1,
            padding=kernel_size // 2,
            groups=conv_groups,
            circular=circular,
            name=f"{name}_{i}_conv",
        )
        y = batch_norm(y, name=f"{name}_{i}_bn")
        if i < len(convs):
            y = layers.Activation("relu", name=f"{name}_{i}_relu")(y)

    shortcut = x
    if strides > 1 or channels(x) != out_channels:
        # A 1x1 conv commutes with the blur; blurring its narrower input
        # first is the cheaper order and the one of the reference. APS and
        # LPS keep the component the main branch kept: both maps shift
        # together, so the block stays equivariant.
        if antialiased and aa.polyphase:
            shortcut = follow_choice(
                shortcut, aa, choice, strides=strides, name=f"{name}_0_blur"
            )
        elif antialiased:
            shortcut = anti_alias(
                shortcut, aa, strides=strides, name=f"{name}_0_blur"
            )
        shortcut = conv(
            shortcut,
            out_channels,
            1,
            strides=1 if antialiased else strides,
            name=f"{name}_0_conv",
        )
        shortcut = batch_norm(shortcut, name=f"{name}_0_bn")
    y = layers.Add(name=f"{name}_add")([shortcut, y])
    return layers.Activation("relu", name=f"{name}_out")(y)


def _stem(x, *, aa: AntiAlias | None, pool_only: bool, circular: bool):
    """7x7 convolution and max pool: 4x downsampling.

    APS and LPS run the convolution at stride 1 whatever `pool_only`: a
    strided convolution would break their exact invariance.
    """
    antialias_conv = aa is not None and (not pool_only or aa.polyphase)
    x = conv(
        x,
        64,
        7,
        strides=1 if antialias_conv else 2,
        padding=3,
        circular=circular,
        name="conv1_conv",
    )
    x = batch_norm(x, name="conv1_bn")
    x = layers.Activation("relu", name="conv1_relu")(x)
    if aa is None:
        # Zero padding equals PyTorch's -inf padding here: inputs are >= 0.
        pad = CircularPadding2D if circular else layers.ZeroPadding2D
        x = pad(1, name="pool1_pad")(x)
        return layers.MaxPooling2D(3, strides=2, name="pool1_pool")(x)
    if antialias_conv:
        # LPS's authors do not blur before their first LPS layer.
        first = dataclasses.replace(aa, filter_size=1) if aa.antialias == "lps" else aa
        x = anti_alias(x, first, name="conv1_blur")
    if circular or aa.polyphase:
        # As APS and LPS: the stride-1 2x2 max pool keeps the size.
        pad = CircularPadding2D if circular else layers.ZeroPadding2D
        x = pad(((0, 1), (0, 1)), name="pool1_pad")(x)
    x = layers.MaxPooling2D(2, strides=1, name="pool1_pool")(x)
    return anti_alias(x, aa, name="pool1_blur")


def _min_input_size(
    aa: AntiAlias | None, pool_only: bool, circular: bool = False
) -> int:
    """Smallest input side for which every anti-aliasing layer fits.

    Each anti-aliased map must be at least `aa.min_map_size` (larger than
    the padding for a reflect-padded blur).
    """
    if aa is None:
        return MIN_INPUT_SIZE
    size = MIN_INPUT_SIZE
    while True:
        side, blurred = size, []
        if pool_only and not aa.polyphase:
            side = (side - 1) // 2 + 1  # strided 7x7 conv
        else:
            blurred.append(side)
            side = (side + 1) // 2
        if not (circular or aa.polyphase):
            side -= 1  # 2x2 max pool, stride 1
        for _ in range(4):  # pool1_blur and the first block of stages 3-5
            blurred.append(side)
            side = (side + 1) // 2
        if min(blurred) >= aa.min_map_size:
            return size
        size += 1


def _resnet(
    *,
    bottleneck: bool,
    repeats: tuple[int, int, int, int],
    groups: int = 1,
    width_per_group: int = 64,
    default_name: str,
    include_top: bool,
    weights,
    input_tensor,
    input_shape,
    pooling,
    classes: int,
    classifier_activation,
    antialias,
    filter_size: int | None,
    pad_type: str,
    pool_only: bool,
    padding: str,
    synchronized_batch_norm: bool,
    name: str | None,
) -> keras.Model:
    """Builds any member of the family; see the public builders."""
    validate_builder_args(
        weights=weights,
        filter_size=filter_size,
        include_top=include_top,
        pooling=pooling,
        classes=classes,
        arch=default_name,
        pool_only=pool_only,
        antialias=antialias,
        pad_type=pad_type,
        synchronized_batch_norm=synchronized_batch_norm,
        padding=padding,
    )
    aa = antialias_spec(antialias, filter_size, pad_type, padding)
    circular = padding == "circular"
    min_size = _min_input_size(aa, pool_only, circular)
    img_input, inputs = model_input(
        input_tensor,
        input_shape,
        min_size=min_size,
        why=min_size_reason(aa, min_size),
    )
    x = _stem(img_input, aa=aa, pool_only=pool_only, circular=circular)
    for stage, (planes, blocks) in enumerate(zip(_STAGE_FILTERS, repeats)):
        for block in range(blocks):
            x = _residual_block(
                x,
                planes,
                strides=2 if stage > 0 and block == 0 else 1,
                bottleneck=bottleneck,
                groups=groups,
                width_per_group=width_per_group,
                aa=aa,
                circular=circular,
                name=f"conv{stage + 2}_block{block + 1}",
            )
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
        name=name or default_name,
        weights=weights,
        arch=default_name,
        filter_size=filter_size,
        synchronized_batch_norm=synchronized_batch_norm,
    )


_DOCSTRING = """Instantiates the anti-aliased {title} architecture.

Equals `antialiased_cnns.{reference}` of the PyTorch reference: with its
state_dict loaded by `keras_blurpool.load_torch_weights`, the logits
match. With `antialias=None` (or `filter_size=None`) it is torchvision's
`{reference}` and loads torchvision state_dicts, as does the
`antialias="avg"` network.

Args:
    include_top: whether to include the global average pooling and the
        fully-connected classifier at the top of the network.
    weights: `None` (random initialization), `"imagenet"` (the
        reference's released ImageNet weights, fetched once, verified and
        cached), or the path of a Keras `.weights.h5` file or a PyTorch
        `.pth`/`.pth.tar` checkpoint.
    input_tensor: optional Keras tensor (output of `keras.Input()`) to use
        as image input for the model.
    input_shape: optional `(height, width, 3)` tuple (`(3, height,
        width)` when `keras.config.image_data_format()` is
        `"channels_first"`); the default accepts any size. Sides must be
        at least 32; with `pad_type="reflect"`, 35 for `filter_size` 4-5
        and 51 for 6-7 (the reflect padding of the last blur needs a
        feature map larger than the padding).
    pooling: feature pooling when `include_top=False`: `None` (the 4-D
        output of the last block), `"avg"` or `"max"` (global pooling,
        2-D output).
    classes: number of classes, when `include_top=True`.
    classifier_activation: activation of the top layer, a `str` or
        callable; `None` returns the logits.
    antialias: the anti-aliasing layer after each stride-1 layer:
        `"blur"` (the reference's `BlurPool2D`), `"avg"` (a 2x2 average
        pool of stride 2, as timm's `resnetaa`), `"aps"` / `"lps"`
        (adaptive / learnable polyphase sampling, `APSPool2D` /
        `LPSPool2D` after a blur of `filter_size`, the shortcut keeping the
        main branch's component: with `padding="circular"`, exactly
        invariant to circular shifts), `None` (the plain network with
        strided convolutions and pools), or a callable `(channels,
        strides, name) -> keras.layers.Layer`.
    filter_size: taps of the binomial anti-aliasing filter, 1 to 7 (the
        paper uses 4; 1 means plain subsampling at the new positions, or
        no blur before APS/LPS), or `None` for the plain network (as
        `antialias=None`).
    pad_type: padding of the blur: `"reflect"` (the reference's),
        `"replicate"`, `"zero"` or `"circular"`; the last three take
        inputs down to 32 pixels (CIFAR).
    pool_only: if `True` (the reference's default), only the max pool of
        the stem is anti-aliased and the 7x7 convolution keeps its stride;
        `False` also anti-aliases that convolution, at about 4x its cost.
        No effect on the plain network; APS and LPS always anti-alias the
        convolution (as their authors: a strided one breaks invariance).
    padding: padding of every convolution and of the stem's max pool:
        `"zero"` (PyTorch's, the default) or `"circular"` (the map wraps
        around, as APS's and LPS's shift-invariant networks; the blur then
        pads circularly too).
    synchronized_batch_norm: if `True`, BatchNormalization computes its
        batch statistics over all replicas of a `tf.distribute` strategy
        (Keras's `BatchNormalization(synchronized=True)`; TensorFlow backend
        only), so every replica holds the same moving statistics. See
        docs/training.md, "model.fit on GPUs".
    name: name of the model; defaults to `"{reference}"`.

Returns:
    A `keras.Model` instance, in `keras.config.image_data_format()`.

Example:

>>> model = keras_blurpool.applications.{builder}(filter_size=4)
>>> model.output_shape
(None, 1000)
"""


def _builder(
    builder: str,
    title: str,
    reference: str,
    *,
    bottleneck: bool,
    repeats: tuple[int, int, int, int],
    groups: int = 1,
    width_per_group: int = 64,
):
    """Makes the public builder of one architecture of the table."""

    def build(
        include_top: bool = True,
        weights: str | None = None,
        input_tensor=None,
        input_shape: tuple[int | None, int | None, int] | None = None,
        pooling: str | None = None,
        classes: int = 1000,
        classifier_activation="softmax",
        antialias="blur",
        filter_size: int | None = 4,
        pad_type: str = "reflect",
        pool_only: bool = True,
        padding: str = "zero",
        synchronized_batch_norm: bool = False,
        name: str | None = None,
    ) -> keras.Model:
        return _resnet(
            bottleneck=bottleneck,
            repeats=repeats,
            groups=groups,
            width_per_group=width_per_group,
            default_name=reference,
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
            padding=padding,
            synchronized_batch_norm=synchronized_batch_norm,
            name=name,
        )

    build.__name__ = build.__qualname__ = builder
    build.__doc__ = _DOCSTRING.format(
        title=title, reference=reference, builder=builder
    )
    return build


ResNet18 = _builder(
    "ResNet18", "ResNet-18", "resnet18", bottleneck=False, repeats=(2, 2, 2, 2)
)
ResNet34 = _builder(
    "ResNet34", "ResNet-34", "resnet34", bottleneck=False, repeats=(3, 4, 6, 3)
)
ResNet50 = _builder(
    "ResNet50", "ResNet-50", "resnet50", bottleneck=True, repeats=(3, 4, 6, 3)
)
ResNet101 = _builder(
    "ResNet101",
    "ResNet-101",
    "resnet101",
    bottleneck=True,
    repeats=(3, 4, 23, 3),
)
ResNet152 = _builder(
    "ResNet152",
    "ResNet-152",
    "resnet152",
    bottleneck=True,
    repeats=(3, 8, 36, 3),
)
ResNeXt50_32x4d = _builder(
    "ResNeXt50_32x4d",
    "ResNeXt-50 (32x4d)",
    "resnext50_32x4d",
    bottleneck=True,
    repeats=(3, 4, 6, 3),
    groups=32,
    width_per_group=4,
)
ResNeXt101_32x8d = _builder(
    "ResNeXt101_32x8d",
    "ResNeXt-101 (32x8d)",
    "resnext101_32x8d",
    bottleneck=True,
    repeats=(3, 4, 23, 3),
    groups=32,
    width_per_group=8,
)
WideResNet50_2 = _builder(
    "WideResNet50_2",
    "Wide ResNet-50-2",
    "wide_resnet50_2",
    bottleneck=True,
    repeats=(3, 4, 6, 3),
    width_per_group=128,
)
WideResNet101_2 = _builder(
    "WideResNet101_2",
    "Wide ResNet-101-2",
    "wide_resnet101_2",
    bottleneck=True,
    repeats=(3, 4, 23, 3),
    width_per_group=128,
)


_STEM_NAMES = {"conv1_conv": "conv1", "conv1_bn": "bn1", "predictions": "fc"}
_BLOCK_LAYER = re.compile(r"conv([2-5])_block(\d+)_(\d)_(conv|bn|blur)")


def _torch_names(model) -> dict[str, str] | None:
    """Keras layer name -> module name in the reference's state_dict.

    `layer2.0.conv2.0` is the blur and `layer2.0.conv2.1` the convolution
    of an anti-aliased block; the plain network has torchvision's
    `layer2.0.conv2`. Returns None unless every layer with weights and
    every anti-aliasing layer is a ResNet layer of this module.
    """
    present = {layer.name for layer in model.layers}
    if "conv1_conv" not in present or "conv2_block1_add" not in present:
        return None
    names = {}
    for layer in model.layers:
        if not (layer.weights or is_antialiasing(layer)):
            continue
        if isinstance(layer, layers.Conv2D) and layer.use_bias:
            return None  # e.g. keras.applications.ResNet50, another network
        torch_name = _torch_name(layer.name, present)
        if torch_name is None:
            return None
        names[layer.name] = torch_name
    return names


def _torch_name(keras_name: str, present: set[str]) -> str | None:
    if keras_name in _STEM_NAMES:
        return _STEM_NAMES[keras_name]
    if keras_name == "conv1_blur":
        return "maxpool.0"
    if keras_name == "pool1_blur":
        # The stem's max pool is a Sequential: [blur,] [pad,] pool, blur
        # (the pad in APS's and LPS's networks).
        index = 1 + ("conv1_blur" in present) + ("pool1_pad" in present)
        return f"maxpool.{index}"
    match = _BLOCK_LAYER.fullmatch(keras_name)
    if match is None:
        return None
    stage, block, index, kind = match.groups()
    prefix = f"layer{int(stage) - 1}.{int(block) - 1}"
    blurred = f"conv{stage}_block{block}_{index}_blur" in present
    if index == "0":  # shortcut: Sequential([blur,] conv, bn)
        order = ("blur", "conv", "bn") if blurred else ("conv", "bn")
        return f"{prefix}.downsample.{order.index(kind)}"
    if kind == "bn":
        return f"{prefix}.bn{index}"
    if not blurred:
        return f"{prefix}.conv{index}"
    # An anti-aliased conv is Sequential([blur, conv]) in the reference.
    return f"{prefix}.conv{index}.{0 if kind == 'blur' else 1}"


# Released ImageNet checkpoints of the reference, `filter_size -> file`;
# at filter size 4 the network fine-tuned from the torchvision baseline.
_WEIGHTS = {
    "resnet18": {
        2: "resnet18_lpf2-6e2ee76f.pth",
        3: "resnet18_lpf3-449351b9.pth",
        4: "resnet18_lpf4_finetune-8cc58f59.pth",
        5: "resnet18_lpf5-c1eed0a1.pth",
    },
    "resnet34": {
        2: "resnet34_lpf2-4707aed9.pth",
        3: "resnet34_lpf3-16aa6c48.pth",
        4: "resnet34_lpf4_finetune-db622952.pth",
        5: "resnet34_lpf5-85283561.pth",
    },
    "resnet50": {
        2: "resnet50_lpf2-f0f7589d.pth",
        3: "resnet50_lpf3-a4e868d2.pth",
        4: "resnet50_lpf4_finetune-cad66808.pth",
        5: "resnet50_lpf5-9953c9ad.pth",
    },
    "resnet101": {
        2: "resnet101_lpf2-3d00941d.pth",
        3: "resnet101_lpf3-928f1444.pth",
        4: "resnet101_lpf4_finetune-9280acb0.pth",
        5: "resnet101_lpf5-1f3745af.pth",
    },
    "resnet152": {4: "resnet152_lpf4_finetune-7f67d9ae.pth"},
    "resnext50_32x4d": {4: "resnext50_32x4d_lpf4_finetune-9106e549.pth"},
    "resnext101_32x8d": {4: "resnext101_32x8d_lpf4_finetune-8f13a25d.pth"},
    "wide_resnet50_2": {4: "wide_resnet50_2_lpf4_finetune-02a183f7.pth"},
    "wide_resnet101_2": {4: "wide_resnet101_2_lpf4_finetune-da4eae04.pth"},
}
# Filter-4 networks trained from scratch (the reference's
# `_force_nonfinetuned=True`).
_WEIGHTS_FROM_SCRATCH = {
    "resnet18": {4: "resnet18_lpf4-8c77af40.pth"},
    "resnet34": {4: "resnet34_lpf4-55747267.pth"},
    "resnet50": {4: "resnet50_lpf4-994b528f.pth"},
    "resnet101": {4: "resnet101_lpf4-f8a116ff.pth"},
}

def _fix_state_dict(state_dict: dict) -> dict:
    """The LPS authors' checkpoints as the reference's names have them.

    Their Lightning module holds the ResNet as `core`, and every LPS layer
    a `gumbel_tau` buffer (the temperature, set by their schedule, not a
    weight); other state dicts pass unchanged.
    """
    if not state_dict or not all(k.startswith("core.") for k in state_dict):
        return state_dict
    return {
        k[len("core."):]: v
        for k, v in state_dict.items()
        if not k.endswith(".gumbel_tau")
    }


registry.register_family(
    {
        "resnet18": ResNet18,
        "resnet34": ResNet34,
        "resnet50": ResNet50,
        "resnet101": ResNet101,
        "resnet152": ResNet152,
        "resnext50_32x4d": ResNeXt50_32x4d,
        "resnext101_32x8d": ResNeXt101_32x8d,
        "wide_resnet50_2": WideResNet50_2,
        "wide_resnet101_2": WideResNet101_2,
    },
    weights=_WEIGHTS,
    weights_from_scratch=_WEIGHTS_FROM_SCRATCH,
    torch_names=_torch_names,
    head_prefixes=("fc.",),
    fix_state_dict=_fix_state_dict,
)

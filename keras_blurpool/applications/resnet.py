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

from keras import layers

from keras_blurpool.applications import registry
from keras_blurpool.applications.arguments import MIN_INPUT_SIZE
from keras_blurpool.applications.arguments import AntialiasSpec
from keras_blurpool.applications.arguments import Options
from keras_blurpool.applications.blocks import apply_antialias
from keras_blurpool.applications.blocks import batch_norm
from keras_blurpool.applications.blocks import channels
from keras_blurpool.applications.blocks import conv
from keras_blurpool.applications.blocks import follow_choice
from keras_blurpool.applications.blocks import pooling_head
from keras_blurpool.applications.builder import Family
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
    aa: AntialiasSpec | None,
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
            y = apply_antialias(
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
            shortcut = apply_antialias(
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


def _stem(x, *, aa: AntialiasSpec | None, pool_only: bool, circular: bool):
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
        x = apply_antialias(x, first, name="conv1_blur")
    if circular or aa.polyphase:
        # As APS and LPS: the stride-1 2x2 max pool keeps the size.
        pad = CircularPadding2D if circular else layers.ZeroPadding2D
        x = pad(((0, 1), (0, 1)), name="pool1_pad")(x)
    x = layers.MaxPooling2D(2, strides=1, name="pool1_pool")(x)
    return apply_antialias(x, aa, name="pool1_blur")


def _min_input_size(
    aa: AntialiasSpec | None, pool_only: bool, circular: bool = False
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


@dataclasses.dataclass(frozen=True, kw_only=True)
class ResNetVariant:
    """One torchvision ResNet: its blocks, depth and width.

    Attributes:
        bottleneck: bottleneck blocks (1x1, 3x3, 1x1) or basic ones (two
            3x3 convolutions).
        repeats: blocks in each of the four stages.
        groups: groups of the 3x3 convolutions (ResNeXt's cardinality).
        width_per_group: channels per group of the 3x3 convolutions at the
            first stage (64; 128 for Wide ResNets).
    """

    bottleneck: bool
    repeats: tuple[int, int, int, int]
    groups: int = 1
    width_per_group: int = 64


def _network(inputs, variant: ResNetVariant, options: Options):
    aa = options.aa
    x = _stem(
        inputs, aa=aa, pool_only=options.pool_only, circular=options.circular
    )
    for stage, (planes, blocks) in enumerate(zip(_STAGE_FILTERS, variant.repeats)):
        for block in range(blocks):
            x = _residual_block(
                x,
                planes,
                strides=2 if stage > 0 and block == 0 else 1,
                bottleneck=variant.bottleneck,
                groups=variant.groups,
                width_per_group=variant.width_per_group,
                aa=aa,
                circular=options.circular,
                name=f"conv{stage + 2}_block{block + 1}",
            )
    return pooling_head(x, options)


RESNET = Family(
    name="ResNet",
    module=__name__,
    network=_network,
    min_input_size=lambda variant, options: _min_input_size(
        options.aa, options.pool_only, options.circular
    ),
    arguments=("pool_only", "padding"),
    doc="""Instantiates the anti-aliased {title} architecture.

Equals `antialiased_cnns.{arch}` of the PyTorch reference: with its
state_dict loaded by `keras_blurpool.load_torch_weights` (or passed as
`weights=`), the logits match. With `antialias=None` (or
`filter_size=None`) it is torchvision's `{arch}` and loads torchvision
state_dicts, as does the `antialias="avg"` network.
""",
    doc_fields={
        "where": "in the stem, then in the first block of stages 3-5 "
        "after the strided 3x3 convolution and on the shortcut",
        "polyphase": '`"aps"` / `"lps"` (adaptive / learnable polyphase '
        "sampling, `APSPool2D` / `LPSPool2D` after a blur of "
        "`filter_size`, the shortcut keeping the main branch's "
        'component: with `padding="circular"`, exactly invariant to '
        "circular shifts), ",
        "first_conv": "the 7x7 stem convolution",
        "pool_only_note": " APS and LPS always anti-alias it (as their "
        "authors: a strided convolution breaks their invariance).",
    },
)

ResNet18 = RESNET.builder(
    "ResNet18",
    arch="resnet18",
    title="ResNet-18",
    variant=ResNetVariant(bottleneck=False, repeats=(2, 2, 2, 2)),
)
ResNet34 = RESNET.builder(
    "ResNet34",
    arch="resnet34",
    title="ResNet-34",
    variant=ResNetVariant(bottleneck=False, repeats=(3, 4, 6, 3)),
)
ResNet50 = RESNET.builder(
    "ResNet50",
    arch="resnet50",
    title="ResNet-50",
    variant=ResNetVariant(bottleneck=True, repeats=(3, 4, 6, 3)),
)
ResNet101 = RESNET.builder(
    "ResNet101",
    arch="resnet101",
    title="ResNet-101",
    variant=ResNetVariant(bottleneck=True, repeats=(3, 4, 23, 3)),
)
ResNet152 = RESNET.builder(
    "ResNet152",
    arch="resnet152",
    title="ResNet-152",
    variant=ResNetVariant(bottleneck=True, repeats=(3, 8, 36, 3)),
)
ResNeXt50_32x4d = RESNET.builder(
    "ResNeXt50_32x4d",
    arch="resnext50_32x4d",
    title="ResNeXt-50 (32x4d)",
    variant=ResNetVariant(
        bottleneck=True, repeats=(3, 4, 6, 3), groups=32, width_per_group=4
    ),
)
ResNeXt101_32x8d = RESNET.builder(
    "ResNeXt101_32x8d",
    arch="resnext101_32x8d",
    title="ResNeXt-101 (32x8d)",
    variant=ResNetVariant(
        bottleneck=True, repeats=(3, 4, 23, 3), groups=32, width_per_group=8
    ),
)
WideResNet50_2 = RESNET.builder(
    "WideResNet50_2",
    arch="wide_resnet50_2",
    title="Wide ResNet-50-2",
    variant=ResNetVariant(
        bottleneck=True, repeats=(3, 4, 6, 3), width_per_group=128
    ),
)
WideResNet101_2 = RESNET.builder(
    "WideResNet101_2",
    arch="wide_resnet101_2",
    title="Wide ResNet-101-2",
    variant=ResNetVariant(
        bottleneck=True, repeats=(3, 4, 23, 3), width_per_group=128
    ),
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

# The LPS authors' shortcut layer (`downsample.0`) takes the main branch's
# choice, so its temperature is never used; ours is an APSPool2D, which
# has none.
_SHORTCUT_TAU = re.compile(
    r"layer\d+\.\d+\.downsample\.0\.component_selection\.gumbel_tau"
)


def _fix_state_dict(state_dict: dict) -> dict:
    """The LPS authors' checkpoints as the reference's names have them.

    Their Lightning module holds the ResNet as `core`, and every LPS layer
    a `gumbel_tau` buffer, the Gumbel-softmax temperature their schedule
    had reached: it loads into the `LPSPool2D`'s `tau` (fine-tuning
    continues from it), except the shortcuts', which take the main
    branch's choice and are dropped. Other state dicts pass unchanged.
    """
    if not state_dict or not all(k.startswith("core.") for k in state_dict):
        return state_dict
    fixed = {k[len("core."):]: v for k, v in state_dict.items()}
    return {k: v for k, v in fixed.items() if not _SHORTCUT_TAU.fullmatch(k)}


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

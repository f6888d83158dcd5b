"""timm's anti-aliased ResNets: `resnetblur`, `resnetaa`, `seresnextaa`.

Reference:
- [Making Convolutional Networks Shift-Invariant Again](
    https://arxiv.org/abs/1904.11486) (ICML 2019)
- [Bag of Tricks for Image Classification with Convolutional Neural
    Networks](https://arxiv.org/abs/1812.01187) (CVPR 2019): the deep stem
    and the average-pool shortcut of the "D" variants
- [Squeeze-and-Excitation Networks](https://arxiv.org/abs/1709.01507)
- timm (pytorch-image-models), `timm/models/resnet.py`, whose released
    weights (Apache-2.0) these builders load.

They differ from the reference's ResNets (`resnet.py`) in where they
anti-alias: only the 3x3 convolution of the first block of stages 3-5
runs at stride 1 and is then low-pass filtered and subsampled; the
shortcut keeps its stride (timm never anti-aliases it). The stem keeps its
strided convolution; `antialias="blur"` runs its max pool at stride 1 and
blurs (`BlurPool2D`, filter 3, reflect: timm's `BlurPool2d`),
`antialias="avg"` replaces the max pool by a 2x2 average pool. The "D"
variants have the deep stem (three 3x3 convolutions) and the
average-pool shortcut, the "SE" ones squeeze-and-excitation after the last
BatchNorm of each block, the "X" ones grouped 3x3 convolutions.

`antialias="aps"` / `"lps"` (not timm's) also run the stem's strided
convolution at stride 1 and subsample after it, and the shortcut keeps
the component the main branch kept (its 1x1 convolution, or the "D"
variants' 2x2 average pool, then runs at stride 1): with
`padding="circular"` the network is exactly invariant to circular shifts.

timm needs sides divisible by 32 for the `aa` models (its average pools
floor odd maps, the shortcut's ceil them); here the blocks' average pool
keeps odd maps whole (`AntialiasAvgPool2D`), so any side from 32 works,
and wherever timm runs the outputs are equal.

Layer names: `stem_*` (`stem_conv` or `stem_1_conv` ... `stem_3_conv`,
`stem_bn`, `stem_pool`, `stem_blur`), then `conv{2-5}_block{n}_{i}_conv`
/ `_bn` as keras.applications' ResNet, `_0_pool` / `_0_conv` / `_0_bn` on
the shortcut, `_{i}_blur` for the anti-aliasing before conv `i`, `_se_*`
for squeeze-and-excitation, `_out` for each block's output.
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
from keras_blurpool.applications.blocks import data_format
from keras_blurpool.applications.blocks import follow_choice
from keras_blurpool.applications.blocks import pooling_head
from keras_blurpool.applications.builder import Family
from keras_blurpool.applications.registry import HubWeights
from keras_blurpool.applications.registry import Preprocessing
from keras_blurpool.layers import CircularPadding2D

_STAGE_PLANES = (64, 128, 256, 512)
_BOTTLENECK_EXPANSION = 4
# timm's SEModule: rd_ratio 1/16, rounded to a multiple of 8.
_SE_RATIO, _SE_DIVISOR = 1 / 16, 8


@dataclasses.dataclass(frozen=True, kw_only=True)
class TimmResNetVariant:
    """One timm architecture: `timm.models.resnet.ResNet`'s arguments.

    Attributes:
        bottleneck: bottleneck blocks (1x1, 3x3, 1x1) or basic ones.
        repeats: blocks in each of the four stages.
        antialias: the released network's anti-aliasing, `"blur"` or
            `"avg"` (the builder's default).
        plain: timm's name of the plain twin (`antialias=None`).
        cardinality: groups of the 3x3 convolutions.
        base_width: channels per group at the first stage.
        stem_width: the deep stem's width; None for the 7x7 stem.
        avg_down: the average-pool shortcut of the "D" networks.
        se: squeeze-and-excitation in every block.
    """

    bottleneck: bool
    repeats: tuple[int, int, int, int]
    antialias: str
    plain: str
    cardinality: int = 1
    base_width: int = 64
    stem_width: int | None = None
    avg_down: bool = False
    se: bool = False


def _se_channels(filters: int) -> int:
    """timm's `make_divisible(filters / 16, 8)`."""
    value = filters * _SE_RATIO
    return max(_SE_DIVISOR, int(value + _SE_DIVISOR / 2) // _SE_DIVISOR * _SE_DIVISOR)


def _squeeze_excite(x, *, name: str):
    """timm's `SEModule`: mean, 1x1 conv, ReLU, 1x1 conv, sigmoid gate."""
    filters = channels(x)
    s = layers.GlobalAveragePooling2D(
        data_format=data_format(), keepdims=True, name=f"{name}_se_squeeze"
    )(x)
    s = conv(s, _se_channels(filters), 1, use_bias=True, name=f"{name}_se_reduce")
    s = layers.Activation("relu", name=f"{name}_se_relu")(s)
    s = conv(s, filters, 1, use_bias=True, name=f"{name}_se_expand")
    s = layers.Activation("sigmoid", name=f"{name}_se_gate")(s)
    return layers.Multiply(name=f"{name}_se_excite")([x, s])


def _block(
    x,
    planes: int,
    *,
    strides: int,
    config: TimmResNetVariant,
    aa,
    circular: bool = False,
    name: str,
):
    """timm's `Bottleneck` or `BasicBlock`.

    With APS or LPS the shortcut keeps the polyphase component the main
    branch kept (`follow_choice`): its 1x1 convolution runs at stride 1
    after the subsampling, and the "D" shortcut's 2x2 average pool runs
    at stride 1 (padded as the convolutions) before it.
    """
    if config.bottleneck:
        width = int(planes * config.base_width / 64) * config.cardinality
        out_channels = planes * _BOTTLENECK_EXPANSION
        # (kernel size, filters, groups); the 3x3 conv carries the stride.
        convs = ((1, width, 1), (3, width, config.cardinality), (1, out_channels, 1))
        strided = 2
    else:
        out_channels = planes
        convs = ((3, planes, 1), (3, planes, 1))
        strided = 1
    antialiased = aa is not None and strides > 1
    polyphase = antialiased and aa.polyphase

    y, choice = x, None
    for i, (kernel_size, filters, groups) in enumerate(convs, start=1):
        if antialiased and i == strided + 1:
            y = apply_antialias(
                y, aa, strides=strides, name=f"{name}_{i}_blur",
                return_index=polyphase,
            )
            if polyphase:
                y, choice = y
        y = conv(
            y,
            filters,
            kernel_size,
            strides=strides if i == strided and not antialiased else 1,
            padding=kernel_size // 2,
            groups=groups,
            circular=circular,
            name=f"{name}_{i}_conv",
        )
        # timm's zero_init_last: each block starts as the identity.
        y = batch_norm(y, name=f"{name}_{i}_bn", zero_init=i == len(convs))
        if i < len(convs):
            y = layers.Activation("relu", name=f"{name}_{i}_relu")(y)
    if config.se:
        y = _squeeze_excite(y, name=name)

    shortcut = x
    if strides > 1 or channels(x) != out_channels:
        if config.avg_down:
            if strides > 1 and polyphase:
                # The 2x2 average at stride 1 (its map keeps its size),
                # then the main branch's component, without another blur.
                pad = CircularPadding2D if circular else layers.ZeroPadding2D
                shortcut = pad(((0, 1), (0, 1)), name=f"{name}_0_pad")(shortcut)
                shortcut = layers.AveragePooling2D(
                    strides, strides=1, data_format=data_format(),
                    name=f"{name}_0_pool",
                )(shortcut)
                shortcut = follow_choice(
                    shortcut, dataclasses.replace(aa, filter_size=1), choice,
                    strides=strides, name=f"{name}_0_blur",
                )
            elif strides > 1:
                # AvgPool2d(2, ceil_mode=True, count_include_pad=False).
                shortcut = layers.AveragePooling2D(
                    strides,
                    strides=strides,
                    padding="same",
                    data_format=data_format(),
                    name=f"{name}_0_pool",
                )(shortcut)
            shortcut = conv(shortcut, out_channels, 1, name=f"{name}_0_conv")
        elif polyphase:
            shortcut = follow_choice(
                shortcut, aa, choice, strides=strides, name=f"{name}_0_blur"
            )
            shortcut = conv(shortcut, out_channels, 1, name=f"{name}_0_conv")
        else:
            shortcut = conv(
                shortcut, out_channels, 1, strides=strides, name=f"{name}_0_conv"
            )
        shortcut = batch_norm(shortcut, name=f"{name}_0_bn")
    y = layers.Add(name=f"{name}_add")([shortcut, y])
    return layers.Activation("relu", name=f"{name}_out")(y)


def _stem(
    x, *, config: TimmResNetVariant, aa: AntialiasSpec | None, circular: bool = False
):
    """The 7x7 or deep stem, then the (anti-aliased) pool: 4x downsampling.

    APS and LPS run the stem's strided convolution at stride 1 and
    subsample after its ReLU (`stem_conv_blur`, or `stem_1_blur` in the
    deep stem): a strided convolution breaks their invariance.
    """
    polyphase = aa is not None and aa.polyphase
    stride = 1 if polyphase else 2
    if config.stem_width is None:
        x = conv(
            x, 64, 7, strides=stride, padding=3, circular=circular,
            name="stem_conv",
        )
        first = "stem_conv_blur"
    else:
        width = config.stem_width
        x = conv(
            x, width, 3, strides=stride, padding=1, circular=circular,
            name="stem_1_conv",
        )
        x = batch_norm(x, name="stem_1_bn")
        x = layers.Activation("relu", name="stem_1_relu")(x)
        if polyphase:
            x = apply_antialias(x, aa, name="stem_1_blur")
        x = conv(
            x, width, 3, padding=1, circular=circular, name="stem_2_conv"
        )
        x = batch_norm(x, name="stem_2_bn")
        x = layers.Activation("relu", name="stem_2_relu")(x)
        x = conv(
            x, 2 * width, 3, padding=1, circular=circular, name="stem_3_conv"
        )
    x = batch_norm(x, name="stem_bn")
    x = layers.Activation("relu", name="stem_relu")(x)
    if polyphase and config.stem_width is None:
        x = apply_antialias(x, aa, name=first)
    if aa is not None and aa.antialias == "avg":
        # timm's `AvgPool2d(2)` in place of the max pool; it floors odd
        # maps, as timm does (no shortcut has to match here).
        return layers.AveragePooling2D(
            2, strides=2, data_format=data_format(), name="stem_pool"
        )(x)
    # Zero padding equals PyTorch's -inf padding here: inputs are >= 0.
    pad = CircularPadding2D if circular else layers.ZeroPadding2D
    x = pad(1, data_format=data_format(), name="stem_pad")(x)
    if aa is None:
        return layers.MaxPooling2D(
            3, strides=2, data_format=data_format(), name="stem_pool"
        )(x)
    x = layers.MaxPooling2D(
        3, strides=1, data_format=data_format(), name="stem_pool"
    )(x)
    return apply_antialias(x, aa, name="stem_blur")


def _min_input_size(aa: AntialiasSpec | None) -> int:
    """Smallest input side for which every anti-aliasing layer fits."""
    if aa is None or aa.antialias == "avg":
        return MIN_INPUT_SIZE
    size = MIN_INPUT_SIZE
    while True:
        blurred = []
        if aa.polyphase:
            blurred.append(size)  # the stem convolution, at stride 1
        side = (size - 1) // 2 + 1
        for _ in range(4):  # stem_blur and the first block of stages 3-5
            blurred.append(side)
            side = (side + 1) // 2
        if min(blurred) >= aa.min_map_size:
            return size
        size += 1


def _network(img_input, variant: TimmResNetVariant, options: Options):
    aa = options.aa
    x = _stem(img_input, config=variant, aa=aa, circular=options.circular)
    for stage, (planes, blocks) in enumerate(zip(_STAGE_PLANES, variant.repeats)):
        for block in range(blocks):
            x = _block(
                x,
                planes,
                strides=2 if stage > 0 and block == 0 else 1,
                config=variant,
                aa=aa,
                circular=options.circular,
                name=f"conv{stage + 2}_block{block + 1}",
            )
    return pooling_head(x, options)


def _bicubic(input_size, crop_pct, test_input_size=None, test_crop_pct=None):
    return Preprocessing(
        input_size=input_size,
        crop_pct=crop_pct,
        interpolation="bicubic",
        test_input_size=test_input_size,
        test_crop_pct=test_crop_pct,
    )


# timm's released ImageNet-1k weights (its `default_cfgs`; top-1 from its
# `results/results-imagenet.csv`, at `input_size`). The in12k tags
# (11821 classes) are left out.
_HUB_WEIGHTS: dict[str, dict[str, HubWeights]] = {
    "resnetblur50": {
        "bt_in1k": HubWeights(_bicubic(224, 0.875, 288, 0.95), top1=79.31),
    },
    "resnetaa50": {
        "a1h_in1k": HubWeights(_bicubic(224, 0.95, 288, 1.0), top1=80.61),
    },
    "resnetaa50d": {
        "sw_in12k_ft_in1k": HubWeights(
            _bicubic(224, 0.95, 288, 1.0), top1=81.78
        ),
    },
    "resnetaa101d": {
        "sw_in12k_ft_in1k": HubWeights(
            _bicubic(224, 0.95, 288, 1.0), top1=83.54
        ),
    },
    "seresnextaa101d_32x8d": {
        "sw_in12k_ft_in1k_288": HubWeights(
            _bicubic(288, 0.95, 320, 1.0), top1=86.53
        ),
        "sw_in12k_ft_in1k": HubWeights(_bicubic(224, 0.875, 288, 1.0)),
        "ah_in1k": HubWeights(_bicubic(224, 0.95, 288, 1.0)),
    },
    "seresnextaa201d_32x8d": {
        "sw_in12k_ft_in1k_384": HubWeights(_bicubic(384, 1.0), top1=87.30),
    },
}

TIMM_RESNET = Family(
    name="timm ResNet",
    module=__name__,
    network=_network,
    min_input_size=lambda variant, options: _min_input_size(options.aa),
    arguments=("padding",),
    defaults=lambda variant: {"antialias": variant.antialias, "filter_size": 3},
    doc="""Instantiates timm's {title}.

Equals timm's `{arch}` (`timm.create_model("{arch}")`): a timm state dict
(`.safetensors` or `.pth`) loaded through `weights=` gives the same
logits. With `antialias=None` it is timm's plain `{plain}`, the network
to fine-tune from.{released} `registry.get("{arch}").preprocessing_for(tag)`
says how to preprocess for released weights. Filter sizes: odd ones pad
as timm's `BlurPool2d`, even ones as the reference's.
""",
    doc_fields={
        "where": "with `\"blur\"`: the stem's max pool, run at stride 1, and "
        "the strided 3x3 convolution of the first block of stages 3-5; "
        "`\"avg\"` replaces the stem's max pool; the shortcut keeps its "
        "stride, as in timm",
        "polyphase": '`"aps"` / `"lps"` (adaptive / learnable polyphase '
        "sampling, `APSPool2D` / `LPSPool2D` after a blur of "
        "`filter_size`, at the stem's convolution, run at stride 1, its "
        "max pool and the strided 3x3 convolutions, the shortcut keeping "
        "the main branch's component after its 1x1 convolution or "
        '2x2 average pool, run at stride 1: with `padding="circular"`, '
        "exactly invariant to circular shifts), ",
        "imagenet": "timm's released weights of the default tag, "
        "Apache-2.0, fetched once from the Hugging Face Hub, verified and "
        "cached",
    },
)


def _timm_builder(name: str, *, arch: str, title: str, variant: TimmResNetVariant):
    """`TIMM_RESNET.builder`, with the released weights in the docstring."""
    hub = _HUB_WEIGHTS.get(arch, {})
    if hub:
        released = (
            " Released ImageNet weights (Apache-2.0): "
            + ", ".join(
                f"`{tag}`" + (f" ({w.top1}% top-1)" if w.top1 else "")
                for tag, w in hub.items()
            )
            + f"; `\"imagenet\"` is `{next(iter(hub))}`."
        )
        tags = ", a released tag (" + ", ".join(f"`{tag!r}`" for tag in hub) + ")"
    else:
        released = " timm released no ImageNet weights for it."
        tags = ""
    return TIMM_RESNET.builder(
        name,
        arch=arch,
        title=title,
        variant=variant,
        plain=variant.plain,
        released=released,
        tags=tags,
        **({} if hub else {"imagenet": "timm released none for this network: it raises"}),
    )


_R50, _R101 = (3, 4, 6, 3), (3, 4, 23, 3)

ResNetBlur18 = _timm_builder(
    "ResNetBlur18",
    arch="resnetblur18",
    title="ResNet-18 with blur pooling",
    variant=TimmResNetVariant(
        bottleneck=False, repeats=(2, 2, 2, 2), antialias="blur", plain="resnet18"
    ),
)
ResNetBlur50 = _timm_builder(
    "ResNetBlur50",
    arch="resnetblur50",
    title="ResNet-50 with blur pooling",
    variant=TimmResNetVariant(
        bottleneck=True, repeats=_R50, antialias="blur", plain="resnet50"
    ),
)
ResNetBlur50D = _timm_builder(
    "ResNetBlur50D",
    arch="resnetblur50d",
    title="ResNet-50-D with blur pooling",
    variant=TimmResNetVariant(
        bottleneck=True,
        repeats=_R50,
        antialias="blur",
        plain="resnet50d",
        stem_width=32,
        avg_down=True,
    ),
)
ResNetBlur101D = _timm_builder(
    "ResNetBlur101D",
    arch="resnetblur101d",
    title="ResNet-101-D with blur pooling",
    variant=TimmResNetVariant(
        bottleneck=True,
        repeats=_R101,
        antialias="blur",
        plain="resnet101d",
        stem_width=32,
        avg_down=True,
    ),
)
ResNetAA34D = _timm_builder(
    "ResNetAA34D",
    arch="resnetaa34d",
    title="ResNet-34-D with average-pool anti-aliasing",
    variant=TimmResNetVariant(
        bottleneck=False,
        repeats=_R50,
        antialias="avg",
        plain="resnet34d",
        stem_width=32,
        avg_down=True,
    ),
)
ResNetAA50 = _timm_builder(
    "ResNetAA50",
    arch="resnetaa50",
    title="ResNet-50 with average-pool anti-aliasing",
    variant=TimmResNetVariant(
        bottleneck=True, repeats=_R50, antialias="avg", plain="resnet50"
    ),
)
ResNetAA50D = _timm_builder(
    "ResNetAA50D",
    arch="resnetaa50d",
    title="ResNet-50-D with average-pool anti-aliasing",
    variant=TimmResNetVariant(
        bottleneck=True,
        repeats=_R50,
        antialias="avg",
        plain="resnet50d",
        stem_width=32,
        avg_down=True,
    ),
)
ResNetAA101D = _timm_builder(
    "ResNetAA101D",
    arch="resnetaa101d",
    title="ResNet-101-D with average-pool anti-aliasing",
    variant=TimmResNetVariant(
        bottleneck=True,
        repeats=_R101,
        antialias="avg",
        plain="resnet101d",
        stem_width=32,
        avg_down=True,
    ),
)
SEResNetAA50D = _timm_builder(
    "SEResNetAA50D",
    arch="seresnetaa50d",
    title="SE-ResNet-50-D with average-pool anti-aliasing",
    variant=TimmResNetVariant(
        bottleneck=True,
        repeats=_R50,
        antialias="avg",
        plain="seresnet50d",
        stem_width=32,
        avg_down=True,
        se=True,
    ),
)
SEResNeXtAA101D_32x8d = _timm_builder(
    "SEResNeXtAA101D_32x8d",
    arch="seresnextaa101d_32x8d",
    title="SE-ResNeXt-101-D (32x8d) with average-pool anti-aliasing",
    variant=TimmResNetVariant(
        bottleneck=True,
        repeats=_R101,
        antialias="avg",
        plain="seresnext101d_32x8d",
        cardinality=32,
        base_width=8,
        stem_width=32,
        avg_down=True,
        se=True,
    ),
)
SEResNeXtAA201D_32x8d = _timm_builder(
    "SEResNeXtAA201D_32x8d",
    arch="seresnextaa201d_32x8d",
    title="SE-ResNeXt-201-D (32x8d) with average-pool anti-aliasing",
    variant=TimmResNetVariant(
        bottleneck=True,
        repeats=(3, 24, 36, 4),
        antialias="avg",
        plain="seresnext201d_32x8d",
        cardinality=32,
        base_width=8,
        stem_width=64,
        avg_down=True,
        se=True,
    ),
)
_BUILDERS = (
    ResNetBlur18,
    ResNetBlur50,
    ResNetBlur50D,
    ResNetBlur101D,
    ResNetAA34D,
    ResNetAA50,
    ResNetAA50D,
    ResNetAA101D,
    SEResNetAA50D,
    SEResNeXtAA101D_32x8d,
    SEResNeXtAA201D_32x8d,
)


_STEM_NAMES = {
    "stem_conv": "conv1",
    "stem_1_conv": "conv1.0",
    "stem_1_bn": "conv1.1",
    "stem_2_conv": "conv1.3",
    "stem_2_bn": "conv1.4",
    "stem_3_conv": "conv1.6",
    "stem_bn": "bn1",
    "predictions": "fc",
}
_BLOCK_LAYER = re.compile(
    r"conv([2-5])_block(\d+)_(?:(\d)_(conv|bn)|se_(reduce|expand))"
)


def _torch_names(model) -> dict[str, str] | None:
    """Keras layer name -> module name in timm's state dict.

    Anti-aliasing layers hold no tensors in timm's checkpoints (its
    `BlurPool2d` filter is not saved), so they get no name. Returns None
    unless every layer with weights is one of this family's.
    """
    present = {layer.name for layer in model.layers}
    if "stem_bn" not in present or "conv2_block1_add" not in present:
        return None
    names = {}
    for layer in model.layers:
        if not layer.weights:
            continue
        torch_name = _torch_name(layer.name, present)
        if torch_name is None:
            return None
        names[layer.name] = torch_name
    return names


def _torch_name(keras_name: str, present: set[str]) -> str | None:
    if keras_name in _STEM_NAMES:
        return _STEM_NAMES[keras_name]
    match = _BLOCK_LAYER.fullmatch(keras_name)
    if match is None:
        return None
    stage, block, index, kind, se = match.groups()
    prefix = f"layer{int(stage) - 1}.{int(block) - 1}"
    if se is not None:
        return f"{prefix}.se.{'fc1' if se == 'reduce' else 'fc2'}"
    if index != "0":
        return f"{prefix}.{kind}{index}"
    # The shortcut: Sequential([pool,] conv, bn). In a network with
    # average-pool shortcuts (stage 3 has a pool), index 0 is the pool, an
    # Identity where the shortcut does not stride.
    offset = 1 if "conv3_block1_0_pool" in present else 0
    return f"{prefix}.downsample.{offset + (kind == 'bn')}"


registry.register_family(
    {builder.arch: builder for builder in _BUILDERS},
    weights={},
    torch_names=_torch_names,
    head_prefixes=("fc.",),
    released_pool_only=None,
    licence="Apache-2.0 (timm's)",
    source="timm",
    hub_weights=_HUB_WEIGHTS,
    per_name={
        builder.arch: {"released_antialias": builder.variant.antialias}
        for builder in _BUILDERS
    },
)

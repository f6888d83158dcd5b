"""Anti-aliased MobileNetV2 (Zhang, ICML 2019).

MobileNetV2 of Sandler et al. (CVPR 2018) as in
`antialiased_cnns.mobilenet_v2`: every stride-2 inverted residual block
evaluates its depthwise convolution at stride 1 and downsamples with
`BlurPool2D` after its ReLU6 (or the builder's `antialias` layer). The
stem convolution stays strided. `antialias=None` (or `filter_size=None`)
builds torchvision's plain MobileNetV2.

Layer names follow `keras.applications.mobilenet_v2` (`Conv1`,
`bn_Conv1`, `expanded_conv_depthwise`, `block_1_expand`, `Conv_1`, ...);
blur layers are `block_N_blur`.
"""

from __future__ import annotations

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
from keras_blurpool.applications.blocks import pooling_head
from keras_blurpool.applications.builder import Family
from keras_blurpool.layers import CircularPadding2D
from keras_blurpool.layers import is_antialiasing

# Expansion factor, output channels, repeats, stride of the first repeat.
_BLOCKS = (
    (1, 16, 1, 1),
    (6, 24, 2, 2),
    (6, 32, 3, 2),
    (6, 64, 4, 2),
    (6, 96, 3, 1),
    (6, 160, 3, 2),
    (6, 320, 1, 1),
)
_STEM_FILTERS = 32
_LAST_FILTERS = 1280
# Only torchvision's classifier has dropout; the reference removed it.
_BASELINE_DROPOUT = 0.2


def _min_input_size(aa: AntialiasSpec | None) -> int:
    # The last stride-2 block anti-aliases the input downsampled 4 times
    # (rounding up), which must be at least `aa.min_map_size` (larger than
    # the pad for reflect padding).
    if aa is None:
        return MIN_INPUT_SIZE
    return max(MIN_INPUT_SIZE, 16 * (aa.min_map_size - 1) + 1)


def _relu6(x, name: str):
    return layers.ReLU(6.0, name=name)(x)


def _inverted_res_block(x, expansion, filters, stride, aa, block_id, circular=False):
    prefix = f"block_{block_id}_" if block_id else "expanded_conv_"
    in_channels = channels(x)
    y = x
    if expansion != 1:
        hidden = int(round(in_channels * expansion))
        y = conv(y, hidden, 1, name=f"{prefix}expand")
        y = batch_norm(y, name=f"{prefix}expand_BN")
        y = _relu6(y, f"{prefix}expand_relu")
    blur = stride != 1 and aa is not None
    pad = CircularPadding2D if circular else layers.ZeroPadding2D
    y = pad(1, name=f"{prefix}pad")(y)
    y = layers.DepthwiseConv2D(
        3,
        strides=1 if blur else stride,
        use_bias=False,
        name=f"{prefix}depthwise",
    )(y)
    y = batch_norm(y, name=f"{prefix}depthwise_BN")
    y = _relu6(y, f"{prefix}depthwise_relu")
    if blur:
        y = apply_antialias(y, aa, strides=stride, name=f"{prefix}blur")
    y = conv(y, filters, 1, name=f"{prefix}project")
    # Linear bottleneck: no activation after the projection.
    y = batch_norm(y, name=f"{prefix}project_BN")
    if stride == 1 and in_channels == filters:
        return layers.Add(name=f"{prefix}add")([x, y])
    return y


def _network(img_input, variant, options: Options):
    del variant  # the family has one member
    aa = options.aa
    # APS and LPS run the stem convolution at stride 1 and subsample after
    # its ReLU6: a strided convolution breaks their invariance.
    polyphase = aa is not None and aa.polyphase
    x = conv(
        img_input,
        _STEM_FILTERS,
        3,
        strides=1 if polyphase else 2,
        padding=1,
        circular=options.circular,
        name="Conv1",
    )
    x = batch_norm(x, name="bn_Conv1")
    x = _relu6(x, "Conv1_relu")
    if polyphase:
        x = apply_antialias(x, aa, name="Conv1_blur")

    block_id = 0
    for expansion, filters, repeats, stride in _BLOCKS:
        for i in range(repeats):
            x = _inverted_res_block(
                x,
                expansion,
                filters,
                stride if i == 0 else 1,
                aa,
                block_id,
                circular=options.circular,
            )
            block_id += 1

    x = conv(x, _LAST_FILTERS, 1, name="Conv_1")
    x = batch_norm(x, name="Conv_1_bn")
    x = _relu6(x, "out_relu")
    if not (options.include_top and aa is None):
        return pooling_head(x, options)
    x = layers.GlobalAveragePooling2D(name="avg_pool")(x)
    x = layers.Dropout(_BASELINE_DROPOUT, name="dropout")(x)
    return layers.Dense(
        options.classes,
        activation=options.classifier_activation,
        name="predictions",
    )(x)


MOBILENET_V2 = Family(
    name="MobileNetV2",
    module=__name__,
    network=_network,
    min_input_size=lambda variant, options: _min_input_size(options.aa),
    arguments=("padding",),
    doc="""Instantiates the anti-aliased MobileNetV2 architecture.

Reference:
- [Making Convolutional Networks Shift-Invariant Again](
    https://arxiv.org/abs/1904.11486) (ICML 2019)
- [MobileNetV2: Inverted Residuals and Linear Bottlenecks](
    https://arxiv.org/abs/1801.04381) (CVPR 2018)

Equals `antialiased_cnns.mobilenet_v2(filter_size=...)` (width
multiplier 1.0) once its weights are loaded with
`keras_blurpool.load_torch_weights`. Like the reference, the
antialiased model has no dropout before its classifier
(`classifier.0`); with `filter_size=None` it is torchvision's
`mobilenet_v2`, with dropout 0.2 and classifier `classifier.1`.
Inputs are RGB images normalised as for torchvision, in
`keras.config.image_data_format()`.
""",
    doc_fields={
        "where": "after the depthwise convolution of every stride-2 "
        "block, run at stride 1",
        "polyphase": '`"aps"` / `"lps"` (adaptive / learnable polyphase '
        "sampling, `APSPool2D` / `LPSPool2D` after a blur of "
        "`filter_size`; they also run the stem convolution at stride 1 and "
        "subsample after its ReLU6, `Conv1_blur`: with "
        '`padding="circular"`, exactly invariant to circular shifts; the '
        "residual additions are all at stride 1), ",
    },
)

MobileNetV2 = MOBILENET_V2.builder(
    "MobileNetV2", arch="mobilenet_v2", title="MobileNetV2", variant=None
)


# Sub-modules of a PyTorch InvertedResidual's `conv` Sequential, in order.
# Keras layer suffix -> (slot, sub-module): a ConvBNReLU slot holds its
# conv as `.0` and its BN as `.1`.
_BLOCK_PARTS = ("expand", "depthwise", "blur", "project", "project_BN")
_SLOT_OF_SUFFIX = {
    "expand": ("expand", ".0"),
    "expand_BN": ("expand", ".1"),
    "depthwise": ("depthwise", ".0"),
    "depthwise_BN": ("depthwise", ".1"),
    "blur": ("blur", ""),
    "project": ("project", ""),
    "project_BN": ("project_BN", ""),
}


def _torch_names(model) -> dict[str, str] | None:
    """PyTorch module names of a MobileNetV2's layers, else None.

    Handles both numberings: in the reference a stride-2 block's BlurPool
    takes a slot of its `conv` Sequential, shifting the projection from
    `conv.2`/`conv.3` (torchvision) to `conv.3`/`conv.4`.
    """
    names = {layer.name for layer in getattr(model, "layers", ())}
    if not {"Conv1", "expanded_conv_depthwise"} <= names:
        return None
    antialiased = any(is_antialiasing(x) for x in model.layers)
    # features.0 is the stem, then one entry per block, then Conv_1.
    last = 1 + sum(name.endswith("_project") for name in names)
    result = {
        "Conv1": "features.0.0",
        "bn_Conv1": "features.0.1",
        "Conv_1": f"features.{last}.0",
        "Conv_1_bn": f"features.{last}.1",
        "predictions": "classifier.0" if antialiased else "classifier.1",
    }
    for name in names:
        match = re.fullmatch(r"(expanded_conv|block_(\d+))_(\w+)", name)
        if not match or match[3] not in _SLOT_OF_SUFFIX:
            continue
        prefix = name[: match.end(1) + 1]
        index = int(match[2] or 0) + 1
        present = [p for p in _BLOCK_PARTS if prefix + p in names]
        part, suffix = _SLOT_OF_SUFFIX[match[3]]
        if part not in present:
            continue
        result[name] = f"features.{index}.conv.{present.index(part)}{suffix}"
    return {k: v for k, v in result.items() if k in names}


registry.register_family(
    {"mobilenet_v2": MobileNetV2},
    # At filter size 4 the network fine-tuned from the baseline.
    weights={
        "mobilenet_v2": {
            2: "mobilenet_v2_lpf2-f4379012.pth",
            3: "mobilenet_v2_lpf3-23b2e2ee.pth",
            4: "mobilenet_v2_lpf4_finetune-7eed94b1.pth",
            5: "mobilenet_v2_lpf5-ab8fe968.pth",
        }
    },
    weights_from_scratch={"mobilenet_v2": {4: "mobilenet_v2_lpf4-2e0b9cb9.pth"}},
    recipe="mobilenet",
    torch_names=_torch_names,
    head_prefixes=("classifier.",),
    released_pool_only=None,
)

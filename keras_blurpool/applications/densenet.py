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

import dataclasses
import re

from keras import layers

from keras_blurpool.applications import registry
from keras_blurpool.applications.arguments import MIN_INPUT_SIZE
from keras_blurpool.applications.arguments import AntialiasSpec
from keras_blurpool.applications.arguments import Options
from keras_blurpool.applications.blocks import apply_antialias
from keras_blurpool.applications.blocks import batch_norm
from keras_blurpool.applications.blocks import channel_axis
from keras_blurpool.applications.blocks import channels
from keras_blurpool.applications.blocks import conv
from keras_blurpool.applications.blocks import pooling_head
from keras_blurpool.applications.builder import Family
from keras_blurpool.layers import CircularPadding2D

_BN_SIZE = 4  # the bottleneck has `_BN_SIZE * growth_rate` channels

def _min_input_size(aa: AntialiasSpec | None) -> int:
    # The last transition anti-aliases the input downsampled 4 times
    # (rounding up), which must be at least `aa.min_map_size` (larger than
    # the pad for reflect padding).
    if aa is None:
        return MIN_INPUT_SIZE
    return max(MIN_INPUT_SIZE, 16 * (aa.min_map_size - 1) + 1)


def _dense_layer(x, growth_rate: int, *, circular: bool = False, name: str):
    y = batch_norm(x, name=f"{name}_0_bn")
    y = layers.ReLU(name=f"{name}_0_relu")(y)
    y = conv(y, _BN_SIZE * growth_rate, 1, name=f"{name}_1_conv")
    y = batch_norm(y, name=f"{name}_1_bn")
    y = layers.ReLU(name=f"{name}_1_relu")(y)
    y = conv(
        y, growth_rate, 3, padding=1, circular=circular, name=f"{name}_2_conv"
    )
    return layers.Concatenate(axis=channel_axis(), name=f"{name}_concat")(
        [x, y]
    )


def _transition(x, aa: AntialiasSpec | None, *, name: str):
    x = batch_norm(x, name=f"{name}_bn")
    x = layers.ReLU(name=f"{name}_relu")(x)
    x = conv(x, channels(x) // 2, 1, name=f"{name}_conv")
    if aa is None:
        return layers.AveragePooling2D(2, strides=2, name=f"{name}_pool")(x)
    return apply_antialias(x, aa, name=f"{name}_blur")


@dataclasses.dataclass(frozen=True, kw_only=True)
class DenseNetVariant:
    """One DenseNet-BC.

    Attributes:
        blocks: layers in each of the four dense blocks.
        growth_rate: channels each dense layer adds.
        stem_filters: channels of the stem convolution.
    """

    blocks: tuple[int, int, int, int]
    growth_rate: int = 32
    stem_filters: int = 64


def _network(img_input, variant: DenseNetVariant, options: Options):
    aa = options.aa
    blocks = variant.blocks
    growth_rate = variant.growth_rate
    stem_filters = variant.stem_filters
    antialiased = aa is not None
    circular = options.circular
    # APS and LPS run the stem convolution at stride 1 whatever
    # `pool_only`: a strided convolution breaks their invariance.
    blur_stem_conv = antialiased and (not options.pool_only or aa.polyphase)

    x = conv(
        img_input,
        stem_filters,
        7,
        strides=1 if blur_stem_conv else 2,
        padding=3,
        circular=circular,
        name="conv1_conv",
    )
    x = batch_norm(x, name="conv1_bn")
    x = layers.ReLU(name="conv1_relu")(x)
    if blur_stem_conv:
        x = apply_antialias(x, aa, name="conv1_blur")
    # Zero padding equals PyTorch's -inf padding here: the input is a ReLU.
    pad = CircularPadding2D if circular else layers.ZeroPadding2D
    x = pad(1, name="pool1_pad")(x)
    x = layers.MaxPooling2D(
        3, strides=1 if antialiased else 2, name="pool1"
    )(x)
    if antialiased:
        x = apply_antialias(x, aa, name="pool1_blur")

    for stage, num_layers in enumerate(blocks, start=2):
        for i in range(1, num_layers + 1):
            x = _dense_layer(
                x, growth_rate, circular=circular, name=f"conv{stage}_block{i}"
            )
        if stage <= len(blocks):
            x = _transition(x, aa, name=f"pool{stage}")

    x = batch_norm(x, name="bn")
    x = layers.ReLU(name="relu")(x)
    return pooling_head(x, options)


DENSENET = Family(
    name="DenseNet",
    module=__name__,
    network=_network,
    min_input_size=lambda variant, options: _min_input_size(options.aa),
    arguments=("pool_only", "padding"),
    doc="""Instantiates the anti-aliased {title} architecture.

Reference:
- [Making Convolutional Networks Shift-Invariant Again](
    https://arxiv.org/abs/1904.11486) (ICML 2019)
- [Densely Connected Convolutional Networks](
    https://arxiv.org/abs/1608.06993) (CVPR 2017)

Equals `antialiased_cnns.{arch}(filter_size=..., pool_only=...)` once
its weights are loaded with `keras_blurpool.load_torch_weights`
(PyTorch names such as `features.denseblock1.denselayer1.norm1`; the
released checkpoints' old spelling `norm.1` is renamed as torchvision's
`_load_state_dict` does). Inputs are RGB images normalised as for
torchvision, in `keras.config.image_data_format()`.
""",
    doc_fields={
        "where": "after the stem's max pool, run at stride 1, and in place "
        "of each transition's 2x2 average pool",
        "first_conv": "the 7x7 stem convolution",
        "pool_only_note": " APS and LPS always anti-alias it (a strided "
        "convolution breaks their invariance).",
        "polyphase": '`"aps"` / `"lps"` (adaptive / learnable polyphase '
        "sampling, `APSPool2D` / `LPSPool2D` after a blur of "
        "`filter_size`, in place of each transition's average pool: with "
        '`padding="circular"`, exactly invariant to circular shifts), ',
    },
)

DenseNet121 = DENSENET.builder(
    "DenseNet121",
    arch="densenet121",
    title="DenseNet-121",
    variant=DenseNetVariant(blocks=(6, 12, 24, 16)),
)
DenseNet161 = DENSENET.builder(
    "DenseNet161",
    arch="densenet161",
    title="DenseNet-161",
    variant=DenseNetVariant(blocks=(6, 12, 36, 24), growth_rate=48, stem_filters=96),
)
DenseNet169 = DENSENET.builder(
    "DenseNet169",
    arch="densenet169",
    title="DenseNet-169",
    variant=DenseNetVariant(blocks=(6, 12, 32, 32)),
)
DenseNet201 = DENSENET.builder(
    "DenseNet201",
    arch="densenet201",
    title="DenseNet-201",
    variant=DenseNetVariant(blocks=(6, 12, 48, 32)),
)


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

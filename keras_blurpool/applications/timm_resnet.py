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

timm needs sides divisible by 32 for the `aa` models (its average pools
floor odd maps, the shortcut's ceil them); here the blocks' average pool
keeps odd maps whole (`AntiAliasAvgPool2D`), so any side from 32 works,
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

import keras
from keras import layers

from keras_blurpool.applications import registry
from keras_blurpool.applications._common import MIN_INPUT_SIZE
from keras_blurpool.applications._common import POLYPHASE
from keras_blurpool.applications._common import AntiAlias
from keras_blurpool.applications._common import anti_alias
from keras_blurpool.applications._common import antialias_spec
from keras_blurpool.applications._common import batch_norm
from keras_blurpool.applications._common import channels
from keras_blurpool.applications._common import conv
from keras_blurpool.applications._common import data_format
from keras_blurpool.applications._common import finish_model
from keras_blurpool.applications._common import min_size_reason
from keras_blurpool.applications._common import model_input
from keras_blurpool.applications._common import pooling_head
from keras_blurpool.applications._common import validate_builder_args
from keras_blurpool.applications.registry import HubWeights
from keras_blurpool.applications.registry import Preprocessing

_STAGE_PLANES = (64, 128, 256, 512)
_BOTTLENECK_EXPANSION = 4
# timm's SEModule: rd_ratio 1/16, rounded to a multiple of 8.
_SE_RATIO, _SE_DIVISOR = 1 / 16, 8


@dataclasses.dataclass(frozen=True)
class _Config:
    """One timm architecture: `timm.models.resnet.ResNet`'s arguments."""

    bottleneck: bool
    repeats: tuple[int, int, int, int]
    antialias: str  # the released network's: "blur" or "avg"
    cardinality: int = 1
    base_width: int = 64
    stem_width: int | None = None  # the deep stem's width; None: 7x7 stem
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


def _block(x, planes: int, *, strides: int, config: _Config, aa, name: str):
    """timm's `Bottleneck` or `BasicBlock`."""
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

    y = x
    for i, (kernel_size, filters, groups) in enumerate(convs, start=1):
        if antialiased and i == strided + 1:
            y = anti_alias(y, aa, strides=strides, name=f"{name}_{i}_blur")
        y = conv(
            y,
            filters,
            kernel_size,
            strides=strides if i == strided and not antialiased else 1,
            padding=kernel_size // 2,
            groups=groups,
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
            if strides > 1:
                # AvgPool2d(2, ceil_mode=True, count_include_pad=False).
                shortcut = layers.AveragePooling2D(
                    strides,
                    strides=strides,
                    padding="same",
                    data_format=data_format(),
                    name=f"{name}_0_pool",
                )(shortcut)
            shortcut = conv(shortcut, out_channels, 1, name=f"{name}_0_conv")
        else:
            shortcut = conv(
                shortcut, out_channels, 1, strides=strides, name=f"{name}_0_conv"
            )
        shortcut = batch_norm(shortcut, name=f"{name}_0_bn")
    y = layers.Add(name=f"{name}_add")([shortcut, y])
    return layers.Activation("relu", name=f"{name}_out")(y)


def _stem(x, *, config: _Config, aa: AntiAlias | None):
    """The 7x7 or deep stem, then the (anti-aliased) pool: 4x downsampling."""
    if config.stem_width is None:
        x = conv(x, 64, 7, strides=2, padding=3, name="stem_conv")
    else:
        width = config.stem_width
        x = conv(x, width, 3, strides=2, padding=1, name="stem_1_conv")
        x = batch_norm(x, name="stem_1_bn")
        x = layers.Activation("relu", name="stem_1_relu")(x)
        x = conv(x, width, 3, padding=1, name="stem_2_conv")
        x = batch_norm(x, name="stem_2_bn")
        x = layers.Activation("relu", name="stem_2_relu")(x)
        x = conv(x, 2 * width, 3, padding=1, name="stem_3_conv")
    x = batch_norm(x, name="stem_bn")
    x = layers.Activation("relu", name="stem_relu")(x)
    if aa is not None and aa.antialias == "avg":
        # timm's `AvgPool2d(2)` in place of the max pool; it floors odd
        # maps, as timm does (no shortcut has to match here).
        return layers.AveragePooling2D(
            2, strides=2, data_format=data_format(), name="stem_pool"
        )(x)
    # Zero padding equals PyTorch's -inf padding here: inputs are >= 0.
    x = layers.ZeroPadding2D(1, data_format=data_format(), name="stem_pad")(x)
    if aa is None:
        return layers.MaxPooling2D(
            3, strides=2, data_format=data_format(), name="stem_pool"
        )(x)
    x = layers.MaxPooling2D(
        3, strides=1, data_format=data_format(), name="stem_pool"
    )(x)
    return anti_alias(x, aa, name="stem_blur")


def _min_input_size(aa: AntiAlias | None) -> int:
    """Smallest input side for which every anti-aliasing layer fits."""
    if aa is None or aa.antialias == "avg":
        return MIN_INPUT_SIZE
    size = MIN_INPUT_SIZE
    while True:
        side = (size - 1) // 2 + 1  # the strided stem convolution
        blurred = []
        for _ in range(4):  # stem_blur and the first block of stages 3-5
            blurred.append(side)
            side = (side + 1) // 2
        if min(blurred) >= aa.min_map_size:
            return size
        size += 1


def _check_antialias(antialias, arch: str) -> None:
    if isinstance(antialias, str) and antialias in POLYPHASE:
        raise ValueError(
            f"{arch!r} anti-aliases its main branch only (timm's design); "
            "APS and LPS need the shortcut to keep the main branch's "
            "component: use the reference ResNets "
            "(`keras_blurpool.applications.ResNet50(antialias='aps')`). "
            f"Received: antialias={antialias!r}"
        )


def _timm_resnet(
    config: _Config,
    *,
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
        antialias=antialias,
        pad_type=pad_type,
        synchronized_batch_norm=synchronized_batch_norm,
    )
    _check_antialias(antialias, default_name)
    aa = antialias_spec(antialias, filter_size, pad_type)
    min_size = _min_input_size(aa)
    img_input, inputs = model_input(
        input_tensor,
        input_shape,
        min_size=min_size,
        why=min_size_reason(aa, min_size),
    )
    x = _stem(img_input, config=config, aa=aa)
    for stage, (planes, blocks) in enumerate(zip(_STAGE_PLANES, config.repeats)):
        for block in range(blocks):
            x = _block(
                x,
                planes,
                strides=2 if stage > 0 and block == 0 else 1,
                config=config,
                aa=aa,
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


_DOCSTRING = """Instantiates timm's {title}.

Equals timm's `{timm}` (`timm.create_model("{timm}")`): a timm state dict
(`.safetensors` or `.pth`) loaded through `weights=` gives the same
logits. With `antialias=None` it is timm's plain `{plain}`, the network
to fine-tune from.{released}

Args:
    include_top: whether to include the global average pooling and the
        fully-connected classifier at the top of the network.
    weights: `None` (random initialization), `"imagenet"` ({default}),
        the tag of another released weight ({tags}), or the path of a
        Keras `.weights.h5` file, a `.safetensors` file or a PyTorch
        checkpoint (`.pth`, `.pth.tar`, `.pt`) of timm's `{timm}`.
        Released weights are fetched once from the Hugging Face Hub,
        checked and cached; `registry.get("{timm}").preprocessing_for(tag)`
        says how to preprocess for them.
    input_tensor: optional Keras tensor (output of `keras.Input()`) to use
        as image input for the model.
    input_shape: optional `(height, width, 3)` tuple (`(3, height,
        width)` when `keras.config.image_data_format()` is
        `"channels_first"`); the default accepts any size from 32.
    pooling: feature pooling when `include_top=False`: `None` (the 4-D
        output of the last block), `"avg"` or `"max"` (global pooling,
        2-D output).
    classes: number of classes, when `include_top=True`.
    classifier_activation: activation of the top layer, a `str` or
        callable; `None` returns the logits.
    antialias: `"{antialias}"` (the released network's), `"blur"` (timm's
        `BlurPool2d`: stride-1 max pool and blur in the stem, blur after
        the strided 3x3 convolutions), `"avg"` (a 2x2 average pool in
        their place, timm's `aa_layer=nn.AvgPool2d`), `None` (the plain
        network), or a callable `(channels, strides, name) ->
        keras.layers.Layer`.
    filter_size: taps of the blur filter, 1 to 7 (timm's 3); odd sizes
        pad as timm's `BlurPool2d`, even ones as the reference's.
    pad_type: padding of the blur: `"reflect"` (timm's), `"replicate"`,
        `"zero"` or `"circular"`.
    synchronized_batch_norm: if `True`, BatchNormalization computes its
        batch statistics over all replicas of a `tf.distribute` strategy
        (TensorFlow backend only).
    name: name of the model; defaults to `"{timm}"`.

Returns:
    A `keras.Model` instance, in `keras.config.image_data_format()`.

Example:

>>> model = keras_blurpool.applications.{builder}()
>>> model.output_shape
(None, 1000)
"""


def _builder(builder: str, title: str, timm_name: str, plain: str, config: _Config):
    """Makes the public builder of one architecture of the table."""

    def build(
        include_top: bool = True,
        weights: str | None = None,
        input_tensor=None,
        input_shape: tuple[int | None, int | None, int] | None = None,
        pooling: str | None = None,
        classes: int = 1000,
        classifier_activation="softmax",
        antialias=config.antialias,
        filter_size: int | None = 3,
        pad_type: str = "reflect",
        synchronized_batch_norm: bool = False,
        name: str | None = None,
    ) -> keras.Model:
        return _timm_resnet(
            config,
            default_name=timm_name,
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
            synchronized_batch_norm=synchronized_batch_norm,
            name=name,
        )

    hub = _HUB_WEIGHTS.get(timm_name, {})
    if hub:
        default = f"timm's `{timm_name}.{next(iter(hub))}`"
        tags = ", ".join(f"`{tag!r}`" for tag in hub)
        released = (
            " Released ImageNet weights (Apache-2.0): "
            + ", ".join(
                f"`{tag}`" + (f" ({w.top1}% top-1)" if w.top1 else "")
                for tag, w in hub.items()
            )
            + "."
        )
    else:
        default = "timm released none for this network: it raises"
        tags = "none"
        released = " timm released no ImageNet weights for it."
    build.__name__ = build.__qualname__ = builder
    build.__doc__ = _DOCSTRING.format(
        title=title,
        timm=timm_name,
        plain=plain,
        builder=builder,
        antialias=config.antialias,
        default=default,
        tags=tags,
        released=released,
    )
    return build


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

_D = dict(stem_width=32, avg_down=True)
_R50, _R101 = (3, 4, 6, 3), (3, 4, 23, 3)
# builder name, title, timm name, plain twin, config
_TABLE = (
    ("ResNetBlur18", "ResNet-18 with blur pooling", "resnetblur18", "resnet18",
     _Config(False, (2, 2, 2, 2), "blur")),
    ("ResNetBlur50", "ResNet-50 with blur pooling", "resnetblur50", "resnet50",
     _Config(True, _R50, "blur")),
    ("ResNetBlur50D", "ResNet-50-D with blur pooling", "resnetblur50d",
     "resnet50d", _Config(True, _R50, "blur", **_D)),
    ("ResNetBlur101D", "ResNet-101-D with blur pooling", "resnetblur101d",
     "resnet101d", _Config(True, _R101, "blur", **_D)),
    ("ResNetAA34D", "ResNet-34-D with average-pool anti-aliasing",
     "resnetaa34d", "resnet34d", _Config(False, _R50, "avg", **_D)),
    ("ResNetAA50", "ResNet-50 with average-pool anti-aliasing", "resnetaa50",
     "resnet50", _Config(True, _R50, "avg")),
    ("ResNetAA50D", "ResNet-50-D with average-pool anti-aliasing",
     "resnetaa50d", "resnet50d", _Config(True, _R50, "avg", **_D)),
    ("ResNetAA101D", "ResNet-101-D with average-pool anti-aliasing",
     "resnetaa101d", "resnet101d", _Config(True, _R101, "avg", **_D)),
    ("SEResNetAA50D", "SE-ResNet-50-D with average-pool anti-aliasing",
     "seresnetaa50d", "seresnet50d", _Config(True, _R50, "avg", se=True, **_D)),
    ("SEResNeXtAA101D_32x8d",
     "SE-ResNeXt-101-D (32x8d) with average-pool anti-aliasing",
     "seresnextaa101d_32x8d", "seresnext101d_32x8d",
     _Config(True, _R101, "avg", cardinality=32, base_width=8, se=True, **_D)),
    ("SEResNeXtAA201D_32x8d",
     "SE-ResNeXt-201-D (32x8d) with average-pool anti-aliasing",
     "seresnextaa201d_32x8d", "seresnext201d_32x8d",
     _Config(True, (3, 24, 36, 4), "avg", cardinality=32, base_width=8,
             se=True, stem_width=64, avg_down=True)),
)
_BUILDERS = {
    timm_name: _builder(builder, title, timm_name, plain, config)
    for builder, title, timm_name, plain, config in _TABLE
}

ResNetBlur18 = _BUILDERS["resnetblur18"]
ResNetBlur50 = _BUILDERS["resnetblur50"]
ResNetBlur50D = _BUILDERS["resnetblur50d"]
ResNetBlur101D = _BUILDERS["resnetblur101d"]
ResNetAA34D = _BUILDERS["resnetaa34d"]
ResNetAA50 = _BUILDERS["resnetaa50"]
ResNetAA50D = _BUILDERS["resnetaa50d"]
ResNetAA101D = _BUILDERS["resnetaa101d"]
SEResNetAA50D = _BUILDERS["seresnetaa50d"]
SEResNeXtAA101D_32x8d = _BUILDERS["seresnextaa101d_32x8d"]
SEResNeXtAA201D_32x8d = _BUILDERS["seresnextaa201d_32x8d"]


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
    _BUILDERS,
    weights={},
    torch_names=_torch_names,
    head_prefixes=("fc.",),
    released_pool_only=None,
    licence="Apache-2.0 (timm's)",
    source="timm",
    hub_weights=_HUB_WEIGHTS,
    per_name={
        timm_name: {"released_antialias": config.antialias}
        for _, _, timm_name, _, config in _TABLE
    },
)

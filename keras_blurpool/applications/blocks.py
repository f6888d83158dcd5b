"""Graph blocks shared by the architecture families.

Every network here follows `keras.config.image_data_format()` when it is
built (channels_last or channels_first) and reproduces PyTorch semantics:
explicit symmetric zero padding (never TF "same"), BatchNorm with
epsilon 1e-5 and momentum 0.9 (PyTorch's 0.1), adaptive average pooling.
"""

from __future__ import annotations

import keras
from keras import layers

from keras_blurpool.applications.arguments import AntialiasSpec
from keras_blurpool.applications.arguments import Options
from keras_blurpool.layers import APSPool2D
from keras_blurpool.layers import CircularPadding2D
from keras_blurpool.layers import create_antialias

BN_EPSILON = 1e-5
BN_MOMENTUM = 0.9  # PyTorch's momentum=0.1 counts the other way round.


def data_format() -> str:
    """The data format the networks are built in (Keras's global one)."""
    return keras.config.image_data_format()


def channel_axis() -> int:
    """Channel axis of 4-D feature maps in `data_format()`."""
    return 1 if data_format() == "channels_first" else -1


def spatial_shape(tensor) -> tuple:
    """`(height, width)` of a 4-D feature map in `data_format()`."""
    shape = tuple(tensor.shape)
    return shape[2:4] if data_format() == "channels_first" else shape[1:3]


def channels(tensor) -> int:
    """Channels of a 4-D feature map in `data_format()`."""
    return tensor.shape[channel_axis()]


def conv(
    x,
    filters: int,
    kernel_size: int,
    *,
    strides: int = 1,
    padding: int = 0,
    groups: int = 1,
    use_bias: bool = False,
    circular: bool = False,
    name: str,
):
    """Conv2D with PyTorch's explicit symmetric zero (or circular) padding."""
    if padding and circular:
        x = CircularPadding2D(padding, name=f"{name}_pad")(x)
    elif padding:
        x = layers.ZeroPadding2D(padding, name=f"{name}_pad")(x)
    return layers.Conv2D(
        filters,
        kernel_size,
        strides=strides,
        groups=groups,
        use_bias=use_bias,
        name=name,
    )(x)


def batch_norm(x, *, name: str, zero_init: bool = False):
    """PyTorch's BatchNorm2d; `zero_init` starts its scale at 0 (timm's
    `zero_init_last`: a residual block then starts as the identity)."""
    return layers.BatchNormalization(
        axis=channel_axis(),
        epsilon=BN_EPSILON,
        momentum=BN_MOMENTUM,
        gamma_initializer="zeros" if zero_init else "ones",
        name=name,
    )(x)


def apply_antialias(
    x, aa: AntialiasSpec, *, strides: int = 2, name: str, return_index: bool = False
):
    """Low-pass filters and subsamples `x` with the builder's layer.

    With `return_index=True` (APS and LPS) it returns `(outputs, choice)`,
    the choice for `follow_choice` in a residual shortcut.
    """
    layer = create_antialias(
        aa.antialias,
        channels=channels(x),
        strides=strides,
        filter_size=aa.filter_size,
        pad_type=aa.pad_type,
        data_format=data_format(),
        name=name,
    )
    if return_index:
        layer.return_index = True
    return layer(x)


def follow_choice(x, aa: AntialiasSpec, choice, *, strides: int = 2, name: str):
    """Downsamples `x` keeping the polyphase component of `choice`.

    `choice` is what an APS/LPS layer of the builder returned: an
    `APSPool2D` blurs `x` as that layer did and keeps the same component
    (mixes with the same weights while an LPS network trains).
    """
    layer = APSPool2D(
        filter_size=aa.filter_size,
        strides=strides,
        pad_type=aa.pad_type,
        data_format=data_format(),
        name=name,
    )
    return layer(x, index=choice)


def pooling_head(x, options: Options, *, name: str = "predictions"):
    """keras.applications' head: global average pooling and a Dense
    classifier with `include_top`, else the builder's `pooling`."""
    if options.include_top:
        x = layers.GlobalAveragePooling2D(name="avg_pool")(x)
        return layers.Dense(
            options.classes,
            activation=options.classifier_activation,
            name=name,
        )(x)
    if options.pooling == "avg":
        return layers.GlobalAveragePooling2D(name="avg_pool")(x)
    if options.pooling == "max":
        return layers.GlobalMaxPooling2D(name="max_pool")(x)
    return x

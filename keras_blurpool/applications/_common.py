"""Building blocks shared by the architecture families.

Every network here follows `keras.config.image_data_format()` when it is
built (channels_last or channels_first) and reproduces PyTorch semantics:
explicit symmetric zero padding (never TF "same"), BatchNorm with
epsilon 1e-5 and momentum 0.9 (PyTorch's 0.1), adaptive average pooling.
"""

from __future__ import annotations

import dataclasses
import os

import keras
from keras import layers

from keras_blurpool._utils import is_int
from keras_blurpool.applications import loading
from keras_blurpool.applications import pretrained
from keras_blurpool.applications import registry
from keras_blurpool.layers import APSPool2D
from keras_blurpool.layers import CircularPadding2D
from keras_blurpool.layers import check_antialias
from keras_blurpool.layers import create_antialias
from keras_blurpool.layers.antialias import AntiAliasChoice
from keras_blurpool.layers.blur_pool import standardize_pad_type

BN_EPSILON = 1e-5
BN_MOMENTUM = 0.9  # PyTorch's momentum=0.1 counts the other way round.


# The zoo's filter sizes: the reference's range.
MIN_FILTER_SIZE, MAX_FILTER_SIZE = 1, 7
# Smallest input side of every network (as keras.applications).
MIN_INPUT_SIZE = 32
# The builders' `padding`: of every convolution (and pooling) of the body.
PADDINGS = ("zero", "circular")
# Anti-aliasing kinds that choose a polyphase component per sample; a
# residual shortcut must then follow the main branch's choice.
POLYPHASE = ("aps", "lps")


def check_padding(padding, pad_type="reflect") -> None:
    """Raises unless `padding` is a builder padding that fits `pad_type`."""
    if not isinstance(padding, str) or padding not in PADDINGS:
        raise ValueError(
            f"`padding` must be one of {PADDINGS}: how every convolution "
            "pads, with zeros (PyTorch's default) or circularly (the map "
            "wraps around; exact invariance to circular shifts with "
            f"antialias='aps' or 'lps'). Received: padding={padding!r}"
        )
    if padding == "circular" and standardize_pad_type(pad_type) not in (
        "reflect",
        "circular",
    ):
        raise ValueError(
            "With `padding='circular'` the blur pads circularly too; "
            "`pad_type` must be left at its default or be 'circular'. "
            f"Received: padding='circular', pad_type={pad_type!r}"
        )


def check_filter_size(filter_size) -> None:
    """Raises unless `filter_size` is None (plain network) or 1 to 7."""
    if filter_size is not None and (
        not is_int(filter_size)
        or not MIN_FILTER_SIZE <= filter_size <= MAX_FILTER_SIZE
    ):
        raise ValueError(
            "`filter_size` must be None (the plain, non-antialiased network) "
            f"or an int from {MIN_FILTER_SIZE} to {MAX_FILTER_SIZE}. "
            f"Received: filter_size={filter_size!r}"
        )


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


@dataclasses.dataclass(frozen=True)
class AntiAlias:
    """How a builder anti-aliases its downsamplings.

    Attributes:
        antialias: the builder's `antialias`: `"blur"`, `"avg"` or a
            callable (see `keras_blurpool.layers.create_antialias`).
        filter_size: taps of the blur filter.
        pad_type: padding of the blur.
    """

    antialias: AntiAliasChoice
    filter_size: int
    pad_type: str = "reflect"

    @property
    def polyphase(self) -> bool:
        """Whether the layers choose a polyphase component (APS, LPS)."""
        return isinstance(self.antialias, str) and self.antialias in POLYPHASE

    @property
    def min_map_size(self) -> int:
        """Smallest feature-map side the anti-aliasing layer accepts.

        Reflect padding needs a map larger than the padding (`k // 2`
        pixels), circular padding one at least as large; zero and
        replicate padding and the average pool take any non-empty map. A
        callable's layer checks its inputs itself.
        """
        pad_type = standardize_pad_type(self.pad_type)
        if self.antialias in ("blur",) + POLYPHASE and self.filter_size > 1:
            if pad_type == "reflect":
                return self.filter_size // 2 + 1
            if pad_type == "circular":
                return max(1, self.filter_size // 2)
        return 1

    def describe(self) -> str:
        """The arguments that set `min_map_size`, for error messages."""
        if self.antialias in ("blur",) + POLYPHASE:
            return (
                f"antialias={self.antialias!r}, filter_size={self.filter_size}, "
                f"pad_type={self.pad_type!r}"
            )
        return f"antialias={self.antialias!r}"


def check_synchronized_batch_norm(synchronized_batch_norm) -> None:
    """Raises unless the flag is a bool, and True only on TensorFlow."""
    if not isinstance(synchronized_batch_norm, bool):
        raise ValueError(
            "`synchronized_batch_norm` must be True or False. Received: "
            f"synchronized_batch_norm={synchronized_batch_norm!r}"
        )
    backend = keras.backend.backend()
    if synchronized_batch_norm and backend != "tensorflow":
        raise ValueError(
            "`synchronized_batch_norm=True` builds Keras's "
            "`BatchNormalization(synchronized=True)` (batch statistics over "
            "all replicas of a `tf.distribute` strategy), which exists on "
            "the TensorFlow backend only; the current backend is "
            f"{backend!r}. On JAX, `keras.distribution` data parallelism "
            "already computes the batch statistics over the global batch "
            "(one program over the whole sharded batch), so the flag is not "
            "needed there: leave it False. Received: "
            "synchronized_batch_norm=True"
        )


def antialias_spec(
    antialias, filter_size, pad_type="reflect", padding="zero"
) -> AntiAlias | None:
    """The builder's anti-aliasing, or None for the plain network.

    `antialias=None` builds the plain network whatever `filter_size`, and
    `filter_size=None` is an alias of it (with the default `"blur"`). With
    `padding="circular"` the blur pads circularly. Arguments are assumed
    checked by `validate_builder_args`.
    """
    if antialias is None or filter_size is None:
        return None
    if padding == "circular":
        pad_type = "circular"
    return AntiAlias(antialias, filter_size, pad_type)


def validate_builder_args(
    *,
    weights,
    filter_size,
    include_top,
    pooling,
    classes,
    arch: str,
    pool_only: bool | None = None,
    antialias: AntiAliasChoice = "blur",
    pad_type: str = "reflect",
    synchronized_batch_norm=False,
    padding: str = "zero",
) -> None:
    """Early, named errors for the arguments every builder shares.

    Args:
        weights: the builder's `weights`: None, `"imagenet"`, or the path
            of a Keras `.weights.h5` file or of a PyTorch checkpoint
            (`.pth`, `.pth.tar`, `.pt`) or `.safetensors` file.
        filter_size: the builder's `filter_size`.
        include_top: the builder's `include_top`.
        pooling: the builder's `pooling`.
        classes: the builder's `classes`.
        arch: the registry name of the architecture (`"resnet50"`,
            `"vgg16_bn"`, ...), which picks the released weights; never
            the user's model `name`.
        pool_only: the builder's `pool_only`, for the architectures that
            have one.
        antialias: the builder's `antialias`: `"blur"`, `"avg"`, None or a
            callable `(channels, strides, name) -> keras.layers.Layer`.
        pad_type: the builder's `pad_type`, the padding of the blur.
        synchronized_batch_norm: the builder's `synchronized_batch_norm`:
            `True` or `False`; `True` needs the TensorFlow backend.
        padding: the builder's `padding` of the convolutions, `"zero"` or
            `"circular"`, for the architectures that have one.

    Raises:
        ValueError: naming the argument, the value and what is allowed.
    """
    check_antialias(antialias)
    standardize_pad_type(pad_type)
    check_filter_size(filter_size)
    check_synchronized_batch_norm(synchronized_batch_norm)
    check_padding(padding, pad_type)
    if filter_size is None and antialias is not None and antialias != "blur":
        raise ValueError(
            "`filter_size=None` builds the plain network, which contradicts "
            f"antialias={antialias!r}: pass `antialias=None` for the plain "
            "network, or a filter size (it only matters for 'blur'). "
            f"Received: antialias={antialias!r}, filter_size=None"
        )
    if pooling not in (None, "avg", "max"):
        raise ValueError(
            "`pooling` must be None, 'avg' or 'max'. "
            f"Received: pooling={pooling!r}"
        )
    if include_top and (
        isinstance(classes, bool) or not isinstance(classes, int) or classes < 1
    ):
        raise ValueError(
            f"`classes` must be a positive int. Received: classes={classes!r}"
        )
    if weights is None:
        return
    tags = list(registry.get(arch).hub_weights)
    allowed = (
        "None, 'imagenet', "
        + (f"a released tag ({', '.join(map(repr, tags))}), " if tags else "")
        + "or the path of a Keras `.weights.h5` file or of "
        "a PyTorch checkpoint (`.pth`, `.pth.tar`, `.pt`) or `.safetensors` "
        "file"
    )
    if not isinstance(weights, (str, os.PathLike)):
        raise ValueError(
            f"`weights` must be {allowed}. Received: weights={weights!r}"
        )
    tag = pretrained.hub_tag(arch, weights)
    if weights == "imagenet" or tag is not None:
        if padding != "zero":
            raise ValueError(
                "With `weights='imagenet'`: the released ImageNet weights "
                "are for zero-padded convolutions. Received: "
                f"padding={padding!r}"
            )
        if include_top and classes != 1000:
            raise ValueError(
                "With `weights='imagenet'` and `include_top=True`, `classes` "
                "must be 1000 (the ImageNet classifier). Received: "
                f"classes={classes!r}"
            )
        aa = antialias_spec(antialias, filter_size, pad_type)
        pretrained.check_imagenet_available(
            arch,
            None if aa is None else filter_size,
            pool_only=pool_only,
            antialias=None if aa is None else aa.antialias,
            pad_type=pad_type,
            tag=tag,
        )
        return
    path = os.fspath(weights)
    if not path.endswith((".weights.h5",) + loading.CHECKPOINT_SUFFIXES):
        raise ValueError(
            f"`weights` must be {allowed}. Received: weights={weights!r}"
        )
    if not os.path.isfile(path):
        raise ValueError(
            f"`weights` file does not exist. Received: weights={weights!r}"
        )


def model_input(
    input_tensor,
    input_shape,
    *,
    min_size: int = MIN_INPUT_SIZE,
    why: str = "",
    default_size: int | None = None,
):
    """Returns `(img_input, model_inputs)` as keras.applications does.

    Args:
        input_tensor: the builder's `input_tensor`.
        input_shape: the builder's `input_shape`: `(height, width, 3)`, or
            `(3, height, width)` under channels_first.
        min_size: smallest spatial size the network takes.
        why: what sets `min_size`, appended to its error message.
        default_size: the input side when neither `input_tensor` nor
            `input_shape` is given; None accepts any size.

    Returns:
        `(img_input, model_inputs)`: the tensor the network starts from
        and the model's inputs.

    Raises:
        ValueError: for a shape of the wrong layout, other than 3 RGB
            channels, or smaller than `min_size`.
    """
    channels_first = data_format() == "channels_first"
    if input_shape is None and input_tensor is None:
        sides = (default_size, default_size)
        input_shape = (3, *sides) if channels_first else (*sides, 3)
    if input_shape is not None:
        input_shape = tuple(input_shape)
        layout = "(3, height, width)" if channels_first else "(height, width, 3)"
        if len(input_shape) != 3 or input_shape[0 if channels_first else -1] != 3:
            raise ValueError(
                f"`input_shape` must be {layout} (RGB, {data_format()}, "
                "the image data format of keras.config). Received: "
                f"input_shape={input_shape!r}"
            )
        spatial = input_shape[1:] if channels_first else input_shape[:2]
        for size in spatial:
            if size is not None and size < min_size:
                raise ValueError(
                    f"`input_shape` spatial sizes must be at least {min_size}"
                    f"{why}. Received: input_shape={input_shape!r}"
                )
    if input_tensor is None:
        img_input = layers.Input(shape=input_shape)
        return img_input, img_input
    if not keras.backend.is_keras_tensor(input_tensor):
        img_input = layers.Input(tensor=input_tensor, shape=input_shape)
        return img_input, img_input
    sources = keras.utils.get_source_inputs(input_tensor)
    return input_tensor, sources[0] if len(sources) == 1 else sources


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


def anti_alias(
    x, aa: AntiAlias, *, strides: int = 2, name: str, return_index: bool = False
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


def follow_choice(x, aa: AntiAlias, choice, *, strides: int = 2, name: str):
    """Downsamples `x` keeping the polyphase component of `choice`.

    `choice` is what an APS/LPS layer of the builder returned: an
    `APSPool2D` blurs `x` as that layer did and keeps the same component
    (mixes with the same weights while an LPS network trains).
    """
    layer = APSPool2D(
        filter_size=aa.filter_size,
        strides=strides,
        padding=aa.pad_type,
        data_format=data_format(),
        name=name,
    )
    return layer(x, index=choice)


def min_size_reason(aa: AntiAlias | None, min_size: int) -> str:
    """Why the input must be at least `min_size`, for `model_input`."""
    if aa is None or aa.min_map_size == 1 or min_size <= MIN_INPUT_SIZE:
        return ""
    return (
        f" with {aa.describe()} (reflect padding needs every anti-aliased "
        "feature map larger than the padding; pad_type='zero' or "
        "'replicate' takes smaller inputs)"
    )


def pooling_head(
    x,
    *,
    include_top: bool,
    pooling,
    classes: int,
    classifier_activation,
    name: str = "predictions",
):
    """Global pooling + Dense head of the ResNet/DenseNet/MobileNet kind."""
    if include_top:
        x = layers.GlobalAveragePooling2D(name="avg_pool")(x)
        return layers.Dense(
            classes, activation=classifier_activation, name=name
        )(x)
    if pooling == "avg":
        return layers.GlobalAveragePooling2D(name="avg_pool")(x)
    if pooling == "max":
        return layers.GlobalMaxPooling2D(name="max_pool")(x)
    return x


def finish_model(
    inputs,
    outputs,
    *,
    name: str,
    weights,
    arch: str,
    filter_size: int | None,
    synchronized_batch_norm: bool = False,
) -> keras.Model:
    """Makes the functional model and loads `weights` into it.

    Args:
        inputs: the model inputs.
        outputs: the model outputs.
        name: the model name.
        weights: as checked by `validate_builder_args`.
        arch: the registry name of the architecture.
        filter_size: the builder's `filter_size`.
        synchronized_batch_norm: the builder's `synchronized_batch_norm`
            (checked by `validate_builder_args`): if `True`, every
            `keras.layers.BatchNormalization` of the model computes its
            batch statistics over all replicas (`synchronized=True`).

    Returns:
        The `keras.Model`.
    """
    model = keras.Model(inputs, outputs, name=name)
    if synchronized_batch_norm:
        # BatchNormalization reads `self.synchronized` when called (not
        # when built) and `get_config` saves it, so setting it on the built
        # graph equals passing `synchronized=True` to every constructor.
        for layer in model._flatten_layers(include_self=False):
            if isinstance(layer, layers.BatchNormalization):
                layer.synchronized = True
    if weights is not None:
        loading.load_weights(model, weights, arch=arch, filter_size=filter_size)
    return model

"""The architectures the recipes train, by their torchvision names.

`ARCHITECTURES` maps every name of the zoo's registry
(`keras_blurpool.applications.registry`: `"resnet50"`, `"vgg16_bn"`,
`"mobilenet_v2"`, ...) to its builder, plus `"demo"`: a small CNN for 32x32 inputs
that trains in minutes on a CPU and shows what anti-aliasing does.
`build_model` makes any of them with a logits output (no softmax), which is
what the trainer's loss and the evaluation expect, as the reference's
networks output logits.

Any keras.applications model is an architecture too, named with a
`"keras."` prefix (`"keras.MobileNetV2"`, `"keras.ResNet50"`, ...): built
with random weights, and anti-aliased by `keras_blurpool.antialias_model`
when a filter size is given, so the plain model and its anti-aliased twin
have the same weights under the same names.
"""

from __future__ import annotations

import inspect
import os
from typing import Callable

import keras
from keras import layers

from keras_blurpool.applications import loading
from keras_blurpool.applications import registry
from keras_blurpool.applications.arguments import check_filter_size
from keras_blurpool.applications.blocks import BN_EPSILON
from keras_blurpool.applications.blocks import BN_MOMENTUM
from keras_blurpool.layers import APSPool2D
from keras_blurpool.layers import BlurPool2D
from keras_blurpool.layers import CircularPadding2D
from keras_blurpool.layers import LPSPool2D
from keras_blurpool.layers import MaxBlurPool2D
from keras_blurpool.weights import values

from ._args import KERAS_PREFIX

# (filters, downsampling) of the demo CNN's convolutions: "conv" is a
# stride-2 convolution, "pool" a 2x2 max pool after it, None neither.
# Narrow enough that the plain and the antialiased twin train in about
# three CPU minutes together on the demo data.
_DEMO_LAYERS = (
    (16, None),
    (32, "conv"),
    (32, "pool"),
    (64, None),
    (64, "conv"),
)


# The demo CNN's anti-aliasing kinds.
DEMO_ANTIALIAS = ("blur", "aps", "lps")


def demo_cnn(
    filter_size: int | None = 4,
    *,
    antialias: str = "blur",
    classes: int = 10,
    input_shape: tuple = (32, 32, 3),
    weights: str | None = None,
    name: str | None = None,
) -> keras.Model:
    """A small CNN for 32x32 images, plain or anti-aliased.

    Five 3x3 convolutions with BatchNorm and ReLU, global average pooling
    and a linear classifier; it downsamples 8x: two stride-2 convolutions
    and one 2x2 max pool. With `filter_size` set, each stride-2
    convolution runs at stride 1 and is followed by
    `BlurPool2D(filter_size)`, and the max pool becomes
    `MaxBlurPool2D(filter_size=filter_size)`, exactly as the paper
    anti-aliases a network; both variants have the same weights under the
    same layer names, so `keras_blurpool.transfer_weights` copies between
    them.

    With `antialias="aps"` (`"lps"`) every downsampling is instead
    `APSPool2D` (`LPSPool2D`) after a blur of `filter_size`, the max pool
    runs at stride 1, and every convolution pads circularly: the network
    is then exactly invariant to circular shifts of its input.

    Args:
        filter_size: taps of the blur filter, 1 to 7, or `None` for the
            plain network.
        antialias: `"blur"` (BlurPool, the paper's), `"aps"` or `"lps"`
            (adaptive or learnable polyphase sampling, circular padding).
        classes: number of classes (logits out).
        input_shape: `(height, width, 3)`; sides of at least 16.
        weights: `None`, or the path of a `.weights.h5` file to load.
        name: the model name; `"demo_cnn"` or `"demo_cnn_lpf{k}"` if None.

    Returns:
        A functional `keras.Model` mapping float images to logits.
    """
    check_filter_size(filter_size)
    if not isinstance(antialias, str) or antialias not in DEMO_ANTIALIAS:
        raise ValueError(
            f"`antialias` of the demo CNN must be one of {DEMO_ANTIALIAS}. "
            f"Received: antialias={antialias!r}"
        )
    if antialias != "blur" and filter_size is None:
        raise ValueError(
            f"antialias={antialias!r} needs a filter size (1: no blur). "
            "Received: filter_size=None"
        )
    if isinstance(classes, bool) or not isinstance(classes, int) or classes < 1:
        raise ValueError(
            f"`classes` must be a positive int. Received: classes={classes!r}"
        )
    input_shape = tuple(input_shape)
    if len(input_shape) != 3 or input_shape[-1] != 3 or any(
        side is not None and side < 16 for side in input_shape[:2]
    ):
        raise ValueError(
            "`input_shape` must be (height, width, 3) with sides of at least "
            f"16. Received: input_shape={input_shape!r}"
        )
    if weights is not None and not os.fspath(weights).endswith(".weights.h5"):
        raise ValueError(
            "`weights` of the demo CNN must be None or the path of a "
            f"`.weights.h5` file. Received: weights={weights!r}"
        )

    inputs = keras.Input(input_shape)
    x = inputs
    polyphase = {"aps": APSPool2D, "lps": LPSPool2D}.get(antialias)
    for i, (filters, downsample) in enumerate(_DEMO_LAYERS, start=1):
        antialiased = filter_size is not None
        strides = 2 if downsample == "conv" and not antialiased else 1
        if polyphase is not None:
            x = CircularPadding2D(1, name=f"pad{i}")(x)
        x = layers.Conv2D(
            filters,
            3,
            strides=strides,
            padding="valid" if polyphase is not None else "same",
            use_bias=False,
            name=f"conv{i}",
        )(x)
        x = layers.BatchNormalization(
            epsilon=BN_EPSILON, momentum=BN_MOMENTUM, name=f"bn{i}"
        )(x)
        x = layers.Activation("relu", name=f"relu{i}")(x)
        if polyphase is not None and downsample == "pool":
            x = CircularPadding2D(((0, 1), (0, 1)), name=f"pool{i}_pad")(x)
            x = layers.MaxPooling2D(2, strides=1, name=f"pool{i}_max")(x)
        if polyphase is not None and downsample is not None:
            x = polyphase(
                filter_size, padding="circular", name=f"blur{i}"
            )(x)
        elif downsample == "conv" and antialiased:
            x = BlurPool2D(filter_size=filter_size, name=f"blur{i}")(x)
        elif downsample == "pool":
            if antialiased:
                x = MaxBlurPool2D(filter_size=filter_size, name=f"pool{i}")(x)
            else:
                x = layers.MaxPooling2D(2, name=f"pool{i}")(x)
    x = layers.GlobalAveragePooling2D(name="avg_pool")(x)
    outputs = layers.Dense(classes, name="predictions")(x)
    if name is None:
        name = "demo_cnn" if filter_size is None else f"demo_cnn_lpf{filter_size}"
        if antialias != "blur":
            name = f"demo_cnn_{antialias}{filter_size}"
    model = keras.Model(inputs, outputs, name=name)
    if weights is not None:
        model.load_weights(weights)
    return model


def own_antialiasing(arch: str | None) -> bool:
    """Whether `arch` is a zoo architecture with anti-aliasing of its own
    (the alias-free ConvNeXts and their controls): its builder takes no
    `filter_size` or `antialias`, so those arguments do not apply."""
    spec = registry.ARCHITECTURES.get(arch) if isinstance(arch, str) else None
    return spec is not None and "filter_size" not in inspect.signature(
        spec.builder
    ).parameters


def _zoo(builder: Callable) -> Callable:
    """Adapts a zoo builder to the common signature, with logits out."""

    def build(filter_size, *, classes, input_shape, weights, antialias="blur",
              padding="zero"):
        extra = {}
        if padding != "zero":
            if "padding" not in inspect.signature(builder).parameters:
                raise ValueError(
                    f"{builder.__name__} has zero padding only; "
                    "`padding='circular'` is for the builders that take "
                    "`padding`. "
                    f"Received: padding={padding!r}"
                )
            extra["padding"] = padding
        parameters = inspect.signature(builder).parameters
        if "filter_size" in parameters:
            extra.update(filter_size=filter_size, antialias=antialias)
        elif antialias != "blur":
            raise ValueError(
                f"{builder.__name__} has its own anti-aliasing and takes no "
                "`antialias`. Received: "
                f"antialias={antialias!r}"
            )
        return builder(
            include_top=True,
            weights=weights,
            input_shape=input_shape,
            classes=classes,
            classifier_activation=None,
            **extra,
        )

    build.__name__ = builder.__name__
    return build


def _demo(filter_size, *, classes, input_shape, weights, antialias="blur",
          padding="zero"):
    if padding != "zero" and antialias not in ("aps", "lps"):
        raise ValueError(
            "The demo CNN pads circularly exactly when antialias is 'aps' "
            f"or 'lps' (implied there). Received: antialias={antialias!r}, "
            f"padding={padding!r}"
        )
    return demo_cnn(
        filter_size,
        antialias=antialias,
        classes=classes,
        input_shape=input_shape,
        weights=weights,
    )


# Every registered architecture, then the demo CNN. Every builder takes
# `(filter_size, *, classes, input_shape, weights, antialias="blur",
# padding="zero")` and returns logits.
ARCHITECTURES: dict[str, Callable[..., keras.Model]] = {
    **{
        name: _zoo(spec.builder)
        for name, spec in registry.ARCHITECTURES.items()
    },
    "demo": _demo,
}


# BatchNormalization momentum of keras.applications models trained here.
KERAS_BN_MOMENTUM = 0.9


def keras_application_names() -> list:
    """The model builders of `keras.applications`, e.g. `"MobileNetV2"`."""
    return sorted(
        name
        for name in dir(keras.applications)
        if name[:1].isupper() and callable(getattr(keras.applications, name))
    )


def is_keras_application(arch) -> bool:
    """Whether `arch` names a keras.applications model (`"keras.<Name>"`)."""
    return (
        isinstance(arch, str)
        and arch.startswith(KERAS_PREFIX)
        and arch[len(KERAS_PREFIX):] in keras_application_names()
    )


def _all_layers(model):
    for layer in model.layers:
        yield layer
        if isinstance(layer, keras.Model):
            yield from _all_layers(layer)


def _keras_application(arch, filter_size, *, classes, input_shape, weights):
    if weights is not None and not os.fspath(weights).endswith(".weights.h5"):
        raise ValueError(
            f"`weights` of {arch} must be None or the path of a `.weights.h5` "
            f"file. Received: weights={weights!r}"
        )
    builder = getattr(keras.applications, arch[len(KERAS_PREFIX):])
    model = builder(
        include_top=True,
        weights=None,
        input_shape=input_shape,
        classes=classes,
        classifier_activation=None,
    )
    # The reference's recipes train with PyTorch's BatchNorm momentum 0.1
    # (Keras 0.9). keras.applications' MobileNets use 0.999, whose moving
    # statistics have not settled after a short run (the demo's ~1100
    # steps left their validation at chance).
    for layer in _all_layers(model):
        if isinstance(layer, keras.layers.BatchNormalization):
            layer.momentum = KERAS_BN_MOMENTUM
    if filter_size is not None:
        from keras_blurpool import antialias_model

        # Names and weights are kept, so weights saved from either twin
        # load into both.
        model = antialias_model(model, filter_size=filter_size)
    if weights is not None:
        model.load_weights(weights)
    return model


def check_arch(arch) -> str:
    """Returns `arch` if it names an architecture, else raises.

    Args:
        arch: an architecture name, e.g. `"resnet50"`.

    Returns:
        `arch`.

    Raises:
        ValueError: naming the value and listing the allowed names.
    """
    if is_keras_application(arch):
        return arch
    if not isinstance(arch, str) or arch not in ARCHITECTURES:
        raise ValueError(
            f"Unknown architecture. Received: arch={arch!r}. Allowed: "
            + ", ".join(ARCHITECTURES)
            + f", or {KERAS_PREFIX}<any keras.applications model>, e.g. "
            f"{KERAS_PREFIX}MobileNetV2"
        )
    return arch


def build_model(
    arch: str,
    filter_size: int | None,
    *,
    num_classes: int = 1000,
    image_size: int | None = 224,
    weights: str | None = None,
    antialias: str = "blur",
    padding: str = "zero",
    allow_nonfinite: bool = False,
) -> keras.Model:
    """Builds an architecture by name, with a logits output.

    Args:
        arch: a key of `ARCHITECTURES`: the reference's name
            (`"resnet50"`, `"vgg16_bn"`, `"mobilenet_v2"`, ...) or
            `"demo"`; or `"keras.<Name>"` for any keras.applications
            model (`"keras.MobileNetV2"`), anti-aliased by
            `keras_blurpool.antialias_model` when `filter_size` is set.
        filter_size: taps of the anti-aliasing filter, 1 to 7, or `None`
            for the plain (torchvision) network.
        num_classes: size of the classifier.
        image_size: side of the square input; `None` accepts any size.
        weights: `None`, `"imagenet"` (zoo architectures, 1000 classes),
            or the path of a `.weights.h5` file or (zoo architectures) a
            PyTorch `.pth`/`.pth.tar` checkpoint, torchvision-named or the
            reference's.
        antialias: the anti-aliasing kind when `filter_size` is set:
            `"blur"`, or for the zoo and the demo CNN also `"aps"`/`"lps"`
            (the zoo's `"avg"` too); keras.applications models take
            `"blur"` only.
        padding: `"zero"`, or `"circular"` for the zoo's builders
            (and the demo CNN with `"aps"`/`"lps"`, where it is implied).
        allow_nonfinite: load `weights` holding NaN or infinite values or
            negative variances, which are refused by default
            (`keras_blurpool.load_torch_weights`).

    Returns:
        A `keras.Model` from float images `(batch, size, size, 3)`,
        normalised as `keras_blurpool.applications.preprocess_input`
        does, to logits `(batch, num_classes)`.

    Raises:
        ValueError: for an unknown `arch` (listing the allowed names), any
            argument the builder refuses, or weights holding refused
            values (naming the file and the tensors).
    """
    check_arch(arch)
    if image_size is not None and (
        isinstance(image_size, bool)
        or not isinstance(image_size, int)
        or image_size < 1
    ):
        raise ValueError(
            "`image_size` must be None or a positive int. "
            f"Received: image_size={image_size!r}"
        )
    if is_keras_application(arch):
        check_filter_size(filter_size)
        if antialias != "blur" or padding != "zero":
            raise ValueError(
                f"{arch} is anti-aliased by antialias_model, with BlurPool "
                f"and zero padding only. Received: antialias={antialias!r}, "
                f"padding={padding!r}"
            )
        model = _keras_application(
            arch,
            filter_size,
            classes=num_classes,
            input_shape=(image_size, image_size, 3),
            weights=weights,
        )
    else:
        # A zoo builder refuses such values itself: give it none and load
        # them here.
        zoo_allowing = allow_nonfinite and weights is not None and arch != "demo"
        if zoo_allowing:
            loading.check_weights(
                weights,
                arch=arch,
                include_top=True,
                classes=num_classes,
                antialias=antialias,
                filter_size=filter_size,
                padding=padding,
            )
        model = ARCHITECTURES[arch](
            filter_size,
            classes=num_classes,
            input_shape=(image_size, image_size, 3),
            weights=None if zoo_allowing else weights,
            antialias=antialias,
            padding=padding,
        )
        if zoo_allowing:
            loading.load_weights(
                model, weights, arch=arch, filter_size=filter_size,
                allow_nonfinite=True,
            )
            return model
        if arch != "demo":
            return model  # checked by the builder
    if weights is not None and not allow_nonfinite:
        values.check_variables(model, weights)  # Keras loaded the file
    return model



"""Building blocks shared by the architecture families.

Every network here is channels_last and reproduces PyTorch semantics:
explicit symmetric zero padding (never TF "same"), BatchNorm with
epsilon 1e-5 and momentum 0.9 (PyTorch's 0.1), adaptive average pooling.
"""

from __future__ import annotations

import os

import keras
from keras import layers

from keras_blurpool._utils import is_int
from keras_blurpool.applications import loading
from keras_blurpool.applications import pretrained
from keras_blurpool.layers import BlurPool2D

BN_EPSILON = 1e-5
BN_MOMENTUM = 0.9  # PyTorch's momentum=0.1 counts the other way round.


# The zoo's filter sizes: the reference's range.
MIN_FILTER_SIZE, MAX_FILTER_SIZE = 1, 7


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


def validate_builder_args(
    *,
    weights,
    filter_size,
    include_top,
    pooling,
    classes,
    arch: str,
    pool_only: bool | None = None,
) -> None:
    """Early, named errors for the arguments every builder shares.

    Args:
        weights: the builder's `weights`: None, `"imagenet"`, or the path
            of a Keras `.weights.h5` file or of a PyTorch checkpoint
            (`.pth`, `.pth.tar`, `.pt`).
        filter_size: the builder's `filter_size`.
        include_top: the builder's `include_top`.
        pooling: the builder's `pooling`.
        classes: the builder's `classes`.
        arch: the registry name of the architecture (`"resnet50"`,
            `"vgg16_bn"`, ...), which picks the released weights; never
            the user's model `name`.
        pool_only: the builder's `pool_only`, for the architectures that
            have one.

    Raises:
        ValueError: naming the argument, the value and what is allowed.
    """
    check_filter_size(filter_size)
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
    allowed = (
        "None, 'imagenet', or the path of a Keras `.weights.h5` file or of "
        "a PyTorch checkpoint (`.pth`, `.pth.tar`, `.pt`)"
    )
    if not isinstance(weights, (str, os.PathLike)):
        raise ValueError(
            f"`weights` must be {allowed}. Received: weights={weights!r}"
        )
    if weights == "imagenet":
        if include_top and classes != 1000:
            raise ValueError(
                "With `weights='imagenet'` and `include_top=True`, `classes` "
                "must be 1000 (the ImageNet classifier). Received: "
                f"classes={classes!r}"
            )
        pretrained.check_imagenet_available(
            arch, filter_size, pool_only=pool_only
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


def model_input(input_tensor, input_shape, *, min_size: int = 32):
    """Returns `(img_input, model_inputs)` as keras.applications does."""
    if input_shape is None:
        input_shape = (None, None, 3) if input_tensor is None else None
    if input_shape is not None:
        input_shape = tuple(input_shape)
        if len(input_shape) != 3 or input_shape[-1] != 3:
            raise ValueError(
                "`input_shape` must be (height, width, 3) (channels_last, "
                f"RGB). Received: input_shape={input_shape!r}"
            )
        for size in input_shape[:2]:
            if size is not None and size < min_size:
                raise ValueError(
                    f"`input_shape` spatial sizes must be at least {min_size}"
                    f". Received: input_shape={input_shape!r}"
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
    name: str,
):
    """Conv2D with PyTorch's explicit symmetric zero padding."""
    if padding:
        x = layers.ZeroPadding2D(padding, name=f"{name}_pad")(x)
    return layers.Conv2D(
        filters,
        kernel_size,
        strides=strides,
        groups=groups,
        use_bias=use_bias,
        name=name,
    )(x)


def batch_norm(x, *, name: str):
    return layers.BatchNormalization(
        axis=-1, epsilon=BN_EPSILON, momentum=BN_MOMENTUM, name=name
    )(x)


def blur_pool(x, filter_size: int, *, strides: int = 2, name: str):
    return BlurPool2D(filter_size=filter_size, strides=strides, name=name)(x)


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
    include_top: bool,
) -> keras.Model:
    """Makes the functional model and loads `weights` into it.

    Args:
        inputs: the model inputs.
        outputs: the model outputs.
        name: the model name.
        weights: as checked by `validate_builder_args`.
        arch: the reference's name of the architecture.
        filter_size: the builder's `filter_size`.
        include_top: whether the model has its classifier.

    Returns:
        The `keras.Model`.
    """
    model = keras.Model(inputs, outputs, name=name)
    if weights is not None:
        loading.load_weights(model, weights, arch=arch, filter_size=filter_size)
    return model

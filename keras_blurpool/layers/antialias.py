"""Pluggable anti-aliasing: a marker of anti-aliasing layers and a factory.

Code that must tell anti-aliasing layers from the rest of a network (the
PyTorch name maps, which hide them to give torchvision's names) asks
`is_antialiasing(layer)` instead of testing for one class, so a new
anti-aliasing layer needs no edits there: subclass `Antialiasing`, or
register a class you do not own with `register_antialiasing`.

`create_antialias` turns a builder's `antialias` argument into a layer, in
the manner of timm's `create_aa`: `"blur"` (`BlurPool2D`), `"avg"`
(`AntialiasAvgPool2D`, the average pool of timm's `resnetaa` models),
`"aps"` / `"lps"` (`APSPool2D` / `LPSPool2D`, adaptive and learnable
polyphase sampling), `None` (no layer: the plain network) or a callable
that makes the layer.
"""

from __future__ import annotations

from typing import Callable
from typing import Union

import keras

from keras_blurpool._utils import check_int
from keras_blurpool.layers.blur_pool import BlurPool1D
from keras_blurpool.layers.blur_pool import BlurPool2D
from keras_blurpool.layers.blur_pool import BlurPool3D
from keras_blurpool.layers.blur_upsampling import BlurUpSampling2D
from keras_blurpool.layers.max_blur_pool import MaxBlurPool2D
from keras_blurpool.layers.polyphase import APSPool2D
from keras_blurpool.layers.polyphase import LPSPool2D
from keras_blurpool.layers.polyphase_upsampling import APSUpSampling2D

# What a builder's `antialias` may be.
AntialiasChoice = Union[str, Callable[..., keras.layers.Layer], None]
_NAMED = ("blur", "avg", "aps", "lps")
_ALLOWED = (
    "'blur', 'avg', 'aps', 'lps', None, or a callable (channels, strides, "
    "name) -> keras.layers.Layer"
)

# Classes registered with `register_antialiasing` (besides subclasses of
# `Antialiasing`).
_REGISTERED: list[type] = []


class Antialiasing:
    """Marker base class of anti-aliasing (low-pass, then subsample) layers.

    It has no behaviour: list it among the bases of a layer class so that
    `is_antialiasing` recognises its instances. `AntiAliasing`, its name
    before the spelling was made one, is a deprecated alias.

    Example:

    >>> class MyPool(Antialiasing, keras.layers.Layer):
    ...     pass
    >>> is_antialiasing(MyPool())
    True
    """


def register_antialiasing(cls: type) -> type:
    """Marks a layer class as anti-aliasing, for classes you do not own.

    Instances of `cls` and of its subclasses are then anti-aliasing layers
    for `is_antialiasing`. Registering a class twice is harmless.

    Args:
        cls: a subclass of `keras.layers.Layer`.

    Returns:
        `cls`, so that this can decorate a class definition.

    Raises:
        ValueError: if `cls` is not a subclass of `keras.layers.Layer`.

    Example:

    >>> @register_antialiasing
    ... class ThirdPartyBlur(keras.layers.Layer):
    ...     pass
    >>> is_antialiasing(ThirdPartyBlur())
    True
    """
    if not (isinstance(cls, type) and issubclass(cls, keras.layers.Layer)):
        raise ValueError(
            "`cls` must be a subclass of keras.layers.Layer. "
            f"Received: cls={cls!r}"
        )
    if cls not in _REGISTERED:
        _REGISTERED.append(cls)
    return cls


def is_antialiasing(layer) -> bool:
    """Whether `layer` is an anti-aliasing layer.

    Args:
        layer: any object, usually a layer of a model.

    Returns:
        True for instances of `Antialiasing` subclasses and of classes
        registered with `register_antialiasing`.

    Example:

    >>> is_antialiasing(keras_blurpool.BlurPool2D())
    True
    >>> is_antialiasing(keras.layers.MaxPooling2D())
    False
    """
    return isinstance(layer, (Antialiasing, *_REGISTERED))


for _cls in (
    BlurPool1D,
    BlurPool2D,
    BlurPool3D,
    BlurUpSampling2D,
    MaxBlurPool2D,
    APSPool2D,
    LPSPool2D,
    APSUpSampling2D,
):
    register_antialiasing(_cls)


@keras.saving.register_keras_serializable(package="keras_blurpool")
class AntialiasAvgPool2D(Antialiasing, keras.layers.AveragePooling2D):
    """Average-pool anti-aliasing: an `s`x`s` average pool of stride `s`.

    The `aa_layer=nn.AvgPool2d` of timm's `resnetaa` models: placed after
    a layer evaluated at stride 1, it averages each `s`x`s` window and
    subsamples, a cheap low-pass filter. Padding is "same" and the mean
    counts only the pixels inside the map, so an odd map of `n` pixels
    gives `ceil(n / s)` outputs. For `strides=2` this is PyTorch's
    `AvgPool2d(2, ceil_mode=True, count_include_pad=False)`, and on even
    maps timm's `AvgPool2d(2)`. `AntiAliasAvgPool2D`, its name before the
    spelling was made one, is a deprecated alias; models saved under that
    name load as this class.

    Args:
        strides: int >= 1, the window size and the subsampling factor.
        data_format: `"channels_last"` or `"channels_first"`; defaults to
            `keras.config.image_data_format()`.
        **kwargs: base layer arguments (`name`, `dtype`, ...).

    Raises:
        ValueError: if `strides` is not a positive int.

    Example:

    >>> x = keras.random.normal((1, 15, 15, 8))
    >>> tuple(AntialiasAvgPool2D()(x).shape)
    (1, 8, 8, 8)
    """

    def __init__(self, strides=2, data_format=None, **kwargs):
        strides = check_int("strides", strides)
        super().__init__(
            pool_size=strides,
            strides=strides,
            padding="same",
            data_format=data_format,
            **kwargs,
        )

    def get_config(self):
        config = super().get_config()
        # The window and padding follow from `strides`; __init__ takes no
        # `pool_size` or `padding`.
        config.pop("pool_size", None)
        config.pop("padding", None)
        config["strides"] = self.strides[0]
        return config


# Deprecated aliases of the names before the spelling was made one
# ("antialias", CamelCase "Antialias"): the same objects.
AntiAliasing = Antialiasing
AntiAliasAvgPool2D = AntialiasAvgPool2D
# `.keras` files saved before the rename name the layer by its old
# registered name.
keras.saving.get_custom_objects()[
    "keras_blurpool>AntiAliasAvgPool2D"
] = AntialiasAvgPool2D


def check_antialias(antialias) -> None:
    """Raises unless `antialias` is a valid anti-aliasing choice.

    Args:
        antialias: `"blur"`, `"avg"`, `"aps"`, `"lps"`, None, or a
            callable `(channels, strides, name) -> keras.layers.Layer`.

    Raises:
        ValueError: naming the value and what is allowed. Layer classes and
            layer instances are refused too: the factory calls `antialias`
            once per downsampling with `(channels, strides, name)`.
    """
    if antialias is None or (isinstance(antialias, str) and antialias in _NAMED):
        return
    if isinstance(antialias, type):
        raise ValueError(
            f"`antialias` must be {_ALLOWED}; a class is not called with "
            "those arguments: wrap it, e.g. `lambda channels, strides, name: "
            f"{antialias.__name__}(strides=strides, name=name)`. Received: "
            f"antialias={antialias!r}"
        )
    if isinstance(antialias, keras.layers.Layer):
        raise ValueError(
            f"`antialias` must be {_ALLOWED}; a layer instance cannot be "
            "placed at every downsampling: pass a function that makes one. "
            f"Received: antialias={antialias!r}"
        )
    if not callable(antialias):
        raise ValueError(
            f"`antialias` must be {_ALLOWED}. Received: antialias={antialias!r}"
        )


def create_antialias(
    antialias: AntialiasChoice,
    *,
    channels: int | None = None,
    strides: int = 2,
    filter_size: int = 4,
    pad_type: str = "reflect",
    data_format: str | None = None,
    name: str | None = None,
) -> keras.layers.Layer | None:
    """Makes the anti-aliasing layer of one downsampling, as timm's create_aa.

    Args:
        antialias: `"blur"` (`BlurPool2D`), `"avg"` (`AntialiasAvgPool2D`),
            `"aps"` (`APSPool2D`), `"lps"` (`LPSPool2D`), None (no layer:
            the plain network keeps its strides), or a callable
            `(channels, strides, name) -> keras.layers.Layer`.
        channels: channels of the map to downsample, passed to a callable.
        strides: the subsampling factor.
        filter_size: taps of the blur filter (`"blur"`, `"aps"`, `"lps"`).
        pad_type: padding of the blur, `"reflect"`, `"replicate"`,
            `"zero"` or `"circular"` (`"blur"`, `"aps"`, `"lps"`).
        data_format: `"channels_last"` or `"channels_first"`; defaults to
            `keras.config.image_data_format()` (not passed to a callable).
        name: name of the layer.

    Returns:
        A new layer, or None for `antialias=None`.

    Raises:
        ValueError: for an `antialias` that `check_antialias` refuses, bad
            layer arguments, or a callable that returns no keras Layer.

    Example:

    >>> layer = create_antialias("avg", name="pool1_blur")
    >>> type(layer).__name__, layer.name
    ('AntialiasAvgPool2D', 'pool1_blur')
    >>> create_antialias(None) is None
    True
    """
    check_antialias(antialias)
    if antialias is None:
        return None
    if isinstance(antialias, str) and antialias == "blur":
        return BlurPool2D(
            filter_size=filter_size,
            strides=strides,
            pad_type=pad_type,
            data_format=data_format,
            name=name,
        )
    if isinstance(antialias, str) and antialias in ("aps", "lps"):
        layer_class = APSPool2D if antialias == "aps" else LPSPool2D
        return layer_class(
            filter_size=filter_size,
            strides=strides,
            pad_type=pad_type,
            data_format=data_format,
            name=name,
        )
    if isinstance(antialias, str):  # "avg"
        return AntialiasAvgPool2D(
            strides=strides, data_format=data_format, name=name
        )
    layer = antialias(channels, strides, name)
    if not isinstance(layer, keras.layers.Layer):
        raise ValueError(
            f"`antialias` {antialias!r} must return a keras.layers.Layer when "
            f"called with (channels={channels!r}, strides={strides!r}, "
            f"name={name!r}); it returned {layer!r} "
            f"(of type {type(layer).__name__})"
        )
    return layer

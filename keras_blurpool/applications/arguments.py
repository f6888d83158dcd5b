"""The arguments every builder shares: their bounds and their checks.

Every check raises `ValueError` naming the argument, the value and what
is allowed, before anything is built. `check_builder_arguments` runs them
all; the recipes and `keras_blurpool.convert` call the single checks
they need (`check_filter_size`).
"""

from __future__ import annotations

import dataclasses
from typing import Any

import keras

from keras_blurpool._utils import is_int
from keras_blurpool.layers import check_antialias
from keras_blurpool.layers import standardize_pad_type
from keras_blurpool.layers.antialias import AntialiasChoice

# The builders' `filter_size`: the reference's range (the layers take
# larger filters).
MIN_BUILDER_FILTER_SIZE, MAX_BUILDER_FILTER_SIZE = 1, 7
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
        or not MIN_BUILDER_FILTER_SIZE <= filter_size <= MAX_BUILDER_FILTER_SIZE
    ):
        raise ValueError(
            "`filter_size` must be None (the plain, non-antialiased network) "
            f"or an int from {MIN_BUILDER_FILTER_SIZE} to {MAX_BUILDER_FILTER_SIZE}. "
            f"Received: filter_size={filter_size!r}"
        )


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


@dataclasses.dataclass(frozen=True)
class AntialiasSpec:
    """How a builder anti-aliases its downsamplings.

    Attributes:
        antialias: the builder's `antialias`: `"blur"`, `"avg"` or a
            callable (see `keras_blurpool.layers.create_antialias`).
        filter_size: taps of the blur filter.
        pad_type: padding of the blur.
    """

    antialias: AntialiasChoice
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


def antialias_spec(
    antialias, filter_size, pad_type="reflect", padding="zero"
) -> AntialiasSpec | None:
    """The builder's anti-aliasing, or None for the plain network.

    `antialias=None` builds the plain network whatever `filter_size`, and
    `filter_size=None` is an alias of it (with the default `"blur"`). With
    `padding="circular"` the blur pads circularly. Arguments are assumed
    checked by `check_builder_arguments`.
    """
    if antialias is None or filter_size is None:
        return None
    if padding == "circular":
        pad_type = "circular"
    return AntialiasSpec(antialias, filter_size, pad_type)


@dataclasses.dataclass(frozen=True, kw_only=True)
class Options:
    """A builder's arguments once checked, as its family's network reads them.

    One attribute per argument of `arguments.ARGUMENTS` (`pool_only` is
    None and `padding` `"zero"` for a family that does not take them),
    and what they imply: `aa` and `circular`.
    """

    include_top: bool
    weights: Any
    input_tensor: Any
    input_shape: Any
    pooling: str | None
    classes: int
    classifier_activation: Any
    antialias: Any
    filter_size: int | None
    pad_type: str
    pool_only: bool | None = None
    padding: str = "zero"
    synchronized_batch_norm: bool
    name: str | None

    @property
    def aa(self) -> AntialiasSpec | None:
        """The anti-aliasing of the network, None for the plain one."""
        return antialias_spec(
            self.antialias, self.filter_size, self.pad_type, self.padding
        )

    @property
    def circular(self) -> bool:
        """Whether every convolution pads circularly."""
        return self.padding == "circular"


def check_builder_arguments(
    *,
    filter_size,
    include_top,
    pooling,
    classes,
    pool_only: bool | None = None,
    antialias: AntialiasChoice = "blur",
    pad_type: str = "reflect",
    synchronized_batch_norm=False,
    padding: str = "zero",
) -> None:
    """Early, named errors for the arguments every builder shares.

    `weights` is checked by `loading.check_weights`, which knows the
    released weights.

    Args:
        filter_size: the builder's `filter_size`.
        include_top: the builder's `include_top`.
        pooling: the builder's `pooling`.
        classes: the builder's `classes`.
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
    if pool_only is not None and not isinstance(pool_only, bool):
        raise ValueError(
            f"`pool_only` must be a bool. Received: pool_only={pool_only!r}"
        )


@dataclasses.dataclass(frozen=True)
class Argument:
    """One argument of the builders: written once, shared by every builder.

    Attributes:
        name: the keyword.
        default: the default, unless a family or a variant overrides it.
        annotation: the type annotation, as source text.
        doc: the paragraph of the builders' "Args:" section, a
            `str.format` template over the builder's documentation fields
            (`Family.builder` lists them).
    """

    name: str
    default: object
    annotation: str
    doc: str


# The builders' signature, in order. A family takes every argument but the
# optional ones it does not name (`Family.arguments`).
ARGUMENTS = (
    Argument(
        "include_top",
        True,
        "bool",
        "whether to include the classifier at the top of the network "
        "({top}).",
    ),
    Argument(
        "weights",
        None,
        "str | os.PathLike | None",
        "`None` (random initialization), `\"imagenet\"` ({imagenet})"
        "{tags}, or the path of a Keras "
        "`.weights.h5` file, a PyTorch checkpoint (`.pth`, `.pth.tar`, "
        "`.pt`) or a `.safetensors` file of this network.",
    ),
    Argument(
        "input_tensor",
        None,
        "keras.KerasTensor | None",
        "optional Keras tensor (output of `keras.Input()`) to use as the "
        "image input of the model.",
    ),
    Argument(
        "input_shape",
        None,
        "tuple[int | None, int | None, int] | None",
        "optional `(height, width, channels)` tuple, `(channels, height, "
        "width)` when `keras.config.image_data_format()` is "
        "`\"channels_first\"`; any number of channels builds with "
        "`weights=None`, the released weights take 3 (RGB); "
        "{default_shape}. Sides must be at least {min_size} with the "
        "default arguments; a larger reflect-padded filter needs larger "
        "inputs (the error says how large).",
    ),
    Argument(
        "pooling",
        None,
        "str | None",
        "feature pooling when `include_top=False`: `None` (the 4-D output "
        "of the last block), `\"avg\"` or `\"max\"` (global pooling, 2-D "
        "output).",
    ),
    Argument(
        "classes",
        1000,
        "int",
        "number of classes, when `include_top=True`.",
    ),
    Argument(
        "classifier_activation",
        "softmax",
        "str | Callable | None",
        "activation of the `predictions` layer, a `str` or callable; "
        "`None` returns the logits.",
    ),
    Argument(
        "antialias",
        "blur",
        "str | Callable | None",
        "the anti-aliasing layer at each downsampling ({where}): "
        "`\"blur\"` (`BlurPool2D`, the reference's), `\"avg\"` (a 2x2 "
        "average pool of stride 2, as timm's `aa_layer=nn.AvgPool2d`), "
        "{polyphase}`None` (the plain network, with strided layers) or a "
        "callable `(channels, strides, name) -> keras.layers.Layer`.",
    ),
    Argument(
        "filter_size",
        4,
        "int | None",
        "taps of the binomial blur filter, 1 to 7 (1: subsampling without "
        "a blur), or `None` for the plain network (as `antialias=None`).",
    ),
    Argument(
        "pad_type",
        "reflect",
        "str",
        "padding of the blur: `\"reflect\"` (the reference's and timm's), "
        "`\"replicate\"`, `\"zero\"` or `\"circular\"`; the last three "
        "take smaller inputs.",
    ),
    Argument(
        "pool_only",
        True,
        "bool",
        "if `True`, only the pools are anti-aliased and {first_conv} keeps "
        "its stride; `False` also runs it at stride 1 and anti-aliases "
        "after it, at about 4x its cost.{pool_only_note} No effect on the "
        "plain network.",
    ),
    Argument(
        "padding",
        "zero",
        "str",
        "padding of every convolution and pool of the body: `\"zero\"` "
        "(PyTorch's) or `\"circular\"` (the map wraps around, as APS's and "
        "LPS's shift-invariant networks; the blur then pads circularly "
        "too).",
    ),
    Argument(
        "synchronized_batch_norm",
        False,
        "bool",
        "if `True`, BatchNormalization computes its batch statistics over "
        "all replicas of a `tf.distribute` strategy (Keras's "
        "`BatchNormalization(synchronized=True)`; TensorFlow backend "
        "only), so that every replica holds the same moving statistics; "
        "see docs/training.md.{bn_note}",
    ),
    Argument(
        "name",
        None,
        "str | None",
        "name of the model; defaults to `\"{arch}\"`.",
    ),
)
ARGUMENT_NAMES = tuple(argument.name for argument in ARGUMENTS)
# The arguments that only some families take.
OPTIONAL_ARGUMENTS = ("pool_only", "padding")

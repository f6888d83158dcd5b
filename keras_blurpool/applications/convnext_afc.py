"""ConvNeXt-Tiny-AFC (alias-free ConvNets) and its two controls.

Michaeli, Michaeli & Soudry, "Alias-Free Convnets: Fractional Shift
Invariance via Polynomial Activations", CVPR 2023. Three ConvNeXt-Tiny
networks with circular padding everywhere, as the authors train them
(`hmichaeli/alias_free_convnets`, timm names `convnext_afc_tiny` and
`convnext_aps_tiny`):

- `ConvNeXtTinyAFC`: every subsampling is an ideal low-pass filter then
  subsampling (`IdealDownsampling2D`), every activation a per-channel
  quadratic evaluated at twice the resolution (`IdealUpsampling2D` before
  the block's first 1x1 convolution, `PolynomialActivation`, the second
  1x1 convolution, low-pass and subsampling after it), the stem's
  activation `x + gamma * LowpassPolynomialActivation(x)`, and every
  LayerNorm the alias-free one (`AliasFreeLayerNormalization`); the
  final LayerNorm after global pooling stays ConvNeXt's.
- `ConvNeXtTinyCircular`: the baseline, ConvNeXt-Tiny with circular
  convolutions whose strided convolutions are stride-1 convolutions then
  plain subsampling (the authors' `convnext_afc_tiny` with
  `filt_size 1`, GELU, LayerNorm `C`).
- `ConvNeXtTinyAPS`: the baseline with adaptive polyphase sampling
  (`APSPool2D`, no blur) instead of the subsampling (`convnext_aps_tiny`).

Keras layers are named after the authors' PyTorch modules (`.` written
`__`), so their checkpoints load through the package's PyTorch reader.
"""

from __future__ import annotations

import dataclasses
import os
from collections.abc import Callable

import keras
from keras import layers

from keras_blurpool._utils import is_int
from keras_blurpool.applications import loading
from keras_blurpool.applications import registry
from keras_blurpool.applications.builder import model_input
from keras_blurpool.layers import AliasFreeLayerNormalization
from keras_blurpool.layers import APSPool2D
from keras_blurpool.layers import CircularPadding2D
from keras_blurpool.layers import IdealDownsampling2D
from keras_blurpool.layers import IdealUpsampling2D
from keras_blurpool.layers import LayerScale
from keras_blurpool.layers import LowpassPolynomialActivation
from keras_blurpool.layers import PolynomialActivation
from keras_blurpool.weights import read_torch_checkpoint
from keras_blurpool.weights.torch_checkpoint import STATE_DICT_ENTRIES

VARIANTS = ("afc", "circular", "aps")
TINY_DEPTHS = (3, 3, 9, 3)
TINY_DIMS = (96, 192, 384, 768)
# The authors' AFC settings: polynomial scales, stem cutoff, epsilon.
POLY_SCALE = 7.0
STEM_CUTOFF = 0.75
EPSILON = 1e-6
# Total subsampling (4 in the stem, 2 in each of 3 downsampling layers).
REDUCTION = 32
# The last stage's 7x7 circular padding needs maps of at least 3.
MIN_SIZE = 3 * REDUCTION
# Where the authors publish their checkpoints (README; no licence stated).
CHECKPOINTS_URL = "https://huggingface.co/hmichaeli/convnext-afc"
CHECKPOINT_LICENCE = (
    "none stated in the authors' repository (read the checkpoint page's "
    "terms; ask the authors before redistributing)"
)
BUILDER_NAMES = {
    "afc": "ConvNeXtTinyAFC",
    "circular": "ConvNeXtTinyCircular",
    "aps": "ConvNeXtTinyAPS",
}
TITLES = {
    "afc": "ConvNeXt-Tiny-AFC",
    "circular": "ConvNeXt-Tiny (circular baseline)",
    "aps": "ConvNeXt-Tiny-APS",
}


def _torch(name: str) -> str:
    return name.replace(".", "__")


@dataclasses.dataclass(frozen=True)
class _Net:
    variant: str
    data_format: str

    @property
    def channel_axis(self) -> int:
        return -1 if self.data_format == "channels_last" else 1

    def norm(self, x, name: str, spatial: bool = True):
        if self.variant == "afc" and spatial:
            return AliasFreeLayerNormalization(EPSILON, self.data_format, name=_torch(name))(x)
        return layers.LayerNormalization(
            axis=self.channel_axis, epsilon=EPSILON, name=_torch(name)
        )(x)

    def subsample(self, x, strides: int, name: str):
        if self.variant == "afc":
            return IdealDownsampling2D(
                strides, cutoff=1.0 / strides, data_format=self.data_format,
                name=_torch(name),
            )(x)
        if self.variant == "circular":
            # A 1x1 max pool with strides keeps x[::s, ::s]: subsampling.
            return layers.MaxPooling2D(
                1, strides, data_format=self.data_format, name=_torch(name)
            )(x)
        return APSPool2D(
            None, strides=strides, pad_type="circular",
            data_format=self.data_format, name=_torch(name),
        )(x)

    def conv(self, x, filters, kernel, pads, name: str, depthwise=False):
        x = CircularPadding2D(pads, self.data_format, name=_torch(name + ".0"))(x)
        if depthwise:
            return layers.DepthwiseConv2D(
                kernel, data_format=self.data_format, name=_torch(name + ".1")
            )(x)
        return layers.Conv2D(
            filters, kernel, data_format=self.data_format, name=_torch(name + ".1")
        )(x)

    def to_last(self, x, name):
        if self.data_format == "channels_last":
            return x
        return layers.Permute((2, 3, 1), name=name)(x)

    def to_first(self, x, name):
        if self.data_format == "channels_last":
            return x
        return layers.Permute((3, 1, 2), name=name)(x)

    def stem(self, x, width):
        x = self.conv(x, width, 4, ((1, 2), (1, 2)), "downsample_layers.0.0")
        if self.variant == "afc":
            act = LowpassPolynomialActivation(
                STEM_CUTOFF, in_scale=POLY_SCALE, out_scale=POLY_SCALE,
                train_scale=True, data_format=self.data_format,
                name=_torch("downsample_layers.0.1.residual.0"),
            )(x)
            act = LayerScale(
                0.0, per_channel=False, name=_torch("downsample_layers.0.1.gamma")
            )(act)
            x = layers.Add(name="stem_residual")([x, act])
            x = IdealDownsampling2D(
                4, cutoff=0.25, data_format=self.data_format,
                name=_torch("downsample_layers.0.2"),
            )(x)
            return self.norm(x, "downsample_layers.0.3")
        if self.variant == "circular":
            x = self.subsample(x, 4, "downsample_layers.0.1")
            return self.norm(x, "downsample_layers.0.2")
        x = self.subsample(x, 2, "downsample_layers.0.1")
        x = self.subsample(x, 2, "downsample_layers.0.2")
        return self.norm(x, "downsample_layers.0.3")

    def downsample(self, x, i, width):
        x = self.norm(x, f"downsample_layers.{i}.0")
        x = self.conv(x, width, 2, ((0, 1), (0, 1)), f"downsample_layers.{i}.1")
        return self.subsample(x, 2, f"downsample_layers.{i}.2")

    def block(self, x, prefix, width):
        shortcut = x
        x = self.conv(x, width, 7, 3, prefix + ".dwconv", depthwise=True)
        x = self.norm(x, prefix + ".norm")
        x = self.to_last(x, _torch(prefix + ".to_channels_last"))
        mlp = prefix + (".mlp" if self.variant != "aps" else "")
        if self.variant == "afc":
            x = IdealUpsampling2D(2, "channels_last", name=_torch(mlp + ".upsample"))(x)
        x = layers.Dense(4 * width, name=_torch(mlp + ".pwconv1"))(x)
        if self.variant == "afc":
            x = PolynomialActivation(
                in_scale=POLY_SCALE, out_scale=POLY_SCALE, train_scale=True,
                data_format="channels_last", name=_torch(mlp + ".act"),
            )(x)
        else:
            # Keras's "gelu" is the exact (erf) one, as torch's nn.GELU.
            x = layers.Activation("gelu", name=_torch(mlp + ".act"))(x)
        x = layers.Dense(width, name=_torch(mlp + ".pwconv2"))(x)
        if self.variant == "afc":
            x = IdealDownsampling2D(2, data_format="channels_last", name=_torch(mlp + ".lpf"))(x)
        x = LayerScale(1e-6, data_format="channels_last", name=_torch(prefix + ".gamma"))(x)
        x = self.to_first(x, _torch(prefix + ".to_channels_first"))
        return layers.Add(name=_torch(prefix + ".add"))([shortcut, x])


def _check_config(depths, dims):
    if (
        not isinstance(depths, (tuple, list))
        or len(depths) != 4
        or not all(is_int(d) and 1 <= d <= 64 for d in depths)
    ):
        raise ValueError(
            "`depths` must be 4 ints from 1 to 64 (blocks per stage). "
            f"Received: depths={depths!r}"
        )
    if (
        not isinstance(dims, (tuple, list))
        or len(dims) != 4
        or not all(is_int(d) and 1 <= d <= 4096 for d in dims)
    ):
        raise ValueError(
            "`dims` must be 4 ints from 1 to 4096 (channels per stage). "
            f"Received: dims={dims!r}"
        )


def _check_sides(img_input, data_format):
    shape = tuple(img_input.shape)
    sides = shape[1:3] if data_format == "channels_last" else shape[2:4]
    for side in sides:
        if side is None or side % REDUCTION or side < MIN_SIZE:
            raise ValueError(
                "ConvNeXt-Tiny-AFC and its controls need a known input height "
                f"and width, multiples of {REDUCTION} (the network subsamples "
                f"by {REDUCTION}; the ideal filters need even maps) and at least "
                f"{MIN_SIZE} (the last stage's 7x7 circular padding needs maps "
                f"of 3). Received input shape {shape[1:]}"
            )


def variant_of_state_dict(state_dict) -> str | None:
    """Which of `VARIANTS` a state dict of the authors' layout is, or None.

    AFC's blocks hold `mlp.act.coef`, the circular baseline's
    `mlp.pwconv1` without it, APS's `pwconv1` directly in the block.

    Args:
        state_dict: mapping of PyTorch names to arrays.

    Returns:
        `"afc"`, `"circular"`, `"aps"`, or None for another layout.
    """
    keys = set(state_dict)
    if "stages.0.0.mlp.act.coef" in keys:
        return "afc"
    if "stages.0.0.mlp.pwconv1.weight" in keys:
        return "circular"
    if "stages.0.0.pwconv1.weight" in keys:
        return "aps"
    return None


def _variant_of_model(model) -> str | None:
    names = {layer.name for layer in model.layers}
    if _torch("downsample_layers.0.0.1") not in names:
        return None
    if _torch("stages.0.0.mlp.act") in names and any(
        isinstance(layer, PolynomialActivation) for layer in model.layers
    ):
        return "afc"
    if _torch("stages.0.0.mlp.pwconv1") in names:
        return "circular"
    return "aps"


def torch_names(model) -> dict | None:
    """`{keras layer name: authors' module name}` of these networks.

    Returns:
        The map, or None for a model of another family.
    """
    if _variant_of_model(model) is None:
        return None
    names = {}
    for layer in model.layers:
        if layer.name.startswith(("downsample_layers__", "stages__")):
            names[layer.name] = layer.name.replace("__", ".")
        elif layer.name in ("norm", "head"):
            names[layer.name] = layer.name
    return names


def load_afc_checkpoint(model, checkpoint, *, entry: str | None = None):
    """Loads the authors' checkpoint (or state dict) into one of these models.

    Args:
        model: a model of `ConvNeXtTinyAFC`, `ConvNeXtTinyCircular` or
            `ConvNeXtTinyAPS` (any `depths` / `dims`).
        checkpoint: a path to a file `torch.save` wrote (their training
            script's `{'model': ..., 'model_ema': ...}`, or a bare state
            dict), or a state dict already read.
        entry: with a path, which entry holds the weights: None takes
            `'model'` (the trained network, which their `--eval` loads and
            every checkpoint of theirs has), `'model_ema'` its exponential
            moving average (present when trained with `--model_ema true`).

    Returns:
        The model.

    Raises:
        ValueError: for a checkpoint of another variant (naming both), or
            any key or shape that does not fit (nothing is loaded then).

    Example:

    >>> model = ConvNeXtTinyAFC(weights=None)  # doctest: +SKIP
    >>> load_afc_checkpoint(model, "convnext_afc_tiny.pth")  # doctest: +SKIP
    """
    if entry is not None and entry not in STATE_DICT_ENTRIES:
        raise ValueError(
            f"`entry` must be None or one of {STATE_DICT_ENTRIES}. "
            f"Received: entry={entry!r}"
        )
    wanted = _variant_of_model(model)
    if wanted is None:
        raise ValueError(
            "`model` must be a ConvNeXtTinyAFC, ConvNeXtTinyCircular or "
            f"ConvNeXtTinyAPS model. Received: model {model.name!r}"
        )
    if isinstance(checkpoint, (str, os.PathLike)):
        state_dict = read_torch_checkpoint(checkpoint, entry)
    else:
        state_dict = dict(checkpoint)
    found = variant_of_state_dict(state_dict)
    if found != wanted:
        what = f"{TITLES[found]}'s" if found else "of none of these networks"
        builder = BUILDER_NAMES.get(found, "the matching network")
        shown = checkpoint if isinstance(checkpoint, (str, os.PathLike)) else "a state dict"
        raise ValueError(
            f"The checkpoint is {what} (by its keys), but model "
            f"{model.name!r} is a {TITLES[wanted]}: build {builder} to load "
            f"it. Received: checkpoint={shown!r}"
        )
    return loading.load_torch_weights(model, state_dict)


def _build(
    variant,
    *,
    include_top,
    weights,
    input_tensor,
    input_shape,
    pooling,
    classes,
    classifier_activation,
    name,
    depths,
    dims,
    arch,
):
    _check_config(depths, dims)
    if not isinstance(include_top, bool):
        raise ValueError(
            f"`include_top` must be a bool. Received: include_top={include_top!r}"
        )
    if pooling not in (None, "avg", "max"):
        raise ValueError(
            "`pooling` must be None, 'avg' or 'max'. "
            f"Received: pooling={pooling!r}"
        )
    if include_top and (not is_int(classes) or classes < 1):
        raise ValueError(
            f"`classes` must be an int >= 1. Received: classes={classes!r}"
        )
    if weights == "imagenet":
        raise ValueError(
            f"{TITLES[variant]} has no weights this package fetches: the "
            f"authors publish theirs at {CHECKPOINTS_URL} ({CHECKPOINT_LICENCE}). "
            "Download one and pass its path as `weights=` (or call "
            "`load_afc_checkpoint`). Received: weights='imagenet'"
        )
    if weights is not None and not (
        isinstance(weights, (str, os.PathLike)) and os.path.isfile(weights)
    ):
        raise ValueError(
            "`weights` must be None or the path of an existing file (the "
            "authors' PyTorch checkpoint, or a `.weights.h5`). "
            f"Received: weights={weights!r}"
        )
    data_format = keras.config.image_data_format()
    net = _Net(variant, data_format)
    img_input, inputs = model_input(
        input_tensor,
        input_shape,
        min_size=MIN_SIZE,
        default_size=224 if include_top or input_tensor is None else None,
    )
    _check_sides(img_input, data_format)
    x = net.stem(img_input, dims[0])
    for i in range(4):
        if i:
            x = net.downsample(x, i, dims[i])
        for j in range(depths[i]):
            x = net.block(x, f"stages.{i}.{j}", dims[i])
    if include_top:
        x = layers.GlobalAveragePooling2D(data_format=data_format, name="avg_pool")(x)
        x = layers.LayerNormalization(epsilon=EPSILON, name="norm")(x)
        x = layers.Dense(classes, activation=classifier_activation, name="head")(x)
    elif pooling == "avg":
        x = layers.GlobalAveragePooling2D(data_format=data_format, name="avg_pool")(x)
    elif pooling == "max":
        x = layers.GlobalMaxPooling2D(data_format=data_format, name="max_pool")(x)
    model = keras.Model(inputs, x, name=name or arch)
    if weights is not None:
        if os.fspath(weights).endswith(".weights.h5"):
            model.load_weights(weights)
        else:
            load_afc_checkpoint(model, weights)
    return model


def _builder(builder_name: str, variant: str, arch: str):
    def build(
        include_top: bool = True,
        weights: str | os.PathLike | None = None,
        input_tensor: keras.KerasTensor | None = None,
        input_shape: tuple[int | None, int | None, int] | None = None,
        pooling: str | None = None,
        classes: int = 1000,
        classifier_activation: str | Callable | None = "softmax",
        name: str | None = None,
        depths: tuple[int, int, int, int] = TINY_DEPTHS,
        dims: tuple[int, int, int, int] = TINY_DIMS,
        padding: str = "circular",
    ) -> keras.Model:
        if padding != "circular":
            raise ValueError(
                f"{builder_name} is built with circular padding only: its "
                "invariance to circular shifts (integer and, for AFC, "
                "fractional) holds only then, and the authors' checkpoints "
                "were trained with it. `padding` must be 'circular'. "
                f"Received: padding={padding!r}"
            )
        return _build(
            variant,
            include_top=include_top,
            weights=weights,
            input_tensor=input_tensor,
            input_shape=input_shape,
            pooling=pooling,
            classes=classes,
            classifier_activation=classifier_activation,
            name=name,
            depths=depths,
            dims=dims,
            arch=arch,
        )

    build.__name__ = build.__qualname__ = builder_name
    build.__module__ = __name__
    build.__doc__ = f"""Builds {TITLES[variant]} (Michaeli et al., CVPR 2023).

Circular padding throughout; see the module docstring and
docs/alias_free.md for what differs between the three networks.

Args:
    include_top: whether to add global average pooling, ConvNeXt's final
        LayerNorm and the Dense classifier `head`.
    weights: None (random initialisation), or the path of the authors'
        PyTorch checkpoint of this network (loaded with
        `load_afc_checkpoint`, entry `'model'`) or of a `.weights.h5`
        file. `"imagenet"` is refused: the authors' checkpoints are at
        {CHECKPOINTS_URL}, to download and pass by path.
    input_tensor: optional Keras tensor to use as the image input.
    input_shape: `(height, width, channels)` (channels_first:
        `(channels, height, width)`); the sides must be multiples of 32
        and at least 96; default 224x224x3.
    pooling: without the top, None (the last feature map), `"avg"` or
        `"max"` (global pooling).
    classes: number of classes of the classifier.
    classifier_activation: the classifier's activation (None: logits).
    name: the model's name; default `"{arch}"`.
    depths: blocks per stage, 4 ints (ConvNeXt-Tiny: {TINY_DEPTHS}).
    dims: channels per stage, 4 ints (ConvNeXt-Tiny: {TINY_DIMS}).
    padding: the convolutions' padding: `"circular"` only (the
        guarantee and the authors' checkpoints need it; anything else
        raises).

Returns:
    A `keras.Model`, in `keras.config.image_data_format()`.

Example:

>>> model = keras_blurpool.applications.{builder_name}(  # doctest: +SKIP
...     input_shape=(96, 96, 3), depths=(1, 1, 1, 1), dims=(8, 8, 8, 8))
>>> model.output_shape  # doctest: +SKIP
(None, 1000)
"""
    build.arch = arch
    build.variant = None  # no builder.Family variant: `afc_variant`
    build.afc_variant = variant
    return build


ConvNeXtTinyAFC = _builder("ConvNeXtTinyAFC", "afc", "convnext_afc_tiny")
ConvNeXtTinyCircular = _builder(
    "ConvNeXtTinyCircular", "circular", "convnext_circular_tiny"
)
ConvNeXtTinyAPS = _builder("ConvNeXtTinyAPS", "aps", "convnext_aps_tiny")

registry.register_family(
    {
        "convnext_afc_tiny": ConvNeXtTinyAFC,
        "convnext_circular_tiny": ConvNeXtTinyCircular,
        "convnext_aps_tiny": ConvNeXtTinyAPS,
    },
    weights={},
    torch_names=torch_names,
    head_prefixes=("norm.", "head."),
    released_pool_only=None,
    licence=CHECKPOINT_LICENCE,
    source="afc",
)

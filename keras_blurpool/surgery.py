"""Anti-alias an existing Keras model: `antialias_model`.

The paper's recipe (Zhang, ICML 2019) applied to any Functional or
Sequential model, as MosaicML composer's `apply_blurpool` does for PyTorch:
each strided convolution runs at stride 1 and is followed by a low-pass
subsampling layer, each strided max pool becomes a max at stride 1 and a
blur pool, each strided average pool an average at stride 1 and a blur
pool. The new model keeps every layer's name and weights, so the
original's `.weights.h5` loads into it and its parameter count is equal.

Output shapes are kept exactly. A layer of stride `s` with `padding="same"`
gives `ceil(n / s)` pixels, which stride 1 and a blur pool of stride `s`
give too; with `padding="valid"` and a window of `k` it gives
`floor((n - k) / s) + 1 = ceil((n - k + 1) / s)`, the blur pool of the
stride-1 output. No padding needs adjusting.
"""

from __future__ import annotations

import collections
import dataclasses
import logging
import warnings
from typing import Callable
from typing import Iterable
from typing import Union

import keras

from keras_blurpool import polyphase_surgery
from keras_blurpool._utils import check_int
from keras_blurpool.layers import antialias as _antialias
from keras_blurpool.layers import standardize_pad_type
from keras_blurpool.layers._checks import check_filter_size
from keras_blurpool.layers.blur_pool import BlurPool1D
from keras_blurpool.layers.blur_pool import BlurPool2D
from keras_blurpool.layers.blur_pool import BlurPool3D
from keras_blurpool.layers.blur_upsampling import BlurUpSampling2D
from keras_blurpool.surgery_graph import CAUSAL
from keras_blurpool.surgery_graph import CUSTOM_LAYER
from keras_blurpool.surgery_graph import channels_of
from keras_blurpool.surgery_graph import check_model
from keras_blurpool.surgery_graph import copy_layer
from keras_blurpool.surgery_graph import followers
from keras_blurpool.surgery_graph import hidden_strided
from keras_blurpool.surgery_graph import input_shape_of
from keras_blurpool.surgery_graph import is_graph_model
from keras_blurpool.surgery_graph import is_projection
from keras_blurpool.surgery_graph import layer_kind
from keras_blurpool.surgery_graph import map_first_input
from keras_blurpool.surgery_graph import same_input
from keras_blurpool.surgery_graph import strides_of
from keras_blurpool.surgery_graph import unique_name

_LOG = logging.getLogger(__name__)

_BLURS = {1: BlurPool1D, 2: BlurPool2D, 3: BlurPool3D}
_AVG_BY_RANK = {
    1: keras.layers.AveragePooling1D,
    3: keras.layers.AveragePooling3D,
}
# Layer kinds of the report.
_KINDS = ("conv", "max_pool", "avg_pool", "upsampling")

SkipChoice = Union[Iterable[str], Callable[[keras.layers.Layer], bool], None]


@dataclasses.dataclass
class AntialiasReport:
    """What `antialias_model` changed.

    Attributes:
        replaced: layer kind (`"conv"`, `"max_pool"`, `"avg_pool"`,
            `"upsampling"`) -> names of the layers anti-aliased, in graph
            order (nested models' layers as `"outer/inner"`).
        left_alone: name -> why a strided layer was not changed (under
            `min_channels`, in `skip`, a kind switched off, a
            transposed conv whose shape stride 1 cannot keep, a causal
            conv, a subclassed nested model, a custom layer with strided
            layers inside).
        not_invariant: with `antialias="aps"|"lps"`, name -> why that
            layer keeps the model from being exactly invariant to circular
            shifts (a Flatten head, zero padding, a map side not divisible
            by a stride, a custom layer with strided or zero-padded
            layers inside, ...).
        circular: with `antialias="aps"|"lps"`, the names of the convs and
            pools made circular (circular padding, `padding="valid"`).
        paired: with `antialias="aps"|"lps"`, upsampler name (an
            `UpSampling2D` or strided `Conv2DTranspose`) -> the strided
            layer whose polyphase choice it undoes (`APSUpSampling2D`).
        min_input_size: for a model whose inputs have unknown spatial
            sizes, `(original, new)`: the smallest side (the same on
            every unknown axis) each model takes, found by shape
            inference; the new one is larger where a blur's padding needs
            a larger map. None for fixed sizes, or where shape inference
            cannot tell (a side above 4096, a layer that cannot infer
            shapes).
    """

    replaced: dict = dataclasses.field(
        default_factory=lambda: {kind: [] for kind in _KINDS}
    )
    left_alone: dict = dataclasses.field(default_factory=dict)
    not_invariant: dict = dataclasses.field(default_factory=dict)
    circular: list = dataclasses.field(default_factory=list)
    paired: dict = dataclasses.field(default_factory=dict)
    min_input_size: tuple | None = None

    @property
    def counts(self) -> dict:
        """Kind -> number of layers anti-aliased."""
        return {kind: len(names) for kind, names in self.replaced.items()}

    @property
    def total(self) -> int:
        """Number of layers anti-aliased."""
        return sum(self.counts.values())

    def __str__(self):
        counts = ", ".join(f"{n} {kind}" for kind, n in self.counts.items() if n)
        text = f"anti-aliased {self.total} layer(s)" + (
            f": {counts}" if counts else ""
        )
        if self.left_alone:
            text += f"; left {len(self.left_alone)} strided layer(s) alone"
        if self.not_invariant:
            text += (
                f"; {len(self.not_invariant)} layer(s) not exactly invariant: "
                + ", ".join(self.not_invariant)
            )
        if self.min_input_size and self.min_input_size[1] > self.min_input_size[0]:
            text += (
                f"; smallest input side {self.min_input_size[1]} px (was "
                f"{self.min_input_size[0]})"
            )
        return text


@dataclasses.dataclass
class _Options:
    antialias: object
    filter_size: int
    pad_type: str
    convs: bool
    max_pools: bool
    avg_pools: bool
    upsampling: bool
    min_channels: int
    blur_first: bool
    skip: Callable[[keras.layers.Layer], bool]


def antialias_model(
    model: keras.Model,
    antialias: _antialias.AntialiasChoice = "blur",
    filter_size: int | None = None,
    *,
    convs: bool = True,
    max_pools: bool = True,
    avg_pools: bool = True,
    upsampling: bool = False,
    min_channels: int | None = None,
    blur_first: bool = False,
    skip: SkipChoice = None,
    pad_type: str | None = None,
    padding: str | None = None,
    strict: bool = False,
    return_report: bool = False,
):
    """Returns an anti-aliased copy of a Functional or Sequential model.

    Every strided downsampling layer is replaced as in the paper:

    * a strided `Conv1D/2D/3D`, `DepthwiseConv1D/2D` or
      `SeparableConv1D/2D` runs at stride 1, followed by the anti-aliasing
      layer of the same stride — placed after the `BatchNormalization` and
      activation that follow the conv when the graph has them there (each
      the only consumer of the one before), else right after the conv; a
      strided 1x1 conv with no activation up to there (a projection
      shortcut) runs after the blur instead, as the reference's ResNet
      shortcut, at the low resolution; a causal conv
      (`padding="causal"`) is left alone and reported, since a blur
      around it would let its outputs see later steps;
    * a strided `MaxPooling1D/2D/3D` runs at stride 1, then the blur pool;
    * a strided `AveragePooling1D/2D/3D` runs at stride 1, then the blur
      pool (together a blur pool whose filter is the binomial convolved
      with the window);
    * with `upsampling=True`, `UpSampling2D` becomes `BlurUpSampling2D`
      of the same size and name, and a strided `Conv2DTranspose` with
      `padding="same"` is preceded by `BlurUpSampling2D` and runs at
      stride 1.

    With `antialias="aps"` or `"lps"` the copy is instead exactly
    invariant to circular shifts of its input (Chaman & Dokmanić; Rojas-
    Gomez et al.): every 2-D conv and pool pads circularly (`k - 1` pixels,
    `padding="valid"`; a `ZeroPadding2D` feeding it becomes that padding;
    a stride-1 `Conv2DTranspose` is padded and cropped circularly),
    every strided one runs at stride 1 followed by `APSPool2D` /
    `LPSPool2D` of its stride, and downsamplers whose branches meet at a
    merge keep one polyphase component (the first chooses, the others
    follow its `index`). An `UpSampling2D` or strided `Conv2DTranspose`
    (a U-Net's decoder) is paired with the downsampler that made the last
    subsampling of its input, when their strides match, and puts its
    input back at that downsampler's offset (`APSUpSampling2D`). What
    cannot be made invariant (a Flatten head, a positional embedding, a
    side not divisible by the total stride, an upsampler with no partner,
    a custom layer with strided or zero-padded layers inside) is
    reported in `AntialiasReport.not_invariant` and warned about. See
    docs/shift_invariance.md, "Any model".

    Layer names, weights and the parameter count are kept: the
    original's `.weights.h5` loads into the result. The original model is
    not changed; its `Lambda` layers (no stride, a function no config can
    carry) are shared with the new model rather than copied. Nested
    Functional and Sequential models (a
    keras.applications model inside a wrapper) are anti-aliased too;
    shared layers stay shared. Anti-aliasing layers are named
    `<strided layer>_blur`.

    Args:
        model: a built Functional or Sequential `keras.Model`.
        antialias: the anti-aliasing layer, as `create_antialias`:
            `"blur"` (`BlurPool1D/2D/3D` by the layer's rank), `"avg"`
            (`AntialiasAvgPool2D`; a "same" average pool in 1-D and 3-D),
            a callable `(channels, strides, name) -> keras.layers.Layer`,
            or `"aps"` / `"lps"` (polyphase sampling with circular padding:
            exact circular-shift invariance).
        filter_size: taps of the binomial filter per axis: None (default)
            gives 4 for `"blur"` and 3 for `"aps"`/`"lps"` (the blur
            before the polyphase choice; 1: none).
        convs: anti-alias strided convolutions.
        max_pools: anti-alias strided max pools.
        avg_pools: anti-alias strided average pools.
        upsampling: replace `UpSampling2D` and strided `Conv2DTranspose`
            by blurred upsampling. Not with `"aps"`/`"lps"`, which pair
            them with their encoder's downsampler by themselves.
        min_channels: layers whose input has fewer channels are left alone
            (None: composer's 16, which leaves RGB stems alone; 0 with
            `"aps"`/`"lps"`, where a layer left alone breaks invariance).
        blur_first: composer's cheaper variant for convs: blur at stride 1
            (`antialias` made with `strides=1`), then the original strided
            conv. Pools are anti-aliased as without it. Not with
            `antialias="avg"`, which is no low-pass filter at stride 1.
        skip: layer names, or a predicate `layer -> bool`, of layers to
            leave alone.
        pad_type: padding of the blur, `"reflect"` (None: the default),
            `"replicate"` or `"zero"`; with `"aps"`/`"lps"` None or
            `"circular"` only.
        padding: `"aps"`/`"lps"` only: `"circular"` or None (the same).
            Other values are refused: with zero padding no shift stays
            exact.
        strict: `"aps"`/`"lps"` only: raise a ValueError, instead of
            warning, when layers keep the result from being exactly
            invariant.
        return_report: also return an `AntialiasReport`.

    Returns:
        The new `keras.Model` (Functional for a Functional model,
        Sequential for a Sequential one, except that with `"aps"`/`"lps"`
        a Sequential one with a paired upsampler becomes Functional: a
        Sequential cannot pass the polyphase index), or `(model, report)`
        with `return_report=True`.

    Raises:
        ValueError: for a bad argument; with `"aps"`/`"lps"`, a strided
            layer whose input size is unknown (naming it), a map smaller
            than half a kernel (naming the padding layer), or, with
            `strict=True`, a layer that is not invariant; a subclassed or
            unbuilt model
            (say what to do); an anti-aliasing layer that does not fit a
            feature map (naming the layer: e.g. reflect padding of a map
            too small for the filter).

    Warns:
        UserWarning: when the model has no strided layer to replace (the
            result is then a copy); when its inputs have unknown spatial
            sizes and the new model needs larger ones than the original
            (the warning says the new minimum, also in the report's
            `min_input_size`); with `"aps"`/`"lps"`, when layers keep the
            result from being exactly invariant (naming each and why).

    Example:

    >>> base = keras.applications.MobileNetV2(
    ...     weights=None, input_shape=(64, 64, 3), include_top=False)
    >>> model, report = keras_blurpool.antialias_model(base, return_report=True)
    >>> model.count_params() == base.count_params()
    True
    >>> report.counts["conv"]
    4
    """
    polyphase = isinstance(antialias, str) and antialias in ("aps", "lps")
    if polyphase:
        _check_polyphase_arguments(
            antialias, filter_size, upsampling, blur_first, pad_type,
            padding, strict,
        )
        if filter_size is None:
            filter_size = polyphase_surgery.DEFAULT_POLYPHASE_FILTER_SIZE
        if min_channels is None:
            min_channels = 0
        pad_type = "circular"
    else:
        if padding is not None:
            raise ValueError(
                "`padding` applies to antialias='aps' or 'lps' only (their "
                "circular padding); with "
                f"antialias={antialias!r} the model's own padding is kept. "
                f"Received: padding={padding!r}"
            )
        if not isinstance(strict, bool) or strict:
            raise ValueError(
                "`strict` applies to antialias='aps' or 'lps' only (it makes "
                "what is not exactly invariant an error). Received: "
                f"strict={strict!r}"
            )
        filter_size = 4 if filter_size is None else filter_size
        min_channels = 16 if min_channels is None else min_channels
        pad_type = "reflect" if pad_type is None else pad_type
    options = _options(
        antialias, filter_size, convs, max_pools, avg_pools, upsampling,
        min_channels, blur_first, skip, pad_type,
    )
    check_model(model, "model")
    report = AntialiasReport()
    if polyphase:
        new_model = polyphase_surgery.rebuild(model, options, report)
        polyphase_surgery.warn_not_invariant(model, report, strict)
        _LOG.info("antialias_model(%s): %s", model.name, report)
        return (new_model, report) if return_report else new_model
    new_model = _rebuild(model, options, report, prefix="")
    if report.total and _has_unknown_sizes(model):
        _report_min_input_size(model, new_model, report)
    if report.total == 0:
        hidden = [name for name, why in report.left_alone.items()
                  if why.startswith(CUSTOM_LAYER)]
        causal = [name for name, why in report.left_alone.items()
                  if why.startswith(CAUSAL)]
        warnings.warn(
            f"antialias_model: model '{model.name}' has no strided layer to "
            "anti-alias (with these options); the result is a copy."
            + (f" Custom layers hold strided layers inside, which it cannot "
               f"rewrite: {', '.join(hidden)}." if hidden else "")
            + (f" Causal convs stay as they are (a blur would let their "
               f"outputs see later steps): {', '.join(causal)}."
               if causal else ""),
            stacklevel=2,
        )
    _LOG.info("antialias_model(%s): %s", model.name, report)
    return (new_model, report) if return_report else new_model


def _options(antialias, filter_size, convs, max_pools, avg_pools, upsampling,
             min_channels, blur_first, skip, pad_type):
    _antialias.check_antialias(antialias)
    if antialias is None:
        raise ValueError(
            "`antialias` must be 'blur', 'avg' or a callable (channels, "
            "strides, name) -> keras.layers.Layer; None would change "
            "nothing. Received: antialias=None"
        )
    if isinstance(antialias, str) and antialias in ("aps", "lps"):
        filter_size = check_filter_size(filter_size)
    else:
        filter_size = check_int("filter_size", filter_size)
    min_channels = check_int("min_channels", min_channels, minimum=0)
    for name, value in (("convs", convs), ("max_pools", max_pools),
                        ("avg_pools", avg_pools), ("upsampling", upsampling),
                        ("blur_first", blur_first)):
        if not isinstance(value, bool):
            raise ValueError(
                f"`{name}` must be True or False. Received: {name}={value!r}"
            )
    if blur_first and antialias == "avg":
        raise ValueError(
            "`blur_first=True` blurs at stride 1, where antialias='avg' (an "
            "s x s average of stride s) is the identity. Use "
            "antialias='blur' or a callable, or blur_first=False. Received: "
            "antialias='avg', blur_first=True"
        )
    return _Options(
        antialias=antialias,
        filter_size=filter_size,
        pad_type=standardize_pad_type(pad_type),
        convs=convs,
        max_pools=max_pools,
        avg_pools=avg_pools,
        upsampling=upsampling,
        min_channels=min_channels,
        blur_first=blur_first,
        skip=_skip_predicate(skip),
    )


def _check_polyphase_arguments(antialias, filter_size, upsampling, blur_first,
                               pad_type, padding, strict):
    """Refuses what `antialias="aps"|"lps"` cannot honour."""
    if padding is not None and padding != "circular":
        raise ValueError(
            f"antialias={antialias!r} needs padding='circular' (or None, its "
            "default): polyphase sampling is exactly invariant only to "
            "circular shifts of a circularly padded network; with the "
            "model's zero padding it would be invariant to no shift at all "
            "exactly, and only approximately to crop shifts. For approximate "
            "invariance with the original padding use antialias='blur'. "
            f"Received: padding={padding!r}"
        )
    if pad_type is not None and pad_type != "circular":
        raise ValueError(
            f"antialias={antialias!r} pads its blur and odd maps circularly; "
            "`pad_type` must be None or 'circular'. Received: "
            f"pad_type={pad_type!r}"
        )
    if upsampling:
        raise ValueError(
            f"antialias={antialias!r} pairs UpSampling2D and "
            "Conv2DTranspose with their encoder's polyphase choice "
            "(APSUpSampling2D) by itself; the blurred upsampling of "
            "upsampling=True does not apply. Pass upsampling=False. "
            "Received: upsampling=True"
        )
    if blur_first:
        raise ValueError(
            f"antialias={antialias!r} chooses a polyphase component after the "
            "stride-1 layer; blur_first does not apply. Received: "
            "blur_first=True"
        )
    if not isinstance(strict, bool):
        raise ValueError(
            f"`strict` must be True or False. Received: strict={strict!r}"
        )


def _skip_predicate(skip):
    if skip is None:
        return lambda layer: False
    if callable(skip):
        return skip
    if isinstance(skip, str):
        names = {skip}
    else:
        try:
            names = set(skip)
        except TypeError:
            names = None
        if names is None or not all(isinstance(n, str) for n in names):
            raise ValueError(
                "`skip` must be None, layer names (a str or an iterable of "
                "str) or a predicate `layer -> bool`. Received: "
                f"skip={skip!r}"
            )
    return lambda layer: layer.name in names






# --- what each layer becomes ----------------------------------------------


















def _make_blur(layer, options, strides, name, channels):
    """The anti-aliasing layer of `layer` (a strided layer of its rank)."""
    rank = len(strides_of(layer))
    data_format = layer.data_format
    antialias = options.antialias
    if len(set(strides)) == 1:
        strides = strides[0]  # as the builders pass it to the factory
    if antialias == "avg" and rank != 2:
        return _AVG_BY_RANK[rank](
            pool_size=strides, strides=strides, padding="same",
            data_format=data_format, name=name,
        )
    if callable(antialias) or antialias == "avg":
        return _antialias.create_antialias(
            antialias, channels=channels, strides=strides,
            data_format=data_format, name=name,
        )
    return _BLURS[rank](
        filter_size=options.filter_size,
        strides=strides,
        pad_type=options.pad_type,
        data_format=data_format,
        dtype=layer.dtype_policy,
        name=name,
    )


@dataclasses.dataclass
class _Edit:
    """What happens at one layer of the new graph."""

    before: keras.layers.Layer | None = None  # applied to the layer's input
    after: keras.layers.Layer | None = None  # applied to its output


# --- the graph ------------------------------------------------------------




def _rebuild(model, options, report, prefix):
    """The anti-aliased copy of one (possibly nested) graph model."""
    check_model(model, "model")
    chain_of = followers(model)
    taken = {layer.name for layer in model.layers}
    edits = collections.defaultdict(_Edit)  # id(new layer) -> _Edit
    pending_after = {}  # id(old anchor) -> blur to go after it
    clones = {}  # id(old layer) -> new layer
    pairs = []  # (old, new) whose weights are copied

    def clone_layer(layer):
        if id(layer) in clones:
            return clones[id(layer)]
        new = _clone_one(layer)
        clones[id(layer)] = new
        return new

    def _clone_one(layer):
        if isinstance(layer, keras.Model):
            if not is_graph_model(layer):
                report.left_alone[prefix + layer.name] = (
                    "a subclassed nested model: its call() cannot be rewritten"
                )
                pairs.append((layer, layer))
                return layer  # shared, as is
            return _rebuild(layer, options, report, prefix + layer.name + "/")
        kind, reason = layer_kind(layer, options)
        if reason is None and kind is None:
            reason = hidden_strided(layer)
        if reason is not None:
            report.left_alone[prefix + layer.name] = reason
        if kind is None:
            if isinstance(layer, keras.layers.Lambda):
                # Its function does not survive a config (a Python lambda
                # is refused, a closure loses what it captured), and it
                # has no stride to change: the same object serves both.
                return layer
            new = copy_layer(layer)
            pairs.append((layer, new))
            return new
        report.replaced[kind].append(prefix + layer.name)
        strides = strides_of(layer)
        if kind == "upsampling":
            return _clone_upsampling(layer, options, edits, taken, pairs)
        name = unique_name(f"{layer.name}_blur", taken)
        if kind == "conv" and options.blur_first:
            new = copy_layer(layer)
            pairs.append((layer, new))
            channels = channels_of(input_shape_of(layer), layer.data_format)
            ones = (1,) * len(strides)
            edits[id(new)].before = _make_blur(layer, options, ones, name, channels)
            return new
        new = copy_layer(layer, strides=1)
        pairs.append((layer, new))
        chain = chain_of(layer) if kind == "conv" else []
        if kind == "conv" and is_projection(layer, chain):
            # Blur before, as the reference's ResNet shortcut (BlurPool,
            # conv1x1, BN): a pointwise affine chain commutes with the
            # blur, and the conv then runs at the low resolution.
            channels = channels_of(input_shape_of(layer), layer.data_format)
            edits[id(new)].before = _make_blur(
                layer, options, strides, name, channels
            )
            return new
        out_channels = channels_of(
            tuple(layer._inbound_nodes[0].outputs[0].shape), layer.data_format
        )
        blur = _make_blur(layer, options, strides, name, out_channels)
        anchor = chain[-1] if chain else layer
        if anchor is layer:
            edits[id(new)].after = blur
        else:
            pending_after[id(anchor)] = blur
        return new

    def clone_function(layer):
        new = clone_layer(layer)
        # A follower is cloned after the conv before it (graph order).
        if id(layer) in pending_after:
            edits[id(new)].after = pending_after.pop(id(layer))
        return new

    def call_function(layer, *args, **kwargs):
        edit = edits.get(id(layer))
        if edit is not None and edit.before is not None:
            args, kwargs = map_first_input(
                layer, args, kwargs, lambda x: _call_blur(edit.before, x)
            )
        outputs = layer(*args, **kwargs)
        if edit is not None and edit.after is not None:
            outputs = _call_blur(edit.after, outputs)
        return outputs

    if isinstance(model, keras.Sequential):
        new_model = _rebuild_sequential(model, clone_function, edits)
    else:
        new_model = keras.models.clone_model(
            model,
            input_tensors=keras.tree.map_structure(same_input, model.input),
            clone_function=clone_function,
            call_function=call_function,
        )
    for old, new in pairs:
        if old is not new and getattr(old, "weights", None):
            new.set_weights(old.get_weights())
    _check_shapes(model, new_model)
    return new_model






def _clone_upsampling(layer, options, edits, taken, pairs):
    data_format = layer.data_format
    if isinstance(layer, keras.layers.UpSampling2D):
        # No weights: the blurred upsampling takes the layer's place.
        return BlurUpSampling2D(
            size=layer.size,
            filter_size=options.filter_size,
            data_format=data_format,
            dtype=layer.dtype_policy,
            name=layer.name,
        )
    new = copy_layer(layer, strides=1)
    pairs.append((layer, new))
    edits[id(new)].before = BlurUpSampling2D(
        size=tuple(layer.strides),
        filter_size=options.filter_size,
        data_format=data_format,
        dtype=layer.dtype_policy,
        name=unique_name(f"{layer.name}_blur", taken),
    )
    return new


def _call_blur(blur, x):
    try:
        return blur(x)
    except ValueError as error:
        raise ValueError(
            f"antialias_model: the anti-aliasing layer '{blur.name}' does "
            f"not fit its input of shape {tuple(x.shape)}: {error}"
        ) from error


def _rebuild_sequential(model, clone_function, edits):
    layers = [
        keras.Input(batch_shape=model.inputs[0].shape, dtype=model.inputs[0].dtype)
    ]
    for layer in model.layers:
        new = clone_function(layer)
        edit = edits.get(id(new)) or _Edit()
        layers += [x for x in (edit.before, new, edit.after) if x is not None]
    try:
        return keras.Sequential(layers, name=model.name, trainable=model.trainable)
    except ValueError as error:
        # The layer's own message names it (e.g. a map too small for it).
        raise ValueError(f"antialias_model: in '{model.name}': {error}") from error


def _check_shapes(old, new):
    old_shapes = [tuple(t.shape) for t in old.outputs]
    new_shapes = [tuple(t.shape) for t in new.outputs]
    if old_shapes != new_shapes:
        raise ValueError(
            f"antialias_model: the anti-aliased '{old.name}' gives output "
            f"shapes {new_shapes}, the original {old_shapes}. Please report "
            "this model; pass the offending layers in `skip` meanwhile."
        )


# --- the smallest input ---------------------------------------------------

# The largest input side searched for the smallest one a model takes.
_MAX_PROBED_SIDE = 4096


def _has_unknown_sizes(model):
    return any(
        d is None for t in model.inputs for d in tuple(t.shape)[1:]
    )


def _refusal(model, side):
    """Why shape inference refuses inputs whose unknown sizes are `side`,
    or None when it takes them (every output size at least 1)."""

    def spec(tensor):
        shape = tuple(tensor.shape)
        sized = tuple(side if d is None else d for d in shape[1:])
        return keras.KerasTensor((shape[0],) + sized, dtype=tensor.dtype)

    try:
        outputs = model.compute_output_spec(
            keras.tree.map_structure(spec, model.input)
        )
    except Exception as error:  # noqa: BLE001 - any refusal: a probe
        return error
    for output in keras.tree.flatten(outputs):
        if any(d is not None and d < 1 for d in output.shape):
            return ValueError(f"an output of shape {tuple(output.shape)}")
    return None


def _smallest_side(model, start):
    """`(side, why side - 1 is refused)`: the smallest side from `start`
    that shape inference takes (found by doubling, then bisection, as
    sizes only shrink through the layers), or `(None, None)` up to
    `_MAX_PROBED_SIDE`."""
    error = _refusal(model, start)
    if error is None:
        return start, None
    refused, taken = start, None
    while taken is None:
        if refused >= _MAX_PROBED_SIDE:
            return None, None
        candidate = min(2 * refused, _MAX_PROBED_SIDE)
        why = _refusal(model, candidate)
        if why is None:
            taken = candidate
        else:
            refused, error = candidate, why
    while taken - refused > 1:
        middle = (taken + refused) // 2
        why = _refusal(model, middle)
        if why is None:
            taken = middle
        else:
            refused, error = middle, why
    return taken, error


def _report_min_input_size(model, new_model, report):
    """Records, and warns about, a larger smallest input than the model's.

    With fixed sizes the shapes were checked when the new model was built;
    with unknown ones, a map too small for a blur's padding would only
    surface as an error at call time.
    """
    old, _ = _smallest_side(model, 1)
    if old is None:
        return
    new, error = _smallest_side(new_model, old)
    if new is None:
        return
    report.min_input_size = (old, new)
    if new > old:
        warnings.warn(
            f"antialias_model: model '{model.name}' has inputs of unknown "
            f"size; the original takes sides from {old} px, the anti-aliased "
            f"model only from {new} px (its unknown sizes set to one side). "
            f"At {new - 1} px: {error} Smaller inputs are refused when the "
            "model is called; pad_type='zero' or 'replicate' fits any map.",
            stacklevel=3,
        )


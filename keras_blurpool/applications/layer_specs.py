"""Layer specs: networks that are one `nn.Sequential` of PyTorch modules.

torchvision's VGG and AlexNet keep their feature extractor in a
`features` `nn.Sequential`. Here each such network is a list of layer
specs `(kind, name, arguments)`, one per PyTorch module: the same list
builds the Keras layers (`apply_features`), gives the smallest input
(`min_input_size`) and names every layer's PyTorch module `features.N`
(`match_names`), so that the layers and their names never drift apart.
`head` is torchvision's classifier of these networks.
"""

from __future__ import annotations

import warnings

from keras import layers

from keras_blurpool.applications.arguments import AntialiasSpec
from keras_blurpool.applications.arguments import Options
from keras_blurpool.applications.blocks import apply_antialias
from keras_blurpool.applications.blocks import batch_norm
from keras_blurpool.applications.blocks import conv
from keras_blurpool.applications.blocks import pooling_head
from keras_blurpool.layers import AdaptiveAvgPool2D
from keras_blurpool.layers import CircularPadding2D
from keras_blurpool.layers import is_antialiasing

# Spec kinds with a PyTorch counterpart in the state_dict.
_STATEFUL_KINDS = {
    "conv": lambda layer: isinstance(layer, layers.Conv2D),
    "bn": lambda layer: isinstance(layer, layers.BatchNormalization),
    "blur": is_antialiasing,
}
# Stands for "anti-aliased" in the specs matched against a model: names do
# not depend on the kind of anti-aliasing.
ANY_ANTIALIAS = AntialiasSpec("blur", 4)


def pool_specs(
    name: str, pool_size: int, aa: AntialiasSpec | None, circular: bool = False
):
    """Specs of a stride-2 max pool, anti-aliased unless `aa` is None.

    With `circular`, the stride-1 max pool of the anti-aliased network
    keeps the map's size (circular padding of `pool_size - 1`, as the APS
    and LPS networks' pools), so that a circular shift of its input
    shifts its output.
    """
    if aa is None:
        return [("maxpool", name, {"pool_size": pool_size, "strides": 2})]
    # Max at stride 1 (dense), then low-pass filter and subsample.
    pad = []
    if circular:
        total = pool_size - 1
        widths = ((total // 2, total - total // 2),) * 2
        pad = [("circular_pad", f"{name}_pad", {"padding": widths})]
    return pad + [
        ("maxpool", name, {"pool_size": pool_size, "strides": 1}),
        ("blur", f"{name}_blur", {"aa": aa}),
    ]


def conv_spec(
    name: str, filters: int, kernel_size: int, *, padding: int, strides: int = 1
):
    """Spec of a biased Conv2D with PyTorch's symmetric zero padding
    (circular padding when the features are applied with `circular`)."""
    return ("conv", name, {"filters": filters, "kernel_size": kernel_size,
                           "strides": strides, "padding": padding})


def apply_features(x, spec, circular: bool = False):
    """The Keras layers of `spec`, applied to `x`; with `circular`, every
    convolution pads circularly."""
    for kind, name, args in spec:
        if kind == "conv":
            x = conv(x, **args, use_bias=True, circular=circular, name=name)
        elif kind == "bn":
            x = batch_norm(x, name=name)
        elif kind == "relu":
            x = layers.Activation("relu", name=name)(x)
        elif kind == "maxpool":
            # "valid" pooling = PyTorch's default floor mode.
            x = layers.MaxPooling2D(**args, name=name)(x)
        elif kind == "circular_pad":
            x = CircularPadding2D(args["padding"], name=name)(x)
        else:
            x = apply_antialias(
                x, args["aa"], strides=args.get("strides", 2), name=name
            )
    return x


def _output_size(size: int, spec):
    """Spatial size after `spec`, or None if some layer cannot take it."""
    for kind, _, args in spec:
        if kind == "conv":
            size = (size + 2 * args["padding"] - args["kernel_size"]) // args[
                "strides"
            ] + 1
        elif kind == "maxpool":
            size = (size - args["pool_size"]) // args["strides"] + 1
        elif kind == "circular_pad":
            size += sum(args["padding"][0])
        elif kind == "blur":
            # E.g. reflect padding by k // 2 needs a larger map; a blur of
            # stride s gives ceil(size / s).
            if size < args["aa"].min_map_size:
                return None
            strides = args.get("strides", 2)
            size = (size - 1) // strides + 1
        if size < 1:
            return None
    return size


def min_input_size(spec) -> int:
    """The smallest input side every layer of `spec` can take."""
    size = 1
    while _output_size(size, spec) is None:
        size += 1
    return size


def warn_flatten_head(family: str, options: Options) -> None:
    """Warns that APS/LPS with torchvision's classifier is not invariant.

    The classifier flattens an adaptively pooled map: a circular shift of
    the input shifts that map, and Flatten + Dense see another vector. The
    network builds (the released weights' classifier loads into it);
    `include_top=False` with `pooling="avg"` or `"max"` is exactly
    invariant with `padding="circular"`.
    """
    if options.include_top and options.aa is not None and options.aa.polyphase:
        warnings.warn(
            f"{family} with antialias={options.antialias!r} and "
            "include_top=True: the classifier flattens an adaptively "
            "pooled map, so the logits are not invariant to shifts of "
            "the input (only the features are equivariant). For exact "
            "invariance to circular shifts, build with include_top=False, "
            "pooling='avg' (or 'max') and padding='circular', and put "
            "your classifier on the pooled features.",
            UserWarning,
            stacklevel=4,
        )


def head(x, options: Options, *, pool_size: int, dropout_first: bool):
    """The head: torchvision's classifier with `include_top`, else the
    builder's `pooling` (`blocks.pooling_head`).

    torchvision's classifier is adaptive average pooling to `pool_size`
    (`AdaptiveAvgPool2D`, PyTorch's windows on every backend),
    then three Dense layers with dropout (before them if `dropout_first`,
    AlexNet's order, else after the first two, VGG's).
    """
    if not options.include_top:
        return pooling_head(x, options)
    # Ours, not keras.layers.AdaptiveAveragePooling2D: Keras's gives NaN on
    # JAX for many input sizes (docs/zoo.md, "Known issues").
    x = AdaptiveAvgPool2D(pool_size, name="adaptive_avg_pool")(x)
    for i in (1, 2):
        if dropout_first:
            # Element-wise dropout commutes with Flatten; applying it to the
            # map keeps fc1 fed by the Flatten itself, which is how
            # load_torch_weights finds fc1 and reorders its C,H,W columns.
            x = layers.Dropout(0.5, name=f"dropout{i}")(x)
        if i == 1:
            x = layers.Flatten(name="flatten")(x)
        x = layers.Dense(4096, activation="relu", name=f"fc{i}")(x)
        if not dropout_first:
            x = layers.Dropout(0.5, name=f"dropout{i}")(x)
    return layers.Dense(
        options.classes,
        activation=options.classifier_activation,
        name="predictions",
    )(x)


def match_names(model, features, head):
    """`{keras_name: torch_name}` if `model` is exactly this network.

    Every spec layer must be present with its type, and every layer of the
    model with weights (or anti-aliasing) must belong to the spec, so that
    a deeper or differently built network never matches.
    """
    present = {layer.name: layer for layer in model.layers}
    names = {}
    for index, (kind, name, _) in enumerate(features):
        if name not in present:
            return None
        if kind in _STATEFUL_KINDS:
            if not _STATEFUL_KINDS[kind](present[name]):
                return None
            names[name] = f"features.{index}"
    dense = [n for n in head if isinstance(present.get(n), layers.Dense)]
    if dense and len(dense) != len(head):
        return None
    names.update({n: f"classifier.{head[n]}" for n in dense})
    for layer in model.layers:
        if (layer.weights or is_antialiasing(layer)) and (
            layer.name not in names
        ):
            return None
    return names


def first_match(model, candidates, head):
    """`match_names` of the first spec of `candidates` that fits, else None."""
    for features in candidates:
        names = match_names(model, features, head)
        if names is not None:
            return names
    return None



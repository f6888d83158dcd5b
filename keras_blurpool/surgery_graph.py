"""Reading and rebuilding a Keras graph: what `antialias_model`'s blur
surgery (`keras_blurpool.surgery`) and its polyphase surgery
(`keras_blurpool.polyphase_surgery`) share.

Layer families, the check that a model is a graph of layers, what each
layer is (its strides, channels, kind), the conv -> BN -> activation
chains, and cloning layers and inputs under new names.
"""

from __future__ import annotations

import collections
import inspect

import keras

CONVS = (
    keras.layers.Conv1D,
    keras.layers.Conv2D,
    keras.layers.Conv3D,
    keras.layers.DepthwiseConv1D,
    keras.layers.DepthwiseConv2D,
    keras.layers.SeparableConv1D,
    keras.layers.SeparableConv2D,
)


TRANSPOSED = (
    keras.layers.Conv1DTranspose,
    keras.layers.Conv2DTranspose,
    keras.layers.Conv3DTranspose,
)


MAX_POOLS = (
    keras.layers.MaxPooling1D,
    keras.layers.MaxPooling2D,
    keras.layers.MaxPooling3D,
)


AVG_POOLS = (
    keras.layers.AveragePooling1D,
    keras.layers.AveragePooling2D,
    keras.layers.AveragePooling3D,
)


# Layers the paper's blur goes after when they follow a strided conv
# (conv -> BN -> ReLU -> blur), so that the nonlinearity is evaluated
# densely too.
FOLLOWERS = (
    keras.layers.BatchNormalization,
    keras.layers.Activation,
    keras.layers.ReLU,
    keras.layers.LeakyReLU,
    keras.layers.PReLU,
    keras.layers.ELU,
)


# How the report's reason for a custom layer with strided layers inside
# starts (the no-change warning names those layers) ...
CUSTOM_LAYER = "a custom "


# ... and for a causal conv.
CAUSAL = "a causal conv"


def check_model(model, what):
    if not isinstance(model, keras.Model):
        raise ValueError(
            f"`{what}` must be a keras.Model (Functional or Sequential). "
            f"Received: {what}={model!r} of type {type(model).__name__}"
        )
    if not is_graph_model(model):
        raise ValueError(
            f"antialias_model needs a Functional or Sequential model, whose "
            f"graph of layers it can rewrite; '{model.name}' is a subclassed "
            f"{type(model).__name__}, whose call() it cannot see into. "
            "Build the network with the functional API (or keras.Sequential), "
            "or add the anti-aliasing by hand in its __init__: evaluate each "
            "strided layer at stride 1 and follow it with "
            "keras_blurpool.create_antialias('blur', strides=...)."
        )
    if isinstance(model, keras.Sequential) and not model.built:
        raise ValueError(
            f"Sequential model '{model.name}' is not built: antialias_model "
            "needs its input shape. Start it with keras.Input(shape=...) or "
            "call it on data first."
        )


def is_graph_model(model):
    from keras.src.models.functional import Functional

    return isinstance(model, (keras.Sequential, Functional))


def strides_of(layer):
    strides = getattr(layer, "strides", None)
    if strides is None:
        return None
    strides = tuple(strides) if isinstance(strides, (tuple, list)) else (strides,)
    return strides


def channels_of(shape, data_format):
    return shape[-1] if data_format != "channels_first" else shape[1]


def input_shape_of(layer):
    return tuple(layer._inbound_nodes[0].input_tensors[0].shape)


def layer_kind(layer, options):
    """`(kind, reason)`: what to do with `layer`; kind None leaves it."""
    strides = strides_of(layer)
    if isinstance(layer, keras.layers.UpSampling2D):
        return ("upsampling", None) if options.upsampling else (None, None)
    if strides is None or all(s == 1 for s in strides):
        return None, None
    if isinstance(layer, TRANSPOSED):
        if not options.upsampling:
            return None, None
        if not isinstance(layer, keras.layers.Conv2DTranspose):
            return None, "a 1-D/3-D transposed conv: no blurred upsampling"
        if layer.padding != "same" or layer.output_padding is not None:
            return None, (
                "a strided Conv2DTranspose with padding='valid' or "
                "output_padding: at stride 1 after upsampling its output "
                "shape would change"
            )
        return "upsampling", None
    if isinstance(layer, CONVS):
        kind, enabled = "conv", options.convs
    elif isinstance(layer, MAX_POOLS):
        kind, enabled = "max_pool", options.max_pools
    elif isinstance(layer, AVG_POOLS):
        kind, enabled = "avg_pool", options.avg_pools
    else:
        return None, None
    if not enabled:
        return None, f"{kind}s switched off"
    if getattr(layer, "padding", None) == "causal":
        return None, (
            f"{CAUSAL} (padding='causal'): a blur after it (or before it, "
            "with blur_first) would let each output see later steps"
        )
    if options.skip(layer):
        return None, "in `skip`"
    channels = channels_of(input_shape_of(layer), layer.data_format)
    if channels is not None and channels < options.min_channels:
        return None, (
            f"{channels} input channel(s) < min_channels="
            f"{options.min_channels}"
        )
    return kind, None


def is_projection(layer, chain):
    """A strided 1x1 conv with no nonlinearity up to where the blur goes."""
    kernel = getattr(layer, "kernel_size", None)
    return (
        kernel is not None
        and all(k == 1 for k in kernel)
        and layer.get_config().get("activation") == "linear"
        and all(isinstance(f, keras.layers.BatchNormalization) for f in chain)
    )


def custom_layer_holding(layer, what, matches,
                         consequence="its call() cannot be rewritten"):
    """Why a custom layer is left alone because of the sublayers that
    `matches` picks (`what` names them), or None if it holds none."""
    if not isinstance(layer, keras.layers.Layer):
        return None  # an op of the graph (`x + y`), no sublayers
    inner = [
        sub.name
        for sub in layer._flatten_layers(include_self=False, recursive=True)
        if matches(sub)
    ]
    if not inner:
        return None
    return (
        f"{CUSTOM_LAYER}{type(layer).__name__} layer holding {what} "
        f"({', '.join(inner)}): {consequence}"
    )


def hidden_strided(layer):
    """Why a custom layer holding strided layers is left alone, or None."""
    return custom_layer_holding(
        layer,
        "strided layers",
        lambda sub: isinstance(sub, CONVS + MAX_POOLS + AVG_POOLS)
        and any(s > 1 for s in strides_of(sub)),
    )


def copy_layer(layer, **changes):
    config = layer.get_config()
    config.update(changes)
    return type(layer).from_config(config)


def unique_name(name, taken):
    candidate, index = name, 1
    while candidate in taken:
        candidate, index = f"{name}_{index}", index + 1
    taken.add(candidate)
    return candidate


def followers(model):
    """The conv -> BN -> act chains of a model.

    Returns a function mapping a layer to the `FOLLOWERS` after it, each
    the only consumer of the one before (empty when there are none): the
    blur goes after the last.
    """
    if isinstance(model, keras.Sequential):
        layers = model.layers

        def chain_sequential(layer):
            index = next(i for i, x in enumerate(layers) if x is layer)
            chain = []
            for follower in layers[index + 1:]:
                if not isinstance(follower, FOLLOWERS):
                    break
                chain.append(follower)
            return chain

        return chain_sequential

    consumers = collections.defaultdict(list)
    nodes_of = collections.defaultdict(list)
    for nodes in model._nodes_by_depth.values():
        for node in nodes:
            if node.operation is None or node.is_input:
                continue
            nodes_of[id(node.operation)].append(node)
            for tensor in node.input_tensors:
                consumers[id(tensor)].append(node)
    outputs = {id(t) for t in model.outputs}

    def chain_functional(layer):
        anchor, chain = layer, []
        while len(nodes_of[id(anchor)]) == 1:
            (node,) = nodes_of[id(anchor)]
            if len(node.outputs) != 1 or id(node.outputs[0]) in outputs:
                break
            users = consumers[id(node.outputs[0])]
            if len(users) != 1 or not isinstance(users[0].operation, FOLLOWERS):
                break
            follower = users[0].operation
            if len(nodes_of[id(follower)]) != 1 or len(users[0].input_tensors) != 1:
                break
            anchor = follower
            chain.append(follower)
        return chain

    return chain_functional


def map_first_input(layer, args, kwargs, fn):
    """`(args, kwargs)` with `fn` applied to the layer's input tensor,
    passed positionally or by keyword (`conv(inputs=x)`)."""
    if args:
        return (fn(args[0]), *args[1:]), kwargs
    name = next(iter(inspect.signature(layer.call).parameters), None)
    if name not in kwargs:
        raise ValueError(
            f"antialias_model: cannot find the input of layer '{layer.name}' "
            f"in its call's arguments {sorted(kwargs)}"
        )
    return args, {**kwargs, name: fn(kwargs[name])}


def same_input(tensor):
    # clone_model would name the inputs after their tensors, not their
    # InputLayers.
    return keras.Input(
        batch_shape=tensor.shape,
        dtype=tensor.dtype,
        name=tensor._keras_history.operation.name,
    )

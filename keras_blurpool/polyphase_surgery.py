"""Exact circular-shift invariance for an existing model: the APS / LPS
rewrite behind `antialias_model(model, antialias="aps"|"lps")`.

Three rules make a Functional or Sequential CNN exactly invariant to
circular shifts of its input (Chaman & Dokmanić, CVPR 2021; Rojas-Gomez et
al., NeurIPS 2022), each applied here to the graph as it is:

1. Every spatial padding is circular. A 2-D conv or pool of effective
   kernel `k` (dilation included) gets `k - 1` pixels of circular padding
   per axis and runs with `padding="valid"`: a circular convolution, whose
   output is as large as its input. The padding is a `CircularPadding2D`
   named `<layer>_pad`, or, where a `ZeroPadding2D` fed the layer alone
   (keras.applications' ResNet, DenseNet, MobileNetV2, EfficientNet), that
   `ZeroPadding2D`'s replacement under its own name, padding as many
   pixels before as it did. A stride-1 `Conv2DTranspose` that keeps the
   map's size gets `k - 1` pixels of circular padding, runs with
   `padding="valid"` and is cropped by `k - 1` per side (`<layer>_crop`):
   the same circular convolution.
2. Every strided conv or pool runs at stride 1 and is followed by an
   `APSPool2D` (or `LPSPool2D`) of its stride, after the
   `BatchNormalization` and activation that follow it (a linear strided
   1x1 projection gets it before, as the authors' shortcut).
3. Downsamplers whose outputs meet at a merge (any layer with several
   spatial inputs: `Add`, `Concatenate`, `Multiply`, ...) keep the same
   polyphase component: a first pass over the graph gives each strided
   layer a class and unites, at each merge, the classes of its inputs'
   subsampling histories position by position (so branches of any depth
   are matched); in the new graph the first layer of a class to run
   chooses (`return_index=True`) and the others take its choice
   (`index=`).

4. An upsampler (`UpSampling2D`, or `Conv2DTranspose` with strides > 1)
   is paired with the downsampler of the last subsampling in its input's
   history when their strides are equal: in a U-Net the decoder level's
   input came down through its encoder level's pool, and the upsampled
   map meets that pool's input (the skip) at a merge, where the histories
   are matched as in rule 3. The upsampler puts its input back at the
   offset that downsampler chose (`APSUpSampling2D(x, index)`, zeros
   elsewhere): an `UpSampling2D` becomes `APSUpSampling2D` with the
   surgery's blur, a `Conv2DTranspose` becomes `APSUpSampling2D` without
   blur, then the same transposed conv at stride 1 made circular (its
   output on a periodic input, unchanged where the index is 0). An
   upsampler whose input was not subsampled before it, or last by other
   strides, has no partner and is reported.

What cannot be made invariant is reported per layer (`not_invariant`).
"""

from __future__ import annotations

import dataclasses
import warnings

import keras

from keras_blurpool.layers.circular_padding import CircularPadding2D
from keras_blurpool.layers.polyphase import APSPool2D
from keras_blurpool.layers.polyphase import LPSPool2D
from keras_blurpool.layers.polyphase_upsampling import APSUpSampling2D
from keras_blurpool.surgery_graph import check_model
from keras_blurpool.surgery_graph import copy_layer
from keras_blurpool.surgery_graph import custom_layer_holding
from keras_blurpool.surgery_graph import followers
from keras_blurpool.surgery_graph import hidden_strided
from keras_blurpool.surgery_graph import is_graph_model
from keras_blurpool.surgery_graph import is_projection
from keras_blurpool.surgery_graph import layer_kind
from keras_blurpool.surgery_graph import map_first_input
from keras_blurpool.surgery_graph import same_input
from keras_blurpool.surgery_graph import strides_of
from keras_blurpool.surgery_graph import unique_name

# The 2-D layers the rewrite makes circular (and polyphase when strided).
_CONVS_2D = (
    keras.layers.Conv2D,
    keras.layers.DepthwiseConv2D,
    keras.layers.SeparableConv2D,
)
_POOLS_2D = (keras.layers.MaxPooling2D, keras.layers.AveragePooling2D)
_GLOBAL_POOLS = (
    keras.layers.GlobalAveragePooling2D,
    keras.layers.GlobalMaxPooling2D,
)
# The filter of the polyphase layers when `filter_size` is not given.
DEFAULT_POLYPHASE_FILTER_SIZE = 3


class _Broken:
    """The history of a tensor that no longer moves with the input."""


_BROKEN = _Broken()


@dataclasses.dataclass
class _Down:
    """A polyphase layer to insert: its class and how to make it."""

    layer: keras.layers.Layer  # the original strided layer
    name: str
    strides: tuple
    cls: int


@dataclasses.dataclass
class _Plan:
    """The first pass's findings."""

    circular: dict = dataclasses.field(default_factory=dict)  # id -> layer
    absorbed: dict = dataclasses.field(default_factory=dict)  # id(pad) -> conv
    strided: dict = dataclasses.field(default_factory=dict)  # id -> class
    not_invariant: dict = dataclasses.field(default_factory=dict)
    parent: dict = dataclasses.field(default_factory=dict)  # union-find
    made_by: dict = dataclasses.field(default_factory=dict)  # class -> layer
    paired: dict = dataclasses.field(default_factory=dict)  # id(up) -> class
    # id -> a stride-1 Conv2DTranspose made circular (pad, valid, crop)
    transposed: dict = dataclasses.field(default_factory=dict)

    def new_class(self):
        cls = len(self.parent)
        self.parent[cls] = cls
        return cls

    def find(self, token):
        if not isinstance(token, int):
            return token  # a nested model's opaque subsampling
        while self.parent[token] != token:
            self.parent[token] = self.parent[self.parent[token]]
            token = self.parent[token]
        return token

    def union(self, a, b) -> bool:
        a, b = self.find(a), self.find(b)
        if a == b:
            return True
        if not (isinstance(a, int) and isinstance(b, int)):
            return False
        # The earlier class is the root.
        self.parent[max(a, b)] = min(a, b)
        return True

    def class_sizes(self):
        sizes = {}
        for cls in self.strided.values():
            root = self.find(cls)
            sizes[root] = sizes.get(root, 0) + 1
        return sizes


def _spatial(shape, data_format):
    return tuple(shape[1:3]) if data_format == "channels_last" else tuple(shape[2:4])


def _data_format(layer):
    return getattr(layer, "data_format", None) or keras.config.image_data_format()


def _effective_kernel(layer):
    """Per axis, the extent of a 2-D conv's or pool's window."""
    if isinstance(layer, _POOLS_2D):
        return tuple(layer.pool_size)
    dilation = tuple(layer.dilation_rate)
    return tuple(d * (k - 1) + 1 for d, k in zip(dilation, layer.kernel_size))


def _strides2(layer):
    strides = strides_of(layer)
    return strides if strides is not None and len(strides) == 2 else None


def _rewritable(layer, options):
    """`(True, None)` for a 2-D conv/pool the rewrite handles, else
    `(False, why)` (why None: not a strided layer at all)."""
    if not isinstance(layer, _CONVS_2D + _POOLS_2D):
        return False, None
    strides = _strides2(layer)
    if all(s == 1 for s in strides):
        return True, None
    kind, reason = layer_kind(layer, options)
    if kind is None:
        return False, reason or "left alone"
    return True, None


def _positional_weights(layer, spatial):
    """A weight shaped like the map (a positional embedding), or None."""
    if (
        isinstance(layer, _CONVS_2D + (keras.layers.Dense,))
        or None in spatial
        or spatial == (1, 1)  # any broadcast weight would match
    ):
        return None
    for weight in getattr(layer, "weights", []):
        shape = tuple(weight.shape)
        for i in range(len(shape) - 1):
            if shape[i:i + 2] == spatial:
                return weight.path if hasattr(weight, "path") else weight.name
    return None


def _zero_padded(layer):
    """Whether `layer` pads with zeros: a `ZeroPadding2D`, or a "same"
    conv or pool whose window is larger than one pixel."""
    return isinstance(layer, keras.layers.ZeroPadding2D) or (
        isinstance(layer, _CONVS_2D + _POOLS_2D
                   + (keras.layers.Conv2DTranspose,))
        and layer.padding == "same"
        and any(k > 1 for k in _effective_kernel(layer))
    )


def _hidden_zero_padding(layer):
    """Why a custom layer holding zero-padded convs or pools is not
    invariant, or None."""
    return custom_layer_holding(
        layer, "zero-padded layers", _zero_padded,
        "its call() cannot be rewritten, and zero padding does not move "
        "with a circular shift",
    )


def _topological_nodes(model):
    for depth in sorted(model._nodes_by_depth, reverse=True):
        yield from model._nodes_by_depth[depth]


def plan_graph(model, options) -> _Plan:
    """The first pass: subsampling histories, classes, what breaks."""
    plan = _Plan()
    history = {}  # id(tensor) -> list of class tokens | None | _BROKEN
    consumers = {}
    for node in _topological_nodes(model):
        for tensor in node.input_tensors:
            consumers.setdefault(id(tensor), []).append(node)

    def breaks(layer, reason):
        plan.not_invariant[layer.name] = reason
        return _BROKEN

    for node in _topological_nodes(model):
        if node.is_input:
            for tensor in node.outputs:
                history[id(tensor)] = [] if len(tensor.shape) == 4 else None
            continue
        layer = node.operation
        inputs = [history.get(id(t)) for t in node.input_tensors]
        out = None
        if any(h is _BROKEN for h in inputs):
            out = _BROKEN
        else:
            spatial = [h for h in inputs if h is not None]
            if spatial:
                out = _merge(plan, layer, spatial, breaks)
        if out is not None and out is not _BROKEN:
            out = _apply_layer(plan, model, node, layer, out, options, consumers,
                               breaks)
        for tensor in node.outputs:
            history[id(tensor)] = out
    return plan


def _merge(plan, layer, spatial, breaks):
    """The history after a layer joins several spatial inputs."""
    first = spatial[0]
    for other in spatial[1:]:
        if len(other) != len(first):
            return breaks(layer, (
                "its inputs were subsampled a different number of times "
                f"({len(first)} and {len(other)}): no common polyphase choice"
            ))
        for a, b in zip(first, other):
            if not plan.union(a, b):
                return breaks(layer, (
                    "it joins a nested model's output with another branch: "
                    "their polyphase choices cannot be shared"
                ))
    return list(first)


def _apply_layer(plan, model, node, layer, out, options, consumers, breaks):
    """The history after `layer`, given its (spatial) input history."""
    if isinstance(layer, _GLOBAL_POOLS):
        return None
    if isinstance(layer, keras.Model):
        if not is_graph_model(layer):
            return breaks(layer, "a subclassed nested model: its call() cannot "
                                 "be rewritten")
        # Rewritten on its own (its layers reported under its name): a
        # pooled output is invariant if it is; a map has choices of its
        # own, which no outer branch can share.
        if len(node.outputs[0].shape) != 4:
            return None
        return out + [f"nested:{layer.name}"]
    input_tensor = node.input_tensors[0] if node.input_tensors else None
    output = node.outputs[0] if node.outputs else None
    ok, reason = _rewritable(layer, options)
    if ok:
        data_format = _data_format(layer)
        size = _spatial(tuple(input_tensor.shape), data_format)
        strides = _strides2(layer)
        if id(layer) in plan.circular:
            return breaks(layer, "a conv or pool called more than once: "
                                 "its calls cannot share one rewrite")
        plan.circular[id(layer)] = layer
        if any(s > 1 for s in strides):
            if None in size:
                raise ValueError(
                    f"antialias_model: layer '{layer.name}' subsamples a map "
                    f"of unknown size {tuple(input_tensor.shape)}; exact "
                    "invariance needs every map's side divisible by the "
                    "strides after it. Build the model with a fixed "
                    "input_shape (e.g. keras.applications.ResNet50("
                    "input_shape=(224, 224, 3), ...)). Received: a model "
                    f"with input shape {tuple(model.inputs[0].shape)}"
                )
            cls = plan.new_class()
            plan.strided[id(layer)] = cls
            plan.made_by[cls] = layer
            return out + [cls]
        return out
    if reason is not None:
        return breaks(layer, f"a strided layer left alone ({reason})")
    hidden = hidden_strided(layer) or _hidden_zero_padding(layer)
    if hidden is not None:
        return breaks(layer, hidden)
    if isinstance(layer, keras.layers.ZeroPadding2D):
        users = consumers.get(id(output), [])
        if (
            len(users) == 1
            and isinstance(users[0].operation, _CONVS_2D + _POOLS_2D)
            and _rewritable(users[0].operation, options)[0]
            and len(users[0].operation._inbound_nodes) == 1
            and id(output) not in {id(t) for t in model.outputs}
        ):
            plan.absorbed[id(layer)] = users[0].operation
            return out
        return breaks(layer, (
            "zero padding that does not feed one conv or pool alone: a "
            "circular shift of its input is no shift of its output"
        ))
    if output is None or input_tensor is None:
        return out
    if len(output.shape) != 4:
        return breaks(layer, (
            f"it turns a feature map {tuple(input_tensor.shape)} into "
            f"{tuple(output.shape)} keeping positions apart (a Flatten or "
            "Reshape head): its output depends on where things are"
        ))
    data_format = _data_format(layer)
    before = _spatial(tuple(input_tensor.shape), data_format)
    after = _spatial(tuple(output.shape), data_format)
    if isinstance(layer, _UPSAMPLERS) and before != after:
        return _pair(plan, layer, out, before, after, breaks)
    if (
        isinstance(layer, keras.layers.Conv2DTranspose)
        and any(k > 1 for k in _effective_kernel(layer))
    ):
        # A stride-1 transposed conv that keeps the size: its zero padding
        # becomes circular like a conv's.
        plan.transposed[id(layer)] = layer
        return out
    if before != after:
        return breaks(layer, (
            f"it changes the map's size from {before} to {after} (upsampling, "
            "cropping, a transposed conv or reshape): no polyphase rule "
            "keeps it equivariant"
        ))
    weight = _positional_weights(layer, before)
    if weight is not None:
        return breaks(layer, (
            f"its weight '{weight}' has the map's spatial shape {before} "
            "(a positional embedding): it adds a fixed pattern the input's "
            "shift does not move"
        ))
    return out


_UPSAMPLERS = (keras.layers.UpSampling2D, keras.layers.Conv2DTranspose)


def _upsampling_factor(layer):
    if isinstance(layer, keras.layers.UpSampling2D):
        return tuple(layer.size)
    return tuple(layer.strides)


def _transposed_offset(layer):
    """Per axis, `p` in `y[n] = sum_j u[j] w[n + p - j]`: how a
    Conv2DTranspose of `k` taps (dilation included) and strides `s` crops
    its full output, as the gradient of a conv of that padding
    (`max(k - s, 0) // 2` for "same", 0 for "valid")."""
    if layer.padding != "same":
        return (0, 0)
    return tuple(
        max(k - s, 0) // 2
        for k, s in zip(_effective_kernel(layer), layer.strides)
    )


def _pair(plan, layer, out, before, after, breaks):
    """The history after an upsampler: its partner's subsampling undone."""
    factor = _upsampling_factor(layer)
    if isinstance(layer, keras.layers.Conv2DTranspose):
        if any(d != 1 for d in layer.dilation_rate):
            return breaks(layer, "a dilated Conv2DTranspose: no polyphase "
                                 "rule keeps it equivariant")
        if None not in before and after != tuple(
            n * s for n, s in zip(before, factor)
        ):
            return breaks(layer, (
                f"a Conv2DTranspose whose output {after} is not its input "
                f"{before} times its strides {factor} (padding='valid' with "
                "a kernel larger than the strides, or output_padding): it "
                "cannot undo a polyphase downsampler's choice"
            ))
    if id(layer) in plan.paired or len(layer._inbound_nodes) > 1:
        return breaks(layer, "an upsampler called more than once: its calls "
                             "cannot share one pairing")
    if not out:
        return breaks(layer, (
            f"it upsamples by {factor} a map that no downsampler subsampled "
            "before it: there is no polyphase choice to undo, so a shift of "
            "the input is no shift of its output"
        ))
    last = out[-1]
    if not isinstance(last, int):
        return breaks(layer, (
            "it upsamples a nested model's output: that model's polyphase "
            "choice is not available to pair with"
        ))
    partner = plan.made_by[last]
    strides = _strides2(partner)
    if strides != factor:
        return breaks(layer, (
            f"it upsamples by {factor} a map whose last downsampler "
            f"'{partner.name}' had strides {strides}: no polyphase choice of "
            "the same factor to undo"
        ))
    plan.paired[id(layer)] = last
    return out[:-1]


def _split(total, before):
    before = total // 2 if before is None else min(before, total)
    return before, total - before


@dataclasses.dataclass
class _Edit:
    pad: keras.layers.Layer | None = None
    before: _Down | None = None
    after: _Down | None = None
    up: tuple | None = None  # (class, APSUpSampling2D or None)
    crop: keras.layers.Layer | None = None


def rebuild(model, options, report, prefix=""):
    """The circular, polyphase copy of one graph model."""
    check_model(model, "model")
    graph = model._functional if isinstance(model, keras.Sequential) else model
    if not prefix and not any(len(t.shape) == 4 for t in graph.inputs):
        shapes = [tuple(t.shape) for t in graph.inputs]
        raise ValueError(
            f"antialias_model: antialias={options.antialias!r} makes 2-D "
            "CNNs exactly invariant to circular shifts of an image input "
            f"(4-D: batch, two spatial axes, channels); model '{model.name}' "
            "has no such input, and its 1-D or 3-D layers would be left as "
            "they are. Use antialias='blur' for 1-D and 3-D models. "
            f"Received: input shapes {shapes}"
        )
    plan = plan_graph(graph, options)
    for name, reason in plan.not_invariant.items():
        report.not_invariant[prefix + name] = reason
    sizes = plan.class_sizes()
    indexed = {plan.find(cls) for cls in plan.paired.values()}
    chain_of = followers(graph)
    taken = {layer.name for layer in model.layers}
    edits = {}  # id(new layer) -> _Edit
    pending_after = {}  # id(old anchor) -> _Down
    clones = {}
    pairs = []
    leaders = {}  # class root -> the leader's choice tensor
    padding_of = {}  # id(old conv) -> ((top, bottom), (left, right)) before

    for pad_id, conv in plan.absorbed.items():
        pad_layer = next(x for x in graph.layers if id(x) == pad_id)
        padding_of[id(conv)] = tuple(tuple(p) for p in pad_layer.padding)

    def edit(new):
        return edits.setdefault(id(new), _Edit())

    def clone_one(layer):
        if isinstance(layer, keras.Model):
            if not is_graph_model(layer):
                return layer
            return rebuild(layer, options, report, prefix + layer.name + "/")
        if id(layer) in plan.absorbed:
            conv = plan.absorbed[id(layer)]
            kernel = _effective_kernel(conv)
            before = padding_of[id(conv)]
            return CircularPadding2D(
                padding=tuple(
                    _split(k - 1, b[0]) for k, b in zip(kernel, before)
                ),
                data_format=_data_format(conv),
                dtype=layer.dtype_policy,
                name=layer.name,
            )
        if id(layer) in plan.paired:
            return clone_upsampler(layer)
        if id(layer) in plan.transposed:
            return clone_transposed(layer)
        if id(layer) not in plan.circular:
            if isinstance(layer, keras.layers.Lambda):
                return layer
            new = copy_layer(layer)
            pairs.append((layer, new))
            return new
        strides = _strides2(layer)
        kernel = _effective_kernel(layer)
        if all(k == 1 for k in kernel) and id(layer) not in plan.strided:
            new = copy_layer(layer)  # pointwise: nothing to pad
            pairs.append((layer, new))
            return new
        new = copy_layer(layer, strides=1, padding="valid")
        pairs.append((layer, new))
        if id(layer) not in padding_of and any(k > 1 for k in kernel):
            edit(new).pad = CircularPadding2D(
                padding=tuple(_split(k - 1, None) for k in kernel),
                data_format=_data_format(layer),
                dtype=layer.dtype_policy,
                name=unique_name(f"{layer.name}_pad", taken),
            )
        report.circular.append(prefix + layer.name)
        if id(layer) not in plan.strided:
            return new
        kind = "conv" if isinstance(layer, _CONVS_2D) else (
            "max_pool" if isinstance(layer, keras.layers.MaxPooling2D)
            else "avg_pool"
        )
        report.replaced[kind].append(prefix + layer.name)
        down = _Down(
            layer=layer,
            name=unique_name(f"{layer.name}_{options.antialias}", taken),
            strides=strides,
            cls=plan.find(plan.strided[id(layer)]),
        )
        chain = chain_of(layer) if kind == "conv" else []
        if kind == "conv" and is_projection(layer, chain):
            edit(new).before = down
        elif chain:
            pending_after[id(chain[-1])] = down
        else:
            edit(new).after = down
        return new

    def clone_upsampler(layer):
        cls = plan.paired[id(layer)]
        partner = plan.made_by[cls]
        report.paired[prefix + layer.name] = prefix + partner.name
        report.replaced["upsampling"].append(prefix + layer.name)
        data_format = _data_format(layer)
        common = dict(
            strides=_upsampling_factor(layer),
            pad_type="circular",
            data_format=data_format,
            dtype=layer.dtype_policy,
        )
        if isinstance(layer, keras.layers.UpSampling2D):
            new = APSUpSampling2D(
                filter_size=options.filter_size, name=layer.name, **common
            )
            edit(new).up = (plan.find(cls), None)
            return new
        # u = the input placed at the partner's offset, zeros elsewhere,
        # then the transposed conv made circular at stride 1.
        place = APSUpSampling2D(
            filter_size=None,
            name=unique_name(f"{layer.name}_aps_up", taken),
            **common,
        )
        new = clone_transposed(layer)
        edit(new).up = (plan.find(cls), place)
        return new

    def clone_transposed(layer):
        # The stride-1 transposed conv of u, circularly padded by k - 1
        # and cropped by k - 1 per side, is the circular convolution
        # y[n] = sum_j u[j] w[(n + p - j) mod N] (p: _transposed_offset).
        new = copy_layer(layer, strides=1, padding="valid")
        pairs.append((layer, new))
        report.circular.append(prefix + layer.name)
        kernel = _effective_kernel(layer)
        offset = _transposed_offset(layer)
        data_format = _data_format(layer)
        if any(k > 1 for k in kernel):
            edit(new).pad = CircularPadding2D(
                padding=tuple((k - 1 - p, p) for k, p in zip(kernel, offset)),
                data_format=data_format,
                dtype=layer.dtype_policy,
                name=unique_name(f"{layer.name}_pad", taken),
            )
            edit(new).crop = keras.layers.Cropping2D(
                cropping=tuple((k - 1, k - 1) for k in kernel),
                data_format=data_format,
                dtype=layer.dtype_policy,
                name=unique_name(f"{layer.name}_crop", taken),
            )
        return new

    def clone_function(layer):
        if id(layer) not in clones:
            clones[id(layer)] = clone_one(layer)
        new = clones[id(layer)]
        if id(layer) in pending_after:
            edit(new).after = pending_after.pop(id(layer))
        return new

    def downsample(down, x):
        layer = down.layer
        data_format = _data_format(layer)
        size = _spatial(tuple(x.shape), data_format)
        if any(n is not None and n % s for n, s in zip(size, down.strides)):
            report.not_invariant[prefix + layer.name] = (
                f"its map is {size[0]}x{size[1]}, not divisible by strides="
                f"{down.strides}: the polyphase layer pads it at the end, and "
                "a circular shift of the input is no circular shift of the "
                "padded map. Use an input side divisible by the total stride"
            )
        shared = sizes.get(down.cls, 1) > 1 or down.cls in indexed
        common = dict(
            filter_size=options.filter_size,
            strides=down.strides,
            pad_type="circular",
            data_format=data_format,
            dtype=layer.dtype_policy,
            name=down.name,
        )
        try:
            if down.cls in leaders:
                return APSPool2D(**common)(x, index=leaders[down.cls])
            pool = LPSPool2D if options.antialias == "lps" else APSPool2D
            result = pool(return_index=shared, **common)(x)
        except ValueError as error:
            raise ValueError(
                f"antialias_model: the polyphase layer '{down.name}' does not "
                f"fit its input of shape {tuple(x.shape)}: {error}"
            ) from error
        if shared:
            result, leaders[down.cls] = result
        return result

    def call_function(layer, *args, **kwargs):
        todo = edits.get(id(layer))
        if todo is not None and todo.up is not None:
            return upsample(layer, todo, args, kwargs)
        if todo is not None and (todo.pad is not None or todo.before is not None):

            def prepare(x):
                if todo.before is not None:
                    x = downsample(todo.before, x)
                if todo.pad is not None:
                    x = _call_pad(todo.pad, x)
                return x

            args, kwargs = map_first_input(layer, args, kwargs, prepare)
        outputs = layer(*args, **kwargs)
        if todo is not None and todo.crop is not None:
            outputs = todo.crop(outputs)
        if todo is not None and todo.after is not None:
            outputs = downsample(todo.after, outputs)
        return outputs

    def upsample(layer, todo, args, kwargs):
        cls, place = todo.up
        index = leaders[cls]
        if place is None:  # APSUpSampling2D in the UpSampling2D's place
            x = args[0] if args else next(iter(kwargs.values()))
            return layer(x, index)

        def prepare(x):
            x = place(x, index)
            return x if todo.pad is None else _call_pad(todo.pad, x)

        args, kwargs = map_first_input(layer, args, kwargs, prepare)
        outputs = layer(*args, **kwargs)
        return outputs if todo.crop is None else todo.crop(outputs)

    new_graph = keras.models.clone_model(
        graph,
        input_tensors=keras.tree.map_structure(same_input, graph.input),
        clone_function=clone_function,
        call_function=call_function,
    )
    for old, new in pairs:
        if old is not new and getattr(old, "weights", None):
            new.set_weights(old.get_weights())
    # A Sequential cannot pass a polyphase index from a downsampler to its
    # upsampler: with a pairing the result stays Functional.
    if isinstance(model, keras.Sequential) and not plan.paired:
        return keras.Sequential(
            [keras.Input(batch_shape=model.inputs[0].shape,
                         dtype=model.inputs[0].dtype)]
            + [x for x in new_graph.layers
               if not isinstance(x, keras.layers.InputLayer)],
            name=model.name,
            trainable=model.trainable,
        )
    if isinstance(model, keras.Sequential):
        return keras.Model(new_graph.inputs, new_graph.outputs,
                           name=model.name, trainable=model.trainable)
    return new_graph


def _call_pad(pad, x):
    try:
        return pad(x)
    except ValueError as error:
        raise ValueError(
            f"antialias_model: the circular padding '{pad.name}' does not fit "
            f"its input of shape {tuple(x.shape)} (a map smaller than half "
            f"the kernel; use a larger input): {error}"
        ) from error


def warn_not_invariant(model, report, strict):
    """Warns about (or with `strict`, raises for) what is not invariant."""
    if not report.not_invariant:
        return
    listing = "; ".join(
        f"'{name}': {why}" for name, why in report.not_invariant.items()
    )
    message = (
        f"antialias_model: model '{model.name}' is not exactly invariant to "
        f"circular shifts because of {len(report.not_invariant)} layer(s): "
        f"{listing}"
    )
    if strict:
        raise ValueError(message + ". Received: strict=True")
    warnings.warn(message, stacklevel=3)

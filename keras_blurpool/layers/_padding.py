"""Padding shared by the layers: pad types, padding axes, circular padding.

Every layer that pads (the BlurPools, `BlurUpSampling2D`, the polyphase
layers, `CircularPadding2D`) names its padding with one of the pad types
here and pads through `pad_axes`, so that the four pad types mean the same
everywhere: `"reflect"` (the border is not repeated), `"replicate"` (the
border is repeated), `"zero"` and `"circular"` (the map wraps around).
"""

from __future__ import annotations

from keras import ops

# Aliases accepted by the reference, mapped to one canonical name each.
PAD_TYPES = {
    "reflect": "reflect",
    "refl": "reflect",
    "replicate": "replicate",
    "repl": "replicate",
    "zero": "zero",
    "circular": "circular",
}


def standardize_pad_type(pad_type) -> str:
    """The canonical name of a padding (`"refl"` -> `"reflect"`), or raises.

    Args:
        pad_type: `"reflect"`/`"refl"`, `"replicate"`/`"repl"`, `"zero"`
            or `"circular"` (the map wraps around, as PyTorch's
            `padding_mode="circular"`: what exact shift invariance needs).

    Returns:
        `"reflect"`, `"replicate"`, `"zero"` or `"circular"`.

    Raises:
        ValueError: naming the value and the allowed ones.

    Example:

    >>> standardize_pad_type("refl")
    'reflect'
    """
    if not isinstance(pad_type, str) or pad_type not in PAD_TYPES:
        raise ValueError(
            f"`pad_type` must be one of {sorted(PAD_TYPES)}. "
            f"Received: pad_type={pad_type!r}"
        )
    return PAD_TYPES[pad_type]


def padded_source(q: int, n: int, pad_type: str):
    """The input line that padded position `q` copies, None for zeros.

    Position `q` counts from the first input line (negative before it,
    `n` and up after it) on an axis of `n` lines; `pad_type` is a
    canonical name. Reflect padding needs `|q| < n` and `q < 2n - 1`,
    circular `-n <= q < 2n`, which `check_pad_fits` guarantees.

    Example:

    >>> padded_source(-1, 8, "reflect"), padded_source(8, 8, "replicate")
    (1, 7)
    """
    if pad_type == "reflect":
        return -q if q < 0 else 2 * (n - 1) - q
    if pad_type == "replicate":
        return min(max(q, 0), n - 1)
    if pad_type == "circular":
        return q % n
    return None


def check_pad_fits(layer, shape, pads, pad_text, settings) -> None:
    """Raises unless each known spatial size of `shape` can take its pad.

    Reflect padding needs a size larger than the pad; circular padding a
    size at least the pad (it copies the other border, once). Replicate
    and zero padding fit any size.

    Args:
        layer: the layer that pads, with `pad_type` (canonical) and
            `_spatial_axes`; its class and name are quoted.
        shape: the input shape (None for unknown sizes, which pass).
        pads: the largest pad of each spatial axis, in `_spatial_axes`
            order.
        pad_text: the padding as the message states it.
        settings: the arguments the padding follows from, for the message
            (`"filter_size=4, pad_off=0"`).

    Raises:
        ValueError: naming the layer, the map size, the padding and the
            fix.
    """
    if layer.pad_type not in ("reflect", "circular"):
        return
    circular = layer.pad_type == "circular"
    sizes = [shape[a] for a in layer._spatial_axes]
    if any(
        n is not None and (n < p if circular else n <= p)
        for n, p in zip(sizes, pads)
    ):
        size = "x".join(str(n) for n in sizes)
        need = "at least" if circular else "larger than"
        raise ValueError(
            f"{type(layer).__name__} '{layer.name}' cannot "
            f"{layer.pad_type}-pad a {size} feature map by {pad_text} "
            f"pixel(s) ({settings}): {layer.pad_type} padding needs every "
            f"spatial size to be {need} the padding. Use "
            "pad_type='replicate' or 'zero', or a smaller filter_size."
        )


def pad_axes(x, pad_type, widths):
    """Pads `x` by `widths` ({axis: (before, after)}) with `pad_type`.

    `pad_type` is a canonical name (`standardize_pad_type`). Reflect
    padding goes through `keras.ops.pad`, which on PyTorch handles at most
    the last 3 axes of a 4-D or 5-D tensor: callers pad 4-D tensors.

    Args:
        x: the tensor.
        pad_type: `"reflect"`, `"replicate"`, `"zero"` or `"circular"`.
        widths: dict of axis (negative ones allowed) to `(before, after)`
            pad widths; axes not in it are not padded.

    Returns:
        The padded tensor (`x` itself when every width is 0).
    """
    widths = {a % len(x.shape): w for a, w in widths.items() if any(w)}
    if not widths:
        return x
    if pad_type == "circular":
        return circular_pad(x, widths)
    if pad_type == "replicate":
        # keras.ops.pad has no "edge" mode on TensorFlow.
        for axis, (before, after) in sorted(widths.items()):
            lead = (slice(None),) * axis
            parts = [x]
            if before:
                parts.insert(0, ops.repeat(x[lead + (slice(0, 1),)], before, axis))
            if after:
                parts.append(ops.repeat(x[lead + (slice(-1, None),)], after, axis))
            x = ops.concatenate(parts, axis=axis)
        return x
    full = [list(widths.get(a, (0, 0))) for a in range(len(x.shape))]
    mode = "reflect" if pad_type == "reflect" else "constant"
    return ops.pad(x, full, mode=mode)


def circular_pad(x, widths):
    """Pads `x` circularly by `widths` ({axis: (before, after)}).

    Each pad copies the opposite border (PyTorch's "circular" mode);
    `keras.ops.pad` has no such mode on every backend, so it is two slices
    and a concatenation per axis, which XLA and every exporter take. A
    width larger than the axis's (known) size wraps around more than once,
    the map repeated as by NumPy's "wrap" mode (the polyphase layers pad a
    1x1 map to 3x3 so); the layers whose padding is an argument refuse
    that (`check_pad_fits`). With an unknown size, each width must be at
    most the axis's size.

    Args:
        x: the tensor.
        widths: dict of axis (negative ones allowed) to `(before, after)`
            pad widths.

    Returns:
        The padded tensor.
    """
    for axis, (before, after) in sorted(widths.items()):
        axis %= len(x.shape)
        lead = (slice(None),) * axis
        n = x.shape[axis]
        # Whole copies of the axis, then the rest of each pad.
        whole_before, before = divmod(before, n) if n else (0, before)
        whole_after, after = divmod(after, n) if n else (0, after)
        parts = [x] * (1 + whole_before + whole_after)
        if before:
            parts.insert(0, x[lead + (slice(-before, None),)])
        if after:
            parts.append(x[lead + (slice(0, after),)])
        if len(parts) > 1:
            x = ops.concatenate(parts, axis=axis)
    return x

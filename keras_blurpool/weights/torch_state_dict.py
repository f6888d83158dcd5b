"""Mapping a PyTorch state_dict onto the variables of a Keras model."""

from __future__ import annotations

from collections.abc import Iterable
from collections.abc import Mapping

import keras
import numpy as np

from keras_blurpool.layers import AliasFreeLayerNormalization
from keras_blurpool.layers import APSPool2D
from keras_blurpool.layers import BlurPool2D
from keras_blurpool.layers import LayerScale
from keras_blurpool.layers import LowpassPolynomialActivation
from keras_blurpool.layers import LPSPool2D
from keras_blurpool.layers import PolynomialActivation
from keras_blurpool.layers import is_antialiasing
from keras_blurpool.layers.polyphase import check_tau
from keras_blurpool.weights import values
from keras_blurpool.weights.names import quote

# Buffers that carry no state we use.
_IGNORED_SUFFIXES = (".num_batches_tracked",)


def _layer_tensors(layer, prefix: str) -> dict[str, tuple]:
    """`{torch_key: (variable, torch_to_keras)}` for one Keras layer."""
    if isinstance(layer, keras.layers.DepthwiseConv2D):
        # torch (C, 1, kh, kw) -> Keras (kh, kw, C, 1)
        out = {prefix + ".weight": (layer.kernel, _oihw_to_hwio_dw)}
    elif isinstance(layer, keras.layers.Conv2D):
        # torch (O, I/groups, kh, kw) -> Keras (kh, kw, I/groups, O)
        out = {prefix + ".weight": (layer.kernel, _oihw_to_hwio)}
    elif isinstance(layer, keras.layers.Dense):
        out = {prefix + ".weight": (layer.kernel, np.transpose)}
    elif isinstance(layer, (keras.layers.LayerNormalization, AliasFreeLayerNormalization)):
        return {
            prefix + ".weight": (layer.gamma, None),
            prefix + ".bias": (layer.beta, None),
        }
    elif isinstance(layer, LayerScale):
        # The parameter itself (ConvNeXt's `gamma`): its full name.
        return {prefix: (layer.gamma, None)}
    elif isinstance(layer, (PolynomialActivation, LowpassPolynomialActivation)):
        return _polynomial_tensors(layer, prefix)
    elif isinstance(layer, keras.layers.BatchNormalization):
        out = {
            prefix + ".weight": (layer.gamma, None),
            prefix + ".bias": (layer.beta, None),
            prefix + ".running_mean": (layer.moving_mean, None),
            prefix + ".running_var": (layer.moving_variance, None),
        }
        return out
    else:
        raise ValueError(
            f"Layer '{layer.name}' of type {type(layer).__name__} has weights "
            "but no PyTorch counterpart is known."
        )
    if getattr(layer, "use_bias", False):
        out[prefix + ".bias"] = (layer.bias, None)
    return out


def _coefficients(w):
    """AFC's per-channel `coef` (C, 3, 1, 1) -> our (C, 3)."""
    if w.ndim != 4 or w.shape[2:] != (1, 1):
        raise ValueError("not (C, 3, 1, 1)")
    return w.reshape(w.shape[:2])


def _polynomial_tensors(layer, prefix: str) -> dict[str, tuple]:
    """The AFC authors' names of a polynomial activation's tensors.

    Their `PolyActPerChannel` / `LPFPolyActPerChannel` hold `coef` and,
    where they are weights or buffers, `in_scale` and `out_scale`; their
    `UpPolyActPerChannel` holds the same under `pact.`.
    """
    if getattr(layer, "upsampling", 1) > 1:
        prefix += ".pact"
    out = {prefix + ".coef": (layer.coefficient_variable, _coefficients)}
    for name in ("in_scale", "out_scale"):
        variable = getattr(layer, name + "_variable")
        if variable is not None:
            out[f"{prefix}.{name}"] = (variable, None)
    return out


# Buffers a checkpoint may lack: the model's own value is kept (a
# torchvision checkpoint has no BlurPool filters; a temperature missing
# leaves the layer's).
_OPTIONAL_SUFFIXES = (".filt", ".gumbel_tau")


def _polyphase_tensors(layer, prefix: str) -> dict[str, tuple]:
    """The LPS authors' names of an APSPool2D's / LPSPool2D's tensors.

    Their `PolyphaseInvariantDown2D` holds the blur as `_antialias_layer`,
    LPS's scoring network as `component_selection.get_logits` and its
    Gumbel-softmax temperature as `component_selection.gumbel_tau` (the
    `LPSPool2D` layer is the target: its `tau` is checked, then set).
    """
    out = {}
    if layer.blur_layer is not None:
        out[prefix + "._antialias_layer.filt"] = (layer.blur_layer, None)
    if isinstance(layer, LPSPool2D):
        out[prefix + ".component_selection.gumbel_tau"] = (layer, None)
        for i, conv in enumerate(layer.scoring_layers, start=1):
            name = f"{prefix}.component_selection.get_logits.conv{i}"
            out.update(_layer_tensors(conv, name))
    return out


def _oihw_to_hwio(w):
    return np.transpose(w, (2, 3, 1, 0))


def _oihw_to_hwio_dw(w):
    return np.transpose(w, (2, 3, 0, 1))


def _chw_to_hwc_columns(flat_shape):
    """Torch flattens (C, H, W); channels_last flattens (H, W, C)."""
    h, w, c = flat_shape

    def convert(weight):  # torch Linear weight (out, C*H*W) -> Keras kernel
        weight = weight.reshape(weight.shape[0], c, h, w)
        weight = weight.transpose(0, 2, 3, 1).reshape(weight.shape[0], -1)
        return weight.T

    return convert


def _flattened_dense_inputs(model) -> dict[str, tuple]:
    """Dense layers fed by a Flatten of a 4-D map: name -> (H, W, C)."""
    result = {}
    for layer in model.layers:
        if not isinstance(layer, keras.layers.Flatten):
            continue
        shape = tuple(layer.input.shape)
        if len(shape) != 4:
            continue
        shape = shape[1:]
        if layer.data_format == "channels_first":
            # Keras's Flatten moves channels last first: columns are H,W,C.
            shape = shape[1:] + shape[:1]
        for other in model.layers:
            if isinstance(other, keras.layers.Dense) and other.input is layer.output:
                result[other.name] = shape
    return result


def _plan(model, names: Mapping[str, str]):
    """`{torch_key: (variable_or_layer, convert)}` expected by the model."""
    flat = _flattened_dense_inputs(model)
    plan = {}
    for layer in model.layers:
        prefix = names.get(layer.name)
        if isinstance(layer, BlurPool2D):
            if prefix is not None:
                plan[prefix + ".filt"] = (layer, None)
            continue
        if isinstance(layer, (APSPool2D, LPSPool2D)):
            if prefix is not None:
                plan.update(_polyphase_tensors(layer, prefix))
            continue
        if not layer.weights:
            continue
        if prefix is None and is_antialiasing(layer):
            # A plain (torchvision) checkpoint has none of its weights
            # (e.g. LPS's scoring network): they keep their values.
            continue
        if prefix is None:
            raise ValueError(
                f"Layer '{layer.name}' has weights but no PyTorch name."
            )
        entries = _layer_tensors(layer, prefix)
        if layer.name in flat:
            variable, _ = entries[prefix + ".weight"]
            entries[prefix + ".weight"] = (
                variable,
                _chw_to_hwc_columns(flat[layer.name]),
            )
        plan.update(entries)
    return plan


def _check_and_convert(plan, state_dict, allow_nonfinite=False):
    """`(problems, value_problems, assignments)`: every key or shape that
    does not fit, every value refused (`values.value_problem`, unless
    `allow_nonfinite`), and what to assign when both lists are empty."""
    problems, refused, assignments = [], [], []
    keys = {k for k in state_dict if not k.endswith(_IGNORED_SUFFIXES)}
    for key in sorted(keys - plan.keys()):
        problems.append(f"unexpected key {quote(key)}")
    for key in sorted(plan.keys() - keys, key=list(plan).index):
        if key.endswith(_OPTIONAL_SUFFIXES):
            continue
        problems.append(f"missing key {quote(key)}")
    for key, (target, convert) in plan.items():
        if key not in keys:
            continue
        value, problem = _real_array(key, state_dict[key])
        if problem:
            problems.append(problem)
            continue
        if isinstance(target, BlurPool2D):
            # Filters are checked, never loaded: a NaN one is no binomial.
            problem = values.value_problem(key, value) or _filter_problem(
                key, target, value
            )
            if problem:
                problems.append(problem)
            continue
        if isinstance(target, LPSPool2D):
            problem = _tau_problem(key, value)
            if problem:
                problems.append(problem)
            else:
                assignments.append((target.tau, value.reshape(())))
            continue
        original = value  # in torch's layout, for the messages
        try:
            value = convert(value) if convert is not None else value
        except ValueError:
            value = None
        if value is None or tuple(value.shape) != tuple(target.shape):
            problems.append(
                f"{quote(key)} has shape {tuple(np.shape(state_dict[key]))}, "
                f"which does not fit '{target.path}' of shape "
                f"{tuple(target.shape)}"
            )
            continue
        if not allow_nonfinite:
            problem = values.value_problem(
                key,
                original,
                target.dtype,
                variance=key.endswith(values.VARIANCE_KEYS),
            )
            if problem:
                refused.append(problem)
                continue
        # A real numeric array of the right shape: converting it to the
        # variable's dtype when assigning cannot fail.
        assignments.append((target, value))
    return problems, refused, assignments


def _real_array(key, value):
    """`(array, None)`, or `(None, problem)` if `value` is no real array.

    Strings, objects, bools or complex numbers of the right shape would
    otherwise fail (or load silently wrong) only when assigned, after
    other variables were overwritten.
    """
    try:
        array = np.asarray(value)
    except (TypeError, ValueError, OverflowError) as error:  # e.g. ragged
        return None, (
            f"{quote(key)} is not an array ({type(error).__name__}: {error})"
        )
    if array.dtype.kind not in "fiu":
        return None, (
            f"{quote(key)} has dtype {array.dtype}, expected a real numeric "
            "(floating-point or integer) array"
        )
    return array, None


def _filter_problem(key, layer, value):
    """Why a BlurPool `filt` buffer does not fit `layer`, or None.

    The reference's is `(channels, 1, k, k)`: the binomial filter, once
    per channel of the layer's input.
    """
    expected = layer.filter
    k = layer.filter_size
    axis = -1 if layer.data_format == "channels_last" else 1
    channels = (getattr(layer.input_spec, "axes", None) or {}).get(axis)
    name = layer.path
    if value.ndim != 4 or value.shape[1] != 1 or value.shape[2] != value.shape[3]:
        return (
            f"{quote(key)} has shape {value.shape}, which is no BlurPool filter: "
            f"the reference's is (channels, 1, k, k), and layer '{name}' "
            f"expects ({channels or 'channels'}, 1, {k}, {k})"
        )
    if value.shape[2:] != expected.shape:
        found = value.shape[-1]
        return (
            f"{quote(key)} is a BlurPool filter of size {found}, but layer "
            f"'{name}' has filter_size={k}: build the model with "
            f"filter_size={found}"
        )
    if channels is not None and value.shape[0] != channels:
        return (
            f"{quote(key)} filters {value.shape[0]} channel(s), but layer "
            f"'{name}' has {channels} input channels: the checkpoint is of "
            "another width"
        )
    if not np.allclose(value[:, 0], expected, atol=1e-6):
        return f"{quote(key)} is not the binomial filter of layer '{name}'"
    return None


def _tau_problem(key, value):
    """Why an LPS `gumbel_tau` buffer cannot be a temperature, or None."""
    if value.size != 1 or value.ndim > 1:
        return (
            f"{quote(key)} has shape {value.shape}; an LPS temperature "
            "(gumbel_tau) is a scalar"
        )
    try:
        check_tau(value.reshape(()).item(), name=key)
    except ValueError as error:
        return str(error)
    return None


def assign_state_dict(
    model: keras.Model,
    candidates: Iterable[tuple[Mapping[str, str], Mapping[str, np.ndarray]]],
    *,
    allow_nonfinite: bool = False,
) -> keras.Model:
    """Copies a PyTorch state dict into a model under the first name map
    that fits every key.

    Conv kernels go OIHW -> HWIO (grouped and depthwise too), BatchNorm
    weight/bias/running statistics, Dense kernels transposed (with the
    C,H,W -> H,W,C column order after a Flatten). BlurPool `filt` buffers
    are checked against the model's filters; `num_batches_tracked` is
    ignored. NaN or infinite values, values beyond the variable's range
    and negative `running_var` values are refused, naming the tensor
    (`keras_blurpool.weights.values`), unless `allow_nonfinite`. Nothing
    is assigned unless every key fits. The name maps come from the
    architectures (`keras_blurpool.applications`); this module knows
    none.

    Args:
        model: the model to load into.
        candidates: `(names, state_dict)` pairs, tried in order: `names`
            maps Keras layer names to PyTorch module names, `state_dict`
            PyTorch names to arrays (already fixed up for that family).
        allow_nonfinite: `True` loads NaN, infinite and out-of-range
            values and negative variances instead of refusing them.

    Returns:
        The model, with its weights replaced.

    Raises:
        ValueError: listing every unexpected, missing or mis-shaped key of
            the candidate that came closest, or, when the names and shapes
            fit, every refused value.
    """
    tried = []
    for names, state_dict in candidates:
        plan = _plan(model, names)
        problems, refused, assignments = _check_and_convert(
            plan, state_dict, allow_nonfinite
        )
        if not problems and refused:
            shown = "\n  ".join(refused[:50])
            more = f"\n  ... and {len(refused) - 50} more" if len(refused) > 50 else ""
            raise ValueError(
                f"The state_dict holds values that model '{model.name}' must "
                f"not load ({len(refused)} tensor(s)); nothing was loaded. "
                f"{values.HINT}:\n  {shown}{more}"
            )
        if not problems:
            for variable, value in assignments:
                with np.errstate(over="ignore", invalid="ignore"):
                    # Out-of-range values only with allow_nonfinite;
                    # ascontiguousarray makes 0-d arrays 1-d: reshape back.
                    value = np.ascontiguousarray(value, dtype=variable.dtype)
                variable.assign(value.reshape(variable.shape))
            return model
        tried.append(problems)
    if not tried:
        raise ValueError(
            f"Model '{model.name}' is not an architecture of "
            "keras_blurpool.applications; no PyTorch names are known for it."
        )
    problems = min(tried, key=len)
    shown = "\n  ".join(problems[:50])
    more = f"\n  ... and {len(problems) - 50} more" if len(problems) > 50 else ""
    raise ValueError(
        f"The state_dict does not fit model '{model.name}' "
        f"({len(problems)} problem(s)); nothing was loaded:\n  {shown}{more}"
    )

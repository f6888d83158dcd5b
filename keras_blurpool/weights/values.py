"""Weight values no network should load: NaN, infinities, negative variances.

One NaN in a convolution makes every logit NaN or absurd (a ResNet-18
with one NaN in `conv1.weight` returned logits of 4.6e37), a float64
1e300 becomes inf in a float32 variable, and a negative BatchNorm
variance takes the square root of a negative number: all load silently
and the network's outputs are garbage. Every path that loads weights
(`load_torch_weights`, a builder's `weights=`, `keras-blurpool-convert`,
the released-weights cache, `--finetune-from`) refuses them, naming the
tensor, unless its caller passes `allow_nonfinite=True` (the command
lines: `--allow-nonfinite`).
"""

from __future__ import annotations

import keras
import numpy as np

from keras_blurpool.weights.names import quote

# What the refusals add, so that the way out is in the message.
HINT = (
    "NaN and infinite values, values beyond the variable's range and "
    "negative variances are refused: pass allow_nonfinite=True (on the "
    "command lines, --allow-nonfinite) to load them anyway"
)

# Suffixes of the state dict keys (torch's names) and of the Keras
# variable paths that hold a variance, which must be >= 0.
VARIANCE_KEYS = (".running_var",)
VARIANCE_VARIABLES = ("moving_variance",)


def _dtype(dtype) -> np.dtype | None:
    try:
        return np.dtype(getattr(dtype, "name", dtype))
    except TypeError:  # a dtype NumPy does not know by that name
        return None


def _first(mask: np.ndarray) -> str:
    index = np.unravel_index(int(np.argmax(mask)), mask.shape)
    return str(tuple(int(i) for i in index)) if mask.ndim else "()"


def value_problem(
    name: str, value: np.ndarray, dtype=None, *, variance: bool = False
) -> str | None:
    """Why `value` must not be loaded into a variable of `dtype`, or None.

    Args:
        name: the tensor's name, quoted in the message.
        value: a real numeric array (float or int).
        dtype: the variable's dtype (`"float32"`, ...); values beyond its
            range (a float64 1e300 into float32) are refused as they would
            load as inf. None: the array's own.
        variance: whether `value` is a variance (`running_var`), whose
            values must be >= 0.

    Returns:
        None, or e.g. `"'conv1.weight' holds 1 NaN (first at (0, 0, 3, 3))"`.

    Example:

    >>> value_problem("w", np.array([1.0, np.nan]))
    "'w' holds 1 NaN (first at (1,))"
    >>> print(value_problem("w", np.array([1e300]), "float32"))  # doctest: +NORMALIZE_WHITESPACE
    'w' holds 1 value beyond float32's range (|x| > 3.4028235e+38), which
    would load as inf (first at (0,))
    >>> value_problem("bn.running_var", np.array([1.0, -2.0]), variance=True)
    "'bn.running_var' holds 1 negative variance (first at (1,): -2.0)"
    """
    value = np.asarray(value)
    problems = []
    if value.dtype.kind == "f":
        nan = np.isnan(value)
        inf = np.isinf(value)
        for mask, what in ((nan, "NaN"), (inf, "infinite value")):
            count = int(np.count_nonzero(mask))
            if count:
                plural = "s" if count > 1 else ""
                problems.append(f"{count} {what}{plural} (first at {_first(mask)})")
    target = _dtype(dtype)
    if target is not None and target.kind == "f" and value.dtype.kind in "fiu":
        limit = float(np.finfo(target).max)
        source = np.finfo(value.dtype) if value.dtype.kind == "f" else np.iinfo(value.dtype)
        if float(source.max) > limit:
            with np.errstate(invalid="ignore"):
                beyond = np.abs(value.astype(np.float64)) > limit
            count = int(np.count_nonzero(beyond))
            if count:
                problems.append(
                    f"{count} value{'s' if count > 1 else ''} beyond "
                    f"{target.name}'s range (|x| > {limit:.8g}), which would "
                    f"load as inf (first at {_first(beyond)})"
                )
    if variance and value.dtype.kind in "fi":
        with np.errstate(invalid="ignore"):
            negative = value < 0
        count = int(np.count_nonzero(negative))
        if count:
            first = _first(negative)
            smallest = value[np.unravel_index(int(np.argmax(negative)), value.shape)]
            problems.append(
                f"{count} negative variance{'s' if count > 1 else ''} (first "
                f"at {first}: {float(smallest)!r})"
            )
    if not problems:
        return None
    return f"{quote(name)} holds " + ", ".join(problems)


def variable_problems(model) -> list[str]:
    """What `value_problem` finds in a model's variables, one line each.

    Args:
        model: a built `keras.Model`, e.g. after `model.load_weights(path)`.

    Returns:
        A line per variable holding NaN or infinite values, or a negative
        moving variance, naming its path; empty if there is none.

    Example:

    >>> model = keras.Sequential([keras.Input((2,)), keras.layers.Dense(1)])
    >>> variable_problems(model)
    []
    """
    problems = []
    for variable in model.weights:
        path = getattr(variable, "path", variable.name)
        problem = value_problem(
            path,
            keras.ops.convert_to_numpy(variable),
            variance=path.endswith(VARIANCE_VARIABLES),
        )
        if problem:
            problems.append(problem)
    return problems


def check_variables(model, source: str) -> None:
    """Raises if `model` holds values `value_problem` refuses.

    For weights loaded by Keras itself (`model.load_weights` of a
    `.weights.h5` file), which are checked once loaded.

    Args:
        model: the model whose weights were just loaded.
        source: where they came from, for the message (a path).

    Raises:
        ValueError: naming `source` and listing every refused variable.
    """
    problems = variable_problems(model)
    if problems:
        shown = "\n  ".join(problems[:50])
        more = f"\n  ... and {len(problems) - 50} more" if len(problems) > 50 else ""
        raise ValueError(
            f"The weights loaded from {quote(str(source))} into model "
            f"'{model.name}' hold values no network should load "
            f"({len(problems)} variable(s)); {HINT}:\n  {shown}{more}"
        )

"""Argument checks shared by the metrics."""

import math

import numpy as np

from keras_blurpool._utils import check_int
from keras_blurpool._utils import is_int  # noqa: F401 (the metrics check ints with it)


def check_positive_int(name: str, value, minimum: int = 1) -> int:
    return check_int(name, value, minimum)


def check_choice(name: str, value, allowed: tuple) -> str:
    """Returns `value` if it is one of `allowed`, or raises naming it."""
    if not isinstance(value, str) or value not in allowed:
        raise ValueError(
            f"`{name}` must be one of {allowed}. Received: {name}={value!r}"
        )
    return value


def check_number(name: str, value, *, positive: bool = False) -> float:
    """Returns `value` as a finite float (> 0 if `positive`), or raises."""
    ok = isinstance(value, (int, float, np.integer, np.floating)) and not (
        isinstance(value, (bool, np.bool_))
    )
    if ok:
        ok = math.isfinite(float(value)) and (not positive or float(value) > 0)
    if not ok:
        allowed = "a finite number > 0" if positive else "a finite number"
        raise ValueError(f"`{name}` must be {allowed}. Received: {name}={value!r}")
    return float(value)

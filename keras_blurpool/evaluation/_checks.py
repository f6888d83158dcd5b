"""Argument checks shared by the metrics."""

from keras_blurpool._utils import check_int


def check_positive_int(name: str, value, minimum: int = 1) -> int:
    return check_int(name, value, minimum)

"""Class labels across splits, and their alignment onto ImageNet's.

A validation split may lack some of the training classes, and a subset of
ImageNet (Imagenette, a folder of `n01440764/`-style classes) may be
labelled with ImageNet's class indices so that ImageNet models evaluate
on it. Every image source (TFDS, folder, demo) maps its own labels
through the tables made here.
"""

from __future__ import annotations

import warnings
from typing import Sequence

import numpy as np

from keras_blurpool.applications.imagenet_utils import imagenet_classes

IMAGENET_WNIDS: tuple[str, ...] = tuple(wnid for wnid, _ in imagenet_classes())
"""The 1000 ImageNet WordNet ids (`"n01440764"`, ...) in class-index order."""

_IMAGENET_INDEX = {wnid: index for index, wnid in enumerate(IMAGENET_WNIDS)}


def align_labels(
    own_names: Sequence[str], class_names: tuple[str, ...] | None, where: str
) -> tuple[np.ndarray | None, tuple[str, ...]]:
    """`(table, names)` mapping this split's labels onto `class_names`.

    `table[own_label]` is the label in `class_names`. Names of
    `class_names` that this split lacks are reported with a warning
    (attributed to the caller of `load_images`); their labels stay unused.

    Args:
        own_names: this split's class names, in its own label order.
        class_names: the names to label by (the training split's), or
            None to keep this split's own labels.
        where: how errors and warnings name this split, e.g.
            `"data='demo'"` or a folder's repr.

    Returns:
        `(table, names)`: an int32 array and `class_names`, or
        `(None, own_names)` without `class_names` or when both lists are
        equal.

    Raises:
        ValueError: if this split has a class that `class_names` lacks.

    Example:

    >>> align_labels(("owl", "cat"), ("cat", "owl"), "val")
    (array([1, 0], dtype=int32), ('cat', 'owl'))
    """
    own_names = tuple(own_names)
    if class_names is None or own_names == class_names:
        return None, own_names
    index = {name: label for label, name in enumerate(class_names)}
    unknown = [name for name in own_names if name not in index]
    if unknown:
        raise ValueError(
            f"{where} has class(es) {', '.join(map(repr, unknown))} that the "
            f"training classes lack; expected classes among the "
            f"{len(class_names)} of training "
            f"({', '.join(class_names[:10])}{', ...' if len(class_names) > 10 else ''})"
        )
    missing = [name for name in class_names if name not in set(own_names)]
    if missing:
        warnings.warn(
            f"{where} lacks {len(missing)} of the {len(class_names)} training "
            f"classes: {', '.join(missing[:20])}"
            f"{', ...' if len(missing) > 20 else ''}; the others keep their "
            "training labels",
            stacklevel=4,
        )
    table = np.array([index[name] for name in own_names], "int32")
    return table, class_names


def imagenet_label_table(class_names: Sequence[str]) -> np.ndarray | None:
    """ImageNet class indices of `class_names`, if all are WordNet ids.

    Args:
        class_names: class names, e.g. a folder's class folders.

    Returns:
        An int32 array, `IMAGENET_WNIDS.index(name)` for each name, or
        None unless every name is an ImageNet WordNet id.

    Example:

    >>> imagenet_label_table(["n01443537", "n01440764"])
    array([1, 0], dtype=int32)
    >>> imagenet_label_table(["cat"]) is None
    True
    """
    if not all(name in _IMAGENET_INDEX for name in class_names):
        return None
    return np.array([_IMAGENET_INDEX[name] for name in class_names], "int32")

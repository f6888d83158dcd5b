"""Image folders as a source: torchvision's `ImageFolder` layout.

`ROOT/[SPLIT/]CLASS/IMAGE.{jpg,jpeg,png}`, which is how ImageNet is
usually unpacked (`ROOT/train/n01440764/*.JPEG`, `ROOT/val/...`). Files
are listed here, and decoded by `recipes.data.bad_images`, which names or
skips those that cannot be read or have more than `max_image_pixels`
pixels.
"""

from __future__ import annotations

import os

import numpy as np
import tensorflow as tf

from .._args import DEFAULT_MAX_IMAGE_PIXELS
from .bad_images import BadImages
from .bad_images import decode_files
from .labels import IMAGENET_WNIDS
from .labels import align_labels
from .labels import imagenet_label_table
from .source import SPEC_HELP
from .source import SPLIT_ALIASES
from .source import ImageSource
from .source import UnknownSplitError
from .source import shuffle_and_shard

_IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png")
# Subfolder names taken for splits rather than classes, so that asking a
# `train/ val/` folder for a split it lacks fails instead of reading the
# split folders as two classes.
_SPLIT_FOLDERS = ("train", "val", "validation", "test")


def load_folder(
    data: str,
    split: str,
    *,
    imagenet_labels: bool,
    input_context: tf.distribute.InputContext | None,
    shuffle_seed: int | None,
    class_names: tuple[str, ...] | None = None,
    skip_bad_images: bool = False,
    max_image_pixels: int = DEFAULT_MAX_IMAGE_PIXELS,
    short_side: int | None = None,
) -> ImageSource:
    """Opens a split of a folder of class folders.

    Class `k` is the `k`-th class folder in sorted order; when
    `ROOT/<split>` exists (`"val"` and `"validation"` stand for each
    other) the classes are read from there. The arguments are checked by
    `recipes.data.load_images`, which documents them.

    Args:
        data: the folder `ROOT`.
        split: the split to read.
        imagenet_labels: label with ImageNet's indices when every class
            folder is a WordNet id.
        input_context: read only this input pipeline's share of the files.
        shuffle_seed: shuffle the files with this seed, or None.
        class_names: label by these names (the training split's).
        skip_bad_images: leave out the files that cannot be decoded.
        max_image_pixels: decode no image of more pixels than this
            (read from its header); larger ones are bad files.
        short_side: the shorter side the images will be resized to, held
            to `max_image_pixels` too; None for none.

    Returns:
        An `ImageSource` with a `bad_images` record.

    Raises:
        FileNotFoundError: when `data` is no folder.
        ValueError: an unknown split, a folder without classes, a class
            without images or a class `class_names` lacks.
    """
    root = data.rstrip("/") or data
    if not tf.io.gfile.isdir(root):
        raise FileNotFoundError(f"data={data!r}: no such folder; {SPEC_HELP}")
    folder = _split_folder(root, split)
    own_names, paths, labels = _list_images(folder)
    num_examples = len(paths)
    table, class_names = align_labels(own_names, class_names, repr(folder))
    if table is not None:
        labels = table[labels]
    table = imagenet_label_table(class_names) if imagenet_labels else None
    if table is not None:
        labels = table[labels]
        class_names = IMAGENET_WNIDS
    # Sharding the file list means every pipeline decodes only its own
    # images.
    paths, labels = shuffle_and_shard(paths, labels, shuffle_seed, input_context)
    bad_images = BadImages(
        skip=skip_bad_images,
        max_image_pixels=max_image_pixels,
        short_side=short_side,
    )
    return ImageSource(
        dataset=decode_files(paths, labels, bad_images),
        num_classes=len(class_names),
        class_names=tuple(class_names),
        num_examples=num_examples,
        image_size=224,
        resize_size=256,
        augment="imagenet",
        bad_images=bad_images,
    )


def _subfolders(folder):
    # GCS listings end folder names with "/"; hidden folders such as
    # ".ipynb_checkpoints" are not classes.
    names = (name.rstrip("/") for name in tf.io.gfile.listdir(folder))
    return sorted(
        name
        for name in names
        if not name.startswith(".")
        and tf.io.gfile.isdir(os.path.join(folder, name))
    )


def _split_folder(root, split):
    subfolders = _subfolders(root)
    for name in (split, *SPLIT_ALIASES.get(split, ())):
        if name in subfolders:
            return os.path.join(root, name)
    found = [name for name in subfolders if name in _SPLIT_FOLDERS]
    if found:
        raise UnknownSplitError(
            f"split={split!r}: {root!r} has split folders "
            f"{', '.join(found)} but none named {split!r}"
        )
    return root


def _list_images(folder):
    class_names = _subfolders(folder)
    if not class_names:
        raise ValueError(
            f"{folder!r} has no class folders; expected images in "
            f"{os.path.join(folder, 'CLASS', '*')} with extensions "
            f"{', '.join(_IMAGE_EXTENSIONS)} (any case)"
        )
    paths, labels = [], []
    for label, name in enumerate(class_names):
        class_folder = os.path.join(folder, name)
        # Filtering by extension spares a stat() per file, which matters
        # for ImageNet's 1.28 million.
        files = sorted(
            file
            for file in tf.io.gfile.listdir(class_folder)
            if file.lower().endswith(_IMAGE_EXTENSIONS)
        )
        if not files:
            raise ValueError(
                f"class folder {class_folder!r} has no images; expected "
                f"files with extensions {', '.join(_IMAGE_EXTENSIONS)} "
                "(any case)"
            )
        paths.extend(os.path.join(class_folder, file) for file in files)
        labels.extend([label] * len(files))
    return class_names, np.array(paths), np.array(labels, "int32")


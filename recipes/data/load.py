"""`load_images`: a data spec to an `ImageSource`, from the right source.

The argument checks common to every source are made here; the spec then
picks the TFDS (`recipes.data.tfds`), folder (`recipes.data.folder`) or
demo (`recipes.data.demo`) source.
"""

from __future__ import annotations

import os
from typing import Sequence

import tensorflow as tf

from keras_blurpool._utils import check_int

from .._args import DEFAULT_MAX_IMAGE_PIXELS
from .demo import load_demo
from .folder import load_folder
from .source import SPEC_HELP
from .source import ImageSource
from .tfds import load_tfds


def load_images(
    data: str,
    split: str,
    *,
    data_dir: str | None = None,
    manual_dir: str | None = None,
    imagenet_labels: bool = False,
    input_context: tf.distribute.InputContext | None = None,
    shuffle_seed: int | None = None,
    class_names: Sequence[str] | None = None,
    skip_bad_images: bool = False,
    max_image_pixels: int = DEFAULT_MAX_IMAGE_PIXELS,
    short_side: int | None = None,
) -> ImageSource:
    """Opens a split of a labelled image dataset.

    `data` is one of:

    * `"tfds:NAME"` or `"tfds:NAME:SPLIT"`: the TensorFlow Datasets dataset
      `NAME` (which may carry a config and version,
      `"tfds:imagenette/320px-v2:1.0.0"`), downloaded and prepared into
      `data_dir` on first use. A `SPLIT` in the spec (a TFDS split string
      such as `"train[:10%]"`) overrides `split`. The dataset needs an
      `image` and a `label` feature (or supervised keys naming them).
    * a folder `ROOT` of class subfolders `ROOT/CLASS/*.{jpg,jpeg,png}`
      (extensions in any case). When `ROOT/<split>` exists (`"val"` and
      `"validation"` stand for each other) the classes are read from
      there. Class `k` is the `k`-th class folder in sorted order.
    * `"demo"`: 10 classes of procedurally drawn 40x40 RGB images — disks,
      rings, squares, diamonds, triangles, plus signs, diagonal crosses,
      horizontal and vertical stripes, checkerboards — at random
      positions, sizes, rotations (within +-17 degrees) and colours, with
      Gaussian noise; 6000 `"train"` images and 1000 `"validation"`
      (alias `"val"`, `"test"`) images drawn with another seed, 10%
      per class. The data is generated, deterministically and in about a
      second, because the recipes' default run must work without a
      network or extra dependency and must exercise aliasing: the hard
      edges and stripes with periods of 2.5-4.5 pixels carry the high
      frequencies that strided downsampling folds over, and 40 pixels
      leave room for the 32x32 crops at 9x9 offsets that shift-consistency
      compares (the 8x8 digits bundled with scikit-learn leave none). A
      small CNN reaches 85-95% validation accuracy in one or two minutes
      of training on a CPU.

    Args:
        data: the dataset spec, see above.
        split: the split to read, e.g. `"train"` or `"validation"`.
        data_dir: TFDS data folder (default: TFDS's, `~/tensorflow_datasets`).
        manual_dir: folder of manually downloaded files for TFDS, e.g. the
            ImageNet tarballs for `"tfds:imagenet2012"`.
        imagenet_labels: when every class name (folder name or TFDS label
            name) is an ImageNet WordNet id (`"n01440764"`, ...), label
            with ImageNet class indices and give the source the 1000
            ImageNet classes, so that ImageNet models can be evaluated on
            a subset of ImageNet's classes, e.g. Imagenette. Other
            datasets keep their own labels.
        input_context: with several input pipelines (`tf.distribute`),
            read only this pipeline's shard, split by files.
        shuffle_seed: shuffle the files (TFDS: the file shards) with this
            seed, the same order on every pass; `None` keeps the sorted,
            deterministic order. Training on a folder needs it: sorted
            files come class by class.
        class_names: label by these names (the training split's), not by
            this split's own class list: a validation folder lacking one
            of the training classes keeps the labels of the others. A
            class of this split missing from the list is an error; list
            entries this split lacks are reported with a warning.
        skip_bad_images: for folders, leave out image files that cannot
            be read or decoded (truncated, corrupt, empty), recorded in
            the source's `bad_images`; by default the first one stops
            the iteration with an error naming it.
        max_image_pixels: for folders, the most pixels (height x width)
            of an image that is decoded, read from the file's header
            before decoding: a larger image is a bad file (an error naming
            it, or skipped with `skip_bad_images`), so that a small file
            declaring a huge image (a PNG of 48 KB decodes to 1.2 GB at
            20000x20000) cannot exhaust memory. The default, 89,478,485,
            is Pillow's `Image.MAX_IMAGE_PIXELS`. Folders hold JPEG and
            PNG files (what their extensions say); a file of another
            format is a bad file too. TFDS datasets are decoded by TFDS,
            and the demo's images are 40x40.
        short_side: for folders, the shorter side the images will be
            resized to (evaluation's resize, as `eval_dataset` and
            `keras_blurpool.evaluation` do), or None: an image that the
            resize would make larger than `max_image_pixels` is a bad file
            too (a PNG of 20000x2 pixels resized to a short side of 256 is
            256x2,560,000).

    Returns:
        An `ImageSource`; images and labels are deterministic given the
        arguments.

    Raises:
        ValueError: on a malformed spec or argument (`max_image_pixels`
            not a positive int), an unknown split, a
            folder without classes, a class without images, or a class
            that `class_names` lacks.
        FileNotFoundError: when the folder or `manual_dir` is missing.

    Example:

    >>> source = load_images("demo", "train")
    >>> source.num_classes, source.num_examples, source.image_size
    (10, 6000, 32)
    >>> image, label = next(iter(source.dataset))
    >>> image.shape, image.dtype, label.dtype
    (TensorShape([40, 40, 3]), tf.uint8, tf.int32)
    """
    if isinstance(data, os.PathLike):
        data = os.fspath(data)
    if not isinstance(data, str) or not data:
        raise ValueError(f"data={data!r}: {SPEC_HELP}")
    if not isinstance(split, str) or not split:
        raise ValueError(
            f"split={split!r}: expected a non-empty split name such as "
            "'train' or 'validation'"
        )
    if input_context is not None and not isinstance(
        input_context, tf.distribute.InputContext
    ):
        raise ValueError(
            f"input_context={input_context!r}: expected a "
            "tf.distribute.InputContext or None"
        )
    if shuffle_seed is not None and (
        isinstance(shuffle_seed, bool) or not isinstance(shuffle_seed, int)
    ):
        raise ValueError(
            f"shuffle_seed={shuffle_seed!r}: expected an int or None"
        )
    check_int("max_image_pixels", max_image_pixels)
    if short_side is not None:
        check_int("short_side", short_side)
    if class_names is not None:
        if isinstance(class_names, str) or not all(
            isinstance(name, str) for name in class_names
        ):
            raise ValueError(
                f"class_names={class_names!r}: expected a sequence of class "
                "names (str), or None"
            )
        class_names = tuple(class_names)
    if data.startswith("tfds:"):
        return load_tfds(
            data,
            split,
            data_dir=data_dir,
            manual_dir=manual_dir,
            imagenet_labels=imagenet_labels,
            input_context=input_context,
            shuffle_seed=shuffle_seed,
            class_names=class_names,
        )
    if data == "demo":
        return load_demo(split, input_context, shuffle_seed, class_names)
    return load_folder(
        data,
        split,
        imagenet_labels=imagenet_labels,
        input_context=input_context,
        shuffle_seed=shuffle_seed,
        class_names=class_names,
        skip_bad_images=bool(skip_bad_images),
        max_image_pixels=max_image_pixels,
        short_side=short_side,
    )


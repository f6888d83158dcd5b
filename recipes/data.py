"""Input pipelines of the training recipes.

`load_images` turns a data spec into an `ImageSource`: an unbatched
`tf.data.Dataset` of `(image, label)` pairs — `uint8` RGB images of any
size and `int32` labels — with the class names and the crop sizes and
augmentation the recipes suggest for it. Three specs are understood:

* `"tfds:NAME"` or `"tfds:NAME:SPLIT"`: a TensorFlow Datasets dataset,
  e.g. `"tfds:imagenet2012"` (whose tarballs TFDS cannot download: pass
  the folder holding them as `manual_dir`) or `"tfds:imagenette"`.
* a folder `ROOT/[SPLIT/]CLASS/IMAGE.{jpg,jpeg,png}`: torchvision's
  `ImageFolder` layout, which is how ImageNet is usually unpacked
  (`ROOT/train/n01440764/*.JPEG`, `ROOT/val/n01440764/*.JPEG`).
* `"demo"`: a small dataset of procedurally drawn shapes and patterns,
  generated in memory (see `load_images`), so that the recipes run on a
  fresh machine without a download.

`train_dataset` and `eval_dataset` then augment or center-crop, batch and
normalise an `ImageSource` as the reference's torchvision pipelines do.
Training batches are a pure function of `(seed, epoch)`, so a trainer can
resume mid-epoch by skipping the batches it has already seen.
"""

from __future__ import annotations

import dataclasses
import functools
import math
import os
import re
import threading
import warnings
from typing import Sequence

import numpy as np
import tensorflow as tf

from keras_blurpool._utils import check_int
from keras_blurpool.applications.imagenet_utils import IMAGENET_MEAN
from keras_blurpool.applications.imagenet_utils import IMAGENET_STD
from keras_blurpool.applications.imagenet_utils import imagenet_classes
from keras_blurpool.evaluation.preprocessing import center_crop
from keras_blurpool.evaluation.preprocessing import resize_short_side

IMAGENET_WNIDS: tuple[str, ...] = tuple(wnid for wnid, _ in imagenet_classes())
"""The 1000 ImageNet WordNet ids (`"n01440764"`, ...) in class-index order."""

_IMAGENET_INDEX = {wnid: index for index, wnid in enumerate(IMAGENET_WNIDS)}

_SPEC_HELP = "expected 'tfds:NAME[:SPLIT]', a folder, or 'demo'"
_AUGMENTATIONS = ("imagenet", "crop")
_IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png")
# Subfolder names taken for splits rather than classes, so that asking a
# `train/ val/` folder for a split it lacks fails instead of reading the
# split folders as two classes.
_SPLIT_FOLDERS = ("train", "val", "validation", "test")
_SPLIT_ALIASES = {"val": ("validation",), "validation": ("val",)}

_SHUFFLE_BUFFER = 10_000


class UnknownSplitError(ValueError):
    """The dataset has no split of the requested name."""


class BadImages:
    """The image files of a folder source that cannot be read or decoded.

    A source fills it while its dataset is iterated (truncated, corrupt or
    empty files, non-images with an image extension), each file once
    however many passes see it. With `skip=True` such files are left out
    of the dataset; otherwise the first one stops the iteration with a
    `tf.errors.InvalidArgumentError` naming it, and `error()` gives the
    message a command line prints instead.

    Attributes:
        skip: whether bad files are skipped rather than an error.
    """

    def __init__(self, skip: bool):
        self.skip = skip
        self._lock = threading.Lock()
        self._reasons: dict[str, str] = {}

    @property
    def paths(self) -> list[str]:
        """The bad files seen so far, sorted."""
        with self._lock:
            return sorted(self._reasons)

    @property
    def count(self) -> int:
        """How many bad files were seen so far."""
        with self._lock:
            return len(self._reasons)

    def reason(self, path: str) -> str:
        """Why `path` could not be read, as TensorFlow put it."""
        with self._lock:
            return self._reasons[path]

    def error(self) -> str | None:
        """The message for the first bad file, or None if there is none."""
        paths = self.paths
        if not paths:
            return None
        return (
            f"cannot read image file {paths[0]!r} ({self.reason(paths[0])}); "
            "remove or replace it, or skip such files with --skip-bad-images"
        )

    def summary(self, limit: int = 5) -> str:
        """`"N unreadable image file(s) skipped: a, b, ..."`."""
        paths = self.paths
        shown = ", ".join(paths[:limit]) + (", ..." if len(paths) > limit else "")
        return f"{len(paths)} unreadable image file(s) skipped: {shown}"

    def _record(self, paths) -> None:
        # Runs in a tf.py_function, only when files were dropped: decoding
        # each again here gives the reason that ignore_errors discarded.
        for path in paths.numpy():
            path = path.decode("utf-8", "replace")
            try:
                tf.io.decode_image(
                    tf.io.read_file(path), channels=3, expand_animations=False
                )
                reason = "unreadable"
            except tf.errors.OpError as error:
                reason = _op_error_text(error)
            with self._lock:
                self._reasons.setdefault(path, reason)
        return len(paths)


def _op_error_text(error: tf.errors.OpError) -> str:
    """TensorFlow's message without its node and op decorations."""
    text = error.message.strip().splitlines()[0]
    text = re.sub(r"^\{\{function_node [^}]*\}\}\s*", "", text)
    return re.sub(r"\s*\[Op:\w+\].*$", "", text)


@dataclasses.dataclass(frozen=True)
class ImageSource:
    """A labelled image dataset, before batching and augmentation.

    Attributes:
        dataset: unbatched `tf.data.Dataset` of `(image, label)`: `uint8`
            RGB images `[height, width, 3]` of any size and `int32` scalar
            labels.
        num_classes: number of classes, i.e. of model outputs.
        class_names: the `num_classes` class names, in label order.
        num_examples: examples in the whole split (all shards together),
            or `None` when unknown.
        image_size: suggested side of the square training and evaluation
            crops.
        resize_size: suggested side the shorter image side is resized to
            before evaluation's center crop (and the "crop" augmentation's
            random crop).
        augment: training augmentation, `"imagenet"` (random-resized crop
            and horizontal flip) or `"crop"` (random crop only).
        bad_images: for folder sources, the `BadImages` record of the
            files that cannot be decoded; None for other sources.
    """

    dataset: tf.data.Dataset
    num_classes: int
    class_names: tuple[str, ...]
    num_examples: int | None
    image_size: int
    resize_size: int
    augment: str
    bad_images: BadImages | None = None

    def __post_init__(self):
        if self.augment not in _AUGMENTATIONS:
            raise ValueError(
                f"augment={self.augment!r}: expected one of {_AUGMENTATIONS}"
            )
        check_int("num_classes", self.num_classes)
        if len(self.class_names) != self.num_classes:
            raise ValueError(
                f"class_names has {len(self.class_names)} names but "
                f"num_classes={self.num_classes}; expected one name per class"
            )
        if self.num_examples is not None:
            check_int("num_examples", self.num_examples, minimum=0)
        check_int("image_size", self.image_size)
        check_int("resize_size", self.resize_size)

    def resize_size_for(self, image_size: int) -> int:
        """The resize side for another crop size, at the suggested ratio.

        E.g. 256 for 224 and 146 for 128 on ImageNet-like data.
        """
        return round(image_size * self.resize_size / self.image_size)


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

    Returns:
        An `ImageSource`; images and labels are deterministic given the
        arguments.

    Raises:
        ValueError: on a malformed spec or argument, an unknown split, a
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
        raise ValueError(f"data={data!r}: {_SPEC_HELP}")
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
        return _load_tfds(
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
        return _load_demo(split, input_context, shuffle_seed, class_names)
    return _load_folder(
        data,
        split,
        imagenet_labels=imagenet_labels,
        input_context=input_context,
        shuffle_seed=shuffle_seed,
        class_names=class_names,
        skip_bad_images=bool(skip_bad_images),
    )


def train_dataset(
    source: ImageSource,
    batch_size: int,
    *,
    image_size: int | None = None,
    resize_size: int | None = None,
    seed: int = 0,
    epoch: int = 0,
) -> tf.data.Dataset:
    """One epoch of shuffled, augmented, normalised training batches.

    Elements are shuffled (in a buffer of up to 10,000) with a seed drawn
    from `(seed, epoch)`, then augmented with stateless random ops seeded
    by `(seed, epoch, position in the epoch)`, so the same `(seed, epoch)`
    gives the same batches in every run (with the same global TF seed)
    and `.skip(k)` resumes an epoch after `k` batches. The augmentation
    is `source.augment`:

    * `"imagenet"`: torchvision's `RandomResizedCrop(image_size)` — a
      crop of 8%-100% of the area and aspect ratio 3/4-4/3 (log-uniform),
      resized bilinearly, with antialiasing as PIL does — then a random
      horizontal flip.
    * `"crop"`: the shorter side resized to `resize_size`, then a
      random `image_size` square crop (offsets 0 to
      `resize_size - image_size`, both included); no flip, which would
      change the class of mirror-asymmetric patterns.

    Args:
        source: the training split, from `load_images`.
        batch_size: images per batch of this input pipeline (with
            `tf.distribute`, `input_context.get_per_replica_batch_size`).
            The last partial batch is dropped.
        image_size: side of the square crops; default `source.image_size`.
        resize_size: the shorter side before a `"crop"` augmentation, at
            least `image_size`; default `source.resize_size`.
        seed: the run's random seed, an int >= 0.
        epoch: the epoch's index, an int >= 0.

    Returns:
        A `tf.data.Dataset` of `(images, labels)`: float32
        `[batch_size, image_size, image_size, 3]` normalised like
        `keras_blurpool.applications.preprocess_input`, and int32
        `[batch_size]`.

    Example:

    >>> source = load_images("demo", "train")
    >>> images, labels = next(iter(train_dataset(source, 64, epoch=3)))
    >>> images.shape, labels.shape
    (TensorShape([64, 32, 32, 3]), TensorShape([64]))
    """
    _check_source(source)
    check_int("batch_size", batch_size)
    image_size = source.image_size if image_size is None else image_size
    check_int("image_size", image_size)
    resize_size = source.resize_size if resize_size is None else resize_size
    check_int("resize_size", resize_size)
    check_int("seed", seed, minimum=0)
    check_int("epoch", epoch, minimum=0)
    if source.augment == "crop" and image_size > resize_size:
        raise ValueError(
            f"image_size={image_size}: the 'crop' augmentation crops from "
            f"images resized to resize_size={resize_size}; expected "
            f"image_size <= {resize_size}"
        )
    # SeedSequence mixes (seed, epoch) into unrelated streams, unlike
    # `seed + epoch`, which would replay epoch 1 of seed 0 as epoch 0 of
    # seed 1.
    epoch_seed = int(
        np.random.SeedSequence([seed, epoch]).generate_state(1, np.uint32)[0]
    )
    buffer_size = _SHUFFLE_BUFFER
    if source.num_examples:
        buffer_size = min(buffer_size, source.num_examples)
    dataset = source.dataset.shuffle(
        buffer_size, seed=epoch_seed, reshuffle_each_iteration=False
    )
    if source.augment == "imagenet":
        augment = functools.partial(_imagenet_augment, size=image_size)
    else:
        augment = functools.partial(
            _crop_augment, size=image_size, resize_size=resize_size
        )

    def augment_element(index, element):
        image, label = element
        element_seed = tf.stack([tf.constant(epoch_seed, tf.int64), index])
        return augment(image, element_seed), label

    dataset = dataset.enumerate().map(
        augment_element, num_parallel_calls=tf.data.AUTOTUNE, deterministic=True
    )
    return _batch_and_normalize(dataset, batch_size, drop_remainder=True)


def eval_dataset(
    source: ImageSource,
    batch_size: int,
    *,
    image_size: int | None = None,
    resize_size: int | None = None,
) -> tf.data.Dataset:
    """Center-cropped, normalised evaluation batches, in source order.

    The shorter image side is resized to `resize_size` (bilinear with
    antialiasing, like torchvision's `Resize` on PIL images), then the
    center `image_size` square is cropped: torchvision's
    `Resize(256), CenterCrop(224)` with the defaults of ImageNet sources.

    Args:
        source: the evaluation split, from `load_images`.
        batch_size: images per batch; the last batch may be smaller.
        image_size: side of the center crop; default `source.image_size`.
        resize_size: the shorter side before cropping, at least
            `image_size`; default `source.resize_size`.

    Returns:
        A `tf.data.Dataset` of `(images, labels)`: float32
        `[batch, image_size, image_size, 3]` normalised like
        `keras_blurpool.applications.preprocess_input`, and int32 `[batch]`.

    Example:

    >>> source = load_images("demo", "validation")
    >>> images, labels = next(iter(eval_dataset(source, 100)))
    >>> images.shape
    TensorShape([100, 32, 32, 3])
    """
    _check_source(source)
    check_int("batch_size", batch_size)
    image_size = source.image_size if image_size is None else image_size
    resize_size = source.resize_size if resize_size is None else resize_size
    check_int("image_size", image_size)
    check_int("resize_size", resize_size)
    if resize_size < image_size:
        raise ValueError(
            f"resize_size={resize_size}: the center crop of "
            f"image_size={image_size} needs resize_size >= {image_size}"
        )

    def crop(image, label):
        image = center_crop(resize_short_side(image, resize_size), image_size)
        return image, label

    dataset = source.dataset.map(
        crop, num_parallel_calls=tf.data.AUTOTUNE, deterministic=True
    )
    return _batch_and_normalize(dataset, batch_size, drop_remainder=False)


def normalize(images) -> tf.Tensor:
    """Normalises RGB values in [0, 255] with the ImageNet mean and std.

    The TensorFlow counterpart of
    `keras_blurpool.applications.preprocess_input` (channels last), for
    use inside `tf.data` pipelines whatever the Keras backend.

    Args:
        images: RGB image or images, channels last, any real dtype.

    Returns:
        float32 tensor of the same shape, `(images / 255 - mean) / std`.

    Example:

    >>> normalize(tf.fill([2, 2, 3], 255.0))[0, 0].numpy().round(3)
    array([2.249, 2.429, 2.64 ], dtype=float32)
    """
    images = tf.convert_to_tensor(images)
    if images.shape.rank is not None and images.shape[-1] != 3:
        raise ValueError(
            "normalize expects RGB images with 3 channels last. Received "
            f"images of shape {images.shape}"
        )
    # The same float32 constants and arithmetic as `preprocess_input`, so
    # that both give bit-identical results.
    mean = np.array(IMAGENET_MEAN, "float32") * 255
    scale = 1 / (np.array(IMAGENET_STD, "float32") * 255)
    return (tf.cast(images, tf.float32) - mean) * scale


def _batch_and_normalize(dataset, batch_size, drop_remainder):
    # Normalising whole batches is one vectorised op instead of one per
    # image.
    dataset = dataset.batch(batch_size, drop_remainder=drop_remainder)
    dataset = dataset.map(
        lambda images, labels: (normalize(images), labels),
        num_parallel_calls=tf.data.AUTOTUNE,
        deterministic=True,
    )
    return _deterministic(dataset.prefetch(tf.data.AUTOTUNE))


def _deterministic(dataset):
    options = tf.data.Options()
    options.deterministic = True
    return dataset.with_options(options)


def _imagenet_augment(image, seed, size):
    crop_seed, flip_seed = tf.unstack(
        tf.random.experimental.stateless_split(seed, 2)
    )
    top, left, height, width = _random_resized_crop_window(
        tf.shape(image)[0], tf.shape(image)[1], crop_seed
    )
    image = tf.image.crop_to_bounding_box(image, top, left, height, width)
    image = tf.image.resize(
        image, [size, size], method="bilinear", antialias=True
    )
    return tf.image.stateless_random_flip_left_right(image, flip_seed)


def _random_resized_crop_window(
    height, width, seed, scale=(0.08, 1.0), ratio=(3 / 4, 4 / 3), attempts=10
):
    """torchvision's `RandomResizedCrop.get_params` with stateless ops.

    Draws `attempts` crops of `scale` of the area and log-uniform aspect
    `ratio` at once and keeps the first that fits, else falls back to the
    largest center crop whose aspect ratio is within `ratio`.
    """
    area_seed, ratio_seed, top_seed, left_seed = tf.unstack(
        tf.random.experimental.stateless_split(seed, 4)
    )
    height_f = tf.cast(height, tf.float32)
    width_f = tf.cast(width, tf.float32)
    fraction = tf.random.stateless_uniform(
        [attempts], area_seed, scale[0], scale[1]
    )
    area = height_f * width_f * fraction
    aspect = tf.exp(
        tf.random.stateless_uniform(
            [attempts], ratio_seed, math.log(ratio[0]), math.log(ratio[1])
        )
    )
    crop_w = tf.round(tf.sqrt(area * aspect))
    crop_h = tf.round(tf.sqrt(area / aspect))
    fits = (
        (crop_w > 0) & (crop_w <= width_f) & (crop_h > 0) & (crop_h <= height_f)
    )
    first = tf.argmax(tf.cast(fits, tf.int32), output_type=tf.int32)

    image_ratio = width_f / height_f
    fallback_w = tf.where(
        image_ratio > ratio[1], tf.round(height_f * ratio[1]), width_f
    )
    fallback_h = tf.where(
        image_ratio < ratio[0], tf.round(width_f / ratio[0]), height_f
    )
    found = tf.reduce_any(fits)
    crop_h = tf.cast(tf.where(found, crop_h[first], fallback_h), tf.int32)
    crop_w = tf.cast(tf.where(found, crop_w[first], fallback_w), tf.int32)
    top = tf.where(
        found,
        tf.random.stateless_uniform(
            [], top_seed, 0, height - crop_h + 1, dtype=tf.int32
        ),
        (height - crop_h) // 2,
    )
    left = tf.where(
        found,
        tf.random.stateless_uniform(
            [], left_seed, 0, width - crop_w + 1, dtype=tf.int32
        ),
        (width - crop_w) // 2,
    )
    return top, left, crop_h, crop_w


def _crop_augment(image, seed, size, resize_size):
    image = resize_short_side(image, resize_size)
    return tf.image.stateless_random_crop(image, [size, size, 3], seed)


def _check_source(source):
    if not isinstance(source, ImageSource):
        raise ValueError(
            f"source={source!r}: expected an ImageSource from load_images()"
        )


def _to_rgb(image):
    channels = image.shape[-1]
    if channels == 1:
        return tf.image.grayscale_to_rgb(image)
    if channels == 4:
        return image[..., :3]
    return image


def _align_labels(own_names, class_names, where):
    """`(table, names)` mapping this split's labels onto `class_names`.

    `table[own_label]` is the label in `class_names`; `(None, own_names)`
    without `class_names` or when both lists are equal.
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


def _imagenet_label_table(class_names):
    """ImageNet indices of `class_names`, or `None` unless all are wnids."""
    if not all(name in _IMAGENET_INDEX for name in class_names):
        return None
    return np.array([_IMAGENET_INDEX[name] for name in class_names], "int32")


# TFDS ------------------------------------------------------------------

# NAME may carry a config and a `:x.y.z` version, whose colon is not the
# split's.
_TFDS_SPEC = re.compile(
    r"tfds:(?P<name>[^:\s]+(?::[\d*]+\.[\d*]+\.[\d*]+)?)(?::(?P<split>.+))?"
)


def parse_tfds_spec(data: str) -> tuple[str, str | None] | None:
    """`"tfds:NAME[:VERSION][:SPLIT]"` -> `(NAME[:VERSION], SPLIT or None)`.

    Returns None when `data` is not a TFDS spec.
    """
    match = _TFDS_SPEC.fullmatch(data)
    return (match["name"], match["split"]) if match else None


def _load_tfds(
    data,
    split,
    *,
    data_dir,
    manual_dir,
    imagenet_labels,
    input_context,
    shuffle_seed,
    class_names=None,
):
    parsed = parse_tfds_spec(data)
    if not parsed:
        raise ValueError(f"data={data!r}: {_SPEC_HELP}")
    name, split = parsed[0], parsed[1] or split
    if manual_dir is not None and not tf.io.gfile.isdir(manual_dir):
        raise FileNotFoundError(
            f"manual_dir={manual_dir!r}: no such folder; expected the "
            f"folder of the files TFDS cannot download for {name!r}"
        )
    # Imported here: TFDS is slow to import and only this path needs it.
    import tensorflow_datasets as tfds

    try:
        builder = tfds.builder(name, data_dir=data_dir)
    except tfds.core.DatasetNotFoundError as error:
        raise ValueError(
            f"data={data!r}: TensorFlow Datasets has no dataset {name!r}; "
            f"{_SPEC_HELP}"
        ) from error

    # Checked before download_and_prepare, which can take hours.
    features = builder.info.features
    keys = builder.info.supervised_keys
    if not (
        isinstance(keys, tuple)
        and len(keys) == 2
        and all(isinstance(key, str) for key in keys)
    ):
        keys = ("image", "label")
    image_key, label_key = keys
    image_feature = _tfds_feature(features, image_key)
    label_feature = _tfds_feature(features, label_key)
    if not (
        isinstance(image_feature, tfds.features.Image)
        and isinstance(label_feature, tfds.features.ClassLabel)
    ):
        raise ValueError(
            f"data={data!r}: expected a dataset with an Image and a "
            "ClassLabel feature, its supervised keys or named 'image' and "
            f"'label'; it has {features}"
        )
    channels = image_feature.shape[-1]
    if image_feature.np_dtype != np.uint8 or channels not in (1, 3, 4):
        raise ValueError(
            f"data={data!r}: expected uint8 images with 1, 3 or 4 channels; "
            f"its {image_key!r} feature is {image_feature}"
        )
    table, class_names = _align_labels(
        label_feature.names, class_names, f"data={data!r}"
    )
    wnid_table = _imagenet_label_table(class_names) if imagenet_labels else None
    if wnid_table is not None:
        table = wnid_table if table is None else wnid_table[table]
        if np.array_equal(table, np.arange(len(IMAGENET_WNIDS))):
            table = None  # Already ImageNet's labels, as in imagenet2012.
        class_names = IMAGENET_WNIDS

    if manual_dir is None:
        builder.download_and_prepare()
    else:
        builder.download_and_prepare(
            download_config=tfds.download.DownloadConfig(manual_dir=manual_dir)
        )
    split = _tfds_split(data, split, builder.info.splits)
    try:
        num_examples = builder.info.splits[split].num_examples
    except (KeyError, ValueError):  # Unknown, e.g. under tfds.testing.
        num_examples = None
    dataset = builder.as_dataset(
        split=split,
        shuffle_files=shuffle_seed is not None,
        read_config=tfds.ReadConfig(
            input_context=input_context, shuffle_seed=shuffle_seed
        ),
    )

    def image_and_label(example):
        image = _to_rgb(example[image_key])
        label = tf.cast(example[label_key], tf.int32)
        if table is not None:
            label = tf.gather(table, label)
        return image, label

    dataset = dataset.map(
        image_and_label, num_parallel_calls=tf.data.AUTOTUNE, deterministic=True
    )
    return ImageSource(
        dataset=_deterministic(dataset),
        num_classes=len(class_names),
        class_names=class_names,
        num_examples=num_examples,
        image_size=224,
        resize_size=256,
        augment="imagenet",
    )


def _tfds_feature(features, key):
    try:
        return features[key]
    except (KeyError, TypeError):  # No such key, or not a FeaturesDict.
        return None


def _tfds_split(data, split, splits):
    """`split`, or its val/validation alias, checked when splits are known."""
    if not splits or not split.isidentifier() or split in splits:
        # Unknown splits (mocked data) or a split expression such as
        # "train[:10%]" or "train+test", which TFDS checks itself.
        return split
    for alias in _SPLIT_ALIASES.get(split, ()):
        if alias in splits:
            return alias
    raise UnknownSplitError(
        f"split={split!r}: {data!r} has splits {', '.join(sorted(splits))}"
    )


# Folders ----------------------------------------------------------------


def _load_folder(
    data,
    split,
    *,
    imagenet_labels,
    input_context,
    shuffle_seed,
    class_names=None,
    skip_bad_images=False,
):
    root = data.rstrip("/") or data
    if not tf.io.gfile.isdir(root):
        raise FileNotFoundError(f"data={data!r}: no such folder; {_SPEC_HELP}")
    folder = _split_folder(root, split)
    own_names, paths, labels = _list_images(folder)
    num_examples = len(paths)
    table, class_names = _align_labels(own_names, class_names, repr(folder))
    if table is not None:
        labels = table[labels]
    table = _imagenet_label_table(class_names) if imagenet_labels else None
    if table is not None:
        labels = table[labels]
        class_names = IMAGENET_WNIDS
    # Sharding the file list means every pipeline decodes only its own
    # images.
    paths, labels = _shuffle_and_shard(paths, labels, shuffle_seed, input_context)
    bad_images = BadImages(skip=skip_bad_images)
    return ImageSource(
        dataset=_decode_files(paths, labels, bad_images),
        num_classes=len(class_names),
        class_names=tuple(class_names),
        num_examples=num_examples,
        image_size=224,
        resize_size=256,
        augment="imagenet",
        bad_images=bad_images,
    )


def _decode_files(paths, labels, bad_images):
    """`(image, label)` of each file, bad files skipped or named.

    A decoding error inside `tf.data` names no file, so every element
    carries its index: errors are dropped (`ignore_errors`) and a gap in
    the indices that come out is a bad file, recorded in `bad_images` and,
    unless skipping, an error that names it. A sentinel after the last
    file finds a bad file at the end. The checks run only on a gap, so
    good files cost one comparison.
    """
    count = len(paths)
    path_table = tf.constant(np.asarray(paths, dtype=object).astype(str))
    dataset = tf.data.Dataset.from_tensor_slices(
        (paths, labels, np.arange(count, dtype="int64"))
    )
    dataset = dataset.map(
        _read_image, num_parallel_calls=tf.data.AUTOTUNE, deterministic=True
    )
    dataset = dataset.ignore_errors().concatenate(
        tf.data.Dataset.from_tensors(
            (tf.zeros([0, 0, 3], tf.uint8), tf.constant(-1, tf.int32),
             tf.constant(count, tf.int64))
        )
    )

    def check(expected, element):
        image, label, index = element

        def report():
            missing = path_table[expected:index]
            if not bad_images.skip:
                # The first is the error; the state stays at it, so that
                # elements read ahead after the error would seem missing.
                missing = missing[:1]
            recorded = tf.py_function(bad_images._record, [missing], tf.int64)
            if bad_images.skip:
                return recorded
            failed = tf.debugging.Assert(
                False,
                [
                    "cannot read image file",
                    missing[0],
                    "(truncated, corrupt, empty or not an image); "
                    "--skip-bad-images skips such files",
                ],
            )
            with tf.control_dependencies([recorded, failed]):
                return tf.identity(recorded)

        done = tf.cond(
            index > expected, report, lambda: tf.constant(0, tf.int64)
        )
        with tf.control_dependencies([done]):
            index = tf.identity(index)
        return index + 1, (image, label, index)

    dataset = dataset.scan(tf.constant(0, tf.int64), check)
    dataset = dataset.filter(lambda image, label, index: index < count)
    dataset = dataset.map(lambda image, label, index: (image, label))
    if not bad_images.skip:
        # Nothing is dropped without an error: the length stays known, so
        # that trainers can skip within a pass (`dataset.cardinality()`).
        dataset = dataset.apply(tf.data.experimental.assert_cardinality(count))
    return _deterministic(dataset)


def _read_image(path, label, index):
    image = tf.io.decode_image(
        tf.io.read_file(path), channels=3, expand_animations=False
    )
    image.set_shape([None, None, 3])
    return image, label, index


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
    for name in (split, *_SPLIT_ALIASES.get(split, ())):
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


# Demo data --------------------------------------------------------------

_DEMO_CLASSES = (
    "disk",
    "ring",
    "square",
    "diamond",
    "triangle",
    "plus",
    "cross",
    "horizontal_stripes",
    "vertical_stripes",
    "checkerboard",
)
_DEMO_SIZE = 40
_DEMO_CROP = 32
# split -> (number of images, generator seed)
_DEMO_SPLITS = {"train": (6000, 20190609), "validation": (1000, 20190610)}
_DEMO_SPLIT_ALIASES = {
    "train": "train",
    "validation": "validation",
    "val": "validation",
    "test": "validation",
}


def _load_demo(split, input_context, shuffle_seed, class_names=None):
    if split not in _DEMO_SPLIT_ALIASES:
        raise UnknownSplitError(
            f"split={split!r}: data='demo' has splits "
            f"{', '.join(repr(name) for name in _DEMO_SPLIT_ALIASES)}"
        )
    images, labels = _demo_arrays(_DEMO_SPLIT_ALIASES[split])
    num_examples = len(labels)
    table, class_names = _align_labels(_DEMO_CLASSES, class_names, "data='demo'")
    if table is not None:
        labels = table[labels]
    images, labels = _shuffle_and_shard(images, labels, shuffle_seed, input_context)
    return ImageSource(
        dataset=tf.data.Dataset.from_tensor_slices((images, labels)),
        num_classes=len(class_names),
        class_names=class_names,
        num_examples=num_examples,
        image_size=_DEMO_CROP,
        resize_size=_DEMO_SIZE,
        augment="crop",
    )


@functools.cache
def _demo_arrays(split):
    """`(images, labels)` of a demo split: uint8 `[n, 40, 40, 3]`, int32."""
    count, seed = _DEMO_SPLITS[split]
    images, labels = _draw_demo_images(count, np.random.default_rng(seed))
    # The arrays are shared by every caller through the cache.
    images.flags.writeable = False
    labels.flags.writeable = False
    return images, labels


def _draw_demo_images(count, rng):
    f32 = np.float32
    num_classes = len(_DEMO_CLASSES)
    labels = rng.permutation(np.arange(count) % num_classes).astype("int32")

    def draw(low, high):
        return rng.uniform(low, high, count).astype(f32)[:, None, None]

    center_x, center_y = draw(12, 28), draw(12, 28)
    radius = draw(6, 11)
    angle = draw(-0.3, 0.3)
    # Stripe periods of 2.5-4.5 pixels: fine enough to alias after one
    # stride-2 downsampling, coarse enough to learn. In units of radius.
    period = draw(2.5, 4.5) / radius
    phase = draw(0, 1)

    rows, cols = np.mgrid[0:_DEMO_SIZE, 0:_DEMO_SIZE].astype(f32) + 0.5
    mask = np.empty((count, _DEMO_SIZE, _DEMO_SIZE), bool)
    for k in range(num_classes):
        i = np.flatnonzero(labels == k)
        dx, dy = cols - center_x[i], rows - center_y[i]
        cos, sin = np.cos(angle[i]), np.sin(angle[i])
        # Coordinates in the shape's frame, its radius being 1.
        u = (cos * dx + sin * dy) / radius[i]
        v = (cos * dy - sin * dx) / radius[i]
        mask[i] = _demo_shape(k, u, v, period[i], phase[i])

    foreground = rng.uniform(0, 255, (count, 1, 1, 3)).astype(f32)
    background = rng.uniform(0, 255, (count, 1, 1, 3)).astype(f32)
    # Push the colours apart where they nearly match, so that every shape
    # stays visible under the noise.
    difference = foreground - background
    contrast = np.linalg.norm(difference, axis=-1, keepdims=True)
    min_contrast = 40.0
    foreground = np.where(
        contrast < min_contrast,
        background + difference / np.maximum(contrast, 1e-3) * min_contrast,
        foreground,
    )
    images = np.where(mask[..., None], foreground, background)
    images += rng.standard_normal(images.shape, dtype=f32) * 28.0
    return np.clip(images, 0, 255).round().astype("uint8"), labels


def _demo_shape(k, u, v, period, phase):
    """Mask of demo class `k` in shape coordinates `u, v` (radius 1)."""
    abs_u, abs_v = np.abs(u), np.abs(v)
    radius = np.sqrt(u * u + v * v)
    square = np.maximum(abs_u, abs_v)
    name = _DEMO_CLASSES[k]
    if name == "disk":
        return radius <= 1.0
    if name == "ring":
        return (radius <= 1.0) & (radius >= 0.55)
    if name == "square":
        return square <= 0.8
    if name == "diamond":
        return abs_u + abs_v <= 1.1
    if name == "triangle":
        return (v <= 0.75) & (abs_u <= (v + 1.0) * 0.6)
    if name == "plus":
        return ((abs_u <= 0.28) & (abs_v <= 1.0)) | (
            (abs_v <= 0.28) & (abs_u <= 1.0)
        )
    if name == "cross":
        diagonals = (np.abs(u - v) <= 0.4) | (np.abs(u + v) <= 0.4)
        return diagonals & (radius <= 1.1)
    if name == "horizontal_stripes":
        return (square <= 0.9) & (np.mod(v / period + phase, 1.0) < 0.5)
    if name == "vertical_stripes":
        return (square <= 0.9) & (np.mod(u / period + phase, 1.0) < 0.5)
    cells = np.floor(u / period + phase) + np.floor(v / period + phase)
    return (square <= 0.9) & (cells % 2 == 0)


def _shuffle_and_shard(items, labels, shuffle_seed, input_context):
    """A seeded permutation, then this input pipeline's every n-th item."""
    if shuffle_seed is not None:
        order = np.random.default_rng(shuffle_seed).permutation(len(labels))
        items, labels = items[order], labels[order]
    if input_context is not None:
        shard = slice(
            input_context.input_pipeline_id,
            None,
            input_context.num_input_pipelines,
        )
        items, labels = items[shard], labels[shard]
    return items, labels

"""TensorFlow Datasets as a source: `"tfds:NAME[:VERSION][:SPLIT]"`.

Any TFDS dataset with an `Image` and a `ClassLabel` feature, e.g.
`"tfds:imagenet2012"` (whose tarballs TFDS cannot download: pass the
folder holding them as `manual_dir`) or `"tfds:imagenette"`. TFDS is
imported only when such a spec is opened: it is slow to import.
"""

from __future__ import annotations

import re

import numpy as np
import tensorflow as tf

from .labels import IMAGENET_WNIDS
from .labels import align_labels
from .labels import imagenet_label_table
from .source import SPEC_HELP
from .source import SPLIT_ALIASES
from .source import ImageSource
from .source import UnknownSplitError
from .source import deterministic

# NAME may carry a config and a `:x.y.z` version, whose colon is not the
# split's.
_TFDS_SPEC = re.compile(
    r"tfds:(?P<name>[^:\s]+(?::[\d*]+\.[\d*]+\.[\d*]+)?)(?::(?P<split>.+))?"
)


def parse_tfds_spec(data: str) -> tuple[str, str | None] | None:
    """`"tfds:NAME[:VERSION][:SPLIT]"` -> `(NAME[:VERSION], SPLIT or None)`.

    Args:
        data: a data spec.

    Returns:
        `(name, split)`, the split None when the spec names none; None
        when `data` is not a TFDS spec.

    Example:

    >>> parse_tfds_spec("tfds:imagenette/320px-v2:1.0.0:train[:5]")
    ('imagenette/320px-v2:1.0.0', 'train[:5]')
    >>> parse_tfds_spec("demo") is None
    True
    """
    match = _TFDS_SPEC.fullmatch(data)
    return (match["name"], match["split"]) if match else None


def load_tfds(
    data: str,
    split: str,
    *,
    data_dir: str | None,
    manual_dir: str | None,
    imagenet_labels: bool,
    input_context: tf.distribute.InputContext | None,
    shuffle_seed: int | None,
    class_names: tuple[str, ...] | None = None,
) -> ImageSource:
    """Opens a split of a TFDS dataset, preparing it on first use.

    The dataset's features are checked before `download_and_prepare`,
    which can take hours. The arguments are checked by
    `recipes.data.load_images`, which documents them.

    Args:
        data: `"tfds:NAME[:VERSION][:SPLIT]"`; a split here overrides
            `split`.
        split: the split to read, a TFDS split string.
        data_dir: TFDS's data folder, or None for its default.
        manual_dir: the folder of files TFDS cannot download, or None.
        imagenet_labels: label with ImageNet's indices when every label
            name is a WordNet id.
        input_context: read only this input pipeline's file shards.
        shuffle_seed: shuffle the file shards with this seed, or None.
        class_names: label by these names (the training split's).

    Returns:
        An `ImageSource` of RGB images (gray ones repeated, alpha
        dropped).

    Raises:
        ValueError: a malformed spec, an unknown dataset or split, or a
            dataset without an image and a class label.
        FileNotFoundError: when `manual_dir` is no folder.
    """
    parsed = parse_tfds_spec(data)
    if not parsed:
        raise ValueError(f"data={data!r}: {SPEC_HELP}")
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
            f"{SPEC_HELP}"
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
    table, class_names = align_labels(
        label_feature.names, class_names, f"data={data!r}"
    )
    wnid_table = imagenet_label_table(class_names) if imagenet_labels else None
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
        dataset=deterministic(dataset),
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
    for alias in SPLIT_ALIASES.get(split, ()):
        if alias in splits:
            return alias
    raise UnknownSplitError(
        f"split={split!r}: {data!r} has splits {', '.join(sorted(splits))}"
    )



def _to_rgb(image):
    channels = image.shape[-1]
    if channels == 1:
        return tf.image.grayscale_to_rgb(image)
    if channels == 4:
        return image[..., :3]
    return image

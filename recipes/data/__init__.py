"""Input pipelines of the training recipes.

`load_images` turns a data spec into an `ImageSource`: an unbatched
`tf.data.Dataset` of `(image, label)` pairs — `uint8` RGB images of any
size and `int32` labels — with the class names and the crop sizes and
augmentation the recipes suggest for it. Three specs are understood:

* `"tfds:NAME"` or `"tfds:NAME:SPLIT"`: a TensorFlow Datasets dataset,
  e.g. `"tfds:imagenet2012"` (whose tarballs TFDS cannot download: pass
  the folder holding them as `manual_dir`) or `"tfds:imagenette"`
  (`recipes.data.tfds`).
* a folder `ROOT/[SPLIT/]CLASS/IMAGE.{jpg,jpeg,png}`: torchvision's
  `ImageFolder` layout, which is how ImageNet is usually unpacked
  (`ROOT/train/n01440764/*.JPEG`, `ROOT/val/n01440764/*.JPEG`)
  (`recipes.data.folder`).
* `"demo"`: a small dataset of procedurally drawn shapes and patterns,
  generated in memory (see `load_images`), so that the recipes run on a
  fresh machine without a download (`recipes.data.demo`).

`train_dataset` and `eval_dataset` (`recipes.data.transforms`) then
augment or center-crop, batch and normalise an `ImageSource` as the
reference's torchvision pipelines do. Training batches are a pure
function of `(seed, epoch)`, so a trainer can resume mid-epoch by
skipping the batches it has already seen.

One job per module:

* `load`: `load_images`, the argument checks, the choice of source.
* `source`: `ImageSource` and what the sources share.
* `tfds`, `folder`, `demo`: the three sources.
* `bad_images`: decoding a folder's files, naming or skipping bad ones.
* `image_header`: an image file's size from its header, before decoding.
* `labels`: aligning a split's labels onto the training classes and
  onto ImageNet's.
* `transforms`: augmentation, cropping, batching, normalisation.
"""

from .bad_images import BadImages
from .labels import IMAGENET_WNIDS
from .load import load_images
from .source import ImageSource
from .source import UnknownSplitError
from .tfds import parse_tfds_spec
from .transforms import eval_dataset
from .transforms import normalize
from .transforms import train_dataset

__all__ = [
    "IMAGENET_WNIDS",
    "BadImages",
    "ImageSource",
    "UnknownSplitError",
    "eval_dataset",
    "load_images",
    "normalize",
    "parse_tfds_spec",
    "train_dataset",
]

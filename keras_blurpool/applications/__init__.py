"""Anti-aliased architectures of the reference, keras.applications style.

Every builder takes `antialias` (`"blur"`, `"avg"`, None for the plain
network, or a callable making the layer), `filter_size` (1-7; None also
builds the plain network) and `pad_type`, builds in
`keras.config.image_data_format()`, and returns a functional
`keras.Model` that equals the PyTorch reference layer for layer once its
weights are loaded.
"""

from keras_blurpool.applications import alexnet
from keras_blurpool.applications import densenet
from keras_blurpool.applications import mobilenet_v2
from keras_blurpool.applications import resnet
from keras_blurpool.applications import vgg
from keras_blurpool.applications.alexnet import AlexNet
from keras_blurpool.applications.densenet import DenseNet121
from keras_blurpool.applications.densenet import DenseNet161
from keras_blurpool.applications.densenet import DenseNet169
from keras_blurpool.applications.densenet import DenseNet201
from keras_blurpool.applications.imagenet_utils import decode_predictions
from keras_blurpool.applications.imagenet_utils import preprocess_input
from keras_blurpool.applications.mobilenet_v2 import MobileNetV2
from keras_blurpool.applications.resnet import ResNet18
from keras_blurpool.applications.resnet import ResNet34
from keras_blurpool.applications.resnet import ResNet50
from keras_blurpool.applications.resnet import ResNet101
from keras_blurpool.applications.resnet import ResNet152
from keras_blurpool.applications.resnet import ResNeXt50_32x4d
from keras_blurpool.applications.resnet import ResNeXt101_32x8d
from keras_blurpool.applications.resnet import WideResNet50_2
from keras_blurpool.applications.resnet import WideResNet101_2
from keras_blurpool.applications.vgg import VGG11
from keras_blurpool.applications.vgg import VGG11BN
from keras_blurpool.applications.vgg import VGG13
from keras_blurpool.applications.vgg import VGG13BN
from keras_blurpool.applications.vgg import VGG16
from keras_blurpool.applications.vgg import VGG16BN
from keras_blurpool.applications.vgg import VGG19
from keras_blurpool.applications.vgg import VGG19BN
from keras_blurpool.layers import is_antialiasing

# Each family module defines `_torch_names(model) -> dict | None`: the
# PyTorch module name of every layer with weights (and of every
# anti-aliasing layer), or None when the model is not of that family.
_FAMILIES = (resnet, vgg, alexnet, densenet, mobilenet_v2)


class _WithoutBlurPool:
    """An antialiased model as its plain (torchvision) twin would look.

    Anti-aliasing layers (BlurPool, the average pool) have no parameters,
    so hiding them leaves the twin's weighted layers, and the families
    then give torchvision's module names.
    """

    def __init__(self, model):
        self.name = model.name
        self.layers = [
            layer for layer in model.layers if not is_antialiasing(layer)
        ]


def _torch_name_maps(model):
    """Candidate name maps: the reference's, then torchvision's."""
    views = [model]
    if any(is_antialiasing(layer) for layer in model.layers):
        views.append(_WithoutBlurPool(model))
    for view in views:
        for family in _FAMILIES:
            names = family._torch_names(view)
            if names is not None:
                yield names

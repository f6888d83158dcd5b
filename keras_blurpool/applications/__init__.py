"""Anti-aliased architectures, keras.applications style.

Every builder (`ResNet50`, `VGG16BN`, `ResNetAA50D`, ...) is made by
`builder.Family.builder` from its family's named variant, so all of them
share one signature (`arguments.ARGUMENTS`: the keras.applications
arguments, then `antialias`, `filter_size`, `pad_type` and, where the
family has them, `pool_only` and `padding`), one set of argument checks
and one docstring text per argument. They build in
`keras.config.image_data_format()` and return a functional `keras.Model`
equal, layer for layer, to the PyTorch reference (`antialiased_cnns`) or,
for `timm_resnet`, to timm once its weights are loaded. Each family
module registers its architectures in `registry`.
"""

from keras_blurpool.applications import alexnet
from keras_blurpool.applications import convnext_afc
from keras_blurpool.applications import densenet
from keras_blurpool.applications import mobilenet_v2
from keras_blurpool.applications import registry
from keras_blurpool.applications import resnet
from keras_blurpool.applications import timm_resnet
from keras_blurpool.applications import vgg
from keras_blurpool.applications.alexnet import AlexNet
from keras_blurpool.applications.convnext_afc import ConvNeXtTinyAFC
from keras_blurpool.applications.convnext_afc import ConvNeXtTinyAPS
from keras_blurpool.applications.convnext_afc import ConvNeXtTinyCircular
from keras_blurpool.applications.convnext_afc import load_afc_checkpoint
from keras_blurpool.applications.densenet import DenseNet121
from keras_blurpool.applications.densenet import DenseNet161
from keras_blurpool.applications.densenet import DenseNet169
from keras_blurpool.applications.densenet import DenseNet201
from keras_blurpool.applications.imagenet_utils import decode_predictions
from keras_blurpool.applications.imagenet_utils import preprocess_input
from keras_blurpool.applications.loading import imagenet_state_dict
from keras_blurpool.applications.loading import load_torch_weights
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
from keras_blurpool.applications.timm_resnet import ResNetAA34D
from keras_blurpool.applications.timm_resnet import ResNetAA50
from keras_blurpool.applications.timm_resnet import ResNetAA50D
from keras_blurpool.applications.timm_resnet import ResNetAA101D
from keras_blurpool.applications.timm_resnet import ResNetBlur18
from keras_blurpool.applications.timm_resnet import ResNetBlur50
from keras_blurpool.applications.timm_resnet import ResNetBlur50D
from keras_blurpool.applications.timm_resnet import ResNetBlur101D
from keras_blurpool.applications.timm_resnet import SEResNetAA50D
from keras_blurpool.applications.timm_resnet import SEResNeXtAA101D_32x8d
from keras_blurpool.applications.timm_resnet import SEResNeXtAA201D_32x8d
from keras_blurpool.applications.vgg import VGG11
from keras_blurpool.applications.vgg import VGG11BN
from keras_blurpool.applications.vgg import VGG13
from keras_blurpool.applications.vgg import VGG13BN
from keras_blurpool.applications.vgg import VGG16
from keras_blurpool.applications.vgg import VGG16BN
from keras_blurpool.applications.vgg import VGG19
from keras_blurpool.applications.vgg import VGG19BN

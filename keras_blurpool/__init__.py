"""keras-blurpool: anti-aliased CNNs (Zhang, ICML 2019) for Keras 3.

Strided convolutions and pools alias: shift the input by a pixel and the
features change. Anti-aliasing evaluates the strided operation at stride
1, blurs with a fixed binomial filter, then subsamples ("Making
Convolutional Networks Shift-Invariant Again", ICML 2019). Everything
runs on TensorFlow, JAX and PyTorch unless noted.

Layers:
    BlurPool2D, BlurPool1D, BlurPool3D: blur, then subsample.
    MaxBlurPool2D: max pool at stride 1, then BlurPool2D.
    BlurUpSampling2D: anti-aliased upsampling for decoders.
    APSPool2D, LPSPool2D, CircularPadding2D: exactly shift-invariant
        networks (adaptive / learnable polyphase sampling).
    AntialiasAvgPool2D, binomial_filter, create_antialias,
    is_antialiasing, register_antialiasing, Antialiasing.
    AdaptiveAvgPool2D: PyTorch's adaptive average pooling (VGG, AlexNet).
    IdealDownsampling2D, IdealUpsampling2D, PolynomialActivation,
    LowpassPolynomialActivation, AliasFreeLayerNormalization, LayerScale,
    ideal_lowpass: alias-free ConvNets (AFC; fractional shifts too).

Models (keras_blurpool.applications):
    ResNet18 ... ResNet152, ResNeXt, WideResNet, VGG, DenseNet,
    MobileNetV2, AlexNet (the reference's 23 architectures) and timm's
    ResNetBlur*/ResNetAA*/SEResNeXtAA*, with the keras.applications
    signature; weights="imagenet" loads the released weights (the
    reference's are CC BY-NC-SA 4.0, non-commercial; timm's Apache-2.0).
    ConvNeXtTinyAFC and its controls ConvNeXtTinyCircular and
    ConvNeXtTinyAPS (alias-free ConvNets; the authors' checkpoints load by
    path). preprocess_input, decode_predictions.

Your own model:
    antialias_model(model): anti-aliases any Functional or Sequential
        Keras model in one call, weights kept.

Weights:
    load_torch_weights(model, state_dict), transfer_weights(source,
    target); keras_blurpool.weights.read_torch_checkpoint and
    read_safetensors read PyTorch files without PyTorch; the
    keras-blurpool-convert command.

Evaluation (keras_blurpool.evaluation, needs TensorFlow):
    accuracy, shift_consistency, circular_shift_consistency,
    diagonal_shift for any Keras classifier.

Training:
    keras_blurpool.callbacks: SyncBatchNormStatistics (model.fit under
    MirroredStrategy), LPSTemperatureScheduler. The repository's recipes/
    has the `python -m recipes.train` and `recipes.evaluate` commands.

Saving: a .keras file holding these layers loads with
keras.saving.load_model after `import keras_blurpool`, which registers
them with Keras.

Documentation: README.md and docs/ in the repository.
"""

from keras_blurpool import applications
from keras_blurpool import callbacks
from keras_blurpool.applications import load_torch_weights
from keras_blurpool.layers import AdaptiveAvgPool2D
from keras_blurpool.layers import AliasFreeLayerNormalization
from keras_blurpool.layers import AntiAliasAvgPool2D  # deprecated alias
from keras_blurpool.layers import AntialiasAvgPool2D
from keras_blurpool.layers import AntiAliasing  # deprecated alias
from keras_blurpool.layers import Antialiasing
from keras_blurpool.layers import APSPool2D
from keras_blurpool.layers import APSUpSampling2D
from keras_blurpool.layers import BlurPool1D
from keras_blurpool.layers import BlurPool2D
from keras_blurpool.layers import BlurPool3D
from keras_blurpool.layers import BlurUpSampling2D
from keras_blurpool.layers import CircularPadding2D
from keras_blurpool.layers import IdealDownsampling2D
from keras_blurpool.layers import IdealUpsampling2D
from keras_blurpool.layers import LayerScale
from keras_blurpool.layers import LowpassPolynomialActivation
from keras_blurpool.layers import LPSPool2D
from keras_blurpool.layers import MaxBlurPool2D
from keras_blurpool.layers import PolynomialActivation
from keras_blurpool.layers import binomial_filter
from keras_blurpool.layers import create_antialias
from keras_blurpool.layers import ideal_lowpass
from keras_blurpool.layers import is_antialiasing
from keras_blurpool.layers import register_antialiasing
from keras_blurpool.surgery import AntialiasReport
from keras_blurpool.surgery import antialias_model
from keras_blurpool.weights import transfer_weights

__version__ = "0.1.0"

__all__ = [
    "AdaptiveAvgPool2D",
    "APSPool2D",
    "APSUpSampling2D",
    "CircularPadding2D",
    "LPSPool2D",
    "AntialiasAvgPool2D",
    "Antialiasing",
    "AntialiasReport",
    "BlurPool1D",
    "BlurPool2D",
    "BlurPool3D",
    "BlurUpSampling2D",
    "MaxBlurPool2D",
    "AliasFreeLayerNormalization",
    "IdealDownsampling2D",
    "IdealUpsampling2D",
    "LayerScale",
    "LowpassPolynomialActivation",
    "PolynomialActivation",
    "ideal_lowpass",
    "antialias_model",
    "applications",
    "callbacks",
    "binomial_filter",
    "create_antialias",
    "is_antialiasing",
    "load_torch_weights",
    "register_antialiasing",
    "transfer_weights",
    # Deprecated aliases (the names before the spelling was made one).
    "AntiAliasAvgPool2D",
    "AntiAliasing",
]

"""keras-blurpool: anti-aliased CNNs (Zhang, ICML 2019) for Keras 3."""

from keras_blurpool import applications
from keras_blurpool import callbacks
from keras_blurpool.applications import load_torch_weights
from keras_blurpool.layers import AntiAliasAvgPool2D  # deprecated alias
from keras_blurpool.layers import AntialiasAvgPool2D
from keras_blurpool.layers import AntiAliasing  # deprecated alias
from keras_blurpool.layers import Antialiasing
from keras_blurpool.layers import APSPool2D
from keras_blurpool.layers import BlurPool1D
from keras_blurpool.layers import BlurPool2D
from keras_blurpool.layers import BlurPool3D
from keras_blurpool.layers import BlurUpSampling2D
from keras_blurpool.layers import CircularPadding2D
from keras_blurpool.layers import LPSPool2D
from keras_blurpool.layers import MaxBlurPool2D
from keras_blurpool.layers import binomial_filter
from keras_blurpool.layers import create_antialias
from keras_blurpool.layers import is_antialiasing
from keras_blurpool.layers import register_antialiasing
from keras_blurpool.surgery import AntialiasReport
from keras_blurpool.surgery import antialias_model
from keras_blurpool.weights import transfer_weights

__version__ = "0.1.0"

__all__ = [
    "APSPool2D",
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

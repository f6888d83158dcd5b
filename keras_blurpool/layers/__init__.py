"""Anti-aliased downsampling layers."""

from keras_blurpool.layers._padding import standardize_pad_type
from keras_blurpool.layers.adaptive_pooling import AdaptiveAvgPool2D
from keras_blurpool.layers.alias_free_norm import AliasFreeLayerNormalization
from keras_blurpool.layers.antialias import AntiAliasAvgPool2D  # deprecated alias
from keras_blurpool.layers.antialias import AntialiasAvgPool2D
from keras_blurpool.layers.antialias import AntiAliasing  # deprecated alias
from keras_blurpool.layers.antialias import Antialiasing
from keras_blurpool.layers.antialias import check_antialias
from keras_blurpool.layers.antialias import create_antialias
from keras_blurpool.layers.antialias import is_antialiasing
from keras_blurpool.layers.antialias import register_antialiasing
from keras_blurpool.layers.blur_pool import BlurPool1D
from keras_blurpool.layers.blur_pool import BlurPool2D
from keras_blurpool.layers.blur_pool import BlurPool3D
from keras_blurpool.layers.blur_pool import binomial_filter
from keras_blurpool.layers.blur_upsampling import BlurUpSampling2D
from keras_blurpool.layers.circular_padding import CircularPadding2D
from keras_blurpool.layers.ideal_sampling import IdealDownsampling2D
from keras_blurpool.layers.ideal_sampling import IdealUpsampling2D
from keras_blurpool.layers.ideal_sampling import ideal_lowpass
from keras_blurpool.layers.layer_scale import LayerScale
from keras_blurpool.layers.max_blur_pool import MaxBlurPool2D
from keras_blurpool.layers.polynomial_activation import LowpassPolynomialActivation
from keras_blurpool.layers.polynomial_activation import PolynomialActivation
from keras_blurpool.layers.polyphase import APSPool2D
from keras_blurpool.layers.polyphase import LPSPool2D
from keras_blurpool.layers.polyphase_upsampling import APSUpSampling2D

__all__ = [
    "AliasFreeLayerNormalization",
    "IdealDownsampling2D",
    "IdealUpsampling2D",
    "LayerScale",
    "LowpassPolynomialActivation",
    "PolynomialActivation",
    "ideal_lowpass",
    "AdaptiveAvgPool2D",
    "APSPool2D",
    "APSUpSampling2D",
    "LPSPool2D",
    "CircularPadding2D",
    "AntialiasAvgPool2D",
    "Antialiasing",
    "BlurPool1D",
    "BlurPool2D",
    "BlurPool3D",
    "BlurUpSampling2D",
    "MaxBlurPool2D",
    "binomial_filter",
    "check_antialias",
    "create_antialias",
    "is_antialiasing",
    "register_antialiasing",
    "standardize_pad_type",
    # Deprecated aliases (the names before the spelling was made one).
    "AntiAliasAvgPool2D",
    "AntiAliasing",
]

"""keras-blurpool: anti-aliased CNNs (Zhang, ICML 2019) for Keras 3."""

from keras_blurpool.layers import BlurPool1D
from keras_blurpool.layers import BlurPool2D
from keras_blurpool.layers import MaxBlurPool2D
from keras_blurpool.layers import binomial_filter

__version__ = "0.1.0"

__all__ = ["BlurPool1D", "BlurPool2D", "MaxBlurPool2D", "binomial_filter"]

"""Anti-aliased downsampling layers."""

from keras_blurpool.layers.blur_pool import BlurPool1D
from keras_blurpool.layers.blur_pool import BlurPool2D
from keras_blurpool.layers.blur_pool import binomial_filter
from keras_blurpool.layers.max_blur_pool import MaxBlurPool2D

__all__ = ["BlurPool1D", "BlurPool2D", "MaxBlurPool2D", "binomial_filter"]

"""Reading PyTorch checkpoints and safetensors files, mapping them onto Keras variables, and
fetching and caching released weights. Knows no architecture: the name
maps come from `keras_blurpool.applications`."""

from keras_blurpool.weights import download
from keras_blurpool.weights.checkpoint import CHECKPOINT_SUFFIXES
from keras_blurpool.weights.checkpoint import read_checkpoint
from keras_blurpool.weights.safetensors import read_safetensors
from keras_blurpool.weights.torch_checkpoint import read_torch_checkpoint
from keras_blurpool.weights.torch_state_dict import assign_state_dict
from keras_blurpool.weights.transfer import transfer_weights

__all__ = [
    "CHECKPOINT_SUFFIXES",
    "assign_state_dict",
    "download",
    "read_checkpoint",
    "read_safetensors",
    "read_torch_checkpoint",
    "transfer_weights",
]

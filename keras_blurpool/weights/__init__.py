"""Reading and converting weights of the PyTorch reference."""

from keras_blurpool.weights.torch_checkpoint import read_torch_checkpoint
from keras_blurpool.weights.torch_state_dict import load_torch_weights
from keras_blurpool.weights.transfer import transfer_weights

__all__ = ["load_torch_weights", "read_torch_checkpoint", "transfer_weights"]

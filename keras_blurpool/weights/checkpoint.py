"""One entry point for every checkpoint format the package reads."""

from __future__ import annotations

import os

from keras_blurpool.weights.safetensors import read_safetensors
from keras_blurpool.weights.torch_checkpoint import read_torch_checkpoint

# What `read_checkpoint` accepts, by file name.
CHECKPOINT_SUFFIXES = (".pth", ".pth.tar", ".pt", ".safetensors")


def read_checkpoint(path: str | os.PathLike) -> dict:
    """The state dict of a PyTorch checkpoint or a `.safetensors` file.

    Either is read without PyTorch and without running anything the file
    names; the suffix picks the reader (`read_safetensors` for
    `.safetensors`, `read_torch_checkpoint` otherwise).

    Args:
        path: the file.

    Returns:
        Parameter names to NumPy arrays.

    Raises:
        ValueError: naming the path, for a corrupted or hostile file.
    """
    if os.fspath(path).endswith(".safetensors"):
        return read_safetensors(path)
    return read_torch_checkpoint(path)

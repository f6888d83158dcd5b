"""Placeholder: being written (replaced by the family implementation)."""

def AlexNet(*args, **kwargs):
    raise NotImplementedError("AlexNet")

def _torch_names(model):
    return None

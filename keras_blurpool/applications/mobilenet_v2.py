"""Placeholder: being written (replaced by the family implementation)."""

def MobileNetV2(*args, **kwargs):
    raise NotImplementedError("MobileNetV2")

def _torch_names(model):
    return None

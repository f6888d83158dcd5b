"""Placeholder: being written (replaced by the family implementation)."""

def VGG11(*args, **kwargs):
    raise NotImplementedError("VGG11")

def VGG13(*args, **kwargs):
    raise NotImplementedError("VGG13")

def VGG16(*args, **kwargs):
    raise NotImplementedError("VGG16")

def VGG19(*args, **kwargs):
    raise NotImplementedError("VGG19")

def VGG11BN(*args, **kwargs):
    raise NotImplementedError("VGG11BN")

def VGG13BN(*args, **kwargs):
    raise NotImplementedError("VGG13BN")

def VGG16BN(*args, **kwargs):
    raise NotImplementedError("VGG16BN")

def VGG19BN(*args, **kwargs):
    raise NotImplementedError("VGG19BN")

def _torch_names(model):
    return None

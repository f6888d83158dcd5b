"""Placeholder: being written (replaced by the family implementation)."""

def DenseNet121(*args, **kwargs):
    raise NotImplementedError("DenseNet121")

def DenseNet161(*args, **kwargs):
    raise NotImplementedError("DenseNet161")

def DenseNet169(*args, **kwargs):
    raise NotImplementedError("DenseNet169")

def DenseNet201(*args, **kwargs):
    raise NotImplementedError("DenseNet201")

def _torch_names(model):
    return None

"""Placeholder: being written (replaced by the family implementation)."""

def ResNet18(*args, **kwargs):
    raise NotImplementedError("ResNet18")

def ResNet34(*args, **kwargs):
    raise NotImplementedError("ResNet34")

def ResNet50(*args, **kwargs):
    raise NotImplementedError("ResNet50")

def ResNet101(*args, **kwargs):
    raise NotImplementedError("ResNet101")

def ResNet152(*args, **kwargs):
    raise NotImplementedError("ResNet152")

def ResNeXt50_32x4d(*args, **kwargs):
    raise NotImplementedError("ResNeXt50_32x4d")

def ResNeXt101_32x8d(*args, **kwargs):
    raise NotImplementedError("ResNeXt101_32x8d")

def WideResNet50_2(*args, **kwargs):
    raise NotImplementedError("WideResNet50_2")

def WideResNet101_2(*args, **kwargs):
    raise NotImplementedError("WideResNet101_2")

def _torch_names(model):
    return None

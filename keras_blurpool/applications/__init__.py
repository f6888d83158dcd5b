"""Anti-aliased architectures of the reference, keras.applications style.

Every builder takes `filter_size` (1-7; None builds the plain network)
and returns a functional `keras.Model` that equals the PyTorch reference
layer for layer once its weights are loaded.
"""

# Each family module defines `_torch_names(model) -> dict | None`: the
# PyTorch module name of every layer with weights (and of every
# BlurPool2D), or None when the model is not of that family.
_FAMILIES = []


def _torch_name_maps(model):
    for family in _FAMILIES:
        names = family._torch_names(model)
        if names is not None:
            yield names

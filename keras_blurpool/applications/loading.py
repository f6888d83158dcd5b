"""Loading weights into the zoo: one path for every source.

`load_torch_weights` (a state dict in memory), a builder's `weights=`
(`"imagenet"`, a `.pth` checkpoint or a `.weights.h5` file),
`python -m keras_blurpool.convert` and `recipes.train --finetune-from` all
come here, so every one of them applies the same fix-ups: each family's
own (DenseNet's old key names, as torchvision's released DenseNets have
them), and the classifier dropped when the model has none. The released
weights (`imagenet_state_dict`) are cached only once they have loaded.
"""

from __future__ import annotations

import difflib
import os
from collections.abc import Mapping

import keras
import numpy as np

from keras_blurpool.applications import pretrained
from keras_blurpool.applications import registry
from keras_blurpool.applications.arguments import antialias_spec
from keras_blurpool.layers import is_antialiasing
from keras_blurpool.weights import CHECKPOINT_SUFFIXES
from keras_blurpool.weights import assign_state_dict
from keras_blurpool.weights import download
from keras_blurpool.weights import read_checkpoint
from keras_blurpool.weights import values
from keras_blurpool.weights.files import file_problem


class _WithoutAntialiasing:
    """An anti-aliased model as its plain (torchvision) twin would look.

    Anti-aliasing layers have no parameters, so hiding them leaves the
    twin's weighted layers, and the families then give torchvision's
    module names.
    """

    def __init__(self, model):
        self.name = model.name
        self.layers = [
            layer for layer in model.layers if not is_antialiasing(layer)
        ]


def _without_head(state_dict: dict, prefixes, names: Mapping) -> dict:
    """Drops the classifier's keys when the model has no classifier."""
    if any(
        (torch_name + ".").startswith(prefixes) for torch_name in names.values()
    ):
        return state_dict
    return {k: v for k, v in state_dict.items() if not k.startswith(prefixes)}


def _views(model) -> list:
    """The model, and its plain twin's view when it anti-aliases."""
    views = [model]
    if any(is_antialiasing(layer) for layer in model.layers):
        views.append(_WithoutAntialiasing(model))
    return views


def _candidates(model, state_dict: dict):
    """`(names, state_dict)` for each family whose name map fits the model."""
    views = _views(model)
    for family in registry.families():
        fixed = None
        for view in views:
            names = family.torch_names(view)
            if names is None:
                continue
            if fixed is None:
                fixed = family.fix_state_dict(state_dict)
            yield names, _without_head(fixed, family.head_prefixes, names)


def load_torch_weights(
    model: keras.Model,
    state_dict: Mapping[str, np.ndarray],
    *,
    allow_nonfinite: bool = False,
) -> keras.Model:
    """Copies a PyTorch state dict of the reference (or torchvision) into
    a model of `keras_blurpool.applications`.

    Maps the names of `antialiased_cnns` and torchvision modules onto our
    layers, after the family's fix-ups (old DenseNet keys such as
    `denselayer1.norm.1.weight` are renamed as torchvision does). A model
    built with `include_top=False` ignores the checkpoint's classifier.
    BlurPool `filt` buffers are checked against the model's filters;
    `num_batches_tracked` is ignored. NaN and infinite values, values
    beyond a variable's range (a float64 1e300 into float32) and negative
    `running_var` values are refused, naming the tensor. Nothing is
    assigned unless every key fits.

    Args:
        model: a model from `keras_blurpool.applications`.
        state_dict: mapping of PyTorch names to NumPy arrays (or anything
            `numpy.asarray` accepts), e.g. `read_torch_checkpoint(path)`.
        allow_nonfinite: `True` loads NaN, infinite and out-of-range
            values and negative variances instead of refusing them (the
            network's outputs are then NaN or meaningless). A builder's
            `weights=` always refuses them: build with `weights=None` and
            call this function to load such weights.

    Returns:
        The model, with its weights replaced.

    Raises:
        ValueError: listing every unexpected, missing or mis-shaped key,
            or, when they all fit, every refused value.

    Example:

    >>> model = keras_blurpool.applications.ResNet18()  # doctest: +SKIP
    >>> keras_blurpool.load_torch_weights(model, state_dict)  # doctest: +SKIP
    """
    if not isinstance(model, keras.Model):
        raise ValueError(
            f"`model` must be a keras.Model. Received: {type(model).__name__}"
        )
    if not isinstance(state_dict, Mapping):
        raise ValueError(
            "`state_dict` must be a mapping of names to arrays. "
            f"Received: {type(state_dict).__name__}"
        )
    return assign_state_dict(
        model,
        _candidates(model, dict(state_dict)),
        allow_nonfinite=allow_nonfinite,
    )


def is_released(weights, arch: str) -> bool:
    """Whether a builder's `weights` asks for released ImageNet weights
    (`"imagenet"` or a released tag of `arch`)."""
    if not isinstance(weights, str):
        return False
    return weights == "imagenet" or pretrained.hub_tag(arch, weights) is not None


def check_weights(
    weights,
    *,
    arch: str,
    include_top: bool,
    classes,
    antialias,
    filter_size,
    pad_type: str = "reflect",
    pool_only: bool | None = None,
    padding: str = "zero",
) -> None:
    """Early, named errors for a builder's `weights` argument.

    Args:
        weights: the builder's `weights`: None, `"imagenet"`, a released
            tag of `arch`, or the path of a Keras `.weights.h5` file, of a
            PyTorch checkpoint (`.pth`, `.pth.tar`, `.pt`) or of a
            `.safetensors` file.
        arch: the registry name of the architecture (`"resnet50"`,
            `"vgg16_bn"`, ...), which picks the released weights; never
            the user's model `name`.
        include_top: the builder's `include_top`.
        classes: the builder's `classes`.
        antialias: the builder's `antialias`.
        filter_size: the builder's `filter_size`.
        pad_type: the builder's `pad_type`.
        pool_only: the builder's `pool_only`, where it has one.
        padding: the builder's `padding`, where it has one.

    Raises:
        ValueError: naming the argument, the value and what is allowed,
            also when the released weights do not fit the other arguments.
    """
    if weights is None:
        return
    spec = registry.ARCHITECTURES.get(arch)  # None: a family not registered
    tags = list(spec.hub_weights) if spec is not None else []
    allowed = (
        "None, 'imagenet', "
        + (f"a released tag ({', '.join(map(repr, tags))}), " if tags else "")
        + "or the path of a Keras `.weights.h5` file or of "
        "a PyTorch checkpoint (`.pth`, `.pth.tar`, `.pt`) or `.safetensors` "
        "file"
    )
    if not isinstance(weights, (str, os.PathLike)):
        raise ValueError(
            f"`weights` must be {allowed}. Received: weights={weights!r}"
        )
    tag = pretrained.hub_tag(arch, weights)
    if is_released(weights, arch):
        if padding != "zero":
            raise ValueError(
                "With `weights='imagenet'`: the released ImageNet weights "
                "are for zero-padded convolutions. Received: "
                f"padding={padding!r}"
            )
        if include_top and classes != 1000:
            raise ValueError(
                "With `weights='imagenet'` and `include_top=True`, `classes` "
                "must be 1000 (the ImageNet classifier). Received: "
                f"classes={classes!r}"
            )
        aa = antialias_spec(antialias, filter_size, pad_type)
        pretrained.check_imagenet_available(
            arch,
            None if aa is None else filter_size,
            pool_only=pool_only,
            antialias=None if aa is None else aa.antialias,
            pad_type=pad_type,
            tag=tag,
        )
        return
    path = os.fspath(weights)
    if not path.endswith((".weights.h5",) + CHECKPOINT_SUFFIXES):
        close = difflib.get_close_matches(path, ["imagenet", *tags], n=1)
        hint = f" Did you mean {close[0]!r}?" if close else ""
        raise ValueError(
            f"`weights` must be {allowed}.{hint} Received: weights={weights!r}"
        )
    problem = file_problem(path)
    if problem is not None:
        raise ValueError(
            f"`weights` must be the path of a file; {path!r} {problem}. "
            f"Received: weights={weights!r}"
        )


def _has_classifier(model, spec: registry.Architecture) -> bool:
    """Whether `model`, of `spec`'s family, takes the classifier's keys."""
    for view in _views(model):
        names = spec.torch_names(view)
        if names is not None:
            return any(
                (torch_name + ".").startswith(spec.head_prefixes)
                for torch_name in names.values()
            )
    return False


def imagenet_state_dict(
    arch: str,
    filter_size: int | None = None,
    *,
    fine_tuned: bool = True,
    tag: str | None = None,
    model: keras.Model | None = None,
    allow_nonfinite: bool = False,
) -> dict:
    """The released ImageNet state dict of an architecture, cached once it
    has loaded.

    The first call downloads the checkpoint (`pretrained.imagenet_file`),
    checks its SHA-256, reads it and loads it into the released network
    (`model` itself when it has the classifier, else one built for the
    check and dropped): only a state dict that loads is cached (see
    `keras_blurpool.weights.download`), so a file that parses but does not
    fit is fetched again next time. Later calls read the cache; a cached
    state dict that does not load into `model` is an error naming the
    cached file and how to delete it.

    Args:
        arch: registry name, e.g. `"resnet50"`.
        filter_size: as `pretrained.imagenet_file`.
        fine_tuned: as `pretrained.imagenet_file`.
        tag: as `pretrained.imagenet_file` (timm's weights come through
            `huggingface_hub` and its cache when it is installed).
        model: a model of `arch` (any head configuration) to load the
            weights into, or None.
        allow_nonfinite: as `load_torch_weights`.

    Returns:
        PyTorch names to NumPy arrays, for `load_torch_weights`.

    Raises:
        ValueError: for combinations never released, a download failure,
            a corrupted or hostile file, a file that does not load into
            the network (nothing is cached), a cached file that does not
            load into `model` (the message names it and how to delete
            it), or an untrusted cache.

    Example:

    >>> state = imagenet_state_dict("resnet50", 4)  # doctest: +SKIP
    >>> keras_blurpool.load_torch_weights(  # doctest: +SKIP
    ...     ResNet50(include_top=False), state)
    """
    released = pretrained.imagenet_file(
        arch, filter_size, fine_tuned=fine_tuned, tag=tag
    )
    spec = registry.get(arch)
    loaded = []

    def check(state_dict: dict) -> None:
        if model is not None and _has_classifier(model, spec):
            load_torch_weights(model, state_dict, allow_nonfinite=allow_nonfinite)
            loaded.append(model)
        else:  # the classifier's keys must fit too
            network = spec.builder(weights=None, **released.network)
            load_torch_weights(
                network, state_dict, allow_nonfinite=allow_nonfinite
            )

    def check_cached(state_dict: dict) -> None:
        load_torch_weights(model, state_dict, allow_nonfinite=allow_nonfinite)
        loaded.append(model)

    state_dict = download.cached_state_dict(
        released.origin,
        cache_name=released.cache_name,
        sha256=released.sha256,
        check=check,
        check_cached=None if model is None else check_cached,
    )
    if model is not None and not loaded:
        load_torch_weights(model, state_dict, allow_nonfinite=allow_nonfinite)
    return state_dict


def load_weights(
    model: keras.Model,
    weights,
    *,
    arch: str,
    filter_size,
    allow_nonfinite: bool = False,
) -> None:
    """Loads a builder's `weights` argument into its model.

    Args:
        model: the builder's model.
        weights: `"imagenet"`, a released timm tag of `arch`, or the path
            of a PyTorch checkpoint, a `.safetensors` file or a Keras
            `.weights.h5` file (checked by `check_weights`).
        arch: the registry name of the architecture.
        filter_size: the model's filter size.
        allow_nonfinite: as `load_torch_weights`; a `.weights.h5` file's
            values are checked once Keras has loaded them.

    Raises:
        ValueError: as `load_torch_weights`, or naming the `.weights.h5`
            file and every variable it filled with refused values.
    """
    tag = pretrained.hub_tag(arch, weights)
    if weights == "imagenet" or tag is not None:
        imagenet_state_dict(
            arch, filter_size, tag=tag, model=model,
            allow_nonfinite=allow_nonfinite,
        )
    elif os.fspath(weights).endswith(CHECKPOINT_SUFFIXES):
        load_torch_weights(
            model, read_checkpoint(weights), allow_nonfinite=allow_nonfinite
        )
    else:
        model.load_weights(weights)
        if not allow_nonfinite:
            values.check_variables(model, os.fspath(weights))


def infer_filter_size(state_dict) -> int | None:
    """Filter size of the BlurPool `filt` buffers of a state dict.

    Args:
        state_dict: PyTorch names to arrays.

    Returns:
        The size `k` of the `(C, 1, k, k)` buffers, or None when there are
        none (a plain network, or a checkpoint saved without buffers).

    Raises:
        ValueError: if the buffers disagree on the size.
    """
    sizes = {
        int(np.shape(value)[-1])
        for key, value in state_dict.items()
        if key.endswith(".filt") and np.ndim(value) == 4
    }
    if len(sizes) > 1:
        raise ValueError(
            f"The checkpoint mixes BlurPool filter sizes {sorted(sizes)}"
        )
    return sizes.pop() if sizes else None

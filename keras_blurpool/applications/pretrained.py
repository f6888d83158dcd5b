"""The reference's released ImageNet weights, for `weights="imagenet"`.

Which checkpoints exist is part of each architecture's registry entry
(`registry.Architecture.weights`): ResNet-18/34/50/101, VGG-16 (with and
without BatchNorm), DenseNet-121, MobileNetV2 and AlexNet were released
at filter sizes 2, 3, 4 and 5, every other architecture at filter size 4
only, nothing for the plain networks (their weights are torchvision's).
Fetching, verifying and caching is `keras_blurpool.weights.download`'s
job; the cache holds the state dict, which loads into any head
configuration.

The released weights are under the reference's CC BY-NC-SA 4.0 licence
(non-commercial).
"""

from __future__ import annotations

from keras_blurpool.applications import registry
from keras_blurpool.layers.blur_pool import standardize_pad_type
from keras_blurpool.weights import download


def check_imagenet_available(
    arch: str,
    filter_size,
    *,
    pool_only=None,
    antialias="blur",
    pad_type="reflect",
) -> None:
    """Raises unless the reference released weights for this network.

    Args:
        arch: registry name, e.g. `"resnet50"`.
        filter_size: the builder's `filter_size`.
        pool_only: the builder's `pool_only`, or None for architectures
            without one.
        antialias: the builder's `antialias`.
        pad_type: the builder's `pad_type`.

    Raises:
        ValueError: for an unknown architecture, a plain network, a filter
            size never released for `arch` (the message lists the released
            ones), or another `pool_only`, `antialias` or `pad_type` than
            the released network's.
    """
    spec = registry.get(arch)
    sizes = sorted(spec.weights)
    if filter_size is None or antialias is None:
        raise ValueError(
            "`weights='imagenet'` needs an antialiased network: the "
            "reference released no weights for the plain one (those are "
            "torchvision's; pass the path of a torchvision `.pth` file as "
            f"`weights` instead). Received: filter_size={filter_size!r}, "
            f"antialias={antialias!r} for {arch!r}; released filter sizes: "
            f"{sizes}"
        )
    if antialias != "blur" or standardize_pad_type(pad_type) != "reflect":
        raise ValueError(
            "With `weights='imagenet'`: the released ImageNet weights "
            "are for antialias='blur', pad_type='reflect'. Received: "
            f"antialias={antialias!r}, pad_type={pad_type!r}"
        )
    if filter_size not in spec.weights:
        raise ValueError(
            f"The reference released no ImageNet weights for {arch!r} with "
            f"filter_size={filter_size!r}. Released filter sizes for "
            f"{arch!r}: {sizes}"
        )
    if pool_only is not None and pool_only != spec.released_pool_only:
        raise ValueError(
            f"The released ImageNet weights of {arch!r} are for "
            f"pool_only={spec.released_pool_only}. Received: "
            f"pool_only={pool_only!r}"
        )


def imagenet_state_dict(
    arch: str, filter_size: int = 4, *, fine_tuned: bool = True
) -> dict:
    """The released ImageNet state dict of an architecture, cached.

    The first call downloads the reference's checkpoint, checks its
    SHA-256 prefix and caches the state dict
    (see `keras_blurpool.weights.download`); later calls read the cache.

    Args:
        arch: registry name, e.g. `"resnet50"`.
        filter_size: 2, 3, 4 or 5 where released.
        fine_tuned: at filter size 4, `True` (the reference's default)
            picks the network fine-tuned from the baseline, `False` the one
            trained from scratch where it exists.

    Returns:
        PyTorch names to NumPy arrays, for `load_torch_weights`.

    Raises:
        ValueError: for combinations never released, a download failure,
            a corrupted or hostile file, or an untrusted cache.

    Example:

    >>> state = imagenet_state_dict("resnet50", 4)  # doctest: +SKIP
    >>> keras_blurpool.load_torch_weights(  # doctest: +SKIP
    ...     ResNet50(include_top=False), state)
    """
    check_imagenet_available(arch, filter_size)
    spec = registry.get(arch)
    origin = spec.origin(spec.released_file(filter_size, fine_tuned=fine_tuned))
    return download.cached_state_dict(origin)

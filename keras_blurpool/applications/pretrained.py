"""The reference's released ImageNet weights, for `weights="imagenet"`.

Which checkpoints exist is part of each architecture's registry entry
(`registry.Architecture.weights`): ResNet-18/34/50/101, VGG-16 (with and
without BatchNorm), DenseNet-121, MobileNetV2 and AlexNet were released
at filter sizes 2, 3, 4 and 5, every other architecture at filter size 4
only, nothing for the plain networks (their weights are torchvision's).
This module says which file (`imagenet_file`); fetching, verifying and
caching is `keras_blurpool.weights.download`'s job, and
`loading.imagenet_state_dict` loads the state dict into the network
before the cache keeps it.

The released weights are under the reference's CC BY-NC-SA 4.0 licence
(non-commercial). timm's architectures (`timm_resnet.py`) instead list
their released weights by tag (`registry.Architecture.hub_weights`),
fetched from the Hugging Face Hub; those are Apache-2.0.
"""

from __future__ import annotations

from typing import NamedTuple

from keras_blurpool.applications import registry
from keras_blurpool.layers import standardize_pad_type

# timm's `BlurPool2d` filter size, the one of its released blur networks.
TIMM_BLUR_FILTER_SIZE = 3


def hub_tag(arch: str, weights) -> str | None:
    """The timm tag a builder's `weights` asks for, or None.

    `"imagenet"` is the architecture's default tag; any released tag of
    the architecture names itself. None for the reference's architectures
    and for every other `weights`, and for an architecture not registered.
    """
    spec = registry.ARCHITECTURES.get(arch)
    if spec is None or not spec.hub_weights or not isinstance(weights, str):
        return None
    if weights == "imagenet":
        return spec.default_tag
    return weights if weights in spec.hub_weights else None


def _check_hub_available(arch, filter_size, *, antialias, pad_type, tag):
    spec = registry.get(arch)
    tags = list(spec.hub_weights)
    if not tags:
        raise ValueError(
            f"timm released no ImageNet weights for {arch!r}. Architectures "
            "with released weights: "
            + ", ".join(n for n, a in registry.ARCHITECTURES.items() if a.hub_weights)
        )
    if tag not in spec.hub_weights:
        raise ValueError(
            f"{arch!r} has no released weights tagged {tag!r}. Released "
            f"tags: {tags} ('imagenet' is {spec.default_tag!r})"
        )
    released = spec.released_antialias
    wrong = antialias != released or filter_size is None
    if released == "blur":
        wrong = wrong or (
            filter_size != TIMM_BLUR_FILTER_SIZE
            or standardize_pad_type(pad_type) != "reflect"
        )
    if wrong:
        expected = f"antialias={released!r}" + (
            f", filter_size={TIMM_BLUR_FILTER_SIZE}, pad_type='reflect'"
            if released == "blur"
            else ""
        )
        raise ValueError(
            f"The released weights of {arch!r} are for {expected}; the plain "
            "network's (antialias=None) are timm's plain twin: pass the path "
            "of its `.safetensors` file as `weights`. Received: "
            f"antialias={antialias!r}, filter_size={filter_size!r}, "
            f"pad_type={pad_type!r}"
        )


def check_imagenet_available(
    arch: str,
    filter_size,
    *,
    pool_only=None,
    antialias="blur",
    pad_type="reflect",
    tag: str | None = None,
) -> None:
    """Raises unless the reference released weights for this network.

    Args:
        arch: registry name, e.g. `"resnet50"`.
        filter_size: the builder's `filter_size`.
        pool_only: the builder's `pool_only`, or None for architectures
            without one.
        antialias: the builder's `antialias`.
        pad_type: the builder's `pad_type`.
        tag: for timm's architectures, the released tag (default: the
            architecture's `default_tag`).

    Raises:
        ValueError: for an unknown architecture, a plain network, a filter
            size never released for `arch` (the message lists the released
            ones), or another `pool_only`, `antialias` or `pad_type` than
            the released network's.
    """
    spec = registry.get(arch)
    if spec.source == "timm":
        _check_hub_available(
            arch,
            filter_size,
            antialias=antialias,
            pad_type=pad_type,
            tag=tag or spec.default_tag,
        )
        return
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


class ReleasedFile(NamedTuple):
    """One released ImageNet checkpoint, as `download` fetches it.

    Attributes:
        origin: its URL.
        cache_name: its cache entry's name when the file name carries no
            SHA-256 (timm's `model.safetensors`), else None.
        sha256: its pinned SHA-256 where the registry has one, else None.
        network: the builder arguments of the network it was released for
            (besides `weights=None` and the defaults), such as
            `{"filter_size": 4}`.
    """

    origin: str
    cache_name: str | None
    sha256: str | None
    network: dict


def imagenet_file(
    arch: str,
    filter_size: int | None = None,
    *,
    fine_tuned: bool = True,
    tag: str | None = None,
) -> ReleasedFile:
    """Which released checkpoint `weights="imagenet"` fetches.

    Args:
        arch: registry name, e.g. `"resnet50"`.
        filter_size: 2, 3, 4 or 5 where released (default 4); ignored for
            timm's architectures.
        fine_tuned: at filter size 4, `True` (the reference's default)
            picks the network fine-tuned from the baseline, `False` the one
            trained from scratch where it exists.
        tag: for timm's architectures, the released weights' tag
            (default: the architecture's `default_tag`), on the Hugging
            Face Hub as `model.safetensors`.

    Returns:
        The `ReleasedFile`.

    Raises:
        ValueError: for combinations never released.
    """
    spec = registry.get(arch)
    if spec.source == "timm":
        tag = tag or spec.default_tag
        check_imagenet_available(
            arch,
            TIMM_BLUR_FILTER_SIZE,
            antialias=spec.released_antialias,
            tag=tag,
        )
        return ReleasedFile(
            spec.hub_origin(tag),
            cache_name=f"{arch}.{tag}",
            sha256=spec.hub_weights[tag].sha256,
            network={
                "antialias": spec.released_antialias,
                "filter_size": TIMM_BLUR_FILTER_SIZE,
            },
        )
    filter_size = 4 if filter_size is None else filter_size
    check_imagenet_available(arch, filter_size)
    origin = spec.origin(spec.released_file(filter_size, fine_tuned=fine_tuned))
    return ReleasedFile(
        origin, cache_name=None, sha256=None, network={"filter_size": filter_size}
    )

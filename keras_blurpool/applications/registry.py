"""One entry per architecture: everything the package knows of it.

Each family module (`resnet.py`, `vgg.py`, ...) registers its
architectures here, next to the code that builds them, as KerasHub keeps
a family's presets and converter with the family. Every other table is
derived from this one: the released weights that `weights="imagenet"`
fetches, the names `python -m keras_blurpool.convert` accepts, the
architectures and default hyper-parameters of `recipes/`. Adding a family
is one module that calls `register`.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from collections.abc import Mapping
from types import MappingProxyType

import keras

# Where the reference's released checkpoints live; a file name holding
# "://" is a full URL (the tests serve `file://` origins that way).
REFERENCE_BASE_URL = (
    "https://antialiased-cnns.s3.us-east-2.amazonaws.com/weights_v0.1/"
)

RECIPES = ("imagenet", "vgg", "vgg_bn", "mobilenet")


def _no_fix(state_dict: dict) -> dict:
    return state_dict


@dataclasses.dataclass(frozen=True, eq=False)
class Architecture:
    """What the package knows of one architecture.

    Attributes:
        name: the reference's (torchvision's) lowercase name, e.g.
            `"resnet50"`; the key of the registry.
        builder: the public builder, with the keras.applications
            signature (`ResNet50`).
        torch_names: `model -> {keras layer name: torch module name}`, or
            None when the model is not of this family; shared by the
            architectures of a family.
        head_prefixes: the state-dict prefixes of the classifier
            (`("fc.",)`), dropped when a model has no top.
        fix_state_dict: the family's fix-ups of a PyTorch state dict
            before its names are mapped (DenseNet's old key names); it
            returns a new dict and leaves keys it does not know alone.
        weights: released ImageNet checkpoints, `filter_size -> file name`
            under `base_url` (or full URL). At filter size 4, the network
            fine-tuned from its baseline (the reference's default).
        weights_from_scratch: filter size -> file name of the networks
            trained from scratch (the reference's `_force_nonfinetuned`).
        released_pool_only: `pool_only` of the released weights (and the
            builder's default), or None for builders without `pool_only`.
        recipe: which of the reference's training recipes applies, one of
            `RECIPES` (see `recipes/config.py`).
        base_url: where `weights` file names live.
        licence: the licence of the released weights.
    """

    name: str
    builder: Callable[..., keras.Model]
    torch_names: Callable[[keras.Model], dict | None]
    head_prefixes: tuple[str, ...]
    fix_state_dict: Callable[[dict], dict] = _no_fix
    weights: dict[int, str] = dataclasses.field(default_factory=dict)
    weights_from_scratch: dict[int, str] = dataclasses.field(
        default_factory=dict
    )
    released_pool_only: bool | None = True
    recipe: str = "imagenet"
    base_url: str = REFERENCE_BASE_URL
    licence: str = "CC BY-NC-SA 4.0 (the reference's; non-commercial)"

    def __post_init__(self):
        if self.recipe not in RECIPES:
            raise ValueError(
                f"`recipe` must be one of {RECIPES}. Received: "
                f"recipe={self.recipe!r} for {self.name!r}"
            )

    def released_file(self, filter_size: int, *, fine_tuned: bool = True):
        """File name (or URL) of a released checkpoint, or None."""
        if not fine_tuned and filter_size in self.weights_from_scratch:
            return self.weights_from_scratch[filter_size]
        return self.weights.get(filter_size)

    def origin(self, file_name: str) -> str:
        """The URL of a file name of `weights`."""
        return file_name if "://" in file_name else self.base_url + file_name


_REGISTRY: dict[str, Architecture] = {}

# Read-only view of the registry, in registration order.
ARCHITECTURES: Mapping[str, Architecture] = MappingProxyType(_REGISTRY)


def register(architecture: Architecture) -> Architecture:
    """Adds an architecture; its name must be new.

    Args:
        architecture: the entry.

    Returns:
        `architecture`.

    Raises:
        ValueError: if the name is taken.
    """
    if not isinstance(architecture, Architecture):
        raise ValueError(
            "`architecture` must be an Architecture. "
            f"Received: {type(architecture).__name__}"
        )
    if architecture.name in _REGISTRY:
        raise ValueError(
            f"Architecture {architecture.name!r} is already registered"
        )
    _REGISTRY[architecture.name] = architecture
    return architecture


def register_family(
    builders: Mapping[str, Callable[..., keras.Model]],
    *,
    weights: Mapping[str, dict[int, str]],
    weights_from_scratch: Mapping[str, dict[int, str]] | None = None,
    recipe: str | Mapping[str, str] = "imagenet",
    **common,
) -> None:
    """Registers the architectures of one family.

    Args:
        builders: registry name -> public builder.
        weights: registry name -> its `Architecture.weights`.
        weights_from_scratch: registry name -> its
            `Architecture.weights_from_scratch`, where any.
        recipe: one recipe for all, or registry name -> recipe.
        **common: the other `Architecture` fields, shared by the family
            (`torch_names`, `head_prefixes`, `fix_state_dict`, ...).
    """
    weights_from_scratch = weights_from_scratch or {}
    for name, builder in builders.items():
        register(
            Architecture(
                name=name,
                builder=builder,
                weights=weights.get(name, {}),
                weights_from_scratch=weights_from_scratch.get(name, {}),
                recipe=recipe if isinstance(recipe, str) else recipe[name],
                **common,
            )
        )


def get(name) -> Architecture:
    """The entry of an architecture, by its reference name.

    Args:
        name: e.g. `"resnet50"`.

    Returns:
        The `Architecture`.

    Raises:
        ValueError: naming the value and listing the known names.

    Example:

    >>> from keras_blurpool.applications import registry
    >>> registry.get("resnet50").builder.__name__
    'ResNet50'
    """
    if not isinstance(name, str) or name not in _REGISTRY:
        raise ValueError(
            f"Unknown architecture. Received: arch={name!r}. Known: "
            + ", ".join(_REGISTRY)
        )
    return _REGISTRY[name]


def families() -> list[Architecture]:
    """One entry per distinct name map (one per family), in order."""
    seen, result = set(), []
    for architecture in _REGISTRY.values():
        key = (architecture.torch_names, architecture.fix_state_dict)
        if key not in seen:
            seen.add(key)
            result.append(architecture)
    return result

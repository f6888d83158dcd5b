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
import math
from collections.abc import Callable
from collections.abc import Mapping
from types import MappingProxyType

import keras

from keras_blurpool.applications.imagenet_utils import IMAGENET_MEAN
from keras_blurpool.applications.imagenet_utils import IMAGENET_STD

# Where the reference's released checkpoints live; a file name holding
# "://" is a full URL (the tests serve `file://` origins that way).
REFERENCE_BASE_URL = (
    "https://antialiased-cnns.s3.us-east-2.amazonaws.com/weights_v0.1/"
)

# Where timm's released weights live on the Hugging Face Hub: the file of
# `<name>.<tag>` is `HUB_BASE_URL + f"{name}.{tag}/resolve/main/" +
# HUB_FILE_NAME` (the tests point HUB_BASE_URL at a `file://` folder).
# `download` fetches such https://huggingface.co/ URLs with huggingface_hub
# when it is installed (HF_ENDPOINT then picks a mirror), else with urllib.
HUB_BASE_URL = "https://huggingface.co/timm/"
HUB_FILE_NAME = "model.safetensors"

RECIPES = ("imagenet", "vgg", "vgg_bn", "mobilenet")

INTERPOLATIONS = ("bilinear", "bicubic")


@dataclasses.dataclass(frozen=True)
class Preprocessing:
    """How a network's ImageNet accuracy was measured (timm's eval config).

    Validation resizes the short side to `floor(input_size / crop_pct)`
    with `interpolation`, centre-crops `input_size` and normalises RGB in
    [0, 1] with `mean` and `std`. The reference validated every network at
    224 with crop 0.875 (resize 256), bilinear; timm records each released
    weight's own values, and a larger `test_input_size` where the network
    scores better at test time.

    Attributes:
        input_size: side of the crop the accuracy was measured at.
        crop_pct: crop side / resized short side.
        interpolation: `"bilinear"` or `"bicubic"`.
        mean: per-channel mean, RGB in [0, 1].
        std: per-channel standard deviation, RGB in [0, 1].
        test_input_size: timm's `test_input_size`, or None.
        test_crop_pct: timm's `test_crop_pct`, or None (then `crop_pct`).
    """

    input_size: int = 224
    crop_pct: float = 0.875
    interpolation: str = "bilinear"
    mean: tuple[float, float, float] = IMAGENET_MEAN
    std: tuple[float, float, float] = IMAGENET_STD
    test_input_size: int | None = None
    test_crop_pct: float | None = None

    def __post_init__(self):
        if self.interpolation not in INTERPOLATIONS:
            raise ValueError(
                f"`interpolation` must be one of {INTERPOLATIONS}. "
                f"Received: interpolation={self.interpolation!r}"
            )
        if not 0 < self.crop_pct <= 1:
            raise ValueError(
                "`crop_pct` must be in (0, 1]. Received: "
                f"crop_pct={self.crop_pct!r}"
            )

    def resize_size(self, image_size: int | None = None) -> int:
        """Short side before the centre crop of `image_size` (timm's rule).

        `floor(image_size / crop_pct)`, `image_size` defaulting to
        `input_size`: 256 for 224 at 0.875, the reference's.
        """
        size = self.input_size if image_size is None else image_size
        return int(math.floor(size / self.crop_pct + 1e-9))

    def at_test_size(self) -> Preprocessing:
        """The config at timm's larger test size (itself when none)."""
        if self.test_input_size is None:
            return self
        return dataclasses.replace(
            self,
            input_size=self.test_input_size,
            crop_pct=self.test_crop_pct or self.crop_pct,
            test_input_size=None,
            test_crop_pct=None,
        )


# The reference's validation: short side 256, centre crop 224, bilinear.
REFERENCE_PREPROCESSING = Preprocessing()


@dataclasses.dataclass(frozen=True)
class HubWeights:
    """One released timm weight of an architecture, `<name>.<tag>`.

    Attributes:
        preprocessing: how its accuracy was measured.
        top1: timm's ImageNet top-1 (`results-imagenet.csv`) at
            `preprocessing.input_size`, or None where timm lists none.
        sha256: the SHA-256 of the file when pinned, or None: the file is
            then checked by parsing and by loading into the architecture,
            and the cache records the digest it was first fetched with.
    """

    preprocessing: Preprocessing
    top1: float | None = None
    sha256: str | None = None


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
        hub_weights: timm's released weights on the Hugging Face Hub, tag
            -> `HubWeights` (timm's families; `weights` is empty then).
        default_tag: the tag `weights="imagenet"` fetches, one of
            `hub_weights`.
        preprocessing: how the accuracy of the network without a tag was
            measured (the reference's, for its families).
        released_antialias: the builder's `antialias` of the released
            weights (`"blur"`, or `"avg"` for timm's `aa` networks).
        source: whose network it is: `"reference"` (`antialiased_cnns`,
            weights by filter size), `"timm"` (weights by Hub tag) or
            `"afc"` (the alias-free ConvNets' authors; their checkpoints
            load by path, none is fetched).
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
    hub_weights: Mapping[str, HubWeights] = dataclasses.field(
        default_factory=dict
    )
    default_tag: str | None = None
    preprocessing: Preprocessing = REFERENCE_PREPROCESSING
    released_antialias: str = "blur"
    source: str = "reference"

    def __post_init__(self):
        if self.recipe not in RECIPES:
            raise ValueError(
                f"`recipe` must be one of {RECIPES}. Received: "
                f"recipe={self.recipe!r} for {self.name!r}"
            )
        if self.default_tag is not None and self.default_tag not in (
            self.hub_weights
        ):
            raise ValueError(
                f"`default_tag` {self.default_tag!r} of {self.name!r} is not "
                f"among its hub weights {list(self.hub_weights)}"
            )

    def hub_origin(self, tag: str) -> str:
        """The URL of the released timm weight `<name>.<tag>`."""
        return f"{HUB_BASE_URL}{self.name}.{tag}/resolve/main/{HUB_FILE_NAME}"

    def preprocessing_for(self, tag: str | None = None) -> Preprocessing:
        """How the weights of `tag` (default: `default_tag`) were measured.

        Raises:
            ValueError: for a tag never released for this architecture.
        """
        tag = tag or self.default_tag
        if tag is None:
            return self.preprocessing
        if tag not in self.hub_weights:
            raise ValueError(
                f"{self.name!r} has no released weights tagged {tag!r}. "
                f"Released tags: {list(self.hub_weights)}"
            )
        return self.hub_weights[tag].preprocessing

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
    hub_weights: Mapping[str, Mapping[str, HubWeights]] | None = None,
    per_name: Mapping[str, Mapping[str, object]] | None = None,
    **common,
) -> None:
    """Registers the architectures of one family.

    Args:
        builders: registry name -> public builder.
        weights: registry name -> its `Architecture.weights`.
        weights_from_scratch: registry name -> its
            `Architecture.weights_from_scratch`, where any.
        recipe: one recipe for all, or registry name -> recipe.
        hub_weights: registry name -> its `Architecture.hub_weights`,
            where any; the first tag is the default one.
        per_name: registry name -> other `Architecture` fields of that
            architecture alone (`released_antialias`, ...).
        **common: the other `Architecture` fields, shared by the family
            (`torch_names`, `head_prefixes`, `fix_state_dict`, ...).
    """
    weights_from_scratch = weights_from_scratch or {}
    hub = hub_weights or {}
    for name, builder in builders.items():
        register(
            Architecture(
                name=name,
                builder=builder,
                weights=weights.get(name, {}),
                weights_from_scratch=weights_from_scratch.get(name, {}),
                recipe=recipe if isinstance(recipe, str) else recipe[name],
                hub_weights=dict(hub.get(name, {})),
                default_tag=next(iter(hub.get(name, {})), None),
                **{**common, **(per_name or {}).get(name, {})},
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

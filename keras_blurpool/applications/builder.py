"""The one builder pattern: a family, its named variants, their builders.

A family module declares what differs between its networks as a frozen
dataclass of named fields (its *variant*), writes the network once as a
function of a variant and the checked `Options`, and makes each public
builder with `Family.builder`:

    ResNet50 = RESNET.builder(
        "ResNet50", arch="resnet50", title="ResNet-50",
        variant=ResNetVariant(bottleneck=True, repeats=(3, 4, 6, 3)),
    )

Every builder gets the signature of `arguments.ARGUMENTS` (less the
optional arguments its family does not take, with the family's
defaults), a docstring composed of the family's text and one paragraph
per argument, and the same steps around its network: check every
argument, make the input (`model_input`), build, make the `keras.Model`
and load its weights (`finish_model`). docs/zoo.md, "Adding a family",
walks through a complete example.
"""

from __future__ import annotations

import dataclasses
import inspect
import textwrap
from collections.abc import Callable
from collections.abc import Mapping
from typing import Any

import keras
from keras import layers

from keras_blurpool._utils import is_int
from keras_blurpool.applications import loading
from keras_blurpool.applications.arguments import ARGUMENT_NAMES
from keras_blurpool.applications.arguments import ARGUMENTS
from keras_blurpool.applications.arguments import MIN_INPUT_SIZE
from keras_blurpool.applications.arguments import OPTIONAL_ARGUMENTS
from keras_blurpool.applications.arguments import AntialiasSpec
from keras_blurpool.applications.arguments import Options
from keras_blurpool.applications.arguments import check_builder_arguments
from keras_blurpool.applications.blocks import data_format
from keras_blurpool.applications.blocks import spatial_shape


def _no_check(variant, options: Options) -> None:
    del variant, options


def _no_defaults(variant) -> Mapping[str, object]:
    del variant
    return {}


@dataclasses.dataclass(frozen=True, kw_only=True)
class Family:
    """One family of architectures and how its builders are made.

    Attributes:
        name: the family's name, for messages (`"ResNet"`).
        module: the module that makes the family's builders (its
            `__name__`): their `__module__`, where `help()`, doctest and
            the API docs find them.
        network: `(inputs, variant, options) -> outputs`: the whole network
            on the input tensor, head included (`blocks.pooling_head` is
            the keras.applications head).
        min_input_size: `(variant, options) -> int`, the smallest input
            side for which every layer fits (at least `MIN_INPUT_SIZE`).
        doc: the family's part of every builder's docstring, before
            "Args:": a `str.format` template over the documentation fields
            (see `builder`).
        arguments: the optional arguments (`OPTIONAL_ARGUMENTS`) its
            builders take.
        defaults: `variant -> {argument: default}`, where a family or a
            variant differs from `arguments.ARGUMENTS`.
        check: `(variant, options) -> None`, raising `ValueError` for
            arguments the family cannot build (after the shared checks,
            before the weights are checked).
        fixed_size_with_top: whether the classifier needs a fixed input
            size (an input of unknown size is then refused with
            `include_top`).
        doc_fields: documentation fields shared by the family's builders.
    """

    name: str
    module: str
    network: Callable[..., Any]
    min_input_size: Callable[..., int]
    doc: str
    arguments: tuple[str, ...] = ()
    defaults: Callable[[Any], Mapping[str, object]] = _no_defaults
    check: Callable[[Any, Options], None] = _no_check
    fixed_size_with_top: bool = False
    doc_fields: Mapping[str, str] = dataclasses.field(default_factory=dict)

    def __post_init__(self):
        unknown = set(self.arguments) - set(OPTIONAL_ARGUMENTS)
        if unknown:
            raise ValueError(
                f"`arguments` of family {self.name!r} must be among "
                f"{OPTIONAL_ARGUMENTS}. Received: {sorted(unknown)}"
            )

    def signature(self, variant) -> inspect.Signature:
        """The signature of a builder of `variant`."""
        defaults = dict(self.defaults(variant))
        unknown = set(defaults) - set(ARGUMENT_NAMES)
        if unknown:
            raise ValueError(
                f"Family {self.name!r} sets defaults of unknown arguments "
                f"{sorted(unknown)}; the arguments are {ARGUMENT_NAMES}"
            )
        return inspect.Signature(
            [
                inspect.Parameter(
                    argument.name,
                    inspect.Parameter.POSITIONAL_OR_KEYWORD,
                    default=defaults.get(argument.name, argument.default),
                    annotation=argument.annotation,
                )
                for argument in ARGUMENTS
                if argument.name not in OPTIONAL_ARGUMENTS
                or argument.name in self.arguments
            ],
            return_annotation="keras.Model",
        )

    def builder(
        self, name: str, *, arch: str, variant, title: str, **doc_fields: str
    ) -> Callable[..., keras.Model]:
        """Makes the public builder of one architecture.

        Args:
            name: the builder's name (`"ResNet50"`).
            arch: the registry name of the architecture (`"resnet50"`):
                it picks the released weights and is the default model
                name.
            variant: the family's configuration of this architecture.
            title: the architecture's name in prose (`"ResNet-50"`).
            **doc_fields: more documentation fields of this builder.

        The documentation fields: `builder`, `arch`, `title`, `top`
        (what `include_top` adds), `imagenet` and `tags` (what
        `weights="imagenet"` loads, and the released tags), `where` (where
        the network anti-aliases), `polyphase` (what `"aps"`/`"lps"` do
        here), `first_conv` and `pool_only_note` (for `pool_only`),
        `bn_note` (for `synchronized_batch_norm`), `default_shape` and
        `min_size` (for `input_shape`; computed), then the family's
        `doc_fields` and `**doc_fields`.

        Returns:
            The builder: a function with the signature of `signature` that
            returns a `keras.Model`; its `arch` and `variant` attributes
            are the arguments above.
        """
        signature = self.signature(variant)
        family = self

        def build(*args, **kwargs) -> keras.Model:
            bound = signature.bind(*args, **kwargs)
            bound.apply_defaults()
            return family.build(variant, arch=arch, **bound.arguments)

        build.__name__ = build.__qualname__ = name
        build.__module__ = self.module
        build.__signature__ = signature
        build.__doc__ = self._docstring(
            signature, variant, builder=name, arch=arch, title=title,
            **doc_fields,
        )
        build.arch = arch
        build.variant = variant
        return build

    def build(self, variant, *, arch: str, **arguments) -> keras.Model:
        """Checks the arguments and builds the model of `variant`."""
        check_builder_arguments(
            filter_size=arguments["filter_size"],
            include_top=arguments["include_top"],
            pooling=arguments["pooling"],
            classes=arguments["classes"],
            pool_only=arguments.get("pool_only"),
            antialias=arguments["antialias"],
            pad_type=arguments["pad_type"],
            synchronized_batch_norm=arguments["synchronized_batch_norm"],
            padding=arguments.get("padding", "zero"),
        )
        options = Options(**arguments)
        self.check(variant, options)
        loading.check_weights(
            options.weights,
            arch=arch,
            include_top=options.include_top,
            classes=options.classes,
            antialias=options.antialias,
            filter_size=options.filter_size,
            pad_type=options.pad_type,
            pool_only=options.pool_only,
            padding=options.padding,
        )
        min_size = self.min_input_size(variant, options)
        img_input, inputs = model_input(
            options.input_tensor,
            options.input_shape,
            min_size=min_size,
            why=min_size_reason(options.aa, min_size),
            # keras.applications' default: 224x224 with the classifier.
            default_size=224 if options.include_top else None,
            rgb=loading.is_released(options.weights, arch),
        )
        if self.fixed_size_with_top and options.include_top and (
            None in spatial_shape(img_input)
        ):
            raise ValueError(
                "With `include_top=True` the input size must be fixed (the "
                "classifier's adaptive pooling needs it); pass e.g. "
                "`input_shape=(224, 224, 3)`. Received input shape "
                f"{tuple(img_input.shape)[1:]}"
            )
        outputs = self.network(img_input, variant, options)
        return finish_model(
            inputs,
            outputs,
            name=options.name or arch,
            weights=options.weights,
            arch=arch,
            filter_size=options.filter_size,
            synchronized_batch_norm=options.synchronized_batch_norm,
        )

    def _docstring(self, signature, variant, **fields) -> str:
        defaults = {
            name: parameter.default
            for name, parameter in signature.parameters.items()
        }
        # The defaults as the network reads them: `min_size` is computed.
        options = Options(
            **{
                argument.name: defaults.get(
                    argument.name,
                    None if argument.name == "pool_only" else argument.default,
                )
                for argument in ARGUMENTS
            }
        )
        fields = {
            "top": "global average pooling and a Dense classifier",
            "imagenet": "the reference's released ImageNet weights, "
            "CC BY-NC-SA 4.0, fetched once, verified and cached",
            "tags": "",
            "where": "every strided layer runs at stride 1, then is "
            "low-pass filtered and subsampled",
            "polyphase": "",
            "first_conv": "the first convolution",
            "pool_only_note": "",
            "bn_note": "",
            "default_shape": (
                "the default is 224x224 with `include_top=True`"
                + (" (the classifier needs a fixed size)" if self.fixed_size_with_top else "")
                + " and any size otherwise"
            ),
            "min_size": str(self.min_input_size(variant, options)),
            **self.doc_fields,
            **fields,
        }
        args = "\n".join(
            _indented(f"{argument.name}: " + argument.doc.format(**fields))
            for argument in ARGUMENTS
            if argument.name in signature.parameters
        )
        return (
            _filled(self.doc.format(**fields))
            + "\n\nArgs:\n"
            + args
            + "\n\nReturns:\n    A `keras.Model`, in "
            "`keras.config.image_data_format()`.\n\nExample:\n\n"
            f">>> model = keras_blurpool.applications.{fields['builder']}()\n"
            ">>> model.output_shape\n(None, 1000)\n"
        )


def _filled(text: str, width: int = 76) -> str:
    """`text` with each prose paragraph refilled to `width` (lists kept)."""
    paragraphs = []
    for paragraph in text.strip().split("\n\n"):
        if not paragraph.lstrip().startswith("-"):
            paragraph = textwrap.fill(
                " ".join(paragraph.split()),
                width=width,
                break_on_hyphens=False,
                break_long_words=False,
            )
        paragraphs.append(paragraph)
    return "\n\n".join(paragraphs)


def _indented(paragraph: str, width: int = 76) -> str:
    """`paragraph` wrapped as an "Args:" entry (4 spaces, then 8)."""
    return textwrap.fill(
        paragraph,
        width=width,
        initial_indent="    ",
        subsequent_indent="        ",
        break_on_hyphens=False,
        break_long_words=False,
    )


def model_input(
    input_tensor,
    input_shape,
    *,
    min_size: int = MIN_INPUT_SIZE,
    why: str = "",
    default_size: int | None = None,
    rgb: bool = False,
):
    """Returns `(img_input, model_inputs)` as keras.applications does.

    Args:
        input_tensor: the builder's `input_tensor`.
        input_shape: the builder's `input_shape`: `(height, width,
            channels)`, or `(channels, height, width)` under
            channels_first.
        min_size: smallest spatial size the network takes.
        why: what sets `min_size`, appended to its error message.
        default_size: the input side when neither `input_tensor` nor
            `input_shape` is given; None accepts any size.
        rgb: whether the input must have 3 channels (the released
            ImageNet weights' first convolution takes RGB).

    Returns:
        `(img_input, model_inputs)`: the tensor the network starts from
        and the model's inputs.

    Raises:
        ValueError: for a shape of the wrong layout, other than 3 channels
            with `rgb`, or smaller than `min_size`.
    """
    channels_first = data_format() == "channels_first"
    if input_shape is None and input_tensor is None:
        sides = (default_size, default_size)
        input_shape = (3, *sides) if channels_first else (*sides, 3)
    if input_shape is not None:
        input_shape = tuple(input_shape)
        layout = (
            "(channels, height, width)" if channels_first else "(height, width, channels)"
        )
        channels = input_shape[0 if channels_first else -1] if input_shape else None
        if len(input_shape) != 3 or not (is_int(channels) and channels >= 1):
            raise ValueError(
                f"`input_shape` must be {layout} ({data_format()}, the image "
                "data format of keras.config), with a known number of "
                f"channels. Received: input_shape={input_shape!r}"
            )
        if rgb and channels != 3:
            raise ValueError(
                "The released ImageNet weights take RGB images: `input_shape` "
                f"must have 3 channels with them (any number builds with "
                "`weights=None`). Received: "
                f"input_shape={input_shape!r}"
            )
        spatial = input_shape[1:] if channels_first else input_shape[:2]
        other_end = input_shape[-1] if channels_first else input_shape[0]
        other_layout = (
            "(height, width, channels)" if channels_first else "(channels, height, width)"
        )
        swapped = (
            f" ({input_shape!r} looks like {other_layout}, but keras.config's "
            f"image data format is {data_format()})"
            if other_end in (1, 3) and channels not in (1, 3)
            else ""
        )
        for size in spatial:
            if size is not None and size < min_size:
                raise ValueError(
                    f"`input_shape` spatial sizes must be at least {min_size}"
                    f"{why}{swapped}. Received: input_shape={input_shape!r}"
                )
    if input_tensor is None:
        img_input = layers.Input(shape=input_shape)
        return img_input, img_input
    if not keras.backend.is_keras_tensor(input_tensor):
        img_input = layers.Input(tensor=input_tensor, shape=input_shape)
        return img_input, img_input
    sources = keras.utils.get_source_inputs(input_tensor)
    return input_tensor, sources[0] if len(sources) == 1 else sources


def min_size_reason(aa: AntialiasSpec | None, min_size: int) -> str:
    """Why the input must be at least `min_size`, for `model_input`."""
    if aa is None or aa.min_map_size == 1 or min_size <= MIN_INPUT_SIZE:
        return ""
    return (
        f" with {aa.describe()} (reflect padding needs every anti-aliased "
        "feature map larger than the padding; pad_type='zero' or "
        "'replicate' takes smaller inputs)"
    )


def finish_model(
    inputs,
    outputs,
    *,
    name: str,
    weights,
    arch: str,
    filter_size: int | None,
    synchronized_batch_norm: bool = False,
) -> keras.Model:
    """Makes the functional model and loads `weights` into it.

    Args:
        inputs: the model inputs.
        outputs: the model outputs.
        name: the model name.
        weights: as checked by `loading.check_weights`.
        arch: the registry name of the architecture.
        filter_size: the builder's `filter_size`.
        synchronized_batch_norm: the builder's `synchronized_batch_norm`
            (checked by `loading.check_weights`): if `True`, every
            `keras.layers.BatchNormalization` of the model computes its
            batch statistics over all replicas (`synchronized=True`).

    Returns:
        The `keras.Model`.
    """
    model = keras.Model(inputs, outputs, name=name)
    if synchronized_batch_norm:
        # BatchNormalization reads `self.synchronized` when called (not
        # when built) and `get_config` saves it, so setting it on the built
        # graph equals passing `synchronized=True` to every constructor.
        for layer in model._flatten_layers(include_self=False):
            if isinstance(layer, layers.BatchNormalization):
                layer.synchronized = True
    if weights is not None:
        loading.load_weights(model, weights, arch=arch, filter_size=filter_size)
    return model

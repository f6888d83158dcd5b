"""Anti-aliased VGG 11/13/16/19, with and without BatchNorm.

Reference:
- [Making Convolutional Networks Shift-Invariant Again](
    https://arxiv.org/abs/1904.11486) (Zhang, ICML 2019)
- [Very Deep Convolutional Networks for Large-Scale Image Recognition](
    https://arxiv.org/abs/1409.1556) (Simonyan & Zisserman, ICLR 2015)

Every 2x2 max pool of stride 2 becomes a max pool of stride 1 followed by
a `BlurPool2D` of stride 2 (or the builder's `antialias` layer). The
classifier is torchvision's: adaptive average pooling to 7x7, then three
Dense layers with dropout. With `padding="circular"` the convolutions pad
circularly and the stride-1 max pools keep their map's size, so that
`antialias="aps"` / `"lps"` with `include_top=False` and a global pooling
is exactly invariant to circular shifts (the Flatten classifier is not:
the builder warns).

The feature extractor is a list of layer specs (`layer_specs`), one per
module of the reference's `features` `nn.Sequential`: the same list builds
the Keras layers and gives every layer its PyTorch index `features.N`.
"""

from __future__ import annotations

import dataclasses

from keras_blurpool.applications import registry
from keras_blurpool.applications.arguments import AntialiasSpec
from keras_blurpool.applications.arguments import Options
from keras_blurpool.applications.builder import Family
from keras_blurpool.applications.layer_specs import ANY_ANTIALIAS
from keras_blurpool.applications.layer_specs import apply_features
from keras_blurpool.applications.layer_specs import conv_spec
from keras_blurpool.applications.layer_specs import first_match
from keras_blurpool.applications.layer_specs import head
from keras_blurpool.applications.layer_specs import min_input_size
from keras_blurpool.applications.layer_specs import pool_specs
from keras_blurpool.applications.layer_specs import warn_flatten_head

# Convolutions per block (all 3x3) for each depth; block widths below.
_STAGES = {11: (1, 1, 2, 2, 2), 13: (2, 2, 2, 2, 2), 16: (2, 2, 3, 3, 3),
           19: (2, 2, 4, 4, 4)}
_WIDTHS = (64, 128, 256, 512, 512)
# Dense layer -> index in the reference's `classifier` nn.Sequential
# (Linear, ReLU, Dropout, Linear, ReLU, Dropout, Linear).
_VGG_HEAD = {"fc1": 0, "fc2": 3, "predictions": 6}


def _vgg_features(
    depth: int, use_bn: bool, aa: AntialiasSpec | None, circular: bool = False
):
    spec = []
    for block, (convs, width) in enumerate(zip(_STAGES[depth], _WIDTHS), 1):
        for i in range(1, convs + 1):
            spec += [conv_spec(f"block{block}_conv{i}", width, 3, padding=1)]
            if use_bn:
                spec += [("bn", f"block{block}_bn{i}", {})]
            spec += [("relu", f"block{block}_relu{i}", {})]
        spec += pool_specs(f"block{block}_pool", 2, aa, circular)
    return spec


def _torch_names(model) -> dict[str, str] | None:
    """PyTorch names of a VGG model of this module, else None."""
    candidates = (
        _vgg_features(depth, use_bn, aa)
        for depth in _STAGES
        for use_bn in (False, True)
        for aa in (ANY_ANTIALIAS, None)
    )
    return first_match(model, candidates, _VGG_HEAD)


@dataclasses.dataclass(frozen=True, kw_only=True)
class VGGVariant:
    """One VGG: its depth, with or without BatchNorm.

    Attributes:
        depth: 11, 13, 16 or 19 weight layers.
        batch_norm: a BatchNorm after every convolution (the `_bn`
            networks).
    """

    depth: int
    batch_norm: bool = False


def _network(inputs, variant: VGGVariant, options: Options):
    features = _vgg_features(
        variant.depth, variant.batch_norm, options.aa, options.circular
    )
    x = apply_features(inputs, features, circular=options.circular)
    return head(x, options, pool_size=7, dropout_first=False)


VGG = Family(
    name="VGG",
    module=__name__,
    network=_network,
    min_input_size=lambda variant, options: min_input_size(
        _vgg_features(
            variant.depth, variant.batch_norm, options.aa, options.circular
        )
    ),
    arguments=("padding",),
    check=lambda variant, options: warn_flatten_head("VGG", options),
    fixed_size_with_top=True,
    doc="""Instantiates the anti-aliased {title} architecture.

Equals `antialiased_cnns.{arch}(filter_size=filter_size)`: every max pool
runs at stride 1 and is followed by a `BlurPool2D` of stride 2. Its
weights load with `keras_blurpool.load_torch_weights`; those of
torchvision's `{arch}` load too, into any `antialias`.
""",
    doc_fields={
        "top": "adaptive average pooling to 7x7, `flatten`, `fc1`, `fc2`, "
        "`predictions`",
        "where": "after each max pool, run at stride 1",
        "polyphase": '`"aps"` / `"lps"` (adaptive / learnable polyphase '
        "sampling, `APSPool2D` / `LPSPool2D` after a blur of "
        '`filter_size`: with `padding="circular"` and `include_top=False`, '
        '`pooling="avg"` or `"max"`, exactly invariant to circular shifts; '
        "the classifier of `include_top=True` flattens a map, which is not, "
        "and the builder warns), ",
    },
)
# VGGs without BatchNorm take the flag like every builder.
_NO_BN = {"bn_note": " No effect here: this network has no BatchNormalization."}

VGG11 = VGG.builder(
    "VGG11", arch="vgg11", title="VGG11", variant=VGGVariant(depth=11), **_NO_BN
)
VGG13 = VGG.builder(
    "VGG13", arch="vgg13", title="VGG13", variant=VGGVariant(depth=13), **_NO_BN
)
VGG16 = VGG.builder(
    "VGG16", arch="vgg16", title="VGG16", variant=VGGVariant(depth=16), **_NO_BN
)
VGG19 = VGG.builder(
    "VGG19", arch="vgg19", title="VGG19", variant=VGGVariant(depth=19), **_NO_BN
)
VGG11BN = VGG.builder(
    "VGG11BN",
    arch="vgg11_bn",
    title="VGG11 (with BatchNorm)",
    variant=VGGVariant(depth=11, batch_norm=True),
)
VGG13BN = VGG.builder(
    "VGG13BN",
    arch="vgg13_bn",
    title="VGG13 (with BatchNorm)",
    variant=VGGVariant(depth=13, batch_norm=True),
)
VGG16BN = VGG.builder(
    "VGG16BN",
    arch="vgg16_bn",
    title="VGG16 (with BatchNorm)",
    variant=VGGVariant(depth=16, batch_norm=True),
)
VGG19BN = VGG.builder(
    "VGG19BN",
    arch="vgg19_bn",
    title="VGG19 (with BatchNorm)",
    variant=VGGVariant(depth=19, batch_norm=True),
)


# Released ImageNet checkpoints of the reference, `filter_size -> file`;
# at filter size 4 the network fine-tuned from the torchvision baseline.
_WEIGHTS = {
    "vgg11": {4: "vgg11_lpf4_finetune-35eab449.pth"},
    "vgg11_bn": {4: "vgg11_bn_lpf4_finetune-5d60b5e4.pth"},
    "vgg13": {4: "vgg13_lpf4_finetune-d8ff02c4.pth"},
    "vgg13_bn": {4: "vgg13_bn_lpf4_finetune-45e2a72f.pth"},
    "vgg16": {
        2: "vgg16_lpf2-60268e0c.pth",
        3: "vgg16_lpf3-e9b0ce42.pth",
        4: "vgg16_lpf4_finetune-79c9dff7.pth",
        5: "vgg16_lpf5-1391f70c.pth",
    },
    "vgg16_bn": {
        2: "vgg16_bn_lpf2-2c2052a8.pth",
        3: "vgg16_bn_lpf3-1782878a.pth",
        4: "vgg16_bn_lpf4_finetune-1dd798d1.pth",
        5: "vgg16_bn_lpf5-c500b52f.pth",
    },
    "vgg19": {4: "vgg19_lpf4_finetune-7ab2cf45.pth"},
    "vgg19_bn": {4: "vgg19_bn_lpf4_finetune-d0114293.pth"},
}
_WEIGHTS_FROM_SCRATCH = {
    "vgg16": {4: "vgg16_lpf4-de9267ac.pth"},
    "vgg16_bn": {4: "vgg16_bn_lpf4-a1c3559b.pth"},
}

_BUILDERS = {
    "vgg11": VGG11,
    "vgg11_bn": VGG11BN,
    "vgg13": VGG13,
    "vgg13_bn": VGG13BN,
    "vgg16": VGG16,
    "vgg16_bn": VGG16BN,
    "vgg19": VGG19,
    "vgg19_bn": VGG19BN,
}
registry.register_family(
    _BUILDERS,
    weights=_WEIGHTS,
    weights_from_scratch=_WEIGHTS_FROM_SCRATCH,
    recipe={n: "vgg_bn" if n.endswith("_bn") else "vgg" for n in _BUILDERS},
    torch_names=_torch_names,
    head_prefixes=("classifier.",),
    released_pool_only=None,
)

"""Anti-aliased AlexNet (torchvision's variant).

Reference:
- [Making Convolutional Networks Shift-Invariant Again](
    https://arxiv.org/abs/1904.11486) (Zhang, ICML 2019)
- [One weird trick for parallelizing convolutional neural networks](
    https://arxiv.org/abs/1404.5997) (Krizhevsky, 2014)

The 3x3 max pools of stride 2 become max pools of stride 1 followed by a
`BlurPool2D` of stride 2. By default conv1 (11x11, stride 4) is
anti-aliased too: it runs at stride 2, and after its ReLU a `BlurPool2D`
provides the remaining factor 2. `antialias` swaps `BlurPool2D` for
another anti-aliasing layer in the same places. The classifier is
torchvision's: adaptive average pooling to 6x6, then three Dense layers
with dropout. `antialias="aps"` / `"lps"` run conv1 at stride 1 and
subsample by 4 in one polyphase layer; with `padding="circular"` (conv1
then pads 5 pixels, keeping its map's size) and `include_top=False` with
a global pooling, the network is exactly invariant to circular shifts.

Layers are described by layer specs (`layer_specs`), one per module of
the reference's `features` `nn.Sequential`.
"""

from __future__ import annotations

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

# Dense layer -> index in the reference's `classifier` nn.Sequential
# (Dropout, Linear, ReLU, Dropout, Linear, ReLU, Linear).
_ALEXNET_HEAD = {"fc1": 1, "fc2": 4, "predictions": 6}


def _relu(name: str):
    return ("relu", f"{name}_relu", {})


def _alexnet_features(
    aa: AntialiasSpec | None, pool_only: bool, circular: bool = False
):
    if aa is None:
        first = [conv_spec("conv1", 64, 11, strides=4, padding=2), _relu("conv1")]
    elif aa.polyphase:
        # APS and LPS: conv1 at stride 1 whatever `pool_only` (a strided
        # convolution breaks their invariance), then one polyphase layer
        # of stride 4. Circularly padded, conv1 pads 5 (keeps the size: a
        # map that shrinks does not shift circularly with its input).
        first = [
            conv_spec("conv1", 64, 11, strides=1, padding=5 if circular else 2),
            _relu("conv1"),
            ("blur", "conv1_blur", {"aa": aa, "strides": 4}),
        ]
    elif pool_only:
        # The reference has no ReLU after conv1 in this variant.
        first = [conv_spec("conv1", 64, 11, strides=4, padding=2)]
    else:
        first = [
            conv_spec("conv1", 64, 11, strides=2, padding=2),
            _relu("conv1"),
            ("blur", "conv1_blur", {"aa": aa}),
        ]
    return (
        first
        + pool_specs("pool1", 3, aa, circular)
        + [conv_spec("conv2", 192, 5, padding=2), _relu("conv2")]
        + pool_specs("pool2", 3, aa, circular)
        + [conv_spec("conv3", 384, 3, padding=1), _relu("conv3")]
        + [conv_spec("conv4", 256, 3, padding=1), _relu("conv4")]
        + [conv_spec("conv5", 256, 3, padding=1), _relu("conv5")]
        + pool_specs("pool3", 3, aa, circular)
    )


def _torch_names(model) -> dict[str, str] | None:
    """PyTorch names of an AlexNet model of this module, else None."""
    candidates = (
        _alexnet_features(ANY_ANTIALIAS, False),
        _alexnet_features(ANY_ANTIALIAS, True),
        _alexnet_features(None, False),
    )
    return first_match(model, candidates, _ALEXNET_HEAD)


def _network(inputs, variant, options: Options):
    del variant  # the family has one member
    features = _alexnet_features(options.aa, options.pool_only, options.circular)
    x = apply_features(inputs, features, circular=options.circular)
    return head(x, options, pool_size=6, dropout_first=True)


ALEXNET = Family(
    name="AlexNet",
    module=__name__,
    network=_network,
    min_input_size=lambda variant, options: min_input_size(
        _alexnet_features(options.aa, options.pool_only, options.circular)
    ),
    arguments=("pool_only", "padding"),
    check=lambda variant, options: warn_flatten_head("AlexNet", options),
    defaults=lambda variant: {"pool_only": False},
    fixed_size_with_top=True,
    doc="""Instantiates the anti-aliased {title} architecture.

Equals `antialiased_cnns.alexnet(filter_size=filter_size,
pool_only=pool_only)`. Its weights load with
`keras_blurpool.load_torch_weights`.
""",
    doc_fields={
        "top": "adaptive average pooling to 6x6, `dropout1`, `flatten`, "
        "`fc1`, `dropout2`, `fc2`, `predictions`",
        "where": "after each max pool, run at stride 1, and after conv1 "
        "unless `pool_only`",
        "first_conv": "conv1 (11x11)",
        "pool_only_note": " As in the reference, this variant has no ReLU "
        "after conv1. APS and LPS always run conv1 at stride 1, then one "
        "polyphase layer of stride 4 (a strided convolution breaks their "
        'invariance); with `padding="circular"` conv1 then pads 5 pixels '
        "instead of 2, so that its map keeps its size.",
        "polyphase": '`"aps"` / `"lps"` (adaptive / learnable polyphase '
        "sampling, `APSPool2D` / `LPSPool2D` after a blur of "
        '`filter_size`: with `padding="circular"` and `include_top=False`, '
        '`pooling="avg"` or `"max"`, exactly invariant to circular shifts; '
        "the classifier of `include_top=True` flattens a map, which is not, "
        "and the builder warns), ",
        "bn_note": " No effect here: this network has no "
        "BatchNormalization.",
    },
)

AlexNet = ALEXNET.builder("AlexNet", arch="alexnet", title="AlexNet", variant=None)


registry.register_family(
    {"alexnet": AlexNet},
    # At filter size 4 the network fine-tuned from the baseline.
    weights={
        "alexnet": {
            2: "alexnet_lpf2-da8aca74.pth",
            3: "alexnet_lpf3-f9bbc410.pth",
            4: "alexnet_lpf4_finetune-20598a7a.pth",
            5: "alexnet_lpf5-4fa3706a.pth",
        }
    },
    weights_from_scratch={"alexnet": {4: "alexnet_lpf4-0114fe25.pth"}},
    recipe="vgg",
    torch_names=_torch_names,
    head_prefixes=("classifier.",),
    released_pool_only=False,
)

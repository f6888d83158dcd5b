"""Transitional: the names the families still import (removed by the builder pass)."""

from __future__ import annotations

from keras_blurpool.applications.arguments import MAX_BUILDER_FILTER_SIZE as MAX_FILTER_SIZE  # noqa: F401
from keras_blurpool.applications.arguments import MIN_BUILDER_FILTER_SIZE as MIN_FILTER_SIZE  # noqa: F401
from keras_blurpool.applications.arguments import MIN_INPUT_SIZE  # noqa: F401
from keras_blurpool.applications.arguments import PADDINGS  # noqa: F401
from keras_blurpool.applications.arguments import POLYPHASE  # noqa: F401
from keras_blurpool.applications.arguments import AntialiasSpec as AntiAlias  # noqa: F401
from keras_blurpool.applications.arguments import antialias_spec  # noqa: F401
from keras_blurpool.applications.arguments import check_builder_arguments
from keras_blurpool.applications.arguments import check_filter_size  # noqa: F401
from keras_blurpool.applications.blocks import BN_EPSILON  # noqa: F401
from keras_blurpool.applications.blocks import BN_MOMENTUM  # noqa: F401
from keras_blurpool.applications.blocks import apply_antialias as anti_alias  # noqa: F401
from keras_blurpool.applications.blocks import batch_norm  # noqa: F401
from keras_blurpool.applications.blocks import channel_axis  # noqa: F401
from keras_blurpool.applications.blocks import channels  # noqa: F401
from keras_blurpool.applications.blocks import conv  # noqa: F401
from keras_blurpool.applications.blocks import data_format  # noqa: F401
from keras_blurpool.applications.blocks import follow_choice  # noqa: F401
from keras_blurpool.applications.blocks import pooling_head as _pooling_head
from keras_blurpool.applications.blocks import spatial_shape  # noqa: F401
from keras_blurpool.applications.builder import finish_model  # noqa: F401
from keras_blurpool.applications.builder import min_size_reason  # noqa: F401
from keras_blurpool.applications.builder import model_input  # noqa: F401
from keras_blurpool.applications.loading import check_weights


def validate_builder_args(*, weights, arch, **kwargs):
    check_builder_arguments(**kwargs)
    check_weights(
        weights,
        arch=arch,
        include_top=kwargs["include_top"],
        classes=kwargs["classes"],
        antialias=kwargs.get("antialias", "blur"),
        filter_size=kwargs["filter_size"],
        pad_type=kwargs.get("pad_type", "reflect"),
        pool_only=kwargs.get("pool_only"),
        padding=kwargs.get("padding", "zero"),
    )


def pooling_head(x, *, include_top, pooling, classes, classifier_activation, name="predictions"):
    import types

    options = types.SimpleNamespace(
        include_top=include_top,
        pooling=pooling,
        classes=classes,
        classifier_activation=classifier_activation,
    )
    return _pooling_head(x, options, name=name)

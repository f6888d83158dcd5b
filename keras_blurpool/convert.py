"""Converts a checkpoint of the PyTorch reference to Keras weights.

Usage:

    keras-blurpool-convert ARCH CHECKPOINT OUT.weights.h5 [--filter-size N]
    python -m keras_blurpool.convert ...    # the same

ARCH is the registry's architecture name (`resnet50`, `vgg16_bn`,
`densenet121`, `mobilenet_v2`, `alexnet`, ...) or a timm model name
(`resnetaa50d`, `resnetblur50`, `seresnextaa101d_32x8d`, ...). CHECKPOINT
is a `.pth` / `.pth.tar` file in either torch format, or a `.safetensors`
file (timm's `model.safetensors` from the Hugging Face Hub), read without
PyTorch. The filter size is read from the checkpoint's BlurPool `filt`
buffers unless given (timm's networks: 3, as its `BlurPool2d`; the
anti-aliased network is built, which loads the same checkpoint as its
plain twin). The model built is the builder's default (1000 classes unless the
checkpoint's classifier says otherwise, default `pool_only`); a classifier
of more than 1000 classes is first checked against the architecture's, so
that no file chooses a large allocation. NaN or infinite values and
negative variances are refused unless `--allow-nonfinite`. OUT is
written atomically. When torch and `antialiased_cnns` are installed, the
reference model is built too, both run on one random batch, and the
largest logit difference is printed.
"""

from __future__ import annotations

import argparse
import os
import re
import sys

import numpy as np

from keras_blurpool._utils import atomic_path
from keras_blurpool.applications import registry
from keras_blurpool.applications.arguments import check_filter_size
from keras_blurpool.applications.loading import infer_filter_size
from keras_blurpool.applications.loading import load_torch_weights
from keras_blurpool.applications.loading import read_checkpoint
from keras_blurpool.applications.pretrained import TIMM_BLUR_FILTER_SIZE
from keras_blurpool.weights.names import quote
from keras_blurpool_cli.parsers import convert_parser


def _head(state_dict, head_prefixes) -> str | None:
    """The key of the checkpoint's classifier weight (its last Linear
    layer), or None when it has none."""
    heads = [
        key
        for key in state_dict
        if key.startswith(head_prefixes)
        and key.endswith(".weight")
        and np.ndim(state_dict[key]) == 2
    ]
    if not heads:
        return None
    # The last Linear of the classifier Sequential holds the most index
    # (ASCII digits only: int() refuses superscripts such as '²').
    return max(
        heads, key=lambda k: [int(p) for p in k.split(".") if re.fullmatch("[0-9]+", p)]
    )


def _classes(spec, state_dict, build) -> int:
    """Classes of the checkpoint's classifier, once checked against the
    architecture: the model built for them allocates no more than the
    checkpoint's classifier holds (a `[500000, 0]` one, 85 bytes, must
    not have a 500,000-class model built). More than 1000 classes (the
    builders' default) are checked on a one-class model first."""
    head = _head(state_dict, spec.head_prefixes)
    if head is None:
        return 1000
    classes, inputs = (int(n) for n in np.shape(state_dict[head]))
    if classes < 1:
        raise SystemExit(
            f"error: the checkpoint's classifier {quote(head)} has shape "
            f"{np.shape(state_dict[head])}: no classes"
        )
    if classes <= 1000:
        return classes  # no larger than the builder's default
    probe = build(1)
    names = {
        torch: keras_name
        for keras_name, torch in (spec.torch_names(probe) or {}).items()
    }
    layer = names.get(head[: -len(".weight")])
    expected = probe.get_layer(layer).kernel.shape[0] if layer else None
    del probe
    if expected is not None and inputs != expected:
        raise SystemExit(
            f"error: the checkpoint's classifier {quote(head)} has shape "
            f"{np.shape(state_dict[head])}, but {spec.name}'s classifier "
            f"takes {expected} inputs: it does not fit, and nothing of "
            f"{classes} classes was built"
        )
    return classes


def _compare(arch: str, filter_size: int, classes: int, state_dict, model):
    """`(largest |logit difference|, largest |logit|)`, or a reason why not.

    The reference is built with the same filter size; a checkpoint saved
    without BlurPool `filt` buffers (a torchvision one) keeps the
    reference's own, which are the same fixed binomial filters.
    """
    try:
        import antialiased_cnns
        import torch
    except ImportError:
        return "torch / antialiased_cnns not installed"
    if not hasattr(antialiased_cnns, arch):
        return f"the reference has no architecture {arch!r}"
    torch_model = getattr(antialiased_cnns, arch)(
        pretrained=False, filter_size=filter_size, num_classes=classes
    )
    result = torch_model.load_state_dict(
        {k: torch.from_numpy(np.array(v)) for k, v in state_dict.items()},
        strict=False,
    )
    missing = [k for k in result.missing_keys if not k.endswith(".filt")]
    if missing or result.unexpected_keys:
        return (
            "the reference does not take this state dict (missing: "
            f"{missing[:3]}, unexpected: {result.unexpected_keys[:3]})"
        )
    torch_model.eval()
    x = np.random.default_rng(0).standard_normal((2, 3, 224, 224))
    x = x.astype("float32")
    with torch.no_grad():
        expected = torch_model(torch.from_numpy(x)).numpy()
    channels_first = model.input_shape[1] == 3
    got = np.asarray(
        model(x if channels_first else x.transpose(0, 2, 3, 1), training=False)
    )
    return float(np.abs(got - expected).max()), float(np.abs(expected).max())


def _check_output(parser, output: str) -> None:
    """Refuses an output path that cannot be written, before any work."""
    if not output.endswith(".weights.h5"):
        parser.error(f"OUT must end with `.weights.h5`. Received: {output!r}")
    if os.path.isdir(output):
        parser.error(f"OUT is a directory. Received: {output!r}")
    directory = os.path.dirname(os.path.abspath(output))
    if not os.path.isdir(directory):
        parser.error(
            f"the directory of OUT does not exist: {directory}. "
            f"Received: {output!r}"
        )
    if not os.access(directory, os.W_OK | os.X_OK):
        parser.error(
            f"the directory of OUT is not writable: {directory}. "
            f"Received: {output!r}"
        )


def main(argv: list[str] | None = None) -> int:
    """Runs the converter.

    Args:
        argv: command-line arguments (default: `sys.argv[1:]`).

    Returns:
        0 when the output was written (whether or not the comparison with
        the reference could run).

    Raises:
        SystemExit: with a message for an unknown architecture, an output
            path that is not a writable `.weights.h5` file, a checkpoint
            that cannot be read or does not fit the architecture, or a
            filter size that cannot be inferred. Nothing is written then.
    """
    parser = convert_parser()
    return run(parser, parser.parse_args(argv))


def run(parser: argparse.ArgumentParser, args: argparse.Namespace) -> int:
    """Converts as `main` does, the command line parsed.

    The console script `keras-blurpool-convert` parses it without Keras
    (`keras_blurpool_cli.scripts`) before importing this module.

    Args:
        parser: `keras_blurpool_cli.parsers.convert_parser()`, for its errors.
        args: what it parsed.

    Returns:
        0, as `main`.

    Raises:
        SystemExit: as `main`.
    """
    if args.arch not in registry.ARCHITECTURES:
        parser.error(
            f"unknown architecture {args.arch!r}; choose one of: "
            + ", ".join(registry.ARCHITECTURES)
        )
    spec = registry.get(args.arch)
    if getattr(spec.builder, "afc_variant", None) is not None:
        parser.error(
            f"{args.arch} is not converted here: build it with its checkpoint, "
            f"`{spec.builder.__name__}(weights=path)`, then `model.save_weights(...)` "
            "(docs/alias_free.md)"
        )
    _check_output(parser, args.output)
    if args.filter_size is not None:
        try:
            check_filter_size(args.filter_size)
        except ValueError as error:
            parser.error(f"--filter-size: {error}")
    try:
        state_dict = spec.fix_state_dict(read_checkpoint(args.checkpoint))
    except (ValueError, OSError) as error:
        raise SystemExit(f"error: {error}") from error

    filter_size = args.filter_size
    if filter_size is None and spec.source == "timm":
        # timm saves no blur filter; its BlurPool2d has 3 taps.
        filter_size = TIMM_BLUR_FILTER_SIZE
    if filter_size is None:
        try:
            filter_size = infer_filter_size(state_dict)
        except ValueError as error:
            raise SystemExit(f"error: {error}") from error
        if filter_size is None:
            raise SystemExit(
                f"error: {args.checkpoint} holds no BlurPool `filt` buffer, "
                "so its filter size is unknown: pass --filter-size N"
            )
        print(f"filter_size={filter_size} (from the checkpoint's BlurPool filters)")
    else:
        print(f"filter_size={filter_size}")

    def build(classes):
        try:
            return spec.builder(
                classes=classes, classifier_activation=None, filter_size=filter_size
            )
        except ValueError as error:
            raise SystemExit(f"error: {error}") from error

    classes = _classes(spec, state_dict, build)
    model = build(classes)
    try:
        load_torch_weights(
            model, state_dict, allow_nonfinite=args.allow_nonfinite
        )
    except ValueError as error:
        raise SystemExit(f"error: {error}") from error

    with atomic_path(args.output, suffix=".weights.h5") as partial:
        model.save_weights(partial, overwrite=True)
    print(f"wrote {args.output} ({args.arch}, {classes} classes)")

    if not args.no_compare:
        try:
            result = _compare(args.arch, filter_size, classes, state_dict, model)
        except Exception as error:  # the output is written: report, exit 0
            result = f"{type(error).__name__}: {error}"
        if isinstance(result, str):
            print(f"no comparison with the reference: {result}")
        else:
            diff, scale = result
            print(
                f"largest logit difference vs the reference: {diff:.3g} "
                f"(largest |logit| {scale:.3g})"
            )
    return 0


if __name__ == "__main__":
    sys.exit(main())

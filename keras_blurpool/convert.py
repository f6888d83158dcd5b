"""Converts a checkpoint of the PyTorch reference to Keras weights.

Usage:

    keras-blurpool-convert ARCH CHECKPOINT OUT.weights.h5 [--filter-size N]

(or `python -m keras_blurpool.convert ...`).

ARCH is the reference's architecture name (`resnet50`, `vgg16_bn`,
`densenet121`, `mobilenet_v2`, `alexnet`, ...). CHECKPOINT is a `.pth`
/ `.pth.tar` file in either torch format, read without PyTorch. The
filter size is read from the checkpoint's BlurPool `filt` buffers unless
given. The model built is the builder's default (1000 classes unless the
checkpoint's classifier says otherwise, default `pool_only`). OUT is
written atomically. When torch and `antialiased_cnns` are installed, the
reference model is built too, both run on one random batch, and the
largest logit difference is printed.
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile

import numpy as np

from keras_blurpool.weights import pretrained
from keras_blurpool.weights.torch_checkpoint import read_torch_checkpoint
from keras_blurpool.weights.torch_state_dict import load_torch_weights


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="keras-blurpool-convert",
        description=(
            "Convert a checkpoint of the PyTorch antialiased_cnns reference "
            "into a Keras `.weights.h5` file."
        ),
    )
    parser.add_argument(
        "arch",
        help="reference architecture name: "
        + ", ".join(sorted(pretrained.ARCHITECTURES)),
    )
    parser.add_argument("checkpoint", help="the .pth / .pth.tar file")
    parser.add_argument("output", help="the .weights.h5 file to write")
    parser.add_argument(
        "--filter-size",
        type=int,
        default=None,
        help="BlurPool filter size (default: read from the checkpoint)",
    )
    parser.add_argument(
        "--no-compare",
        action="store_true",
        help="skip the comparison with the PyTorch reference",
    )
    return parser


def _classes(state_dict) -> int:
    """Classes of the checkpoint's classifier (its last Linear layer)."""
    heads = [
        key for key in state_dict
        if key.startswith(("fc.", "classifier")) and key.endswith(".weight")
        and np.ndim(state_dict[key]) == 2
    ]
    if not heads:
        return 1000
    # The last Linear of the classifier Sequential holds the most index.
    last = max(heads, key=lambda k: [int(p) for p in k.split(".") if p.isdigit()])
    return int(np.shape(state_dict[last])[0])


def _compare(arch: str, filter_size: int, classes: int, state_dict, model):
    """Largest |logit difference| against the reference, or None."""
    try:
        import antialiased_cnns
        import torch
    except ImportError:
        return None
    torch_model = getattr(antialiased_cnns, arch)(
        pretrained=False, filter_size=filter_size, num_classes=classes
    )
    torch_model.load_state_dict(
        {k: torch.from_numpy(np.array(v)) for k, v in state_dict.items()}
    )
    torch_model.eval()
    x = np.random.default_rng(0).standard_normal((2, 3, 224, 224))
    x = x.astype("float32")
    with torch.no_grad():
        expected = torch_model(torch.from_numpy(x)).numpy()
    got = np.asarray(model(x.transpose(0, 2, 3, 1), training=False))
    return float(np.abs(got - expected).max()), float(np.abs(expected).max())


def main(argv: list[str] | None = None) -> int:
    """Runs the converter.

    Args:
        argv: command-line arguments (default: `sys.argv[1:]`).

    Returns:
        0 on success.

    Raises:
        SystemExit: with a message for an unknown architecture, an output
            path not ending in `.weights.h5`, a checkpoint that cannot be
            read or does not fit the architecture, or a filter size that
            cannot be inferred.
    """
    parser = _parser()
    args = parser.parse_args(argv)
    if args.arch not in pretrained.ARCHITECTURES:
        parser.error(
            f"unknown architecture {args.arch!r}; choose one of: "
            + ", ".join(sorted(pretrained.ARCHITECTURES))
        )
    if not args.output.endswith(".weights.h5"):
        parser.error(
            f"OUT must end with `.weights.h5`. Received: {args.output!r}"
        )
    if args.filter_size is not None and not 1 <= args.filter_size <= 7:
        parser.error(
            "--filter-size must be from 1 to 7. "
            f"Received: {args.filter_size}"
        )
    try:
        state_dict = pretrained.prepare_state_dict(
            read_torch_checkpoint(args.checkpoint), include_top=True
        )
    except (ValueError, OSError) as error:
        raise SystemExit(f"error: {error}") from error

    filter_size = args.filter_size
    if filter_size is None:
        try:
            filter_size = pretrained.infer_filter_size(state_dict)
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

    from keras_blurpool import applications

    classes = _classes(state_dict)
    builder = getattr(applications, pretrained.ARCHITECTURES[args.arch])
    model = builder(
        classes=classes, classifier_activation=None, filter_size=filter_size
    )
    try:
        load_torch_weights(model, state_dict)
    except ValueError as error:
        raise SystemExit(f"error: {error}") from error

    # Atomic write: a temp file in the output's directory, then a rename.
    directory = os.path.dirname(os.path.abspath(args.output))
    fd, partial = tempfile.mkstemp(
        prefix=".convert-", suffix=".weights.h5", dir=directory
    )
    os.close(fd)
    try:
        model.save_weights(partial, overwrite=True)
        pretrained.publish(partial, args.output)
    finally:
        if os.path.exists(partial):
            os.remove(partial)
    print(f"wrote {args.output} ({args.arch}, {classes} classes)")

    if not args.no_compare:
        result = _compare(args.arch, filter_size, classes, state_dict, model)
        if result is None:
            print("torch / antialiased_cnns not installed: no comparison")
        else:
            diff, scale = result
            print(
                f"largest logit difference vs the reference: {diff:.3g} "
                f"(largest |logit| {scale:.3g})"
            )
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""Accuracy and shift-consistency of a zoo model, as the paper reports them.

    python -m recipes.evaluate --arch resnet50 --filter-size 4 \\
        --weights imagenet --data tfds:imagenet2012:validation \\
        --manual-dir ~/imagenet --metrics accuracy,consistency,diagonal

prints a table like the reference's README and writes `results.json`,
the diagonal-shift curves (`diagonal_<model>.npz`) and their plot
(`diagonal.png`) to `--out-dir`; `--metrics adversarial`
(`adversarial_circular`) adds the worst-case accuracy over the grid of
crop (circular) shifts 0..max-shift on each axis and its plot against the
shift range, all models on one figure (`adversarial.png`,
`adversarial_circular.png`), `fractional` the consistency under
half-pixel shifts, `flip_rate` ImageNet-P's translation flip rate.
`--baseline-weights` evaluates the plain network too, side by side, with
the difference. `--weights imagenet` needs
ImageNet's labels: a folder's class names must be WordNet ids
(`n01440764`, ...). An image file that cannot be decoded is an error
naming it, or, with `--skip-bad-images`, skipped and counted.

Released weights (`--weights imagenet`, a timm tag as `--weights`, or a
local copy of them with `--tag`) are validated as their authors did:
`--image-size`, `--resize-size` and `--interpolation` default to the
registry's `preprocessing_for(tag)` (the reference's 256 -> 224
bilinear; timm's `floor(size / crop_pct)`, bicubic), `--test-size` to
timm's larger test size; `results.json` records the interpolation.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import sys

from keras_blurpool_cli.parsers import INTERPOLATIONS
from keras_blurpool_cli.parsers import add_allow_nonfinite

from . import _args
from ._args import STRATEGIES

# Before TensorFlow is imported. `main` imports it (and Keras) only once
# the command line is parsed, so `--help` needs neither: the modules
# imported above import neither.
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

# `--filter-size` left to the architecture.
_DEFAULT = object()

METRICS = (
    "accuracy", "consistency", "diagonal", "circular", "adversarial",
    "adversarial_circular", "fractional", "flip_rate",
)
_WNID = re.compile(r"n\d{8}")


def _metrics(text: str) -> tuple[str, ...]:
    names = tuple(m.strip() for m in text.split(",") if m.strip())
    unknown = [m for m in names if m not in METRICS]
    if unknown or not names:
        raise argparse.ArgumentTypeError(
            f"unknown metric(s) {unknown or text!r}; allowed: {','.join(METRICS)}"
        )
    return names


def parser(prog: str | None = None) -> argparse.ArgumentParser:
    """The command line of `python -m recipes.evaluate`.

    Args:
        prog: the program name of the usage line; `python -m
            recipes.evaluate` (the package's name when installed) if None.
            The console script `keras-blurpool-evaluate` passes its own.

    Returns:
        The `argparse.ArgumentParser`.
    """
    p = argparse.ArgumentParser(
        prog=prog or f"python -m {__package__}.evaluate",
        description="Accuracy and shift-consistency of an (antialiased) model.",
    )
    p.add_argument("--arch", required=True, help="e.g. resnet50, vgg16_bn, demo")
    p.add_argument(
        "--filter-size", type=_args.filter_size, default=_DEFAULT,
        help="1-7, or 'none' for the plain network (default 4; 3 for "
        "timm's networks)",
    )
    p.add_argument(
        "--antialias", default=None, choices=("blur", "avg", "aps", "lps"),
        help="the anti-aliasing layer of the network (default blur; timm's "
        "networks: their released one, avg for resnetaa*)",
    )
    p.add_argument(
        "--padding", default="zero", choices=("zero", "circular"),
        help="padding of the convolutions, zoo builders (default zero)",
    )
    p.add_argument(
        "--weights", required=True,
        help="'imagenet', a released tag of a timm network (e.g. ah_in1k), "
        "or a .weights.h5 / PyTorch .pth / .safetensors checkpoint",
    )
    p.add_argument(
        "--tag",
        help="a released tag of a timm network (default: its default tag): "
        "the weights '--weights imagenet' fetches, and whose preprocessing "
        "applies, also to a local copy of them given as --weights",
    )
    p.add_argument(
        "--baseline-weights",
        help="also evaluate the plain network (filter 'none') with these weights",
    )
    add_allow_nonfinite(p)
    p.add_argument(
        "--data", required=True,
        help="tfds:NAME[:SPLIT], a folder ROOT/CLASS/*.jpg, or 'demo'",
    )
    p.add_argument("--split", default="validation", help="default: validation")
    p.add_argument("--data-dir", help="TFDS data_dir")
    p.add_argument("--manual-dir", help="TFDS manual_dir (imagenet2012)")
    p.add_argument(
        "--metrics", type=_metrics, default=("accuracy", "consistency"),
        help=f"comma-separated, of {','.join(METRICS)} (default "
        "accuracy,consistency); adversarial: accuracy under every crop "
        "shift of the grid 0..max-shift squared, adversarial_circular: "
        "under every circular one, fractional: consistency under "
        "half-pixel (Fourier) shifts, flip_rate: how often the class "
        "changes along a one-pixel-step translation",
    )
    p.add_argument("--out-dir", default="evaluation", help="default: ./evaluation")
    p.add_argument("--batch-size", type=_args.positive_int, default=32)
    p.add_argument("--max-images", type=_args.positive_int, help="evaluate the first N only")
    p.add_argument(
        "--image-size", type=_args.positive_int,
        help="default: the released weights' (timm's input_size), else the "
        "data's (224); its square at most --max-image-pixels",
    )
    p.add_argument(
        "--resize-size", type=_args.positive_int,
        help="short side before the centre crop, default: the released "
        "weights' (floor(image size / crop_pct)), else the data's (256); "
        "its square at most --max-image-pixels",
    )
    p.add_argument(
        "--interpolation", choices=INTERPOLATIONS,
        help="of the resize; default: the released weights' (bicubic for "
        "timm's), else bilinear",
    )
    p.add_argument(
        "--test-size", action="store_true",
        help="timm's networks: validate at their larger test_input_size",
    )
    p.add_argument(
        "--max-shift", type=_args.positive_int,
        help="largest shift, default resize size - image size (32); the "
        "square of image size + max shift at most --max-image-pixels",
    )
    p.add_argument(
        "--passes", type=_args.passes, default=5,
        help="pairs of shifted views per image for consistency and circular "
        f"(default 5, the reference's; at most {_args.MAX_PASSES})",
    )
    p.add_argument(
        "--seed", type=_args.seed, default=0,
        help=f"seed of the shifts, 0 to {_args.MAX_SEED} (default 0)",
    )
    p.add_argument(
        "--strategy", default="auto", choices=STRATEGIES,
        help="tf.distribute strategy; auto picks from the devices present",
    )
    p.add_argument(
        "--skip-bad-images", action="store_true",
        help="skip image files that cannot be decoded (truncated, corrupt, "
        "empty, not JPEG or PNG, over --max-image-pixels) and report how "
        "many, instead of stopping at the first",
    )
    p.add_argument(
        "--max-image-pixels", type=_args.max_image_pixels,
        default=_args.DEFAULT_MAX_IMAGE_PIXELS,
        help="decode no image file of more pixels (height x width, read "
        "from its header first) and make no crop or resize of more: a "
        "larger file is an error naming it, or skipped with "
        f"--skip-bad-images (default {_args.DEFAULT_MAX_IMAGE_PIXELS}, "
        "Pillow's MAX_IMAGE_PIXELS)",
    )
    p.add_argument("--verbose", type=int, choices=(0, 1), default=1)
    return p


def _label(filter_size, antialias: str = "blur") -> str:
    if filter_size is None:
        return "baseline"
    if antialias in ("aps", "lps", "avg"):
        return f"{antialias.upper()} (filter {filter_size})"
    return f"antialiased (filter {filter_size})"


def released_tag(args) -> str | None:
    """The released tag evaluated: `--tag`, or `--weights` when it is one.

    With `--weights imagenet` and no `--tag`, the architecture's default
    tag (None for the reference's architectures, which have no tags).

    Raises:
        ValueError: when `--tag` and a tag given as `--weights` disagree,
            or `--tag` is given for an architecture not in the registry.
    """
    from keras_blurpool.applications import registry

    spec = registry.ARCHITECTURES.get(args.arch)
    tag = getattr(args, "tag", None)
    if spec is None:
        if tag is not None:
            raise ValueError(
                f"--tag {tag!r} names released weights, but --arch "
                f"{args.arch!r} is not an architecture of the registry"
            )
        return None
    if args.weights in spec.hub_weights:
        if tag is not None and tag != args.weights:
            raise ValueError(
                f"--weights {args.weights!r} and --tag {tag!r} name "
                "different released weights; give one of them"
            )
        return args.weights
    if tag is None and args.weights == "imagenet":
        return spec.default_tag
    return tag


def released_preprocessing(args):
    """The registry's `Preprocessing` of the released weights evaluated.

    `preprocessing_for(tag)` of `--arch` (at its test size with
    `--test-size`) when `--weights` is `"imagenet"` or a released tag, or
    `--tag` says which released weights a local file holds; None
    otherwise: other weights were trained here, on the data's own sizes.

    Raises:
        ValueError: for a tag the architecture never released (see also
            `released_tag`).
    """
    from keras_blurpool.applications import registry

    tag = released_tag(args)
    spec = registry.ARCHITECTURES.get(args.arch)
    if spec is None or (args.weights != "imagenet" and tag is None):
        return None
    config = spec.preprocessing_for(tag)
    return config.at_test_size() if args.test_size else config


def _network_defaults(args) -> None:
    """`--antialias` and `--filter-size` default to the architecture's."""
    from keras_blurpool.applications import registry
    from keras_blurpool.applications.pretrained import TIMM_BLUR_FILTER_SIZE

    spec = registry.ARCHITECTURES.get(args.arch)
    timm = spec is not None and spec.source == "timm"
    if args.antialias is None:
        args.antialias = spec.released_antialias if timm else "blur"
    if args.filter_size is _DEFAULT:
        args.filter_size = TIMM_BLUR_FILTER_SIZE if timm else 4


def _check_sizes(cli, args, image_size, resize_size, max_shift) -> None:
    """Refuses sizes that make images over `--max-image-pixels`.

    The crops (`--image-size`), the resize before the centre crop
    (`--resize-size`) and the squares the shifted views are cut from
    (`--image-size` + `--max-shift`), given or defaulted; None skips one.
    """
    bound = args.max_image_pixels
    checks = [
        ("--image-size", image_size, image_size, "crops"),
        ("--resize-size", resize_size, resize_size, "resized images"),
    ]
    if image_size is not None and max_shift is not None:
        checks.append(
            ("--max-shift", max_shift, image_size + max_shift,
             "squares of --image-size + --max-shift")
        )
    for flag, value, side, what in checks:
        if value is None:
            continue
        message = _args.pixel_bound_error(flag, value, bound, side, what)
        if message:
            cli.error(message)


def evaluate_model(
    model, source, args, image_size, resize_size, max_shift,
    interpolation="bilinear",
) -> dict:
    """Runs the requested metrics on one model; returns figures (and curves)."""
    from keras_blurpool import evaluation

    data = source.dataset
    if args.max_images:
        data = data.take(args.max_images)
    common = dict(
        batch_size=args.batch_size, verbose=args.verbose,
        interpolation=interpolation,
    )
    figures = {}
    if "accuracy" in args.metrics:
        top_k = (1, 5) if model.output_shape[-1] >= 5 else (1,)
        figures["accuracy"] = evaluation.accuracy(
            model, data, top_k, image_size=image_size, resize_size=resize_size,
            **common,
        )
    if "consistency" in args.metrics:
        figures["consistency"] = evaluation.shift_consistency(
            model, data, image_size=image_size, max_shift=max_shift,
            passes=args.passes, seed=args.seed, **common,
        )
    if "circular" in args.metrics:
        figures["circular"] = evaluation.circular_shift_consistency(
            model, data, image_size=image_size, resize_size=resize_size,
            max_shift=max_shift, passes=args.passes, seed=args.seed, **common,
        )
    if "diagonal" in args.metrics:
        figures["diagonal"] = evaluation.diagonal_shift(
            model, data, image_size=image_size, max_shift=max_shift, **common
        )
    sized = dict(image_size=image_size, resize_size=resize_size, **common)
    for name, mode in (("adversarial", "crop"), ("adversarial_circular", "circular")):
        if name in args.metrics:
            figures[name] = evaluation.adversarial_shift_accuracy(
                model, data, max_shift=max_shift, mode=mode, **sized
            )
    if "fractional" in args.metrics:
        figures["fractional"] = evaluation.fractional_shift_consistency(
            model, data, **sized
        )
    if "flip_rate" in args.metrics:
        figures["flip_rate"] = evaluation.translation_flip_rate(
            model, data, length=max_shift + 1, **sized
        )
    return figures


# Table columns of the shift metrics: (metric, header, figure).
_SHIFT_COLUMNS = (
    ("adversarial", "Worst-case accuracy", "adversarial"),
    ("adversarial_circular", "Worst-case circular accuracy", "adversarial"),
    ("fractional", "Half-pixel consistency", "consistency"),
    ("flip_rate", "Flip rate", "flip_rate"),
    ("flip_rate", "Top-5 distance", "top5_distance"),
)


def table(results: dict) -> str:
    """A Markdown table: one row per model, a Delta row for two."""
    columns = []
    first = next(iter(results.values()))
    if "accuracy" in first:
        columns += [("Accuracy", lambda f: f["accuracy"]["top1"])]
        if "top5" in first["accuracy"]:
            columns += [("Top-5", lambda f: f["accuracy"]["top5"])]
    if "consistency" in first:
        columns += [("Consistency", lambda f: f["consistency"]["consistency"])]
    if "circular" in first:
        columns += [("Circular consistency", lambda f: f["circular"]["consistency"])]
    if "diagonal" in first:
        columns += [
            ("Diagonal accuracy", lambda f: float(f["diagonal"].accuracy.mean()))
        ]
    for metric, header, key in _SHIFT_COLUMNS:
        if metric in first:
            columns += [(header, lambda f, m=metric, k=key: f[m][k])]
    rows = [
        "| | " + " | ".join(name for name, _ in columns) + " |",
        "| :-- |" + " :--: |" * len(columns),
    ]
    values = {}
    for label, figures in results.items():
        values[label] = [get(figures) for _, get in columns]
        rows.append(f"| {label} | " + " | ".join(f"{v:.2f}" for v in values[label]) + " |")
    if len(values) == 2:
        base, anti = values.values()
        rows.append("| Delta | " + " | ".join(f"{a - b:+.2f}" for b, a in zip(base, anti)) + " |")
    return "\n".join(rows)


def _check_shift_grid(cli, metrics, max_shift, image_size, resize_size) -> None:
    """Shift grids the model's input cannot hold are refused before any work."""
    margin = resize_size - image_size
    crop = [m for m in ("adversarial", "flip_rate") if m in metrics]
    if crop and max_shift > margin:
        cli.error(
            f"--metrics {','.join(crop)} shift the crop over its margin, "
            f"resize size - image size = {resize_size} - {image_size} = "
            f"{margin} pixels, but --max-shift is {max_shift}: pass "
            f"--max-shift {margin} or less, or a larger --resize-size"
            if margin else
            f"--metrics {','.join(crop)} shift the crop over its margin, "
            f"but --resize-size equals --image-size ({image_size}): pass a "
            "larger --resize-size"
        )
    if "adversarial_circular" in metrics and max_shift >= image_size:
        cli.error(
            f"--metrics adversarial_circular rolls the {image_size}-pixel "
            f"crop by up to --max-shift {max_shift}: pass --max-shift "
            f"{image_size - 1} or less"
        )


def main(argv=None, *, prog: str | None = None) -> int:
    """Runs the command line.

    Args:
        argv: the arguments, without the program name; `sys.argv[1:]` if
            None.
        prog: the program name of the messages (see `parser`).

    Returns:
        The exit status, 0 on success.
    """
    cli = parser(prog)
    args = cli.parse_args(argv)
    _check_sizes(cli, args, args.image_size, args.resize_size, args.max_shift)
    # TensorFlow and Keras only now: `--help` has answered without them.
    import tensorflow as tf

    from keras_blurpool import evaluation
    from keras_blurpool._utils import atomic_path
    from keras_blurpool.weights.values import variable_problems

    from . import data as data_lib
    from . import models
    from . import strategy as strategy_lib

    try:
        models.check_arch(args.arch)
        strategy_lib.check_out_dir(args.out_dir)
        # First TF op of the program: multi_worker needs that.
        strategy = strategy_lib.make_strategy(args.strategy)
        source = data_lib.load_images(
            args.data, args.split, data_dir=args.data_dir,
            manual_dir=args.manual_dir, imagenet_labels=True,
            skip_bad_images=args.skip_bad_images,
            max_image_pixels=args.max_image_pixels,
        )
    except (ValueError, FileNotFoundError) as error:
        cli.error(str(error))
    _network_defaults(args)
    try:
        config = released_preprocessing(args)
    except ValueError as error:
        cli.error(str(error))
    tag = released_tag(args)
    main_weights = args.weights
    if main_weights == "imagenet" and args.tag is not None:
        main_weights = args.tag  # the builders fetch a released tag by name
    image_size = args.image_size or (
        config.input_size if config else source.image_size
    )
    resize_size = args.resize_size or (
        config.resize_size(image_size) if config
        else source.resize_size_for(image_size)
    )
    interpolation = args.interpolation or (
        config.interpolation if config else "bilinear"
    )
    max_shift = args.max_shift or max(resize_size - image_size, 1)
    _check_shift_grid(cli, args.metrics, max_shift, image_size, resize_size)
    _check_sizes(cli, args, image_size, resize_size, max_shift)
    if source.bad_images is not None:
        # A folder: opened again, now that the sizes are known, so that
        # the resize of every metric is held to --max-image-pixels too.
        sides = [
            image_size + max_shift if metric in ("consistency", "diagonal")
            else resize_size
            for metric in args.metrics
        ]
        source = data_lib.load_images(
            args.data, args.split, data_dir=args.data_dir,
            manual_dir=args.manual_dir, imagenet_labels=True,
            skip_bad_images=args.skip_bad_images,
            max_image_pixels=args.max_image_pixels, short_side=max(sides),
        )

    runs = {}
    if args.baseline_weights:
        runs[_label(None)] = (None, args.baseline_weights)
    main_label = _label(args.filter_size, args.antialias)
    runs[main_label] = (args.filter_size, main_weights)
    if (config is not None or args.baseline_weights == "imagenet") and (
        source.class_names != data_lib.IMAGENET_WNIDS
    ):
        # Scored against labels that are not ImageNet's, such weights
        # would read ~0% with no hint why.
        names = [n for n in source.class_names if not _WNID.fullmatch(n)]
        # Names of the wnid form that ImageNet lacks, when all look right.
        names = names or list(source.class_names)
        shown = ", ".join(map(repr, names[:5])) + (", ..." if len(names) > 5 else "")
        cli.error(
            "--weights imagenet predicts ImageNet's 1000 classes, but the "
            f"classes of --data {args.data!r} are not all ImageNet WordNet "
            f"ids (n01440764, ...): {shown}. Name the class folders by "
            "WordNet id, or evaluate weights trained on these classes."
        )
    results = {}
    refused = {}  # label -> the refused values loaded with --allow-nonfinite
    try:
        for label, (filter_size, weights) in runs.items():
            released = weights == "imagenet" or (
                label == main_label and config is not None
            )
            classes = 1000 if released else source.num_classes
            with strategy.scope():
                try:
                    model = models.build_model(
                        args.arch, filter_size, num_classes=classes,
                        image_size=image_size, weights=weights,
                        # The baseline is the plain network.
                        antialias=(
                            "blur" if filter_size is None else args.antialias
                        ),
                        padding=args.padding,
                        allow_nonfinite=args.allow_nonfinite,
                    )
                except (ValueError, FileNotFoundError) as error:
                    cli.error(f"{label} model: {error}")
                print(f"{args.arch}, {label}:", file=sys.stderr)
                if args.allow_nonfinite:
                    refused[label] = variable_problems(model)
                    if refused[label]:
                        # Loaded as asked; the figures are not to be trusted.
                        print(
                            f"warning: the {label} model's weights ({weights}) "
                            "hold NaN or infinite values or negative variances "
                            "(--allow-nonfinite); its figures are meaningless:\n  "
                            + "\n  ".join(refused[label][:20]),
                            file=sys.stderr,
                        )
                try:
                    results[label] = evaluate_model(
                        model, source, args, image_size, resize_size,
                        max_shift, interpolation,
                    )
                except ValueError as error:
                    # A shift grid the input cannot hold, say.
                    cli.error(f"{label} model: {error}")
    except tf.errors.OpError:
        # A file that cannot be decoded stops tf.data with an error that
        # names it in TensorFlow's words; say it in ours.
        bad = source.bad_images
        if bad is None or bad.error() is None:
            raise
        cli.error(bad.error())
    if source.bad_images is not None and source.bad_images.count:
        print(f"{source.bad_images.summary()} (--skip-bad-images)")

    print(f"\n{args.arch} on {args.data} ({args.split})\n")
    print(table(results))
    if not strategy_lib.is_chief(strategy):
        return 0  # every worker has the figures; the chief writes them
    os.makedirs(args.out_dir, exist_ok=True)
    summary = {
        "arch": args.arch, "data": args.data, "split": args.split,
        "image_size": image_size, "resize_size": resize_size,
        "interpolation": interpolation, "tag": tag, "max_shift": max_shift,
        "models": {},
    }
    curves = {}
    for label, figures in results.items():
        summary["models"][label] = {k: v for k, v in figures.items() if k != "diagonal"}
        if refused.get(label):
            summary["models"][label]["nonfinite_weights"] = refused[label]
        if "diagonal" in figures:
            name = "baseline" if label == "baseline" else "antialiased"
            path = os.path.join(args.out_dir, f"diagonal_{name}.npz")
            figures["diagonal"].save(path)
            curves[label] = figures["diagonal"]
            summary["models"][label]["diagonal"] = {
                "file": os.path.basename(path),
                "accuracy": figures["diagonal"].accuracy.tolist(),
                "mean_probability": figures["diagonal"].mean_probability.tolist(),
            }
    for metric in ("adversarial", "adversarial_circular"):
        worst = {label: f[metric] for label, f in results.items() if metric in f}
        if worst:
            png = os.path.join(args.out_dir, f"{metric}.png")
            mode = "crop" if metric == "adversarial" else "circular"
            evaluation.plot_adversarial_shift(
                worst, png,
                title=f"{args.arch} on {args.data} ({args.split}): every "
                f"{mode} shift up to r",
            )
            print(f"wrote {png}")
    if curves:
        png = os.path.join(args.out_dir, "diagonal.png")
        evaluation.plot_diagonal_shift(
            curves, png,
            title=f"{args.arch} on {args.data} ({args.split}): crops at (o, o)",
        )
        print(f"\nwrote {png}")
    with atomic_path(os.path.join(args.out_dir, "results.json")) as partial:
        with open(partial, "w") as f:
            json.dump(summary, f, indent=2)
    print(f"wrote {os.path.join(args.out_dir, 'results.json')}")
    return 0


if __name__ == "__main__":
    sys.exit(main())

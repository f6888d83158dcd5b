"""Trains an (antialiased) network with the reference's recipe.

    python -m recipes.train                      # the demo: baseline vs antialiased
    python -m recipes.train --arch resnet50 --filter-size 4 \\
        --data tfds:imagenet2012 --manual-dir ~/imagenet --out-dir runs/rn50_lpf4

Without `--arch` (and with no `--data` or `--data demo`) it trains a small
CNN twice on the embedded demo dataset, plain and anti-aliased, with the
same seed, initial weights and data order, then prints their accuracy and
shift-consistency side by side: the point of the paper in a few CPU
minutes. `--arch keras.<Name>` (any keras.applications model, e.g.
`keras.MobileNetV2`) on the demo data makes the same comparison for that
model, anti-aliased by `keras_blurpool.antialias_model`, at 64x64 unless
`--image-size` says otherwise.

With `--arch` it trains one network with the reference's hyper-parameters
(`recipes.config`): SGD with momentum 0.9, weight decay 1e-4, lr 0.1 for a
batch of 256 (0.01 for AlexNet and VGG, 0.05 for VGG-BN; scaled linearly
with the batch), divided by 10 every 30 epochs, 90 epochs; MobileNetV2
lr 0.05, cosine, weight decay 4e-5, 150 epochs. `--finetune-from` starts
from a baseline's weights and runs the last two thirds of the schedule.
Rerunning the same command resumes from the latest checkpoint; an
`--out-dir` holding a run that cannot resume (other settings, or a
finished run without checkpoints) is refused unless `--overwrite`.
"""

from __future__ import annotations

import argparse
import os
import sys
import time
import warnings

from keras_blurpool_cli.parsers import ZOO_ARCHITECTURES
from keras_blurpool_cli.parsers import add_allow_nonfinite

from . import _args
from ._args import KERAS_PREFIX
from ._args import STRATEGIES

# Before TensorFlow is imported. `main` imports it (and Keras) only once
# the command line is parsed, so `--help` needs neither: the modules
# imported above import neither.
os.environ.setdefault("KERAS_BACKEND", "tensorflow")
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

# `models.ARCHITECTURES`' names, for `--help` without Keras (a test checks
# that they agree).
ARCHITECTURE_NAMES = (*ZOO_ARCHITECTURES, "demo")

DEMO_FILTER_SIZE = 4
# keras.applications models downsample 32x: at the demo's 32x32 crops their
# last blur would see 2x2 maps, too small to reflect-pad.
KERAS_DEMO_IMAGE_SIZE = 64
_VALIDATION_SPLITS = ("validation", "test")


def build_parser(prog: str | None = None) -> argparse.ArgumentParser:
    """The command line of `python -m recipes.train`.

    Args:
        prog: the program name of the usage line; `python -m
            recipes.train` (the package's name when installed) if None.
            The console script `keras-blurpool-train` passes its own.

    Returns:
        The `argparse.ArgumentParser`.
    """
    p = argparse.ArgumentParser(
        prog=prog or f"python -m {__package__}.train",
        description=(
            "Train an antialiased network (Zhang, ICML 2019) with the "
            "reference's recipe. Without --arch: train a small CNN three "
            "times on the embedded demo data (plain, with BlurPool and with "
            "APS) and compare them."
        ),
    )
    p.add_argument(
        "--arch",
        metavar="ARCH",
        help="architecture: " + ", ".join(ARCHITECTURE_NAMES)
        + f", or {KERAS_PREFIX}NAME for any keras.applications model (e.g. "
        f"{KERAS_PREFIX}MobileNetV2: on the demo data, compared plain and "
        "anti-aliased by antialias_model) (default: the demo comparison)",
    )
    p.add_argument(
        "--filter-size",
        type=_args.filter_size,
        default=DEMO_FILTER_SIZE,
        help="blur filter taps 1-7, or 'none' for the plain network "
        "(default 4)",
    )
    p.add_argument(
        "--data",
        help="'tfds:NAME[:SPLIT]', a folder ROOT/{train,val}/CLASS/*.jpg, or "
        "'demo' (default)",
    )
    p.add_argument("--data-dir", help="TFDS data_dir")
    p.add_argument(
        "--manual-dir",
        help="TFDS manual_dir, e.g. the folder of the ImageNet tarballs",
    )
    p.add_argument(
        "--strategy",
        default="auto",
        choices=STRATEGIES,
        help="distribution strategy (default: auto, from what is present)",
    )
    p.add_argument("--tpu", help="TPU name or address for --strategy tpu")
    p.add_argument(
        "--cpu-devices",
        type=_args.cpu_devices,
        help="split the CPU into this many logical devices (mirrored "
        "training without GPUs, for tests and benchmarks)",
    )
    p.add_argument(
        "--epochs",
        type=_args.epochs,
        help="epochs (default: the recipe's; 2/3 of it with --finetune-from; "
        f"at most {_args.MAX_EPOCHS})",
    )
    p.add_argument(
        "--batch-size",
        type=_args.positive_int,
        help="global batch per forward/backward pass, over all replicas "
        "(default: the recipe's 256 / --accum-steps)",
    )
    p.add_argument(
        "--accum-steps",
        type=_args.positive_int,
        default=1,
        help="forward/backward passes per optimizer step, gradients summed "
        "(the reference's -ba): the effective batch is batch-size x "
        "accum-steps (default 1)",
    )
    p.add_argument(
        "--lr",
        type=_args.positive_float,
        help="learning rate at epoch 0 of the schedule, for the effective "
        "batch (default: the recipe's, scaled linearly with the batch); "
        "--finetune-from starts later in the schedule, e.g. at lr/10",
    )
    p.add_argument(
        "--weight-decay",
        type=_args.non_negative_float,
        help="L2 weight decay as torch's SGD (default: the recipe's)",
    )
    p.add_argument(
        "--finetune-from",
        metavar="CKPT",
        help="baseline weights to start from (a torchvision-named .pth or a "
        "filter_size=None .weights.h5); runs the last 2/3 of the schedule",
    )
    add_allow_nonfinite(p)
    p.add_argument(
        "--mixed-precision",
        action="store_true",
        help="float16 compute with loss scaling (bfloat16 on TPU)",
    )
    p.add_argument(
        "--steps-per-epoch",
        type=_args.positive_int,
        help="optimizer steps per epoch (default: the training images / "
        "the effective batch)",
    )
    p.add_argument(
        "--image-size",
        type=_args.positive_int,
        help="training crop side (default: the data's, 224 or 32 for demo); "
        "its square, and that of the resize before validation's centre crop, "
        "at most --max-image-pixels",
    )
    p.add_argument(
        "--out-dir",
        help="checkpoints, logs and models (default: runs/<arch>_<filter> "
        "or runs/demo)",
    )
    p.add_argument(
        "--checkpoint-every",
        type=_args.non_negative_int,
        default=1000,
        help="steps between checkpoints, besides each epoch end (0: epoch "
        "ends only; default 1000)",
    )
    p.add_argument(
        "--seed", type=_args.seed, default=0,
        help=f"random seed, 0 to {_args.MAX_SEED} (default 0)",
    )
    p.add_argument(
        "--eval-batch-size",
        type=_args.positive_int,
        help="global validation batch (default: the training batch)",
    )
    p.add_argument(
        "--no-validation",
        action="store_true",
        help="skip the validation at each epoch end (no best.* models)",
    )
    p.add_argument(
        "--overwrite",
        action="store_true",
        help="start afresh where --out-dir holds a run this one cannot "
        "resume (other settings, or final/best models without a "
        "checkpoint), deleting it; a checkpoint of the same settings still "
        "resumes",
    )
    p.add_argument(
        "--skip-bad-images",
        action="store_true",
        help="skip image files that cannot be decoded (truncated, corrupt, "
        "empty, not JPEG or PNG, over --max-image-pixels) and report how "
        "many, instead of stopping at the first",
    )
    p.add_argument(
        "--max-image-pixels",
        type=_args.max_image_pixels,
        default=_args.DEFAULT_MAX_IMAGE_PIXELS,
        help="decode no image file of more pixels (height x width, read "
        "from its header first) and make no crop of more: a larger file is "
        "an error naming it, or skipped with --skip-bad-images (default "
        f"{_args.DEFAULT_MAX_IMAGE_PIXELS}, Pillow's MAX_IMAGE_PIXELS)",
    )
    p.add_argument(
        "--antialias",
        default="blur",
        choices=("blur", "avg", "aps", "lps"),
        help="with --arch: the anti-aliasing layer (default blur; avg: "
        "timm's; aps/lps: polyphase sampling, see docs/shift_invariance.md)",
    )
    p.add_argument(
        "--padding",
        default="zero",
        choices=("zero", "circular"),
        help="with --arch (zoo builders): padding of the convolutions "
        "(circular with aps/lps: exactly invariant to circular shifts)",
    )
    p.add_argument(
        "--with-lps",
        action="store_true",
        help="the demo comparison also trains an LPS twin (learnable "
        "polyphase sampling; slower to train than the other three, see "
        "docs/benchmarks.md)",
    )
    p.add_argument(
        "--quiet", action="store_true", help="no progress output"
    )
    return p


def _validate(parser: argparse.ArgumentParser, args) -> bool:
    """Early checks; returns whether this is the demo comparison."""
    from . import strategy as strategy_lib
    from .config import recipe_for
    from .models import ARCHITECTURES
    from .models import is_keras_application
    from .models import own_antialiasing

    keras_app = is_keras_application(args.arch)
    compare = (args.arch is None or keras_app) and args.data in (None, "demo")
    if args.arch is not None and args.arch not in ARCHITECTURES and not keras_app:
        parser.error(
            f"argument --arch: unknown architecture {args.arch!r}; allowed: "
            + ", ".join(ARCHITECTURES)
            + f", or {KERAS_PREFIX}NAME for a keras.applications model"
        )
    if args.arch is None and not compare:
        parser.error(
            f"argument --arch is required with --data {args.data!r} (the demo "
            "comparison runs only on --data demo); allowed: "
            + ", ".join(ARCHITECTURES)
        )
    if compare and args.finetune_from:
        parser.error(
            "argument --finetune-from needs --arch and --data: the demo "
            "comparison trains both of its models from scratch"
        )
    if compare and (args.antialias != "blur" or args.padding != "zero"):
        parser.error(
            "arguments --antialias/--padding need --arch (a single "
            "network): the demo comparison trains BlurPool and APS twins "
            "itself (--with-lps adds LPS)"
        )
    if args.with_lps and not (compare and args.arch is None):
        parser.error(
            "argument --with-lps: only the demo comparison (no --arch, "
            "--data demo) trains an LPS twin"
        )
    if own_antialiasing(args.arch):
        if args.antialias != "blur":
            parser.error(
                f"argument --antialias: {args.arch} has its own anti-aliasing "
                f"(no BlurPool, APS or LPS to choose). Received: "
                f"--antialias {args.antialias}"
            )
        # No filter to name in the header, results.json or the run folder.
        args.filter_size = None
    if compare and args.filter_size is None:
        parser.error(
            "argument --filter-size: the demo comparison trains the plain "
            "network and an antialiased one; give a filter size 1-7, not "
            "'none'"
        )
    recipe = recipe_for("demo" if compare else args.arch)
    if args.steps_per_epoch is not None:
        epochs = args.epochs or recipe.epochs
        if epochs * args.steps_per_epoch > _args.INT64_MAX:
            parser.error(
                f"argument --steps-per-epoch: {args.steps_per_epoch} x "
                f"{epochs} epochs is more than 2**63 - 1 steps (the global "
                "step is an int64)"
            )
    if args.batch_size is None:
        batch = recipe.batch_size
        if batch % args.accum_steps:
            parser.error(
                f"argument --accum-steps: {args.accum_steps} does not divide "
                f"the recipe's batch of {batch}; give --batch-size (the "
                "batch of one forward/backward pass) as well"
            )
    if args.finetune_from:
        path = args.finetune_from
        allowed = (".weights.h5", ".pth", ".pth.tar", ".pt")
        if not path.endswith(allowed):
            parser.error(
                f"argument --finetune-from: {path!r} is neither a Keras "
                ".weights.h5 file nor a PyTorch checkpoint (.pth, .pth.tar, "
                ".pt)"
            )
        from keras_blurpool.weights.files import file_problem

        problem = file_problem(path)
        if problem == "does not exist":
            parser.error(f"argument --finetune-from: no such file {path!r}")
        if problem is not None:
            parser.error(f"argument --finetune-from: {path!r} {problem}")
        if args.arch == "demo" and not path.endswith(".weights.h5"):
            parser.error(
                "argument --finetune-from: the demo CNN loads only Keras "
                f".weights.h5 files, got {path!r}"
            )
    if args.image_size is not None:
        message = _args.pixel_bound_error(
            "--image-size", args.image_size, args.max_image_pixels
        )
        if message:
            parser.error(message)
    if args.tpu and args.strategy not in ("tpu", "auto"):
        parser.error(
            f"argument --tpu: only with --strategy tpu, got --strategy "
            f"{args.strategy}"
        )
    if args.out_dir is not None:
        try:
            strategy_lib.check_out_dir(args.out_dir)
        except ValueError as error:
            parser.error(f"argument {error}")
    return compare


def _has_validation_folder(root: str) -> bool:
    return any(
        os.path.isdir(os.path.join(root, name))
        for name in ("val", "validation")
    )


def _open_validation(data_lib, data, **load_kwargs):
    """The validation split of `data`, or None if it has none.

    Pass the training split's `class_names`: the validation labels follow
    them by name.
    """
    if not data.startswith("tfds:") and data != "demo" and not (
        _has_validation_folder(data)
    ):
        # ROOT/CLASS/*.jpg has one split only: validating on it would
        # measure the training images.
        print(f"{data} has no val/ folder; training without validation")
        return None
    parsed = data_lib.parse_tfds_spec(data)
    if parsed and parsed[1]:
        # "tfds:NAME:SPLIT" names the training split; validate on NAME's.
        data = f"tfds:{parsed[0]}"
    last_error = None
    for split in _VALIDATION_SPLITS:
        try:
            return data_lib.load_images(data, split, **load_kwargs)
        except data_lib.UnknownSplitError as error:
            # Only a missing split: other errors (a validation class the
            # training lacks) must not pass for "no validation".
            last_error = error
    print(f"no validation split ({last_error}); training without validation")
    return None


def _finetune_init(arch, path, *, num_classes, image_size, allow_nonfinite=False):
    """Loads a baseline's weights into the model to train.

    NaN or infinite values and negative variances are refused, naming the
    tensor, unless `allow_nonfinite` (`--allow-nonfinite`).
    """
    import keras_blurpool
    from keras_blurpool.weights import read_torch_checkpoint
    from keras_blurpool.weights import values

    from .models import build_model

    def init(model):
        if path.endswith(".weights.h5"):
            # A filter_size=None model has the same weights under the same
            # names; build it, load, and copy across.
            baseline = build_model(
                arch, None, num_classes=num_classes, image_size=image_size
            )
            baseline.load_weights(path)
            if not allow_nonfinite:
                values.check_variables(baseline, path)
            keras_blurpool.transfer_weights(baseline, model)
        else:
            # torchvision's names (or the reference's) map onto the
            # antialiased model directly.
            keras_blurpool.load_torch_weights(
                model, read_torch_checkpoint(path), allow_nonfinite=allow_nonfinite
            )
        print(f"initialised {model.name} from baseline weights {path}")

    return init


def _train_one(
    args, strategy, *, arch, filter_size, out_dir, data, bad_images=None,
    recipe=None, image_size=None, antialias="blur", padding="zero",
):
    """Trains one model; returns `(TrainResult, Trainer)`.

    The `BadImages` records of the folder sources it opens are appended to
    `bad_images`, a list, as `(split, record)`. `recipe` and `image_size`
    default to the architecture's recipe and the data's crop size;
    `antialias` is passed to `build_model`.
    """
    if bad_images is None:
        bad_images = []
    import keras

    from . import data as data_lib
    from .config import FINETUNE_FRACTION
    from .config import TrainConfig
    from .config import recipe_for
    from .models import build_model
    from .trainer import Trainer

    recipe = recipe or recipe_for(arch)
    load_kwargs = dict(
        data_dir=args.data_dir,
        manual_dir=args.manual_dir,
        max_image_pixels=args.max_image_pixels,
    )
    train_source = data_lib.load_images(data, "train", **load_kwargs)
    num_classes = train_source.num_classes
    if num_classes == 1:
        warnings.warn(
            f"--data {data!r} has a single class "
            f"({train_source.class_names[0]!r}): the softmax of one class "
            "is 1 for every image, so the loss is 0 and the network learns "
            "nothing; give at least two classes",
            stacklevel=2,
        )
    skip_bad = args.skip_bad_images
    image_size = args.image_size or image_size or train_source.image_size
    # Keep the data's resize-to-crop ratio (256/224) at other crop sizes.
    resize_size = train_source.resize_size_for(image_size)
    for side, what in (
        (image_size, "crops"),
        (resize_size, "images resized to a short side"),
    ):
        message = _args.pixel_bound_error(
            "--image-size", image_size, args.max_image_pixels, side, what
        )
        if message:
            raise ValueError(message)
    accum = args.accum_steps
    batch_size = args.batch_size or recipe.batch_size // accum
    effective = batch_size * accum
    finetune = bool(args.finetune_from)
    epochs = args.epochs or (
        max(1, round(recipe.epochs * FINETUNE_FRACTION))
        if finetune
        else recipe.epochs
    )
    schedule_epochs = epochs
    epoch_offset = 0
    if finetune:
        # The last `epochs` epochs of the recipe's schedule.
        schedule_epochs = max(recipe.epochs, epochs)
        epoch_offset = schedule_epochs - epochs
    steps_per_epoch = args.steps_per_epoch
    if steps_per_epoch is None:
        if not train_source.num_examples:
            raise ValueError(
                f"--data {data!r} does not tell how many training images it "
                "has; give --steps-per-epoch"
            )
        steps_per_epoch = train_source.num_examples // effective
        if steps_per_epoch < 1:
            raise ValueError(
                f"--batch-size {batch_size} x --accum-steps {accum} = "
                f"{effective} is more than the {train_source.num_examples} "
                f"training images of {data!r}"
            )
    replicas = strategy.num_replicas_in_sync
    if batch_size % replicas:
        raise ValueError(
            f"--batch-size {batch_size} is not a multiple of the "
            f"{replicas} replicas of the strategy"
        )
    config = TrainConfig(
        out_dir=out_dir,
        epochs=epochs,
        steps_per_epoch=steps_per_epoch,
        global_batch_size=batch_size,
        accum_steps=accum,
        lr=args.lr or recipe.scaled_lr(effective),
        momentum=recipe.momentum,
        weight_decay=(
            recipe.weight_decay if args.weight_decay is None else args.weight_decay
        ),
        schedule=recipe.schedule,
        schedule_epochs=schedule_epochs,
        epoch_offset=epoch_offset,
        lr_step_epochs=recipe.lr_step_epochs,
        lr_gamma=recipe.lr_gamma,
        mixed_precision=args.mixed_precision,
        checkpoint_every=args.checkpoint_every,
        seed=args.seed,
        verbose=0 if args.quiet else 1,
        run_info={
            "arch": arch,
            "filter_size": filter_size,
            "data": data,
            "image_size": image_size,
            "finetune_from": args.finetune_from,
            "strategy": type(strategy).__name__,
            # Only when not the default, so that earlier runs still resume.
            **({"antialias": antialias} if antialias != "blur" else {}),
            **({"padding": padding} if padding != "zero" else {}),
        },
        overwrite=args.overwrite,
    )

    def model_fn():
        # The same seed gives a plain model and its antialiased twin the
        # same initial weights: BlurPool draws no random numbers.
        keras.utils.set_random_seed(args.seed)
        return build_model(
            arch,
            filter_size,
            num_classes=num_classes,
            image_size=image_size,
            antialias=antialias,
            padding=padding,
        )

    sources = {}

    def train_input_fn(context, per_replica_batch, epoch):
        key = context.input_pipeline_id
        if key not in sources:
            sources[key] = data_lib.load_images(
                data,
                "train",
                input_context=context,
                shuffle_seed=args.seed,
                skip_bad_images=skip_bad,
                **load_kwargs,
            )
            if sources[key].bad_images is not None:
                bad_images.append(("train", sources[key].bad_images))
        return data_lib.train_dataset(
            sources[key],
            per_replica_batch,
            image_size=image_size,
            resize_size=resize_size,
            seed=args.seed,
            epoch=epoch,
        )

    eval_input_fn = None
    if not args.no_validation:
        val_source = _open_validation(
            data_lib,
            data,
            class_names=train_source.class_names,
            skip_bad_images=skip_bad,
            # Validation resizes to this short side: held to the bound.
            short_side=resize_size,
            **load_kwargs,
        )
        if val_source is not None and val_source.bad_images is not None:
            bad_images.append(("validation", val_source.bad_images))
        if val_source is not None:

            def eval_input_fn(batch):
                return data_lib.eval_dataset(
                    val_source,
                    batch,
                    image_size=image_size,
                    resize_size=resize_size,
                )

    init_fn = None
    if finetune:
        init_fn = _finetune_init(
            arch,
            args.finetune_from,
            num_classes=num_classes,
            image_size=image_size,
            allow_nonfinite=args.allow_nonfinite,
        )
    trainer = Trainer(
        config,
        strategy,
        model_fn,
        train_input_fn,
        eval_input_fn,
        init_fn=init_fn,
        eval_batch_size=args.eval_batch_size,
    )
    if trainer.is_chief and not args.quiet:
        print(
            f"{arch} ({_antialiasing(arch, filter_size, antialias)}) on "
            f"{data}: {num_classes} "
            f"classes, {image_size}x{image_size}; {epochs} epochs x "
            f"{steps_per_epoch} steps of {effective} images "
            f"({batch_size} x {accum} accumulated) on "
            f"{replicas} replica(s) ({type(strategy).__name__}); lr "
            f"{config.lr:g} {config.schedule}"
            + (f" from schedule epoch {epoch_offset}" if epoch_offset else "")
            + f", weight decay {config.weight_decay:g}"
            + (", mixed precision" if args.mixed_precision else "")
            + f"; out-dir {out_dir}",
            flush=True,
        )
    return trainer.fit(), trainer


def _antialiasing(arch: str, filter_size, antialias: str) -> str:
    """The header's words for how `arch` is anti-aliased."""
    from .models import own_antialiasing

    if own_antialiasing(arch):
        return "its own anti-aliasing"
    if filter_size is None:
        return "plain"
    return f"{antialias}, filter_size={filter_size}"


def _default_out_dir(arch: str, filter_size, antialias: str = "blur") -> str:
    from .models import own_antialiasing

    if own_antialiasing(arch):
        return os.path.join("runs", arch)
    kind = "lpf" if antialias == "blur" else antialias
    tag = "baseline" if filter_size is None else f"{kind}{filter_size}"
    return os.path.join("runs", f"{arch}_{tag}")


def _compare(args, strategy) -> int:
    """Trains a network plain and antialiased; prints both side by side.

    The demo CNN without `--arch`; with `--arch keras.<Name>`, that
    keras.applications model and its twin from `antialias_model`. Both
    train on the demo data with the demo's recipe.
    """
    from keras_blurpool import evaluation

    from . import data as data_lib
    from .config import recipe_for

    arch = args.arch or "demo"
    out_dir = args.out_dir or os.path.join(
        "runs", "demo" if arch == "demo" else f"demo_{arch}"
    )
    filter_size = args.filter_size
    image_size = KERAS_DEMO_IMAGE_SIZE if arch != "demo" else None
    variants = [
        ("baseline", None, "blur", os.path.join(out_dir, "baseline")),
        (f"antialiased (filter {filter_size})", filter_size, "blur",
         os.path.join(out_dir, f"lpf{filter_size}")),
    ]
    if arch == "demo":
        # Polyphase sampling with circular padding: exactly invariant to
        # circular shifts (issue 15).
        variants.append((f"APS (filter {filter_size})", filter_size, "aps",
                         os.path.join(out_dir, f"aps{filter_size}")))
        if args.with_lps:
            variants.append((f"LPS (filter {filter_size})", filter_size,
                             "lps", os.path.join(out_dir, f"lps{filter_size}")))
    started = time.perf_counter()
    models = []
    for label, size, antialias, directory in variants:
        print(f"\n== {arch}: {label} ==", flush=True)
        result, trainer = _train_one(
            args,
            strategy,
            arch=arch,
            filter_size=size,
            out_dir=directory,
            data="demo",
            recipe=recipe_for("demo"),
            image_size=image_size,
            antialias=antialias,
        )
        if not trainer.is_chief:
            continue
        models.append((label, result.model, directory))
    if not models:
        return 0

    validation = data_lib.load_images("demo", "validation")
    size = args.image_size or image_size or validation.image_size
    resize = validation.resize_size_for(size)
    # Shifts within the margin the resize leaves around the crop (8 px
    # for 32 of 40), as recipes.evaluate takes them.
    max_shift = max(resize - size, 1)
    rows = []
    for label, model, directory in models:
        accuracy = evaluation.accuracy(
            model,
            validation.dataset,
            top_k=(1,),
            image_size=size,
            resize_size=resize,
            verbose=0,
        )
        consistency = evaluation.shift_consistency(
            model,
            validation.dataset,
            image_size=size,
            max_shift=max_shift,
            seed=args.seed,
            verbose=0,
        )
        circular = evaluation.circular_shift_consistency(
            model,
            validation.dataset,
            image_size=size,
            resize_size=resize,
            max_shift=size,
            seed=args.seed,
            verbose=0,
        )
        rows.append((label, accuracy["top1"], consistency["consistency"],
                     consistency["std"], circular["consistency"], directory))
    minutes = (time.perf_counter() - started) / 60
    print(
        f"\n{'Demo CNN' if arch == 'demo' else arch} on the demo data "
        f"({validation.num_examples} validation "
        f"images, {size}x{size} crops; consistency: how often two random "
        f"crops shifted by up to {max_shift - 1} px get the same "
        f"class; circular: the same for two circular shifts of the crop by "
        f"up to {size - 1} px), {minutes:.1f} min:"
    )
    width = max(len(row[0]) for row in rows)
    print(f"  {'model':<{width}}  top-1 (%)  consistency (%)  circular (%)")
    for label, top1, cons, std, circ, _ in rows:
        print(
            f"  {label:<{width}}  {top1:9.2f}  {cons:9.2f} ± {std:.2f}"
            f"  {circ:12.2f}"
        )
    for label, *_, directory in rows:
        print(f"  {label}: {os.path.join(directory, 'final.keras')}")
    return 0


def main(argv=None, *, prog: str | None = None) -> int:
    """Runs the command line.

    Args:
        argv: the arguments, without the program name; `sys.argv[1:]` if
            None.
        prog: the program name of the messages (see `build_parser`).

    Returns:
        The exit status, 0 on success.
    """
    parser = build_parser(prog)
    args = parser.parse_args(argv)
    # TensorFlow and Keras only now: `--help` has answered without them.
    import tensorflow as tf

    from . import strategy as strategy_lib

    compare = _validate(parser, args)
    if args.cpu_devices:
        strategy_lib.split_cpu(args.cpu_devices)
    # Before anything else touches TensorFlow: MultiWorkerMirroredStrategy
    # must be created first.
    try:
        strategy = strategy_lib.make_strategy(args.strategy, tpu=args.tpu)
    except ValueError as error:
        parser.error(f"argument --strategy: {error}")
    bad_images = []
    try:
        if compare:
            return _compare(args, strategy)
        result, trainer = _train_one(
            args,
            strategy,
            arch=args.arch,
            filter_size=args.filter_size,
            out_dir=args.out_dir
            or _default_out_dir(args.arch, args.filter_size, args.antialias),
            data=args.data or "demo",
            bad_images=bad_images,
            antialias=args.antialias,
            padding=args.padding,
        )
    except (ValueError, FileNotFoundError) as error:
        # Bad input (data spec, sizes, a run that cannot resume): the
        # message names it; a traceback would bury it.
        print(f"{parser.prog}: error: {error}", file=sys.stderr)
        return 2
    except FloatingPointError as error:  # Diverged: nothing was saved.
        print(f"{parser.prog}: error: {error}", file=sys.stderr)
        return 1
    except tf.errors.OpError:
        # A file that cannot be decoded stops tf.data with an error that
        # names it in TensorFlow's words; say it in ours.
        message = next((r.error() for _, r in bad_images if r.error()), None)
        if message is None:
            raise
        print(f"{parser.prog}: error: {message}", file=sys.stderr)
        return 2
    if trainer.is_chief:
        # A result about the data, not progress: printed even with --quiet.
        for line in _bad_image_lines(bad_images):
            print(line)
    if trainer.is_chief and not args.quiet:
        if result.best_top1 is not None:
            print(f"best validation top-1: {result.best_top1:.2f}%")
    return 0


def _bad_image_lines(bad_images) -> list:
    """One line per split that skipped files (several records per split)."""
    lines = []
    for split in ("train", "validation"):
        paths = sorted(
            {p for name, record in bad_images if name == split
             for p in record.paths}
        )
        if paths:
            shown = ", ".join(paths[:5]) + (", ..." if len(paths) > 5 else "")
            lines.append(
                f"skipped {len(paths)} unreadable {split} image file(s) "
                f"(--skip-bad-images): {shown}"
            )
    return lines


if __name__ == "__main__":
    sys.exit(main())

"""What `antialias_model` costs a keras.applications network.

Training-step time (`train_on_batch`, SGD) and inference time
(`predict_on_batch`) of keras.applications ResNet50 and MobileNetV2
(`weights=None`) before and after `keras_blurpool.antialias_model`, with
`blur_first=False` (the paper's placement: the strided layer at stride 1,
then the blur) and `blur_first=True` (composer's cheaper variant: blur at
stride 1, then the original strided layer), interleaved in one run;
medians over repeats, printed as ratios to the original. Running ResNet-50's
stride-2 3x3 convolutions at full resolution adds about 25% FLOPs, so the
targets are a train-step ratio <= 1.30, and <= 1.10 with `blur_first=True`.

    python benchmarks/antialias_model.py [--repeats 5] [--batch-size 16]
"""

import argparse
import os
import platform

os.environ.setdefault("KERAS_BACKEND", "tensorflow")
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import keras  # noqa: E402
import numpy as np  # noqa: E402

from keras_blurpool import antialias_model  # noqa: E402

from _common import interleaved_medians  # noqa: E402

_TARGETS = {"paper": 1.30, "blur_first": 1.10}  # ResNet50 train step


def _variants(builder, size):
    plain = builder(weights=None, input_shape=(size, size, 3))
    return {
        "original": plain,
        "paper": antialias_model(plain),
        "blur_first": antialias_model(plain, blur_first=True),
    }


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--batch-size", type=int, default=16)
    parser.add_argument("--size", type=int, default=224)
    parser.add_argument(
        "--models", default="ResNet50,MobileNetV2",
        help="comma-separated keras.applications names",
    )
    args = parser.parse_args()

    rng = np.random.default_rng(0)
    x = rng.standard_normal((args.batch_size, args.size, args.size, 3))
    x = x.astype("float32")
    y = rng.integers(0, 1000, args.batch_size)
    calls = {}
    for arch in args.models.split(","):
        builder = getattr(keras.applications, arch)
        for variant, model in _variants(builder, args.size).items():
            model.compile(
                optimizer=keras.optimizers.SGD(0.01, momentum=0.9),
                loss="sparse_categorical_crossentropy",
            )
            calls[(arch, variant, "train")] = (
                lambda m=model: m.train_on_batch(x, y)
            )
            calls[(arch, variant, "infer")] = lambda m=model: m.predict_on_batch(x)
    ms = interleaved_medians(calls, args.repeats)

    print(f"machine: {platform.machine()}, {os.cpu_count()} cores; Keras "
          f"{keras.__version__} ({keras.backend.backend()}); batch "
          f"{args.batch_size} at {args.size}x{args.size}; median of "
          f"{args.repeats} interleaved rounds")
    print(f"{'model':<12} {'variant':<11} {'train (ms)':>11} {'ratio':>6} "
          f"{'infer (ms)':>11} {'ratio':>6}  target (train)")
    for arch in args.models.split(","):
        base_train = ms[(arch, "original", "train")]
        base_infer = ms[(arch, "original", "infer")]
        for variant in ("original", "paper", "blur_first"):
            train = ms[(arch, variant, "train")]
            infer = ms[(arch, variant, "infer")]
            target = ""
            if arch == "ResNet50" and variant in _TARGETS:
                limit = _TARGETS[variant]
                met = "met" if train / base_train <= limit else "MISSED"
                target = f"<= {limit:.2f} {met}"
            print(f"{arch:<12} {variant:<11} {train:11.1f} "
                  f"{train / base_train:6.2f} {infer:11.1f} "
                  f"{infer / base_infer:6.2f}  {target}")


if __name__ == "__main__":
    main()

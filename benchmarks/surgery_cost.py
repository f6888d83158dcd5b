"""What the polyphase surgery costs keras.applications ResNet50.

Training-step time (`train_on_batch`, SGD with momentum) and inference time
(`predict_on_batch`) of keras.applications ResNet50 (`weights=None`, 1000
classes) as it is, after `antialias_model(model)` (the paper's blur,
filter 4), after `antialias_model(model, "aps")` and after
`antialias_model(model, "lps")` (circular padding, filter 3), all
interleaved in one run; medians over repeats, printed as a markdown table
with ratios to the original.

    python benchmarks/surgery_cost.py [--repeats 5] [--batch-size 8] [--size 128]
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

VARIANTS = ("original", "blur", "aps", "lps")


def _variants(size):
    plain = keras.applications.ResNet50(weights=None, input_shape=(size, size, 3))
    return {
        "original": plain,
        "blur": antialias_model(plain),
        "aps": antialias_model(plain, "aps"),
        "lps": antialias_model(plain, "lps"),
    }


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--batch-size", type=int, default=8)
    parser.add_argument("--size", type=int, default=128)
    args = parser.parse_args()

    rng = np.random.default_rng(0)
    x = rng.standard_normal((args.batch_size, args.size, args.size, 3))
    x = x.astype("float32")
    y = rng.integers(0, 1000, args.batch_size)
    calls = {}
    for variant, model in _variants(args.size).items():
        model.compile(
            optimizer=keras.optimizers.SGD(0.01, momentum=0.9),
            loss="sparse_categorical_crossentropy",
        )
        calls[(variant, "train")] = lambda m=model: m.train_on_batch(x, y)
        calls[(variant, "infer")] = lambda m=model: m.predict_on_batch(x)
    ms = interleaved_medians(calls, args.repeats)

    print(f"machine: {platform.machine()}, {os.cpu_count()} cores; Keras "
          f"{keras.__version__} ({keras.backend.backend()}); ResNet50, batch "
          f"{args.batch_size} at {args.size}x{args.size}; median of "
          f"{args.repeats} interleaved rounds\n")
    print("| surgery | train step (ms) | ratio | inference (ms) | ratio |")
    print("|---|---:|---:|---:|---:|")
    base_train, base_infer = ms[("original", "train")], ms[("original", "infer")]
    for variant in VARIANTS:
        train, infer = ms[(variant, "train")], ms[(variant, "infer")]
        print(f"| {variant} | {train:.0f} | {train / base_train:.2f} | "
              f"{infer:.0f} | {infer / base_infer:.2f} |")


if __name__ == "__main__":
    main()

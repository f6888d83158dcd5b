"""What anti-aliasing costs a whole network: ResNet-50, filter 4 vs baseline.

Training-step time (`train_on_batch`, SGD) and inference time (`predict_on_batch`)
of the antialiased ResNet-50 (`filter_size=4`) and the plain ResNet-50
(`filter_size=None`) from our builders, batch 32 at 224x224, interleaved in
one run; medians over repeats, printed as ratios. Anti-aliasing adds about
25% to ResNet-50's FLOPs (three stride-2 3x3 convolutions run at full
resolution), so the target is a train-step ratio <= 1.30.

    python benchmarks/model_overhead.py [--repeats 5] [--batch-size 32]
"""

import argparse
import os
import platform

os.environ.setdefault("KERAS_BACKEND", "tensorflow")
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import keras  # noqa: E402
import numpy as np  # noqa: E402

from keras_blurpool.applications import ResNet50  # noqa: E402

from _common import interleaved_medians  # noqa: E402


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--size", type=int, default=224)
    args = parser.parse_args()

    rng = np.random.default_rng(0)
    x = rng.standard_normal((args.batch_size, args.size, args.size, 3)).astype("float32")
    y = rng.integers(0, 1000, args.batch_size)
    models = {
        "antialiased": ResNet50(filter_size=4),
        "baseline": ResNet50(filter_size=None),
    }
    calls = {}
    for name, model in models.items():
        model.compile(optimizer=keras.optimizers.SGD(0.01, momentum=0.9),
                      loss="sparse_categorical_crossentropy")
        calls[f"{name} train"] = lambda m=model: m.train_on_batch(x, y)
        calls[f"{name} infer"] = lambda m=model: m.predict_on_batch(x)
    ms = interleaved_medians(calls, args.repeats)

    print(f"machine: {platform.machine()}, {os.cpu_count()} cores; Keras "
          f"{keras.__version__} ({keras.backend.backend()}); batch "
          f"{args.batch_size} at {args.size}x{args.size}; median of {args.repeats}")
    for name, value in ms.items():
        print(f"  {name:<18} {value:9.1f} ms")
    train = ms["antialiased train"] / ms["baseline train"]
    infer = ms["antialiased infer"] / ms["baseline infer"]
    print(f"antialiased / baseline, train step: {train:.2f}x  (target <= 1.30)")
    print(f"antialiased / baseline, inference:  {infer:.2f}x")


if __name__ == "__main__":
    main()

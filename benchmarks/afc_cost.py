"""Cost of ConvNeXt-Tiny-AFC against keras.applications ConvNeXtTiny and
the APS control (ConvNeXtTinyAPS).

One run, side by side, same machine (TF backend, `tf.function`, NHWC),
rounds interleaved, medians over rounds, printed as ratios to
keras.applications' ConvNeXtTiny: inference (a forward pass,
`training=False`) and a training step (forward, cross-entropy, gradients)
at a small batch and size, random weights and images.

    python benchmarks/afc_cost.py [--batch 2] [--size 96] [--repeats 5]
"""

import argparse
import os
import platform

os.environ.setdefault("KERAS_BACKEND", "tensorflow")
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import keras  # noqa: E402
import numpy as np  # noqa: E402
import tensorflow as tf  # noqa: E402

from keras_blurpool import applications  # noqa: E402

from _common import interleaved_medians  # noqa: E402


def _models(size):
    shape = (size, size, 3)
    return {
        "keras.applications ConvNeXtTiny": keras.applications.ConvNeXtTiny(
            weights=None, input_shape=shape, classifier_activation=None
        ),
        "ConvNeXtTinyAPS (control)": applications.ConvNeXtTinyAPS(
            input_shape=shape, classifier_activation=None
        ),
        "ConvNeXtTinyAFC": applications.ConvNeXtTinyAFC(
            input_shape=shape, classifier_activation=None
        ),
    }


def _passes(model, x, y):
    loss_fn = keras.losses.SparseCategoricalCrossentropy(from_logits=True)

    @tf.function
    def infer():
        return model(x, training=False)

    @tf.function
    def step():
        with tf.GradientTape() as tape:
            loss = loss_fn(y, model(x, training=True))
        return tape.gradient(loss, model.trainable_variables)

    return infer, step


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--batch", type=int, default=2)
    parser.add_argument("--size", type=int, default=96)
    parser.add_argument("--repeats", type=int, default=5)
    args = parser.parse_args()
    rng = np.random.default_rng(0)
    x = tf.constant(rng.standard_normal((args.batch, args.size, args.size, 3)), tf.float32)
    y = tf.constant(rng.integers(0, 1000, args.batch))
    models = _models(args.size)
    infer, step = {}, {}
    for name, model in models.items():
        infer[name], step[name] = _passes(model, x, y)
    times = {
        "inference": interleaved_medians(infer, args.repeats),
        "train step": interleaved_medians(step, args.repeats),
    }
    print(
        f"{platform.machine()} {os.cpu_count()} cores, TF {tf.__version__}, Keras "
        f"{keras.__version__}; batch {args.batch} at {args.size}x{args.size}, "
        f"medians of {args.repeats}"
    )
    base = "keras.applications ConvNeXtTiny"
    print("| network | params (M) | inference (ms) | ratio | train step (ms) | ratio |")
    print("|---|---:|---:|---:|---:|---:|")
    for name, model in models.items():
        i, t = times["inference"][name], times["train step"][name]
        print(
            f"| {name} | {model.count_params() / 1e6:.2f} | {i:.0f} | "
            f"{i / times['inference'][base]:.2f} | {t:.0f} | "
            f"{t / times['train step'][base]:.2f} |"
        )


if __name__ == "__main__":
    main()

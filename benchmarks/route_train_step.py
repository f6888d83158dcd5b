"""What BlurPool2D's "same"-convolution route buys a whole training step.

An SGD step (`tf.function`, no XLA, as in `recipes.train`) of antialiased
ResNet-50 (filter 4) with `BlurPool2D` on its "same"-convolution route, and
the same model with every BlurPool2D and MaxBlurPool2D rebuilt with
`implementation="padded"` (explicit pad + "valid" convolution);
interleaved in one run, medians over repeats.

    python benchmarks/route_train_step.py [--repeats 5] [--batch-size 16]
"""

import argparse
import os
import platform

os.environ.setdefault("KERAS_BACKEND", "tensorflow")
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import keras  # noqa: E402
import numpy as np  # noqa: E402
import tensorflow as tf  # noqa: E402

from keras_blurpool.applications import ResNet50  # noqa: E402

from _common import interleaved_medians  # noqa: E402
from _common import on_route  # noqa: E402


def _train_step(model, x, y):
    optimizer = keras.optimizers.SGD(0.01)
    loss_fn = keras.losses.SparseCategoricalCrossentropy(from_logits=True)

    @tf.function
    def step():
        with tf.GradientTape() as tape:
            loss = loss_fn(y, model(x, training=True))
        grads = tape.gradient(loss, model.trainable_variables)
        optimizer.apply_gradients(zip(grads, model.trainable_variables))
        return loss

    return step


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--batch-size", type=int, default=16)
    parser.add_argument("--size", type=int, default=224)
    args = parser.parse_args()

    rng = np.random.default_rng(0)
    shape = (args.batch_size, args.size, args.size, 3)
    x = tf.constant(rng.standard_normal(shape).astype("float32"))
    y = tf.constant(rng.integers(0, 1000, args.batch_size))
    kwargs = dict(filter_size=4, weights=None, input_shape=shape[1:])
    steps = {
        "same route": _train_step(ResNet50(**kwargs), x, y),
        "padded route": _train_step(
            on_route(ResNet50(**kwargs), "padded"), x, y),
    }
    ms = interleaved_medians(steps, args.repeats, warmups=2)
    print(f"machine: {platform.processor() or platform.machine()}, "
          f"{os.cpu_count()} cores; TF {tf.__version__}; ResNet-50 (filter 4) "
          f"SGD step, batch {args.batch_size} at {args.size}x{args.size}; "
          f"median of {args.repeats}")
    for name, value in ms.items():
        print(f"  {name:<13} {value:9.1f} ms")
    print(f"padded / same route: {ms['padded route'] / ms['same route']:.3f}x")


if __name__ == "__main__":
    main()

"""APSPool2D and LPSPool2D speed against BlurPool2D and a plain subsample.

One run, side by side, same machine (TF backend, `tf.function`, NHWC,
training calls), rounds interleaved, medians over rounds printed as
ratios to `BlurPool2D`:

* layers, forward and forward+backward on the benchmark shape: a plain
  stride-2 subsample `x[:, ::2, ::2]`, `BlurPool2D(4)`, `APSPool2D(4)`
  (the same blur at stride 1, then the norm of each of the 4 polyphase
  components and the selection), `APSPool2D()` (selection alone) and
  `LPSPool2D(4)` (blur, then the scoring network on each component with
  as many hidden channels as the input, the authors' default, and the
  Gumbel-softmax mixture);
* a training step (forward, loss, gradients) of ResNet-50 with
  `antialias="aps"` (and `padding="circular"`) against the BlurPool
  ResNet-50.

    python benchmarks/polyphase_speed.py [--repeats 20] [--shape 16,56,56,256]
        [--model-batch 8] [--model-size 224] [--model-repeats 5]
"""

import argparse
import os
import platform

os.environ.setdefault("KERAS_BACKEND", "tensorflow")
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import keras  # noqa: E402
import tensorflow as tf  # noqa: E402

from keras_blurpool import APSPool2D  # noqa: E402
from keras_blurpool import BlurPool2D  # noqa: E402
from keras_blurpool import LPSPool2D  # noqa: E402
from keras_blurpool import applications  # noqa: E402

from _common import interleaved_medians  # noqa: E402
from _common import synced  # noqa: E402
from _common import tf_passes  # noqa: E402


class _Subsample(keras.layers.Layer):
    """The plain stride-2 subsample a strided layer does."""

    def call(self, x):
        return x[:, ::2, ::2, :]

    def compute_output_shape(self, shape):
        return (shape[0], -(-shape[1] // 2), -(-shape[2] // 2), shape[3])


def _layer_calls(x):
    layers = {
        "subsample": _Subsample(name="subsample"),
        "BlurPool2D(4)": BlurPool2D(4),
        "APSPool2D(4)": APSPool2D(4),
        "APSPool2D()": APSPool2D(),
        "LPSPool2D(4)": LPSPool2D(4),
    }
    calls = {}
    for name, layer in layers.items():
        layer.build(x.shape)
        forward, forward_backward = tf_passes(layer)
        dy = tf.ones(layer.compute_output_shape(x.shape))
        calls[f"{name} fwd"] = synced(forward, (x,))
        calls[f"{name} fwd+bwd"] = synced(forward_backward, (x, dy))
    return calls


def _train_step(model, batch, size):
    x = tf.random.uniform((batch, size, size, 3))
    y = tf.zeros((batch,), "int32")
    loss_fn = keras.losses.SparseCategoricalCrossentropy(from_logits=True)

    @tf.function
    def step(x, y):
        with tf.GradientTape() as tape:
            loss = loss_fn(y, model(x, training=True))
        return loss, tape.gradient(loss, model.trainable_variables)

    return synced(step, (x, y))


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--repeats", type=int, default=20)
    parser.add_argument("--shape", default="16,56,56,256", help="N,H,W,C")
    parser.add_argument("--model-batch", type=int, default=8)
    parser.add_argument("--model-size", type=int, default=224)
    parser.add_argument("--model-repeats", type=int, default=5)
    args = parser.parse_args(argv)
    shape = tuple(int(v) for v in args.shape.split(","))
    layer_ms = interleaved_medians(
        _layer_calls(tf.random.normal(shape)), args.repeats, warmups=2
    )
    models = {}
    for antialias, padding in (("blur", "zero"), ("aps", "circular")):
        keras.utils.set_random_seed(0)
        model = applications.ResNet50(
            antialias=antialias,
            padding=padding,
            input_shape=(args.model_size, args.model_size, 3),
            classifier_activation=None,
        )
        models[f"ResNet-50 {antialias}"] = _train_step(
            model, args.model_batch, args.model_size
        )
    model_ms = interleaved_medians(models, args.model_repeats, warmups=1)

    print(
        f"machine: {platform.processor() or platform.machine()}, "
        f"{os.cpu_count()} cores; TF {tf.__version__}, Keras "
        f"{keras.__version__}; layers on NHWC {shape}, median of "
        f"{args.repeats}; training steps at batch {args.model_batch}, "
        f"{args.model_size}x{args.model_size}, median of {args.model_repeats}"
    )
    base_fwd, base_bwd = (
        layer_ms["BlurPool2D(4) fwd"],
        layer_ms["BlurPool2D(4) fwd+bwd"],
    )
    print(f"  {'layer':<16} {'fwd ms':>9} {'x Blur':>7} "
          f"{'fwd+bwd ms':>11} {'x Blur':>7}")
    for name in ("subsample", "BlurPool2D(4)", "APSPool2D()", "APSPool2D(4)",
                 "LPSPool2D(4)"):
        fwd, bwd = layer_ms[f"{name} fwd"], layer_ms[f"{name} fwd+bwd"]
        print(f"  {name:<16} {fwd:9.2f} {fwd / base_fwd:7.2f} "
              f"{bwd:11.2f} {bwd / base_bwd:7.2f}")
    blur, aps = model_ms["ResNet-50 blur"], model_ms["ResNet-50 aps"]
    print(f"  training step: ResNet-50 blur {blur:.0f} ms, ResNet-50 APS "
          f"(circular) {aps:.0f} ms: APS / blur {aps / blur:.2f}x")


if __name__ == "__main__":
    main()

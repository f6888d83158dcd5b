"""Which BlurPool2D route is faster under which compiler, on this backend.

`BlurPool2D` (filter 4, stride 2, reflect, NHWC 16x56x56x256 by default) on
each route — `implementation="padded"` (explicit pad + "valid" depthwise
convolution) and `"same"` (the backend's "same" convolution plus a border
correction) — forward and forward+backward (output and input gradient
both returned), under each way the backend compiles a training step:

- TensorFlow: `tf.function` without XLA, and `tf.function(jit_compile=True)`
  (what `model.fit` runs with `jit_compile=True`, and with "auto" on a GPU);
- JAX: `jax.jit` (XLA, always);
- PyTorch: eager.

Inputs are arguments of the compiled functions, not captured constants.
Then a whole training step: `train_on_batch` (SGD) of an anti-aliased
ResNet-18 (filter 4; 64x64, batch 16 by default) with every BlurPool2D on
the padded route, or on the "same" route wherever it is exact (all but the
stem's MaxBlurPool2D, which sees an odd map),
compiled with `jit_compile=False` and `True` on TensorFlow, as `model.fit`
would (always XLA on JAX, eager on PyTorch). Candidates of one compiler
are interleaved; figures are medians. (`implementation="auto"` trains on
the "same" route wherever it is exact, under every compiler; these rows
are why.) The backend is the one `KERAS_BACKEND` names:

    python benchmarks/route_by_compiler.py [--repeats 10] [--skip-model]
    KERAS_BACKEND=jax python benchmarks/route_by_compiler.py
"""

import argparse
import os
import platform

os.environ.setdefault("KERAS_BACKEND", "tensorflow")
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import keras  # noqa: E402
import numpy as np  # noqa: E402

from keras_blurpool import BlurPool2D  # noqa: E402
from keras_blurpool.applications import ResNet18  # noqa: E402

from _common import interleaved_medians  # noqa: E402
from _common import on_route  # noqa: E402

ROUTES = ("padded", "same")


def _compilers(backend):
    """name -> wrap(fn) -> the compiled fn."""
    if backend == "tensorflow":
        import tensorflow as tf

        return {
            "tf.function": tf.function,
            "tf.function(jit_compile=True)": (
                lambda fn: tf.function(fn, jit_compile=True)),
        }
    if backend == "jax":
        import jax

        return {"jax.jit": jax.jit}
    return {"eager": lambda fn: fn}


def _forward_backward(layer, backend):
    """fn(x, dy) -> (y, dx) for this backend."""
    if backend == "tensorflow":
        import tensorflow as tf

        def fn(x, dy):
            with tf.GradientTape() as tape:
                tape.watch(x)
                y = layer(x, training=True)
            return y, tape.gradient(y, x, output_gradients=dy)

        return fn
    if backend == "jax":
        import jax

        def fn(x, dy):
            y, vjp = jax.vjp(lambda t: layer(t, training=True), x)
            return y, vjp(dy)[0]

        return fn

    import torch

    def fn(x, dy):
        x = x.detach().requires_grad_(True)
        y = layer(x, training=True)
        (dx,) = torch.autograd.grad(y, x, dy)
        return y, dx

    return fn


def _jit_compile_modes(backend):
    """compile(jit_compile=...) -> its label."""
    if backend == "tensorflow":
        return {False: "fit, jit_compile=False", True: "fit, jit_compile=True"}
    if backend == "jax":
        return {True: "fit (XLA)"}
    return {False: "fit (eager)"}


def _model_rows(backend, size, batch_size, repeats):
    """Train-step medians of anti-aliased ResNet-18 on each route."""
    rng = np.random.default_rng(0)
    x = rng.standard_normal((batch_size, size, size, 3)).astype("float32")
    y = rng.integers(0, 10, batch_size)
    base = ResNet18(weights=None, input_shape=(size, size, 3), classes=10,
                    filter_size=4, classifier_activation=None)
    rows = []
    for jit_compile, label in _jit_compile_modes(backend).items():
        calls = {}
        for route in ROUTES:
            model = on_route(base, route)
            model.compile(
                keras.optimizers.SGD(0.01),
                keras.losses.SparseCategoricalCrossentropy(from_logits=True),
                jit_compile=jit_compile)
            calls[route] = lambda m=model: m.train_on_batch(x, y)
        ms = interleaved_medians(calls, repeats)
        rows.append((label, "step", ms["padded"], ms["same"]))
    return rows


def _block(result):
    """Waits for the device, whatever the backend."""
    for value in keras.tree.flatten(result):
        keras.ops.convert_to_numpy(keras.ops.sum(value))


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--repeats", type=int, default=10)
    parser.add_argument("--shape", default="16,56,56,256",
                        help="N,H,W,C (default 16,56,56,256)")
    parser.add_argument("--model-size", type=int, default=64,
                        help="ResNet-18's input side (a multiple of 32, >= 64)")
    parser.add_argument("--batch-size", type=int, default=16)
    parser.add_argument("--skip-model", action="store_true",
                        help="the layer rows only")
    args = parser.parse_args()
    backend = keras.backend.backend()
    shape = tuple(int(n) for n in args.shape.split(","))
    if len(shape) != 4 or min(shape) < 1:
        parser.error(f"--shape must be N,H,W,C positive integers, got {args.shape!r}")

    rng = np.random.default_rng(0)
    x = keras.ops.convert_to_tensor(rng.standard_normal(shape).astype("float32"))
    layers = {route: BlurPool2D(4, implementation=route) for route in ROUTES}
    for layer in layers.values():
        layer.build(shape)
    out_shape = tuple(layers["padded"].compute_output_shape(shape))
    dy = keras.ops.convert_to_tensor(
        rng.standard_normal(out_shape).astype("float32"))

    print(f"BlurPool2D(4) on {shape}, backend {backend}, keras "
          f"{keras.__version__}, {platform.machine()}, {os.cpu_count()} CPUs")
    if args.model_size < 64 or args.model_size % 32:
        parser.error(f"--model-size must be a multiple of 32, at least 64, got {args.model_size}")
    print(f"{'compiler':<31} {'pass':<8} {'padded ms':>10} {'same ms':>9} "
          f"{'same/padded':>12}")
    for compiler, wrap in _compilers(backend).items():
        calls = {}
        for route, layer in layers.items():
            forward = wrap(lambda t, layer=layer: layer(t, training=True))
            both = wrap(_forward_backward(layer, backend))
            calls[(route, "fwd")] = lambda f=forward: _block(f(x))
            calls[(route, "fwd+bwd")] = lambda f=both: _block(f(x, dy))
        ms = interleaved_medians(calls, args.repeats)
        for kind in ("fwd", "fwd+bwd"):
            padded, same = ms[("padded", kind)], ms[("same", kind)]
            _print_row(compiler, kind, padded, same)
    if not args.skip_model:
        print(f"anti-aliased ResNet-18, {args.model_size}x{args.model_size}, "
              f"batch {args.batch_size}, train_on_batch:")
        for row in _model_rows(backend, args.model_size, args.batch_size,
                               args.repeats):
            _print_row(*row)


def _print_row(compiler, kind, padded, same):
    print(f"{compiler:<31} {kind:<8} {padded:>10.1f} {same:>9.1f} "
          f"{same / padded:>11.2f}x")


if __name__ == "__main__":
    main()

"""BlurPool2D on every backend, against the memory floor, in one run.

For each of TensorFlow, JAX and PyTorch — each in its own process, one
backend per process, run one after the other — `BlurPool2D` with
`implementation="auto"` (NHWC 16x56x56x256 float32, filter 4, stride 2,
reflect padding by default), the way each backend runs a model:

- TensorFlow: inside `tf.function` (no XLA, Keras's default on a CPU);
- JAX: inside `jax.jit`;
- PyTorch: eager.

Three passes: the forward of an inference call (`training=False`: the
route inference and export run), the forward of a training call
(`training=True`), and forward+backward of a training call (the output
and the input gradient both returned, the output gradient an argument,
not a constant a compiler could fold). The route `"auto"` picked for
each is printed beside it.

The floor is the memory traffic the layer cannot avoid: reading the
input once and writing the output once, at the copy bandwidth NumPy
reaches on this machine, measured in the same process, interleaved with
the passes: `floor = (input bytes + output bytes) / B`, with `B` the
bytes per second `np.copyto` copies (an input-sized array), as copy
bandwidth is usually quoted (the issue's floor). Each figure is the
median of `--repeats` interleaved rounds, each call after an untimed
20 ms pause (so that a backend's spinning worker threads do not slow the
next call, the floor's copy included), printed as a multiple of its own
process's floor.

`--network` adds the whole-network effect: a training step
(`train_on_batch`, SGD) of the anti-aliased ResNet-50 (filter 4) and the
plain one (`filter_size=None`) from our builders, interleaved, per
backend (batch `--network-batch` at `--network-size`).

    python benchmarks/backend_speed.py [--repeats 20] [--quick]
        [--shape 16,56,56,256] [--backends tensorflow,jax,torch]
        [--network] [--network-batch 4] [--network-size 224]
        [--extra torch:THP_MEM_ALLOC_ENABLE=1]

`--extra BACKEND:VAR=VALUE,...` adds a row for that backend run with
those environment variables, e.g. `torch:THP_MEM_ALLOC_ENABLE=1`
(PyTorch then asks the kernel for huge pages for its large buffers, so a
fresh input-sized buffer, the padded copy or the input gradient, costs a
few dozen page faults instead of some twelve thousand) or glibc's
`MALLOC_MMAP_THRESHOLD_`/`MALLOC_TRIM_THRESHOLD_` (large buffers then
come from the reused heap instead of fresh pages).

`--quick` runs a small shape (4x16x16x32) and, with `--network`, a
64x64 network: a check that everything runs, not figures to quote.
"""

import argparse
import json
import os
import platform
import subprocess
import sys
import time

import numpy as np

BACKENDS = ("tensorflow", "jax", "torch")
PASSES = ("inference", "training", "forward+backward")


def _numpy_floor(shape, out_shape):
    """`(copy call, floor in ms from a copy's median ms)`."""
    source = np.random.default_rng(0).standard_normal(shape).astype("float32")
    target = np.empty_like(source)
    in_bytes = source.nbytes
    out_bytes = int(np.prod(out_shape)) * 4

    def copy():
        np.copyto(target, source)

    def floor_ms(copy_ms):
        bandwidth = in_bytes / copy_ms  # bytes copied per ms
        return (in_bytes + out_bytes) / bandwidth

    return copy, floor_ms


def _passes(backend, layer, x, dy):
    """`{pass: call}` for the three passes, compiled the backend's way."""
    if backend == "tensorflow":
        import tensorflow as tf

        @tf.function
        def infer(v):
            return layer(v, training=False)

        @tf.function
        def train(v):
            return layer(v, training=True)

        @tf.function
        def forward_backward(v, g):
            with tf.GradientTape() as tape:
                tape.watch(v)
                y = layer(v, training=True)
            return y, tape.gradient(y, v, output_gradients=g)

        x, dy = tf.constant(x), tf.constant(dy)

        def synced(fn, *args):
            def call():
                fn(*args)
                tf.test.experimental.sync_devices()

            return call

        return {"inference": synced(infer, x), "training": synced(train, x),
                "forward+backward": synced(forward_backward, x, dy)}
    if backend == "jax":
        import jax

        infer = jax.jit(lambda v: layer(v, training=False))
        train = jax.jit(lambda v: layer(v, training=True))

        @jax.jit
        def forward_backward(v, g):
            y, vjp = jax.vjp(lambda u: layer(u, training=True), v)
            return y, vjp(g)[0]

        x, dy = jax.numpy.asarray(x), jax.numpy.asarray(dy)
        return {
            "inference": lambda: jax.block_until_ready(infer(x)),
            "training": lambda: jax.block_until_ready(train(x)),
            "forward+backward": lambda: jax.block_until_ready(
                forward_backward(x, dy)),
        }
    import torch

    x, dy = torch.from_numpy(x), torch.from_numpy(dy)
    xg = x.clone().requires_grad_(True)

    def infer():
        with torch.no_grad():
            layer(x, training=False)

    def train():
        with torch.no_grad():
            layer(x, training=True)

    def forward_backward():
        y = layer(xg, training=True)
        y.backward(dy)
        xg.grad = None

    return {"inference": infer, "training": train,
            "forward+backward": forward_backward}


def _network_calls(args):
    import keras

    from keras_blurpool.applications import ResNet50

    size = 64 if args.quick else args.network_size
    batch = args.network_batch
    rng = np.random.default_rng(0)
    x = rng.standard_normal((batch, size, size, 3)).astype("float32")
    y = rng.integers(0, 10, batch)
    calls = {}
    for name, filter_size in (("antialiased", 4), ("plain", None)):
        keras.utils.set_random_seed(0)
        model = ResNet50(weights=None, input_shape=(size, size, 3),
                         classes=10, filter_size=filter_size)
        model.compile(optimizer=keras.optimizers.SGD(0.01, momentum=0.9),
                      loss="sparse_categorical_crossentropy")
        calls[f"{name} step"] = lambda m=model: m.train_on_batch(x, y)
    return calls, {"batch": batch, "size": size}


def child(args):
    """Runs in a process whose KERAS_BACKEND is one backend: prints JSON."""
    backend = os.environ["KERAS_BACKEND"]
    if backend == "torch":
        import torch  # noqa: F401  (before TensorFlow, as everywhere)
    import keras

    from keras_blurpool import BlurPool2D

    shape = tuple(int(v) for v in args.shape.split(","))
    layer = BlurPool2D(args.filter_size, pad_type=args.pad_type,
                       implementation=args.implementation)
    layer.build(shape)
    out_shape = layer.compute_output_shape(shape)
    rng = np.random.default_rng(0)
    x = rng.standard_normal(shape).astype("float32")
    dy = rng.standard_normal(out_shape).astype("float32")
    copy, floor_ms = _numpy_floor(shape, out_shape)
    calls = {"numpy copy": copy, **_passes(backend, layer, x, dy)}
    ms = _rested_medians(calls, args.repeats)
    result = {
        "backend": backend,
        "version": _version(backend),
        "keras": keras.__version__,
        "floor_ms": floor_ms(ms["numpy copy"]),
        "ms": {name: ms[name] for name in PASSES},
        "routes": {"inference": layer._route(shape, False),
                   "training": layer._route(shape, True)},
    }
    if args.network:
        calls, setting = _network_calls(args)
        steps = _rested_medians(calls, args.network_repeats)
        result["network"] = {**setting, "ms": steps}
    print("RESULT " + json.dumps(result))


def _rested_medians(calls, repeats, warmups=2, pause=0.02):
    """Median milliseconds of each call; rounds interleave the calls, and
    each call starts after a short pause that is not timed.

    A backend's worker threads spin for a while after its last operation
    (XLA's do); on two cores they would slow whatever runs next, the
    NumPy copy that measures the floor included. Pausing before every
    call treats all candidates alike.
    """
    for call in calls.values():  # trace, allocate
        for _ in range(warmups):
            call()
    times = {name: [] for name in calls}
    for _ in range(repeats):
        for name, call in calls.items():
            time.sleep(pause)
            start = time.perf_counter()
            call()
            times[name].append(time.perf_counter() - start)
    return {name: 1e3 * float(np.median(t)) for name, t in times.items()}


def _version(backend):
    if backend == "tensorflow":
        import tensorflow as tf

        return tf.__version__
    if backend == "jax":
        import jax

        return jax.__version__
    import torch

    return torch.__version__


def _run_child(backend, argv, **extra_env):
    env = dict(os.environ, KERAS_BACKEND=backend, TF_CPP_MIN_LOG_LEVEL="3",
               **extra_env)
    proc = subprocess.run(
        [sys.executable, os.path.abspath(__file__), "--child", *argv],
        env=env, capture_output=True, text=True, check=False,
    )
    for line in proc.stdout.splitlines():
        if line.startswith("RESULT "):
            return json.loads(line[len("RESULT "):])
    raise RuntimeError(
        f"the {backend} process failed (exit {proc.returncode}):\n"
        f"{proc.stderr[-3000:]}"
    )


_NAMES = {"tensorflow": "TensorFlow (tf.function)", "jax": "JAX (jit)",
          "torch": "PyTorch (eager)"}


def _name(result):
    return result.get("name", _NAMES[result["backend"]])


def report(results, args):
    """The table, as Markdown."""
    lines = [
        f"machine: {platform.machine()}, {os.cpu_count()} cores; Keras "
        f"{results[0]['keras']}; "
        + ", ".join(dict.fromkeys(f"{r['backend']} {r['version']}"
                                  for r in results)),
        f"BlurPool2D(filter_size={args.filter_size}, pad_type="
        f"'{args.pad_type}'), stride 2, input {args.shape} float32; "
        f"median of {args.repeats} interleaved rounds; x = multiple of "
        "the floor (input read once + output written once at NumPy's "
        "copy bandwidth, bytes copied per second, measured in the same "
        "process)",
        "",
        "| backend | forward, inference route | forward, training route "
        "| forward+backward | floor |",
        "|---|---|---|---|---|",
    ]
    for r in results:
        floor = r["floor_ms"]
        cells = []
        for name in PASSES:
            ms = r["ms"][name]
            route = r["routes"]["training" if name != "inference" else name]
            cells.append(f"{ms:.1f} ms ({ms / floor:.1f}x), `{route}`")
        lines.append(f"| {_name(r)} | " + " | ".join(cells)
                     + f" | {floor:.1f} ms |")
    if args.network:
        net = results[0]["network"]
        lines += [
            "",
            f"ResNet-50 train step (train_on_batch, SGD), batch "
            f"{net['batch']} at {net['size']}x{net['size']}, median of "
            f"{args.network_repeats}:",
            "",
            "| backend | anti-aliased (ms) | plain (ms) | ratio |",
            "|---|---:|---:|---:|",
        ]
        for r in results:
            steps = r["network"]["ms"]
            aa, plain = steps["antialiased step"], steps["plain step"]
            lines.append(f"| {_name(r)} | {aa:.0f} | {plain:.0f} "
                         f"| {aa / plain:.2f}x |")
    return "\n".join(lines)


def _parse_extra(parser, text):
    """`"torch:A=1,B=2"` -> `("torch", {"A": "1", "B": "2"})`."""
    backend, _, assignments = text.partition(":")
    env = dict(a.split("=", 1) for a in assignments.split(",") if "=" in a)
    if backend not in BACKENDS or not env:
        parser.error(f"--extra must be BACKEND:VAR=VALUE[,VAR=VALUE...] with "
                     f"BACKEND one of {', '.join(BACKENDS)}. "
                     f"Received: --extra {text}")
    return backend, env


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--repeats", type=int, default=20)
    parser.add_argument("--shape", default=None, help="N,H,W,C")
    parser.add_argument("--filter-size", type=int, default=4)
    parser.add_argument("--pad-type", default="reflect")
    parser.add_argument(
        "--implementation", default="auto",
        help="the layer's route on every backend (default auto: each "
             "backend's pick)")
    parser.add_argument("--backends", default=",".join(BACKENDS))
    parser.add_argument("--quick", action="store_true",
                        help="small sizes: checks that it runs")
    parser.add_argument("--network", action="store_true",
                        help="add the ResNet-50 train step per backend")
    parser.add_argument("--network-batch", type=int, default=4)
    parser.add_argument("--network-size", type=int, default=224)
    parser.add_argument("--network-repeats", type=int, default=5)
    parser.add_argument(
        "--extra", action="append", default=[], metavar="BACKEND:VAR=V,...",
        help="add a row: that backend with these environment variables "
             "(repeatable), e.g. torch:THP_MEM_ALLOC_ENABLE=1")
    parser.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.shape is None:
        args.shape = "4,16,16,32" if args.quick else "16,56,56,256"
    if args.child:
        child(args)
        return
    backends = [b for b in args.backends.split(",") if b]
    unknown = sorted(set(backends) - set(BACKENDS))
    if unknown:
        parser.error(f"--backends must name some of {', '.join(BACKENDS)}. "
                     f"Received: {args.backends}")
    extras = [_parse_extra(parser, extra) for extra in args.extra]
    child_argv = list(argv if argv is not None else sys.argv[1:])
    while "--extra" in child_argv:  # the children need not see them
        i = child_argv.index("--extra")
        del child_argv[i:i + 2]
    results = [_run_child(backend, child_argv) for backend in backends]
    for backend, env in extras:
        result = _run_child(backend, child_argv, **env)
        settings = " ".join(f"{k}={v}" for k, v in env.items())
        result["name"] = f"{_NAMES[backend]}, {settings}"
        results.append(result)
    print(report(results, args))


if __name__ == "__main__":
    main()

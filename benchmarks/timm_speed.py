"""timm's anti-aliased ResNets: ours on TensorFlow against timm on torch.

One run, same machine: `ResNetBlur50` and `ResNetAA50D` (TensorFlow
backend, `tf.function`) against timm's `resnetblur50` and `resnetaa50d`
(torch, CPU), inference (batch 16, 224x224, float32, inference mode) and a
training step (forward, cross-entropy, backward, SGD update). timm runs in
a worker process of the Python that has it (`--timm-python`; importing
torchvision after TensorFlow crashes a process); each round times every
candidate once, ours and timm's alternating, and the medians over rounds
are printed as ratios ours / timm. Target: inference at most 1.2x timm's.

    python benchmarks/timm_speed.py [--repeats 7] [--warmup 2] [--batch 16]
        [--train-batch 16] [--size 224] [--threads N] [--xla] [--quick]
        [--timm-python .venv-timm/bin/python]
"""

import argparse
import json
import os
import platform
import subprocess
import sys
import time

os.environ.setdefault("KERAS_BACKEND", "tensorflow")
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

_MODELS = (("ResNetBlur50", "resnetblur50"), ("ResNetAA50D", "resnetaa50d"))
_ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

# The timm side: a loop answering one timing per request, on stdin/stdout.
_WORKER = r"""
import json, sys, time
import torch, timm
batch, train_batch, size, threads = map(int, sys.argv[1:5])
names = sys.argv[5].split(",")
torch.set_num_threads(threads)
torch.manual_seed(0)
calls = {}
for name in names:
    model = timm.create_model(name).eval()
    x = torch.rand(batch, 3, size, size)
    def infer(model=model, x=x):
        with torch.inference_mode():
            model(x)
    trained = timm.create_model(name).train()
    optimizer = torch.optim.SGD(trained.parameters(), lr=0.01)
    xt = torch.rand(train_batch, 3, size, size)
    yt = torch.zeros(train_batch, dtype=torch.long)
    def step(model=trained, optimizer=optimizer, x=xt, y=yt):
        optimizer.zero_grad(set_to_none=True)
        loss = torch.nn.functional.cross_entropy(model(x), y)
        loss.backward()
        optimizer.step()
    calls[name + " inference"] = infer
    calls[name + " train step"] = step
print(json.dumps({"ready": True, "timm": timm.__version__,
                  "torch": torch.__version__}), flush=True)
for line in sys.stdin:
    key = line.strip()
    start = time.perf_counter()
    calls[key]()
    print(json.dumps({"ms": 1e3 * (time.perf_counter() - start)}), flush=True)
"""


class _TimmWorker:
    """timm's models in another process; `time(key)` runs one call there."""

    def __init__(self, python, batch, train_batch, size, threads):
        if not os.path.exists(python):
            raise SystemExit(
                f"--timm-python {python} does not exist: create it with "
                "`python3 -m venv .venv-timm && .venv-timm/bin/pip install "
                "torch==2.14.1 torchvision==0.29.1 timm` (see README, Tests)"
            )
        names = ",".join(name for _, name in _MODELS)
        self.process = subprocess.Popen(
            [python, "-c", _WORKER, str(batch), str(train_batch), str(size),
             str(threads), names],
            stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True,
        )
        self.versions = self._read()

    def _read(self):
        line = self.process.stdout.readline()
        if not line:
            raise SystemExit("the timm worker stopped; see its error above")
        return json.loads(line)

    def time(self, key):
        self.process.stdin.write(key + "\n")
        self.process.stdin.flush()
        return self._read()["ms"]

    def close(self):
        self.process.stdin.close()
        self.process.wait(timeout=60)


def _ours(builder, batch, train_batch, size, xla):
    """`(inference, train step)` calls of our model, each timing itself."""
    import keras
    import tensorflow as tf

    from keras_blurpool import applications

    keras.utils.set_random_seed(0)
    model = getattr(applications, builder)(
        input_shape=(size, size, 3), classifier_activation=None
    )
    x = tf.random.uniform((batch, size, size, 3))
    xt = tf.random.uniform((train_batch, size, size, 3))
    yt = tf.zeros((train_batch,), "int32")
    optimizer = keras.optimizers.SGD(0.01)
    optimizer.build(model.trainable_variables)
    loss_fn = keras.losses.SparseCategoricalCrossentropy(from_logits=True)

    @tf.function(jit_compile=xla)
    def infer(x):
        return model(x, training=False)

    @tf.function(jit_compile=xla)
    def step(x, y):
        with tf.GradientTape() as tape:
            loss = loss_fn(y, model(x, training=True))
        grads = tape.gradient(loss, model.trainable_variables)
        optimizer.apply_gradients(zip(grads, model.trainable_variables))
        return loss

    def timed(fn, *args):
        def call():
            start = time.perf_counter()
            fn(*args).numpy()  # waits for the result
            return 1e3 * (time.perf_counter() - start)

        return call

    return timed(infer, x), timed(step, xt, yt)


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--repeats", type=int, default=7)
    parser.add_argument("--warmup", type=int, default=2)
    parser.add_argument("--batch", type=int, default=16)
    parser.add_argument("--train-batch", type=int, default=16)
    parser.add_argument("--size", type=int, default=224)
    parser.add_argument("--threads", type=int, default=os.cpu_count())
    parser.add_argument("--xla", action="store_true", help="jit_compile=True")
    parser.add_argument(
        "--quick", action="store_true",
        help="a smoke run: batch 2, 128x128, 2 repeats, 1 warm-up",
    )
    parser.add_argument(
        "--timm-python",
        default=os.environ.get("KERAS_BLURPOOL_TIMM_PYTHON")
        or os.path.join(_ROOT, ".venv-timm", "bin", "python"),
    )
    args = parser.parse_args(argv)
    if args.quick:
        args.batch = args.train_batch = 2
        args.size, args.repeats, args.warmup = 128, 2, 1

    import numpy as np
    import tensorflow as tf

    tf.config.threading.set_intra_op_parallelism_threads(args.threads)
    tf.config.threading.set_inter_op_parallelism_threads(min(2, args.threads))
    import keras

    worker = _TimmWorker(
        args.timm_python, args.batch, args.train_batch, args.size, args.threads
    )
    calls = {}
    for builder, name in _MODELS:
        infer, step = _ours(builder, args.batch, args.train_batch, args.size, args.xla)
        calls[(builder, name, "inference")] = infer
        calls[(builder, name, "train step")] = step
    times = {key: ([], []) for key in calls}
    for round_index in range(args.warmup + args.repeats):
        for key, ours in calls.items():
            mine, theirs = ours(), worker.time(f"{key[1]} {key[2]}")
            if round_index >= args.warmup:
                times[key][0].append(mine)
                times[key][1].append(theirs)
    worker.close()

    print(
        f"machine: {platform.processor() or platform.machine()}, "
        f"{os.cpu_count()} cores, {args.threads} threads; TF {tf.__version__}, "
        f"Keras {keras.__version__}{' (XLA)' if args.xla else ''}; torch "
        f"{worker.versions['torch']}, timm {worker.versions['timm']}; "
        f"inference batch {args.batch}, train batch {args.train_batch}, "
        f"{args.size}x{args.size}, float32; medians of {args.repeats} "
        f"interleaved rounds after {args.warmup} warm-up"
    )
    at_target_size = (args.batch, args.size) == (16, 224)
    print("\n| model | task | ours (ms) | timm (ms) | ours / timm | target ≤ 1.2× |")
    print("|---|---|---:|---:|---:|---|")
    for (builder, name, task), (mine, theirs) in times.items():
        ours_ms, timm_ms = float(np.median(mine)), float(np.median(theirs))
        ratio = ours_ms / timm_ms
        verdict = ("PASS" if ratio <= 1.2 else "MISS") if task == "inference" else ""
        if verdict and not at_target_size:
            verdict += " (not the target's size)"
        print(f"| {builder} / {name} | {task} | {ours_ms:.0f} | {timm_ms:.0f} "
              f"| {ratio:.2f} | {verdict} |")


if __name__ == "__main__":
    sys.exit(main())

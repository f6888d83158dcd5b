"""What planning BlurPool2D's "same"-convolution route costs per input size.

`BlurPool2D` plans its "same" route once per input size (cached, 256
plans): which border rows and columns to correct, from which input lines.
Per square size n, with the caches cleared: the time and the peak memory
(tracemalloc) of planning, and the bytes one plan holds; then the memory
the cache retains after planning 30 distinct sizes near 2048; then the
first call of a fresh layer (plan, trace and run, eager) on a
(1, n, n, 1) input on the "same" and on the padded route, interleaved,
medians over repeats.

    python benchmarks/same_padding_plan.py [--repeats 3] [--sizes 224,1024,2048,4096]
"""

import argparse
import dataclasses
import os
import platform
import time
import tracemalloc

os.environ.setdefault("KERAS_BACKEND", "tensorflow")
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import keras  # noqa: E402
import numpy as np  # noqa: E402

from keras_blurpool import BlurPool2D  # noqa: E402
from keras_blurpool import binomial_filter  # noqa: E402
from keras_blurpool.layers import _same_padding  # noqa: E402

from _common import interleaved_medians  # noqa: E402

TAPS = binomial_filter(4)  # the paper's filter at stride 2, reflect
PADS = (1, 2)


def _array_bytes(value):
    """Bytes of every NumPy array reachable through dataclass fields."""
    if isinstance(value, np.ndarray):
        return value.nbytes
    if dataclasses.is_dataclass(value):
        return sum(_array_bytes(getattr(value, f.name))
                   for f in dataclasses.fields(value))
    return 0


def _clear(module):
    module._plan_2d.cache_clear()
    module._axis_plan.cache_clear()


def planning(module, n):
    """(seconds, peak bytes, plan bytes) of planning an n x n input."""
    _clear(module)
    tracemalloc.start()
    start = time.perf_counter()
    plan = module.plan_2d((n, n), TAPS, (2, 2), PADS, "reflect")
    seconds = time.perf_counter() - start
    _, peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    return seconds, peak, _array_bytes(plan)


def retained(module, sizes):
    """Bytes the plan caches hold after planning each size once."""
    _clear(module)
    tracemalloc.start()
    for n in sizes:
        module.plan_2d((n, n), TAPS, (2, 2), PADS, "reflect")
    held, _ = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    _clear(module)
    return held


def _first_call(n, implementation):
    x = keras.random.normal((1, n, n, 1))

    def call():
        _clear(_same_padding)
        y = BlurPool2D(4, implementation=implementation)(x)
        keras.ops.convert_to_numpy(y[0, 0, 0])

    return call


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--sizes", default="224,1024,2048,4096")
    args = parser.parse_args()
    sizes = [int(n) for n in args.sizes.split(",")]

    print(f"machine: {platform.processor() or platform.machine()}, "
          f"{os.cpu_count()} cores; Keras {keras.__version__} "
          f"({keras.backend.backend()}); filter 4, stride 2, reflect")
    print("planning one n x n input (caches cleared):")
    for n in sizes:
        seconds, peak, held = planning(_same_padding, n)
        print(f"  n={n:<5} {1e3 * seconds:9.2f} ms  peak {peak / 2**10:10.1f} KiB"
              f"  plan arrays {held:>10,} B")
    near_2k = list(range(2000, 2060, 2))
    held = retained(_same_padding, near_2k)
    print(f"cache after planning {len(near_2k)} sizes near 2048: "
          f"{held / 2**20:.2f} MiB")
    calls = {}
    for n in sizes:
        calls[f"same   n={n}"] = _first_call(n, "same")
        calls[f"padded n={n}"] = _first_call(n, "padded")
    ms = interleaved_medians(calls, args.repeats)
    print(f"first call of a fresh layer, eager, (1, n, n, 1), median of "
          f"{args.repeats}:")
    for n in sizes:
        same, padded = ms[f"same   n={n}"], ms[f"padded n={n}"]
        print(f"  n={n:<5} same {same:9.1f} ms  padded {padded:9.1f} ms  "
              f"same / padded {same / padded:.2f}x")


if __name__ == "__main__":
    main()

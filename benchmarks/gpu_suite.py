"""The GPU check in one command: BlurPool2D against the memory floor, and fit.

One run, one table, on the machine at hand:

- the device's memory bandwidth, measured here: an elementwise `x * 2` on
  an on-device buffer (a few hundred MiB on a GPU), bytes read + written
  over the median time, the better of `tf.function` and XLA;
- `BlurPool2D` (filter 4, stride 2, reflect padding, NHWC) forward and
  forward+backward, on each route (`implementation="padded"`: explicit pad
  + "valid" depthwise convolution; `"same"`: the backend's "same"
  convolution plus a border correction), with and without XLA, in float32
  and half precision (bfloat16; float16 too on a GPU), in ms and as a
  ratio to the memory floor: reading the input once and writing the output
  once at the measured bandwidth (forward+backward: also reading the output
  gradient and writing the input gradient, twice the bytes). Inputs are
  `tf.function` arguments, not captured constants XLA would fold;
  forward+backward returns the output and the input gradient, so neither is
  pruned. Each timed call issues `--inner` calls and waits once
  (`sync_devices`), so that a GPU is not left idle by the host's dispatch;
  rounds interleave the candidates of one shape and dtype, figures are
  medians;
- `model.fit` throughput (images/s), XLA on (`compile(jit_compile=True)`),
  mixed precision, of the anti-aliased (`filter_size=4`) and the plain
  ResNet-50 at 224x224 on synthetic data (a repeated `tf.data` dataset of
  random uint8 images, cast by the model: a quarter of float32's host to
  device copy), warm-up fit excluded, fits interleaved, timed between the
  device syncs at the end of the first and of the last step of each fit;
- the targets, with a tick or a cross: the forward of the route that the
  default (`"auto"`) trains on <= 2x the memory floor in float32 on the
  largest shape (the note gives the padded route's, which inference and
  export run), and anti-aliased / plain ResNet-50 throughput >= 0.80
  (timm's resnetblur50 on an RTX 3090: 699 / 826 img/s = 0.85).

On a GPU the BlurPool2D shapes are 16x56x56x256 (the project's benchmark
shape) and 64x56x56x256 (enough work that the host's dispatch does not
set the pace; the target uses it). TF's soft placement may run an op that
lacks a GPU kernel for a dtype on the CPU: such a row shows as slow, not as
"unsupported" (on CPU a missing kernel is an error, printed as such).

Without a GPU (or with `--tiny`) it runs a smoke-test size instead, about a
minute on 2 CPU cores: BlurPool2D on 2x16x16x8, and ResNet-18 at 40x40,
batch 4, float32, standing in for ResNet-50 (XLA takes ~12 s to compile
each ResNet-18 training step there, ResNet-50's far longer); its figures
check that everything runs, not the targets. `--full` forces the GPU sizes.
The exit status is 0 whether or not the targets are met (1 if the fit
failed; the table is printed first).

    python benchmarks/gpu_suite.py [--tiny | --full] [--repeats 30]
        [--skip-fit] [--json results.json]
"""

import argparse
import datetime
import json
import math
import os
import platform
import time

os.environ.setdefault("KERAS_BACKEND", "tensorflow")
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import keras  # noqa: E402
import numpy as np  # noqa: E402
import tensorflow as tf  # noqa: E402

# Each candidate is its own tf.function of the same Python function, which
# tf.function's retracing warning takes for retracing.
tf.get_logger().setLevel("ERROR")

from keras_blurpool import BlurPool2D  # noqa: E402
from keras_blurpool.applications import ResNet18  # noqa: E402
from keras_blurpool.applications import ResNet50  # noqa: E402

from _common import interleaved_medians  # noqa: E402
from _common import synced  # noqa: E402
from _common import tf_passes  # noqa: E402

FILTER_SIZE, STRIDES, PAD_TYPE = 4, 2, "reflect"
ROUTES = ("padded", "same")
PASSES = ("fwd", "fwd+bwd")
FLOOR_TARGET = 2.0  # BlurPool2D forward / memory floor, at most
FIT_TARGET = 0.80  # anti-aliased / plain ResNet-50 images/s, at least
TIMM_REFERENCE = "timm resnetblur50 / resnet50 on RTX 3090: 699 / 826 img/s = 0.85"


def _short_reason(error):
    """`unsupported: ...` text: the error's kind and first line, shortened."""
    lines = [line.strip() for line in str(error).splitlines() if line.strip()]
    text = f"{type(error).__name__}: {lines[0] if lines else ''}"
    return text if len(text) <= 70 else text[:67] + "..."


def _device():
    gpus = tf.config.list_physical_devices("GPU")
    if gpus:
        details = tf.config.experimental.get_device_details(gpus[0])
        name = details.get("device_name", gpus[0].name)
        return gpus, f"GPU: {name}" + (f" (x{len(gpus)}, first used)" if len(gpus) > 1 else "")
    cpu = platform.processor() or platform.machine()
    return gpus, f"CPU: {cpu}, {os.cpu_count()} cores (no GPU)"


def _bandwidth(mib, repeats, inner):
    """Bytes read + written per second by `x * 2`, the better of plain and XLA."""
    x = tf.ones((mib * 2**20 // 4,), tf.float32)

    def double(x):
        return x * 2.0

    calls = {jit: synced(tf.function(double, jit_compile=jit), (x,), inner)
             for jit in (False, True)}
    ms = interleaved_medians(calls, repeats, warmups=2)
    best = min(ms.values()) / inner
    return 2 * x.shape[0] * 4 / (best / 1e3), best


def _blurpool_pair(layer, x, dy, jit):
    forward, forward_backward = tf_passes(layer, jit)
    return {"fwd": (forward, (x,)), "fwd+bwd": (forward_backward, (x, dy))}


def _blurpool_rows(shape, dtype, bandwidth, repeats, inner):
    """One row per route, XLA setting and pass; unsupported ones say why."""
    x = tf.random.normal(shape, dtype=dtype)
    rows, calls = {}, {}
    for route in ROUTES:
        for jit in (False, True):
            base = dict(shape=list(shape), dtype=dtype, route=route, xla=jit)
            try:
                layer = BlurPool2D(FILTER_SIZE, strides=STRIDES, pad_type=PAD_TYPE,
                                   implementation=route, dtype=dtype)
                layer.build(shape)
                out_shape = layer.compute_output_shape(shape)
                dy = tf.ones(out_shape, dtype=dtype)
                pair = _blurpool_pair(layer, x, dy, jit)
            except Exception as error:
                reason = _short_reason(error)
                if route == "same" and isinstance(error, ValueError):
                    reason = f'no exact "same" route at {shape[1]}x{shape[2]}'
                for name in PASSES:
                    rows[(route, jit, name)] = dict(base, unsupported=reason,
                                                    **{"pass": name})
                continue
            io_bytes = (math.prod(shape) + math.prod(out_shape)) * x.dtype.size
            for name, (fn, args) in pair.items():
                row = dict(base, **{"pass": name})
                row["bytes"] = io_bytes * (1 if name == "fwd" else 2)
                row["floor_ms"] = row["bytes"] / bandwidth * 1e3
                try:  # traces, compiles and runs once: a missing kernel shows here
                    synced(fn, args, 1)()
                except Exception as error:
                    row["unsupported"] = _short_reason(error)
                else:
                    calls[(route, jit, name)] = synced(fn, args, inner)
                rows[(route, jit, name)] = row
    if calls:
        for key, ms in interleaved_medians(calls, repeats, warmups=2).items():
            rows[key]["ms"] = ms / inner
            rows[key]["ratio"] = rows[key]["ms"] / rows[key]["floor_ms"]
    return list(rows.values())


def _auto_route(shape):
    """The route `implementation="auto"` trains on: "same" where it is exact.

    (Inference and export take "padded" whatever the shape.)
    """
    try:
        BlurPool2D(FILTER_SIZE, strides=STRIDES, pad_type=PAD_TYPE,
                   implementation="same").build(shape)
    except ValueError:
        return "padded"
    return "same"


class _Clock(keras.callbacks.Callback):
    """Device-synced times at the end of step `first` and of step `last`."""

    def __init__(self, first, last):
        super().__init__()
        self.first, self.last, self.marks = first, last, []

    def on_train_batch_end(self, batch, logs=None):
        if batch in (self.first, self.last):
            tf.test.experimental.sync_devices()
            self.marks.append(time.perf_counter())


def _fit_rates(arch, size, batch_size, classes, policy, steps, rounds):
    """Median images/s of `model.fit` for the anti-aliased and the plain model."""
    previous = keras.mixed_precision.global_policy()
    keras.mixed_precision.set_global_policy(policy)
    try:
        keras.utils.set_random_seed(0)
        images = tf.random.uniform((batch_size, size, size, 3), 0, 256, tf.int32)
        labels = tf.random.uniform((batch_size,), 0, classes, tf.int32)
        dataset = tf.data.Dataset.from_tensors((tf.cast(images, tf.uint8), labels))
        dataset = dataset.repeat().prefetch(2)
        builder = ResNet50 if arch == "ResNet-50" else ResNet18
        models = {}
        for name, filter_size in (("anti-aliased", FILTER_SIZE), ("plain", None)):
            model = builder(filter_size=filter_size, weights=None,
                            input_shape=(size, size, 3), classes=classes)
            model.compile(optimizer=keras.optimizers.SGD(0.01, momentum=0.9),
                          loss="sparse_categorical_crossentropy", jit_compile=True)
            model.fit(dataset, steps_per_epoch=1, epochs=1, shuffle=False,
                      verbose=0)  # compiles
            models[name] = model
        rates = {name: [] for name in models}
        for _ in range(rounds):
            for name, model in models.items():
                # Step 0 also refills the pipeline after the previous fit:
                # the clock starts at its end.
                clock = _Clock(0, steps)
                model.fit(dataset, steps_per_epoch=steps + 1, epochs=1,
                          shuffle=False, verbose=0, callbacks=[clock])
                start, end = clock.marks
                rates[name].append(steps * batch_size / (end - start))
        return {name: float(np.median(r)) for name, r in rates.items()}
    finally:
        keras.mixed_precision.set_global_policy(previous)


def _table(rows):
    header = ("what", "dtype", "XLA", "value", "floor", "/ floor")
    widths = [max(len(str(r[i])) for r in rows + [header]) for i in range(len(header))]
    lines = ["| " + " | ".join(h.ljust(w) for h, w in zip(header, widths)) + " |",
             "|" + "|".join("-" * (w + 2) if i < 3 else "-" * (w + 1) + ":"
                            for i, w in enumerate(widths)) + "|"]
    for row in rows:
        cells = [str(c).ljust(w) if i < 3 or not c[:1].isdigit() else str(c).rjust(w)
                 for i, (c, w) in enumerate(zip(row, widths))]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def _parse_shapes(text):
    return [tuple(int(v) for v in s.split(",")) for s in text.split(";") if s]


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    size_mode = parser.add_mutually_exclusive_group()
    size_mode.add_argument("--tiny", action="store_true",
                           help="smoke-test sizes (the default without a GPU)")
    size_mode.add_argument("--full", action="store_true",
                           help="GPU sizes even without a GPU")
    parser.add_argument("--repeats", type=int, default=None,
                        help="BlurPool2D timing rounds (30 full, 5 tiny)")
    parser.add_argument("--inner", type=int, default=None,
                        help="calls per timed BlurPool2D round (10 on a GPU, 1 on CPU)")
    parser.add_argument("--shapes", default=None,
                        help="BlurPool2D NHWC shapes, 'N,H,W,C;N,H,W,C' "
                             "(full: 16,56,56,256;64,56,56,256; tiny: 2,16,16,8)")
    parser.add_argument("--bandwidth-mib", type=int, default=None,
                        help="buffer for the bandwidth (full: 512, tiny: 32)")
    parser.add_argument("--batch-size", type=int, default=None,
                        help="fit batch (full: 128, tiny: 4)")
    parser.add_argument("--fit-steps", type=int, default=None,
                        help="timed steps per fit (full: 20, tiny: 2)")
    parser.add_argument("--fit-rounds", type=int, default=None,
                        help="interleaved fits per model (full: 3, tiny: 2)")
    parser.add_argument("--policy", default=None,
                        help="fit dtype policy (GPU: mixed_float16; CPU full: "
                             "mixed_bfloat16; tiny on CPU: float32)")
    parser.add_argument("--skip-fit", action="store_true", help="BlurPool2D rows only")
    parser.add_argument("--json", metavar="PATH", help="also write the numbers as JSON")
    args = parser.parse_args()

    started = time.perf_counter()
    gpus, device = _device()
    tiny = args.tiny or (not gpus and not args.full)
    defaults = dict(
        repeats=5 if tiny else 30,
        inner=10 if gpus else 1,
        shapes="2,16,16,8" if tiny else "16,56,56,256;64,56,56,256",
        bandwidth_mib=32 if tiny else 512,
        batch_size=4 if tiny else 128,
        fit_steps=2 if tiny else 20,
        fit_rounds=2 if tiny else 3,
        policy="mixed_float16" if gpus else ("float32" if tiny else "mixed_bfloat16"),
    )
    for key, value in defaults.items():
        if getattr(args, key) is None:
            setattr(args, key, value)
    shapes = _parse_shapes(args.shapes)
    half = ["bfloat16", "float16"] if gpus else ["bfloat16"]
    arch, size, classes = ("ResNet-18", 40, 10) if tiny else ("ResNet-50", 224, 1000)

    bandwidth, bandwidth_ms = _bandwidth(args.bandwidth_mib, args.repeats, args.inner)
    blur = []
    for shape in shapes:
        for dtype in ["float32"] + half:
            blur += _blurpool_rows(shape, dtype, bandwidth, args.repeats, args.inner)
    blur_done = time.perf_counter()
    rates, fit_error = None, None
    while not args.skip_fit:
        try:
            rates = _fit_rates(arch, size, args.batch_size, classes, args.policy,
                               args.fit_steps, args.fit_rounds)
        except tf.errors.ResourceExhaustedError as error:
            if args.batch_size < 16:
                fit_error = _short_reason(error)
                break
            print(f"fit: out of memory at batch {args.batch_size}, halving it")
            args.batch_size //= 2
            continue
        except Exception as error:  # still print the BlurPool2D rows
            fit_error = _short_reason(error)
        break
    fit_done = time.perf_counter()

    print(f"gpu_suite: {datetime.datetime.now().astimezone():%Y-%m-%d %H:%M %Z}; "
          f"{device}; mode {'tiny' if tiny else 'full'}; TF {tf.__version__}, "
          f"Keras {keras.__version__} ({keras.backend.backend()}); "
          f"Python {platform.python_version()}")
    print(f"BlurPool2D: filter {FILTER_SIZE}, stride {STRIDES}, pad {PAD_TYPE}, NHWC; "
          f"median of {args.repeats} rounds x {args.inner} call(s); floor = input read "
          "once + output written once at the measured bandwidth (fwd+bwd: twice that)")
    if not args.skip_fit:
        print(f"fit: {arch} at {size}x{size}, batch {args.batch_size}, {classes} "
              f"classes, policy {args.policy}, XLA (jit_compile=True), SGD; "
              f"{args.fit_steps} timed steps x {args.fit_rounds} interleaved fits "
              "each, warm-up fit excluded; synthetic uint8 images"
              + ("; tiny mode: ResNet-18 stands in for ResNet-50" if tiny else ""))
    rows = [(f"memory bandwidth (x * 2, {args.bandwidth_mib} MiB)", "float32", "best",
             f"{bandwidth / 1e9:.1f} GB/s", f"{bandwidth_ms:.3f} ms", "")]
    for row in blur:
        what = (f"BlurPool2D {row['route']} {row['pass']} "
                + "x".join(str(n) for n in row["shape"]))
        xla = "yes" if row["xla"] else "no"
        if "unsupported" in row:
            rows.append((what, row["dtype"], xla, f"unsupported: {row['unsupported']}",
                         "", ""))
        else:
            rows.append((what, row["dtype"], xla, f"{row['ms']:.4f} ms",
                         f"{row['floor_ms']:.4f} ms", f"{row['ratio']:.2f}x"))
    if rates is not None:
        for name, rate in rates.items():
            rows.append((f"{arch} fit, {name}", args.policy, "yes",
                         f"{rate:.1f} img/s", "", ""))
        rows.append((f"{arch} fit, anti-aliased / plain", args.policy, "yes",
                     f"{rates['anti-aliased'] / rates['plain']:.3f}x", "", ""))
    if fit_error:
        rows.append((f"{arch} fit", args.policy, "yes", f"failed: {fit_error}", "", ""))
    print(_table(rows))

    targets = []
    largest = max(shapes, key=math.prod)
    auto = _auto_route(largest)
    for jit in (False, True):
        found = [r for r in blur if r["shape"] == list(largest) and r["dtype"] == "float32"
                 and r["pass"] == "fwd" and r["xla"] == jit and "ratio" in r]
        chosen = [r for r in found if r["route"] == auto]
        if not chosen:
            continue
        padded = [r for r in found if r["route"] == "padded"]
        what = (f"BlurPool2D forward <= {FLOOR_TARGET:g}x memory floor: auto's "
                f"training route (= {auto}), float32, "
                f"{'x'.join(map(str, largest))}, {'XLA' if jit else 'no XLA'}")
        note = (f"inference route padded: {padded[0]['ratio']:.2f}x"
                if padded else "padded route not measured")
        targets.append(dict(what=what, value=chosen[0]["ratio"],
                            met=chosen[0]["ratio"] <= FLOOR_TARGET, note=note))
    if rates is not None:
        ratio = rates["anti-aliased"] / rates["plain"]
        targets.append(dict(what=f"{arch} fit anti-aliased / plain >= {FIT_TARGET:.2f}",
                            value=ratio, met=ratio >= FIT_TARGET, note=TIMM_REFERENCE))
    print("targets" + (" (tiny mode: a smoke test, the targets are for a GPU run)"
                       if tiny else "") + ":")
    for target in targets:
        print(f"  {'✓' if target['met'] else '✗'} {target['what']}: "
              f"{target['value']:.2f}x  ({target['note']})")
    total = time.perf_counter() - started
    print(f"wall: {total:.0f} s (BlurPool2D {blur_done - started:.0f} s, "
          f"fit {fit_done - blur_done:.0f} s)")

    if args.json:
        result = dict(
            device=device, mode="tiny" if tiny else "full", tf=tf.__version__,
            keras=keras.__version__, date=datetime.datetime.now().astimezone().isoformat(),
            bandwidth_gb_per_s=bandwidth / 1e9, bandwidth_ms=bandwidth_ms,
            bandwidth_mib=args.bandwidth_mib, repeats=args.repeats, inner=args.inner,
            blurpool=blur, auto_route=auto,
            fit=None if rates is None else dict(
                arch=arch, size=size, batch_size=args.batch_size, policy=args.policy,
                steps=args.fit_steps, rounds=args.fit_rounds,
                images_per_s=rates, ratio=rates["anti-aliased"] / rates["plain"]),
            fit_error=fit_error, targets=targets, wall_s=total,
        )
        with open(args.json, "w") as f:
            json.dump(result, f, indent=1, allow_nan=False)
    if fit_error:
        raise SystemExit(1)


if __name__ == "__main__":
    main()

"""BlurPool2D speed against the PyTorch reference and a memory floor.

One run, side by side, same machine: forward and forward+backward of
`BlurPool2D` (TF backend, inside `tf.function`, NHWC, training calls:
the route `"auto"` trains on), of the same layer
with `implementation="padded"` (explicit pad + "valid" convolution), and of the
reference `antialiased_cnns.BlurPool` (torch CPU, its native NCHW), and a
memory floor: a 2x2 stride-2 average pool, one pass that reads the input
and writes a quarter-size output. Rounds interleave the candidates; the
figures are medians over rounds, printed as ratios. Forward+backward
returns the output and the input gradient, so neither can be pruned.

    python benchmarks/blurpool_speed.py [--repeats 30] [--shape 16,56,56,256]
        [--jit-compile]
"""

import argparse
import os
import platform

os.environ.setdefault("KERAS_BACKEND", "tensorflow")
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import tensorflow as tf  # noqa: E402

from keras_blurpool import BlurPool2D  # noqa: E402

from _common import interleaved_medians  # noqa: E402
from _common import synced  # noqa: E402
from _common import tf_passes  # noqa: E402


def _tf_candidates(x, filter_size, pad_type, jit_compile=False):
    def pair(layer):
        layer.build(x.shape)
        forward, forward_backward = tf_passes(layer, jit_compile)
        dy = tf.ones(layer.compute_output_shape(x.shape))
        return synced(forward, (x,)), synced(forward_backward, (x, dy))

    @tf.function
    def floor(x):
        return tf.nn.avg_pool2d(x, 2, 2, "VALID")

    ours = pair(BlurPool2D(filter_size, pad_type=pad_type))
    padded = pair(
        BlurPool2D(filter_size, pad_type=pad_type, implementation="padded")
    )
    return ours, padded, synced(floor, (x,))


def _torch_candidates(shape, filter_size, pad_type):
    try:
        import antialiased_cnns
        import torch
    except ImportError:
        return None
    torch.set_num_threads(os.cpu_count())
    n, h, w, c = shape
    x = torch.randn(n, c, h, w)
    xg = x.clone().requires_grad_()
    module = antialiased_cnns.BlurPool(c, pad_type=pad_type, filt_size=filter_size)

    def forward():
        with torch.no_grad():
            module(x)

    def forward_backward():
        y = module(xg)
        y.backward(torch.ones_like(y))
        xg.grad = None

    return forward, forward_backward


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--repeats", type=int, default=30)
    parser.add_argument("--shape", default="16,56,56,256", help="N,H,W,C")
    parser.add_argument("--filter-size", type=int, default=4)
    parser.add_argument("--pad-type", default="reflect")
    parser.add_argument("--jit-compile", action="store_true",
                        help="compile our candidates with XLA")
    args = parser.parse_args()
    shape = tuple(int(v) for v in args.shape.split(","))
    x = tf.random.normal(shape)
    ours, padded, floor = _tf_candidates(
        x, args.filter_size, args.pad_type, args.jit_compile)
    fns = {"ours fwd": ours[0], "ours fwd+bwd": ours[1],
           "padded route fwd": padded[0], "padded route fwd+bwd": padded[1],
           "floor": floor}
    ref = _torch_candidates(shape, args.filter_size, args.pad_type)
    if ref is not None:
        fns["reference fwd"], fns["reference fwd+bwd"] = ref
    ms = interleaved_medians(fns, args.repeats, warmups=2)

    print(f"machine: {platform.processor() or platform.machine()}, "
          f"{os.cpu_count()} cores; TF {tf.__version__}; shape NHWC {shape}, "
          f"filter {args.filter_size}, stride 2, pad {args.pad_type}"
          f"{', XLA' if args.jit_compile else ''}; "
          f"median of {args.repeats}")
    for name, value in ms.items():
        print(f"  {name:<22} {value:8.2f} ms")
    print(f"forward / floor:                      {ms['ours fwd'] / ms['floor']:.2f}x"
          "  (target <= 4)")
    print("padded route / ours, forward:         "
          f"{ms['padded route fwd'] / ms['ours fwd']:.2f}x")
    print("padded route / ours, forward+backward: "
          f"{ms['padded route fwd+bwd'] / ms['ours fwd+bwd']:.2f}x")
    if ref is not None:
        print("reference / ours, forward:            "
              f"{ms['reference fwd'] / ms['ours fwd']:.2f}x")
        print("reference / ours, forward+backward:   "
              f"{ms['reference fwd+bwd'] / ms['ours fwd+bwd']:.2f}x  (target >= 6)")
    else:
        print("reference not installed: pip install torch antialiased-cnns")


if __name__ == "__main__":
    main()

"""Reading a ResNet-50 checkpoint without PyTorch vs `torch.load`.

Writes a ResNet-50 checkpoint (`antialiased_cnns.resnet50(filter_size=4)`,
random weights, `{"state_dict": ...}` in the legacy format of the released
files, ~100 MB) into a temporary directory, then times, interleaved in one
run (medians over repeats):

- `read_torch_checkpoint(path)` against `torch.load(path)` (weights_only),
- reading + converting into our `ResNet50` (`load_torch_weights`) against
  `torch.load` + `load_state_dict` into the reference model,

and measures in fresh subprocesses the peak memory of each reader over
the file size: the tracemalloc peak (Python and NumPy allocations) and the
growth of the resident set's high-water mark (`VmHWM`, reset first;
Linux only).

    python benchmarks/read_checkpoint.py [--repeats 5]
"""

import argparse
import json
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time

os.environ.setdefault("KERAS_BACKEND", "tensorflow")
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import antialiased_cnns  # noqa: E402
import torch  # noqa: E402

from keras_blurpool import load_torch_weights  # noqa: E402
from keras_blurpool.applications import ResNet50  # noqa: E402
from keras_blurpool.weights import read_torch_checkpoint  # noqa: E402
from keras_blurpool.weights import torch_checkpoint  # noqa: E402

# Run in a fresh interpreter so that the peak belongs to one reader only.
# Imports happen before the baseline so that they do not count.
_MEMORY_PROBE = r"""
import json, sys, tracemalloc
which, path = sys.argv[1], sys.argv[2]
if which == "ours":
    import importlib.util
    # The module alone: importing the package would import Keras and
    # TensorFlow, whose footprint is no part of the reader's.
    spec = importlib.util.spec_from_file_location("tc", sys.argv[3])
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    read = module.read_torch_checkpoint
else:
    import torch
    def read(p):
        return torch.load(p, map_location="cpu", weights_only=True)

def status(field):
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith(field):
                return int(line.split()[1]) * 1024

# Reset the RSS high-water mark (Linux) so that the peak is the read's.
with open("/proc/self/clear_refs", "w") as f:
    f.write("5")
rss_before = status("VmRSS:")
tracemalloc.start()
state = read(path)
_, peak = tracemalloc.get_traced_memory()
tracemalloc.stop()
print(json.dumps({"traced_peak": peak,
                  "rss_growth": status("VmHWM:") - rss_before}))
"""


def _torch_load(path):
    return torch.load(path, map_location="cpu", weights_only=True)


def _median_times(functions, repeats):
    times = {name: [] for name in functions}
    for _ in range(repeats):
        for name, function in functions.items():  # interleaved
            start = time.perf_counter()
            function()
            times[name].append(time.perf_counter() - start)
    return {name: statistics.median(values) for name, values in times.items()}


def _memory(which, path):
    env = dict(os.environ, KERAS_BACKEND="tensorflow")
    out = subprocess.run(
        [sys.executable, "-c", _MEMORY_PROBE, which, path,
         os.path.abspath(torch_checkpoint.__file__)],
        check=True, capture_output=True, text=True, env=env,
    ).stdout
    return json.loads(out.strip().splitlines()[-1])


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--repeats", type=int, default=5)
    args = parser.parse_args()
    torch.set_num_threads(2)

    torch.manual_seed(0)
    torch_model = antialiased_cnns.resnet50(filter_size=4).eval()
    keras_model = ResNet50(filter_size=4)
    with tempfile.TemporaryDirectory() as directory:
        path = os.path.join(directory, "resnet50_lpf4.pth.tar")
        torch.save(
            {"state_dict": torch_model.state_dict(), "epoch": 90},
            path,
            _use_new_zipfile_serialization=False,
        )
        size = os.path.getsize(path)

        def ours_convert():
            load_torch_weights(keras_model, read_torch_checkpoint(path))

        def torch_convert():
            torch_model.load_state_dict(_torch_load(path)["state_dict"])

        # One warm-up each: page cache, first-call imports.
        read_torch_checkpoint(path)
        _torch_load(path)
        ours_convert()
        torch_convert()
        times = _median_times(
            {
                "read: read_torch_checkpoint": lambda: read_torch_checkpoint(path),
                "read: torch.load": lambda: _torch_load(path),
                "read + load: ours (load_torch_weights)": ours_convert,
                "read + load: torch (load_state_dict)": torch_convert,
            },
            args.repeats,
        )
        memory = {which: _memory(which, path) for which in ("ours", "torch")}

    print(
        f"{platform.machine()}, {os.cpu_count()} cores, Python "
        f"{platform.python_version()}, torch {torch.__version__}; "
        f"file {size / 1e6:.1f} MB (legacy format); median of {args.repeats}"
    )
    print(f"{'':42s} {'time (ms)':>10s}")
    for name, seconds in times.items():
        print(f"{name:42s} {seconds * 1e3:10.1f}")
    ratio = times["read: read_torch_checkpoint"] / times["read: torch.load"]
    ratio_load = (
        times["read + load: ours (load_torch_weights)"]
        / times["read + load: torch (load_state_dict)"]
    )
    print(f"read ratio ours / torch.load: {ratio:.2f}x")
    print(f"read + load ratio ours / torch: {ratio_load:.2f}x")
    for which, figures in memory.items():
        print(
            f"peak memory, {which:5s}: tracemalloc "
            f"{figures['traced_peak'] / 1e6:.1f} MB"
            f" ({figures['traced_peak'] / size:.2f}x the file), RSS growth "
            f"{figures['rss_growth'] / 1e6:.1f} MB "
            f"({figures['rss_growth'] / size:.2f}x the file)"
        )


if __name__ == "__main__":
    main()

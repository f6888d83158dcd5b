"""Reading safetensors files: ours against the safetensors package, and
hostile headers.

Writes into a temporary directory a ResNet-50-sized state dict (random
float32 values under 320 names, ~100 MB) and the hostile files that
`tests/test_safetensors.py` writes at smaller scale, then

- times `read_safetensors` against `safetensors.numpy.load_file` on the
  state dict, interleaved in one run (medians over repeats);
- reads each hostile file with both, in fresh subprocesses that import
  only the reader: what happens (read or refused), the time (untraced),
  and the tracemalloc peak of a second read over the file's size.

    python benchmarks/read_safetensors.py [--repeats 5]
"""

import argparse
import json
import os
import platform
import statistics
import struct
import subprocess
import sys
import tempfile
import time

import numpy as np

os.environ.setdefault("KERAS_BACKEND", "tensorflow")
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

# A fresh interpreter per read, so that the peak belongs to one reader.
_PROBE = r"""
import json, sys, time, tracemalloc
which, path = sys.argv[1], sys.argv[2]
if which == "ours":
    from keras_blurpool.weights.safetensors import read_safetensors as read
else:
    from safetensors.numpy import load_file as read
def attempt():
    try:
        return f"read {len(read(path))} tensors"
    except Exception as error:
        return f"{type(error).__name__}: {str(error).split(': ', 1)[-1][:70]}"
# Timed untraced (tracemalloc slows allocations), then traced.
start = time.perf_counter()
outcome = attempt()
seconds = time.perf_counter() - start
tracemalloc.start()
attempt()
peak = tracemalloc.get_traced_memory()[1]
print(json.dumps({"outcome": outcome, "seconds": seconds, "peak": peak}))
"""

MiB = 2**20


def _write(path, header: bytes, data: bytes = b"") -> str:
    with open(path, "wb") as f:
        f.write(struct.pack("<Q", len(header)) + header + data)
    return path


def _resnet50_sized(path) -> str:
    rng = np.random.default_rng(0)
    sizes = rng.integers(1_000, 150_000, 320)
    sizes = (sizes * (25_500_000 / sizes.sum())).astype(int)
    header, chunks, offset = {}, [], 0
    for i, size in enumerate(sizes):
        data = rng.standard_normal(size).astype("<f4").tobytes()
        header[f"layer{i // 30}.{i % 30}.weight"] = {
            "dtype": "F32", "shape": [int(size)],
            "data_offsets": [offset, offset + len(data)]}
        chunks.append(data)
        offset += len(data)
    return _write(path, json.dumps(header).encode(), b"".join(chunks))


def _hostile(directory) -> dict:
    def entries(count, shape="[128]", nbytes=512, dtype="F32"):
        return [f'"t{i}":{{"dtype":"{dtype}","shape":{shape},'
                f'"data_offsets":[{i * nbytes},{(i + 1) * nbytes}]}}'
                for i in range(count)]

    files = {}
    dup = entries(40_001)
    dup[-1] = dup[-1].replace('"t40000"', '"t39999"')
    files["40,000 names, the last twice"] = _write(
        os.path.join(directory, "dup.safetensors"),
        ("{" + ",".join(dup) + "}").encode(), b"\0" * 512 * 40_001)
    shape = "[" + ",".join([str(2**63 - 1)] * 40_000) + "]"
    files["a shape of 40,000 sizes of 2**63 - 1"] = _write(
        os.path.join(directory, "long.safetensors"),
        ('{"a":{"dtype":"U8","shape":' + shape + ',"data_offsets":[0,1]}}').encode(),
        b"x")
    zeros = [f'"t{i}":{{"dtype":"U8","shape":[0],"data_offsets":[0,0]}}'
             for i in range(1_000_000)]
    files["1,000,000 zero-size tensors"] = _write(
        os.path.join(directory, "zeros.safetensors"),
        ("{" + ",".join(zeros) + "}").encode())
    files["a 100 MiB header (metadata)"] = _write(
        os.path.join(directory, "cap.safetensors"),
        b'{"__metadata__":{"k":"' + b"a" * (100 * MiB - 100) + b'"},'
        b'"w":{"dtype":"U8","shape":[1],"data_offsets":[0,1]}}', b"x")
    return files


def _probe(which, path) -> dict:
    env = dict(os.environ, OMP_NUM_THREADS="1")
    child = subprocess.run(
        [sys.executable, "-c", _PROBE, which, path], capture_output=True,
        text=True, env=env, timeout=1800, check=False)
    lines = child.stdout.strip().splitlines()
    if child.returncode or not lines:
        return {"outcome": f"exit {child.returncode}", "seconds": None, "peak": None}
    return json.loads(lines[-1])


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--repeats", type=int, default=5)
    args = parser.parse_args()
    from safetensors.numpy import load_file

    from keras_blurpool.weights import read_safetensors

    print(f"{platform.processor() or platform.machine()}, {os.cpu_count()} CPUs, "
          f"load average {os.getloadavg()[0]:.1f}")
    with tempfile.TemporaryDirectory() as directory:
        path = _resnet50_sized(os.path.join(directory, "resnet50.safetensors"))
        size = os.path.getsize(path)
        times = {"ours": [], "safetensors": []}
        for _ in range(args.repeats):  # interleaved
            for name, read in (("ours", read_safetensors), ("safetensors", load_file)):
                start = time.perf_counter()
                read(path)
                times[name].append(time.perf_counter() - start)
        ours, theirs = (statistics.median(times[k]) * 1e3 for k in times)
        print(f"\nResNet-50-sized state dict, {size / 1e6:.1f} MB: ours {ours:.1f} ms, "
              f"safetensors {theirs:.1f} ms, ratio {ours / theirs:.2f}x")
        for which in ("ours", "safetensors"):
            peak = _probe(which, path)["peak"]
            print(f"  {which}: tracemalloc peak {peak / size:.2f}x the file")
        print("\n| file | size | reader | result | time | peak / file |")
        print("|---|---:|---|---|---:|---:|")
        for label, path in _hostile(directory).items():
            size = os.path.getsize(path)
            for which in ("ours", "safetensors"):
                result = _probe(which, path)
                seconds = "" if result["seconds"] is None else f"{result['seconds']:.2f} s"
                peak = "" if result["peak"] is None else f"{result['peak'] / size:.2f}x"
                print(f"| {label} | {size / 1e6:.1f} MB | {which} | "
                      f"{result['outcome']} | {seconds} | {peak} |", flush=True)


if __name__ == "__main__":
    main()

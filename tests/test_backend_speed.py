"""benchmarks/backend_speed.py runs each backend in its own process and
prints the whole table (at its --quick size: a check that it runs, not
figures)."""

import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).parents[1]
SCRIPT = ROOT / "benchmarks" / "backend_speed.py"


def _run(*args):
    env = dict(os.environ, PYTHONPATH=str(ROOT), TF_CPP_MIN_LOG_LEVEL="3")
    run = subprocess.run(
        [sys.executable, str(SCRIPT), "--quick", "--repeats", "2", *args],
        cwd=ROOT, env=env, capture_output=True, text=True, timeout=900,
    )
    assert run.returncode == 0, run.stdout + run.stderr[-3000:]
    return run.stdout


def _cells(text, name):
    """The cells of the first table's row of `name`."""
    rows = [line for line in text.splitlines() if line.startswith(f"| {name} ")]
    return [cell.strip() for cell in rows[0].strip("|").split("|")]


def test_every_backend_has_a_row_with_its_routes_and_the_floor():
    text = _run()
    assert "input 4,16,16,32 float32" in text and "floor" in text
    expected = {
        "TensorFlow (tf.function)": ("padded", "same", "same"),
        "JAX (jit)": ("slices", "slices", "slices"),
        "PyTorch (eager)": ("same", "same", "same"),
    }
    for name, routes in expected.items():
        cells = _cells(text, name)
        assert len(cells) == 5, cells
        for cell, route in zip(cells[1:4], routes):
            # "1.2 ms (3.4x), `route`"
            assert cell.endswith(f"`{route}`"), cell
            ms, ratio = cell.split(" ms (")
            assert float(ms) > 0 and float(ratio.split("x)")[0]) > 0, cell
        assert cells[4].endswith(" ms"), cells


def test_network_table_and_bad_backends():
    text = _run("--backends", "tensorflow", "--network",
                "--network-batch", "1", "--network-repeats", "1")
    assert "ResNet-50 train step" in text and "batch 1 at 64x64" in text
    cells = _cells(text, "TensorFlow (tf.function)")
    assert len(cells) == 5
    network = [line for line in text.splitlines()
               if line.startswith("| TensorFlow (tf.function) |")][1]
    assert network.rstrip(" |").endswith("x"), network

    env = dict(os.environ, PYTHONPATH=str(ROOT))
    run = subprocess.run(
        [sys.executable, str(SCRIPT), "--backends", "tensorflow,mxnet"],
        cwd=ROOT, env=env, capture_output=True, text=True, timeout=120,
    )
    assert run.returncode != 0
    assert "--backends must name some of tensorflow, jax, torch" in run.stderr
    assert "Received: tensorflow,mxnet" in run.stderr
    run = subprocess.run(
        [sys.executable, str(SCRIPT), "--extra", "torch"],
        cwd=ROOT, env=env, capture_output=True, text=True, timeout=120,
    )
    assert run.returncode != 0
    assert "Received: --extra torch" in run.stderr

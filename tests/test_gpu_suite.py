"""benchmarks/gpu_suite.py runs at its tiny size and prints its whole table."""

import json
import math
import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).parents[1]
SCRIPT = ROOT / "benchmarks" / "gpu_suite.py"


def test_gpu_suite_tiny_prints_the_table_and_writes_json(tmp_path):
    out = tmp_path / "suite.json"
    env = dict(os.environ, KERAS_BACKEND="tensorflow", TF_CPP_MIN_LOG_LEVEL="2")
    run = subprocess.run(
        [sys.executable, str(SCRIPT), "--tiny", "--json", str(out)],
        cwd=ROOT, env=env, capture_output=True, text=True, timeout=300,
    )
    assert run.returncode == 0, run.stdout + run.stderr[-3000:]
    text = run.stdout
    assert "mode tiny" in text and "TF " in text and "Keras " in text
    assert "memory bandwidth" in text and "GB/s" in text
    for route in ("padded", "same"):
        for name in ("fwd", "fwd+bwd"):
            rows = [line for line in text.splitlines()
                    if line.startswith(f"| BlurPool2D {route} {name} ")]
            cells = {(row.split("|")[2].strip(), row.split("|")[3].strip()) for row in rows}
            # float32 and bfloat16, each without and with XLA
            assert cells == {(dtype, xla) for dtype in ("float32", "bfloat16")
                             for xla in ("no", "yes")}, rows
    assert "fit, anti-aliased / plain" in text and "img/s" in text
    assert "BlurPool2D forward <= 2x memory floor" in text
    assert ("✓" in text) or ("✗" in text)

    result = json.loads(out.read_text())
    assert result["mode"] == "tiny"
    assert result["bandwidth_gb_per_s"] > 0
    rows = result["blurpool"]
    assert len(rows) == 16  # 2 routes x 2 XLA x 2 passes x 2 dtypes
    for row in rows:
        if "unsupported" in row:
            assert row["unsupported"]
            continue
        for key in ("ms", "floor_ms", "ratio"):
            assert math.isfinite(row[key]) and row[key] > 0, row
    assert any("unsupported" not in row for row in rows)
    fit = result["fit"]
    for rate in fit["images_per_s"].values():
        assert math.isfinite(rate) and rate > 0
    assert math.isfinite(fit["ratio"]) and fit["ratio"] > 0
    assert len(result["targets"]) == 3

"""How much circular shifts change keras.applications models before and
after the surgery: the docs' invariance table.

For each model of tests/test_surgery_invariance.py (He-normal random
kernels, BatchNorm statistics calibrated on random images then perturbed,
`include_top=False, pooling="avg"`), the largest relative change of the
pooled features, max |f(roll(x)) - f(x)| / max |f(x)|, over every offset
of an 8x8 grid and three large ones: the model as it is, after
`antialias_model(model)` (the paper's blur) and after
`antialias_model(model, "aps")`. Prints a markdown table. Uses the tests'
helpers: run from the repository root.

    python benchmarks/surgery_invariance.py [--models ResNet50,MobileNetV2]
"""

import argparse
import os
import pathlib
import sys
import warnings

os.environ.setdefault("KERAS_BACKEND", "tensorflow")
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
sys.path.insert(0, str(pathlib.Path(__file__).resolve().parent.parent))

import keras  # noqa: E402

from keras_blurpool import antialias_model  # noqa: E402
from tests._invariance import GRID_SHIFTS  # noqa: E402
from tests._invariance import shift_changes  # noqa: E402
from tests.test_surgery_invariance import FLOAT64  # noqa: E402
from tests.test_surgery_invariance import MODELS  # noqa: E402
from tests.test_surgery_invariance import build  # noqa: E402
from tests.test_surgery_invariance import images  # noqa: E402


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--models", default=",".join(MODELS))
    args = parser.parse_args()
    print(f"Keras {keras.__version__} ({keras.backend.backend()}); max relative "
          f"change over {len(GRID_SHIFTS)} circular shifts\n")
    print("| model | input | original | blur surgery | APS surgery |")
    print("|---|---|---:|---:|---:|")
    for name in args.models.split(","):
        size = MODELS[name]
        keras.utils.set_random_seed(0)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            model = build(name, size)
        image = images(name, size)[0]
        row = [shift_changes(m, image).max() for m in (
            model,
            antialias_model(model, min_channels=0),
            antialias_model(model, "aps"),
        )]
        dtype = " (float64)" if name in FLOAT64 else ""
        print(f"| {name} | {size}²{dtype} | "
              + " | ".join(f"{v:.1e}" for v in row) + " |")


if __name__ == "__main__":
    main()

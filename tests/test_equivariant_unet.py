"""examples/equivariant_unet.py: the APS U-Net moves exactly with its input.

Backend-neutral: CI runs it on TensorFlow, JAX and PyTorch.
"""

import runpy
from pathlib import Path

import numpy as np
import pytest

EXAMPLE = Path(__file__).parents[1] / "examples" / "equivariant_unet.py"


@pytest.fixture(scope="module")
def example():
    return runpy.run_path(str(EXAMPLE))


@pytest.fixture(scope="module")
def image(example):
    size = example["SIZE"]
    return np.random.default_rng(1).random((size, size, 3)).astype("float32")


def test_every_circular_shift_moves_the_segmentation_map_exactly(example, image):
    shifts = example["all_shifts"]()
    assert len(shifts) == 1024
    model = example["build_unet"](equivariant=True)
    assert model.output_shape == (None, 32, 32, example["CLASSES"])
    errors = example["equivariance_errors"](model, image, shifts)
    worst = int(np.argmax(errors))
    assert errors.max() <= 1e-5, (shifts[worst], errors.max())


def test_the_strided_pool_and_upsampling_control_is_not_equivariant(example, image):
    shifts = example["all_shifts"]()
    model = example["build_unet"](equivariant=False)
    errors = example["equivariance_errors"](model, image, shifts)
    exact = {s for s, e in zip(shifts, errors) if e <= 1e-5}
    # Only shifts by multiples of the total stride 4 commute with the
    # strided pools; every other one changes the map by far more.
    assert exact == {s for s in shifts if s[0] % 4 == 0 and s[1] % 4 == 0}
    assert np.median(errors) > 1e-2

"""The zoo on JAX and PyTorch equals the zoo on TensorFlow.

CI runs this module under KERAS_BACKEND=jax and =torch (it skips on
TensorFlow, which it compares against). A process has one Keras backend,
so a TensorFlow subprocess writes TensorFlow's logits of every case of
`tests/_backends.py` into a folder, with the checkpoints and the `.keras`
file it made; this process builds the same networks with the same weights
(or loads the same files) and must give the same logits, within 1e-5 of
the largest. The cases: every VGG (their adaptive pool was NaN on JAX),
one member of each of the reference's other families and of timm's three
stems, `antialias_model` on a keras.applications model, the APS and LPS
ResNet-18 (also invariant to a circular shift here), a PyTorch checkpoint
and a safetensors file loaded through `weights=`, and a `.keras` file
saved on TensorFlow.
"""

import fcntl
import importlib.util
import json
import os
from pathlib import Path

import keras
import numpy as np
import pytest

from tests import _backends
from tests.conftest import run_tensorflow_script

pytestmark = [
    pytest.mark.skipif(
        keras.backend.backend() == "tensorflow",
        reason="compares another backend with TensorFlow: run it with "
        "KERAS_BACKEND=jax or KERAS_BACKEND=torch",
    ),
    pytest.mark.skipif(
        importlib.util.find_spec("tensorflow") is None,
        reason="TensorFlow, the reference backend, is not installed",
    ),
]

TOLERANCE = 1e-5

_SCRIPT = """
import json
import sys

try:
    import torch  # noqa: F401  (before TensorFlow, for the checkpoints)
except ImportError:
    pass
from tests import _backends

print("RESULT " + json.dumps(_backends.tensorflow_reference(sys.argv[1])))
"""


# Where CI keeps TensorFlow's folder between its JAX and PyTorch runs: the
# reference is made once (the same weights, files and logits serve both).
REFERENCE_ENV = "KERAS_BLURPOOL_BACKENDS_REFERENCE"


@pytest.fixture(scope="module")
def tensorflow(tmp_path_factory):
    """The folder of TensorFlow's logits and files, and its skip reasons."""
    shared = os.environ.get(REFERENCE_ENV)
    if shared:
        folder = Path(shared)
    else:
        # This run's temporary root, which pytest-xdist's workers share.
        root = tmp_path_factory.getbasetemp()
        if os.environ.get("PYTEST_XDIST_WORKER"):
            root = root.parent
        folder = root / "tensorflow-reference"
    done = folder / "result.json"
    folder.parent.mkdir(parents=True, exist_ok=True)
    # pytest-xdist workers share the folder: the first to take the lock
    # makes it, the others wait for it and read it.
    with open(folder.parent / f"{folder.name}.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if not done.is_file():
            folder.mkdir(exist_ok=True)
            result, _ = run_tensorflow_script(_SCRIPT, folder, timeout=1200)
            partial = folder / "result.json.part"
            partial.write_text(json.dumps(result))
            partial.replace(done)  # written last: the folder is complete
    return folder, json.loads(done.read_text())["skipped"]


def _reference(tensorflow, name):
    folder, skipped = tensorflow
    if name in skipped:
        pytest.skip(skipped[name])
    data = np.load(folder / f"{name}.npz")
    return folder, data["x"], data["y"]


def _assert_same(got, expected):
    assert got.shape == expected.shape
    assert np.isfinite(got).all(), f"{np.isnan(got).sum()} NaN logits"
    relative = np.abs(got - expected).max() / np.abs(expected).max()
    assert relative <= TOLERANCE, f"max |diff| / max |logit| = {relative:.3g}"


def _check(tensorflow, name):
    folder, x, expected = _reference(tensorflow, name)
    got = _backends.logits(_backends.build(name, folder), x)
    _assert_same(got, expected)
    keras.backend.clear_session()
    return got


@pytest.mark.parametrize("name", _backends.VGGS)
def test_every_vgg_equals_tensorflow(tensorflow, name):
    _check(tensorflow, name)


@pytest.mark.parametrize("name", _backends.FAMILIES)
def test_one_member_of_every_family_equals_tensorflow(tensorflow, name):
    _check(tensorflow, name)


def test_antialias_model_on_keras_applications_equals_tensorflow(tensorflow):
    _check(tensorflow, "antialias_model")


@pytest.mark.parametrize("antialias", ["aps", "lps"])
def test_polyphase_resnet18_is_invariant_and_equals_tensorflow(tensorflow, antialias):
    got = _check(tensorflow, f"ResNet18_{antialias}")
    # The batch is an image and its circular shift by _backends.SHIFT.
    _assert_same(got[1:], got[:1])


@pytest.mark.parametrize("file_name", _backends.CHECKPOINTS)
def test_checkpoint_loads_as_on_tensorflow(tensorflow, file_name):
    _check(tensorflow, file_name)


def test_keras_file_saved_on_tensorflow_loads(tensorflow):
    folder, x, expected = _reference(tensorflow, "ResNet18")
    model = keras.saving.load_model(folder / _backends.KERAS_FILE)
    _assert_same(_backends.logits(model, x), expected)

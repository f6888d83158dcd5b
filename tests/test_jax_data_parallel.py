"""model.fit over JAX devices (keras.distribution.DataParallel) equals one device.

XLA_FLAGS must be set before JAX is imported, so the training runs in a
JAX subprocess with two host CPU devices: a zoo ResNet-18 trained for 2
epochs on one device (no distribution) and, from the same weights on the same global
batches, over both devices. Loss and every weight, BatchNorm's moving
statistics included, agree: the batch is sharded, and XLA computes
BatchNorm's batch statistics over the global batch, so no callback is
needed (docs/training.md, "model.fit on JAX devices and TPUs").
"""

import importlib.util
import json
import os
import subprocess
import sys
import textwrap

import numpy as np
import pytest

from tests.conftest import REPO

_SCRIPT = """
import contextlib
import json

import jax
import keras
import numpy as np

from keras_blurpool import applications

devices = jax.devices("cpu")
assert len(devices) == 2, devices
rng = np.random.default_rng(0)
x = rng.uniform(0, 1, (32, 48, 48, 3)).astype("float32")
y = rng.integers(0, 10, 32)


def train(distribution, initial=None):
    keras.utils.set_random_seed(0)
    scope = distribution.scope() if distribution else contextlib.nullcontext()
    with scope:
        model = applications.ResNet18(
            input_shape=(48, 48, 3), classes=10, classifier_activation=None)
        if initial is not None:
            model.set_weights(initial)
        start = [np.array(w) for w in model.get_weights()]
        model.compile(
            keras.optimizers.SGD(0.05, momentum=0.9),
            keras.losses.SparseCategoricalCrossentropy(from_logits=True))
        history = model.fit(x, y, batch_size=16, epochs=2, shuffle=False, verbose=0)
    placed = {len(w.value.sharding.device_set) for w in model.weights}
    moved = max(float(np.abs(a - b).max())
                for a, b in zip(start, model.get_weights()))
    return model, history.history["loss"], placed, start, moved


one, loss_one, placed_one, initial, moved = train(None)  # Keras's default: one device
two, loss_two, placed_two, _, _ = train(
    keras.distribution.DataParallel(devices=devices), initial)
weights = max(
    float(np.abs(a - b).max() / max(np.abs(a).max(), 1e-12))
    for a, b in zip(one.get_weights(), two.get_weights()))
statistics = max(
    float(np.abs(np.array(a) - np.array(b)).max())
    for a, b in zip(one.non_trainable_weights, two.non_trainable_weights))
print("RESULT " + json.dumps({
    "loss_one": loss_one, "loss_two": loss_two, "weights": weights,
    "statistics": statistics, "moved": moved,
    "placed_one": sorted(placed_one), "placed_two": sorted(placed_two)}))
"""


@pytest.mark.skipif(
    importlib.util.find_spec("jax") is None, reason="JAX is not installed"
)
def test_data_parallel_fit_over_two_devices_equals_one_device():
    env = dict(os.environ, KERAS_BACKEND="jax", TF_CPP_MIN_LOG_LEVEL="2",
               XLA_FLAGS="--xla_force_host_platform_device_count=2",
               JAX_PLATFORMS="cpu")
    env["PYTHONPATH"] = REPO + os.pathsep + env.get("PYTHONPATH", "")
    completed = subprocess.run(
        [sys.executable, "-c", textwrap.dedent(_SCRIPT)], cwd=REPO, env=env,
        capture_output=True, text=True, timeout=900,
    )
    output = completed.stdout + completed.stderr
    assert completed.returncode == 0, output
    result = json.loads(completed.stdout.split("RESULT ")[-1])
    # Every variable lives on one device, then on both (replicated).
    assert result["placed_one"] == [1] and result["placed_two"] == [2], result
    assert result["moved"] > 1e-3, "training did not change the weights"
    np.testing.assert_allclose(result["loss_two"], result["loss_one"], rtol=1e-5)
    assert result["weights"] <= 1e-5, result
    # BatchNorm's moving statistics: global batch statistics on both.
    assert result["statistics"] <= 1e-5, result

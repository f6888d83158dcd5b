"""model.fit over JAX devices (keras.distribution.DataParallel) equals one device.

XLA_FLAGS must be set before JAX is imported, so the training runs in a
JAX subprocess with two host CPU devices: a zoo ResNet-18 trained for 2
epochs on one device (no distribution) and, from the same weights on the
same global batches, over both devices. Loss and every weight,
BatchNorm's moving statistics included, agree to float32 rounding: the
batch is sharded and XLA computes BatchNorm's batch statistics over the
global batch, so no callback is needed (docs/training.md, "model.fit on
JAX devices and TPUs").
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
loss = keras.losses.SparseCategoricalCrossentropy(from_logits=True)


def build(initial=None):
    keras.utils.set_random_seed(0)
    model = applications.ResNet18(
        input_shape=(48, 48, 3), classes=10, classifier_activation=None)
    if initial is not None:
        model.set_weights(initial)
    return model


def train(distribution, initial=None, order=None):
    scope = distribution.scope() if distribution else contextlib.nullcontext()
    order = np.arange(len(x)) if order is None else order
    with scope:
        model = build(initial)
        model.compile(keras.optimizers.SGD(0.01, momentum=0.9), loss)
        history = model.fit(x[order], y[order], batch_size=16, epochs=2,
                            shuffle=False, verbose=0)
    return model, history.history["loss"]


def norm(arrays):
    return float(np.sqrt(sum(np.sum(np.square(a)) for a in arrays)))


def values(variables):
    return [np.array(v.value) for v in variables]


# One device: Keras's default, no distribution.
one, loss_one = train(None)
initial = build().get_weights()
# Two devices, from the same weights: DataParallel shards each batch.
data_parallel = keras.distribution.DataParallel(devices=devices)
two, loss_two = train(data_parallel, initial)
placed = sorted({len(v.value.sharding.device_set) for v in two.weights})

# The rounding control: one device again, each batch's images in reverse
# order (the same batches, the same statistics, other rounding).
reverse = np.concatenate([np.arange(16)[::-1], 16 + np.arange(16)[::-1]])
control, _ = train(None, initial, reverse)

start = values(build(initial).trainable_weights)
w1 = values(one.trainable_weights)
moved = norm([a - s for a, s in zip(w1, start)])


def distance(model):
    # Trained weights' distance from one device's, over how far they moved.
    return norm([b - a for a, b in zip(w1, values(model.trainable_weights))]) / moved


def statistics_distance(model):
    return max(float(np.abs(a - b).max()) for a, b in zip(
        values(one.non_trainable_weights), values(model.non_trainable_weights)))


weights, control_weights = distance(two), distance(control)
statistics = statistics_distance(two)
control_statistics = statistics_distance(control)

# BatchNorm in training mode on the sharded batch against the whole batch
# on one device, and against statistics of each device's half alone.
model = build(initial)
batch, labels = x[:16], y[:16]
whole = float(loss(labels, model(batch, training=True)))
halves = float(np.mean([loss(labels[:8], model(batch[:8], training=True)),
                        loss(labels[8:], model(batch[8:], training=True))]))
with data_parallel.scope():
    model = build(initial)
    sharded = jax.device_put(batch, data_parallel.get_data_layout(batch.shape).backend_layout)
    sharded_loss = float(loss(labels, jax.jit(lambda v: model(v, training=True))(sharded)))
print("RESULT " + json.dumps({
    "loss_one": loss_one, "loss_two": loss_two, "moved": moved,
    "weights": weights, "control_weights": control_weights,
    "statistics": statistics, "control_statistics": control_statistics,
    "placed": placed,
    "data_devices": len(sharded.sharding.device_set),
    "whole": whole, "halves": halves, "sharded": sharded_loss}))
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
    # The variables are replicated on both devices, the batch split.
    assert result["placed"] == [2] and result["data_devices"] == 2, result
    np.testing.assert_allclose(result["loss_two"], result["loss_one"], rtol=1e-5)
    # Trained weights and BatchNorm's moving statistics: no farther from
    # one device's than float32 rounding puts them (the control: the same
    # batches on one device, their images in another order; 4e-4 of the
    # distance training moved the weights when measured), and close.
    assert result["moved"] > 0.1, result
    assert result["weights"] <= 3 * result["control_weights"] + 1e-5, result
    assert result["weights"] <= 1e-3, result
    assert result["statistics"] <= 3 * result["control_statistics"] + 1e-6, result
    # BatchNorm statistics are the global batch's: training-mode loss on the
    # sharded batch equals the whole batch's on one device, far closer than
    # per-device statistics (each half normalised alone) would be.
    gap = abs(result["halves"] - result["whole"])
    assert abs(result["sharded"] - result["whole"]) <= 1e-5 * abs(result["whole"]), result
    assert gap > 100 * abs(result["sharded"] - result["whole"]) and gap > 1e-3, result

"""SyncBatchNormStatistics: model.fit under MirroredStrategy, replicas agree.

Splitting the CPU into 2 logical devices must happen before TensorFlow
initialises, so the strategy runs in a subprocess; so do fits one after
the other (the collective runtime's state lasts as long as the process)
and MultiWorkerMirroredStrategy's workers.
"""

import json
import socket
import subprocess
import sys
import textwrap

import keras
import numpy as np
import pytest

from keras_blurpool import callbacks
from tests.conftest import REPO
from tests.conftest import run_tensorflow_script
from tests.conftest import tensorflow_subprocess_env

_FIT = """
    import json, sys, tempfile
    import numpy as np, tensorflow as tf
    from recipes import strategy as strategy_lib
    strategy_lib.split_cpu(2)
    import keras
    import keras_blurpool
    from keras_blurpool.callbacks import SyncBatchNormStatistics

    strategy = tf.distribute.MirroredStrategy(["/cpu:0", "/cpu:1"])
    rng = np.random.default_rng(0)
    # The two replicas' halves of each batch differ in scale, so their
    # batch statistics (and unsynchronised moving statistics) differ.
    x = rng.standard_normal((32, 16, 16, 3)).astype("float32")
    x[4::8] *= 3.0; x[5::8] *= 3.0; x[6::8] *= 3.0; x[7::8] *= 3.0
    y = rng.integers(0, 3, 32)
    result = {}
    for mode in ("callback", "none"):
        keras.utils.set_random_seed(0)
        with strategy.scope():
            inner = keras.Sequential([
                keras.Input((16, 16, 4)),
                keras.layers.BatchNormalization(name="nested_bn"),
            ], name="nested")
            model = keras.Sequential([
                keras.Input((16, 16, 3)),
                keras.layers.Conv2D(4, 3, padding="same", use_bias=False),
                inner,
                keras.layers.ReLU(),
                keras_blurpool.BlurPool2D(4),
                keras.layers.Conv2D(6, 3, use_bias=False),
                keras.layers.BatchNormalization(),
                keras.layers.GlobalAveragePooling2D(),
                keras.layers.Dense(3),
            ])
            model.compile(
                keras.optimizers.SGD(0.1),
                keras.losses.SparseCategoricalCrossentropy(from_logits=True),
                # steps_per_execution > 1 fails under MirroredStrategy in
                # Keras 3.15 / TF 2.21 for any model (docs/training.md).
                jit_compile=False)
        model.fit(x, y, batch_size=8, epochs=2, shuffle=False, verbose=0,
                  callbacks=[SyncBatchNormStatistics()] if mode == "callback"
                  else [])
        stats = keras_blurpool.callbacks.batch_norm_statistics(model)
        gap = 0.0
        for v in stats:
            a, b = strategy.experimental_local_results(v.value)
            gap = max(gap, float(np.max(np.abs(a.numpy() - b.numpy()))))
        in_strategy = model.predict(x, batch_size=8, verbose=0)
        path = tempfile.mkdtemp() + "/m.keras"
        model.save(path)
        saved = keras.models.load_model(path).predict(x, batch_size=8, verbose=0)
        result[mode] = {"variables": len(stats), "gap": gap,
                        "predict_diff": float(np.max(np.abs(in_strategy - saved)))}
    print("RESULT", json.dumps(result))
"""


@pytest.mark.skipif(keras.backend.backend() != "tensorflow",
                    reason="tf.distribute strategies are TensorFlow's")
def test_fit_under_mirrored_strategy_keeps_replicas_identical():
    result, _ = run_tensorflow_script(_FIT)
    synced, drifted = result["callback"], result["none"]
    # Both BatchNorms, the nested one included: 2 x (mean, variance).
    assert synced["variables"] == drifted["variables"] == 4
    assert synced["gap"] == 0.0, result
    assert synced["predict_diff"] <= 1e-5, result
    # Without the callback the replicas drift and disagree (upstream Keras).
    assert drifted["gap"] > 1e-3, result
    assert drifted["predict_diff"] > 1e-4, result


# Fits one after the other in one process, each under a MirroredStrategy
# object of its own (as a notebook cell, a sweep or a k-fold loop that
# builds one per run does). Every such object numbers its collectives
# alike (group 1, instance keys from 100) and the runtime remembers each
# instance's shape, so the callback's all-reduce must not take keys from
# that sequence. A spec names one fit: "plain", "callback", "sync"
# (BatchNormalization(synchronized=True), what `synchronized_batch_norm=True`
# builds), "extra" (one more, parameter-free, BatchNormalization: the
# gradients keep their shape, the statistics do not).
_SEQUENCE = """
    import json, sys
    import numpy as np, tensorflow as tf
    from recipes.strategy import split_cpu
    split_cpu(2)
    import keras
    from keras_blurpool.callbacks import (SyncBatchNormStatistics,
                                          batch_norm_statistics)

    rng = np.random.default_rng(0)
    # Replica 1's half of each batch of 8 is shifted: the statistics differ.
    x = rng.standard_normal((16, 8, 8, 3)).astype("float32")
    x[4:8] += 1.0; x[12:16] += 1.0
    y = rng.integers(0, 3, 16)
    result = []
    for spec in sys.argv[1:]:
        strategy = tf.distribute.MirroredStrategy(["/cpu:0", "/cpu:1"])
        keras.utils.set_random_seed(0)
        with strategy.scope():
            extra = ([keras.layers.BatchNormalization(center=False, scale=False)]
                     if "extra" in spec else [])
            model = keras.Sequential([
                keras.Input((8, 8, 3)),
                keras.layers.Conv2D(4, 3, use_bias=False),
                keras.layers.BatchNormalization(synchronized="sync" in spec),
                *extra,
                keras.layers.GlobalAveragePooling2D(),
                keras.layers.Dense(3)])
            model.compile(
                keras.optimizers.SGD(0.1),
                keras.losses.SparseCategoricalCrossentropy(from_logits=True),
                jit_compile=False)
        model.fit(x, y, batch_size=8, epochs=1, shuffle=False, verbose=0,
                  callbacks=[SyncBatchNormStatistics()] if "callback" in spec
                  else [])
        gap = moved = 0.0
        # Moving means start at 0, variances at 1; alternating in the list.
        for index, variable in enumerate(batch_norm_statistics(model)):
            first, second = (np.asarray(value) for value in
                             strategy.experimental_local_results(variable.value))
            gap = max(gap, float(np.max(np.abs(first - second))))
            moved = max(moved, float(np.max(np.abs(first - index % 2))))
        result.append({"spec": spec, "gap": gap, "moved": moved})
    print("RESULT", json.dumps(result))
"""


@pytest.mark.skipif(keras.backend.backend() != "tensorflow",
                    reason="tf.distribute strategies are TensorFlow's")
@pytest.mark.parametrize("specs", [
    ("plain", "callback"),
    ("callback", "plain"),
    ("callback", "callback+extra"),
    ("sync", "sync+callback", "sync"),
], ids=["plain_then_callback", "callback_then_plain", "callback_then_callback",
        "synchronized_with_and_without_callback"])
def test_fits_one_after_the_other_each_under_its_own_strategy(specs):
    result, output = run_tensorflow_script(_SEQUENCE, *specs, timeout=240)
    assert [fit["spec"] for fit in result] == list(specs), output
    for fit in result:
        # Training moved the statistics: a zero gap is not vacuous.
        assert fit["moved"] > 1e-3, result
        if "callback" in fit["spec"] or "sync" in fit["spec"]:
            assert fit["gap"] == 0.0, result
        else:
            assert fit["gap"] > 1e-3, result


# model.fit fails under MultiWorkerMirroredStrategy with Keras 3.15 and
# TensorFlow 2.21 (keras-team/keras#20585, docs/training.md), so each
# worker drives the callback's hooks itself: worker i sets its moving
# statistics to i + 1 (and i + 10), then each batch end must leave the
# mean over the 2 workers on both.
_WORKER = """
    import json, sys
    import numpy as np, tensorflow as tf
    strategy = tf.distribute.MultiWorkerMirroredStrategy()
    import keras
    from keras_blurpool.callbacks import (SyncBatchNormStatistics,
                                          batch_norm_statistics)

    index = int(sys.argv[1])
    with strategy.scope():
        model = keras.Sequential([keras.Input((4,)),
                                  keras.layers.BatchNormalization(),
                                  keras.layers.Dense(2)])
    statistics = batch_norm_statistics(model)
    callback = SyncBatchNormStatistics()
    callback.set_model(model)
    callback.on_train_begin()
    seen = []
    for batch, offset in enumerate((1.0, 10.0)):
        for variable in statistics:
            variable.assign(np.full(variable.shape, index + offset, "float32"))
        callback.on_train_batch_end(batch)
        seen.append([np.asarray(value).tolist() for variable in statistics
                     for value in strategy.experimental_local_results(
                         variable.value)])
    print("RESULT", json.dumps({"replicas": strategy.num_replicas_in_sync,
                                "seen": seen}))
"""


@pytest.mark.skipif(keras.backend.backend() != "tensorflow",
                    reason="tf.distribute strategies are TensorFlow's")
def test_multi_worker_two_processes_average_across_workers():
    sockets = [socket.socket() for _ in range(2)]
    for server in sockets:
        server.bind(("127.0.0.1", 0))
    ports = [server.getsockname()[1] for server in sockets]
    for server in sockets:
        server.close()
    cluster = {"worker": [f"127.0.0.1:{port}" for port in ports]}
    processes = []
    for index in range(2):
        env = tensorflow_subprocess_env()
        env["TF_CONFIG"] = json.dumps(
            {"cluster": cluster, "task": {"type": "worker", "index": index}})
        processes.append(subprocess.Popen(
            [sys.executable, "-c", textwrap.dedent(_WORKER), str(index)],
            cwd=REPO, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
            text=True))
    outputs = []
    try:
        for process in processes:
            outputs.append(process.communicate(timeout=180)[0])
    finally:
        for process in processes:
            if process.poll() is None:
                process.kill()
    for process, output in zip(processes, outputs):
        assert process.returncode == 0, output
    for output in outputs:
        result = json.loads(output.split("RESULT ")[-1])
        assert result["replicas"] == 2, output
        # Means of 1 and 2, then of 10 and 11: the moving mean and variance
        # (4 channels each) of the worker's one replica.
        for seen, expected in zip(result["seen"], (1.5, 10.5)):
            assert np.array(seen).shape == (2, 4), output
            np.testing.assert_array_equal(np.array(seen), expected)


def test_statistics_of_nested_batch_norms_each_once():
    inner = keras.Sequential([keras.Input((4,)),
                              keras.layers.BatchNormalization()])
    inputs = keras.Input((4,))
    x = inner(inputs)
    x = inner(x)  # shared: its variables count once
    x = keras.layers.BatchNormalization()(x)
    model = keras.Model(inputs, keras.layers.Dense(2)(x))
    stats = callbacks.batch_norm_statistics(model)
    assert len(stats) == 4
    assert {id(v) for v in stats} == {
        id(v) for layer in (inner.layers[0], model.layers[-2])
        for v in (layer.moving_mean, layer.moving_variance)}


def test_callback_is_a_no_op_without_a_strategy():
    model = keras.Sequential([keras.Input((4,)),
                              keras.layers.BatchNormalization(),
                              keras.layers.Dense(2)])
    model.compile("sgd", "mse")
    x = np.random.default_rng(0).standard_normal((8, 4)).astype("float32")
    history = model.fit(x, np.zeros((8, 2)), epochs=1, verbose=0,
                        callbacks=[callbacks.SyncBatchNormStatistics()])
    assert np.isfinite(history.history["loss"][0])

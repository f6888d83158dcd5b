"""SyncBatchNormStatistics: model.fit under MirroredStrategy, replicas agree.

Splitting the CPU into 2 logical devices must happen before TensorFlow
initialises, so the strategy runs in a subprocess.
"""


import keras
import numpy as np
import pytest

from keras_blurpool import callbacks
from tests.conftest import run_tensorflow_script

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

"""`synchronized_batch_norm`: cross-replica BatchNorm in every builder.

In-process tests build small models on one device. The MirroredStrategy
test runs in a subprocess: splitting the CPU into 2 logical devices must
happen before TensorFlow initialises its devices.
"""

import json

import keras
import pytest

from keras_blurpool import applications
from tests.conftest import run_tensorflow_script

# One builder per family, small: (builder, kwargs). The VGG and AlexNet
# classifiers (4096-wide Dense layers) are left out to keep this fast.
_FAMILIES = {
    "ResNet18": (applications.ResNet18, {"input_shape": (64, 64, 3)}),
    "VGG11BN": (
        applications.VGG11BN,
        {"include_top": False, "pooling": "avg", "input_shape": (64, 64, 3)},
    ),
    "DenseNet121": (applications.DenseNet121, {"input_shape": (64, 64, 3)}),
    "MobileNetV2": (applications.MobileNetV2, {"input_shape": (64, 64, 3)}),
    "AlexNet": (
        applications.AlexNet,
        {"include_top": False, "pooling": "avg", "input_shape": (128, 128, 3)},
    ),
}
_HAS_BN = {"ResNet18", "VGG11BN", "DenseNet121", "MobileNetV2"}


def _build(family, **kwargs):
    builder, small = _FAMILIES[family]
    return builder(weights=None, classes=10, **small, **kwargs)


def _batch_norms(model):
    return [
        layer
        for layer in model._flatten_layers(include_self=False)
        if isinstance(layer, keras.layers.BatchNormalization)
    ]


def _skip_unless_tensorflow():
    if keras.backend.backend() != "tensorflow":
        pytest.skip(
            "BatchNormalization(synchronized=True) exists on the TensorFlow "
            f"backend only; this run uses {keras.backend.backend()!r}"
        )


@pytest.mark.parametrize("family", sorted(_FAMILIES))
def test_default_is_not_synchronized(family):
    batch_norms = _batch_norms(_build(family))
    assert bool(batch_norms) == (family in _HAS_BN)
    assert not any(layer.synchronized for layer in batch_norms)


@pytest.mark.parametrize("family", sorted(_FAMILIES))
def test_synchronized_batch_norm_true(family):
    _skip_unless_tensorflow()
    plain = _build(family)
    model = _build(family, synchronized_batch_norm=True)
    batch_norms = _batch_norms(model)
    assert bool(batch_norms) == (family in _HAS_BN)
    assert all(layer.synchronized is True for layer in batch_norms)
    # Only the training computation changes: same weights, same layers
    # (but the input's, which Keras numbers).
    assert model.count_params() == plain.count_params()
    assert [layer.name for layer in model.layers[1:]] == [
        layer.name for layer in plain.layers[1:]
    ]
    # The flag is part of the config, so it survives saving.
    clone = keras.Model.from_config(model.get_config())
    cloned = _batch_norms(clone)
    assert len(cloned) == len(batch_norms)
    assert all(layer.synchronized is True for layer in cloned)
    from_json = keras.models.model_from_json(model.to_json())
    assert all(layer.synchronized is True for layer in _batch_norms(from_json))
    assert clone.count_params() == plain.count_params()


@pytest.mark.parametrize("value", ["yes", 1, None, 1.0])
@pytest.mark.parametrize("family", ["ResNet18", "AlexNet"])
def test_bad_values(family, value):
    with pytest.raises(ValueError) as info:
        _build(family, synchronized_batch_norm=value)
    message = str(info.value)
    assert "`synchronized_batch_norm` must be True or False" in message
    assert f"synchronized_batch_norm={value!r}" in message


def test_other_backends_are_a_clear_error(monkeypatch):
    monkeypatch.setattr(keras.backend, "backend", lambda: "jax")
    with pytest.raises(ValueError) as info:
        _build("ResNet18", synchronized_batch_norm=True)
    message = str(info.value)
    assert "synchronized=True" in message and "TensorFlow" in message
    assert "'jax'" in message and "keras.distribution" in message
    # False is fine on every backend.
    assert _build("ResNet18", synchronized_batch_norm=False)


def test_true_on_this_backend():
    if keras.backend.backend() == "tensorflow":
        assert _batch_norms(_build("ResNet18", synchronized_batch_norm=True))
        return
    with pytest.raises(ValueError, match="TensorFlow backend only"):
        _build("ResNet18", synchronized_batch_norm=True)


# Trains the same ResNet18 with and without the flag under MirroredStrategy
# over 2 logical CPUs, then measures how far the replicas' BatchNorm moving
# statistics are apart, and how far in-strategy predictions are from those
# of the model saved and reloaded outside the strategy (which holds the
# first replica's statistics).
_MIRRORED = """
    import json, sys
    import numpy as np
    import tensorflow as tf

    from recipes.strategy import split_cpu
    split_cpu(2)
    import keras
    from keras_blurpool.applications import ResNet18
    from keras_blurpool.callbacks import batch_norm_statistics

    out = sys.argv[1]
    strategy = tf.distribute.MirroredStrategy(["/cpu:0", "/cpu:1"])
    rng = np.random.default_rng(0)
    # 3 steps of global batch 8: replica 0 gets images 0-3 of each batch,
    # replica 1 images 4-7, shifted so that their statistics differ.
    x = rng.standard_normal((3, 8, 32, 32, 3)).astype("float32")
    x[:, 4:] += 1.0
    x = x.reshape(24, 32, 32, 3)
    y = rng.integers(0, 4, 24)


    def run(synchronized):
        keras.utils.set_random_seed(0)
        with strategy.scope():
            model = ResNet18(weights=None, input_shape=(32, 32, 3), classes=4,
                             filter_size=4, pad_type="zero",
                             synchronized_batch_norm=synchronized,
                             classifier_activation=None)
            model.compile(
                optimizer=keras.optimizers.SGD(0.01),
                loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True),
                jit_compile=False,
            )
        model.fit(x, y, batch_size=8, epochs=1, shuffle=False, verbose=0)
        batch_norms = [layer for layer in model._flatten_layers()
                       if isinstance(layer, keras.layers.BatchNormalization)]
        gap = moved = 0.0
        # Moving means start at 0, variances at 1; alternating in the list.
        for index, variable in enumerate(batch_norm_statistics(model)):
            first, second = (np.asarray(value) for value in
                             strategy.experimental_local_results(variable.value))
            gap = max(gap, float(np.max(np.abs(first - second))))
            moved = max(moved, float(np.max(np.abs(first - index % 2))))
        predicted = model.predict(x[:8], batch_size=8, verbose=0)
        path = f"{out}/synchronized_{synchronized}.keras"
        model.save(path)
        reloaded = keras.models.load_model(path)
        saved = reloaded.predict(x[:8], batch_size=8, verbose=0)
        return {
            "replicas": strategy.num_replicas_in_sync,
            "batch_norms": len(batch_norms),
            "all_synchronized": all(layer.synchronized for layer in batch_norms),
            "reloaded_synchronized": all(
                layer.synchronized for layer in reloaded._flatten_layers()
                if isinstance(layer, keras.layers.BatchNormalization)),
            "moved": moved,
            "replica_gap": gap,
            "predict_gap": float(np.max(np.abs(predicted - saved))),
        }


    print("RESULT", json.dumps({"synchronized": run(True), "local": run(False)}))
"""


def test_mirrored_replicas_share_the_moving_statistics(tmp_path):
    pytest.importorskip("tensorflow")
    result, output = run_tensorflow_script(_MIRRORED, tmp_path, timeout=240)
    print("replica gaps:", json.dumps(result))
    synchronized, local = result["synchronized"], result["local"]
    for run in (synchronized, local):
        assert run["replicas"] == 2, output
        assert run["batch_norms"] == 20, output
        # Training updated the statistics: a zero gap is not vacuous.
        assert run["moved"] > 1e-3, output
    assert synchronized["all_synchronized"] and synchronized["reloaded_synchronized"]
    assert not local["all_synchronized"]
    # With the flag the replicas hold the same statistics, so in-strategy
    # predictions equal those of the saved model...
    assert synchronized["replica_gap"] <= 1e-6, output
    assert synchronized["predict_gap"] <= 1e-5, output
    # ... and without it they do not: the same check fails.
    assert local["replica_gap"] > 1e-3, output

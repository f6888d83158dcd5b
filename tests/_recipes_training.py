"""Tiny models, in-memory input and configs for the tests of the trainer.

Shared by the tests of the trainer, the run directory and the strategies,
and imported by the subprocesses those tests start (`python -c`), so
`REPO` is on their `PYTHONPATH` (`make_env`).
"""

import os
import subprocess
import sys
import textwrap

import keras
import numpy as np
import tensorflow as tf

from recipes.config import TrainConfig

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def make_env():
    """The environment of a subprocess that imports `recipes` and `tests`."""
    env = dict(os.environ)
    env["PYTHONPATH"] = REPO + os.pathsep + env.get("PYTHONPATH", "")
    env.setdefault("KERAS_BACKEND", "tensorflow")
    env["TF_CPP_MIN_LOG_LEVEL"] = "2"
    env.pop("TF_CONFIG", None)
    return env


def run_python(code, *args, timeout=240, env=None):
    """Runs `code` (dedented) in a new Python; asserts success; its stdout."""
    result = subprocess.run(
        [sys.executable, "-c", textwrap.dedent(code), *args],
        cwd=REPO,
        env=env or make_env(),
        capture_output=True,
        text=True,
        timeout=timeout,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    return result.stdout


def dense_model(seed=0):
    """BatchNorm-free: its update does not depend on how a batch is split."""
    keras.utils.set_random_seed(seed)
    inputs = keras.Input((8, 8, 3))
    x = keras.layers.Conv2D(4, 3, activation="relu")(inputs)
    x = keras.layers.GlobalAveragePooling2D()(x)
    outputs = keras.layers.Dense(5)(x)
    return keras.Model(inputs, outputs)


def random_arrays(count=64, seed=0):
    """`count` random 8x8 RGB float32 images and int32 labels in 0-4."""
    rng = np.random.default_rng(seed)
    images = rng.standard_normal((count, 8, 8, 3)).astype("float32")
    labels = rng.integers(0, 5, count).astype("int32")
    return images, labels


def in_memory_input(images, labels, shuffle=True):
    """A `TrainInputFn` over arrays: sharded, shuffled by epoch, batched."""

    def train_input_fn(context, batch_size, epoch):
        dataset = tf.data.Dataset.from_tensor_slices((images, labels))
        dataset = dataset.shard(
            context.num_input_pipelines, context.input_pipeline_id
        )
        if shuffle:
            dataset = dataset.shuffle(
                len(labels), seed=epoch, reshuffle_each_iteration=False
            )
        return dataset.batch(batch_size, drop_remainder=True)

    return train_input_fn


def train_config(out_dir, **overrides):
    """A `TrainConfig` of 1 epoch of 2 steps of 8 images, quiet."""
    values = dict(
        out_dir=str(out_dir),
        epochs=1,
        steps_per_epoch=2,
        global_batch_size=8,
        lr=0.1,
        weight_decay=1e-2,
        checkpoint_every=0,
        verbose=0,
    )
    values.update(overrides)
    return TrainConfig(**values)


def weights_of(model):
    """The model's weights as numpy arrays."""
    return [np.array(w) for w in model.weights]

"""Tests of the training loop, `recipes/trainer.py`, in process.

One device and tiny models; the trainer under several replicas and
workers is `test_recipes_strategy.py`'s.
"""

import json
import os

import keras
import numpy as np
import pytest
import tensorflow as tf

from recipes.trainer import Trainer
from tests._recipes_training import dense_model
from tests._recipes_training import in_memory_input
from tests._recipes_training import random_arrays
from tests._recipes_training import train_config
from tests._recipes_training import weights_of


def test_accumulation_equals_a_batch_twice_as_large(tmp_path):
    images, labels = random_arrays()
    results = []
    for name, batch, accum in (("big", 16, 1), ("accumulated", 8, 2)):
        trainer = Trainer(
            train_config(tmp_path / name, global_batch_size=batch,
                         accum_steps=accum, steps_per_epoch=3),
            tf.distribute.OneDeviceStrategy("/cpu:0"),
            dense_model,
            in_memory_input(images, labels),
        )
        results.append(weights_of(trainer.fit().model))
    initial = weights_of(dense_model())
    for big, accumulated, start in zip(*results, initial):
        assert not np.allclose(big, start)
        np.testing.assert_allclose(accumulated, big, rtol=1e-5, atol=1e-7)


def test_resume_continues_exactly(tmp_path):
    """Stopped mid-epoch and resumed == never stopped (data, momentum, lr)."""
    images, labels = random_arrays()
    strategy = tf.distribute.OneDeviceStrategy("/cpu:0")
    overrides = dict(epochs=2, steps_per_epoch=3, lr_step_epochs=1,
                     checkpoint_every=2)

    def trainer(name):
        return Trainer(train_config(tmp_path / name, **overrides), strategy,
                       dense_model, in_memory_input(images, labels))

    straight = trainer("straight").fit()
    first = trainer("resumed").fit(stop_at_step=4)
    assert first.step == 4
    again = trainer("resumed").fit()
    assert again.resumed_from == 4 and again.step == 6
    for a, b in zip(weights_of(straight.model), weights_of(again.model)):
        np.testing.assert_allclose(a, b, rtol=1e-6, atol=1e-7)
    assert os.path.exists(tmp_path / "resumed" / "final.keras")
    # The schedule went on from the restored step: lr of epoch 2 = lr / 10.
    assert again.history[-1]["lr"] == pytest.approx(0.01)


def test_half_written_checkpoint_is_never_picked(tmp_path):
    """What a crash mid-save leaves behind does not replace the last save.

    TensorFlow writes a checkpoint's files into `<prefix>_temp/` and
    renames them when complete; CheckpointManager rewrites the `checkpoint`
    state file (temp file + rename) only after that. A crash leaves at
    worst an orphaned temp folder or unreferenced files, never a state file
    naming an incomplete checkpoint.
    """
    images, labels = random_arrays()
    strategy = tf.distribute.OneDeviceStrategy("/cpu:0")
    config = train_config(tmp_path, epochs=1, steps_per_epoch=2)
    Trainer(config, strategy, dense_model, in_memory_input(images, labels)).fit()
    directory = tmp_path / "checkpoints"
    assert tf.train.latest_checkpoint(str(directory)).endswith("ckpt-2")
    # A later save killed at each stage: data in the temp folder; files
    # renamed but truncated; state file being rewritten (its temp copy).
    (directory / "ckpt-3_temp").mkdir()
    (directory / "ckpt-3_temp" / "part-00000-of-00001.data-00000-of-00001").write_bytes(b"\0" * 10)
    (directory / "ckpt-3.index").write_bytes(b"garbage")
    (directory / "ckpt-3.data-00000-of-00001").write_bytes(b"\0" * 3)
    (directory / "checkpoint.tmp0123").write_text('model_checkpoint_path: "ckpt-3"')
    assert tf.train.latest_checkpoint(str(directory)).endswith("ckpt-2")
    # More epochs of a step schedule extend the run, recorded in run.json.
    more = train_config(tmp_path, epochs=2, steps_per_epoch=2)
    result = Trainer(more, strategy, dense_model,
                     in_memory_input(images, labels)).fit()
    assert result.resumed_from == 2 and result.step == 4
    assert tf.train.latest_checkpoint(str(directory)).endswith("ckpt-4")
    run = json.loads((tmp_path / "run.json").read_text())
    assert run["epochs"] == 2
    assert run["resumes"] == [{"checkpoint": "ckpt-2", "epochs": [1, 2],
                               "schedule_epochs": [1, 2]}]


def test_resume_past_one_pass_over_the_data(tmp_path):
    """More steps per epoch than one pass: resumes mid-pass, exactly."""
    images, labels = random_arrays(count=24)  # 3 batches of 8 per pass
    strategy = tf.distribute.OneDeviceStrategy("/cpu:0")
    overrides = dict(steps_per_epoch=5, accum_steps=2, checkpoint_every=2)

    def trainer(name):
        return Trainer(train_config(tmp_path / name, **overrides), strategy,
                       dense_model, in_memory_input(images, labels))

    straight = trainer("straight").fit()
    assert trainer("resumed").fit(stop_at_step=2).step == 2
    # Skips 4 batches of a pass of 3 (it failed, skipping before repeating).
    again = trainer("resumed").fit()
    assert again.resumed_from == 2 and again.step == 5
    for a, b in zip(weights_of(straight.model), weights_of(again.model)):
        np.testing.assert_allclose(a, b, rtol=1e-6, atol=1e-7)


@pytest.mark.parametrize("steps_per_epoch, where", [(2, "loss of step 2"),
                                                    (1, "after step 1")])
def test_nan_loss_stops_and_saves_nothing(tmp_path, steps_per_epoch, where):
    images, labels = random_arrays()

    def eval_input_fn(batch_size):
        return tf.data.Dataset.from_tensor_slices((images, labels)).batch(batch_size)

    trainer = Trainer(
        train_config(tmp_path, lr=1e308, steps_per_epoch=steps_per_epoch),
        tf.distribute.OneDeviceStrategy("/cpu:0"),
        dense_model,
        in_memory_input(images, labels),
        eval_input_fn,
    )
    # Two steps: the first update makes the weights infinite, the second
    # loss NaN. One step: the weights are caught before best/final save.
    with pytest.raises(FloatingPointError, match=f"diverged.*{where}"):
        trainer.fit()
    assert sorted(os.listdir(tmp_path)) == ["logs", "run.json"]


def test_mixed_precision_scales_the_loss(tmp_path):
    images, labels = random_arrays()
    trainer = Trainer(
        train_config(tmp_path, mixed_precision=True),
        tf.distribute.OneDeviceStrategy("/cpu:0"),
        dense_model,
        in_memory_input(images, labels),
    )
    result = trainer.fit()
    assert keras.mixed_precision.global_policy().name == "float32"
    assert isinstance(trainer.optimizer, keras.optimizers.LossScaleOptimizer)
    assert result.model.layers[1].compute_dtype == "float16"
    assert result.step == 2
    assert all(np.isfinite(w).all() for w in weights_of(result.model))
    names = [name for name, _ in tf.train.list_variables(
        tf.train.latest_checkpoint(str(tmp_path / "checkpoints")))]
    assert any("dynamic_scale" in name for name in names)

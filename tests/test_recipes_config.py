"""Tests of the recipes and the schedule, `recipes/config.py`."""

import dataclasses

import numpy as np
import pytest

from recipes import config as config_lib


def test_recipes_follow_the_reference():
    resnet = config_lib.recipe_for("resnet50")
    assert (resnet.lr, resnet.epochs, resnet.schedule, resnet.weight_decay,
            resnet.batch_size, resnet.momentum) == (0.1, 90, "step", 1e-4, 256, 0.9)
    assert config_lib.recipe_for("alexnet").lr == 0.01
    assert config_lib.recipe_for("vgg16").lr == 0.01
    assert config_lib.recipe_for("vgg16_bn").lr == 0.05
    mobilenet = config_lib.recipe_for("mobilenet_v2")
    assert (mobilenet.lr, mobilenet.epochs, mobilenet.schedule,
            mobilenet.weight_decay) == (0.05, 150, "cosine", 4e-5)
    assert resnet.scaled_lr(512) == pytest.approx(0.2)
    assert resnet.scaled_lr(64) == pytest.approx(0.025)


def test_learning_rate_schedules():
    step = config_lib.LearningRate(lr=0.1, steps_per_epoch=10)
    rates = [float(step(s)) for s in (0, 299, 300, 599, 600, 899)]
    np.testing.assert_allclose(rates, [0.1, 0.1, 0.01, 0.01, 0.001, 0.001], rtol=1e-6)
    # Fine-tuning: the last 60 of the 90 epochs, i.e. lr/10 for 30 epochs.
    finetune = config_lib.LearningRate(
        lr=0.1, steps_per_epoch=10, schedule_epochs=90, epoch_offset=30
    )
    rates = [float(finetune(s)) for s in (0, 299, 300, 599)]
    np.testing.assert_allclose(rates, [0.01, 0.01, 0.001, 0.001], rtol=1e-6)
    cosine = config_lib.LearningRate(
        lr=0.05, steps_per_epoch=10, schedule="cosine", schedule_epochs=150
    )
    np.testing.assert_allclose(float(cosine(9)), 0.05, rtol=1e-6)
    np.testing.assert_allclose(float(cosine(750)), 0.025, rtol=1e-5)
    with pytest.raises(ValueError, match="schedule='linear'"):
        config_lib.LearningRate(lr=0.1, steps_per_epoch=1, schedule="linear")


# The settings that recipes/trainer.py's hand-written `_run_info` recorded
# in run.json, and refused to change on resume, before they were marked on
# TrainConfig: the markers must name exactly these.
HAND_LIST = {
    "global_batch_size", "accum_steps", "steps_per_epoch", "seed", "epochs",
    "lr", "momentum", "weight_decay", "schedule", "schedule_epochs",
    "epoch_offset", "lr_step_epochs", "lr_gamma", "mixed_precision",
}
# Free to change from one resume to the next (or, for run_info, checked
# key by key).
UNMARKED = {"out_dir", "checkpoint_every", "keep_checkpoints", "log_every",
            "verbose", "run_info", "overwrite"}


def test_resume_markers_derive_the_hand_written_list():
    fields = config_lib.resume_fields()
    assert set(fields) == HAND_LIST and len(fields) == len(HAND_LIST)
    assert config_lib.resume_fields(config_lib.EXTENDABLE) == (
        "epochs", "schedule_epochs")
    assert set(config_lib.resume_fields(config_lib.FIXED)) == HAND_LIST - {
        "epochs", "schedule_epochs"}
    # Every field is marked or deliberately left free: a new field must
    # choose.
    all_fields = dataclasses.fields(config_lib.TrainConfig)
    assert {field.name for field in all_fields} == HAND_LIST | UNMARKED
    for field in all_fields:
        marker = field.metadata.get(config_lib.RESUME)
        if field.name in UNMARKED:
            assert marker is None, field.name
        else:
            assert marker in (config_lib.FIXED, config_lib.EXTENDABLE), field.name
            assert field.metadata == {"resume": marker}
    with pytest.raises(
        ValueError,
        match="markers: 'fixd' is not a resume marker; expected 'fixed' or "
        "'extendable'",
    ):
        config_lib.resume_fields("fixd")


def _config(**kwargs):
    settings = dict(out_dir="run", epochs=90, steps_per_epoch=100,
                    global_batch_size=256, lr=0.1)
    return config_lib.TrainConfig(**{**settings, **kwargs})


def test_train_config_bounds_epochs_steps_and_seed():
    """Issue 30: each a ValueError naming the value, not a failure later."""
    # The largest allowed: 2**24 epochs, 2**63 - 1 steps, seed 2**32 - 1.
    _config(epochs=2**24, steps_per_epoch=1, seed=2**32 - 1)
    _config(epochs=1, steps_per_epoch=2**63 - 1)
    _config(epochs=60, epoch_offset=30, schedule_epochs=90)
    for kwargs, message in [
        (dict(epochs=2**24 + 1), r"at most 16777216 \(2\*\*24\) epochs"),
        (dict(epochs=10, epoch_offset=2**24 - 9), "epoch_offset=16777207"),
        (dict(epochs=1, schedule_epochs=2**24 + 1), "schedule_epochs=16777217"),
        (dict(epochs=2, steps_per_epoch=2**62),
         r"`epochs` x `steps_per_epoch` must be at most 2\*\*63 - 1"),
        (dict(seed=2**32), r"`seed` must be an int from 0 to 4294967295.*"
         r"Received: seed=4294967296"),
        (dict(seed=-1), "Received: seed=-1"),
        (dict(seed=1.5), "Received: seed=1.5"),
    ]:
        with pytest.raises(ValueError, match=message):
            _config(**kwargs)

"""Tests of the run directory and the resume policy, `recipes/run_dir.py`."""

import dataclasses
import json
import re
import shutil

import pytest
import tensorflow as tf

from recipes import config as config_lib
from recipes import run_dir
from recipes import train
from recipes.trainer import Trainer
from tests._recipes_training import dense_model
from tests._recipes_training import in_memory_input
from tests._recipes_training import random_arrays
from tests._recipes_training import train_config


@pytest.mark.parametrize(
    "change, message",
    [
        (dict(global_batch_size=4), "global_batch_size: 8 -> 4"),
        (dict(lr=0.2), "lr: 0.1 -> 0.2"),
        (dict(epochs=1), "epochs: 2 -> 1"),
        (dict(epochs=3, schedule="cosine"), "schedule: 'step' -> 'cosine'"),
        # Would die in TensorFlow restoring float32 state into float16.
        (dict(mixed_precision=True), "mixed_precision: False -> True"),
    ],
)
def test_resume_refuses_other_settings(tmp_path, change, message):
    images, labels = random_arrays()
    strategy = tf.distribute.OneDeviceStrategy("/cpu:0")
    Trainer(train_config(tmp_path, epochs=2), strategy, dense_model,
            in_memory_input(images, labels)).fit(stop_at_step=1)
    saved = (tmp_path / "run.json").read_text()
    other = train_config(tmp_path, **{"epochs": 2, **change})
    with pytest.raises(ValueError, match=re.escape(message) + ".*--overwrite"):
        Trainer(other, strategy, dense_model,
                in_memory_input(images, labels)).fit()
    assert (tmp_path / "run.json").read_text() == saved


def test_a_finished_run_is_not_overwritten(tmp_path):
    images, labels = random_arrays()
    strategy = tf.distribute.OneDeviceStrategy("/cpu:0")

    def fit(**overrides):
        return Trainer(train_config(tmp_path, **overrides), strategy, dense_model,
                       in_memory_input(images, labels)).fit()

    fit()
    final = (tmp_path / "final.keras").read_bytes()
    shutil.rmtree(tmp_path / "checkpoints")
    for overrides, what in ((dict(lr=0.2), "another run's run.json"),
                            ({}, "a run's final.keras")):
        with pytest.raises(ValueError, match=re.escape(what)
                           + ".*no checkpoint.*another --out-dir.*--overwrite"):
            fit(**overrides)
        assert (tmp_path / "final.keras").read_bytes() == final
    result = fit(lr=0.2, overwrite=True)
    assert result.resumed_from is None and result.step == 2
    assert json.loads((tmp_path / "run.json").read_text())["lr"] == 0.2
    # A checkpoint of the same settings still resumes with overwrite.
    assert fit(lr=0.2, overwrite=True).resumed_from == 2


def test_out_dir_that_is_a_file_is_refused_up_front(tmp_path, capsys):
    file = tmp_path / "file"
    file.write_text("")
    for out_dir in (file, file / "run"):
        with pytest.raises(SystemExit) as exit_info:
            train.main(["--arch", "demo", "--out-dir", str(out_dir)])
        assert exit_info.value.code == 2
        assert "is a file, not a directory" in capsys.readouterr().err
    trainer = Trainer(train_config(file), tf.distribute.OneDeviceStrategy("/cpu:0"),
                      dense_model, in_memory_input(*random_arrays()))
    with pytest.raises(ValueError, match="is a file, not a directory"):
        trainer.fit()


# The policy in isolation: a run.json and a checkpoint, then check_run_dir
# with one setting changed, for every marked and unmarked field.

_BASE = dict(epochs=2, run_info={"arch": "demo", "strategy": "OneDeviceStrategy"})
# A changed value for every field marked on TrainConfig; each is refused.
_MARKED_CHANGES = {
    "epochs": 1, "steps_per_epoch": 3, "global_batch_size": 4, "lr": 0.2,
    "accum_steps": 2, "momentum": 0.5, "weight_decay": 1e-3,
    "schedule": "cosine", "schedule_epochs": 5, "epoch_offset": 1,
    "lr_step_epochs": 10, "lr_gamma": 0.5, "mixed_precision": True, "seed": 1,
}
# A changed value for every unmarked field a rerun may change; accepted.
_UNMARKED_CHANGES = {
    "checkpoint_every": 7, "keep_checkpoints": 1, "log_every": 3, "verbose": 1,
}


def _checkpointed_run(tmp_path):
    """A run's run.json and checkpoint ckpt-1, as the chief leaves them."""
    config = train_config(tmp_path, **_BASE)
    assert run_dir.check_run_dir(config, 1, is_chief=True) is None
    manager = tf.train.CheckpointManager(
        tf.train.Checkpoint(step=tf.Variable(1)),
        run_dir.checkpoint_dir(config.out_dir),
        max_to_keep=1,
        checkpoint_name="ckpt",
    )
    manager.save()
    return config


def test_the_changes_cover_every_field():
    assert set(_MARKED_CHANGES) == set(config_lib.resume_fields())
    free = {field.name for field in dataclasses.fields(config_lib.TrainConfig)}
    free -= set(config_lib.resume_fields())
    # out_dir is where run.json is; run_info and overwrite have tests of
    # their own.
    assert set(_UNMARKED_CHANGES) == free - {"out_dir", "run_info", "overwrite"}


def test_run_info_holds_the_marked_fields_and_the_run_facts(tmp_path):
    config = train_config(tmp_path, **_BASE)
    info = run_dir.run_info(config, num_replicas=2)
    assert set(info) == {*config_lib.resume_fields(), "num_replicas", "arch",
                         "strategy"}
    assert info["schedule_epochs"] == 2 and info["num_replicas"] == 2
    assert not (tmp_path / "run.json").exists()
    # A fresh run writes it, as JSON reads it back.
    assert run_dir.check_run_dir(config, 2, is_chief=True) is None
    assert json.loads((tmp_path / "run.json").read_text()) == info


@pytest.mark.parametrize("name", sorted(_MARKED_CHANGES))
def test_a_changed_marked_setting_is_refused_on_resume(tmp_path, name):
    config = _checkpointed_run(tmp_path)
    saved = (tmp_path / "run.json").read_text()
    other = dataclasses.replace(config, **{name: _MARKED_CHANGES[name]})
    with pytest.raises(
        ValueError, match=rf"cannot resume with these \(.*\b{name}: .+ -> .+"
        r"--overwrite"
    ):
        run_dir.check_run_dir(other, 1, is_chief=True)
    assert (tmp_path / "run.json").read_text() == saved


@pytest.mark.parametrize("name", sorted(_UNMARKED_CHANGES))
def test_a_changed_unmarked_setting_resumes(tmp_path, name):
    config = _checkpointed_run(tmp_path)
    saved = (tmp_path / "run.json").read_text()
    other = dataclasses.replace(config, **{name: _UNMARKED_CHANGES[name]})
    printed = []
    latest = run_dir.check_run_dir(other, 1, is_chief=True, log=printed.append)
    assert latest.endswith("ckpt-1")
    # Nothing to record.
    assert printed == [] and (tmp_path / "run.json").read_text() == saved


def test_more_epochs_of_a_step_schedule_extend_the_run(tmp_path):
    config = _checkpointed_run(tmp_path)
    printed = []
    more = dataclasses.replace(config, epochs=3)
    latest = run_dir.check_run_dir(more, 1, is_chief=True, log=printed.append)
    assert latest.endswith("ckpt-1")
    assert printed == ["resuming with epochs: 2 -> 3; schedule_epochs: 2 -> 3"]
    run = json.loads((tmp_path / "run.json").read_text())
    assert (run["epochs"], run["schedule_epochs"]) == (3, 3)
    assert run["resumes"] == [
        {"checkpoint": "ckpt-1", "epochs": [2, 3], "schedule_epochs": [2, 3]}
    ]
    for change in (dict(schedule="cosine"), dict(epoch_offset=1)):
        with pytest.raises(ValueError, match="cannot resume with these"):
            run_dir.check_run_dir(dataclasses.replace(more, epochs=4, **change),
                                  1, is_chief=True)


def test_run_facts_are_fixed_but_the_strategy(tmp_path):
    config = _checkpointed_run(tmp_path)
    other_arch = dataclasses.replace(
        config, run_info={**config.run_info, "arch": "resnet18"})
    with pytest.raises(ValueError,
                       match=r"these \(arch: 'demo' -> 'resnet18'\).*--overwrite"):
        run_dir.check_run_dir(other_arch, 1, is_chief=True)
    printed = []
    moved = dataclasses.replace(
        config, run_info={**config.run_info, "strategy": "MirroredStrategy"})
    latest = run_dir.check_run_dir(moved, 2, is_chief=True, log=printed.append)
    assert latest.endswith("ckpt-1")
    assert printed == ["resuming with strategy: 'OneDeviceStrategy' -> "
                       "'MirroredStrategy'; num_replicas: 1 -> 2"]
    run = json.loads((tmp_path / "run.json").read_text())
    assert (run["strategy"], run["num_replicas"]) == ("MirroredStrategy", 2)
    assert run["resumes"] == [{"checkpoint": "ckpt-1",
                               "strategy": ["OneDeviceStrategy", "MirroredStrategy"],
                               "num_replicas": [1, 2]}]

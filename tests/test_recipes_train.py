"""The training recipe: models table, schedule, optimizer, trainer, CLI.

In-process tests use one device and tiny models. The distributed and
crash tests run in subprocesses: splitting the CPU into logical devices
and MultiWorkerMirroredStrategy must happen before TensorFlow initialises,
and `kill -9` needs a process of its own.
"""

import json
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import textwrap
import time

import keras
import numpy as np
import pytest
import tensorflow as tf

from recipes import config as config_lib
from recipes import models
from recipes import train
from recipes.optimizer import TorchSGD
from recipes.trainer import TrainConfig
from recipes.trainer import Trainer

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


# ----------------------------------------------------------------------
# Helpers


def _env():
    env = dict(os.environ)
    env["PYTHONPATH"] = REPO + os.pathsep + env.get("PYTHONPATH", "")
    env.setdefault("KERAS_BACKEND", "tensorflow")
    env["TF_CPP_MIN_LOG_LEVEL"] = "2"
    env.pop("TF_CONFIG", None)
    return env


def _run_python(code, *args, timeout=240, env=None):
    result = subprocess.run(
        [sys.executable, "-c", textwrap.dedent(code), *args],
        cwd=REPO,
        env=env or _env(),
        capture_output=True,
        text=True,
        timeout=timeout,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    return result.stdout


def _dense_model(seed=0):
    """BatchNorm-free: its update does not depend on how a batch is split."""
    keras.utils.set_random_seed(seed)
    inputs = keras.Input((8, 8, 3))
    x = keras.layers.Conv2D(4, 3, activation="relu")(inputs)
    x = keras.layers.GlobalAveragePooling2D()(x)
    outputs = keras.layers.Dense(5)(x)
    return keras.Model(inputs, outputs)


def _arrays(count=64, seed=0):
    rng = np.random.default_rng(seed)
    images = rng.standard_normal((count, 8, 8, 3)).astype("float32")
    labels = rng.integers(0, 5, count).astype("int32")
    return images, labels


def _in_memory_input(images, labels, shuffle=True):
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


def _config(out_dir, **overrides):
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


def _weights(model):
    return [np.array(w) for w in model.weights]


# ----------------------------------------------------------------------
# Models, recipes, schedule, optimizer


def test_architectures_table_and_unknown_arch():
    expected = {
        "alexnet", "resnet18", "resnet34", "resnet50", "resnet101",
        "resnet152", "resnext50_32x4d", "resnext101_32x8d",
        "wide_resnet50_2", "wide_resnet101_2", "densenet121",
        "densenet161", "densenet169", "densenet201", "mobilenet_v2", "demo",
    } | {f"vgg{d}{bn}" for d in (11, 13, 16, 19) for bn in ("", "_bn")} | {
        "resnetblur18", "resnetblur50", "resnetblur50d", "resnetblur101d",
        "resnetaa34d", "resnetaa50", "resnetaa50d", "resnetaa101d",
        "seresnetaa50d", "seresnextaa101d_32x8d", "seresnextaa201d_32x8d",
    }
    assert set(models.ARCHITECTURES) == expected
    assert set(config_lib.RECIPES) == expected
    with pytest.raises(ValueError, match="arch='resnet51'.*resnet50"):
        models.build_model("resnet51", 4)
    with pytest.raises(ValueError, match="filter_size=9"):
        models.build_model("demo", 9, num_classes=10, image_size=32)


def test_demo_cnn_twins_and_logits():
    plain = models.build_model("demo", None, num_classes=10, image_size=32)
    blurred = models.build_model("demo", 4, num_classes=10, image_size=32)
    assert not any("blur" in type(layer).__name__.lower() for layer in plain.layers)
    assert sum(
        type(layer).__name__ in ("BlurPool2D", "MaxBlurPool2D")
        for layer in blurred.layers
    ) == 3
    assert [w.path for w in plain.weights] == [w.path for w in blurred.weights]
    assert blurred.output_shape == (None, 10)
    # Logits, not probabilities.
    x = np.random.default_rng(0).standard_normal((2, 32, 32, 3)).astype("float32")
    out = np.asarray(blurred(x))
    assert not np.allclose(out.sum(-1), 1.0)
    zoo = models.build_model("resnet18", None, num_classes=3, image_size=None)
    assert zoo.layers[-1].activation is keras.activations.linear


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


def test_torch_sgd_equals_torch(reference):
    torch, _ = reference
    rng = np.random.default_rng(0)
    w0 = rng.standard_normal(6).astype("float32")
    grads = rng.standard_normal((5, 6)).astype("float32")
    rates = [0.1, 0.1, 0.01, 0.01, 0.001]  # a step of the schedule midway

    param = torch.nn.Parameter(torch.tensor(w0))
    torch_sgd = torch.optim.SGD([param], lr=0.1, momentum=0.9, weight_decay=1e-2)
    for lr, g in zip(rates, grads):
        torch_sgd.param_groups[0]["lr"] = lr
        param.grad = torch.tensor(g)
        torch_sgd.step()

    variable = keras.Variable(w0)
    lr = keras.Variable(0.1)
    ours = TorchSGD(learning_rate=lambda: lr.value, momentum=0.9, weight_decay=1e-2)
    for rate, g in zip(rates, grads):
        lr.assign(rate)
        ours.apply([tf.constant(g)], [variable])
    np.testing.assert_allclose(
        np.array(variable), param.detach().numpy(), rtol=1e-5, atol=1e-7
    )


# ----------------------------------------------------------------------
# The trainer, in process


def test_accumulation_equals_a_batch_twice_as_large(tmp_path):
    images, labels = _arrays()
    results = []
    for name, batch, accum in (("big", 16, 1), ("accumulated", 8, 2)):
        trainer = Trainer(
            _config(tmp_path / name, global_batch_size=batch, accum_steps=accum,
                    steps_per_epoch=3),
            tf.distribute.OneDeviceStrategy("/cpu:0"),
            _dense_model,
            _in_memory_input(images, labels),
        )
        results.append(_weights(trainer.fit().model))
    initial = _weights(_dense_model())
    for big, accumulated, start in zip(*results, initial):
        assert not np.allclose(big, start)
        np.testing.assert_allclose(accumulated, big, rtol=1e-5, atol=1e-7)


def test_resume_continues_exactly(tmp_path):
    """Stopped mid-epoch and resumed == never stopped (data, momentum, lr)."""
    images, labels = _arrays()
    strategy = tf.distribute.OneDeviceStrategy("/cpu:0")
    overrides = dict(epochs=2, steps_per_epoch=3, lr_step_epochs=1,
                     checkpoint_every=2)

    def trainer(name):
        return Trainer(_config(tmp_path / name, **overrides), strategy,
                       _dense_model, _in_memory_input(images, labels))

    straight = trainer("straight").fit()
    first = trainer("resumed").fit(stop_at_step=4)
    assert first.step == 4
    again = trainer("resumed").fit()
    assert again.resumed_from == 4 and again.step == 6
    for a, b in zip(_weights(straight.model), _weights(again.model)):
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
    images, labels = _arrays()
    strategy = tf.distribute.OneDeviceStrategy("/cpu:0")
    config = _config(tmp_path, epochs=1, steps_per_epoch=2)
    Trainer(config, strategy, _dense_model, _in_memory_input(images, labels)).fit()
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
    more = _config(tmp_path, epochs=2, steps_per_epoch=2)
    result = Trainer(more, strategy, _dense_model,
                     _in_memory_input(images, labels)).fit()
    assert result.resumed_from == 2 and result.step == 4
    assert tf.train.latest_checkpoint(str(directory)).endswith("ckpt-4")
    run = json.loads((tmp_path / "run.json").read_text())
    assert run["epochs"] == 2
    assert run["resumes"] == [{"checkpoint": "ckpt-2", "epochs": [1, 2],
                               "schedule_epochs": [1, 2]}]


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
    images, labels = _arrays()
    strategy = tf.distribute.OneDeviceStrategy("/cpu:0")
    Trainer(_config(tmp_path, epochs=2), strategy, _dense_model,
            _in_memory_input(images, labels)).fit(stop_at_step=1)
    saved = (tmp_path / "run.json").read_text()
    other = _config(tmp_path, **{"epochs": 2, **change})
    with pytest.raises(ValueError, match=re.escape(message) + ".*--overwrite"):
        Trainer(other, strategy, _dense_model,
                _in_memory_input(images, labels)).fit()
    assert (tmp_path / "run.json").read_text() == saved


def test_resume_past_one_pass_over_the_data(tmp_path):
    """More steps per epoch than one pass: resumes mid-pass, exactly."""
    images, labels = _arrays(count=24)  # 3 batches of 8 per pass
    strategy = tf.distribute.OneDeviceStrategy("/cpu:0")
    overrides = dict(steps_per_epoch=5, accum_steps=2, checkpoint_every=2)

    def trainer(name):
        return Trainer(_config(tmp_path / name, **overrides), strategy,
                       _dense_model, _in_memory_input(images, labels))

    straight = trainer("straight").fit()
    assert trainer("resumed").fit(stop_at_step=2).step == 2
    # Skips 4 batches of a pass of 3 (it failed, skipping before repeating).
    again = trainer("resumed").fit()
    assert again.resumed_from == 2 and again.step == 5
    for a, b in zip(_weights(straight.model), _weights(again.model)):
        np.testing.assert_allclose(a, b, rtol=1e-6, atol=1e-7)


def test_a_finished_run_is_not_overwritten(tmp_path):
    images, labels = _arrays()
    strategy = tf.distribute.OneDeviceStrategy("/cpu:0")

    def fit(**overrides):
        return Trainer(_config(tmp_path, **overrides), strategy, _dense_model,
                       _in_memory_input(images, labels)).fit()

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


@pytest.mark.parametrize("steps_per_epoch, where", [(2, "loss of step 2"),
                                                    (1, "after step 1")])
def test_nan_loss_stops_and_saves_nothing(tmp_path, steps_per_epoch, where):
    images, labels = _arrays()

    def eval_input_fn(batch_size):
        return tf.data.Dataset.from_tensor_slices((images, labels)).batch(batch_size)

    trainer = Trainer(
        _config(tmp_path, lr=1e308, steps_per_epoch=steps_per_epoch),
        tf.distribute.OneDeviceStrategy("/cpu:0"),
        _dense_model,
        _in_memory_input(images, labels),
        eval_input_fn,
    )
    # Two steps: the first update makes the weights infinite, the second
    # loss NaN. One step: the weights are caught before best/final save.
    with pytest.raises(FloatingPointError, match=f"diverged.*{where}"):
        trainer.fit()
    assert sorted(os.listdir(tmp_path)) == ["logs", "run.json"]


def test_out_dir_that_is_a_file_is_refused_up_front(tmp_path, capsys):
    file = tmp_path / "file"
    file.write_text("")
    for out_dir in (file, file / "run"):
        with pytest.raises(SystemExit) as exit_info:
            train.main(["--arch", "demo", "--out-dir", str(out_dir)])
        assert exit_info.value.code == 2
        assert "is a file, not a directory" in capsys.readouterr().err
    trainer = Trainer(_config(file), tf.distribute.OneDeviceStrategy("/cpu:0"),
                      _dense_model, _in_memory_input(*_arrays()))
    with pytest.raises(ValueError, match="is a file, not a directory"):
        trainer.fit()


def test_mixed_precision_scales_the_loss(tmp_path):
    images, labels = _arrays()
    trainer = Trainer(
        _config(tmp_path, mixed_precision=True),
        tf.distribute.OneDeviceStrategy("/cpu:0"),
        _dense_model,
        _in_memory_input(images, labels),
    )
    result = trainer.fit()
    assert keras.mixed_precision.global_policy().name == "float32"
    assert isinstance(trainer.optimizer, keras.optimizers.LossScaleOptimizer)
    assert result.model.layers[1].compute_dtype == "float16"
    assert result.step == 2
    assert all(np.isfinite(w).all() for w in _weights(result.model))
    names = [name for name, _ in tf.train.list_variables(
        tf.train.latest_checkpoint(str(tmp_path / "checkpoints")))]
    assert any("dynamic_scale" in name for name in names)


# ----------------------------------------------------------------------
@pytest.mark.parametrize("antialias", ["aps", "lps"])
def test_demo_cnn_polyphase_twin_is_circularly_invariant(antialias):
    keras.utils.set_random_seed(0)
    model = models.build_model("demo", 4, num_classes=10, image_size=32,
                               antialias=antialias)
    plain = models.build_model("demo", None, num_classes=10, image_size=32)
    assert model.name == f"demo_cnn_{antialias}4"
    kind = {"aps": "APSPool2D", "lps": "LPSPool2D"}[antialias]
    assert [type(layer).__name__ for layer in model.layers].count(kind) == 3
    # The same trainable convolutions as the plain CNN (LPS adds scorers).
    conv_paths = [w.path for w in plain.weights]
    assert all(path in [w.path for w in model.weights] for path in conv_paths)
    image = np.random.default_rng(0).uniform(0, 1, (32, 32, 3))
    batch = np.stack([np.roll(image, (a, b), axis=(0, 1))
                      for a in range(32) for b in range(32)]).astype("float32")
    logits = np.asarray(model.predict(batch, batch_size=256, verbose=0))
    assert np.abs(logits - logits[0]).max() <= 1e-5 * np.abs(logits[0]).max()
    with pytest.raises(ValueError, match="antialias='max'"):
        models.build_model("demo", 4, image_size=32, antialias="max")
    with pytest.raises(ValueError, match="BlurPool and zero padding only"):
        models.build_model("keras.MobileNetV2", 4, image_size=64,
                           antialias="aps")
    with pytest.raises(ValueError, match="zero padding only.*ResNet family"):
        models.build_model("vgg11", 4, image_size=64, padding="circular")
    zoo = models.build_model("resnet18", 2, num_classes=3, image_size=64,
                             antialias="aps", padding="circular")
    assert any(type(layer).__name__ == "CircularPadding2D"
               for layer in zoo.layers)


# The command line, in process


@pytest.mark.parametrize(
    "argv, message",
    [
        (["--arch", "resnet51"], "--arch: unknown architecture 'resnet51'"),
        (["--data", "/some/folder"], "--arch is required with --data"),
        (["--filter-size", "9"], "--filter-size: expected an int from 1 to 7"),
        (["--arch", "resnet18", "--accum-steps", "3"], "does not divide"),
        (["--arch", "resnet18", "--finetune-from", "missing.pth"],
         "--finetune-from: no such file 'missing.pth'"),
        (["--arch", "resnet18", "--finetune-from", "weights.npz"],
         "neither a Keras .weights.h5"),
        (["--strategy", "gpu"], "--strategy: invalid choice: 'gpu'"),
        (["--batch-size", "0"], "--batch-size: expected a positive int"),
        (["--lr", "-1"], "--lr: expected a positive number"),
        (["--arch", "resnet18", "--with-lps"],
         "--with-lps: only the demo comparison"),
        (["--antialias", "aps"], "--antialias/--padding need --arch"),
        (["--arch", "resnet18", "--antialias", "max"],
         "--antialias: invalid choice: 'max'"),
    ],
)
def test_cli_rejects_bad_input(argv, message, capsys):
    with pytest.raises(SystemExit) as exit_info:
        train.main(argv)
    assert exit_info.value.code == 2
    assert message in capsys.readouterr().err


def _write_jpegs(root, splits=("train", "val"), classes=("cat", "dog"), count=8,
                 size=48):
    rng = np.random.default_rng(0)
    for split in splits:
        for label, name in enumerate(classes):
            folder = root / split / name
            folder.mkdir(parents=True)
            for i in range(count):
                image = rng.integers(0, 255, (size, size, 3), dtype=np.uint8)
                image[..., label] = 255  # learnable: one channel saturated
                data = tf.io.encode_jpeg(image).numpy()
                (folder / f"{i}.jpg").write_bytes(data)
    return root


@pytest.fixture(scope="module")
def jpeg_folder(tmp_path_factory):
    return _write_jpegs(tmp_path_factory.mktemp("jpegs"))


def test_cli_trains_on_a_folder_of_jpegs(jpeg_folder, tmp_path, capsys):
    out = tmp_path / "run"
    code = train.main([
        "--arch", "demo", "--data", str(jpeg_folder), "--image-size", "32",
        "--epochs", "1", "--steps-per-epoch", "2", "--batch-size", "4",
        "--out-dir", str(out), "--quiet",
    ])
    assert code == 0
    run = json.loads((out / "run.json").read_text())
    assert run["data"] == str(jpeg_folder) and run["steps_per_epoch"] == 2
    model = keras.saving.load_model(out / "final.keras")
    assert model.output_shape == (None, 2)
    # Validated on val/ (16 images): best.* exist.
    assert (out / "best.weights.h5").exists()
    assert os.listdir(out / "logs" / "train")


def test_cli_validation_labels_follow_training_classes(tmp_path, capsys):
    root = _write_jpegs(tmp_path / "data", splits=("train",),
                        classes=("cat", "dog", "owl"), count=1)
    _write_jpegs(root, splits=("val",), classes=("cat", "owl"), count=1)
    from recipes import data as data_lib

    train_classes = data_lib.load_images(str(root), "train").class_names
    with pytest.warns(UserWarning, match="lacks 1 of the 3 training classes: dog"):
        val = train._open_validation(data_lib, str(root),
                                     class_names=train_classes)
    assert sorted(int(label) for _, label in val.dataset) == [0, 2]
    _write_jpegs(root, splits=("val",), classes=("emu",), count=1)
    code = train.main(["--arch", "demo", "--data", str(root), "--epochs", "1",
                       "--steps-per-epoch", "1", "--batch-size", "2",
                       "--out-dir", str(tmp_path / "run"), "--quiet"])
    assert code == 2
    assert "class(es) 'emu' that the training classes lack" in capsys.readouterr().err


def test_cli_bad_image_is_named_or_skipped(jpeg_folder, tmp_path, capsys):
    root = tmp_path / "data"
    shutil.copytree(jpeg_folder, root)
    bad = root / "train" / "dog" / "3.jpg"
    bad.write_bytes(bad.read_bytes()[:200])  # truncated
    command = ["--arch", "demo", "--data", str(root), "--image-size", "32",
               "--epochs", "1", "--steps-per-epoch", "4", "--batch-size", "4",
               "--no-validation", "--quiet"]
    assert train.main(command + ["--out-dir", str(tmp_path / "a")]) == 2
    err = capsys.readouterr().err
    assert f"cannot read image file {str(bad)!r}" in err
    assert "--skip-bad-images" in err and "Traceback" not in err
    code = train.main(command + ["--out-dir", str(tmp_path / "b"),
                                 "--skip-bad-images"])
    assert code == 0
    assert "skipped 1 unreadable train image file(s)" in capsys.readouterr().out


def test_cli_trains_on_tfds_mock_data(tmp_path):
    import tensorflow_datasets as tfds

    out = tmp_path / "run"
    with tfds.testing.mock_data(num_examples=16):
        code = train.main([
            "--arch", "demo", "--data", "tfds:cifar10:train", "--image-size", "32",
            "--epochs", "1", "--steps-per-epoch", "2", "--batch-size", "4",
            "--out-dir", str(out), "--quiet",
        ])
    assert code == 0
    assert keras.saving.load_model(out / "final.keras").output_shape == (None, 10)
    # Trained on the split of the spec, validated on cifar10's "test".
    assert (out / "best.keras").exists()


def test_finetune_from_baseline_weights_h5(tmp_path, capsys):
    baseline = models.build_model("demo", None, num_classes=10, image_size=32)
    rng = np.random.default_rng(1)
    for w in baseline.trainable_weights:
        w.assign(rng.standard_normal(w.shape).astype("float32") * 0.1)
    path = str(tmp_path / "baseline.weights.h5")
    baseline.save_weights(path)
    out = tmp_path / "run"
    code = train.main([
        "--arch", "demo", "--filter-size", "4", "--finetune-from", path,
        "--epochs", "1", "--steps-per-epoch", "1", "--batch-size", "8",
        "--lr", "1e-12", "--no-validation", "--out-dir", str(out),
    ])
    assert code == 0
    printed = capsys.readouterr().out
    assert f"from baseline weights {path}" in printed
    # The last epoch of the demo's 12-epoch schedule.
    assert "from schedule epoch 11" in printed
    tuned = models.build_model("demo", 4, num_classes=10, image_size=32)
    tuned.load_weights(out / "final.weights.h5")
    assert any(type(layer).__name__ == "BlurPool2D" for layer in tuned.layers)
    for a, b in zip(baseline.trainable_weights, tuned.trainable_weights):
        np.testing.assert_allclose(np.array(a), np.array(b), atol=1e-6)


def test_finetune_from_torchvision_pth(reference, jpeg_folder, tmp_path, capsys):
    import keras_blurpool
    from tests.test_resnet import _as_torchvision

    torch, aa = reference
    torch.manual_seed(0)
    tv_model = _as_torchvision(torch, aa.resnet18(filter_size=1, num_classes=2))
    state = {k: v for k, v in tv_model.state_dict().items()}
    assert "layer2.0.conv1.weight" in state and not any("filt" in k for k in state)
    path = str(tmp_path / "resnet18_baseline.pth")
    torch.save(state, path)
    out = tmp_path / "run"
    code = train.main([
        "--arch", "resnet18", "--filter-size", "4", "--data", str(jpeg_folder),
        "--image-size", "64", "--finetune-from", path, "--epochs", "1",
        "--steps-per-epoch", "1", "--batch-size", "4", "--lr", "1e-12",
        "--no-validation", "--out-dir", str(out), "--quiet",
    ])
    assert code == 0
    expected = models.build_model("resnet18", 4, num_classes=2, image_size=64)
    keras_blurpool.load_torch_weights(
        expected, {k: v.numpy() for k, v in state.items()}
    )
    tuned = models.build_model("resnet18", 4, num_classes=2, image_size=64)
    tuned.load_weights(out / "final.weights.h5")
    for a, b in zip(expected.trainable_weights, tuned.trainable_weights):
        np.testing.assert_allclose(np.array(a), np.array(b), atol=1e-6)


# ----------------------------------------------------------------------
# Subprocesses: several devices, several workers, kill -9, the default run


_MIRRORED = """
    import json, sys
    import numpy as np, tensorflow as tf
    from recipes import strategy as strategy_lib
    strategy_lib.split_cpu(2)
    from tests.test_recipes_train import (_arrays, _config, _dense_model,
                                          _in_memory_input, _weights)
    from recipes.trainer import Trainer
    from recipes import train

    out = sys.argv[1]
    images, labels = _arrays()
    weights = {}
    for name in ("mirrored", "one_device"):
        strategy = strategy_lib.make_strategy(name)
        trainer = Trainer(_config(f"{out}/{name}", steps_per_epoch=3), strategy,
                          _dense_model, _in_memory_input(images, labels, shuffle=False))
        weights[name] = (_weights(trainer.fit().model),
                         strategy.num_replicas_in_sync)
    (mirrored, replicas), (single, _) = weights["mirrored"], weights["one_device"]
    same = all(np.allclose(a, b, rtol=1e-5, atol=1e-7)
               for a, b in zip(mirrored, single))
    code = train.main(["--arch", "demo", "--strategy", "mirrored", "--cpu-devices",
                       "2", "--epochs", "1", "--steps-per-epoch", "2",
                       "--batch-size", "8", "--eval-batch-size", "300",
                       "--out-dir", f"{out}/cli"])
    print("RESULT", json.dumps({"replicas": replicas, "same": same, "code": code}))
"""


def test_mirrored_over_two_logical_cpus(tmp_path):
    output = _run_python(_MIRRORED, str(tmp_path))
    result = json.loads(output.split("RESULT ")[-1])
    assert result == {"replicas": 2, "same": True, "code": 0}, output
    # 2 replicas, per-replica batch 4; validation of 1000 images in global
    # batches of 300 (the last one partial) counts every image once.
    assert "on 2 replica(s) (MirroredStrategy)" in output
    assert "(1000 images)" in output
    assert (tmp_path / "cli" / "final.keras").exists()


_WORKER = """
    import json, os, sys
    import numpy as np
    import tensorflow as tf
    from recipes import strategy as strategy_lib
    strategy = strategy_lib.make_strategy("auto")
    import keras
    from recipes import data
    from recipes.models import build_model
    from recipes.trainer import TrainConfig, Trainer

    out, dump = sys.argv[1], sys.argv[2]

    def model_fn():
        keras.utils.set_random_seed(0)
        return build_model("demo", 4, num_classes=10, image_size=32)

    def train_input_fn(context, batch_size, epoch):
        source = data.load_images("demo", "train", input_context=context,
                                  shuffle_seed=0)
        return data.train_dataset(source, batch_size, seed=0, epoch=epoch)

    def eval_input_fn(batch_size):
        source = data.load_images("demo", "validation")
        return data.eval_dataset(source, batch_size).take(3)

    config = TrainConfig(out_dir=out, epochs=1, steps_per_epoch=3,
                         global_batch_size=16, lr=0.05, verbose=0,
                         checkpoint_every=2)
    # Stopped at step 2 and resumed by a new trainer: every worker restores
    # the chief's checkpoint.
    Trainer(config, strategy, model_fn, train_input_fn,
            eval_input_fn).fit(stop_at_step=2)
    trainer = Trainer(config, strategy, model_fn, train_input_fn, eval_input_fn)
    result = trainer.fit()
    np.savez(dump, *[np.array(w) for w in result.model.weights])
    print("RESULT", json.dumps({
        "replicas": strategy.num_replicas_in_sync, "chief": trainer.is_chief,
        "step": result.step, "resumed_from": result.resumed_from,
        "multi_worker": isinstance(strategy,
                                   tf.distribute.MultiWorkerMirroredStrategy),
        "paths": sorted(result.paths)}))
"""


def _free_ports(count):
    sockets = [socket.socket() for _ in range(count)]
    for s in sockets:
        s.bind(("127.0.0.1", 0))
    ports = [s.getsockname()[1] for s in sockets]
    for s in sockets:
        s.close()
    return ports


def test_multi_worker_two_processes_end_identical(tmp_path):
    ports = _free_ports(2)
    cluster = {"worker": [f"127.0.0.1:{port}" for port in ports]}
    processes = []
    for index in range(2):
        env = _env()
        env["TF_CONFIG"] = json.dumps(
            {"cluster": cluster, "task": {"type": "worker", "index": index}}
        )
        processes.append(subprocess.Popen(
            [sys.executable, "-c", textwrap.dedent(_WORKER),
             str(tmp_path / "run"), str(tmp_path / f"worker{index}.npz")],
            cwd=REPO, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
            text=True,
        ))
    outputs = []
    try:
        for process in processes:
            outputs.append(process.communicate(timeout=240)[0])
    finally:
        for process in processes:
            if process.poll() is None:
                process.kill()
    for process, output in zip(processes, outputs):
        assert process.returncode == 0, output
    results = [json.loads(o.split("RESULT ")[-1]) for o in outputs]
    assert [r["chief"] for r in results] == [True, False]
    for r in results:
        assert r["multi_worker"]
        assert r["replicas"] == 2 and r["step"] == 3 and r["resumed_from"] == 2
    assert results[0]["paths"] and not results[1]["paths"]
    a = np.load(tmp_path / "worker0.npz")
    b = np.load(tmp_path / "worker1.npz")
    assert len(a.files) == len(b.files) > 0
    for key in a.files:
        np.testing.assert_array_equal(a[key], b[key])
    # Only the chief wrote into the output directory.
    run = tmp_path / "run"
    assert sorted(p.name for p in run.iterdir()) == [
        "best.keras", "best.weights.h5", "checkpoints", "final.keras",
        "final.weights.h5", "logs", "run.json"]
    assert not [p for p in (run / "checkpoints").iterdir() if p.is_dir()]


def test_kill_9_then_rerun_resumes_and_finishes(tmp_path):
    out = tmp_path / "run"
    command = [
        sys.executable, "-m", "recipes.train", "--arch", "demo",
        "--epochs", "2", "--steps-per-epoch", "100", "--batch-size", "16",
        "--checkpoint-every", "5", "--no-validation", "--out-dir", str(out),
    ]
    state = out / "checkpoints" / "checkpoint"
    process = subprocess.Popen(command, cwd=REPO, env=_env(),
                               stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        deadline = time.monotonic() + 180
        while not state.exists() and process.poll() is None:
            assert time.monotonic() < deadline, "no checkpoint written"
            time.sleep(0.02)
        process.send_signal(signal.SIGKILL)
        process.wait(timeout=30)
    finally:
        if process.poll() is None:
            process.kill()
    assert process.returncode == -signal.SIGKILL, "finished before the kill"
    saved = int(re.search(r'model_checkpoint_path: "ckpt-(\d+)"',
                          state.read_text()).group(1))
    assert 0 < saved < 200
    result = subprocess.run(command, cwd=REPO, env=_env(), capture_output=True,
                            text=True, timeout=240)
    assert result.returncode == 0, result.stdout + result.stderr
    assert f"resuming from step {saved} " in result.stdout
    assert "finished at step 200" in result.stdout
    assert (out / "final.keras").exists()


def test_default_command_compares_plain_and_antialiased(tmp_path):
    """`python -m recipes.train`, with a budget small enough for CI."""
    result = subprocess.run(
        [sys.executable, "-m", "recipes.train", "--epochs", "1",
         "--steps-per-epoch", "4", "--batch-size", "32", "--out-dir",
         str(tmp_path)],
        cwd=REPO, env=_env(), capture_output=True, text=True, timeout=300,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    table = result.stdout[result.stdout.index("top-1 (%)"):]
    assert re.search(r"baseline\s+\d+\.\d\d\s+\d+\.\d\d ± \d", table)
    assert re.search(r"antialiased \(filter 4\)\s+\d+\.\d\d\s+\d+\.\d\d ± \d", table)
    # APS, with circular padding: every circular shift gets the same class.
    assert re.search(r"APS \(filter 4\)\s+\d+\.\d\d\s+\d+\.\d\d ± \S+\s+100\.00", table)
    for name in ("baseline", "lpf4", "aps4"):
        assert (tmp_path / name / "final.keras").exists()
        assert (tmp_path / name / "final.weights.h5").exists()


def test_keras_application_arch_is_antialiased_by_surgery():
    plain = models.build_model("keras.MobileNetV2", None, num_classes=5, image_size=64)
    blurred = models.build_model("keras.MobileNetV2", 4, num_classes=5, image_size=64)
    assert plain.count_params() == blurred.count_params()
    assert any(layer.name.endswith("_blur") for layer in blurred.layers)
    assert not any(layer.name.endswith("_blur") for layer in plain.layers)
    assert blurred.output.shape == plain.output.shape == (None, 5)
    # PyTorch's BN momentum, as the reference trains (MobileNetV2's own is
    # 0.999), in both twins.
    for model in (plain, blurred):
        momenta = {layer.momentum for layer in model.layers
                   if isinstance(layer, keras.layers.BatchNormalization)}
        assert momenta == {models.KERAS_BN_MOMENTUM} == {0.9}
    assert config_lib.recipe_for("keras.MobileNetV2") == config_lib.recipe_for("resnet50")
    with pytest.raises(ValueError, match="keras.NoSuchNet.*keras.MobileNetV2"):
        models.build_model("keras.NoSuchNet", 4)


def test_keras_arch_comparison_command(tmp_path):
    """`python -m recipes.train --arch keras.MobileNetV2`, CI-sized."""
    result = subprocess.run(
        [sys.executable, "-m", "recipes.train", "--arch", "keras.MobileNetV2",
         "--epochs", "1", "--steps-per-epoch", "2", "--batch-size", "16",
         "--out-dir", str(tmp_path)],
        cwd=REPO, env=_env(), capture_output=True, text=True, timeout=600,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    table = result.stdout[result.stdout.index("keras.MobileNetV2 on the demo data"):]
    assert "64x64 crops" in table
    assert re.search(r"baseline\s+\d+\.\d\d\s+\d+\.\d\d ± \d", table)
    assert re.search(r"antialiased \(filter 4\)\s+\d+\.\d\d\s+\d+\.\d\d ± \d", table)
    for name in ("baseline", "lpf4"):
        assert (tmp_path / name / "final.keras").exists()

"""Tests of the command line `python -m recipes.train`, `recipes/train.py`.

In process, but for `kill -9`, the default run and the keras.applications
comparison, which run `python -m recipes.train` in subprocesses.
"""

import json
import os
import re
import shutil
import signal
import subprocess
import sys
import time

import keras
import numpy as np
import pytest
import tensorflow as tf

from recipes import models
from recipes import train
from tests._recipes_training import REPO
from tests._recipes_training import make_env


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
        (["--arch", "convnext_afc_tiny", "--antialias", "aps"],
         "--antialias: convnext_afc_tiny has its own anti-aliasing"),
    ],
)
def test_cli_rejects_bad_input(argv, message, capsys):
    with pytest.raises(SystemExit) as exit_info:
        train.main(argv)
    assert exit_info.value.code == 2
    assert message in capsys.readouterr().err


def test_architectures_with_their_own_antialiasing_name_no_filter():
    # The alias-free ConvNeXts take no filter_size: the header and the run
    # folder say so instead of naming a filter they ignore.
    assert models.own_antialiasing("convnext_afc_tiny")
    assert not models.own_antialiasing("resnet18")
    assert not models.own_antialiasing("keras.ResNet50")
    assert train._antialiasing("convnext_afc_tiny", 4, "blur") == (
        "its own anti-aliasing"
    )
    assert train._antialiasing("resnet18", 4, "aps") == "aps, filter_size=4"
    assert train._antialiasing("resnet18", None, "blur") == "plain"
    assert train._default_out_dir("convnext_afc_tiny", None) == os.path.join(
        "runs", "convnext_afc_tiny"
    )
    assert train._default_out_dir("resnet18", 4) == os.path.join(
        "runs", "resnet18_lpf4"
    )
    with pytest.raises(ValueError, match="has its own anti-aliasing"):
        models.build_model("convnext_afc_tiny", None, antialias="lps",
                           image_size=96)


# Issue 30. Each with a folder that does not exist: without the bound, a
# run would start (or fail on the folder), not stop at the argument.
_NO_DATA = ["--arch", "demo", "--data", "/no/such/folder"]
_DIGITS_400 = "9" * 400


@pytest.mark.parametrize(
    "argv, message",
    [
        (["--epochs", _DIGITS_400],
         "argument --epochs: expected a positive int, at most 16777216 (2**24: "
         "the learning-rate schedule counts epochs in float32), got "
         "'99999999999999999999'... (400 characters)"),
        (["--epochs", str(2**24 + 1)], "--epochs: expected a positive int, at most 16777216"),
        (["--seed", _DIGITS_400],
         "argument --seed: expected an int >= 0, at most 4294967295 (2**32 - 1: "
         "keras.utils.set_random_seed seeds NumPy"),
        (["--seed", str(2**32)], "--seed: expected an int >= 0, at most 4294967295"),
        (["--seed", "-1"], "--seed: expected an int >= 0, at most 4294967295"),
        (["--steps-per-epoch", str(2**63)],
         "--steps-per-epoch: expected a positive int, at most 9223372036854775807 "
         "(TensorFlow's int64)"),
        (["--eval-batch-size", "1" + "0" * 5000],
         "--eval-batch-size: expected a positive int, at most 9223372036854775807 "
         "(TensorFlow's int64), got '10000000000000000000'... (5001 characters)"),
        (["--cpu-devices", str(10**18)], "--cpu-devices: expected a positive int, at most 1024"),
        (["--epochs", "2", "--steps-per-epoch", str(2**62)],
         "argument --steps-per-epoch: 4611686018427387904 x 2 epochs is more "
         "than 2**63 - 1 steps (the global step is an int64)"),
        (["--steps-per-epoch", str(2**60)],  # x the demo recipe's 12 epochs
         "argument --steps-per-epoch: 1152921504606846976 x 12 epochs"),
        (["--max-image-pixels", "0"], "--max-image-pixels: expected a positive int"),
        (["--image-size", "30000"],
         "argument --image-size: 30000 makes crops of 30000x30000 = "
         "900,000,000 pixels, more than --max-image-pixels 89,478,485 (the "
         "bound on the pixels of every image decoded or made); expected at "
         "most 9459, or raise --max-image-pixels"),
        (["--image-size", "100", "--max-image-pixels", "5000"],
         "--image-size: 100 makes crops of 100x100 = 10,000 pixels"),
    ],
)
def test_cli_bounds_its_numbers_up_front(argv, message, capsys):
    with pytest.raises(SystemExit) as exit_info:
        train.main(_NO_DATA + argv)
    assert exit_info.value.code == 2
    err = capsys.readouterr().err
    assert message in err and "Traceback" not in err
    assert "no such folder" not in err  # refused before the data is opened


def test_cli_single_class_warns(tmp_path, capsys):
    """Issue 30: one class trains a constant softmax (loss 0), silently."""
    root = _write_jpegs(tmp_path / "data", splits=("train",), classes=("cat",),
                        count=4, size=40)
    with pytest.warns(UserWarning, match=r"has a single class \('cat'\).*learns "
                      "nothing; give at least two classes"):
        code = train.main(["--arch", "demo", "--data", str(root),
                           "--image-size", "32", "--epochs", "1",
                           "--steps-per-epoch", "1", "--batch-size", "2",
                           "--out-dir", str(tmp_path / "run"), "--quiet"])
    assert code == 0


def test_cli_image_over_max_image_pixels_is_named_or_skipped(
    jpeg_folder, tmp_path, capsys
):
    """Issue 30: the bound is read from the header, before decoding."""
    root = tmp_path / "data"
    shutil.copytree(jpeg_folder, root)
    big = root / "train" / "dog" / "big.png"
    big.write_bytes(tf.io.encode_png(np.zeros((60, 50, 3), np.uint8)).numpy())
    command = ["--arch", "demo", "--data", str(root), "--image-size", "32",
               "--epochs", "1", "--steps-per-epoch", "4", "--batch-size", "4",
               "--no-validation", "--quiet", "--max-image-pixels", "2500"]
    assert train.main(command + ["--out-dir", str(tmp_path / "a")]) == 2
    err = capsys.readouterr().err
    assert (
        f"error: cannot read image file {str(big)!r} (50x60 = 3,000 pixels, "
        "over max_image_pixels (--max-image-pixels) = 2,500)" in err
    )
    assert "Traceback" not in err
    code = train.main(command + ["--out-dir", str(tmp_path / "b"),
                                 "--skip-bad-images"])
    assert code == 0
    assert (
        f"skipped 1 unreadable train image file(s) (--skip-bad-images): {big}"
        in capsys.readouterr().out
    )
    # Validation resizes to a short side of 37 (32 x 256/224): a 400x2
    # image (800 pixels) would be 37x7400.
    thin = root / "val" / "cat" / "thin.png"
    thin.write_bytes(tf.io.encode_png(np.zeros((2, 400, 3), np.uint8)).numpy())
    command[command.index("--no-validation")] = "--skip-bad-images"
    assert train.main(command + ["--out-dir", str(tmp_path / "v")]) == 0
    assert (
        f"skipped 1 unreadable validation image file(s) (--skip-bad-images): "
        f"{thin}" in capsys.readouterr().out
    )
    # The resize before the centre crop is held to the bound too.
    assert train.main(command + ["--out-dir", str(tmp_path / "c"),
                                 "--image-size", "48"]) == 2
    assert (
        "--image-size: 48 makes images resized to a short side of "
        "55x55 = 3,025 pixels, more than --max-image-pixels 2,500"
        in capsys.readouterr().err
    )




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


def test_kill_9_then_rerun_resumes_and_finishes(tmp_path):
    out = tmp_path / "run"
    command = [
        sys.executable, "-m", "recipes.train", "--arch", "demo",
        "--epochs", "2", "--steps-per-epoch", "100", "--batch-size", "16",
        "--checkpoint-every", "5", "--no-validation", "--out-dir", str(out),
    ]
    state = out / "checkpoints" / "checkpoint"
    process = subprocess.Popen(command, cwd=REPO, env=make_env(),
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
    result = subprocess.run(command, cwd=REPO, env=make_env(), capture_output=True,
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
        cwd=REPO, env=make_env(), capture_output=True, text=True, timeout=300,
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


def test_keras_arch_comparison_command(tmp_path):
    """`python -m recipes.train --arch keras.MobileNetV2`, CI-sized."""
    result = subprocess.run(
        [sys.executable, "-m", "recipes.train", "--arch", "keras.MobileNetV2",
         "--epochs", "1", "--steps-per-epoch", "2", "--batch-size", "16",
         "--out-dir", str(tmp_path)],
        cwd=REPO, env=make_env(), capture_output=True, text=True, timeout=600,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    table = result.stdout[result.stdout.index("keras.MobileNetV2 on the demo data"):]
    assert "64x64 crops" in table
    assert re.search(r"baseline\s+\d+\.\d\d\s+\d+\.\d\d ± \d", table)
    assert re.search(r"antialiased \(filter 4\)\s+\d+\.\d\d\s+\d+\.\d\d ± \d", table)
    for name in ("baseline", "lpf4"):
        assert (tmp_path / name / "final.keras").exists()

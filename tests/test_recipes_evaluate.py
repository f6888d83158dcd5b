"""python -m recipes.evaluate, end to end on data the tests make."""

import json
import os
import subprocess
import sys

import numpy as np
import pytest
import tensorflow as tf

from recipes import evaluate
from recipes import models

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def jpeg_folder(root, classes, per_class=3, size=(48, 56), seed=0):
    rng = np.random.default_rng(seed)
    for name in classes:
        os.makedirs(os.path.join(root, name))
        for i in range(per_class):
            image = rng.integers(0, 256, (*size, 3)).astype("uint8")
            data = tf.io.encode_jpeg(image).numpy()
            with open(os.path.join(root, name, f"{i}.jpg"), "wb") as f:
                f.write(data)
    return str(root)


def demo_weights(path, filter_size, classes, seed=0):
    import keras

    keras.utils.set_random_seed(seed)
    model = models.build_model("demo", filter_size, num_classes=classes, image_size=32)
    model.save_weights(path)
    return str(path)


def test_cli_end_to_end_on_a_jpeg_folder(tmp_path):
    data = jpeg_folder(tmp_path / "images", ["cats", "dogs", "owls"])
    anti = demo_weights(tmp_path / "anti.weights.h5", 4, 3)
    base = demo_weights(tmp_path / "base.weights.h5", None, 3, seed=1)
    out = tmp_path / "out"
    command = [
        sys.executable, "-m", "recipes.evaluate", "--arch", "demo",
        "--filter-size", "4", "--weights", anti, "--baseline-weights", base,
        "--data", data, "--image-size", "32", "--resize-size", "40",
        "--interpolation", "bicubic",
        "--metrics", "accuracy,consistency,diagonal,circular", "--passes", "2",
        "--batch-size", "4", "--out-dir", str(out), "--verbose", "0",
    ]
    env = {**os.environ, "KERAS_BACKEND": "tensorflow"}
    run = subprocess.run(
        command, cwd=ROOT, env=env, capture_output=True, text=True, timeout=300
    )
    assert run.returncode == 0, run.stderr[-3000:]
    lines = run.stdout.splitlines()
    header = next(line for line in lines if line.startswith("| |"))
    for column in ("Accuracy", "Consistency", "Circular consistency", "Diagonal"):
        assert column in header
    assert any(line.startswith("| baseline |") for line in lines)
    assert any(line.startswith("| antialiased (filter 4) |") for line in lines)
    assert any(line.startswith("| Delta |") for line in lines)

    assert sorted(os.listdir(out)) == [
        "diagonal.png", "diagonal_antialiased.npz", "diagonal_baseline.npz",
        "results.json",
    ]
    assert os.path.getsize(out / "diagonal.png") > 10_000
    summary = json.loads((out / "results.json").read_text())
    assert summary["max_shift"] == 8 and summary["image_size"] == 32
    assert summary["interpolation"] == "bicubic"
    figures = summary["models"]["antialiased (filter 4)"]
    assert figures["accuracy"]["num_images"] == 9
    assert len(figures["consistency"]["per_pass"]) == 2
    assert len(figures["diagonal"]["accuracy"]) == 9  # offsets 0..8
    curves = np.load(out / "diagonal_baseline.npz")
    assert curves["probability"].shape == (9, 9)


def test_cli_on_tfds(tmp_path, capsys):
    import tensorflow_datasets as tfds

    weights = demo_weights(tmp_path / "w.weights.h5", 3, 10)
    with tfds.testing.mock_data(num_examples=6):
        code = evaluate.main([
            "--arch", "demo", "--filter-size", "3", "--weights", weights,
            "--data", "tfds:cifar10:test", "--image-size", "32",
            "--resize-size", "40", "--out-dir", str(tmp_path / "out"),
            "--verbose", "0", "--passes", "2",
        ])
    assert code == 0
    printed = capsys.readouterr().out
    assert "demo on tfds:cifar10:test" in printed
    summary = json.loads((tmp_path / "out" / "results.json").read_text())
    (figures,) = summary["models"].values()
    assert figures["accuracy"]["num_images"] == 6
    assert 0 <= figures["consistency"]["consistency"] <= 100


@pytest.mark.parametrize(
    "args, message",
    [
        (["--metrics", "accuracy,speed"], "unknown metric"),
        (["--filter-size", "9"], "from 1 to 7"),
        (["--arch", "resnet51"], "Unknown architecture"),
        (["--data", "/no/such/folder"], "/no/such/folder"),
        (["--batch-size", "0"], "positive int"),
    ],
)
def test_cli_bad_arguments(args, message, capsys):
    base = ["--arch", "demo", "--weights", "x.weights.h5", "--data", "demo"]
    with pytest.raises(SystemExit) as exit_info:
        evaluate.main(base + args)
    assert exit_info.value.code == 2
    assert message in capsys.readouterr().err


def test_missing_weights_file_is_a_clear_error(capsys):
    with pytest.raises(SystemExit):
        evaluate.main([
            "--arch", "demo", "--weights", "/no/such.weights.h5", "--data", "demo",
            "--verbose", "0",
        ])
    assert "/no/such.weights.h5" in capsys.readouterr().err


def test_imagenet_weights_need_wordnet_class_names(tmp_path, capsys):
    """Scored against other labels, ImageNet weights read 0% (issue 11)."""
    data = jpeg_folder(tmp_path / "images", ["cats", "n01440764"], per_class=1)
    for weights in (["--weights", "imagenet"],
                    ["--weights", "x.weights.h5", "--baseline-weights", "imagenet"]):
        with pytest.raises(SystemExit) as exit_info:
            evaluate.main(["--arch", "resnet18", *weights, "--data", data,
                           "--out-dir", str(tmp_path / "out")])
        assert exit_info.value.code == 2
        err = capsys.readouterr().err
        assert "not all ImageNet WordNet ids (n01440764, ...): 'cats'" in err
    assert not (tmp_path / "out").exists()


def test_out_dir_that_is_a_file_is_refused_before_any_work(tmp_path, capsys):
    file = tmp_path / "file"
    file.write_text("")
    with pytest.raises(SystemExit) as exit_info:
        evaluate.main(["--arch", "demo", "--weights", "x.weights.h5",
                       "--data", "/no/such/folder", "--out-dir", str(file)])
    assert exit_info.value.code == 2
    assert "is a file, not a directory" in capsys.readouterr().err


def test_bad_image_is_named_or_skipped(tmp_path, capsys):
    data = jpeg_folder(tmp_path / "images", ["cats", "dogs"], per_class=3)
    bad = os.path.join(data, "dogs", "1.jpg")
    with open(bad, "r+b") as f:
        f.truncate(100)
    weights = demo_weights(tmp_path / "w.weights.h5", 4, 2)
    command = ["--arch", "demo", "--weights", weights, "--data", data,
               "--image-size", "32", "--resize-size", "40", "--metrics",
               "accuracy", "--out-dir", str(tmp_path / "out"), "--verbose", "0"]
    with pytest.raises(SystemExit) as exit_info:
        evaluate.main(command)
    assert exit_info.value.code == 2
    err = capsys.readouterr().err
    assert f"cannot read image file {bad!r}" in err and "Traceback" not in err
    assert evaluate.main(command + ["--skip-bad-images"]) == 0
    assert f"1 unreadable image file(s) skipped: {bad}" in capsys.readouterr().out
    summary = json.loads((tmp_path / "out" / "results.json").read_text())
    (figures,) = summary["models"].values()
    assert figures["accuracy"]["num_images"] == 5


def test_rows_are_labelled_by_kind():
    from recipes import evaluate

    assert evaluate._label(None, "aps") == "baseline"
    assert evaluate._label(4) == "antialiased (filter 4)"
    assert evaluate._label(4, "aps") == "APS (filter 4)"
    assert evaluate._label(2, "lps") == "LPS (filter 2)"


@pytest.mark.parametrize(
    "argv, expected",
    [
        # timm's networks: their released weights' own validation.
        (["--arch", "resnetaa50d", "--weights", "imagenet"],
         ("avg", 3, 224, 235, "bicubic")),
        (["--arch", "seresnextaa101d_32x8d", "--weights", "imagenet"],
         ("avg", 3, 288, 303, "bicubic")),
        (["--arch", "seresnextaa101d_32x8d", "--weights", "ah_in1k", "--test-size"],
         ("avg", 3, 288, 288, "bicubic")),
        (["--arch", "resnetblur50", "--weights", "imagenet"],
         ("blur", 3, 224, 256, "bicubic")),
        # The reference's: 256 -> 224, bilinear.
        (["--arch", "resnet18", "--weights", "imagenet"],
         ("blur", 4, 224, 256, "bilinear")),
        # Weights trained here: the data's sizes (None: no config).
        (["--arch", "resnetaa50d", "--weights", "mine.weights.h5"],
         ("avg", 3, None, None, None)),
        (["--arch", "resnetaa50d", "--weights", "imagenet", "--antialias", "blur",
          "--filter-size", "5"], ("blur", 5, 224, 235, "bicubic")),
    ],
)
def test_defaults_follow_the_architecture_and_its_weights(argv, expected):
    args = evaluate.parser().parse_args([*argv, "--data", "demo"])
    evaluate._network_defaults(args)
    config = evaluate.released_preprocessing(args)
    got = (args.antialias, args.filter_size)
    if config is None:
        got += (None, None, None)
    else:
        got += (config.input_size, config.resize_size(), config.interpolation)
    assert got == expected

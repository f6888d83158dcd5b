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
        # Issue 30: bounds, each before any work.
        (["--passes", str(10**9)],
         "argument --passes: expected a positive int, at most 1000 (the scores "
         "of every pass over a batch are held at once), got '1000000000'"),
        (["--seed", "9" * 400],
         "argument --seed: expected an int >= 0, at most 4294967295"),
        (["--batch-size", "9" * 400], "(TensorFlow's int64), got '9999"),
        (["--image-size", "30000"],
         "argument --image-size: 30000 makes crops of 30000x30000 = "
         "900,000,000 pixels, more than --max-image-pixels 89,478,485"),
        (["--resize-size", "20000", "--max-image-pixels", str(10**8)],
         "argument --resize-size: 20000 makes resized images of 20000x20000 "
         "= 400,000,000 pixels, more than --max-image-pixels 100,000,000 "
         "(the bound on the pixels of every image decoded or made); expected "
         "at most 10000"),
        (["--image-size", "224", "--max-shift", str(10**9)],
         "argument --max-shift: 1000000000 makes squares of --image-size + "
         "--max-shift of 1000000224x1000000224"),
        (["--max-shift", str(10**9)],  # with the data's image size, 32
         "argument --max-shift: 1000000000 makes squares of --image-size + "
         "--max-shift of 1000000032x1000000032"),
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


def test_image_over_max_image_pixels_is_named_or_skipped(tmp_path, capsys):
    """Issue 30: sized from its header, and its resize, before decoding."""
    data = jpeg_folder(tmp_path / "images", ["cats", "dogs"], per_class=3)
    big = os.path.join(data, "dogs", "big.jpg")
    with open(big, "wb") as f:
        f.write(tf.io.encode_jpeg(np.zeros((70, 60, 3), np.uint8)).numpy())
    # 800 pixels, but 40x8000 once resized to --resize-size 40.
    thin = os.path.join(data, "cats", "thin.png")
    with open(thin, "wb") as f:
        f.write(tf.io.encode_png(np.zeros((2, 400, 3), np.uint8)).numpy())
    weights = demo_weights(tmp_path / "w.weights.h5", 4, 2)
    command = ["--arch", "demo", "--weights", weights, "--data", data,
               "--image-size", "32", "--resize-size", "40", "--metrics",
               "accuracy", "--out-dir", str(tmp_path / "out"), "--verbose", "0",
               "--max-image-pixels", "4000"]
    with pytest.raises(SystemExit) as exit_info:
        evaluate.main(command)
    assert exit_info.value.code == 2
    err = capsys.readouterr().err
    assert (
        f"cannot read image file {thin!r} (400x2, resized to a short side of "
        "40, makes 40x8000 = 320,000 pixels, over max_image_pixels "
        "(--max-image-pixels) = 4,000)" in err
    )
    assert "Traceback" not in err and not (tmp_path / "out").exists()
    assert evaluate.main(command + ["--skip-bad-images"]) == 0
    assert (
        f"2 unreadable image file(s) skipped: {thin}, {big}"
        in capsys.readouterr().out
    )
    summary = json.loads((tmp_path / "out" / "results.json").read_text())
    (figures,) = summary["models"].values()
    assert figures["accuracy"]["num_images"] == 6


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


# --- the released weights' preprocessing, on a registry entry of the test ---


def fake_entry(monkeypatch, t1, t2=None):
    """Registers "fake" (for this test only) with released tags t1, t2."""
    import dataclasses

    from keras_blurpool.applications import registry

    t2 = t2 or registry.Preprocessing(input_size=160, crop_pct=1.0)
    spec = dataclasses.replace(
        registry.get("resnet18"), name="fake", default_tag="t1",
        hub_weights={"t1": registry.HubWeights(t1), "t2": registry.HubWeights(t2)})
    monkeypatch.setitem(registry._REGISTRY, "fake", spec)
    return spec


@pytest.mark.parametrize(
    "argv, expected",
    [
        (["--weights", "imagenet"], ("t1", 224, 235, "bicubic")),
        (["--weights", "imagenet", "--test-size"], ("t1", 256, 256, "bicubic")),
        (["--weights", "imagenet", "--tag", "t2"], ("t2", 160, 160, "bilinear")),
        (["--weights", "t2"], ("t2", 160, 160, "bilinear")),
        (["--weights", "t2", "--tag", "t2"], ("t2", 160, 160, "bilinear")),
        # A local copy of released weights, said to be so by --tag.
        (["--weights", "t1.safetensors", "--tag", "t1"], ("t1", 224, 235, "bicubic")),
        # Weights trained here: the data's sizes.
        (["--weights", "mine.weights.h5"], (None, None, None, None)),
    ],
)
def test_tag_selects_the_released_preprocessing(monkeypatch, argv, expected):
    from keras_blurpool.applications import registry

    fake_entry(monkeypatch, registry.Preprocessing(
        crop_pct=0.95, interpolation="bicubic", test_input_size=256,
        test_crop_pct=1.0))
    args = evaluate.parser().parse_args(["--arch", "fake", *argv, "--data", "demo"])
    config = evaluate.released_preprocessing(args)
    got = (evaluate.released_tag(args),)
    if config is None:
        got += (None, None, None)
    else:
        got += (config.input_size, config.resize_size(), config.interpolation)
    assert got == expected


@pytest.mark.parametrize(
    "argv, message",
    [
        (["--arch", "fake", "--weights", "t1", "--tag", "t2"],
         "--weights 't1' and --tag 't2' name different released weights"),
        (["--arch", "fake", "--weights", "imagenet", "--tag", "in22k"],
         "'fake' has no released weights tagged 'in22k'. Released tags: ['t1', 't2']"),
        (["--arch", "resnet18", "--weights", "imagenet", "--tag", "t1"],
         "'resnet18' has no released weights tagged 't1'"),
        (["--arch", "demo", "--weights", "x.weights.h5", "--tag", "t1"],
         "--arch 'demo' is not an architecture of the registry"),
        (["--arch", "demo", "--weights", "x.weights.h5", "--interpolation", "area"],
         "invalid choice: 'area'"),
    ],
)
def test_bad_tags_are_clear_errors(monkeypatch, capsys, argv, message):
    from keras_blurpool.applications import registry

    fake_entry(monkeypatch, registry.Preprocessing(interpolation="bicubic"))
    monkeypatch.setitem(models.ARCHITECTURES, "fake", models.ARCHITECTURES["demo"])
    with pytest.raises(SystemExit) as exit_info:
        evaluate.main([*argv, "--data", "demo", "--verbose", "0"])
    assert exit_info.value.code == 2
    assert message in capsys.readouterr().err


def test_cli_validates_released_weights_as_their_authors(tmp_path, monkeypatch):
    """--arch of the registry: its tag's size, crop and interpolation."""
    import keras

    from keras_blurpool.applications import registry
    from keras_blurpool.evaluation import _runner

    fake_entry(monkeypatch, registry.Preprocessing(
        input_size=32, crop_pct=0.8, interpolation="bicubic"))
    built = []

    def builder(filter_size, *, classes, input_shape, weights, antialias, padding):
        built.append(dict(filter_size=filter_size, classes=classes,
                          input_shape=input_shape, weights=weights,
                          antialias=antialias))
        keras.utils.set_random_seed(0)
        inputs = keras.Input(input_shape)
        x = keras.layers.GlobalAveragePooling2D()(inputs)
        return keras.Model(inputs, keras.layers.Dense(classes)(x))

    monkeypatch.setitem(models.ARCHITECTURES, "fake", builder)
    resized = []
    original = _runner.resize_square

    def spy(image, size, interpolation="bilinear"):
        resized.append((size, interpolation))
        return original(image, size, interpolation)

    monkeypatch.setattr(_runner, "resize_square", spy)
    data = jpeg_folder(tmp_path / "images", ["n01440764", "n01443537"], per_class=2)

    def run(*argv):
        built.clear()
        resized.clear()
        out = tmp_path / f"out{len(os.listdir(tmp_path))}"
        code = evaluate.main(["--arch", "fake", "--data", data, "--metrics",
                              "accuracy", "--out-dir", str(out), "--verbose", "0",
                              *argv])
        assert code == 0
        return json.loads((out / "results.json").read_text())

    summary = run("--weights", "imagenet")
    assert (summary["image_size"], summary["resize_size"],
            summary["interpolation"], summary["tag"]) == (32, 40, "bicubic", "t1")
    assert built == [dict(filter_size=4, classes=1000, input_shape=(32, 32, 3),
                          weights="imagenet", antialias="blur")]
    assert set(resized) == {(40, "bicubic")}
    (figures,) = summary["models"].values()
    assert figures["accuracy"]["num_images"] == 4

    # --tag fetches that release; flags override its values.
    summary = run("--weights", "imagenet", "--tag", "t2", "--image-size", "24",
                  "--interpolation", "bicubic")
    assert (summary["image_size"], summary["resize_size"],
            summary["interpolation"], summary["tag"]) == (24, 24, "bicubic", "t2")
    assert built[0]["weights"] == "t2" and built[0]["input_shape"] == (24, 24, 3)
    assert set(resized) == {(24, "bicubic")}


def test_cli_shift_metrics_table_json_and_plots(tmp_path, capsys):
    data = jpeg_folder(tmp_path / "images", ["cats", "dogs"], per_class=2)
    anti = demo_weights(tmp_path / "anti.weights.h5", 4, 2)
    base = demo_weights(tmp_path / "base.weights.h5", None, 2, seed=1)
    out = tmp_path / "out"
    code = evaluate.main([
        "--arch", "demo", "--filter-size", "4", "--weights", anti,
        "--baseline-weights", base, "--data", data, "--image-size", "32",
        "--resize-size", "36", "--max-shift", "4",
        "--metrics", "adversarial,adversarial_circular,fractional,flip_rate",
        "--batch-size", "4", "--out-dir", str(out), "--verbose", "0",
    ])
    assert code == 0
    printed = capsys.readouterr().out
    header = next(line for line in printed.splitlines() if line.startswith("| |"))
    for column in ("Worst-case accuracy", "Worst-case circular accuracy",
                   "Half-pixel consistency", "Flip rate", "Top-5 distance"):
        assert column in header
    assert any(line.startswith("| Delta |") for line in printed.splitlines())
    assert sorted(os.listdir(out)) == [
        "adversarial.png", "adversarial_circular.png", "results.json"]
    assert os.path.getsize(out / "adversarial.png") > 10_000
    summary = json.loads((out / "results.json").read_text())
    assert list(summary["models"]) == ["baseline", "antialiased (filter 4)"]
    for figures in summary["models"].values():
        worst = figures["adversarial"]
        assert worst["num_shifts"] == 25 and worst["offsets"] == [0, 1, 2, 3, 4]
        assert worst["mode"] == "crop" and worst["num_images"] == 4
        assert worst["adversarial"] <= worst["mean"]
        assert worst["curve"]["adversarial"][-1] == worst["adversarial"]
        assert figures["adversarial_circular"]["mode"] == "circular"
        assert figures["fractional"]["shifts"] == [[0.5, 0.0], [0.0, 0.5], [0.5, 0.5]]
        assert figures["flip_rate"]["length"] == 5
        assert len(figures["flip_rate"]["per_step"]) == 4


@pytest.mark.parametrize(
    "metrics, extra, message",
    [
        ("adversarial", ["--max-shift", "9"],
         "--max-shift is 9: pass --max-shift 8 or less"),
        ("flip_rate", ["--max-shift", "9"], "--max-shift 8 or less"),
        ("adversarial_circular", ["--max-shift", "32"], "--max-shift 31 or less"),
        ("adversarial", ["--resize-size", "32"], "--resize-size equals --image-size"),
    ],
)
def test_cli_shift_grid_too_large_is_refused_before_any_work(
        tmp_path, capsys, metrics, extra, message):
    data = jpeg_folder(tmp_path / "images", ["cats"], per_class=1)
    with pytest.raises(SystemExit) as exit_info:
        evaluate.main([
            "--arch", "demo", "--weights", str(tmp_path / "none.weights.h5"),
            "--data", data, "--image-size", "32", "--resize-size", "40",
            "--metrics", metrics, "--out-dir", str(tmp_path / "out"), *extra,
        ])
    assert exit_info.value.code == 2
    assert message in capsys.readouterr().err
    assert not (tmp_path / "out").exists()

"""keras_blurpool.evaluation: protocols checked on models whose answer is known."""

import os
import subprocess
import sys
import textwrap

import keras
import numpy as np
import pytest
import tensorflow as tf

from keras_blurpool import evaluation
from keras_blurpool.evaluation import _runner
from keras_blurpool.evaluation import shifts
from keras_blurpool.evaluation.consistency import crop_pair_views
from keras_blurpool.evaluation.consistency import roll_pair_views

QUIET = dict(verbose=0)


def coordinate_images(n, size):
    """Images whose pixel (i, j) holds (i, j, 0): a crop tells where it is."""
    rows, cols = np.meshgrid(np.arange(size), np.arange(size), indexing="ij")
    image = np.stack([rows, cols, np.zeros_like(rows)], axis=-1).astype("uint8")
    return np.repeat(image[None], n, axis=0)


def where_model(view, square):
    """Predicts the class `row * square + col` of its top-left pixel."""
    inputs = keras.Input((view, view, 3))
    corner = keras.layers.Lambda(
        lambda x: keras.ops.cast(x[:, 0, 0, 0] * square + x[:, 0, 0, 1], "int32")
    )(inputs)
    outputs = keras.layers.Lambda(lambda i: keras.ops.one_hot(i, square * square))(
        corner
    )
    return keras.Model(inputs, outputs)


def invariant_model(size=None, classes=10, seed=0):
    """1x1 convolutions and global average pooling: circularly invariant."""
    keras.utils.set_random_seed(seed)
    inputs = keras.Input((size, size, 3))
    x = keras.layers.Conv2D(16, 1, activation="relu")(inputs)
    x = keras.layers.GlobalAveragePooling2D()(x)
    return keras.Model(inputs, keras.layers.Dense(classes)(x))


def position_model(size, classes=10, seed=0):
    """Flatten + Dense: every pixel has its own weight, so not invariant."""
    keras.utils.set_random_seed(seed)
    inputs = keras.Input((size, size, 3))
    x = keras.layers.Conv2D(4, 3, strides=2)(inputs)
    x = keras.layers.Flatten()(x)
    return keras.Model(inputs, keras.layers.Dense(classes)(x))


def random_dataset(n=24, size=40, classes=10, seed=0):
    rng = np.random.default_rng(seed)
    images = rng.integers(0, 256, (n, size, size, 3)).astype("uint8")
    labels = rng.integers(0, classes, n)
    return tf.data.Dataset.from_tensor_slices((images, labels))


# --- building blocks ----------------------------------------------------


def test_crop_views_is_crop_then_roll():
    rng = np.random.default_rng(1)
    images = rng.integers(0, 256, (5, 12, 12, 2)).astype("uint8")
    views = np.stack(
        [rng.integers(0, 5, 5), rng.integers(0, 5, 5)]
        + [rng.integers(0, 8, 5), rng.integers(0, 8, 5)],
        axis=1,
    ).astype("int32")
    got = np.asarray(shifts.crop_views(images, views, 7))
    for b, (cy, cx, ry, rx) in enumerate(views):
        crop = images[b, cy : cy + 7, cx : cx + 7]
        np.testing.assert_array_equal(got[b], np.roll(crop, (ry, rx), axis=(0, 1)))


@pytest.mark.parametrize(
    "shape, expected_resized",
    [((40, 40), (40, 40)), ((300, 400), (256, 341)), ((500, 260), (492, 256))],
)
def test_resize_square_is_short_side_then_centre_crop(shape, expected_resized):
    size = 40 if shape == (40, 40) else 256
    image = np.random.default_rng(0).integers(0, 256, (*shape, 3)).astype("uint8")
    got = _runner.resize_square(tf.constant(image), size).numpy()
    assert got.shape == (size, size, 3) and got.dtype == np.uint8
    if shape == (40, 40):
        np.testing.assert_array_equal(got, image)  # already square: untouched
    else:
        resized = tf.image.resize(
            image.astype("float32"), expected_resized, antialias=True
        ).numpy()
        top = (expected_resized[0] - size) // 2
        left = (expected_resized[1] - size) // 2
        want = np.round(np.clip(resized[top : top + size, left : left + size], 0, 255))
        np.testing.assert_array_equal(got, want.astype("uint8"))


def test_float_images_stay_float():
    image = tf.random.uniform((50, 60, 3), -2, 2)
    got = _runner.resize_square(image, 32)
    assert got.dtype == tf.float32 and float(tf.reduce_min(got)) < 0


def test_consistency_offsets_are_uniform_seeded_and_per_image():
    draws = np.stack(
        [crop_pair_views(i, 7, passes=5, max_shift=32).numpy() for i in range(400)]
    )
    assert draws.shape == (400, 10, 4)
    offsets = draws[..., :2]
    assert offsets.min() == 0 and offsets.max() == 31
    assert (draws[..., 2:] == 0).all()  # crops, not rolls
    # Roughly uniform: every value of [0, 32) drawn, mean near 15.5.
    assert len(np.unique(offsets)) == 32
    assert abs(offsets.mean() - 15.5) < 0.5
    # Reproducible from (seed, index); another seed, other offsets.
    again = crop_pair_views(3, 7, passes=5, max_shift=32).numpy()
    np.testing.assert_array_equal(again, draws[3])
    other = crop_pair_views(3, 8, passes=5, max_shift=32).numpy()
    assert not np.array_equal(other, draws[3])
    # The two crops of a pair are drawn independently.
    assert (offsets[:, 0::2] != offsets[:, 1::2]).any(axis=-1).mean() > 0.9


def test_roll_views_centre_crop_then_roll():
    views = roll_pair_views(0, 0, passes=3, max_shift=32, center=16).numpy()
    assert (views[:, :2] == 16).all()
    assert views[:, 2:].min() >= 0 and views[:, 2:].max() < 32


# --- the protocols on a model that reports where its crop starts ---------


def test_diagonal_shift_crops_at_o_o():
    size, shift = 16, 8
    square = size + shift
    model = where_model(size, square)
    data = (coordinate_images(3, square), np.zeros(3, "int64"))
    result = evaluation.diagonal_shift(
        model, data, max_shift=shift, preprocess=None, **QUIET
    )
    np.testing.assert_array_equal(result.offsets, np.arange(shift + 1))
    expected = np.arange(shift + 1) * square + np.arange(shift + 1)
    np.testing.assert_array_equal(result.predicted, np.tile(expected, (3, 1)))
    # Only offset 0 predicts class 0 (the label), with probability 1.
    np.testing.assert_array_equal(result.accuracy, [100.0] + [0.0] * shift)
    np.testing.assert_allclose(result.mean_probability, [1.0] + [0.0] * shift)


def test_shift_consistency_compares_the_drawn_crops():
    size, shift, passes, seed, n = 16, 4, 5, 3, 40
    square = size + shift
    model = where_model(size, square)
    data = (coordinate_images(n, square), np.zeros(n, "int64"))
    got = evaluation.shift_consistency(
        model, data, max_shift=shift, passes=passes, seed=seed, preprocess=None,
        batch_size=7, **QUIET,
    )
    # The model sees where each crop starts, so two crops agree exactly
    # when their offsets are equal.
    views = np.stack(
        [crop_pair_views(i, seed, passes=passes, max_shift=shift) for i in range(n)]
    )
    equal = (views[:, 0::2, :2] == views[:, 1::2, :2]).all(axis=-1)
    np.testing.assert_allclose(got["per_pass"], 100 * equal.mean(axis=0))
    assert got["num_images"] == n
    assert got["consistency"] == pytest.approx(100 * equal.mean())
    assert got["std"] == pytest.approx(np.std(100 * equal.mean(axis=0), ddof=1))
    assert 0 < got["consistency"] < 100


def test_consistency_does_not_depend_on_batching():
    model = position_model(32)
    data = random_dataset(30)
    kwargs = dict(max_shift=8, passes=3, seed=5, **QUIET)
    a = evaluation.shift_consistency(model, data, batch_size=4, **kwargs)
    b = evaluation.shift_consistency(model, data.batch(7), batch_size=16, **kwargs)
    assert a == b
    c = evaluation.shift_consistency(model, data, **{**kwargs, "seed": 6})
    assert c["per_pass"] != a["per_pass"]


# --- circular shifts ------------------------------------------------------


def test_circularly_invariant_model_scores_100():
    data = random_dataset(40)
    model = invariant_model(32)
    got = evaluation.circular_shift_consistency(
        model, data, max_shift=32, resize_size=40, **QUIET
    )
    assert got["consistency"] == 100.0 and got["per_pass"] == [100.0] * 5


def test_position_dependent_model_scores_below_100():
    data = random_dataset(40)
    got = evaluation.circular_shift_consistency(
        position_model(32), data, max_shift=32, resize_size=40, **QUIET
    )
    assert got["consistency"] < 100.0


# --- accuracy -------------------------------------------------------------


def level_model(classes=10):
    """Scores -(k - level)^2 where level = mean pixel / 20: top-1 = level."""
    inputs = keras.Input((16, 16, 3))
    level = keras.layers.Lambda(lambda x: keras.ops.mean(x, axis=(1, 2, 3)) / 20)(
        inputs
    )
    scores = keras.layers.Lambda(
        lambda v: -keras.ops.square(
            keras.ops.arange(classes, dtype="float32")[None] - v[:, None]
        )
    )(level)
    return keras.Model(inputs, scores)


def test_accuracy_top_k():
    levels = np.arange(8)
    images = np.ones((8, 20, 20, 3), "uint8") * (20 * levels)[:, None, None, None]
    model = level_model()
    right = evaluation.accuracy(
        model, (images, levels), top_k=(1, 3), preprocess=None, **QUIET
    )
    assert right == {"top1": 100.0, "top3": 100.0, "num_images": 8}
    # The neighbouring class is second (or tied second): in the top 3.
    off_by_one = evaluation.accuracy(
        model, (images, levels + 1), top_k=(1, 3), preprocess=None, **QUIET
    )
    assert off_by_one["top1"] == 0.0 and off_by_one["top3"] == 100.0
    far = evaluation.accuracy(
        model, (images, (levels + 5) % 10), top_k=(1, 3), preprocess=None, **QUIET
    )
    assert far["top3"] == 0.0


def test_tfds_dicts_and_one_hot_labels():
    import tensorflow_datasets as tfds

    with tfds.testing.mock_data(num_examples=12):
        data = tfds.load("mnist", split="train")  # {"image": 28x28x1, "label"}
        inputs = keras.Input((24, 24, 1))
        x = keras.layers.GlobalAveragePooling2D()(inputs)
        model = keras.Model(inputs, keras.layers.Dense(10)(x))
        got = evaluation.accuracy(model, data, resize_size=28, preprocess=None, **QUIET)
        assert got["num_images"] == 12 and 0 <= got["top1"] <= 100
        one_hot = data.map(lambda e: (e["image"], tf.one_hot(e["label"], 10)))
        assert evaluation.accuracy(
            model, one_hot, resize_size=28, preprocess=None, **QUIET
        ) == got


def test_logits_and_probabilities_give_the_same_curves():
    logits = position_model(32)
    probs = keras.Model(logits.inputs, keras.layers.Softmax()(logits.outputs[0]))
    data = random_dataset(10)
    a = evaluation.diagonal_shift(logits, data, max_shift=4, **QUIET)
    b = evaluation.diagonal_shift(probs, data, max_shift=4, **QUIET)
    np.testing.assert_allclose(a.probability, b.probability, atol=1e-6)
    np.testing.assert_array_equal(a.predicted, b.predicted)
    assert (a.probability > 0).all() and (a.probability < 1).all()


# --- results and plot --------------------------------------------------------


def test_diagonal_result_round_trip_and_plot(tmp_path):
    data = random_dataset(6)
    base = evaluation.diagonal_shift(position_model(32), data, max_shift=8, **QUIET)
    other = evaluation.diagonal_shift(invariant_model(32), data, max_shift=8, **QUIET)
    path = base.save(str(tmp_path / "curves.npz"))
    loaded = evaluation.DiagonalShiftResult.load(path)
    for field in ("offsets", "labels", "probability", "correct", "predicted"):
        np.testing.assert_array_equal(getattr(loaded, field), getattr(base, field))
    png = evaluation.plot_diagonal_shift(
        {"baseline": base, "antialiased": other}, str(tmp_path / "d.png"), title="t"
    )
    with open(png, "rb") as f:
        assert f.read(8) == b"\x89PNG\r\n\x1a\n"
    assert os.path.getsize(png) > 10_000
    assert sorted(os.listdir(tmp_path)) == ["curves.npz", "d.png"]  # no leftovers


def test_plot_rejects_non_results(tmp_path):
    with pytest.raises(ValueError, match="DiagonalShiftResult"):
        evaluation.plot_diagonal_shift({"a": [1, 2]}, str(tmp_path / "x.png"))
    assert not os.listdir(tmp_path)


# --- bad input ----------------------------------------------------------------


def test_unknown_input_size_needs_image_size():
    model = invariant_model(None)
    with pytest.raises(ValueError, match="Pass `image_size`"):
        evaluation.shift_consistency(model, random_dataset(2), **QUIET)
    got = evaluation.shift_consistency(
        model, random_dataset(4), image_size=24, max_shift=8, **QUIET
    )
    assert got["num_images"] == 4


@pytest.mark.parametrize(
    "kwargs, match",
    [
        ({"max_shift": 0}, "max_shift"),
        ({"passes": 0}, "passes"),
        ({"batch_size": 2.5}, "batch_size"),
        ({"image_size": -1}, "image_size"),
        ({"preprocess": "imagenet"}, "preprocess"),
        ({"interpolation": "area"}, "interpolation"),
    ],
)
def test_bad_consistency_arguments(kwargs, match):
    with pytest.raises(ValueError, match=match):
        evaluation.shift_consistency(
            invariant_model(32), random_dataset(2), **kwargs, **QUIET
        )


@pytest.mark.parametrize(
    "kwargs, match",
    [
        ({"top_k": (1, 0)}, "top_k"),
        ({"top_k": (11,)}, "top-11 of a model with 10 classes"),
        ({"resize_size": 16}, "resize_size"),
        ({"interpolation": "nearest"}, "interpolation.*bilinear"),
    ],
)
def test_bad_accuracy_arguments(kwargs, match):
    with pytest.raises(ValueError, match=match):
        evaluation.accuracy(invariant_model(32), random_dataset(2), **kwargs, **QUIET)


def test_bad_datasets():
    model = invariant_model(32)
    with pytest.raises(ValueError, match="tf.data.Dataset"):
        evaluation.accuracy(model, [1, 2, 3], **QUIET)
    with pytest.raises(ValueError, match=r"\(image, label\)"):
        evaluation.accuracy(model, tf.data.Dataset.range(3), **QUIET)
    with pytest.raises(ValueError, match="'image' and 'label'"):
        evaluation.accuracy(
            model, tf.data.Dataset.from_tensor_slices({"x": [1, 2]}), **QUIET
        )
    with pytest.raises(ValueError, match="empty"):
        evaluation.accuracy(model, random_dataset(4).take(0), **QUIET)
    with pytest.raises(ValueError, match="from_logits"):
        evaluation.diagonal_shift(model, random_dataset(2), from_logits="yes", **QUIET)


def test_labels_outside_the_model_are_refused():
    model = invariant_model(32, classes=10)
    data = random_dataset(4, classes=10).map(lambda x, y: (x, y + 10))
    with pytest.raises(ValueError, match="label 1[0-9], but the model has 10 classes"):
        evaluation.accuracy(model, data, **QUIET)
    with pytest.raises(ValueError, match="but the model has 10 classes"):
        evaluation.diagonal_shift(model, data, max_shift=2, **QUIET)


def test_multi_output_model_is_refused():
    inputs = keras.Input((32, 32, 3))
    x = keras.layers.GlobalAveragePooling2D()(inputs)
    model = keras.Model(inputs, [keras.layers.Dense(3)(x), keras.layers.Dense(3)(x)])
    with pytest.raises(ValueError, match="one output"):
        evaluation.accuracy(model, random_dataset(2), **QUIET)


# --- tf.distribute ---------------------------------------------------------------


def test_mirrored_strategy_gives_the_same_figures():
    """Two logical CPUs need a fresh process (devices are fixed at TF start)."""
    script = textwrap.dedent(
        """
        import json, numpy as np, tensorflow as tf
        cpu = tf.config.list_physical_devices("CPU")[0]
        tf.config.set_logical_device_configuration(
            cpu, [tf.config.LogicalDeviceConfiguration()] * 2)
        from tests.test_evaluation import position_model, random_dataset
        from keras_blurpool import evaluation
        data = random_dataset(37)
        kwargs = dict(max_shift=8, batch_size=8, verbose=0)
        plain = position_model(32)
        single = evaluation.shift_consistency(plain, data, **kwargs)
        diag = evaluation.diagonal_shift(plain, data, max_shift=4, verbose=0)
        strategy = tf.distribute.MirroredStrategy(["/cpu:0", "/cpu:1"])
        with strategy.scope():
            model = position_model(32)
            mirrored = evaluation.shift_consistency(model, data, **kwargs)
            mdiag = evaluation.diagonal_shift(model, data, max_shift=4, verbose=0)
        # Replicas return their halves in turn: compare as multisets.
        same = np.array_equal(np.sort(diag.predicted, 0), np.sort(mdiag.predicted, 0))
        print(json.dumps([single, mirrored, same, strategy.num_replicas_in_sync]))
        """
    )
    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    env = {**os.environ, "KERAS_BACKEND": "tensorflow", "PYTHONPATH": root}
    out = subprocess.run(
        [sys.executable, "-c", script], cwd=root, env=env, capture_output=True,
        text=True, timeout=300,
    )
    assert out.returncode == 0, out.stderr[-3000:]
    import json

    single, mirrored, same, replicas = json.loads(out.stdout.strip().splitlines()[-1])
    assert replicas == 2
    assert single == mirrored and single["num_images"] == 37
    assert same


# --- per-model preprocessing ----------------------------------------------


def test_bicubic_resize():
    from keras_blurpool.evaluation.preprocessing import resize_short_side

    rng = np.random.default_rng(0)
    image = rng.uniform(0, 255, (30, 40, 3)).astype("float32")
    bicubic = resize_short_side(image, 24, "bicubic").numpy()
    bilinear = resize_short_side(image, 24).numpy()
    assert bicubic.shape == bilinear.shape == (24, 32, 3)
    assert np.abs(bicubic - bilinear).max() > 1.0
    # Bicubic's negative lobes overshoot a random image's range; bilinear
    # never leaves it.
    assert bicubic.max() > image.max() or bicubic.min() < image.min()
    assert image.min() <= bilinear.min() and bilinear.max() <= image.max()
    flat = np.full((30, 40, 3), 77.0, "float32")
    np.testing.assert_allclose(resize_short_side(flat, 24, "bicubic"), 77.0, atol=1e-3)


def test_metrics_pass_the_interpolation_to_the_resize(monkeypatch):
    seen = []
    original = _runner.resize_square

    def spy(image, size, interpolation="bilinear"):
        seen.append(interpolation)
        return original(image, size, interpolation)

    monkeypatch.setattr(_runner, "resize_square", spy)
    data = random_dataset(4)
    evaluation.accuracy(invariant_model(32), data, interpolation="bicubic", **QUIET)
    evaluation.shift_consistency(
        invariant_model(32), data, max_shift=4, passes=1,
        interpolation="bicubic", **QUIET)
    evaluation.circular_shift_consistency(
        invariant_model(32), data, max_shift=4, passes=1,
        interpolation="bicubic", **QUIET)
    evaluation.diagonal_shift(
        invariant_model(32), data, max_shift=2, interpolation="bicubic", **QUIET)
    assert seen and set(seen) == {"bicubic"}


def test_eval_settings_follow_the_released_weights():
    timm = evaluation.eval_settings("resnetaa50d")
    assert (timm["image_size"], timm["resize_size"], timm["interpolation"]) == (
        224, 235, "bicubic")  # timm: floor(224 / 0.95)
    test = evaluation.eval_settings("resnetaa50d", test_size=True)
    assert (test["image_size"], test["resize_size"]) == (288, 288)
    big = evaluation.eval_settings("seresnextaa101d_32x8d")
    assert (big["image_size"], big["resize_size"]) == (288, 303)
    other = evaluation.eval_settings("seresnextaa101d_32x8d", "sw_in12k_ft_in1k")
    assert (other["image_size"], other["resize_size"]) == (224, 256)
    reference = evaluation.eval_settings("resnet50")
    assert (reference["image_size"], reference["resize_size"],
            reference["interpolation"]) == (224, 256, "bilinear")
    x = np.full((1, 2, 2, 3), 255.0 * 0.485, "float32")
    assert abs(float(np.asarray(timm["preprocess"](x))[0, 0, 0, 0])) < 1e-5
    with pytest.raises(ValueError, match="Released tags"):
        evaluation.eval_settings("resnetaa50d", "in22k")
    with pytest.raises(ValueError, match="Unknown architecture"):
        evaluation.eval_settings("resnetaa51d")


def test_eval_settings_other_statistics(monkeypatch):
    import dataclasses

    from keras_blurpool.applications import registry

    spec = registry.get("resnet18")
    config = dataclasses.replace(spec.preprocessing, mean=(0.5,) * 3, std=(0.5,) * 3)
    monkeypatch.setitem(
        registry._REGISTRY, "resnet18", dataclasses.replace(spec, preprocessing=config))
    normalize = evaluation.eval_settings("resnet18")["preprocess"]
    out = np.asarray(normalize(np.array([[[[0.0, 127.5, 255.0]]]], "float32")))
    np.testing.assert_allclose(out, [[[[-1.0, 0.0, 1.0]]]], atol=1e-6)


def test_resize_short_side_refuses_an_unknown_interpolation():
    from keras_blurpool.evaluation.preprocessing import resize_short_side

    with pytest.raises(ValueError) as info:
        resize_short_side(np.zeros((8, 8, 3), "float32"), 4, "nearest")
    message = str(info.value)
    assert "`interpolation`" in message and "'nearest'" in message
    assert "bilinear" in message and "bicubic" in message


def test_bicubic_resize_shape_rules():
    from keras_blurpool.evaluation.preprocessing import resize_short_side

    rng = np.random.default_rng(3)
    portrait = rng.uniform(0, 255, (50, 30, 3)).astype("float32")
    assert resize_short_side(portrait, 20, "bicubic").shape == (33, 20, 3)
    batch = rng.uniform(0, 255, (2, 30, 45, 3)).astype("float32")
    assert resize_short_side(batch, 20, "bicubic").shape == (2, 20, 30, 3)
    # Already the size: unchanged, whatever the interpolation.
    np.testing.assert_array_equal(
        resize_short_side(portrait, 30, "bicubic"), portrait)
    # Upsampling too; bicubic interpolates, so a linear ramp stays linear
    # away from the borders, as bilinear would.
    ramp = np.tile(np.arange(20, dtype="float32")[None, :, None], (20, 1, 1))
    up = resize_short_side(ramp, 40, "bicubic").numpy()[20, 8:32, 0]
    np.testing.assert_allclose(np.diff(up), 0.5, atol=1e-3)


def test_accuracy_with_bicubic_matches_a_manual_pipeline():
    from keras_blurpool.applications.imagenet_utils import preprocess_input
    from keras_blurpool.evaluation.preprocessing import center_crop

    rng = np.random.default_rng(5)
    images = rng.integers(0, 256, (16, 30, 40, 3)).astype("uint8")
    model = position_model(16, classes=10, seed=2)

    def predictions(interpolation):
        square = np.stack([
            _runner.resize_square(image, 20, interpolation) for image in images])
        crops = center_crop(square, 16).numpy().astype("float32")
        return model.predict(preprocess_input(crops), verbose=0).argmax(-1)

    bicubic, bilinear = predictions("bicubic"), predictions("bilinear")
    assert (bicubic != bilinear).any()  # else the test could not fail
    data = (images, bicubic.astype("int32"))
    kwargs = dict(top_k=1, image_size=16, resize_size=20, batch_size=5, **QUIET)
    got = evaluation.accuracy(model, data, interpolation="bicubic", **kwargs)
    assert got == {"top1": 100.0, "num_images": 16}
    plain = evaluation.accuracy(model, data, **kwargs)
    assert plain["top1"] == pytest.approx(100.0 * (bicubic == bilinear).mean())


def _bicubic_entry(monkeypatch, **preprocessing):
    """A registry entry "fake" with one released tag measured bicubic."""
    import dataclasses

    from keras_blurpool.applications import registry

    config = registry.Preprocessing(
        crop_pct=0.95, interpolation="bicubic", **preprocessing)
    spec = dataclasses.replace(
        registry.get("resnet18"), name="fake", default_tag="t1",
        hub_weights={
            "t1": registry.HubWeights(config),
            "t2": registry.HubWeights(registry.Preprocessing(
                input_size=160, crop_pct=1.0, mean=(0.5,) * 3, std=(0.5,) * 3)),
        })
    monkeypatch.setitem(registry._REGISTRY, "fake", spec)
    return spec


def test_eval_settings_of_a_bicubic_entry(monkeypatch):
    from keras_blurpool.applications.imagenet_utils import preprocess_input

    _bicubic_entry(monkeypatch, test_input_size=256, test_crop_pct=1.0)
    settings = evaluation.eval_settings("fake")
    assert sorted(settings) == [
        "image_size", "interpolation", "preprocess", "resize_size"]
    assert (settings["image_size"], settings["resize_size"],
            settings["interpolation"]) == (224, 235, "bicubic")
    assert settings["preprocess"] is preprocess_input  # ImageNet statistics
    test = evaluation.eval_settings("fake", test_size=True)
    assert (test["image_size"], test["resize_size"], test["interpolation"]) == (
        256, 256, "bicubic")
    other = evaluation.eval_settings("fake", "t2")
    assert (other["image_size"], other["resize_size"],
            other["interpolation"]) == (160, 160, "bilinear")
    # No test size recorded: test_size changes nothing.
    assert evaluation.eval_settings("fake", "t2", test_size=True)[
        "image_size"] == 160
    x = np.array([[[[0.0, 127.5, 255.0]]]], "float32")
    np.testing.assert_allclose(
        np.asarray(other["preprocess"](x)), [[[[-1.0, 0.0, 1.0]]]], atol=1e-6)
    with pytest.raises(ValueError, match="'fake' has no released weights "
                       "tagged 'in22k'. Released tags: \\['t1', 't2'\\]"):
        evaluation.eval_settings("fake", "in22k")


def test_eval_settings_feed_accuracy(monkeypatch):
    _bicubic_entry(monkeypatch, input_size=16)  # resize floor(16 / 0.95) = 16
    settings = evaluation.eval_settings("fake")
    assert settings["resize_size"] == 16
    seen = []
    original = _runner.resize_square

    def spy(image, size, interpolation="bilinear"):
        seen.append((size, interpolation))
        return original(image, size, interpolation)

    monkeypatch.setattr(_runner, "resize_square", spy)
    result = evaluation.accuracy(
        invariant_model(), random_dataset(6, size=24), top_k=1, **settings,
        **QUIET)
    assert result["num_images"] == 6
    assert seen and set(seen) == {(16, "bicubic")}


def test_accuracy_of_a_builder_default_model_needs_no_image_size():
    # The builders default to keras.applications' 224x224 input with the
    # classifier, from which evaluation reads the crop.
    from keras_blurpool import applications

    model = applications.MobileNetV2(weights=None)
    rng = np.random.default_rng(0)
    images = rng.integers(0, 256, (2, 240, 260, 3)).astype("uint8")
    labels = np.array([1, 2])
    result = evaluation.accuracy(model, (images, labels), verbose=0)
    assert set(result) >= {"top1", "top5"}
    assert 0 <= result["top1"] <= 100

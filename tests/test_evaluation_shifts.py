"""Worst-case, sub-pixel and flip-rate metrics, on models whose answer is known.

The shifts are checked against NumPy (`np.roll`, `np.fft`, linear
interpolation written out); the metrics against models that are exactly
invariant (1x1 convolutions + global average pooling) or that report
where their view starts, for which the figure follows from a formula.
"""

import os

import keras
import numpy as np
import pytest
import tensorflow as tf

from keras_blurpool import evaluation
from keras_blurpool.evaluation import shifts

QUIET = dict(verbose=0)
SQUARE = dict(resize_size=40)  # 32-pixel views of 40-pixel squares: margin 8


def to_numpy(x):
    return np.asarray(keras.ops.convert_to_numpy(x))


# --- the shifts ------------------------------------------------------------


@pytest.mark.parametrize("size", [(12, 10), (9, 11)])
def test_fourier_shift_by_integers_is_np_roll(size):
    rng = np.random.default_rng(0)
    images = rng.random((4, *size, 3)).astype("float32")
    amounts = [(1, 0), (-2, 3), (5, -7), (12, 21)]
    dy, dx = (np.array(a, "float32") for a in zip(*amounts))
    got = to_numpy(shifts.fourier_shift(images, dy, dx))
    for b, (y, x) in enumerate(amounts):
        want = np.roll(images[b], (y, x), axis=(0, 1))
        np.testing.assert_allclose(got[b], want, atol=1e-5, rtol=0)


def band_limited(images):
    """Drops the Nyquist row and column of even sides (cannot move by 1/2)."""
    spectrum = np.fft.fft2(images, axes=(1, 2))
    for axis in (1, 2):
        n = images.shape[axis]
        if n % 2 == 0:
            index = [slice(None)] * 4
            index[axis] = n // 2
            spectrum[tuple(index)] = 0
    return np.real(np.fft.ifft2(spectrum, axes=(1, 2))).astype("float32")


@pytest.mark.parametrize("size, limit", [((9, 11), False), ((12, 10), True)])
def test_two_half_pixel_fourier_shifts_are_a_one_pixel_roll(size, limit):
    rng = np.random.default_rng(1)
    images = rng.random((3, *size, 2)).astype("float32")
    if limit:
        images = band_limited(images)
    half = [(0.5, 0.0), (0.0, 0.5), (0.5, -0.5)]
    dy, dx = (np.array(a, "float32") for a in zip(*half))
    once = shifts.fourier_shift(images, dy, dx)
    twice = to_numpy(shifts.fourier_shift(once, dy, dx))
    for b, (y, x) in enumerate(half):
        want = np.roll(images[b], (int(2 * y), int(2 * x)), axis=(0, 1))
        np.testing.assert_allclose(twice[b], want, atol=1e-5, rtol=0)
        # Half a pixel is neither no shift nor a whole one.
        assert np.abs(to_numpy(once)[b] - images[b]).max() > 0.05
        assert np.abs(to_numpy(once)[b] - want).max() > 0.05


def test_fourier_half_pixel_shift_of_a_sinusoid_is_the_sinusoid_moved():
    n, k = 16, 3
    x = np.arange(n)
    wave = np.cos(2 * np.pi * k * x / n)
    image = np.tile(wave[None, :, None], (n, 1, 1)).astype("float32")[None]
    got = to_numpy(shifts.fourier_shift(image, np.zeros(1), np.full(1, 0.5)))
    want = np.cos(2 * np.pi * k * (x - 0.5) / n)
    np.testing.assert_allclose(got[0, 5, :, 0], want, atol=1e-5)


def numpy_fourier_shift(image, dy, dx):
    h, w = image.shape[:2]
    ky = np.fft.fftfreq(h)[:, None, None]
    kx = np.fft.fftfreq(w)[None, :, None]
    phase = np.exp(-2j * np.pi * (ky * dy + kx * dx))
    return np.real(np.fft.ifft2(np.fft.fft2(image, axes=(0, 1)) * phase, axes=(0, 1)))


def test_subpixel_views_against_numpy():
    rng = np.random.default_rng(2)
    square, size = 14, 10
    images = rng.random((3, square, square, 2)).astype("float32")
    crop = np.array([[1.5, 2.25, 0, 0], [0.0, 3.75, 0, 0], [4.0, 0.5, 0, 0]], "float32")
    roll = np.array([[2, 2, 0.5, 9.25], [2, 2, 3.0, 0.75], [1, 3, 9.5, 2.5]], "float32")

    def crop_at(b, y, x):
        return images[b, y : y + size, x : x + size]

    def roll_of(b, row, y, x):
        cy, cx = int(row[0]), int(row[1])
        return np.roll(crop_at(b, cy, cx), (y, x), axis=(0, 1))

    def bilinear(b, row, read):
        y, x = row
        fy, fx = y - np.floor(y), x - np.floor(x)
        y0, x0 = int(np.floor(y)), int(np.floor(x))
        return (
            (1 - fy) * (1 - fx) * read(b, y0, x0) + (1 - fy) * fx * read(b, y0, x0 + 1)
            + fy * (1 - fx) * read(b, y0 + 1, x0) + fy * fx * read(b, y0 + 1, x0 + 1)
        )

    got = to_numpy(shifts.subpixel_views(images, crop, size, method="bilinear", mode="crop"))
    for b, row in enumerate(crop):
        want = bilinear(b, row[:2], lambda b, y, x: crop_at(b, min(y, 4), min(x, 4)))
        np.testing.assert_allclose(got[b], want, atol=1e-5)
    got = to_numpy(
        shifts.subpixel_views(images, roll, size, method="bilinear", mode="circular"))
    for b, row in enumerate(roll):
        want = bilinear(b, row[2:], lambda b, y, x, row=row: roll_of(b, row, y, x))
        np.testing.assert_allclose(got[b], want, atol=1e-5)
    got = to_numpy(shifts.subpixel_views(images, crop, size, method="fourier", mode="crop"))
    for b, (y, x, _, _) in enumerate(crop):
        moved = numpy_fourier_shift(images[b], -(y % 1), -(x % 1))
        want = moved[int(y) : int(y) + size, int(x) : int(x) + size]
        np.testing.assert_allclose(got[b], want, atol=1e-5)
    got = to_numpy(
        shifts.subpixel_views(images, roll, size, method="fourier", mode="circular"))
    for b, row in enumerate(roll):
        base = crop_at(b, int(row[0]), int(row[1]))
        np.testing.assert_allclose(
            got[b], numpy_fourier_shift(base, row[2], row[3]), atol=1e-5)


@pytest.mark.parametrize("method", shifts.METHODS)
@pytest.mark.parametrize("mode", shifts.MODES)
def test_subpixel_views_at_integers_are_crop_views(method, mode):
    rng = np.random.default_rng(3)
    images = rng.random((2, 12, 12, 3)).astype("float32")
    if mode == "crop":
        views = np.array([[0, 4, 0, 0], [3, 1, 0, 0]], "int32")
    else:
        views = np.array([[1, 2, 3, 7], [0, 0, 9, 0]], "int32")
    want = to_numpy(shifts.crop_views(images, views, 8))
    got = to_numpy(shifts.subpixel_views(
        images, views.astype("float32"), 8, method=method, mode=mode))
    np.testing.assert_allclose(got, want, atol=1e-5)


def test_subpixel_views_refuse_unknown_method():
    with pytest.raises(ValueError, match="`method` must be one of"):
        shifts.subpixel_views(np.zeros((1, 4, 4, 1)), np.zeros((1, 4)), 2,
                              method="lanczos", mode="crop")


# --- models whose answer is known ---------------------------------------------


def invariant_model(size=32, classes=10, seed=0, activation="relu"):
    """1x1 convolutions + global average pooling: circularly invariant."""
    keras.utils.set_random_seed(seed)
    inputs = keras.Input((size, size, 3))
    x = keras.layers.Conv2D(16, 1, activation=activation)(inputs)
    x = keras.layers.GlobalAveragePooling2D()(x)
    return keras.Model(inputs, keras.layers.Dense(classes)(x))


def random_dataset(n=16, size=40, classes=10, seed=0):
    rng = np.random.default_rng(seed)
    images = rng.integers(0, 256, (n, size, size, 3)).astype("uint8")
    return tf.data.Dataset.from_tensor_slices((images, rng.integers(0, classes, n)))


QUANTUM = 4  # the where-model's resolution, in pixels
SIDE = 64  # classes per axis of the where-model


def where_model(view):
    """Predicts `floor(row / 4) * 64 + floor(col / 4)` of its top-left pixel.

    On images whose pixel (i, j) holds (i + a, j + b, 0), a view shifted
    by (dy, dx) (sub-pixel too, by linear interpolation) sees
    (a + dy, b + dx) there, so its class is known in closed form.
    """
    inputs = keras.Input((view, view, 3))

    def classify(x):
        row = keras.ops.floor(x[:, 0, 0, 0] / QUANTUM)
        col = keras.ops.floor(x[:, 0, 0, 1] / QUANTUM)
        return keras.ops.one_hot(keras.ops.cast(row * SIDE + col, "int32"), SIDE * SIDE)

    return keras.Model(inputs, keras.layers.Lambda(classify)(inputs))


def coordinate_images(n, size, seed=0):
    """Image k: pixel (i, j) = (i + a_k, j + b_k, 0); returns images, a, b."""
    rng = np.random.default_rng(seed)
    a, b = rng.integers(0, 100, n), rng.integers(0, 100, n)
    rows, cols = np.meshgrid(np.arange(size), np.arange(size), indexing="ij")
    images = np.stack(
        [np.stack([rows + a[k], cols + b[k], 0 * rows], axis=-1) for k in range(n)]
    ).astype("uint8")
    return images, a, b


def where_class(row, col):
    return (np.floor(row / QUANTUM) * SIDE + np.floor(col / QUANTUM)).astype(int)


# --- adversarial_shift_accuracy ----------------------------------------------


def test_adversarial_crop_grid_matches_the_formula():
    size, resize, n = 16, 22, 30  # margin 6, centre crop at 3
    images, a, b = coordinate_images(n, resize)
    labels = where_class(a + 3, b + 3)  # the clean view's class
    model = where_model(size)
    offsets = np.arange(0, 3)  # max_shift 2
    got = evaluation.adversarial_shift_accuracy(
        model, (images, labels), max_shift=2, image_size=size, resize_size=resize,
        preprocess=None, batch_size=7, **QUIET,
    )
    right = np.array([[[where_class(a[k] + oy, b[k] + ox) == labels[k]
                        for ox in offsets] for oy in offsets] for k in range(n)])
    assert got["num_shifts"] == 9 and got["offsets"] == [0, 1, 2]
    assert got["clean"] == 100.0
    assert got["adversarial"] == pytest.approx(100 * right.all(axis=(1, 2)).mean())
    assert got["mean"] == pytest.approx(100 * right.mean())
    assert 0 < got["adversarial"] < got["mean"] < 100  # the test can fail
    # The curve: worst case within r pixels of the clean view (3, 3).
    assert got["curve"]["range"] == [0, 1, 2, 3]
    for r, value in zip(got["curve"]["range"], got["curve"]["adversarial"]):
        near = np.abs(offsets - 3) <= r
        assert value == pytest.approx(100 * right[:, near][:, :, near].all(axis=(1, 2)).mean())
    assert got["curve"]["adversarial"][-1] == got["adversarial"]


def test_adversarial_half_pixel_grid_matches_the_formula():
    size, resize, n = 16, 20, 24  # centre crop at 2
    images, a, b = coordinate_images(n, resize, seed=1)
    labels = where_class(a + 2, b + 2)
    got = evaluation.adversarial_shift_accuracy(
        where_model(size), (images, labels), max_shift=2, step=0.5,
        image_size=size, resize_size=resize, preprocess=None, **QUIET,
    )
    offsets = np.arange(0, 2.5, 0.5)
    assert got["offsets"] == list(offsets) and got["method"] == "bilinear"
    right = np.array([[[where_class(a[k] + oy, b[k] + ox) == labels[k]
                        for ox in offsets] for oy in offsets] for k in range(n)])
    assert got["adversarial"] == pytest.approx(100 * right.all(axis=(1, 2)).mean())
    assert got["mean"] == pytest.approx(100 * right.mean())
    assert got["adversarial"] < got["clean"] == 100.0


def test_circularly_invariant_model_loses_nothing_under_every_roll():
    data = random_dataset(16)
    model = invariant_model(32)
    got = evaluation.adversarial_shift_accuracy(
        model, data, mode="circular", max_shift=6, step=2, **QUIET)
    assert got["num_shifts"] == 16 and got["mode"] == "circular"
    assert 0 < got["clean"] < 100  # random labels: some right, some wrong
    assert got["adversarial"] == got["clean"] == got["mean"]
    assert set(got["curve"]["adversarial"]) == {got["clean"]}
    clean = evaluation.accuracy(model, data, top_k=1, **QUIET)["top1"]
    assert got["clean"] == clean


def test_linear_invariant_model_is_invariant_to_half_pixel_shifts_too():
    # Without a nonlinearity the global mean is all that matters, and both
    # sub-pixel shifts keep it.
    data = random_dataset(12)
    model = invariant_model(32, activation=None)
    for method in shifts.METHODS:
        got = evaluation.adversarial_shift_accuracy(
            model, data, mode="circular", offsets=[0, 0.5, 7.5], method=method,
            **QUIET)
        assert got["adversarial"] == got["clean"], method
        frac = evaluation.fractional_shift_consistency(
            model, data, method=method, shifts=[0.5, (0.25, -3.5)], **QUIET)
        assert frac["consistency"] == frac["all"] == 100.0, method


def test_position_dependent_model_loses_accuracy_under_the_grid():
    from keras_blurpool.applications.imagenet_utils import preprocess_input

    keras.utils.set_random_seed(0)
    inputs = keras.Input((32, 32, 3))
    x = keras.layers.Flatten()(keras.layers.Conv2D(4, 3, strides=2)(inputs))
    model = keras.Model(inputs, keras.layers.Dense(10)(x))
    images = np.random.default_rng(0).integers(0, 256, (20, 40, 40, 3)).astype("uint8")
    # Labelled by the prediction on the centre crop: clean accuracy 100.
    centre = preprocess_input(images[:, 4:36, 4:36].astype("float32"))
    labels = model.predict(centre, verbose=0).argmax(-1)
    got = evaluation.adversarial_shift_accuracy(
        model, (images, labels), max_shift=8, step=4, **SQUARE, **QUIET)
    assert got["clean"] == 100.0 and got["adversarial"] < got["mean"] < 100.0


def test_adversarial_figures_do_not_depend_on_batching():
    data = random_dataset(13)
    model = invariant_model(32, seed=3)
    kwargs = dict(mode="crop", max_shift=8, step=4, **SQUARE, **QUIET)
    a = evaluation.adversarial_shift_accuracy(model, data, batch_size=3, **kwargs)
    b = evaluation.adversarial_shift_accuracy(model, data.batch(5), batch_size=8, **kwargs)
    assert a == b


def test_plot_adversarial_shift(tmp_path):
    data = random_dataset(6)
    kwargs = dict(max_shift=8, step=4, **SQUARE, **QUIET)
    results = {
        "plain": evaluation.adversarial_shift_accuracy(invariant_model(32), data, **kwargs),
        "other": evaluation.adversarial_shift_accuracy(
            invariant_model(32, seed=1), data, **kwargs),
    }
    png = evaluation.plot_adversarial_shift(results, str(tmp_path / "w.png"), title="t")
    with open(png, "rb") as f:
        assert f.read(8) == b"\x89PNG\r\n\x1a\n"
    assert os.path.getsize(png) > 10_000
    with pytest.raises(ValueError, match="adversarial_shift_accuracy results"):
        evaluation.plot_adversarial_shift({"a": {"top1": 1}}, str(tmp_path / "x.png"))
    assert os.listdir(tmp_path) == ["w.png"]


# --- fractional_shift_consistency ------------------------------------------


def test_fractional_crop_consistency_matches_the_formula():
    size, resize, n = 16, 22, 30  # centre crop at 3, margin [-3, 3]
    images, a, b = coordinate_images(n, resize, seed=2)
    pairs = [(0.5, 0.0), (0.0, 0.5), (0.5, 0.5), (-1.5, 2.0)]
    got = evaluation.fractional_shift_consistency(
        where_model(size), (images, np.zeros(n, "int64")), shifts=pairs,
        method="bilinear", mode="crop", image_size=size, resize_size=resize,
        preprocess=None, batch_size=8, **QUIET,
    )
    clean = where_class(a + 3, b + 3)
    same = np.array([where_class(a + 3 + dy, b + 3 + dx) == clean for dy, dx in pairs])
    np.testing.assert_allclose(got["per_shift"], 100 * same.mean(axis=1))
    assert got["all"] == pytest.approx(100 * same.all(axis=0).mean())
    assert got["consistency"] == pytest.approx(100 * same.mean())
    assert got["shifts"] == [list(p) for p in pairs]
    assert 0 < got["all"] < got["consistency"] < 100


def test_fractional_shift_of_a_relu_model_is_not_free():
    data = random_dataset(24)
    model = invariant_model(32, seed=4)
    got = evaluation.fractional_shift_consistency(model, data, **QUIET)
    assert got["method"] == "fourier" and got["mode"] == "circular"
    # Integer rolls cannot change its answer; half-pixel ones can.
    whole = evaluation.fractional_shift_consistency(
        model, data, shifts=[(1, 0), (3, -5)], **QUIET)
    assert whole["all"] == 100.0
    assert 0 <= got["all"] <= got["consistency"] <= 100


# --- translation_flip_rate --------------------------------------------------


@pytest.mark.parametrize("direction", ["horizontal", "vertical"])
def test_flip_rate_matches_the_formula(direction):
    size, resize, n = 16, 24, 30  # margin 8: 9 frames
    images, a, b = coordinate_images(n, resize, seed=3)
    got = evaluation.translation_flip_rate(
        where_model(size), (images, np.zeros(n, "int64")), direction=direction,
        image_size=size, resize_size=resize, preprocess=None, batch_size=8, **QUIET,
    )
    moving = b if direction == "horizontal" else a
    t = np.arange(1, 9)
    flips = (moving[:, None] + t[None]) % QUANTUM == 0  # crosses a boundary
    assert got["length"] == 9 and got["direction"] == direction
    np.testing.assert_allclose(got["per_step"], 100 * flips.mean(axis=0))
    assert got["flip_rate"] == pytest.approx(100 * flips.mean())


def test_circularly_invariant_model_never_flips():
    got = evaluation.translation_flip_rate(
        invariant_model(32), random_dataset(12), mode="circular", length=33, **QUIET)
    assert got["flip_rate"] == 0.0 and len(got["per_step"]) == 32
    assert got["top5_distance"] == 0.0


# --- bad input, refused before any work ----------------------------------------


@pytest.mark.parametrize(
    "kwargs, match",
    [
        ({"max_shift": 9}, r"`max_shift` must be at most 8, the crop's margin.*"
         r"Received: max_shift=9"),
        ({"mode": "circular", "max_shift": 32}, r"at most 31.*image_size"),
        ({"step": float("nan")}, r"`step` must be a finite number > 0.*nan"),
        ({"step": float("inf")}, r"`step` must be a finite number"),
        ({"step": 0}, r"`step` must be a finite number > 0"),
        ({"step": 9, "max_shift": 8}, r"`step` must be at most max_shift=8"),
        ({"offsets": [0, float("nan")]}, r"`offsets` must be a finite number"),
        ({"offsets": [0, 9]}, r"`offsets` must lie in \[0, 8\]"),
        ({"offsets": []}, r"`offsets` must hold at least one"),
        ({"offsets": [0, 1], "max_shift": 2}, r"either `offsets` or `max_shift`"),
        ({"mode": "reflect"}, r"`mode` must be one of \('crop', 'circular'\)"),
        ({"method": "nearest"}, r"`method` must be one of \('fourier', 'bilinear'\)"),
        ({"max_shift": 1.5}, r"`max_shift` must be"),
        ({"resize_size": 32}, r"no margin.*resize_size=32"),
    ],
)
def test_bad_adversarial_arguments(kwargs, match):
    # dataset=None: the argument is refused before the data is looked at.
    with pytest.raises(ValueError, match=match):
        evaluation.adversarial_shift_accuracy(
            invariant_model(32), None, **{**SQUARE, **kwargs}, **QUIET)


@pytest.mark.parametrize(
    "kwargs, match",
    [
        ({"shifts": [(0.5, float("inf"))]}, r"`shifts` must be a finite number"),
        ({"shifts": []}, r"non-empty sequence"),
        ({"shifts": [(1, 2, 3)]}, r"\(dy, dx\) pair"),
        ({"mode": "crop", "shifts": [(4.5, 0)]}, r"lie in \[-4, 4\].*\[\[4.5, 0.0\]\]"),
        ({"method": "sinc"}, r"`method` must be one of"),
    ],
)
def test_bad_fractional_arguments(kwargs, match):
    with pytest.raises(ValueError, match=match):
        evaluation.fractional_shift_consistency(
            invariant_model(32), None, **SQUARE, **kwargs, **QUIET)


@pytest.mark.parametrize(
    "kwargs, match",
    [
        ({"length": 10}, r"`length` must be an int from 2 to 9, the crop's margin"),
        ({"length": 1}, r"from 2 to 9"),
        ({"mode": "circular", "length": 34}, r"from 2 to 33, image_size \+ 1"),
        ({"direction": "diagonal"}, r"`direction` must be one of"),
        ({"length": 2.0}, r"Received: length=2.0"),
    ],
)
def test_bad_flip_rate_arguments(kwargs, match):
    with pytest.raises(ValueError, match=match):
        evaluation.translation_flip_rate(
            invariant_model(32), None, **SQUARE, **kwargs, **QUIET)


def test_empty_dataset_is_an_error():
    empty = random_dataset(4).take(0)
    model = invariant_model(32)
    for metric, kwargs in [
        (evaluation.adversarial_shift_accuracy, {"max_shift": 2}),
        (evaluation.fractional_shift_consistency, {}),
        (evaluation.translation_flip_rate, {}),
    ]:
        with pytest.raises(ValueError, match="`dataset` is empty"):
            metric(model, empty, **kwargs, **QUIET)


# --- tf.distribute ---------------------------------------------------------------


def test_mirrored_strategy_gives_the_same_figures():
    """Two logical CPUs need a fresh process (devices are fixed at TF start)."""
    import json
    import subprocess
    import sys
    import textwrap

    script = textwrap.dedent(
        """
        import json, tensorflow as tf
        cpu = tf.config.list_physical_devices("CPU")[0]
        tf.config.set_logical_device_configuration(
            cpu, [tf.config.LogicalDeviceConfiguration()] * 2)
        from tests.test_evaluation import position_model, random_dataset
        from keras_blurpool import evaluation

        def figures(model):
            data, kw = random_dataset(21), dict(batch_size=8, verbose=0, resize_size=40)
            return [
                evaluation.adversarial_shift_accuracy(model, data, max_shift=8, step=4, **kw),
                evaluation.adversarial_shift_accuracy(
                    model, data, mode="circular", offsets=[0, 0.5], **kw),
                evaluation.fractional_shift_consistency(model, data, **kw),
                evaluation.translation_flip_rate(model, data, length=5, **kw),
            ]

        single = figures(position_model(32))
        strategy = tf.distribute.MirroredStrategy(["/cpu:0", "/cpu:1"])
        with strategy.scope():
            mirrored = figures(position_model(32))
        print(json.dumps([single, mirrored, strategy.num_replicas_in_sync]))
        """
    )
    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    env = {**os.environ, "KERAS_BACKEND": "tensorflow", "PYTHONPATH": root}
    out = subprocess.run(
        [sys.executable, "-c", script], cwd=root, env=env, capture_output=True,
        text=True, timeout=300,
    )
    assert out.returncode == 0, out.stderr[-3000:]
    single, mirrored, replicas = json.loads(out.stdout.strip().splitlines()[-1])
    assert replicas == 2
    assert single == mirrored
    assert single[0]["num_images"] == 21 and single[0]["adversarial"] < 100


def test_top5_distance_is_imagenet_p_s():
    """Against Hendrycks & Dietterich's code, rankings from scipy."""
    stats = pytest.importorskip("scipy.stats")
    from keras_blurpool.applications.imagenet_utils import preprocess_input

    keras.utils.set_random_seed(1)
    inputs = keras.Input((32, 32, 3))
    x = keras.layers.Flatten()(keras.layers.Conv2D(4, 3, strides=2)(inputs))
    model = keras.Model(inputs, keras.layers.Dense(12)(x))
    images = np.random.default_rng(4).integers(0, 256, (6, 40, 40, 3)).astype("uint8")
    length = 6
    got = evaluation.translation_flip_rate(
        model, (images, np.zeros(6, "int64")), length=length, **SQUARE, **QUIET)

    # ImageNet-P's test.py: ranks by scipy's ordinal rankdata, distance
    # of each frame to the one before.
    cum_sum_top5 = np.cumsum(np.asarray([0] + [1] * 5 + [0] * (12 - 1 - 5)))
    frames = np.stack([images[:, 4:36, t : t + 32] for t in range(length)], axis=1)
    scores = model.predict(
        preprocess_input(frames.reshape(-1, 32, 32, 3).astype("float32")), verbose=0
    ).reshape(6, length, 12)
    distances, flips = [], []
    for video in scores:
        ranks = [stats.rankdata(-frame, method="ordinal").astype(int) for frame in video]
        for before, after in zip(ranks, ranks[1:]):
            sigma = after[np.argsort(before)]
            distances.append(np.sum(np.abs(cum_sum_top5[:5] - cum_sum_top5[sigma - 1][:5])))
        top1 = video.argmax(-1)
        flips.append(top1[1:] != top1[:-1])
    assert got["top5_distance"] == pytest.approx(np.mean(distances))
    assert got["flip_rate"] == pytest.approx(100 * np.mean(flips))
    assert got["top5_distance"] > 0 and 0 < got["flip_rate"] < 100


def test_top_distance_of_known_rankings():
    from keras_blurpool.evaluation.flip_rate import top_distance

    same = np.array([3, 1, 4, 0, 2])
    assert top_distance(same, same) == 0
    swapped = np.array([1, 3, 4, 0, 2])  # the two best swap: |0-1| + |1-0|
    assert top_distance(same, swapped) == 2
    # The best class drops out of the top 5: |0 - 5|, the others move up.
    dropped = np.array([1, 4, 0, 2, 9])
    assert top_distance(same, dropped) == 5 + 1 + 1 + 1 + 1

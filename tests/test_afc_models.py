"""ConvNeXt-Tiny-AFC and its controls: the authors' checkpoints load and
give their forward's logits; the shift-invariance guarantee holds.

Small configuration throughout (depths (1, 1, 1, 1), dims (8, 16, 16, 16),
96x96 inputs, the smallest side the networks take) to keep CI cheap.
"""

import numpy as np
import pytest

torch = pytest.importorskip("torch")

import keras  # noqa: E402

from keras_blurpool import applications  # noqa: E402
from keras_blurpool.evaluation.shifts import fourier_shift  # noqa: E402
from tests import _afc_torch  # noqa: E402

DEPTHS, DIMS, SIDE, CLASSES = (1, 1, 1, 1), (8, 16, 16, 16), 96, 5
BUILDERS = {
    "afc": applications.ConvNeXtTinyAFC,
    "circular": applications.ConvNeXtTinyCircular,
    "aps": applications.ConvNeXtTinyAPS,
}


def _model(variant, **kwargs):
    return BUILDERS[variant](
        input_shape=(SIDE, SIDE, 3), depths=DEPTHS, dims=DIMS, classes=CLASSES,
        classifier_activation=None, **kwargs)


def _images(n=2, seed=0):
    return np.random.default_rng(seed).standard_normal((n, SIDE, SIDE, 3)).astype("float32")


@pytest.mark.parametrize("variant", ["afc", "circular", "aps"])
def test_authors_checkpoint_loads_and_matches_their_forward(variant, tmp_path):
    state = _afc_torch.state_dict(variant, DEPTHS, DIMS, CLASSES, seed=1)
    ema = _afc_torch.state_dict(variant, DEPTHS, DIMS, CLASSES, seed=2)
    path = tmp_path / "checkpoint-best.pth"
    torch.save({"model": {k: torch.from_numpy(v) for k, v in state.items()},
                "model_ema": {k: torch.from_numpy(v) for k, v in ema.items()},
                "epoch": 299}, path)
    x = _images()
    want = _afc_torch.forward(torch, state, torch.from_numpy(x.transpose(0, 3, 1, 2)),
                              variant, DEPTHS)
    model = _model(variant, weights=str(path))
    got = keras.ops.convert_to_numpy(model(x))
    scale = np.abs(want).max()
    assert np.abs(got - want).max() <= 1e-4 * scale, (got, want)
    np.testing.assert_array_equal(got.argmax(-1), want.argmax(-1))
    # entry="model_ema" takes the moving average instead.
    applications.load_afc_checkpoint(model, path, entry="model_ema")
    want_ema = _afc_torch.forward(torch, ema, torch.from_numpy(x.transpose(0, 3, 1, 2)),
                                  variant, DEPTHS)
    got = keras.ops.convert_to_numpy(model(x))
    assert np.abs(got - want_ema).max() <= 1e-4 * np.abs(want_ema).max()


def test_checkpoint_of_another_variant_is_refused(tmp_path):
    path = tmp_path / "aps.pth"
    state = _afc_torch.state_dict("aps", DEPTHS, DIMS, CLASSES)
    torch.save({"model": {k: torch.from_numpy(v) for k, v in state.items()}}, path)
    model = _model("afc")
    before = [keras.ops.convert_to_numpy(w) for w in model.weights]
    with pytest.raises(ValueError, match="ConvNeXt-Tiny-APS's.*ConvNeXt-Tiny-AFC.*build "
                                         "ConvNeXtTinyAPS.*Received"):
        applications.load_afc_checkpoint(model, path)
    for b, w in zip(before, model.weights):
        np.testing.assert_array_equal(b, keras.ops.convert_to_numpy(w))
    with pytest.raises(ValueError, match="no 'model_ema' entry"):
        applications.load_afc_checkpoint(_model("aps"), path, entry="model_ema")
    with pytest.raises(ValueError, match="weights='imagenet'"):
        _model("afc", weights="imagenet")
    with pytest.raises(ValueError, match="existing file.*Received: weights="):
        _model("afc", weights=str(tmp_path / "missing.pth"))
    # Without the top, the checkpoint's `norm` and `head` are left out.
    headless = BUILDERS["aps"](input_shape=(SIDE, SIDE, 3), depths=DEPTHS, dims=DIMS,
                               include_top=False, pooling="avg", weights=str(path))
    assert headless.output_shape == (None, DIMS[-1])
    with pytest.raises(ValueError, match="multiples of 32.*Received"):
        applications.ConvNeXtTinyAFC(input_shape=(100, 100, 3), depths=DEPTHS, dims=DIMS)


def _max_relative_change(model, x, shifted):
    """Max over the shifted batch of max |logit change| / max |logit|."""
    base = keras.ops.convert_to_numpy(model(x))
    out = keras.ops.convert_to_numpy(model(shifted))
    return float(np.abs(out - base).max() / np.abs(base).max())


def test_shift_invariance_afc_aps_circular():
    """Max relative logit change over integer circular shifts (every
    offset 0..3 on each axis, plus two large ones) and half- and
    quarter-pixel Fourier shifts (`fourier_shift`), 96x96 inputs."""
    x = _images(1, seed=5)
    integer = [(dy, dx) for dy in range(4) for dx in range(4)] + [(17, 45), (50, 3)]
    fractional = [(0.5, 0.0), (0.0, 0.5), (0.5, 0.5), (0.25, 0.0), (0.25, 0.75)]
    results = {}
    for variant in BUILDERS:
        model = _model(variant)
        # Random weights as the test of the checkpoints uses (non-trivial
        # layer scales, so that every block matters).
        applications.load_afc_checkpoint(
            model, _afc_torch.state_dict(variant, DEPTHS, DIMS, CLASSES, seed=3))
        rolled = np.concatenate([np.roll(x, s, axis=(1, 2)) for s in integer])
        ints = _max_relative_change(model, x, rolled)
        dy, dx = np.array(fractional, "float32").T
        moved = fourier_shift(np.repeat(x, len(fractional), 0), dy, dx)
        fracs = _max_relative_change(model, x, keras.ops.convert_to_numpy(moved))
        # The logits do depend on the image (invariance is not constancy).
        other = _max_relative_change(model, x, _images(1, seed=6))
        assert other > 1e-2, (variant, other)
        results[variant] = (ints, fracs)
    print("max relative logit change (integer, fractional):", results)
    assert results["afc"][0] <= 1e-4 and results["afc"][1] <= 1e-4
    assert results["aps"][0] <= 1e-4 and results["aps"][1] > 1e-2
    assert results["circular"][0] > 1e-2 and results["circular"][1] > 1e-2


def test_fit_trains_the_polynomial_scales():
    model = _model("afc")
    model.compile(optimizer=keras.optimizers.SGD(0.01),
                  loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True))
    scales = [w for w in model.trainable_weights if w.name in ("in_scale", "out_scale")]
    assert len(scales) == 2 * (1 + sum(DEPTHS))  # the stem's and each block's
    before = [keras.ops.convert_to_numpy(w).copy() for w in scales]
    x, y = _images(4, seed=7), np.arange(4) % CLASSES
    history = model.fit(x, y, batch_size=2, epochs=1, verbose=0)
    assert np.isfinite(history.history["loss"]).all()
    changed = [not np.array_equal(b, keras.ops.convert_to_numpy(w))
               for b, w in zip(before, scales)]
    assert any(changed)


def test_full_convnext_tiny_afc_has_the_authors_parameters():
    # Every parameter of their convnext_afc_tiny, and nothing else: the
    # state dict of their layout at full size loads (shapes checked). Built
    # as `python -m recipes.train --arch convnext_afc_tiny` builds it.
    from recipes import models

    model = models.build_model("convnext_afc_tiny", 4, num_classes=1000, image_size=224)
    assert model.output_shape == (None, 1000)
    assert model.layers[-1].activation is keras.activations.linear  # logits
    state = _afc_torch.state_dict("afc", (3, 3, 9, 3), (96, 192, 384, 768), 1000)
    assert model.count_params() == sum(v.size for v in state.values())
    applications.load_afc_checkpoint(model, state)


def test_channels_first_gives_the_same_logits():
    state = _afc_torch.state_dict("afc", DEPTHS, DIMS, CLASSES, seed=4)
    x = _images()
    last = _model("afc")
    applications.load_afc_checkpoint(last, state)
    keras.config.set_image_data_format("channels_first")
    try:
        first = BUILDERS["afc"](input_shape=(3, SIDE, SIDE), depths=DEPTHS, dims=DIMS,
                                classes=CLASSES, classifier_activation=None)
        applications.load_afc_checkpoint(first, state)
        got = keras.ops.convert_to_numpy(first(x.transpose(0, 3, 1, 2)))
    finally:
        keras.config.set_image_data_format("channels_last")
    want = keras.ops.convert_to_numpy(last(x))
    assert np.abs(got - want).max() <= 1e-4 * np.abs(want).max()


def test_saved_model_reloads(tmp_path):
    model = _model("afc")
    applications.load_afc_checkpoint(
        model, _afc_torch.state_dict("afc", DEPTHS, DIMS, CLASSES, seed=5))
    path = tmp_path / "afc.keras"
    model.save(path)
    x = _images(1)
    again = keras.saving.load_model(path)
    np.testing.assert_allclose(keras.ops.convert_to_numpy(again(x)),
                               keras.ops.convert_to_numpy(model(x)), rtol=1e-5, atol=1e-6)


def test_convert_cli_points_to_the_builder(tmp_path, capsys):
    from keras_blurpool import convert

    with pytest.raises(SystemExit):
        convert.main(["convnext_afc_tiny", str(tmp_path / "x.pth"),
                      str(tmp_path / "x.weights.h5")])
    assert "ConvNeXtTinyAFC(weights=path)" in capsys.readouterr().err


def test_mixed_precision_forward_and_step_stay_finite():
    # The FFT layers and the alias-free LayerNorm compute in float32; the
    # polynomials run in float16 (at initialisation their largest output is
    # ~1.4e3 on N(0, 4) images, far below float16's 65504).
    x, y = _images(2, seed=8) * 2, np.arange(2)
    reference = _model("afc")
    keras.config.set_dtype_policy("mixed_float16")
    try:
        model = _model("afc")
        for target, source in zip(model.weights, reference.weights):
            target.assign(source)
        logits = keras.ops.convert_to_numpy(keras.ops.cast(model(x), "float32"))
        model.compile(optimizer="sgd", loss=keras.losses.SparseCategoricalCrossentropy(
            from_logits=True))
        loss = model.train_on_batch(x, y)
    finally:
        keras.config.set_dtype_policy("float32")
    want = keras.ops.convert_to_numpy(reference(x))
    assert np.isfinite(logits).all() and np.isfinite(loss)
    assert np.abs(logits - want).max() <= 3e-2 * np.abs(want).max()


@pytest.mark.parametrize("padding", ["zero", "same", None])
def test_padding_other_than_circular_is_refused(padding):
    with pytest.raises(ValueError, match=r"`padding` must be 'circular'\. "
                       rf"Received: padding={padding!r}"):
        applications.ConvNeXtTinyAFC(weights=None, padding=padding)

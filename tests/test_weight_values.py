"""NaN, infinite and out-of-range weights and negative variances are
refused on every load path, naming the tensor, unless the caller opts out
(`allow_nonfinite=True`, `--allow-nonfinite`).

One NaN in `conv1.weight` loaded silently and a ResNet's logits went to
4.6e37; a float64 1e300 became inf with only a NumPy warning; a negative
`running_var` loaded; recipes.evaluate wrote top-1 figures from NaN
weights to results.json without a word.
"""

import json
import os
import warnings

import keras
import numpy as np
import pytest

from keras_blurpool import applications
from keras_blurpool import load_torch_weights
from keras_blurpool.applications import registry
from tests.test_safetensors import write_state_dict


def torch_state_dict(model, arch, seed=0):
    """Random weights for `model` under the family's PyTorch names."""
    rng = np.random.default_rng(seed)
    names = registry.get(arch).torch_names(model)
    state = {}
    for layer in model.layers:
        if layer.name not in names or not layer.weights:
            continue
        prefix = names[layer.name]
        if isinstance(layer, keras.layers.BatchNormalization):
            n = layer.gamma.shape[0]
            state[f"{prefix}.weight"] = rng.uniform(0.5, 1.5, n).astype("f4")
            state[f"{prefix}.bias"] = rng.normal(0, 0.1, n).astype("f4")
            state[f"{prefix}.running_mean"] = rng.normal(0, 0.1, n).astype("f4")
            state[f"{prefix}.running_var"] = rng.uniform(0.5, 1.5, n).astype("f4")
            continue
        if isinstance(layer, keras.layers.Conv2D):
            kh, kw, inputs, outputs = layer.kernel.shape
            shape = (outputs, inputs, kh, kw)
        else:  # Dense
            inputs, outputs = layer.kernel.shape
            shape = (outputs, inputs)
        scale = np.sqrt(2 / np.prod(shape[1:]))
        state[f"{prefix}.weight"] = (rng.standard_normal(shape) * scale).astype("f4")
        if getattr(layer, "use_bias", False):
            state[f"{prefix}.bias"] = np.zeros(outputs, "f4")
    return state


def _resnet18(**kwargs):
    return applications.ResNet18(
        filter_size=None, antialias=None, input_shape=(32, 32, 3), classes=10,
        classifier_activation=None, **kwargs)


@pytest.fixture(scope="module")
def resnet18():
    model = _resnet18()
    return model, torch_state_dict(model, "resnet18")


def _damaged(state, key, change):
    state = dict(state)
    state[key] = change(state[key].copy())
    return state


def _set(index, value, dtype=None):
    def change(array):
        if dtype is not None:
            array = array.astype(dtype)
        array[index] = value
        return array

    return change


# (key, change, what the message says)
DAMAGE = {
    "nan": ("conv1.weight", _set((5, 1, 3, 3), np.nan),
            "'conv1.weight' holds 1 NaN (first at (5, 1, 3, 3))"),
    "inf": ("layer2.0.conv1.weight", _set((0, 0, 0, 0), -np.inf),
            "'layer2.0.conv1.weight' holds 1 infinite value"),
    "float64 1e300": ("fc.weight", _set((3, 7), 1e300, "float64"),
                      "'fc.weight' holds 1 value beyond float32's range"),
    "float16 inf": ("fc.bias", _set(2, np.inf, "float16"),
                    "'fc.bias' holds 1 infinite value"),
    "negative variance": ("layer1.0.bn2.running_var", _set(4, -0.25),
                          "'layer1.0.bn2.running_var' holds 1 negative "
                          "variance (first at (4,): -0.25)"),
}


@pytest.mark.parametrize("damage", sorted(DAMAGE))
def test_load_torch_weights_refuses_them_and_loads_nothing(resnet18, damage):
    model, state = resnet18
    key, change, message = DAMAGE[damage]
    load_torch_weights(model, state)
    before = [np.array(w) for w in model.weights]
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # NumPy's overflow warning was all
        with pytest.raises(ValueError) as info:
            load_torch_weights(model, _damaged(state, key, change))
    assert message in str(info.value), str(info.value)
    assert "nothing was loaded" in str(info.value)
    assert "allow_nonfinite=True" in str(info.value)
    for a, b in zip(before, model.weights):
        np.testing.assert_array_equal(a, np.array(b))


@pytest.mark.parametrize("damage", sorted(DAMAGE))
def test_allow_nonfinite_loads_them(resnet18, damage):
    from keras_blurpool.weights import values

    model, state = resnet18
    key, change, _ = DAMAGE[damage]
    damaged = _damaged(state, key, change)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        load_torch_weights(model, damaged, allow_nonfinite=True)
    problems = values.variable_problems(model)
    assert len(problems) == 1, problems
    # The clean state dict loads again: every other value was loaded too.
    load_torch_weights(model, state)
    assert values.variable_problems(model) == []


def test_clean_weights_give_finite_logits_and_damaged_ones_do_not(resnet18):
    model, state = resnet18
    x = np.random.default_rng(0).uniform(0, 1, (2, 32, 32, 3)).astype("f4")
    load_torch_weights(model, state)
    assert np.isfinite(np.asarray(model(x, training=False))).all()
    key, change, _ = DAMAGE["nan"]
    load_torch_weights(model, _damaged(state, key, change), allow_nonfinite=True)
    assert not np.isfinite(np.asarray(model(x, training=False))).all()
    load_torch_weights(model, state)


def test_several_problems_are_listed_together(resnet18):
    model, state = resnet18
    for name in ("nan", "negative variance", "float64 1e300"):
        key, change, _ = DAMAGE[name]
        state = _damaged(state, key, change)
    with pytest.raises(ValueError, match=r"\(3 tensor\(s\)\)") as info:
        load_torch_weights(model, state)
    for name in ("nan", "negative variance", "float64 1e300"):
        assert DAMAGE[name][2] in str(info.value)


def test_a_builders_weights_refuse_them(resnet18, tmp_path):
    model, state = resnet18
    key, change, message = DAMAGE["nan"]
    path = write_state_dict(tmp_path / "nan.safetensors", _damaged(state, key, change))
    with pytest.raises(ValueError, match=message.replace("(", r"\(").replace(")", r"\)")):
        _resnet18(weights=str(path))
    # A Keras .weights.h5 file: checked once Keras has loaded it.
    load_torch_weights(model, state)
    kernel = model.get_layer("conv1_conv").kernel
    kernel.assign(np.where(np.arange(kernel.shape[-1]) == 3, np.inf, np.array(kernel)))
    h5 = tmp_path / "inf.weights.h5"
    model.save_weights(h5)
    load_torch_weights(model, state)
    with pytest.raises(ValueError) as info:
        _resnet18(weights=str(h5))
    assert str(h5) in str(info.value)
    assert "'conv1_conv/kernel' holds 147 infinite values" in str(info.value)


def test_the_lps_mapping_refuses_them():
    from tests.test_lps_checkpoints import _authors_resnet18_state_dict
    from tests.test_lps_checkpoints import _lps_resnet18

    state = _authors_resnet18_state_dict()
    key = "core.layer2.0.conv2.0.component_selection.get_logits.conv1.weight"
    state[key] = state[key].copy()
    state[key][0, 0, 1, 1] = np.nan
    model = _lps_resnet18()
    with pytest.raises(ValueError) as info:
        load_torch_weights(model, state)
    assert (
        "'layer2.0.conv2.0.component_selection.get_logits.conv1.weight' holds "
        "1 NaN" in str(info.value)
    )
    load_torch_weights(model, state, allow_nonfinite=True)
    layer = model.get_layer("conv3_block1_2_blur").scoring_layers[0]
    assert np.isnan(np.asarray(layer.kernel)).sum() == 1


def test_convert_refuses_them_unless_allowed(tmp_path, capsys):
    from keras_blurpool import convert

    model = applications.ResNetBlur18(classes=10, classifier_activation=None)
    state = torch_state_dict(model, "resnetblur18")
    state["layer3.1.bn1.running_var"][7] = -1.0
    path = write_state_dict(tmp_path / "bad.safetensors", state)
    out = tmp_path / "out.weights.h5"
    with pytest.raises(SystemExit) as info:
        convert.main(["resnetblur18", str(path), str(out), "--no-compare"])
    assert "'layer3.1.bn1.running_var' holds 1 negative variance" in str(
        info.value.code)
    assert "--allow-nonfinite" in str(info.value.code)
    assert not out.exists()
    assert convert.main(["resnetblur18", str(path), str(out), "--no-compare",
                         "--allow-nonfinite"]) == 0
    assert out.exists()
    capsys.readouterr()


def test_released_weights_from_the_cache_refuse_them(reference, tmp_path,
                                                      monkeypatch):
    from tests.test_pretrained import _write_checkpoint

    torch, aa = reference
    torch.manual_seed(0)
    torch_model = aa.resnet18(filter_size=4)
    with torch.no_grad():
        torch_model.conv1.weight[0, 0, 0, 0] = float("nan")
    origin = _write_checkpoint(torch, torch_model, tmp_path, "resnet18_lpf4_finetune")
    monkeypatch.setitem(registry.get("resnet18").weights, 4, origin.as_uri())
    monkeypatch.setenv("KERAS_HOME", str(tmp_path / "keras_home"))
    for _ in range(2):  # fetched, then from the cache
        with pytest.raises(ValueError, match=r"'conv1.weight' holds 1 NaN"):
            applications.ResNet18(weights="imagenet", input_shape=(64, 64, 3))


def _demo_weights(path, filter_size, classes=3, poison=True):
    from recipes import models

    keras.utils.set_random_seed(0)
    model = models.build_model("demo", filter_size, num_classes=classes, image_size=32)
    if poison:
        kernel = model.trainable_weights[0]
        kernel.assign(np.full(kernel.shape, np.nan, "float32"))
    model.save_weights(path)
    return str(path)


def test_finetune_from_refuses_them_unless_allowed(tmp_path, capsys):
    from recipes import train

    path = _demo_weights(tmp_path / "baseline.weights.h5", None, classes=10)
    argv = ["--arch", "demo", "--filter-size", "4", "--finetune-from", path,
            "--epochs", "1", "--steps-per-epoch", "1", "--batch-size", "8",
            "--lr", "1e-12", "--no-validation", "--out-dir", str(tmp_path / "run")]
    assert train.main(argv) == 2
    err = capsys.readouterr().err
    assert str(path) in err and "holds 432 NaNs" in err, err
    assert "--allow-nonfinite" in err
    # Loaded as asked; training on NaN weights then diverges (exit 1).
    assert train.main([*argv, "--allow-nonfinite"]) in (0, 1)
    captured = capsys.readouterr()
    assert f"from baseline weights {path}" in captured.out
    assert "holds 432 NaNs" not in captured.err


def test_evaluate_refuses_them_or_says_so_in_its_results(tmp_path, capsys):
    from recipes import evaluate
    from tests.test_recipes_evaluate import jpeg_folder

    data = jpeg_folder(tmp_path / "images", ["cats", "dogs", "owls"])
    weights = _demo_weights(tmp_path / "nan.weights.h5", 4)
    out = tmp_path / "out"
    argv = ["--arch", "demo", "--filter-size", "4", "--weights", weights,
            "--data", data, "--image-size", "32", "--resize-size", "36",
            "--metrics", "accuracy", "--batch-size", "4", "--out-dir", str(out),
            "--verbose", "0"]
    with pytest.raises(SystemExit):
        evaluate.main(argv)
    err = capsys.readouterr().err
    assert "holds 432 NaNs" in err and "--allow-nonfinite" in err, err
    assert not (out / "results.json").exists()
    assert evaluate.main([*argv, "--allow-nonfinite"]) == 0
    err = capsys.readouterr().err
    assert "warning: the antialiased (filter 4) model's weights" in err, err
    results = json.loads((out / "results.json").read_text())
    (model,) = results["models"].values()
    assert any("holds 432 NaNs" in line for line in model["nonfinite_weights"])


def test_evaluate_writes_no_nonfinite_entry_for_clean_weights(tmp_path, capsys):
    from recipes import evaluate
    from tests.test_recipes_evaluate import jpeg_folder

    data = jpeg_folder(tmp_path / "images", ["cats", "dogs", "owls"])
    weights = _demo_weights(tmp_path / "w.weights.h5", 4, poison=False)
    out = tmp_path / "out"
    assert evaluate.main([
        "--arch", "demo", "--filter-size", "4", "--weights", weights,
        "--data", data, "--image-size", "32", "--resize-size", "36",
        "--metrics", "accuracy", "--batch-size", "4", "--out-dir", str(out),
        "--verbose", "0", "--allow-nonfinite"]) == 0
    assert "warning" not in capsys.readouterr().err
    results = json.loads((out / "results.json").read_text())
    assert all("nonfinite_weights" not in m for m in results["models"].values())
    assert os.path.exists(out / "results.json")


def test_recipes_build_model_refuses_or_loads_them_for_the_zoo(resnet18, tmp_path):
    from recipes import models

    _, state = resnet18
    key, change, message = DAMAGE["inf"]
    path = str(write_state_dict(tmp_path / "inf.safetensors", _damaged(state, key, change)))
    build = dict(num_classes=10, image_size=32, weights=path, antialias="blur")
    with pytest.raises(ValueError, match="'layer2.0.conv1.weight' holds 1 infinite"):
        models.build_model("resnet18", None, **build)
    model = models.build_model("resnet18", None, allow_nonfinite=True, **build)
    kernel = np.asarray(model.get_layer("conv3_block1_1_conv").kernel)
    assert np.isinf(kernel).sum() == 1
    # The builder's own checks of `weights` still apply.
    with pytest.raises(ValueError, match="does not exist"):
        models.build_model("resnet18", None, allow_nonfinite=True,
                           **{**build, "weights": str(tmp_path / "missing.pth")})

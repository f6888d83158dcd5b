"""timm's anti-aliased ResNets against timm itself.

Each timm model is built with random weights at test time by the Python
that has timm (`.venv-timm`, see README "Tests"), in its own process:
importing torchvision after TensorFlow crashes a process. Its state dict
is saved as safetensors, the way the Hugging Face Hub holds it, loaded
through `weights=<path>`, and the logits compared. `weights="imagenet"`
is served from `file://` origins of those files: nothing is downloaded.
"""

from __future__ import annotations

import dataclasses
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import keras
import numpy as np
import pytest

from keras_blurpool import applications
from keras_blurpool.applications import registry
from keras_blurpool.applications import timm_resnet
from keras_blurpool.weights import download

_ROOT = Path(__file__).resolve().parents[1]
_SCRIPT = Path(__file__).with_name("_timm_reference.py")

# (id, builder, builder kwargs, timm name, timm kwargs, input side, zoo)
_CASES = [
    ("resnetblur18", "ResNetBlur18", {}, "resnetblur18", {}, 97, False),
    ("resnetblur50", "ResNetBlur50", {}, "resnetblur50", {}, 65, False),
    ("resnetaa34d", "ResNetAA34D", {}, "resnetaa34d", {}, 64, False),
    ("resnetaa50", "ResNetAA50", {}, "resnetaa50", {}, 64, False),
    ("resnetaa50d", "ResNetAA50D", {}, "resnetaa50d", {}, 224, False),
    ("seresnetaa50d", "SEResNetAA50D", {}, "seresnetaa50d", {}, 96, False),
    # The plain twins, timm's own networks (timm.create_model drops
    # `aa_layer=None`, so they are built by their names).
    ("resnet50", "ResNetBlur50", {"antialias": None}, "resnet50", {}, 64, False),
    ("resnet50d", "ResNetAA50D", {"antialias": None}, "resnet50d", {}, 64, False),
    ("resnet34d", "ResNetAA34D", {"antialias": None}, "resnet34d", {}, 64, False),
    ("resnetblur50d", "ResNetBlur50D", {}, "resnetblur50d", {}, 64, True),
    ("resnetblur101d", "ResNetBlur101D", {}, "resnetblur101d", {}, 64, True),
    ("resnetaa101d", "ResNetAA101D", {}, "resnetaa101d", {}, 64, True),
    ("seresnextaa101d_32x8d", "SEResNeXtAA101D_32x8d", {},
     "seresnextaa101d_32x8d", {}, 64, True),
    ("seresnextaa201d_32x8d", "SEResNeXtAA201D_32x8d", {},
     "seresnextaa201d_32x8d", {}, 64, True),
    ("seresnext101d_32x8d", "SEResNeXtAA101D_32x8d", {"antialias": None},
     "seresnext101d_32x8d", {}, 64, True),
]


def _timm_python() -> tuple[str | None, str]:
    """The Python that imports timm, or None and why not."""
    candidates = [os.environ.get("KERAS_BLURPOOL_TIMM_PYTHON")]
    candidates.append(str(_ROOT / ".venv-timm" / "bin" / "python"))
    for python in filter(None, candidates):
        if not os.path.exists(python):
            continue
        probe = subprocess.run(
            [python, "-c", "import timm, safetensors"],
            capture_output=True,
            text=True,
        )
        if probe.returncode == 0:
            return python, ""
        return None, f"{python} cannot import timm: {probe.stderr[-300:]}"
    return None, (
        "timm not installed: no KERAS_BLURPOOL_TIMM_PYTHON and no "
        f"{_ROOT / '.venv-timm'} (see README, Tests)"
    )


@pytest.fixture(scope="session")
def timm_models(request, tmp_path_factory):
    """Case id -> `(files prefix, trainable parameters)`, built in one go."""
    python, reason = _timm_python()
    if python is None:
        print(f"\nSKIP timm comparisons: {reason}")
        pytest.skip(reason)
    zoo = request.config.getoption("--zoo")
    directory = tmp_path_factory.mktemp("timm")
    jobs = [
        {"name": name, "kwargs": kwargs, "size": size, "out": str(directory / case)}
        for case, _, _, name, kwargs, size, is_zoo in _CASES
        if zoo or not is_zoo
    ]
    result = subprocess.run(
        [python, str(_SCRIPT)],
        input=json.dumps(jobs),
        capture_output=True,
        text=True,
        timeout=1800,
    )
    assert result.returncode == 0, result.stderr[-2000:]
    built = {}
    for line in result.stdout.splitlines():
        if line.startswith("{"):
            row = json.loads(line)
            built[Path(row["out"]).name] = (row["out"], row["params"])
    return built


def _trainable(model) -> int:
    return sum(int(np.prod(v.shape)) for v in model.trainable_weights)


def _check_logits(model, prefix):
    x = np.load(prefix + "_x.npy").transpose(0, 2, 3, 1)
    expected = np.load(prefix + "_y.npy")
    got = np.asarray(model(x, training=False))
    assert np.abs(got - expected).max() / np.abs(expected).max() < 1e-4
    np.testing.assert_array_equal(got.argmax(-1), expected.argmax(-1))


@pytest.mark.parametrize(
    "case, builder, kwargs",
    [
        pytest.param(
            case, builder, kwargs, id=case, marks=[pytest.mark.zoo] if zoo else []
        )
        for case, builder, kwargs, _, _, _, zoo in _CASES
    ],
)
def test_equals_timm(timm_models, case, builder, kwargs):
    prefix, params = timm_models[case]
    model = getattr(applications, builder)(
        weights=prefix + ".safetensors", classifier_activation=None,
        input_shape=(None, None, 3), **kwargs
    )
    assert _trainable(model) == params
    _check_logits(model, prefix)


@pytest.fixture
def served(timm_models, tmp_path, monkeypatch):
    """timm's `resnetblur50.bt_in1k` on a `file://` Hub; a private cache."""
    prefix, _ = timm_models["resnetblur50"]
    hub = tmp_path / "hub"
    target = hub / "resnetblur50.bt_in1k" / "resolve" / "main" / "model.safetensors"
    target.parent.mkdir(parents=True)
    shutil.copy(prefix + ".safetensors", target)
    monkeypatch.setattr(registry, "HUB_BASE_URL", hub.as_uri() + "/")
    monkeypatch.setenv("KERAS_HOME", str(tmp_path / "keras_home"))
    return prefix, target


def test_imagenet_weights_from_the_hub_then_offline(served):
    prefix, target = served
    model = applications.ResNetBlur50(
        weights="imagenet", classifier_activation=None, input_shape=(None, None, 3)
    )
    _check_logits(model, prefix)
    cached = Path(download.cache_dir()) / "resnetblur50.bt_in1k.npz"
    assert cached.is_file() and Path(str(cached) + ".sha256").is_file()
    target.unlink()  # offline: the cache answers
    again = applications.ResNetBlur50(
        weights="bt_in1k", classifier_activation=None, input_shape=(None, None, 3)
    )
    _check_logits(again, prefix)
    # The cached state dict loads into any head configuration.
    backbone = applications.ResNetBlur50(weights="imagenet", include_top=False)
    assert backbone.output_shape == (None, None, None, 2048)


def test_pinned_digest_mismatch_is_refused_and_nothing_cached(served, monkeypatch):
    spec = registry.get("resnetblur50")
    pinned = dataclasses.replace(spec.hub_weights["bt_in1k"], sha256="0" * 64)
    monkeypatch.setitem(spec.hub_weights, "bt_in1k", pinned)
    with pytest.raises(ValueError, match="corrupted.*registry says 0000"):
        applications.ResNetBlur50(weights="imagenet")
    assert not list(Path(download.cache_dir()).iterdir())


def test_truncated_hub_file_is_refused_and_nothing_cached(served):
    _, target = served
    data = target.read_bytes()
    target.write_bytes(data[: len(data) // 2])
    with pytest.raises(ValueError, match="resnetblur50.bt_in1k.*cannot be read"):
        applications.ResNetBlur50(weights="imagenet")
    assert not list(Path(download.cache_dir()).iterdir())


def test_convert_accepts_timm_names_and_safetensors(timm_models, tmp_path):
    prefix, _ = timm_models["resnetaa50d"]
    out = tmp_path / "resnetaa50d.weights.h5"
    result = subprocess.run(
        [sys.executable, "-m", "keras_blurpool.convert", "resnetaa50d",
         prefix + ".safetensors", str(out), "--no-compare"],
        capture_output=True, text=True, cwd=_ROOT,
    )
    assert result.returncode == 0, result.stderr[-2000:]
    assert "filter_size=3" in result.stdout
    model = applications.ResNetAA50D(
        weights=str(out), classifier_activation=None, input_shape=(None, None, 3)
    )
    _check_logits(model, prefix)


# Without timm: the arguments, the registry and the graph.


def test_no_released_weights_is_a_clear_error():
    with pytest.raises(ValueError, match="timm released no ImageNet weights for 'resnetblur18'"):
        applications.ResNetBlur18(weights="imagenet")


@pytest.mark.parametrize(
    "builder, kwargs, match",
    [
        ("ResNetAA50D", {"weights": "nope"}, "released tag .'sw_in12k_ft_in1k'"),
        ("ResNetAA50D", {"weights": "imagenet", "antialias": "blur"},
         "are for antialias='avg'"),
        ("ResNetBlur50", {"weights": "imagenet", "filter_size": 5},
         "filter_size=3, pad_type='reflect'"),
        ("ResNetBlur50", {"weights": "bt_in1k", "antialias": None},
         "plain twin"),
        ("ResNetAA50D", {"weights": "imagenet", "classes": 10}, "classes"),
        ("ResNetAA50D", {"padding": "reflect"}, "Received: padding=.reflect."),
        ("ResNetBlur18", {"input_shape": (31, 31, 3)}, "at least 32"),
        ("ResNetBlur18", {"filter_size": 7, "input_shape": (32, 32, 3)},
         "reflect padding"),
    ],
)
def test_bad_arguments(builder, kwargs, match):
    with pytest.raises(ValueError, match=match):
        getattr(applications, builder)(**kwargs)


def test_registry_records_timm_tags_and_preprocessing():
    spec = registry.get("seresnextaa101d_32x8d")
    assert spec.source == "timm" and spec.licence.startswith("Apache-2.0")
    assert spec.default_tag == "sw_in12k_ft_in1k_288"
    config = spec.preprocessing_for()
    assert (config.input_size, config.crop_pct, config.interpolation) == (
        288, 0.95, "bicubic")
    assert config.resize_size() == 303
    assert config.at_test_size().input_size == 320
    assert spec.preprocessing_for("ah_in1k").input_size == 224
    assert spec.hub_origin("ah_in1k") == (
        "https://huggingface.co/timm/seresnextaa101d_32x8d.ah_in1k/resolve/"
        "main/model.safetensors")
    with pytest.raises(ValueError, match="Released tags"):
        spec.preprocessing_for("in22k")
    released = {n for n, a in registry.ARCHITECTURES.items() if a.hub_weights}
    assert released == {
        "resnetblur50", "resnetaa50", "resnetaa50d", "resnetaa101d",
        "seresnextaa101d_32x8d", "seresnextaa201d_32x8d"}


def test_odd_sizes_run_where_timm_needs_multiples_of_32():
    # 200 -> 100 -> 50 -> 25: the first block of stage 4 gets an odd map,
    # on which timm's floor (main branch) and ceil (shortcut) disagree.
    model = applications.ResNetAA50D(input_shape=(200, 200, 3), weights=None)
    assert model.output_shape == (None, 1000)
    assert model.get_layer("conv4_block1_3_blur").input.shape[1:3] == (25, 25)
    assert model.get_layer("conv4_block1_0_pool").output.shape[1:3] == (13, 13)
    assert model.get_layer("conv4_block1_3_conv").output.shape[1:3] == (13, 13)


def test_smallest_input_and_zero_initialised_last_norms(tmp_path):
    model = applications.ResNetBlur18(input_shape=(32, 32, 3), classes=7)
    x = np.random.default_rng(0).uniform(size=(2, 32, 32, 3)).astype("float32")
    assert model(x).shape == (2, 7)
    # timm's zero_init_last: every block starts as its shortcut.
    last = [x for x in model.layers if x.name.endswith("_2_bn")]
    assert len(last) == 8
    assert all(not np.any(np.asarray(x.gamma)) for x in last)
    assert np.all(np.asarray(model.get_layer("conv2_block1_1_bn").gamma) == 1)
    path = tmp_path / "m.keras"
    model.save(path)
    restored = keras.saving.load_model(path)
    np.testing.assert_allclose(
        np.asarray(restored(x)), np.asarray(model(x)), rtol=1e-5, atol=1e-6)


def test_layer_names_give_backbone_features():
    model = applications.SEResNetAA50D(include_top=False, input_shape=(64, 64, 3))
    names = {layer.name for layer in model.layers}
    assert {"stem_1_conv", "stem_3_conv", "stem_pool", "conv3_block1_3_blur",
            "conv3_block1_0_pool", "conv2_block1_se_reduce",
            "conv4_block6_out", "conv5_block3_out"} <= names
    assert model.get_layer("conv2_block1_se_reduce").filters == 16
    assert model.get_layer("conv5_block1_se_reduce").filters == 128
    names_map = timm_resnet._torch_names(model)
    assert names_map["stem_2_bn"] == "conv1.4"
    assert names_map["conv2_block1_0_conv"] == "layer1.0.downsample.1"
    assert names_map["conv3_block1_0_bn"] == "layer2.0.downsample.2"
    assert names_map["conv2_block1_se_expand"] == "layer1.0.se.fc2"
    plain = applications.ResNetAA50(include_top=False, input_shape=(64, 64, 3))
    assert timm_resnet._torch_names(plain)["conv3_block1_0_bn"] == "layer2.0.downsample.1"


def test_benchmark_runs_at_a_tiny_size():
    """benchmarks/timm_speed.py prints its whole table (CPU, tiny)."""
    python, reason = _timm_python()
    if python is None:
        pytest.skip(reason)
    env = dict(os.environ, KERAS_BACKEND="tensorflow", TF_CPP_MIN_LOG_LEVEL="2")
    run = subprocess.run(
        [sys.executable, str(_ROOT / "benchmarks" / "timm_speed.py"),
         "--repeats", "1", "--warmup", "0", "--batch", "1", "--train-batch", "1",
         "--size", "64", "--timm-python", python],
        cwd=_ROOT, env=env, capture_output=True, text=True, timeout=600,
    )
    assert run.returncode == 0, run.stdout + run.stderr[-3000:]
    rows = [line for line in run.stdout.splitlines() if line.startswith("| Res")]
    assert len(rows) == 4, run.stdout
    assert all(row.count("|") == 7 for row in rows)

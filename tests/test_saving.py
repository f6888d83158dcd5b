"""Saved models reload in a new process, on every backend.

Every public layer and one model of every family is saved as `.keras`
here (on the suite's backend, TensorFlow by default), then loaded by a
fresh Python on TensorFlow, JAX and PyTorch that imports `keras_blurpool`
(which registers the layers) and nothing of this process, and must give
the same outputs.
"""

import importlib.util
import os
import subprocess
import sys
import textwrap

import keras
import numpy as np
import pytest

import keras_blurpool
from keras_blurpool import applications
from tests.conftest import REPO

_SIZE = 32


def _layer_models():
    """A small model around each public layer, by layer name."""

    def wrap(layer, shape=(_SIZE, _SIZE, 4)):
        inputs = keras.Input(shape)
        return keras.Model(inputs, layer(inputs))

    return {
        "BlurPool1D": wrap(keras_blurpool.BlurPool1D(filter_size=3), (_SIZE, 4)),
        "BlurPool2D": wrap(keras_blurpool.BlurPool2D(filter_size=4)),
        "BlurPool3D": wrap(keras_blurpool.BlurPool3D(filter_size=3), (8, 8, 8, 2)),
        "MaxBlurPool2D": wrap(keras_blurpool.MaxBlurPool2D(filter_size=3)),
        "BlurUpSampling2D": wrap(keras_blurpool.BlurUpSampling2D(filter_size=4)),
        "CircularPadding2D": wrap(keras_blurpool.CircularPadding2D(2)),
        "AdaptiveAvgPool2D": wrap(keras_blurpool.AdaptiveAvgPool2D(7)),
        "APSPool2D": wrap(keras_blurpool.APSPool2D(filter_size=3)),
        "LPSPool2D": wrap(keras_blurpool.LPSPool2D(filter_size=3)),
        "AntialiasAvgPool2D": wrap(keras_blurpool.layers.antialias.create_antialias(
            "avg", channels=4, strides=2, name="avg")),
    }


def _family_models():
    """One model of every family, small and headless where that is cheaper."""
    small = {"input_shape": (64, 64, 3)}
    return {
        "ResNet18": applications.ResNet18(classes=5, **small),
        "ResNet18_aps": applications.ResNet18(
            classes=5, antialias="aps", padding="circular", **small
        ),
        "VGG11BN": applications.VGG11BN(include_top=False, pooling="avg", **small),
        "AlexNet": applications.AlexNet(
            include_top=False, pooling="max", input_shape=(96, 96, 3)
        ),
        "DenseNet121": applications.DenseNet121(classes=5, **small),
        "MobileNetV2": applications.MobileNetV2(classes=5, **small),
        "ResNetBlur18": applications.ResNetBlur18(classes=5, **small),
    }


_LOADER = """
import json, sys
import numpy as np
import keras
import keras_blurpool  # registers the package's layers with Keras

folder, names = sys.argv[1], sys.argv[2].split(",")
worst = {}
for name in names:
    model = keras.saving.load_model(f"{folder}/{name}.keras")
    data = np.load(f"{folder}/{name}.npz")
    got = keras.ops.convert_to_numpy(model(data["x"], training=False))
    scale = max(float(np.abs(data["y"]).max()), 1e-6)
    worst[name] = float(np.abs(got - data["y"]).max()) / scale
print("RESULT " + json.dumps({"backend": keras.backend.backend(), "worst": worst}))
"""


@pytest.fixture(scope="module")
def saved(tmp_path_factory):
    folder = tmp_path_factory.mktemp("saved")
    rng = np.random.default_rng(0)
    models = {**_layer_models(), **_family_models()}
    for name, model in models.items():
        x = rng.standard_normal((2, *model.input_shape[1:])).astype("float32")
        y = keras.ops.convert_to_numpy(model(x, training=False))
        model.save(folder / f"{name}.keras")
        np.savez(folder / f"{name}.npz", x=x, y=y)
    return folder, sorted(models)


@pytest.mark.parametrize("backend", ["tensorflow", "jax", "torch"])
def test_saved_models_load_in_a_new_process_on_every_backend(saved, backend):
    module = {"tensorflow": "tensorflow", "jax": "jax", "torch": "torch"}[backend]
    if importlib.util.find_spec(module) is None:
        pytest.skip(f"{module} is not installed: the {backend} backend cannot run")
    folder, names = saved
    env = dict(os.environ, KERAS_BACKEND=backend, TF_CPP_MIN_LOG_LEVEL="2")
    env["PYTHONPATH"] = REPO + os.pathsep + env.get("PYTHONPATH", "")
    completed = subprocess.run(
        [sys.executable, "-c", textwrap.dedent(_LOADER), str(folder), ",".join(names)],
        cwd=folder, env=env, capture_output=True, text=True, timeout=600,
    )
    output = completed.stdout + completed.stderr
    assert completed.returncode == 0, output
    import json

    result = json.loads(completed.stdout.split("RESULT ")[-1])
    assert result["backend"] == backend
    assert set(result["worst"]) == set(names)
    bad = {name: rel for name, rel in result["worst"].items() if not rel <= 1e-5}
    assert not bad, f"outputs differ after loading on {backend}: {bad}"


def test_loading_without_importing_the_package_names_the_class(saved):
    # What a user sees when they forget `import keras_blurpool`: Keras's
    # own error, which names the class (docs say to import the package).
    folder, _ = saved
    source = (
        "import keras\n"
        f"keras.saving.load_model({str(folder / 'BlurPool2D.keras')!r})\n"
    )
    env = dict(os.environ, KERAS_BACKEND="tensorflow", TF_CPP_MIN_LOG_LEVEL="2")
    completed = subprocess.run(
        [sys.executable, "-c", source], cwd=folder, env=env,
        capture_output=True, text=True, timeout=300,
    )
    assert completed.returncode != 0
    assert "BlurPool2D" in completed.stdout + completed.stderr

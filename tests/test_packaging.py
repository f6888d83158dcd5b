"""The installed distribution: version, console script, no TensorFlow needed.

These tests look at the installed `keras-blurpool` (CI installs this
checkout with `pip install -e .`) and skip, with the reason, where it is
not installed.
"""

import importlib.metadata
import importlib.util
import os
import subprocess
import sys
import sysconfig
import textwrap

import numpy as np
import pytest

import keras_blurpool

DIST = "keras-blurpool"
SCRIPT = "keras-blurpool-convert"


def _installed_version():
    try:
        return importlib.metadata.version(DIST)
    except importlib.metadata.PackageNotFoundError:
        pytest.skip(f"{DIST} is not installed (pip install -e .)")


def _script_path():
    _installed_version()
    (entry_point,) = importlib.metadata.entry_points(
        group="console_scripts", name=SCRIPT
    )
    # Parses without importing Keras, then runs keras_blurpool.convert.
    assert entry_point.value == "keras_blurpool_cli.scripts:convert"
    # The script lies beside this interpreter (a venv's bin/), or in the
    # scheme's scripts folder.
    for folder in (os.path.dirname(sys.executable), sysconfig.get_path("scripts")):
        path = os.path.join(folder, SCRIPT)
        if os.path.isfile(path):
            return path
    pytest.skip(f"{SCRIPT} not found beside {sys.executable}")


def _run(args, **kwargs):
    return subprocess.run(
        args, capture_output=True, text=True, timeout=300, **kwargs
    )


def test_version_is_the_installed_metadata_version():
    assert keras_blurpool.__version__ == _installed_version()


def test_console_script_help():
    result = _run([_script_path(), "--help"])
    assert result.returncode == 0, result.stderr
    assert result.stdout.startswith(f"usage: {SCRIPT} ")
    assert "resnet50" in result.stdout and "--filter-size" in result.stdout


def test_console_script_converts_a_checkpoint(reference, tmp_path):
    torch, aa = reference
    script = _script_path()
    torch.manual_seed(0)
    checkpoint = tmp_path / "resnet18_lpf3.pth"
    torch.save(aa.resnet18(filter_size=3).state_dict(), checkpoint)
    out = tmp_path / "resnet18.weights.h5"

    # main() returns 0, which the script hands to sys.exit.
    result = _run([script, "resnet18", str(checkpoint), str(out), "--no-compare"])
    assert result.returncode == 0, result.stderr
    assert "filter_size=3" in result.stdout
    assert f"wrote {out} (resnet18, 1000 classes)" in result.stdout
    assert out.stat().st_size > 0


# Run in a child interpreter in which `import tensorflow` fails, as on a
# machine without it: builds a model, loads the reference's weights from a
# checkpoint, compares the logits, and imports keras_blurpool.evaluation.
_WITHOUT_TENSORFLOW = textwrap.dedent(
    """
    import sys
    sys.modules["tensorflow"] = None  # `import tensorflow` raises ImportError

    import numpy as np

    import keras_blurpool
    from keras_blurpool.applications import ResNet18
    from keras_blurpool.weights import read_torch_checkpoint

    checkpoint, x_path, expected_path = sys.argv[1:]
    model = ResNet18(
        filter_size=3, classes=10, classifier_activation=None, input_shape=(64, 64, 3)
    )
    keras_blurpool.load_torch_weights(model, read_torch_checkpoint(checkpoint))
    x = np.load(x_path)
    got = model.predict_on_batch(x.transpose(0, 2, 3, 1))
    np.testing.assert_allclose(got, np.load(expected_path), rtol=1e-4, atol=1e-4)
    try:
        import keras_blurpool.evaluation  # noqa: F401
    except ImportError as error:
        print("evaluation:", error)
    loaded = sorted(
        name for name, module in sys.modules.items()
        if name.split(".")[0] == "tensorflow" and module is not None
    )
    print("tensorflow modules:", loaded)
    """
)


@pytest.mark.parametrize("backend", ["jax", "torch"])
def test_layers_zoo_and_weights_without_tensorflow(reference, tmp_path, backend):
    if importlib.util.find_spec(backend) is None:
        pytest.skip(f"the {backend} backend is not installed")
    torch, aa = reference
    torch.manual_seed(0)
    torch_model = aa.resnet18(filter_size=3, num_classes=10).eval()
    checkpoint = tmp_path / "resnet18.pth"
    torch.save(torch_model.state_dict(), checkpoint)
    x = np.random.default_rng(0).standard_normal((2, 3, 64, 64)).astype("float32")
    with torch.no_grad():
        expected = torch_model(torch.from_numpy(x)).numpy()
    np.save(tmp_path / "x.npy", x)
    np.save(tmp_path / "expected.npy", expected)

    env = dict(os.environ, KERAS_BACKEND=backend)
    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    result = _run(
        [sys.executable, "-c", _WITHOUT_TENSORFLOW, str(checkpoint),
         str(tmp_path / "x.npy"), str(tmp_path / "expected.npy")],
        env=env,
        cwd=root,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    assert "tensorflow modules: []" in result.stdout
    assert "pip install 'keras-blurpool[tensorflow]'" in result.stdout

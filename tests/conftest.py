import os

import numpy as np
import pytest

from tests._torch_models import randomize_batchnorm  # noqa: F401  (re-exported)

os.environ.setdefault("KERAS_BACKEND", "tensorflow")

# Run by timm's own Python in a subprocess (tests/test_timm.py); importing
# it here would import timm beside TensorFlow.
collect_ignore = ["_timm_reference.py"]


def pytest_addoption(parser):
    parser.addoption(
        "--zoo",
        action="store_true",
        help="also run the reference comparison of every architecture",
    )


def pytest_configure(config):
    config.addinivalue_line(
        "markers", "zoo: whole-table reference comparison (run with --zoo)"
    )


def pytest_collection_modifyitems(config, items):
    if config.getoption("--zoo"):
        return
    skip = pytest.mark.skip(reason="whole architecture table: pass --zoo")
    for item in items:
        if "zoo" in item.keywords:
            item.add_marker(skip)


def _import_reference():
    try:
        import antialiased_cnns
        import torch
    except ImportError as error:  # pragma: no cover - depends on the machine
        return None, None, f"PyTorch reference not installed ({error})"
    torch.set_num_threads(2)
    return torch, antialiased_cnns, None


@pytest.fixture(scope="session")
def reference():
    """`(torch, antialiased_cnns)`; skips with the reason where absent."""
    torch, aa, reason = _import_reference()
    if reason:
        pytest.skip(reason)
    return torch, aa


def numpy_state_dict(torch_model):
    return {k: v.detach().cpu().numpy() for k, v in torch_model.state_dict().items()}


def assert_same_logits(torch, torch_model, keras_model, size=224, batch=2, seed=0):
    """Loads the reference's weights into `keras_model`, compares logits."""
    import keras_blurpool

    randomize_batchnorm(torch, torch_model, seed)
    keras_blurpool.load_torch_weights(keras_model, numpy_state_dict(torch_model))
    rng = np.random.default_rng(seed)
    h, w = (size, size) if np.isscalar(size) else size
    x = rng.standard_normal((batch, 3, h, w)).astype("float32")
    with torch.no_grad():
        expected = torch_model(torch.from_numpy(x)).numpy()
    import keras

    got = keras.ops.convert_to_numpy(
        keras_model(x.transpose(0, 2, 3, 1), training=False))
    assert got.shape == expected.shape
    rel = np.abs(got - expected).max() / np.abs(expected).max()
    assert rel < 1e-4, f"max |diff| / max |logit| = {rel:.3g}"
    np.testing.assert_array_equal(got.argmax(-1), expected.argmax(-1))
    return rel


REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def tensorflow_subprocess_env():
    """Environment for a test's TensorFlow subprocess run from the repo.

    TensorFlow whatever the parent's backend (the tests that use it are of
    tf.distribute features), and no inherited cluster.
    """
    env = dict(os.environ)
    env["PYTHONPATH"] = REPO + os.pathsep + env.get("PYTHONPATH", "")
    env["KERAS_BACKEND"] = "tensorflow"
    env["TF_CPP_MIN_LOG_LEVEL"] = "2"
    env.pop("TF_CONFIG", None)
    return env


def run_tensorflow_script(source, *argv, timeout=300):
    """Runs a test's TensorFlow script in a subprocess; its `RESULT` JSON.

    `source` (dedented) prints `RESULT <json>` last; a non-zero exit fails
    the test with the script's output.
    """
    import json
    import subprocess
    import sys
    import textwrap

    completed = subprocess.run(
        [sys.executable, "-c", textwrap.dedent(source), *map(str, argv)],
        cwd=REPO, env=tensorflow_subprocess_env(), capture_output=True,
        text=True, timeout=timeout,
    )
    output = completed.stdout + completed.stderr
    assert completed.returncode == 0, output
    return json.loads(completed.stdout.split("RESULT ")[-1]), output

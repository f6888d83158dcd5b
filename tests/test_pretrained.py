"""`weights="imagenet"`, `.pth` weights and the conversion CLI.

Checkpoints are written by the tests with torch (random weights) and
served from `file://` URLs: nothing is downloaded.
"""

import hashlib
import os

import numpy as np
import pytest

from keras_blurpool import applications
from keras_blurpool.applications import loading
from keras_blurpool.applications import registry
from keras_blurpool.weights import download
from tests.conftest import randomize_batchnorm


def _write_checkpoint(torch, torch_model, directory, stem):
    """Legacy-format `{'state_dict': ...}` named `stem-<sha256 prefix>.pth`."""
    tmp = directory / f"{stem}.tmp"
    torch.save(
        {"state_dict": torch_model.state_dict(), "epoch": 3},
        tmp,
        _use_new_zipfile_serialization=False,
    )
    digest = hashlib.sha256(tmp.read_bytes()).hexdigest()[:8]
    path = directory / f"{stem}-{digest}.pth"
    os.replace(tmp, path)
    return path


@pytest.fixture(scope="module")
def resnet18_checkpoint(reference, tmp_path_factory):
    torch, aa = reference
    torch.manual_seed(0)
    torch_model = randomize_batchnorm(torch, aa.resnet18(filter_size=4))
    directory = tmp_path_factory.mktemp("origin")
    path = _write_checkpoint(torch, torch_model, directory, "resnet18_lpf4_finetune")
    return torch_model, path


@pytest.fixture()
def served(resnet18_checkpoint, tmp_path, monkeypatch):
    """Serves a copy of the checkpoint as ('resnet18', 4); empty cache."""
    torch_model, original = resnet18_checkpoint
    origin = tmp_path / "origin" / original.name
    origin.parent.mkdir()
    origin.write_bytes(original.read_bytes())
    monkeypatch.setitem(registry.get("resnet18").weights, 4, origin.as_uri())
    monkeypatch.setenv("KERAS_HOME", str(tmp_path / "keras_home"))
    return torch_model, origin


def _cache_files():
    return sorted(os.listdir(download.cache_dir()))


def _logits(torch, torch_model, keras_model, seed=0):
    x = np.random.default_rng(seed).standard_normal((2, 3, 64, 64))
    x = x.astype("float32")
    with torch.no_grad():
        expected = torch_model(torch.from_numpy(x)).numpy()
    got = np.asarray(keras_model(x.transpose(0, 2, 3, 1), training=False))
    return got, expected


def test_imagenet_matches_reference_and_is_cached(reference, served):
    torch, _ = reference
    torch_model, origin = served
    model = applications.ResNet18(
        weights="imagenet", classifier_activation=None, input_shape=(None, None, 3)
    )
    got, expected = _logits(torch, torch_model, model)
    np.testing.assert_allclose(got, expected, rtol=1e-4, atol=1e-4)
    stem = origin.name.split(".")[0]
    assert _cache_files() == [f"{stem}.npz", f"{stem}.npz.sha256"]

    # Offline: the second load reads the cache only.
    origin.unlink()
    again = applications.ResNet18(
        weights="imagenet", classifier_activation=None, input_shape=(None, None, 3), name="again"
    )
    got_again, _ = _logits(torch, torch_model, again)
    np.testing.assert_array_equal(got_again, got)


def test_imagenet_headless_matches_penultimate(reference, served):
    torch, _ = reference
    torch_model, _ = served
    full = applications.ResNet18(
        weights="imagenet", classifier_activation=None, input_shape=(None, None, 3)
    )
    features = applications.ResNet18(
        weights="imagenet", include_top=False, pooling="avg",
        input_shape=(64, 64, 3),
    )
    import keras

    penultimate = keras.Model(full.input, full.get_layer("avg_pool").output)
    x = np.random.default_rng(1).standard_normal((2, 64, 64, 3)).astype("float32")
    np.testing.assert_allclose(
        np.asarray(features(x)), np.asarray(penultimate(x)), rtol=1e-5, atol=1e-6
    )


@pytest.mark.parametrize("damage", ["flip", "truncate"])
def test_damaged_download_leaves_nothing(served, damage):
    _, origin = served
    data = bytearray(origin.read_bytes())
    if damage == "flip":
        data[len(data) // 2] ^= 0xFF
    else:
        data = data[: len(data) // 2]
    origin.write_bytes(bytes(data))
    with pytest.raises(ValueError, match="corrupted|SHA-256"):
        applications.ResNet18(weights="imagenet")
    assert _cache_files() == []


def test_damaged_checkpoint_with_matching_hash_leaves_nothing(
    served, tmp_path, monkeypatch
):
    # A truncated file whose name carries its own (matching) hash gets past
    # the hash check; the reader must still reject it cleanly.
    _, origin = served
    data = origin.read_bytes()[:5000]
    digest = hashlib.sha256(data).hexdigest()[:8]
    bad = tmp_path / f"resnet18_lpf4_finetune-{digest}.pth"
    bad.write_bytes(data)
    monkeypatch.setitem(registry.get("resnet18").weights, 4, bad.as_uri())
    with pytest.raises(ValueError, match="cannot be read: .*(truncated|has 5000)"):
        applications.ResNet18(weights="imagenet")
    assert _cache_files() == []


def test_missing_origin_is_a_clear_error(served):
    _, origin = served
    origin.unlink()
    with pytest.raises(ValueError, match="Could not fetch"):
        applications.ResNet18(weights="imagenet")
    assert _cache_files() == []


@pytest.mark.parametrize(
    "builder, kwargs, message",
    [
        ("ResNet152", {"filter_size": 3}, r"'resnet152'.*\[4\]"),
        ("ResNet18", {"filter_size": 7}, r"'resnet18'.*\[2, 3, 4, 5\]"),
        ("VGG11", {"filter_size": 2}, r"'vgg11'.*\[4\]"),
        ("ResNet18", {"filter_size": None}, "filter_size=None"),
        ("ResNet18", {"classes": 10}, "classes=10"),
        ("ResNet18", {"pool_only": False}, "pool_only=False"),
        ("AlexNet", {"pool_only": True}, "pool_only=True"),
    ],
)
def test_unreleased_combinations(builder, kwargs, message):
    with pytest.raises(ValueError, match=message):
        getattr(applications, builder)(weights="imagenet", **kwargs)


def test_default_names_pick_the_table_not_the_user_name(served):
    # The reference name, not the user's `name`, selects the weights.
    model = applications.ResNet18(weights="imagenet", name="my_net")
    assert model.name == "my_net"


def test_registry_covers_every_architecture():
    reference = {
        arch: spec
        for arch, spec in registry.ARCHITECTURES.items()
        if spec.source == "reference"
    }
    assert len(reference) == 23
    # timm's: tests/test_timm.py; AFC's three: tests/test_afc_models.py
    assert len(registry.ARCHITECTURES) == 23 + 11 + 3
    for arch, spec in reference.items():
        assert spec.weights, arch
        for size, name in spec.weights.items():
            assert name.startswith(f"{arch}_lpf{size}")
            assert ("_finetune-" in name) == (size == 4)
        for size, name in spec.weights_from_scratch.items():
            assert name.startswith(f"{arch}_lpf{size}-")
        assert getattr(applications, spec.builder.__name__) is spec.builder


def test_pth_path_as_weights(reference, resnet18_checkpoint):
    torch, _ = reference
    torch_model, path = resnet18_checkpoint
    model = applications.ResNet18(weights=str(path), classifier_activation=None,
                                  input_shape=(None, None, 3))
    got, expected = _logits(torch, torch_model, model)
    np.testing.assert_allclose(got, expected, rtol=1e-4, atol=1e-4)
    headless = applications.ResNet18(weights=path, include_top=False)
    assert headless.get_layer("conv1_conv").get_weights()[0].shape == (7, 7, 3, 64)
    np.testing.assert_array_equal(
        headless.get_layer("conv1_conv").get_weights()[0],
        model.get_layer("conv1_conv").get_weights()[0],
    )


def test_bad_weights_argument():
    with pytest.raises(ValueError, match="imagenet"):
        applications.ResNet18(weights="model.onnx")
    with pytest.raises(ValueError, match="does not exist"):
        applications.ResNet18(weights="/nonexistent/x.pth")


# --- the conversion CLI ---------------------------------------------------


def test_convert_cli(reference, resnet18_checkpoint, tmp_path, capsys):
    from keras_blurpool import convert

    torch, _ = reference
    torch_model, path = resnet18_checkpoint
    out = tmp_path / "resnet18.weights.h5"
    assert convert.main(["resnet18", str(path), str(out)]) == 0
    printed = capsys.readouterr().out
    assert "filter_size=4" in printed and "largest logit difference" in printed
    assert sorted(os.listdir(tmp_path)) == ["resnet18.weights.h5"]
    model = applications.ResNet18(weights=str(out), classifier_activation=None,
                                  input_shape=(None, None, 3))
    got, expected = _logits(torch, torch_model, model)
    np.testing.assert_allclose(got, expected, rtol=1e-4, atol=1e-4)


def test_convert_cli_errors(resnet18_checkpoint, tmp_path, reference, capsys):
    from keras_blurpool import convert

    torch, aa = reference
    _, path = resnet18_checkpoint
    out = str(tmp_path / "x.weights.h5")
    with pytest.raises(SystemExit):
        convert.main(["resnet19", str(path), out])
    assert "resnet50" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        convert.main(["resnet18", str(path), str(tmp_path / "x.h5")])
    # Mismatched explicit filter size: load_torch_weights says so.
    with pytest.raises(SystemExit, match="filt"):
        convert.main(["resnet18", str(path), out, "--filter-size", "3"])
    # No BlurPool buffers: the filter size cannot be inferred.
    plain = tmp_path / "plain.pth"
    torch.save(aa.resnet18(filter_size=4).state_dict(), plain)
    from keras_blurpool.weights import read_torch_checkpoint

    state = {
        k: v for k, v in read_torch_checkpoint(plain).items()
        if not k.endswith(".filt")
    }
    torch.save({k: torch.from_numpy(v) for k, v in state.items()}, plain)
    with pytest.raises(SystemExit, match="--filter-size"):
        convert.main(["resnet18", str(plain), out])
    assert not os.path.exists(out)


def test_infer_filter_size():
    filt = np.ones((8, 1, 5, 5), "float32")
    assert loading.infer_filter_size({"a.filt": filt, "w": np.ones(3)}) == 5
    assert loading.infer_filter_size({"w": np.ones((3, 3, 1, 1))}) is None
    with pytest.raises(ValueError, match="mixes"):
        loading.infer_filter_size(
            {"a.filt": filt, "b.filt": np.ones((8, 1, 3, 3))}
        )


def test_headless_imagenet_builds_no_full_model(served):
    # The cache holds a state dict: a headless model loads it without the
    # 1000-class network ever being built.
    model = applications.ResNet18(
        weights="imagenet", include_top=False, input_shape=(64, 64, 3)
    )
    assert model.output_shape == (None, 2, 2, 512)
    assert all(not layer.name.startswith("predictions") for layer in model.layers)


# --- the cache's protections ------------------------------------------------


def test_cache_verifies_its_sha256(reference, served):
    torch, _ = reference
    torch_model, origin = served
    applications.ResNet18(weights="imagenet")
    stem = origin.name.split(".")[0]
    cached = os.path.join(download.cache_dir(), f"{stem}.npz")
    # Tamper with the cached state dict (same keys, other values).
    with np.load(cached) as archive:
        state = {k: archive[k] for k in archive.files}
    state["fc.bias"] = state["fc.bias"] + 1.0
    with open(cached, "wb") as f:
        np.savez(f, **state)
    with pytest.warns(UserWarning, match="does not match the SHA-256"):
        model = applications.ResNet18(
            weights="imagenet", classifier_activation=None, input_shape=(None, None, 3)
        )
    got, expected = _logits(torch, torch_model, model)
    np.testing.assert_allclose(got, expected, rtol=1e-4, atol=1e-4)


def test_cache_refuses_files_of_another_user(served):
    if os.geteuid() != 0:
        pytest.skip("needs root to give a file to another user")
    _, origin = served
    applications.ResNet18(weights="imagenet")
    stem = origin.name.split(".")[0]
    cached = os.path.join(download.cache_dir(), f"{stem}.npz")
    os.chown(cached, 12345, 12345)
    with pytest.raises(ValueError, match="owned by another user"):
        applications.ResNet18(weights="imagenet")


def test_cache_refuses_a_planted_directory(served):
    if os.geteuid() != 0:
        pytest.skip("needs root to give a directory to another user")
    directory = download.cache_dir()
    os.chown(directory, 12345, 12345)
    with pytest.raises(ValueError, match="owned by another user.*KERAS_HOME"):
        applications.ResNet18(weights="imagenet")


def test_cache_refuses_group_writable_files(served):
    _, origin = served
    applications.ResNet18(weights="imagenet")
    stem = origin.name.split(".")[0]
    cached = os.path.join(download.cache_dir(), f"{stem}.npz")
    os.chmod(cached, 0o666)
    with pytest.raises(ValueError, match="writable by other users"):
        applications.ResNet18(weights="imagenet")


def test_cache_directory_is_private(served):
    directory = download.cache_dir()
    assert os.stat(directory).st_mode & 0o777 == 0o700
    # One of ours that others could write is tightened, not trusted as is.
    os.chmod(directory, 0o777)
    assert download.cache_dir() == directory
    assert os.stat(directory).st_mode & 0o777 == 0o700


def test_unwritable_home_is_an_error_not_a_shared_fallback(tmp_path, monkeypatch):
    blocker = tmp_path / "a_file"
    blocker.write_text("")
    monkeypatch.setenv("KERAS_HOME", str(blocker))
    with pytest.raises(ValueError, match=r"Cannot create .*KERAS_HOME"):
        download.cache_dir()
    with pytest.raises(ValueError, match="KERAS_HOME"):
        applications.ResNet18(weights="imagenet")


# --- one loading path -------------------------------------------------------


def _old_style_densenet(reference):
    """The reference DenseNet-121's state dict under torchvision's old keys
    (`denselayer1.norm.1.weight`), as torchvision's released files have."""
    torch, aa = reference
    torch.manual_seed(0)
    torch_model = randomize_batchnorm(torch, aa.densenet121(filter_size=4))
    import re

    state = {}
    for key, value in torch_model.state_dict().items():
        key = re.sub(r"(denselayer\d+\.(?:norm|relu|conv))([12])\.", r"\1.\2.", key)
        state[key] = value
    assert any(".norm.1." in key for key in state)
    return torch, torch_model, state


def _densenet_logits(torch, torch_model, model):
    x = np.random.default_rng(0).standard_normal((1, 3, 64, 64)).astype("float32")
    with torch.no_grad():
        expected = torch_model(torch.from_numpy(x)).numpy()
    got = np.asarray(model(x.transpose(0, 2, 3, 1), training=False))
    np.testing.assert_allclose(got, expected, rtol=1e-4, atol=1e-4)


def test_old_densenet_keys_load_through_every_path(reference, tmp_path):
    import keras_blurpool
    from keras_blurpool import convert

    torch, torch_model, state = _old_style_densenet(reference)
    path = tmp_path / "densenet121_old.pth"
    torch.save(state, path)
    numpy_state = {k: v.numpy() for k, v in state.items()}

    model = applications.DenseNet121(classifier_activation=None, input_shape=(None, None, 3))
    keras_blurpool.load_torch_weights(model, numpy_state)
    _densenet_logits(torch, torch_model, model)

    model = applications.DenseNet121(weights=str(path), classifier_activation=None,
                                      input_shape=(None, None, 3))
    _densenet_logits(torch, torch_model, model)

    out = tmp_path / "densenet121.weights.h5"
    assert convert.main(["densenet121", str(path), str(out), "--no-compare"]) == 0
    model = applications.DenseNet121(weights=str(out), classifier_activation=None,
                                      input_shape=(None, None, 3))
    _densenet_logits(torch, torch_model, model)

    from recipes.train import _finetune_init

    model = applications.DenseNet121(classifier_activation=None, input_shape=(None, None, 3))
    _finetune_init("densenet121", str(path), num_classes=1000, image_size=None)(
        model
    )
    _densenet_logits(torch, torch_model, model)


def test_headless_load_ignores_the_classifier(reference, resnet18_checkpoint):
    import keras_blurpool
    from keras_blurpool.weights import read_torch_checkpoint

    _, path = resnet18_checkpoint
    state = read_torch_checkpoint(path)
    headless = applications.ResNet18(include_top=False)
    keras_blurpool.load_torch_weights(headless, state)
    np.testing.assert_array_equal(
        headless.get_layer("conv1_bn").moving_mean.numpy(), state["bn1.running_mean"]
    )


# --- convert: errors before any work, exit 0 once written -------------------


def test_convert_refuses_bad_outputs_before_reading(tmp_path, capsys):
    from keras_blurpool import convert

    missing = tmp_path / "nowhere.pth"  # never read: the output is checked first
    for out, message in (
        (tmp_path / "no_dir" / "x.weights.h5", "does not exist"),
        (tmp_path, "must end with"),
    ):
        with pytest.raises(SystemExit):
            convert.main(["resnet18", str(missing), str(out)])
        assert message in capsys.readouterr().err
    directory = tmp_path / "d.weights.h5"
    directory.mkdir()
    with pytest.raises(SystemExit):
        convert.main(["resnet18", str(missing), str(directory)])
    assert "is a directory" in capsys.readouterr().err


def test_convert_without_filters_compares_at_the_given_size(
    reference, tmp_path, capsys
):
    from keras_blurpool import convert

    torch, aa = reference
    torch.manual_seed(0)
    torch_model = randomize_batchnorm(torch, aa.resnet18(filter_size=4))
    state = {
        k: v for k, v in torch_model.state_dict().items() if not k.endswith(".filt")
    }
    path = tmp_path / "nofilt.pth"
    torch.save(state, path)
    out = tmp_path / "r.weights.h5"
    assert convert.main(["resnet18", str(path), str(out), "--filter-size", "4"]) == 0
    printed = capsys.readouterr().out
    assert "largest logit difference" in printed, printed
    diff = float(printed.split("reference: ")[1].split()[0])
    assert diff < 1e-3

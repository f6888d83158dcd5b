"""`weights="imagenet"`, `.pth` weights and the conversion CLI.

Checkpoints are written by the tests with torch (random weights) and
served from `file://` URLs: nothing is downloaded.
"""

import hashlib
import os

import numpy as np
import pytest

from keras_blurpool import applications
from keras_blurpool.weights import pretrained
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
    monkeypatch.setitem(
        pretrained.IMAGENET_WEIGHTS, ("resnet18", 4), origin.as_uri()
    )
    monkeypatch.setenv("KERAS_HOME", str(tmp_path / "keras_home"))
    return torch_model, origin


def _cache_files():
    return sorted(os.listdir(pretrained.cache_dir()))


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
    model = applications.ResNet18(weights="imagenet", classifier_activation=None)
    got, expected = _logits(torch, torch_model, model)
    np.testing.assert_allclose(got, expected, rtol=1e-4, atol=1e-4)
    stem = origin.name.split(".")[0]
    assert _cache_files() == [f"{stem}.weights.h5"]

    # Offline: the second load reads the cache only.
    origin.unlink()
    again = applications.ResNet18(
        weights="imagenet", classifier_activation=None, name="again"
    )
    got_again, _ = _logits(torch, torch_model, again)
    np.testing.assert_array_equal(got_again, got)


def test_imagenet_headless_matches_penultimate(reference, served):
    torch, _ = reference
    torch_model, _ = served
    full = applications.ResNet18(weights="imagenet", classifier_activation=None)
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
    monkeypatch.setitem(pretrained.IMAGENET_WEIGHTS, ("resnet18", 4), bad.as_uri())
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


def test_table_covers_every_architecture():
    archs = {arch for arch, _ in pretrained.IMAGENET_WEIGHTS}
    assert archs == set(pretrained.ARCHITECTURES)
    for (arch, size), name in pretrained.IMAGENET_WEIGHTS.items():
        assert name.startswith(f"{arch}_lpf{size}")
        assert ("_finetune-" in name) == (size == 4)


def test_pth_path_as_weights(reference, resnet18_checkpoint):
    torch, _ = reference
    torch_model, path = resnet18_checkpoint
    model = applications.ResNet18(weights=str(path), classifier_activation=None)
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
    model = applications.ResNet18(weights=str(out), classifier_activation=None)
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
    assert pretrained.infer_filter_size({"a.filt": filt, "w": np.ones(3)}) == 5
    assert pretrained.infer_filter_size({"w": np.ones((3, 3, 1, 1))}) is None
    with pytest.raises(ValueError, match="mixes"):
        pretrained.infer_filter_size(
            {"a.filt": filt, "b.filt": np.ones((8, 1, 3, 3))}
        )

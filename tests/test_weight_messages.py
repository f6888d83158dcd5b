"""Messages about weights say what happened, in printable words.

Key names were echoed raw (an ANSI escape in a key reached the terminal:
a hostile key could clear the line and print a fake "OK"); a directory,
FIFO or device given as `weights` was said not to exist; a hostile file
in the weights cache surfaced `MemoryError`, `BadZipFile` or NumPy's
advice to pass `allow_pickle=True`, without naming the cache file; a
`\\ud800` key made the message itself unprintable.
"""

import hashlib
import io
import os
import zipfile

import numpy as np
import pytest

from keras_blurpool import applications
from keras_blurpool import load_torch_weights
from keras_blurpool.weights import download

HOSTILE = "\x1b[2K\r\x1b[32mOK: every weight loaded\x1b[0m"


@pytest.fixture(scope="module")
def small_model():
    return applications.ResNet18(
        filter_size=None, antialias=None, input_shape=(32, 32, 3), classes=10)


@pytest.mark.parametrize("key", [HOSTILE, "fc.weight\u202e", "\ud800"])
def test_keys_are_shown_escaped(small_model, key):
    with pytest.raises(ValueError) as info:
        load_torch_weights(small_model, {key: np.zeros(3, "float32")})
    message = str(info.value)
    assert f"unexpected key {key!r}" in message
    assert all(c.isprintable() or c == "\n" for c in message), message
    message.encode("utf-8")  # printable on any UTF-8 terminal


def _special_files(tmp_path):
    directory = tmp_path / "weights.pth"
    directory.mkdir()
    yield directory, "is a directory, not a file"
    fifo = tmp_path / "fifo.pth"
    os.mkfifo(fifo)
    yield fifo, "is a FIFO, not a file"
    if os.path.exists("/dev/null"):
        device = tmp_path / "device.pth"
        device.symlink_to("/dev/null")
        yield device, "is a character device, not a file"
    loop = tmp_path / "loop.weights.h5"
    loop.symlink_to(loop.name)
    yield loop, "is a loop of symbolic links"
    yield tmp_path / "missing.safetensors", "does not exist"


def test_special_files_as_weights_are_called_what_they_are(tmp_path):
    for path, what in _special_files(tmp_path):
        with pytest.raises(ValueError) as info:
            applications.ResNet18(weights=str(path))
        assert f"{str(path)!r} {what}" in str(info.value), str(info.value)
        assert f"Received: weights={str(path)!r}" in str(info.value)


def test_finetune_from_a_directory_is_called_one(tmp_path, capsys):
    from recipes import train

    directory = tmp_path / "baseline.pth"
    directory.mkdir()
    with pytest.raises(SystemExit):
        train.main(["--arch", "demo", "--data", "demo", "--filter-size", "4",
                    "--finetune-from", str(directory)])
    err = capsys.readouterr().err
    assert f"argument --finetune-from: {str(directory)!r} is a directory" in err


ORIGIN = "file:///nowhere/resnet18_lpf4_finetune-8cc58f59.pth"


def _npy(header: dict, data: bytes = b"") -> bytes:
    buffer = io.BytesIO()
    np.lib.format.write_array_header_1_0(buffer, header)
    return buffer.getvalue() + data


def _zip(records: dict, compression=zipfile.ZIP_STORED) -> bytes:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", compression) as archive:
        for name, data in records.items():
            archive.writestr(name, data)
    return buffer.getvalue()


def _savez(compressed=False, **arrays) -> bytes:
    buffer = io.BytesIO()
    (np.savez_compressed if compressed else np.savez)(buffer, **arrays)
    return buffer.getvalue()


HOSTILE_CACHE = {
    "not a zip": (b"\x00" * 64, "BadZipFile"),
    "python objects": (_savez(w=np.array([None, 1], dtype=object)),
                       "holds object, not numbers"),
    "huge shape": (_zip({"w.npy": _npy({"descr": "<f4", "fortran_order": False,
                                        "shape": (10**12,)}, b"\0" * 16)}),
                   "declares 4000000000000 bytes of data but holds 16"),
    "records larger than the file": (
        _zip({"w.npy": _npy({"descr": "<f4", "fortran_order": False,
                             "shape": (2**20,)}, b"\0" * 2**22)},
             zipfile.ZIP_DEFLATED),
        "more than the file's"),
    "compressed": (_savez(compressed=True, w=np.zeros(3, "f4")), "compressed"),
    "bad descr": (_zip({"w.npy": _npy({"descr": 5, "fortran_order": False,
                                       "shape": (1,)}, b"\0" * 4)}),
                  "no valid .npy header"),
    "not an array": (_zip({"w.txt": b"hello"}), "is not a .npy array"),
}


@pytest.mark.parametrize("kind", sorted(HOSTILE_CACHE))
def test_hostile_cache_files_name_the_file(tmp_path, monkeypatch, kind):
    content, problem = HOSTILE_CACHE[kind]
    monkeypatch.setenv("KERAS_HOME", str(tmp_path / "home"))
    target = os.path.join(download.cache_dir(), "resnet18_lpf4_finetune-8cc58f59.npz")
    with open(target, "wb") as f:
        f.write(content)
    with open(target + ".sha256", "w") as f:
        f.write(hashlib.sha256(content).hexdigest() + "\n")
    os.chmod(target, 0o600)
    os.chmod(target + ".sha256", 0o600)
    with pytest.raises(ValueError) as info:
        download.cached_state_dict(ORIGIN)
    message = str(info.value)
    assert f"The cached file {target} cannot be read" in message, message
    assert problem in message, message
    assert "delete it and resnet18_lpf4_finetune-8cc58f59.npz.sha256" in message


def test_a_cached_file_written_by_numpy_savez_is_read(tmp_path, monkeypatch):
    monkeypatch.setenv("KERAS_HOME", str(tmp_path / "home"))
    arrays = {"conv1.weight": np.arange(24, dtype="f4").reshape(2, 3, 4),
              "fortran": np.asfortranarray(np.arange(6.0).reshape(2, 3)),
              "big_endian": np.arange(3, dtype=">i8"),
              "empty": np.zeros((0, 5), "f2"), "scalar": np.array(7, "i8")}
    content = _savez(**arrays)
    target = os.path.join(download.cache_dir(), "resnet18_lpf4_finetune-8cc58f59.npz")
    with open(target, "wb") as f:
        f.write(content)
    with open(target + ".sha256", "w") as f:
        f.write(hashlib.sha256(content).hexdigest() + "\n")
    got = download.cached_state_dict(ORIGIN)
    assert list(got) == list(arrays)
    for name, array in arrays.items():
        assert got[name].dtype == array.dtype and got[name].shape == array.shape
        np.testing.assert_array_equal(got[name], array)

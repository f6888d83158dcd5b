"""read_safetensors: the format's every dtype, and hostile files refused."""

import json
import os
import struct

import numpy as np
import pytest

from keras_blurpool.weights import read_safetensors

CODES = {"float64": "F64", "float32": "F32", "float16": "F16",
         "int64": "I64", "int32": "I32", "int16": "I16", "int8": "I8",
         "uint64": "U64", "uint32": "U32", "uint16": "U16", "uint8": "U8",
         "bool": "BOOL"}


def header_and_data(tensors, metadata=None):
    """The format written from its specification: (header dict, bytes)."""
    header, chunks, offset = {}, [], 0
    if metadata is not None:
        header["__metadata__"] = metadata
    for name, (code, shape, data) in tensors.items():
        header[name] = {"dtype": code, "shape": list(shape),
                        "data_offsets": [offset, offset + len(data)]}
        chunks.append(data)
        offset += len(data)
    return header, b"".join(chunks)


def write(path, header, data):
    with open(path, "wb") as f:
        f.write(struct.pack("<Q", len(json.dumps(header).encode()))
                + json.dumps(header).encode() + data)
    return path


def array_entry(array, code=None):
    array = np.asarray(array)
    return (code or CODES[array.dtype.name], array.shape,
            array.astype(array.dtype.newbyteorder("<")).tobytes())


def test_every_dtype_round_trips(tmp_path):
    rng = np.random.default_rng(0)
    arrays = {
        "conv1.weight": rng.standard_normal((4, 3, 3, 3)).astype("float32"),
        "f64": rng.standard_normal(5),
        "f16": rng.standard_normal((2, 3)).astype("float16"),
        "scalar": np.array(3.5, "float32"),
        "empty": np.zeros((0, 4), "float32"),
        "bn.num_batches_tracked": np.array(17, "int64"),
        "mask": rng.random(7) > 0.5,
        **{f"{t}": rng.integers(0, 100, 6).astype(t)
           for t in ("int32", "int16", "int8", "uint64", "uint32", "uint16",
                     "uint8")},
    }
    bf16_values = rng.standard_normal(6).astype("float32")
    bf16_bits = (bf16_values.view(np.uint32) >> 16).astype("<u2")
    tensors = {name: array_entry(a) for name, a in arrays.items()}
    tensors["bf16"] = ("BF16", (2, 3), bf16_bits.tobytes())
    path = write(tmp_path / "model.safetensors",
                 *header_and_data(tensors, {"format": "pt"}))
    got = read_safetensors(path)
    assert list(got) == list(tensors)  # the header's order
    for name, array in arrays.items():
        assert got[name].dtype == array.dtype, name
        np.testing.assert_array_equal(got[name], array)
        assert got[name].flags.writeable
    expected = (bf16_bits.astype(np.uint32) << 16).view(np.float32)
    np.testing.assert_array_equal(got["bf16"], expected.reshape(2, 3))
    assert got["bf16"].dtype == np.float32
    # The truncation to bfloat16 is all that changed the values.
    np.testing.assert_allclose(got["bf16"].ravel(), bf16_values, rtol=1e-2)


def test_reads_what_the_safetensors_package_writes(tmp_path):
    numpy_api = pytest.importorskip(
        "safetensors.numpy", reason="the safetensors package is optional")
    arrays = {"a": np.arange(12, dtype="float32").reshape(3, 4),
              "b": np.array([1, 2], "int64")}
    path = str(tmp_path / "x.safetensors")
    numpy_api.save_file(arrays, path)
    got = read_safetensors(path)
    for name, array in arrays.items():
        np.testing.assert_array_equal(got[name], array)


def _valid():
    return header_and_data({
        "a": array_entry(np.arange(4, dtype="float32")),
        "b": array_entry(np.arange(3, dtype="int64")),
    })


def _file(header=None, data=b"", raw=None):
    """The bytes of a file: length, header (a dict, or `raw` bytes), data."""
    raw = raw if raw is not None else json.dumps(header).encode()
    return struct.pack("<Q", len(raw)) + raw + data


def _bad_files():
    header, data = _valid()

    def changed(name, **fields):
        h = json.loads(json.dumps(header))
        h[name].update(fields)
        return h

    yield "short", b"\x01\x02", "shorter than the 8-byte"
    yield "huge header", struct.pack("<Q", 2**40), "more than"
    yield "truncated header", struct.pack("<Q", 500) + b"{}", "truncated"
    yield "not utf-8", _file(raw=b"\xff\xfe"), "not UTF-8"
    yield "not json", _file(raw=b"{nope"), "not JSON"
    yield "a list", _file(raw=b"[1, 2]"), "not a JSON object"
    yield ("deep", _file(raw=b"[" * 100_000 + b"]" * 100_000),
           "nests deeper")
    yield ("twice", _file(raw=b'{"a": {"dtype": "U8", "shape": [1], '
                          b'"data_offsets": [0, 1]}, "a": {"dtype": "U8", '
                          b'"shape": [1], "data_offsets": [1, 2]}}',
                          data=b"xy"), "names 'a' twice")
    yield ("dtype", _file(changed("a", dtype="F8_E4M3"), data),
           "dtype 'F8_E4M3'")
    yield "object dtype", _file(changed("a", dtype={"x": 1}), data), "has dtype"
    yield "negative dim", _file(changed("a", shape=[-4]), data), "shape [-4]"
    yield "float dim", _file(changed("a", shape=[4.0]), data), "shape [4.0]"
    yield "size", _file(changed("a", shape=[5]), data), "needs 20 bytes"
    yield ("huge shape", _file(changed("a", shape=[2**40, 2**40]), data),
           "needs")
    yield ("reversed", _file(changed("a", data_offsets=[16, 0]), data),
           "data_offsets")
    yield ("past the end",
           _file(changed("b", data_offsets=[16, 10**9]), data), "ends at byte")
    yield "extra field", _file(changed("a", extra=1), data), "exactly"
    yield ("overlap", _file(changed("b", data_offsets=[8, 32]),
                            data + b"\0" * 8), "overlaps")
    yield ("hole", _file(changed("b", data_offsets=[24, 48]),
                         data + b"\0" * 16), "unused")
    yield "trailing", _file(header, data + b"junk"), "after the last tensor"
    yield ("metadata", _file({**header, "__metadata__": {"k": 1}}, data),
           "'__metadata__' must map str to str")


@pytest.mark.parametrize(
    "name,content,message", list(_bad_files()),
    ids=[case[0] for case in _bad_files()])
def test_bad_files_are_refused_naming_the_path(tmp_path, name, content,
                                               message):
    path = tmp_path / "bad.safetensors"
    path.write_bytes(content)
    with pytest.raises(ValueError) as info:
        read_safetensors(path)
    assert str(path) in str(info.value)
    assert message in str(info.value), str(info.value)


def test_not_a_regular_file(tmp_path):
    with pytest.raises(ValueError, match="a directory"):
        read_safetensors(tmp_path)
    fifo = tmp_path / "pipe.safetensors"
    os.mkfifo(fifo)
    with pytest.raises(ValueError, match="FIFO"):
        read_safetensors(fifo)  # refused, not a hang
    with pytest.raises(FileNotFoundError):
        read_safetensors(tmp_path / "missing.safetensors")


def write_state_dict(path, state_dict):
    """A state dict as a `.safetensors` file (as the Hub holds them)."""
    tensors = {name: array_entry(np.ascontiguousarray(value))
               for name, value in state_dict.items()}
    return write(path, *header_and_data(tensors, {"format": "pt"}))


def test_builders_and_convert_take_safetensors(reference, tmp_path):
    from keras_blurpool import applications
    from keras_blurpool import convert

    torch, aa = reference
    torch.manual_seed(0)
    module = aa.resnet18(filter_size=3).eval()
    state = {k: v.numpy() for k, v in module.state_dict().items()}
    path = write_state_dict(tmp_path / "resnet18.safetensors", state)
    model = applications.ResNet18(filter_size=3, weights=str(path),
                                  classifier_activation=None, input_shape=(64, 64, 3))
    x = np.random.default_rng(0).uniform(0, 1, (1, 64, 64, 3)).astype(
        "float32")
    with torch.no_grad():
        expected = module(torch.from_numpy(np.moveaxis(x, -1, 1).copy()))
    got = np.asarray(model(x))
    np.testing.assert_allclose(got, expected.numpy(), rtol=1e-4, atol=1e-4)
    out = tmp_path / "resnet18.weights.h5"
    assert convert.main(["resnet18", str(path), str(out)]) == 0
    converted = applications.ResNet18(
        filter_size=3, classifier_activation=None, input_shape=(64, 64, 3)
    )
    converted.load_weights(out)
    np.testing.assert_allclose(np.asarray(converted(x)), got, atol=1e-6)


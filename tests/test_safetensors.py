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
    # Nothing nests in the format: the parser reads its one shape.
    yield ("deep", _file(raw=b"[" * 100_000 + b"]" * 100_000),
           "not a JSON object")
    yield ("deep tensor",
           _file(raw=b'{"a": ' + b"[" * 100_000 + b"]" * 100_000 + b"}"),
           "tensor 'a' must be an object of exactly")
    yield ("deep shape",
           _file(raw=b'{"a": {"dtype": "U8", "shape": ' + b"[" * 100_000
                 + b"]" * 100_000 + b', "data_offsets": [0, 0]}}'),
           "tensor 'a' has shape")
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



# ---------------------------------------------------------------------------
# Hostile headers at scale: each is read or refused in time linear in the
# header (generous guards: the quadratic reader took minutes on these) and
# in at most twice the file's bytes and 16 MiB of memory (tracemalloc).

_MiB = 2**20


def _raw_file(path, header: bytes, data: bytes = b""):
    path.write_bytes(struct.pack("<Q", len(header)) + header + data)
    return path


def _read_within_bounds(path, seconds=20.0):
    """`(result or ValueError, seconds, peak bytes)` of reading `path`."""
    import time
    import tracemalloc

    tracemalloc.start()
    start = time.perf_counter()
    try:
        try:
            outcome = read_safetensors(path)
        except ValueError as error:
            outcome = error
        elapsed = time.perf_counter() - start
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert elapsed < seconds, elapsed
    size = path.stat().st_size
    assert peak < 2 * size + 17 * _MiB, (peak, size)
    return outcome, elapsed, peak


def _entries(count, shape="[128]", dtype="F32", nbytes=512, names="t{}"):
    return [
        f'"{names.format(i)}":{{"dtype":"{dtype}","shape":{shape},'
        f'"data_offsets":[{i * nbytes},{(i + 1) * nbytes}]}}'
        for i in range(count)
    ]


def test_duplicate_names_at_scale_are_found_in_linear_time(tmp_path):
    # 40,000 tensors, the last name repeated: the reader counted every
    # name in a list for each (21 s).
    count = 40_000
    entries = _entries(count + 1)
    entries[-1] = entries[-1].replace(f'"t{count}"', f'"t{count - 1}"')
    header = ("{" + ",".join(entries) + "}").encode()
    path = _raw_file(tmp_path / "dup.safetensors", header,
                     b"\0" * (512 * (count + 1)))
    error, _, _ = _read_within_bounds(path)
    assert isinstance(error, ValueError)
    assert f"names 't{count - 1}' twice" in str(error)
    assert str(path) in str(error)


def test_many_tensors_are_read_in_linear_time(tmp_path):
    count = 20_000
    header = ("{" + ",".join(_entries(count, "[2]", "F32", 8)) + "}").encode()
    data = np.arange(2 * count, dtype="<f4").tobytes()
    path = _raw_file(tmp_path / "many.safetensors", header, data)
    got, _, _ = _read_within_bounds(path)
    assert len(got) == count
    np.testing.assert_array_equal(got[f"t{count - 1}"], [2 * count - 2, 2 * count - 1])


@pytest.mark.parametrize("dims", [65, 40_000])
def test_long_shapes_are_refused_before_any_product(tmp_path, dims):
    # 40,000 dimensions of 2**63 - 1: math.prod of big ints for seconds,
    # then Python's "Exceeds the limit (4300 digits)" without the path.
    shape = "[" + ",".join([str(2**63 - 1)] * dims) + "]"
    header = ('{"a":{"dtype":"U8","shape":' + shape
              + ',"data_offsets":[0,1]}}').encode()
    path = _raw_file(tmp_path / "long.safetensors", header, b"x")
    error, seconds, _ = _read_within_bounds(path, seconds=5.0)
    assert isinstance(error, ValueError)
    assert str(path) in str(error)
    assert "more than 64 dimensions" in str(error), error


@pytest.mark.parametrize("shape,message", [
    ([0] * 65, "more than 64 dimensions"),
    ([2**62, 2, 0], "multiply past 2**63 bytes"),
    ([2**64 - 1, 0], "multiply past 2**63 bytes"),
    ([10**20, 0], "not a list of ints"),
    ([2**70, 0], "not a list of ints"),
])
def test_zero_size_shapes_numpy_cannot_hold_are_refused(tmp_path, shape,
                                                        message):
    # NumPy's reshape error, without the path, before.
    header = json.dumps({"a": {"dtype": "U8", "shape": shape,
                               "data_offsets": [0, 0]}}).encode()
    path = _raw_file(tmp_path / "empty.safetensors", header)
    with pytest.raises(ValueError) as info:
        read_safetensors(path)
    assert str(path) in str(info.value)
    assert message in str(info.value), str(info.value)


def test_zero_size_shapes_numpy_holds_are_read(tmp_path):
    header = json.dumps({
        "a": {"dtype": "U8", "shape": [2**62, 0], "data_offsets": [0, 0]},
        "b": {"dtype": "U8", "shape": [0] * 64, "data_offsets": [0, 0]},
    }).encode()
    got = read_safetensors(_raw_file(tmp_path / "e.safetensors", header))
    assert got["a"].shape == (2**62, 0) and got["a"].dtype == np.uint8
    assert got["b"].shape == (0,) * 64


def test_a_flood_of_zero_size_tensors_is_refused_within_the_files_bytes(
        tmp_path):
    # A million of them (58 MB) took 13.7 s and 1.16 GB; 300,000 here.
    entries = [f'"t{i}":{{"dtype":"U8","shape":[0],"data_offsets":[0,0]}}'
               for i in range(300_000)]
    path = _raw_file(tmp_path / "zeros.safetensors",
                     ("{" + ",".join(entries) + "}").encode())
    error, _, _ = _read_within_bounds(path)
    assert isinstance(error, ValueError)
    assert str(path) in str(error)
    assert "more tensors, or longer names, than the file's bytes pay for" in (
        str(error))


def test_more_tensors_than_the_limit_are_refused(tmp_path, monkeypatch):
    from keras_blurpool.weights import safetensors

    monkeypatch.setattr(safetensors, "MAX_TENSORS", 100)
    header = ("{" + ",".join(_entries(101, "[1]", "U8", 1)) + "}").encode()
    path = _raw_file(tmp_path / "n.safetensors", header, b"x" * 101)
    with pytest.raises(ValueError, match="more than 100 tensors"):
        read_safetensors(path)
    header = ("{" + ",".join(_entries(100, "[1]", "U8", 1)) + "}").encode()
    path = _raw_file(tmp_path / "n.safetensors", header, b"x" * 100)
    assert len(read_safetensors(path)) == 100


@pytest.mark.parametrize("kind", ["metadata", "name", "wide name", "spaces"])
def test_long_headers_are_read_in_linear_time(tmp_path, kind):
    # Up to 100 MiB, the cap: a character loop over it took minutes. A long
    # metadata value or stretch of spaces is read; a name longer than the
    # file's bytes pay for (a str may take 4 bytes per character) refused.
    from keras_blurpool.weights.safetensors import MAX_HEADER_BYTES

    tensor = b'{"dtype":"U8","shape":[1],"data_offsets":[0,1]}'
    fill = (MAX_HEADER_BYTES if kind == "metadata" else 16 * _MiB) - 200
    header = {
        "metadata": b'{"__metadata__":{"k":"' + b"a" * fill + b'"},"w":'
                    + tensor + b"}",
        "name": b'{"' + b"a" * fill + b'":' + tensor + b"}",
        "wide name": b'{"' + b"a" * fill + "\U0001f600".encode() + b'":'
                     + tensor + b"}",
        "spaces": b"{" + b" " * fill + b'"w":' + tensor + b"}",
    }[kind]
    path = _raw_file(tmp_path / "cap.safetensors", header, b"x")
    del header
    outcome, _, _ = _read_within_bounds(path, seconds=30.0)
    if kind in ("metadata", "spaces"):
        assert list(outcome) == ["w"]
    else:
        assert isinstance(outcome, ValueError)
        assert "longer names, than the file's bytes pay for" in str(outcome)


def test_a_lone_surrogate_name_is_refused(tmp_path):
    # JSON can escape one; no .npz member or HDF5 key can hold it.
    header = b'{"\\ud800":{"dtype":"U8","shape":[1],"data_offsets":[0,1]}}'
    path = _raw_file(tmp_path / "s.safetensors", header, b"x")
    with pytest.raises(ValueError) as info:
        read_safetensors(path)
    assert str(path) in str(info.value)
    assert "tensor name '\\ud800' is not valid Unicode" in str(info.value)


def test_escaped_names_are_read_and_shown_escaped(tmp_path):
    header = json.dumps({
        "caf\u00e9": {"dtype": "U8", "shape": [1], "data_offsets": [0, 1]},
        "\x1b[2K\rOK": {"dtype": "X9", "shape": [1], "data_offsets": [1, 2]},
    }).encode()
    path = _raw_file(tmp_path / "esc.safetensors", header, b"xy")
    with pytest.raises(ValueError) as info:
        read_safetensors(path)
    assert "\x1b" not in str(info.value) and "\r" not in str(info.value)
    assert "tensor '\\x1b[2K\\rOK' has dtype 'X9'" in str(info.value)
    header = json.dumps({"caf\u00e9": {"dtype": "U8", "shape": [1],
                                       "data_offsets": [0, 1]}}).encode()
    assert list(read_safetensors(_raw_file(path, header, b"x"))) == ["caf\u00e9"]


def test_a_symlink_loop_is_named(tmp_path):
    loop = tmp_path / "loop.safetensors"
    os.symlink(loop.name, loop)
    with pytest.raises(ValueError) as info:
        read_safetensors(loop)
    assert str(loop) in str(info.value)
    assert "loop of symbolic links" in str(info.value)


# ---------------------------------------------------------------------------
# Fuzzing: any mutation of a valid file, and the attack classes above at
# random sizes, give arrays or a ValueError naming the path, quickly and
# within the memory bound.

try:
    from hypothesis import HealthCheck
    from hypothesis import given
    from hypothesis import settings
    from hypothesis import strategies as st
except ImportError:  # pragma: no cover - hypothesis is a test requirement
    given = None


def _valid_file():
    rng = np.random.default_rng(0)
    tensors = {
        "conv1.weight": array_entry(rng.standard_normal((4, 3, 3, 3)).astype("f4")),
        "bn1.running_var": array_entry(rng.random(4).astype("f4")),
        "bn1.num_batches_tracked": array_entry(np.array(3, "int64")),
        "fc.weight": array_entry(rng.standard_normal((10, 4)).astype("f2")),
        "mask": array_entry(rng.random(5) > 0.5),
    }
    header, data = header_and_data(tensors, {"format": "pt"})
    return _file(header, data), 8 + len(json.dumps(header).encode())


if given is not None:
    from tests.test_torch_checkpoint import _mutate
    from tests.test_torch_checkpoint import _mutation
    from tests.test_torch_checkpoint import _time_limit

    @settings(max_examples=150, deadline=None, database=None,
              suppress_health_check=[HealthCheck.function_scoped_fixture])
    @given(mutations=st.lists(_mutation, min_size=1, max_size=4))
    def test_fuzz_mutated_files(tmp_path, mutations):
        data, header_end = _valid_file()
        path = tmp_path / "fuzz.safetensors"
        path.write_bytes(_mutate(data, header_end, mutations))
        try:
            with _time_limit(5):
                result = read_safetensors(path)
        except ValueError as error:  # anything else fails the test
            assert str(path) in str(error)
            return
        for key, value in result.items():
            assert isinstance(key, str) and isinstance(value, np.ndarray)
            key.encode("utf-8")  # no lone surrogate

    @settings(max_examples=60, deadline=None, database=None,
              suppress_health_check=[HealthCheck.function_scoped_fixture])
    @given(
        attack=st.sampled_from(["duplicates", "long_shape", "zero_size",
                                "classes", "non_finite"]),
        count=st.integers(1, 30_000),
        dims=st.integers(1, 5_000),
    )
    def test_fuzz_attack_classes(tmp_path, attack, count, dims):
        refusal, expected = None, {}
        if attack == "duplicates":  # `count` names, the last one twice
            entries = _entries(count + 1, "[1]", "F32", 4)
            entries[-1] = entries[-1].replace(f'"t{count}"', '"t0"')
            data = np.arange(count + 1, dtype="<f4").tobytes()
            refusal = "names 't0' twice"
        elif attack == "long_shape":  # `dims` ones: a scalar's byte count
            entries = [f'"a":{{"dtype":"F32","shape":[{",".join(["1"] * dims)}],'
                       '"data_offsets":[0,4]}']
            data = np.float32(7).tobytes()
            if dims > 64:
                refusal = "more than 64 dimensions"
            else:
                expected["a"] = np.full((1,) * dims, 7, "f4")
        elif attack == "zero_size":  # `count` empty tensors
            entries = [f'"z{i}":{{"dtype":"U8","shape":[0,{dims}],'
                       '"data_offsets":[0,0]}' for i in range(count)]
            data = b""
            # Each is charged about 700 bytes against the file's size and
            # 16 MiB: the reader allocates within its bound either way.
            refusal = "" if count > 20_000 else None
            expected["z0"] = np.zeros((0, dims), "u1")
        elif attack == "classes":  # a classifier of 10**k classes, no input
            shape = [10 ** (dims % 19), 0]
            entries = [f'"fc.weight":{{"dtype":"F32","shape":{shape},'
                       '"data_offsets":[0,0]}']
            data = b""
            expected["fc.weight"] = np.zeros(shape, "f4")
        else:  # NaN and infinities are read as they are: loading refuses
            values = np.arange(count, dtype="<f4")
            values[dims % count::7] = [np.nan, np.inf, -np.inf][count % 3]
            entries = [f'"w":{{"dtype":"F32","shape":[{count}],'
                       f'"data_offsets":[0,{4 * count}]}}']
            data = values.tobytes()
            expected["w"] = values
        path = _raw_file(tmp_path / "attack.safetensors",
                         ("{" + ",".join(entries) + "}").encode(), data)
        outcome, _, _ = _read_within_bounds(path, seconds=20.0)
        if isinstance(outcome, ValueError):
            assert refusal is not None, outcome
            assert refusal in str(outcome) and str(path) in str(outcome)
            return
        assert not refusal, refusal
        for name, want in expected.items():
            assert outcome[name].shape == want.shape
            np.testing.assert_array_equal(outcome[name], want)

else:  # pragma: no cover

    def test_fuzz_mutated_files():
        pytest.skip("hypothesis is not installed")

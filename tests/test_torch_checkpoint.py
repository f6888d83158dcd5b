"""`read_torch_checkpoint`: both torch.save formats, safety, corrupted files.

PyTorch writes the checkpoints; the reads that check values happen with
`torch` made unimportable, so the reader provably does without it.
"""

import contextlib
import io
import os
import pickle
import pickletools
import signal
import struct
import sys
import zipfile

import numpy as np
import pytest

from keras_blurpool.weights.torch_checkpoint import read_torch_checkpoint

TORCH_REASON = "PyTorch is needed to write the checkpoints under test"
FORMATS = ["zip", "legacy"]
_LEGACY_MAGIC = 0x1950A86A20F9469CFC6C


def _torch():
    torch = pytest.importorskip("torch", reason=TORCH_REASON)
    torch.set_num_threads(1)
    return torch


def _save(torch, obj, path, fmt, protocol=2):
    torch.save(
        obj,
        path,
        _use_new_zipfile_serialization=fmt == "zip",
        pickle_protocol=protocol,
    )
    return path


def _read_without_torch(path):
    """`read_torch_checkpoint(path)` while `import torch` fails."""
    # Submodules too: `from torch._utils import x` would find those.
    saved = {
        name: module
        for name, module in list(sys.modules.items())
        if name == "torch" or name.startswith("torch.")
    }
    try:
        for name in saved:
            del sys.modules[name]
        sys.modules["torch"] = None  # `import torch` raises ImportError
        return read_torch_checkpoint(path)
    finally:
        sys.modules.pop("torch", None)
        sys.modules.update(saved)


def _expected(torch, tensor):
    tensor = tensor.detach()
    if tensor.dtype == torch.bfloat16:
        return tensor.float().numpy()  # the reader widens bfloat16 exactly
    return tensor.numpy()


def _assert_same(got, want):
    assert isinstance(got, np.ndarray)
    assert got.dtype == want.dtype
    assert got.shape == want.shape
    # Bytes, not values: -0.0, NaN payloads and bool bytes must match too.
    assert got.tobytes() == np.ascontiguousarray(want).tobytes()


# ---------------------------------------------------------------------------
# Every dtype, every kind of view, both formats.


def _random(torch, gen, dtype, shape):
    if dtype.is_floating_point:
        return (torch.randn(shape, generator=gen) * 10).to(dtype)
    if dtype.is_complex:
        return torch.randn(shape, generator=gen, dtype=dtype)
    if dtype == torch.bool:
        return torch.rand(shape, generator=gen) > 0.5
    low, high = (0, 256) if dtype in (torch.uint8, torch.uint16) else (-128, 128)
    return torch.randint(low, high, shape, generator=gen).to(dtype)


def _all_kinds_of_tensors(torch):
    gen = torch.Generator().manual_seed(0)
    dtypes = [
        torch.float16,
        torch.float32,
        torch.float64,
        torch.bfloat16,
        torch.complex64,
        torch.complex128,
        torch.int8,
        torch.int16,
        torch.int32,
        torch.int64,
        torch.uint8,
        torch.uint16,  # saved as an untyped storage + _rebuild_tensor_v3
        torch.bool,
    ]
    tensors = {}
    for dtype in dtypes:
        name = str(dtype).replace("torch.", "")
        base = _random(torch, gen, dtype, (4, 5, 6))
        tensors[f"{name}.base"] = base
        # The views below share `base`'s storage.
        tensors[f"{name}.slice"] = base[1:3, 2:, ::2]  # offset, strides
        tensors[f"{name}.permuted"] = base.permute(2, 0, 1)
        tensors[f"{name}.element"] = base[1, 2, 3]  # 0-d view at an offset
        tensors[f"{name}.empty_view"] = base[:, :0]
        tensors[f"{name}.scalar"] = _random(torch, gen, dtype, ())
        tensors[f"{name}.empty"] = _random(torch, gen, dtype, (0, 3))
        tensors[f"{name}.broadcast"] = _random(torch, gen, dtype, (3, 1)).expand(3, 4)
    tensors["tied.a"] = tensors["tied.b"] = _random(torch, gen, torch.float32, (7,))
    tensors["parameter"] = torch.nn.Parameter(torch.randn(2, 3, generator=gen))
    tensors["special"] = torch.tensor([-0.0, float("nan"), float("inf"), 1e-45])
    return tensors


@pytest.mark.parametrize("protocol", [1, 2, 4])
@pytest.mark.parametrize("fmt", FORMATS)
def test_dtypes_and_views(tmp_path, fmt, protocol):
    torch = _torch()
    tensors = _all_kinds_of_tensors(torch)
    path = _save(torch, tensors, tmp_path / "tensors.pt", fmt, protocol)
    got = _read_without_torch(path)
    assert list(got) == list(tensors)
    for name, tensor in tensors.items():
        _assert_same(got[name], _expected(torch, tensor))
    # As in torch, tensors sharing a storage share memory; those views are
    # read-only, and so are views repeating elements (the broadcasts).
    storage = {
        name: tensor.untyped_storage().data_ptr()
        for name, tensor in tensors.items()
        if tensor.numel()
    }
    names = list(got)
    for i, name in enumerate(names):
        array = got[name]
        shared = list(storage.values()).count(storage.get(name)) > 1
        repeats = any(
            stride == 0 and size > 1
            for size, stride in zip(tensors[name].shape, tensors[name].stride())
        )
        assert array.flags.writeable == (not shared and not repeats), name
        for other in names[i + 1 :]:
            same = name in storage and storage.get(other) == storage[name]
            assert np.may_share_memory(array, got[other]) == same, (name, other)


@pytest.mark.parametrize("fmt", FORMATS)
def test_extra_entries_are_ignored(tmp_path, fmt):
    torch = _torch()
    weight = torch.randn(3, 4)
    checkpoint = {
        "state_dict": {"weight": weight},
        "optimizer": {"state": {0: {"exp_avg": torch.randn(1000)}}},
    }
    path = _save(torch, checkpoint, tmp_path / "checkpoint.pth", fmt)
    got = _read_without_torch(path)
    assert list(got) == ["weight"]
    _assert_same(got["weight"], weight.numpy())


# ---------------------------------------------------------------------------
# A training checkpoint of the reference, as its ImageNet script writes it.


@pytest.mark.parametrize("fmt", FORMATS)
def test_reference_training_checkpoint(tmp_path, fmt):
    torch = _torch()
    aa = pytest.importorskip("antialiased_cnns", reason="reference not installed")
    torch.manual_seed(0)
    model = torch.nn.DataParallel(aa.resnet18(filter_size=4))
    optimizer = torch.optim.SGD(model.parameters(), lr=0.1, momentum=0.9)
    model(torch.randn(2, 3, 64, 64)).sum().backward()
    optimizer.step()  # momentum buffers in the optimizer state
    state_dict = model.state_dict()
    assert all(key.startswith("module.") for key in state_dict)
    checkpoint = {
        "epoch": 3,
        "arch": "resnet18",
        "state_dict": state_dict,
        "best_acc1": torch.tensor(71.2),
        "optimizer": optimizer.state_dict(),
    }
    path = _save(torch, checkpoint, tmp_path / "resnet18_lpf4.pth.tar", fmt)
    got = _read_without_torch(path)
    assert list(got) == [key[len("module.") :] for key in state_dict]
    for key, tensor in state_dict.items():
        _assert_same(got[key[len("module.") :]], tensor.numpy())


@pytest.mark.parametrize("fmt", FORMATS)
def test_bare_state_dict_and_nested_module_prefix(tmp_path, fmt):
    torch = _torch()
    state_dict = torch.nn.Sequential(torch.nn.Linear(2, 3)).state_dict()
    path = _save(torch, state_dict, tmp_path / "bare.pth", fmt)
    got = _read_without_torch(path)
    assert list(got) == ["0.weight", "0.bias"]
    # Only one leading `module.` is DataParallel's.
    prefixed = {"module.module.w": torch.ones(1), "other.module.v": torch.ones(1)}
    path = _save(torch, prefixed, tmp_path / "prefixed.pth", fmt)
    assert list(_read_without_torch(path)) == ["module.w", "other.module.v"]


# ---------------------------------------------------------------------------
# Pickles that would run code.


class _Evil:
    """Unpickling calls `function(argument)`."""

    def __init__(self, function, argument):
        self.function, self.argument = function, argument

    def __reduce__(self):
        return self.function, (self.argument,)


def _evil_pickle(kind, marker):
    if kind == "system":  # GLOBAL opcode, protocol 2
        return pickle.dumps(_Evil(os.system, f"touch {marker}"), protocol=2)
    code = f"__import__('os').system('touch {marker}')"
    return pickle.dumps(_Evil(eval, code), protocol=4)  # STACK_GLOBAL


def _write_zip(path, records):
    with zipfile.ZipFile(path, "w", zipfile.ZIP_STORED) as archive:
        for name, data in records.items():
            archive.writestr(name, data)
    return path


@pytest.mark.parametrize("container", ["bare_pickle", "legacy", "zip"])
@pytest.mark.parametrize("kind", ["system", "eval"])
def test_malicious_pickle_is_refused(tmp_path, container, kind):
    marker = tmp_path / "pwned"
    payload = _evil_pickle(kind, marker)
    path = tmp_path / "evil.pth"
    if container == "bare_pickle":
        path.write_bytes(payload)
    elif container == "legacy":
        header = [_LEGACY_MAGIC, 1001, {"little_endian": True}]
        path.write_bytes(
            b"".join(pickle.dumps(part, protocol=2) for part in header)
            + payload
            + pickle.dumps([], protocol=2)
        )
    else:
        _write_zip(path, {"archive/data.pkl": payload, "archive/version": b"3\n"})
    refused = f"{os.system.__module__}.system" if kind == "system" else "builtins.eval"
    with pytest.raises(ValueError, match=f"refused global '{refused}'") as info:
        read_torch_checkpoint(path)
    assert str(path) in str(info.value)
    assert not marker.exists()
    if os.name == "posix":
        # The payload is live: plain pickle runs it (a `touch` in tmp_path).
        pickle.loads(payload)
        assert marker.exists()


def test_only_the_whitelist_is_resolved(tmp_path):
    for module, name in [
        ("subprocess", "Popen"),
        ("torch", "load"),
        ("torch._utils", "_rebuild_device_tensor_from_numpy"),
        ("torch.nn.modules.conv", "Conv2d"),
        ("numpy.core.multiarray", "_reconstruct"),
        ("collections", "defaultdict"),
    ]:
        payload = f"\x80\x02c{module}\n{name}\n)R.".encode("latin-1")
        path = tmp_path / "global.pth"
        path.write_bytes(payload)
        with pytest.raises(ValueError, match=f"refused global '{module}.{name}'"):
            read_torch_checkpoint(path)


# ---------------------------------------------------------------------------
# Corrupted and odd files.


@pytest.fixture(scope="module")
def small_checkpoints(tmp_path_factory):
    """`{format: (bytes, length of the part holding the pickles)}`.

    Also `"zip_data_pkl"`: the `data.pkl` record of the zip checkpoint.
    """
    torch = _torch()
    gen = torch.Generator().manual_seed(1)
    base = torch.randn(257, generator=gen)  # 257: a distinctive BININT2
    checkpoint = {
        "epoch": 1,
        "state_dict": {
            "module.a": base,  # storage 0 in the zip format
            "module.b": base[1:13].view(3, 4).t(),
            "module.c": torch.tensor(5),  # storage 1
            "module.d": torch.randn(2, 2, generator=gen).half(),  # storage 2
            "module.e": torch.arange(3).to(torch.uint16),  # _rebuild_tensor_v3
            "module.f": torch.nn.Parameter(torch.ones(2), requires_grad=False),
        },
        "optimizer": {"state": {0: {"momentum_buffer": torch.ones(2)}}},
    }
    directory = tmp_path_factory.mktemp("small")
    result = {}
    for fmt in FORMATS:
        data = _save(torch, checkpoint, directory / fmt, fmt).read_bytes()
        if fmt == "zip":
            with zipfile.ZipFile(io.BytesIO(data)) as archive:
                pickled = archive.read("zip/data.pkl")
                first_storage = archive.getinfo("zip/data/0").header_offset
            result[fmt] = (data, first_storage)
            result["zip_data_pkl"] = (pickled, len(pickled))
        else:
            # Five pickles, then the storages.
            stream = io.BytesIO(data)
            for _ in range(5):
                for _ in pickletools.genops(stream):
                    pass
            result[fmt] = (data, stream.tell())
    return result


def _write(tmp_path, data, name="bad.pth"):
    path = tmp_path / name
    path.write_bytes(data)
    return path


def _expect_error(path, match):
    with pytest.raises(ValueError, match=match) as info:
        read_torch_checkpoint(path)
    assert type(info.value) is ValueError
    assert str(path) in str(info.value)


def test_missing_empty_and_foreign_files(tmp_path):
    with pytest.raises(FileNotFoundError):
        read_torch_checkpoint(tmp_path / "nope.pth")
    _expect_error(_write(tmp_path, b""), "empty")
    _expect_error(_write(tmp_path, b"GIF89a" + bytes(100)), "not a PyTorch")
    _expect_error(_write(tmp_path, pickle.dumps(12345, 2)), "found 12345")
    tar = bytes(257) + b"ustar" + bytes(300)
    _expect_error(_write(tmp_path, tar), "tar")


@pytest.mark.parametrize("fmt", FORMATS)
def test_every_truncation_is_a_value_error(tmp_path, small_checkpoints, fmt):
    data, _ = small_checkpoints[fmt]
    path = tmp_path / "truncated.pth"
    for end in sorted({*range(0, len(data), 7), len(data) - 1}):
        path.write_bytes(data[:end])
        with pytest.raises(ValueError, match=str(path).replace("\\", "\\\\")):
            read_torch_checkpoint(path)


def test_legacy_storage_larger_than_the_file(tmp_path, small_checkpoints):
    data, _ = small_checkpoints["legacy"]
    numel = b"M\x01\x01"  # BININT2 257: the element count of the storage
    assert numel in data
    huge = b"J" + struct.pack("<i", 2**30)  # 4 GiB of float32
    _expect_error(
        _write(tmp_path, data.replace(numel, huge, 1)), "declares 4294967296 bytes"
    )


def test_legacy_element_count_mismatch(tmp_path, small_checkpoints):
    data, payload_start = small_checkpoints["legacy"]
    # Storages follow in the order of their keys: find the 257-element one.
    start = data.index(struct.pack("<q", 257), payload_start)
    patched = data[:start] + struct.pack("<q", 256) + data[start + 8 :]
    _expect_error(_write(tmp_path, patched), "holds 256 elements")


def _rewrite_zip(source, path, replace=None, rename=None, compress=None):
    with zipfile.ZipFile(io.BytesIO(source)) as archive:
        records = {info.filename: archive.read(info) for info in archive.infolist()}
    with zipfile.ZipFile(path, "w", zipfile.ZIP_STORED) as archive:
        for name, data in records.items():
            data = (replace or {}).get(name, data)
            new_name = rename(name) if rename else name
            method = zipfile.ZIP_DEFLATED if name == compress else None
            archive.writestr(new_name, data, compress_type=method)
    return path


def test_view_beyond_its_storage(tmp_path, small_checkpoints):
    # The size of `a` (257, after its storage's element count 257) -> 258.
    data, _ = small_checkpoints["legacy"]
    first = data.index(b"M\x01\x01")
    second = data.index(b"M\x01\x01", first + 1)
    patched = data[:second] + b"M\x02\x01" + data[second + 3 :]
    _expect_error(_write(tmp_path, patched), "tensor 'a'.*beyond the 257 elements")
    source, _ = small_checkpoints["zip"]
    with zipfile.ZipFile(io.BytesIO(source)) as archive:
        pickled = archive.read("zip/data.pkl")
    first = pickled.index(b"M\x01\x01")
    second = pickled.index(b"M\x01\x01", first + 1)
    pickled = pickled[:second] + b"M\x02\x01" + pickled[second + 3 :]
    path = _rewrite_zip(
        source, tmp_path / "view.pth", replace={"zip/data.pkl": pickled}
    )
    _expect_error(path, "tensor 'a'.*beyond the 257 elements")


def test_zip_crc_compression_and_root_name(tmp_path, small_checkpoints):
    torch = _torch()
    data, start = small_checkpoints["zip"]
    loaded = torch.load(io.BytesIO(data))["state_dict"]
    expected = {k[len("module.") :]: v.numpy() for k, v in loaded.items()}
    with zipfile.ZipFile(io.BytesIO(data)) as archive:
        info = archive.getinfo("zip/data/0")
    # Flip a byte inside the first storage: only the CRC notices.
    offset = data.index(expected["a"].tobytes()[:16], start)
    flipped = bytearray(data)
    flipped[offset + 5] ^= 0x10
    _expect_error(_write(tmp_path, bytes(flipped)), "'zip/data/0'.*CRC")
    assert info.CRC != 0
    compressed = _rewrite_zip(data, tmp_path / "deflated.pth", compress="zip/data/0")
    _expect_error(compressed, "compressed")
    renamed = _rewrite_zip(
        data, tmp_path / "renamed.pth", rename=lambda n: n.replace("zip/", "x y/", 1)
    )
    got = _read_without_torch(renamed)
    assert got.keys() == expected.keys()
    for key in expected:
        _assert_same(got[key], expected[key])


def test_zip_big_endian(tmp_path, small_checkpoints):
    torch = _torch()
    data, _ = small_checkpoints["zip"]
    loaded = torch.load(io.BytesIO(data))["state_dict"]
    expected = {k[len("module.") :]: v.numpy() for k, v in loaded.items()}
    # Each storage record byte-swapped, as a big-endian machine writes it.
    itemsizes = {"0": 4, "1": 8, "2": 2}
    replace = {"zip/byteorder": b"big"}
    with zipfile.ZipFile(io.BytesIO(data)) as archive:
        for key, itemsize in itemsizes.items():
            raw = np.frombuffer(archive.read(f"zip/data/{key}"), f"<u{itemsize}")
            replace[f"zip/data/{key}"] = raw.astype(f">u{itemsize}").tobytes()
    path = _rewrite_zip(data, tmp_path / "big.pth", replace=replace)
    got = _read_without_torch(path)
    for key in "abcd":
        _assert_same(got[key], expected[key])
    path = _rewrite_zip(data, tmp_path / "odd.pth", replace={"zip/byteorder": b"pdp"})
    _expect_error(path, "byte order")


@pytest.mark.parametrize("fmt", FORMATS)
def test_no_state_dict(tmp_path, fmt):
    torch = _torch()
    cases = {
        "list": ([torch.ones(2)], "is a list"),
        "entries": ({"epoch": 1, "model": {"w": torch.ones(1)}}, "'epoch', 'model'"),
        "wrapped": ({"state_dict": [1]}, "'state_dict' entry is a list"),
        "keys": ({1: torch.ones(1)}, "not a str"),
        "collision": ({"module.w": torch.ones(1), "w": torch.ones(1)}, "'w' twice"),
    }
    for name, (obj, match) in cases.items():
        path = _save(torch, obj, tmp_path / f"{name}.pth", fmt)
        _expect_error(path, f"{match}")


@pytest.mark.parametrize("fmt", FORMATS)
def test_huge_broadcast_is_refused(tmp_path, fmt):
    torch = _torch()
    obj = {"w": torch.zeros(1).expand(2**25)}  # 128 MiB from 4 bytes
    path = _save(torch, obj, tmp_path / "broadcast.pth", fmt)
    _expect_error(path, "broadcast view")


@pytest.mark.parametrize("fmt", FORMATS)
def test_peak_memory_near_the_file_size(tmp_path, fmt):
    import tracemalloc

    torch = _torch()
    obj = {"state_dict": {f"w{i}": torch.randn(256, 1024) for i in range(4)}}
    path = _save(torch, obj, tmp_path / "big.pth", fmt)
    size = path.stat().st_size  # 4 MiB
    tracemalloc.start()
    try:
        got = read_torch_checkpoint(path)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert sum(a.nbytes for a in got.values()) == 4 * 2**20
    assert peak < 1.15 * size, (peak, size)


# ---------------------------------------------------------------------------
# Fuzzing: any mutation gives arrays or a ValueError, quickly.


class _Hang(BaseException):
    """Not an Exception, so the reader cannot turn it into a ValueError."""


@contextlib.contextmanager
def _time_limit(seconds):
    """Raises `_Hang` after `seconds` (where SIGALRM exists: not Windows)."""
    if not hasattr(signal, "SIGALRM"):
        yield
        return

    def on_alarm(signum, frame):
        raise _Hang(f"read_torch_checkpoint took more than {seconds} s")

    previous = signal.signal(signal.SIGALRM, on_alarm)
    signal.alarm(seconds)
    try:
        yield
    finally:
        signal.alarm(0)
        signal.signal(signal.SIGALRM, previous)


def _mutate(data, focus_end, mutations):
    data = bytearray(data)
    for kind, position, focus, value in mutations:
        end = focus_end if focus else len(data)
        position = position % max(min(end, len(data)), 1)
        if kind == "flip":
            if data:
                data[position] ^= value
        elif kind == "truncate":
            del data[position:]
        elif kind == "insert":
            data[position:position] = value
        else:  # delete
            del data[position : position + value]
    return bytes(data)


try:
    from hypothesis import HealthCheck
    from hypothesis import given
    from hypothesis import settings
    from hypothesis import strategies as st
except ImportError:  # pragma: no cover - hypothesis is a test requirement
    given = None

if given is not None:
    # (kind, position, whether it falls in the pickle part, argument)
    _position = st.integers(0, 2**31)
    _mutation = st.one_of(
        st.tuples(st.just("flip"), _position, st.booleans(), st.integers(1, 255)),
        st.tuples(st.just("truncate"), _position, st.booleans(), st.none()),
        st.tuples(
            st.just("insert"),
            _position,
            st.booleans(),
            st.binary(min_size=1, max_size=12),
        ),
        st.tuples(st.just("delete"), _position, st.booleans(), st.integers(1, 64)),
    )

    @pytest.mark.parametrize("fmt", [*FORMATS, "zip_data_pkl"])
    @settings(
        max_examples=70,
        deadline=None,
        database=None,  # write nothing into the repository
        suppress_health_check=[HealthCheck.function_scoped_fixture],
    )
    @given(mutations=st.lists(_mutation, min_size=1, max_size=4))
    def test_fuzz_mutated_checkpoints(tmp_path, small_checkpoints, fmt, mutations):
        data, focus_end = small_checkpoints[fmt]
        path = tmp_path / "fuzz.pth"
        mutated = _mutate(data, focus_end, mutations)
        if fmt == "zip_data_pkl":
            # A valid archive (right CRC) around a damaged pickle.
            source, _ = small_checkpoints["zip"]
            _rewrite_zip(source, path, replace={"zip/data.pkl": mutated})
        else:
            path.write_bytes(mutated)
        try:
            with _time_limit(5):
                result = read_torch_checkpoint(path)
        except ValueError as error:  # anything else fails the test
            assert str(path) in str(error)
            return
        assert isinstance(result, dict)
        for key, value in result.items():
            assert isinstance(key, str) and isinstance(value, np.ndarray)

else:  # pragma: no cover

    def test_fuzz_mutated_checkpoints():
        pytest.skip("hypothesis is not installed")

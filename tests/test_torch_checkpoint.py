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
import zlib

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
        "entries": ({"epoch": 1, "net": {"w": torch.ones(1)}}, "'epoch', 'net'"),
        "wrapped": ({"state_dict": [1]}, "'state_dict' entry is a list"),
        "keys": ({1: torch.ones(1)}, "not a str"),
        "collision": ({"module.w": torch.ones(1), "w": torch.ones(1)}, "'w' twice"),
    }
    for name, (obj, match) in cases.items():
        path = _save(torch, obj, tmp_path / f"{name}.pth", fmt)
        _expect_error(path, f"{match}")


@pytest.mark.parametrize("fmt", FORMATS)
def test_model_and_model_ema_entries(tmp_path, fmt):
    # ConvNeXt-style training scripts (AFC's) save both next to the
    # optimizer's state: 'model' is read by default, 'model_ema' on request.
    torch = _torch()
    obj = {"model": {"w": torch.ones(2)}, "model_ema": {"w": torch.full((2,), 3.0)},
           "optimizer": {"state": {}, "param_groups": [{"lr": 0.1}]}, "epoch": 299}
    path = _save(torch, obj, tmp_path / "convnext.pth", fmt)
    np.testing.assert_array_equal(read_torch_checkpoint(path)["w"], [1, 1])
    np.testing.assert_array_equal(read_torch_checkpoint(path, "model_ema")["w"], [3, 3])
    # 'state_dict' wins over 'model', as before.
    both = _save(torch, {"state_dict": {"w": torch.zeros(1)}, "model": {"v": torch.ones(1)}},
                 tmp_path / "both.pth", fmt)
    assert list(read_torch_checkpoint(both)) == ["w"]
    bare = _save(torch, {"w": torch.ones(1)}, tmp_path / "bare.pth", fmt)
    with pytest.raises(ValueError, match="no 'model_ema' entry"):
        read_torch_checkpoint(bare, "model_ema")
    with pytest.raises(ValueError, match="`entry` must be.*Received: entry='ema'"):
        read_torch_checkpoint(path, "ema")


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
# Hostile files, forged opcode by opcode (no torch needed): each is read
# within a time and a memory bound, as arrays or as a ValueError.


class _Global:
    """Pickled as the GLOBAL `module.name`, which need not exist here."""

    def __init__(self, module, name):
        self.module, self.name = module, name

    def __call__(self):  # save_reduce wants a callable
        raise AssertionError("never called")


class _Raw(bytes):
    """Opcodes pushing one object, written into the pickle as they are."""


class _FakeStorage:
    def __init__(self, key, numel, kind="FloatStorage"):
        self.key, self.numel, self.kind = key, numel, kind


class _FakeTensor:
    """`_rebuild_tensor_v2(storage, offset, size, stride, ...)`, or v3."""

    def __init__(self, storage, shape, strides=None, offset=0, dtype=None):
        if strides is None:
            strides = tuple(int(np.prod(shape[i + 1 :])) for i in range(len(shape)))
        self.args = (storage, offset, tuple(shape), tuple(strides), False, _Pairs([]))
        self.dtype = dtype

    def __reduce__(self):
        if self.dtype is None:
            return _Global("torch._utils", "_rebuild_tensor_v2"), self.args
        dtype = _Global("torch", self.dtype)
        return _Global("torch._utils", "_rebuild_tensor_v3"), (*self.args, dtype)


class _Pairs:
    """An OrderedDict of `pairs`, pickled without ever being a dict.

    The keys are written but never hashed, so that colliding or
    unhashable ones cost the test nothing.
    """

    def __init__(self, pairs):
        self.pairs = pairs

    def __reduce__(self):
        return _Global("collections", "OrderedDict"), (), None, None, iter(self.pairs)


class _Forge(pickle._Pickler):
    """The pure-Python pickler, with our stand-ins and raw opcodes."""

    dispatch = dict(pickle._Pickler.dispatch)

    def persistent_id(self, obj):
        if isinstance(obj, _FakeStorage):
            return ("storage", _Global("torch", obj.kind), obj.key, "cpu", obj.numel)
        return None

    def _save_global(self, obj):
        self.write(f"c{obj.module}\n{obj.name}\n".encode())

    def _save_raw(self, obj):
        self.write(bytes(obj))

    dispatch[_Global] = _save_global
    dispatch[_Raw] = _save_raw


def _forge(obj):
    buffer = io.BytesIO()
    _Forge(buffer, protocol=2).dump(obj)
    return buffer.getvalue()


def _forged_checkpoint(path, fmt, state_dict, storages, extra=()):
    """`{"state_dict": state_dict, **extra}` in format `fmt`.

    `storages` maps storage keys to their bytes (float32 by default).
    """
    pickled = _forge(_Pairs([("state_dict", _Pairs(list(state_dict))), *extra]))
    if fmt == "zip":
        records = {"archive/data.pkl": pickled}
        records.update({f"archive/data/{k}": v for k, v in storages.items()})
        return _write_zip(path, records)
    header = [_LEGACY_MAGIC, 1001, {"little_endian": True}]
    data = b"".join(pickle.dumps(part, protocol=2) for part in header) + pickled
    data += pickle.dumps(list(storages), protocol=2)
    for raw in storages.values():
        data += struct.pack("<q", len(raw) // 4) + raw
    path.write_bytes(data)
    return path


# A child reads the file with the module alone (no Keras), under a 1 GiB
# address-space limit above its start, so that a reader without the
# bounds fails fast instead of exhausting the machine.
_PROBE = r"""
import importlib.util, json, resource, sys, time, tracemalloc
spec = importlib.util.spec_from_file_location("reader", sys.argv[1])
module = importlib.util.module_from_spec(spec)
spec.loader.exec_module(module)
if sys.platform.startswith("linux"):
    with open("/proc/self/statm") as f:
        size = int(f.read().split()[0]) * resource.getpagesize()
    hard = resource.getrlimit(resource.RLIMIT_AS)[1]
    limit = size + 2**30
    if hard != resource.RLIM_INFINITY:
        limit = min(limit, hard)
    resource.setrlimit(resource.RLIMIT_AS, (limit, hard))
tracemalloc.start()
start = time.perf_counter()
try:
    outcome = {"arrays": len(module.read_torch_checkpoint(sys.argv[2]))}
except ValueError as error:
    outcome = {"error": str(error)}
outcome["seconds"] = time.perf_counter() - start
outcome["peak"] = tracemalloc.get_traced_memory()[1]
print(json.dumps(outcome))
"""


def _read_in_child(path):
    """The outcome of reading `path` in a fresh interpreter (crash-proof)."""
    import json
    import subprocess

    from keras_blurpool.weights import torch_checkpoint

    env = dict(os.environ, OPENBLAS_NUM_THREADS="1", OMP_NUM_THREADS="1")
    child = subprocess.run(
        [sys.executable, "-c", _PROBE, torch_checkpoint.__file__, str(path)],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
        env=env,
    )
    assert child.returncode == 0, (child.returncode, child.stderr[-2000:])
    return json.loads(child.stdout.strip().splitlines()[-1])


def _expect_refusal(path, match, seconds=5.0, peak=None):
    """A ValueError naming `path` and matching `match`, within bounds."""
    import re

    outcome = _read_in_child(path)
    assert "error" in outcome, outcome
    assert str(path) in outcome["error"]
    assert re.search(match, outcome["error"]), outcome["error"]
    assert outcome["seconds"] < seconds, outcome
    if peak is not None:
        assert outcome["peak"] < peak, outcome
    return outcome


_MiB = 2**20


@pytest.mark.parametrize("fmt", FORMATS)
def test_storage_shared_through_the_memo_is_read_once(tmp_path, fmt):
    import tracemalloc

    values = np.arange(_MiB, dtype="<f4")  # 4 MiB
    storage = _FakeStorage("0", values.size)
    tensor = _FakeTensor(storage, (1024, 1024))
    # 40 references to one tensor (memo GETs) and 40 tensors of one storage.
    entries = [(f"same{i}", tensor) for i in range(40)]
    entries += [(f"view{i}", _FakeTensor(storage, (1024, 1024))) for i in range(40)]
    entries.append(("transposed", _FakeTensor(storage, (1024, 1024), (1, 1024))))
    path = _forged_checkpoint(
        tmp_path / "shared.pth", fmt, entries, {"0": values.tobytes()}
    )
    size = path.stat().st_size
    tracemalloc.start()
    try:
        with _time_limit(5):
            got = read_torch_checkpoint(path)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    # Without sharing: 81 copies of 4 MiB.
    assert peak < 1.2 * size, (peak, size)
    expected = values.reshape(1024, 1024)
    for name, array in got.items():
        want = expected.T if name == "transposed" else expected
        np.testing.assert_array_equal(array, want)
        assert np.shares_memory(array, got["same0"])
        assert not array.flags.writeable  # writing would change the others
        assert np.asarray(array) is array


@pytest.mark.parametrize("fmt", FORMATS)
def test_broadcast_views_are_bounded_in_total(tmp_path, fmt):
    # 4 bytes viewed as 1000 tensors of 16 MiB each (16 GB), each under the
    # former per-tensor cap of 64 MiB.
    storage = _FakeStorage("0", 1)
    entries = [(f"w{i}", _FakeTensor(storage, (4 * _MiB,), (0,))) for i in range(1000)]
    path = _forged_checkpoint(tmp_path / "broadcast.pth", fmt, entries, {"0": bytes(4)})
    _expect_refusal(path, r"broadcast views .* in total", peak=8 * _MiB)
    # Under the total, broadcasts stay views: nothing is copied.
    entries = entries[:3]
    path = _forged_checkpoint(tmp_path / "small.pth", fmt, entries, {"0": bytes(4)})
    got = read_torch_checkpoint(path)
    assert all(a.strides == (0,) and not a.flags.writeable for a in got.values())
    assert np.asarray(got["w0"]).sum() == 0


def test_decoding_beyond_the_storage_bytes_is_refused(tmp_path):
    # A big-endian untyped storage viewed as uint16, uint32 and uint64:
    # three byte-swapped copies of 2 MiB for a file holding 2 MiB.
    storage = _FakeStorage("0", 2 * _MiB, kind="UntypedStorage")
    entries = [
        (dtype, _FakeTensor(storage, (2 * _MiB // size,), dtype=dtype))
        for dtype, size in [("uint16", 2), ("uint32", 4), ("uint64", 8)]
    ]
    pickled = _forge(_Pairs(entries))
    records = {
        "archive/data.pkl": pickled,
        "archive/byteorder": b"big",
        "archive/data/0": bytes(2 * _MiB),
    }
    path = _write_zip(tmp_path / "decoded.pth", records)
    _expect_refusal(path, r"more than the \d+ bytes the file justifies", peak=8 * _MiB)
    # One dtype: decoded in place, no allocation beyond the storage.
    path = _write_zip(
        tmp_path / "one.pth", {**records, "archive/data.pkl": _forge(_Pairs(entries[1:2]))}
    )
    got = read_torch_checkpoint(path)
    assert got["uint32"].dtype == np.uint32 and got["uint32"].dtype.isnative


def _zip_bytes(records, shared=b""):
    """A stored zip archive, written by hand.

    `records`: `(name, data, size)`, `size` None for `len(data)` (a larger
    one makes the record reach past its bytes). Records whose data is None
    come last: their local headers follow one another, each extra field
    reaching the one copy of `shared` after the last, so that their byte
    ranges all overlap.
    """
    out = bytearray()
    central = []
    pointing = [record for record in records if record[1] is None]
    data_start = None
    for name, data, size in records:
        name = name.encode()
        offset = len(out)
        extra = 0
        if data is None:
            if data_start is None:
                data_start = offset + sum(30 + len(r[0].encode()) for r in pointing)
            size, crc = len(shared), zlib.crc32(shared)
            extra = data_start - (offset + 30 + len(name))
        elif size is None:
            size, crc = len(data), zlib.crc32(data)
        else:
            crc = 0  # not computed
        out += struct.pack(
            "<4s5H3I2H", b"PK\x03\x04", 20, 0, 0, 0, 0, crc, size, size, len(name),
            extra,
        )
        out += name + (data or b"")
        if data is None and len(out) == data_start:
            out += shared
        central.append(
            struct.pack(
                "<4s6H3I5HII", b"PK\x01\x02", 20, 20, 0, 0, 0, 0, crc, size, size,
                len(name), 0, 0, 0, 0, 0, offset,
            )
            + name
        )
    directory_start = len(out)
    directory = b"".join(central)
    out += directory + struct.pack(
        "<4s4H2IH", b"PK\x05\x06", 0, 0, len(central), len(central),
        len(directory), directory_start, 0,
    )
    return bytes(out)


def test_overlapping_zip_records_are_refused(tmp_path):
    # 100 storages of 2 MiB, all pointing at the same 2 MiB of the file.
    entries = [
        (f"w{i}", _FakeTensor(_FakeStorage(str(i), _MiB // 2), (_MiB // 2,)))
        for i in range(100)
    ]
    records = [("archive/data.pkl", _forge(_Pairs(entries)), None)]
    records += [(f"archive/data/{i}", None, None) for i in range(100)]
    path = _write(tmp_path, _zip_bytes(records, bytes(2 * _MiB)), "overlap.pth")
    assert len(zipfile.ZipFile(path).infolist()) == 101
    assert path.stat().st_size < 3 * _MiB
    _expect_refusal(
        path, r"records 'archive/data/\d+' and 'archive/data/\d+' overlap",
        peak=8 * _MiB,
    )
    # A record declaring more bytes than lie before the central directory.
    entries = [("w", _FakeTensor(_FakeStorage("0", 64), (64,)))]
    records = [
        ("archive/data.pkl", _forge(_Pairs(entries)), None),
        ("archive/data/0", bytes(200), 256),
    ]
    path = _write(tmp_path, _zip_bytes(records), "past.pth")
    _expect_error(path, "'archive/data/0' extends past the end of the records")
    # The same archive, honest: read.
    records[1] = ("archive/data/0", bytes(256), None)
    path = _write(tmp_path, _zip_bytes(records), "honest.pth")
    assert read_torch_checkpoint(path)["w"].shape == (64,)



_DEEP = 100_000


def _deep_tuple(depth=_DEEP):
    return _Raw(b")" + b"\x85" * depth)  # EMPTY_TUPLE, then TUPLE1 again and again


def _deep_list(depth=_DEEP):
    return _Raw(b"]" * depth + b"a" * (depth - 1))  # EMPTY_LISTs, APPENDs


# A list holding itself, through a memo slot the pickler does not use.
_SELF_LIST = _Raw(b"]r" + struct.pack("<I", 2**31) + b"j" + struct.pack("<I", 2**31) + b"a")

_NESTING_ATTACKS = {
    # A tuple 500,000 deep, hashed as a dict key, crashed the interpreter
    # (SIGSEGV, from about 300,000 levels on Linux x86_64).
    "deep_tuple_key": ([(_deep_tuple(500_000), 0)], r"refused dict key .* of type tuple"),
    "frozenset_key": (
        [(_Raw(b"(" + _deep_tuple(500_000) + b"\x91"), 0)],
        r"refused dict key .* of type frozenset",
    ),
    "deep_list": ([("x", _deep_list())], r"nests containers more than 64 levels"),
    "deep_tuple": ([("x", _deep_tuple())], r"nests containers more than 64 levels"),
    "deep_dict": (
        [("x", _Raw(b"}K\x00" * (_DEEP - 1) + b"}" + b"s" * (_DEEP - 1)))],
        r"nests containers more than 64 levels",
    ),
    "cycle": ([("x", _SELF_LIST)], r"a container inside itself"),
}


@pytest.mark.parametrize("attack", list(_NESTING_ATTACKS))
@pytest.mark.parametrize("fmt", FORMATS)
def test_deep_or_container_keys_are_refused(tmp_path, fmt, attack):
    extra, match = _NESTING_ATTACKS[attack]
    storage = _FakeStorage("0", 2)
    path = _forged_checkpoint(
        tmp_path / f"{attack}.pth",
        fmt,
        [("w", _FakeTensor(storage, (2,)))],
        {"0": bytes(8)},
        extra=[("optimizer", _Pairs(extra))],
    )
    _expect_refusal(path, match, peak=256 * _MiB)


def test_flat_keys_and_moderate_nesting_are_read(tmp_path):
    # What training checkpoints hold: int keys (optimizer state), floats,
    # None, bools, bytes; lists and dicts a few levels deep; sets.
    depth = 60
    nested = _Raw(b"]" * depth + b"a" * (depth - 1))
    # (b"k" is SHORT_BINBYTES: protocol 2 would pickle bytes through a global.)
    extra = [
        ("optimizer", _Pairs([(0, _Pairs([("momentum_buffer", 1.5)])), (1, None)])),
        ("odd", _Pairs([(0.5, 1), (None, 2), (True, 3), (_Raw(b"C\x01k"), 4), ("n", nested)])),
        ("sets", _Raw(b"\x8f(K\x01K\x02\x90")),  # EMPTY_SET, ADDITEMS
    ]
    storage = _FakeStorage("0", 2)
    path = _forged_checkpoint(
        tmp_path / "flat.pth", "zip", [("w", _FakeTensor(storage, (2,)))],
        {"0": np.float32([1, 2]).tobytes()}, extra=extra,
    )
    np.testing.assert_array_equal(read_torch_checkpoint(path)["w"], [1, 2])
    # The state dict's own keys must be str.
    path = _forged_checkpoint(
        tmp_path / "int_key.pth", "zip", [(7, _FakeTensor(storage, (2,)))],
        {"0": bytes(8)},
    )
    _expect_error(path, "state dict key 7 is not a str")


# hash(n) is n modulo 2**61 - 1: all these ints have the hash 7.
_COLLIDING = [7 + i * (2**61 - 1) for i in range(80_000)]


@pytest.mark.parametrize("where", ["optimizer", "state_dict", "memo"])
def test_colliding_hashes_are_read_in_linear_time(tmp_path, where):
    import time

    storage = _FakeStorage("0", 2)
    tensor = _FakeTensor(storage, (2,))
    entries, extra = [("w", tensor)], []
    if where == "optimizer":  # a dict nobody uses: not even built
        extra = [("optimizer", _Pairs([(k, 0) for k in _COLLIDING]))]
    elif where == "state_dict":  # refused before any is hashed
        entries += [(k, tensor) for k in _COLLIDING]
    else:  # PUT into memo slots that collide
        puts = b"".join(b"Np%d\n0" % k for k in _COLLIDING)
        extra = [("x", _Raw(puts + b"N"))]
    path = _forged_checkpoint(
        tmp_path / "collide.pth", "zip", entries, {"0": bytes(8)}, extra=extra
    )
    assert path.stat().st_size > 800_000
    start = time.perf_counter()
    with _time_limit(10):  # 25 to 40 s before the fix
        if where == "optimizer":
            assert list(read_torch_checkpoint(path)) == ["w"]
        elif where == "state_dict":
            _expect_error(path, "is not a str")
        else:
            _expect_error(path, "memo index .* out of range")
    assert time.perf_counter() - start < 5


@pytest.mark.skipif(not hasattr(os, "mkfifo"), reason="no FIFOs on this platform")
def test_non_regular_files_are_refused(tmp_path):
    fifo = tmp_path / "fifo.pth"
    os.mkfifo(fifo)
    with _time_limit(5):  # open() waited forever for a writer
        _expect_error(fifo, "not a regular file but a FIFO")
    _expect_error(tmp_path, "not a regular file but a directory")
    if os.path.exists("/dev/zero"):
        _expect_error("/dev/zero", "not a regular file but a character device")
    # A link to a regular file is read.
    link = tmp_path / "link.pth"
    target = _forged_checkpoint(
        tmp_path / "target.pth", "zip", [("w", _FakeTensor(_FakeStorage("0", 1), (1,)))],
        {"0": bytes(4)},
    )
    link.symlink_to(target)
    assert list(read_torch_checkpoint(link)) == ["w"]

    loop = tmp_path / "loop.pth"
    loop.symlink_to(loop.name)  # was a bare OSError
    _expect_error(loop, "loop of symbolic links")


@pytest.mark.parametrize("fmt", FORMATS)
def test_long_sizes_are_refused_before_any_product(tmp_path, fmt):
    # 40,000 sizes of 2**63 - 1 and a 0: their product, a big integer,
    # took seconds before NumPy refused the shape without the path.
    shape = (2**63 - 1,) * 39_999 + (0,)
    storage = _FakeStorage("0", 1)
    path = _forged_checkpoint(
        tmp_path / "long.pth", fmt,
        [("w", _FakeTensor(storage, shape, (1,) * len(shape)))],
        {"0": bytes(4)},
    )
    with _time_limit(5):
        _expect_error(path, "tensor of 40000 dimensions, more than the 64 NumPy")


@pytest.mark.parametrize("fmt", FORMATS)
def test_names_are_quoted_and_lone_surrogates_refused(tmp_path, fmt):
    storage = _FakeStorage("0", 1)
    tensor = _FakeTensor(storage, (1,))
    # A key that would clear the line and print a green OK, twice once
    # `module.` is stripped.
    hostile = "\x1b[2K\r\x1b[32mOK"
    path = _forged_checkpoint(
        tmp_path / "ansi.pth", fmt,
        [(hostile, tensor), ("module." + hostile, tensor)], {"0": bytes(4)},
    )
    with pytest.raises(ValueError) as info:
        read_torch_checkpoint(path)
    assert "\x1b" not in str(info.value) and "\r" not in str(info.value)
    assert repr(hostile) in str(info.value)
    # JSON and pickles can carry a lone surrogate; no file name, .npz
    # member or HDF5 key can hold one.
    path = _forged_checkpoint(
        tmp_path / "surrogate.pth", fmt, [("\ud800", tensor)], {"0": bytes(4)}
    )
    _expect_error(path, r"tensor name '\\ud800' is not valid Unicode")


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

    # The attack classes above, at random sizes: each file is read as
    # arrays or refused with a ValueError, as the bounds say, within 5 s
    # and a memory bound.
    _KEYS = {
        "int": _Raw(b"J" + struct.pack("<i", -5)),
        "float": _Raw(b"G" + struct.pack(">d", 0.5)),
        "none": _Raw(b"N"),
        "tuple": _Raw(b")"),
        "nested_tuple": _Raw(b"K\x01\x85\x85"),
        "frozenset": _Raw(b"(K\x01\x91"),
        "list": _Raw(b"]"),
    }

    @pytest.mark.parametrize("fmt", FORMATS)
    @settings(
        max_examples=40,
        deadline=None,
        database=None,
        suppress_health_check=[HealthCheck.function_scoped_fixture],
    )
    @given(
        attack=st.sampled_from([
            "shared", "broadcast", "nesting", "key", "memo", "duplicates",
            "long_shape", "zero_size", "classes", "non_finite",
        ]),
        count=st.integers(1, 200),
        depth=st.integers(1, 3000),
        container=st.sampled_from([b"]", b")", b"}"]),
        key=st.sampled_from(sorted(_KEYS)),
    )
    def test_fuzz_attack_classes(tmp_path, fmt, attack, count, depth, container, key):
        import tracemalloc

        values = np.arange(4096, dtype="<f4")
        if attack == "non_finite":  # read as they are: loading refuses them
            values[count::7] = [np.nan, np.inf, -np.inf][count % 3]
        storage = _FakeStorage("0", values.size)
        entries, extra, refusal = [("w", _FakeTensor(storage, (4096,)))], [], None
        expected = {}
        if attack == "shared":  # `count` tensors of one storage
            tensor = _FakeTensor(storage, (64, 64))
            entries += [(f"s{i}", tensor if i % 2 else _FakeTensor(storage, (64, 64)))
                        for i in range(count)]
        elif attack == "broadcast":  # `count` views of 1 MiB from 4 bytes
            entries += [(f"b{i}", _FakeTensor(storage, (_MiB // 4,), (0,)))
                        for i in range(count)]
            if count > 64:
                refusal = "broadcast views"
        elif attack == "nesting":  # `depth` containers inside one another
            if container == b"}":
                raw = b"}K\x00" * (depth - 1) + b"}" + b"s" * (depth - 1)
            elif container == b")":
                raw = b")" + b"\x85" * (depth - 1)
            else:
                raw = b"]" * depth + b"a" * (depth - 1)
            extra = [("x", _Raw(raw))]
            # The checkpoint and its entry "x" are two levels more.
            if depth + 1 > 64:
                refusal = "more than 64 levels"
        elif attack == "key":
            extra = [("x", _Pairs([(_KEYS[key], 0)] * count))]
            if key in ("tuple", "nested_tuple", "frozenset", "list"):
                refusal = "refused dict key"
        elif attack == "duplicates":  # one name `count` times: the last wins
            entries += [("d", _FakeTensor(storage, (32, 32), offset=i))
                        for i in range(count)]
            expected["d"] = values[count - 1 : count - 1 + 1024].reshape(32, 32)
        elif attack == "long_shape":  # `depth` sizes of 2**63 - 1 and a 0
            shape = (2**63 - 1,) * (depth - 1) + (0,)
            entries.append(("l", _FakeTensor(storage, shape, (1,) * depth)))
            if depth > 64:
                refusal = "more than the 64 NumPy allows"
            elif depth > 1:
                refusal = "multiply past 2**63 bytes"
        elif attack == "zero_size":  # `count` empty tensors, distinct names
            entries += [(f"z{i}", _FakeTensor(storage, (0, depth)))
                        for i in range(count)]
            expected.update({f"z{i}": np.zeros((0, depth), "f4")
                             for i in range(count)})
        elif attack == "classes":  # a classifier of 10**k classes and no input
            shape = (10 ** min(depth, 18), 0)
            entries.append(("fc.weight", _FakeTensor(storage, shape, (0, 1))))
            expected["fc.weight"] = np.zeros(shape, "f4")
        elif attack == "non_finite":
            pass
        else:  # `count` PUTs, some beyond the memo's range
            index = depth * 2**40 if count % 2 else depth
            puts = b"".join(b"Np%d\n0" % (index + i) for i in range(count))
            extra = [("x", _Raw(puts + b"N"))]
            if index >= 2**32:
                refusal = "memo index"
        path = _forged_checkpoint(
            tmp_path / "attack.pth", fmt, entries, {"0": values.tobytes()}, extra
        )
        tracemalloc.start()
        try:
            with _time_limit(5):
                try:
                    got = read_torch_checkpoint(path)
                except ValueError as error:
                    assert refusal is not None and refusal in str(error), error
                    assert str(path) in str(error)
                else:
                    assert refusal is None, refusal
                    np.testing.assert_array_equal(got["w"], values)
                    for name, want in expected.items():
                        assert got[name].shape == want.shape, name
                        np.testing.assert_array_equal(got[name], want)
            _, peak = tracemalloc.get_traced_memory()
        finally:
            tracemalloc.stop()
        # One storage of 16 KiB, whatever number of views; the pickle's
        # objects (a few hundred bytes each per opcode) on top.
        assert peak < 2 * _MiB + 400 * path.stat().st_size, peak

else:  # pragma: no cover

    def test_fuzz_mutated_checkpoints():
        pytest.skip("hypothesis is not installed")


def test_a_text_file_is_called_what_it_is(tmp_path):
    path = tmp_path / "model.pth"
    path.write_text("import numpy as np\nprint('hello')\n")
    with pytest.raises(ValueError) as info:
        read_torch_checkpoint(path)
    message = str(info.value)
    assert "not a PyTorch checkpoint" in message
    assert "looks like a text file" in message
    assert "refused global" not in message
    path.write_bytes(b"\x00\x01\x02garbage" * 8)
    with pytest.raises(ValueError, match="looks like another kind of file"):
        read_torch_checkpoint(path)

"""Reading PyTorch checkpoints without PyTorch and without running pickles.

`torch.save` writes a pickle whose tensors point into raw storages kept
next to it. `torch.load` unpickles with the standard machinery, which can
call any importable function the file names: loading an untrusted
checkpoint with it can run arbitrary code. This module reads the two
formats `torch.save` has written since PyTorch 0.4 with a restricted
unpickler that resolves only a handful of names, each to a stand-in of
our own that records what the file describes; the NumPy arrays are built
afterwards, from the storage bytes, with bounds checks. PyTorch is
neither imported nor needed.

The two formats:

- zip (the default since PyTorch 1.6): an uncompressed zip archive with
  one top-level directory (named after the file by `torch.save`, but any
  name is accepted) holding `data.pkl`, one record `data/<key>` per
  storage, and optionally `byteorder` (`little` or `big`).
- legacy (`_use_new_zipfile_serialization=False`, the format of the
  reference's released `*.pth.tar` files): five pickles in a row (magic
  number, protocol version, system information, the checkpoint, the list
  of storage keys), then for each key an 8-byte little-endian element
  count followed by the storage's little-endian bytes.
"""

from __future__ import annotations

import io
import math
import os
import pickle
import reprlib
import struct
import zipfile
import zlib
from typing import Any
from typing import Callable
from typing import NamedTuple

import numpy as np
from numpy.lib.stride_tricks import as_strided

# First pickle of a legacy file, and the protocol version that follows it.
_LEGACY_MAGIC = 0x1950A86A20F9469CFC6C
_LEGACY_PROTOCOL = 1001
_ZIP_LOCAL_HEADER = b"PK\x03\x04"

# Storage and tensor dtypes we can represent, as NumPy codes of the bytes
# on disk (byte order added when reading). `bfloat16` is read as uint16
# and widened to float32; `bool` is read as bytes and compared with 0.
_RAW_DTYPES = {
    "float16": "f2",
    "float32": "f4",
    "float64": "f8",
    "bfloat16": "u2",
    "complex64": "c8",
    "complex128": "c16",
    "int8": "i1",
    "int16": "i2",
    "int32": "i4",
    "int64": "i8",
    "uint8": "u1",
    "uint16": "u2",
    "uint32": "u4",
    "uint64": "u8",
    "bool": "u1",
}

# `torch.<Name>Storage` classes (typed storages, what `torch.save` writes
# for every dtype above except uint16/32/64) -> dtype of their elements.
# Old files saved from a GPU may name them under `torch.cuda`.
_TYPED_STORAGES = {
    "DoubleStorage": "float64",
    "FloatStorage": "float32",
    "HalfStorage": "float16",
    "BFloat16Storage": "bfloat16",
    "ComplexDoubleStorage": "complex128",
    "ComplexFloatStorage": "complex64",
    "LongStorage": "int64",
    "IntStorage": "int32",
    "ShortStorage": "int16",
    "CharStorage": "int8",
    "ByteStorage": "uint8",
    "BoolStorage": "bool",
}

# Dtypes that PyTorch 2 saves as an untyped (byte) storage plus a
# `torch.<dtype>` global passed to `_rebuild_tensor_v3`, and NumPy has.
_V3_DTYPES = ("uint16", "uint32", "uint64")

# Zero or overlapping strides let a tiny storage describe a huge tensor;
# copying such a broadcast view is allowed up to this many bytes.
_MAX_BROADCAST_BYTES = 64 * 2**20


class _CheckpointError(ValueError):
    """A problem found by our own checks; the message says what it is."""


class _CorruptedPickle(_CheckpointError):
    """A pickle the unpickler could not parse."""


# The stand-ins the unpickler hands out. Named tuples are immutable and
# have no `__dict__`, so a crafted pickle cannot alter them with BUILD.


class _StorageType(NamedTuple):
    """A storage class named by the pickle (`torch.FloatStorage`, ...)."""

    name: str
    dtype: str

    def __repr__(self) -> str:
        return f"<torch.{self.name}>"


class _DType(NamedTuple):
    """A `torch.<dtype>` global, as passed to `_rebuild_tensor_v3`."""

    dtype: str

    def __repr__(self) -> str:
        return f"<torch.{self.dtype}>"


class _Storage(NamedTuple):
    """A persistent id: `nbytes` bytes of the storage `key`, from `start`."""

    key: str
    dtype: str
    start: int
    nbytes: int

    def __repr__(self) -> str:
        return f"<storage {self.key!r}>"


class _Tensor(NamedTuple):
    """A strided view of a storage; strides and offset are in elements."""

    storage: _Storage
    dtype: str
    offset: int
    shape: tuple
    strides: tuple

    def __repr__(self) -> str:
        return f"<tensor {self.dtype} {self.shape}>"


class _Callable(NamedTuple):
    """A callable stand-in, immutable where a function is not.

    A crafted BUILD could set a function's `__defaults__` or `__dict__`,
    for every later read in the process.
    """

    name: str
    function: Callable

    def __call__(self, *args: Any) -> Any:
        return self.function(*args)

    def __repr__(self) -> str:
        return f"<{self.name}>"


class _StateDict(dict):
    """Stand-in for `collections.OrderedDict` (a dict keeps order too).

    `torch.nn.Module.state_dict()` pickles a `_metadata` attribute with
    BUILD; defining `__setstate__` drops it and, having no `__dict__`, an
    instance cannot receive attributes that would shadow dict methods.
    """

    __slots__ = ()

    def __setstate__(self, state: Any) -> None:
        del state  # module versions: nothing we need


_REPR = reprlib.Repr()
_REPR.maxlevel = 3  # unpickled objects can nest as deep as the file allows
_REPR.maxstring = _REPR.maxother = _REPR.maxlong = 40


def _describe(value: Any) -> str:
    """A short repr of an unpickled value, for error messages."""
    try:
        return _REPR.repr(value)
    except Exception:  # e.g. an int with more digits than str() allows
        return f"<a {_kind(value)}>"


def _explain(error: BaseException) -> str:
    """`'EOFError'` or `'KeyError: 7'`: the type, and the message if any."""
    message = str(error)
    return f"{type(error).__name__}: {message}" if message else type(error).__name__


def _kind(value: Any) -> str:
    """What an unpickled value is, in words a PyTorch user knows."""
    if isinstance(value, _Tensor):
        return "tensor"
    if isinstance(value, (_Storage, _StorageType)):
        return "storage"
    if isinstance(value, _StateDict):
        return "OrderedDict"
    if isinstance(value, (_Callable, _DType)):
        return repr(value)
    return type(value).__name__


def _check_int(value: Any, what: str) -> int:
    # bool is an int subclass; a pickle has no business putting one here.
    # torch keeps sizes, strides and offsets in int64.
    if type(value) is not int or not 0 <= value < 2**63:
        raise _CheckpointError(
            f"{what} must be an int in [0, 2**63), found {_describe(value)}"
        )
    return value


def _check_ints(value: Any, what: str) -> tuple:
    if type(value) is not tuple:
        raise _CheckpointError(f"{what} must be a tuple, found {_describe(value)}")
    for item in value:
        _check_int(item, what)
    return value


def _rebuild_tensor_v2(*args: Any) -> _Tensor:
    # (storage, storage_offset, size, stride, requires_grad,
    #  backward_hooks[, metadata]); the last three do not affect the data.
    if len(args) not in (6, 7):
        raise _CheckpointError(
            f"_rebuild_tensor_v2 expects 6 or 7 arguments, found {len(args)}"
        )
    storage = args[0]
    if not isinstance(storage, _Storage):
        raise _CheckpointError(
            f"tensor without a storage (found {_describe(storage)})"
        )
    return _make_tensor(storage, storage.dtype, *args[1:4])


def _rebuild_tensor_v3(*args: Any) -> _Tensor:
    # (storage, storage_offset, size, stride, requires_grad,
    #  backward_hooks, dtype[, metadata]): the dtype is not the storage's.
    if len(args) not in (7, 8):
        raise _CheckpointError(
            f"_rebuild_tensor_v3 expects 7 or 8 arguments, found {len(args)}"
        )
    storage, dtype = args[0], args[6]
    if not isinstance(storage, _Storage):
        raise _CheckpointError(
            f"tensor without a storage (found {_describe(storage)})"
        )
    if not isinstance(dtype, _DType):
        raise _CheckpointError(f"tensor without a dtype (found {_describe(dtype)})")
    return _make_tensor(storage, dtype.dtype, *args[1:4])


def _make_tensor(
    storage: _Storage, dtype: str, offset: Any, shape: Any, strides: Any
) -> _Tensor:
    _check_int(offset, "storage offset")
    _check_ints(shape, "tensor size")
    _check_ints(strides, "tensor stride")
    if len(shape) != len(strides):
        raise _CheckpointError(
            f"tensor size {_describe(shape)} and stride {_describe(strides)} "
            "differ in length"
        )
    return _Tensor(storage, dtype, offset, shape, strides)


def _rebuild_parameter(*args: Any) -> _Tensor:
    # (data, requires_grad, backward_hooks) or, for `_with_state`, also the
    # Python attributes of the Parameter: a Parameter is its data here.
    if len(args) not in (3, 4) or not isinstance(args[0], _Tensor):
        raise _CheckpointError(
            f"malformed Parameter: {len(args)} arguments, "
            f"data {_describe(args[0] if args else None)}"
        )
    return args[0]


def _torch_size(*args: Any) -> tuple:
    if len(args) != 1 or type(args[0]) not in (tuple, list):
        raise _CheckpointError(f"malformed torch.Size{_describe(args)}")
    return _check_ints(tuple(args[0]), "torch.Size")


def _allowed_globals() -> dict[tuple[str, str], Any]:
    """`(module, name)` -> the stand-in the unpickler returns for it."""
    allowed = {
        ("collections", "OrderedDict"): _StateDict,
        ("torch._utils", "_rebuild_tensor_v2"): _rebuild_tensor_v2,
        ("torch._utils", "_rebuild_tensor_v3"): _rebuild_tensor_v3,
        ("torch._utils", "_rebuild_parameter"): _rebuild_parameter,
        ("torch._utils", "_rebuild_parameter_with_state"): _rebuild_parameter,
        ("torch", "Size"): _torch_size,
    }
    allowed = {
        (module, name): _Callable(f"{module}.{name}", function)
        for (module, name), function in allowed.items()
    }
    # Untyped storages hold bytes; `_rebuild_tensor_v3` says the dtype.
    for module in ("torch", "torch.storage"):
        allowed[module, "UntypedStorage"] = _StorageType("UntypedStorage", "uint8")
    for name, dtype in _TYPED_STORAGES.items():
        for module in ("torch", "torch.cuda"):
            allowed[module, name] = _StorageType(name, dtype)
    for dtype in _V3_DTYPES:
        allowed["torch", dtype] = _DType(dtype)
    return allowed


_ALLOWED_GLOBALS = _allowed_globals()


def _refuse_opcode(unpickler: pickle._Unpickler) -> None:
    raise _CheckpointError(
        "pickle opcode BYTEARRAY8 (protocol 5) is not used by torch.save "
        "and is refused"
    )


class _RestrictedUnpickler(pickle._Unpickler):
    """An unpickler that can only build data and our stand-ins.

    The pure-Python unpickler of the standard library, not the C one: it
    reads a counted string with one `read(n)` on the file instead of first
    allocating the `n` bytes the file declares, so a corrupted length costs
    nothing. Pickles of state dicts are small; speed does not matter.

    Args:
        file: binary file positioned at the pickle.
        file_size: size of the checkpoint, to bound declared storage sizes.
        storages: `{key: _Storage}` filled by persistent ids, or None when
            the pickle must not reference storages.
    """

    dispatch = dict(pickle._Unpickler.dispatch)
    # bytearray(n) zero-fills n declared bytes before reading them.
    dispatch[pickle.BYTEARRAY8[0]] = _refuse_opcode

    def __init__(
        self, file: Any, file_size: int, storages: dict[str, _Storage] | None
    ):
        super().__init__(file, encoding="utf-8")
        self._file_size = file_size
        self._storages = storages

    def find_class(self, module: str, name: str) -> Any:
        try:
            return _ALLOWED_GLOBALS[module, name]
        except (KeyError, TypeError):
            pass
        raise _CheckpointError(
            f"refused global '{module}.{name}': the pickle may only "
            "reference tensors, storages and OrderedDict; loading it with "
            "torch.load would have called or imported that name"
        )

    def persistent_load(self, pid: Any) -> _Storage:
        if self._storages is None:
            raise _CheckpointError("unexpected persistent id in a header pickle")
        if type(pid) is not tuple or not pid:
            raise _CheckpointError(f"malformed persistent id {_describe(pid)}")
        kind = pid[0].decode("ascii") if type(pid[0]) is bytes else pid[0]
        if kind == "module":
            raise _CheckpointError(
                "the file pickles a whole torch.nn.Module, not a state dict; "
                "save `model.state_dict()` instead"
            )
        # zip: ('storage', type, key, location, numel); legacy adds a sixth
        # entry, None or (view_key, offset, numel) for a view of the storage.
        if kind != "storage" or len(pid) not in (5, 6):
            raise _CheckpointError(f"malformed persistent id {_describe(pid)}")
        storage_type, key, location, numel = pid[1:5]
        view = pid[5] if len(pid) == 6 else None
        if not isinstance(storage_type, _StorageType):
            raise _CheckpointError(f"malformed storage type {_describe(storage_type)}")
        if type(key) is not str or type(location) not in (str, bytes):
            raise _CheckpointError(f"malformed persistent id {_describe(pid)}")
        _check_int(numel, f"element count of storage {_describe(key)}")
        itemsize = np.dtype(_RAW_DTYPES[storage_type.dtype]).itemsize
        nbytes = numel * itemsize
        # Refuse before anything is allocated for it.
        if nbytes > self._file_size:
            raise _CheckpointError(
                f"storage {_describe(key)} declares {nbytes} bytes but the whole file "
                f"has {self._file_size}"
            )
        storage = _Storage(key, storage_type.dtype, 0, nbytes)
        known = self._storages.setdefault(key, storage)
        if known != storage:
            raise _CheckpointError(
                f"storage {_describe(key)} is declared twice, differently: "
                f"{known.dtype} x {known.nbytes} bytes and "
                f"{storage.dtype} x {storage.nbytes} bytes"
            )
        if view is None:
            return storage
        if type(view) is not tuple or len(view) != 3:
            raise _CheckpointError(f"malformed storage view {_describe(view)}")
        _, start, length = view
        _check_int(start, "storage view offset")
        _check_int(length, "storage view size")
        if (start + length) * itemsize > nbytes:
            raise _CheckpointError(
                f"view [{start}, {start + length}) of storage {_describe(key)} exceeds "
                f"its {numel} elements"
            )
        return _Storage(key, storage.dtype, start * itemsize, length * itemsize)


class _BoundedReader:
    """A file whose reads never ask for more than what is left in it.

    `BufferedReader.read(n)` allocates `n` bytes first; a corrupted length
    in the pickle must not turn into a huge allocation.
    """

    def __init__(self, file: Any, size: int):
        self._file = file
        self._size = size

    def _left(self) -> int:
        return max(self._size - self._file.tell(), 0)

    def read(self, n: int = -1) -> bytes:
        left = self._left()
        return self._file.read(left if n is None or n < 0 else min(n, left))

    def readline(self, limit: int = -1) -> bytes:
        left = self._left()
        return self._file.readline(left if limit < 0 else min(limit, left))

    def readinto(self, buffer: Any) -> int:
        view = memoryview(buffer).cast("B")
        return self._file.readinto(view[: self._left()])


def _unpickle(
    file: Any, file_size: int, storages: dict[str, _Storage] | None, what: str
) -> Any:
    try:
        return _RestrictedUnpickler(file, file_size, storages).load()
    except _CheckpointError:
        raise
    except Exception as error:
        # Whatever a garbled pickle makes the unpickler trip on.
        raise _CorruptedPickle(f"{what} is corrupted ({_explain(error)})") from error


def _read_exact(file: Any, nbytes: int, what: str) -> np.ndarray:
    """`nbytes` bytes from `file` into a new writable uint8 array."""
    buffer = np.empty(nbytes, dtype=np.uint8)
    view = memoryview(buffer)
    done = 0
    while done < nbytes:
        count = file.readinto(view[done:])
        if not count:
            raise _CheckpointError(f"{what} is truncated: the file ends early")
        done += count
    return buffer


def _read_zip_record(
    file: Any, file_size: int, info: zipfile.ZipInfo, limit: int | None = None
) -> np.ndarray:
    """The bytes of one archive record, read straight from the file.

    Not through `ZipFile.open`: that would need a second copy of every
    storage, and it rejects records whose CRC is 0, which `torch.save`
    writes when `compute_crc32` is off.
    """
    name = info.filename
    if info.compress_type != zipfile.ZIP_STORED or info.flag_bits & 0x1:
        # torch.save never compresses or encrypts; a compressed record could
        # also expand far beyond the file (a zip bomb).
        raise _CheckpointError(
            f"record '{name}' is compressed or encrypted (method "
            f"{info.compress_type}); torch.save writes stored records only"
        )
    if limit is not None and info.file_size > limit:
        raise _CheckpointError(f"record '{name}' is too large ({info.file_size} bytes)")
    if info.header_offset < 0 or info.header_offset + 30 > file_size:
        raise _CheckpointError(f"record '{name}' points outside the file")
    file.seek(info.header_offset)
    header = file.read(30)
    if len(header) != 30 or header[:4] != _ZIP_LOCAL_HEADER:
        raise _CheckpointError(f"record '{name}' has no valid local header")
    name_length, extra_length = struct.unpack("<HH", header[26:30])
    encoding = "utf-8" if info.flag_bits & 0x800 else "cp437"
    if file.read(name_length) != info.orig_filename.encode(encoding):
        raise _CheckpointError(f"record '{name}': local header names another file")
    start = info.header_offset + 30 + name_length + extra_length
    if start + info.file_size > file_size:
        raise _CheckpointError(f"record '{name}' extends past the end of the file")
    file.seek(start)
    data = _read_exact(file, info.file_size, f"record '{name}'")
    # A zero CRC means "not computed" for torch.save; empty records have 0.
    if info.CRC and zlib.crc32(data) != info.CRC:
        raise _CheckpointError(f"record '{name}' is corrupted (CRC mismatch)")
    return data


def _read_zip(file: Any, file_size: int) -> dict[str, np.ndarray]:
    file.seek(0)
    try:
        archive = zipfile.ZipFile(file)
        infos = archive.infolist()
    except Exception as error:
        raise _CheckpointError(
            f"not a valid zip archive ({_explain(error)})"
        ) from error
    records = {}
    for info in infos:
        if info.filename in records:
            raise _CheckpointError(f"record '{info.filename}' appears twice")
        records[info.filename] = info
    roots = [
        name[: -len("/data.pkl")]
        for name in records
        if name.endswith("/data.pkl") and name.count("/") == 1
    ]
    if len(roots) != 1:
        raise _CheckpointError(
            "expected one '<archive>/data.pkl' record in the zip archive, "
            f"found {len(roots)}"
        )
    root = roots[0]
    byteorder = "<"  # torch wrote no `byteorder` record before 1.12
    if f"{root}/byteorder" in records:
        mark = _read_zip_record(file, file_size, records[f"{root}/byteorder"], 16)
        byteorder = {b"little": "<", b"big": ">"}.get(mark.tobytes())
        if byteorder is None:
            raise _CheckpointError(
                f"unknown byte order {mark.tobytes()!r} (expected little or big)"
            )
    pickled = _read_zip_record(file, file_size, records[f"{root}/data.pkl"])
    storages: dict[str, _Storage] = {}
    checkpoint = _unpickle(
        io.BytesIO(pickled.tobytes()), file_size, storages, "data.pkl"
    )
    del pickled
    state_dict = _find_state_dict(checkpoint)
    buffers = {}
    for key in _storage_keys(state_dict):
        name = f"{root}/data/{key}"
        if name not in records:
            raise _CheckpointError(f"storage {_describe(key)} has no record '{name}'")
        if records[name].file_size != storages[key].nbytes:
            raise _CheckpointError(
                f"record '{name}' has {records[name].file_size} bytes, the "
                f"pickle declares {storages[key].nbytes}"
            )
        buffers[key] = _read_zip_record(file, file_size, records[name])
    return _materialize(state_dict, buffers, byteorder)


def _read_legacy(file: Any, file_size: int) -> dict[str, np.ndarray]:
    file.seek(0)
    reader = _BoundedReader(file, file_size)
    not_a_checkpoint = (
        "not a PyTorch checkpoint: neither a zip archive nor a legacy file "
        "starting with the magic number"
    )
    try:
        magic = _unpickle(reader, file_size, None, "the magic number pickle")
    except _CorruptedPickle as error:
        raise _CheckpointError(f"{not_a_checkpoint} ({error})") from error.__cause__
    if type(magic) is not int or magic != _LEGACY_MAGIC:
        raise _CheckpointError(f"{not_a_checkpoint} (found {_describe(magic)})")
    protocol = _unpickle(reader, file_size, None, "the protocol version pickle")
    if type(protocol) is not int or protocol != _LEGACY_PROTOCOL:
        raise _CheckpointError(f"unsupported legacy protocol {_describe(protocol)}")
    # Type sizes and byte order of the saving machine: storages are always
    # written little-endian whatever it was, so nothing here is needed.
    sys_info = _unpickle(reader, file_size, None, "the system information pickle")
    if type(sys_info) is not dict:
        raise _CheckpointError(f"malformed system information {_describe(sys_info)}")
    storages: dict[str, _Storage] = {}
    checkpoint = _unpickle(reader, file_size, storages, "the checkpoint pickle")
    keys = _unpickle(reader, file_size, None, "the storage key list")
    if type(keys) is not list or any(type(key) is not str for key in keys):
        raise _CheckpointError(f"malformed storage key list {_describe(keys)}")
    state_dict = _find_state_dict(checkpoint)
    needed = set(_storage_keys(state_dict))
    buffers = {}
    # One iteration per listed key, each reading at least 8 bytes or failing.
    for key in keys:
        what = f"storage {_describe(key)}"
        if key not in storages or key in buffers:
            raise _CheckpointError(
                f"storage key list names {_describe(key)}, unknown or listed twice"
            )
        storage = storages[key]
        head = file.read(8)
        if len(head) != 8:
            raise _CheckpointError(f"{what} is truncated: the file ends early")
        (count,) = struct.unpack("<q", head)
        itemsize = np.dtype(_RAW_DTYPES[storage.dtype]).itemsize
        if count < 0 or count * itemsize != storage.nbytes:
            raise _CheckpointError(
                f"{what} holds {count} elements, the pickle declares "
                f"{storage.nbytes // itemsize}"
            )
        if storage.nbytes > file_size - file.tell():
            raise _CheckpointError(f"{what} is truncated: the file ends early")
        if key in needed:
            buffers[key] = _read_exact(file, storage.nbytes, what)
        else:
            file.seek(storage.nbytes, os.SEEK_CUR)  # e.g. optimizer state
        # Also marks the key as seen for the duplicate check above.
        buffers.setdefault(key, None)
    missing = sorted(needed - set(buffers))
    if missing:
        raise _CheckpointError(f"no data for storages {missing[:5]}")
    return _materialize(state_dict, buffers, "<")


def _find_state_dict(checkpoint: Any) -> dict[str, _Tensor]:
    """The state dict inside the unpickled checkpoint, `module.` stripped."""
    if not isinstance(checkpoint, dict):
        raise _CheckpointError(
            "no state dict found: the checkpoint is a "
            f"{_kind(checkpoint)}, not a dict"
        )
    # Unbound `dict` methods: nothing of the unpickled object gets to run.
    if dict.__contains__(checkpoint, "state_dict"):
        candidate = dict.__getitem__(checkpoint, "state_dict")
        where = "the 'state_dict' entry"
        if not isinstance(candidate, dict):
            raise _CheckpointError(
                f"no state dict found: {where} is a {_kind(candidate)}"
            )
    else:
        candidate, where = checkpoint, "the checkpoint"
    others = [k for k, v in dict.items(candidate) if not isinstance(v, _Tensor)]
    if others:
        names = ", ".join(_describe(k) for k in others[:5])
        hint = " and it has no 'state_dict' entry" if where == "the checkpoint" else ""
        raise _CheckpointError(
            f"no state dict found: entries of {where} are not tensors ({names}"
            f"{', ...' if len(others) > 5 else ''}){hint}"
        )
    state_dict = {}
    for key, tensor in dict.items(candidate):
        if type(key) is not str:
            raise _CheckpointError(f"state dict key {_describe(key)} is not a str")
        # torch.nn.DataParallel / DistributedDataParallel wrap the model.
        name = key[len("module.") :] if key.startswith("module.") else key
        if name in state_dict:
            raise _CheckpointError(
                f"state dict has '{name}' twice once 'module.' is stripped"
            )
        state_dict[name] = tensor
    return state_dict


def _storage_keys(state_dict: dict[str, _Tensor]) -> list[str]:
    """Storage keys the state dict needs, each once, in order of use."""
    return list(dict.fromkeys(tensor.storage.key for tensor in state_dict.values()))


def _materialize(
    state_dict: dict[str, _Tensor],
    buffers: dict[str, np.ndarray | None],
    byteorder: str,
) -> dict[str, np.ndarray]:
    users: dict[str, int] = {}
    for tensor in state_dict.values():
        users[tensor.storage.key] = users.get(tensor.storage.key, 0) + 1
    arrays = {}
    for name, tensor in state_dict.items():
        storage = tensor.storage
        data = buffers[storage.key][storage.start : storage.start + storage.nbytes]
        try:
            arrays[name] = _to_array(
                tensor, data, byteorder, exclusive=users[storage.key] == 1
            )
        except _CheckpointError as error:
            raise _CheckpointError(f"tensor '{name}': {error}") from None
    return arrays


def _to_array(
    tensor: _Tensor, data: np.ndarray, byteorder: str, exclusive: bool
) -> np.ndarray:
    """The tensor's values as a new (or exclusively owned) NumPy array."""
    dtype = np.dtype(byteorder + _RAW_DTYPES[tensor.dtype])
    if dtype.isnative:
        dtype = dtype.newbyteorder("=")  # prints as float32, not <f4
    itemsize = dtype.itemsize
    shape, strides, offset = tensor.shape, tensor.strides, tensor.offset
    numel = math.prod(shape)
    if numel == 0:
        # No element is read, so torch checks no bounds either.
        try:
            empty = np.empty(shape, dtype=dtype)
        except Exception as error:
            raise _CheckpointError(f"invalid empty size {_describe(shape)}") from error
        return _convert(empty, tensor.dtype)
    last = offset + sum((n - 1) * s for n, s in zip(shape, strides))
    if (last + 1) * itemsize > data.size:
        raise _CheckpointError(
            f"size {_describe(shape)}, stride {_describe(strides)} and offset "
            f"{offset} reach element "
            f"{last}, beyond the {data.size // itemsize} elements of its storage"
        )
    if numel * itemsize > max(data.size, _MAX_BROADCAST_BYTES):
        raise _CheckpointError(
            f"broadcast view of {numel} elements is larger than "
            f"{_MAX_BROADCAST_BYTES} bytes"
        )
    flat = data[: data.size - data.size % itemsize].view(dtype)
    # The stride of a dimension of size 1 is never used, and may be huge.
    view = as_strided(
        flat[offset:],
        shape=shape,
        strides=tuple(s * itemsize if n > 1 else 0 for n, s in zip(shape, strides)),
        writeable=False,
    )
    if (
        exclusive
        and offset == 0
        and numel * itemsize == data.size
        and view.flags.c_contiguous
        and dtype.isnative
        and tensor.dtype not in ("bool", "bfloat16")
    ):
        # The array is all of a buffer nobody else uses: no copy needed.
        return flat.reshape(shape)
    return _convert(view, tensor.dtype)


def _convert(view: np.ndarray, dtype: str) -> np.ndarray:
    """A C-contiguous, native-endian copy in the dtype we return."""
    if dtype == "bool":
        # Any nonzero byte is True. `out` keeps 0-d results arrays.
        return np.not_equal(view, 0, out=np.empty(view.shape, dtype=bool))
    if dtype == "bfloat16":
        # bfloat16 is the top half of a float32: widening is exact.
        widened = view.astype(np.uint32, order="C")
        widened <<= 16
        return widened.view(np.float32)
    return view.astype(view.dtype.newbyteorder("="), order="C")


def read_torch_checkpoint(path: str | os.PathLike) -> dict[str, np.ndarray]:
    """Reads the state dict of a PyTorch checkpoint as NumPy arrays.

    Reads files written by `torch.save` in either format, the zip archive
    (the default since PyTorch 1.6) and the legacy one
    (`_use_new_zipfile_serialization=False`, used by the released weights
    of `antialiased_cnns`, e.g. `resnet50_lpf4-994b528f.pth.tar`), without
    importing PyTorch and without letting the file run code: the pickle
    may only reference tensors, storages, `torch.Size` and
    `collections.OrderedDict`.

    The checkpoint may be a bare state dict or a dict with a `'state_dict'`
    entry, as written by the ImageNet training script (its other entries,
    such as `epoch`, `arch`, `best_acc1` or `optimizer`, are ignored; their
    storages are not even read). A leading `module.` (from
    `torch.nn.DataParallel`) is stripped from every key.

    Tensors keep their dtype (float16/32/64, complex64/128, int8/16/32/64,
    uint8/16/32/64, bool), except bfloat16, which becomes float32 (exact).
    Every array is C-contiguous, native-endian, writable and shares memory
    with no other returned array, whatever strides, offsets or storage
    sharing the tensors had.

    Args:
        path: path of the checkpoint (`.pth`, `.pth.tar`, `.pt`, ...).

    Returns:
        Dict of parameter and buffer names to NumPy arrays, in the order
        of the file.

    Raises:
        FileNotFoundError: if `path` does not exist (other errors opening
            the file, such as `PermissionError`, propagate too).
        ValueError: for anything wrong with the contents, naming `path`
            and the problem: not a PyTorch checkpoint, truncated or
            corrupted data, a reference to any other Python name (which
            `torch.load` would have imported or called), or no state dict.

    Example:

    >>> state_dict = read_torch_checkpoint("resnet50_lpf4-994b528f.pth.tar")
    >>> state_dict["conv1.weight"].shape
    (64, 3, 7, 7)
    """
    path = os.fspath(path)
    with open(path, "rb") as file:
        try:
            file_size = os.fstat(file.fileno()).st_size
            head = file.read(512)
            if not head:
                raise _CheckpointError("the file is empty")
            if head.startswith(_ZIP_LOCAL_HEADER):
                return _read_zip(file, file_size)
            if head[257:262] == b"ustar":
                raise _CheckpointError(
                    "tar checkpoints (the format of the first PyTorch "
                    "releases) are not supported"
                )
            # Anything else is a legacy file or not a checkpoint at all; the
            # magic number, the first pickle, will tell.
            return _read_legacy(file, file_size)
        except _CheckpointError as error:
            problem, cause = str(error), error.__cause__
        except Exception as error:
            # Our checks should leave nothing else; still, never let a
            # library exception escape for a bad file.
            problem, cause = _explain(error), error
    raise ValueError(f"Cannot read PyTorch checkpoint '{path}': {problem}") from cause

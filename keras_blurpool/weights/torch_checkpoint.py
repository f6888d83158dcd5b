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

The file is untrusted, so reading it is bounded by what it holds: dicts
are kept as the key-value pairs the pickle lists (nothing is hashed but
the state dict's str keys), containers nest at most `_MAX_NESTING` deep,
zip records may neither overlap nor leave their area, and the arrays are
views of one buffer per storage, the reader allocating no more than the
storages' bytes (see `_Budget`). docs/security.md lists every bound.
"""

from __future__ import annotations

import io
import itertools
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

from keras_blurpool.weights.files import open_regular_file
from keras_blurpool.weights.names import name_problem
from keras_blurpool.weights.names import quote

# First pickle of a legacy file, and the protocol version that follows it.
_LEGACY_MAGIC = 0x1950A86A20F9469CFC6C
_LEGACY_PROTOCOL = 1001
_ZIP_LOCAL_HEADER = b"PK\x03\x04"
# How a legacy file starts: the pickle of its magic number, opened by the
# PROTO opcode from protocol 2 on, or the number in text (protocols 0, 1).
_LEGACY_STARTS = (b"\x80", b"L%dL\n" % _LEGACY_MAGIC)

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

# Zero or overlapping strides let a tiny storage describe a huge tensor.
# Such views are returned as views, never copied; still, their sizes add
# up to at most this many bytes per file, so that a caller copying every
# array copies a bounded amount.
_MAX_BROADCAST_BYTES = 64 * 2**20

# Allocations beyond the storages' bytes the reader tolerates (see
# `_Budget`); nothing a well-formed file needs.
_ALLOCATION_SLACK = 2**20

# Containers (lists, tuples, dicts, sets) nest at most this deep. Training
# checkpoints nest about 5 levels (optimizer -> param_groups -> params).
_MAX_NESTING = 64

# Dimensions of a tensor: NumPy's limit (torch's is the same, 64).
_MAX_DIMENSIONS = 64

# Dict keys are kept only if flat: a container key (a tuple, a frozenset)
# could nest deep enough to crash the interpreter when hashed.
_KEY_TYPES = (str, int, float, bool, bytes, type(None))

# Memo indices above this are refused: any int can be written after PUT,
# and ints from 2**61 - 1 on collide in a dict (hash(n) is n mod 2**61-1).
_MAX_MEMO_INDEX = 2**32


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


class _PickledDict:
    """A dict or `collections.OrderedDict` of the pickle, as its pairs.

    Never a real dict: inserting keys hashes them, and a file can hold
    thousands of int keys whose hashes collide (quadratic time) or a key
    nested deep enough to crash the interpreter when hashed. Only the
    state dict, whose keys must be str, becomes a dict, in
    `_find_state_dict`. Keys are checked to be flat when inserted.

    `torch.nn.Module.state_dict()` pickles a `_metadata` attribute with
    BUILD; `__setstate__` drops it, and `__slots__` leaves no `__dict__`
    that BUILD could fill.
    """

    __slots__ = ("kind", "pairs")

    def __init__(self, kind: str = "dict"):
        self.kind = kind
        self.pairs: list[tuple[Any, Any]] = []

    def __setstate__(self, state: Any) -> None:
        del state  # module versions: nothing we need

    def __repr__(self) -> str:
        return f"<{self.kind} of {len(self.pairs)} entries>"


class _PickledSet:
    """A set or frozenset of the pickle, as its items (never hashed)."""

    __slots__ = ("items", "kind")

    def __init__(self, kind: str, items: list):
        self.kind = kind
        self.items = items

    def __repr__(self) -> str:
        return f"<{self.kind} of {len(self.items)} items>"


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
    if isinstance(value, (_PickledDict, _PickledSet)):
        return value.kind
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
    if type(shape) is tuple and len(shape) > _MAX_DIMENSIONS:
        # Before any product of its sizes (big integers).
        raise _CheckpointError(
            f"tensor of {len(shape)} dimensions, more than the "
            f"{_MAX_DIMENSIONS} NumPy allows"
        )
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


def _ordered_dict(*args: Any) -> _PickledDict:
    # OrderedDict.__reduce__ passes no argument and the items through
    # SETITEMS; Python 2 passed them as one list of [key, value] pairs.
    result = _PickledDict("OrderedDict")
    if not args:
        return result
    if len(args) != 1 or type(args[0]) not in (list, tuple):
        raise _CheckpointError(f"malformed OrderedDict{_describe(args)}")
    for pair in args[0]:
        if type(pair) not in (list, tuple) or len(pair) != 2:
            raise _CheckpointError(f"malformed OrderedDict item {_describe(pair)}")
        _insert(result, pair[0], pair[1])
    return result


def _insert(mapping: Any, key: Any, value: Any) -> None:
    """`mapping[key] = value` for SETITEM(S), without hashing `key`."""
    if not isinstance(mapping, _PickledDict):
        raise _CheckpointError(f"an item set on a non-dict ({_kind(mapping)})")
    if type(key) not in _KEY_TYPES:
        raise _CheckpointError(
            f"refused dict key {_describe(key)} of type {_kind(key)}: keys "
            "may only be str, int, float, bool, bytes or None"
        )
    mapping.pairs.append((key, value))


def _allowed_globals() -> dict[tuple[str, str], Any]:
    """`(module, name)` -> the stand-in the unpickler returns for it."""
    allowed = {
        ("collections", "OrderedDict"): _ordered_dict,
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

    # Dicts and sets as pairs and items: nothing of the file is hashed.
    def load_empty_dictionary(self) -> None:
        self.append(_PickledDict())

    def load_dict(self) -> None:
        items = self.pop_mark()
        result = _PickledDict()
        for i in range(0, len(items), 2):
            _insert(result, items[i], items[i + 1])
        self.append(result)

    def load_setitem(self) -> None:
        value = self.stack.pop()
        key = self.stack.pop()
        _insert(self.stack[-1], key, value)

    def load_setitems(self) -> None:
        items = self.pop_mark()
        mapping = self.stack[-1]
        for i in range(0, len(items), 2):
            _insert(mapping, items[i], items[i + 1])

    def load_empty_set(self) -> None:
        self.append(_PickledSet("set", []))

    def load_additems(self) -> None:
        items = self.pop_mark()
        target = self.stack[-1]
        if not isinstance(target, _PickledSet) or target.kind != "set":
            raise _CheckpointError(f"items added to a non-set ({_kind(target)})")
        target.items.extend(items)

    def load_frozenset(self) -> None:
        items = self.pop_mark()  # before `self.append`: it switches stacks
        self.append(_PickledSet("frozenset", items))

    def load_put(self) -> None:
        index = int(self.readline()[:-1])
        if not 0 <= index < _MAX_MEMO_INDEX:
            raise _CheckpointError(f"pickle memo index {index} out of range")
        self.memo[index] = self.stack[-1]

    dispatch[pickle.EMPTY_DICT[0]] = load_empty_dictionary
    dispatch[pickle.DICT[0]] = load_dict
    dispatch[pickle.SETITEM[0]] = load_setitem
    dispatch[pickle.SETITEMS[0]] = load_setitems
    dispatch[pickle.EMPTY_SET[0]] = load_empty_set
    dispatch[pickle.ADDITEMS[0]] = load_additems
    dispatch[pickle.FROZENSET[0]] = load_frozenset
    dispatch[pickle.PUT[0]] = load_put

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
    in the pickle must not turn into a huge allocation. The bytes left are
    counted here rather than asked of the file (`tell()` on every opcode
    made reading a pickle five times slower); nothing else may read the
    file while this reader is in use.
    """

    def __init__(self, file: Any, size: int):
        self._file = file
        self._left = max(size - file.tell(), 0)

    def _take(self, data: Any) -> Any:
        self._left -= len(data)
        return data

    def read(self, n: int = -1) -> bytes:
        if n is None or n < 0 or n > self._left:
            n = self._left
        return self._take(self._file.read(n))

    def readline(self, limit: int = -1) -> bytes:
        if limit is None or limit < 0 or limit > self._left:
            limit = self._left
        return self._take(self._file.readline(limit))

    def readinto(self, buffer: Any) -> int:
        view = memoryview(buffer).cast("B")
        count = self._file.readinto(view[: self._left])
        self._left -= count
        return count


def _unpickle(
    file: Any, file_size: int, storages: dict[str, _Storage] | None, what: str
) -> Any:
    try:
        result = _RestrictedUnpickler(file, file_size, storages).load()
    except _CheckpointError:
        raise
    except Exception as error:
        # Whatever a garbled pickle makes the unpickler trip on.
        raise _CorruptedPickle(f"{what} is corrupted ({_explain(error)})") from error
    _check_nesting(result, what)
    return result


def _children(value: Any) -> Any:
    """The values a container of the pickle holds (dict keys are flat)."""
    if isinstance(value, _PickledDict):
        return (item for _, item in value.pairs)
    if isinstance(value, _PickledSet):
        return value.items
    # Exact types: our named tuples hold checked ints and strings only.
    if type(value) in (list, tuple):
        return value
    return None


def _check_nesting(root: Any, what: str) -> None:
    """Refuses containers nested deeper than `_MAX_NESTING`, or cyclic.

    Without recursion, in time linear in the number of containers (each
    is entered once; the height of shared ones is remembered), so that
    whatever later walks the object (`repr`, comparisons) stays shallow.
    """
    too_deep = _CheckpointError(
        f"{what} nests containers more than {_MAX_NESTING} levels deep"
    )
    children = _children(root)
    if children is None:
        return
    heights: dict[int, int] = {}  # id -> height; everything stays alive
    # Frames: [container, iterator over its children, tallest child so far].
    path = [[root, iter(children), 0]]
    on_path = {id(root)}
    while path:
        frame = path[-1]
        for child in frame[1]:
            grandchildren = _children(child)
            if grandchildren is None:
                continue
            if id(child) in heights:
                frame[2] = max(frame[2], heights[id(child)])
                continue
            if id(child) in on_path:
                raise _CheckpointError(f"{what} holds a container inside itself")
            if len(path) >= _MAX_NESTING:
                raise too_deep
            path.append([child, iter(grandchildren), 0])
            on_path.add(id(child))
            break
        else:
            path.pop()
            on_path.discard(id(frame[0]))
            height = frame[2] + 1
            if len(path) + height > _MAX_NESTING:
                raise too_deep
            heights[id(frame[0])] = height
            if path:
                path[-1][2] = max(path[-1][2], height)


class _Budget:
    """The bytes of arrays the reader may still allocate for one file.

    The limit is what the file justifies: the bytes of the storages the
    state dict uses (each read once, whatever number of tensors view it),
    twice those of bfloat16 storages again (widened to float32), and
    `_ALLOCATION_SLACK`. Every array the reader allocates is charged here
    first, so that no crafted layout can make it allocate more.
    """

    def __init__(self, storages: list[_Storage], widened: list[_Storage]):
        self.stored = sum(storage.nbytes for storage in storages)
        self.limit = (
            self.stored
            + sum(2 * storage.nbytes for storage in widened)
            + _ALLOCATION_SLACK
        )
        self.used = 0

    def empty(self, count: int, dtype: Any, what: str) -> np.ndarray:
        """`np.empty(count, dtype)`, once charged."""
        nbytes = count * np.dtype(dtype).itemsize
        if self.used + nbytes > self.limit:
            raise _CheckpointError(
                f"reading {what} would bring the reader's allocations to "
                f"{self.used + nbytes} bytes, more than the {self.limit} bytes "
                f"the file justifies (its storages hold {self.stored} bytes)"
            )
        self.used += nbytes
        return np.empty(count, dtype=dtype)


def _budget(state_dict: dict[str, _Tensor], storages: dict[str, _Storage]) -> _Budget:
    keys = _storage_keys(state_dict)
    widened = {t.storage.key for t in state_dict.values() if t.dtype == "bfloat16"}
    return _Budget([storages[k] for k in keys], [storages[k] for k in widened])


def _read_exact(file: Any, nbytes: int, what: str, budget: _Budget) -> np.ndarray:
    """`nbytes` bytes from `file` into a new writable uint8 array."""
    buffer = budget.empty(nbytes, np.uint8, what)
    view = memoryview(buffer)
    done = 0
    while done < nbytes:
        count = file.readinto(view[done:])
        if not count:
            raise _CheckpointError(f"{what} is truncated: the file ends early")
        done += count
    return buffer


class _Record(NamedTuple):
    """Where the bytes of one zip record lie, as its headers say."""

    info: zipfile.ZipInfo
    start: int  # of the data, past the local header


def _zip_records(file: Any, file_size: int, archive: zipfile.ZipFile) -> dict:
    """`{name: _Record}` of every record, once their ranges are checked.

    Each record (local header, name, extra field, data) must lie before
    the central directory, and no two may overlap: otherwise a thousand
    records of a crafted archive could all point at the same large bytes,
    each read (and allocated) anew.
    """
    records = {}
    ranges = []
    end = min(archive.start_dir, file_size)
    for info in archive.infolist():
        name = info.filename
        if name in records:
            raise _CheckpointError(f"record {quote(name)} appears twice")
        if not 0 <= info.header_offset <= end - 30:
            raise _CheckpointError(f"record {quote(name)} points outside the file")
        file.seek(info.header_offset)
        header = file.read(30)
        if len(header) != 30 or header[:4] != _ZIP_LOCAL_HEADER:
            raise _CheckpointError(f"record {quote(name)} has no valid local header")
        name_length, extra_length = struct.unpack("<HH", header[26:30])
        encoding = "utf-8" if info.flag_bits & 0x800 else "cp437"
        if file.read(name_length) != info.orig_filename.encode(encoding):
            raise _CheckpointError(
                f"record {quote(name)}: local header names another file"
            )
        start = info.header_offset + 30 + name_length + extra_length
        if start + info.compress_size > end:
            raise _CheckpointError(
                f"record {quote(name)} extends past the end of the records "
                f"(byte {start + info.compress_size}, the records end at {end})"
            )
        records[name] = _Record(info, start)
        ranges.append((info.header_offset, start + info.compress_size, name))
    ranges.sort()
    for (_, first_end, first), (second_start, _, second) in itertools.pairwise(ranges):
        if second_start < first_end:
            raise _CheckpointError(
                f"records '{first}' and '{second}' overlap (bytes "
                f"{second_start} to {first_end})"
            )
    return records


def _read_zip_record(
    file: Any, record: _Record, budget: _Budget | None = None, limit: int = 0
) -> np.ndarray:
    """The bytes of one archive record, read straight from the file.

    Not through `ZipFile.open`: that would need a second copy of every
    storage, and it rejects records whose CRC is 0, which `torch.save`
    writes when `compute_crc32` is off. Storages are charged to `budget`;
    the pickle records, without one, are bounded by `limit` if nonzero.
    """
    info = record.info
    name = info.filename
    if info.compress_type != zipfile.ZIP_STORED or info.flag_bits & 0x1:
        # torch.save never compresses or encrypts; a compressed record could
        # also expand far beyond the file (a zip bomb).
        raise _CheckpointError(
            f"record {quote(name)} is compressed or encrypted (method "
            f"{info.compress_type}); torch.save writes stored records only"
        )
    if limit and info.file_size > limit:
        raise _CheckpointError(f"record {quote(name)} is too large ({info.file_size} bytes)")
    file.seek(record.start)
    what = f"record {quote(name)}"
    if budget is None:
        # Not a storage; `_zip_records` checked that it fits in the file.
        data = np.frombuffer(file.read(info.file_size), dtype=np.uint8)
        if data.size != info.file_size:
            raise _CheckpointError(f"{what} is truncated: the file ends early")
    else:
        data = _read_exact(file, info.file_size, what, budget)
    # A zero CRC means "not computed" for torch.save; empty records have 0.
    if info.CRC and zlib.crc32(data) != info.CRC:
        raise _CheckpointError(f"record {quote(name)} is corrupted (CRC mismatch)")
    return data


def _read_zip(file: Any, file_size: int, entry: str | None = None) -> dict[str, np.ndarray]:
    file.seek(0)
    try:
        archive = zipfile.ZipFile(file)
    except Exception as error:
        raise _CheckpointError(
            f"not a valid zip archive ({_explain(error)})"
        ) from error
    records = _zip_records(file, file_size, archive)
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
        mark = _read_zip_record(file, records[f"{root}/byteorder"], limit=16)
        byteorder = {b"little": "<", b"big": ">"}.get(mark.tobytes())
        if byteorder is None:
            raise _CheckpointError(
                f"unknown byte order {mark.tobytes()!r} (expected little or big)"
            )
    pickled = _read_zip_record(file, records[f"{root}/data.pkl"])
    storages: dict[str, _Storage] = {}
    checkpoint = _unpickle(io.BytesIO(pickled), file_size, storages, "data.pkl")
    del pickled
    state_dict = _find_state_dict(checkpoint, entry)
    budget = _budget(state_dict, storages)
    buffers = {}
    for key in _storage_keys(state_dict):
        name = f"{root}/data/{key}"
        if name not in records:
            raise _CheckpointError(f"storage {_describe(key)} has no record {quote(name)}")
        if records[name].info.file_size != storages[key].nbytes:
            raise _CheckpointError(
                f"record {quote(name)} has {records[name].info.file_size} bytes, the "
                f"pickle declares {storages[key].nbytes}"
            )
        buffers[key] = _read_zip_record(file, records[name], budget)
    return _materialize(state_dict, buffers, byteorder, budget)


def _looks_like_text(head: bytes) -> bool:
    """Whether the first bytes of a file read as UTF-8 text."""
    try:
        text = head.decode("utf-8")
    except UnicodeDecodeError:
        return False
    return all(c.isprintable() or c in "\t\r\n" for c in text)


def _read_legacy(file: Any, file_size: int, entry: str | None = None) -> dict[str, np.ndarray]:
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
    if type(sys_info) is not _PickledDict:
        raise _CheckpointError(f"malformed system information {_describe(sys_info)}")
    storages: dict[str, _Storage] = {}
    checkpoint = _unpickle(reader, file_size, storages, "the checkpoint pickle")
    keys = _unpickle(reader, file_size, None, "the storage key list")
    if type(keys) is not list or any(type(key) is not str for key in keys):
        raise _CheckpointError(f"malformed storage key list {_describe(keys)}")
    state_dict = _find_state_dict(checkpoint, entry)
    needed = set(_storage_keys(state_dict))
    budget = _budget(state_dict, storages)
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
            buffers[key] = _read_exact(file, storage.nbytes, what, budget)
        else:
            file.seek(storage.nbytes, os.SEEK_CUR)  # e.g. optimizer state
        # Also marks the key as seen for the duplicate check above.
        buffers.setdefault(key, None)
    missing = sorted(needed - set(buffers))
    if missing:
        raise _CheckpointError(f"no data for storages {missing[:5]}")
    return _materialize(state_dict, buffers, "<", budget)


# Entries holding a state dict, as training scripts save them: the
# ImageNet example's `state_dict`; ConvNeXt's (and AFC's) `model`, and
# `model_ema`, its exponential moving average, taken only when asked for.
STATE_DICT_ENTRIES = ("state_dict", "model", "model_ema")


def _find_state_dict(checkpoint: Any, entry: str | None = None) -> dict[str, _Tensor]:
    """The state dict inside the unpickled checkpoint, `module.` stripped.

    `entry` names the checkpoint's entry that holds it; None takes
    `'state_dict'`, else `'model'`, else the checkpoint itself.

    The only dict built from the file: its keys must be str, whose hashes
    Python randomises, so no file can make their insertion slow.
    """
    if not isinstance(checkpoint, _PickledDict):
        raise _CheckpointError(
            "no state dict found: the checkpoint is a "
            f"{_kind(checkpoint)}, not a dict"
        )
    candidate, where = checkpoint, "the checkpoint"
    holders = {}
    for key, value in checkpoint.pairs:  # the last one wins, as in a dict
        if type(key) is str and key in STATE_DICT_ENTRIES:
            holders[key] = value
    if entry is not None:
        if entry not in holders:
            raise _CheckpointError(
                f"the checkpoint has no {entry!r} entry (it has "
                f"{sorted(holders) or 'none'} of {list(STATE_DICT_ENTRIES)})"
            )
        candidate, where = holders[entry], f"the {entry!r} entry"
    else:
        for key in ("state_dict", "model"):
            if key in holders:
                candidate, where = holders[key], f"the {key!r} entry"
                break
    if not isinstance(candidate, _PickledDict):
        raise _CheckpointError(f"no state dict found: {where} is a {_kind(candidate)}")
    entries: dict[str, Any] = {}
    odd_keys = []
    for key, value in candidate.pairs:
        if type(key) is str:
            entries[key] = value
        else:
            odd_keys.append((key, value))
    others = [k for k, v in entries.items() if not isinstance(v, _Tensor)]
    others += [k for k, v in odd_keys if not isinstance(v, _Tensor)]
    if others:
        names = ", ".join(_describe(k) for k in others[:5])
        hint = " and it has no 'state_dict' or 'model' entry" if where == "the checkpoint" else ""
        raise _CheckpointError(
            f"no state dict found: entries of {where} are not tensors ({names}"
            f"{', ...' if len(others) > 5 else ''}){hint}"
        )
    if odd_keys:
        raise _CheckpointError(
            f"state dict key {_describe(odd_keys[0][0])} is not a str"
        )
    state_dict = {}
    for key, tensor in entries.items():
        # torch.nn.DataParallel / DistributedDataParallel wrap the model.
        name = key[len("module.") :] if key.startswith("module.") else key
        problem = name_problem(name)
        if problem:
            raise _CheckpointError(problem)
        if name in state_dict:
            raise _CheckpointError(
                f"state dict has {quote(name)} twice once 'module.' is stripped"
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
    budget: _Budget,
) -> dict[str, np.ndarray]:
    """The tensors as views of one decoded array per storage, as in torch.

    A storage is decoded once per dtype it is viewed as (in practice one:
    its own), in place when that is its only use; tensors sharing it share
    memory, however many reference it.
    """
    # (key, dtype, first byte modulo the item size): one decoded array each.
    units: dict[str, set] = {}
    users: dict[str, int] = {}
    for tensor in state_dict.values():
        key = tensor.storage.key
        units.setdefault(key, set()).add(_unit(tensor))
        users[key] = users.get(key, 0) + 1
    decoded: dict[tuple, np.ndarray] = {}
    arrays = {}
    broadcast = 0  # bytes of the views that repeat elements, in total
    for name, tensor in state_dict.items():
        key = tensor.storage.key
        unit = _unit(tensor)
        try:
            if (key, *unit) not in decoded:
                decoded[(key, *unit)] = _decode(
                    buffers[key],
                    tensor.dtype,
                    unit[1],
                    byteorder,
                    in_place=len(units[key]) == 1,
                    budget=budget,
                )
            array, repeats = _view(
                tensor, decoded[(key, *unit)], exclusive=users[key] == 1
            )
        except _CheckpointError as error:
            raise _CheckpointError(f"tensor {quote(name)}: {error}") from None
        if repeats:
            broadcast += array.nbytes
            if broadcast > _MAX_BROADCAST_BYTES:
                raise _CheckpointError(
                    f"tensor {quote(name)}: broadcast views (zero or overlapping "
                    f"strides, repeating elements) reach {broadcast} bytes in "
                    f"total, more than the {_MAX_BROADCAST_BYTES} allowed per file"
                )
        arrays[name] = array
    return arrays


def _unit(tensor: _Tensor) -> tuple[str, int]:
    itemsize = np.dtype(_RAW_DTYPES[tensor.dtype]).itemsize
    return tensor.dtype, tensor.storage.start % itemsize


def _decode(
    raw: np.ndarray,
    dtype: str,
    phase: int,
    byteorder: str,
    in_place: bool,
    budget: _Budget,
) -> np.ndarray:
    """The storage's elements from byte `phase` on, native, in our dtype.

    In place (no allocation) where the result has the size of the bytes
    and no other dtype views them; bfloat16 widens to a new float32 array.
    """
    disk = np.dtype(byteorder + _RAW_DTYPES[dtype])
    native = disk.newbyteorder("=")  # prints as float32, not <f4
    count = (raw.size - phase) // disk.itemsize
    values = raw[phase : phase + count * disk.itemsize].view(disk)
    what = f"its {dtype} storage"
    if dtype == "bfloat16":
        # bfloat16 is the top half of a float32: widening is exact.
        widened = budget.empty(count, np.uint32, what)
        widened[...] = values
        widened <<= 16
        return widened.view(np.float32)
    if dtype == "bool":
        # Any nonzero byte is True; an element-wise ufunc may write in place.
        out = values if in_place else budget.empty(count, np.uint8, what)
        np.not_equal(values, 0, out=out.view(bool))
        return out.view(bool)
    if disk.isnative:
        return values.view(native)
    if in_place:
        values.byteswap(inplace=True)
        return values.view(native)
    swapped = budget.empty(count, native, what)
    swapped[...] = values
    return swapped


def _disjoint(shape: tuple, strides: tuple) -> bool:
    """Whether no two indices reach the same element (sufficient test)."""
    reach = 0  # the largest offset the dimensions so far can reach
    for stride, size in sorted((s, n) for n, s in zip(shape, strides) if n > 1):
        if stride <= reach:
            return False
        reach += (size - 1) * stride
    return True


def _view(
    tensor: _Tensor, flat: np.ndarray, exclusive: bool
) -> tuple[np.ndarray, bool]:
    """The tensor as a view of `flat`, its decoded storage.

    Returns the view, and whether it may repeat elements. It is writable
    only if no other tensor shares its storage and it repeats no element:
    a write must not change another array behind the caller's back.
    """
    shape, strides, offset = tensor.shape, tensor.strides, tensor.offset
    storage = tensor.storage
    if 0 in shape:
        # No element is read, so torch checks no bounds either. NumPy
        # still refuses nonzero sizes whose bytes multiply past 2**63.
        nbytes = flat.dtype.itemsize * math.prod(n for n in shape if n)
        if nbytes >= 2**63:
            raise _CheckpointError(
                f"empty size {_describe(shape)}: its nonzero sizes multiply "
                "past 2**63 bytes, which NumPy refuses even for an array "
                "without elements"
            )
        return np.empty(shape, dtype=flat.dtype), False
    disk_itemsize = np.dtype(_RAW_DTYPES[tensor.dtype]).itemsize
    available = storage.nbytes // disk_itemsize
    last = offset + sum((n - 1) * s for n, s in zip(shape, strides))
    if last + 1 > available:
        raise _CheckpointError(
            f"size {_describe(shape)}, stride {_describe(strides)} and offset "
            f"{offset} reach element "
            f"{last}, beyond the {available} elements of its storage"
        )
    disjoint = _disjoint(shape, strides)
    itemsize = flat.dtype.itemsize
    start = storage.start // disk_itemsize + offset
    # The stride of a dimension of size 1 is never used, and may be huge.
    view = as_strided(
        flat[start:],
        shape=shape,
        strides=tuple(s * itemsize if n > 1 else 0 for n, s in zip(shape, strides)),
        writeable=exclusive and disjoint,
    )
    return view, not disjoint


def read_torch_checkpoint(
    path: str | os.PathLike, entry: str | None = None
) -> dict[str, np.ndarray]:
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
    As in torch, tensors that share a storage share memory: every array is
    a view (native-endian, strides and offset kept) of one array per
    storage, so the arrays hold no more than the storages' bytes whatever
    the number of tensors viewing them. An array is writable if it alone
    views its storage and repeats no element; the others are read-only
    (`numpy.array(value)` copies one).

    The file is untrusted: it is read in time and memory proportional to
    its size, and refused (ValueError) beyond the bounds listed in
    docs/security.md: the reader allocates at most the bytes of the
    storages the state dict uses (twice that for bfloat16) plus 1 MiB.

    Args:
        path: path of the checkpoint (`.pth`, `.pth.tar`, `.pt`, ...).
        entry: the checkpoint's entry holding the state dict, one of
            `STATE_DICT_ENTRIES` (`'model_ema'` for the moving average a
            ConvNeXt-style script saves); None takes `'state_dict'`, else
            `'model'`, else the whole checkpoint.

    Returns:
        Dict of parameter and buffer names to NumPy arrays, in the order
        of the file.

    Raises:
        FileNotFoundError: if `path` does not exist (other errors opening
            the file, such as `PermissionError`, propagate too).
        ValueError: for anything wrong with the file, naming `path` and
            the problem: not a regular file, not a PyTorch checkpoint,
            truncated or corrupted data, a reference to any other Python
            name (which `torch.load` would have imported or called), no
            state dict, or a bound of docs/security.md exceeded.

    Example:

    >>> state_dict = read_torch_checkpoint("resnet50_lpf4.pth")  # doctest: +SKIP
    >>> state_dict["conv1.weight"].shape  # doctest: +SKIP
    (64, 3, 7, 7)
    """
    if entry is not None and entry not in STATE_DICT_ENTRIES:
        raise ValueError(
            f"`entry` must be None or one of {STATE_DICT_ENTRIES}. "
            f"Received: entry={entry!r}"
        )
    path = os.fspath(path)
    with open_regular_file(path, what="PyTorch checkpoint") as file:
        try:
            file_size = os.fstat(file.fileno()).st_size
            head = file.read(512)
            if not head:
                raise _CheckpointError("the file is empty")
            if head.startswith(_ZIP_LOCAL_HEADER):
                return _read_zip(file, file_size, entry)
            if head[257:262] == b"ustar":
                raise _CheckpointError(
                    "tar checkpoints (the format of the first PyTorch "
                    "releases) are not supported"
                )
            if not head.startswith(_LEGACY_STARTS):
                # Not parsed as a pickle: a text or other file is said to
                # be what it is.
                kind = "a text file" if _looks_like_text(head) else "another kind of file"
                raise _CheckpointError(
                    "not a PyTorch checkpoint: neither a zip archive nor a "
                    f"pickle; it looks like {kind} (it starts with "
                    f"{ascii(head[:16])})"
                )
            # A pickle: a legacy checkpoint or not one at all; the magic
            # number, the first pickle, will tell.
            return _read_legacy(file, file_size, entry)
        except _CheckpointError as error:
            problem, cause = str(error), error.__cause__
        except Exception as error:
            # Our checks should leave nothing else; still, never let a
            # library exception escape for a bad file.
            problem, cause = _explain(error), error
    raise ValueError(f"Cannot read PyTorch checkpoint '{path}': {problem}") from cause

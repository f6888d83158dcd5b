"""Reading safetensors files without the safetensors package or PyTorch.

A safetensors file (the format of the Hugging Face Hub, and of timm's
weights there) is an 8-byte little-endian header length `N`, a UTF-8
JSON header of `N` bytes, then one byte buffer. The header maps each
tensor's name to `{"dtype", "shape", "data_offsets": [begin, end]}`,
offsets counted from the start of the buffer, plus an optional
`"__metadata__"` of str to str. Nothing in it is executed; the file is
still untrusted, so every field is checked before any tensor is read:
the header is at most `MAX_HEADER_BYTES`, names are unique, dtypes come
from an allowed list, each tensor's bytes are exactly its shape times its
item size, and the tensors tile the buffer exactly (inside the file, no
overlap, no hole, nothing after the last), as the format requires. The
reader then allocates no more than the file's bytes (twice for bfloat16,
which widens to float32).
"""

from __future__ import annotations

import json
import math
import os
import struct

import numpy as np

from keras_blurpool.weights.files import open_regular_file

# The safetensors library refuses headers above 100 MB; so do we.
MAX_HEADER_BYTES = 100 * 2**20
# JSON nesting deeper than this is no safetensors header; refusing it
# early keeps the parser's recursion shallow.
_MAX_JSON_DEPTH = 16

# safetensors dtype -> NumPy code of the little-endian bytes on disk.
# BF16 is read as uint16 and widened to float32 (exact); BOOL is read as
# bytes and compared with 0.
_DTYPES = {
    "F64": "<f8",
    "F32": "<f4",
    "F16": "<f2",
    "BF16": "<u2",
    "I64": "<i8",
    "I32": "<i4",
    "I16": "<i2",
    "I8": "i1",
    "U64": "<u8",
    "U32": "<u4",
    "U16": "<u2",
    "U8": "u1",
    "BOOL": "u1",
}


class _SafetensorsError(ValueError):
    """A problem with the file, reported with its path."""


def _unique_keys(pairs):
    names = [name for name, _ in pairs]
    if len(set(names)) != len(names):
        repeated = next(n for n in names if names.count(n) > 1)
        raise _SafetensorsError(f"the header names {repeated!r} twice")
    return dict(pairs)


def _json_depth_ok(text: str) -> bool:
    """Whether brackets nest at most `_MAX_JSON_DEPTH` deep (strings skipped)."""
    depth, in_string, escaped = 0, False, False
    for char in text:
        if in_string:
            if escaped:
                escaped = False
            elif char == "\\":
                escaped = True
            elif char == '"':
                in_string = False
        elif char == '"':
            in_string = True
        elif char in "[{":
            depth += 1
            if depth > _MAX_JSON_DEPTH:
                return False
        elif char in "]}":
            depth -= 1
    return True


def _is_count(value) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and value >= 0


def _parse_header(raw: bytes, data_size: int) -> list:
    """`[(name, dtype, shape, begin, end)]` in header order, all checked."""
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError:
        raise _SafetensorsError("the header is not UTF-8") from None
    if not _json_depth_ok(text):
        raise _SafetensorsError(
            f"the header nests deeper than {_MAX_JSON_DEPTH} levels"
        )
    try:
        header = json.loads(text, object_pairs_hook=_unique_keys)
    except _SafetensorsError:
        raise
    except ValueError as error:
        raise _SafetensorsError(f"the header is not JSON ({error})") from None
    if not isinstance(header, dict):
        raise _SafetensorsError("the header is not a JSON object")
    entries = []
    for name, info in header.items():
        if name == "__metadata__":
            if not isinstance(info, dict) or not all(
                isinstance(v, str) for v in info.values()
            ):
                raise _SafetensorsError(
                    "'__metadata__' must map str to str"
                )
            continue
        where = f"tensor {name!r}"
        if not isinstance(info, dict) or set(info) != {
            "dtype",
            "shape",
            "data_offsets",
        }:
            raise _SafetensorsError(
                f"{where} must have exactly 'dtype', 'shape' and "
                "'data_offsets'"
            )
        dtype, shape, offsets = info["dtype"], info["shape"], info["data_offsets"]
        if not isinstance(dtype, str) or dtype not in _DTYPES:
            raise _SafetensorsError(
                f"{where} has dtype {dtype!r}; allowed: {', '.join(_DTYPES)}"
            )
        if not isinstance(shape, list) or not all(_is_count(d) for d in shape):
            raise _SafetensorsError(
                f"{where} has shape {shape!r}, not a list of ints >= 0"
            )
        if (
            not isinstance(offsets, list)
            or len(offsets) != 2
            or not all(_is_count(o) for o in offsets)
            or offsets[0] > offsets[1]
        ):
            raise _SafetensorsError(
                f"{where} has data_offsets {offsets!r}, not [begin, end] "
                "with 0 <= begin <= end"
            )
        begin, end = offsets
        if end > data_size:
            raise _SafetensorsError(
                f"{where} ends at byte {end} of a data buffer of "
                f"{data_size} bytes (truncated file?)"
            )
        nbytes = math.prod(shape) * np.dtype(_DTYPES[dtype]).itemsize
        if nbytes != end - begin:
            raise _SafetensorsError(
                f"{where} of shape {tuple(shape)} and dtype {dtype} needs "
                f"{nbytes} bytes but its data_offsets span {end - begin}"
            )
        entries.append((name, dtype, tuple(shape), begin, end))
    position = 0
    for begin, end, name in sorted((e[3], e[4], e[0]) for e in entries):
        if begin != position:
            problem = "overlaps the tensor before it" if begin < position else (
                f"leaves bytes {position}-{begin} unused"
            )
            raise _SafetensorsError(f"tensor {name!r} {problem}")
        position = end
    if position != data_size:
        raise _SafetensorsError(
            f"{data_size - position} bytes after the last tensor belong to "
            "none"
        )
    return entries


def _read_tensor(file, start: int, dtype: str, shape: tuple, nbytes: int):
    file.seek(start)
    buffer = bytearray(nbytes)
    if file.readinto(buffer) != nbytes:
        raise _SafetensorsError("the file ended inside a tensor")
    values = np.frombuffer(buffer, np.dtype(_DTYPES[dtype]))
    if dtype == "BF16":
        # bfloat16 is the top half of a float32: widening is exact.
        values = (values.astype(np.uint32) << 16).view(np.float32)
    elif dtype == "BOOL":
        values = values != 0
    else:
        values = values.astype(values.dtype.newbyteorder("="), copy=False)
    return values.reshape(shape)


def read_safetensors(path: str | os.PathLike) -> dict[str, np.ndarray]:
    """Reads the tensors of a safetensors file as NumPy arrays.

    The format of the Hugging Face Hub (timm's weights, `model.safetensors`).
    Neither the `safetensors` package nor PyTorch is needed. The file is
    untrusted: it is checked whole before any tensor is read (see the
    module docstring), then read in time and memory proportional to its
    size.

    Args:
        path: path of the `.safetensors` file.

    Returns:
        Dict of tensor names to writable, native-endian NumPy arrays, in
        the header's order. bfloat16 tensors become float32 (exact), BOOL
        ones bool; every other dtype is kept.

    Raises:
        FileNotFoundError: if `path` does not exist.
        ValueError: naming `path` and the problem, for anything that is not
            a well-formed safetensors file: not a regular file, truncated,
            a header too large, not UTF-8 JSON or nested too deep, a name
            twice, an unknown dtype, a shape that does not fit its bytes,
            or tensors that overlap, leave holes or pass the end.

    Example:

    >>> state_dict = read_safetensors("model.safetensors")  # doctest: +SKIP
    >>> state_dict["conv1.weight"].shape  # doctest: +SKIP
    (64, 3, 7, 7)
    """
    path = os.fspath(path)
    with open_regular_file(path, what="safetensors file") as file:
        try:
            size = os.fstat(file.fileno()).st_size
            head = file.read(8)
            if len(head) < 8:
                raise _SafetensorsError(
                    "shorter than the 8-byte header length"
                )
            (header_size,) = struct.unpack("<Q", head)
            if header_size > MAX_HEADER_BYTES:
                raise _SafetensorsError(
                    f"the header claims {header_size} bytes, more than the "
                    f"{MAX_HEADER_BYTES} allowed"
                )
            if 8 + header_size > size:
                raise _SafetensorsError(
                    f"the header claims {header_size} bytes but the file has "
                    f"{size - 8} after the length (truncated file?)"
                )
            raw = file.read(header_size)
            data_start = 8 + header_size
            entries = _parse_header(raw, size - data_start)
            return {
                name: _read_tensor(
                    file, data_start + begin, dtype, shape, end - begin
                )
                for name, dtype, shape, begin, end in entries
            }
        except _SafetensorsError as error:
            problem = str(error)
        except (OSError, MemoryError, RecursionError) as error:
            problem = f"{type(error).__name__}: {error}"
    raise ValueError(f"Cannot read safetensors file '{path}': {problem}")

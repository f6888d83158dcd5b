"""Reading safetensors files without the safetensors package or PyTorch.

A safetensors file (the format of the Hugging Face Hub, and of timm's
weights there) is an 8-byte little-endian header length `N`, a UTF-8
JSON header of `N` bytes, then one byte buffer. The header maps each
tensor's name to `{"dtype", "shape", "data_offsets": [begin, end]}`,
offsets counted from the start of the buffer, plus an optional
`"__metadata__"` of str to str. Nothing in it is executed; the file is
still untrusted, so every field is checked before any tensor is read:
the header is at most `MAX_HEADER_BYTES` and declares at most
`MAX_TENSORS` tensors, names are unique and valid Unicode, dtypes come
from an allowed list, shapes have at most `MAX_DIMENSIONS` dimensions,
each tensor's bytes are exactly its shape times its item size, and the
tensors tile the buffer exactly (inside the file, no overlap, no hole,
nothing after the last), as the format requires.

The header is not handed to a general JSON parser: it is read by a
parser of the format's one shape (an object of tensor objects, each of a
string and two short lists of ints), written with regular expressions
that never backtrack, so that reading it takes time linear in its size,
nothing in it can nest, and no number is longer than 20 digits. What the
reader keeps per tensor (its name, shape and array object) is charged
against the file's size (`_TENSOR_COST`, `_SLACK`): a header declaring
more tensors than the file's bytes pay for, such as a million zero-size
tensors, is refused before they are built. In all, the reader holds at
most twice the file's bytes, plus the bfloat16 tensors' bytes again
(widened to float32), plus 16 MiB. docs/security.md lists every bound.
"""

from __future__ import annotations

import codecs
import json
import os
import re
import reprlib
import struct

import numpy as np

from keras_blurpool.weights.files import open_regular_file
from keras_blurpool.weights.names import name_problem
from keras_blurpool.weights.names import quote

# The safetensors library refuses headers above 100 MB (10**8 bytes);
# we do above 100 MiB.
MAX_HEADER_BYTES = 100 * 2**20
# Tensors one file may declare: the largest networks have a few thousand.
MAX_TENSORS = 2**16
# NumPy's limit on the dimensions of an array.
MAX_DIMENSIONS = 64
# Entries `__metadata__` may hold (it is checked, then dropped).
MAX_METADATA_ENTRIES = 2**16

# What the reader keeps per tensor, charged as it is parsed: its name (4
# bytes per byte of its token: a str may take 4 per character), its shape
# (per dimension), and about 500 bytes of Python and NumPy objects (the
# entry, the array object, the dicts' slots; measured ~400). The charges
# may add up to the file's size plus `_SLACK`.
_TENSOR_COST = 512
_DIMENSION_COST = 64
_SLACK = 16 * 2**20

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
_FIELDS = ("dtype", "shape", "data_offsets")
_ITEMSIZES = {dtype: np.dtype(code).itemsize for dtype, code in _DTYPES.items()}

# The grammar of a header, on its bytes. Possessive repeats (`*+`,
# `{m,n}+`) never backtrack: each match is linear in what it consumes.
_WS = rb"[ \t\n\r]*+"
_STRING = (
    rb'"[^"\\\x00-\x1f]*+'
    rb'(?:\\(?:["\\/bfnrt]|u[0-9a-fA-F]{4})[^"\\\x00-\x1f]*+)*+"'
)
# A JSON int >= 0 of at most 20 digits (2**64 has 20).
_UINT = rb"(?:0|[1-9][0-9]{0,19})(?![0-9])"
_UINTS = (
    rb"\[" + _WS + rb"(?:" + _UINT
    + rb"(?:" + _WS + rb"," + _WS + _UINT + rb"){0,%d}+)?+" % (MAX_DIMENSIONS - 1)
    + _WS + rb"\]"
)
_SPACE = re.compile(_WS)
_KEY = re.compile(rb"(" + _STRING + rb")" + _WS + rb":" + _WS)
_STRING_VALUE = re.compile(_STRING)
_UINT_LIST = re.compile(_UINTS)
# A list of ints that goes on past MAX_DIMENSIONS of them.
_LONG_LIST = re.compile(
    rb"\[" + _WS + _UINT
    + rb"(?:" + _WS + rb"," + _WS + _UINT + rb"){%d}+" % MAX_DIMENSIONS
)
_METADATA = re.compile(
    rb"\{" + _WS + rb"(?:" + _STRING + _WS + rb":" + _WS + _STRING
    + rb"(?:" + _WS + rb"," + _WS + _STRING + _WS + rb":" + _WS + _STRING
    + rb"){0,%d}+)?+" % (MAX_METADATA_ENTRIES - 1)
    + _WS + rb"\}"
)
_DIGITS = re.compile(rb"[0-9]+")
# The fast path, one match per tensor: an entry as writers write it (the
# field names unescaped, in any order, a short dtype), and the ',' or '}'
# after it. Anything else is parsed field by field, for its message.
_FIELD = (
    rb'"(dtype|shape|data_offsets)"' + _WS + rb":" + _WS
    + rb'("[A-Z0-9_]{1,16}"|' + _UINTS + rb")"
)
_ENTRY = re.compile(
    _WS + rb"(" + _STRING + rb")" + _WS + rb":" + _WS + rb"\{" + _WS
    + _FIELD + _WS + rb"," + _WS + _FIELD + _WS + rb"," + _WS + _FIELD
    + _WS + rb"\}" + _WS + rb"([,}])"
)

# How much of a value that does not parse is shown, at most.
_PREVIEW_BYTES = 4096
_REPR = reprlib.Repr()
_REPR.maxlevel = 2
_REPR.maxlist = _REPR.maxtuple = _REPR.maxdict = 8
_REPR.maxstring = _REPR.maxother = _REPR.maxlong = 40


class _SafetensorsError(ValueError):
    """A problem with the file, reported with its path."""


def _check_utf8(raw: bytes) -> None:
    """Refuses a header that is not UTF-8, decoding it in 1 MiB pieces."""
    decoder = codecs.getincrementaldecoder("utf-8")()
    view = memoryview(raw)
    try:
        for start in range(0, len(raw), 2**20):
            decoder.decode(view[start : start + 2**20])
        decoder.decode(b"", final=True)
    except UnicodeDecodeError:
        raise _SafetensorsError("the header is not UTF-8") from None


def _string(raw: bytes, start: int, end: int) -> str:
    """The str of the JSON string token `raw[start:end]` (a `_STRING`
    match, quotes included), the header already known to be UTF-8."""
    if raw.find(b"\\", start, end) < 0:
        return str(memoryview(raw)[start + 1 : end - 1], "utf-8")
    return json.loads(raw[start:end])


def _ints(token: bytes) -> tuple:
    """The ints of a list token that `_UINT_LIST` matched."""
    return tuple(map(int, _DIGITS.findall(token)))


def _preview(raw: bytes, position: int) -> str:
    """The JSON value at `position`, as a short repr, for a message."""
    snippet = raw[position : position + _PREVIEW_BYTES]
    text = snippet.decode("utf-8", errors="replace")
    try:
        value, _ = json.JSONDecoder().raw_decode(text)
    except Exception:  # not JSON, cut short, or nested too deep
        return quote(text[:40] + ("..." if len(text) > 40 else ""))
    try:
        return _REPR.repr(value)
    except Exception:
        return f"<a {type(value).__name__}>"


def _product_fits(shape: tuple, limit: int) -> bool:
    """Whether the product of the nonzero dimensions is at most `limit`,
    without multiplying past it (no big integers)."""
    product = 1
    for dimension in shape:
        if dimension:
            product *= dimension
            if product > limit:
                return False
    return True


def _nbytes(shape: tuple, itemsize: int, limit: int) -> int | None:
    """The tensor's byte count, or None if it exceeds `limit`."""
    if 0 in shape:
        return 0
    if not _product_fits(shape, limit // itemsize):
        return None
    product = 1
    for dimension in shape:
        product *= dimension
    return product * itemsize


class _Parser:
    """Reads the header's tensors, each checked, in header order.

    One match of `_ENTRY` per tensor where the header is as writers write
    it; field by field otherwise, to say what is wrong. Everything kept
    is charged against `allowance` before it is built.
    """

    def __init__(self, raw: bytes, data_size: int, allowance: int):
        self.raw = raw
        self.data_size = data_size
        self.allowance = allowance
        self.position = 0
        self.spent = 0
        self.entries: dict[str, tuple] = {}

    def fail(self, problem: str):
        raise _SafetensorsError(problem)

    def skip_space(self) -> None:
        self.position = _SPACE.match(self.raw, self.position).end()

    def take(self, char: bytes) -> bool:
        self.skip_space()
        if self.raw[self.position : self.position + 1] == char:
            self.position += 1
            return True
        return False

    def not_json(self, expected: str):
        found = self.raw[self.position : self.position + 20]
        self.fail(
            f"the header is not JSON as safetensors writes it: expected "
            f"{expected} at byte {self.position}, found {quote(found)}"
        )

    def key(self) -> tuple[int, int]:
        """The span of the name at the current position (quotes included),
        moving past it and its ':'."""
        self.skip_space()
        match = _KEY.match(self.raw, self.position)
        if match is None:
            self.not_json("a name (a JSON string) and ':'")
        self.position = match.end()
        return match.span(1)

    def charge(self, cost: int) -> None:
        self.spent += cost
        if self.spent > self.allowance:
            self.fail(
                f"its first {len(self.entries) + 1} tensor(s) would take "
                f"about {self.spent} bytes of memory to hold (names, shapes, "
                f"array objects), more than the file's size and {_SLACK} "
                f"bytes allow ({self.allowance}): more tensors, or longer "
                "names, than the file's bytes pay for (such as a flood of "
                "zero-size tensors)"
            )

    def is_metadata(self, start: int, end: int) -> bool:
        """Whether the name at the span is `__metadata__` (maybe escaped:
        each of its 12 characters is at most a 6-byte escape)."""
        if self.raw.find(b"\\", start, end) < 0:
            return self.raw[start:end] == b'"__metadata__"' if end - start == 14 else False
        return end - start <= 74 and _string(self.raw, start, end) == "__metadata__"

    def name(self, start: int, end: int) -> str:
        """The tensor name at the span, charged, decoded and checked."""
        if len(self.entries) == MAX_TENSORS:
            self.fail(f"the header declares more than {MAX_TENSORS} tensors")
        # A str takes up to 4 bytes per character; an escaped name is
        # decoded from a copy of its bytes (5 more per byte, a moment).
        escaped = self.raw.find(b"\\", start, end) >= 0
        self.charge((9 if escaped else 4) * (end - start))
        name = _string(self.raw, start, end)
        if escaped:
            self.spent -= 5 * (end - start)
        if name in self.entries:
            self.fail(f"the header names {quote(name)} twice")
        problem = name_problem(name)
        if problem:
            self.fail(problem)
        return name

    def parse(self) -> dict[str, tuple]:
        """`{name: (dtype, shape, begin, end)}`, every field checked."""
        if not self.take(b"{"):
            self.fail("the header is not a JSON object")
        seen_metadata = False
        closed = self.take(b"}")
        while not closed:
            match = _ENTRY.match(self.raw, self.position)
            fields = None
            if match is not None:
                k1, v1, k2, v2, k3, v3 = match.group(2, 3, 4, 5, 6, 7)
                fields = {k1: v1, k2: v2, k3: v3}
                if len(fields) != 3 or (
                    fields[b"dtype"][:1] != b'"'
                    or fields[b"shape"][:1] != b"["
                    or fields[b"data_offsets"][:1] != b"["
                ):
                    fields = None  # parsed field by field, for the message
            if fields is None:
                start, end = self.key()
            else:
                start, end = match.span(1)
            separator = None
            if self.is_metadata(start, end):
                if seen_metadata:
                    self.fail("the header names '__metadata__' twice")
                seen_metadata = True
                if fields is not None:
                    self.key()  # a tensor's fields: not str to str
                self.metadata()
            else:
                name = self.name(start, end)
                if fields is None:
                    entry = self.tensor(name)
                else:
                    entry = self.check(
                        name,
                        dtype=fields[b"dtype"][1:-1].decode(),
                        shape=_ints(fields[b"shape"]),
                        data_offsets=_ints(fields[b"data_offsets"]),
                    )
                    self.position = match.end()
                    separator = match.group(8)
                self.charge(_TENSOR_COST + _DIMENSION_COST * len(entry[1]))
                self.entries[name] = entry
            if separator is None:
                if self.take(b"}"):
                    separator = b"}"
                elif not self.take(b","):
                    self.not_json("',' or '}'")
            closed = separator == b"}"
        self.skip_space()
        if self.position != len(self.raw):
            self.not_json("the end of the header")
        return self.entries

    def metadata(self) -> None:
        match = _METADATA.match(self.raw, self.position)
        if match is None:
            self.fail(
                "'__metadata__' must map str to str (at most "
                f"{MAX_METADATA_ENTRIES} entries), found "
                f"{_preview(self.raw, self.position)}"
            )
        self.position = match.end()

    def tensor(self, name: str) -> tuple:
        """The entry of a tensor, field by field."""
        where = f"tensor {quote(name)}"
        start = self.position
        fields: dict = {}

        def malformed():
            self.fail(
                f"{where} must be an object of exactly 'dtype', 'shape' and "
                f"'data_offsets', found {_preview(self.raw, start)}"
            )

        if not self.take(b"{"):
            malformed()
        for index in range(3):
            if index and not self.take(b","):
                malformed()
            self.skip_space()
            match = _KEY.match(self.raw, self.position)
            if match is None or match.end(1) - match.start(1) > 96:
                malformed()
            field = _string(self.raw, *match.span(1))
            if field not in _FIELDS or field in fields:
                malformed()
            self.position = match.end()
            fields[field] = self.value(where, field)
        if not self.take(b"}"):
            malformed()
        return self.check(name, **fields)

    def value(self, where: str, field: str):
        """The value of one field: a str for `dtype`, ints for the others."""
        position = self.position
        pattern = _STRING_VALUE if field == "dtype" else _UINT_LIST
        match = pattern.match(self.raw, position)
        if match is not None and field == "dtype" and match.end() - position > 64:
            match = None  # no dtype is that long: shown cut short
        if match is None:
            found = _preview(self.raw, position)
            if field == "dtype":
                self.fail(f"{where} has dtype {found}; allowed: {', '.join(_DTYPES)}")
            if field == "shape" and _LONG_LIST.match(self.raw, position):
                self.fail(
                    f"{where} has a shape of more than {MAX_DIMENSIONS} "
                    "dimensions (NumPy's limit)"
                )
            if field == "shape":
                self.fail(
                    f"{where} has shape {found}, not a list of ints >= 0 "
                    f"(at most {MAX_DIMENSIONS} of them, each of at most 20 "
                    "digits)"
                )
            self.fail(
                f"{where} has data_offsets {found}, not [begin, end] with "
                "0 <= begin <= end"
            )
        self.position = match.end()
        if field == "dtype":
            return _string(self.raw, *match.span())
        return _ints(match.group())

    def check(self, name: str, dtype: str, shape: tuple, data_offsets: tuple):
        """`(dtype, shape, begin, end)` once they agree with each other."""
        if dtype in _DTYPES and len(data_offsets) == 2:
            # The common case, without building a message.
            begin, end = data_offsets
            itemsize = _ITEMSIZES[dtype]
            if begin <= end <= self.data_size and 0 not in shape:
                if _nbytes(shape, itemsize, self.data_size) == end - begin:
                    return dtype, shape, begin, end
        where = f"tensor {quote(name)}"
        if dtype not in _DTYPES:
            self.fail(f"{where} has dtype {quote(dtype)}; allowed: {', '.join(_DTYPES)}")
        if len(data_offsets) != 2 or data_offsets[0] > data_offsets[1]:
            self.fail(
                f"{where} has data_offsets {_REPR.repr(list(data_offsets))}, "
                "not [begin, end] with 0 <= begin <= end"
            )
        begin, end = data_offsets
        if end > self.data_size:
            self.fail(
                f"{where} ends at byte {end} of a data buffer of "
                f"{self.data_size} bytes (truncated file?)"
            )
        itemsize = _ITEMSIZES[dtype]
        nbytes = _nbytes(shape, itemsize, self.data_size)
        if nbytes != end - begin:
            needs = (
                f"more than the {self.data_size} of the data buffer"
                if nbytes is None
                else str(nbytes)
            )
            self.fail(
                f"{where} of shape {_REPR.repr(shape)} and dtype {dtype} needs "
                f"{needs} bytes but its data_offsets span {end - begin}"
            )
        # NumPy's own bound on any array, even one without elements.
        if not nbytes and not _product_fits(shape, (2**63 - 1) // itemsize):
            self.fail(
                f"{where} has shape {_REPR.repr(shape)}: its nonzero "
                "dimensions multiply past 2**63 bytes, which NumPy refuses "
                "even for an array without elements"
            )
        return dtype, shape, begin, end


def _check_tiling(entries: dict, data_size: int) -> None:
    """The tensors cover the buffer exactly: no overlap, hole or rest."""
    position = 0
    ranges = sorted(
        (begin, end, index, name)
        for index, (name, (_, _, begin, end)) in enumerate(entries.items())
    )
    for begin, end, _, name in ranges:
        if begin != position:
            problem = "overlaps the tensor before it" if begin < position else (
                f"leaves bytes {position}-{begin} unused"
            )
            raise _SafetensorsError(f"tensor {quote(name)} {problem}")
        position = end
    if position != data_size:
        raise _SafetensorsError(
            f"{data_size - position} bytes after the last tensor belong to "
            "none"
        )


def _read_tensor(file, start: int, dtype: str, shape: tuple, nbytes: int):
    """The tensor as a new array, read straight into its memory."""
    disk = np.dtype(_DTYPES[dtype])
    values = np.empty(shape, disk.newbyteorder("="))
    if nbytes:
        file.seek(start)
        if file.readinto(memoryview(values).cast("B")) != nbytes:
            raise _SafetensorsError("the file ended inside a tensor")
        if not disk.isnative:
            values.byteswap(inplace=True)  # the bytes were little-endian
    if dtype == "BF16":
        # bfloat16 is the top half of a float32: widening is exact.
        return (values.astype(np.uint32) << 16).view(np.float32)
    if dtype == "BOOL":
        return values != 0
    return values


def read_safetensors(path: str | os.PathLike) -> dict[str, np.ndarray]:
    """Reads the tensors of a safetensors file as NumPy arrays.

    The format of the Hugging Face Hub (timm's weights, `model.safetensors`).
    Neither the `safetensors` package nor PyTorch is needed. The file is
    untrusted: it is checked whole before any tensor is read (see the
    module docstring), then read in time linear in its size and memory at
    most twice its size (plus its bfloat16 tensors' bytes again) and
    16 MiB.

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
            a header too large, not UTF-8 or not the format's JSON, a name
            twice or not valid Unicode, an unknown dtype, a shape that does
            not fit its bytes or has more than 64 dimensions, tensors that
            overlap, leave holes or pass the end, or more tensors than the
            file's bytes pay for.

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
            _check_utf8(raw)
            entries = _Parser(raw, size - data_start, size + _SLACK).parse()
            del raw
            _check_tiling(entries, size - data_start)
            return {
                name: _read_tensor(
                    file, data_start + begin, dtype, shape, end - begin
                )
                for name, (dtype, shape, begin, end) in entries.items()
            }
        except _SafetensorsError as error:
            problem = str(error)
        except Exception as error:
            # A read error (OSError), or anything our checks should have
            # left none of: never a library exception for a bad file.
            problem = f"{type(error).__name__}: {error}"
    raise ValueError(f"Cannot read safetensors file '{path}': {problem}")

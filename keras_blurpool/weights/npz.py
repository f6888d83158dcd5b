"""Reading the weights cache's `.npz` state dicts, as untrusted files.

The cache (`keras_blurpool.weights.download`) writes each state dict with
`numpy.savez`: a zip archive of stored (uncompressed) `.npy` records, one
per tensor. A cached file is checked against the SHA-256 recorded beside
it, but whoever could replace it could replace that too, so it is read
here within bounds rather than by `numpy.load`, which would allocate the
shape a record declares before reading it (a `MemoryError`, or gigabytes),
and whose errors (`BadZipFile`, `TypeError`, advice to pass
`allow_pickle=True`) never name the file. Every problem is a ValueError
naming the cached file and how to clear it.
"""

from __future__ import annotations

import math
import os
import zipfile

import numpy as np

from keras_blurpool.weights.names import name_problem
from keras_blurpool.weights.names import quote


def _problem(info: zipfile.ZipInfo, archive: zipfile.ZipFile):
    """`(key, array)` of one record, or a str saying what is wrong."""
    name = info.filename
    if not name.endswith(".npy"):
        return f"record {quote(name)} is not a .npy array"
    key = name[: -len(".npy")]
    problem = name_problem(key)
    if problem:
        return problem
    if info.compress_type != zipfile.ZIP_STORED:
        # numpy.savez stores; a compressed record could expand without bound.
        return f"record {quote(name)} is compressed"
    with archive.open(info) as record:
        try:
            version = np.lib.format.read_magic(record)
            shape, fortran, dtype = (
                np.lib.format.read_array_header_1_0(record)
                if version == (1, 0)
                else np.lib.format.read_array_header_2_0(record)
            )
        except Exception as error:  # not a .npy header
            return f"record {quote(name)} has no valid .npy header ({error})"
        if dtype.hasobject or dtype.kind not in "biuf":
            return (
                f"record {quote(name)} holds {dtype}, not numbers "
                "(Python objects are never unpickled)"
            )
        if len(shape) > 64 or not all(type(n) is int and n >= 0 for n in shape):
            return f"record {quote(name)} has an invalid shape"
        nbytes = math.prod(shape) * dtype.itemsize
        if nbytes != info.file_size - record.tell():
            return (
                f"record {quote(name)} declares {nbytes} bytes of data but "
                f"holds {info.file_size - record.tell()}"
            )
        array = np.empty(shape, dtype, order="F" if fortran else "C")
        view = memoryview(array.reshape(-1, order="A")).cast("B")
        done = 0
        while done < nbytes:
            count = record.readinto(view[done:])
            if not count:
                return f"record {quote(name)} is truncated"
            done += count
    return key, array


def read_npz(file, path: str | os.PathLike) -> dict[str, np.ndarray]:
    """The arrays of a `numpy.savez` file, read within its bytes.

    Args:
        file: the file, open for binary reading at its start (the one
            descriptor whose SHA-256 was checked).
        path: its path, for the messages.

    Returns:
        Names to arrays, in the archive's order.

    Raises:
        ValueError: `"The cached file <path> cannot be read (<problem>);
            delete it ... to fetch the weights again"`, for anything but
            stored `.npy` records of numbers whose data fill them exactly
            (and whose sizes add up to at most the file's).
    """
    path = os.fspath(path)
    try:
        size = os.fstat(file.fileno()).st_size
        with zipfile.ZipFile(file) as archive:
            infos = archive.infolist()
            declared = sum(info.file_size for info in infos)
            if declared > size:
                problem = (
                    f"its records declare {declared} bytes, more than the "
                    f"file's {size}"
                )
            else:
                arrays, problem = {}, None
                for info in infos:
                    result = _problem(info, archive)
                    if isinstance(result, str):
                        problem = result
                        break
                    key, array = result
                    if key in arrays:
                        problem = f"it holds {quote(key)} twice"
                        break
                    arrays[key] = array
                if problem is None:
                    return arrays
    except Exception as error:  # a damaged zip archive, a read error, ...
        problem = f"{type(error).__name__}: {error}"
    raise ValueError(
        f"The cached file {path} cannot be read ({problem}); delete it and "
        f"{os.path.basename(path)}.sha256 beside it to fetch the weights again."
    )

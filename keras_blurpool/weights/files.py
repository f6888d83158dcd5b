"""Opening an untrusted weights file: regular files only.

Every reader of a file the user names or the cache holds (PyTorch
checkpoints, safetensors files, the cached state dicts) opens it here.
Opening a FIFO blocks until a writer comes, and a device can be read
forever: anything but a regular file is refused, before opening and again
on the opened descriptor, so that a path swapped in between is refused
too. A symbolic link to a regular file is read (the cache refuses links
itself, see `download`).
"""

from __future__ import annotations

import os
import stat
from typing import BinaryIO

# How a refused file is described ("not a regular file but a FIFO").
FILE_KINDS = (
    (stat.S_ISDIR, "a directory"),
    (stat.S_ISFIFO, "a FIFO"),
    (stat.S_ISCHR, "a character device"),
    (stat.S_ISBLK, "a block device"),
    (stat.S_ISSOCK, "a socket"),
)


def _check_regular(mode: int, path: str, what: str) -> None:
    if not stat.S_ISREG(mode):
        kind = next((kind for test, kind in FILE_KINDS if test(mode)), "special")
        raise ValueError(f"Cannot read {what} '{path}': not a regular file but {kind}")


def open_regular_file(path: str | os.PathLike, *, what: str) -> BinaryIO:
    """`open(path, "rb")` for a regular file; anything else is refused.

    The file is opened with O_NONBLOCK, so that not even the second check
    can block, and then set back to blocking reads.

    Args:
        path: the file.
        what: what the file should be, for the message (`"PyTorch
            checkpoint"`, `"safetensors file"`).

    Returns:
        The file, open for binary reading; the caller closes it (`with`).

    Raises:
        FileNotFoundError: if `path` does not exist (other errors opening
            it, such as `PermissionError`, propagate too).
        ValueError: `"Cannot read <what> '<path>': not a regular file but
            a directory"` (a FIFO, a character device, a block device, a
            socket, special).

    Example:

    >>> with open_regular_file("model.pth", what="PyTorch checkpoint") as f:  # doctest: +SKIP
    ...     head = f.read(512)
    """
    path = os.fspath(path)
    _check_regular(os.stat(path).st_mode, path, what)  # FileNotFoundError as open()
    flags = os.O_RDONLY | getattr(os, "O_BINARY", 0) | getattr(os, "O_NONBLOCK", 0)
    descriptor = os.open(path, flags)
    try:
        _check_regular(os.fstat(descriptor).st_mode, path, what)
        if hasattr(os, "O_NONBLOCK"):
            os.set_blocking(descriptor, True)
        return os.fdopen(descriptor, "rb")
    except BaseException:
        os.close(descriptor)
        raise

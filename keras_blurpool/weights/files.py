"""Opening an untrusted weights file: regular files only.

Every reader of a file the user names or the cache holds (PyTorch
checkpoints, safetensors files, the cached state dicts) opens it here.
Opening a FIFO blocks until a writer comes, and a device can be read
forever: anything but a regular file is refused, before opening and again
on the opened descriptor, so that a path swapped in between is refused
too. A symbolic link to a regular file is read (the cache refuses links
itself, see `download`); a loop of links is named as one. `file_problem`
says the same of a path without opening it, for the early checks of
arguments (`weights=`, `--finetune-from`).
"""

from __future__ import annotations

import errno
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


def _kind(mode: int) -> str:
    return next((kind for test, kind in FILE_KINDS if test(mode)), "special")


def _check_regular(mode: int, path: str, what: str) -> None:
    if not stat.S_ISREG(mode):
        raise ValueError(
            f"Cannot read {what} '{path}': not a regular file but {_kind(mode)}"
        )


def _stat(path: str, what: str) -> os.stat_result:
    """`os.stat(path)`; a loop of symbolic links is a ValueError."""
    try:
        return os.stat(path)
    except OSError as error:
        if error.errno != errno.ELOOP:
            raise
        raise ValueError(
            f"Cannot read {what} '{path}': it is a loop of symbolic links"
        ) from None


def file_problem(path: str | os.PathLike) -> str | None:
    """Why `path` is not a regular file that can be read, or None.

    Args:
        path: the path to check (a symbolic link is followed).

    Returns:
        None for a regular file; otherwise what the path is, to follow
        its quoted name in a message: `"does not exist"`, `"is a
        directory, not a file"` (a FIFO, a character device, a block
        device, a socket), `"is a loop of symbolic links"`, or `"cannot
        be read (<reason>)"`.

    Example:

    >>> file_problem(".")
    'is a directory, not a file'
    """
    try:
        mode = os.stat(path).st_mode
    except FileNotFoundError:
        return "does not exist"
    except OSError as error:
        if error.errno == errno.ELOOP:
            return "is a loop of symbolic links"
        return f"cannot be read ({error.strerror or error})"
    if stat.S_ISREG(mode):
        return None
    return f"is {_kind(mode)}, not a file"


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
            socket, special), or `"...: it is a loop of symbolic links"`.

    Example:

    >>> with open_regular_file("model.pth", what="PyTorch checkpoint") as f:  # doctest: +SKIP
    ...     head = f.read(512)
    """
    path = os.fspath(path)
    _check_regular(_stat(path, what).st_mode, path, what)  # FileNotFoundError as open()
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

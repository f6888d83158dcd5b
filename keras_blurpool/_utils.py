"""Helpers every package of keras_blurpool shares (imports nothing of it).

One atomic file writer and one integer validator, so that every file the
project writes follows one rule for crashes and permissions, and every
integer argument is refused with the same wording.
"""

from __future__ import annotations

import contextlib
import os
import tempfile
from typing import Iterator

import numpy as np


def is_int(value) -> bool:
    """True for Python and NumPy integers, False for bools."""
    return isinstance(value, (int, np.integer)) and not isinstance(value, bool)


def check_int(
    name: str, value, minimum: int | None = 1, maximum: int | None = None
) -> int:
    """Returns `value` as an int, or raises a ValueError naming it.

    Args:
        name: the argument's name, quoted in the message.
        value: the value to check; bools are refused.
        minimum: smallest allowed value, or None for no lower bound.
        maximum: largest allowed value, or None for no upper bound.

    Returns:
        `int(value)`.

    Raises:
        ValueError: `"`name` must be an int from A to B. Received: ..."`.
    """
    if (
        not is_int(value)
        or (minimum is not None and value < minimum)
        or (maximum is not None and value > maximum)
    ):
        if minimum is not None and maximum is not None:
            allowed = f"an int from {minimum} to {maximum}"
        elif minimum is not None:
            allowed = "a positive int" if minimum == 1 else f"an int >= {minimum}"
        elif maximum is not None:
            allowed = f"an int <= {maximum}"
        else:
            allowed = "an int"
        raise ValueError(f"`{name}` must be {allowed}. Received: {name}={value!r}")
    return int(value)


def _umask() -> int:
    # os.umask can only be read by setting it; set it straight back.
    mask = os.umask(0)
    os.umask(mask)
    return mask


@contextlib.contextmanager
def atomic_path(
    path,
    *,
    private: bool = False,
    suffix: str = "",
    create_dir: bool = False,
) -> Iterator[str]:
    """A temporary path beside `path`, renamed onto it on success.

    The temporary file lives in `path`'s directory (one file system, so
    the rename is atomic). On any error, including KeyboardInterrupt, it
    is removed and `path` is left as it was: a reader never sees half a
    file. The result gets the permissions of an ordinary new file (the
    umask applied to 0o666), or 0o600 with `private=True`.

    Args:
        path: the final path; its directory must exist unless
            `create_dir`.
        private: whether only the owner may read the result.
        suffix: the temporary name's ending, for writers that pick their
            format from it (Keras's `.weights.h5`, `.keras`).
        create_dir: whether to create the missing parent directories.

    Yields:
        The temporary path to write.

    Example:

    >>> with atomic_path("results.json") as partial:  # doctest: +SKIP
    ...     write(partial)
    """
    path = os.fspath(path)
    directory = os.path.dirname(os.path.abspath(path))
    if create_dir:
        os.makedirs(directory, exist_ok=True)
    fd, partial = tempfile.mkstemp(
        dir=directory,
        prefix=f".{os.path.basename(path)}.",
        suffix=".partial" + suffix,
    )
    os.close(fd)
    try:
        yield partial
        os.chmod(partial, 0o600 if private else 0o666 & ~_umask())
        os.replace(partial, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.remove(partial)
        raise

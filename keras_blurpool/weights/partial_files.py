"""The weights cache's partial files, which no killed process strands.

A download, and the cached `.npz` and its digest, are written to hidden
files `.<stem>-XXXXXXXX.part<suffix>` of the cache directory and then
renamed into place or deleted (`part_file`). A process killed meanwhile
(SIGKILL, SIGTERM, SIGHUP: no `finally` runs) leaves its file behind;
`remove_stale`, which every `download.cached_state_dict` call runs first,
deletes it.

What tells a stale file from one that a live process is still writing (a
download in another process, which may sit for minutes on a slow link or
inside `huggingface_hub` before its first byte): a lock, not an age. The
writer holds an exclusive `flock` on its file from creation until it has
renamed or deleted it, and the kernel releases the lock when the process
ends, however it ends. `remove_stale` deletes a file only when it takes
that lock without waiting, and only if the path still names the file it
locked; the writer, symmetrically, takes its lock and then checks that
its path was not deleted in between. Where `fcntl` does not exist
(Windows), a file that a process holds open cannot be deleted, so
`remove_stale` simply tries.
"""

from __future__ import annotations

import contextlib
import os
import re
import stat
import tempfile
from collections.abc import Iterator

try:
    import fcntl
except ImportError:  # Windows
    fcntl = None

# A partial file of the cache: ours (`.<stem>-XXXXXXXX.part.npz`) and those
# of `keras_blurpool._utils.atomic_path` that earlier versions wrote there
# (`.<name>.XXXXXXXX.partial.npz`).
PART_NAME = re.compile(r"\..+\.part(?:ial)?(?:\..*)?")


def _same_file(descriptor: int, path: str) -> bool:
    try:
        return os.path.samestat(os.fstat(descriptor), os.lstat(path))
    except FileNotFoundError:
        return False


class PartFile:
    """A partial file of the cache, locked by this process until closed.

    Attributes:
        path: its path, to write (open it as often as needed).
    """

    def __init__(self, directory: str, stem: str, suffix: str):
        while True:
            descriptor, path = tempfile.mkstemp(  # mode 0o600
                prefix=f".{stem}-", suffix=f".part{suffix}", dir=directory
            )
            if fcntl is not None:
                # Blocks only while a cleaner that saw the new file holds it.
                # A file system without locks (ENOLCK) refuses the cleaner's
                # lock too, which then leaves every file alone.
                with contextlib.suppress(OSError):
                    fcntl.flock(descriptor, fcntl.LOCK_EX)
            if _same_file(descriptor, path):
                break
            os.close(descriptor)  # deleted before we locked it: again
        self.path = path
        self._descriptor = descriptor
        self._renamed = False

    def replace(self, target: str) -> None:
        """Renames the file onto `target` (atomically, in one directory)."""
        if fcntl is None:  # Windows renames no file that is open
            os.close(self._descriptor)
            self._descriptor = None
        os.replace(self.path, target)
        self._renamed = True

    def close(self) -> None:
        """Deletes the file unless renamed, then releases the lock."""
        if fcntl is None and self._descriptor is not None:
            os.close(self._descriptor)  # Windows deletes no file that is open
            self._descriptor = None
        try:
            if not self._renamed:
                with contextlib.suppress(FileNotFoundError):
                    os.remove(self.path)
        finally:
            if self._descriptor is not None:
                os.close(self._descriptor)
                self._descriptor = None


@contextlib.contextmanager
def part_file(directory: str, stem: str, suffix: str = "") -> Iterator[PartFile]:
    """A new locked partial file in `directory`, deleted on exit unless
    renamed into place (`PartFile.replace`), also on KeyboardInterrupt.

    Args:
        directory: the cache directory.
        stem: the cache entry's name, which the file's name starts with.
        suffix: the file's ending after `.part` (`".safetensors"`, so that
            `read_checkpoint` picks its reader).

    Yields:
        The `PartFile`.
    """
    part = PartFile(directory, stem, suffix)
    try:
        yield part
    finally:
        part.close()


def _remove_if_stale(path: str) -> bool:
    if fcntl is None:
        try:
            os.remove(path)  # fails while a process holds the file open
        except OSError:
            return False
        return True
    try:
        descriptor = os.open(
            path, os.O_RDONLY | os.O_NOFOLLOW | getattr(os, "O_NONBLOCK", 0)
        )
    except OSError:  # gone meanwhile, or a symbolic link: not ours
        return False
    try:
        if not stat.S_ISREG(os.fstat(descriptor).st_mode):
            return False
        try:
            fcntl.flock(descriptor, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:  # BlockingIOError: a live process writes it
            return False
        if not _same_file(descriptor, path):  # renamed or replaced meanwhile
            return False
        os.remove(path)
        return True
    except OSError:
        return False
    finally:
        os.close(descriptor)


def remove_stale(directory: str) -> list[str]:
    """Deletes the partial files of `directory` that no live process holds.

    Best effort: a file that cannot be examined or deleted is left alone.

    Args:
        directory: the cache directory.

    Returns:
        The names of the files deleted.
    """
    try:
        names = os.listdir(directory)
    except OSError:
        return []
    return [
        name
        for name in sorted(names)
        if PART_NAME.fullmatch(name)
        and _remove_if_stale(os.path.join(directory, name))
    ]

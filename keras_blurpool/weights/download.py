"""Released PyTorch checkpoints, fetched once, verified and cached.

`cached_state_dict(origin)` fetches a checkpoint whose file name carries
the prefix of its SHA-256 (`resnet50_lpf4_finetune-cad66808.pth`), checks
it, reads it without PyTorch (`read_checkpoint`) and caches the
state dict as a NumPy `.npz` in a private per-user directory
(`$KERAS_HOME/models/keras_blurpool/`, `~/.keras/...` by default). The
SHA-256 of each cached file is recorded beside it when it is written and
checked on every load; a file or directory owned by another user, or
writable by others, is never read. The downloaded checkpoint itself is
never kept. A state dict loads into any head configuration of its
architecture, so nothing needs to be built to cache it.
"""

from __future__ import annotations

import hashlib
import os
import re
import stat
import tempfile
import urllib.parse
import urllib.request
import warnings

import numpy as np

from keras_blurpool._utils import atomic_path
from keras_blurpool.weights.checkpoint import read_checkpoint
from keras_blurpool.weights.files import open_regular_file

_HASH_IN_NAME = re.compile(r"-([a-f0-9]{8,64})\.")
_CHUNK = 1 << 20
_DIGEST_SUFFIX = ".sha256"


def _owned_privately(path: str, *, directory: bool) -> str | None:
    """Why `path` must not be trusted, or None when it may be."""
    try:
        info = os.lstat(path)
    except FileNotFoundError:
        return None
    kind_ok = stat.S_ISDIR(info.st_mode) if directory else stat.S_ISREG(
        info.st_mode
    )
    if not kind_ok:
        return "is a symbolic link or not a " + (
            "directory" if directory else "regular file"
        )
    if info.st_uid != os.geteuid():
        return f"is owned by another user (uid {info.st_uid})"
    if info.st_mode & 0o022:
        return "is writable by other users"
    return None


def cache_dir() -> str:
    """The private directory of the cached state dicts, created if needed.

    `$KERAS_HOME/models/keras_blurpool`, or `~/.keras/models/keras_blurpool`;
    read at every call so that `KERAS_HOME` can be set late. The directory
    is created with mode 0o700; an existing one of ours that others may
    write is tightened to 0o700. There is no fallback to a shared
    directory: another user could plant weights there.

    Returns:
        The directory path.

    Raises:
        ValueError: when the directory cannot be created or written, or
            is owned by another user; the message names the directory and
            says how to set `KERAS_HOME`.
    """
    home = os.environ.get("KERAS_HOME") or os.path.join(
        os.path.expanduser("~"), ".keras"
    )
    path = os.path.join(home, "models", "keras_blurpool")
    fix = (
        "Set the KERAS_HOME environment variable to a directory of your "
        "own (the cache goes to $KERAS_HOME/models/keras_blurpool), or pass "
        "the path of a downloaded checkpoint as `weights`."
    )
    try:
        os.makedirs(path, mode=0o700, exist_ok=True)
    except OSError as error:
        raise ValueError(
            f"Cannot create the weights cache directory {path} ({error}). "
            + fix
        ) from error
    problem = _owned_privately(path, directory=True)
    if problem == "is writable by other users":
        os.chmod(path, 0o700)
        problem = _owned_privately(path, directory=True)
    if problem is not None:
        raise ValueError(
            f"The weights cache directory {path} {problem}; it is not used. "
            + fix
        )
    if not os.access(path, os.W_OK | os.X_OK):
        raise ValueError(
            f"The weights cache directory {path} is not writable. " + fix
        )
    return path


def _file_name(origin: str) -> str:
    return os.path.basename(urllib.parse.urlparse(origin).path)


def expected_hash(file_name: str) -> str:
    """The SHA-256 prefix a released file name carries (`name-<hex>.pth`).

    Raises:
        ValueError: if the name carries none.
    """
    match = _HASH_IN_NAME.search(file_name)
    if match is None:
        raise ValueError(
            f"Checkpoint file name {file_name!r} carries no SHA-256 prefix "
            "(expected `name-<hex>.pth`)"
        )
    return match.group(1)


def _sha256_of(file) -> str:
    digest = hashlib.sha256()
    while chunk := file.read(_CHUNK):
        digest.update(chunk)
    return digest.hexdigest()


def _sha256(path: str) -> str:
    with open(path, "rb") as f:
        return _sha256_of(f)


def _download(origin: str, destination: str) -> str:
    """Copies `origin` (http(s), file://) to `destination`; returns SHA-256."""
    digest = hashlib.sha256()
    try:
        with urllib.request.urlopen(origin) as response, open(
            destination, "wb"
        ) as out:
            while chunk := response.read(_CHUNK):
                digest.update(chunk)
                out.write(chunk)
    except OSError as error:  # URLError is an OSError
        raise ValueError(
            f"Could not fetch the pretrained weights from {origin} "
            f"({error}). Offline, download the file elsewhere and pass its "
            "path as `weights`."
        ) from error
    return digest.hexdigest()


def _remove_quietly(*paths: str) -> None:
    for path in paths:
        try:
            os.remove(path)
        except FileNotFoundError:
            pass


def _load_cached(target: str, digest_file: str) -> dict | None:
    """The cached state dict, or None if absent or not verified."""
    if not (os.path.lexists(target) and os.path.lexists(digest_file)):
        return None
    for path in (target, digest_file):
        problem = _owned_privately(path, directory=False)
        if problem is not None:
            raise ValueError(
                f"The cached file {path} {problem}; it is not read. Delete "
                "it, or set KERAS_HOME to a directory of your own."
            )
    with open_regular_file(digest_file, what="weights cache digest") as f:
        recorded = f.read(128).decode("ascii", errors="replace").strip()
    with open_regular_file(target, what="cached weights") as f:
        # One descriptor: the bytes checked are the bytes loaded.
        if _sha256_of(f) == recorded:
            f.seek(0)
            with np.load(f, allow_pickle=False) as archive:
                return {key: archive[key] for key in archive.files}
    warnings.warn(
        f"The cached file {target} does not match the SHA-256 recorded "
        "when it was written; fetching it again.",
        stacklevel=3,
    )
    _remove_quietly(target, digest_file)
    return None


def cached_state_dict(
    origin: str, *, cache_name: str | None = None, sha256: str | None = None
) -> dict:
    """The state dict of a released checkpoint, from the cache if there.

    The first call downloads `origin`, checks its SHA-256 against the
    prefix in its file name, reads it and writes the state dict
    atomically to `<cache_dir()>/<stem>.npz` together with its SHA-256
    (`<stem>.npz.sha256`); the checkpoint is then deleted. Later calls read
    the `.npz` after checking its owner, permissions and SHA-256.

    A file whose name carries no digest (timm's `model.safetensors` on
    the Hugging Face Hub) is cached under `cache_name`; it is checked
    against `sha256` when given, and otherwise by reading it (the state
    dict must parse, and the caller then loads it into its architecture,
    which checks every name and shape); the cache records the SHA-256 it
    was first fetched with and checks it on every load.

    Args:
        origin: URL of the checkpoint (https:// or file://), its file name
            `name-<sha256 prefix>.pth`, or any `.safetensors` file when
            `cache_name` is given.
        cache_name: the cache entry's name, for files whose name carries
            no digest (`"resnetaa50d.sw_in12k_ft_in1k"`).
        sha256: the file's full SHA-256 (hex) or a prefix of it, checked
            instead of the one in the file name; None for no pinned digest.

    Returns:
        PyTorch names to NumPy arrays.

    Raises:
        ValueError: for a download failure, a file whose SHA-256 does not
            match its name, a corrupted or hostile checkpoint, or an
            untrusted cache. Nothing is left in the cache then.
    """
    file_name = _file_name(origin)
    if cache_name is None:
        expected = sha256 or expected_hash(file_name)
        stem = file_name.split(".", 1)[0]
    else:
        if not re.fullmatch(r"[A-Za-z0-9_.-]{1,128}", cache_name) or (
            cache_name.startswith(".")
        ):
            raise ValueError(
                "`cache_name` must be 1-128 letters, digits, '_', '.' or '-', "
                f"not starting with '.'. Received: cache_name={cache_name!r}"
            )
        expected, stem = sha256 or "", cache_name
    suffix = ".safetensors" if file_name.endswith(".safetensors") else ".pth"
    directory = cache_dir()
    target = os.path.join(directory, f"{stem}.npz")
    digest_file = target + _DIGEST_SUFFIX
    cached = _load_cached(target, digest_file)
    if cached is not None:
        return cached

    fd, checkpoint = tempfile.mkstemp(
        # Partial, and named so that `read_checkpoint` picks its reader.
        prefix=f".{stem}-", suffix=f".part{suffix}", dir=directory
    )
    os.close(fd)
    try:
        actual = _download(origin, checkpoint)
        if not actual.startswith(expected.lower()):
            where = "the file name" if sha256 is None else "the registry"
            raise ValueError(
                f"The file fetched from {origin} is corrupted: its SHA-256 "
                f"is {actual}, {where} says {expected}..."
            )
        try:
            state_dict = read_checkpoint(checkpoint)
        except ValueError as error:
            # The reader names the temporary file; name the origin instead.
            raise ValueError(
                f"The checkpoint fetched from {origin} cannot be read: "
                f"{str(error).split(': ', 1)[-1]}"
            ) from error
        state_dict = {key: np.asarray(value) for key, value in state_dict.items()}
        # The digest is written last: a cached file without one is absent.
        _remove_quietly(digest_file)
        with atomic_path(target, private=True, suffix=".npz") as partial:
            with open(partial, "wb") as f:
                np.savez(f, **state_dict)
            digest = _sha256(partial)
        with atomic_path(digest_file, private=True) as partial:
            with open(partial, "w", encoding="ascii") as f:
                f.write(digest + "\n")
    finally:
        _remove_quietly(checkpoint)
    return state_dict

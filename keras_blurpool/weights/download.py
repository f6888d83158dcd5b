"""Released PyTorch checkpoints, fetched once, verified and cached.

`cached_state_dict(origin)` fetches a checkpoint whose file name carries
the prefix of its SHA-256 (`resnet50_lpf4_finetune-cad66808.pth`), checks
it, reads it without PyTorch (`read_checkpoint`) and caches the
state dict as a NumPy `.npz` in a private per-user directory
(`$KERAS_HOME/models/keras_blurpool/`, `~/.keras/...` by default). The
SHA-256 of each cached file is recorded beside it when it is written and
checked on every load; a file or directory owned by another user, or
writable by others, is never read. The downloaded checkpoint itself is
never kept. The state dict is cached only once the caller's `check` has
accepted it (`applications.loading` loads it into the released network),
so a file that parses but does not fit is fetched again next time; the
cached state dict then serves any head configuration of its architecture.

Fetching (`_fetch`): an `https://huggingface.co/<repo>/resolve/<rev>/<file>`
origin goes through `huggingface_hub.hf_hub_download` when that library is
installed (`hub_downloader()`; its `HF_ENDPOINT`, `HF_TOKEN`,
`HF_HUB_OFFLINE` and shared cache then apply, and a file already in that
cache needs no network); every other origin, and Hub origins without it,
through urllib: connect and read timeouts of `download_timeout()` seconds
(`$KERAS_BLURPOOL_DOWNLOAD_TIMEOUT`, default 30), one retry after a
transient failure (a timeout, a reset or dropped connection, a body
shorter than its `Content-Length`, HTTP 5xx, 408 or 429) and a
`keras.utils.Progbar` sized from `Content-Length` when stdout is a terminal
or a notebook (`$KERAS_BLURPOOL_PROGRESS` forces it on or off). Either way
the file lands in a private partial file of the cache directory
(`partial_files`: a later call deletes those a killed process left) and is
then verified and read as above: the fetch is the only difference.

Bounds: no download writes more than `download_max_bytes()`
(`$KERAS_BLURPOOL_DOWNLOAD_MAX_MB`, default `DEFAULT_MAX_MB`, 2.5 times the
largest released file), nor more than the `Content-Length` the origin
announced; a `Content-Length` above the bound is refused before a byte is
read.
"""

from __future__ import annotations

import hashlib
import http.client
import math
import os
import re
import shlex
import ssl
import stat
import sys
import time
import urllib.error
import urllib.parse
import urllib.request
import warnings
from collections.abc import Callable

import numpy as np

from keras_blurpool.weights import partial_files
from keras_blurpool.weights.checkpoint import read_checkpoint
from keras_blurpool.weights.files import open_regular_file
from keras_blurpool.weights.npz import read_npz

_HASH_IN_NAME = re.compile(r"-([a-f0-9]{8,64})\.")
_CHUNK = 1 << 20
_DIGEST_SUFFIX = ".sha256"

# Downloads over urllib: the connect and read timeout (seconds without a
# byte, not the whole transfer), overridable by TIMEOUT_ENV; the pause
# before the one retry; PROGRESS_ENV, "1" or "0", forces the progress bar
# on or off (default: on when stdout is a terminal or a notebook).
DEFAULT_TIMEOUT = 30.0
TIMEOUT_ENV = "KERAS_BLURPOOL_DOWNLOAD_TIMEOUT"
PROGRESS_ENV = "KERAS_BLURPOOL_PROGRESS"
RETRY_DELAY = 1.0
# The most a download may write, in megabytes (10**6 bytes), overridable
# by MAX_MB_ENV: 2.5 times the largest released file (timm's
# seresnextaa201d_32x8d, 599 MB of float32; the reference's VGG-19s, 575
# MB), so that a VGG-19 checkpoint carrying its SGD momentum fits too.
DEFAULT_MAX_MB = 1500.0
MAX_MB_ENV = "KERAS_BLURPOOL_DOWNLOAD_MAX_MB"
_SCHEMES = ("https", "http", "file")
# Origins that `huggingface_hub` fetches when it is installed.
_HUB_ORIGIN = re.compile(
    r"https://huggingface\.co/(?P<repo>[^/?#]+/[^/?#]+)/resolve/"
    r"(?P<revision>[^/?#]+)/(?P<filename>[^?#]+)"
)


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


def download_timeout() -> float:
    """The connect and read timeout of urllib downloads, in seconds.

    `$KERAS_BLURPOOL_DOWNLOAD_TIMEOUT` when set, else `DEFAULT_TIMEOUT`
    (30): how long a connection may take to open, and then how long the
    server may send nothing, before the attempt fails (a slow but steady
    download never times out). Read at every download.

    Raises:
        ValueError: when the variable is not a number of seconds > 0.
    """
    raw = os.environ.get(TIMEOUT_ENV, "").strip()
    if not raw:
        return DEFAULT_TIMEOUT
    try:
        value = float(raw)
    except ValueError:
        value = math.nan
    if not (math.isfinite(value) and value > 0):
        raise ValueError(
            f"{TIMEOUT_ENV} must be a number of seconds > 0 (the connect and "
            f"read timeout of downloads; default {DEFAULT_TIMEOUT:g}). "
            f"Received: {TIMEOUT_ENV}={raw!r}"
        )
    return value


def download_max_bytes() -> int:
    """The most bytes a download may write.

    `$KERAS_BLURPOOL_DOWNLOAD_MAX_MB` (megabytes, 10**6 bytes) when set,
    else `DEFAULT_MAX_MB` (1500, 2.5 times the largest released file).
    Read at every download.

    Raises:
        ValueError: when the variable is not a number of megabytes > 0.
    """
    raw = os.environ.get(MAX_MB_ENV, "").strip()
    if not raw:
        return int(DEFAULT_MAX_MB * 1e6)
    try:
        value = float(raw)
    except ValueError:
        value = math.nan
    if not (math.isfinite(value) and value * 1e6 >= 1):
        raise ValueError(
            f"{MAX_MB_ENV} must be a number of megabytes > 0 (the largest "
            f"file a download may write; default {DEFAULT_MAX_MB:g}). "
            f"Received: {MAX_MB_ENV}={raw!r}"
        )
    return int(value * 1e6)


def _megabytes(size: int) -> str:
    return f"{size / 1e6:.6g} MB"


def _progress_wanted() -> bool:
    raw = os.environ.get(PROGRESS_ENV, "").strip().lower()
    if raw in ("1", "true", "yes", "on"):
        return True
    if raw in ("0", "false", "no", "off"):
        return False
    if raw:
        raise ValueError(
            f"{PROGRESS_ENV} must be 1 (always show the download progress "
            "bar) or 0 (never); unset, the bar shows when stdout is a "
            f"terminal or a notebook. Received: {PROGRESS_ENV}={raw!r}"
        )
    isatty = getattr(sys.stdout, "isatty", None)
    return bool(isatty and isatty()) or "ipykernel" in sys.modules


class _Progress:
    """A `keras.utils.Progbar` in bytes, or nothing when not wanted."""

    def __init__(self, origin: str, total: int | None, shown: bool):
        self._bar = None
        if not shown:
            return
        import keras

        size = "" if total is None else f" ({total / 1e6:.1f} MB)"
        sys.stdout.write(f"Downloading {origin}{size}\n")
        sys.stdout.flush()
        self._bar = keras.utils.Progbar(total, unit_name="B")

    def update(self, received: int, *, done: bool = False) -> None:
        if self._bar is not None:
            self._bar.update(received, finalize=done)


class _ShortBody(OSError):
    """The connection ended before `Content-Length` bytes arrived."""


class _TooLarge(OSError):
    """The origin announced or sent more than a download may write."""

    def __init__(self, message: str, *, bound: bool):
        super().__init__(message)
        self.bound = bound  # whether `download_max_bytes()` was exceeded


def _content_length(response) -> int | None:
    value = response.headers.get("Content-Length")
    try:
        length = int(value)
    except (TypeError, ValueError):
        return None
    return length if length >= 0 else None


def _is_transient(error: BaseException) -> bool:
    """Whether one more attempt may succeed: timeouts, dropped
    connections, truncated bodies, HTTP 5xx, 408 and 429 (not 403, 404 or
    a name that does not resolve)."""
    if isinstance(error, urllib.error.HTTPError):
        return error.code >= 500 or error.code in (408, 429)
    if isinstance(error, urllib.error.URLError) and isinstance(
        error.reason, BaseException
    ):
        error = error.reason
    return isinstance(
        error,
        (
            TimeoutError,
            ConnectionResetError,
            ConnectionAbortedError,
            BrokenPipeError,
            http.client.IncompleteRead,
            http.client.BadStatusLine,
            ssl.SSLEOFError,
            _ShortBody,
        ),
    )


def _fetch_url_once(
    origin: str, destination: str, timeout: float, limit: int
) -> str:
    digest = hashlib.sha256()
    with urllib.request.urlopen(origin, timeout=timeout) as response, open(
        destination, "wb"
    ) as out:
        total = _content_length(response)
        if total is not None and total > limit:
            raise _TooLarge(
                f"its Content-Length is {total} bytes, more than the "
                f"download bound of {_megabytes(limit)}",
                bound=True,
            )
        progress = _Progress(origin, total, _progress_wanted())
        end = limit if total is None else total
        received = 0
        # One byte more than allowed tells a longer body from a full one.
        while chunk := response.read(min(_CHUNK, end - received + 1)):
            if received + len(chunk) > end:
                raise _TooLarge(
                    f"it sent more than the download bound of "
                    f"{_megabytes(limit)}"
                    if total is None
                    else f"it sent more than the {total} bytes its "
                    "Content-Length announced",
                    bound=total is None,
                )
            digest.update(chunk)
            out.write(chunk)
            received += len(chunk)
            progress.update(received)
        if total is not None and received != total:
            raise _ShortBody(
                f"the connection ended after {received} of {total} bytes"
            )
        progress.update(received, done=True)
    return digest.hexdigest()


def _describe(error: BaseException) -> str:
    if isinstance(error, urllib.error.HTTPError):
        return f"HTTP {error.code} {error.reason}"
    if isinstance(error, urllib.error.URLError):
        error = error.reason if isinstance(error.reason, BaseException) else error
    if isinstance(error, TimeoutError):
        return "timed out"
    return str(error) or type(error).__name__


def _fetch_url(origin: str, destination: str, offline: str) -> str:
    """Copies `origin` (http(s), file://) to `destination`; its SHA-256.

    One retry after a transient failure (`_is_transient`), from the start
    of the file, `RETRY_DELAY` seconds later; each attempt has
    `download_timeout()` to connect and to receive each block.
    """
    timeout = download_timeout()
    limit = download_max_bytes()
    attempts = 2
    for attempt in range(1, attempts + 1):
        try:
            return _fetch_url_once(origin, destination, timeout, limit)
        except (OSError, http.client.HTTPException) as error:
            # URLError, HTTPError, TimeoutError, ConnectionError: OSErrors.
            transient = _is_transient(error)
            if transient and attempt < attempts:
                warnings.warn(
                    f"Fetching {origin} failed ({_describe(error)}); "
                    "retrying once.",
                    stacklevel=4,
                )
                time.sleep(RETRY_DELAY)
                continue
            tried = " (tried twice)" if attempt > 1 else ""
            hint = ""
            if "timed out" in _describe(error):
                hint = (
                    f" Each attempt waits {timeout:g} s for the connection "
                    f"and for each block of data: set {TIMEOUT_ENV} (seconds) "
                    "to wait longer."
                )
            if isinstance(error, _TooLarge) and error.bound:
                hint = (
                    f" Set {MAX_MB_ENV} (megabytes; default "
                    f"{DEFAULT_MAX_MB:g}) to allow larger files."
                )
            raise ValueError(
                f"Could not fetch the pretrained weights from {origin}: "
                f"{_describe(error)}{tried}.{hint} {offline}"
            ) from error
    raise AssertionError("unreachable")


def hub_downloader():
    """`huggingface_hub.hf_hub_download`, or None when not installed.

    Tests replace this function to pick a fetch path (`lambda: None` for
    urllib) without uninstalling anything.
    """
    try:
        from huggingface_hub import hf_hub_download
    except ImportError:
        return None
    return hf_hub_download


def _hub_file(origin: str) -> tuple[str, str, str] | None:
    """`(repo_id, revision, filename)` of a Hugging Face Hub URL, or None."""
    match = _HUB_ORIGIN.fullmatch(origin)
    if match is None:
        return None
    return match.group("repo"), match.group("revision"), match.group("filename")


def _fetch_from_hub(
    hf_hub_download, hub_file, origin: str, destination: str, offline: str
) -> str:
    """`hf_hub_download`s the file into the Hugging Face cache (or finds it
    there), then copies it to `destination`; its SHA-256."""
    from keras_blurpool import __version__

    repo_id, revision, filename = hub_file
    try:
        path = hf_hub_download(
            repo_id,
            filename,
            revision=revision,
            library_name="keras-blurpool",
            library_version=__version__,
        )
    except Exception as error:  # the hub's error classes vary by version
        raise ValueError(
            f"Could not fetch the pretrained weights {repo_id}/{filename} "
            f"({origin}) through huggingface_hub: "
            f"{type(error).__name__}: {error} {offline}"
        ) from error
    limit = download_max_bytes()
    digest = hashlib.sha256()
    with open_regular_file(path, what="Hugging Face cache file") as source, open(
        destination, "wb"
    ) as out:
        size = os.fstat(source.fileno()).st_size
        copied = 0
        while size <= limit and (
            chunk := source.read(min(_CHUNK, limit - copied + 1))
        ):
            copied += len(chunk)
            if copied > limit:  # the file grew while copied
                break
            digest.update(chunk)
            out.write(chunk)
        if max(size, copied) > limit:
            what = f"is {size} bytes" if size > limit else "grew while copied"
            raise ValueError(
                f"The file huggingface_hub fetched for {origin} ({path}) "
                f"{what}, beyond the download bound of {_megabytes(limit)}. "
                f"Set {MAX_MB_ENV} (megabytes; default {DEFAULT_MAX_MB:g}) "
                "to allow larger files."
            )
    return digest.hexdigest()


def _offline_route(origin: str, stem: str, directory: str) -> str:
    """What to do without network, for the message of a failed fetch."""
    hub_file = _hub_file(origin)
    if hub_file is None:
        return (
            f"Without network access: download {origin} elsewhere and pass "
            f"its path as `weights=`, or copy {stem}.npz and {stem}.npz.sha256 from "
            f"another machine's cache into {directory}."
        )
    repo_id, _, filename = hub_file
    return (
        f"Without network access: download {origin} elsewhere and pass its "
        "path as `weights=`; or, with huggingface_hub installed (pip install "
        f"'keras-blurpool[hub]'), run `hf download {repo_id} {filename}` "
        "on a connected machine, copy its Hugging Face cache (HF_HUB_CACHE) "
        "here and set HF_HUB_OFFLINE=1; or copy "
        f"{stem}.npz and {stem}.npz.sha256 from another machine's cache "
        f"into {directory}."
    )


def _fetch(origin: str, destination: str, offline: str) -> str:
    """Fetches `origin` into `destination`, through huggingface_hub for a
    Hub URL when it is installed, else urllib; returns its SHA-256."""
    hub_file = _hub_file(origin)
    if hub_file is not None:
        hf_hub_download = hub_downloader()
        if hf_hub_download is not None:
            return _fetch_from_hub(
                hf_hub_download, hub_file, origin, destination, offline
            )
    return _fetch_url(origin, destination, offline)


def _check_origin(origin) -> None:
    if not isinstance(origin, str) or (
        urllib.parse.urlparse(origin).scheme.lower() not in _SCHEMES
    ):
        raise ValueError(
            "`origin` must be an https://, http:// or file:// URL of a "
            "checkpoint (to load a file you have, pass its path as "
            f"`weights=`). Received: origin={origin!r}"
        )


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
            return read_npz(f, target)
    warnings.warn(
        f"The cached file {target} does not match the SHA-256 recorded "
        "when it was written; fetching it again.",
        stacklevel=3,
    )
    _remove_quietly(target, digest_file)
    return None


def cached_state_dict(
    origin: str,
    *,
    cache_name: str | None = None,
    sha256: str | None = None,
    check: Callable[[dict], object] | None = None,
    check_cached: Callable[[dict], object] | None = None,
) -> dict:
    """The state dict of a released checkpoint, from the cache if there.

    The first call downloads `origin`, checks its SHA-256 against the
    prefix in its file name, reads it, passes the state dict to `check`
    and, once `check` has accepted it, writes it atomically to
    `<cache_dir()>/<stem>.npz` together with its SHA-256
    (`<stem>.npz.sha256`); the checkpoint is then deleted. Later calls read
    the `.npz` after checking its owner, permissions and SHA-256, and pass
    it to `check_cached`.

    A file whose name carries no digest (timm's `model.safetensors` on
    the Hugging Face Hub) is cached under `cache_name`; it is checked
    against `sha256` when given, and otherwise by reading it (the state
    dict must parse) and by `check` (the caller loads it into its
    architecture, which checks every name and shape); the cache records
    the SHA-256 it was first fetched with and checks it on every load.

    A Hugging Face Hub URL is fetched with `huggingface_hub` when it is
    installed (its cache, mirror, token and offline mode apply), anything
    else with urllib: timeouts, one retry, a progress bar, a size bound
    (see the module docstring). A failed fetch's message names the URL and
    what to do offline. Every call first deletes the partial files that
    killed processes left in the cache directory
    (`partial_files.remove_stale`).

    Args:
        origin: URL of the checkpoint (https://, http:// or file://), its file name
            `name-<sha256 prefix>.pth`, or any `.safetensors` file when
            `cache_name` is given.
        cache_name: the cache entry's name, for files whose name carries
            no digest (`"resnetaa50d.sw_in12k_ft_in1k"`).
        sha256: the file's full SHA-256 (hex) or a prefix of it, checked
            instead of the one in the file name; None for no pinned digest.
        check: called with a fetched state dict before it is cached; a
            `ValueError` it raises is re-raised naming `origin`, and
            nothing is cached (a later call fetches again). None: cached
            once it parses.
        check_cached: called with a state dict read from the cache; a
            `ValueError` it raises is re-raised naming the cached file and
            how to remove it.

    Returns:
        PyTorch names to NumPy arrays.

    Raises:
        ValueError: for an origin that is not such a URL, a bad
            `$KERAS_BLURPOOL_DOWNLOAD_TIMEOUT`, `$KERAS_BLURPOOL_PROGRESS` or
            `$KERAS_BLURPOOL_DOWNLOAD_MAX_MB`, a download failure, a file
            larger than the download bound, a file whose SHA-256 does not
            match its name, a corrupted or hostile checkpoint, one that
            `check` refuses, a cached one that `check_cached` refuses, or
            an untrusted cache. Nothing new is left in the cache then (a
            cached file that `check_cached` refuses stays, named in the
            message, for you to delete).
    """
    _check_origin(origin)
    download_timeout()  # a bad $KERAS_BLURPOOL_DOWNLOAD_TIMEOUT, early
    download_max_bytes()
    _progress_wanted()
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
    partial_files.remove_stale(directory)
    target = os.path.join(directory, f"{stem}.npz")
    digest_file = target + _DIGEST_SUFFIX
    cached = _load_cached(target, digest_file)
    if cached is not None:
        if check_cached is not None:
            try:
                check_cached(cached)
            except ValueError as error:
                raise ValueError(
                    f"The cached weights {target} (fetched from {origin}) do "
                    f"not load: {error}\nDelete {target} and {digest_file} "
                    f"(rm {shlex.quote(target)} {shlex.quote(digest_file)}): "
                    f"the next call fetches {origin} again."
                ) from error
        return cached

    # Partial, and named so that `read_checkpoint` picks its reader.
    with partial_files.part_file(directory, stem, suffix) as checkpoint:
        actual = _fetch(
            origin, checkpoint.path, _offline_route(origin, stem, directory)
        )
        if not actual.startswith(expected.lower()):
            where = "the file name" if sha256 is None else "the registry"
            raise ValueError(
                f"The file fetched from {origin} is corrupted: its SHA-256 "
                f"is {actual}, {where} says {expected}..."
            )
        try:
            state_dict = read_checkpoint(checkpoint.path)
        except ValueError as error:
            # The reader names the temporary file; name the origin instead.
            raise ValueError(
                f"The checkpoint fetched from {origin} cannot be read: "
                f"{str(error).split(': ', 1)[-1]}"
            ) from error
        state_dict = {key: np.asarray(value) for key, value in state_dict.items()}
    if check is not None:
        try:
            check(state_dict)
        except ValueError as error:
            raise ValueError(
                f"The weights fetched from {origin} do not load, so they were "
                f"not cached: {error}"
            ) from error
    # The digest is written last: a cached file without one is absent.
    _remove_quietly(digest_file)
    with partial_files.part_file(directory, stem, ".npz") as partial:
        with open(partial.path, "wb") as f:
            np.savez(f, **state_dict)
        digest = _sha256(partial.path)
        partial.replace(target)
    with partial_files.part_file(directory, stem, _DIGEST_SUFFIX) as partial:
        with open(partial.path, "w", encoding="ascii") as f:
            f.write(digest + "\n")
        partial.replace(digest_file)
    return state_dict

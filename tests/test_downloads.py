"""Downloads that behave: progress, timeouts, one retry, huggingface_hub.

Nothing is downloaded: files are served by an HTTP server on 127.0.0.1 in
a thread of this process (scripted per request: stall, drop, reset, error
codes), from `file://` URLs, or from a Hugging Face cache laid out by the
test. The tests that use `huggingface_hub` itself skip, saying so, when it
is not installed (`pip install -e ".[hub]"`); the choice of fetch is
injected (`download.hub_downloader`), never made by uninstalling.
"""

from __future__ import annotations

import functools
import hashlib
import json
import os
import socket
import struct
import subprocess
import sys
import textwrap
import threading
import time
import urllib.parse
import urllib.request
from http.server import BaseHTTPRequestHandler
from http.server import ThreadingHTTPServer
from pathlib import Path

import keras
import numpy as np
import pytest

from keras_blurpool import applications
from keras_blurpool.applications import registry
from keras_blurpool.applications import timm_resnet
from keras_blurpool.weights import download

_ROOT = Path(__file__).resolve().parents[1]
_COMMIT = "0123456789abcdef0123456789abcdef01234567"
_REPO = "timm/resnetblur50.bt_in1k"
_HUB_ORIGIN = f"https://huggingface.co/{_REPO}/resolve/main/model.safetensors"
# The download bound's variable, by the name users set.
_MAX_MB = "KERAS_BLURPOOL_DOWNLOAD_MAX_MB"


def _safetensors(tensors: dict) -> bytes:
    """A safetensors file of float32 tensors, written without the library."""
    header, blobs, offset = {}, [], 0
    for name, value in tensors.items():
        data = np.ascontiguousarray(value, "<f4").tobytes()
        header[name] = {
            "dtype": "F32",
            "shape": list(np.shape(value)),
            "data_offsets": [offset, offset + len(data)],
        }
        blobs.append(data)
        offset += len(data)
    raw = json.dumps(header).encode()
    return struct.pack("<Q", len(raw)) + raw + b"".join(blobs)


_TINY = {"fc.weight": np.arange(6, dtype="float32").reshape(2, 3)}
_TINY_BYTES = _safetensors(_TINY)
# Three 1 MiB chunks and a bit: the progress bar moves.
_LARGE = {"w": np.linspace(0, 1, 800_000, dtype="float32")}
_LARGE_BYTES = _safetensors(_LARGE)


def _named(data: bytes, stem: str = "tiny") -> str:
    """A released-style file name carrying the data's SHA-256 prefix."""
    return f"{stem}-{hashlib.sha256(data).hexdigest()[:8]}.safetensors"


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def log_message(self, *args):  # quiet
        pass

    def do_HEAD(self):
        self._serve(head=True)

    def do_GET(self):
        self._serve(head=False)

    def _serve(self, *, head):
        server = self.server.owner
        server.requests.append((self.command, self.path, dict(self.headers)))
        path = urllib.parse.urlparse(self.path).path
        body = server.files.get(path)
        behaviour = server.script.pop(0) if server.script and not head else "ok"
        try:
            if behaviour == "stall":
                time.sleep(server.stall_s)
            if body is None:
                behaviour = 404
            if isinstance(behaviour, int):
                self.send_error(behaviour)
                return
            self.send_response(200)
            self.send_header("Content-Type", "application/octet-stream")
            # What the Hub's resolve endpoint answers (huggingface_hub
            # needs the commit and an ETag).
            self.send_header("X-Repo-Commit", _COMMIT)
            self.send_header("ETag", f'"{hashlib.sha256(body).hexdigest()}"')
            if behaviour in ("nolength", "endless"):
                self.send_header("Connection", "close")
                self.close_connection = True
            else:
                self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            if head:
                return
            if behaviour == "endless":  # zeros until the client hangs up
                block = bytes(1 << 16)
                while not server.release.is_set():
                    self.wfile.write(block)
                return
            if behaviour == "slow":  # half, then the rest once released
                self.wfile.write(body[: len(body) // 2])
                self.wfile.flush()
                server.release.wait(timeout=300)
                self.wfile.write(body[len(body) // 2 :])
                return
            if behaviour in ("short", "reset"):
                self.wfile.write(body[: len(body) // 2])
                self.wfile.flush()
                self.close_connection = True
                if behaviour == "reset":  # RST instead of FIN
                    self.connection.setsockopt(
                        socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0)
                    )
                    self.connection.close()
                return
            self.wfile.write(body)
        except OSError:  # the client gave up (a stalled request)
            self.close_connection = True


class _Server:
    """A scripted HTTP server on 127.0.0.1: `files` (path -> bytes),
    `script` (behaviour of each next GET, then "ok"), `requests` seen;
    `release` ends the "slow" and "endless" answers."""

    def __init__(self):
        self.files: dict[str, bytes] = {}
        self.script: list = []
        self.requests: list = []
        self.stall_s = 1.0
        self.release = threading.Event()
        self._httpd = ThreadingHTTPServer(("127.0.0.1", 0), _Handler)
        self._httpd.daemon_threads = True
        self._httpd.block_on_close = False
        self._httpd.owner = self
        self.url = f"http://127.0.0.1:{self._httpd.server_address[1]}"
        self._thread = threading.Thread(
            target=self._httpd.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True
        )
        self._thread.start()

    def serve(self, path: str, data: bytes) -> str:
        self.files[path] = data
        return self.url + path

    def gets(self) -> int:
        return sum(method == "GET" for method, _, _ in self.requests)

    def close(self):
        self.release.set()
        if self._thread.is_alive():
            self._httpd.shutdown()
            self._httpd.server_close()
            self._thread.join(timeout=5)


@pytest.fixture
def server():
    served = _Server()
    yield served
    served.close()


@pytest.fixture(autouse=True)
def local_only(tmp_path, monkeypatch):
    """A fresh cache; urllib may reach 127.0.0.1 and file:// only; no
    pause before the retry; no progress bar unless a test asks."""
    monkeypatch.setenv("KERAS_HOME", str(tmp_path / "keras_home"))
    monkeypatch.delenv(download.TIMEOUT_ENV, raising=False)
    monkeypatch.delenv(_MAX_MB, raising=False)
    monkeypatch.setenv(download.PROGRESS_ENV, "0")
    monkeypatch.setattr(download, "RETRY_DELAY", 0.01)
    real = urllib.request.urlopen

    def urlopen(url, *args, **kwargs):
        parsed = urllib.parse.urlparse(url)
        assert parsed.scheme == "file" or parsed.hostname == "127.0.0.1", url
        return real(url, *args, **kwargs)

    monkeypatch.setattr(urllib.request, "urlopen", urlopen)


def _cache_files():
    return sorted(os.listdir(download.cache_dir()))


def _hub_or_skip():
    hf_hub_download = download.hub_downloader()
    if hf_hub_download is None:
        reason = "huggingface_hub not installed (pip install -e '.[hub]')"
        print(f"\nSKIP: {reason}")
        pytest.skip(reason)
    return hf_hub_download


# --- urllib: progress bar ---------------------------------------------------


def test_progress_bar_sized_from_content_length(server, monkeypatch, capsys):
    url = server.serve("/" + _named(_LARGE_BYTES, "large"), _LARGE_BYTES)
    monkeypatch.setenv(download.PROGRESS_ENV, "1")
    state = download.cached_state_dict(url)
    np.testing.assert_array_equal(state["w"], _LARGE["w"])
    out = capsys.readouterr().out
    size = len(_LARGE_BYTES)
    assert f"Downloading {url} ({size / 1e6:.1f} MB)" in out
    assert f"{size}/{size}" in out


def test_progress_bar_without_content_length(server, monkeypatch, capsys):
    url = server.serve("/" + _named(_TINY_BYTES), _TINY_BYTES)
    server.script = ["nolength"]
    monkeypatch.setenv(download.PROGRESS_ENV, "1")
    download.cached_state_dict(url)
    out = capsys.readouterr().out
    assert f"Downloading {url}\n" in out and "/Unknown" in out


def test_no_progress_bar_when_stdout_is_not_a_terminal(server, monkeypatch, capsys):
    url = server.serve("/" + _named(_TINY_BYTES), _TINY_BYTES)
    monkeypatch.delenv(download.PROGRESS_ENV)  # pytest's stdout is no terminal
    download.cached_state_dict(url)
    assert capsys.readouterr().out == ""


# --- urllib: timeouts and the one retry -------------------------------------


@pytest.mark.parametrize("failure", [503, 500, "short", "reset", "stall"])
def test_one_retry_after_a_transient_failure(server, monkeypatch, failure):
    url = server.serve("/" + _named(_TINY_BYTES), _TINY_BYTES)
    server.script = [failure]
    monkeypatch.setenv(download.TIMEOUT_ENV, "0.3")
    with pytest.warns(UserWarning, match="retrying once"):
        state = download.cached_state_dict(url)
    np.testing.assert_array_equal(state["fc.weight"], _TINY["fc.weight"])
    assert server.gets() == 2
    stem = _named(_TINY_BYTES).split(".")[0]
    assert _cache_files() == [f"{stem}.npz", f"{stem}.npz.sha256"]


def test_two_timeouts_fail_naming_the_url_and_the_offline_route(server, monkeypatch):
    url = server.serve("/" + _named(_TINY_BYTES), _TINY_BYTES)
    server.script = ["stall", "stall"]
    server.stall_s = 3.0
    monkeypatch.setenv(download.TIMEOUT_ENV, "0.2")
    start = time.monotonic()
    with pytest.warns(UserWarning, match="retrying once"):
        with pytest.raises(ValueError) as info:
            download.cached_state_dict(url)
    assert time.monotonic() - start < 2.0  # two 0.2 s attempts, not the 3 s stalls
    message = str(info.value)
    assert url in message and "timed out (tried twice)" in message
    assert "waits 0.2 s" in message and download.TIMEOUT_ENV in message
    assert "pass its path as `weights=`" in message and ".npz.sha256" in message
    assert server.gets() == 2
    assert _cache_files() == []


@pytest.mark.parametrize("code", [404, 403])
def test_client_errors_are_not_retried(server, code):
    url = server.serve("/" + _named(_TINY_BYTES), _TINY_BYTES)
    server.script = [code]
    with pytest.raises(ValueError, match=f"{url}: HTTP {code} .*Without network access: download"):
        download.cached_state_dict(url)
    assert server.gets() == 1
    assert _cache_files() == []


def test_timeout_reaches_urlopen(tmp_path, monkeypatch):
    path = tmp_path / _named(_TINY_BYTES)
    path.write_bytes(_TINY_BYTES)
    seen = []
    real = urllib.request.urlopen

    def urlopen(url, *, timeout):
        seen.append(timeout)
        return real(url, timeout=timeout)

    monkeypatch.setattr(urllib.request, "urlopen", urlopen)
    download.cached_state_dict(path.as_uri())
    monkeypatch.setenv(download.TIMEOUT_ENV, "7.5")
    monkeypatch.setenv("KERAS_HOME", str(tmp_path / "other_home"))
    download.cached_state_dict(path.as_uri())
    assert seen == [download.DEFAULT_TIMEOUT, 7.5] and download.DEFAULT_TIMEOUT == 30


def test_interrupted_download_leaves_nothing(server, monkeypatch):
    url = server.serve("/" + _named(_LARGE_BYTES, "large"), _LARGE_BYTES)

    def interrupt(self, received, *, done=False):
        raise KeyboardInterrupt

    monkeypatch.setattr(download._Progress, "update", interrupt)
    with pytest.raises(KeyboardInterrupt):
        download.cached_state_dict(url)
    assert _cache_files() == []


# --- bad input: early, clear, nothing written --------------------------------


@pytest.mark.parametrize("value", ["abc", "0", "-1", "inf", "nan"])
def test_bad_timeout_variable(server, monkeypatch, value):
    url = server.serve("/" + _named(_TINY_BYTES), _TINY_BYTES)
    monkeypatch.setenv(download.TIMEOUT_ENV, value)
    match = f"KERAS_BLURPOOL_DOWNLOAD_TIMEOUT must be a number of seconds > 0.*{value!r}"
    with pytest.raises(ValueError, match=match):
        download.cached_state_dict(url)
    assert server.requests == [] and _cache_files() == []


def test_bad_progress_variable(server, monkeypatch):
    url = server.serve("/" + _named(_TINY_BYTES), _TINY_BYTES)
    monkeypatch.setenv(download.PROGRESS_ENV, "sometimes")
    with pytest.raises(ValueError, match="KERAS_BLURPOOL_PROGRESS must be 1 .* or 0"):
        download.cached_state_dict(url)
    assert server.requests == [] and _cache_files() == []


@pytest.mark.parametrize(
    "origin", ["ftp://example.org/x-0123abcd.pth", "x-0123abcd.pth", None, b"https://a/b"]
)
def test_bad_origin(origin):
    with pytest.raises(ValueError, match=r"`origin` must be an https://.*Received: origin="):
        download.cached_state_dict(origin)
    assert _cache_files() == []


# --- which fetch: huggingface_hub for Hub URLs when installed ----------------


def test_hub_url_without_huggingface_hub_goes_through_urllib(monkeypatch):
    fetched = []

    def fetch_url(origin, destination, offline):
        fetched.append(origin)
        Path(destination).write_bytes(_TINY_BYTES)
        return hashlib.sha256(_TINY_BYTES).hexdigest()

    monkeypatch.setattr(download, "hub_downloader", lambda: None)
    monkeypatch.setattr(download, "_fetch_url", fetch_url)
    state = download.cached_state_dict(_HUB_ORIGIN, cache_name="resnetblur50.bt_in1k")
    assert fetched == [_HUB_ORIGIN]
    np.testing.assert_array_equal(state["fc.weight"], _TINY["fc.weight"])


def test_other_urls_never_go_through_huggingface_hub(server, monkeypatch):
    def hf_hub_download(*args, **kwargs):
        raise AssertionError("not a Hub URL")

    monkeypatch.setattr(download, "hub_downloader", lambda: hf_hub_download)
    url = server.serve("/" + _named(_TINY_BYTES), _TINY_BYTES)
    download.cached_state_dict(url)
    # The registry's Hub base pointed elsewhere (a folder, a server):
    # urllib too.
    url = server.serve("/timm/resnetblur50.bt_in1k/resolve/main/model.safetensors",
                       _TINY_BYTES)
    download.cached_state_dict(url, cache_name="resnetblur50.bt_in1k")
    assert server.gets() == 2


def test_hub_url_goes_through_hf_hub_download(tmp_path, monkeypatch):
    calls = []
    blob = tmp_path / "hf" / "model.safetensors"
    blob.parent.mkdir()
    blob.write_bytes(_TINY_BYTES)

    def hf_hub_download(repo_id, filename, **kwargs):
        calls.append((repo_id, filename, kwargs))
        return str(blob)

    monkeypatch.setattr(download, "hub_downloader", lambda: hf_hub_download)
    state = download.cached_state_dict(_HUB_ORIGIN, cache_name="resnetblur50.bt_in1k")
    np.testing.assert_array_equal(state["fc.weight"], _TINY["fc.weight"])
    ((repo_id, filename, kwargs),) = calls
    assert (repo_id, filename, kwargs["revision"]) == (_REPO, "model.safetensors", "main")
    assert kwargs["library_name"] == "keras-blurpool"
    # Our own cache as before: the second load asks nobody.
    assert _cache_files() == ["resnetblur50.bt_in1k.npz", "resnetblur50.bt_in1k.npz.sha256"]
    download.cached_state_dict(_HUB_ORIGIN, cache_name="resnetblur50.bt_in1k")
    assert len(calls) == 1 and blob.exists()  # the hub's cache is the hub's


def test_hub_fetch_is_verified_as_any_other(tmp_path, monkeypatch):
    blob = tmp_path / "model.safetensors"
    blob.write_bytes(_TINY_BYTES[:-4])  # truncated
    monkeypatch.setattr(download, "hub_downloader", lambda: lambda *a, **k: str(blob))
    with pytest.raises(ValueError, match="corrupted: its SHA-256 .* the registry says 0000"):
        download.cached_state_dict(_HUB_ORIGIN, cache_name="x", sha256="0" * 64)
    with pytest.raises(ValueError, match=f"fetched from {_HUB_ORIGIN} cannot be read"):
        download.cached_state_dict(_HUB_ORIGIN, cache_name="x")
    assert _cache_files() == []


def test_hub_errors_name_the_file_and_the_offline_route(monkeypatch):
    def hf_hub_download(*args, **kwargs):
        raise FileNotFoundError("offline mode is enabled and the file is not cached")

    monkeypatch.setattr(download, "hub_downloader", lambda: hf_hub_download)
    with pytest.raises(ValueError) as info:
        download.cached_state_dict(_HUB_ORIGIN, cache_name="resnetblur50.bt_in1k")
    message = str(info.value)
    assert f"{_REPO}/model.safetensors ({_HUB_ORIGIN}) through huggingface_hub" in message
    assert "FileNotFoundError: offline mode" in message
    assert f"hf download {_REPO} model.safetensors" in message
    assert "HF_HUB_OFFLINE=1" in message and "`weights=`" in message
    assert _cache_files() == []


# --- huggingface_hub itself (skipped without it) -----------------------------


def _hub_layout(cache: Path, data: bytes) -> Path:
    """The Hugging Face cache's layout of `timm/resnetblur50.bt_in1k`,
    as huggingface_hub writes it (`refs/main` names the snapshot)."""
    repo = cache / "models--timm--resnetblur50.bt_in1k"
    blob = repo / "blobs" / hashlib.sha256(data).hexdigest()
    snapshot = repo / "snapshots" / _COMMIT / "model.safetensors"
    for path in (blob, snapshot, repo / "refs" / "main"):
        path.parent.mkdir(parents=True, exist_ok=True)
    blob.write_bytes(data)
    snapshot.symlink_to(os.path.relpath(blob, snapshot.parent))
    (repo / "refs" / "main").write_text(_COMMIT)
    return snapshot


def test_hand_laid_hub_cache_loads_offline(tmp_path, monkeypatch):
    hf_hub_download = _hub_or_skip()
    cache = tmp_path / "hf_cache"
    _hub_layout(cache, _TINY_BYTES)
    offline = functools.partial(hf_hub_download, cache_dir=cache, local_files_only=True)
    monkeypatch.setattr(download, "hub_downloader", lambda: offline)
    state = download.cached_state_dict(_HUB_ORIGIN, cache_name="resnetblur50.bt_in1k")
    np.testing.assert_array_equal(state["fc.weight"], _TINY["fc.weight"])


def test_offline_and_not_in_the_hub_cache_is_a_clear_error(tmp_path, monkeypatch):
    hf_hub_download = _hub_or_skip()
    offline = functools.partial(
        hf_hub_download, cache_dir=tmp_path / "empty", local_files_only=True
    )
    monkeypatch.setattr(download, "hub_downloader", lambda: offline)
    with pytest.raises(ValueError, match=f"{_REPO}/model.safetensors .*through "
                       f"huggingface_hub: .*hf download {_REPO}"):
        applications.ResNetBlur50(weights="imagenet")
    assert _cache_files() == []


def _random_timm_state_dict(model) -> dict:
    """Random values for every weighted layer, under timm's names."""
    rng = np.random.default_rng(0)
    names = timm_resnet._torch_names(model)
    state = {}
    for layer in model.layers:
        if layer.name not in names:
            continue
        layer.set_weights(
            [rng.standard_normal(w.shape).astype("float32") for w in layer.get_weights()]
        )
        if isinstance(layer, keras.layers.BatchNormalization):
            # A variance is >= 0: negative ones are refused when loading.
            layer.moving_variance.assign(np.abs(layer.moving_variance))
        prefix = names[layer.name]
        if isinstance(layer, keras.layers.BatchNormalization):
            gamma, beta, mean, var = layer.get_weights()
            state.update({
                f"{prefix}.weight": gamma, f"{prefix}.bias": beta,
                f"{prefix}.running_mean": mean, f"{prefix}.running_var": var,
            })
            continue
        kernel, *bias = layer.get_weights()
        is_conv = isinstance(layer, keras.layers.Conv2D)
        state[f"{prefix}.weight"] = kernel.transpose(3, 2, 0, 1) if is_conv else kernel.T
        if bias:
            state[f"{prefix}.bias"] = bias[0]
    return state


@pytest.fixture(scope="module")
def resnetblur50_weights():
    """A random `resnetblur50` in timm's `model.safetensors` form, and the
    Keras model that holds the same values."""
    _hub_or_skip()  # before building anything
    model = applications.ResNetBlur50(weights=None)
    data = _safetensors(_random_timm_state_dict(model))
    return model, data


def _assert_same_weights(model, expected):
    names = timm_resnet._torch_names(expected)
    for name in names:
        for got, want in zip(model.get_layer(name).get_weights(),
                             expected.get_layer(name).get_weights()):
            np.testing.assert_array_equal(got, want, err_msg=name)


def test_resnetblur50_through_the_hub_then_offline(
    resnetblur50_weights, server, tmp_path, monkeypatch
):
    """huggingface_hub fetches from a mirror (here 127.0.0.1) with the
    token into its cache; then, server gone and our cache empty, the
    builder loads from that cache alone."""
    hf_hub_download = _hub_or_skip()
    expected, data = resnetblur50_weights
    server.serve(f"/{_REPO}/resolve/main/model.safetensors", data)
    cache = tmp_path / "hf_cache"
    monkeypatch.setenv("HF_TOKEN", "hf_test_token")
    monkeypatch.setenv("HF_HOME", str(tmp_path / "hf_home"))
    online = functools.partial(hf_hub_download, endpoint=server.url, cache_dir=cache)
    monkeypatch.setattr(download, "hub_downloader", lambda: online)

    model = applications.ResNetBlur50(weights="imagenet")
    _assert_same_weights(model, expected)
    assert server.gets() == 1
    assert all(headers.get("authorization") == "Bearer hf_test_token"
               or headers.get("Authorization") == "Bearer hf_test_token"
               for _, _, headers in server.requests)
    repo = cache / "models--timm--resnetblur50.bt_in1k"
    assert (repo / "refs" / "main").read_text() == _COMMIT
    assert (repo / "snapshots" / _COMMIT / "model.safetensors").read_bytes() == data

    server.close()
    monkeypatch.setenv("KERAS_HOME", str(tmp_path / "empty_keras_home"))
    offline = functools.partial(hf_hub_download, cache_dir=cache, local_files_only=True)
    monkeypatch.setattr(download, "hub_downloader", lambda: offline)
    again = applications.ResNetBlur50(weights="bt_in1k", include_top=False)
    _assert_same_weights(again, keras.Model(expected.input, expected.get_layer(
        "conv5_block3_out").output))


_SCRIPT = """
import json, urllib.request

def refuse(*args, **kwargs):
    raise AssertionError("urllib was used")

urllib.request.urlopen = refuse
from keras_blurpool.applications import pretrained
from keras_blurpool.weights import download

# The registry's own origin of resnetblur50; the file is a stand-in (it
# does not load into the network), so no `check`.
released = pretrained.imagenet_file("resnetblur50")
state = download.cached_state_dict(released.origin, cache_name=released.cache_name)
print("RESULT " + json.dumps({k: v.tolist() for k, v in state.items()}))
"""


def _fresh_process(env_changes: dict):
    env = dict(os.environ)
    for name in ("HF_HUB_OFFLINE", "TRANSFORMERS_OFFLINE", "HF_ENDPOINT"):
        env.pop(name, None)
    env.update(env_changes, KERAS_BACKEND="numpy",
               PYTHONPATH=os.pathsep.join([str(_ROOT), env.get("PYTHONPATH", "")]),
               HF_HUB_DISABLE_TELEMETRY="1")
    run = subprocess.run(
        [sys.executable, "-c", textwrap.dedent(_SCRIPT)], cwd=_ROOT, env=env,
        capture_output=True, text=True, timeout=120,
    )
    assert run.returncode == 0, run.stdout + run.stderr[-3000:]
    return json.loads(run.stdout.split("RESULT ")[-1])


def test_hf_environment_variables_in_a_fresh_process(server, tmp_path):
    """HF_ENDPOINT, HF_TOKEN, HF_HUB_CACHE and HF_HUB_OFFLINE as a user
    sets them, before Python starts."""
    _hub_or_skip()
    server.serve(f"/{_REPO}/resolve/main/model.safetensors", _TINY_BYTES)
    hub = {"HF_HUB_CACHE": str(tmp_path / "hf_cache"), "HF_HOME": str(tmp_path / "hf_home"),
           "HF_ENDPOINT": server.url}
    state = _fresh_process(
        {**hub, "HF_TOKEN": "hf_env_token", "KERAS_HOME": str(tmp_path / "k1")}
    )
    assert state == {"fc.weight": _TINY["fc.weight"].tolist()}
    ((_, path, headers),) = [r for r in server.requests if r[0] == "GET"]
    assert path == f"/{_REPO}/resolve/main/model.safetensors"
    assert {k.lower(): v for k, v in headers.items()}["authorization"] == "Bearer hf_env_token"
    server.close()  # HF_ENDPOINT now points at nothing
    state = _fresh_process({**hub, "HF_HUB_OFFLINE": "1", "KERAS_HOME": str(tmp_path / "k2")})
    assert state == {"fc.weight": _TINY["fc.weight"].tolist()}


def test_registry_hub_origin_is_what_the_hub_path_recognises():
    spec = registry.get("resnetblur50")
    assert spec.hub_origin("bt_in1k") == _HUB_ORIGIN
    assert download._hub_file(_HUB_ORIGIN) == (_REPO, "main", "model.safetensors")
    assert download._hub_file("https://huggingface.co.evil/timm/x/resolve/main/m") is None
    assert download._hub_file("file:///timm/x/resolve/main/model.safetensors") is None


# --- a download stops at its bound -------------------------------------------

_GUARD_BYTES = 64 << 20  # the tests' own stop, far above any bound they set


def _count_reads(monkeypatch) -> list:
    """Counts the bytes the download reads; past `_GUARD_BYTES` the test
    itself stops it (an unbounded download would otherwise fill the disk)."""
    inner = urllib.request.urlopen
    read = [0]

    class Counted:
        def __init__(self, response):
            self._response = response
            self.headers = response.headers

        def read(self, size=-1):
            chunk = self._response.read(size)
            read[0] += len(chunk)
            assert read[0] <= _GUARD_BYTES, "the download went on past 64 MiB"
            return chunk

        def __enter__(self):
            return self

        def __exit__(self, *exc):
            self._response.close()

    monkeypatch.setattr(
        urllib.request, "urlopen", lambda url, *a, **k: Counted(inner(url, *a, **k))
    )
    return read


@pytest.mark.skipif(not os.path.exists("/dev/zero"), reason="needs /dev/zero")
def test_file_origin_that_never_ends_stops_at_once(tmp_path, monkeypatch):
    """A symlink to /dev/zero: urllib's Content-Length is its size, 0."""
    origin = tmp_path / "zero-0123abcd.pth"
    origin.symlink_to("/dev/zero")
    read = _count_reads(monkeypatch)
    start = time.monotonic()
    with pytest.raises(ValueError, match=r"zero-0123abcd\.pth: it sent more than the 0 "
                       "bytes its Content-Length announced"):
        download.cached_state_dict(origin.as_uri())
    assert time.monotonic() - start < 10  # generous: it reads one byte
    assert read[0] <= 1
    assert _cache_files() == []


def test_body_without_content_length_stops_at_the_bound(server, monkeypatch):
    url = server.serve("/" + _named(_TINY_BYTES), _TINY_BYTES)
    server.script = ["endless"]
    monkeypatch.setenv(_MAX_MB, "1")
    read = _count_reads(monkeypatch)
    with pytest.raises(ValueError) as info:
        download.cached_state_dict(url)
    message = str(info.value)
    assert f"{url}: it sent more than the download bound of 1 MB" in message
    assert "Set KERAS_BLURPOOL_DOWNLOAD_MAX_MB (megabytes; default 1500)" in message
    assert read[0] == 1_000_001  # the bound, and one byte to know
    assert server.gets() == 1  # not retried
    assert _cache_files() == []


def test_content_length_above_the_bound_is_refused_before_reading(server, monkeypatch):
    url = server.serve("/" + _named(_LARGE_BYTES, "large"), _LARGE_BYTES)
    monkeypatch.setenv(_MAX_MB, "0.5")
    read = _count_reads(monkeypatch)
    match = (f"{url}: its Content-Length is {len(_LARGE_BYTES)} bytes, more than the "
             r"download bound of 0\.5 MB\. .*KERAS_BLURPOOL_DOWNLOAD_MAX_MB")
    with pytest.raises(ValueError, match=match):
        download.cached_state_dict(url)
    assert read[0] == 0 and server.gets() == 1
    assert _cache_files() == []
    # The bound is the variable's: raised, the same file loads.
    monkeypatch.setenv(_MAX_MB, "4")
    np.testing.assert_array_equal(download.cached_state_dict(url)["w"], _LARGE["w"])


def test_file_origin_above_the_bound_is_refused_before_reading(tmp_path, monkeypatch):
    origin = tmp_path / _named(_TINY_BYTES)
    origin.write_bytes(_TINY_BYTES)
    monkeypatch.setenv(_MAX_MB, "0.0001")  # 100 bytes
    read = _count_reads(monkeypatch)
    with pytest.raises(ValueError, match=f"its Content-Length is {len(_TINY_BYTES)} bytes"):
        download.cached_state_dict(origin.as_uri())
    assert read[0] == 0 and _cache_files() == []


def test_file_from_huggingface_hub_is_bounded_too(tmp_path, monkeypatch):
    blob = tmp_path / "model.safetensors"
    blob.write_bytes(_LARGE_BYTES)
    monkeypatch.setattr(download, "hub_downloader", lambda: lambda *a, **k: str(blob))
    monkeypatch.setenv(_MAX_MB, "1")
    with pytest.raises(ValueError, match=f"huggingface_hub fetched for {_HUB_ORIGIN} "
                       rf"\({blob}\) is {len(_LARGE_BYTES)} bytes, beyond the "
                       r"download bound of 1 MB\. Set KERAS_BLURPOOL_DOWNLOAD_MAX_MB"):
        download.cached_state_dict(_HUB_ORIGIN, cache_name="resnetblur50.bt_in1k")
    assert _cache_files() == []


@pytest.mark.parametrize("value", ["abc", "0", "-1", "inf", "nan", "1e-9"])
def test_bad_bound_variable(server, monkeypatch, value):
    url = server.serve("/" + _named(_TINY_BYTES), _TINY_BYTES)
    monkeypatch.setenv(_MAX_MB, value)
    match = f"KERAS_BLURPOOL_DOWNLOAD_MAX_MB must be a number of megabytes > 0.*{value!r}"
    with pytest.raises(ValueError, match=match):
        download.cached_state_dict(url)
    assert server.requests == [] and _cache_files() == []


def test_default_bound(monkeypatch):
    assert download.download_max_bytes() == 1_500_000_000
    monkeypatch.setenv(_MAX_MB, "2.5")
    assert download.download_max_bytes() == 2_500_000


# --- killed downloads: the next call removes what they left -------------------

_DOWNLOAD_SCRIPT = """
import sys
from keras_blurpool.weights import download

download.cached_state_dict(sys.argv[1])
print("DOWNLOADED")
"""


def _download_in_a_process(url: str):
    env = dict(os.environ, KERAS_BACKEND="numpy",
               PYTHONPATH=os.pathsep.join([str(_ROOT), os.environ.get("PYTHONPATH", "")]))
    return subprocess.Popen(
        [sys.executable, "-c", textwrap.dedent(_DOWNLOAD_SCRIPT), url], cwd=_ROOT, env=env,
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
        # The signals' default actions (terminate), whatever this process
        # inherited: under `nohup` SIGHUP is ignored and the child would
        # finish its download instead of dying.
        preexec_fn=_default_signals if sys.platform != "win32" else None,
    )


def _default_signals() -> None:
    import signal

    for name in ("SIGHUP", "SIGTERM"):
        signal.signal(getattr(signal, name), signal.SIG_DFL)


def _partial_files() -> set:
    return {name for name in _cache_files() if ".part" in name}


def _wait_for_a_new_partial_file(process, known=frozenset()) -> str:
    """The partial file the process is writing, once it holds bytes."""
    directory = download.cache_dir()
    deadline = time.monotonic() + 180
    while time.monotonic() < deadline:
        for name in _partial_files() - set(known):
            if os.path.getsize(os.path.join(directory, name)) > 0:
                return name
        if process.poll() is not None:
            out, err = process.communicate()
            pytest.fail(f"the download ended early:\n{out}\n{err[-3000:]}")
        time.sleep(0.05)
    process.kill()
    pytest.fail("no partial file appeared")


@pytest.mark.skipif(sys.platform == "win32", reason="POSIX signals")
@pytest.mark.parametrize("signal_name", ["SIGKILL", "SIGTERM", "SIGHUP"])
def test_partial_file_of_a_killed_download_is_removed_by_the_next_call(server, signal_name):
    import signal

    url = server.serve("/" + _named(_LARGE_BYTES, "large"), _LARGE_BYTES)
    server.script = ["slow"]  # half the file, then nothing until released
    process = _download_in_a_process(url)
    partial = _wait_for_a_new_partial_file(process)
    number = getattr(signal, signal_name)
    process.send_signal(number)
    assert process.wait(timeout=60) == -number
    process.communicate()
    assert _partial_files() == {partial}  # what the killed process left

    server.release.set()
    state = download.cached_state_dict(url)
    np.testing.assert_array_equal(state["w"], _LARGE["w"])
    stem = _named(_LARGE_BYTES, "large").split(".")[0]
    assert _cache_files() == [f"{stem}.npz", f"{stem}.npz.sha256"]


@pytest.mark.skipif(sys.platform == "win32", reason="POSIX signals")
def test_a_live_download_keeps_its_partial_file(server):
    """Another process still downloading holds its partial file: the next
    call removes only the stale one, and the live download completes."""
    stale_url = server.serve("/" + _named(_LARGE_BYTES, "stale"), _LARGE_BYTES)
    live_bytes = _safetensors({"w": _LARGE["w"][::-1]})
    live_url = server.serve("/" + _named(live_bytes, "live"), live_bytes)
    tiny_url = server.serve("/" + _named(_TINY_BYTES), _TINY_BYTES)
    server.script = ["slow", "slow"]

    killed = _download_in_a_process(stale_url)
    stale = _wait_for_a_new_partial_file(killed)
    killed.kill()
    killed.communicate(timeout=60)
    live = _download_in_a_process(live_url)
    live_partial = _wait_for_a_new_partial_file(live, known={stale})

    download.cached_state_dict(tiny_url)
    assert _partial_files() == {live_partial}

    server.release.set()
    out, err = live.communicate(timeout=180)
    assert live.returncode == 0 and "DOWNLOADED" in out, err[-3000:]
    assert _partial_files() == set()
    stems = [_named(data, stem).split(".")[0]
             for data, stem in ((live_bytes, "live"), (_TINY_BYTES, "tiny"))]
    assert _cache_files() == sorted(f"{s}.npz{x}" for s in stems for x in ("", ".sha256"))


def test_remove_stale_takes_only_unlocked_partial_files(tmp_path):
    from keras_blurpool.weights import partial_files

    directory = tmp_path / "cache"
    directory.mkdir()
    kept = ["x.npz", "x.npz.sha256", ".hidden", ".x.npz.lock", "x.part.npz"]
    stale = [".x-abcd1234.part.pth", ".x-abcd1234.part.npz", ".x-1.part.sha256",
             ".x.npz.abcd1234.partial.npz", ".x.npz.sha256.abcd1234.partial"]
    for name in kept + stale:
        (directory / name).write_bytes(b"data")
    (directory / ".link-abcd1234.part.pth").symlink_to(directory / "x.npz")
    with partial_files.part_file(str(directory), "live", ".pth") as live:
        Path(live.path).write_bytes(b"still coming")
        assert partial_files.remove_stale(str(directory)) == sorted(stale)
        assert Path(live.path).read_bytes() == b"still coming"
        assert sorted(os.listdir(directory)) == sorted(
            kept + [".link-abcd1234.part.pth", os.path.basename(live.path)])
    assert not os.path.lexists(live.path)  # deleted on exit, not renamed
    with partial_files.part_file(str(directory), "x", ".npz") as partial:
        Path(partial.path).write_bytes(b"new")
        partial.replace(str(directory / "x.npz"))
    assert (directory / "x.npz").read_bytes() == b"new"
    assert oct(os.stat(directory / "x.npz").st_mode & 0o777) == "0o600"


@pytest.mark.skipif(sys.platform == "win32", reason="flock")
def test_partial_file_deleted_before_its_lock_is_made_again(tmp_path, monkeypatch):
    """A cleaner may delete a new file between its creation and its lock:
    the writer then locks a file that no path names, sees it, and makes
    another."""
    import fcntl

    from keras_blurpool.weights import partial_files

    created = []
    real_mkstemp = partial_files.tempfile.mkstemp

    def mkstemp(**kwargs):
        descriptor, path = real_mkstemp(**kwargs)
        created.append(path)
        if len(created) == 1:
            os.remove(path)  # the cleaner, in between
        return descriptor, path

    monkeypatch.setattr(partial_files.tempfile, "mkstemp", mkstemp)
    with partial_files.part_file(str(tmp_path), "x", ".pth") as part:
        assert part.path == created[1] and os.path.isfile(part.path)
        probe = os.open(part.path, os.O_RDONLY)
        try:
            with pytest.raises(BlockingIOError):
                fcntl.flock(probe, fcntl.LOCK_EX | fcntl.LOCK_NB)
        finally:
            os.close(probe)
    assert os.listdir(tmp_path) == []


# --- the cache keeps only what loads ------------------------------------------

_TAG = "test_in1k"


@pytest.fixture(scope="module")
def resnetblur18_weights():
    """A random `resnetblur18` in timm's `model.safetensors` form, and the
    Keras model that holds the same values."""
    model = applications.ResNetBlur18(weights=None)
    return model, _safetensors(_random_timm_state_dict(model))


@pytest.fixture
def hub_folder(tmp_path, monkeypatch):
    """`resnetblur18` released as tag `_TAG` on a `file://` Hub, fetched
    with urllib; returns the file's path there."""
    spec = registry.get("resnetblur18")
    monkeypatch.setitem(spec.hub_weights, _TAG, registry.HubWeights(registry.Preprocessing()))
    hub = tmp_path / "hub"
    monkeypatch.setattr(registry, "HUB_BASE_URL", hub.as_uri() + "/")
    monkeypatch.setattr(download, "hub_downloader", lambda: None)
    target = hub / f"resnetblur18.{_TAG}" / "resolve" / "main" / "model.safetensors"
    target.parent.mkdir(parents=True)
    return target


def test_a_file_that_does_not_load_is_not_cached(resnetblur18_weights, hub_folder):
    expected, data = resnetblur18_weights
    hub_folder.write_bytes(_TINY_BYTES)  # parses, does not fit
    with pytest.raises(ValueError, match=f"(?s)weights fetched from {hub_folder.as_uri()} do "
                       r"not load, so they were not cached: .*missing key 'conv1\.weight'"):
        applications.ResNetBlur18(weights=_TAG)
    assert _cache_files() == []

    hub_folder.write_bytes(data)  # the origin is fixed: the next call loads it
    _assert_same_weights(applications.ResNetBlur18(weights=_TAG), expected)
    assert _cache_files() == [f"resnetblur18.{_TAG}.npz", f"resnetblur18.{_TAG}.npz.sha256"]


def test_a_headless_model_checks_the_classifier_before_caching(
    resnetblur18_weights, hub_folder
):
    """The cache serves every head configuration: loaded for a model
    without the classifier, the file must fit the full network too."""
    expected, data = resnetblur18_weights
    state = _random_timm_state_dict(expected)
    state["fc.weight"] = state["fc.weight"][:10]  # 10 classes, not 1000
    hub_folder.write_bytes(_safetensors(state))
    with pytest.raises(ValueError, match=r"(?s)not cached: .*fc\.weight"):
        applications.ResNetBlur18(weights=_TAG, include_top=False)
    assert _cache_files() == []

    hub_folder.write_bytes(data)
    headless = applications.ResNetBlur18(weights=_TAG, include_top=False)
    assert _cache_files() == [f"resnetblur18.{_TAG}.npz", f"resnetblur18.{_TAG}.npz.sha256"]
    hub_folder.unlink()  # offline: the cache serves the full network too
    _assert_same_weights(applications.ResNetBlur18(weights=_TAG), expected)
    np.testing.assert_array_equal(headless.get_layer("stem_conv").get_weights()[0],
                                  expected.get_layer("stem_conv").get_weights()[0])


def test_a_cached_file_that_does_not_load_names_itself(resnetblur18_weights, hub_folder):
    """A cache entry that does not fit (as an earlier version could write):
    the error names the file and how to delete it; deleted, the next call
    fetches again."""
    expected, data = resnetblur18_weights
    hub_folder.write_bytes(data)
    directory = Path(download.cache_dir())
    cached = directory / f"resnetblur18.{_TAG}.npz"
    with open(cached, "wb") as f:
        np.savez(f, **_TINY)
    os.chmod(cached, 0o600)
    digest = Path(str(cached) + ".sha256")
    digest.write_text(hashlib.sha256(cached.read_bytes()).hexdigest() + "\n")
    os.chmod(digest, 0o600)
    with pytest.raises(ValueError) as info:
        applications.ResNetBlur18(weights=_TAG)
    message = str(info.value)
    assert f"The cached weights {cached} (fetched from {hub_folder.as_uri()}) do not " \
           "load: The state_dict does not fit" in message
    assert f"Delete {cached} and {digest} (rm {cached} {digest})" in message
    cached.unlink()
    digest.unlink()
    _assert_same_weights(applications.ResNetBlur18(weights=_TAG), expected)


def test_imagenet_state_dict_checks_against_the_released_network(hub_folder):
    hub_folder.write_bytes(_TINY_BYTES)
    with pytest.raises(ValueError, match="not cached: The state_dict does not fit model"):
        applications.imagenet_state_dict("resnetblur18", tag=_TAG)
    assert _cache_files() == []

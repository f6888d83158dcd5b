"""Every code block of README.md and docs/*.md runs as written.

Each ```python block is one test: the blocks of a file run in order in one
namespace (a later block may use what an earlier one defined), in a
temporary working directory of the file's own. Each ```bash block runs in
`bash -e` in that directory, with the repository on PYTHONPATH and this
Python's `bin/` first on PATH (its `python`, `keras-blurpool-convert`).
Blocks in other languages (```text output) are not run.

HTML comments right before a block (GitHub does not render them) say how
it runs:

    <!-- docs-test: skip (why) -->        not run; pytest reports the reason
    <!-- docs-test: fixtures a, b -->     the named fixtures below first

Fixtures stand in for what a reader's machine has and a test must not
download. Nothing is downloaded:

- `imagenet`: `weights="imagenet"` of ResNet18 (filter sizes 3 and 4) and
  ResNet50 (filter size 4) served from `file://` origins, checkpoints of
  `antialiased_cnns` networks with random weights (needs torch), and a
  private `KERAS_HOME` for the cache;
- `keras-imagenet`: `keras.applications.MobileNetV2(weights="imagenet")`
  reads a weights file with random values from a private Keras home;
- a file name of `FILES` (`my_resnet50.pth`, ...): that file, in the
  block's working directory.

A block that imports torch or antialiased_cnns where they are not
installed is skipped, saying so; so is a block whose fixture needs them.
A Python block skipped or failed at run time skips or fails the later
blocks of its file, which may build on it. The Keras global state a block may set
(dtype policy, image data format) is reset after each file.

A collector of our own rather than pytest-markdown-docs: the skip reasons
and fixtures live in comments GitHub hides, shell blocks run too, and no
test dependency is added.
"""

from __future__ import annotations

import dataclasses
import functools
import hashlib
import os
import re
import shutil
import subprocess
import sys
import textwrap
from pathlib import Path

import keras
import pytest

REPO = Path(__file__).resolve().parents[1]
DOCS = [REPO / "README.md", *sorted((REPO / "docs").glob("*.md"))]
RUN_LANGUAGES = ("python", "bash")

_FENCE = re.compile(r"^(?P<indent> *)(?P<fence>```+)(?P<lang>[\w+-]*)\s*$")
_DIRECTIVE = re.compile(r"^\s*<!--\s*docs-test:\s*(?P<body>.*?)\s*-->\s*$")
_SKIP = re.compile(r"skip \((?P<reason>.+)\)")
_FIXTURES = re.compile(r"fixtures (?P<names>[\w.,\s-]+)")


@dataclasses.dataclass(frozen=True)
class Block:
    path: Path
    index: int  # among the file's run-language blocks
    line: int  # 1-based line of the opening fence
    lang: str
    source: str
    skip: str | None
    fixtures: tuple[str, ...]

    @property
    def id(self) -> str:
        return f"{self.path.relative_to(REPO)}:{self.line}"


class DirectiveError(ValueError):
    pass


def _directive(body: str, path: Path, line: int) -> tuple[str | None, tuple]:
    if match := _SKIP.fullmatch(body):
        return match["reason"], ()
    if match := _FIXTURES.fullmatch(body):
        names = tuple(n.strip() for n in match["names"].split(",") if n.strip())
        return None, names
    raise DirectiveError(
        f"{path.name}:{line}: unknown docs-test directive {body!r}; "
        "expected 'skip (why)' or 'fixtures name, ...'"
    )


def parse(path: Path) -> list[Block]:
    """The fenced code blocks of `path` in the languages that run."""
    lines = path.read_text(encoding="utf-8").split("\n")
    blocks: list[Block] = []
    pending: list[tuple[int, str]] = []  # directives since the last block
    i = 0
    while i < len(lines):
        text = lines[i]
        if match := _DIRECTIVE.match(text):
            pending.append((i + 1, match["body"]))
            i += 1
            continue
        fence = _FENCE.match(text)
        if fence is None:
            if text.strip() and pending:
                raise DirectiveError(
                    f"{path.name}:{pending[0][0]}: a docs-test directive must "
                    "come right before a code block"
                )
            i += 1
            continue
        indent, marker = len(fence["indent"]), fence["fence"]
        start = i
        i += 1
        body = []
        while i < len(lines) and lines[i].strip() != marker:
            body.append(lines[i][indent:] if lines[i][:indent].strip() == "" else lines[i])
            i += 1
        if i == len(lines):
            raise DirectiveError(f"{path.name}:{start + 1}: unclosed code block")
        i += 1
        lang = fence["lang"].lower()
        if lang not in RUN_LANGUAGES:
            if pending:
                raise DirectiveError(
                    f"{path.name}:{pending[0][0]}: docs-test directive before a "
                    f"{lang or 'plain'} block, which does not run"
                )
            continue
        skip, fixtures = None, ()
        for line, directive in pending:
            reason, names = _directive(directive, path, line)
            skip = reason or skip
            fixtures += names
        pending = []
        blocks.append(
            Block(path, len(blocks), start + 1, lang, "\n".join(body) + "\n", skip, fixtures)
        )
    if pending:
        raise DirectiveError(
            f"{path.name}:{pending[0][0]}: a docs-test directive must come "
            "right before a code block"
        )
    return blocks


def _all_blocks() -> list[Block]:
    return [block for path in DOCS for block in parse(path)]


# ---------------------------------------------------------------- fixtures


def _torch_reference():
    try:
        import antialiased_cnns
        import torch
    except ImportError as error:
        pytest.skip(f"the fixture's checkpoints are written with torch ({error})")
    return torch, antialiased_cnns


def _torch_checkpoint(arch: str, filter_size: int, path: Path) -> Path:
    """A reference checkpoint with random weights, `{"state_dict": ...}`."""
    torch, aa = _torch_reference()
    torch.manual_seed(0)
    model = getattr(aa, arch)(filter_size=filter_size)
    torch.save({"state_dict": model.state_dict()}, path, _use_new_zipfile_serialization=False)
    return path


def _released_name(directory: Path, stem: str, make) -> Path:
    """`make(tmp)`, renamed `stem-<sha256 prefix>.pth` as released files are."""
    tmp = make(directory / f"{stem}.tmp")
    digest = hashlib.sha256(tmp.read_bytes()).hexdigest()[:8]
    path = directory / f"{stem}-{digest}.pth"
    os.replace(tmp, path)
    return path


def _keras_baseline(builder: str, path: Path) -> Path:
    from keras_blurpool import applications

    getattr(applications, builder)(filter_size=None).save_weights(str(path))
    return path


# File name in a block's working directory -> how to write it.
FILES = {
    "my_resnet50.pth": functools.partial(_torch_checkpoint, "resnet50", 4),
    "resnet18_lpf4_finetune-8cc58f59.pth": functools.partial(
        _torch_checkpoint, "resnet18", 4
    ),
    "baseline.weights.h5": functools.partial(_keras_baseline, "ResNet18"),
}

# Modules a block may import that the `test` extra does not install: a
# block importing one that is absent is skipped, saying so.
OPTIONAL_MODULES = {
    "torch": "the `reference` extra",
    "antialiased_cnns": "the `reference` extra",
}

# (architecture, filter size) served as weights="imagenet".
IMAGENET = (("resnet18", 4), ("resnet18", 3), ("resnet50", 4))


class Fixtures:
    """Fixture files, each written once per session."""

    def __init__(self, root: Path):
        self.root = root
        self.keras_home = root / "keras_home"
        self.keras_home.mkdir(mode=0o700)
        self._made: dict[str, object] = {}

    def _once(self, key: str, make):
        if key not in self._made:
            self._made[key] = make()
        return self._made[key]

    def install(self, name: str, cwd: Path, monkeypatch) -> None:
        if name == "imagenet":
            self._imagenet(monkeypatch)
        elif name == "keras-imagenet":
            self._once("keras-imagenet", self._keras_mobilenet_v2)
        elif name in FILES:
            made = self._once(name, lambda: FILES[name](self._fresh_dir() / name))
            if not (cwd / name).exists():
                os.symlink(made, cwd / name)
        else:
            raise DirectiveError(f"unknown docs-test fixture {name!r}")

    def _fresh_dir(self) -> Path:
        directory = self.root / f"made{len(self._made)}"
        directory.mkdir()
        return directory

    def _imagenet(self, monkeypatch) -> None:
        from keras_blurpool.applications import registry

        def make():
            origins = {}
            directory = self._fresh_dir()
            for arch, filter_size in IMAGENET:
                stem = registry.get(arch).weights[filter_size].split("-")[0]
                path = _released_name(
                    directory,
                    stem,
                    functools.partial(_torch_checkpoint, arch, filter_size),
                )
                origins[arch, filter_size] = path.as_uri()
            return origins

        for (arch, filter_size), origin in self._once("imagenet", make).items():
            monkeypatch.setitem(registry.get(arch).weights, filter_size, origin)

    def _keras_mobilenet_v2(self) -> None:
        import h5py
        from keras.src.legacy.saving import legacy_h5_format

        model = keras.applications.MobileNetV2(weights=None)
        directory = self.keras_home / "models"
        directory.mkdir(exist_ok=True)
        name = "mobilenet_v2_weights_tf_dim_ordering_tf_kernels_1.0_224.h5"
        with h5py.File(directory / name, "w") as f:
            legacy_h5_format.save_weights_to_hdf5_group(f, model)


@pytest.fixture(scope="session")
def doc_fixtures(tmp_path_factory):
    return Fixtures(tmp_path_factory.mktemp("docs_fixtures"))


@pytest.fixture(scope="session")
def doc_dirs(tmp_path_factory):
    """One working directory per Markdown file."""
    cache = {}

    def get(path: Path) -> Path:
        if path not in cache:
            cache[path] = tmp_path_factory.mktemp(path.stem)
        return cache[path]

    return get


@pytest.fixture
def doc_environment(doc_fixtures, monkeypatch):
    """A private KERAS_HOME (ours and Keras's own cache); TensorFlow."""
    home = doc_fixtures.keras_home
    monkeypatch.setenv("KERAS_HOME", str(home))
    # keras.utils.get_file reads the Keras home Keras computed at import.
    monkeypatch.setattr("keras.src.backend.config._KERAS_DIR", str(home))
    return doc_fixtures


# ------------------------------------------------------------------ running


@dataclasses.dataclass
class _FileRun:
    namespace: dict
    done: int = 0  # blocks before this index have run (or were skipped)
    failed: Block | None = None  # the first block that failed
    skipped: tuple[Block, str] | None = None  # the first skipped at run time


_RUNS: dict[Path, _FileRun] = {}


def _reset_keras_state() -> None:
    keras.mixed_precision.set_global_policy("float32")
    keras.config.set_image_data_format("channels_last")
    keras.config.set_floatx("float32")
    keras.backend.clear_session()


@pytest.fixture(scope="module", autouse=True)
def _reset_after_docs():
    yield
    _RUNS.clear()
    _reset_keras_state()


def _exec_python(block: Block, namespace: dict) -> None:
    # Blank lines before the source: tracebacks give the Markdown file's lines.
    code = compile("\n" * block.line + block.source, str(block.path), "exec")
    exec(code, namespace)


def _run_bash(block: Block, cwd: Path) -> None:
    env = dict(os.environ)
    env["PYTHONPATH"] = str(REPO) + os.pathsep + env.get("PYTHONPATH", "")
    env["PATH"] = str(Path(sys.executable).parent) + os.pathsep + env["PATH"]
    env.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    completed = subprocess.run(
        ["bash", "-e", "-o", "pipefail", "-c", block.source],
        cwd=cwd, env=env, capture_output=True, text=True, timeout=300,
    )
    output = completed.stdout + completed.stderr
    print(output)
    assert completed.returncode == 0, f"exit status {completed.returncode}:\n{output}"


def _run(block: Block, cwd: Path, fixtures: Fixtures, monkeypatch) -> None:
    for name in block.fixtures:
        fixtures.install(name, cwd, monkeypatch)
    if block.lang == "bash":
        _run_bash(block, cwd)
        return
    try:
        _exec_python(block, _RUNS[block.path].namespace)
    except ModuleNotFoundError as error:
        if error.name in OPTIONAL_MODULES:
            pytest.skip(f"needs {error.name} ({OPTIONAL_MODULES[error.name]})")
        raise


BLOCKS = _all_blocks()


@pytest.mark.parametrize("block", BLOCKS, ids=[block.id for block in BLOCKS])
def test_doc_block(block, doc_environment, doc_dirs, monkeypatch):
    if block.skip:
        pytest.skip(f"{block.id}: {block.skip}")
    cwd = doc_dirs(block.path)
    monkeypatch.chdir(cwd)
    if block.path not in _RUNS:
        if _RUNS:  # another file's blocks ran: a clean Keras state
            _RUNS.clear()
            _reset_keras_state()
        _RUNS[block.path] = _FileRun({"__name__": "__main__"})
    run = _RUNS[block.path]
    # Run the earlier blocks this one may build on (when it is run alone).
    for earlier in parse(block.path)[run.done:block.index]:
        if not (run.failed or run.skipped or earlier.skip or earlier.lang != "python"):
            _run_recording(run, earlier, cwd, doc_environment, monkeypatch)
        run.done = earlier.index + 1
    if run.failed is not None:
        pytest.fail(f"block {run.failed.id} failed, and this block may build on it")
    if run.skipped is not None:
        earlier, reason = run.skipped
        pytest.skip(f"block {earlier.id}, which this one may build on, was skipped: {reason}")
    try:
        _run_recording(run, block, cwd, doc_environment, monkeypatch, reraise=True)
    finally:
        run.done = block.index + 1


def _run_recording(run, block, cwd, fixtures, monkeypatch, reraise=False):
    """Runs `block`, recording on `run` whether it failed or was skipped.

    Only Python blocks are recorded: a shell block runs in a process of
    its own and leaves the file's namespace as it was.
    """
    python = block.lang == "python"
    try:
        _run(block, cwd, fixtures, monkeypatch)
    except pytest.skip.Exception as skip:
        if python:
            run.skipped = (block, skip.msg)
        if reraise:
            pytest.skip(f"{block.id}: {skip.msg}")
    except BaseException:
        if python:
            run.failed = block
        if reraise:
            raise


def test_directives_are_understood():
    """Every directive is well-formed, before a block, with known fixtures."""
    for block in BLOCKS:
        for name in block.fixtures:
            assert name in FILES or name in ("imagenet", "keras-imagenet"), (
                f"{block.id}: unknown fixture {name!r}"
            )
    for path in DOCS:
        parse(path)  # raises DirectiveError


def test_parser_reads_directives_and_indented_blocks(tmp_path):
    doc = tmp_path / "doc.md"
    doc.write_text(
        textwrap.dedent(
            """\
            Text.

            <!-- docs-test: skip (needs ImageNet) -->
            ```python
            import imagenet
            ```

            - a list item:

              <!-- docs-test: fixtures imagenet, my_resnet50.pth -->
              ```bash
              python -m x \\
                --flag
              ```

            ```text
            output
            ```
            """
        )
    )
    first, second = parse(doc)
    assert (first.lang, first.skip, first.fixtures) == ("python", "needs ImageNet", ())
    assert first.source == "import imagenet\n"
    assert (second.index, second.line, second.skip) == (1, 11, None)
    assert second.fixtures == ("imagenet", "my_resnet50.pth")
    assert second.source == "python -m x \\\n  --flag\n"

    doc.write_text("<!-- docs-test: skip (why) -->\nText.\n")
    with pytest.raises(DirectiveError, match="right before a code block"):
        parse(doc)
    doc.write_text("<!-- docs-test: sometimes -->\n```python\npass\n```\n")
    with pytest.raises(DirectiveError, match="unknown docs-test directive"):
        parse(doc)


def test_bash_blocks_find_this_python():
    assert shutil.which("python", path=str(Path(sys.executable).parent)) or (
        shutil.which("python3", path=str(Path(sys.executable).parent))
    )

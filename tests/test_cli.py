"""The command lines answer `--help` without TensorFlow, from a clone.

`python -m recipes.train`, `python -m recipes.evaluate` and the console
scripts' functions (`keras_blurpool_cli.scripts`) build their parsers
from modules that import neither Keras nor TensorFlow. The installed
console scripts are tested from a wheel in tests/test_wheel.py.
"""

import ast
import json
import os
import pathlib
import subprocess
import sys
import textwrap

import pytest

from keras_blurpool.applications import registry
from keras_blurpool_cli import parsers
from recipes import _args
from recipes import evaluate
from recipes import models
from recipes import train

REPO = pathlib.Path(__file__).resolve().parent.parent

# Runs one command line with `--help` in a fresh interpreter, then says
# what it imported and how TF_CPP_MIN_LOG_LEVEL was left.
_PROBE = textwrap.dedent(
    """
    import contextlib, io, json, runpy, sys

    kind, target = sys.argv[1:3]
    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        try:
            if kind == "module":  # python -m TARGET --help
                sys.argv = [target, "--help"]
                runpy.run_module(target, run_name="__main__", alter_sys=True)
            else:  # the console script's function
                from keras_blurpool_cli import scripts
                getattr(scripts, target)(["--help"])
            code = None
        except SystemExit as error:
            code = error.code
    import os
    print(json.dumps({
        "code": code,
        "help": out.getvalue(),
        "tensorflow": "tensorflow" in sys.modules,
        "keras": "keras" in sys.modules,
        "level": os.environ.get("TF_CPP_MIN_LOG_LEVEL"),
    }))
    """
)


def _probe(kind, target, **env):
    environ = {k: v for k, v in os.environ.items() if k != "TF_CPP_MIN_LOG_LEVEL"}
    environ["PYTHONPATH"] = str(REPO) + os.pathsep + environ.get("PYTHONPATH", "")
    environ.update(env)
    result = subprocess.run(
        [sys.executable, "-c", _PROBE, kind, target], cwd=REPO, env=environ,
        capture_output=True, text=True, timeout=120,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    # Nothing on stderr: no TensorFlow log lines.
    assert result.stderr == ""
    return json.loads(result.stdout)


@pytest.mark.parametrize(
    "kind, target, usage",
    [
        ("module", "recipes.train", "usage: python -m recipes.train "),
        ("module", "recipes.evaluate", "usage: python -m recipes.evaluate "),
        ("function", "convert", "usage: keras-blurpool-convert "),
    ],
)
def test_help_imports_neither_tensorflow_nor_keras(kind, target, usage):
    got = _probe(kind, target)
    assert got["code"] == 0
    assert got["help"].startswith(usage)
    assert "--help" in got["help"]
    assert not got["tensorflow"] and not got["keras"]
    # Set for when TensorFlow is imported, after the parsing.
    assert got["level"] == "2"


def test_help_leaves_the_users_log_level():
    got = _probe("module", "recipes.train", TF_CPP_MIN_LOG_LEVEL="0")
    assert got["code"] == 0 and got["level"] == "0"


def test_console_script_program_names():
    assert train.build_parser("keras-blurpool-train").format_usage().startswith(
        "usage: keras-blurpool-train "
    )
    assert evaluate.parser("keras-blurpool-evaluate").format_usage().startswith(
        "usage: keras-blurpool-evaluate "
    )
    # From the clone, the -m command, as before.
    assert train.build_parser().prog == "python -m recipes.train"
    assert evaluate.parser().prog == "python -m recipes.evaluate"


def test_help_names_agree_with_the_registry():
    """The copies that `--help` shows without importing Keras."""
    assert parsers.ZOO_ARCHITECTURES == tuple(registry.ARCHITECTURES), (
        "keras_blurpool_cli.parsers.ZOO_ARCHITECTURES must list the "
        "registry's architectures, in its order"
    )
    assert parsers.INTERPOLATIONS == registry.INTERPOLATIONS
    assert train.ARCHITECTURE_NAMES == tuple(models.ARCHITECTURES)
    assert models.KERAS_PREFIX == _args.KERAS_PREFIX


def _options(parser):
    return {a.option_strings[-1]: a for a in parser._actions if a.option_strings}


def test_flags_of_both_command_lines_mean_the_same():
    """One meaning per name: the flags that train and evaluate share parse,
    bound and default alike (issue 30: --seed was bounded in one only)."""
    trains, evaluates = _options(train.build_parser()), _options(evaluate.parser())
    for flag in ("--seed", "--max-image-pixels", "--skip-bad-images",
                 "--image-size", "--strategy", "--data-dir", "--manual-dir"):
        assert trains[flag].type is evaluates[flag].type, flag
        assert trains[flag].default == evaluates[flag].default, flag
        assert trains[flag].choices == evaluates[flag].choices, flag
    assert trains["--seed"].type is _args.seed
    assert trains["--max-image-pixels"].default == 89_478_485  # Pillow's
    for help_text in (train.build_parser().format_help(),
                      evaluate.parser().format_help()):
        assert "--max-image-pixels" in help_text and "89478485" in help_text


def _imports(path):
    """`(line, module)` of each absolute import in `path`, lazy ones in
    functions included; `from a import b` gives `a` and `a.b`."""
    found = []
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            found += [(node.lineno, alias.name) for alias in node.names]
        elif isinstance(node, ast.ImportFrom) and node.level == 0:
            found.append((node.lineno, node.module))
            found += [(node.lineno, f"{node.module}.{a.name}") for a in node.names]
    return found


def _offenders(paths, forbidden):
    return sorted({
        f"{path.relative_to(REPO)}:{line}"
        for path in paths
        for line, module in _imports(path)
        if any(module == name or module.startswith(name + ".") for name in forbidden)
    })


def test_recipes_import_themselves_relatively():
    """So that the folder runs as `recipes` and, installed, as
    `keras_blurpool_recipes` (pyproject.toml's package-dir)."""
    offenders = _offenders(
        (REPO / "recipes").rglob("*.py"), ("recipes", "keras_blurpool_recipes")
    )
    assert not offenders, "import recipes modules relatively: " + ", ".join(offenders)


def test_no_import_cycle_through_the_console_scripts():
    """`scripts` imports what runs, which imports `parsers`, which imports
    nothing of the project; nothing imports `scripts`."""
    project = ("keras_blurpool", "keras_blurpool_cli", "keras_blurpool_recipes", "recipes")
    assert not _offenders([REPO / "keras_blurpool_cli" / "parsers.py"], project)
    sources = [*(REPO / "keras_blurpool").rglob("*.py"), *(REPO / "recipes").rglob("*.py")]
    assert not _offenders(sources, ("keras_blurpool_cli.scripts",))

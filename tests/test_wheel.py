"""The wheel, installed (not editable) and run away from the clone.

Builds the wheel of this checkout, installs it into a fresh virtual
environment that sees this interpreter's packages (TensorFlow, Keras: no
network), and from an empty directory runs the console scripts
`keras-blurpool-train`, `-evaluate` and `-convert`. One test, for one
build and one environment: about 11 s of CPU, most of it the training
run (25-40 s wall on 2 busy cores).
"""

import json
import os
import pathlib
import shutil
import site
import subprocess
import sys
import sysconfig
import textwrap
import zipfile

REPO = pathlib.Path(__file__).resolve().parent.parent
SCRIPTS = ("keras-blurpool-train", "keras-blurpool-evaluate", "keras-blurpool-convert")

# Run by the environment's Python: each console script's function with
# `--help`, then what that imported, and where the packages come from,
# without importing keras_blurpool (which imports Keras).
_PROBE = textwrap.dedent(
    """
    import contextlib, importlib.util, io, json, sys

    from keras_blurpool_cli import scripts

    codes = {}
    for name in ("train", "evaluate", "convert"):
        with contextlib.redirect_stdout(io.StringIO()):
            try:
                getattr(scripts, name)(["--help"])
            except SystemExit as error:
                codes[name] = error.code
    try:
        import recipes  # noqa: F401
        generic = True
    except ModuleNotFoundError:
        generic = False
    package = importlib.util.find_spec("keras_blurpool")
    print(json.dumps({
        "codes": codes,
        "tensorflow": "tensorflow" in sys.modules,
        "keras": "keras" in sys.modules,
        "recipes": generic,
        "keras_blurpool": package.submodule_search_locations[0],
        "recipes_package": (
            importlib.util.find_spec("keras_blurpool_recipes")
            .submodule_search_locations[0]
        ),
        "cli": scripts.__file__,
    }))
    """
)


def _run(command, *, cwd, env, timeout=300):
    result = subprocess.run(
        command, cwd=cwd, env=env, capture_output=True, text=True, timeout=timeout
    )
    assert result.returncode == 0, (
        f"{command}:\n{result.stdout[-3000:]}\n{result.stderr[-3000:]}"
    )
    return result


def _build_wheel(tmp_path):
    """`pip wheel` of a copy of the checkout (the build writes beside it)."""
    source = tmp_path / "source"
    source.mkdir()
    for name in ("pyproject.toml", "README.md", "LICENSE"):
        shutil.copy2(REPO / name, source / name)
    for name in ("keras_blurpool", "keras_blurpool_cli", "recipes"):
        shutil.copytree(
            REPO / name, source / name, ignore=shutil.ignore_patterns("__pycache__")
        )
    dist = tmp_path / "dist"
    _run(
        [sys.executable, "-m", "pip", "wheel", str(source), "--no-deps",
         "--no-build-isolation", "--no-index", "-q", "-w", str(dist)],
        cwd=tmp_path, env=os.environ,
    )
    (wheel,) = dist.glob("keras_blurpool-*.whl")
    return wheel


def _make_venv(path):
    """A venv seeing this interpreter's packages (it may be a venv itself,
    whose packages `--system-site-packages` alone would not show)."""
    subprocess.run(
        [sys.executable, "-m", "venv", "--without-pip", "--system-site-packages",
         str(path)],
        check=True, timeout=120,
    )
    python = path / "bin" / "python"
    purelib = subprocess.run(
        [str(python), "-c", "import sysconfig; print(sysconfig.get_path('purelib'))"],
        check=True, capture_output=True, text=True,
    ).stdout.strip()
    # Plain folders, after the venv's own: its .pth files (an editable
    # install of this checkout) are not run.
    parents = [*site.getsitepackages(), sysconfig.get_path("purelib")]
    if site.ENABLE_USER_SITE:
        parents.append(site.getusersitepackages())
    (pathlib.Path(purelib) / "_parent_environment.pth").write_text(
        "".join(f"{p}\n" for p in dict.fromkeys(parents) if p != purelib)
    )
    return python, pathlib.Path(purelib)


def test_wheel_installs_the_console_scripts_without_a_recipes_package(tmp_path):
    wheel = _build_wheel(tmp_path)
    with zipfile.ZipFile(wheel) as archive:
        names = set(archive.namelist())
        entry_points = next(
            archive.read(n).decode() for n in names if n.endswith("entry_points.txt")
        )
    assert {n.split("/")[0] for n in names} == {
        "keras_blurpool", "keras_blurpool_cli", "keras_blurpool_recipes",
        wheel.name.split("-py")[0] + ".dist-info",
    }
    # Every module and data file of both folders (pyproject.toml lists the
    # packages one by one).
    for folder, installed in (("keras_blurpool", "keras_blurpool"),
                              ("keras_blurpool_cli", "keras_blurpool_cli"),
                              ("recipes", "keras_blurpool_recipes")):
        for path in (REPO / folder).rglob("*"):
            if path.suffix in (".py", ".pyi", ".txt"):
                relative = path.relative_to(REPO / folder).as_posix()
                assert f"{installed}/{relative}" in names
    for script in SCRIPTS:
        assert f"{script} = keras_blurpool_cli.scripts:" in entry_points

    python, purelib = _make_venv(tmp_path / "venv")
    _run(
        [str(python), "-m", "pip", "install", "-q", "--no-deps", "--no-index",
         "--ignore-installed", str(wheel)],
        cwd=tmp_path, env=os.environ,
    )
    assert not (purelib / "recipes").exists()
    stubs = sorted(p.name for p in (purelib / "keras_blurpool" / "applications").iterdir())
    assert "imagenet_classes.txt" in stubs
    assert {p.name for p in (REPO / "keras_blurpool" / "applications").glob("*.pyi")} <= set(
        stubs
    )

    work = tmp_path / "work"  # not the clone: nothing of it is importable
    work.mkdir()
    env = {k: v for k, v in os.environ.items()
           if k not in ("PYTHONPATH", "TF_CPP_MIN_LOG_LEVEL", "KERAS_BACKEND")}
    bin_dir = python.parent
    for script in SCRIPTS:
        result = _run([str(bin_dir / script), "--help"], cwd=work, env=env)
        assert result.stdout.startswith(f"usage: {script} ")
        assert result.stderr == ""  # no TensorFlow log lines

    probe = json.loads(_run([str(python), "-c", _PROBE], cwd=work, env=env).stdout)
    assert probe["codes"] == {"train": 0, "evaluate": 0, "convert": 0}
    assert not probe["tensorflow"] and not probe["keras"]
    assert not probe["recipes"], "a top-level `recipes` is importable"
    for key in ("keras_blurpool", "recipes_package", "cli"):
        assert pathlib.Path(probe[key]).is_relative_to(purelib), (key, probe[key])

    # A real, tiny run: the installed recipes and their data.
    result = _run(
        [str(bin_dir / "keras-blurpool-train"), "--arch", "demo", "--epochs", "1",
         "--steps-per-epoch", "2", "--batch-size", "16", "--no-validation",
         "--out-dir", "run"],
        cwd=work, env=env,
    )
    assert "finished at step 2" in result.stdout
    assert (work / "run" / "final.keras").exists()
    # TF_CPP_MIN_LOG_LEVEL=2 was set before TensorFlow was imported.
    assert "This TensorFlow binary is optimized" not in result.stderr

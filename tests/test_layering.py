"""Data flows one way: layers <- weights <- applications <- evaluation.

A lower package never imports a higher one, not even lazily inside a
function (which is how an import cycle hides). Checked on the source.
"""

import ast
import pathlib

import pytest

ROOT = pathlib.Path(__file__).resolve().parent.parent / "keras_blurpool"
ORDER = ("layers", "weights", "applications", "evaluation")


def _imported_packages(path: pathlib.Path) -> set[str]:
    found = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.ImportFrom) and node.module:
            names = [node.module] + [f"{node.module}.{a.name}" for a in node.names]
        elif isinstance(node, ast.Import):
            names = [alias.name for alias in node.names]
        else:
            continue
        for name in names:
            parts = name.split(".")
            if parts[0] == "keras_blurpool" and len(parts) > 1:
                found.add(parts[1])
    return found


@pytest.mark.parametrize("package", ORDER)
def test_no_import_of_a_higher_package(package):
    higher = set(ORDER[ORDER.index(package) + 1 :]) | {"convert"}
    offenders = {
        str(path.relative_to(ROOT)): sorted(_imported_packages(path) & higher)
        for path in (ROOT / package).rglob("*.py")
    }
    offenders = {k: v for k, v in offenders.items() if v}
    assert not offenders, f"{package} imports higher packages: {offenders}"


def test_the_check_sees_imports():
    # Guards the guard: an import of a higher package is found.
    source = ROOT / "applications" / "blocks.py"
    assert "weights" in _imported_packages(source) or "layers" in _imported_packages(
        source
    )

"""The examples run and make their point."""

import runpy
from pathlib import Path

EXAMPLE = Path(__file__).parents[1] / "examples" / "quickstart.py"


def test_quickstart_shows_antialiasing_is_more_shift_stable(capsys):
    runpy.run_path(str(EXAMPLE), run_name="__main__")
    lines = capsys.readouterr().out.splitlines()
    baseline = float(lines[1].split()[-1])
    antialiased = float(lines[2].split()[-1])
    assert 0 < antialiased < baseline


ANTIALIAS_EXAMPLE = Path(__file__).parents[1] / "examples" / "antialias_keras_model.py"


def test_antialias_keras_model_example(capsys):
    runpy.run_path(str(ANTIALIAS_EXAMPLE), run_name="__main__")
    lines = capsys.readouterr().out.splitlines()
    assert lines[0].startswith("anti-aliased 4 layer(s): 4 conv")
    plain, antialiased = lines[2].split()[1].rstrip(","), lines[2].split()[3]
    assert plain == antialiased  # the same parameters
    before = float(lines[-2].split()[-1])
    after = float(lines[-1].split()[-1])
    assert 0 < after < before

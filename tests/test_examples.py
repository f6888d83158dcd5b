"""The README's first command: examples/quickstart.py runs and makes its point."""

import runpy
from pathlib import Path

EXAMPLE = Path(__file__).parents[1] / "examples" / "quickstart.py"


def test_quickstart_shows_antialiasing_is_more_shift_stable(capsys):
    runpy.run_path(str(EXAMPLE), run_name="__main__")
    lines = capsys.readouterr().out.splitlines()
    baseline = float(lines[1].split()[-1])
    antialiased = float(lines[2].split()[-1])
    assert 0 < antialiased < baseline

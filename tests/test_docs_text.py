"""Rules for the text of README.md and docs/*.md, and the package's overview.

- No path leaves the repository: every `../` path resolves, from its
  file's folder, to a file or folder inside it.
- Dated measurements live in docs/benchmarks.md only (one table per
  benchmark, with its date and machine); other pages link there.
- README names the current version and how to cite; `help(keras_blurpool)`
  names the main entry points.
"""

import re
from pathlib import Path

import pytest

import keras_blurpool

REPO = Path(__file__).resolve().parents[1]
DOCS = [REPO / "README.md", *sorted((REPO / "docs").glob("*.md"))]
BENCHMARKS = REPO / "docs" / "benchmarks.md"

_UP_PATH = re.compile(r"(?:\.\./)+[^\s)`'\"<>\]]*")
_DATE = re.compile(r"\b20\d\d-\d\d-\d\d\b")
_LINK = re.compile(r"\]\((?P<target>[^)\s]+)\)")
_HEADING = re.compile(r"^#+ (?P<title>.+)$", re.MULTILINE)


def _ids(paths):
    return [str(path.relative_to(REPO)) for path in paths]


def up_paths_outside(path: Path, root: Path = REPO) -> list[str]:
    """The `../` paths of a Markdown file that leave `root` or do not exist."""
    bad = []
    for match in _UP_PATH.finditer(path.read_text(encoding="utf-8")):
        target = (path.parent / match.group().split("#")[0]).resolve()
        if not (target.is_relative_to(root.resolve()) and target.exists()):
            bad.append(match.group())
    return bad


def dates(path: Path) -> list[str]:
    return _DATE.findall(path.read_text(encoding="utf-8"))


@pytest.mark.parametrize("path", DOCS, ids=_ids(DOCS))
def test_no_path_outside_the_repository(path):
    assert up_paths_outside(path) == [], (
        f"{path.name} names paths outside the repository (or missing)"
    )


@pytest.mark.parametrize(
    "path", [p for p in DOCS if p != BENCHMARKS], ids=_ids([p for p in DOCS if p != BENCHMARKS])
)
def test_dated_figures_only_in_benchmarks(path):
    assert dates(path) == [], (
        f"{path.name} quotes dated figures: put them in docs/benchmarks.md "
        "and link there"
    )


def test_benchmarks_date_every_table():
    """Each benchmark section of docs/benchmarks.md dates its figures."""
    text = BENCHMARKS.read_text(encoding="utf-8")
    sections = re.split(r"^## ", text, flags=re.MULTILINE)[1:]
    assert sections
    for section in sections:
        title = section.splitlines()[0]
        if "|---" in section:
            assert _DATE.search(section), f"benchmarks.md, {title!r}: a table without a date"


def test_the_rules_catch_what_they_forbid(tmp_path):
    doc = tmp_path / "docs" / "page.md"
    doc.parent.mkdir()
    doc.write_text(
        "See `../shared/reference/` and [x](../../elsewhere.md); "
        "measured 2026-12-01.\n"
    )
    assert up_paths_outside(doc, tmp_path) == ["../shared/reference/", "../../elsewhere.md"]
    assert dates(doc) == ["2026-12-01"]
    (tmp_path / "README.md").write_text("")
    inside = tmp_path / "docs" / "other.md"
    inside.write_text("[readme](../README.md#top)\n")
    assert up_paths_outside(inside, tmp_path) == []


def anchors(path: Path) -> set[str]:
    """GitHub's anchors of a Markdown file's headings."""
    text = re.sub(r"^```.*?^```", "", path.read_text(encoding="utf-8"), flags=re.S | re.M)
    return {
        re.sub(r"[^\w\- ]", "", match["title"].strip().lower()).replace(" ", "-")
        for match in _HEADING.finditer(text)
    }


def broken_links(path: Path) -> list[str]:
    """Links to files of the repository, or their headings, that do not exist."""
    bad = []
    for match in _LINK.finditer(path.read_text(encoding="utf-8")):
        target = match["target"]
        if re.match(r"[a-z]+:", target):
            continue  # https:, mailto:
        file, _, anchor = target.partition("#")
        linked = (path.parent / file).resolve() if file else path
        if not linked.exists() or (
            anchor and linked.suffix == ".md" and anchor not in anchors(linked)
        ):
            bad.append(target)
    return bad


@pytest.mark.parametrize("path", DOCS, ids=_ids(DOCS))
def test_links_resolve(path):
    assert broken_links(path) == []


def test_anchors_as_github_makes_them(tmp_path):
    doc = tmp_path / "doc.md"
    doc.write_text(
        "# Routes\n## The keras.MobileNetV2 comparison\n"
        "## timm's anti-aliased ResNets vs timm (torch CPU)\n"
        '## Planning the "same" route\n## antialias_model\n'
        "```\n# not a heading\n```\n[a](#routes) [b](#nowhere) [c](other.md)\n"
    )
    assert anchors(doc) == {
        "routes",
        "the-kerasmobilenetv2-comparison",
        "timms-anti-aliased-resnets-vs-timm-torch-cpu",
        "planning-the-same-route",
        "antialias_model",
    }
    assert broken_links(doc) == ["#nowhere", "other.md"]


def test_readme_names_the_version_and_the_citation():
    readme = (REPO / "README.md").read_text(encoding="utf-8")
    assert f"keras-blurpool {keras_blurpool.__version__}" in readme
    assert "## Citing" in readme
    assert "@inproceedings{zhang2019shiftinvar" in readme


def test_citation_file_cites_the_paper():
    yaml = pytest.importorskip("yaml")
    citation = yaml.safe_load((REPO / "CITATION.cff").read_text(encoding="utf-8"))
    assert citation["cff-version"] == "1.2.0"
    assert str(citation["version"]) == keras_blurpool.__version__
    paper = citation["preferred-citation"]
    assert paper["title"] == "Making Convolutional Networks Shift-Invariant Again"
    assert paper["authors"] == [{"family-names": "Zhang", "given-names": "Richard"}]
    assert paper["year"] == 2019


def test_changelog_has_this_version():
    changelog = (REPO / "CHANGELOG.md").read_text(encoding="utf-8")
    assert "## [Unreleased]" in changelog
    assert f"## [{keras_blurpool.__version__}]" in changelog


@pytest.mark.parametrize(
    "name",
    [
        "BlurPool2D",
        "MaxBlurPool2D",
        "APSPool2D",
        "applications",
        "weights=\"imagenet\"",
        "antialias_model",
        "load_torch_weights",
        "transfer_weights",
        "evaluation",
        "SyncBatchNormStatistics",
        "keras-blurpool-convert",
        "load_model",
    ],
)
def test_package_docstring_names_the_entry_points(name):
    assert name in keras_blurpool.__doc__

"""MkDocs hooks and a Griffe extension for the API reference site.

mkdocs.yml loads this file twice: as MkDocs hooks (`hooks:`) and as a
Griffe extension of mkdocstrings (`extensions:`).

The site's home page is README.md itself, so that the text has one
source: `on_files` adds it to the site as `index.md`. README links to the
guides as `docs/<page>.md`, a path relative to the repository root; the
home page sits in `docs/`, so those links lose the prefix. Any other
relative link of README's is left as it is, and `mkdocs build --strict`
fails on it if it names no page.

The package's docstrings title their doctests "Example:", as Keras
does: the title, a blank line, then the doctests unindented. Griffe's
Google parser knows only "Examples:" with indented contents, and would
render the doctests as quoted text; `DocstringLayout` rewrites such
sections (and puts a blank line before a list under a "Title:" line)
before the docstrings are parsed.
"""

from __future__ import annotations

import pathlib
import re

import griffe
from mkdocs.structure.files import File

ROOT = pathlib.Path(__file__).resolve().parent
README = ROOT / "README.md"
# Pages at the repository root that the site shows beside the home page.
ROOT_PAGES = ("CHANGELOG.md", "CONTRIBUTING.md")

# A section title alone on its line: "Example:", any other.
_EXAMPLE_TITLE = re.compile(r"([ \t]*)Example:[ \t]*")
_SECTION_TITLE = re.compile(r"[ \t]*[A-Z][A-Za-z ]*:[ \t]*")
_LIST_ITEM = re.compile(r"[ \t]*([-*+]|[0-9]+\.)[ \t]")

# `](docs/x.md...)` inline links and `[label]: docs/x.md` definitions.
_DOCS_LINK = re.compile(r"(\]\(\s*<?|^\s*\[[^\]]+\]:\s*<?)docs/", re.MULTILINE)


def readme_as_home_page(text: str) -> str:
    """README's Markdown with its `docs/` links made relative to `docs/`.

    >>> readme_as_home_page("see [zoo](docs/zoo.md#licences) and [x]: docs/a.md")
    'see [zoo](zoo.md#licences) and [x]: docs/a.md'
    >>> readme_as_home_page("[x]: docs/a.md")
    '[x]: a.md'
    """
    return _DOCS_LINK.sub(r"\1", text)


def on_files(files, config):
    if files.get_file_from_path("index.md") is not None:
        raise ValueError(
            "docs/index.md exists: the home page is README.md (mkdocs_hooks.py)"
        )
    files.append(
        File.generated(
            config,
            "index.md",
            content=readme_as_home_page(README.read_text(encoding="utf-8")),
        )
    )
    # The project pages README links to, from the repository root too.
    for name in ROOT_PAGES:
        files.append(
            File.generated(
                config,
                name,
                content=readme_as_home_page((ROOT / name).read_text(encoding="utf-8")),
            )
        )
    return files


def on_serve(server, config, builder):
    # `mkdocs serve` rebuilds when README.md changes too.
    server.watch(str(README))
    for name in ROOT_PAGES:
        server.watch(str(ROOT / name))
    return server


def retitle_examples(docstring: str) -> str:
    """`docstring` with its "Example:" sections as Griffe's "Examples:".

    The package writes, as Keras does, the title, a blank line and the
    doctests at the title's indentation; Griffe wants "Examples:" and the
    contents indented under it, with no blank line between. The section
    runs to the next section title at the title's indentation
    ("Raises:"), or to the end.

    >>> retitle_examples("Sums.\\n\\nExample:\\n\\n>>> 1 + 1\\n2\\n")
    'Sums.\\n\\nExamples:\\n    >>> 1 + 1\\n    2\\n'
    """
    lines = docstring.split("\n")
    out = []
    index = 0
    while index < len(lines):
        line = lines[index]
        index += 1
        title = _EXAMPLE_TITLE.fullmatch(line)
        if title is None:
            out.append(line)
            continue
        indent = title.group(1)
        out.append(f"{indent}Examples:")
        while index < len(lines) and not lines[index].strip():
            index += 1
        if index < len(lines) and lines[index][len(indent) :][:1].isspace():
            continue  # Google's own layout: the contents are indented already.
        while index < len(lines):
            line = lines[index]
            if _SECTION_TITLE.fullmatch(line) and line.startswith(indent) and not (
                line[len(indent)].isspace()
            ):
                break
            out.append(f"    {line}" if line.strip() else line)
            index += 1
    return "\n".join(out)


def separate_lists(docstring: str) -> str:
    """`docstring` with a blank line between a "Title:" line and a list.

    Python-Markdown starts a list only after a blank line; the module
    docstrings write "Reference:" and the list right under it.

    >>> separate_lists("Reference:\\n- [a](b)\\n- [c](d)")
    'Reference:\\n\\n- [a](b)\\n- [c](d)'
    """
    out = []
    fenced = False
    for line in docstring.split("\n"):
        if line.lstrip().startswith("```"):
            fenced = not fenced
        previous = out[-1] if out else ""
        if (
            not fenced
            and _LIST_ITEM.match(line)
            and previous.rstrip().endswith(":")
            and not _LIST_ITEM.match(previous)
        ):
            out.append("")
        out.append(line)
    return "\n".join(out)


class DocstringLayout(griffe.Extension):
    """Griffe extension: the package's docstring layout, as Griffe reads it.

    "Example:" sections parse as "Examples:" (`retitle_examples`) and a
    list right under a "Title:" line renders as a list (`separate_lists`).
    """

    def on_object(self, *, obj, loader, **kwargs):
        if obj.docstring is not None:
            obj.docstring.value = separate_lists(retitle_examples(obj.docstring.value))

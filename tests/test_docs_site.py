"""The API reference site: it builds in strict mode, documents every public
name (the builders from their `.pyi` stubs) and renders in a browser.

The site is built once for the module with `mkdocs build --strict` into a
temporary folder, or taken from `KERAS_BLURPOOL_SITE` (a folder a strict
build just wrote: `.ci/run` builds `site/` first and passes it). Skipped,
with the reason printed, where mkdocs-material or mkdocstrings-python is
not installed (`pip install -e ".[docs]"`); the browser checks load pages
in headless Chromium (`chromium --headless --dump-dom`) and are skipped,
with the reason, where no Chromium is on the PATH.
"""

import doctest
import html
import importlib.util
import inspect
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

import keras_blurpool
from keras_blurpool import callbacks
from keras_blurpool import weights
from keras_blurpool.applications import registry

ROOT = Path(__file__).resolve().parents[1]
CHROMIUMS = ("chromium", "chromium-browser", "google-chrome", "google-chrome-stable")
DEPRECATED_ALIASES = ("AntiAliasAvgPool2D", "AntiAliasing")


def _require_mkdocs():
    for module in ("mkdocs", "material", "mkdocstrings", "mkdocstrings_handlers.python"):
        try:
            found = importlib.util.find_spec(module)
        except ModuleNotFoundError:
            found = None
        if found is None:
            pytest.skip(f"{module} is not installed (pip install -e '.[docs]')")


@pytest.fixture(scope="module")
def site(tmp_path_factory):
    """The built site's folder."""
    given = os.environ.get("KERAS_BLURPOOL_SITE")
    if given:
        assert (Path(given) / "index.html").is_file(), f"no built site in {given}"
        return Path(given)
    _require_mkdocs()
    out = tmp_path_factory.mktemp("site")
    result = subprocess.run(
        [sys.executable, "-m", "mkdocs", "build", "--strict",
         "--config-file", str(ROOT / "mkdocs.yml"), "--site-dir", str(out)],
        cwd=ROOT, capture_output=True, text=True, timeout=600,
        env={**os.environ, "NO_MKDOCS_2_WARNING": "1"},
    )
    assert result.returncode == 0, result.stdout + result.stderr
    return out


def _api_pages(site):
    return {
        path.parent.name: path.read_text(encoding="utf-8")
        for path in (site / "api").glob("*/index.html")
    }


def _text(fragment, separator=" "):
    """The visible text of an HTML fragment, whitespace collapsed.

    `separator` replaces each tag: "" for highlighted code, whose tokens
    are separate spans.
    """
    fragment = re.sub(r"<(script|style)\b.*?</\1>", "", fragment, flags=re.DOTALL)
    text = html.unescape(re.sub(r"<[^>]+>", separator, fragment))
    return " ".join(text.split())


def _section(page, identifier):
    """The HTML of the object whose heading has `identifier`, to the next heading."""
    start = page.rindex("<", 0, page.index(f'id="{identifier}"'))
    end = page.find('class="doc doc-heading"', page.index("</h", start))
    return page[start : page.rindex("<", 0, end) if end > 0 else len(page)]


def _signature(section):
    """The text of an object's heading and signature, before its docstring."""
    contents = section.index('class="doc doc-contents')
    return _text(section[: section.rindex("<", 0, contents)], separator="")


def _public_names():
    """`{name: 'module.name' suffix the page anchor must end with}`."""
    names = {}
    for name in keras_blurpool.__all__ + keras_blurpool.layers.__all__:
        if name not in ("applications", "callbacks") + DEPRECATED_ALIASES:
            names[name] = name
    for architecture in registry.ARCHITECTURES.values():
        names[architecture.builder.__name__] = architecture.builder.__name__
    for name in ("preprocess_input", "decode_predictions", "load_torch_weights",
                 "imagenet_state_dict", "get", "families", "register",
                 "register_family", "Architecture", "Preprocessing", "HubWeights"):
        names[name] = name
    names.update((name, name) for name in weights.__all__)
    names.update(
        (name, name)
        for name, value in vars(callbacks).items()
        if not name.startswith("_") and getattr(value, "__module__", None) == callbacks.__name__
    )
    try:
        from keras_blurpool import evaluation
    except ImportError:  # pragma: no cover - TensorFlow is a test requirement
        pass
    else:
        names.update((name, name) for name in evaluation.__all__)
    return names


def test_hooks_doctests():
    _require_mkdocs()
    spec = importlib.util.spec_from_file_location("_mkdocs_hooks", ROOT / "mkdocs_hooks.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    failures, tests = doctest.testmod(module)
    assert tests and not failures


def test_every_public_name_is_documented(site):
    anchors = set()
    for page in _api_pages(site).values():
        anchors.update(re.findall(r'id="(keras_blurpool\.[\w.]+)"', page))
    missing = sorted(
        name for name, suffix in _public_names().items()
        if not any(anchor.endswith(f".{suffix}") for anchor in anchors)
    )
    assert not missing, f"not in the API reference (docs/api/*.md): {missing}"
    layers_page = _api_pages(site)["layers"]
    for alias in DEPRECATED_ALIASES:
        assert alias in layers_page


def test_builders_show_their_signature_and_docstring(site):
    # The builders are made at import; the site reads them from the stubs.
    page = _api_pages(site)["applications"]
    for architecture in registry.ARCHITECTURES.values():
        builder = architecture.builder
        module = builder.__module__.rsplit(".", 1)[-1]
        section = _section(page, f"keras_blurpool.applications.{module}.{builder.__name__}")
        text = _text(section)
        signature = _signature(section)
        for parameter in inspect.signature(builder).parameters:
            assert f"{parameter}:" in signature, (builder.__name__, parameter)
        summary = inspect.getdoc(builder).split("\n\n")[0]
        assert " ".join(summary.replace("`", "").split()) in text, builder.__name__
        assert "Parameters:" in text and "Returns:" in text, builder.__name__


def test_examples_render_as_code(site):
    # A doctest rendered as Markdown text is a nest of block quotes.
    for name, page in _api_pages(site).items():
        assert "<blockquote>" not in page, name
    blur_pool = _section(_api_pages(site)["layers"], "keras_blurpool.layers.BlurPool2D")
    assert "Examples:" in _text(blur_pool)
    assert '<span class="gp">&gt;&gt;&gt; </span>' in blur_pool


def test_readme_is_the_home_page(site):
    page = (site / "index.html").read_text(encoding="utf-8")
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    title = readme.splitlines()[0].lstrip("# ").strip()
    assert re.search(rf"<h1[^>]*>\s*{re.escape(title)}\s*<", page)
    # README's `docs/zoo.md#...` links point at the guide's page in the site.
    targets = re.findall(r"\]\(docs/([\w/-]+)\.md(#[\w-]*)?\)", readme)
    assert targets
    for path, anchor in targets:
        href = path.removesuffix("index") if path.endswith("/index") else f"{path}/"
        assert f'href="{href}{anchor}"' in page, (path, anchor)


def _chromium():
    override = os.environ.get("KERAS_BLURPOOL_CHROMIUM")
    for name in ((override,) if override else CHROMIUMS):
        path = shutil.which(name)
        if path:
            return path
    looked_for = f"KERAS_BLURPOOL_CHROMIUM={override}" if override else ", ".join(CHROMIUMS)
    pytest.skip(
        f"no headless Chromium on the PATH (looked for {looked_for}; apt-get install chromium)"
    )


def _dump_dom(url, tmp_path):
    result = subprocess.run(
        [_chromium(), "--headless", "--no-sandbox", "--disable-gpu",
         "--disable-dev-shm-usage", "--no-first-run",
         f"--user-data-dir={tmp_path / 'profile'}", "--dump-dom", url],
        capture_output=True, text=True, timeout=180,
    )
    assert result.returncode == 0, result.stderr[-2000:]
    assert "<html" in result.stdout, result.stderr[-2000:]
    return result.stdout


def _assert_no_rendering_errors(dom):
    text = _text(dom)
    assert "::: keras_blurpool" not in text  # a directive left unrendered
    assert "<autoref" not in dom  # a cross-reference left unresolved
    # mkdocstrings' and Python's failure texts (the word "mkdocstrings"
    # alone is no mark: README names the tool).
    for mark in ("Could not collect", "Traceback (most recent call last)"):
        assert mark not in text, mark


def test_home_page_in_browser(site, tmp_path):
    dom = _dump_dom((site / "index.html").as_uri(), tmp_path)
    assert re.search(r"<title>\s*keras-blurpool\s*</title>", dom)
    text = _text(dom)
    assert "Anti-aliased CNNs for Keras 3" in text
    assert "API reference" in text  # the navigation
    assert 'href="zoo/#pretrained-weights"' in dom
    _assert_no_rendering_errors(dom)


def test_blurpool2d_page_in_browser(site, tmp_path):
    dom = _dump_dom((site / "api" / "layers" / "index.html").as_uri(), tmp_path)
    assert re.search(r"<title>\s*Layers - keras-blurpool\s*</title>", dom)
    section = _section(dom, "keras_blurpool.layers.BlurPool2D")
    signature = _signature(section)
    assert signature.startswith("BlurPool2D")
    text = _text(section)
    for parameter in inspect.signature(keras_blurpool.BlurPool2D).parameters:
        assert f"{parameter}=" in signature or parameter == "kwargs", parameter
        assert parameter in text.split("Parameters:", 1)[1], parameter
    assert "Anti-aliased 2-D downsampling" in text
    assert "Raises:" in text and "ValueError" in text
    assert "keras_blurpool.BlurPool2D(filter_size=4)" in _text(section, separator="")
    _assert_no_rendering_errors(dom)

"""The book: builds with no warning, has every chapter, works offline, shows no answers.

The build (`jupyter-book build . -W -n --keep-going`, i.e. `make book`) runs once per session in
`book_helpers.build_book`; every test here reads its output in `_build/html`.
"""

from __future__ import annotations

import re

import pytest
from book_helpers import (
    CHAPTERS,
    HTML,
    article,
    build_book,
    downloadable_sources,
    exercise_solution_lines,
    leaked_lines,
    page_path,
    run_build,
    solution_lines,
    soup,
    sphinx_warnings,
    toc_files,
)
from bs4 import BeautifulSoup

pytestmark = [pytest.mark.xdist_group(name="book"), pytest.mark.slow]

NETWORK_URL = re.compile(r"^(https?:)?//", re.IGNORECASE)
REPO = "npdl-course/npdl-course"


@pytest.fixture(scope="module")
def build():
    result = build_book()
    assert result.returncode == 0, (
        f"jupyter-book build -W -n --keep-going failed (exit {result.returncode}):\n"
        + "\n".join(sphinx_warnings(result.output)[:30])
        + "\n--- end of log ---\n"
        + result.output[-3000:]
    )
    return result


# Build times (<= 5 min full, <= 20 s cached) are measured by benchmarks/bench_book_build.py,
# not asserted here: the machines are too noisy for timed tests.
def test_build_has_no_warnings(build):
    assert sphinx_warnings(build.output) == []
    assert "build succeeded" in build.output


def test_cached_rebuild_executes_nothing(build):
    # --all re-reads and re-renders every page; the chapters must come from the execution cache.
    again = run_build("--all")
    assert again.returncode == 0, again.output[-3000:]
    assert "Executing notebook" not in again.output, "a rebuild re-executed a chapter"
    cached = again.output.count("Using cached notebook")
    assert cached >= len(CHAPTERS), f"only {cached} chapters came from the execution cache"


def test_every_toc_page_is_built(build):
    docs = toc_files()
    assert set(CHAPTERS) <= set(docs), "_toc.yml must list all eight chapters"
    for doc in docs:
        path = page_path(doc)
        assert path.exists(), f"{doc} is in _toc.yml but {path} was not built"
        assert article(doc).find("h1"), f"{path} has no title"
    assert (HTML / "index.html").exists()


@pytest.mark.parametrize("doc", sorted(CHAPTERS))
def test_chapter_has_figures_common_bugs_and_exercises(build, doc):
    page = article(doc)
    headings = [
        h.get_text(" ", strip=True).rstrip("#").strip().lower() for h in page.find_all(["h2", "h3"])
    ]
    assert any(h.startswith("common bugs") for h in headings), f"{doc}: no 'Common bugs' section"
    assert any(h.startswith("exercises") for h in headings), f"{doc}: no 'Exercises' section"
    figures = page.select("figure img, div.cell_output img")
    assert len(figures) >= 2, f"{doc}: expected at least two figures, found {len(figures)}"
    notebook = CHAPTERS[doc]
    links = [a.get("href", "") for a in page.find_all("a")]
    assert any(f"github.com/{REPO}" in href and notebook in href for href in links), (
        f"{doc}: the Exercises section must link exercises/{notebook} on GitHub"
    )
    assert any(
        ("mybinder.org" in href or "colab.research.google.com" in href)
        and notebook.replace("/", "%2F") in href.replace("/", "%2F")
        for href in links
    ), f"{doc}: the Exercises section must give a Binder or Colab launch link for {notebook}"


@pytest.mark.parametrize("doc", toc_files())
def test_every_image_has_alt_text(build, doc):
    images = soup(doc).find_all("img")
    missing = [img.get("src") for img in images if not (img.get("alt") or "").strip()]
    assert missing == [], f"{doc}: images without alt text: {missing}"


def test_chapter_figures_have_descriptive_alt_text(build):
    for doc in CHAPTERS:
        for img in article(doc).select("figure img, div.cell_output img"):
            alt = img.get("alt", "")
            assert len(alt) >= 40, f"{doc}: alt text too short to describe a figure: {alt!r}"


def _resource_urls(page):
    """Every URL the browser would fetch by itself: scripts, styles, images, frames, media."""
    urls = []
    for tag, attr in [
        ("script", "src"),
        ("link", "href"),
        ("img", "src"),
        ("iframe", "src"),
        ("source", "src"),
        ("video", "src"),
        ("audio", "src"),
        ("embed", "src"),
    ]:
        for element in page.find_all(tag):
            if tag == "link" and not set(element.get("rel", [])) & {
                "stylesheet",
                "preload",
                "modulepreload",
                "icon",
                "shortcut",
                "manifest",
                "prefetch",
            }:
                continue  # <link rel="next">, rel="index": navigation, not fetched
            if element.get(attr):
                urls.append((tag, element[attr]))
    return urls


@pytest.mark.parametrize("doc", toc_files())
def test_pages_load_nothing_from_the_network(build, doc):
    page = soup(doc)
    remote = [(tag, url) for tag, url in _resource_urls(page) if NETWORK_URL.match(url)]
    assert remote == [], f"{doc} loads resources from the network: {remote}"
    for script in page.find_all("script"):
        body = script.string or ""
        assert not re.search(r"https?://(unpkg|cdn|cdnjs|ajax\.googleapis|fonts\.)", body), (
            f"{doc}: an inline script references a CDN: {body[:200]}"
        )
    mathjax = [
        url for tag, url in _resource_urls(page) if tag == "script" and "mathjax" in url.lower()
    ]
    if page.select_one(".math"):
        assert mathjax and all(not NETWORK_URL.match(u) for u in mathjax), (
            f"{doc}: MathJax not vendored"
        )


def test_static_styles_import_nothing_from_the_network(build):
    for css in (HTML / "_static").rglob("*.css"):
        text = css.read_text(encoding="utf-8", errors="replace")
        remote = re.findall(
            r"@import\s+(?:url\()?['\"]?(?:https?:)?//[^'\")\s]+|url\(\s*['\"]?(?:https?:)?//[^)]+\)",
            text,
        )
        assert remote == [], f"{css.relative_to(HTML)} fetches from the network: {remote[:3]}"


def test_launch_and_download_buttons(build):
    page = soup("book/01_backprop")
    hrefs = [a.get("href", "") for a in page.find_all("a")]
    assert any(h.startswith(f"https://mybinder.org/v2/gh/{REPO}/main") for h in hrefs), (
        "no Binder button"
    )
    assert any(
        h.startswith(f"https://colab.research.google.com/github/{REPO}/blob/main") for h in hrefs
    ), "no Colab button"
    assert any("/hub/user-redirect/git-pull" in h for h in hrefs), "no JupyterHub button"
    downloads = [h for h in hrefs if h.endswith(".ipynb") and "_sources" in h]
    assert downloads, "no download-notebook button (a link to the executed .ipynb in _sources)"
    assert (HTML / "_sources" / "book" / "01_backprop.ipynb").exists()


def test_search_index_covers_the_chapters(build):
    assert (HTML / "search.html").exists()
    index = (HTML / "searchindex.js").read_text(encoding="utf-8")
    for term in ("backpropag", "softmax", "xavier", "batchnorm"):
        assert term in index.lower(), f"the search index does not contain {term!r}"


# ------------------------------------------------------------------------- no answers in the book


@pytest.fixture(scope="module")
def answers():
    """What students write: graded npdl bodies and the SOLUTION regions of the nbgrader sources."""
    reference, exercises = solution_lines(), exercise_solution_lines()
    assert len(reference) >= 100 and len(exercises) >= 30, (
        f"only {len(reference)} npdl and {len(exercises)} exercise solution statements were "
        "extracted: the leak check would be toothless"
    )
    return {**reference, **exercises}


def test_leak_check_detects_a_pasted_solution(answers):
    code, where = next(iter(answers.items()))
    statement = where.split(": ", 1)[1]
    half = len(statement) // 2  # split across a highlighting span and a line break
    html = f"<pre><span>{statement[:half]}</span>\n   {statement[half:]}</pre>"
    assert leaked_lines(BeautifulSoup(html, "html.parser").get_text(" "), answers) == [where]
    assert leaked_lines("<p>y = x W + b</p>", answers) == []


@pytest.mark.parametrize("doc", toc_files())
def test_no_solution_code_in_the_pages(build, answers, doc):
    text = soup(doc).get_text(" ")
    assert leaked_lines(text, answers) == [], f"{doc} shows the body of a graded npdl function"


def test_no_solution_code_in_the_downloadable_sources(build, answers):
    # The download button serves each chapter's .md and executed .ipynb, hidden cells included.
    sources = downloadable_sources()
    assert any(name.endswith(".ipynb") for name in sources)
    leaks = {
        name: found for name, text in sources.items() if (found := leaked_lines(text, answers))
    }
    assert leaks == {}, f"hidden cells contain solution code: {leaks}"

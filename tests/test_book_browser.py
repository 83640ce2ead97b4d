"""The built book in a real browser, offline: math typeset, images loaded, no errors, no network.

Opens pages of `_build/html` from file:// in headless Chromium (Debian's /usr/bin/chromium,
driven by Playwright) with every non-file request aborted and recorded. A screenshot of each
page is saved in `_build/screenshots/`. A missing browser is a failure, never a skip.
"""

from __future__ import annotations

import pytest
from book_helpers import ROOT, build_book, page_path, sphinx_warnings
from offline_browser import OfflineTab, chromium

pytestmark = [pytest.mark.xdist_group(name="book"), pytest.mark.slow]

PAGES = [
    "book/intro",
    "book/01_backprop",
    "book/02_activations",
    "book/03_initializers",
    "book/04_layers",
    "book/07_optimizers",
    "book/09_convolutions",
]
PAGES_WITH_MATH = set(PAGES) - {"book/intro"}
SCREENSHOTS = ROOT / "_build" / "screenshots"
# The page's visible text without code (a code cell may legitimately contain TeX in a plot label).
PROSE_TEXT = """() => {
    const main = document.querySelector("main") || document.body;
    const copy = main.cloneNode(true);
    copy.querySelectorAll("pre, code, .cell_input, mjx-assistive-mml").forEach(e => e.remove());
    document.body.appendChild(copy);  // innerText needs a rendered element
    const text = copy.innerText;
    copy.remove();
    return text;
}"""
RAW_TEX = ("\\frac", "\\partial", "\\sum", "\\begin{", "$$")


@pytest.fixture(scope="module")
def browser():
    result = build_book()
    assert result.returncode == 0, (
        "\n".join(sphinx_warnings(result.output)) or result.output[-3000:]
    )
    with chromium() as launched:
        yield launched


class PageVisit(OfflineTab):
    """Load one page of the built book offline and collect what went wrong."""

    def __init__(self, browser, doc: str):
        super().__init__(browser, page_path(doc).as_uri())

    def load_all_images(self) -> list[dict]:
        # Lazy images off screen would never load: make them eager and wait for each one.
        return self.page.evaluate(
            """async () => {
                const images = Array.from(document.images);
                images.forEach(img => img.loading = "eager");
                await Promise.all(images.map(img => img.complete ? null : new Promise(done => {
                    img.addEventListener("load", done); img.addEventListener("error", done);
                    setTimeout(done, 10000);
                })));
                return images.map(img => ({src: img.currentSrc || img.src,
                                           width: img.naturalWidth}));
            }"""
        )


@pytest.fixture(scope="module")
def visits(browser):
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    results = {}
    for doc in PAGES:
        visit = PageVisit(browser, doc)
        if doc in PAGES_WITH_MATH:
            visit.wait_for_mathjax()
        visit.images = visit.load_all_images()
        visit.math_count = visit.page.locator("mjx-container").count()
        visit.math_errors = visit.page.locator("mjx-merror").count()
        visit.text = visit.page.evaluate(PROSE_TEXT)
        visit.page.wait_for_timeout(300)  # let late console messages arrive
        visit.screenshot = SCREENSHOTS / f"{doc.split('/')[-1]}.png"
        visit.page.screenshot(path=str(visit.screenshot), full_page=True)
        results[doc] = visit
        visit.context.close()
    return results


@pytest.mark.parametrize("doc", PAGES)
def test_no_network_request(visits, doc):
    assert visits[doc].network == [], f"{doc} tried to reach the network: {visits[doc].network}"


@pytest.mark.parametrize("doc", sorted(PAGES_WITH_MATH))
def test_mathjax_typesets_the_math(visits, doc):
    visit = visits[doc]
    assert visit.math_count >= 10, (
        f"{doc}: only {visit.math_count} typeset formulas (mjx-container)"
    )
    assert visit.math_errors == 0, (
        f"{doc}: MathJax reported {visit.math_errors} TeX errors (mjx-merror)"
    )
    assert len(visit.text) > 2000, f"{doc}: the page's prose could not be read"
    raw = [tex for tex in RAW_TEX if tex in visit.text]
    assert raw == [], f"{doc}: raw TeX is visible in the page: {raw}"


@pytest.mark.parametrize("doc", PAGES)
def test_every_image_loads(visits, doc):
    images = visits[doc].images
    broken = [image["src"] for image in images if image["width"] == 0]
    assert images, f"{doc} has no images at all"
    assert broken == [], f"{doc}: images that did not load: {broken}"


@pytest.mark.parametrize("doc", PAGES)
def test_console_has_no_errors(visits, doc):
    assert visits[doc].console_errors == [], f"{doc}: console errors {visits[doc].console_errors}"


def test_screenshots_are_saved(visits):
    for doc, visit in visits.items():
        assert visit.screenshot.exists() and visit.screenshot.stat().st_size > 20_000, (
            f"no usable screenshot of {doc} at {visit.screenshot}"
        )

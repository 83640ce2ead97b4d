"""The feedback page a student gets, read in a real browser with no network.

Grades a small class (02_activations: the reference solution and one buggy student) with the real
`python -m autograder grade`, then opens each feedback page from file:// in headless Chromium
(Debian's /usr/bin/chromium, driven by Playwright) with every non-file request aborted and
recorded: the summary names each test, the math is typeset by the inlined MathJax, nothing is
fetched, the console is clean and each check's ✔ line is shown once. A screenshot of each page is
saved in `_build/screenshots/`. A missing browser is a failure, never a skip.
"""

from __future__ import annotations

import collections
import re
import subprocess
import sys
from pathlib import Path

import nbformat
import pytest
from offline_browser import OfflineTab, chromium

from autograder.demo import fill_release, load_bugs
from autograder.feedback import has_math
from autograder.notebooks import REPO, build_notebook, graded_cells, sources
from autograder.trusted.executor import checks_once

pytestmark = pytest.mark.xdist_group(name="grading")
slow = pytest.mark.slow  # the tests that grade the class and open its pages

ASSIGNMENT, NOTEBOOK = "02_activations", "activations"
BUG = next(b for b in load_bugs()[ASSIGNMENT] if b["student"] == "bug_relu_backward_times_input")
STUDENTS = ("solution", BUG["student"])
SCREENSHOTS = REPO / "_build" / "screenshots"
# A <script> or <link> that loads from another host (http:, https: or protocol-relative).
REMOTE_TAG = re.compile(r"<(?:script|link)\b[^>]*\b(?:src|href)\s*=\s*[\"']?(?:https?:)?//", re.I)
# The text of the rendered markdown, without code and MathJax's hidden MathML copy.
PROSE_TEXT = """() => Array.from(document.querySelectorAll(".text_cell_render")).map(cell => {
    const copy = cell.cloneNode(true);
    copy.querySelectorAll("pre, code, mjx-assistive-mml").forEach(e => e.remove());
    return copy.textContent;
}).join("\\n")"""
RAW_TEX = ("$", "\\frac", "\\partial", "\\sum", "\\begin{", "\\(")
# Each graded cell's outputs, keyed by the grade_id of the heading's anchor before it.
TEST_OUTPUTS = """() => Array.from(document.querySelectorAll("div.code_cell")).map(cell => {
    const anchor = cell.querySelector("a[name^='test_']");
    const outputs = Array.from(cell.querySelectorAll(".output_area pre"));
    return anchor && [anchor.name, outputs.map(pre => pre.innerText).join("\\n")];
}).filter(Boolean)"""


def _tests() -> dict[str, float]:
    found = {}
    for md in sources(ASSIGNMENT):
        found.update(graded_cells(build_notebook(md)))
    return found


@pytest.fixture(scope="module")
def graded(tmp_path_factory):
    """The real grading command on a two-student class built from the released notebook."""
    root = tmp_path_factory.mktemp("feedback")
    release = nbformat.read(REPO / "exercises" / ASSIGNMENT / f"{NOTEBOOK}.ipynb", 4)
    source = nbformat.read(REPO / "solutions" / ASSIGNMENT / f"{NOTEBOOK}.ipynb", 4)
    for student, bug in zip(STUDENTS, (None, BUG), strict=True):
        folder = root / "class" / student / ASSIGNMENT
        folder.mkdir(parents=True)
        nbformat.write(fill_release(release, source, bug), folder / f"{NOTEBOOK}.ipynb")
    run = subprocess.run(
        [sys.executable, "-m", "autograder", "grade", str(root / "class"), "--out",
         str(root / "out"), "--quiet"],
        cwd=REPO, capture_output=True, text=True, timeout=900,
    )
    assert run.returncode == 0, f"grading failed:\n{run.stdout}\n{run.stderr}"
    return root / "out"


def _page(out: Path, student: str) -> Path:
    return out / "feedback" / student / ASSIGNMENT / f"{NOTEBOOK}.html"


@pytest.fixture(scope="module")
def browser():
    with chromium() as launched:
        yield launched


class Visit(OfflineTab):
    """One feedback page loaded offline, with what it showed and what went wrong."""

    def __init__(self, browser, page: Path, screenshot: Path):
        super().__init__(browser, page.as_uri())
        tab = self.page
        self.wait_for_mathjax(timeout_ms=30_000)
        self.summary = tab.evaluate(
            """() => Array.from(document.querySelectorAll("#toc li")).map(li => ({
                id: li.dataset.gradeId || null, text: li.innerText,
                link: (li.querySelector("a") || {}).hash || null}))"""
        )
        self.math_count = tab.locator("mjx-container").count()
        self.math_errors = tab.locator("mjx-merror").count()
        self.prose = tab.evaluate(PROSE_TEXT)
        self.test_outputs = dict(tab.evaluate(TEST_OUTPUTS))
        self.text = tab.evaluate("() => document.body.innerText")
        tab.wait_for_timeout(300)  # let late console messages arrive
        tab.screenshot(path=str(screenshot), full_page=False)
        self.context.close()


@pytest.fixture(scope="module")
def visits(graded, browser):
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    return {
        student: Visit(browser, _page(graded, student), SCREENSHOTS / f"feedback_{student}.png")
        for student in STUDENTS
    }


@slow
@pytest.mark.parametrize("student", STUDENTS)
def test_page_loads_nothing_from_the_network(graded, visits, student):
    html = _page(graded, student).read_text(encoding="utf-8")
    assert REMOTE_TAG.findall(html) == [], "a <script> or <link> still loads from a server"
    assert "cdnjs.cloudflare.com" not in html
    assert visits[student].network == [], f"requests attempted: {visits[student].network}"
    assert visits[student].console_errors == [], visits[student].console_errors


@slow
@pytest.mark.parametrize("student", STUDENTS)
def test_summary_names_each_test(visits, student):
    tests = _tests()
    summary = [item for item in visits[student].summary if item["id"]]
    assert [item["id"] for item in summary] == list(tests), "one summary line per test, in order"
    failed = set(BUG["fails"]) if student == BUG["student"] else set()
    for item, (grade_id, points) in zip(summary, tests.items(), strict=True):
        assert item["text"].startswith(grade_id) and item["link"] == f"#{grade_id}", item
        assert ("failed" if grade_id in failed else "passed") in item["text"], item
        assert f"/ {float(points)}" in item["text"], item
    assert not any("Test cell" in item["text"] for item in visits[student].summary)


@slow
@pytest.mark.parametrize("student", STUDENTS)
def test_math_is_typeset(visits, student):
    visit = visits[student]
    assert visit.math_count >= 10, f"only {visit.math_count} typeset formulas (mjx-container)"
    assert visit.math_errors == 0, f"{visit.math_errors} TeX errors (mjx-merror)"
    assert len(visit.prose) > 1000, "the page's prose could not be read"
    raw = [tex for tex in RAW_TEX if tex in visit.prose]
    assert raw == [], f"raw TeX is visible in the page: {raw}"


@slow
@pytest.mark.parametrize("student", STUDENTS)
def test_each_check_line_is_shown_once(visits, student):
    outputs = visits[student].test_outputs
    assert set(outputs) == set(_tests()), "every test cell shows its outcome"
    for grade_id, text in outputs.items():
        lines = [line for line in text.splitlines() if line.startswith("✔")]
        twice = [line for line, n in collections.Counter(lines).items() if n > 1]
        assert twice == [], f"{grade_id}: shown more than once: {twice}"
        if student == "solution":
            assert lines, f"{grade_id}: a passing test shows its ✔ lines"


@slow
def test_buggy_page_names_the_mistake_and_hides_the_hidden_tests(visits):
    visit = visits[BUG["student"]]
    for fragment in BUG["message"]:
        assert fragment in visit.text, f"{fragment!r} not in the feedback"
    assert "HIDDEN TESTS" not in visit.text and "check_activation(" not in visit.text


@slow
def test_autograded_notebook_lists_each_check_once(graded):
    """The ✔ lines are unique where they are recorded, not only on the page."""
    nb = nbformat.read(graded / "autograded" / "solution" / ASSIGNMENT / f"{NOTEBOOK}.ipynb", 4)
    tests = _tests()
    seen = 0
    for cell in nb.cells:
        if cell.get("metadata", {}).get("nbgrader", {}).get("grade_id") not in tests:
            continue
        seen += 1
        lines = [
            line
            for output in cell.outputs
            if output.get("output_type") == "stream"
            for line in output.get("text", "").splitlines()
            if line.startswith("✔")
        ]
        assert lines and len(lines) == len(set(lines)), (cell.metadata.nbgrader.grade_id, lines)
    assert seen == len(tests)


def test_checks_once_keeps_the_first_of_each_check_line():
    printed = (
        "✔ LeakyReLU.forward matches the reference on 5 inputs\n"
        "loss 0.5\n"
        "✔ LeakyReLU.forward matches the reference on 5 inputs\n"
        "loss 0.5\n"
        "✔ LeakyReLU(alpha=0.1).forward keeps float32\n"
    )
    assert checks_once(printed) == (
        "✔ LeakyReLU.forward matches the reference on 5 inputs\n"
        "loss 0.5\n"
        "loss 0.5\n"
        "✔ LeakyReLU(alpha=0.1).forward keeps float32\n"
    )
    assert checks_once("✔ a\r\n✔ a\n✔ a") == "✔ a\r\n"
    assert checks_once("") == ""


def test_pages_without_math_get_no_mathjax():
    nb = nbformat.v4.new_notebook(cells=[nbformat.v4.new_markdown_cell("No formulas here.")])
    assert not has_math(nb)
    nb.cells.append(nbformat.v4.new_markdown_cell("The slope $\\partial L / \\partial x$."))
    assert has_math(nb)

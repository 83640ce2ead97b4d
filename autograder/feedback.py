"""The feedback pages nbgrader's GenerateFeedback writes (configured in nbgrader_config.py).

- `ShortTracebacks`: a traceback must not quote the hidden tests it ran through.
- `OfflineMathJax` and the ``npdl_feedback`` template (``autograder/templates/``): the summary
  names each test, and the math is typeset by MathJax inlined into the page, so that a student
  who downloads one page reads it offline.

Tracebacks: IPython prints one traceback entry per frame, each with a few source lines around
the failing line. The frames of the test cell itself would show the hidden test's source, and the
frames of the grading library show its code and paths, so `ShortTracebacks` keeps only the frames
of the student's other cells (where their code failed) and the final ``ExceptionName: message``
line, which is the feedback.
"""

from __future__ import annotations

import functools
import importlib.util
import re
from pathlib import Path

import nbgrader
from nbgrader.preprocessors import NbGraderPreprocessor
from traitlets import Unicode

TEMPLATES = Path(__file__).resolve().parent / "templates"
NBGRADER_TEMPLATES = (
    Path(nbgrader.__file__).resolve().parent / "server_extensions" / "formgrader" / "templates"
)
TEMPLATE_NAME = "npdl_feedback"  # autograder/templates/npdl_feedback/, based on nbgrader's
TEMPLATE_FILE = "npdl_feedback.html.j2"

_ANSI = re.compile(r"\x1b\[[0-9;]*m")


def _frame_cell(entry: str) -> int | None:
    """The execution count of the notebook cell a traceback entry belongs to, if any."""
    match = re.search(r"Cell In\s*\[(\d+)\]", _ANSI.sub("", entry))
    return int(match.group(1)) if match else None


def short_traceback(traceback: list[str], own_count: int | None) -> list[str]:
    """Keep the frames of cells other than ``own_count`` (the test cell), and the last line."""
    frames = [entry for entry in traceback[:-1] if _frame_cell(entry) not in (None, own_count)]
    return frames + traceback[-1:]


class ShortTracebacks(NbGraderPreprocessor):
    """Remove the test cell's own frames from the tracebacks of graded (test) cells."""

    def preprocess_cell(self, cell, resources, index):
        grade_cell = cell.get("metadata", {}).get("nbgrader", {}).get("grade", False)
        if cell.cell_type == "code" and grade_cell:
            for output in cell.get("outputs", []):
                if output.get("output_type") == "error":
                    output["traceback"] = short_traceback(
                        output.get("traceback", []), cell.get("execution_count")
                    )
        return cell, resources


# ---------------------------------------------------------------- offline math
def _vendored_mathjax() -> str:
    """MathJax 3 with SVG output (its fonts are inside the script: nothing else to fetch) and the
    base + AMS TeX macros (all the course uses), from the pinned sphinx-mathjax-offline package
    that also vendors MathJax into the book. The template turns off `autoload` and `require`,
    the two TeX packages that would fetch more files."""
    spec = importlib.util.find_spec("sphinx-mathjax-offline")  # its import name has hyphens
    if spec is None or not spec.submodule_search_locations:
        return ""
    folder = Path(next(iter(spec.submodule_search_locations)))
    return str(folder / "static" / "mathjax" / "tex-svg.js")


@functools.cache
def _read_script(path: str) -> str:
    text = Path(path).read_text(encoding="utf-8")
    if "</script" in text.lower():  # would end the inline <script> element early
        raise ValueError(f"{path} contains '</script' and cannot be inlined into a page.")
    return text


# Math delimiters MathJax looks for (see the tex config in npdl_feedback.html.j2).
_MATH = re.compile(r"\$|\\\(|\\\[|\\begin\{")


def has_math(nb) -> bool:
    """Whether any markdown cell or rich output of ``nb`` holds TeX for MathJax."""
    for cell in nb.cells:
        if cell.cell_type == "markdown" and _MATH.search(cell.source):
            return True
        for output in cell.get("outputs", []):
            data = output.get("data", {})
            for mime in ("text/latex", "text/markdown", "text/html"):
                if _MATH.search("".join(data.get(mime, ""))):
                    return True
    return False


class OfflineMathJax(NbGraderPreprocessor):
    """Put the MathJax script into ``resources["offline_mathjax"]``; the npdl_feedback template
    inlines it at the end of the page (about 2.1 MB; pages without math get none).

    One self-contained file: a student can download the page alone and still read the math
    with no network. nbgrader's own template loads MathJax 2 from a CDN instead.
    """

    mathjax_file = Unicode(
        help="MathJax 3 combined component to inline (default: sphinx-mathjax-offline's "
        "tex-svg.js).",
    ).tag(config=True)

    def preprocess(self, nb, resources):
        path = self.mathjax_file or _vendored_mathjax()
        if not path or not Path(path).is_file():
            raise FileNotFoundError(
                f"MathJax for the feedback pages: {path or 'sphinx-mathjax-offline'} not found "
                "(pip install -r requirements-dev.txt -c constraints.txt)."
            )
        resources["offline_mathjax"] = _read_script(path) if has_math(nb) else ""
        return nb, resources

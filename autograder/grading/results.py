"""Writing what a grading run produced: ``results/<student>.json`` and fallback feedback pages.

``results/<student>.json`` follows Gradescope's results.json schema: ``score``, ``max_score``,
``output`` and ``tests[]`` (one per graded cell: ``name`` is its grade id, ``score``,
``max_score``, ``output`` the text the student saw, ``visibility``, ``tags``).
"""

from __future__ import annotations

import functools
import html
import json
from pathlib import Path

import nbformat
from nbgrader.api import Gradebook, MissingEntry

from ..notebooks import build_notebook, graded_cells


def cell_feedback(cell) -> str:
    """The text a student sees for one test cell: printed ✔ lines and the error message."""
    parts = []
    for out in cell.get("outputs", []):
        if out.get("output_type") == "stream":
            parts.append(out.get("text", ""))
        elif out.get("output_type") == "error":
            parts.append(f"{out.get('ename', 'Error')}: {out.get('evalue', '')}\n")
    return "".join(parts).strip()


def fallback_feedback(student: str, a: str, nb: str, reason: str, tests) -> str:
    """A feedback page for a notebook nbgrader could not grade: the reason, every test 0."""
    rows = "".join(
        f"<tr><td>{html.escape(t['name'])}</td><td>0 / {t['max_score']:g}</td></tr>" for t in tests
    )
    return (
        f"<!DOCTYPE html>\n<html><head><meta charset='utf-8'><title>{html.escape(nb)}</title>"
        f"</head><body><h1>{html.escape(f'{a}/{nb}.ipynb')} ({html.escape(student)})</h1>"
        f"<p><strong>Not graded:</strong> {html.escape(reason)}</p>"
        f"<table><tr><th>test</th><th>score</th></tr>{rows}</table></body></html>\n"
    )


def notebook_tests(gb: Gradebook, work: Path, solutions: Path, student: str, a: str, nb: str,
                   problem: str | None) -> list[dict]:
    """One results.json test per graded cell of ``a/nb``; all 0 with ``problem`` as output."""
    source = build_notebook(solutions / a / f"{nb}.md")
    graded = work / "autograded" / student / a / f"{nb}.ipynb"
    cells = {}
    if problem is None and graded.exists():
        for cell in nbformat.read(graded, as_version=4).cells:
            grade_id = cell.get("metadata", {}).get("nbgrader", {}).get("grade_id")
            cells[grade_id] = cell
    tests = []
    for grade_id, points in graded_cells(source).items():
        score, output = 0.0, problem or "test cell missing from the graded notebook"
        if problem is None:
            try:
                score = float(gb.find_grade(grade_id, nb, a, student).score)
            except MissingEntry:
                pass
            if grade_id in cells:
                output = cell_feedback(cells[grade_id])
        tests.append(
            {
                "name": grade_id,
                "score": score,
                "max_score": float(points),
                "output": output,
                "visibility": "visible",
                "tags": [a, nb],
            }
        )
    return tests


@functools.cache
def _graded_cells(solutions: Path, a: str, nb: str) -> dict[str, float]:
    return graded_cells(build_notebook(solutions / a / f"{nb}.md"))


def problem_tests(solutions: Path, a: str, nb: str, problem: str) -> list[dict]:
    """The results.json tests of a notebook that scored 0 for ``problem``."""
    return [
        {"name": grade_id, "score": 0.0, "max_score": float(points), "output": problem,
         "visibility": "visible", "tags": [a, nb]}
        for grade_id, points in _graded_cells(solutions, a, nb).items()
    ]


def student_result(student: str, handed_in: dict[str, dict | None], solutions: Path,
                   expected: dict[str, list[str]], problems: dict) -> tuple[dict, dict]:
    """``results/<student>.json`` from the student's committed units, and the fallback feedback
    pages (relative path -> html) of the notebooks that scored 0 for a problem.

    ``handed_in``: assignment -> its committed unit (None if no notebook could be graded).
    ``problems``: (student, assignment, notebook) -> why that notebook scored 0.
    """
    tests, notes, pages = [], [], {}
    for a in sorted(handed_in):
        unit = handed_in[a] or {}
        for nb in expected[a]:
            problem = problems.get((student, a, nb))
            if problem is None and unit.get("status") == "student_error":
                problem = unit["message"]
            if problem is None:
                tests += unit["tests"][nb]
                continue
            found = problem_tests(solutions, a, nb, problem)
            tests += found
            notes.append(f"{a}/{nb}.ipynb scored 0: {problem}")
            pages[f"{a}/{nb}.html"] = fallback_feedback(student, a, nb, problem, found)
    result = {
        "score": round(sum(t["score"] for t in tests), 6),
        "max_score": sum(t["max_score"] for t in tests),
        "output": "\n".join([f"Graded assignments: {', '.join(sorted(handed_in))}.", *notes]),
        "tests": tests,
    }
    return result, pages


def results_json(result: dict) -> str:
    return json.dumps(result, indent=2, ensure_ascii=False) + "\n"

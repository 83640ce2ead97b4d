"""Source notebooks: jupytext MyST markdown in, nbgrader-ready .ipynb out.

An assignment is a folder ``solutions/<assignment_id>/`` holding one ``<notebook>.md`` per
notebook. Code cells carry a compact ``nbgrader`` option that `expand_metadata` turns into
nbgrader's full schema-3 cell metadata (see autograder/NOTEBOOK_FORMAT.md):

    :nbgrader: {grade_id: relu, solution: true}          # the student writes code here
    :nbgrader: {grade_id: test_relu_forward, points: 1}  # autograded test cell (locked)
    :nbgrader: {grade_id: helpers, locked: true}          # read-only code (imports, helpers)
"""

from __future__ import annotations

import re
from pathlib import Path

import jupytext
import nbformat

REPO = Path(__file__).resolve().parent.parent
SOLUTIONS = REPO / "solutions"
EXERCISES = REPO / "exercises"

_GRADE_ID = re.compile(r"^[A-Za-z0-9_]+$")
_ALLOWED_KEYS = {"grade_id", "solution", "points", "locked"}


class NotebookFormatError(ValueError):
    """A source notebook breaks the authoring rules of NOTEBOOK_FORMAT.md."""


def assignments(solutions: Path = SOLUTIONS) -> list[str]:
    """Sorted assignment ids: the folders of ``solutions`` holding at least one ``.md`` source."""
    return sorted(p.name for p in solutions.iterdir() if p.is_dir() and any(p.glob("*.md")))


def sources(assignment_id: str, solutions: Path = SOLUTIONS) -> list[Path]:
    """The markdown sources of one assignment, sorted."""
    return sorted((solutions / assignment_id).glob("*.md"))


def expand_metadata(compact: dict, where: str) -> dict:
    """Full nbgrader cell metadata (schema 3) from the compact authoring form."""
    unknown = set(compact) - _ALLOWED_KEYS
    if unknown:
        raise NotebookFormatError(
            f"{where}: unknown nbgrader keys {sorted(unknown)}. Allowed: {sorted(_ALLOWED_KEYS)}."
        )
    grade_id = compact.get("grade_id")
    if not isinstance(grade_id, str) or not _GRADE_ID.match(grade_id):
        raise NotebookFormatError(
            f"{where}: expected a grade_id of letters, digits and _. Received: {grade_id!r}."
        )
    solution = bool(compact.get("solution", False))
    points = compact.get("points")
    grade = points is not None
    if grade and (not isinstance(points, int | float) or points <= 0):
        raise NotebookFormatError(
            f"{where}: expected positive points. Received: points={points!r}."
        )
    if solution and grade:
        raise NotebookFormatError(f"{where}: a cell is either a solution or a test cell, not both.")
    meta = {
        "grade": grade,
        "grade_id": grade_id,
        "locked": not solution,
        "schema_version": 3,
        "solution": solution,
        "task": False,
    }
    if grade:
        meta["points"] = points
    return meta


def _check_cell(cell, meta: dict, where: str) -> None:
    src = cell.source
    has_solution = "### BEGIN SOLUTION" in src
    has_hidden = "### BEGIN HIDDEN TESTS" in src
    if meta["solution"] and not has_solution:
        raise NotebookFormatError(
            f"{where}: solution cell {meta['grade_id']!r} has no ### BEGIN SOLUTION block."
        )
    if has_solution and not meta["solution"]:
        raise NotebookFormatError(f"{where}: ### BEGIN SOLUTION outside a solution cell.")
    if has_hidden and not meta["grade"]:
        raise NotebookFormatError(
            f"{where}: ### BEGIN HIDDEN TESTS outside a test cell (give it points)."
        )
    if meta["grade"] and not meta["grade_id"].startswith("test_"):
        raise NotebookFormatError(
            f"{where}: test cell ids start with 'test_'. Received: {meta['grade_id']!r}."
        )


def build_notebook(md_path: Path) -> nbformat.NotebookNode:
    """Read a MyST markdown source and return the nbgrader source notebook (no outputs)."""
    nb = jupytext.read(md_path, fmt="md:myst")
    nb.metadata = {
        "kernelspec": {"display_name": "Python 3", "language": "python", "name": "python3"},
        "language_info": {"name": "python"},
    }
    seen: set[str] = set()
    for index, cell in enumerate(nb.cells):
        where = f"{md_path.name}, cell {index}"
        compact = cell.metadata.pop("nbgrader", None)
        cell.metadata.pop("lines_to_next_cell", None)
        cell.id = f"cell-{index:03d}"  # stable ids: rebuilding gives the same file
        if compact is None:
            if cell.cell_type == "code" and ("### BEGIN" in cell.source):
                raise NotebookFormatError(
                    f"{where}: a cell with ### BEGIN markers needs an nbgrader option."
                )
            continue
        if cell.cell_type != "code":
            raise NotebookFormatError(f"{where}: only code cells take an nbgrader option.")
        meta = expand_metadata(compact, where)
        if meta["grade_id"] in seen:
            raise NotebookFormatError(f"{where}: duplicate grade_id {meta['grade_id']!r}.")
        seen.add(meta["grade_id"])
        _check_cell(cell, meta, where)
        cell.metadata["nbgrader"] = meta
        cell.id = meta["grade_id"].replace("_", "-")
    if not any(c.metadata.get("nbgrader", {}).get("grade") for c in nb.cells):
        raise NotebookFormatError(f"{md_path.name}: no test cell (nothing to grade).")
    nbformat.validate(nb)
    return nb


def write_notebook(nb, path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(nbformat.writes(nb) + "\n", encoding="utf-8")


def build_sources(
    solutions: Path = SOLUTIONS, out: Path | None = None, only: list[str] | None = None
) -> list[Path]:
    """Build ``<out>/<a>/<nb>.ipynb`` from every markdown source (``out``: ``solutions``)."""
    out = solutions if out is None else out
    written = []
    for assignment_id in only or assignments(solutions):
        for md in sources(assignment_id, solutions):
            target = out / assignment_id / (md.stem + ".ipynb")
            write_notebook(build_notebook(md), target)
            written.append(target)
    return written


def graded_cells(nb) -> dict[str, float]:
    """grade_id -> points of every test cell of a notebook."""
    return {
        c.metadata["nbgrader"]["grade_id"]: c.metadata["nbgrader"]["points"]
        for c in nb.cells
        if c.get("metadata", {}).get("nbgrader", {}).get("grade")
    }

"""The nbgrader side: `TrustedExecute`, plus helpers for submissions nbgrader cannot use."""

from __future__ import annotations

import copy

import nbformat
from nbformat.notebooknode import NotebookNode
from nbgrader.api import Gradebook
from nbgrader.preprocessors import Execute
from traitlets import Integer

from .executor import TrustedNotebookRun, cell_kind, error_output


class TrustedExecute(Execute):
    """Drop-in replacement for nbgrader's `Execute` (same ``Execute.timeout`` config).

    Never starts a Jupyter kernel: see `autograder.trusted.executor`.
    """

    session_timeout = Integer(1800, help="Wall-clock budget of one notebook's sandbox (s).").tag(
        config=True
    )

    def preprocess(self, nb, resources):
        assignment = resources.get("nbgrader", {}).get("assignment") or _assignment_of(resources)
        run = TrustedNotebookRun(
            assignment,
            cell_timeout=float(self.timeout or 120),
            session_timeout=float(self.session_timeout),
            log=self.log,
        )
        run.run(nb, trusted_cells_from_gradebook(resources))
        self.log.info("trusted grading of %s took %.1f s", assignment, run.timings["total"])
        return nb, resources


def trusted_cells_from_gradebook(resources) -> dict[str, tuple[str, str]]:
    """grade_id -> ("test" | "locked", source) as recorded by generate_assignment."""
    info = resources["nbgrader"]
    cells = {}
    with Gradebook(info["db_url"]) as gb:
        notebook = gb.find_notebook(info["notebook"], info["assignment"])
        tests = {c.name for c in notebook.grade_cells} - {c.name for c in notebook.solution_cells}
        for cell in notebook.source_cells:
            if cell.cell_type != "code":
                continue
            if cell.name in tests:
                cells[cell.name] = ("test", cell.source)
            elif cell.locked:
                cells[cell.name] = ("locked", cell.source)
    return cells


def _assignment_of(resources) -> str:
    path = str(resources.get("metadata", {}).get("path", ""))
    for part in reversed(path.replace("\\", "/").split("/")):
        if part[:2].isdigit():
            return part
    raise ValueError(f"TrustedExecute: cannot tell the assignment of {path!r}.")


def restore_from_source(submission, source) -> NotebookNode:
    """What nbgrader's OverwriteCells (with ``add_missing_cells``) does, without a gradebook:
    locked and test cells take the source notebook's text; missing ones are put back.

    Cells are matched by grade_id; the submission's order is kept, missing source cells are
    inserted after the cell that precedes them in the source.
    """
    nb = copy.deepcopy(submission)
    by_id = {
        c.metadata.nbgrader.grade_id: c
        for c in source.cells
        if c.get("metadata", {}).get("nbgrader", {}).get("grade_id")
    }
    seen, cells = set(), []
    for cell in nb.cells:
        grade_id = cell.get("metadata", {}).get("nbgrader", {}).get("grade_id")
        if grade_id in by_id and grade_id not in seen:
            seen.add(grade_id)
            if cell_kind(by_id[grade_id]) in ("test", "locked"):
                cell = copy.deepcopy(by_id[grade_id])
            cells.append(cell)
        elif grade_id in by_id:  # a duplicated graded cell: keep the first only
            continue
        else:
            cell.get("metadata", {}).pop("nbgrader", None)  # student-invented metadata: free cell
            cells.append(cell)
    previous = None
    for grade_id, source_cell in by_id.items():
        if grade_id not in seen:
            where = (
                0
                if previous is None
                else next(
                    (
                        i + 1
                        for i, c in enumerate(cells)
                        if c.get("metadata", {}).get("nbgrader", {}).get("grade_id") == previous
                    ),
                    len(cells),
                )
            )
            cells.insert(where, copy.deepcopy(source_cell))
        previous = grade_id
    nb.cells = cells
    return nb


def unreadable_result(source, reason: str) -> NotebookNode:
    """The source notebook with every test cell failed by ``reason`` (0 points each), for a
    submission that cannot be read (invalid JSON, empty, nbformat 3, ...)."""
    nb = copy.deepcopy(source)
    for cell in nb.cells:
        if cell_kind(cell) == "test":
            cell.outputs = [error_output("UnreadableSubmission", reason)]
        elif cell.get("cell_type") == "code":
            cell.outputs = []
    return nb


def read_submission(path):
    """(notebook, None) or (None, why it cannot be graded)."""
    try:
        with open(path, encoding="utf-8") as handle:
            text = handle.read()
        if not text.strip():
            return None, "the submitted notebook is an empty file."
        nb = nbformat.reads(text, as_version=nbformat.NO_CONVERT)
        if nb.get("nbformat") != 4:
            return None, (
                f"the submitted notebook uses nbformat {nb.get('nbformat')}; expected "
                "nbformat 4 (save it with a current Jupyter)."
            )
        nbformat.validate(nb)
        return nb, None
    except Exception as exc:  # noqa: BLE001 - any parse failure is the student's broken file
        return None, f"the submitted notebook could not be read: {str(exc)[:300]}"

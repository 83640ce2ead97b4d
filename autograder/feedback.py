"""Feedback clean-up: a traceback must not quote the hidden tests it ran through.

IPython prints one traceback entry per frame, each with a few source lines around the failing
line. The frames of the test cell itself would show the hidden test's source, and the frames of
the grading library show its code and paths, so `ShortTracebacks` keeps only the frames of the
student's other cells (where their code failed) and the final ``ExceptionName: message`` line,
which is the feedback.
"""

from __future__ import annotations

import re

from nbgrader.preprocessors import NbGraderPreprocessor

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

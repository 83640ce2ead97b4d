"""The book's "Exercises" sections state each assignment's points; they must match the sources.

The points live in `solutions/<assignment>/<notebook>.md` (the one source of truth); a chapter that
quotes a different total has drifted.
"""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from autograder.notebooks import assignments, build_notebook, graded_cells, sources

BOOK = Path(__file__).resolve().parents[1] / "book"
# "| **total** | ... | **12 points** |", "| **total** | **6** | |" or "one cell, worth 10 points"
TOTAL = re.compile(r"\|\s*\*\*total\*\*[^\n]*?\*\*(\d+)(?: points)?\*\*|worth (\d+) points")


def source_points(assignment_id: str) -> float:
    return sum(
        sum(graded_cells(build_notebook(md)).values()) for md in sources(assignment_id)
    )


@pytest.mark.parametrize("assignment_id", assignments())
def test_chapter_states_the_assignments_total_points(assignment_id):
    chapter = BOOK / f"{assignment_id}.md"
    stated = [int(a or b) for a, b in TOTAL.findall(chapter.read_text(encoding="utf-8"))]
    assert stated, (
        f"{chapter.name}: expected a points total in its Exercises section. Received: none."
    )
    assert stated == [source_points(assignment_id)] * len(stated), (
        f"{chapter.name}: states {stated} points, but solutions/{assignment_id} grades "
        f"{source_points(assignment_id)}."
    )

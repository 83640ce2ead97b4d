"""The committed notebooks are exactly what the build produces from the markdown sources.

`python -m autograder build-exercises` (make exercises) writes solutions/<a>/<nb>.ipynb and, with
the real `nbgrader generate_assignment`, exercises/<a>/. Here it rebuilds both into a temp dir
and any difference (a source edited without rebuilding, a hand-edited release) fails.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from autograder.notebooks import EXERCISES, SOLUTIONS, assignments, sources
from autograder.pipeline import build_exercises

pytestmark = pytest.mark.xdist_group(name="grading")

ASSIGNMENTS = assignments()


@pytest.fixture(scope="module")
def rebuilt(tmp_path_factory):
    root = tmp_path_factory.mktemp("rebuild")
    build_exercises(out=root / "exercises", sources_out=root / "solutions")
    return root


def _files(folder: Path) -> list[str]:
    return sorted(str(p.relative_to(folder)) for p in folder.rglob("*") if p.is_file())


def test_the_course_has_assignments():
    assert "01_backprop" in ASSIGNMENTS and "02_activations" in ASSIGNMENTS


@pytest.mark.parametrize("assignment", ASSIGNMENTS)
def test_source_notebooks_match_the_markdown(rebuilt, assignment):
    for md in sources(assignment):
        committed = SOLUTIONS / assignment / f"{md.stem}.ipynb"
        assert committed.exists(), f"{committed} is missing: run `make exercises`."
        fresh = rebuilt / "solutions" / assignment / f"{md.stem}.ipynb"
        assert committed.read_text(encoding="utf-8") == fresh.read_text(encoding="utf-8"), (
            f"{committed} differs from what {md.name} builds: run `make exercises`."
        )


@pytest.mark.parametrize("assignment", ASSIGNMENTS)
def test_release_matches_generate_assignment(rebuilt, assignment):
    committed, fresh = EXERCISES / assignment, rebuilt / "exercises" / assignment
    assert committed.is_dir(), f"{committed} is missing: run `make exercises`."
    assert _files(committed) == _files(fresh), (
        f"{committed} has other files than the release: run `make exercises`."
    )
    for name in _files(fresh):
        assert (committed / name).read_bytes() == (fresh / name).read_bytes(), (
            f"{committed / name} differs from nbgrader's release: run `make exercises`."
        )


def test_releases_hold_only_notebooks_of_known_assignments():
    released = sorted(p.name for p in EXERCISES.iterdir() if p.is_dir())
    assert released == ASSIGNMENTS, (
        "exercises/ and solutions/ list different assignments: run `make exercises`."
    )
    stray = [p for p in EXERCISES.rglob("*") if p.is_file() and p.suffix != ".ipynb"]
    assert stray == [], f"only notebooks are released (the .md sources hold the solutions): {stray}"


@pytest.mark.parametrize("assignment", ASSIGNMENTS)
def test_release_has_no_solution_or_hidden_test(assignment):
    for nb_path in (EXERCISES / assignment).glob("*.ipynb"):
        text = "".join(
            "".join(c["source"]) for c in json.loads(nb_path.read_text(encoding="utf-8"))["cells"]
        )
        for marker in ("BEGIN SOLUTION", "END SOLUTION", "BEGIN HIDDEN TESTS", "autograder"):
            assert marker not in text, f"{nb_path} contains {marker!r}"
        assert "raise NotImplementedError()" in text, (
            f"{nb_path} leaves nothing for the student to write"
        )

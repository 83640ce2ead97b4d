"""End to end: the real `python -m autograder grade` (real nbgrader) on a generated demo class.

For every assignment found in solutions/*/*.md: the reference solution gets full marks, the
untouched release gets 0 without crashing the run, and each bug declared in
tests/fixtures/bugs.yaml loses exactly the tests it lists, with feedback that names the mistake.
The grading runs once for the module (a fixture); the tests read its outputs.
"""

from __future__ import annotations

import csv
import html
import json
import re
import subprocess
import sys
import zipfile
from pathlib import Path

import nbformat
import pytest

from autograder.demo import BUGS, load_bugs, make_demo_class
from autograder.notebooks import REPO, assignments, build_notebook, graded_cells, sources
from autograder.pipeline import build_exercises

pytestmark = [pytest.mark.xdist_group(name="grading"), pytest.mark.slow]

ASSIGNMENTS = assignments()
BUG_LIST = [(a, bug) for a, bugs in load_bugs().items() for bug in bugs]


def _tests(assignment: str) -> dict[str, float]:
    found = {}
    for md in sources(assignment):
        found.update(graded_cells(build_notebook(md)))
    return found


def _grade(submissions: Path, out: Path, *extra: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "autograder", "grade", str(submissions), "--out", str(out), *extra],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=900,
    )


# Students whose files are unusable: their own problem (zero, with a reason), never a crash.
BROKEN = {"broken": "could not be read", "empty": "not submitted"}


@pytest.fixture(scope="module")
def graded(tmp_path_factory):
    """Grade the whole demo class once, from a .zip wrapped in a folder as LMS downloads are."""
    root = tmp_path_factory.mktemp("e2e")
    build_exercises(
        out=root / "exercises", sources_out=root / "solutions"
    )  # fresh releases, repo untouched
    roster = make_demo_class(root / "class", exercises=root / "exercises")
    for student in BROKEN:
        (root / "class" / student / "01_backprop").mkdir(parents=True)
        roster[student] = ["01_backprop"]
    (root / "class" / "broken" / "01_backprop" / "backprop.ipynb").write_text(
        "{not json", encoding="utf-8"
    )
    with zipfile.ZipFile(root / "class.zip", "w") as archive:
        for path in sorted((root / "class").rglob("*")):
            archive.write(path, Path("submitted") / path.relative_to(root / "class"))
    run = _grade(root / "class.zip", root / "out", "--quiet")
    assert run.returncode == 0, f"grading failed:\n{run.stdout}\n{run.stderr}"
    assert not (root / "out" / "grading.log").exists(), (root / "out" / "grading.log").read_text()
    return {"root": root, "out": root / "out", "roster": roster, "run": run}


def _results(graded, student: str) -> dict[str, dict]:
    data = json.loads((graded["out"] / "results" / f"{student}.json").read_text(encoding="utf-8"))
    return {t["name"]: t for t in data["tests"]}


def test_every_assignment_declares_a_bug():
    declared = {a for a, _ in BUG_LIST}
    assert set(ASSIGNMENTS) <= declared, (
        f"add bug injections to {BUGS} for {sorted(set(ASSIGNMENTS) - declared)}"
    )


@pytest.mark.parametrize("assignment", ASSIGNMENTS)
def test_solution_gets_full_marks(graded, assignment):
    results = _results(graded, "solution")
    for name, points in _tests(assignment).items():
        assert results[name]["max_score"] == points
        assert results[name]["score"] == points, f"{assignment}/{name}: {results[name]['output']}"
        assert "✔" in results[name]["output"]


@pytest.mark.parametrize("assignment", ASSIGNMENTS)
def test_blank_release_gets_zero(graded, assignment):
    results = _results(graded, "blank")
    for name in _tests(assignment):
        assert results[name]["score"] == 0, f"{assignment}/{name} passes on the untouched release"
        assert results[name]["output"], f"{assignment}/{name}: a failing test needs feedback"


@pytest.mark.parametrize(
    ("assignment", "bug"), BUG_LIST, ids=[bug["student"] for _, bug in BUG_LIST]
)
def test_bug_loses_exactly_its_tests(graded, assignment, bug):
    results = _results(graded, bug["student"])
    expected = _tests(assignment)
    assert set(results) == set(expected), (
        "a student's results cover exactly the submitted assignment's tests"
    )
    for name, points in expected.items():
        result = results[name]
        if name in bug["fails"]:
            assert result["score"] == 0, f"{bug['student']}: {name} should fail"
            message = bug.get("message", [])
            for fragment in message.get(name, []) if isinstance(message, dict) else message:
                assert fragment in result["output"], (
                    f"{bug['student']}/{name}: {fragment!r} not in feedback:\n{result['output']}"
                )
        else:
            assert result["score"] == points, (
                f"{bug['student']}: {name} should pass: {result['output']}"
            )


def test_results_schema_and_totals(graded):
    for student, submitted in graded["roster"].items():
        data = json.loads(
            (graded["out"] / "results" / f"{student}.json").read_text(encoding="utf-8")
        )
        names = [t["name"] for t in data["tests"]]
        expected = [name for a in sorted(submitted) for name in _tests(a)]
        assert sorted(names) == sorted(expected), (
            f"{student}: tests[] must cover exactly the submitted assignments"
        )
        assert data["score"] == pytest.approx(sum(t["score"] for t in data["tests"]))
        for test in data["tests"]:
            assert set(test) >= {"name", "score", "max_score", "output"}


def test_grades_csv_is_nbgraders_export(graded):
    with open(graded["out"] / "grades.csv", newline="", encoding="utf-8") as f:
        rows = list(csv.DictReader(f))
    scores = {(r["student_id"], r["assignment"]): float(r["score"]) for r in rows}
    for a in ASSIGNMENTS:
        assert scores[("solution", a)] == sum(_tests(a).values())
        assert scores[("blank", a)] == 0


def _hidden_lines(assignment: str) -> list[str]:
    lines = []
    for md in sources(assignment):
        for cell in build_notebook(md).cells:
            inside = False
            for line in cell.source.split("\n"):
                if "BEGIN HIDDEN TESTS" in line:
                    inside = True
                elif "END HIDDEN TESTS" in line:
                    inside = False
                elif inside and line.strip():
                    lines.append(line.strip())
    return lines


def _visible_text(page: str) -> str:
    return html.unescape(re.sub(r"<[^>]+>", "", page))


@pytest.mark.parametrize("assignment", ASSIGNMENTS)
def test_feedback_has_no_hidden_tests(graded, assignment):
    hidden = _hidden_lines(assignment)
    assert hidden, f"{assignment} has no hidden tests"
    for student, submitted in graded["roster"].items():
        if assignment not in submitted or student in BROKEN:
            continue
        for md in sources(assignment):
            page = graded["out"] / "feedback" / student / assignment / f"{md.stem}.html"
            assert page.exists(), f"no feedback {page}"
            text = _visible_text(page.read_text(encoding="utf-8"))
            for line in hidden:
                assert line not in text, f"{page} shows hidden test source: {line!r}"
            assert "HIDDEN TESTS" not in text and "/autograder/" not in text
            assert "✔" in text or student != "solution"


def test_buggy_feedback_page_shows_the_diagnosis(graded):
    a, bug = next(
        (a, bug) for a, bug in BUG_LIST if bug["student"] == "bug_relu_backward_times_input"
    )
    page = graded["out"] / "feedback" / bug["student"] / a / f"{bug['notebook']}.html"
    text = _visible_text(page.read_text(encoding="utf-8"))
    for fragment in bug["message"]:
        assert fragment in text


@pytest.mark.parametrize("student", sorted(BROKEN))
def test_unreadable_or_missing_notebooks_score_zero_with_a_reason(graded, student):
    data = json.loads((graded["out"] / "results" / f"{student}.json").read_text(encoding="utf-8"))
    assert data["score"] == 0 and {t["name"] for t in data["tests"]} == set(_tests("01_backprop"))
    assert all(BROKEN[student] in t["output"] for t in data["tests"])


def test_instructor_errors_exit_nonzero(tmp_path):
    missing = _grade(tmp_path / "nowhere", tmp_path / "out")
    assert missing.returncode == 2 and "not found" in missing.stderr
    (tmp_path / "class" / "alice" / "99_unknown").mkdir(parents=True)
    unknown = _grade(tmp_path / "class", tmp_path / "out")
    assert unknown.returncode == 2 and "unknown assignment '99_unknown'" in unknown.stderr
    assert "Traceback" not in unknown.stderr
    (tmp_path / "class" / "alice" / "99_unknown").rmdir()
    nested = _grade(tmp_path / "class", tmp_path / "class" / "out")
    assert nested.returncode == 2 and "must not contain each other" in nested.stderr


def test_help():
    run = subprocess.run(
        [sys.executable, "-m", "autograder", "grade", "--help"],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert run.returncode == 0 and "--out" in run.stdout and "submitted layout" in run.stdout


def test_feedback_keeps_the_students_own_traceback_frames():
    from autograder.feedback import short_traceback

    tb = [
        "\x1b[0;31m----\x1b[0m",
        "Cell \x1b[0;32mIn[7], line 3\x1b[0m\n----> 3 check_activation(ReLU, ...)",
        "File /srv/autograder/checks.py:52, in compare_arrays",
        "Cell In[4], line 9, in ReLU.backward",
        "CheckFailed: ReLU.backward is wrong",
    ]
    assert short_traceback(tb, 7) == [
        "Cell In[4], line 9, in ReLU.backward",
        "CheckFailed: ReLU.backward is wrong",
    ]


def test_submissions_are_real_notebooks(graded):
    for nb_path in (graded["root"] / "class").rglob("*.ipynb"):
        if nb_path.parts[-3] in BROKEN:
            continue
        nbformat.validate(nbformat.read(nb_path, as_version=4))

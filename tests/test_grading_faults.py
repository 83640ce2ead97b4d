"""Grading you can trust, at class scale: the real `python -m autograder grade` on broken work.

One class holds an honest `solution` student, a `blank` one and every case of
tests/malformed/cases.yaml (unreadable files, damaged or renamed cells, a notebook under the wrong
name, code that kills its sandbox, segfaults, loops, exhausts memory or floods output). Each broken
submission costs only its own tests, with a reason in results.json and the feedback, and the
honest students' results are byte-identical to a clean run's. A run killed with SIGKILL midway and
re-run on the same OUT gives exactly the uninterrupted grades (more in test_grading_class.py).
"""

from __future__ import annotations

import copy
import csv
import fcntl
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import nbformat
import pytest
import yaml

from autograder.demo import fill_release, make_demo_class
from autograder.notebooks import REPO, build_notebook, graded_cells, sources
from autograder.pipeline import build_exercises

pytestmark = [pytest.mark.xdist_group(name="faults"), pytest.mark.slow]

ASSIGNMENTS = ["01_backprop", "02_activations"]
CASES = yaml.safe_load((REPO / "tests" / "malformed" / "cases.yaml").read_text(encoding="utf-8"))
CELL_TIMEOUT = "10"  # the infinite loop costs 10 s, not nbgrader_config's 120


def _tests(assignment: str) -> dict[str, float]:
    found = {}
    for md in sources(assignment):
        found.update(graded_cells(build_notebook(md)))
    return found


def _grade(submissions: Path, out: Path, **popen) -> subprocess.CompletedProcess:
    command = [sys.executable, "-m", "autograder", "grade", str(submissions), "--out", str(out)]
    command += ["--quiet", "--cell-timeout", CELL_TIMEOUT]
    return subprocess.run(command, cwd=REPO, capture_output=True, text=True, timeout=900, **popen)


def _index(nb, grade_id: str) -> int:
    return next(
        i
        for i, c in enumerate(nb.cells)
        if c.get("metadata", {}).get("nbgrader", {}).get("grade_id") == grade_id
    )


def build_case(case: dict, exercises: Path) -> str:
    """The file the student hands in, as text."""
    if case["base"] == "raw":
        return case["content"]
    a, name = case["assignment"], case["notebook"]
    release = nbformat.read(exercises / a / f"{name}.ipynb", as_version=4)
    source = build_notebook(REPO / "solutions" / a / f"{name}.md")
    nb = fill_release(release, source) if case["base"] == "solution" else release
    for patch in case.get("patches", []):
        if "cell" in patch and "code" in patch:
            nb.cells[_index(nb, patch["cell"])].source = patch["code"]
        elif "cell" in patch:
            cell = nb.cells[_index(nb, patch["cell"])]
            assert cell.source.count(patch["old"]) == 1, f"{case['student']}: {patch}"
            cell.source = cell.source.replace(patch["old"], patch["new"])
        elif "after" in patch:
            nb.cells.insert(
                _index(nb, patch["after"]) + 1, nbformat.v4.new_code_cell(patch["code"])
            )
        elif "delete" in patch:
            del nb.cells[_index(nb, patch["delete"])]
        elif "duplicate" in patch:
            i = _index(nb, patch["duplicate"])
            twin = copy.deepcopy(nb.cells[i])
            twin["id"] = f"{twin.get('id', 'cell')}-copy"  # cell ids must stay unique
            nb.cells.insert(i + 1, twin)
        elif "empty_metadata" in patch:
            nb.cells[_index(nb, patch["empty_metadata"])].metadata["nbgrader"] = {}
        elif "move_to_end" in patch:
            nb.cells.append(nb.cells.pop(_index(nb, patch["move_to_end"])))
        else:
            raise ValueError(f"{case['student']}: unknown patch {patch}")
    return nbformat.writes(nb)


@pytest.fixture(scope="module")
def workspace(tmp_path_factory):
    root = tmp_path_factory.mktemp("faults")
    build_exercises(out=root / "exercises", sources_out=root / "solutions", only=ASSIGNMENTS)
    make_demo_class(
        root / "clean",
        bugs_file=root / "no-bugs.yaml",
        only=ASSIGNMENTS,
        exercises=root / "exercises",
    )
    return root


@pytest.fixture(scope="module")
def clean(workspace):
    """The honest students alone, uninterrupted: the reference every other run must match."""
    run = _grade(workspace / "clean", workspace / "out-clean")
    assert run.returncode == 0, run.stderr
    return workspace / "out-clean"


@pytest.fixture(scope="module")
def faulty(workspace):
    """The honest students plus every malformed/faulty case, graded as one class."""
    shutil.copytree(workspace / "clean", workspace / "faulty")
    for case in CASES:
        name = case.get("save_as", f"{case['notebook']}.ipynb")
        target = workspace / "faulty" / case["student"] / case["assignment"] / name
        target.parent.mkdir(parents=True)
        target.write_text(build_case(case, workspace / "exercises"), encoding="utf-8")
    started = time.monotonic()
    run = _grade(workspace / "faulty", workspace / "out-faulty")
    assert run.returncode == 0, f"grading failed:\n{run.stdout}\n{run.stderr}"
    return {"out": workspace / "out-faulty", "run": run, "seconds": time.monotonic() - started}


def _results(out: Path, student: str) -> dict:
    return json.loads((out / "results" / f"{student}.json").read_text(encoding="utf-8"))


def _csv_rows(out: Path) -> list[dict]:
    with open(out / "grades.csv", newline="", encoding="utf-8") as f:
        rows = list(csv.DictReader(f))
    for row in rows:
        row.pop("timestamp")
    return rows


def _snapshot(out: Path) -> dict:
    """grades.csv rows and every results/*.json, timestamps aside (results have none)."""
    results = {p.name: p.read_text(encoding="utf-8") for p in (out / "results").glob("*.json")}
    return {"grades": _csv_rows(out), "results": results}


def test_whole_class_is_graded(faulty):
    students = {"solution", "blank"} | {case["student"] for case in CASES}
    assert {p.stem for p in (faulty["out"] / "results").glob("*.json")} == students
    rows = {(r["student_id"], r["assignment"]) for r in _csv_rows(faulty["out"])}
    for case in CASES:  # no gradebook row lost, even for files nbgrader never saw
        assert (case["student"], case["assignment"]) in rows
    for student in ("solution", "blank"):
        assert {(student, a) for a in ASSIGNMENTS} <= rows
    assert "Traceback" not in faulty["run"].stderr


@pytest.mark.parametrize("student", ["solution", "blank"])
def test_honest_students_match_a_clean_run(faulty, clean, student):
    assert _results(faulty["out"], student) == _results(clean, student)
    clean_rows = [r for r in _csv_rows(clean) if r["student_id"] == student]
    assert [r for r in _csv_rows(faulty["out"]) if r["student_id"] == student] == clean_rows


@pytest.mark.parametrize("case", CASES, ids=[case["student"] for case in CASES])
def test_broken_submission_loses_only_its_tests(faulty, case):
    data = _results(faulty["out"], case["student"])
    a = case["assignment"]
    expected = _tests(a)
    tests = {t["name"]: t for t in data["tests"]}
    assert list(tests) == list(expected), "every test of the assignment is present, in order"
    lost = set(expected) if case["lost"] == "all" else set(case["lost"])
    for name, points in expected.items():
        test = tests[name]
        assert test["max_score"] == points
        if name in lost:
            assert test["score"] == 0, f"{case['student']}/{name} should score 0"
            assert test["output"], f"{case['student']}/{name}: a 0 needs a reason"
            for fragment in case.get("message", []):
                assert fragment in test["output"], f"{fragment!r} not in {test['output']!r}"
        else:
            assert test["score"] == points, f"{case['student']}/{name}: {test['output']}"
    assert data["score"] == pytest.approx(sum(t["score"] for t in data["tests"]))
    assert data["max_score"] == sum(expected.values())
    rows = _csv_rows(faulty["out"])
    mine = [r for r in rows if (r["student_id"], r["assignment"]) == (case["student"], a)]
    assert [float(r["score"]) for r in mine] == [data["score"]]


UNREADABLE = [case for case in CASES if case["lost"] == "all"]


@pytest.mark.parametrize("case", UNREADABLE, ids=[case["student"] for case in UNREADABLE])
def test_ungraded_notebook_gets_a_feedback_page_and_a_summary(faulty, case):
    page = faulty["out"] / "feedback" / case["student"] / case["assignment"]
    text = (page / f"{case['notebook']}.html").read_text(encoding="utf-8")
    assert "Not graded" in text and case["message"][0] in text
    summary = _results(faulty["out"], case["student"])["output"]
    assert f"{case['assignment']}/{case['notebook']}.ipynb scored 0" in summary


def test_output_flood_stays_out_of_the_results(faulty):
    result = faulty["out"] / "results" / "output_flood.json"
    page = faulty["out"] / "feedback" / "output_flood" / "01_backprop" / "backprop.html"
    # The page inlines MathJax (about 2 MB, so that it renders offline): measure the rest.
    text = re.sub(r"<script>.*?</script>", "", page.read_text(encoding="utf-8"), flags=re.S)
    assert result.stat().st_size < 100_000 and len(text.encode()) < 1_000_000


def test_faults_cost_seconds_not_minutes(faulty):
    # 20-odd notebooks, one 10 s timeout: nowhere near nbgraders' 120 s per hung cell.
    assert faulty["seconds"] < 300, faulty["seconds"]


def _plant_half_written_out(out: Path) -> None:
    """What a killed older run could leave: a corrupt gradebook, partial feedback, a ghost."""
    (out / "feedback" / "solution" / "01_backprop").mkdir(parents=True)
    (out / "feedback" / "solution" / "01_backprop" / "backprop.html").write_text("<html><bo")
    (out / "results").mkdir()
    (out / "results" / "ghost.json").write_text('{"score": 99')
    (out / "gradebook.db").write_bytes(b"SQLite format 3\x00" + b"\x00" * 50)
    (out.parent / f".{out.name}.lock").write_text("12345")  # a lock file nobody holds
    (out.parent / f"{out.name}.tmp-1").mkdir()  # a dead run's scratch folder


def test_killed_run_rerun_gives_the_uninterrupted_grades(workspace, clean):
    out = workspace / "out-killed"
    _plant_half_written_out(out)
    command = [sys.executable, "-m", "autograder", "grade", str(workspace / "clean")]
    command += ["--out", str(out), "--quiet", "--cell-timeout", CELL_TIMEOUT]
    proc = subprocess.Popen(
        command,
        cwd=REPO,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,
    )
    try:
        deadline = time.monotonic() + 300
        while not list(out.glob(".units/*/*/unit.json")):  # midway: a first unit is committed
            assert proc.poll() is None, "the run ended before it could be interrupted"
            assert time.monotonic() < deadline, "grading never started"
            time.sleep(0.05)
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait(timeout=30)
    finally:
        try:
            os.killpg(proc.pid, signal.SIGKILL)  # sandbox children of the killed run
        except ProcessLookupError:
            pass
    # OUT is published only once everything is graded: the killed run left its files alone.
    assert (out / "results" / "ghost.json").exists(), "a killed run must not publish"
    rerun = _grade(workspace / "clean", out)
    assert rerun.returncode == 0, rerun.stderr
    assert _snapshot(out) == _snapshot(clean)
    assert sorted(p.relative_to(out) for p in (out / "feedback").rglob("*.html")) == sorted(
        p.relative_to(clean) for p in (clean / "feedback").rglob("*.html")
    )
    assert not list(out.parent.glob(f"{out.name}.tmp-*")), "scratch folders are cleaned up"


def test_second_run_on_a_busy_out_is_refused(workspace, tmp_path):
    out = tmp_path / "out"
    with open(tmp_path / ".out.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
        run = _grade(workspace / "clean", out)
    assert run.returncode == 2 and "another grading run" in run.stderr
    assert not out.exists()


def test_out_that_is_not_a_grading_output_is_refused(workspace, tmp_path):
    (tmp_path / "out").mkdir()
    (tmp_path / "out" / "thesis.tex").write_text("precious")
    run = _grade(workspace / "clean", tmp_path / "out")
    assert run.returncode == 2 and "not a grading output" in run.stderr
    assert (tmp_path / "out" / "thesis.tex").read_text() == "precious"

"""Grading a class at scale with the real `python -m autograder grade` (real nbgrader, sandbox):
preflight, infrastructure failures, --jobs, incremental and resumable re-runs, `nbgrader export`.

The class: `solution` and `blank` hand in 01_backprop and 03_initializers, `carol` hands in a
buggy 01_backprop (numerical gradient twice too large) and a correct 03_initializers.

Every run uses a frozen copy of the grading code (autograder/, npdl, solutions/, nbgrader's
config), made when the module starts: the keys of incremental grading hash that code, and the
working tree may change while the tests run. The check-changed test edits a check in its own copy.
"""

from __future__ import annotations

import contextlib
import csv
import json
import os
import random
import re
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import yaml

from autograder.notebooks import REPO

pytestmark = [pytest.mark.xdist_group(name="grading_class"), pytest.mark.slow]

ASSIGNMENTS = ["01_backprop", "03_initializers"]
CELL_TIMEOUT = "30"
BIN = Path(sys.executable).parent
UNITS = 6  # (student, assignment) pairs of the class


def _snapshot(target: Path) -> Path:
    """A copy of what grading runs and depends on, immune to edits of the working tree."""
    ignore = shutil.ignore_patterns("__pycache__", "*.pyc")
    for name in ("autograder", "reference_impl", "solutions"):
        shutil.copytree(REPO / name, target / name, ignore=ignore)
    shutil.copy(REPO / "nbgrader_config.py", target)
    return target


def _grade(repo: Path, submissions: Path, out: Path, *extra: str, env: dict | None = None,
           prefix: tuple[str, ...] = ()) -> subprocess.CompletedProcess:
    command = [*prefix, sys.executable, "-m", "autograder", "grade", str(submissions)]
    command += ["--out", str(out), "--quiet", "--cell-timeout", CELL_TIMEOUT, *extra]
    return subprocess.run(command, cwd=repo, env=_env(repo, env), capture_output=True, text=True,
                          timeout=1200)


def _env(repo: Path, extra: dict | None = None) -> dict:
    env = {k: v for k, v in os.environ.items() if k not in ("NPDL_SANDBOX", "NPDL_GRADING_FAULT")}
    env["PYTHONPATH"] = f"{repo}{os.pathsep}{repo / 'reference_impl'}"
    return {**env, **(extra or {})}


def _summary(run: subprocess.CompletedProcess) -> dict[str, int]:
    found = re.search(r"graded (\d+), reused (\d+), failed (\d+)", run.stdout)
    assert found, f"no summary line:\n{run.stdout}\n{run.stderr}"
    return dict(zip(("graded", "reused", "failed"), map(int, found.groups()), strict=True))


def _outputs(out: Path) -> dict[str, bytes]:
    """What the instructor gets: grades.csv, results/*.json and every feedback page."""
    files = {"grades.csv": (out / "grades.csv").read_bytes()}
    for folder in ("results", "feedback"):
        for path in sorted((out / folder).rglob("*")):
            if path.is_file():
                files[str(path.relative_to(out))] = path.read_bytes()
    return files


def _scores(out: Path) -> dict[tuple[str, str], str]:
    with open(out / "grades.csv", newline="", encoding="utf-8") as f:
        return {(r["student_id"], r["assignment"]): r["score"] for r in csv.DictReader(f)}


@pytest.fixture(scope="module")
def workspace(tmp_path_factory):
    from autograder.demo import make_demo_class
    from autograder.pipeline import build_exercises

    root = tmp_path_factory.mktemp("class")
    repo = _snapshot(root / "repo")
    build_exercises(out=root / "exercises", sources_out=root / "solutions", only=ASSIGNMENTS)
    bugs = yaml.safe_load((REPO / "tests" / "fixtures" / "bugs.yaml").read_text("utf-8"))
    bug = dict(next(b for b in bugs["01_backprop"] if b["student"].startswith("bug_gradient")))
    (root / "bugs.yaml").write_text(yaml.safe_dump({"01_backprop": [{**bug, "student": "carol"}]}))
    make_demo_class(root / "class", bugs_file=root / "bugs.yaml", only=ASSIGNMENTS,
                    exercises=root / "exercises")
    shutil.copytree(root / "class" / "solution" / "03_initializers",
                    root / "class" / "carol" / "03_initializers")
    return {"root": root, "repo": repo, "class": root / "class"}


@pytest.fixture(scope="module")
def reference(workspace):
    """The class graded by one worker: the grades every other run must reproduce."""
    out = workspace["root"] / "out-jobs1"
    run = _grade(workspace["repo"], workspace["class"], out, "--jobs", "1")
    assert run.returncode == 0, f"{run.stdout}\n{run.stderr}"
    assert _summary(run) == {"graded": UNITS, "reused": 0, "failed": 0}
    assert not (out / "grading.log").exists()
    scores = _scores(out)
    assert scores[("solution", "01_backprop")] == "6.0"
    assert scores[("blank", "01_backprop")] == "0.0"
    assert float(scores[("carol", "01_backprop")]) < 6
    assert scores[("carol", "03_initializers")] == "9.0"
    return out


def test_preflight_failure_exits_2_and_writes_no_grades(workspace, tmp_path):
    """A container without CAP_SYS_ADMIN: bubblewrap cannot create its namespaces."""
    out = tmp_path / "out"
    setpriv = ("setpriv", "--bounding-set", "-sys_admin", "--inh-caps", "-sys_admin", "--")
    run = _grade(workspace["repo"], workspace["class"], out, "--sandbox", "bwrap", prefix=setpriv)
    assert run.returncode == 2, f"{run.stdout}\n{run.stderr}"
    assert "the grading sandbox cannot start, so nothing was graded" in run.stderr
    assert "CAP_SYS_ADMIN" in run.stderr and "--sandbox process" in run.stderr  # what to do
    assert "Traceback" not in run.stderr
    assert not out.exists(), "a failed preflight writes nothing"


def test_jobs_2_gives_the_same_grades_as_jobs_1(workspace, reference):
    out = workspace["root"] / "out-jobs2"
    run = _grade(workspace["repo"], workspace["class"], out, "--jobs", "2")
    assert run.returncode == 0, f"{run.stdout}\n{run.stderr}"
    assert _summary(run) == {"graded": UNITS, "reused": 0, "failed": 0}
    assert "2 worker(s)" in run.stdout
    assert _outputs(out) == _outputs(reference)


def test_nbgrader_export_reads_the_merged_gradebook(reference, tmp_path):
    exported = tmp_path / "export.csv"
    run = subprocess.run(
        [str(BIN / "nbgrader"), "export", f"--CourseDirectory.db_url=sqlite:///{reference}/"
         "gradebook.db", "--to", str(exported)],
        cwd=tmp_path, capture_output=True, text=True, timeout=300,
        env={**os.environ, "PATH": f"{BIN}{os.pathsep}{os.environ['PATH']}"},
    )
    assert run.returncode == 0, run.stderr
    assert exported.read_bytes() == (reference / "grades.csv").read_bytes()
    assert len(_scores(reference)) == UNITS


def _unit_inode(out: Path, student: str, a: str) -> int:
    return (out / ".units" / student / a).stat().st_ino  # a new commit is a new folder


def test_incremental_reruns(workspace, reference):
    root, repo = workspace["root"], workspace["root"] / "repo-incremental"
    shutil.copytree(workspace["repo"], repo)  # the same frozen code: a check will change here
    submissions, out = root / "class-incremental", root / "out-incremental"
    shutil.copytree(workspace["class"], submissions)
    first = _grade(repo, submissions, out)
    assert first.returncode == 0 and _summary(first)["graded"] == UNITS, first.stderr
    assert _outputs(out) == _outputs(reference)

    unchanged = _grade(repo, submissions, out)
    assert unchanged.returncode == 0, unchanged.stderr
    assert _summary(unchanged) == {"graded": 0, "reused": UNITS, "failed": 0}
    assert _outputs(out) == _outputs(reference)

    # One changed: carol fixes her 01_backprop (now the solution's notebook).
    shutil.copy(submissions / "solution" / "01_backprop" / "backprop.ipynb",
                submissions / "carol" / "01_backprop" / "backprop.ipynb")
    changed = _grade(repo, submissions, out)
    assert changed.returncode == 0, changed.stderr
    assert _summary(changed) == {"graded": 1, "reused": UNITS - 1, "failed": 0}
    assert _scores(out)[("carol", "01_backprop")] == "6.0"
    assert (out / "results" / "carol.json").read_bytes() == (
        reference / "results" / "solution.json").read_bytes()

    # One added: a late submission grades only that student.
    shutil.copytree(submissions / "blank", submissions / "dave")
    added = _grade(repo, submissions, out)
    assert added.returncode == 0, added.stderr
    assert _summary(added) == {"graded": 2, "reused": UNITS, "failed": 0}
    assert (out / "results" / "dave.json").read_bytes() == (
        reference / "results" / "blank.json").read_bytes()
    students = ["blank", "carol", "dave", "solution"]
    before = {(s, a): _unit_inode(out, s, a) for s in students for a in ASSIGNMENTS}
    scores = _scores(out)

    # A check changed: 03_initializers is regraded for everyone, 01_backprop for nobody.
    check = repo / "autograder" / "checks" / "initializers.py"
    check.write_text(check.read_text("utf-8") + "\nCHANGED = True  # a new version of the check\n")
    rechecked = _grade(repo, submissions, out)
    assert rechecked.returncode == 0, rechecked.stderr
    assert _summary(rechecked) == {"graded": 4, "reused": 4, "failed": 0}
    after = {(s, a): _unit_inode(out, s, a) for s in students for a in ASSIGNMENTS}
    for s in students:
        assert after[(s, "01_backprop")] == before[(s, "01_backprop")], f"{s}: regraded"
        assert after[(s, "03_initializers")] != before[(s, "03_initializers")], f"{s}: reused"
    assert _scores(out) == scores

    forced = _grade(repo, submissions, out, "--force")
    assert forced.returncode == 0 and _summary(forced)["graded"] == 8, forced.stderr


def test_infrastructure_failure_mid_class_is_never_a_grade(workspace, reference):
    """carol's 03_initializers cannot start a sandbox (twice: the retry fails too); solution's
    01_backprop fails once and succeeds on the retry. Nothing of it becomes a score."""
    out = workspace["root"] / "out-infra"
    fault = {"NPDL_GRADING_FAULT": "carol/03_initializers,solution/01_backprop:1"}
    run = _grade(workspace["repo"], workspace["class"], out, "--jobs", "2", env=fault)
    assert run.returncode == 3, f"{run.stdout}\n{run.stderr}"
    assert _summary(run) == {"graded": UNITS - 1, "reused": 0, "failed": 1}
    assert "carol: not graded" in run.stdout
    table = run.stderr[run.stderr.index("why it is not graded"):]
    assert re.search(r"carol\s+03_initializers\s+the sandbox could not start", table)
    assert "solution" not in table and "blank" not in table
    scores = _scores(out)
    assert scores[("carol", "03_initializers")] == "", "an ungraded unit has no score, not a 0"
    assert {k: v for k, v in scores.items() if k[0] != "carol"} == {
        k: v for k, v in _scores(reference).items() if k[0] != "carol"}
    assert scores[("carol", "01_backprop")] == _scores(reference)[("carol", "01_backprop")]
    assert not (out / "results" / "carol.json").exists(), "no total for half-graded work"
    for student in ("solution", "blank"):
        assert (out / "results" / f"{student}.json").read_bytes() == (
            reference / "results" / f"{student}.json").read_bytes()
    assert "carol/03_initializers: not graded (infrastructure)" in (
        out / "grading.log").read_text("utf-8")

    rerun = _grade(workspace["repo"], workspace["class"], out, "--jobs", "2")
    assert rerun.returncode == 0, rerun.stderr
    assert _summary(rerun) == {"graded": 1, "reused": UNITS - 1, "failed": 0}
    assert _outputs(out) == _outputs(reference)
    assert not (out / "grading.log").exists()


def _complete_files(out: Path) -> None:
    """Whatever a killed run left, every published file and committed unit is whole."""
    for path in [*out.glob("results/*.json"), *out.glob(".units/*/*/unit.json")]:
        json.loads(path.read_text("utf-8"))
    if (out / "grades.csv").exists():
        with open(out / "grades.csv", newline="", encoding="utf-8") as f:  # closed: no warning
            rows = list(csv.reader(f))
        assert rows and all(len(row) == len(rows[0]) for row in rows)


def test_kill_9_at_random_points_then_rerun_gives_the_uninterrupted_grades(workspace, reference):
    seed = random.randrange(1 << 30)
    print(f"random seed {seed}")  # shown by pytest on failure, to replay the same kill times
    rng = random.Random(seed)
    out = workspace["root"] / "out-killed"
    command = [sys.executable, "-m", "autograder", "grade", str(workspace["class"]), "--out",
               str(out), "--quiet", "--cell-timeout", CELL_TIMEOUT, "--jobs", "2"]
    for _ in range(3):
        proc = subprocess.Popen(command, cwd=workspace["repo"], env=_env(workspace["repo"]),
                                stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                                start_new_session=True)
        try:
            time.sleep(rng.uniform(2.0, 40.0))
            os.kill(proc.pid, signal.SIGKILL)  # the main process only: workers must follow
            proc.wait(timeout=60)
            deadline = time.monotonic() + 30
            while _group_alive(proc.pid) and time.monotonic() < deadline:
                time.sleep(0.2)
            assert not _group_alive(proc.pid), "grading workers outlived the killed run"
        finally:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(proc.pid, signal.SIGKILL)
        if out.exists():
            _complete_files(out)
    rerun = _grade(workspace["repo"], workspace["class"], out, "--jobs", "2")
    assert rerun.returncode == 0, rerun.stderr
    summary = _summary(rerun)
    assert summary["graded"] + summary["reused"] == UNITS and summary["failed"] == 0
    assert _outputs(out) == _outputs(reference)
    assert not [p for p in out.rglob("*") if ".tmp-" in p.name or ".old-" in p.name]


def _group_alive(pgid: int) -> bool:
    try:
        os.killpg(pgid, 0)
    except ProcessLookupError:
        return False
    return True

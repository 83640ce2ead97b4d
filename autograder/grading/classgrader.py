"""`python -m autograder grade`: grade a class of submissions with the real nbgrader.

OUT is an nbgrader course root with one gradebook:

    OUT/source/ release/ submitted/ autograded/   nbgrader's own folders
    OUT/gradebook.db                               what `nbgrader export` and formgrader read
    OUT/grades.csv                                 nbgrader's CSV export
    OUT/feedback/<student>/<assignment>/<nb>.html  hidden tests stripped
    OUT/results/<student>.json                     Gradescope results.json schema
    OUT/grading.log                                details of what could not be graded, if any
    OUT/.units/                                    the unit store (`store`): the cache

A run: preflight (one sandbox runs a trivial cell, else `PreflightFailed` before anything is
written), the key of every (student, assignment) (`keys`), the units whose committed result has
another key graded on ``jobs`` worker processes (`parallel`, `worker`), each committed as soon as
it is done, then OUT published from the store (`publish`). A re-run regrades only what changed;
after a ``kill -9`` it grades only what was unfinished. ``force`` regrades everything.

Fault tolerance. One broken submission costs only that student's notebook: an unreadable file
(invalid JSON, empty, nbformat 3) or a notebook under another name scores 0 on each of its tests
with the reason; student code that kills its sandbox, loops or floods output is handled per test
by the trusted executor. A failure that is not the student's is retried once and never scored:
the unit stays ungraded, the run reports it (`GradingReport.failed`) and keeps every other grade.
"""

from __future__ import annotations

import dataclasses
import os
import shutil
import tempfile
import warnings
from pathlib import Path

from ..notebooks import REPO, SOLUTIONS, assignments, sources
from .keys import Dependencies, course_key, unit_key
from .outdir import OutLock, check_out, clear_leftovers, write_atomic
from .parallel import run_jobs, usable_cores
from .progress import Progress
from .publish import Publisher
from .store import Store
from .submissions import InstructorError, locate_submissions, scan_class, why_unusable
from .worker import Job


class PreflightFailed(InstructorError):
    """No sandbox can start on this machine: nothing can be graded (the instructor's to fix)."""


@dataclasses.dataclass
class GradingReport:
    results: dict[str, dict]  # student -> results.json, for students with everything graded
    graded: int  # units graded in this run
    reused: int  # units whose committed result was still valid
    failed: dict[tuple[str, str], str]  # (student, assignment) -> why it is not graded
    backend: str  # the sandbox backend used
    workers: int
    peak_rss_mb: dict[int, float]  # worker pid -> its peak resident memory (MB)


def _preflight(backend: str | None) -> str:
    """The sandbox backend ``backend`` (None: $NPDL_SANDBOX, else auto) after it ran a cell."""
    from ..sandbox import SandboxUnavailable, preflight

    try:
        return preflight(backend)
    except SandboxUnavailable as exc:
        raise PreflightFailed(
            f"grade: the grading sandbox cannot start, so nothing was graded.\n{exc}"
        ) from None


class ClassGrader:
    """Grades one class of submissions into ``out`` (see the module doc)."""

    def __init__(self, out: Path, solutions: Path = SOLUTIONS, cell_timeout: int | None = None,
                 jobs: int | None = None, sandbox: str | None = None, force: bool = False):
        self.out = Path(out).resolve()
        self.solutions = Path(solutions)
        self.cell_timeout = cell_timeout
        self.jobs = jobs or usable_cores()
        self.sandbox, self.force = sandbox, force
        self.expected = {
            a: [md.stem for md in sources(a, self.solutions)] for a in assignments(self.solutions)
        }
        self.store = Store(self.out / ".units")

    def run(self, submissions: Path, progress: bool = True) -> dict[str, dict]:
        """Grade the class; the results of the fully graded students (``self.report`` has the
        rest: counts, ungraded units, workers)."""
        self.report = self._run(Path(submissions), progress)
        return self.report.results

    def _run(self, submissions: Path, progress: bool) -> GradingReport:
        check_out(self.out, submissions)
        self.out.parent.mkdir(parents=True, exist_ok=True)
        with OutLock(self.out), tempfile.TemporaryDirectory(prefix="npdl-unzip-") as unzip:
            root = locate_submissions(submissions, Path(unzip), set(self.expected))
            roster = scan_class(root, self.expected)
            backend = _preflight(self.sandbox)
            clear_leftovers(self.out)
            shutil.rmtree(self.store.scratch_root, ignore_errors=True)  # dead runs' workers
            from sqlalchemy.exc import SAWarning

            before = os.environ.get("NPDL_SANDBOX")
            os.environ["NPDL_SANDBOX"] = backend  # the workers use what the preflight checked
            try:
                with warnings.catch_warnings():
                    warnings.simplefilter("ignore", SAWarning)  # nbgrader's harmless autoflushes
                    return self._grade(root, roster, backend, progress)
            finally:
                if before is None:
                    os.environ.pop("NPDL_SANDBOX", None)
                else:
                    os.environ["NPDL_SANDBOX"] = before

    def _grade(self, root: Path, roster, backend: str, progress: bool) -> GradingReport:
        problems = {}  # (student, assignment, notebook) -> why it scored 0
        for student, work in roster.items():
            for a, names in work.items():
                for nb in self.expected[a]:
                    why = why_unusable(root / student / a, nb, nb in names)
                    if why is not None:
                        problems[(student, a, nb)] = why
                names[:] = [nb for nb in names if (student, a, nb) not in problems]
        used = sorted({a for work in roster.values() for a in work})
        options = {"cell_timeout": self.cell_timeout, "sandbox": backend}
        deps = Dependencies(self.solutions, options, REPO / "nbgrader_config.py")
        self._course(used, deps)

        units, jobs = {}, []
        for student, work in sorted(roster.items()):
            for a, names in sorted(work.items()):
                if not names:  # nothing readable: nothing for nbgrader to do
                    units[(student, a)] = None
                    continue
                key = unit_key(deps.key(a), student, root / student / a, names)
                unit = None if self.force else self.store.load(student, a, key)
                units[(student, a)] = unit
                if unit is None:
                    jobs.append(Job(student, a, tuple(names), str(root / student / a), key,
                                    str(self.store.root), str(self.solutions), self.cell_timeout))
        self.store.forget(set(units))
        jobs.sort(key=self._cost, reverse=True)  # longest first: the last worker idles least

        gradable = sum(1 for unit in units.values() if unit is not None) + len(jobs)
        bar = Progress(gradable, gradable - len(jobs), progress)
        failed, logs, rss = {}, [], {}
        try:
            outcomes = run_jobs(jobs, self.jobs, bar.done) if jobs else {}
        finally:
            bar.close()
        for (student, a), outcome in sorted(outcomes.items()):
            if outcome.get("pid"):
                rss[outcome["pid"]] = max(rss.get(outcome["pid"], 0), outcome["rss_kb"] / 1024)
            if outcome["status"] == "infrastructure":
                failed[(student, a)] = outcome["message"]
                logs.append(f"--- {student}/{a}: not graded (infrastructure)\n"
                            f"{outcome['message']}\n")
            else:
                units[(student, a)] = self.store.load(student, a)
        for (student, a), unit in sorted(units.items()):
            if unit is not None and unit["status"] == "student_error":
                logs.append(f"--- {student}/{a}: scored 0 (nbgrader failed)\n{unit['log']}\n")
        results = Publisher(self.out, self.store, self.solutions, self.expected).publish(
            roster, {k: v for k, v in units.items() if k not in failed}, problems, failed, logs
        )
        return GradingReport(results, len(jobs) - len(failed), gradable - len(jobs), failed,
                             backend, min(self.jobs, len(jobs)), rss)

    def _cost(self, job: Job) -> tuple[float, str]:
        """Expected seconds of a job: the last time this assignment was graded, if known."""
        unit = self.store.load(job.student, job.assignment)
        return (unit or {}).get("seconds", 0.0), job.assignment

    def _course(self, used: list[str], deps: Dependencies) -> None:
        """Build the course skeleton ``.units/.course`` (sources, releases, a gradebook with the
        assignments) unless the one there was built from the same sources and code."""
        import json

        from ..pipeline import Course

        key = course_key({a: deps.key(a) for a in used})
        info = self.store.read_json(".course/course.json") or {}
        if info.get("key") == key:
            return
        self.store.root.mkdir(parents=True, exist_ok=True)
        stage = self.store.root / f".course.tmp-{os.getpid()}"
        old = self.store.root / f".course.old-{os.getpid()}"
        shutil.rmtree(stage, ignore_errors=True)
        cwd = os.getcwd()
        try:
            course = Course(stage, only=used, solutions=self.solutions)
            os.chdir(stage)
            for a in used:
                course.generate_assignment(a)
            os.chdir(cwd)
            write_atomic(stage / "course.json", json.dumps({"key": key, "assignments": used}))
            if self.store.course.exists():
                os.rename(self.store.course, old)
            os.rename(stage, self.store.course)
        finally:
            os.chdir(cwd)
            shutil.rmtree(stage, ignore_errors=True)
            shutil.rmtree(old, ignore_errors=True)

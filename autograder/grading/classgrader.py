"""`python -m autograder grade`: grade a class of submissions with the real nbgrader.

OUT becomes an nbgrader course root with its own gradebook:

    OUT/source/ release/ submitted/ autograded/   nbgrader's own folders
    OUT/gradebook.db                               fresh for every run
    OUT/grades.csv                                 nbgrader's CSV export
    OUT/feedback/<student>/<assignment>/<nb>.html  hidden tests stripped
    OUT/results/<student>.json                     Gradescope results.json schema

Fault tolerance. One broken submission costs only that student's notebook: an unreadable file
(invalid JSON, empty, nbformat 3), a notebook under another name, or nbgrader failing on it scores
0 on each of its tests with the reason as the test's output (and in a feedback page); student code
that kills its sandbox, loops or floods output is handled per test by the trusted executor.
Interruption: see `outdir` (OUT is replaced atomically, one run at a time).
"""

from __future__ import annotations

import os
import shutil
import sys
import tempfile
import warnings
from pathlib import Path

import nbformat
from nbgrader.api import Gradebook
from nbgrader.plugins.export import CsvExportPlugin
from sqlalchemy.exc import SAWarning
from tqdm import tqdm

from ..notebooks import SOLUTIONS, assignments, sources
from ..pipeline import Course, NbgraderFailed, repair_submission
from .outdir import OutLock, check_out, clear_leftovers, replace_out
from .results import write_results
from .submissions import locate_submissions, scan_class, why_unusable


class ClassGrader:
    """Grades one class of submissions into ``out`` (rebuilt atomically, see the module doc)."""

    def __init__(self, out: Path, solutions: Path = SOLUTIONS, cell_timeout: int | None = None):
        self.out = Path(out).resolve()
        self.solutions = solutions
        self.cell_timeout = cell_timeout
        self.expected = {
            a: [md.stem for md in sources(a, solutions)] for a in assignments(solutions)
        }
        self.work = self.out  # the course root being written: OUT.tmp-<pid> during run()

    def run(self, submissions: Path, progress: bool = True) -> dict[str, dict]:
        check_out(self.out, submissions)
        self.out.parent.mkdir(parents=True, exist_ok=True)
        with OutLock(self.out):
            clear_leftovers(self.out)
            self.work = self.out.parent / f"{self.out.name}.tmp-{os.getpid()}"
            try:
                results = self._grade_class(Path(submissions), progress)
                replace_out(self.work, self.out)
            finally:
                shutil.rmtree(self.work, ignore_errors=True)
                self.work = self.out
        return results

    def _grade_class(self, submissions: Path, progress: bool) -> dict[str, dict]:
        with tempfile.TemporaryDirectory(prefix="npdl-unzip-") as unzip:
            root = locate_submissions(submissions, Path(unzip), set(self.expected))
            roster = scan_class(root, self.expected)
            used = sorted({a for work in roster.values() for a in work})
            course = Course(
                self.work, only=used, solutions=self.solutions, cell_timeout=self.cell_timeout
            )
            problems = self._copy_in(root, roster)
        self._grade(course, roster, used, progress)
        with Gradebook(
            course.cfg.CourseDirectory.db_url, course.cfg.CourseDirectory.course_id
        ) as gb:
            for student in roster:  # students with nothing gradable still get their row of zeros
                gb.update_or_create_student(student)
            CsvExportPlugin(to=str(self.work / "grades.csv")).export(gb)
            problems.update(self.failures)
            return write_results(gb, self.work, self.solutions, self.expected, roster, problems)

    def _copy_in(self, root: Path, roster) -> dict[tuple[str, str, str], str]:
        """Copy usable notebooks into OUT/submitted; return (student, a, nb) -> problem."""
        problems = {}
        for student, work in roster.items():
            for a, names in work.items():
                target = self.work / "submitted" / student / a
                target.mkdir(parents=True, exist_ok=True)
                for nb in self.expected[a]:
                    why = why_unusable(root / student / a, nb, nb in names)
                    if why is None:
                        shutil.copyfile(root / student / a / f"{nb}.ipynb", target / f"{nb}.ipynb")
                    else:
                        problems[(student, a, nb)] = why
                # From here on the roster lists only what nbgrader will grade.
                names[:] = [nb for nb in names if (student, a, nb) not in problems]
        return problems

    def _repair_submission(self, a: str, student: str, names: list[str]) -> None:
        """Rewrite submitted notebooks nbgrader cannot grade as they are (`repair_submission`)."""
        for nb in names:
            path = self.work / "submitted" / student / a / f"{nb}.ipynb"
            try:
                release = nbformat.read(self.work / "release" / a / f"{nb}.ipynb", as_version=4)
                submitted = nbformat.read(path, as_version=4)
                repaired = repair_submission(submitted, release)
            except Exception:  # noqa: BLE001 - unrepairable: nbgrader decides, per student
                continue
            if repaired != submitted:
                nbformat.write(repaired, path)

    def _log(self, bar, student: str, a: str, exc: Exception) -> None:
        with open(self.work / "grading.log", "a", encoding="utf-8") as log:
            log.write(f"--- {student}/{a}\n{exc}\n")
        bar.write(
            f"warning: nbgrader could not grade {student}/{a}; "
            f"details in {self.out / 'grading.log'}"
        )

    def _grade(self, course: Course, roster, used: list[str], progress: bool) -> None:
        """Autograde and write feedback, one assignment after another.

        Sequential on purpose: nbgrader's gradebook sessions, its chdirs and Python's warning
        filters are process-wide, and grading threads racing on them lost submissions.
        """
        by_assignment: dict[str, list[tuple[str, int]]] = {a: [] for a in used}
        for student, work in sorted(roster.items()):
            for a, names in work.items():
                if names:  # nothing readable: nothing for nbgrader to do
                    by_assignment[a].append((student, len(names)))
        total = sum(n for jobs in by_assignment.values() for _, n in jobs)
        bar = tqdm(
            total=total, unit="notebook", desc="grading", disable=not progress, file=sys.stderr
        )
        self.failures: dict[tuple[str, str], str] = {}

        def grade_assignment(a: str) -> None:
            # Every submitted assignment enters the gradebook, so grades.csv has a row for
            # each student even when nobody's notebook could be read.
            course.generate_assignment(a)
            for student, count in by_assignment[a]:
                try:
                    self._repair_submission(a, student, roster[student][a])
                    course.autograde(a, student)
                except NbgraderFailed as exc:  # the grader failed on this submission only
                    self.failures[(student, a)] = (
                        "this assignment could not be graded automatically (nbgrader failed "
                        "on the submission; your instructor has the details in grading.log)."
                    )
                    self._log(bar, student, a, exc)
                else:
                    try:
                        course.generate_feedback(a, student)
                    except NbgraderFailed as exc:  # scores stand; a fallback page is written
                        self._log(bar, student, a, exc)
                bar.set_postfix_str(f"{student}/{a}", refresh=False)
                bar.update(count)

        cwd = os.getcwd()
        # nbgrader converters chdir into the course root and back; starting from the root
        # keeps the working directory right whatever nbgrader leaves behind.
        os.chdir(self.work)
        try:
            with warnings.catch_warnings():
                # nbgrader's gradebook triggers harmless SQLAlchemy autoflush warnings
                warnings.simplefilter("ignore", SAWarning)
                for a in used:
                    grade_assignment(a)
        finally:
            os.chdir(cwd)
            bar.close()

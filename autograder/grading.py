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

Interruption. OUT is rebuilt atomically: a run grades into the sibling ``OUT.tmp-<pid>`` and only
a complete result replaces OUT (rename), so a killed run leaves the previous OUT (or none) plus a
stale ``OUT.tmp-*`` that the next run deletes. Re-running the same command is always safe and gives
the same grades. ``.OUT.lock`` (next to OUT, an flock released by the kernel when the process dies)
stops two runs writing the same OUT; a leftover lock file from a killed run is harmless.
"""

from __future__ import annotations

import fcntl
import html
import json
import os
import re
import shutil
import sys
import tempfile
import warnings
import zipfile
from pathlib import Path

import nbformat
from nbgrader.api import Gradebook, MissingEntry
from nbgrader.plugins.export import CsvExportPlugin
from sqlalchemy.exc import SAWarning
from tqdm import tqdm

from .notebooks import SOLUTIONS, assignments, build_notebook, graded_cells, sources
from .pipeline import Course, NbgraderFailed, repair_submission
from .trusted.preprocessor import read_submission


class InstructorError(Exception):
    """The grading run cannot start: bad arguments or a submissions folder nbgrader cannot use."""


_NBGRADER_DIRS = ("source", "release", "submitted", "autograded", "feedback", "results")


def _is_junk(path: Path) -> bool:
    return path.name.startswith(".") or path.name == "__MACOSX"


_ASSIGNMENT_ID = re.compile(r"^\d\d_\w+$")  # 01_backprop: the course's assignment id pattern


def _looks_like_class(root: Path, known: set[str]) -> bool:
    """True if ``root`` holds <student>/<assignment>/ folders (assignment ids 2nd level)."""
    return any(
        a.is_dir() and (a.name in known or _ASSIGNMENT_ID.match(a.name))
        for s in root.iterdir()
        if s.is_dir()
        for a in s.iterdir()
    )


def locate_submissions(path: Path, unpack_to: Path, known: set[str]) -> Path:
    """The folder holding ``<student>/<assignment>/<nb>.ipynb``; unzips a .zip first."""
    if not path.exists():
        raise InstructorError(f"grade: submissions not found. Received: {path}")
    if path.is_file():
        if not zipfile.is_zipfile(path):
            raise InstructorError(
                f"grade: expected a folder or a .zip of submissions. Received: file {path}"
            )
        with zipfile.ZipFile(path) as archive:
            archive.extractall(unpack_to)
        path = unpack_to
    root = path
    # A zip often wraps everything in one folder (e.g. submitted/): descend into it.
    while not _looks_like_class(root, known):
        children = [c for c in root.iterdir() if c.is_dir() and not _is_junk(c)]
        if len(children) != 1:
            raise InstructorError(
                "grade: expected nbgrader's submitted layout "
                "<student_id>/<assignment_id>/<notebook>.ipynb with assignment ids among "
                f"{sorted(known)}. Received: {path} (no such assignment folders)."
            )
        root = children[0]
    return root


def scan_class(root: Path, expected: dict[str, list[str]]) -> dict[str, dict[str, list[str]]]:
    """student -> assignment -> submitted notebooks; unknown assignments are instructor errors."""
    roster: dict[str, dict[str, list[str]]] = {}
    for student in sorted(p for p in root.iterdir() if p.is_dir() and not _is_junk(p)):
        for folder in sorted(p for p in student.iterdir() if p.is_dir() and not _is_junk(p)):
            if folder.name not in expected:
                raise InstructorError(
                    f"grade: unknown assignment {folder.name!r} submitted by {student.name!r}. "
                    f"Expected one of {sorted(expected)}. Received: {folder}"
                )
            names = [nb for nb in expected[folder.name] if (folder / f"{nb}.ipynb").is_file()]
            roster.setdefault(student.name, {})[folder.name] = names
    if not roster:
        raise InstructorError(f"grade: no student submissions found in {root}.")
    return roster


def _cell_feedback(cell) -> str:
    """The text a student sees for one test cell: printed ✔ lines and the error message."""
    parts = []
    for out in cell.get("outputs", []):
        if out.get("output_type") == "stream":
            parts.append(out.get("text", ""))
        elif out.get("output_type") == "error":
            parts.append(f"{out.get('ename', 'Error')}: {out.get('evalue', '')}\n")
    return "".join(parts).strip()


def _why_unusable(folder: Path, nb: str, submitted: bool) -> str | None:
    """None if ``folder/<nb>.ipynb`` can be graded, else the reason the student will read."""
    if not submitted:
        others = sorted(p.name for p in folder.glob("*.ipynb")) if folder.is_dir() else []
        found = f" Found instead: {', '.join(others)}." if others else ""
        return (
            f"notebook {nb}.ipynb was not submitted, so it was not graded.{found} "
            f"Only a notebook saved under its released name, {nb}.ipynb, is graded."
        )
    _, why = read_submission(folder / f"{nb}.ipynb")
    return None if why is None else f"{nb}.ipynb: {why}"


def _fallback_feedback(page: Path, student: str, a: str, nb: str, reason: str, tests) -> None:
    """A feedback page for a notebook nbgrader could not grade: the reason, every test 0."""
    rows = "".join(
        f"<tr><td>{html.escape(t['name'])}</td><td>0 / {t['max_score']:g}</td></tr>" for t in tests
    )
    page.parent.mkdir(parents=True, exist_ok=True)
    page.write_text(
        f"<!DOCTYPE html>\n<html><head><meta charset='utf-8'><title>{html.escape(nb)}</title>"
        f"</head><body><h1>{html.escape(f'{a}/{nb}.ipynb')} ({html.escape(student)})</h1>"
        f"<p><strong>Not graded:</strong> {html.escape(reason)}</p>"
        f"<table><tr><th>test</th><th>score</th></tr>{rows}</table></body></html>\n",
        encoding="utf-8",
    )


class _OutLock:
    """An exclusive flock on ``.OUT.lock`` next to OUT; the kernel drops it if we are killed."""

    def __init__(self, out: Path):
        self.path = out.parent / f".{out.name}.lock"

    def __enter__(self):
        self.handle = open(self.path, "a+", encoding="utf-8")  # noqa: SIM115 - held until exit
        try:
            fcntl.flock(self.handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            self.handle.seek(0)
            owner = self.handle.read().strip() or "?"
            self.handle.close()
            raise InstructorError(
                f"grade: another grading run (pid {owner}) is writing {self.path.parent}. "
                f"Received: --out {self.path.parent / self.path.name[1:-5]}"
            ) from None
        self.handle.truncate(0)
        self.handle.write(str(os.getpid()))
        self.handle.flush()
        return self

    def __exit__(self, *exc):
        self.handle.close()  # closing releases the flock; the file itself may stay


_OURS = {*_NBGRADER_DIRS, "gradebook.db", "grades.csv", "grading.log"}


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

    def _check_out(self, submissions: Path) -> None:
        inside = [(Path(submissions), self.out), (self.out, Path(submissions))]
        if any(a.resolve().is_relative_to(b.resolve()) for a, b in inside):
            raise InstructorError(
                "grade: the output folder and the submissions must not contain each other "
                f"(OUT is wiped). Received: submissions={submissions}, --out {self.out}"
            )
        if self.out.exists() and not self.out.is_dir():
            raise InstructorError(f"grade: --out must be a folder. Received: file {self.out}")
        if self.out.is_dir():
            strangers = sorted(
                p.name for p in self.out.iterdir() if p.name not in _OURS and not _is_junk(p)
            )
            if strangers:  # never replace a folder that a grading run did not write
                raise InstructorError(
                    "grade: --out exists and is not a grading output (it is replaced as a "
                    f"whole). Received: {self.out} holding {strangers[:5]}"
                )

    def _clear_leftovers(self) -> None:
        """Delete what killed runs left next to OUT (we hold the lock: they are dead)."""
        for pattern in (f"{self.out.name}.tmp-*", f"{self.out.name}.old-*"):
            for stale in self.out.parent.glob(pattern):
                shutil.rmtree(stale, ignore_errors=True)

    def run(self, submissions: Path, progress: bool = True) -> dict[str, dict]:
        self._check_out(submissions)
        self.out.parent.mkdir(parents=True, exist_ok=True)
        with _OutLock(self.out):
            self._clear_leftovers()
            self.work = self.out.parent / f"{self.out.name}.tmp-{os.getpid()}"
            try:
                results = self._grade_class(Path(submissions), progress)
                self._replace_out()
            finally:
                shutil.rmtree(self.work, ignore_errors=True)
                self.work = self.out
        return results

    def _replace_out(self) -> None:
        old = self.out.parent / f"{self.out.name}.old-{os.getpid()}"
        if self.out.exists():
            os.rename(self.out, old)
        os.rename(self.work, self.out)
        shutil.rmtree(old, ignore_errors=True)

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
            return self._results(gb, roster, problems)

    def _copy_in(self, root: Path, roster) -> dict[tuple[str, str, str], str]:
        """Copy usable notebooks into OUT/submitted; return (student, a, nb) -> problem."""
        problems = {}
        for student, work in roster.items():
            for a, names in work.items():
                target = self.work / "submitted" / student / a
                target.mkdir(parents=True, exist_ok=True)
                for nb in self.expected[a]:
                    why = _why_unusable(root / student / a, nb, nb in names)
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

    def _results(self, gb: Gradebook, roster, problems) -> dict[str, dict]:
        results_dir = self.work / "results"
        results_dir.mkdir(parents=True, exist_ok=True)
        everything = {}
        for student, work in roster.items():
            tests, notes = [], []
            for a in sorted(work):
                for nb in self.expected[a]:
                    problem = problems.get((student, a, nb)) or self.failures.get((student, a))
                    found = self._notebook_tests(gb, student, a, nb, problem)
                    tests += found
                    if problem is not None:
                        notes.append(f"{a}/{nb}.ipynb scored 0: {problem}")
                        page = self.work / "feedback" / student / a / f"{nb}.html"
                        if not page.exists():
                            _fallback_feedback(page, student, a, nb, problem, found)
            result = {
                "score": round(sum(t["score"] for t in tests), 6),
                "max_score": sum(t["max_score"] for t in tests),
                "output": "\n".join([f"Graded assignments: {', '.join(sorted(work))}.", *notes]),
                "tests": tests,
            }
            (results_dir / f"{student}.json").write_text(
                json.dumps(result, indent=2, ensure_ascii=False) + "\n", encoding="utf-8"
            )
            everything[student] = result
        return everything

    def _notebook_tests(self, gb, student, a, nb, problem) -> list[dict]:
        source = build_notebook(self.solutions / a / f"{nb}.md")
        graded = self.work / "autograded" / student / a / f"{nb}.ipynb"
        cells = {}
        if problem is None and graded.exists():
            for cell in nbformat.read(graded, as_version=4).cells:
                grade_id = cell.get("metadata", {}).get("nbgrader", {}).get("grade_id")
                cells[grade_id] = cell
        tests = []
        for grade_id, points in graded_cells(source).items():
            score, output = 0.0, problem or "test cell missing from the graded notebook"
            if problem is None:
                try:
                    score = float(gb.find_grade(grade_id, nb, a, student).score)
                except MissingEntry:
                    pass
                if grade_id in cells:
                    output = _cell_feedback(cells[grade_id])
            tests.append(
                {
                    "name": grade_id,
                    "score": score,
                    "max_score": float(points),
                    "output": output,
                    "visibility": "visible",
                    "tags": [a, nb],
                }
            )
        return tests

"""`python -m autograder grade`: grade a class of submissions with the real nbgrader.

OUT becomes an nbgrader course root with its own gradebook:

    OUT/source/ release/ submitted/ autograded/   nbgrader's own folders
    OUT/gradebook.db                               fresh for every run
    OUT/grades.csv                                 nbgrader's CSV export
    OUT/feedback/<student>/<assignment>/<nb>.html  hidden tests stripped
    OUT/results/<student>.json                     Gradescope results.json schema
"""

from __future__ import annotations

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
from .pipeline import Course, NbgraderFailed


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


def _readable(path: Path) -> str | None:
    """None if nbgrader can read the notebook, else why not."""
    try:
        nbformat.read(path, as_version=4)
    except Exception as exc:  # any parse failure is the student's broken file
        return f"the submitted notebook could not be read: {exc}"
    return None


class ClassGrader:
    """Grades one class of submissions into ``out``."""

    def __init__(self, out: Path, solutions: Path = SOLUTIONS, ):
        self.out = Path(out).resolve()
        self.solutions = solutions
        self.expected = {
            a: [md.stem for md in sources(a, solutions)] for a in assignments(solutions)
        }

    def _fresh_out(self) -> None:
        self.out.mkdir(parents=True, exist_ok=True)
        for name in _NBGRADER_DIRS:
            shutil.rmtree(self.out / name, ignore_errors=True)
        for name in ("gradebook.db", "grades.csv", "grading.log"):
            (self.out / name).unlink(missing_ok=True)

    def run(self, submissions: Path, progress: bool = True) -> dict[str, dict]:
        inside = [(Path(submissions), self.out), (self.out, Path(submissions))]
        if any(a.resolve().is_relative_to(b.resolve()) for a, b in inside):
            raise InstructorError(
                "grade: the output folder and the submissions must not contain each other "
                f"(OUT is wiped). Received: submissions={submissions}, --out {self.out}"
            )
        if self.out.exists() and not self.out.is_dir():
            raise InstructorError(f"grade: --out must be a folder. Received: file {self.out}")
        with tempfile.TemporaryDirectory(prefix="npdl-unzip-") as unzip:
            root = locate_submissions(Path(submissions), Path(unzip), set(self.expected))
            roster = scan_class(root, self.expected)
            self._fresh_out()
            used = sorted({a for work in roster.values() for a in work})
            course = Course(self.out, only=used, solutions=self.solutions)
            problems = self._copy_in(root, roster)
        self._grade(course, roster, progress)
        with Gradebook(
            course.cfg.CourseDirectory.db_url, course.cfg.CourseDirectory.course_id
        ) as gb:
            for student in roster:  # students with nothing gradable still get their row of zeros
                gb.update_or_create_student(student)
            CsvExportPlugin(to=str(self.out / "grades.csv")).export(gb)
            return self._results(gb, roster, problems)

    def _copy_in(self, root: Path, roster) -> dict[tuple[str, str, str], str]:
        """Copy readable notebooks into OUT/submitted; return (student, a, nb) -> problem."""
        problems = {}
        for student, work in roster.items():
            for a, names in work.items():
                target = self.out / "submitted" / student / a
                target.mkdir(parents=True, exist_ok=True)
                for nb in self.expected[a]:
                    src = root / student / a / f"{nb}.ipynb"
                    why = (
                        _readable(src) if nb in names else f"notebook {nb}.ipynb was not submitted"
                    )
                    if why is None:
                        shutil.copyfile(src, target / src.name)
                    else:
                        problems[(student, a, nb)] = why
                # From here on the roster lists only what nbgrader will grade.
                names[:] = [nb for nb in names if (student, a, nb) not in problems]
        return problems

    def _grade(self, course: Course, roster, progress: bool) -> None:
        """Autograde and write feedback, one assignment after another.

        Sequential on purpose: nbgrader's gradebook sessions, its chdirs and Python's warning
        filters are process-wide, and grading threads racing on them lost submissions.
        """
        by_assignment: dict[str, list[tuple[str, int]]] = {}
        for student, work in sorted(roster.items()):
            for a, names in work.items():
                if names:  # nothing readable: nothing for nbgrader to do
                    by_assignment.setdefault(a, []).append((student, len(names)))
        total = sum(n for jobs in by_assignment.values() for _, n in jobs)
        bar = tqdm(
            total=total, unit="notebook", desc="grading", disable=not progress, file=sys.stderr
        )
        self.failures: dict[tuple[str, str], str] = {}

        def grade_assignment(a: str) -> None:
            course.generate_assignment(a)
            for student, count in by_assignment[a]:
                try:
                    course.autograde(a, student)
                    course.generate_feedback(a, student)
                except NbgraderFailed as exc:  # e.g. a notebook killing its kernel
                    self.failures[(student, a)] = str(exc).splitlines()[0]
                    with open(self.out / "grading.log", "a", encoding="utf-8") as log:
                        log.write(f"--- {student}/{a}\n{exc}\n")
                    bar.write(
                        f"warning: nbgrader could not grade {student}/{a}; "
                        f"details in {self.out / 'grading.log'}"
                    )
                bar.set_postfix_str(f"{student}/{a}", refresh=False)
                bar.update(count)

        cwd = os.getcwd()
        # nbgrader converters chdir into the course root and back; starting from the root
        # keeps the working directory right whatever nbgrader leaves behind.
        os.chdir(self.out)
        try:
            with warnings.catch_warnings():
                # nbgrader's gradebook triggers harmless SQLAlchemy autoflush warnings
                warnings.simplefilter("ignore", SAWarning)
                for a in sorted(by_assignment):
                    grade_assignment(a)
        finally:
            os.chdir(cwd)
            bar.close()

    def _results(self, gb: Gradebook, roster, problems) -> dict[str, dict]:
        results_dir = self.out / "results"
        results_dir.mkdir(parents=True, exist_ok=True)
        everything = {}
        for student, work in roster.items():
            tests = []
            for a in sorted(work):
                for nb in self.expected[a]:
                    tests += self._notebook_tests(
                        gb, student, a, nb, problems.get((student, a, nb))
                    )
            result = {
                "score": round(sum(t["score"] for t in tests), 6),
                "max_score": sum(t["max_score"] for t in tests),
                "output": f"Graded assignments: {', '.join(sorted(work))}.",
                "tests": tests,
            }
            (results_dir / f"{student}.json").write_text(
                json.dumps(result, indent=2, ensure_ascii=False) + "\n", encoding="utf-8"
            )
            everything[student] = result
        return everything

    def _notebook_tests(self, gb, student, a, nb, problem) -> list[dict]:
        source = build_notebook(self.solutions / a / f"{nb}.md")
        graded = self.out / "autograded" / student / a / f"{nb}.ipynb"
        cells = {}
        if problem is None and graded.exists():
            for cell in nbformat.read(graded, as_version=4).cells:
                grade_id = cell.get("metadata", {}).get("nbgrader", {}).get("grade_id")
                cells[grade_id] = cell
        problem = problem or self.failures.get((student, a))
        tests = []
        for grade_id, points in graded_cells(source).items():
            score, output = 0.0, problem or "test cell missing from the graded notebook"
            if problem is None:
                try:
                    grade = gb.find_grade(grade_id, nb, a, student)
                    score = float(grade.score)
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

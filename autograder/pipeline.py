"""Run the real nbgrader (0.9.6, in-process) on throwaway course directories.

Everything happens under a root the caller gives (a temp dir or the grading output folder),
with its own gradebook, so the repository's working tree is never touched. The settings come
from the repository's ``nbgrader_config.py``; only the root, the folder names and the
gradebook move.
"""

from __future__ import annotations

import copy
import functools
import io
import logging
import os
import shutil
import sys
import tempfile
from pathlib import Path

import nbgrader.api
from nbgrader.api import Gradebook
from nbgrader.converters import Autograde, GenerateAssignment, GenerateFeedback
from nbgrader.coursedir import CourseDirectory
from traitlets.config.loader import PyFileConfigLoader

from .notebooks import EXERCISES, REPO, SOLUTIONS, assignments, build_sources
from .trusted.preprocessor import restore_from_source

# nbgrader's Gradebook runs the `alembic` executable from PATH: make the venv's bin/ visible
# even when the venv is not activated (e.g. `.venv/bin/python -m autograder`).
_BIN = os.path.dirname(sys.executable)
if _BIN not in os.environ.get("PATH", "").split(os.pathsep):
    os.environ["PATH"] = _BIN + os.pathsep + os.environ.get("PATH", "")


def _alembic_head() -> str:
    """The gradebook schema's alembic head, read in-process.

    A new gradebook records it; nbgrader gets it by running `alembic heads` in a subprocess,
    which costs 3-5 s per fresh gradebook here. Same answer, from the same migration scripts.
    """
    from alembic.config import Config
    from alembic.script import ScriptDirectory

    cfg = Config()
    cfg.set_main_option(
        "script_location", os.path.join(os.path.dirname(nbgrader.api.__file__), "alembic")
    )
    return ScriptDirectory.from_config(cfg).get_current_head()


nbgrader.api.get_alembic_version = functools.cache(_alembic_head)


class NbgraderFailed(RuntimeError):
    """nbgrader itself failed (an instructor-side problem, not a student's)."""


def course_config(root: Path, cell_timeout: int | None = None):
    """The repository's nbgrader config, moved to ``root`` with a gradebook inside it.

    ``cell_timeout`` (s) overrides ``Execute.timeout``, the per-cell limit TrustedExecute uses.
    """
    cfg = PyFileConfigLoader("nbgrader_config.py", path=str(REPO)).load_config()
    cfg.CourseDirectory.root = str(root)
    cfg.CourseDirectory.source_directory = "source"
    cfg.CourseDirectory.release_directory = "release"
    # Wait for a gradebook another process holds (e.g. nbgrader formgrader) instead of failing.
    cfg.CourseDirectory.db_url = f"sqlite:///{root / 'gradebook.db'}?timeout=60"
    cfg.Application.log_level = logging.WARNING
    if cell_timeout is not None:
        cfg.Execute.timeout = int(cell_timeout)  # an Int trait in nbgrader
    return cfg


def _run(converter_cls, cfg, *, assignment_id: str, student_id: str = "*", **flags) -> None:
    cfg = copy.deepcopy(cfg)  # converters update their config; each run gets its own copy
    coursedir = CourseDirectory(config=cfg)
    coursedir.assignment_id = assignment_id
    coursedir.student_id = student_id
    app = converter_cls(coursedir=coursedir, config=cfg)
    for name, value in flags.items():
        setattr(app, name, value)
    log = io.StringIO()
    handler = logging.StreamHandler(log)
    handler.setLevel(logging.ERROR)
    app.log.addHandler(handler)
    try:
        app.start()
    except (Exception, SystemExit) as exc:  # NbGraderException after logging, or app.exit()
        raise NbgraderFailed(
            f"nbgrader {converter_cls.__name__} failed for assignment {assignment_id!r}, "
            f"student {student_id!r}: {exc}\n{log.getvalue()}"
        ) from exc
    finally:
        app.log.removeHandler(handler)


def repair_submission(nb, release):
    """The submission with its nbgrader structure made gradable; student code is untouched.

    nbgrader 0.9.6 crashes on duplicated cells (DeduplicateIds leaves ``nbgrader: {}``, which
    add_missing_task_cells indexes) and only restores deleted *graded* cells. So: metadata with
    no or an unknown grade_id is dropped (a free cell); of a duplicated solution cell only the
    last copy stays graded (the others run as free cells, as in Jupyter the last one wins); a
    duplicated test or locked cell keeps its first copy; deleted graded/locked/solution cells
    come back from the release (a solution cell as the release's stub).
    """
    kinds = {
        c.metadata.nbgrader.grade_id: "solution" if c.metadata.nbgrader.get("solution") else "other"
        for c in release.cells
        if c.get("metadata", {}).get("nbgrader", {}).get("grade_id")
    }
    nb = copy.deepcopy(nb)
    last = {}
    for i, cell in enumerate(nb.cells):
        grade_id = cell.get("metadata", {}).get("nbgrader", {}).get("grade_id")
        if grade_id not in kinds:
            cell.get("metadata", {}).pop("nbgrader", None)
        else:
            last[grade_id] = i
    cells, seen = [], set()
    for i, cell in enumerate(nb.cells):
        grade_id = cell.get("metadata", {}).get("nbgrader", {}).get("grade_id")
        if grade_id is not None and kinds[grade_id] == "solution" and i != last[grade_id]:
            cell.metadata.pop("nbgrader")
        elif grade_id is not None and grade_id in seen:
            continue
        seen.add(grade_id)
        cells.append(cell)
    nb.cells = cells
    return restore_from_source(nb, release)


class Course:
    """A throwaway nbgrader course under ``root``: source/, release/, submitted/, gradebook.db."""

    def __init__(
        self,
        root: Path,
        only: list[str] | None = None,
        solutions: Path = SOLUTIONS,
        cell_timeout: int | None = None,
    ):
        self.root = Path(root).resolve()
        self.root.mkdir(parents=True, exist_ok=True)
        self.cfg = course_config(self.root, cell_timeout)
        self.assignments = only or assignments(solutions)
        build_sources(solutions, out=self.root / "source", only=self.assignments)
        # Create the gradebook now, once, before any converter opens it.
        with Gradebook(self.cfg.CourseDirectory.db_url, self.cfg.CourseDirectory.course_id):
            pass

    @classmethod
    def attach(cls, root: Path, assignments_: list[str], cell_timeout: int | None = None):
        """A Course over an existing ``root`` whose sources, releases and gradebook are there
        already (a copy of a course skeleton): nothing is built."""
        course = cls.__new__(cls)
        course.root = Path(root).resolve()
        course.cfg = course_config(course.root, cell_timeout)
        course.assignments = list(assignments_)
        return course

    def generate_assignment(self, assignment_id: str) -> Path:
        _run(
            GenerateAssignment,
            self.cfg,
            assignment_id=assignment_id,
            force=True,
            create_assignment=True,
        )
        return self.root / "release" / assignment_id

    def autograde(self, assignment_id: str, student_id: str) -> None:
        _run(
            Autograde,
            self.cfg,
            assignment_id=assignment_id,
            student_id=student_id,
            force=True,
            create_student=True,
        )

    def generate_feedback(self, assignment_id: str, student_id: str) -> None:
        _run(
            GenerateFeedback,
            self.cfg,
            assignment_id=assignment_id,
            student_id=student_id,
            force=True,
        )


def build_exercises(
    out: Path = EXERCISES, only: list[str] | None = None, sources_out: Path = SOLUTIONS
) -> list[str]:
    """Build ``sources_out/<a>/<nb>.ipynb`` from the markdown, then the releases ``out/<a>/``
    with nbgrader generate_assignment (in a throwaway course with its own gradebook)."""
    built = only or assignments()
    build_sources(
        out=Path(sources_out), only=built
    )  # the nbgrader source notebooks next to each .md
    with tempfile.TemporaryDirectory(prefix="npdl-release-") as tmp:
        course = Course(Path(tmp), only=built)
        for assignment_id in built:
            release = course.generate_assignment(assignment_id)
            target = Path(out) / assignment_id
            if target.exists():
                shutil.rmtree(target)
            shutil.copytree(release, target)
    return built

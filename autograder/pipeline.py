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


def course_config(root: Path):
    """The repository's nbgrader config, moved to ``root`` with a gradebook inside it."""
    cfg = PyFileConfigLoader("nbgrader_config.py", path=str(REPO)).load_config()
    cfg.CourseDirectory.root = str(root)
    cfg.CourseDirectory.source_directory = "source"
    cfg.CourseDirectory.release_directory = "release"
    # Assignments are graded in parallel threads: wait for a locked gradebook instead of failing.
    cfg.CourseDirectory.db_url = f"sqlite:///{root / 'gradebook.db'}?timeout=60"
    cfg.Application.log_level = logging.WARNING
    return cfg


def _run(converter_cls, cfg, *, assignment_id: str, student_id: str = "*", **flags) -> None:
    cfg = copy.deepcopy(cfg)  # converters update their config; threads must not share one
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
    except Exception as exc:  # nbgrader raises NbGraderException after logging the cause
        raise NbgraderFailed(
            f"nbgrader {converter_cls.__name__} failed for assignment {assignment_id!r}, "
            f"student {student_id!r}: {exc}\n{log.getvalue()}"
        ) from exc
    finally:
        app.log.removeHandler(handler)


class Course:
    """A throwaway nbgrader course under ``root``: source/, release/, submitted/, gradebook.db."""

    def __init__(self, root: Path, only: list[str] | None = None, solutions: Path = SOLUTIONS):
        self.root = Path(root).resolve()
        self.root.mkdir(parents=True, exist_ok=True)
        self.cfg = course_config(self.root)
        self.assignments = only or assignments(solutions)
        build_sources(solutions, out=self.root / "source", only=self.assignments)
        # Create the gradebook now, once: threads creating it at the same time would collide.
        with Gradebook(self.cfg.CourseDirectory.db_url, self.cfg.CourseDirectory.course_id):
            pass

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

"""A grading worker process: grade one (student, assignment) unit in a private course root.

nbgrader's gradebook session, its ``chdir`` and Python's warning filters are process-wide, so
units run in worker processes (started with "spawn": nothing of the parent, not even its lock,
is inherited), one unit at a time each. A unit gets a fresh scratch copy of the course skeleton
(sources, releases, a gradebook holding the assignments), is autograded and gets its feedback
there, and is committed to the unit store (`store.Store.commit`) before the worker reports back.

Whose fault is a failure? Decided here, explicitly:

* the student's: an unreadable file (decided before any worker, in `submissions`), code that
  kills, stalls or floods its sandbox (a score of 0 on the affected tests, decided by the trusted
  executor), and a notebook whose nbgrader structure cannot be repaired and then makes nbgrader
  fail (``student_error``: 0 on every test of the assignment, with a reason);
* the infrastructure's: a sandbox that cannot START (at the first cell or when restarted after
  the student's code killed it), nbgrader failing on a well-formed notebook, an OSError such as
  a full disk, any other exception. The unit is retried once in a fresh course root; if it fails
  again it is reported as ``infrastructure`` and never becomes a score.

``NPDL_GRADING_FAULT=student/assignment[:N][,...]`` makes the sandbox fail to start in the first
N attempts (all if N is omitted) of those units: the tests use it to inject an infrastructure
failure mid-class.
"""

from __future__ import annotations

import contextlib
import ctypes
import dataclasses
import functools
import os
import resource
import shutil
import signal
import time
import traceback
import warnings
from pathlib import Path

import nbformat

FAULT_ENV = "NPDL_GRADING_FAULT"
ATTEMPTS = 2  # an infrastructure failure is retried once

_start_failures: list[str] = []  # SandboxUnavailable raised during the current attempt
_inject = False  # the current attempt must fail to start its sandbox (NPDL_GRADING_FAULT)
_injected: dict[tuple[str, str], int] = {}


@dataclasses.dataclass(frozen=True)
class Job:
    """One unit of work, as sent to a worker."""

    student: str
    assignment: str
    notebooks: tuple[str, ...]  # the usable notebooks, graded
    folder: str  # the folder holding the submitted <notebook>.ipynb files
    key: str
    store: str  # OUT/.units
    solutions: str
    cell_timeout: int | None


class InfrastructureError(Exception):
    """Grading failed for a reason that is not the student's."""


def init_worker(parent: int) -> None:
    """Worker start-up: die with the parent, notice sandboxes that cannot start."""
    with contextlib.suppress(OSError, AttributeError):
        ctypes.CDLL(None, use_errno=True).prctl(1, signal.SIGKILL)  # PR_SET_PDEATHSIG
    if os.getppid() != parent:  # the parent died before prctl took effect
        os._exit(1)
    _watch_sandbox_starts()


def _watch_sandbox_starts() -> None:
    """Record every `SandboxUnavailable` raised while a sandbox starts in this process.

    The trusted executor turns a sandbox that cannot start into failed test cells (the first
    start) or into "the sandbox stopped" (a restart): the worker must know it was the machine.
    """
    from ..sandbox import SandboxUnavailable, runner

    original = runner.Sandbox.__init__
    if getattr(original, "npdl_watched", False):
        return

    @functools.wraps(original)
    def init(self, *args, **kwargs):
        if _inject:
            _start_failures.append(f"injected by {FAULT_ENV}")
            raise SandboxUnavailable(f"the sandbox could not start (injected by {FAULT_ENV}).")
        try:
            original(self, *args, **kwargs)
        except SandboxUnavailable as exc:
            _start_failures.append(str(exc))
            raise

    init.npdl_watched = True
    runner.Sandbox.__init__ = init


def _faults() -> dict[tuple[str, str], int | None]:
    faults = {}
    for item in filter(None, os.environ.get(FAULT_ENV, "").split(",")):
        unit, _, times = item.strip().partition(":")
        student, _, assignment = unit.partition("/")
        faults[(student, assignment)] = int(times) if times else None
    return faults


def grade_unit(job: Job) -> dict:
    """Grade and commit one unit (retrying an infrastructure failure once); report the outcome:
    ``status`` graded | student_error | infrastructure, ``message``, ``seconds``, ``rss_kb``."""
    global _inject
    from .store import Store

    store, started, failure = Store(Path(job.store)), time.monotonic(), None
    unit = (job.student, job.assignment)
    for attempt in range(1, ATTEMPTS + 1):
        times = _faults().get(unit, 0)
        _inject = unit in _faults() and (times is None or _injected.get(unit, 0) < times)
        _injected[unit] = _injected.get(unit, 0) + _inject
        _start_failures.clear()
        scratch = None
        try:
            scratch = store.scratch()
            result, files = _attempt(job, scratch)
            result.update(key=job.key, student=job.student, assignment=job.assignment,
                          notebooks=list(job.notebooks), attempts=attempt,
                          seconds=round(time.monotonic() - started, 3))
            store.commit(result, files)
            return _outcome(job, result["status"], result.get("message", ""), started, attempt)
        except InfrastructureError as exc:
            failure = str(exc)
        except Exception as exc:  # noqa: BLE001 - disk full, nbgrader internals, ...: not theirs
            failure = f"{type(exc).__name__}: {exc}\n{traceback.format_exc(limit=-4)}"
        finally:
            _inject = False
            if scratch is not None:
                shutil.rmtree(scratch, ignore_errors=True)
    return _outcome(job, "infrastructure", failure, started, ATTEMPTS)


def _outcome(job: Job, status: str, message: str, started: float, attempts: int) -> dict:
    return {
        "student": job.student, "assignment": job.assignment, "status": status,
        "message": message, "attempts": attempts, "pid": os.getpid(),
        "seconds": time.monotonic() - started,
        "rss_kb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss,
    }


def _repair(folder: Path, release: Path, notebooks) -> bool:
    """Rewrite submitted notebooks nbgrader cannot grade as they are (`repair_submission`);
    True if one could not be repaired (then a failure of nbgrader on it is the student's)."""
    from ..pipeline import repair_submission

    unrepairable = False
    for nb in notebooks:
        path = folder / f"{nb}.ipynb"
        try:
            submitted = nbformat.read(path, as_version=4)
            repaired = repair_submission(submitted, nbformat.read(release / f"{nb}.ipynb", 4))
        except Exception:  # noqa: BLE001 - unrepairable: nbgrader decides
            unrepairable = True
            continue
        if repaired != submitted:
            nbformat.write(repaired, path)
    return unrepairable


def _attempt(job: Job, scratch: Path) -> tuple[dict, dict[str, Path]]:
    from nbgrader.api import Gradebook
    from sqlalchemy.exc import SAWarning

    from ..pipeline import Course, NbgraderFailed
    from .results import notebook_tests

    a, student = job.assignment, job.student
    skeleton = Path(job.store) / ".course"
    for folder in ("source", "release"):
        shutil.copytree(skeleton / folder / a, scratch / folder / a)
    shutil.copyfile(skeleton / "gradebook.db", scratch / "gradebook.db")
    course = Course.attach(scratch, [a], job.cell_timeout)
    submitted = scratch / "submitted" / student / a
    submitted.mkdir(parents=True)
    for nb in job.notebooks:
        shutil.copyfile(Path(job.folder) / f"{nb}.ipynb", submitted / f"{nb}.ipynb")
    unrepairable = _repair(submitted, scratch / "release" / a, job.notebooks)

    cwd = os.getcwd()
    os.chdir(scratch)  # nbgrader converters chdir into the course root and back
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", SAWarning)  # harmless gradebook autoflush warnings
            try:
                course.autograde(a, student)
            except NbgraderFailed as exc:
                if _start_failures:
                    raise InfrastructureError(
                        f"the sandbox could not start: {_start_failures[0]}"
                    ) from exc
                if not unrepairable:
                    raise InfrastructureError(
                        f"nbgrader failed on a well-formed notebook: {exc}"
                    ) from exc
                message = (
                    "this assignment could not be graded automatically (nbgrader failed on the "
                    "submission; your instructor has the details in grading.log)."
                )
                return {"status": "student_error", "message": message, "log": str(exc),
                        "tests": {}}, {"submitted": submitted}
            if _start_failures:  # e.g. a restart after the student's code killed its sandbox
                raise InfrastructureError(f"the sandbox could not start: {_start_failures[0]}")
            try:
                course.generate_feedback(a, student)
            except NbgraderFailed as exc:
                raise InfrastructureError(f"nbgrader could not write the feedback: {exc}") from exc
            db = course.cfg.CourseDirectory
            with Gradebook(db.db_url, db.course_id) as gb:
                tests = {
                    nb: notebook_tests(gb, scratch, Path(job.solutions), student, a, nb, None)
                    for nb in job.notebooks
                }
    finally:
        os.chdir(cwd)
    files = {
        "submitted": submitted,
        "autograded": scratch / "autograded" / student / a,
        "feedback": scratch / "feedback" / student / a,
    }
    return {"status": "graded", "message": "", "tests": tests}, files

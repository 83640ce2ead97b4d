"""Publishing: OUT's nbgrader folders, gradebook, grades.csv and results from the unit store.

Everything in OUT is derived from the committed units (`store`), so publishing is idempotent: a
run killed while publishing leaves only complete files (each one written via `write_atomic`)
and the next run publishes again. Files already right are not rewritten.

The gradebook is built the way a sequential nbgrader run builds it: the course skeleton's
gradebook (the assignments), the students in sorted order, then for each graded unit the
submission nbgrader's Autograde creates (notebooks not submitted get 0) and nbgrader's own
SaveAutoGrades and AssignLatePenalties run on the unit's autograded notebooks. It is rebuilt only
when its inputs changed (or the file is not the one this store published).
"""

from __future__ import annotations

import contextlib
import csv
import hashlib
import io
import json
import os
import shutil
from pathlib import Path
from unittest import mock

import nbformat

from .outdir import NBGRADER_DIRS, fsync_dir, prune, sync_file, write_atomic
from .results import results_json, student_result


def _sha(path: Path) -> str | None:
    try:
        return hashlib.sha256(path.read_bytes()).hexdigest()
    except OSError:
        return None


class Publisher:
    def __init__(self, out: Path, store, solutions: Path, expected: dict[str, list[str]]):
        self.out, self.store, self.solutions, self.expected = out, store, solutions, expected

    def publish(self, roster, units, problems, failed, logs: list[str]) -> dict[str, dict]:
        """``roster``: student -> {assignment: usable notebooks}; ``units``: (student,
        assignment) -> committed unit or None (nothing gradable); ``failed``: (student,
        assignment) -> why it is ungraded. Returns the results of the fully graded students."""
        wanted: dict[Path, Path | bytes] = {}
        course = self.store.course
        for folder in ("source", "release"):
            for path in (course / folder).rglob("*"):
                if path.is_file():
                    wanted[self.out / path.relative_to(course)] = path
        results = {}
        for student in sorted(roster):
            handed_in = {}
            for a in sorted(roster[student]):
                unit = units.get((student, a))
                handed_in[a] = unit
                if unit is None:
                    continue
                for folder in ("submitted", "autograded", "feedback"):
                    source = Path(unit["dir"]) / folder
                    for path in source.rglob("*") if source.is_dir() else ():
                        if path.is_file():
                            rel = path.relative_to(source)
                            wanted[self.out / folder / student / a / rel] = path
            if any((student, a) in failed for a in roster[student]):
                # No total for a student with ungraded work: it would be a false grade.
                handed_in = {a: u for a, u in handed_in.items() if (student, a) not in failed}
                _, pages = student_result(student, handed_in, self.solutions, self.expected,
                                          problems)
            else:
                result, pages = student_result(student, handed_in, self.solutions,
                                               self.expected, problems)
                results[student] = result
                wanted[self.out / "results" / f"{student}.json"] = results_json(result).encode()
            for rel, page in pages.items():
                wanted[self.out / "feedback" / student / rel] = page.encode("utf-8")
        for path, source in wanted.items():
            if isinstance(source, Path):
                sync_file(source, path)
            else:
                try:
                    same = path.read_bytes() == source
                except OSError:
                    same = False
                if not same:
                    write_atomic(path, source)
        for folder in NBGRADER_DIRS:
            prune(self.out / folder, set(wanted))
        self._gradebook(roster, units, failed)
        log = self.out / "grading.log"
        if logs:
            write_atomic(log, "".join(logs))
        else:
            log.unlink(missing_ok=True)
        return results

    # ------------------------------------------------------------------ gradebook, grades.csv
    def _gradebook(self, roster, units, failed) -> None:
        """Bring OUT/gradebook.db and grades.csv up to date: replay only the units that changed
        when the gradebook is the one this store last published (same course and students),
        else rebuild it from the skeleton. Written to a temp copy, fsync'ed, renamed."""
        course = json.loads((self.store.course / "course.json").read_text(encoding="utf-8"))
        state = {
            "course": course["key"],
            "students": sorted(roster),
            "graded": {f"{s}/{a}": u["key"] for (s, a), u in sorted(units.items())
                       if u is not None and u["status"] == "graded"},
            "failed": sorted(f"{s}/{a}" for s, a in failed),
        }
        db, grades = self.out / "gradebook.db", self.out / "grades.csv"
        last = self.store.read_json(".published.json") or {}
        intact = last.get("gradebook") == _sha(db) and last.get("grades") == _sha(grades)
        if intact and last.get("state") == state:
            return  # nothing changed since this store published them
        before = last.get("state") or {}
        incremental = intact and all(before.get(k) == state[k] for k in ("course", "students"))
        old = before.get("graded", {}) if incremental else {}
        new = state["graded"]
        tmp_db = self.out / f".gradebook.db.tmp-{os.getpid()}"
        shutil.copyfile(db if incremental else self.store.course / "gradebook.db", tmp_db)
        try:
            csv_text = self._replay(
                tmp_db,
                [] if incremental else state["students"],
                [u.split("/") for u in sorted(old) if old[u] != new.get(u)],
                [(*u.split("/"), units[tuple(u.split("/"))]) for u in new if old.get(u) != new[u]],
            )
            csv_text = _blank_ungraded(csv_text, failed)
            with open(tmp_db, "rb+") as handle:
                os.fsync(handle.fileno())
            os.replace(tmp_db, db)
            fsync_dir(self.out)
        finally:
            tmp_db.unlink(missing_ok=True)
        write_atomic(grades, csv_text)
        self.store.write_json(
            ".published.json", {"state": state, "gradebook": _sha(db), "grades": _sha(grades)}
        )

    def _replay(self, path: Path, students: list[str], remove, add) -> str:
        """In the gradebook at ``path``: add ``students``, remove the submissions ``remove``
        ([student, assignment]), add those of ``add`` (student, assignment, unit) as nbgrader's
        Autograde does, with its own SaveAutoGrades and AssignLatePenalties on the unit's
        autograded notebooks. Returns the CSV export."""
        import nbgrader.preprocessors.latesubmissions as late_module
        import nbgrader.preprocessors.saveautogrades as save_module
        from nbgrader.api import Gradebook, MissingEntry
        from nbgrader.plugins.export import CsvExportPlugin
        from nbgrader.preprocessors import AssignLatePenalties, SaveAutoGrades
        from sqlalchemy import event

        from ..pipeline import course_config

        cfg = course_config(self.out)
        url = f"sqlite:///{path}"
        tmp_csv = path.parent / f".grades.csv.tmp-{os.getpid()}"
        with Gradebook(url, cfg.CourseDirectory.course_id) as gb:
            # A private temp copy, fsync'ed before it is renamed: no need to sync each commit.
            event.listen(gb.engine, "connect", _no_sync)
            gb.engine.dispose()
            for student in students:
                gb.update_or_create_student(student)
            for student, a in remove:
                with contextlib.suppress(MissingEntry):
                    gb.remove_submission(a, student)
            for student, a, unit in add:
                gb.update_or_create_submission(a, student)
                for notebook in gb.find_assignment(a).notebooks:
                    if notebook.name not in unit["notebooks"]:  # nbgrader: not submitted -> 0
                        submitted = gb.find_submission_notebook(notebook.name, a, student)
                        for grade in submitted.grades:
                            grade.auto_score = 0
                            grade.needs_manual_grade = False
                gb.db.commit()
            # nbgrader's preprocessors open a Gradebook per notebook: lend them this one.
            lent = _Lent(gb)
            with mock.patch.object(save_module, "Gradebook", lent), \
                    mock.patch.object(late_module, "Gradebook", lent):
                for student, a, unit in add:
                    for nb in unit["notebooks"]:
                        path_nb = Path(unit["dir"]) / "autograded" / f"{nb}.ipynb"
                        notebook = nbformat.read(path_nb, 4)
                        resources = {"nbgrader": {"notebook": nb, "assignment": a,
                                                  "student": student, "db_url": url}}
                        for preprocessor in (SaveAutoGrades, AssignLatePenalties):
                            preprocessor(config=cfg).preprocess(notebook, resources)
            try:
                CsvExportPlugin(to=str(tmp_csv)).export(gb)
                return tmp_csv.read_text(encoding="utf-8")
            finally:
                tmp_csv.unlink(missing_ok=True)


def _no_sync(connection, _record) -> None:
    cursor = connection.cursor()
    cursor.execute("PRAGMA synchronous=OFF")
    cursor.close()


class _Lent:
    """An open Gradebook lent to code that would open (and close) its own: same session."""

    def __init__(self, gb):
        self.gb = gb

    def __call__(self, *args, **kwargs):
        return self

    def __enter__(self):
        return self.gb

    def __exit__(self, *exc):
        return False

    def __getattr__(self, name):
        return getattr(self.gb, name)


def _blank_ungraded(text: str, failed) -> str:
    """Empty the score of each ungraded (student, assignment) row: never a false 0."""
    if not failed:
        return text
    rows = list(csv.reader(io.StringIO(text)))
    header = rows[0]
    who, what = header.index("student_id"), header.index("assignment")
    for row in rows[1:]:
        if (row[who], row[what]) in failed:
            for column in ("raw_score", "late_submission_penalty", "score"):
                row[header.index(column)] = ""
    buffer = io.StringIO()
    csv.writer(buffer, lineterminator="\n").writerows(rows)
    return buffer.getvalue()

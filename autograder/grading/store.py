"""The unit store ``OUT/.units``: every finished (student, assignment), committed atomically.

    OUT/.units/<student>/<assignment>/unit.json    key, status, scores and feedback text per test
                                   .../submitted/  the notebooks as graded (after repair)
                                   .../autograded/ nbgrader's autograded notebooks
                                   .../feedback/   nbgrader's feedback pages
    OUT/.units/.course/                            the course skeleton: source/, release/ and a
                                                   gradebook with the assignments, course.json
    OUT/.units/.scratch/                           workers' private nbgrader course roots

A unit is staged in a hidden sibling folder, every file fsync'ed, and renamed into place: it
exists completely (with the key it was graded under) or not at all, whatever kills the run. A
unit whose key differs from the current one is stale and simply regraded.
"""

from __future__ import annotations

import json
import os
import shutil
from itertools import count
from pathlib import Path

from .outdir import fsync_dir, write_atomic

_serial = count()


def _fsync_tree(root: Path) -> None:
    for folder, _, files in os.walk(root):
        for name in files:
            fd = os.open(os.path.join(folder, name), os.O_RDONLY)
            try:
                os.fsync(fd)
            finally:
                os.close(fd)
        fsync_dir(Path(folder))


class Store:
    """``OUT/.units``."""

    def __init__(self, root: Path):
        self.root = Path(root)
        self.course = self.root / ".course"
        self.scratch_root = self.root / ".scratch"

    def unit_dir(self, student: str, assignment: str) -> Path:
        return self.root / student / assignment

    def load(self, student: str, assignment: str, key: str | None = None) -> dict | None:
        """The committed unit (``unit.json`` plus ``dir``), or None if absent or stale."""
        folder = self.unit_dir(student, assignment)
        try:
            unit = json.loads((folder / "unit.json").read_text(encoding="utf-8"))
        except (OSError, ValueError):
            return None
        if key is not None and unit.get("key") != key:
            return None
        unit["dir"] = str(folder)
        return unit

    def scratch(self) -> Path:
        """A fresh private folder for one attempt of one worker."""
        path = self.scratch_root / f"{os.getpid()}-{next(_serial)}"
        shutil.rmtree(path, ignore_errors=True)
        path.mkdir(parents=True)
        return path

    def commit(self, unit: dict, files: dict[str, Path]) -> None:
        """Atomically make ``unit`` (plus the folders ``files``: name -> source folder) the
        committed result of ``unit["student"]/unit["assignment"]``."""
        target = self.unit_dir(unit["student"], unit["assignment"])
        target.parent.mkdir(parents=True, exist_ok=True)
        tag = f"{os.getpid()}-{next(_serial)}"
        stage = target.parent / f".{target.name}.tmp-{tag}"
        old = target.parent / f".{target.name}.old-{tag}"
        shutil.rmtree(stage, ignore_errors=True)
        stage.mkdir()
        try:
            for name, source in files.items():
                if source.is_dir():
                    shutil.copytree(source, stage / name)
            (stage / "unit.json").write_text(
                json.dumps(unit, indent=1, sort_keys=True, ensure_ascii=False), encoding="utf-8"
            )
            _fsync_tree(stage)
            if target.exists():
                os.rename(target, old)  # a kill here leaves no unit: it is regraded, that's all
            os.rename(stage, target)
            fsync_dir(target.parent)
        finally:
            shutil.rmtree(stage, ignore_errors=True)
            shutil.rmtree(old, ignore_errors=True)

    def forget(self, keep: set[tuple[str, str]]) -> None:
        """Delete the units of students/assignments no longer submitted."""
        if not self.root.is_dir():
            return
        for student in self.root.iterdir():
            if student.name.startswith(".") or not student.is_dir():
                continue
            for unit in student.iterdir():
                if not unit.name.startswith(".") and (student.name, unit.name) not in keep:
                    shutil.rmtree(unit, ignore_errors=True)
            if not any(student.iterdir()):
                student.rmdir()

    def read_json(self, name: str) -> dict | None:
        try:
            return json.loads((self.root / name).read_text(encoding="utf-8"))
        except (OSError, ValueError):
            return None

    def write_json(self, name: str, data: dict) -> None:
        write_atomic(self.root / name, json.dumps(data, indent=1, sort_keys=True) + "\n")

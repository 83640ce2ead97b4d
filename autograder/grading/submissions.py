"""Finding a class's submissions: unzip, descend to nbgrader's layout, list what was handed in.

The layout is ``<student_id>/<assignment_id>/<notebook>.ipynb`` (a folder or a ``.zip``, possibly
wrapped in one more folder). A notebook that cannot be graded gets the reason its student reads.
"""

from __future__ import annotations

import re
import zipfile
from pathlib import Path

from ..trusted.preprocessor import read_submission


class InstructorError(Exception):
    """The grading run cannot start: bad arguments or a submissions folder nbgrader cannot use."""

def is_junk(path: Path) -> bool:
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
        children = [c for c in root.iterdir() if c.is_dir() and not is_junk(c)]
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
    for student in sorted(p for p in root.iterdir() if p.is_dir() and not is_junk(p)):
        for folder in sorted(p for p in student.iterdir() if p.is_dir() and not is_junk(p)):
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

def why_unusable(folder: Path, nb: str, submitted: bool) -> str | None:
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

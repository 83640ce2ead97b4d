"""Cache keys: a (student, assignment) result is reused only while its key is unchanged.

    unit key       = sha256(dependency key of the assignment, student id, the submitted files)
    dependency key = sha256(grading options, nbgrader's config, the assignment's source
                     solutions/<a>/*.md, the autograder package, npdl's code)

Only the check modules an assignment uses count for it: ``autograder/checks/<m>.py`` belongs to
the assignments whose sources import it (directly, through another check module, or through the
rest of the autograder, which every assignment depends on). So editing
``checks/initializers.py`` regrades 03_initializers for everyone and nothing else, while editing
``checks/compare.py`` (imported by every check) or the sandbox regrades everything.
"""

from __future__ import annotations

import hashlib
import json
import re
import sys
from pathlib import Path

_ABSOLUTE = re.compile(r"autograder\.checks\.(\w+)|from \.+checks\.(\w+) import")
_RELATIVE = re.compile(r"from \.(\w+) import|from \. import (\w+)")  # inside checks/


def _digest(*parts: bytes | str) -> str:
    h = hashlib.sha256()
    for part in parts:
        data = part.encode("utf-8") if isinstance(part, str) else part
        h.update(len(data).to_bytes(8, "little"))
        h.update(data)
    return h.hexdigest()


def _files(folder: Path) -> list[Path]:
    return sorted(
        p for p in folder.rglob("*")
        if p.is_file() and "__pycache__" not in p.parts and p.suffix not in (".pyc", ".pyo")
    )


def _imported_checks(text: str, relative: bool = False) -> set[str]:
    found = {next(g for g in m.groups() if g) for m in _ABSOLUTE.finditer(text)}
    if relative:
        found |= {next(g for g in m.groups() if g) for m in _RELATIVE.finditer(text)}
    return found


class Dependencies:
    """What grading an assignment depends on, hashed once per run."""

    def __init__(self, solutions: Path, options: dict, config: Path):
        import autograder
        import npdl

        self.solutions = Path(solutions)
        self.package = Path(autograder.__file__).resolve().parent
        checks = self.package / "checks"
        self.checks = {p.stem: p for p in checks.glob("*.py")}
        self.shared = [p for p in _files(self.package) if p.parent != checks]
        npdl_root = Path(npdl.__file__).resolve().parent
        self.base = _digest(
            json.dumps(options, sort_keys=True),
            f"python {sys.version_info[:2]}",
            config.read_bytes(),
            *self._hashed(self.package, self.shared),
            *self._hashed(npdl_root, _files(npdl_root)),
        )
        # Check modules the rest of the autograder imports count for every assignment.
        self.common = {"__init__"} | set().union(*(
            _imported_checks(p.read_text(encoding="utf-8"))
            for p in self.shared if p.suffix == ".py"
        ))
        self._keys: dict[str, str] = {}

    @staticmethod
    def _hashed(root: Path, files: list[Path]) -> list[bytes | str]:
        out: list[bytes | str] = []
        for path in files:
            out += [str(path.relative_to(root)), path.read_bytes()]
        return out

    def checks_of(self, assignment: str) -> list[str]:
        """The check modules grading ``assignment`` can import, sorted."""
        todo = set(self.common)
        for md in sorted((self.solutions / assignment).glob("*.md")):
            todo |= _imported_checks(md.read_text(encoding="utf-8"))
        found: set[str] = set()
        while todo:
            name = todo.pop()
            if name in found or name not in self.checks:
                continue
            found.add(name)
            todo |= _imported_checks(self.checks[name].read_text(encoding="utf-8"), True)
        return sorted(found)

    def key(self, assignment: str) -> str:
        """The dependency key of ``assignment``."""
        if assignment not in self._keys:
            sources = sorted((self.solutions / assignment).glob("*.md"))
            parts: list[bytes | str] = [self.base, assignment]
            for md in sources:
                parts += [md.name, md.read_bytes()]
            for name in self.checks_of(assignment):
                parts += [f"checks/{name}.py", self.checks[name].read_bytes()]
            self._keys[assignment] = _digest(*parts)
        return self._keys[assignment]


def unit_key(dependency_key: str, student: str, folder: Path, notebooks: list[str]) -> str:
    """The key of one (student, assignment): its dependency key and the files to be graded."""
    parts: list[bytes | str] = [dependency_key, student]
    for nb in sorted(notebooks):
        parts += [nb, (folder / f"{nb}.ipynb").read_bytes()]
    return _digest(*parts)


def course_key(dependency_keys: dict[str, str]) -> str:
    """The key of the course skeleton (sources, releases, gradebook) of these assignments."""
    return _digest(json.dumps(sorted(dependency_keys.items())))

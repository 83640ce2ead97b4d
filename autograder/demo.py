"""Demo submissions, generated from the sources (never hand-copied).

For every assignment: ``solution`` (the release with the reference code pasted into each solution
cell), ``blank`` (the untouched release), and one student per bug injection of the bugs file
(``tests/fixtures/bugs.yaml``): the solution with one snippet replaced.
"""

from __future__ import annotations

import shutil
from pathlib import Path

import nbformat
import yaml

from .notebooks import EXERCISES, REPO, SOLUTIONS, assignments, build_notebook, sources

BUGS = REPO / "tests" / "fixtures" / "bugs.yaml"


def load_bugs(path: Path = BUGS) -> dict[str, list[dict]]:
    """assignment -> list of bugs ``{student, notebook, cell, old, new, fails, message}``."""
    data = yaml.safe_load(Path(path).read_text(encoding="utf-8")) or {}
    for a, bugs in data.items():
        for bug in bugs:
            missing = {"student", "notebook", "cell", "old", "new", "fails"} - set(bug)
            if missing:
                raise ValueError(f"{path}: bug in {a} lacks {sorted(missing)}. Received: {bug}")
    return data


def student_code(solution_source: str) -> str:
    """A solution cell as a student would write it: the reference code without nbgrader markers."""
    lines = solution_source.split("\n")
    return "\n".join(
        line for line in lines if line.strip() not in ("### BEGIN SOLUTION", "### END SOLUTION")
    )


def fill_release(release_nb, source_nb, patch: dict | None = None):
    """The release with each solution cell holding the reference code (``patch`` applied)."""
    reference = {
        c.metadata["nbgrader"]["grade_id"]: c.source
        for c in source_nb.cells
        if c.metadata.get("nbgrader", {}).get("solution")
    }
    nb = nbformat.from_dict(release_nb)
    patched = False
    for cell in nb.cells:
        grade_id = cell.metadata.get("nbgrader", {}).get("grade_id")
        if grade_id not in reference:
            continue
        code = student_code(reference[grade_id])
        if patch and patch["cell"] == grade_id:
            if code.count(patch["old"]) != 1:
                raise ValueError(
                    f"bug {patch['student']}: expected {patch['old']!r} exactly once in cell "
                    f"{grade_id!r}. Received: {code.count(patch['old'])} occurrences."
                )
            code = code.replace(patch["old"], patch["new"])
            patched = True
        cell.source = code
    if patch and not patched:
        raise ValueError(f"bug {patch['student']}: no solution cell {patch['cell']!r}.")
    return nb


def make_demo_class(
    out: Path,
    bugs_file: Path = BUGS,
    only: list[str] | None = None,
    solutions: Path = SOLUTIONS,
    exercises: Path = EXERCISES,
) -> dict[str, list[str]]:
    """Write ``out/<student>/<assignment>/<nb>.ipynb``; return student -> assignments."""
    out = Path(out)
    if out.exists():
        shutil.rmtree(out)
    bugs = load_bugs(bugs_file) if Path(bugs_file).exists() else {}
    roster: dict[str, list[str]] = {}
    for a in only or assignments(solutions):
        for md in sources(a, solutions):
            source = build_notebook(md)
            release = nbformat.read(exercises / a / f"{md.stem}.ipynb", as_version=4)
            versions = {"solution": fill_release(release, source), "blank": release}
            for bug in bugs.get(a, []):
                if bug["notebook"] == md.stem:
                    versions[bug["student"]] = fill_release(release, source, bug)
            for student, nb in versions.items():
                target = out / student / a / f"{md.stem}.ipynb"
                target.parent.mkdir(parents=True, exist_ok=True)
                nbformat.write(nb, target)
                roster.setdefault(student, [])
                if a not in roster[student]:
                    roster[student].append(a)
    return roster

"""Per-chapter student bundles: the exercise notebook plus the npdl modules of EARLIER chapters.

``_build/handout/<assignment>/`` holds ``<notebook>.ipynb`` and ``npdl/`` with ``core.py`` always
and the modules of chapters before the assignment's, so a student can import what earlier
chapters built but never finds the answer to the current chapter or a later one.
"""

from __future__ import annotations

import shutil
from pathlib import Path

from .notebooks import EXERCISES, REPO

NPDL = REPO / "reference_impl" / "npdl"

# npdl module -> the chapter whose assignment asks students to write it.
MODULE_CHAPTER = {
    "gradcheck": 1,
    "activations": 2,
    "initializers": 3,
    "layers": 4,
    "losses": 5,
    "models": 6,
    "callbacks": 6,
    "metrics": 6,
    "data": 6,
    "optimizers": 7,
    "schedules": 7,
    "conv": 9,
}
ALWAYS = ("__init__", "core")


def chapter_of(assignment_id: str) -> int:
    """``"04_layers"`` -> 4."""
    return int(assignment_id.split("_", 1)[0])


def modules_before(chapter: int) -> list[str]:
    """core and the modules of every chapter before ``chapter``."""
    earlier = [m for m, c in MODULE_CHAPTER.items() if c < chapter]
    return [*ALWAYS, *sorted(earlier)]


def modules_for(assignment_id: str) -> list[str]:
    """The npdl modules a chapter's bundle ships: core and every earlier chapter's modules."""
    return modules_before(chapter_of(assignment_id))


def shipped_before(chapter: int, npdl: Path = NPDL) -> list[str]:
    """`modules_before`, less the modules not written yet (they are simply absent)."""
    return [m for m in modules_before(chapter) if (npdl / f"{m}.py").exists()]


def shipped_modules(assignment_id: str, npdl: Path = NPDL) -> list[str]:
    """What a student of ``assignment_id`` gets: `shipped_before` its chapter."""
    return shipped_before(chapter_of(assignment_id), npdl)


def write_npdl(dest: Path, assignment_id: str, npdl: Path = NPDL) -> list[Path]:
    """Write ``dest/npdl/`` as a student of ``assignment_id`` gets it: `modules_for` only.

    The one place that decides which reference modules leave the repository: the per-chapter
    handout and the student edition (`autograder.release`) both call it.
    """
    package = Path(dest) / "npdl"
    package.mkdir(parents=True)
    written = []
    for module in shipped_modules(assignment_id, npdl):
        shutil.copyfile(npdl / f"{module}.py", package / f"{module}.py")
        written.append(package / f"{module}.py")
    return written


def build_handout(
    out: Path = REPO / "_build" / "handout", exercises: Path = EXERCISES
) -> list[Path]:
    """Write one bundle per released assignment; return the bundle folders."""
    out = Path(out)
    bundles = []
    for release in sorted(p for p in exercises.iterdir() if p.is_dir()):
        bundle = out / release.name
        if bundle.exists():
            shutil.rmtree(bundle)
        shutil.copytree(release, bundle)
        write_npdl(bundle, release.name)
        bundles.append(bundle)
    return bundles

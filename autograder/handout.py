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
}
ALWAYS = ("__init__", "core")


def chapter_of(assignment_id: str) -> int:
    """``"04_layers"`` -> 4."""
    return int(assignment_id.split("_", 1)[0])


def modules_for(assignment_id: str) -> list[str]:
    """The npdl modules a chapter's bundle ships: core and every earlier chapter's modules."""
    chapter = chapter_of(assignment_id)
    earlier = [m for m, c in MODULE_CHAPTER.items() if c < chapter]
    return [*ALWAYS, *sorted(earlier)]


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
        (bundle / "npdl").mkdir()
        for module in modules_for(release.name):
            src = NPDL / f"{module}.py"
            if src.exists():  # a module not written yet is simply absent
                shutil.copyfile(src, bundle / "npdl" / src.name)
        bundles.append(bundle)
    return bundles

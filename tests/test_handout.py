"""Student bundles (`make handout`) never contain the answer to their own or a later chapter.

_build/handout/<assignment>/ = the released notebook + npdl/ with core and the modules of
EARLIER chapters only (gradcheck 01, activations 02, initializers 03, layers 04, losses 05,
models/callbacks/metrics/data 06, optimizers/schedules 07, conv 09). `handout.write_npdl` decides
it for the bundles and for the student edition alike (tests/test_release.py).
"""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from autograder.handout import ALWAYS, MODULE_CHAPTER, NPDL, build_handout, chapter_of, modules_for
from autograder.notebooks import EXERCISES, build_notebook, sources

RELEASED = sorted(p.name for p in EXERCISES.iterdir() if p.is_dir())


@pytest.fixture(scope="module")
def handout(tmp_path_factory):
    out = tmp_path_factory.mktemp("handout")
    bundles = build_handout(out)
    assert sorted(b.name for b in bundles) == RELEASED
    return out


def _solution_lines(assignment: str) -> list[str]:
    """Substantial lines of the reference code inside BEGIN/END SOLUTION blocks."""
    found = []
    for md in sources(assignment):
        for cell in build_notebook(md).cells:
            inside = False
            for line in cell.source.split("\n"):
                stripped = line.strip()
                if stripped == "### BEGIN SOLUTION":
                    inside = True
                elif stripped == "### END SOLUTION":
                    inside = False
                elif inside and len(stripped) >= 20 and not stripped.startswith("#"):
                    found.append(stripped)
    return found


def test_every_npdl_module_has_a_chapter():
    modules = {p.stem for p in NPDL.glob("*.py")}
    unmapped = modules - set(MODULE_CHAPTER) - set(ALWAYS)
    assert not unmapped, f"add {sorted(unmapped)} to autograder.handout.MODULE_CHAPTER"


def test_chapter_order():
    assert modules_for("01_backprop") == ["__init__", "core"]
    assert "gradcheck" in modules_for("02_activations") and "activations" not in modules_for(
        "02_activations"
    )
    assert {"optimizers", "schedules"} <= set(modules_for("08_capstone"))
    assert not {"optimizers", "schedules", "models"} & set(modules_for("06_models"))
    assert "conv" not in modules_for("09_convolutions") and "conv" in modules_for("10_next")


@pytest.mark.parametrize("assignment", RELEASED)
def test_bundle_ships_only_earlier_chapters(handout, assignment):
    bundle = handout / assignment
    shipped = {p.stem for p in (bundle / "npdl").glob("*.py")}
    assert {"__init__", "core"} <= shipped
    for module in shipped - set(ALWAYS):
        assert MODULE_CHAPTER[module] < chapter_of(assignment), f"{assignment} ships npdl.{module}"
    expected = {m for m in modules_for(assignment) if (NPDL / f"{m}.py").exists()}
    assert shipped == expected
    notebooks = sorted(p.name for p in bundle.glob("*.ipynb"))
    assert notebooks == sorted(p.name for p in (EXERCISES / assignment).glob("*.ipynb"))
    stray = [p.name for p in bundle.rglob("*") if p.is_file() and p.suffix not in (".ipynb", ".py")]
    assert stray == [], f"{assignment} bundle has unexpected files {stray}"


@pytest.mark.parametrize("assignment", RELEASED)
def test_bundle_notebook_holds_no_solution(handout, assignment):
    lines = _solution_lines(assignment)
    assert lines, f"{assignment}: no solution code found to look for"
    for nb_path in (handout / assignment).glob("*.ipynb"):
        text = "\n".join(
            "".join(c["source"]) for c in json.loads(nb_path.read_text(encoding="utf-8"))["cells"]
        )
        assert "BEGIN SOLUTION" not in text and "HIDDEN TESTS" not in text
        leaked = [line for line in lines if line in text]
        assert leaked == [], f"{nb_path.name} contains solution code: {leaked[:3]}"


@pytest.mark.parametrize("assignment", RELEASED)
def test_bundle_npdl_is_importable_on_its_own(handout, assignment):
    """Bundled modules import from the bundle (not the repo), needing no later chapter."""
    bundle = handout / assignment
    modules = sorted(p.stem for p in (bundle / "npdl").glob("*.py") if p.stem != "__init__")
    code = (
        f"import sys; sys.path.insert(0, {str(bundle)!r}); import importlib\n"
        f"for m in {modules!r}:\n"
        f"    mod = importlib.import_module('npdl.' + m)\n"
        f"    assert mod.__file__.startswith({str(bundle)!r}), mod.__file__\n"
    )
    run = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert run.returncode == 0, run.stderr

"""Trusted grading (autograder.trusted): scores decided outside the student's kernel.

The preprocessor's engine (`TrustedNotebookRun`) runs directly on notebooks restored the way
nbgrader's OverwriteCells does (`restore_from_source`); SaveAutoGrades' own scoring function
(`nbgrader.utils.determine_grade`) turns the outputs into points.
"""

from __future__ import annotations

import copy
import time
from pathlib import Path

import nbformat
import pytest
import yaml
from nbgrader.utils import determine_grade

from autograder.demo import fill_release, load_bugs
from autograder.trusted import (
    TrustedNotebookRun,
    cell_kind,
    restore_from_source,
    trusted_cells_from_notebook,
)
from autograder.trusted.preprocessor import TrustedExecute, read_submission, unreadable_result

REPO = Path(__file__).resolve().parent.parent
ATTACKS = yaml.safe_load((REPO / "tests" / "adversarial_notebooks" / "attacks.yaml").read_text())
NOTEBOOKS = {
    "01_backprop": "backprop",
    "02_activations": "activations",
    "03_initializers": "initializers",
    "04_layers": "layers",
    "05_losses": "losses",
    "06_models": "models",
    "07_optimizers": "optimizers",
    "08_capstone": "capstone",
    "09_convolutions": "convolutions",
}


def source_nb(assignment):
    return nbformat.read(REPO / "solutions" / assignment / f"{NOTEBOOKS[assignment]}.ipynb", 4)


def release_nb(assignment):
    return nbformat.read(REPO / "exercises" / assignment / f"{NOTEBOOKS[assignment]}.ipynb", 4)


def grade(nb, assignment, **kwargs) -> dict[str, tuple[float, float, str]]:
    """grade_id -> (score, max, feedback text) after trusted execution."""
    trusted = trusted_cells_from_notebook(source_nb(assignment))
    nb = TrustedNotebookRun(assignment, **kwargs).run(nb, trusted)
    results = {}
    for cell in nb.cells:
        if cell_kind(cell) == "test":
            score, points = determine_grade(cell)
            text = "".join(o.get("text", "") + o.get("evalue", "") for o in cell.outputs)
            results[cell.metadata.nbgrader.grade_id] = (score, points, text)
    return results


def _cell_index(nb, grade_id):
    return next(
        i
        for i, c in enumerate(nb.cells)
        if c.get("metadata", {}).get("nbgrader", {}).get("grade_id") == grade_id
    )


def build_attack(attack):
    """The submission as a student would hand it in, then restored like OverwriteCells does."""
    src = source_nb(attack["assignment"])
    nb = copy.deepcopy(src) if attack["base"] == "solution" else release_nb(attack["assignment"])
    for patch in attack["patches"]:
        if "cell" in patch:
            nb.cells[_cell_index(nb, patch["cell"])].source = patch["code"]
        elif "after" in patch:
            nb.cells.insert(
                _cell_index(nb, patch["after"]) + 1, nbformat.v4.new_code_cell(patch["code"])
            )
        elif "delete" in patch:
            del nb.cells[_cell_index(nb, patch["delete"])]
        elif "duplicate" in patch:
            i = _cell_index(nb, patch["duplicate"])
            nb.cells.insert(i + 1, copy.deepcopy(nb.cells[i]))
        elif "move_to_end" in patch:
            nb.cells.append(nb.cells.pop(_cell_index(nb, patch["move_to_end"])))
    return restore_from_source(nb, src)


# ------------------------------------------------------------------ honest notebooks


@pytest.mark.parametrize("assignment", list(NOTEBOOKS))
def test_solution_gets_full_marks(assignment):
    results = grade(copy.deepcopy(source_nb(assignment)), assignment)
    lost = {k: v[2][-300:] for k, v in results.items() if v[0] != v[1]}
    assert results and not lost, f"{assignment}: the reference solution lost points: {lost}"
    assert any("✔" in text for _, _, text in results.values())


@pytest.mark.parametrize("assignment", list(NOTEBOOKS))
def test_blank_release_gets_zero_without_crashing(assignment):
    nb = restore_from_source(release_nb(assignment), source_nb(assignment))
    results = grade(nb, assignment, cell_timeout=60)
    assert set(results) == {
        c.metadata.nbgrader.grade_id for c in source_nb(assignment).cells if cell_kind(c) == "test"
    }
    scored = {k: v[0] for k, v in results.items() if v[0] != 0}
    assert not scored, f"{assignment}: the blank release scored {scored}"
    assert all(text.strip() for _, _, text in results.values()), "every 0 comes with a message"


BUGS = [(a, bug) for a, bugs in load_bugs().items() for bug in bugs]


@pytest.mark.parametrize("assignment, bug", BUGS, ids=[b["student"] for _, b in BUGS])
def test_bug_injection_loses_exactly_its_tests(assignment, bug):
    """Same per-test outcome as the in-kernel run that tests/test_grading_e2e.py checks."""
    source = source_nb(assignment)
    nb = restore_from_source(fill_release(release_nb(assignment), source, bug), source)
    results = grade(nb, assignment)
    failed = sorted(k for k, (score, points, _) in results.items() if score != points)
    assert failed == sorted(bug["fails"]), f"{bug['student']}: lost points on {failed}"
    messages = bug.get("message", [])
    for test in bug["fails"]:
        wanted = messages.get(test, []) if isinstance(messages, dict) else messages
        for piece in wanted:
            assert piece in results[test][2], (
                f"{test}: feedback lacks {piece!r}: {results[test][2]}"
            )


def test_same_outcome_as_in_kernel_execute():
    """A buggy submission graded by nbgrader's own Execute (a real kernel) and by TrustedExecute."""
    from nbgrader.preprocessors import Execute

    assignment, bug = "02_activations", load_bugs()["02_activations"][0]
    source = source_nb(assignment)
    nb = restore_from_source(fill_release(release_nb(assignment), source, bug), source)
    resources = {"nbgrader": {"assignment": assignment}, "metadata": {"path": str(REPO)}}
    started = time.monotonic()
    in_kernel, _ = Execute(timeout=60).preprocess(copy.deepcopy(nb), copy.deepcopy(resources))
    kernel_seconds = time.monotonic() - started
    started = time.monotonic()
    trusted = TrustedNotebookRun(assignment, cell_timeout=60).run(
        copy.deepcopy(nb), trusted_cells_from_notebook(source)
    )
    trusted_seconds = time.monotonic() - started

    def scores(notebook):
        return {
            c.metadata.nbgrader.grade_id: determine_grade(c)[0]
            for c in notebook.cells
            if cell_kind(c) == "test"
        }

    assert scores(trusted) == scores(in_kernel)
    print(f"in-kernel {kernel_seconds:.1f} s, trusted {trusted_seconds:.1f} s")


# ------------------------------------------------------------------ adversarial submissions


@pytest.mark.parametrize("attack", ATTACKS, ids=[a["name"] for a in ATTACKS])
def test_adversarial_submission_gains_nothing(attack):
    markers = [
        Path("/tmp/npdl_trusted_grading_marker"),
        Path("/tmp/npdl_trusted_grading_pickle"),
        Path("/root/npdl_trusted_grading_marker"),
    ]
    for marker in markers:
        marker.unlink(missing_ok=True)
    gradebook = REPO / "_build" / "nbgrader" / "gradebook.db"
    before = gradebook.stat().st_mtime if gradebook.exists() else None
    started = time.monotonic()
    results = grade(build_attack(attack), attack["assignment"], cell_timeout=5)
    elapsed = time.monotonic() - started
    gained = {t: results[t][0] for t in attack["attacked"] if results[t][0] != 0}
    assert not gained, f"{attack['name']}: points gained on {gained}"
    if attack.get("intact"):
        lost = {
            k: v[2][-200:]
            for k, v in results.items()
            if k not in attack["attacked"] and v[0] != v[1]
        }
        assert not lost, f"{attack['name']}: honest tests lost points: {lost}"
    assert not any(m.exists() for m in markers), "the submission wrote outside its sandbox"
    assert (gradebook.stat().st_mtime if gradebook.exists() else None) == before
    assert elapsed < 90, f"{attack['name']} took {elapsed:.0f} s"
    total = sum(len(text) for _, _, text in results.values())
    assert total < 2_000_000, "printed output must stay bounded"


def test_adversarial_corpus_covers_every_attack_class():
    names = {a["name"] for a in ATTACKS}
    assert len(names) >= 12 and len(names) == len(ATTACKS)


# ------------------------------------------------------------------ malformed submissions


@pytest.mark.parametrize(
    "content, reason",
    [
        ("{not json", "could not be read"),
        ("", "empty file"),
        ('{"nbformat": 3, "nbformat_minor": 0, "metadata": {}, "worksheets": []}', "nbformat 3"),
    ],
)
def test_unreadable_submission_gets_a_clear_zero(tmp_path, content, reason):
    path = tmp_path / "activations.ipynb"
    path.write_text(content)
    nb, why = read_submission(path)
    assert nb is None and reason in why
    result = unreadable_result(source_nb("02_activations"), why)
    tests = [c for c in result.cells if cell_kind(c) == "test"]
    assert tests and all(determine_grade(c)[0] == 0 for c in tests)
    assert all(reason in c.outputs[0].evalue for c in tests)


def test_renamed_class_fails_only_its_tests():
    source = source_nb("02_activations")
    nb = copy.deepcopy(source)
    cell = nb.cells[_cell_index(nb, "relu")]
    cell.source = cell.source.replace("class ReLU(", "class MyReLU(")
    results = grade(restore_from_source(nb, source), "02_activations")
    failed = sorted(k for k, v in results.items() if v[0] != v[1])
    assert failed == ["test_relu_backward", "test_relu_forward"]
    assert "ReLU" in results["test_relu_forward"][2]


def test_real_nbgrader_autograde_with_trusted_execute(tmp_path):
    """The pipeline's wiring: TrustedExecute in place of Execute, scores in the gradebook."""
    import warnings

    from nbgrader.api import Gradebook
    from sqlalchemy.exc import SAWarning

    from autograder.pipeline import Course

    with warnings.catch_warnings():
        warnings.simplefilter("ignore", SAWarning)  # nbgrader's own, as in autograder.grading
        warnings.simplefilter("ignore", DeprecationWarning)
        course = Course(tmp_path, only=["02_activations"])
        # The repository's nbgrader_config.py, as every grading run loads it.
        assert course.cfg.Autograde.autograde_preprocessors[0] is TrustedExecute
        assert "Execute" not in [p.__name__ for p in course.cfg.Autograde.autograde_preprocessors]
        assert course.cfg.OverwriteCells.add_missing_cells is True
        release = course.generate_assignment("02_activations")
        bug = load_bugs()["02_activations"][0]
        nb = fill_release(
            nbformat.read(release / "activations.ipynb", 4), source_nb("02_activations"), bug
        )
        # the student also edits a test cell: OverwriteCells restores it from the gradebook
        nb.cells[_cell_index(nb, "test_relu_backward")].source = "print('✔ ok')"
        folder = tmp_path / "submitted" / "alice" / "02_activations"
        folder.mkdir(parents=True)
        nbformat.write(nb, folder / "activations.ipynb")
        course.autograde("02_activations", "alice")
        with Gradebook(course.cfg.CourseDirectory.db_url) as gb:
            submission = gb.find_submission_notebook("activations", "02_activations", "alice")
            lost = sorted(g.name for g in submission.grades if g.score != g.max_score)
            assert lost == sorted(bug["fails"])
            points = {g.name: g.max_score for g in submission.grades}
            assert submission.score == submission.max_score - sum(points[n] for n in lost)


def test_forged_test_and_locked_metadata_never_run_in_the_grader():
    """A submission cell claiming to be a test or locked cell (a new grade_id, or a known one
    with different text) is student code: it runs in the sandbox, never in this process."""
    marker = Path("/tmp/npdl_trusted_grading_forged")
    marker.unlink(missing_ok=True)
    source = source_nb("02_activations")
    nb = copy.deepcopy(source)
    evil = f"open({str(marker)!r}, 'w').write('pwned')\nprint('✔ all good')"
    forged = nbformat.v4.new_code_cell(evil)
    forged.metadata["nbgrader"] = {
        "grade": True,
        "locked": True,
        "solution": False,
        "grade_id": "test_evil",
        "points": 50,
        "schema_version": 3,
    }
    nb.cells.insert(3, forged)
    nb.cells[_cell_index(nb, "test_relu_forward")].source = evil  # after OverwriteCells missed it
    nb.cells[_cell_index(nb, "helpers")].source = evil
    results = grade(nb, "02_activations")
    assert not marker.exists()
    assert results["test_relu_forward"][0] == 1  # the instructor's test ran, not the forged text
